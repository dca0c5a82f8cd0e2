"""device/: the systemd unit passes `systemd-analyze verify` with no warnings; script and config are valid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from daemon_fixtures import verify_unit

REPO = Path(__file__).resolve().parent.parent
DEVICE = REPO / "device"


def test_unit_verifies_clean(tmp_path):
    unit = DEVICE / "edgecnn.service"
    assert unit.resolve() == (REPO / "edgecnn/daemon/data/edgecnn.service").resolve()  # one copy
    verify_unit(unit, tmp_path / "root")
    text = unit.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "SupplementaryGroups=video",
    ):
        assert line in text


def test_verify_catches_a_bad_unit(tmp_path):
    """The check can fail: a misspelt key is only a warning to systemd, and still fails here."""
    bad = tmp_path / "src" / "edgecnn.service"
    bad.parent.mkdir()
    bad.write_text(
        (DEVICE / "edgecnn.service").read_text().replace("Restart=on-failure", "Restrat=on-failure")
    )
    with pytest.raises(AssertionError, match="Restrat"):
        verify_unit(bad, tmp_path / "root")


def test_rendered_unit_for_another_root_verifies(tmp_path):
    from edgecnn.deploy import unit_text

    unit = tmp_path / "src" / "edgecnn.service"
    unit.parent.mkdir()
    unit.write_text(unit_text("/srv/cams", "/etc/cams"))
    assert (
        "ExecStart=/srv/cams/venv/bin/edgecnn serve --config /etc/cams/edgecnn.toml"
        in unit.read_text()
    )
    verify_unit(unit, tmp_path / "root")


def test_example_config_is_valid_for_serve():
    from edgecnn.daemon.config import ServeOptions, load_config

    cfg = load_config(DEVICE / "edgecnn.toml")
    opts = ServeOptions(**cfg)
    assert opts.model == "/opt/edgecnn/models/current" and opts.source == "picamera2"
    assert opts.host == "127.0.0.1"


def test_install_script_parses_and_has_help():
    script = DEVICE / "install-rpi.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    r = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "whl[device]" in r.stdout and "video" in r.stdout
    assert "not on PyPI" in r.stdout and "pip wheel" in r.stdout


def test_install_script_wants_the_wheel_it_installs(tmp_path):
    """edgecnn is not on PyPI: without --pip-spec the script installs the wheel beside it, and
    says how to build one when there is none (before it touches apt or users)."""
    script = tmp_path / "install-rpi.sh"
    script.write_text((DEVICE / "install-rpi.sh").read_text())
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=10)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "pip wheel" in lines[0], r.stderr
