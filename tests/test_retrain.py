"""`edgecnn retrain`: the gate that stops a bad model, new classes, and the bad inputs.

The old build is the loop's first model (cnn_small on scikit-learn digits); the new labels are
real MNIST-5k digits written as camera-sized JPEGs, the way `edgecnn label` leaves them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from loop_fixtures import mnist_split
from PIL import Image

from edgecnn.label import class_dir

LABELS = 200


def write_labelled(root: Path, images, names: list[str], size: int = 96) -> Path:
    """DIR/CLASS/NNNN.jpg, upscaled like the camera frames."""
    for i, (img, name) in enumerate(zip(images, names, strict=True)):
        d = root / class_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        rgb = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
        Image.fromarray(rgb).resize((size, size), Image.NEAREST).save(
            d / f"{i:04d}.jpg", quality=92
        )
    return root


def refused_before_tensorflow(*args: str) -> tuple[str, bool]:
    """(stderr, TensorFlow imported?) of a CLI run that must exit 2."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['edgecnn', *{list(args)!r}]\n"
        "try:\n    runpy.run_module('edgecnn.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    print('EXIT', e.code, 'tensorflow' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1].startswith("EXIT 2"), r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr, r.stdout.strip().endswith("True")


def test_shuffled_labels_fail_the_gate_and_deploy_refuses(loop_model, tmp_path):
    """From the training run this time (no build: its float Keras model is the old side)."""
    run, _ = loop_model
    x, y, _, _ = mnist_split()
    shuffled = np.random.default_rng(0).permutation(y[:LABELS])  # same images, wrong answers
    labelled = write_labelled(tmp_path / "labelled", x[:LABELS], [str(v) for v in shuffled])
    out = tmp_path / "new"
    r = run_cli("retrain", str(run), "--add", f"folder:{labelled}", "--out", str(out), "--json")
    assert r.returncode == 1, r.stderr[-3000:]
    report = json.loads(r.stdout)
    gate = report["gate"]
    assert report["old_artifact"] == "model.keras (float)"
    assert not gate["passed"] and gate["holdout"]["p_value"] > 0.05
    assert r.stderr.strip().splitlines()[-1].startswith("error: the gate failed: held-out labels")
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["gate"]["passed"] is False and (out / "retrain.md").is_file()
    d = run_cli("deploy", str(out), "--host", "root@127.0.0.1:1")
    assert d.returncode == 2 and "failed its retrain gate" in d.stderr
    assert len(d.stderr.strip().splitlines()) == 1


def test_new_classes_are_refused_unless_asked_for(loop_model, tmp_path):
    from edgecnn.data import load_dataset

    _, build = loop_model
    x, y, _, _ = mnist_split()
    faces = load_dataset("lfw_subset", seed=0)  # scikit-image's real 25x25 face crops
    fx = faces.x_train[faces.y_train == faces.class_names.index("face")][:40]
    labelled = write_labelled(tmp_path / "labelled", [*x[:120], *fx],
                              [str(v) for v in y[:120]] + ["face"] * len(fx))  # fmt: skip
    err, tf_loaded = refused_before_tensorflow(
        "retrain", str(build), "--add", f"folder:{labelled}", "--out", str(tmp_path / "n")
    )
    assert "'face'" in err and "--new-classes" in err and not tf_loaded

    out = tmp_path / "wider"
    r = run_cli("retrain", str(build), "--add", f"folder:{labelled}", "--out", str(out),
                "--new-classes", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert report["new_classes"] == ["face"] and report["gate"]["passed"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["labels"] == [str(i) for i in range(10)] + ["face"]
    face = report["gate"]["holdout"]["per_class"]["face"]
    assert face["n"] >= 8 and face["old"] == 0.0 and face["new"] >= 0.9, face
    from edgecnn.runtime import Runner

    with Runner(out) as runner:  # the widened head is in the artifact the device runs
        assert runner.num_classes == 11 and runner.labels[-1] == "face"


def test_bad_input(loop_model, tmp_path):
    run, build = loop_model
    empty = tmp_path / "empty"
    (empty / "3").mkdir(parents=True)
    err, tf_loaded = refused_before_tensorflow(
        "retrain", str(build), "--add", f"folder:{empty}", "--out", str(tmp_path / "o")
    )
    assert "holds no labelled images" in err and not tf_loaded
    err, _ = refused_before_tensorflow(
        "retrain", str(build), "--add", str(empty), "--out", str(tmp_path / "o")
    )
    assert "--add takes folder:DIR" in err
    err, _ = refused_before_tensorflow(
        "retrain", str(tmp_path), "--add", f"folder:{empty}", "--out", str(tmp_path / "o")
    )
    assert "no manifest.json" in err
    one = write_labelled(tmp_path / "one", mnist_split()[0][:1], ["4"])
    r = run_cli("retrain", str(build), "--add", f"folder:{one}", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "too few labels" in r.stderr
    assert not (tmp_path / "o").exists()
    err, _ = refused_before_tensorflow(
        "retrain", str(build), "--add", f"folder:{one}", "--out", str(build)
    )
    assert "new directory" in err


def test_gate_arithmetic():
    from edgecnn.retrain.gate import GateOptions, mcnemar_p, verdict

    right, wrong = np.ones(10, bool), np.zeros(10, bool)
    assert mcnemar_p(right, wrong) == pytest.approx(1 / 1024)  # 10 wins, no loss
    assert mcnemar_p(wrong, right) == 1.0
    assert mcnemar_p(right, right) == 1.0  # no disagreement: no evidence
    base = {"old": 0.9, "new": 0.895}
    ok = verdict(base, {"old": 0.2, "new": 0.8, "p_value": 0.001}, GateOptions())
    assert ok == []
    worse = verdict(
        {"old": 0.9, "new": 0.88}, {"old": 0.2, "new": 0.8, "p_value": 0.001}, GateOptions()
    )
    assert len(worse) == 1 and "2.00 points worse" in worse[0]
    luck = verdict(base, {"old": 0.2, "new": 0.25, "p_value": 0.3}, GateOptions())
    assert len(luck) == 1 and "could be luck" in luck[0]
