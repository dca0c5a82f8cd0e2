"""Why an artifact failed parity: known failure shapes in plain words, and per-layer error.

Known shapes (checked on every failing artifact):
  * every prediction is (nearly) one class;
  * the input quantization (scale, zero point) or the manifest's pixel range does
    not match the 0-255 pixels the model was trained and calibrated on;
  * the int8 calibration set was missing classes (manifest
    `model.optimization.calibration.class_counts`, written by convert).

Per-layer error (int8 TFLite): the artifact and its float twin run side by side
with LiteRT keeping every intermediate tensor; each int8 op output is dequantized
and compared with the float one. The accumulated relative error grows along the
graph, so layers are ranked by the error they *add*, and the fraction of float
values outside the layer's int8 range (clipping) is reported, since clipping is
what a bad calibration looks like.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.manifest import InputSpec

ONE_CLASS_SHARE = 0.9  # predictions in one class above this while the labels are balanced
RANGE_TOLERANCE = 1.5  # input range covered vs pixel range fed: factor before we call it wrong
LAYER_SAMPLES = 128


# -- known failure shapes --------------------------------------------------------------------


def one_class(pred: np.ndarray, y: np.ndarray, labels: list[str]) -> dict[str, Any] | None:
    counts = np.bincount(pred, minlength=len(labels))
    top = int(counts.argmax())
    share = counts[top] / max(1, len(pred))
    true_share = np.bincount(y, minlength=len(labels)).max() / max(1, len(y))
    if share < ONE_CLASS_SHARE or true_share > 0.6:
        return None
    every = "every prediction is" if share == 1.0 else f"{share:.0%} of predictions are"
    return {
        "kind": "one_class",
        "message": f"{every} one class ('{labels[top]}'), though the most common true class "
        f"is only {true_share:.0%} of the data",
        "class": labels[top],
        "share": float(share),
    }


def _covered_range(scale: float, zero_point: int, dtype: str) -> tuple[float, float]:
    info = np.iinfo(np.dtype(dtype))
    return scale * (info.min - zero_point), scale * (info.max - zero_point)


def input_quantization(build: Path, art: dict[str, Any]) -> dict[str, Any] | None:
    """The quantization the device applies to the input: {dtype, scale, zero_point, source}."""
    path = build / art["path"]
    recorded = (art.get("inputs") or [{}])[0].get("quantization") if art.get("inputs") else None
    if art.get("format") == "tflite":
        from edgecnn.runtime.backends import import_tflite_interpreter, native_info_filtered

        interp_cls, _, _ = import_tflite_interpreter()
        with native_info_filtered():
            it = interp_cls(model_path=str(path))
        d = it.get_input_details()[0]
        scale, zp = d["quantization"]
        if not scale:
            return None
        return {
            "dtype": np.dtype(d["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zp),
            "recorded": recorded,
            "where": "model input tensor",
        }
    if art.get("format") == "onnx":
        import onnx
        from onnx import numpy_helper

        m = onnx.load(str(path))
        inp = m.graph.input[0]
        elem = inp.type.tensor_type.elem_type
        if elem in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            # Integer ONNX I/O carries no scale of its own: the runtime takes the manifest's.
            if not recorded:
                return None
            return {
                "dtype": "int8" if elem == onnx.TensorProto.INT8 else "uint8",
                "scale": float(recorded["scale"]),
                "zero_point": int(recorded["zero_point"]),
                "recorded": recorded,
                "where": "manifest (integer ONNX input)",
            }
        inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
        for node in m.graph.node:
            if node.op_type == "QuantizeLinear" and node.input[0] == inp.name:
                scale = inits.get(node.input[1])
                zp = inits.get(node.input[2]) if len(node.input) > 2 else None
                if scale is None or scale.size != 1:
                    return None
                return {
                    "dtype": np.dtype(zp.dtype).name if zp is not None else "uint8",
                    "scale": float(scale.reshape(-1)[0]),
                    "zero_point": int(zp.reshape(-1)[0]) if zp is not None else 0,
                    "recorded": None,
                    "where": "first QuantizeLinear of the ONNX graph",
                }
    return None


def input_range(build: Path, manifest: dict[str, Any], art: dict[str, Any]) -> list[dict[str, Any]]:
    """Findings when the input scale/zero point, the manifest and 0-255 pixels disagree."""
    spec = InputSpec.from_dict(manifest["model"]["input"])
    lo, hi = (float(v) for v in spec.pixel_range)
    out: list[dict[str, Any]] = []
    q = None
    try:
        q = input_quantization(build, art)
    except Exception:  # a model the runtime could run but we cannot inspect: no finding
        q = None
    if q:
        clo, chi = _covered_range(q["scale"], q["zero_point"], q["dtype"])
        span, fed = chi - clo, hi - lo
        ratio = fed / span if span else float("inf")
        offset = abs(lo - clo) / span if span else float("inf")
        if not (1 / RANGE_TOLERANCE <= ratio <= RANGE_TOLERANCE) or offset > 0.25:
            out.append(
                {
                    "kind": "input_range",
                    "message": f"input scale/zero-point do not match the manifest's pixel range: "
                    f"the int8 input (scale {q['scale']:.4g}, zero point {q['zero_point']}, "
                    f"{q['where']}) covers {clo:.4g}..{chi:.4g} but the manifest feeds {lo:g}..{hi:g}",
                    "covered": [clo, chi],
                    "pixel_range": [lo, hi],
                }
            )
        rec = q.get("recorded")
        if rec and q["where"] == "model input tensor":
            if (
                abs(float(rec["scale"]) - q["scale"]) > 1e-6 * max(1.0, q["scale"])
                or int(rec["zero_point"]) != q["zero_point"]
            ):
                out.append(
                    {
                        "kind": "input_range",
                        "message": f"the manifest records input scale {rec['scale']:.4g} / zero point "
                        f"{rec['zero_point']} but the model's input has scale {q['scale']:.4g} / "
                        f"zero point {q['zero_point']}",
                    }
                )
    if (lo, hi) != (0.0, 255.0) and not out:
        out.append(
            {
                "kind": "input_range",
                "message": f"the manifest's pixel range {lo:g}..{hi:g} is not the 0..255 pixels "
                "the model was trained on (normalization is baked into the model)",
                "pixel_range": [lo, hi],
            }
        )
    return out


def calibration_classes(manifest: dict[str, Any]) -> dict[str, Any] | None:
    cal = (manifest["model"].get("optimization") or {}).get("calibration") or {}
    counts = cal.get("class_counts")
    if (manifest["model"].get("data") or {}).get("label_space"):
        return None  # e.g. ImageNet-1k checked on a few photos: most classes have no images
    labels = [str(v) for v in manifest["model"]["labels"]]
    if not counts:
        return None
    missing = [labels[i] if i < len(labels) else str(i) for i, c in enumerate(counts) if not c]
    missing += labels[len(counts) :]
    if not missing:
        return None
    present = [labels[i] for i, c in enumerate(counts) if c]
    shown = ", ".join(repr(m) for m in missing[:6]) + (" ..." if len(missing) > 6 else "")
    return {
        "kind": "calibration_classes",
        "message": f"the calibration set is missing classes: {len(missing)} of {len(labels)} "
        f"absent ({shown}); it held only {', '.join(repr(p) for p in present[:6])}. "
        "Re-convert with a stratified calibration set (edgecnn convert does this by default)",
        "missing": missing,
        "present": present,
    }


# -- per-layer error -------------------------------------------------------------------------


def layer_name(tensor: str) -> str:
    """'cnn_mnist_1/conv1_1/Relu;cnn_mnist_1/conv1_1/BiasAdd' -> 'conv1'."""
    first = tensor.split(";")[0].split(":")[0]
    parts = [p for p in first.split("/") if p]
    name = parts[-2] if len(parts) >= 2 else (parts[0] if parts else tensor)
    if name.startswith("StatefulPartitionedCall"):
        return "output"
    return re.sub(r"_\d+$", "", name)


def _run_all_tensors(path: Path, x: np.ndarray) -> tuple[Any, list[dict[str, Any]]]:
    """Invoke `path` on float pixels `x` keeping all tensors; returns (interpreter, ops)."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.runtime.backends import native_info_filtered

    with warnings.catch_warnings(), native_info_filtered():
        warnings.simplefilter("ignore")
        it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    d = it.get_input_details()[0]
    sig = d.get("shape_signature")
    if sig is not None and len(sig) and int(sig[0]) == -1:
        it.resize_tensor_input(d["index"], [len(x), *d["shape"][1:]])
    elif int(d["shape"][0]) != len(x):
        raise ValueError("static batch")
    it.allocate_tensors()
    scale, zp = d["quantization"]
    feed = x.astype(np.float32)
    if np.dtype(d["dtype"]).kind in "iu" and scale:
        info = np.iinfo(d["dtype"])
        feed = np.clip(np.rint(feed / scale + zp), info.min, info.max)
    it.set_tensor(d["index"], feed.astype(d["dtype"]))
    it.invoke()
    return it, it._get_ops_details()


