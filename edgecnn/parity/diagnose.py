"""Why an artifact failed parity: known failure shapes in plain words, and per-layer error.

Known shapes (checked on every failing artifact), each a `Finding` with a typed code:
  * every prediction is (nearly) one class;
  * the input quantization (scale, zero point) or the manifest's pixel range does
    not match the 0-255 pixels the model was trained and calibrated on;
  * the int8 calibration set was missing classes (manifest
    `model.optimization.calibration.class_counts`, written by convert).

Per-layer error (int8, in the format whose intermediate tensors the runtime can read:
TFLite): the artifact and its float twin run side by side keeping every intermediate
tensor; each int8 op output is dequantized and compared with the float one. The
accumulated relative error grows along the graph, so layers are ranked by the error
they *add*, and the fraction of float values outside the layer's int8 range
(clipping) is reported, since clipping is what a bad calibration looks like.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.manifest import Artifact, Manifest
from edgecnn.runtime.formats import FORMATS, get_format

ONE_CLASS_SHARE = 0.9  # predictions in one class above this while the labels are balanced
RANGE_TOLERANCE = 1.5  # input range covered vs pixel range fed: factor before we call it wrong
LAYER_SAMPLES = 128


class Code(str, Enum):
    """What a finding is: parity --fix and tests branch on these, never on message text."""

    ONE_CLASS = "one_class"
    INPUT_SCALE_VS_PIXEL_RANGE = "input_scale_vs_pixel_range"
    RECORDED_QUANT_MISMATCH = "recorded_quantization_mismatch"
    PIXEL_RANGE_NOT_0_255 = "pixel_range_not_0_255"
    CALIBRATION_CLASSES = "calibration_classes"
    UNRECOGNISED = "unrecognised"


# The manifest's input description is wrong: selective quantization cannot fix that.
MANIFEST_INPUT_CODES = (Code.INPUT_SCALE_VS_PIXEL_RANGE, Code.PIXEL_RANGE_NOT_0_255)
KIND = {
    Code.ONE_CLASS: "one_class",
    Code.INPUT_SCALE_VS_PIXEL_RANGE: "input_range",
    Code.RECORDED_QUANT_MISMATCH: "input_range",
    Code.PIXEL_RANGE_NOT_0_255: "input_range",
    Code.CALIBRATION_CLASSES: "calibration_classes",
    Code.UNRECOGNISED: "unrecognised",
}


@dataclass
class Finding:
    code: Code
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON: `kind` (the family, as before), `code`, `message`, details."""
        return {
            "kind": KIND[self.code],
            "code": self.code.value,
            "message": self.message,
            **self.details,
        }


def has_code(findings: list[dict[str, Any]], codes: tuple[Code, ...]) -> bool:
    return any(f.get("code") in {c.value for c in codes} for f in findings)


# -- known failure shapes --------------------------------------------------------------------


def one_class(pred: np.ndarray, y: np.ndarray, labels: list[str]) -> Finding | None:
    counts = np.bincount(pred, minlength=len(labels))
    top = int(counts.argmax())
    share = counts[top] / max(1, len(pred))
    true_share = np.bincount(y, minlength=len(labels)).max() / max(1, len(y))
    if share < ONE_CLASS_SHARE or true_share > 0.6:
        return None
    every = "every prediction is" if share == 1.0 else f"{share:.0%} of predictions are"
    return Finding(
        Code.ONE_CLASS,
        f"{every} one class ('{labels[top]}'), though the most common true class "
        f"is only {true_share:.0%} of the data",
        {"class": labels[top], "share": float(share)},
    )


def _covered_range(scale: float, zero_point: int, dtype: str) -> tuple[float, float]:
    info = np.iinfo(np.dtype(dtype))
    return scale * (info.min - zero_point), scale * (info.max - zero_point)


def input_quantization(build: Path, manifest: Manifest, art: Artifact) -> dict[str, Any] | None:
    """How the device quantizes the input: what the runtime's own quantizer applies, or, for a
    float input, the format's first quantize op inside the graph."""
    from edgecnn.runtime import Runner

    with Runner(build, artifact=art.path, manifest=manifest) as r:
        tin, q = r.backend.inputs[0], r._quant
        if q.dtype.kind in "iu" and q.scale:
            where = (
                "model input tensor"
                if tin.scale
                else "manifest (integer input without its own scale)"
            )
            return {
                "dtype": q.dtype.name,
                "scale": q.scale,
                "zero_point": q.zero_point,
                "where": where,
            }
    inner = get_format(art.format).inner_input_quant
    found = inner(manifest.verify(build, art)) if inner else None
    if found:
        found["where"] = "first quantize op inside the graph"
    return found


