"""The ImageNet EfficientNet-Lite0 classifier on scikit-image's real photos, end to end.

One `edgecnn run models/efficientnet_lite0_imagenet.toml` (train stage = the
pretrained classifier as it is, then convert, parity, bench) is shared by the
module. The known-good answers are the ones ImageNet models give for these
photos: espresso for coffee, a cat class for chelsea, missile or projectile
for rocket.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from cli_helpers import run_cli
from daemon_fixtures import Served

from edgecnn.data.photos import KNOWN_GOOD, centre_square, load_photo

RECIPE = "models/efficientnet_lite0_imagenet.toml"
FRAMES_PER_PHOTO = 4


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("effl0") / "run"
    r = run_cli("run", RECIPE, "--out", str(out), "--json", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def float_top3(run_dir):
    """Top-3 labels per photo from the float Keras model, on centre-cropped 224x224 photos."""
    from edgecnn.manifest import load_manifest
    from edgecnn.zoo import load_keras_model

    labels = load_manifest(run_dir / "build")["model"]["labels"]
    model = load_keras_model(run_dir / "train" / "model.keras")
    x = np.stack([centre_square(load_photo(n)) for n in KNOWN_GOOD]).astype(np.float32)
    probs = model.predict(x, verbose=0)
    top = np.argsort(-probs, axis=1)[:, :3]
    return {n: [labels[i] for i in row] for n, row in zip(KNOWN_GOOD, top, strict=True)}


def test_float_model_gives_the_known_classes(float_top3):
    print({n: t for n, t in float_top3.items()})
    for name, good in KNOWN_GOOD.items():
        assert float_top3[name][0] in good, (name, float_top3[name])


@pytest.mark.parametrize("artifact", ["int8.tflite", "float32.tflite", "float16.tflite"])
def test_tflite_keeps_the_float_top1(run_dir, float_top3, artifact):
    """The device runtime on the whole photo (its centre crop comes from the manifest)."""
    from edgecnn.runtime import Runner

    with Runner(run_dir / "build", artifact=artifact) as runner:
        assert runner.input_spec.resize == "crop"
        for name in KNOWN_GOOD:
            preds = runner.classify(load_photo(name), top_k=3)
            print(artifact, name, [(p.label, round(p.score, 3)) for p in preds])
            assert preds[0].label == float_top3[name][0], (artifact, name, preds)


def test_int8_is_smaller_and_parity_passed(run_dir):
    manifest = json.loads((run_dir / "build" / "manifest.json").read_text())
    sizes = {(a["format"], a["precision"]): a["size"] for a in manifest["artifacts"]}
    assert sizes[("tflite", "int8")] < sizes[("tflite", "float32")] / 3
    assert len(manifest["model"]["labels"]) == 1000
    parity = json.loads((run_dir / "build" / "parity.json").read_text())
    assert parity["passed"]
    rows = {r["artifact"]: r for r in parity["artifacts"]}
    assert rows["model_int8.tflite"]["agreement"] == 1.0


def write_photo_video(path, names, size=(480, 320)) -> None:
    """Each photo resized to a 3:2 camera frame (the photos' own aspect), a few frames each."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    assert w.isOpened()
    for name in names:
        frame = cv2.resize(load_photo(name), size, interpolation=cv2.INTER_AREA)
        for _ in range(FRAMES_PER_PHOTO):
            w.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    w.release()


def test_serve_classifies_a_video_of_the_photos(run_dir, float_top3, tmp_path):
    names = list(KNOWN_GOOD)
    video = tmp_path / "photos.mp4"
    write_photo_video(video, names)
    log = tmp_path / "pred.jsonl"
    s = Served(
        "--model", str(run_dir / "build"), "--artifact", "int8.tflite", "--source", str(video),
        "--sync", "--no-pace", "--exit-on-end", "--log-file", str(log),
    )  # fmt: skip
    assert s.proc.wait(120) == 0, s.output()
    preds = [r for r in map(json.loads, log.read_text().splitlines()) if "event" not in r]
    assert len(preds) == len(names) * FRAMES_PER_PHOTO
    for r in preds:
        name = names[r["pos"] // FRAMES_PER_PHOTO]
        assert r["label"] in KNOWN_GOOD[name], (name, r["label"])
    # The rocket is the closest call in float (missile 0.27 vs projectile 0.14); coffee and
    # chelsea must agree with the float model's top-1 on every frame.
    for r in preds:
        name = names[r["pos"] // FRAMES_PER_PHOTO]
        if name != "rocket":
            assert r["label"] == float_top3[name][0], (name, r["label"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--head", "imagenet", "--epochs", "3"], "set epochs = 0"),
        (["--head", "imagenet", "--epochs", "0", "--weights", "none"], "needs weights='imagenet'"),
        (["--data", "imagenet_photos", "--head", "avg", "--epochs", "1"], "not for training"),
        (["--weights", os.devnull + ".pth", "--epochs", "1"], "weights file not found"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    base = ["train", "--arch", "efficientnet_lite0", "--data", "digits", "--input-size", "32"]
    r = run_cli(*base, *args, "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o").exists()


def test_weights_that_do_not_fit_the_model_are_refused():
    """A checkpoint whose channels differ from the built network: one line, nothing half-set."""
    from dataclasses import replace

    from edgecnn.errors import BadInput
    from edgecnn.zoo import efficientnet_lite as lite

    sd, spec = lite.load_state_dict()
    narrow = replace(spec, stem=16, blocks=((16, 16, 16), *spec.blocks[1:]))
    backbone = lite.build_backbone((64, 64, 3), narrow)
    with pytest.raises(
        BadInput, match=r"checkpoint weights for stem_conv have shapes \[\(3, 3, 3, 32\)\]"
    ):
        lite._assign(backbone, lite.backbone_weights(sd, spec))
