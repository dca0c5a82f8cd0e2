"""device/: the systemd unit passes `systemd-analyze verify` with no warnings; script and config are valid."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEVICE = REPO / "device"
ANALYZE = shutil.which("systemd-analyze")


def verify_unit(unit: Path, root: Path) -> None:
    """`systemd-analyze verify --man=no` inside a scratch root holding the unit's executables.

    The root gets the host's stock units (for the targets the unit names),
    `kill` (ExecReload) and a stand-in for every absolute ExecStart binary, so
    the check is about the unit file itself. Any output at all fails.
    """
    if ANALYZE is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    text = unit.read_text()
    (root / "usr/lib/systemd").mkdir(parents=True, exist_ok=True)
    if not (root / "bin").exists():
        (root / "bin").symlink_to("usr/bin")
    shutil.copytree(
        "/usr/lib/systemd/system",
        root / "usr/lib/systemd/system",
        symlinks=True,
        dirs_exist_ok=True,
    )
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("kill") or "/usr/bin/kill", root / "usr/bin/kill")
    for exe in re.findall(r"^Exec\w+=[-@:+!]*(/\S+)", text, flags=re.M):
        target = root / exe.lstrip("/")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("#!/bin/sh\n")
            target.chmod(0o755)
    dest = root / "etc/systemd/system" / unit.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    r = subprocess.run(
        [ANALYZE, "verify", "--man=no", f"--root={root}", str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stderr + r.stdout


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
    assert r.returncode == 0 and "edgecnn[device]" in r.stdout and "video" in r.stdout