def _scale_finding(q: dict[str, Any], lo: float, hi: float) -> Finding | None:
    clo, chi = _covered_range(q["scale"], q["zero_point"], q["dtype"])
    span, fed = chi - clo, hi - lo
    ratio = fed / span if span else float("inf")
    offset = abs(lo - clo) / span if span else float("inf")
    if 1 / RANGE_TOLERANCE <= ratio <= RANGE_TOLERANCE and offset <= 0.25:
        return None
    return Finding(
        Code.INPUT_SCALE_VS_PIXEL_RANGE,
        f"input scale/zero-point do not match the manifest's pixel range: the int8 input (scale "
        f"{q['scale']:.4g}, zero point {q['zero_point']}, {q['where']}) covers {clo:.4g}..{chi:.4g} "
        f"but the manifest feeds {lo:g}..{hi:g}",
        {"covered": [clo, chi], "pixel_range": [lo, hi]},
    )


def _recorded_finding(q: dict[str, Any], art: Artifact) -> Finding | None:
    rec = art.input_quantization()
    if rec is None or q["where"] != "model input tensor":
        return None
    if (
        abs(rec.scale - q["scale"]) <= 1e-6 * max(1.0, q["scale"])
        and rec.zero_point == q["zero_point"]
    ):
        return None
    return Finding(
        Code.RECORDED_QUANT_MISMATCH,
        f"the manifest records input scale {rec.scale:.4g} / zero point {rec.zero_point} but the "
        f"model's input has scale {q['scale']:.4g} / zero point {q['zero_point']}",
    )


def input_range(build: Path, manifest: Manifest, art: Artifact) -> list[Finding]:
    """Findings when the input scale/zero point, the manifest and 0-255 pixels disagree."""
    lo, hi = (float(v) for v in manifest.input.pixel_range)
    try:
        q = input_quantization(build, manifest, art)
    except Exception:  # a model the runtime could run but we cannot inspect: no finding
        q = None
    out = [f for f in ((_scale_finding(q, lo, hi), _recorded_finding(q, art)) if q else ()) if f]
    if (lo, hi) != (0.0, 255.0) and not out:
        out.append(Finding(
            Code.PIXEL_RANGE_NOT_0_255,
            f"the manifest's pixel range {lo:g}..{hi:g} is not the 0..255 pixels the model was "
            "trained on (normalization is baked into the model)",
            {"pixel_range": [lo, hi]},
        ))  # fmt: skip
    return out


def calibration_classes(manifest: Manifest) -> dict[str, Any] | None:
    """The calibration-missed-classes finding as a report dict, or None."""
    counts = manifest.optimization.get("calibration", {}).get("class_counts")
    if manifest.model_field("data").get("label_space") or not counts:
        return None  # e.g. ImageNet-1k checked on a few photos: most classes have no images
    labels = manifest.labels
    missing = [labels[i] if i < len(labels) else str(i) for i, c in enumerate(counts) if not c]
    missing += labels[len(counts) :]
    if not missing:
        return None
    present = [labels[i] for i, c in enumerate(counts) if c]
    shown = ", ".join(repr(m) for m in missing[:6]) + (" ..." if len(missing) > 6 else "")
    return Finding(
        Code.CALIBRATION_CLASSES,
        f"the calibration set is missing classes: {len(missing)} of {len(labels)} absent ({shown}); "
        f"it held only {', '.join(repr(p) for p in present[:6])}. Re-convert with a stratified "
        "calibration set (edgecnn convert does this by default)",
        {"missing": missing, "present": present},
    ).to_dict()


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
    """Invoke `path` on uint8 pixels `x` keeping all tensors; returns (interpreter, ops).

    The input goes through the runtime's own quantizer, as on the device."""
    from edgecnn.runtime.backends import read_model_bytes, tflite_interpreter
    from edgecnn.runtime.preprocess import InputQuantizer

    it, _ = tflite_interpreter(
        read_model_bytes(path), name=path.name, preserve_all_tensors=True, allocate=False
    )
    d = it.get_input_details()[0]
    sig = d.get("shape_signature")
    if sig is not None and len(sig) and int(sig[0]) == -1:
        it.resize_tensor_input(d["index"], [len(x), *d["shape"][1:]])
    elif int(d["shape"][0]) != len(x):
        raise ValueError("static batch")
    it.allocate_tensors()
    scale, zp = d["quantization"]
    quantize = InputQuantizer(np.dtype(d["dtype"]), scale, zp, [0.0, 255.0])
    it.set_tensor(d["index"], quantize(np.asarray(x, dtype=np.uint8)))
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


