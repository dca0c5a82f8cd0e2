"""edgecnn bench: local (process per artifact), through a real sshd, and estimates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_cli
from daemon_fixtures import daemon_build
from sshd import SSHServer, sshd_available

from edgecnn.bench import bench_build
from edgecnn.bench.devices import get_device
from edgecnn.errors import BadInput
from edgecnn.manifest import load_manifest
from edgecnn.runtime.macs import tflite_layers

REPO = Path(__file__).resolve().parent.parent
STATS = ("min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> Path:
    return daemon_build(tmp_path_factory)


@pytest.fixture(scope="module")
def sshd():
    if not sshd_available():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    with SSHServer() as srv:
        yield srv


def check_measured(row: dict, build: Path) -> None:
    assert row["status"] == "ok", row.get("error")
    assert [row[k] <= row[j] for k, j in zip(STATS, STATS[1:], strict=False)] == [True] * 4
    assert row["min_ms"] <= row["mean_ms"] <= row["max_ms"]
    assert row["fps"] == pytest.approx(1000.0 / row["mean_ms"])
    assert row["runs"] == len(row["latencies_ms"])
    for k in ("init_ms", "first_ms", "warmup_ms", "peak_rss_mb", "std_ms"):
        assert row[k] >= 0
    assert row["peak_rss_mb"] > 10  # a Python process with numpy and an interpreter
    assert row["size_bytes"] == (build / row["artifact"]).stat().st_size


def test_local_bench_every_artifact(build):
    rows = bench_build(build, device="host", runs=30, warmup=3, data="digits")
    arts = [a.path for a in load_manifest(build).artifacts]
    assert [r["artifact"] for r in rows] == arts
    for r in rows:
        check_measured(r, build)
        assert r["mode"] == "local" and r["accuracy_n"] == 359 and r["accuracy"] > 0.8
        assert r["estimate_ms"] > 0 and "estimate_error_pct" in r
    backends = {r["format"]: r["backend"] for r in rows}
    assert backends["tflite"] == "litert" and backends["onnx"] == "onnxruntime"
    # The table says where int8 is no faster than float32, and only there.
    from edgecnn.bench.report import int8_notes

    p50 = {(r["format"], r["precision"]): r["p50_ms"] for r in rows}
    slow = {f for f in ("tflite", "onnx") if p50[(f, "int8")] >= p50[(f, "float32")]}
    notes = int8_notes(rows)
    assert {f for f in ("tflite", "onnx") if any(f"int8 {f} " in n for n in notes)} == slow, (
        p50,
        notes,
    )


def test_bench_cli_table_json_histogram(build, tmp_path):
    png = tmp_path / "hist.png"
    out = run_cli(
        "bench",
        str(build),
        "--artifact",
        "model_int8.tflite",
        "--runs",
        "20",
        "--plot",
        str(png),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert len(res["results"]) == 1 and res["results"][0]["precision"] == "int8"
    assert res["histogram"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = run_cli("bench", str(build), "--artifact", "float32", "--runs", "10", "--no-plot")
    assert table.returncode == 0, table.stderr
    header = next(ln for ln in table.stdout.splitlines() if ln.startswith("format "))
    for col in ("format", "precision", "status", "size_MB", "ms", "FPS", "p99", "RSS_MB"):
        assert col in header
    assert "✅" in table.stdout


def test_min_accuracy_floor_fails_with_exit_1(build):
    out = run_cli("bench", str(build), "--artifact", "model_int8.tflite", "--runs", "5", "--data", "digits",
                  "--min-accuracy", "0.9999", "--no-plot")  # fmt: skip
    assert out.returncode == 1 and "below --min-accuracy" in out.stderr


def test_estimate_mode(build):
    rows = {
        d: bench_build(build, device=d, artifacts=["int8"])[0]
        for d in ("pi4", "pi5", "pi-zero2", "coral-usb")
    }
    for d, r in rows.items():
        assert r["status"] == "estimate" and r["mode"] == "estimate" and r["device"] == d
        assert r["estimate_ms"] > 0 and r["macs"] > 0 and "latencies_ms" not in r
    assert rows["pi5"]["ms"] < rows["pi4"]["ms"] < rows["pi-zero2"]["ms"]
    out = run_cli("bench", str(build), "--device", "pi")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ESTIMATE for pi4") and "≈ est." in out.stdout
    forced = bench_build(build, device="host", estimate=True, artifacts=["int8"])[0]
    assert forced["status"] == "estimate"


def test_mac_count_matches_the_architecture(build):
    """cnn_small on 8x8x1: conv 3x3x1x16 'same' at 8x8, conv 3x3x16x32 at 4x4, dense 2*2*32 -> 128 -> 10."""
    layers = tflite_layers((build / "model_int8.tflite").read_bytes())
    conv_fc = sum(r["macs"] for r in layers if r["op"] in ("CONV_2D", "FULLY_CONNECTED"))
    assert conv_fc == 8 * 8 * 16 * 9 * 1 + 4 * 4 * 32 * 9 * 16 + 128 * 128 + 128 * 10


def test_unknown_device_and_bad_paths(build, tmp_path):
    with pytest.raises(BadInput, match="unknown device"):
        get_device("pi9")
    out = run_cli("bench", str(build), "--device", "pi9")
    assert out.returncode == 2 and out.stderr.startswith("error: unknown device")
    out = run_cli("bench", str(tmp_path))
    assert out.returncode == 2 and "manifest" in out.stderr
    out = run_cli("bench", str(build), "--host", "not a target")
    assert out.returncode == 2 and "SSH target" in out.stderr


# -- over SSH, through a real sshd on 127.0.0.1 ----------------------------------------------------


def ssh_args(srv: SSHServer, *extra: str, known_hosts: Path | None = None) -> list[str]:
    return ["--host", srv.target, "--known-hosts", str(known_hosts or srv.known_hosts),
            "-i", str(srv.client_key), *extra]  # fmt: skip


def test_ssh_bench(build, sshd):
    rows = bench_build(
        build, device="pi4", host=sshd.target, known_hosts=str(sshd.known_hosts), identity=str(sshd.client_key),
        remote_python=sys.executable, runs=20, warmup=2, data="digits", artifacts=["model_int8.tflite", "model_float32.onnx"],
    )  # fmt: skip
    assert [r["artifact"] for r in rows] == ["model_int8.tflite", "model_float32.onnx"]
    for r in rows:
        check_measured(r, build)
        assert r["mode"] == "ssh" and r["remote"] == sshd.target and r["accuracy"] > 0.8


def test_ssh_cli_and_errors(build, sshd, tmp_path):
    ok = run_cli("bench", str(build), "--device", "pi4", "--artifact", "model_int8.tflite", "--runs", "5", "--no-plot",
                 "--python", sys.executable, *ssh_args(sshd))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert f"measured on pi4 ({sshd.target})" in ok.stdout

    def one_line_error(args: list[str], pattern: str) -> None:
        p = run_cli(
            "bench",
            str(build),
            "--device",
            "pi4",
            "--artifact",
            "model_int8.tflite",
            "--runs",
            "3",
            *args,
        )
        assert p.returncode == 2, p.stdout + p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and pattern in lines[0], p.stderr

    one_line_error(
        ssh_args(sshd, known_hosts=sshd.wrong_known_hosts()), "does not match known_hosts"
    )
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    one_line_error(ssh_args(sshd, known_hosts=empty), "not in known_hosts")
    other_key = tmp_path / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True
    )
    one_line_error(
        ["--host", sshd.target, "--known-hosts", str(sshd.known_hosts), "-i", str(other_key)],
        "authentication",
    )
    one_line_error(
        [
            "--host",
            "root@127.0.0.1:1",
            "--known-hosts",
            str(sshd.known_hosts),
            "-i",
            str(sshd.client_key),
        ],
        "connection refused",
    )
    # Debian's own python3 has no numpy or LiteRT: the message names the install command.
    if Path("/usr/bin/python3").exists():
        one_line_error([*ssh_args(sshd), "--python", "/usr/bin/python3"], "pip install")
    one_line_error([*ssh_args(sshd), "--python", "/no/such/python"], "install Python 3")


def test_remote_timeout_is_one_line(sshd):
    from edgecnn.remote import Remote

    r = Remote(sshd.target, known_hosts=sshd.known_hosts, identity=sshd.client_key)
    with pytest.raises(BadInput, match="timed out after 1 s"):
        r.run("sleep 3", timeout=1)
    d = r.make_temp_dir()
    r.put_files({"a/b.txt": b"hello"}, d)
    assert r.get_file(f"{d}/a/b.txt") == b"hello"
    r.remove_dir(d)
    assert r.run(["test", "-e", d], check=False).returncode != 0
