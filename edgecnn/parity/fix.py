"""`parity --fix`: re-quantize a failing int8 artifact with its worst layers kept in float.

Layers are ranked by the TFLite quantization debugger's per-layer statistic (RMSE /
scale of each op's int8 output against float, measured op by op on calibration data,
as in the LiteRT debugger guide), after the failing artifact's own diagnosis. The
ranking names Keras layers, so it serves every format whose exporter can re-quantize
(`requantize` in `edgecnn.export.EXPORTERS`). Candidates keep 0 (just re-calibrated on
the stratified training sample), 1, 2, 4, ... of the worst layers in float; the first
that passes the same parity check replaces the artifact (the build directory is
rewritten atomically, the manifest entry updated). The size and latency cost against
the failing artifact are reported.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.build.export import describe_artifact
from edgecnn.build.record import embedded_metadata
from edgecnn.data import Dataset, load_dataset
from edgecnn.export import EXPORTERS, ExportJob
from edgecnn.fsutil import atomic_dir
from edgecnn.manifest import Artifact, Manifest
from edgecnn.parity.diagnose import MANIFEST_INPUT_CODES, has_code, layer_name
from edgecnn.parity.evaluate import Evaluation, Thresholds, artifact_predict, compare, verdict
from edgecnn.quiet import captured_output, quiet_tensorflow

MAX_FLOAT_LAYERS = 16
DEBUG_SAMPLES = 64
LATENCY_RUNS = 100
SKIP_OPS = ("SOFTMAX", "RESHAPE", "MAX_POOL_2D")  # fixed-scale or pass-through: nothing to gain


def calibration(manifest: Manifest, data: str | Dataset) -> np.ndarray:
    """The stratified training sample convert used (same size and seed as recorded)."""
    from edgecnn.optimize.quantize import calibration_images

    args = manifest.split_args(data) if isinstance(data, str) else {}
    ds = (load_dataset(data, **args) if isinstance(data, str) else data).adapted(
        tuple(manifest.input.shape), manifest.input.resize
    )
    n = int(manifest.optimization.get("calibration", {}).get("samples") or 200)
    return calibration_images(
        ds.x_train, ds.y_train, n, int(args.get("seed", 0)), ds.classes_to_cover
    )


class LayerRanker:
    """The quantization debugger on the reference model, kept for selective re-quantization."""

    def __init__(self, model: Any, calib: np.ndarray) -> None:
        import tensorflow as tf

        from edgecnn.optimize.quantize import representative_dataset

        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset(calib)
        with captured_output():
            self.debugger = tf.lite.experimental.QuantizationDebugger(
                converter=conv, debug_dataset=representative_dataset(calib[:DEBUG_SAMPLES])
            )
            self.debugger.run()
        buf = io.StringIO()
        self.debugger.layer_statistics_dump(buf)
        rows = [self._row(r) for r in csv.DictReader(io.StringIO(buf.getvalue()))]
        compute = [r for r in rows if r["op"] not in SKIP_OPS]
        self.graph_order = list(dict.fromkeys(r["layer"] for r in compute))
        self.layers = sorted(compute, key=lambda r: -r["rmse_scale"])

    @staticmethod
    def _row(r: dict[str, str]) -> dict[str, Any]:
        scale = float(r["scale"] or 0) or 1.0
        return {
            "tensor": r["tensor_name"],
            "op": r["op_name"],
            "layer": layer_name(r["tensor_name"]),
            "rmse_scale": float(np.sqrt(float(r["mean_squared_error"]))) / scale,
        }

    def successor(self, layer: str) -> str | None:
        """The next compute layer: it reads `layer`'s output, so keeping `layer` in float
        only helps if that tensor is not re-quantized on the way in."""
        order = self.graph_order
        i = order.index(layer) if layer in order else -1
        return order[i + 1] if 0 <= i < len(order) - 1 else None

    def selective_tflite(self, tensors: list[str], integer_io: bool) -> bytes:
        import tensorflow as tf

        with captured_output():
            self.debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=list(tensors), fully_quantize=integer_io
            )
            return bytes(self.debugger.get_nondebug_quantized_model())


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
    names += [lay["layer"] for lay in ranker.layers if lay["layer"] not in names]
    return list(dict.fromkeys(names))


def candidate_counts(n: int) -> list[int]:
    ks, k = [0], 1
    while k <= min(n, MAX_FLOAT_LAYERS):
        ks.append(k)
        k *= 2
    return ks


def latency_ms(build: Path, art_path: str, manifest: Manifest | None = None) -> float:
    """Median single-image latency through the runtime (same process for both: a relative cost)."""
    from edgecnn.runtime import Runner
    from edgecnn.runtime.timing import TimingPlan, time_calls

    with Runner(build, artifact=art_path, threads=1, manifest=manifest) as r:
        h, w, c = r.input_spec.shape
        x = r.to_model(np.zeros((1, h, w, c), np.uint8))
        return time_calls(lambda: r.backend.run(x), TimingPlan(warmup=5, runs=LATENCY_RUNS)).p50_ms


@dataclass
class Attempt:
    """One failing artifact's search for a version that passes."""

    art: Artifact
    row: dict[str, Any]
    result: dict[str, Any]
    kept: tuple[Path, Artifact] | None = None