def channel_relative_error(f: np.ndarray, deq: np.ndarray) -> float:
    """Mean over live channels of RMSE / RMS: one outlier channel that widens a per-tensor
    int8 range wipes out the others, which a whole-tensor ratio would hide."""
    c = f.shape[-1] if f.ndim > 1 else 1
    f2, d2 = f.reshape(-1, c), deq.reshape(-1, c)
    rms = np.sqrt(np.mean(f2**2, axis=0))
    err = np.sqrt(np.mean((d2 - f2) ** 2, axis=0))
    live = rms > 1e-6 * max(float(rms.max()), 1e-30)
    return float(np.mean(err[live] / rms[live])) if live.any() else 0.0


def tflite_layer_errors(int8_path: Path, float_path: Path, x: np.ndarray) -> list[dict[str, Any]]:
    """Per op output of the int8 model: error vs its float twin, worst (added error) first."""
    qi, qops = _run_all_tensors(int8_path, x)
    fi, fops = _run_all_tensors(float_path, x)
    fdetails = {t["name"]: t for t in fi.get_tensor_details()}
    qdetails = qi.get_tensor_details()
    rows: list[dict[str, Any]] = []
    worst_so_far = 0.0
    for op in qops:
        if op["op_name"] == "DELEGATE":  # XNNPACK partitions repeat their inner ops' outputs
            continue
        for o in op["outputs"]:
            t = qdetails[o]
            scale, zp = t["quantization"]
            ft = fdetails.get(t["name"])
            if not scale or np.dtype(t["dtype"]).kind not in "iu" or ft is None:
                continue
            try:
                q = qi.get_tensor(o).astype(np.float64)
                f = fi.get_tensor(ft["index"]).astype(np.float64)
            except ValueError:
                continue
            if q.shape != f.shape:
                continue
            deq = (q - zp) * scale
            rel = channel_relative_error(f, deq)
            lo, hi = _covered_range(scale, zp, np.dtype(t["dtype"]).name)
            clipped = float(np.mean((f < lo - scale / 2) | (f > hi + scale / 2)))
            rows.append(
                {
                    "layer": layer_name(t["name"]),
                    "tensor": t["name"],
                    "op": op["op_name"],
                    "rel_error": rel,
                    "added_error": rel - worst_so_far,
                    "clipped": clipped,
                    "scale": float(scale),
                    "zero_point": int(zp),
                }
            )
            worst_so_far = max(worst_so_far, rel)
    rows.sort(key=lambda r: -r["added_error"])
    return rows


