"""`edgecnn bench`: time artifacts here, on a device over SSH, or estimate for a device;
`--calibrate` measures a device's latency profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgecnn.bench.devices import DEVICE_NAMES
from edgecnn.commands.common import emit, handle_errors
from edgecnn.runtime.formats import BACKENDS


def _calibrate(opts: dict[str, Any], as_json: bool) -> None:
    from edgecnn.bench.calibrate import CalibrationOptions, calibrate
    from edgecnn.bench.devices import get_device
    from edgecnn.tables import format_table

    dev = get_device(opts["device"])
    o = CalibrationOptions(
        device=dev.name, host=opts["host"], out=opts["profile"], corpus=opts["corpus"],
        threads=[opts["threads"]] if opts["threads"] else None, known_hosts=opts["known_hosts"],
        identity=opts["identity"], remote_python=opts["remote_python"], rounds=opts["rounds"],
    )  # fmt: skip
    say = None if as_json else (lambda m: click.echo(f"... {m}", err=True))
    report = calibrate(o, say)
    rows = [{"model": k, **v} for k, v in report["models"].items()]
    lines = [f"{report['device']} profile ({report['arch']}, measured {report['where']}): {report['profile']}",
             format_table(rows, ["model", "samples", "tile", "median_abs", "p90_abs", "within_15"])]  # fmt: skip
    lines += [f"left out: {k}: {why}" for k, why in report["failed"].items()]
    emit(report, as_json, "\n".join(lines))


@click.command("bench")
@click.argument("models", nargs=-1, type=click.Path())
@click.option("--device", default="host", show_default=True,
              help=f"Device: {', '.join(DEVICE_NAMES)} (pi = pi4). Elsewhere without --host: an estimate.")  # fmt: skip
@click.option(
    "--host", "host", default=None, metavar="USER@ADDR[:PORT]", help="Bench on the device over SSH."
)
@click.option(
    "--backend",
    default=None,
    type=click.Choice(BACKENDS),
    help="Runtime backend (default: the device's).",
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(1, None),
    help="Interpreter threads (default: the device's).",
)
@click.option(
    "--runs",
    default=100,
    show_default=True,
    type=click.IntRange(1, None),
    help="At least this many timed runs.",
)
@click.option(
    "--min-s",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="And at least this many seconds of them.",
)
@click.option(
    "--warmup",
    default=10,
    show_default=True,
    type=click.IntRange(0, None),
    help="At least this many warm-up runs.",
)
@click.option(
    "--warmup-min-s",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0),
    help="And at least this long.",
)
@click.option(
    "--data", default=None, help="Dataset for accuracy (test split), e.g. digits, mnist5k."
)
@click.option(
    "--limit",
    default=2000,
    show_default=True,
    type=click.IntRange(1, None),
    help="Max test images.",
)
@click.option(
    "--artifact", "artifacts", multiple=True, help="Only these artifacts (name, precision, format)."
)
@click.option("--estimate", is_flag=True, help="Estimate even when the device is this machine.")
@click.option(
    "--frame",
    default=None,
    metavar="WxH",
    help="Also time the frame-to-answer path at this camera size.",
)
@click.option(
    "--op-profile",
    is_flag=True,
    help="Per-op times (ONNX Runtime profiling; TFLite: the profile's breakdown).",
)
@click.option("--profile", default=None, type=click.Path(dir_okay=False),
              help="Latency profile to estimate with (or to write, with --calibrate).")  # fmt: skip
@click.option(
    "--calibrate",
    is_flag=True,
    help="Measure the corpus on the device and fit its latency profile.",
)
@click.option("--corpus", default="full", show_default=True, type=click.Choice(["full", "small"]),
              help="Calibration corpus (small: a quick, rough fit).")  # fmt: skip
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 20),
              help="Calibration passes over the corpus, then up to as many more for the models whose two fastest "
                   "differ by over 5%; each model keeps its fastest (noise guard).")  # fmt: skip
@click.option(
    "--known-hosts",
    default=None,
    type=click.Path(),
    help="known_hosts file (default: ~/.ssh/known_hosts).",
)
@click.option("-i", "--identity", default=None, type=click.Path(), help="SSH private key.")
@click.option(
    "--python", "remote_python", default="python3", show_default=True, help="The device's Python."
)
@click.option(
    "--min-accuracy", default=None, type=float, help="Exit 1 if an artifact scores below this."
)
@click.option(
    "--plot",
    default=None,
    type=click.Path(),
    help="Latency histogram PNG (default: in the build dir).",
)
@click.option("--no-plot", is_flag=True, help="Do not write the histogram.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds per artifact.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def command(models: tuple[str, ...], as_json: bool, **opts: Any) -> None:
    """Benchmark each artifact of MODELS (build dirs or artifact files), one process per artifact.

    Measures as LiteRT's benchmark_model does (warm-up runs and time, then timed runs and
    time) and prints size, accuracy (with --data), latency (mean, p50, p99, std), FPS,
    init and first-inference times, peak memory, and the device profile's estimate beside
    the measurement with its error; saves them as BUILD/bench_<device>.json before drawing
    the latency histogram (when matplotlib is installed). With --device naming another
    machine and no --host, prints an estimate instead, saying what it stands on and how
    wrong it can be.

    \b
    Examples:
      edgecnn bench build/digits_cnn --data digits
      edgecnn bench build/digits_cnn --device pi4                  # estimate
      edgecnn bench build/digits_cnn --device pi4 --host pi@raspberrypi.local
      edgecnn bench build/digits_cnn --frame 640x480               # the camera path, by stage
      edgecnn bench --calibrate                                    # this machine's profile
      edgecnn bench --calibrate --device pi4 --host pi@raspberrypi.local
    """
    from edgecnn.bench.options import parse_frame
    from edgecnn.errors import BadInput

    frame = parse_frame(opts.pop("frame"))
    if opts["calibrate"]:
        if models:
            raise BadInput("--calibrate measures a device, not a build: give no MODELS")
        return _calibrate(opts, as_json)
    if not models:
        raise BadInput("give the build directories (or artifact files) to bench, or --calibrate")
    _bench(models, opts, frame, as_json)


def _bench(
    models: tuple[str, ...], opts: dict[str, Any], frame: tuple[int, int] | None, as_json: bool
) -> None:
    from edgecnn.bench.api import BenchOptions, bench_build
    from edgecnn.bench.report import check_gates, summarize

    o = BenchOptions(
        device=opts["device"], runs=opts["runs"], warmup=opts["warmup"], data=opts["data"], host=opts["host"],
        threads=opts["threads"], artifacts=list(opts["artifacts"]) or None, estimate=opts["estimate"],
        limit=opts["limit"], known_hosts=opts["known_hosts"], identity=opts["identity"],
        remote_python=opts["remote_python"], timeout=opts["timeout"], backend=opts["backend"],
        warmup_min_s=opts["warmup_min_s"], min_s=opts["min_s"], frame=frame, op_profile=opts["op_profile"],
        profile=opts["profile"],
    ).check()  # fmt: skip
    rows = [row for m in models for row in bench_build(m, o)]
    first = Path(models[0])
    out = summarize(rows, first if first.is_dir() else first.parent, Path(opts["plot"]) if opts["plot"] else None,
                    draw=not opts["no_plot"], several_models=len(models) > 1)  # fmt: skip
    clean = [{k: v for k, v in r.items() if k != "latencies_ms"} for r in rows]
    emit(
        {"results": clean, "histogram": out["histogram"], "saved": out["results"]},
        as_json,
        out["text"],
    )
    check_gates(rows, opts["min_accuracy"])
