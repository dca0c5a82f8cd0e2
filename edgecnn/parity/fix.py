"""`parity --fix`: re-convert a failing int8 artifact with its worst layers kept in float.

Layers are ranked by the TFLite quantization debugger's per-layer statistic
(RMSE / scale of each op's int8 output against float, measured op by op on
calibration data, as in the LiteRT debugger guide). Candidates keep 0 (just
re-calibrated on the stratified training sample), 1, 2, 4, ... of the worst
layers in float; the first that passes the same parity check replaces the
artifact (the build directory is rewritten atomically, the manifest entry
updated). The size and latency cost against the failing artifact are reported.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.diagnose import layer_name
from edgecnn.fsutil import atomic_dir, sha256_file
from edgecnn.manifest import save_manifest
from edgecnn.parity import (
    Thresholds,
    _split_args,
    artifact_predict,
    check_build,
    compare,
    load_eval_data,
    reference_predict,
    stratified_limit,
    verdict,
)

MAX_FLOAT_LAYERS = 16
DEBUG_SAMPLES = 64
LATENCY_RUNS = 100


def _calibration(manifest: dict[str, Any], data_name: str, shape: list[int]) -> np.ndarray:
    """The stratified training sample convert uses (same size and seed as recorded)."""
    from edgecnn.data import load_dataset
    from edgecnn.optimize.quantize import calibration_images

    args = _split_args(manifest, data_name)
    ds = load_dataset(data_name, **args).adapted(tuple(shape))
    cal = (manifest["model"].get("optimization") or {}).get("calibration") or {}
    n = int(cal.get("samples") or 200)
    return calibration_images(
        ds.x_train, ds.y_train, n, int(args.get("seed", 0)), ds.classes_to_cover
    )


def _converter(model: Any, calib: np.ndarray) -> Any:
    import tensorflow as tf

    from edgecnn.optimize.quantize import representative_dataset

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset(calib)
    return conv


class LayerRanker:
    """The quantization debugger on the reference model, kept for selective re-quantization."""

    def __init__(self, model: Any, calib: np.ndarray) -> None:
        import tensorflow as tf

        from edgecnn.export.quiet import captured_output
        from edgecnn.optimize.quantize import representative_dataset

        with captured_output():
            self.debugger = tf.lite.experimental.QuantizationDebugger(
                converter=_converter(model, calib),
                debug_dataset=representative_dataset(calib[:DEBUG_SAMPLES]),
            )
            self.debugger.run()
        buf = io.StringIO()
        self.debugger.layer_statistics_dump(buf)
        rows = []
        for r in csv.DictReader(io.StringIO(buf.getvalue())):
            scale = float(r["scale"] or 0) or 1.0
            rows.append(
                {
                    "tensor": r["tensor_name"],
                    "op": r["op_name"],
                    "layer": layer_name(r["tensor_name"]),
                    "rmse_scale": float(np.sqrt(float(r["mean_squared_error"]))) / scale,
                }
            )
        # Softmax output quantization is fixed (1/256); keeping it in float gains nothing.
        compute = [r for r in rows if r["op"] not in ("SOFTMAX", "RESHAPE", "MAX_POOL_2D")]
        self.graph_order = list(dict.fromkeys(r["layer"] for r in compute))
        self.layers = sorted(compute, key=lambda r: -r["rmse_scale"])

    def successor(self, layer: str) -> str | None:
        """The next compute layer: it reads `layer`'s output, so keeping `layer` in float
        only helps if that tensor is not re-quantized on the way in."""
        order = self.graph_order
        i = order.index(layer) if layer in order else -1
        return order[i + 1] if 0 <= i < len(order) - 1 else None

    def selective_tflite(self, tensors: list[str], integer_io: bool) -> bytes:
        import tensorflow as tf

        from edgecnn.export.quiet import captured_output

        with captured_output():
            self.debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=list(tensors), fully_quantize=integer_io
            )
            return bytes(self.debugger.get_nondebug_quantized_model())


def _onnx_nodes_for(float_onnx: Path, layers: list[str]) -> list[str]:
    """ONNX node names belonging to Keras `layers`, before and after ORT's pre-processing
    (which fuses e.g. MatMul+Add into ".../MatMulAddFusion" Gemm nodes)."""
    import re

    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgecnn.export.quiet import captured_output

    graphs = [onnx.load(str(float_onnx)).graph]
    pre = float_onnx.with_name(float_onnx.stem + ".pre.onnx")
    with captured_output():
        try:
            quant_pre_process(str(float_onnx), str(pre))
            graphs.append(onnx.load(str(pre)).graph)
        except Exception:
            pass
    wanted = set(layers)
    names: list[str] = []
    for g in graphs:
        for n in g.node:
            segments = {re.sub(r"_\d+$", "", p) for p in n.name.split("/")}
            if segments & wanted and n.name not in names:
                names.append(n.name)
    return names


def _entry(path: Path, art: dict[str, Any], float_layers: list[str]) -> dict[str, Any]:
    if art["format"] == "tflite":
        from edgecnn.export.tflite import tflite_io

        ins, outs = tflite_io(path)
    else:
        from edgecnn.export.onnx import onnx_io

        ins, outs = onnx_io(path)
    return {
        **art,
        "size": path.stat().st_size,
        "gzip_size": len(gzip.compress(path.read_bytes(), compresslevel=9)),
        "sha256": sha256_file(path),
        "inputs": ins,
        "outputs": outs,
        "selective_quantization": {"float_layers": float_layers, "by": "edgecnn parity --fix"},
    }


def _latency_ms(build: Path, art_path: str) -> float:
    """Median single-image latency through the runtime (same process for both: a relative cost)."""
    from edgecnn.runtime import Runner

    r = Runner(build, artifact=art_path, threads=1)
    try:
        h, w, c = r.input_spec.shape
        x = r._to_model(np.zeros((1, h, w, c), np.uint8))
        for _ in range(5):
            r.backend.run(x)
        times = []
        for _ in range(LATENCY_RUNS):
            t0 = time.perf_counter()
            r.backend.run(x)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000
    finally:
        r.close()


def layer_order(row: dict[str, Any], ranker: LayerRanker) -> list[str]:
    """Layer names to keep in float, worst first: the failing artifact's own diagnosis (error
    each layer adds, measured on that artifact), then the debugger's op-by-op ranking."""
    names: list[str] = []
    known = {lay["layer"] for lay in ranker.layers}
    for lay in row.get("diagnosis", {}).get("layers") or []:
        if lay["added_error"] > 0 and lay["layer"] in known and lay["layer"] not in names:
            names.append(lay["layer"])
            nxt = ranker.successor(lay["layer"])
            if nxt and nxt not in names:
                names.append(nxt)
    for lay in ranker.layers:
        if lay["layer"] not in names:
            names.append(lay["layer"])
    return names