def _float_twin(build: Path, manifest: dict[str, Any], tmp: Path) -> Path:
    for a in manifest["artifacts"]:
        if a.get("format") == "tflite" and a.get("precision") == "float32":
            return build / a["path"]
    # No float TFLite in the build: convert the reference (same converter, same tensor names).
    from edgecnn.export.tflite import to_tflite
    from edgecnn.zoo.io import load_keras_model

    model = load_keras_model(
        build / ((manifest["model"].get("source") or {}).get("path") or "model.keras")
    )
    p = tmp / "float_twin.tflite"
    p.write_bytes(to_tflite(model, "float32"))
    return p


def layer_errors_for(
    build: Path, manifest: dict[str, Any], art: dict[str, Any], x: np.ndarray
) -> list[dict[str, Any]]:
    """Per-layer errors of an int8 artifact (TFLite; for ONNX, its int8 TFLite sibling)."""
    target = art
    if art.get("format") != "tflite":
        sib = [
            a
            for a in manifest["artifacts"]
            if a.get("format") == "tflite" and a.get("precision") == "int8"
        ]
        if not sib:
            return []
        target = sib[0]
    xs = x[:LAYER_SAMPLES]
    with tempfile.TemporaryDirectory(prefix="edgecnn-diag-") as tmp:
        twin = _float_twin(build, manifest, Path(tmp))
        return tflite_layer_errors(build / target["path"], twin, xs)


# -- putting it together ---------------------------------------------------------------------


def diagnose_failures(
    report: dict[str, Any],
    build: Path,
    manifest: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    predictions: dict[str, np.ndarray],
) -> None:
    """Add a `diagnosis` {findings, layers, note} to every failing row of `report`."""
    labels = report["labels"]
    by_path = {a["path"]: a for a in manifest["artifacts"]}
    for row in report["artifacts"]:
        if row["passed"]:
            continue
        art = by_path[row["artifact"]]
        findings: list[dict[str, Any]] = []
        pred = predictions[row["artifact"]].argmax(axis=1)
        shape = one_class(pred, y, labels)
        if shape:
            findings.append(shape)
        findings += input_range(build, manifest, art)
        int8 = art.get("precision") == "int8"
        if int8:
            cal = calibration_classes(manifest)
            if cal:
                findings.append(cal)
        diag: dict[str, Any] = {"findings": findings, "layers": []}
        if int8:
            try:
                diag["layers"] = layer_errors_for(build, manifest, art, x)
                if art.get("format") != "tflite" and diag["layers"]:
                    diag["note"] = "per-layer errors measured on the int8 TFLite sibling"
            except Exception as e:  # diagnosis must never hide the verdict
                diag["note"] = f"per-layer analysis unavailable: {str(e).splitlines()[0][:120]}"
        if not findings:
            diag["findings"].append(
                {
                    "kind": "unrecognised",
                    "message": "no known failure shape (one class, input range, calibration "
                    "classes); see the per-layer errors"
                    + ("" if int8 else " (float artifact: compare its export with the reference)"),
                }
            )
        row["diagnosis"] = diag
