"""What a new user hits (issue 13): errors that name the next step, optional packages that name
their extra, inspect on artifacts, parity on another source, numbers that agree, demo inputs
and camera-like augmentation. Real models trained here, real CLI processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import REPO, run_cli
from daemon_fixtures import daemon_build

sys.path.insert(0, str(REPO / "tools"))


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    """cnn_small on digits (8x8), converted: float32 + int8, TFLite + ONNX."""
    return daemon_build(tmp_path_factory)


@pytest.fixture(scope="module")
def training_dir(tmp_path_factory) -> Path:
    """A real training directory (model.keras + manifest fragment, no artifacts), trained with
    --resize crop so its manifest records the mode."""
    out = tmp_path_factory.mktemp("newuser") / "train"
    r = run_cli(
        "train", "--arch", "cnn_small", "--data", "digits", "--epochs", "1", "--resize", "crop",
        "--out", str(out), "-q",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def mnist5k_build(tmp_path_factory) -> Path:
    """cnn_small on MNIST-5k (28x28), one epoch, converted."""
    from builds import make_build

    return make_build(tmp_path_factory.mktemp("m5k") / "build", "mnist5k", "cnn_small", epochs=1)


NOT_ERRORS = ("... ", "INFO: Created TensorFlow Lite")  # progress lines, LiteRT's own banner


def one_line_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = [x for x in r.stderr.strip().splitlines() if not x.startswith(NOT_ERRORS)]
    assert r.returncode == code and len(lines) == 1, (r.returncode, r.stderr[-2000:])
    assert lines[0].startswith("error: "), lines
    return lines[0]


# -- item 5: a training dir or a .keras where a build is expected ---------------------------------


@pytest.mark.parametrize("verb", ["predict", "bench", "parity", "serve", "deploy"])
@pytest.mark.parametrize("what", ["dir", "keras"])
def test_a_training_dir_or_keras_file_is_not_a_build_and_says_convert(
    verb, what, training_dir, tmp_path
):
    from PIL import Image

    png = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    target = str(training_dir if what == "dir" else training_dir / "model.keras")
    args = {
        "predict": ["predict", target, str(png)],
        "bench": ["bench", target],
        "parity": ["parity", target, "--data", "digits"],
        "serve": ["serve", "--model", target, "--source", str(training_dir), "--port", "0"],
        "deploy": ["deploy", target, "--host", "pi@127.0.0.1"],
    }[verb]
    line = one_line_error(run_cli(*args, timeout=120))
    kind = "training directory" if what == "dir" else "Keras model"
    assert kind in line and "not a build" in line and "edgecnn convert" in line, line


def test_training_records_the_resize_mode(training_dir):
    from edgecnn.manifest import load_manifest

    assert load_manifest(training_dir).input.resize == "crop"


# -- item 5: inspect on .tflite and .onnx ------------------------------------------------------


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_float32.tflite", "model_int8.onnx"])
def test_inspect_reads_artifacts_ops_shapes_quantization_and_macs(build, name):
    from edgecnn.bench.estimate import artifact_ops
    from edgecnn.manifest import load_manifest
    from edgecnn.runtime.opgraph import multiply_accumulates

    r = run_cli("inspect", str(build / name), "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    ops = [o["op"] for o in rep["ops"]]
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(ops) or {"Conv", "Gemm"} <= set(ops), ops
    assert rep["inputs"][0]["shape"][1:] == [8, 8, 1]
    int8 = "int8" in name
    quantized = [o for o in rep["ops"] if o["quantization"]]
    assert bool(quantized) == int8, quantized[:2]
    m = load_manifest(build)
    art = m.by_path(name)
    assert rep["total_macs"] == multiply_accumulates(artifact_ops(build, art, m)) > 0
    table = run_cli("inspect", str(build / name), timeout=120)
    assert table.returncode == 0 and f"{rep['total_macs']:,} MACs" in table.stdout


def test_inspect_of_an_artifact_needs_no_tensorflow(build):
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from edgecnn.runtime.inspect import inspect_artifact\n"
        f"print(inspect_artifact({str(build / 'model_int8.tflite')!r})['total_macs'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and int(r.stdout) > 0, r.stderr


# -- item 3: a missing optional package names its extra --------------------------------------------


def blocked_cli(blocked: list[str], *args: str) -> subprocess.CompletedProcess:
    """The CLI with `blocked` modules unimportable, as in a venv that lacks them."""
    code = (
        "import runpy, sys\n"
        + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
        + f"sys.argv = ['edgecnn', *{list(args)!r}]\n"
        "runpy.run_module('edgecnn.cli', run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.mark.parametrize(
    "blocked, args, extra",
    [
        (["prometheus_client"], ["serve", "--model", "{build}", "--source", "{video}"], "device"),
        (["cv2"], ["serve", "--model", "{build}", "--source", "{video}", "--port", "0"], "video"),
        (["onnxruntime"], ["predict", "{build}", "{png}", "--artifact", "int8.onnx"], "onnx"),
        (
            ["paho"],
            [
                "serve",
                "--model",
                "{build}",
                "--source",
                "{video}",
                "--mqtt-host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            "device",
        ),  # fmt: skip
        (
            ["tensorflow"],
            ["convert", "{build}/model.keras", "--data", "digits", "--out", "{tmp}/o"],
            "train",
        ),  # fmt: skip
    ],
)
def test_a_missing_optional_package_is_one_line_naming_its_extra(
    blocked, args, extra, build, tmp_path
):
    from PIL import Image

    png = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    video = tmp_path / "video.mp4"
    video.write_bytes(b"\0" * 64)  # never decoded: the missing package is found first
    subst = {
        "{build}": str(build),
        "{png}": str(png),
        "{video}": str(video),
        "{tmp}": str(tmp_path),
    }
    filled = [a for a in args]
    for k, v in subst.items():
        filled = [a.replace(k, v) for a in filled]
    line = one_line_error(blocked_cli(blocked, *filled))
    assert f"pip install 'edgecnn[{extra}]'" in line, line


# -- item 6: parity on another source ----------------------------------------------------------------


def test_parity_on_another_source_is_refused_naming_both(mnist5k_build):
    line = one_line_error(run_cli("parity", str(mnist5k_build), "--data", "digits", timeout=300))
    assert "'mnist5k'" in line and "'digits'" in line and "--other-data" in line, line
    assert "28x28x1" in line and "8x8x1" in line


def test_parity_on_another_source_on_purpose_says_so(mnist5k_build, tmp_path):
    report = tmp_path / "parity.md"
    r = run_cli(
        "parity", str(mnist5k_build), "--data", "digits", "--other-data", "--report", str(report),
        timeout=600,
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    assert "Evaluated on digits, not on mnist5k" in r.stdout
    assert "Evaluated on digits, not on mnist5k" in report.read_text()
    data = json.loads(report.with_suffix(".json").read_text())
    assert data["other_data"]["trained_on"] == "mnist5k"
    assert data["other_data"]["evaluated_on"] == "digits"


def test_parity_drop_sign_is_explained_in_every_table(build, tmp_path):
    from edgecnn.parity import DROP_NOTE

    r = run_cli("parity", str(build), "--data", "digits", "--report", str(tmp_path / "p.md"))
    assert r.returncode in (0, 1), r.stderr
    assert DROP_NOTE in r.stdout
    assert "drop (pts lost; + = worse)" in (tmp_path / "p.md").read_text()
    rep = json.loads((tmp_path / "p.json").read_text())
    for row in rep["artifacts"]:  # + is worse: reference minus artifact
        assert row["drop"] == pytest.approx((rep["reference"]["top1"] - row["top1"]) * 100)
    readme = (REPO / "README.md").read_text()
    assert "(-0.04 pts" not in readme and "drop +0.04 pts" in readme


# -- item 7: numbers that agree ---------------------------------------------------------------------


def test_macs_agree_between_tflite_and_onnx_and_between_venvs(build):
    """One MAC definition in both readers, so an ONNX estimate is the same with the `onnx`
    package (train venv) as from the TFLite sibling (device venv, no onnx)."""
    from edgecnn.runtime.macs import onnx_layers, tflite_layers

    totals = {
        name: sum(x["macs"] for x in reader((build / name).read_bytes()))
        for name, reader in [
            ("model_float32.tflite", tflite_layers), ("model_int8.tflite", tflite_layers),
            ("model_float32.onnx", onnx_layers), ("model_int8.onnx", onnx_layers),
        ]
    }  # fmt: skip
    assert len(set(totals.values())) == 1, totals
    # What bench's estimate counts (edgecnn.bench.estimate), with the onnx package and without
    # it (a device venv: the same network's TFLite twin is read instead).
    code = (
        "import sys\n{block}"
        "from edgecnn.bench.estimate import artifact_ops\n"
        "from edgecnn.manifest import load_manifest\n"
        "from edgecnn.runtime.opgraph import multiply_accumulates\n"
        f"m = load_manifest({str(build)!r})\n"
        "for a in m.artifacts:\n"
        f"    print(a.path, multiply_accumulates(artifact_ops(__import__('pathlib').Path({str(build)!r}), a, m)))\n"
    )
    counted = {}
    for label, block in (("onnx", ""), ("no onnx", "sys.modules['onnx'] = None\n")):
        r = subprocess.run([sys.executable, "-c", code.format(block=block)], capture_output=True,
                           text=True, cwd=REPO, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        counted[label] = dict(line.split() for line in r.stdout.strip().splitlines())
    assert counted["onnx"] == counted["no onnx"]
    assert {int(v) for v in counted["onnx"].values()} == set(totals.values())


def test_predict_does_not_list_zero_score_classes(build, tmp_path):
    from daemon_fixtures import digits_test
    from PIL import Image

    x, _ = digits_test()
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"d{i}.png")
        Image.fromarray(x[i][..., 0]).save(paths[-1])
    r = run_cli("predict", str(build), *map(str, paths), "--top-k", "10", "--json")
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    from edgecnn.runtime import Runner

    runner = Runner(build)
    zeros = 0
    for res, img in zip(results, x[:5], strict=True):
        ranked = runner.classify(img, top_k=10)
        zeros += sum(round(p.score, 6) == 0 for p in ranked)
        assert all(p["score"] > 0 for p in res["predictions"][1:]), res
        assert [p["index"] for p in res["predictions"]] == [
            p.index for i, p in enumerate(ranked) if i == 0 or round(p.score, 6) > 0
        ]
    assert zeros > 0, "the int8 model gave no exact zeros: this test would prove nothing"
    table = run_cli("predict", str(build), str(paths[0]), "--top-k", "10")
    assert table.returncode == 0 and " 0.0 " not in table.stdout.replace("0.0039", "")


def test_convert_and_run_print_sizes_in_one_unit():
    from edgecnn.commands.convert import _summary_table
    from edgecnn.recipe import runner

    art = {"artifact": "model_int8.tflite", "format": "tflite", "precision": "int8",
           "size": 27_344, "gzip_size": 20_000, "accuracy": 0.9, "seconds": 1.0}  # fmt: skip
    report = {"before": {"size": 100_000}, "after": {"size": 100_000}, "artifacts": [art],
              "out": "b"}  # fmt: skip
    table = _summary_table(report)
    assert "size_MB" in table and "0.02734" in table and "27344" not in table
    src = Path(runner.__file__).read_text()
    assert "KiB" not in src and "/ 1e6:.3f} MB" in src


# -- item 8: demo inputs ---------------------------------------------------------------------------


def test_demo_inputs_feed_predict_and_serve(build, tmp_path):
    demo = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "demo_inputs.py"), "--data", "digits", "--out",
         str(demo), "--count", "12", "--aspect", "4:3"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = list(__import__("csv").DictReader(open(demo / "labels.csv")))
    assert len(rows) == 12 and (demo / "video.mp4").stat().st_size > 0
    pngs = [str(demo / row["file"]) for row in rows]
    pred = run_cli("predict", str(build), *pngs, "--top-k", "1", "--json")
    assert pred.returncode == 0, pred.stderr
    labels = [res["predictions"][0]["label"] for res in json.loads(pred.stdout)["results"]]
    assert np.mean([a == row["label"] for a, row in zip(labels, rows, strict=True)]) > 0.5
    log = tmp_path / "log.jsonl"
    s = run_cli(
        "serve", "--model", str(build), "--source", str(demo / "video.mp4"), "--sync",
        "--no-pace", "--exit-on-end", "--port", "0", "--log-file", str(log), "--resize", "crop",
        timeout=120,
    )  # fmt: skip
    assert s.returncode == 0, s.stderr[-2000:]
    frames = [json.loads(x) for x in log.read_text().splitlines() if '"event"' not in x]
    assert len(frames) == 12 * 3


# -- item 11: camera-like augmentation ---------------------------------------------------------


@pytest.mark.parametrize("recipe", ["digits_cnn", "mnist5k_cnn"])
def test_digit_recipes_train_with_camera_augmentation(recipe):
    from edgecnn.recipe import load_recipe
    from edgecnn.train import CAMERA_AUGMENT, TrainConfig

    cfg = TrainConfig.from_recipe(load_recipe(REPO / "models" / f"{recipe}.toml"))
    for key in ("rotation", "shift", "zoom", "brightness", "contrast", "blur", "noise"):
        assert getattr(cfg, key) == CAMERA_AUGMENT[key] > 0, key


def test_camera_augmentation_changes_training_images_only(digits_data, training_dir):
    from edgecnn.quiet import quiet_tensorflow
    from edgecnn.train import CAMERA_AUGMENT, TrainConfig, _augmenter

    quiet_tensorflow()
    x = digits_data.adapted((28, 28, 1)).x_train[:16].astype(np.float32)
    for key in ("brightness", "contrast", "blur", "noise"):
        cfg = TrainConfig(**{key: CAMERA_AUGMENT[key]})
        aug = _augmenter(cfg, seed=0)
        out = np.asarray(aug(x, training=True))
        assert np.abs(out - x).mean() > 0.5, key  # it did something
        assert out.min() >= 0 and out.max() <= 255, key  # still camera pixels
        assert np.allclose(np.asarray(aug(x, training=False)), x, atol=1e-3), key
    import zipfile

    config = zipfile.ZipFile(training_dir / "model.keras").read("config.json").decode()
    assert "Random" not in config and "GaussianNoise" not in config  # the saved model is clean


def test_cross_source_tool_frames_digits_as_mnist():
    from cross_source import mnist_framed

    from edgecnn.data import load_dataset

    x = load_dataset("digits").x_test[:20]
    framed = mnist_framed(x)
    assert framed.shape == (20, 28, 28, 1)
    for img in framed[..., 0]:  # the digit inside a 20x20 box
        rows, cols = np.nonzero(img.any(1))[0], np.nonzero(img.any(0))[0]
        assert rows.max() - rows.min() < 20 and cols.max() - cols.min() < 20
    ys, xs = np.nonzero(framed[0, ..., 0])
    w = framed[0, ..., 0][ys, xs].astype(float)
    assert abs((ys * w).sum() / w.sum() - 14) < 1.0 and abs((xs * w).sum() / w.sum() - 14) < 1.0


def test_bench_saves_its_results_before_anything_optional(build, tmp_path):
    """bench saves its results beside the histogram, without touching the artifacts."""
    b = shutil.copytree(build, tmp_path / "b")
    r = run_cli("bench", str(b), "--runs", "5", "--warmup", "1", "--no-plot")
    assert r.returncode == 0, r.stderr
    saved = json.loads((b / "bench_host.json").read_text())["results"]
    assert len(saved) == 4 and all(row["status"] == "ok" for row in saved)
    header = next(x for x in r.stdout.splitlines() if x.startswith("format"))
    assert "est_ms" in header  # the estimate beside each measurement (bench's headline says so)
    from edgecnn.manifest import load_manifest

    m = load_manifest(b)
    for art in m.artifacts:
        m.verify(b, art)
