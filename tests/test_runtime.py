"""The device runtime: real trained artifacts, real digits, bad inputs, no TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from daemon_fixtures import daemon_build, digits_test
from helpers import copy_build, replace_artifact

from edgecnn.errors import BadInput
from edgecnn.fsutil import sha256_file
from edgecnn.manifest import Artifact, InputSpec, load_manifest, new_manifest
from edgecnn.runtime import Prediction, Runner, dequantize, select_artifact, top_k

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> Path:
    return daemon_build(tmp_path_factory)


@pytest.fixture(scope="session")
def digits():
    return digits_test()


# -- correct results --------------------------------------------------------------------------


def test_int8_default_and_accuracy(build, digits):
    x, y = digits
    with Runner(build) as r:
        assert r.artifact.format == "tflite" and r.artifact.precision == "int8"
        assert r.input_spec.shape == [8, 8, 1] and len(r.labels) == 10
        probs = r.predict_batch(x)
    assert probs.shape == (len(y), 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1.0, atol=0.05)
    assert (probs.argmax(1) == y).mean() > 0.8


@pytest.mark.parametrize("spec", ["float32", "model_float32.onnx", "onnx:int8"])
def test_other_artifacts_agree_with_int8(build, digits, spec):
    """The daemon build is made with convert's defaults (float32 and int8, TFLite and ONNX):
    a missing artifact is a convert bug, so it fails here instead of skipping."""
    x, y = digits
    ref = Runner(build).predict_batch(x).argmax(1)
    assert select_artifact(load_manifest(build), spec).matches(spec)
    r = Runner(build, artifact=spec)
    pred = r.predict_batch(x).argmax(1)
    assert (pred == y).mean() > 0.8
    assert (pred == ref).mean() > 0.95


def test_classify_matches_batch_and_topk(build, digits):
    x, _ = digits
    r = Runner(build)
    probs = r.predict_batch(x[:40])
    for i in range(40):
        preds = r.classify(x[i], top_k=3)
        assert len(preds) == 3 and isinstance(preds[0], Prediction)
        assert preds[0].index == int(probs[i].argmax())
        assert preds[0].label == r.labels[preds[0].index]
        assert preds[0].score >= preds[1].score >= preds[2].score
        assert preds[0].score == pytest.approx(float(probs[i].max()), abs=1e-6)
    assert len(r.classify(x[0], top_k=50)) == 10  # k clipped to the class count
    assert "first_invoke_s" in r.timings and r.timings["load_s"] > 0


def test_artifact_file_path_and_threads(build, digits):
    x, y = digits
    r = Runner(build / "model_float32.tflite", threads=1)
    assert r.artifact.precision == "float32"
    assert (r.predict_batch(x).argmax(1) == y).mean() > 0.8


def test_preprocess_from_manifest(build, digits):
    from PIL import Image

    x, _ = digits
    r = Runner(build)
    q = r.preprocess(x[0])
    # int8 input, scale 1, zero point -128 over 0-255 pixels: a plain shift.
    assert q.dtype == np.int8 and q.shape == (8, 8, 1)
    assert np.array_equal(q.astype(np.int16), x[0].astype(np.int16) - 128)
    # An RGB photo-sized PIL image: resized and turned to gray like the training data.
    big = Image.fromarray(x[0][..., 0]).resize((64, 64), Image.NEAREST).convert("RGB")
    assert r.preprocess(big).shape == (8, 8, 1)
    assert r.preprocess(np.asarray(big)).shape == (8, 8, 1)
    rgba = np.dstack([np.asarray(big), np.full((64, 64), 255, np.uint8)])
    assert np.array_equal(r.preprocess(rgba), r.preprocess(np.asarray(big)))
    f = Runner(build, artifact="float32")
    assert f.preprocess(x[0]).dtype == np.float32 and f.preprocess(x[0]).max() == x[0].max()


def test_quantization_helpers():
    raw = np.array([[0, 255, 128]], dtype=np.uint8)
    assert np.allclose(dequantize(raw, 0.5, 128), [[-64.0, 63.5, 0.0]])
    scores = np.array([0.1, 0.7, 0.05, 0.15])
    assert [p.index for p in top_k(scores, ["a", "b", "c", "d"], 2)] == [1, 3]
    assert top_k(scores, ["a", "b", "c", "d"], 1)[0] == Prediction(1, "b", 0.7)


# -- bad input: one-line BadInput, never a crash ---------------------------------------------


def test_sha256_mismatch(build, tmp_path):
    b = copy_build(build, tmp_path / "build")
    data = bytearray((b / "model_int8.tflite").read_bytes())
    data[-10] ^= 0xFF
    (b / "model_int8.tflite").write_bytes(bytes(data))
    with pytest.raises(BadInput, match="does not match its manifest"):
        Runner(b)


@pytest.mark.parametrize("kind", ["truncated", "random", "no_identifier", "empty"])
def test_corrupt_tflite(build, tmp_path, kind):
    b = copy_build(build, tmp_path / "build")
    good = (b / "model_int8.tflite").read_bytes()
    rng = np.random.default_rng(1)
    data = {
        "truncated": good[: len(good) // 2],
        "random": good[:8] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "no_identifier": rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "empty": b"",
    }[kind]
    replace_artifact(b, "model_int8.tflite", data)
    with pytest.raises(BadInput, match="TFLite model"):
        Runner(b)


FLIP_SCRIPT = """
import json, sys
import numpy as np
from edgecnn.errors import BadInput
from edgecnn.runtime.backends import tflite_interpreter
from edgecnn.runtime.validate import check_tflite_bytes
good = open(sys.argv[1], "rb").read()
rng = np.random.default_rng(int(sys.argv[2]))
out = {"rejected": 0, "ran": 0, "load_error": 0}
for i in range(int(sys.argv[3])):
    buf = bytearray(good)
    for pos in rng.integers(0, len(buf), size=1 + i % 4):  # one to four random byte flips
        buf[pos] ^= int(rng.integers(1, 256))
    try:
        check_tflite_bytes(bytes(buf))
    except BadInput:
        out["rejected"] += 1
        continue
    try:
        it, _ = tflite_interpreter(bytes(buf))
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        out["ran"] += 1
    except (BadInput, ValueError, RuntimeError):
        out["load_error"] += 1
