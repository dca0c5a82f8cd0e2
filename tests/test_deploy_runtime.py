"""`edgecnn deploy --install-runtime`: edgecnn itself reaches the device as a wheel (issue 13,
item 8), against a real sshd on 127.0.0.1. The device side has only its own Python: the wheel
is pip-installed with [device] into <root>/venv, which then predicts with the deployed build.
Needs the package index (or a warm pip cache), like tests/test_device_venv.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_fixtures import daemon_build, digits_test
from test_deploy import deploy_cli, ssh_args

sys.path.insert(0, str(Path(__file__).parent))
from sshd import SSHServer, sshd_available  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not sshd_available(), reason="openssh-server/client not installed"),
    pytest.mark.skipif(
        os.environ.get("EDGECNN_SKIP_VENV_TEST") == "1", reason="EDGECNN_SKIP_VENV_TEST=1"
    ),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def sshd():
    with SSHServer() as srv:
        yield srv


def test_install_runtime_pushes_the_wheel_and_the_device_predicts(sshd, tmp_path_factory, tmp_path):
    from PIL import Image

    build = daemon_build(tmp_path_factory)
    root = tmp_path / "device"
    r = deploy_cli(
        str(build), "--host", sshd.target, "--root", str(root), "--install-runtime", "--json",
        *ssh_args(sshd),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    row = json.loads(r.stdout)[0]
    assert row["status"] == "ok" and row["runtime"] == "0.1.0", row
    edgecnn = root / "venv" / "bin" / "edgecnn"
    assert edgecnn.is_file()
    version_dir = root / "models" / "versions" / row["version"]
    assert not (version_dir / ".edgecnn-runtime").exists()  # the wheel does not stay in the model
    x, y = digits_test()
    img = tmp_path / "digit.png"
    Image.fromarray(x[0][..., 0]).save(img)
    out = subprocess.run(
        [str(edgecnn), "predict", str(root / "models" / "current"), str(img), "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["backend"] == "litert"
    probe = [str(root / "venv" / "bin" / "python"), "-c", "import edgecnn; print(edgecnn.__file__)"]
    where = subprocess.run(probe, capture_output=True, text=True, cwd=tmp_path).stdout
    assert str(root / "venv") in where  # the pushed copy, not this checkout


def test_a_wheel_that_is_not_edgecnn_is_refused(tmp_path_factory, tmp_path):
    build = daemon_build(tmp_path_factory)
    fake = tmp_path / "other-1.0-py3-none-any.whl"
    fake.write_bytes(b"PK")
    r = deploy_cli(str(build), "--host", "root@127.0.0.1:1", "--wheel", str(fake))
    assert r.returncode == 2 and "is not an edgecnn wheel" in r.stderr, r.stderr
