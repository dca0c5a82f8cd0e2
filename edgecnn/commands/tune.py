"""`edgecnn tune`: the most accurate build that fits a device's budget, found by search."""

from __future__ import annotations

import sys
from typing import Any

import click

from edgecnn.bench.devices import DEVICE_NAMES
from edgecnn.commands.common import emit, fail, handle_errors
from edgecnn.errors import BadInput


def _list(text: str | None, kind: type, flag: str) -> list[Any] | None:
    if not text:
        return None
    try:
        return [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(
            f"{flag} needs a comma-separated list of {kind.__name__} values, got {text!r}"
        ) from None


SPACE_FLAGS = {  # flag -> (search-space field, element type)
    "archs": ("archs", str), "alphas": ("alphas", float), "sizes": ("sizes", int),
    "prune_ratios": ("prune", float), "precisions": ("precisions", str), "epochs": ("epochs", int),
    "fine_tune_layers": ("fine_tune_layers", int),
}  # fmt: skip


def build_options(opts: dict[str, Any]) -> Any:
    """TuneOptions from the flags, checked (no TensorFlow, no Optuna yet)."""
    from edgecnn.tune import Budget, SearchSpace, TuneOptions

    space: dict[str, Any] = {}
    for flag, (name, kind) in SPACE_FLAGS.items():
        values = _list(opts.pop(flag), kind, "--" + flag.replace("_", "-"))
        if values is not None:
            space[name] = values
    if opts.get("weights"):
        space["weights"] = opts.pop("weights")
    opts.pop("weights", None)
    budget = Budget(
        **{k: opts.pop(k) for k in ("max_latency_ms", "max_size_kb", "max_ram_mb", "max_drop")}
    )
    return TuneOptions(budget=budget, space=SearchSpace.from_dict(space), **opts).check()


def _table(summary: dict[str, Any]) -> str:
    from edgecnn.tables import format_table
    from edgecnn.tune.report import TABLE_COLUMNS

    lines = [format_table(summary["trials"], TABLE_COLUMNS), "", summary["verdict"]]
    best = summary.get("best_build")
    if best:
        lines.append(
            f"best build: {best['dir']} (test split: {best['test_accuracy']:.2%}, float "
            f"{best['float_test_accuracy']:.2%}, parity {'passed' if best['parity_passed'] else 'FAILED'})"
        )
    rows = summary["trials"]
    if rows and rows[0].get("latency_basis"):
        lines.append(f"latency: {rows[0]['latency_basis']}")
    if summary.get("pareto_png"):
        lines.append(f"Pareto front: {summary['pareto_png']}")
    return "\n".join(lines)


@click.command("tune")
@click.option(
    "--data", required=True, help="Dataset, as for train (e.g. fashion_mnist, digits, folder:PATH)."
)
@click.option(
    "--device", default="host", show_default=True, help=f"Device: {', '.join(DEVICE_NAMES)}."
)
@click.option(
    "--host",
    default=None,
    metavar="USER@ADDR[:PORT]",
    help="Measure each trial on the device over SSH.",
)
@click.option(
    "--known-hosts", default=None, type=click.Path(dir_okay=False), help="SSH known_hosts file."
)
@click.option("--identity", default=None, type=click.Path(dir_okay=False), help="SSH private key.")
@click.option("--remote-python", default="python3", show_default=True)
@click.option("--max-latency-ms", type=float, help="Latency limit (median, one image).")
@click.option("--max-size-kb", type=float, help="Artifact size limit (1 kB = 1000 bytes).")
@click.option("--max-ram-mb", type=float, help="Peak RAM limit of the process running the model.")
@click.option(
    "--max-drop", type=float, help="Points the artifact may lose against its float model."
)
@click.option(
    "--trials", default=20, show_default=True, type=int, help="Trials the study should hold."
)
@click.option("--timeout-min", type=float, help="Stop starting trials after this many minutes.")
@click.option(
    "--storage",
    default=None,
    help="Optuna storage URL (default: sqlite in OUT; postgresql://... to share).",
)
@click.option("--study", default=None, help="Study name (default: tune-DATA-DEVICE).")
@click.option("--resume", is_flag=True, help="Continue the study if it exists.")
@click.option(
    "--sampler", default="tpe", show_default=True, type=click.Choice(["tpe", "nsga2", "random"])
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--limit-train", type=int, help="Train on a stratified subset of this many images.")
@click.option(
    "--archs",
    help="Architectures to search, comma-separated (default: cnn_small,cnn_mnist,mobilenet_v2,mobilenet).",
)
@click.option("--alphas", help="Width multipliers, e.g. 0.35,0.5,1.0.")
@click.option("--sizes", help="Input sides, e.g. 28,32,48,64,96.")
@click.option("--prune-ratios", help="Structured pruning ratios, e.g. 0,0.25,0.5.")
@click.option("--precisions", help="int8, float16 and/or int8-mixed (worst layers in float).")
@click.option("--epochs", help="Training lengths, e.g. 3,6,10.")
@click.option(
    "--weights",
    type=click.Choice(["none", "imagenet"]),
    help="Transfer backbones' starting weights.",
)
@click.option(
    "--fine-tune-layers",
    help="Backbone layers to unfreeze after the head (pretrained only), e.g. 0,20.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@handle_errors
def command(as_json: bool, quiet: bool, **opts: Any) -> None:
    """Search for the most accurate model that fits a device's budget.

    Each trial draws an architecture, width, input size, pruning ratio, precision and
    training length; a draw whose untrained twin already breaks the latency, size or RAM
    limit is rejected before training. Accuracy is the artifact's on the validation split
    (run by the device runtime); latency is measured on the device when it is reachable
    (this machine, or --host) and estimated from its profile otherwise. The best feasible
    build goes to OUT/best and is re-checked by parity on the test split. Exit 1 when
    nothing fits (the verdict names the closest trial), 130 on Ctrl-C (trials kept).

    \b
    Examples:
      edgecnn tune --data fashion_mnist --device host --max-latency-ms 0.1 --trials 30 --out runs/tune
      edgecnn tune --data digits --device pi4 --max-latency-ms 5 --max-size-kb 200 --out runs/pi
      edgecnn tune --data digits --out runs/tune --resume --trials 40      # continue
      edgecnn tune --data digits --storage postgresql://user@db/optuna --study s1 --resume --out runs/w1
    """
    o = build_options(dict(opts))
    from edgecnn.tune import tune

    say = None if (quiet or as_json) else (lambda m: click.echo(f"... {m}", err=True))
    summary = tune(o, say)
    emit(summary, as_json, _table(summary))
    if summary["problem"]:
        message, code = summary["problem"]
        fail(message, code)
    sys.stdout.flush()
