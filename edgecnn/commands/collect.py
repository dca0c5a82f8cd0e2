"""`edgecnn collect`: pull new captures from cameras over SSH (strict host keys)."""

from __future__ import annotations

import sys

import click

from edgecnn.commands.common import emit, handle_errors
from edgecnn.tables import format_table


@click.command(
    "collect",
    epilog="""\b
Examples:
  edgecnn collect --host pi@cam1 --out captures/
  edgecnn collect --inventory fleet.txt --out captures/ --delete --json
  edgecnn label captures/          # then label what came in

\b
Each device's captures land in OUT/<user@host>/. Only complete captures (JPEG +
JSON sidecar) are fetched, each file once: OUT/.collect/ remembers what came
before, so a second run fetches only what is new and an interrupted run can
simply be run again. --delete removes, on the device, files whose copy here
matched its sha256. Exit 0: every host done; 1: some host failed; 2: bad input.""",
)
@click.option(
    "--host", "hosts", multiple=True, help="USER@ADDR[:PORT]; repeat for several devices."
)
@click.option(
    "--inventory", type=click.Path(dir_okay=False), help="File with one USER@ADDR[:PORT] per line."
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Local directory.")
@click.option(
    "--remote-dir",
    default="/var/lib/edgecnn/captures",
    show_default=True,
    help="The daemon's --capture-dir on the device.",
)
@click.option("--delete", is_flag=True, help="Delete verified copies from the device.")
@click.option(
    "--batch-mb",
    default=32.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Bytes per SSH round trip.",
)
@click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False),
    help="known_hosts file (default: ssh's own); unknown keys are refused.",
)
@click.option("-i", "--identity", type=click.Path(dir_okay=False), help="SSH private key.")
@click.option("--jobs", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--connect-timeout", default=10.0, show_default=True, type=click.FloatRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def command(hosts: tuple[str, ...], inventory: str | None, out: str, remote_dir: str, delete: bool,
            batch_mb: float, known_hosts: str | None, identity: str | None, jobs: int,
            connect_timeout: float, as_json: bool) -> None:  # fmt: skip
    """Fetch new captures (`serve --capture-dir`) from one or many devices."""
    from edgecnn.collect import CollectOptions, collect
    from edgecnn.deploy import read_inventory

    targets = list(hosts) + (read_inventory(inventory) if inventory else [])
    opts = CollectOptions(remote_dir=remote_dir, delete=delete, batch_mb=batch_mb,
                          known_hosts=known_hosts, identity=identity,
                          connect_timeout=connect_timeout)  # fmt: skip
    rows = [r.row() for r in collect(targets, out, opts, jobs=jobs)]
    cols = ["host", "status", "on_device", "fetched", "files", "bytes", "vanished", "deleted",
            "seconds", "error"]  # fmt: skip
    emit(rows, as_json, format_table(rows, cols))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        click.echo(f"error: {len(failed)} of {len(rows)} host(s) failed", err=True)
        sys.exit(1)