print(json.dumps(out))
"""


def test_many_truncations_never_crash(build, tmp_path):
    """Every truncation point class, then random byte flips: each file is rejected by the
    validator, refused by the interpreter with an error, or loads and runs. The flips run in
    a subprocess, so a native crash shows up as a signal instead of killing pytest."""
    from edgecnn.runtime.validate import check_tflite_bytes

    good = (build / "model_int8.tflite").read_bytes()
    for cut in range(0, len(good), max(1, len(good) // 300)):
        with pytest.raises(BadInput):
            check_tflite_bytes(good[:cut])
    check_tflite_bytes(good)
    n = 300
    p = subprocess.run(
        [sys.executable, "-c", FLIP_SCRIPT, str(build / "model_int8.tflite"), "7", str(n)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert p.returncode == 0, f"crashed (exit {p.returncode}): {p.stderr[-2000:]}"
    counts = json.loads(p.stdout.strip().splitlines()[-1])
    print(counts)
    assert sum(counts.values()) == n
    assert counts["ran"] > 0  # flips in weight bytes leave a valid, runnable model


def test_corrupt_files_via_cli_do_not_crash(build, tmp_path, digits):
    """In a real process: exit 2 and one 'error:' line, no signal, no traceback."""
    from PIL import Image

    b = copy_build(build, tmp_path / "build")
    good = (b / "model_int8.tflite").read_bytes()
    img = tmp_path / "d.png"
    Image.fromarray(digits[0][0][..., 0]).save(img)
    for data in (good[: len(good) // 3], good[:8] + os.urandom(len(good))):
        replace_artifact(b, "model_int8.tflite", data)
        p = run_cli("predict", str(b), str(img))
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr


def test_corrupt_onnx(build, tmp_path):
    b = copy_build(build, tmp_path / "build")
    replace_artifact(b, "model_float32.onnx", os.urandom(3000))
    with pytest.raises(BadInput):
        Runner(b, artifact="model_float32.onnx")
    replace_artifact(b, "model_float32.onnx", b"\x08\x07" + os.urandom(3000))
    with pytest.raises(BadInput, match="cannot load"):
        Runner(b, artifact="model_float32.onnx")


def test_bad_images(build, digits):
    r = Runner(build)
    with pytest.raises(BadInput, match="not an image"):
        r.classify("not an image")
    with pytest.raises(BadInput, match="channels"):
        r.classify(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(BadInput, match="uint8"):
        r.classify(np.zeros((8, 8), np.float32) + 0.5)
    with pytest.raises(BadInput, match="empty"):
        r.classify(np.zeros((0, 8), np.uint8))
    with pytest.raises(BadInput, match="shape"):
        r.predict_batch(np.zeros((4, 9, 9, 1), np.uint8))
    with pytest.raises(BadInput, match="shape"):
        r.predict_batch(np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(BadInput, match="HxW"):
        r.classify(np.zeros((1, 8, 8, 1, 1), np.uint8))


def test_bad_paths_and_choices(build, tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        Runner(tmp_path / "nope")
    with pytest.raises(BadInput, match="no manifest"):
        Runner(tmp_path)
    with pytest.raises(BadInput, match="no artifact matches"):
        Runner(build, artifact="float16")
    with pytest.raises(BadInput, match="unknown backend"):
        Runner(build, backend="tpu9000")
    with pytest.raises(BadInput, match="onnxruntime"):
        Runner(build, artifact="model_float32.onnx", backend="litert")


def test_tflite_runtime_missing_names_install(build):
    try:
        import tflite_runtime  # noqa: F401

        pytest.skip("tflite_runtime is installed here")
    except ImportError:
        pass
    from edgecnn.runtime.backends import MissingRuntime

    with pytest.raises(MissingRuntime, match="pip install"):
        Runner(build, backend="tflite_runtime")


def test_edgetpu_required_vs_fallback(build, tmp_path):
    """No libedgetpu here: required -> error naming the install; preferred -> warning + CPU int8."""
    with pytest.raises(BadInput, match=r"libedgetpu\.so\.1.*apt-get install"):
        Runner(build, backend="edgetpu")
    b = copy_build(build, tmp_path / "build")
    shutil.copy(b / "model_int8.tflite", b / "model_int8_edgetpu.tflite")
    m = load_manifest(b)
    art = Artifact.from_dict(m.by_path("model_int8.tflite").to_dict())
    art.path, art.format = "model_int8_edgetpu.tflite", "edgetpu"
    m.artifacts.append(art)
    m.save(b)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = Runner(b, artifact="edgetpu")
    assert r.artifact.path == "model_int8.tflite"
    assert any("Edge TPU" in str(x.message) for x in w)


def _tiny_tflite(kind: str) -> bytes:
    """Real models with unsupported inputs: dynamic H/W, or a 5-D input."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    if kind == "dynamic":
        inp = keras.Input((None, None, 1))
        x = keras.layers.Conv2D(4, 3)(inp)
        x = keras.layers.GlobalAveragePooling2D()(x)
    else:
        inp = keras.Input((2, 8, 8, 1))
        x = keras.layers.Flatten()(inp)
    out = keras.layers.Dense(3, activation="softmax")(x)
    return tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out)).convert()


