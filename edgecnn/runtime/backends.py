"""Interpreters behind one small interface: LiteRT, tflite-runtime, Edge TPU, ONNX Runtime.

This module holds the only interpreter and inference-session factories in edgecnn:
`tflite_interpreter` and `onnx_session`. Every caller (the runner, parity's per-layer
diagnosis, MAC counting, the Edge TPU check, manifest I/O) gets its interpreter here.

Models are loaded from bytes read into memory, never memory-mapped from the file: an
interpreter that maps its file dies with SIGBUS when the file is truncated under it
(a served model rewritten in place). The bytes that were validated are the bytes
that run.

No TensorFlow: LiteRT (`ai-edge-litert`) is the TFLite interpreter as its own wheel;
`tflite-runtime` is its predecessor (last release 2.14, needs numpy<2).
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput
from edgecnn.quiet import native_info_filtered

EDGETPU_LIB = "libedgetpu.so.1"
EDGETPU_INSTALL = "sudo apt-get install libedgetpu1-std (Coral apt repo)"
LITERT_INSTALL = "pip install 'edgecnn[device]' (or: pip install ai-edge-litert)"
ORT_INSTALL = "pip install 'edgecnn[onnx]' (or: pip install onnxruntime)"
TFLITE_MODULES = {
    "litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
}


class MissingRuntime(BadInput):
    """No interpreter for this artifact is installed: the message names the install command."""


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # with the batch axis; -1 where dynamic
    dtype: np.dtype
    scale: float  # 0.0 when not quantized
    zero_point: int


def read_model_bytes(path: str | Path) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read {p}: {e.strerror or e}") from None


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:limit]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _tflite_runtime_numpy_problem() -> str | None:
    """tflite-runtime 2.14 is built against numpy 1.x: with numpy 2 it imports, then fails
    inside the interpreter after printing a long banner. Say so first."""
    if int(np.__version__.split(".")[0]) < 2:
        return None
    return (
        f"tflite-runtime {_version('tflite-runtime')} needs numpy<2 but numpy {np.__version__} "
        "is installed; pip install 'numpy<2' (or use ai-edge-litert, which supports numpy 2)"
    )


def import_tflite_interpreter(prefer: str = "litert") -> tuple[Any, Any, str]:
    """(Interpreter class, load_delegate, backend name), LiteRT first, then tflite-runtime."""
    order = ["tflite_runtime"] if prefer == "tflite_runtime" else ["litert", "tflite_runtime"]
    problems = []
    for name in order:
        module = TFLITE_MODULES[name]
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is None:
            problems.append(f"{top} not installed")
            continue
        if name == "tflite_runtime" and (problem := _tflite_runtime_numpy_problem()):
            problems.append(problem)
            continue
        try:
            mod = importlib.import_module(module)
            return mod.Interpreter, mod.load_delegate, name
        except (ImportError, AttributeError) as e:
            problems.append(f"{top} failed to import: {_first_line(e, 120)}")
    raise MissingRuntime(
        f"no TFLite interpreter: {'; '.join(problems)}; install with {LITERT_INSTALL}"
    )


def edgetpu_library_error() -> str | None:
    """Why libedgetpu cannot be loaded, or None if it can.

    Checked with ctypes before LiteRT's `load_delegate`: a failing `load_delegate`
    leaves a half-built Delegate whose __del__ prints a stray traceback.
    """
    import ctypes

    try:
        ctypes.CDLL(EDGETPU_LIB)
        return None
    except OSError as e:
        return _first_line(e, 120)


def _edgetpu_delegates(load_delegate: Any, mode: str) -> list[Any]:
    """[the Edge TPU delegate], or [] with a warning ("prefer") or an error ("require")."""
    problem = edgetpu_library_error()
    if problem is None:
        try:
            return [load_delegate(EDGETPU_LIB)]
        except (ValueError, OSError, RuntimeError) as e:
            problem = _first_line(e, 120)
    msg = f"Edge TPU delegate {EDGETPU_LIB} not available ({problem})"
    if mode == "require":
        raise BadInput(f"{msg}; install it with {EDGETPU_INSTALL}") from None
    warnings.warn(f"{msg}; running on the CPU instead", RuntimeWarning, stacklevel=4)
    return []


def tflite_interpreter(
    model: bytes,
    *,
    name: str = "model",
    threads: int | None = None,
    prefer: str = "litert",
    edgetpu: str = "no",  # "no" | "prefer" | "require"
    preserve_all_tensors: bool = False,
    allocate: bool = True,
) -> tuple[Any, str]:
    """(a TFLite interpreter over `model`, backend name): the one place interpreters are built."""
    interpreter_cls, load_delegate, backend = import_tflite_interpreter(prefer)
    delegates = _edgetpu_delegates(load_delegate, edgetpu) if edgetpu != "no" else []
    if delegates:
        backend += "+edgetpu"
    kwargs: dict[str, Any] = {"model_content": model, "num_threads": threads}
    if delegates:
        kwargs["experimental_delegates"] = delegates
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    try:
        with warnings.catch_warnings(), native_info_filtered():
            warnings.simplefilter("ignore", DeprecationWarning)
            interp = interpreter_cls(**kwargs)
            if allocate:
                interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise BadInput(f"cannot load {name}: {_first_line(e)}") from None
    return interp, backend


def onnx_session(
    model: bytes,
    *,
    name: str = "model",
    threads: int | None = None,
    profile_prefix: str | None = None,
) -> Any:
    """An ONNX Runtime CPU session over `model`: the one place sessions are built.
    `profile_prefix` turns on ORT's per-node profiling (a JSON trace file with that prefix)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingRuntime(f"onnxruntime is not installed; install with {ORT_INSTALL}") from None
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception classes
        raise BadInput(f"cannot load {name}: {_first_line(e)}") from None


