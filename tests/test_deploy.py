"""`edgecnn deploy` against a real sshd on 127.0.0.1 (strict host keys), with a daemon on the "device".

Only systemd itself is stood in for (no PID-1 systemd can run here): the
device's `systemctl` is a script that records its arguments. The unit it
installs is checked with `systemd-analyze verify`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_fixtures import (
    REPO,
    Served,
    daemon_build,
    daemon_video,
    free_port,
    get_json,
    verify_unit,
)

sys.path.insert(0, str(Path(__file__).parent))
from sshd import SSHServer, sshd_available  # noqa: E402

pytestmark = pytest.mark.skipif(not sshd_available(), reason="openssh-server/client not installed")


def deploy_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgecnn.cli", "deploy", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def sshd():
    with SSHServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return daemon_build(tmp_path_factory)


def second_build(build: Path, dest: Path) -> Path:
    """The same model listing only its float32 TFLite: another version to deploy."""
    shutil.copytree(build, dest)
    m = json.loads((dest / "manifest.json").read_text())
    m["artifacts"] = [a for a in m["artifacts"] if a["path"] == "model_float32.tflite"]
    m["created"] = "2030-01-01T00:00:00+00:00"
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


def ssh_args(srv: SSHServer) -> list[str]:
    return ["--known-hosts", str(srv.known_hosts), "-i", str(srv.client_key)]


def test_fleet_one_host_failing_does_not_stop_the_other(sshd, build, tmp_path):
    root = tmp_path / "device"
    dead = f"root@127.0.0.1:{free_port()}"
    r = deploy_cli(
        str(build),
        "--host",
        sshd.target,
        "--host",
        dead,
        "--root",
        str(root),
        "--json",
        *ssh_args(sshd),
    )
    assert r.returncode == 1, r.stderr
    rows = json.loads(r.stdout)
    assert [row["status"] for row in rows] == ["ok", "failed"]
    assert "connection refused" in rows[1]["error"]
    assert r.stderr.strip() == "error: 1 of 2 host(s) failed"
    version = rows[0]["version"]
    current = root / "models" / "current"
    assert os.readlink(current) == f"versions/{version}"
    m = json.loads((current / "manifest.json").read_text())
    for art in m["artifacts"]:  # every file arrived intact
        from edgecnn.fsutil import sha256_file

        assert sha256_file(current / art["path"]) == art["sha256"]
    assert (current / "SHA256SUMS").exists()
    assert not list((root / "models").glob(".incoming-*"))
    # Deploying the same build again reuses the version directory.
    r = deploy_cli(str(build), "--host", sshd.target, "--root", str(root), *ssh_args(sshd))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout and version in r.stdout  # the table
    assert len(list((root / "models" / "versions").iterdir())) == 1


def test_strict_host_keys(sshd, build, tmp_path):
    r = deploy_cli(str(build), "--host", sshd.target, "--root", str(tmp_path / "d"), "--json",
                   "--known-hosts", str(sshd.wrong_known_hosts()), "-i", str(sshd.client_key))  # fmt: skip
    assert r.returncode == 1
    row = json.loads(r.stdout)[0]
    assert row["status"] == "failed" and "does not match known_hosts" in row["error"]
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    r = deploy_cli(str(build), "--host", sshd.target, "--root", str(tmp_path / "d"), "--json",
                   "--known-hosts", str(empty), "-i", str(sshd.client_key))  # fmt: skip
    assert "not in known_hosts" in json.loads(r.stdout)[0]["error"]
    assert not (tmp_path / "d").exists()


def test_bad_input(build, tmp_path):
    r = deploy_cli(str(build))
    assert r.returncode == 2 and r.stderr.startswith("error: no hosts")
    broken = tmp_path / "broken"
    shutil.copytree(build, broken)
    with open(broken / "model_int8.tflite", "ab") as f:
        f.write(b"tampered")
    r = deploy_cli(str(broken), "--host", "root@127.0.0.1:1")
    assert r.returncode == 2 and "does not match its manifest sha256" in r.stderr
    r = deploy_cli(str(tmp_path), "--host", "root@127.0.0.1:1")
    assert r.returncode == 2 and "no manifest.json" in r.stderr
    inv = tmp_path / "fleet.txt"
    inv.write_text("# cameras\nroot@127.0.0.1:1  # dead\n\n")
    r = deploy_cli(str(build), "--inventory", str(inv), "--json", "--connect-timeout", "2")
    assert r.returncode == 1 and json.loads(r.stdout)[0]["host"] == "root@127.0.0.1:1"


def test_deploy_service_and_running_daemon_reloads(sshd, build, tmp_path, tmp_path_factory):
    video, _ = daemon_video(tmp_path_factory)
    root = tmp_path / "device"
    unit_dir = tmp_path / "etc-systemd"
    config_dir = tmp_path / "etc-edgecnn"
    calls = tmp_path / "systemctl.calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n[ "$1" = is-active ] && exit 3\nexit 0\n')
    fake.chmod(0o755)
    common = ["--root", str(root), "--json", *ssh_args(sshd)]
    r = deploy_cli(str(build), "--host", sshd.target, *common)
    assert r.returncode == 0, r.stderr
    v1 = json.loads(r.stdout)[0]["version"]
    with Served(
        "--model",
        str(root / "models" / "current"),
        "--source",
        str(video),
        "--loop",
        "--watch",
        "0.2",
    ) as s:
        first = get_json(s.url("/api/predictions"))[1]["model"]["version"]
        b2 = second_build(build, tmp_path / "build2")
        # The device's own config (kept by deploy) says where the daemon listens: the health
        # check after the reload finds it there.
        from edgecnn.deploy import config_text

        config_dir.mkdir()
        (config_dir / "edgecnn.toml").write_text(
            config_text(str(root)).replace("port = 8080", f"port = {s.port}")
        )
        r = deploy_cli(str(b2), "--host", sshd.target, "--service", "--unit-dir", str(unit_dir),
                       "--config-dir", str(config_dir), "--systemctl", str(fake), *common)  # fmt: skip
        assert r.returncode == 0, r.stdout
        row = json.loads(r.stdout)[0]
        assert row["service"] == "installed+reloaded" and row["version"] != v1
        assert row["health"] == "ok"  # the check waited for the daemon to serve the new build
        # The running daemon picked up the flipped symlink on its own.
        s.wait_for(
            lambda: get_json(s.url("/api/predictions"))[1]["model"]["version"] != first,
            what="reload",
        )
        assert get_json(s.url("/api/predictions"))[1]["model"]["artifact"] == "model_float32.tflite"
    assert calls.read_text().split("\n")[:3] == [
        "daemon-reload",
        "enable edgecnn.service",
        "reload-or-restart edgecnn.service",
    ]
    unit = (unit_dir / "edgecnn.service").read_text()
    assert f"ExecStart={root}/venv/bin/edgecnn serve --config {config_dir}/edgecnn.toml" in unit
    cfg = (config_dir / "edgecnn.toml").read_text()
    assert f'model = "{root}/models/current"' in cfg and f"port = {s.port}" in cfg  # kept
    verify_unit(unit_dir / "edgecnn.service", tmp_path / "verify-root")
    assert sorted(p.name for p in (root / "models" / "versions").iterdir()) == sorted(
        [v1, row["version"]]
    )


def test_device_script_refuses_a_corrupted_copy(build, tmp_path):
    """The device-side step on its own (run with sh here): a bad sha256 leaves `current` untouched."""
    from edgecnn.deploy import SUMS_NAME, DeployOptions, _sums_file, device_script, make_bundle

    bundle = make_bundle(build)
    opts = DeployOptions(root=str(tmp_path / "dev"))
    models = tmp_path / "dev" / "models"
    (models / "versions" / "old").mkdir(parents=True)
    (models / "current").symlink_to("versions/old")
    incoming = models / ".incoming-x"
    incoming.mkdir()
    for rel, path in bundle.files.items():
        shutil.copy(path, incoming / rel)
    (incoming / SUMS_NAME).write_bytes(_sums_file(bundle))
    with open(incoming / "model_int8.tflite", "r+b") as f:
        f.seek(64)
        f.write(b"\0\1\2\3")
    r = subprocess.run(
        ["sh", "-c", device_script(bundle, str(incoming), opts)], capture_output=True, text=True
    )
    assert r.returncode == 10 and "model_int8.tflite: FAILED" in r.stderr
    assert os.readlink(models / "current") == "versions/old" and not incoming.exists()


@pytest.fixture
def shared_root():
    """A device root every user can traverse (pytest's own tmp dirs are 0700)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="edgecnn-device-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def read_as(user: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", user, "--", "cat", str(path)], capture_output=True, timeout=30
    )