def _try(
    e: Evaluation,
    at: Attempt,
    job: ExportJob,
    ranker: LayerRanker,
    names: list[str],
    th: Thresholds,
    ref_top1: float,
) -> bool:
    """Re-quantize with `names` in float into the work dir; True (and kept) if it passes."""
    work = job.out_dir
    integer_io = bool(at.art.inputs) and at.art.inputs[0].dtype in ("int8", "uint8")
    EXPORTERS[at.art.format].requantize(job, ranker, names, integer_io, work / at.art.path)
    entry = describe_artifact(work, at.art.path, at.art.format, at.art.precision)
    entry.extra = {
        **at.art.extra,
        "selective_quantization": {"float_layers": names, "by": "edgecnn parity --fix"},
    }
    trial = e.manifest.copy()
    trial.replace(entry)
    probs, _ = artifact_predict(work, entry, e.data.x, manifest=trial)
    cand = compare(e.ref, probs, e.data.y)
    reasons = verdict(cand, ref_top1, th)
    at.result["tried"].append(
        {
            "float_layers": names,
            "top1": cand["top1"],
            "agreement": cand["agreement"],
            "passed": not reasons,
        }
    )
    if reasons:
        return False
    keep = work.parent / f"keep-{at.art.name}"
    shutil.copy2(work / at.art.path, keep)
    at.kept = (keep, entry)
    at.result.update(kept=True, float_layers=names, size_before=at.art.size, size_after=entry.size)
    at.result["latency_ms_before"] = latency_ms(e.build, at.art.path)
    at.result["latency_ms_after"] = latency_ms(work, at.art.path, trial)
    at.row.update(cand, drop=(ref_top1 - cand["top1"]) * 100, reasons_before_fix=at.row["reasons"],
                  reasons=[], passed=True, fixed=True, size=entry.size, _fixed_pred=probs.argmax(axis=1))  # fmt: skip
    return True


def _search(
    e: Evaluation, at: Attempt, job: ExportJob, ranker: LayerRanker, say: Callable[[str], None]
) -> None:
    th = Thresholds(**e.report["thresholds"])
    ref_top1 = e.report["reference"]["top1"]
    order = layer_order(at.row, ranker)
    for k in candidate_counts(len(order)):
        say(f"{at.art.path}: {k} layer(s) in float {order[:k]}")
        if _try(e, at, job, ranker, order[:k], th, ref_top1):
            return
    shutil.copy2(at.art.file(e.build), job.out_dir / at.art.path)  # leave the work copy as it was


def _write_back(build: Path, manifest: Manifest, attempts: list[Attempt]) -> None:
    kept = [a for a in attempts if a.kept]
    if not kept:
        return
    with atomic_dir(build) as tmp:
        shutil.copytree(build, tmp, dirs_exist_ok=True)
        final = manifest.copy()
        for at in kept:
            keep, entry = at.kept
            shutil.copy2(keep, tmp / at.art.path)
            final.replace(entry)
        final.save(tmp)


def _summary(attempts: list[Attempt], input_problem: bool) -> str:
    parts = []
    for at in attempts:
        res = at.result
        if res["kept"]:
            what = (f"{len(res['float_layers'])} layer(s) kept in float ({', '.join(res['float_layers'])})"
                    if res["float_layers"] else "re-calibration on a stratified training sample (no layer in float)")  # fmt: skip
            res["size_cost"] = res["size_after"] - res["size_before"]
            res["latency_cost"] = res["latency_ms_after"] / max(res["latency_ms_before"], 1e-9)
            parts.append(
                f"{res['artifact']} fixed by {what}: size {res['size_before']:,} -> {res['size_after']:,} bytes "
                f"({res['size_cost']:+,}), latency {res['latency_ms_before']:.3f} -> "
                f"{res['latency_ms_after']:.3f} ms (x{res['latency_cost']:.2f})"
            )
        else:
            most = max(len(t["float_layers"]) for t in res["tried"])
            parts.append(
                f"{res['artifact']} still fails with up to {most} layer(s) in float; left unchanged"
            )
    if input_problem and not all(at.result["kept"] for at in attempts):
        parts.append("the manifest's input range is wrong: selective quantization cannot fix that")
    return "; ".join(parts)


def _failing(e: Evaluation) -> list[Attempt]:
    """Failing int8 artifacts whose format's exporter can re-quantize."""
    out = []
    for row in e.report["artifacts"]:
        art = e.manifest.by_path(row["artifact"])
        can = hasattr(EXPORTERS.get(art.format), "requantize")
        if not row["passed"] and art.precision == "int8" and can:
            out.append(Attempt(art, row, {"artifact": art.path, "kept": False, "tried": []}))
    return out


def fix_build(
    e: Evaluation, data: str | Dataset, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Try to fix every failing int8 artifact of the evaluation; updates its report in place."""
    say = progress or (lambda msg: None)
    attempts = _failing(e)
    fix: dict[str, Any] = {"artifacts": [a.result for a in attempts]}
    e.report["fix"] = fix
    if not attempts:
        fix["summary"] = (
            "nothing to fix: only int8 artifacts whose exporter can re-quantize can keep layers in float"
        )
        return fix
    findings = [f for a in attempts for f in a.row.get("diagnosis", {}).get("findings", [])]
    quiet_tensorflow()
    from edgecnn.zoo.io import load_keras_model

    model = load_keras_model(e.manifest.reference_path(e.build))
    say("ranking layers with the TFLite quantization debugger")
    calib = calibration(e.manifest, data)
    ranker = LayerRanker(model, calib)
    with tempfile.TemporaryDirectory(prefix="edgecnn-fix-") as tmpdir:
        work = Path(tmpdir) / "build"
        shutil.copytree(e.build, work)
        job = ExportJob(model, calib, work, metadata=embedded_metadata(e.manifest))
        for at in attempts:
            _search(e, at, job, ranker, say)
        _write_back(e.build, e.manifest, attempts)
    e.report["failed"] = [r["artifact"] for r in e.report["artifacts"] if not r["passed"]]
    e.report["passed"] = not e.report["failed"]
    fix["summary"] = _summary(attempts, has_code(findings, MANIFEST_INPUT_CODES))
    return fix
