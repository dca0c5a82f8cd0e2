"""Edge TPU readiness of an int8 TFLite model, and `edgetpu_compiler` when it is installed.

The Edge TPU compiler needs a fully integer model (int8/uint8 tensors; int32
only for biases and shape constants), int8/uint8 inputs and outputs, static
shapes, and only the operators it maps (coral.ai "Supported operations"). It
compiles ops until the first one it cannot map; that op and every later one
runs on the CPU. This module predicts that split offline (no compiler can be
installed here: it ships for x86-64 Debian only), and parses the compiler's
log when it is on PATH. No TensorFlow: the runtime's interpreter factory reads the model.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

# TFLite builtin names of the operators the Edge TPU compiler maps (coral.ai/docs/edgetpu/models-intro).
EDGETPU_OPS = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PACK",
        "PAD",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUARED_DIFFERENCE",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    }
)
_INT_TYPES = ("int8", "uint8")
COMPILE_HINT = (
    "edgetpu_compiler is not on PATH (it runs on x86-64 Linux only): install it from "
    "https://coral.ai/docs/edgetpu/compiler/ (apt package edgetpu-compiler) and run "
    "`edgetpu_compiler -s -o OUT_DIR {model}`, then copy the *_edgetpu.tflite next to the manifest"
)


def check_edgetpu(path: str | os.PathLike) -> dict[str, Any]:
    """Predict what the Edge TPU compiler will do with `path` (an int8 .tflite).

    Returns {"compatible": bool, "problems": [...], "ops": [...], "tpu_ops": n,
    "cpu_ops": [names falling back to CPU], "first_cpu_op": str|None}.
    """
    from edgecnn.runtime.backends import read_model_bytes, tflite_interpreter

    it, _ = tflite_interpreter(read_model_bytes(path), name=Path(path).name, allocate=False)
    problems: list[str] = []
    for kind, details in (("input", it.get_input_details()), ("output", it.get_output_details())):
        for d in details:
            dt = np.dtype(d["dtype"]).name
            if dt not in _INT_TYPES:
                problems.append(f"{kind} {d['name']} is {dt}; the Edge TPU needs int8/uint8 I/O")
            sig = d.get("shape_signature")
            if sig is not None and any(int(v) < 0 for v in sig):
                problems.append(
                    f"{kind} {d['name']} has a dynamic shape {list(map(int, sig))}; "
                    "the Edge TPU needs static shapes (convert with a batch of 1)"
                )
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    names = [str(op["op_name"]) for op in ops]
    float_ops = []
    for op in ops:
        idx = [i for i in [*op["inputs"], *op["outputs"]] if i >= 0 and i in tensors]
        dts = {np.dtype(tensors[i]["dtype"]).name for i in idx}
        if dts & {"float32", "float16"} and op["op_name"] not in ("QUANTIZE", "DEQUANTIZE"):
            float_ops.append(str(op["op_name"]))
    if float_ops:
        problems.append(
            f"not fully integer: {len(float_ops)} float op(s) ({', '.join(sorted(set(float_ops)))}); "
            "convert with --precision int8"
        )
    first_cpu = next(
        (
            i
            for i, op in enumerate(ops)
            if op["op_name"] not in EDGETPU_OPS or op["op_name"] in float_ops
        ),
        None,
    )
    cpu_ops = names[first_cpu:] if first_cpu is not None else []
    unsupported = sorted({n for n in names if n not in EDGETPU_OPS})
    if unsupported:
        problems.append(f"ops the Edge TPU does not map: {', '.join(unsupported)}")
    return {
        "compatible": not problems,
        "problems": problems,
        "ops": names,
        "tpu_ops": len(names) - len(cpu_ops),
        "cpu_ops": cpu_ops,
        "first_cpu_op": names[first_cpu] if first_cpu is not None else None,
    }


_ROW = re.compile(r"^(?P<op>[A-Z][A-Z0-9_]+)\s+(?P<count>\d+)\s+(?P<status>\S.*?)\s*$")


def parse_compiler_log(text: str) -> dict[str, Any]:
    """Parse edgetpu_compiler's stdout/log: op table rows and the TPU/CPU op counts."""
    rows = []
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if m and m.group("op") != "Operator":
            rows.append(
                {
                    "op": m.group("op"),
                    "count": int(m.group("count")),
                    "status": m.group("status"),
                    "mapped": m.group("status").startswith("Mapped to Edge TPU"),
                }
            )
    tpu = re.search(r"operations that will run on Edge TPU:\s*(\d+)", text)
    cpu = re.search(r"operations that will run on CPU:\s*(\d+)", text)
    version = re.search(r"Edge TPU Compiler version\s+(\S+)", text)
    return {
        "compiler_version": version.group(1) if version else None,
        "tpu_ops": int(tpu.group(1)) if tpu else sum(r["count"] for r in rows if r["mapped"]),
        "cpu_ops": int(cpu.group(1)) if cpu else sum(r["count"] for r in rows if not r["mapped"]),
        "unmapped": [r for r in rows if not r["mapped"]],
        "rows": rows,
    }


def compile_edgetpu(path: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Run edgetpu_compiler if installed; else return how to do it on an x86-64 host."""
    exe = shutil.which("edgetpu_compiler")
    path = Path(path)
    if exe is None:
        return {"compiled": False, "hint": COMPILE_HINT.format(model=path.name)}
    proc = subprocess.run(
        [exe, "-s", "-o", str(out_dir), str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log_file = Path(out_dir) / f"{path.stem}_edgetpu.log"
    text = (
        proc.stdout + "\n" + (log_file.read_text("utf-8", "replace") if log_file.exists() else "")
    )
    result = parse_compiler_log(text)
    out = Path(out_dir) / f"{path.stem}_edgetpu.tflite"
    result.update(
        compiled=proc.returncode == 0 and out.exists(),
        returncode=proc.returncode,
        output=out.name if out.exists() else None,
        stderr=proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else [],
    )
    if log_file.exists():
        log_file.unlink()  # its content is in the report; keep the build dir to artifacts
    return result
