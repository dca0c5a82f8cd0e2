"""convert: pruning, quantization, TFLite/ONNX export and the build manifest, on real digits.

One cnn_mnist is trained on scikit-learn digits (resized to 28x28) per session;
every conversion below starts from it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgecnn.fsutil import sha256_file  # noqa: E402
from edgecnn.manifest import load_manifest  # noqa: E402

SHAPE = (28, 28, 1)


@pytest.fixture(scope="session")
def digits28() -> Any:
    from edgecnn.data import load_dataset

    return load_dataset("digits", seed=0).adapted(SHAPE)


@pytest.fixture(scope="session")
def trained(digits_cnn: Path, digits28: Any) -> tuple[Path, float]:
    """The shared cnn_mnist trained on digits (conftest); returns (model.keras path, test accuracy)."""
    import keras

    path = digits_cnn / "model.keras"
    model = keras.saving.load_model(path)
    acc = float(
        (
            model.predict(digits28.x_test.astype("float32"), verbose=0).argmax(1) == digits28.y_test
        ).mean()
    )
    assert acc > 0.9, f"fixture model under-trained ({acc:.3f})"
    return path, acc


@pytest.fixture(scope="session")
def build(
    tmp_path_factory: pytest.TempPathFactory, trained: tuple[Path, float]
) -> tuple[Path, dict]:
    from edgecnn.build import convert_model

    out = tmp_path_factory.mktemp("builds") / "plain"
    report = convert_model(
        trained[0],
        "digits",
        out,
        precisions="float32,float16,dynamic,int8",
        formats="tflite,onnx",
        eval_samples=0,
    )
    return out, report


def _run(path: Path, fmt: str, x: np.ndarray, art: dict) -> np.ndarray:
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        it.resize_tensor_input(inp["index"], [len(x), *SHAPE])
        it.allocate_tensors()
        q = art["inputs"][0]["quantization"]
        feed = x.astype(np.float32)
        if q:
            info = np.iinfo(inp["dtype"])
            feed = np.clip(np.rint(feed / q["scale"] + q["zero_point"]), info.min, info.max)
        it.set_tensor(inp["index"], feed.astype(inp["dtype"]))
        it.invoke()
        y = it.get_tensor(out["index"]).astype(np.float32)
        qo = art["outputs"][0]["quantization"]
        return (y - qo["zero_point"]) * qo["scale"] if qo else y
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]


def test_every_artifact_loads_runs_and_matches_its_sha256(
    build: tuple[Path, dict], digits28: Any
) -> None:
    out, report = build
    manifest = load_manifest(out).to_dict()
    names = {a["path"] for a in manifest["artifacts"]}
    assert names == {
        "model_float32.tflite",
        "model_float16.tflite",
        "model_dynamic.tflite",
        "model_int8.tflite",
        "model_float32.onnx",
        "model_int8.onnx",
    }
    x, y = digits28.x_test[:100], digits28.y_test[:100]
    for art in manifest["artifacts"]:
        path = out / art["path"]
        assert sha256_file(path) == art["sha256"]
        assert art["size"] == path.stat().st_size and 0 < art["gzip_size"]
        scores = _run(path, art["format"], x, art)
        assert scores.shape == (100, 10)
        assert (scores.argmax(1) == y).mean() > 0.85, art["path"]


def test_manifest_describes_model_and_io(
    build: tuple[Path, dict], trained: tuple[Path, float]
) -> None:
    out, _ = build
    m = load_manifest(out).to_dict()
    model = m["model"]
    assert model["labels"] == [str(i) for i in range(10)]
    assert (out / "labels.txt").read_text().split() == model["labels"]
    assert model["input"]["shape"] == list(SHAPE) and model["input"]["color_order"] == "GRAY"
    assert model["input"]["pixel_range"] == [0.0, 255.0]
    assert model["source"]["sha256"] == sha256_file(out / "model.keras")
    assert model["source"]["original_sha256"] == sha256_file(trained[0])
    assert {"tensorflow", "onnxruntime", "ai-edge-litert", "tf2onnx"} <= set(m["tools"])
    int8 = next(a for a in m["artifacts"] if a["path"] == "model_int8.tflite")
    assert int8["inputs"][0]["dtype"] == "int8" and int8["inputs"][0]["shape"] == [-1, *SHAPE]
    assert int8["inputs"][0]["quantization"]["scale"] > 0
    assert int8["outputs"][0]["quantization"] is not None
    f32 = next(a for a in m["artifacts"] if a["path"] == "model_float32.tflite")
    assert f32["inputs"][0]["dtype"] == "float32" and f32["inputs"][0]["quantization"] is None

    import onnx

    props = {p.key: p.value for p in onnx.load(str(out / "model_int8.onnx")).metadata_props}
    assert json.loads(props["labels"]) == model["labels"]
    assert json.loads(props["input_shape"]) == list(SHAPE) and props["precision"] == "int8"


def test_int8_tflite_is_under_a_third_of_float32(build: tuple[Path, dict]) -> None:
    out, _ = build
    ratio = (out / "model_int8.tflite").stat().st_size / (
        out / "model_float32.tflite"
    ).stat().st_size
    assert ratio <= 0.3, ratio


def test_float_onnx_matches_keras(build: tuple[Path, dict], digits28: Any) -> None:
    import keras
    import onnxruntime as ort

    out, _ = build
    ref = keras.saving.load_model(out / "model.keras")
    x = digits28.x_test[:200].astype(np.float32)
    s = ort.InferenceSession(str(out / "model_float32.onnx"), providers=["CPUExecutionProvider"])
    got = s.run(None, {s.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, ref.predict(x, verbose=0), atol=1e-4)


def test_int8_artifacts_keep_float_accuracy(build: tuple[Path, dict]) -> None:
    _, report = build
    acc = {r["artifact"]: r["accuracy"] for r in report["artifacts"]}
    base = report["after"]["accuracy"]
    for name in (
        "model_int8.tflite",
        "model_int8.onnx",
        "model_dynamic.tflite",
        "model_float16.tflite",
    ):
        assert acc[name] >= base - 0.02, (name, acc[name], base)


def test_unstructured_pruning_reaches_target_sparsity(
    tmp_path: Path, trained: tuple[Path, float], build: tuple[Path, dict]
) -> None:
    import keras

    from edgecnn.build import convert_model
    from edgecnn.optimize.prune import overall_sparsity, sparsity_report

    report = convert_model(
        trained[0],
        "digits",
        tmp_path / "b",
        prune=0.7,
        fine_tune_epochs=2,
        precisions="float32",
        formats="tflite",
    )
    assert abs(report["pruning"]["magnitude"]["sparsity"] - 0.7) <= 0.01
    pruned = keras.saving.load_model(tmp_path / "b" / "model.keras")
    assert abs(overall_sparsity(pruned) - 0.7) <= 0.01
    for row in sparsity_report(pruned):
        assert abs(row["sparsity"] - 0.7) <= 0.01, row
    # Sparsity buys a smaller download, not a smaller file.
    plain = build[0] / "model_float32.tflite"
    sparse = tmp_path / "b" / "model_float32.tflite"
    assert (
        report["artifacts"][0]["gzip_size"]
        < 0.6 * load_manifest(build[0]).to_dict()["artifacts"][0]["gzip_size"]
    )
    assert sparse.stat().st_size > 0.9 * plain.stat().st_size


def test_structured_pruning_thins_and_recovers_accuracy(
    tmp_path: Path, trained: tuple[Path, float]
) -> None:
    import keras

    from edgecnn.build import convert_model

    report = convert_model(
        trained[0],
        "digits",
        tmp_path / "b",
        prune_filters=0.5,
        fine_tune_epochs=3,
        precisions="float32,int8",
        formats="tflite",
        eval_samples=0,
    )
    before, after = report["before"], report["after"]
    assert after["params"] < 0.6 * before["params"]
    thin = keras.saving.load_model(tmp_path / "b" / "model.keras")
    assert thin.output_shape == (None, 10)
    assert thin.get_layer("conv1").filters == 16 and thin.get_layer("conv2").filters == 32
    assert thin.get_layer("fc1").units == 64  # dense hidden units are a channel group too
    assert after["accuracy"] >= trained[1] - 0.02, (after["accuracy"], trained[1])
    cost = load_manifest(tmp_path / "b").to_dict()["model"]["cost"]
    assert cost["params"] == thin.count_params() == after["params"]
    assert cost["macs"] < 0.5 * before["macs"]


def test_polynomial_decay_schedule() -> None:
    from edgecnn.optimize.prune import PolynomialDecay

    s = PolynomialDecay(final_sparsity=0.8, begin_step=10, end_step=110, frequency=10)
    assert s.sparsity_at(0) == 0.0 and s.sparsity_at(10) == 0.0
    assert s.sparsity_at(110) == pytest.approx(0.8) and s.sparsity_at(500) == pytest.approx(0.8)
    mid = [s.sparsity_at(t) for t in range(10, 111, 10)]
    assert all(a <= b for a, b in zip(mid, mid[1:], strict=False))
    assert s.updates_at(20) and not s.updates_at(25) and not s.updates_at(5)


def test_edgetpu_check(
    tmp_path: Path, trained: tuple[Path, float], build: tuple[Path, dict]
) -> None:
    from edgecnn.build import convert_model
    from edgecnn.export.edgetpu import check_edgetpu, parse_compiler_log

    report = convert_model(
        trained[0],
        "digits",
        tmp_path / "tpu",
        precisions="int8",
        formats="tflite",
        io_dtype="uint8",
        edgetpu=True,
    )
    tpu = report["edgetpu"]
    assert tpu["compatible"], tpu["problems"]
    assert tpu["cpu_ops"] == [] and "CONV_2D" in tpu["ops"]
    art = load_manifest(tmp_path / "tpu").to_dict()["artifacts"][0]
    assert art["inputs"][0]["dtype"] == "uint8" and art["inputs"][0]["shape"] == [1, *SHAPE]
    # The dynamic-batch float model fails every requirement.
    f32 = check_edgetpu(build[0] / "model_float32.tflite")
    assert not f32["compatible"]
    assert any("float32" in p for p in f32["problems"]) and any(
        "dynamic" in p for p in f32["problems"]
    )
    assert f32["first_cpu_op"] is not None
    log = """Edge TPU Compiler version 16.0.384591198
