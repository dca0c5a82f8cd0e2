"""`edgecnn tune` end to end on real data (digits) with the real CLI: the verdict when nothing
fits, resuming after Ctrl-C, two workers on one PostgreSQL study, the recipe stage, and bad
input. The search space is kept tiny (cnn_small at 8x8, 3-4 epochs) so each trial takes
seconds; what is tested is the search machinery, not how good the models get."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import REPO, run_cli
from postgres import PostgresServer, pg_bin

TINY = ["--data", "digits", "--archs", "cnn_small", "--sizes", "8", "--epochs", "3,4",
        "--prune-ratios", "0", "--precisions", "int8", "-q"]  # fmt: skip


def _finished(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        rows = con.execute("select state, count(*) from trials group by state").fetchall()
    return {state: n for state, n in rows}


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), stderr
    assert "Traceback" not in stderr, stderr
    return lines[-1]


def test_nothing_fits_gives_a_verdict_and_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "tune"
    r = run_cli("tune", *TINY, "--max-latency-ms", "0.000001", "--trials", "2", "--out", str(out))
    assert r.returncode == 1, r.stderr
    line = _one_error_line(r.stderr)
    assert "nothing fits the budget: the closest is trial" in line
    assert "latency ms" in line and "> 1e-06" in line, line
    assert "cnn_small-8 int8" in line
    # every draw was rejected by its untrained twin: nothing was trained or built
    assert not (out / "best").exists()
    assert not list((out / "cache").glob("train-*"))
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and all("rejected before training" in r for r in rows[1:])
    assert "pruned" in r.stdout


def _wait_for_complete(db: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if db.exists():
            try:
                if _finished(db).get("COMPLETE", 0) >= 1:
                    return
            except sqlite3.Error:
                pass  # the worker is writing
        time.sleep(0.2)
    raise AssertionError("no trial completed in time")


def test_resume_after_ctrl_c_keeps_the_finished_trials(tmp_path: Path) -> None:
    out = tmp_path / "tune"
    args = ["tune", *TINY, "--max-latency-ms", "50", "--trials", "3", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "edgecnn.cli", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    db = out / "tune.db"
    _wait_for_complete(db, proc)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    line = _one_error_line(err)
    assert "interrupted" in line and "--resume" in line
    before = _finished(db)
    assert before.get("COMPLETE", 0) >= 1
    assert not list((out / "cache").glob(".*work*")), "an interrupted trial left a work dir"

    again = run_cli(*args)
    assert again.returncode == 2 and "--resume" in _one_error_line(again.stderr)

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    after = _finished(db)
    assert after.get("COMPLETE", 0) + after.get("PRUNED", 0) == 3
    assert after.get("COMPLETE", 0) >= before["COMPLETE"]
    summary = json.loads((out / "tune.json").read_text())
    assert summary["best"] is not None and summary["problem"] is None
    best = out / "best"
    manifest = json.loads((best / "manifest.json").read_text())
    tune = manifest["model"]["tune"]
    assert tune["trial"] == summary["best"]["trial"] and tune["measured"]["latency_ms"] <= 50
    assert "measured on host" in tune["measured"]["latency_basis"]
    assert (best / "parity.md").is_file() and (out / "pareto.png").stat().st_size > 1000
    report = json.loads((best / "parity.json").read_text())
    assert report["split"] == "test" and report["passed"]


@pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (tools/install-dev.sh)")
def test_two_workers_share_one_postgresql_study(tmp_path: Path) -> None:
    with PostgresServer() as pg:
        url = pg.create_db("optuna")
        args = ["tune", *TINY, "--max-size-kb", "500", "--trials", "4", "--storage", url,
                "--study", "shared", "--resume"]  # fmt: skip
        procs = [subprocess.Popen([sys.executable, "-m", "edgecnn.cli", *args, "--out", str(tmp_path / f"w{i}")],
                                  cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for i in range(2)]  # fmt: skip
        results = [p.communicate(timeout=900) for p in procs]
        for p, (_, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, err
        import optuna

        study = optuna.load_study(study_name="shared", storage=url)
        done = [t for t in study.trials if t.state.is_finished()]
    assert len(done) >= 4
    assert len({t.number for t in done}) == len(done)
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2, workers  # both processes ran trials of the one study
    for i in range(2):
        summary = json.loads((tmp_path / f"w{i}" / "tune.json").read_text())
        assert len(summary["trials"]) >= 4  # each worker sees the whole study


def test_tune_stage_in_a_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "tune_digits.toml"
    recipe.write_text(
        'name = "tune_digits"\nstages = ["tune", "parity"]\n[data]\nname = "digits"\n'
        '[tune]\narchs = ["cnn_small"]\nsizes = [8]\nepochs = [2]\nprune = [0.0]\n'
        'precisions = ["int8-mixed"]\ntrials = 1\nmax_latency_ms = 50.0\n'
    )
    out = tmp_path / "run"
    r = run_cli("run", str(recipe), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    stages = {s["stage"]: s for s in json.loads(r.stdout)}
    assert stages["tune"]["status"] == "ok" and stages["parity"]["status"] == "ok"
    manifest = json.loads((out / "tune" / "best" / "manifest.json").read_text())
    assert manifest["model"]["tune"]["params"]["precision"] == "int8-mixed"
    (art,) = manifest["artifacts"]
    assert len(art["selective_quantization"]["float_layers"]) == 2
    assert (out / "tune" / "best" / "parity.md").is_file()


def test_a_recipe_cannot_tune_and_train(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('stages = ["train", "tune"]\n[data]\nname = "digits"\n')
    r = run_cli("run", str(recipe), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "drop 'train'" in _one_error_line(r.stderr)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-latency-ms", "0"], "--max-latency-ms must be positive"),
        (["--max-size-kb", "-5"], "--max-size-kb must be positive"),
        (["--max-drop", "0"], "--max-drop must be positive"),
        (["--archs", "cnn_small,resnet9"], "unknown architecture 'resnet9'"),
        (["--device", "pi9"], "unknown device 'pi9'"),
        (["--storage", "postgresql://nobody@127.0.0.1:9/x"], "cannot open study storage"),
    ],
)
def test_bad_input_exits_2_before_anything_is_built(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    out = tmp_path / "tune"
    r = run_cli("tune", "--data", "digits", "--out", str(out), *flags, timeout=120)
    assert r.returncode == 2 and message in _one_error_line(r.stderr), r.stderr
    assert not (out / "best").exists() and not (out / "cache").exists()


def test_a_study_of_other_data_is_refused(tmp_path: Path) -> None:
    import optuna

    out = tmp_path / "tune"
    out.mkdir()
    study = optuna.create_study(storage=f"sqlite:///{out / 'tune.db'}", study_name="mine")
    study.set_user_attr("data", "mnist5k val_split=0.1 test_split=0.2 seed=0")
    study.set_user_attr("device", "host")
    r = run_cli(
        "tune", "--data", "digits", "--study", "mine", "--resume", "--out", str(out), timeout=120
    )
    assert r.returncode == 2, r.stderr
    assert "belongs to data 'mnist5k" in _one_error_line(r.stderr)
    assert not (out / "cache").exists()
