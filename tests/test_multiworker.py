"""`train --strategy multi-worker` with two real worker processes on 127.0.0.1 (TF_CONFIG),
against the same training in one process (and the spread between two seeds of it)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from cli_helpers import REPO, run_cli

ARGS = ["train", "--arch", "cnn_mnist", "--data", "digits", "--epochs", "3", "--json", "-q"]
MARGIN = 0.02  # beyond the spread of two single-process seeds


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _history(out: Path) -> list[dict[str, str]]:
    with open(out / "history.csv") as f:
        return list(csv.DictReader(f))


def test_two_workers_train_like_one_process(tmp_path: Path) -> None:
    cluster = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": i}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        cmd = [
            sys.executable,
            "-m",
            "edgecnn.cli",
            *ARGS,
            "--strategy",
            "multi-worker",
            "--out",
            str(tmp_path / f"w{i}"),
        ]
        procs.append(
            subprocess.Popen(
                cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    chief, worker = (json.loads(out) for out, _ in results)
    assert chief["out"] and (tmp_path / "w0" / "model.keras").is_file()
    assert worker["out"] is None and not (tmp_path / "w1").exists()  # only the chief writes

    singles = []
    for seed in (0, 1):
        r = run_cli(*ARGS, "--seed", str(seed), "--out", str(tmp_path / f"single{seed}"))
        assert r.returncode == 0, r.stderr
        singles.append(json.loads(r.stdout))
    assert chief["epochs_run"] == singles[0]["epochs_run"] == 3
    # The first epoch starts from the same weights and sees the same global batches: if the
    # two workers did not all-reduce their gradients, each half-batch step would differ.
    mw, one = _history(tmp_path / "w0"), _history(tmp_path / "single0")
    assert abs(float(mw[0]["loss"]) - float(one[0]["loss"])) <= 1e-3 * float(one[0]["loss"])
    # Later epochs drift apart by summation order, as two seeds of one process do.
    accs = [s["test_accuracy"] for s in singles]
    assert min(accs) - MARGIN <= chief["test_accuracy"] <= max(accs) + MARGIN, (chief, accs)
    assert float(mw[-1]["loss"]) <= 1.5 * max(
        float(h[-1]["loss"]) for h in (one, _history(tmp_path / "single1"))
    )
