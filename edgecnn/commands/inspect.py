"""`edgecnn inspect`: per-layer parameters and MACs, first-layer filters, feature maps."""

from __future__ import annotations

from typing import Any

import click

from edgecnn.commands.common import emit, handle_errors
from edgecnn.errors import BadInput
from edgecnn.quiet import quiet_tensorflow
from edgecnn.tables import format_table

COLUMNS = ["name", "type", "output_shape", "params", "trainable", "macs"]
ARTIFACT_COLUMNS = ["op", "output_shape", "dtype", "quantization", "weights", "macs"]


def _tensor_text(t: dict[str, Any]) -> str:
    q = t.get("quantization")
    quant = f", scale {q['scale']:.6g} zp {q['zero_point']}" if q else ""
    return f"{t['name'] or '?'} {'x'.join(map(str, t['shape']))} {t['dtype']}{quant}"


def _artifact_table(report: dict[str, Any]) -> str:
    """The per-op table of a .tflite / .onnx artifact."""
    from edgecnn.zoo.cost import format_count

    rows = [
        {**r, "output_shape": "x".join(map(str, r["output_shape"])), "macs": f"{r['macs']:,}"}
        for r in report["ops"]
    ]
    lines = [f"artifact: {report['path']}  ({report['format']}, {len(rows)} ops)"]
    lines += [f"input:  {_tensor_text(t)}" for t in report["inputs"]]
    lines += [f"output: {_tensor_text(t)}" for t in report["outputs"]]
    lines += [
        format_table(rows, ARTIFACT_COLUMNS),
        f"total: {report['total_macs']:,} MACs ({format_count(report['total_macs'])}) per image",
    ]
    return "\n".join(lines)


def _table(report: dict[str, Any]) -> str:
    rows = [
        {
            "name": r["name"],
            "type": r["type"],
            "output_shape": "x".join(str(d) for d in r["output_shape"]),
            "params": f"{r['params']:,}",
            "trainable": ("yes" if r["trainable_params"] else "no") if r["params"] else "-",
            "macs": f"{r['macs']:,}",
        }
        for r in report["layers"]
    ]
    from edgecnn.zoo.cost import format_count

    shape = " ".join("x".join(str(d) for d in s) for s in report["input_shape"])
    lines = [
        f"model: {report['path']}  ({report['model']}, input {shape})",
        format_table(rows, COLUMNS),
        f"total: {report['total_params']:,} parameters "
        f"({report['trainable_params']:,} trainable), "
        f"{report['total_macs']:,} MACs ({format_count(report['total_macs'])}) per image",
    ]
    if report.get("filters"):
        lines.append(f"filters: {report['filters']['path']} ({report['filters']['layer']})")
    if report.get("feature_maps"):
        names = ", ".join(x["layer"] for x in report["feature_maps"]["layers"])
        lines.append(f"feature maps: {report['feature_maps']['path']} ({names})")
    return "\n".join(lines)


