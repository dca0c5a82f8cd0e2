"""`edgecnn bench`: time artifacts here, on a device over SSH, or estimate for a device."""

from __future__ import annotations

from pathlib import Path

import click

from edgecnn.bench.devices import DEVICE_NAMES
from edgecnn.commands.common import emit, format_table, handle_errors
from edgecnn.errors import CheckFailed
from edgecnn.runtime.backends import BACKENDS


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
    and writes a latency histogram PNG. With --device naming another machine and
    no --host, prints a clearly labelled estimate from per-layer MACs instead.

    \b
    Examples:
      edgecnn bench build/digits_cnn --data digits
      edgecnn bench build/digits_cnn --device pi4                  # estimate
      edgecnn bench build/digits_cnn --device pi4 --host pi@raspberrypi.local
    """
    from edgecnn.bench.api import bench_build
    from edgecnn.bench.devices import get_device
    from edgecnn.bench.report import headline, plot_histogram, table_rows

    get_device(device)  # unknown names fail before any work
    rows = []
    for m in models:
        rows += bench_build(
            m, device=device, runs=runs, warmup=warmup, data=data, host=host, threads=threads,
            artifacts=list(artifacts) or None, estimate=estimate, limit=limit,
            known_hosts=known_hosts, identity=identity, remote_python=remote_python, timeout=timeout,
            backend=backend,
        )  # fmt: skip
    plot_path = None
    if not no_plot and any(r.get("latencies_ms") for r in rows):
        first = Path(models[0])
        build = first if first.is_dir() else first.parent
        target = Path(plot) if plot else build / f"bench_{rows[0]['device']}_latency.png"
        plot_path = plot_histogram(rows, target)
    failed = [r for r in rows if r["status"] == "failed"]
    low = [
        r
        for r in rows
        if min_accuracy is not None
        and r.get("accuracy") is not None
        and r["accuracy"] < min_accuracy
    ]
    clean = [{k: v for k, v in r.items() if k != "latencies_ms"} for r in rows]
    table, cols = table_rows(rows, several_models=len(models) > 1)
    text = headline(rows) + "\n" + format_table(table, cols)
    if plot_path:
        text += f"\nlatency histogram: {plot_path}"
    emit({"results": clean, "histogram": str(plot_path) if plot_path else None}, as_json, text)
    if failed:
        raise CheckFailed(
            f"{len(failed)} artifact(s) failed: {failed[0]['artifact']}: {failed[0].get('error')}"
        )
    if low:
        raise CheckFailed(
            f"{low[0]['artifact']} accuracy {low[0]['accuracy']:.4f} is below --min-accuracy {min_accuracy}"
        )
