"""`edgecnn collect` against a real sshd on 127.0.0.1 (strict host keys), with captures written by
the real daemon (`serve --capture-dir`) on the "device".
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import run_cli
from daemon_fixtures import REPO, daemon_build, daemon_video
from loop_fixtures import serve_once
from sshd import SSHServer, sshd_available

pytestmark = pytest.mark.skipif(not sshd_available(), reason="openssh-server/client not installed")


@pytest.fixture(scope="module")
def sshd():
    with SSHServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    """About 130 captures (JPEG, model-size JPEG, sidecar) of the digits video, by the daemon."""
    build = daemon_build(tmp_path_factory)
    video, _ = daemon_video(tmp_path_factory)
    out = tmp_path_factory.mktemp("device") / "captures"
    r = serve_once("--model", str(build), "--source", str(video), "--capture-dir", str(out),
                   "--capture-every", "8", "--capture-rate", "10000", "--capture-seed", "1",
                   "--capture-model-size")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list(out.glob("*.json"))) > 80
    return out


def ssh_args(srv: SSHServer) -> list[str]:
    return ["--known-hosts", str(srv.known_hosts), "-i", str(srv.client_key)]


def collect(srv: SSHServer, remote: Path, out: Path, *extra: str) -> tuple[int, list[dict], str]:
    r = run_cli("collect", "--host", srv.target, "--remote-dir", str(remote), "--out", str(out),
                "--json", *ssh_args(srv), *extra, timeout=180)  # fmt: skip
    try:
        rows = json.loads(r.stdout)
    except ValueError:
        rows = []
    return r.returncode, rows, r.stderr


def digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


def ledger_names(out: Path, srv: SSHServer) -> list[str]:
    path = out / ".collect" / f"{srv.user}@127.0.0.1_{srv.port}.fetched"
    return [ln.split()[0] for ln in path.read_text().splitlines()] if path.exists() else []


def test_incremental_verified_and_delete(sshd, captures, tmp_path):
    device = tmp_path / "device"
    device.mkdir()
    stems = sorted(p.name[:-5] for p in captures.glob("*.json"))
    first, later = stems[: len(stems) // 2], stems[len(stems) // 2 :]
    for stem in first:
        for f in captures.glob(f"{stem}.*"):
            shutil.copy(f, device)
    shutil.copy(captures / f"{later[0]}.jpg", device)  # being written: no sidecar yet
    (device / "notes.txt").write_text("not a capture")
    out = tmp_path / "local"

    code, rows, err = collect(sshd, device, out)
    assert code == 0, err
    row = rows[0]
    assert row["status"] == "ok" and row["on_device"] == len(first) == row["fetched"]
    folder = Path(row["folder"])
    assert folder.name == f"{sshd.user}@127.0.0.1_{sshd.port}"
    device_files = {
        n: d for n, d in digests(device).items() if n != "notes.txt" and not n.startswith(later[0])
    }
    assert digests(folder) == device_files  # every file, byte for byte, and nothing else
    assert row["files"] == len(device_files) == len(first) * 3  # image, model-size image, sidecar

    code, rows, _ = collect(sshd, device, out)  # nothing new: nothing fetched
    assert code == 0 and rows[0]["fetched"] == 0 and rows[0]["files"] == 0

    for stem in later:  # the camera kept capturing
        for f in captures.glob(f"{stem}.*"):
            shutil.copy(f, device)
    (folder / f"{first[0]}.jpg").unlink()  # labelled away meanwhile: must not come back
    code, rows, _ = collect(sshd, device, out, "--delete")
    assert code == 0
    assert rows[0]["fetched"] == len(later) and rows[0]["files"] == len(later) * 3
    names = ledger_names(out, sshd)
    assert len(names) == len(set(names)) == len(stems) * 3  # each file fetched once
    assert not (folder / f"{first[0]}.jpg").exists()
    # --delete removed exactly the verified copies; the stray file stays.
    assert rows[0]["deleted"] == len(stems) * 3
    assert sorted(p.name for p in device.iterdir()) == ["notes.txt"]
    table = run_cli("collect", "--host", sshd.target, "--remote-dir", str(device), "--out",
                    str(out), *ssh_args(sshd))  # fmt: skip
    assert table.returncode == 0 and "on_device" in table.stdout and "fetched" in table.stdout


def test_interrupted_collect_fetches_the_rest_once(sshd, captures, tmp_path):
    device = shutil.copytree(captures, tmp_path / "device")
    out = tmp_path / "local"
    total = len(list(device.iterdir()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecnn.cli", "collect", "--host", sshd.target, "--remote-dir",
         str(device), "--out", str(out), "--batch-mb", "0.02", *ssh_args(sshd)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(ledger_names(out, sshd)) < 20:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # mid-transfer, no chance to clean up
    proc.wait()
    before = len(ledger_names(out, sshd))
    folder = out / f"{sshd.user}@127.0.0.1_{sshd.port}"
    here = {p.name for p in folder.iterdir()}
    assert 20 <= before < total, (before, total)

    code, rows, err = collect(sshd, device, out)
    assert code == 0, err
    assert rows[0]["files"] == total - len(here)  # only what had not arrived
    names = ledger_names(out, sshd)
    assert len(names) == len(set(names)) == total
    assert digests(folder) == digests(device)
    assert not list((out / ".collect").glob("staging-*"))


def test_host_key_mismatch_is_refused(sshd, captures, tmp_path):
    out = tmp_path / "local"
    r = run_cli("collect", "--host", sshd.target, "--remote-dir", str(captures), "--out", str(out),
                "--json", "--known-hosts", str(sshd.wrong_known_hosts()), "-i", str(sshd.client_key))  # fmt: skip
    assert r.returncode == 1
    row = json.loads(r.stdout)[0]
    assert row["status"] == "failed" and "does not match known_hosts" in row["error"]
    assert [p.name for p in out.iterdir()] == [".collect"]  # no host folder, no ledger
    assert not list((out / ".collect").glob("*.fetched"))


def test_bad_input(sshd, tmp_path):
    r = run_cli("collect", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.startswith("error: no hosts")
    r = run_cli(
        "collect", "--host", sshd.target, "--out", str(tmp_path / "o"), "--remote-dir", "rel"
    )
    assert r.returncode == 2 and "absolute path" in r.stderr
    (tmp_path / "file").write_text("x")
    r = run_cli("collect", "--host", sshd.target, "--out", str(tmp_path / "file"))
    assert r.returncode == 2 and "is a file" in r.stderr
    code, rows, _ = collect(sshd, tmp_path / "nowhere", tmp_path / "o")
    assert code == 1 and "no capture directory" in rows[0]["error"]
    r = run_cli("collect", "--host", "bad target!", "--out", str(tmp_path / "o"), "--json")
    assert r.returncode == 1 and "bad SSH target" in json.loads(r.stdout)[0]["error"]


def test_many_devices_one_failing(sshd, captures, tmp_path):
    from daemon_fixtures import free_port

    dead = f"root@127.0.0.1:{free_port()}"
    r = run_cli("collect", "--host", sshd.target, "--host", dead, "--remote-dir", str(captures),
                "--out", str(tmp_path / "o"), "--json", *ssh_args(sshd), timeout=180)  # fmt: skip
    rows = json.loads(r.stdout)
    assert r.returncode == 1 and [x["status"] for x in rows] == ["ok", "failed"]
    assert (
        rows[0]["fetched"] == rows[0]["on_device"] > 0 and "connection refused" in rows[1]["error"]
    )
    assert r.stderr.strip() == "error: 1 of 2 host(s) failed"
