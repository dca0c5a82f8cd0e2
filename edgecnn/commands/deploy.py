"""`edgecnn deploy`: push a build to one device or a fleet over SSH (strict host keys)."""

from __future__ import annotations

import sys

import click

from edgecnn.commands.common import emit, handle_errors
from edgecnn.tables import format_table


@click.command(
    "deploy",
    epilog="""\b
Examples:
  edgecnn deploy build/digits --host pi@192.168.1.20
  edgecnn deploy build/digits --host pi@cam1 --host pi@cam2:2222 --service
  edgecnn deploy build/digits --host pi@raspberrypi.local --install-runtime --service
  edgecnn deploy build/digits --inventory fleet.txt --known-hosts ~/.ssh/known_hosts --json
  edgecnn deploy build/digits-2 --host pi@cam1 --health-url http://127.0.0.1:8080/healthz
  edgecnn deploy --rollback --host pi@cam1

\b
Each device gets <root>/models/versions/<version> (sha256 checked on the
device) and <root>/models/current flipped to it atomically; a running
daemon reloads. Then /healthz is checked on the device (by default when
deploy reloaded the service): unless it answers 200 while serving the new
build, the switch is undone. --rollback points current back at the version
before it. A build whose retrain gate failed is refused. Exit 0: every host
done; 1: some host failed or was rolled back; 2: bad input.""",
)
@click.argument("build_dir", required=False, type=click.Path())
@click.option(
    "--rollback", is_flag=True, help="Switch back to the previous version (no BUILD_DIR)."
)
@click.option(
    "--health-url",
    default="auto",
    show_default=True,
    help="/healthz URL as seen on the device; 'auto': when the service was reloaded, the "
    "address in the device's edgecnn.toml; 'none': no check.",
)
@click.option("--health-timeout", default=30.0, show_default=True, type=click.FloatRange(1))
@click.option(
    "--host", "hosts", multiple=True, help="USER@ADDR[:PORT]; repeat for several devices."
)
@click.option(
    "--inventory", type=click.Path(dir_okay=False), help="File with one USER@ADDR[:PORT] per line."
)
@click.option(
    "--service",
    is_flag=True,
    help="Install/refresh the systemd unit (and a default config) and reload it.",
)
@click.option(
    "--root", default="/opt/edgecnn", show_default=True, help="Install root on the device."
)
@click.option(
    "--keep",
    default=3,
    show_default=True,
    type=click.IntRange(0),
    help="Versions kept on the device (0: all).",
)
@click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False),
    help="known_hosts file (default: ssh's own); unknown keys are refused.",
)
@click.option("-i", "--identity", type=click.Path(dir_okay=False), help="SSH private key.")
@click.option(
    "--jobs",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Hosts deployed in parallel.",
)
@click.option(
    "--install-runtime",
    is_flag=True,
    help="Also push edgecnn itself (a wheel of this checkout, or --wheel) and pip-install it "
    "into <root>/venv on the device, which is made if missing.",
)
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False),
    help="The edgecnn wheel --install-runtime pushes (default: built from this checkout).",
)
@click.option(
    "--extras",
    default="device",
    show_default=True,
    help="Extras installed with the wheel, e.g. device,video for a USB camera.",
)
@click.option("--connect-timeout", default=10.0, show_default=True, type=click.FloatRange(1))
@click.option(
    "--service-group",
    default="edgecnn",
    show_default=True,
    help="Group the service runs as: the deployed files are made readable by it.",
)
@click.option("--unit-dir", default="/etc/systemd/system", show_default=True, hidden=True)
@click.option("--config-dir", default="/etc/edgecnn", show_default=True, hidden=True)
@click.option("--systemctl", default="systemctl", show_default=True, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def command(build_dir: str | None, rollback: bool, health_url: str, health_timeout: float,
            hosts: tuple[str, ...], inventory: str | None, service: bool, root: str, keep: int,
            known_hosts: str | None, identity: str | None, jobs: int, install_runtime: bool,
            wheel: str | None, extras: str, connect_timeout: float, service_group: str,
            unit_dir: str, config_dir: str, systemctl: str, as_json: bool) -> None:  # fmt: skip
    """Deploy BUILD_DIR (artifacts + manifest) to devices over SSH, in parallel."""
    from edgecnn import deploy as dep
    from edgecnn.deploy_health import health_url as check_url
    from edgecnn.errors import BadInput

    if rollback == bool(build_dir):
        raise BadInput("give BUILD_DIR to deploy, or --rollback (without one) to switch back")
    targets = list(hosts) + (dep.read_inventory(inventory) if inventory else [])
    if not root.startswith("/"):
        raise BadInput("--root must be an absolute path on the device")
    opts = dep.DeployOptions(
        root=root,
        service=service,
        keep=keep,
        known_hosts=known_hosts,
        identity=identity,
        unit_dir=unit_dir,
        config_dir=config_dir,
        systemctl=systemctl,
        connect_timeout=connect_timeout,
        service_group=service_group,
        install_runtime=install_runtime or bool(wheel),
        wheel=wheel,
        extras=extras,
        health_url=health_url,
        health_timeout=health_timeout,
    )
    check_url(opts, "")  # a malformed --health-url fails here, before any device
    if rollback:
        results = dep.rollback(targets, opts, jobs=jobs)
    else:
        results = dep.deploy(build_dir, targets, opts, jobs=jobs)  # type: ignore[arg-type]
    rows = [r.row() for r in results]
    cols = [
        "host",
        "status",
        "version",
        "files",
        "bytes",
        "service",
        "runtime",
        "health",
        "seconds",
        "error",
    ]
    emit(rows, as_json, format_table(rows, cols))
    failed = [r for r in results if r.status != "ok"]
    if failed:
        click.echo(f"error: {len(failed)} of {len(results)} host(s) failed", err=True)
        sys.exit(1)
