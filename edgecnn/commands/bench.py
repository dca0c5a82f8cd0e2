"""`edgecnn bench`: time artifacts here, on a device over SSH, or estimate for a device."""

from __future__ import annotations

from pathlib import Path

import click

from edgecnn.bench.devices import DEVICE_NAMES
from edgecnn.commands.common import emit, handle_errors
from edgecnn.runtime.formats import BACKENDS


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option(
    "--device",
    default="host",
    show_default=True,
    help=f"Device profile: {', '.join(DEVICE_NAMES)} (pi = pi4). Elsewhere without --host: an estimate.",
)
@click.option(
    "--host", "host", default=None, metavar="USER@ADDR[:PORT]", help="Bench on the device over SSH."
)
@click.option(
    "--backend",
    default=None,
    type=click.Choice(BACKENDS),
    help="Runtime backend (default: profile).",
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(1, None),
    help="Interpreter threads (default: profile).",
)
@click.option("--runs", default=100, show_default=True, type=click.IntRange(1, None))
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(0, None))
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
def command(
    models: tuple[str, ...],
    device: str,
    host: str | None,
    backend: str | None,
    threads: int | None,
    runs: int,
    warmup: int,
    data: str | None,
    limit: int,
    artifacts: tuple[str, ...],
    estimate: bool,
    known_hosts: str | None,
    identity: str | None,
    remote_python: str,
    min_accuracy: float | None,
    plot: str | None,
    no_plot: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Benchmark each artifact of MODELS (build dirs or artifact files), one process per artifact.

    Prints format, precision, status, size, accuracy (with --data), latency
    (mean, p50, p99, std), FPS, init and first-inference times and peak memory,
    saves them as BUILD/bench_<device>.json, and writes a latency histogram PNG (when
    matplotlib is installed). With --device naming another machine and
    no --host, prints a clearly labelled estimate from per-layer MACs instead.

    \b
    Examples:
      edgecnn bench build/digits_cnn --data digits
      edgecnn bench build/digits_cnn --device pi4                  # estimate
      edgecnn bench build/digits_cnn --device pi4 --host pi@raspberrypi.local
    """
    from edgecnn.bench.api import BenchOptions, bench_build
    from edgecnn.bench.report import check_gates, summarize

    opts = BenchOptions(
        device=device, runs=runs, warmup=warmup, data=data, host=host, threads=threads,
        artifacts=list(artifacts) or None, estimate=estimate, limit=limit, known_hosts=known_hosts,
        identity=identity, remote_python=remote_python, timeout=timeout, backend=backend,
    ).check()  # fmt: skip
    rows = [row for m in models for row in bench_build(m, opts)]
    first = Path(models[0])
    out = summarize(rows, first if first.is_dir() else first.parent, Path(plot) if plot else None,
                    draw=not no_plot, several_models=len(models) > 1)  # fmt: skip
    clean = [{k: v for k, v in r.items() if k != "latencies_ms"} for r in rows]
    emit(
        {"results": clean, "histogram": out["histogram"], "saved": out["results"]},
        as_json,
        out["text"],
    )
    check_gates(rows, min_accuracy)