def _candidate_counts(n: int) -> list[int]:
    ks, k = [0], 1
    while k <= min(n, MAX_FLOAT_LAYERS):
        ks.append(k)
        k *= 2
    return ks


def fix_build(
    report: dict[str, Any],
    build_dir: str | Path,
    data_name: str,
    split: str = "test",
    limit: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Try to fix every failing int8 artifact in `report`; updates `report` in place."""
    say = progress or (lambda msg: None)
    th = Thresholds(**report["thresholds"])
    build, manifest = check_build(build_dir)
    failing = {
        r["artifact"]: r
        for r in report["artifacts"]
        if not r["passed"]
        and r.get("precision") == "int8"
        and r.get("format") in ("tflite", "onnx")
    }
    fix: dict[str, Any] = {"artifacts": []}
    report["fix"] = fix
    if not failing:
        fix["summary"] = "nothing to fix: only int8 TFLite/ONNX artifacts can keep layers in float"
        return fix
    input_problems = [
        f
        for name in failing
        for f in failing[name].get("diagnosis", {}).get("findings", [])
        if f["kind"] == "input_range"
        and "pixel range" in f["message"]
        and "manifest's" in f["message"]
    ]

    from edgecnn.commands.common import quiet_tensorflow

    quiet_tensorflow()
    from edgecnn.zoo.io import load_keras_model

    src = (manifest["model"].get("source") or {}).get("path") or "model.keras"
    model = load_keras_model(build / src)
    say("ranking layers with the TFLite quantization debugger")
    calib = _calibration(manifest, data_name, manifest["model"]["input"]["shape"])
    ranker = LayerRanker(model, calib)
    x, y, _ = load_eval_data(manifest, data_name, split)
    if limit:
        idx = stratified_limit(y, limit)
        x, y = x[idx], y[idx]
    ref = reference_predict(build, manifest, x)
    ref_top1 = float((ref.argmax(axis=1) == y).mean())

    kept: dict[str, tuple[Path, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="edgecnn-fix-") as tmpdir:
        work = Path(tmpdir) / "build"
        shutil.copytree(build, work)
        float_onnx = None
        for name, row in failing.items():
            art = next(a for a in manifest["artifacts"] if a["path"] == name)
            result: dict[str, Any] = {"artifact": name, "kept": False, "tried": []}
            fix["artifacts"].append(result)
            integer_io = (art.get("inputs") or [{}])[0].get("dtype") in ("int8", "uint8")
            order = layer_order(row, ranker)
            for k in _candidate_counts(len(order)):
                names = order[:k]
                layers = [lay for lay in ranker.layers if lay["layer"] in names]
                say(f"{name}: {k} layer(s) in float {names}")
                target = work / name
                if art["format"] == "tflite":
                    target.write_bytes(
                        ranker.selective_tflite([lay["tensor"] for lay in layers], integer_io)
                    )
                else:
                    from edgecnn.export import onnx as ox

                    if float_onnx is None:
                        float_onnx = Path(tmpdir) / "float.onnx"
                        ox.to_onnx_float(model, float_onnx)
                    ox.quantize_onnx_qdq(
                        float_onnx,
                        target,
                        calib,
                        nodes_to_exclude=_onnx_nodes_for(float_onnx, names) if names else None,
                    )
                entry = _entry(target, art, names)
                m2 = json.loads(json.dumps(manifest))
                m2["artifacts"] = [entry if a["path"] == name else a for a in m2["artifacts"]]
                save_manifest(work, m2)
                probs, _ = artifact_predict(work, entry, x)
                cand = compare(ref, probs, y)
                reasons = verdict(cand, ref_top1, th)
                result["tried"].append(
                    {
                        "float_layers": names,
                        "top1": cand["top1"],
                        "agreement": cand["agreement"],
                        "passed": not reasons,
                    }
                )
                if not reasons:
                    result.update(kept=True, float_layers=names)
                    result["size_before"], result["size_after"] = art["size"], entry["size"]
                    result["latency_ms_before"] = _latency_ms(build, name)
                    result["latency_ms_after"] = _latency_ms(work, name)
                    keep = Path(tmpdir) / f"keep-{Path(name).name}"
                    shutil.copy2(target, keep)
                    kept[name] = (keep, entry)
                    row.update(cand)
                    row["drop"] = (ref_top1 - cand["top1"]) * 100
                    row["reasons_before_fix"] = row["reasons"]
                    row["reasons"], row["passed"], row["fixed"] = [], True, True
                    row["size"] = entry["size"]
                    row["_fixed_pred"] = probs.argmax(axis=1)  # run_parity re-plots its confusion
                    break
            # Leave the working copy as the original for the next artifact.
            shutil.copy2(build / name, work / name)
            save_manifest(work, manifest)

        if kept:
            with atomic_dir(build) as tmp:
                shutil.copytree(build, tmp, dirs_exist_ok=True)
                final = json.loads(json.dumps(manifest))
                for name, (keep, entry) in kept.items():
                    shutil.copy2(keep, tmp / name)
                    final["artifacts"] = [
                        entry if a["path"] == name else a for a in final["artifacts"]
                    ]
                save_manifest(tmp, final)

    report["failed"] = [r["artifact"] for r in report["artifacts"] if not r["passed"]]
    report["passed"] = not report["failed"]
    parts = []
    for res in fix["artifacts"]:
        if res["kept"]:
            what = (
                f"{len(res['float_layers'])} layer(s) kept in float ({', '.join(res['float_layers'])})"
                if res["float_layers"]
                else "re-calibration on a stratified training sample (no layer in float)"
            )
            res["size_cost"] = res["size_after"] - res["size_before"]
            res["latency_cost"] = res["latency_ms_after"] / max(res["latency_ms_before"], 1e-9)
            parts.append(
                f"{res['artifact']} fixed by {what}: size {res['size_before']:,} -> "
                f"{res['size_after']:,} bytes ({res['size_cost']:+,}), latency "
                f"{res['latency_ms_before']:.3f} -> {res['latency_ms_after']:.3f} ms "
                f"(x{res['latency_cost']:.2f})"
            )
        else:
            parts.append(
                f"{res['artifact']} still fails with up to "
                f"{max(len(t['float_layers']) for t in res['tried'])} layer(s) in float; left unchanged"
            )
    if input_problems and not all(r["kept"] for r in fix["artifacts"]):
        parts.append("the manifest's input range is wrong: selective quantization cannot fix that")
    fix["summary"] = "; ".join(parts)
    return fix