def test_build_files_follow_the_umask(build, tmp_path):
    """Issue 12.13: convert wrote 0600 files in a 0700 directory whatever the umask."""
    for name in ("manifest.json", "labels.txt", "model_int8.tflite", "model_float32.tflite"):
        assert (build / name).stat().st_mode & 0o777 == 0o644, name  # built under umask 022
    assert build.stat().st_mode & 0o777 == 0o755
    from edgecnn.fsutil import atomic_dir, atomic_write_text

    old = os.umask(0o027)
    try:
        with atomic_dir(tmp_path / "out") as d:
            atomic_write_text(d / "manifest.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "out" / "manifest.json").stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(shutil.which("runuser") is None, reason="util-linux runuser missing")
def test_deployed_tree_is_readable_by_the_service_user(sshd, build, tmp_path, shared_root):
    """Issue 12.13: a build whose files are 0600 (older convert, tight umask), deployed by one
    user, is readable by the service running as another (`nobody`, group `nogroup` here)."""
    private = tmp_path / "private_build"
    shutil.copytree(build, private)
    for f in private.iterdir():
        f.chmod(0o600)
    r = deploy_cli(str(private), "--host", sshd.target, "--root", str(shared_root),
                   "--service-group", "nogroup", "--json", *ssh_args(sshd))  # fmt: skip
    assert r.returncode == 0, r.stderr
    current = shared_root / "models" / "current"
    for name in ("manifest.json", "model_int8.tflite", "labels.txt"):
        got = read_as("nobody", current / name)
        assert got.returncode == 0, got.stderr.decode()
    mode = (current / "manifest.json").stat().st_mode & 0o777
    assert mode == 0o640, oct(mode)  # the group reads it; others do not


def test_stale_incoming_directories_are_removed(sshd, build, tmp_path):
    """Issue 12.14: a deploy killed mid-transfer left .incoming-... with a truncated artifact,
    still there after the next successful deploy. Now it goes; one still in use stays."""
    root = tmp_path / "device"
    models = root / "models"
    dead = models / ".incoming-cnn_small-killed-0badc0de"
    dead.mkdir(parents=True)
    (dead / "model_int8.tflite").write_bytes((build / "model_int8.tflite").read_bytes()[:1000])
    busy = models / ".incoming-cnn_small-busy-00c0ffee"
    busy.mkdir()
    holder = subprocess.Popen(["sh", "-c", f"sleep 60; echo {busy}"])  # a transfer using it
    try:
        r = deploy_cli(str(build), "--host", sshd.target, "--root", str(root), *ssh_args(sshd))
        assert r.returncode == 0, r.stderr
        assert not dead.exists()
        assert busy.exists()
        leftovers = sorted(p.name for p in models.glob(".incoming-*"))
        assert leftovers == [busy.name]
    finally:
        holder.kill()
        holder.wait()


def test_a_failed_health_check_rolls_back_and_rollback_by_hand(
    sshd, build, tmp_path, tmp_path_factory
):
    from helpers import copy_build, edit_manifest, replace_artifact

    video, _ = daemon_video(tmp_path_factory)
    root, port = tmp_path / "device", free_port()
    models = root / "models"
    common = ["--host", sshd.target, "--root", str(root), "--json", *ssh_args(sshd)]
    check = ["--health-url", f"http://127.0.0.1:{port}/healthz", "--health-timeout", "4"]
    r = deploy_cli(str(build), *common)  # no daemon yet, nothing reloaded: no check (auto)
    assert r.returncode == 0 and json.loads(r.stdout)[0]["health"] == "-", r.stderr
    v1 = json.loads(r.stdout)[0]["version"]
    with Served("--model", str(models / "current"), "--source", str(video), "--loop",
                "--watch", "0.2", port=port) as s:  # fmt: skip
        served = lambda: get_json(s.url("/api/predictions"))[1]["model"]["version"]  # noqa: E731
        first = served()
        r = deploy_cli(str(second_build(build, tmp_path / "b2")), *common, *check)
        row = json.loads(r.stdout)[0]
        assert r.returncode == 0 and row["status"] == "ok" and row["health"] == "ok", r.stdout
        v2 = row["version"]
        second = served()
        assert second != first and os.readlink(models / "previous") == f"versions/{v1}"

        # A build the daemon cannot load (its artifact is garbage, its manifest says so honestly):
        # it keeps serving v2, the check fails, and the switch is undone.
        bad = copy_build(tmp_path / "b2", tmp_path / "b3")
        replace_artifact(bad, "model_float32.tflite", b"not a model" * 64)
        r = deploy_cli(str(bad), *common, *check)
        row = json.loads(r.stdout)[0]
        assert r.returncode == 1 and row["status"] == "rolled-back", r.stdout
        assert "still serving" in row["error"] and row["previous"] == v2
        assert os.readlink(models / "current") == f"versions/{v2}"
        assert os.readlink(models / "previous") == f"versions/{v1}"
        assert sorted(p.name for p in (models / "versions").iterdir()) == sorted([v1, v2])
        assert served() == second

        r = deploy_cli("--rollback", *common, *check)  # by hand, back to v1
        row = json.loads(r.stdout)[0]
        assert r.returncode == 0 and row["status"] == "ok" and row["version"] == v1, r.stdout
        assert row["health"] == "ok" and served() == first
        assert os.readlink(models / "previous") == f"versions/{v2}"
        b4 = second_build(build, tmp_path / "b4")
        edit_manifest(b4, lambda m: m.update(created="2031-01-01T00:00:00+00:00"))
        r = deploy_cli(str(b4), *common, *check, "--keep", "1")
        v4 = json.loads(r.stdout)[0]["version"]
        assert r.returncode == 0 and v4 not in (v1, v2), r.stdout
        # keep 1: the new version, and the one `previous` holds for a rollback (v1), stay.
        assert {p.name for p in (models / "versions").iterdir()} == {v1, v4}


def test_rollback_needs_a_previous_version(sshd, build, tmp_path):
    root = tmp_path / "device"
    r = deploy_cli(
        "--rollback", "--host", sshd.target, "--root", str(root), "--json", *ssh_args(sshd)
    )
    assert r.returncode == 1 and "no previous version" in json.loads(r.stdout)[0]["error"]
    for args in ([], [str(build), "--rollback"]):
        r = deploy_cli(*args, "--host", sshd.target)
        assert r.returncode == 2 and "--rollback" in r.stderr
    r = deploy_cli(str(build), "--host", sshd.target, "--health-url", "ftp://x")
    assert r.returncode == 2 and "--health-url" in r.stderr
