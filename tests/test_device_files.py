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


EXPOSURE_GOAL = 4.5


def exposure(unit: Path) -> float:
    """`systemd-analyze security --offline=true` on a unit file: the overall exposure score."""
    import re
    import shutil

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    r = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    return float(m.group(1))


def test_unit_exposure_is_at_most_4_5_and_keeps_the_camera(tmp_path):
    """Issue 12.15: the shipped unit scored 7.4 MEDIUM; hardened, it must stay <= 4.5 while a
    camera (V4L2, libcamera's media and DMA-heap nodes) and a USB Edge TPU still work."""
    from edgecnn.deploy import unit_text

    score = exposure(DEVICE / "edgecnn.service")
    print(f"systemd-analyze security exposure: {score}")
    assert score <= EXPOSURE_GOAL, score
    rendered = tmp_path / "edgecnn.service"
    rendered.write_text(unit_text("/srv/cams", "/etc/cams"))
    assert exposure(rendered) == score
    text = (DEVICE / "edgecnn.service").read_text()
    for line in (
        "DevicePolicy=closed",
        "DeviceAllow=char-video4linux rw",
        "DeviceAllow=char-media rw",
        "DeviceAllow=char-dma_heap rw",
        "DeviceAllow=char-usb_device rw",
        "SupplementaryGroups=video",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    ):
        assert line in text, line
    assert "PrivateNetwork=yes" not in text and "PrivateDevices=yes" not in text


def test_exposure_check_can_fail(tmp_path):
    """The same check on the unit as it was before the hardening scores above the goal."""
    text = (DEVICE / "edgecnn.service").read_text()
    start, end = text.index("NoNewPrivileges=yes"), text.index("[Install]")
    bare = tmp_path / "edgecnn.service"
    bare.write_text(text[:start] + "NoNewPrivileges=yes\n\n" + text[end:])
    assert exposure(bare) > EXPOSURE_GOAL


def test_install_script_wants_the_wheel_it_installs(tmp_path):
    """edgecnn is not on PyPI: without --pip-spec the script installs the wheel beside it, and
    says how to build one when there is none (before it touches apt or users)."""
    script = tmp_path / "install-rpi.sh"
    script.write_text((DEVICE / "install-rpi.sh").read_text())
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=10)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "pip wheel" in lines[0], r.stderr