class Backend:
    """One loaded model. `run` takes a model-ready batch and returns the raw first output."""

    name = "?"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    batch_dynamic: bool

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def invoke(self) -> None:
        """Invoke on whatever input is already set (for bare timing)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _single_input(n: int) -> None:
    if n != 1:
        raise BadInput(f"model has {n} inputs; edgecnn runs single-image classifiers")


def _fixed_image_input(shape: tuple[int, ...]) -> None:
    """A 4-D image batch whose H, W and C are fixed (only the batch axis may be dynamic)."""
    if len(shape) != 4:
        raise BadInput(
            f"model input is {len(shape)}-D {list(shape)}; edgecnn runs 4-D image batches"
        )
    if any(v <= 0 for v in shape[1:]):
        raise BadInput(f"model input {list(shape)} is dynamic; edgecnn needs a fixed H, W and C")


class TFLiteBackend(Backend):
    def __init__(
        self,
        model: bytes,
        name: str = "model",
        threads: int | None = None,
        prefer: str = "litert",
        edgetpu: str = "no",
    ) -> None:
        self.interp, self.name = tflite_interpreter(
            model, name=name, threads=threads, prefer=prefer, edgetpu=edgetpu, allocate=False
        )
        self.edgetpu_active = self.name.endswith("+edgetpu")
        ins = self.interp.get_input_details()
        _single_input(len(ins))
        _fixed_image_input(tflite_tensor_info(ins[0]).shape)
        try:
            with native_info_filtered():  # XNNPACK announces itself when tensors are allocated
                self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise BadInput(f"cannot load {name}: {_first_line(e)}") from None
        outs = self.interp.get_output_details()
        self._in, self._out = ins[0], outs[0]
        self.inputs = [tflite_tensor_info(ins[0])]
        self.outputs = [tflite_tensor_info(o) for o in outs]
        self.batch_dynamic = self.inputs[0].shape[0] == -1 and not self.edgetpu_active
        self._batch = int(self._in["shape"][0])

    def _resize(self, n: int) -> None:
        shape = [n, *self._in["shape"][1:]]
        self.interp.resize_tensor_input(self._in["index"], shape, strict=False)
        self.interp.allocate_tensors()
        self._batch = n

    def run(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if n != self._batch:
            if not self.batch_dynamic and n > 1:
                return np.concatenate([self.run(x[i : i + 1]) for i in range(n)])
            self._resize(n)
        self.interp.set_tensor(self._in["index"], x)
        self.interp.invoke()
        return self.interp.get_tensor(self._out["index"])

    def invoke(self) -> None:
        self.interp.invoke()

    def close(self) -> None:
        self.interp = None


def tflite_tensor_info(d: dict[str, Any]) -> TensorInfo:
    """A LiteRT tensor detail as TensorInfo (shape from the signature: -1 where dynamic)."""
    sig = d.get("shape_signature")
    shape = sig if sig is not None and len(sig) else d["shape"]
    scale, zp = d["quantization"]
    return TensorInfo(
        d["name"], tuple(int(v) for v in shape), np.dtype(d["dtype"]), float(scale), int(zp)
    )


def onnx_tensor_info(a: Any) -> TensorInfo:
    shape = tuple(v if isinstance(v, int) and v > 0 else -1 for v in a.shape)
    t = a.type.removeprefix("tensor(").removesuffix(")")
    dtype = np.dtype({"float": "float32", "double": "float64"}.get(t, t))
    return TensorInfo(a.name, shape, dtype, 0.0, 0)


class OnnxBackend(Backend):
    def __init__(self, model: bytes, name: str = "model", threads: int | None = None) -> None:
        self.name = "onnxruntime"
        self._model, self._threads = model, threads
        self.sess = onnx_session(model, name=name, threads=threads)
        ins = self.sess.get_inputs()
        _single_input(len(ins))
        self._in_name = ins[0].name
        self.inputs = [onnx_tensor_info(ins[0])]
        self.outputs = [onnx_tensor_info(o) for o in self.sess.get_outputs()]
        self.batch_dynamic = self.inputs[0].shape[0] == -1
        self._last: np.ndarray | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        if not self.batch_dynamic and x.shape[0] != self.inputs[0].shape[0]:
            return np.concatenate([self.run(x[i : i + 1]) for i in range(x.shape[0])])
        self._last = x
        return self.sess.run(None, {self._in_name: x})[0]

    def invoke(self) -> None:
        self.sess.run(None, {self._in_name: self._last})

    def profile_nodes(self, x: np.ndarray, runs: int = 30) -> list[dict[str, Any]]:
        """Mean time per graph node over `runs` invocations, slowest first (ORT profiling)."""
        import json
        import tempfile

        with tempfile.TemporaryDirectory(prefix="edgecnn-ortprof-") as tmp:
            sess = onnx_session(self._model, threads=self._threads, profile_prefix=f"{tmp}/ort")
            for _ in range(runs):
                sess.run(None, {self._in_name: x})
            events = json.loads(Path(sess.end_profiling()).read_text())
        total: dict[str, list[Any]] = {}
        for e in events:
            if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
                node = e["name"][: -len("_kernel_time")]
                entry = total.setdefault(node, [e.get("args", {}).get("op_name", "?"), 0.0])
                entry[1] += float(e.get("dur", 0)) / 1000.0
        rows = [{"node": n, "op": op, "ms": ms / runs} for n, (op, ms) in total.items()]
        return sorted(rows, key=lambda r: -r["ms"])

    def close(self) -> None:
        self.sess = None