@click.command("inspect")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--filters", "filters_png", type=click.Path(dir_okay=False), help="Draw first-layer filters."
)
@click.option(
    "--feature-maps",
    "maps_png",
    type=click.Path(dir_okay=False),
    help="Draw the first conv layers' activations for --image.",
)
@click.option("--image", type=click.Path(dir_okay=False), help="Image for --feature-maps.")
@click.option(
    "--layers",
    "n_layers",
    type=click.IntRange(1, 8),
    default=2,
    show_default=True,
    help="How many conv layers --feature-maps draws.",
)
@click.option(
    "--prune-scan",
    is_flag=True,
    help="Prune each channel group alone and report the accuracy drop.",
)
@click.option(
    "--data", "data_name", default=None, help="Dataset for --prune-scan (its validation split)."
)
@click.option(
    "--scan-ratios", default="0.25,0.5,0.75", show_default=True, help="Ratios --prune-scan tries."
)
@click.option(
    "--scan-plot", type=click.Path(dir_okay=False), default=None, help="Bar chart PNG of the scan."
)
@handle_errors
def command(
    model_path: str,
    as_json: bool,
    filters_png: str | None,
    maps_png: str | None,
    image: str | None,
    n_layers: int,
    prune_scan: bool,
    data_name: str | None,
    scan_ratios: str,
    scan_plot: str | None,
) -> None:
    """Print a model's layers with parameters and MACs; draw filters and feature maps.

    MODEL is a .keras file or a training directory holding model.keras, or a converted
    artifact (.tflite, .onnx): then its ops, tensor shapes, quantization parameters and
    MACs per op, read without TensorFlow.

    \b
    Examples:
      edgecnn inspect runs/digits/model.keras
      edgecnn inspect runs/digits --json
      edgecnn inspect build/digits/model_int8.tflite
      edgecnn inspect runs/digits --filters filters.png \\
          --feature-maps maps.png --image digit.png
    """
    from edgecnn.runtime.inspect import inspect_artifact, is_artifact

    if is_artifact(model_path):
        if filters_png or maps_png:
            raise BadInput("--filters and --feature-maps draw Keras models; give the .keras file")
        art = inspect_artifact(model_path)
        emit(art, as_json, _artifact_table(art))
        return
    if maps_png and not image:
        raise BadInput("--feature-maps needs --image FILE")
    if image and not maps_png:
        raise BadInput("--image is only used with --feature-maps PNG")
    if prune_scan and not data_name:
        raise BadInput("--prune-scan needs --data (its validation split is what the scan measures)")
    ratios = _ratios(scan_ratios) if prune_scan else ()
    from edgecnn.modelfile import resolve_model_path

    path = resolve_model_path(model_path)  # before TensorFlow loads: typos fail fast
    if image:
        from edgecnn.visualize import check_image

        check_image(image)
    quiet_tensorflow()
    from edgecnn.zoo.cost import model_cost
    from edgecnn.zoo.io import load_keras_model

    model = load_keras_model(path)
    report: dict[str, Any] = {"path": str(path), **model_cost(model)}
    if filters_png or maps_png:
        from edgecnn import visualize

        if maps_png:  # checks the image before drawing anything
            report["feature_maps"] = visualize.plot_feature_maps(model, image, maps_png, n_layers)
        if filters_png:
            report["filters"] = visualize.plot_filters(model, filters_png)
    text = _table(report)
    if prune_scan:
        report["prune_scan"] = _scan(model, path, data_name, ratios, scan_plot, as_json)
        text += "\n\n" + _scan_table(report["prune_scan"])
    emit(report, as_json, text)


def _ratios(text: str) -> tuple[float, ...]:
    from edgecnn.optimize.structured import check_ratio

    try:
        return tuple(check_ratio(float(v)) for v in text.split(",") if v.strip())
    except ValueError:
        raise BadInput(f"--scan-ratios must be numbers in [0, 1), got {text!r}") from None


def _scan(
    model: Any, path: Any, data_name: str, ratios: tuple[float, ...], plot: str | None, quiet: bool
) -> dict[str, Any]:
    from pathlib import Path

    from edgecnn.data import load_dataset
    from edgecnn.manifest import load_manifest
    from edgecnn.optimize.sensitivity import plot_scan, sensitivity_scan

    try:
        split = load_manifest(Path(path).parent).split_args(data_name)
    except BadInput:
        split = {}
    ds = load_dataset(data_name, **split).adapted(tuple(int(v) for v in model.inputs[0].shape[1:]))
    x, y = (ds.x_val, ds.y_val) if len(ds.y_val) else (ds.x_test, ds.y_test)
    say = None if quiet else (lambda m: click.echo(f"... {m}", err=True))
    scan = sensitivity_scan(model, x, y, ratios, say=say)
    scan["samples"] = int(len(y))
    if plot:
        scan["plot"] = str(plot_scan(scan, Path(plot)))
    return scan


def _scan_table(scan: dict[str, Any]) -> str:
    cols = ["group", "producers", "channels", *[f"drop@{r:g}" for r in scan["ratios"]]]
    lines = [f"pruning sensitivity: each group alone, no fine-tuning; drop = points of validation top-1 lost "
             f"(base {scan['base']:.2%} on {scan['samples']} images)", format_table(scan["rows"], cols)]  # fmt: skip
    if scan.get("plot"):
        lines.append(f"plot: {scan['plot']}")
    return "\n".join(lines)