@pytest.mark.parametrize("kind", ["dynamic", "5d"])
def test_dynamic_and_5d_inputs(tmp_path, kind):
    data = _tiny_tflite(kind)
    (tmp_path / "model_float32.tflite").write_bytes(data)
    for shape in ([8, 8, 1], [2, 8, 8, 1]):
        m = new_manifest("odd", "odd", ["a", "b", "c"], InputSpec(shape=shape, color_order="GRAY"))
        m.artifacts = [
            Artifact(
                "model_float32.tflite", "tflite", "float32", size=len(data),
                sha256=sha256_file(tmp_path / "model_float32.tflite"),
            )
        ]  # fmt: skip
        m.save(tmp_path)
        with pytest.raises(BadInput, match="dynamic|5-D|4-D|-D"):
            Runner(tmp_path)


# -- device side: no TensorFlow -----------------------------------------------------------------


def test_device_side_imports_no_tensorflow(build, digits):
    code = f"""
import sys, json
import numpy as np
from edgecnn.runtime import Runner
import edgecnn.commands.predict, edgecnn.runtime.bench_worker, edgecnn.manifest, edgecnn.fsutil
r = Runner({str(build)!r})
p = r.classify(np.zeros((8, 8), np.uint8))
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'jax', 'torch'))
print(json.dumps({{"label": p[0].label, "heavy": heavy}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["heavy"] == [] and res["label"] in [str(i) for i in range(10)]


# -- edgecnn predict ------------------------------------------------------------------------------


def test_predict_cli(build, digits, tmp_path):
    from PIL import Image

    x, y = digits
    paths = []
    for i in range(3):
        p = tmp_path / f"digit{i}.png"
        Image.fromarray(x[i][..., 0]).save(p)
        paths.append(str(p))
    out = run_cli("predict", str(build), *paths, "--top-k", "2", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert [len(r["predictions"]) for r in res["results"]] == [2, 2, 2]
    expected = Runner(build).predict_batch(x[:3]).argmax(1)
    assert [r["predictions"][0]["index"] for r in res["results"]] == list(expected)
    table = run_cli("predict", str(build / "model_float32.tflite"), paths[0])
    assert table.returncode == 0 and "label" in table.stdout and "score" in table.stdout
    bad = tmp_path / "bad.png"
    bad.write_text("this is text")
    for args in (
        (str(build), str(bad)),
        (str(build), str(tmp_path / "missing.png")),
        (str(tmp_path), paths[0]),
    ):
        p = run_cli("predict", *args)
        assert (
            p.returncode == 2
            and p.stderr.startswith("error:")
            and len(p.stderr.strip().splitlines()) == 1
        )


def test_fit_image_crop_keeps_the_centre():
    """`resize: crop` drops the sides of a wide frame (ImageNet models); `stretch` squashes them."""
    from edgecnn.runtime.preprocess import fit_image

    frame = np.zeros((60, 120, 3), np.uint8)
    frame[:, 30:90] = 200  # a bright centre square between dark side bands
    cropped = fit_image(frame, (30, 30, 3), "RGB", "crop")
    stretched = fit_image(frame, (30, 30, 3), "RGB", "stretch")
    assert cropped.shape == stretched.shape == (30, 30, 3)
    assert cropped.min() == 200  # only the centre square is left
    assert stretched[:, 0].max() == 0 and stretched[:, 15].min() == 200
    tall = fit_image(frame.transpose(1, 0, 2), (30, 30, 3), "RGB", "crop")
    assert tall.min() == 200


def test_resize_mode_in_the_manifest():
    assert InputSpec.from_dict({"shape": [8, 8, 1]}).resize == "stretch"
    assert InputSpec.from_dict({"shape": [8, 8, 1], "resize": "crop"}).resize == "crop"
    with pytest.raises(BadInput, match="resize 'zoom'"):
        InputSpec.from_dict({"shape": [8, 8, 1], "resize": "zoom"})
