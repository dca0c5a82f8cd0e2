"""`edgecnn convert`: prune, quantize and export a Keras model into a build directory."""

from __future__ import annotations

import sys
from typing import Any

import click

from edgecnn.commands.common import emit, handle_errors
from edgecnn.errors import CheckFailed
from edgecnn.quiet import quiet_tensorflow
from edgecnn.tables import format_table


def _mb(row: dict[str, Any]) -> dict[str, Any]:
    """Sizes in MB (10^6 bytes), the unit of every edgecnn table (run, bench); JSON keeps bytes."""
    out = dict(row)
    for key, col in (("size", "size_MB"), ("gzip_size", "gzip_MB")):
        out[col] = None if row.get(key) is None else row[key] / 1e6
    return out


def _summary_table(report: dict[str, Any]) -> str:
    b, a = report["before"], report["after"]
    stats = [_mb({"model": "before", **b}), _mb({"model": "after", **a})]
    parts = [
        format_table(stats, ["model", "params", "macs", "size_MB", "gzip_MB", "accuracy"]),
        "",
        format_table(
            [_mb(r) for r in report["artifacts"]],
            ["artifact", "format", "precision", "size_MB", "gzip_MB", "accuracy", "seconds"],
        ),
    ]
    pruning = report.get("pruning") or {}
    if "magnitude" in pruning:
        mag = pruning["magnitude"]
        parts += [
            "",
            f"unstructured sparsity: {mag['sparsity']:.1%} (target {mag['target_sparsity']:.1%})",
        ]
        parts.append(format_table(mag["layers"], ["layer", "type", "weights", "zeros", "sparsity"]))
    if "filters" in pruning:
        steps = pruning["filters"]["steps"]
        groups = sum(len(s["groups"]) for s in steps)
        skipped = pruning["filters"]["skipped_layers"]
        parts += ["", f"structured pruning: {groups} channel groups thinned in {len(steps)} step(s), "
                  f"{len(skipped)} layer(s) left alone"]  # fmt: skip
        parts += [f"  left alone: {name}: {why}" for name, why in list(skipped.items())[:5]]
    for note in report.get("skipped", []):
        parts.append(f"skipped: {note}")
    tpu = report.get("edgetpu")
    if tpu:
        state = "ready" if tpu["compatible"] else "NOT ready"
        parts += [
            "",
            f"Edge TPU: {state}; {tpu['tpu_ops']} ops on the TPU, {len(tpu['cpu_ops'])} on the CPU",
        ]
        parts += [f"  problem: {p}" for p in tpu["problems"]]
        if tpu["cpu_ops"]:
            parts.append(f"  CPU fallback from {tpu['first_cpu_op']}: {', '.join(tpu['cpu_ops'])}")
        comp = tpu.get("compiler") or {}
        if comp.get("hint"):
            parts.append(f"  {comp['hint']}")
        elif comp:
            parts.append(
                f"  edgetpu_compiler {comp.get('compiler_version')}: {comp.get('tpu_ops')} ops mapped, "
                f"{comp.get('cpu_ops')} on CPU -> {comp.get('output')}"
            )
    parts += ["", f"build: {report['out']}"]
    return "\n".join(parts)