Model compiled successfully in 12 ms.

Input model: model_int8.tflite
Output model: model_int8_edgetpu.tflite
Number of Edge TPU subgraphs: 1
Total number of operations: 9
Operation log: model_int8_edgetpu.log

Operator                       Count      Status

MAX_POOL_2D                    2          Mapped to Edge TPU
CONV_2D                        2          Mapped to Edge TPU
FULLY_CONNECTED                2          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
RESHAPE                        1          Mapped to Edge TPU
HARD_SWISH                     1          Operation not supported
Number of operations that will run on Edge TPU: 8
Number of operations that will run on CPU: 1
"""
    parsed = parse_compiler_log(log)
    assert parsed["compiler_version"] == "16.0.384591198"
    assert (parsed["tpu_ops"], parsed["cpu_ops"]) == (8, 1)
    assert [r["op"] for r in parsed["unmapped"]] == ["HARD_SWISH"]


BAD = [
    (["--prune", "1.0"], "sparsity"),
    (["--prune-filters", "-0.1"], "fraction"),
    (["--precision", "int4"], "unknown precision"),
    (["--formats", "coreml"], "unknown format"),
    (["--calib-samples", "3"], "calibration set too small"),
]


@pytest.mark.parametrize(("extra", "words"), BAD)
def test_cli_bad_options_exit_2_without_build(
    tmp_path: Path, trained: tuple[Path, float], extra: list[str], words: str
) -> None:
    from click.testing import CliRunner

    from edgecnn.cli import main

    out = tmp_path / "b"
    res = CliRunner().invoke(
        main, ["convert", str(trained[0]), "--data", "digits", "--out", str(out), *extra]
    )
    assert res.exit_code == 2, res.output
    assert words in res.output and res.output.count("\n") == 1 and "Traceback" not in res.output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".b")]


def test_cli_bad_model_and_data_exit_2_without_build(
    tmp_path: Path, trained: tuple[Path, float]
) -> None:
    from click.testing import CliRunner

    from edgecnn.cli import main

    corrupt = tmp_path / "broken.keras"
    corrupt.write_bytes(b"not a zip")
    x = np.zeros((30, 8, 8), np.uint8)
    np.savez(tmp_path / "three.npz", x=x, y=np.arange(30) % 3)
    cases = [
        ([str(tmp_path / "missing.keras"), "--data", "digits"], "not found"),
        ([str(corrupt), "--data", "digits"], "not a Keras model"),
        (
            [str(trained[0]), "--data", f"npz:{tmp_path / 'three.npz'}"],
            "3 classes but the model outputs 10",
        ),
        (
            [str(trained[0]), "--data", "digits", "--edgetpu", "--io-dtype", "float32"],
            "integer I/O",
        ),
    ]
    for args, words in cases:
        out = tmp_path / "b"
        res = CliRunner().invoke(main, ["convert", *args, "--out", str(out), "-q"])
        assert res.exit_code == 2, (args, res.output)
        assert words in res.output and "Traceback" not in res.output, res.output
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]


def test_cli_json_end_to_end(tmp_path: Path, trained: tuple[Path, float]) -> None:
    """A real process: stdout is clean JSON (no TensorFlow or LiteRT noise) and the build is complete."""
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecnn.cli",
            "convert",
            str(trained[0]),
            "--data",
            "digits",
            "--out",
            str(out),
            "--formats",
            "tflite",
            "--precision",
            "int8",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["artifacts"][0]["artifact"] == "model_int8.tflite"
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.txt",
        "manifest.json",
        "model.keras",
        "model_int8.tflite",
    ]


def test_onnx_int8_from_tflite_matches_litert_to_one_step(
    tmp_path: Path, trained: tuple[Path, float], digits28: Any
) -> None:
    """The alternative route: tf2onnx.from_tflite keeps LiteRT's integer arithmetic, to one
    quantization step (bit for bit on two earlier hosts; on an AVX2 one, 1 of 500 scores was
    one step off: the two runtimes' requantization rounds differently there)."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.build import convert_model

    out = tmp_path / "ft"
    convert_model(
        trained[0], "digits", out, precisions="int8", formats="tflite,onnx", onnx_int8="tflite"
    )
    onnx_art = next(a for a in load_manifest(out).to_dict()["artifacts"] if a["format"] == "onnx")
    assert onnx_art["inputs"][0]["dtype"] == "int8" and onnx_art["inputs"][0]["quantization"]
    q = onnx_art["inputs"][0]["quantization"]
    x = np.clip(np.rint(digits28.x_test[:50] / q["scale"] + q["zero_point"]), -128, 127).astype(
        np.int8
    )
    it = Interpreter(model_path=str(out / "model_int8.tflite"))
    d = it.get_input_details()[0]
    it.resize_tensor_input(d["index"], [len(x), *SHAPE])
    it.allocate_tensors()
    it.set_tensor(d["index"], x)
    it.invoke()
    lite = it.get_tensor(it.get_output_details()[0]["index"])
    s = ort.InferenceSession(str(out / "model_int8.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = s.run(None, {s.get_inputs()[0].name: x})[0]
    diff = np.abs(onnx_out.astype(np.int16) - lite.astype(np.int16))
    assert diff.max() <= 1, f"scores differ by up to {diff.max()} quantization steps"
    assert (diff > 0).mean() <= 0.01, f"{(diff > 0).mean():.1%} of the scores differ"
    np.testing.assert_array_equal(onnx_out.argmax(axis=1), lite.argmax(axis=1))


def test_convert_accuracy_is_the_parity_accuracy(build: tuple[Path, dict]) -> None:
    """One way to run an artifact: the accuracy convert prints for each artifact (all test
    images, eval_samples=0) is exactly what parity measures on the same split."""
    from edgecnn.parity import evaluate

    out, report = build
    par = {r["artifact"]: r["top1"] for r in evaluate(out, "digits", diagnose=False)["artifacts"]}
    assert len(par) == len(report["artifacts"]) == 6  # four TFLite precisions, two ONNX
    for row in report["artifacts"]:
        assert row["accuracy"] == par[row["artifact"]], (row, par)