DEBUG_FORMAT = next(name for name, f in FORMATS.items() if f.tensor_debug)


def _float_twin(build: Path, manifest: Manifest, tmp: Path) -> Path:
    found = manifest.find(DEBUG_FORMAT, "float32")
    if found:
        return found.file(build)
    # No float twin in the build: export the reference (same converter, same tensor names).
    from edgecnn.export import EXPORTERS, ExportJob
    from edgecnn.zoo.io import load_keras_model

    model = load_keras_model(manifest.reference_path(build))
    p = tmp / "float_twin"
    EXPORTERS[DEBUG_FORMAT].export(ExportJob(model, np.zeros((0,)), tmp), "float32", p)
    return p


def layer_errors_for(
    build: Path, manifest: Manifest, art: Artifact, x: np.ndarray
) -> tuple[list[dict[str, Any]], str | None]:
    """(per-layer errors of an int8 artifact, a note when they were measured on a sibling):
    only one format exposes intermediate tensors, so other formats use its int8 sibling."""
    target = art if art.format == DEBUG_FORMAT else manifest.find(DEBUG_FORMAT, "int8")
    if target is None:
        return [], None
    note = (
        None if target is art else f"per-layer errors measured on the int8 {DEBUG_FORMAT} sibling"
    )
    with tempfile.TemporaryDirectory(prefix="edgecnn-diag-") as tmp:
        twin = _float_twin(build, manifest, Path(tmp))
        return tflite_layer_errors(target.file(build), twin, x[:LAYER_SAMPLES]), note


# -- putting it together ---------------------------------------------------------------------


def _findings(
    build: Path, manifest: Manifest, art: Artifact, pred: np.ndarray, y: np.ndarray
) -> list[Finding]:
    found = [f for f in [one_class(pred, y, manifest.labels)] if f]
    found += input_range(build, manifest, art)
    return found


def _layers(build: Path, manifest: Manifest, art: Artifact, x: np.ndarray) -> dict[str, Any]:
    diag: dict[str, Any] = {"layers": []}
    try:
        diag["layers"], note = layer_errors_for(build, manifest, art, x)
        if note and diag["layers"]:
            diag["note"] = note
    except Exception as e:  # diagnosis must never hide the verdict
        diag["note"] = f"per-layer analysis unavailable: {str(e).splitlines()[0][:120]}"
    return diag


def diagnose_failures(
    report: dict[str, Any], build: Path, manifest: Manifest, x: np.ndarray, y: np.ndarray,
    predictions: dict[str, np.ndarray],
) -> None:  # fmt: skip
    """Add a `diagnosis` {findings, layers, note} to every failing row of `report`."""
    for row in report["artifacts"]:
        if row["passed"]:
            continue
        art = manifest.by_path(row["artifact"])
        int8 = art.precision == "int8"
        findings = [
            f.to_dict()
            for f in _findings(build, manifest, art, predictions[row["artifact"]].argmax(axis=1), y)
        ]
        cal = calibration_classes(manifest) if int8 else None
        findings += [cal] if cal else []
        diag: dict[str, Any] = {"findings": findings, "layers": []}
        if int8:
            diag.update(_layers(build, manifest, art, x))
        if not findings:
            diag["findings"].append(Finding(
                Code.UNRECOGNISED,
                "no known failure shape (one class, input range, calibration classes); see the "
                "per-layer errors" + ("" if int8 else " (float artifact: compare its export with the reference)"),
            ).to_dict())  # fmt: skip
        row["diagnosis"] = diag
