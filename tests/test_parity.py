"""`edgecnn parity` on real digits: the contract, the bad inputs, and a gate that can fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from helpers import FASHION_SKIP, copy_build, edit_manifest, fashion_available, replace_artifact

INT8 = ("model_int8.tflite", "model_int8.onnx")
PNG = b"\x89PNG\r\n\x1a\n"


def rows(report: dict) -> dict[str, dict]:
    return {r["artifact"]: r for r in report["artifacts"]}


def manifest_entries(build: Path) -> dict[str, dict]:
    return {a["path"]: a for a in json.loads((build / "manifest.json").read_text())["artifacts"]}


def test_digits_every_artifact_passes_with_report(digits_build: Path, tmp_path: Path) -> None:
    md = tmp_path / "out" / "parity.md"
    r = run_cli("parity", str(digits_build), "--data", "digits", "-q", "--report", str(md))
    assert r.returncode == 0, r.stderr
    assert "model_int8.onnx" in r.stdout and "pass" in r.stdout and "FAIL" not in r.stdout
    report = json.loads(md.with_suffix(".json").read_text())
    assert report["passed"] is True
    assert report["samples"] == 359  # the digits test split the training run held out
    assert report["reference"]["top1"] > 0.9
    by = rows(report)
    assert set(by) == {"model_float32.tflite", "model_float32.onnx", *INT8}
    for name in INT8:
        row = by[name]
        assert row["drop"] <= 1.0 and row["agreement"] >= 0.98, row
        assert row["passed"] and len(row["per_class"]) == 10
        assert 0 <= row["mean_kl"] < 0.1 and 0 <= row["max_abs_diff"] <= 1
        assert Path(row["confusion_png"]).read_bytes()[:8] == PNG
    for name in ("model_float32.tflite", "model_float32.onnx"):
        assert by[name]["agreement"] == 1.0 and by[name]["max_abs_diff"] < 1e-4
    text = md.read_text()
    assert "| model_int8.tflite |" in text and "Per-class top-1" in text


def test_run_parity_api_and_json(digits_build: Path, tmp_path: Path) -> None:
    from edgecnn.parity import run_parity

    res = run_parity(digits_build, "digits", report=tmp_path / "api.md", limit=100)
    assert res["passed"] and res["samples"] == 100
    assert Path(res["report"]).exists() and Path(res["json"]).exists()
    assert sorted(res["thresholds"]) == ["max_drop", "min_agreement"]


def test_bad_inputs_exit_2(digits_build: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("parity", str(empty), "--data", "digits")
    assert r.returncode == 2 and "manifest.json" in r.stderr and "Traceback" not in r.stderr

    r = run_cli("parity", str(tmp_path / "nope"), "--data", "digits")
    assert r.returncode == 2 and r.stderr.startswith("error:")

    tampered = copy_build(digits_build, tmp_path / "tampered")
    with open(tampered / "model_int8.onnx", "ab") as f:
        f.write(b"\0")
    r = run_cli("parity", str(tampered), "--data", "digits")
    assert r.returncode == 2 and "sha256" in r.stderr, r.stderr

    r = run_cli("parity", str(digits_build), "--data", "digits", "--min-agreement", "1.5")
    assert r.returncode == 2 and "min-agreement" in r.stderr

    r = run_cli("parity", str(digits_build), "--data", "no_such_data")
    assert r.returncode == 2 and "unknown dataset" in r.stderr


@pytest.mark.skipif(not fashion_available(), reason=FASHION_SKIP)
def test_dataset_classes_must_match_labels(digits_build: Path) -> None:
    r = run_cli("parity", str(digits_build), "--data", "fashion_mnist")
    assert r.returncode == 2 and "classes differ" in r.stderr, r.stderr


def test_gate_fails_on_wrong_pixel_range_in_manifest(digits_build: Path, tmp_path: Path) -> None:
    """The manifest tells the device to feed 0..1 to a model trained on 0..255 pixels."""
    broken = copy_build(digits_build, tmp_path / "range")
    edit_manifest(broken, lambda m: m["model"]["input"].update(pixel_range=[0.0, 1.0]))
    r = run_cli("parity", str(broken), "--data", "digits")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "parity failed" in r.stderr
    assert "input scale/zero-point do not match the manifest's pixel range" in r.stdout
    assert "covers 0..255 but the manifest feeds 0..1" in r.stdout
    assert "one class" in r.stdout


def _misscaled_int8(build: Path) -> None:
    """The classic normalization bug: calibrate on 0..1 images for a model that takes 0..255."""
    from edgecnn.data import load_dataset
    from edgecnn.export.tflite import to_tflite
    from edgecnn.zoo.io import load_keras_model

    model = load_keras_model(build / "model.keras")
    ds = load_dataset("digits").adapted((28, 28, 1))
    calib = ds.x_train[:200].astype(np.float32) / 255.0
    replace_artifact(build, "model_int8.tflite", to_tflite(model, "int8", calib=calib))


def test_gate_fails_on_misscaled_calibration_and_fix_repairs_it(
    digits_build: Path, tmp_path: Path
) -> None:
    broken = copy_build(digits_build, tmp_path / "scale")
    _misscaled_int8(broken)
    r = run_cli("parity", str(broken), "--data", "digits", "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["failed"] == ["model_int8.tflite"]
    row = rows(report)["model_int8.tflite"]
    assert row["drop"] > 20
    messages = " ".join(f["message"] for f in row["diagnosis"]["findings"])
    assert "covers 0..1 but the manifest feeds 0..255" in messages
    codes = {f["code"] for f in row["diagnosis"]["findings"]}
    assert "input_scale_vs_pixel_range" in codes and "recorded_quantization_mismatch" not in codes
    assert row["diagnosis"]["layers"][0]["layer"] == "conv1"  # the first layer takes the hit
    assert row["diagnosis"]["layers"][0]["clipped"] > 0.05

    from edgecnn.parity import run_parity

    old_sha = manifest_entries(broken)["model_int8.tflite"]["sha256"]
    report = run_parity(broken, "digits", report=tmp_path / "fix.md", fix=True)
    assert report["passed"], report["fix"]
    assert "fixed by re-calibration" in report["fix"]["summary"]
    assert "latency" in report["fix"]["summary"]
    entry = manifest_entries(broken)["model_int8.tflite"]
    assert entry["sha256"] != old_sha
    assert entry["inputs"][0]["quantization"]["scale"] == pytest.approx(1.0, rel=0.05)
    assert run_parity(broken, "digits", report=tmp_path / "recheck.md")["passed"]


def test_fix_keeps_outlier_layers_in_float(digits_cnn: Path, tmp_path: Path) -> None:
    """One fc1 unit scaled x1000 (its consumer's weights /1000): the float function is the
    same, but the per-tensor int8 range of fc1's output now wipes out every other unit.
    Re-calibration cannot help; keeping fc1 and its consumer in float does."""
    import keras

    from edgecnn.build import convert_model
    from edgecnn.data import load_dataset
    from edgecnn.parity import run_parity
    from edgecnn.zoo.io import load_keras_model

    model = load_keras_model(digits_cnn / "model.keras")
    ds = load_dataset("digits").adapted((28, 28, 1))
    fc1, pred = model.get_layer("fc1"), model.get_layer("predictions")
    acts = keras.Model(model.inputs, fc1.output).predict(
        ds.x_train[:300].astype(np.float32), verbose=0
    )
    u = int(acts.mean(axis=0).argmax())
    w, b = fc1.get_weights()
    w2, b2 = pred.get_weights()
    w[:, u] *= 1000.0
    b[u] *= 1000.0
    w2[u, :] /= 1000.0
    fc1.set_weights([w, b])
    pred.set_weights([w2, b2])
    build = tmp_path / "outlier"
    convert_model(model, ds, build, formats="tflite")

    report = run_parity(build, "digits", report=tmp_path / "before.md")
    assert not report["passed"] and report["failed"] == ["model_int8.tflite"]
    row = rows(report)["model_int8.tflite"]
    assert row["diagnosis"]["layers"][0]["layer"] == "fc1", row["diagnosis"]["layers"][:3]

    report = run_parity(build, "digits", report=tmp_path / "after.md", fix=True)
    assert report["passed"], report["fix"]
    fixed = report["fix"]["artifacts"][0]
    assert fixed["kept"] and "fc1" in fixed["float_layers"]
    assert fixed["size_after"] > fixed["size_before"]  # float weights cost bytes
    assert fixed["latency_ms_after"] > 0
    entry = manifest_entries(build)["model_int8.tflite"]
    assert "fc1" in entry["selective_quantization"]["float_layers"]
    assert run_parity(build, "digits", report=tmp_path / "again.md")["passed"]


def test_missing_calibration_classes_are_named(digits_build: Path) -> None:
    from edgecnn.manifest import load_manifest
    from edgecnn.parity.diagnose import calibration_classes

    m = load_manifest(digits_build)
    counts = m.optimization["calibration"]["class_counts"]
    assert len(counts) == 10 and min(counts) > 0  # convert calibrates on every class
    assert calibration_classes(m) is None
    m.optimization["calibration"]["class_counts"] = [0] * 3 + [200] + [0] * 6
    found = calibration_classes(m)
    assert found and "missing classes: 9 of 10" in found["message"] and "'3'" in found["message"]
    assert found["code"] == "calibration_classes"


def test_single_class_calibration_is_flagged(digits_build: Path, tmp_path: Path) -> None:
    """int8 calibrated on one class only. On this CNN the numbers may still pass (per-channel
    weights, ReLU ranges similar across digits), so parity must say so either way."""
    from edgecnn.data import load_dataset
    from edgecnn.export.tflite import to_tflite
    from edgecnn.manifest import load_manifest
    from edgecnn.zoo.io import load_keras_model

    build = copy_build(digits_build, tmp_path / "single")
    ds = load_dataset("digits").adapted((28, 28, 1))
    calib = ds.x_train[ds.y_train == 1][:100].astype(np.float32)
    opt = load_manifest(build).optimization
    opt["calibration"]["class_counts"] = [0, len(calib)] + [0] * 8
    model = load_keras_model(build / "model.keras")
    replace_artifact(
        build, "model_int8.tflite", to_tflite(model, "int8", calib=calib), optimization=opt
    )
    r = run_cli("parity", str(build), "--data", "digits", "-q")
    assert r.returncode in (0, 1), r.stderr
    assert "calibration set is missing classes: 9 of 10" in r.stdout
    assert "held only '1'" in r.stdout