def _read_plan(path: str | None) -> dict[str, float]:
    """--prune-plan: a JSON object of layer name -> ratio."""
    import json
    from pathlib import Path

    from edgecnn.errors import BadInput

    if not path:
        return {}
    try:
        plan = json.loads(Path(path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"cannot read the pruning plan {path}: {e}") from None
    if not isinstance(plan, dict) or not all(isinstance(v, (int, float)) for v in plan.values()):
        raise BadInput(f"pruning plan {path} must be a JSON object of layer name -> ratio")
    return {str(k): float(v) for k, v in plan.items()}


@click.command("convert")
@click.argument("model", type=click.Path(dir_okay=True, file_okay=True))
@click.option(
    "--data",
    "data_name",
    required=True,
    help="Dataset for calibration, fine-tuning and accuracy (digits, mnist5k, fashion_mnist, folder:PATH, ...).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Build directory to write (replaced atomically).",
)
@click.option(
    "--prune",
    type=float,
    default=None,
    help="Unstructured magnitude sparsity in [0, 1), e.g. 0.8 (shrinks the gzipped download).",
)
@click.option(
    "--prune-filters",
    type=float,
    default=None,
    help="Fraction of channels to remove from every prunable channel group (structured: residual "
    "chains, depthwise and dense layers included), e.g. 0.5 (makes the model faster).",
)
@click.option(
    "--filter-multiple",
    type=int,
    default=8,
    show_default=True,
    help="Round kept channels up to a multiple of this (XNNPACK and the Edge TPU work in blocks of 8).",
)
@click.option(
    "--prune-importance",
    type=click.Choice(["auto", "l1", "l2", "bn", "taylor"]),
    default="auto",
    show_default=True,
    help="Which channels go: weight norm, BatchNorm scale, or first-order Taylor; auto: "
    "taylor for networks with BatchNorm, l1 for the others (measured, see README).",
)
@click.option(
    "--prune-steps",
    type=int,
    default=1,
    show_default=True,
    help="Prune, fine-tune, repeat this many times.",
)
@click.option(
    "--prune-distill",
    type=float,
    default=0.0,
    show_default=True,
    help="Weight in [0, 1] of the unpruned model's soft targets while fine-tuning "
    "(knowledge distillation; 0: labels only).",
)
@click.option(
    "--prune-plan",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON {layer: ratio} of per-group ratios (a layer names its group).",
)
@click.option(
    "--fine-tune-epochs",
    type=int,
    default=3,
    show_default=True,
    help="Epochs of fine-tuning after pruning.",
)
@click.option(
    "--precision",
    "precisions",
    default="float32,int8",
    show_default=True,
    help="Comma list of float32, float16, dynamic, int8.",
)
@click.option(
    "--formats", default="tflite,onnx", show_default=True, help="Comma list of tflite, onnx."
)
@click.option(
    "--calib-samples",
    type=int,
    default=200,
    show_default=True,
    help="Stratified training images for int8 calibration.",
)
@click.option(
    "--io-dtype",
    type=click.Choice(["int8", "uint8", "float32"]),
    default="int8",
    show_default=True,
    help="Input/output type of the int8 TFLite model.",
)
@click.option(
    "--onnx-int8",
    type=click.Choice(["qdq", "tflite"]),
    default="qdq",
    show_default=True,
    help="qdq: ONNX Runtime static QDQ (fast on ORT); tflite: tf2onnx from the int8 TFLite (LiteRT's arithmetic, to one quantization step).",
)
@click.option(
    "--edgetpu",
    is_flag=True,
    help="Check Edge TPU compatibility of the int8 model and run edgetpu_compiler if installed.",
)
@click.option(
    "--eval-samples",
    type=int,
    default=1000,
    show_default=True,
    help="Test images used for the accuracy columns (0 = all).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
@handle_errors
def command(
    model: str,
    data_name: str,
    out: str,
    prune: float | None,
    prune_filters: float | None,
    filter_multiple: int,
    prune_importance: str,
    prune_steps: int,
    prune_distill: float,
    prune_plan: str | None,
    fine_tune_epochs: int,
    precisions: str,
    formats: str,
    calib_samples: int,
    io_dtype: str,
    onnx_int8: str,
    edgetpu: bool,
    eval_samples: int,
    seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Prune (optional), quantize and export MODEL (model.keras, a training dir or a SavedModel).

    Writes OUT/ with one artifact per format and precision (model_int8.tflite,
    model_float32.onnx, ...), labels.txt, manifest.json and model.keras (the
    float reference for parity). Exit 0 on success, 1 if the --edgetpu check
    fails, 2 on bad input.

    \b
    Examples:
      edgecnn convert runs/digits/model.keras --data digits --out build/digits
      edgecnn convert runs/digits --data digits --out build/d50 \\
          --prune-filters 0.5 --fine-tune-epochs 3 --precision float32,float16,dynamic,int8
      edgecnn convert runs/cifar --data cifar10 --out build/tpu --formats tflite \\
          --precision int8 --io-dtype uint8 --edgetpu
    """
    from edgecnn.build import BuildConfig
    from edgecnn.data import check_dataset_name

    cfg = BuildConfig(
        prune=prune, prune_filters=prune_filters, filter_multiple=filter_multiple,
        prune_importance=prune_importance, prune_steps=prune_steps, prune_distill=prune_distill,
        prune_plan=_read_plan(prune_plan),
        fine_tune_epochs=fine_tune_epochs, precisions=precisions, formats=formats,
        calib_samples=calib_samples, io_dtype=io_dtype, edgetpu=edgetpu, onnx_int8=onnx_int8,
        eval_samples=eval_samples, seed=seed,
    ).validated()  # fmt: skip
    check_dataset_name(data_name)  # every typo fails here, before TensorFlow loads
    quiet_tensorflow()
    from edgecnn.build import convert_model

    def progress(msg: str) -> None:
        if not (quiet or as_json):
            click.echo(f"... {msg}", err=True)

    report = convert_model(model, data_name, out, cfg, progress)
    emit(report, as_json, _summary_table(report))
    sys.stdout.flush()
    if edgetpu and report.get("edgetpu") and not report["edgetpu"]["compatible"]:
        raise CheckFailed(
            "the int8 model is not Edge TPU ready: " + "; ".join(report["edgetpu"]["problems"])
        )
