"""Resize modes (stretch / crop / letterbox) from training to serving, the aspect warning, and
`serve --resize` / `--overlay/--no-overlay` (issue 13, item 4). Real model, real 4:3 video."""

from __future__ import annotations

import io
import json
import logging
import socket

import numpy as np
import pytest
from daemon_fixtures import Served, daemon_build, digits_test, get_json
from PIL import Image

from edgecnn.manifest import RESIZE_MODES, InputSpec


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return daemon_build(tmp_path_factory)


@pytest.fixture(scope="module")
def video43(tmp_path_factory):
    """Real digits test images centred on black 4:3 frames (tools/demo_inputs.py), 3 frames each."""
    import sys

    from daemon_fixtures import REPO

    sys.path.insert(0, str(REPO / "tools"))
    from demo_inputs import make_demo

    out = tmp_path_factory.mktemp("v43") / "demo"
    rows = make_demo("digits", out, 20, 96, 4 / 3, 3, 30.0)
    return out / "video.mp4", rows


def frame(h: int = 30, w: int = 40) -> np.ndarray:
    """A 4:3 gray frame: a bright square in the centre, a bright bar at each side edge."""
    img = np.zeros((h, w, 1), np.uint8)
    img[10:20, 15:25] = 200
    img[:, :2] = img[:, -2:] = 255
    return img


def test_letterbox_keeps_the_whole_frame_and_its_aspect():
    from edgecnn.runtime.preprocess import fit_image

    out = fit_image(frame(), (28, 28, 1), resize="letterbox")[..., 0]
    rows = np.flatnonzero(out.any(1))
    assert rows.min() >= 3 and rows.max() <= 24  # 40x30 -> 28x21, black bars above and below
    assert out[:3].max() == 0 and out[-3:].max() == 0
    assert out[14, 0] > 100 and out[14, -1] > 100  # the side bars survive: nothing was cut


def test_crop_cuts_the_sides_and_stretch_squashes():
    from edgecnn.runtime.preprocess import fit_image

    crop = fit_image(frame(), (28, 28, 1), resize="crop")[..., 0]
    assert crop[14, 0] < 50 and crop[14, -1] < 50  # the side bars were outside the centre square
    stretch = fit_image(frame(), (28, 28, 1), resize="stretch")[..., 0]
    assert stretch[14, 0] > 100 and stretch[0].max() > 100  # whole frame, top row reaches edges
    square = np.flatnonzero(stretch[14] == stretch[14].max())
    assert crop[14].max() and len(np.flatnonzero(crop[14] > 100)) > len(square) - 4


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_training_images_are_fitted_by_the_runtimes_own_function(mode):
    from edgecnn.data import adapt_images
    from edgecnn.runtime.preprocess import fit_image

    x = np.stack([frame(), np.roll(frame(), 5, axis=1)])
    got = adapt_images(x, (28, 28, 1), mode)
    want = np.stack([fit_image(i, (28, 28, 1), resize=mode) for i in x])
    assert np.array_equal(got, want)


def test_manifest_accepts_the_three_modes_only():
    from edgecnn.errors import BadInput

    for mode in RESIZE_MODES:
        assert InputSpec.from_dict({"shape": [8, 8, 1], "resize": mode}).resize == mode
    with pytest.raises(BadInput, match="letterbox"):
        InputSpec.from_dict({"shape": [8, 8, 1], "resize": "squash"})


def test_runner_warns_once_when_stretch_squashes_a_frame(build, caplog):
    from edgecnn.runtime import Runner

    x, _ = digits_test()
    wide = np.zeros((60, 80, 1), np.uint8)
    wide[:, 10:70] = np.asarray(Image.fromarray(x[0][..., 0]).resize((60, 60)))[..., None]
    with caplog.at_level(logging.WARNING, logger="edgecnn.runtime"):
        stretch = Runner(build)
        assert stretch.input_spec.resize == "stretch"
        stretch.classify(wide)
        stretch.classify(wide)
        stretch.classify(np.zeros((24, 24, 1), np.uint8))  # square: nothing to say
    warnings = [r for r in caplog.records if "squashes" in r.getMessage()]
    assert len(warnings) == 1 and "80x60" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgecnn.runtime"):
        crop = Runner(build, resize="crop")
        assert crop.input_spec.resize == "crop" and crop.manifest.input.resize == "stretch"
        crop.classify(wide)
    assert not [r for r in caplog.records if "squashes" in r.getMessage()]


def serve_log(build, video, tmp_path, *extra: str) -> tuple[list[dict], str]:
    log = tmp_path / f"log{len(list(tmp_path.glob('log*')))}.jsonl"
    s = Served(
        "--model", str(build), "--source", str(video), "--sync", "--no-pace", "--exit-on-end",
        "--log-file", str(log), *extra, wait=False,
    )  # fmt: skip
    assert s.proc.wait(120) == 0, s.output()
    s.stop()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return [r for r in records if "event" not in r], s.output()


def test_serve_resize_overrides_the_manifest_and_warns_on_stretch(build, video43, tmp_path):
    from daemon_fixtures import decoded_frames

    from edgecnn.runtime import Runner

    video, rows = video43
    frames = decoded_frames(video)
    assert frames.shape[2] / frames.shape[1] == pytest.approx(4 / 3, abs=0.02)  # W / H
    results = {}
    for mode in RESIZE_MODES:
        preds, output = serve_log(build, video, tmp_path, "--resize", mode)
        assert ("squashes" in output) == (mode == "stretch"), output[-1500:]
        runner = Runner(build, resize=mode)
        by_pos = {p["pos"]: p["top_k"][0]["index"] for p in preds}
        offline = [runner.classify(f, top_k=1)[0].index for f in frames]
        assert np.mean([by_pos[i] == offline[i] for i in range(len(frames))]) > 0.99
        truth = {f: r["label"] for r in rows for f in range(r["first_frame"], r["last_frame"] + 1)}
        results[mode] = np.mean([p["top_k"][0]["label"] == truth[p["pos"]] for p in preds])
    default, _ = serve_log(build, video, tmp_path)  # the manifest's mode: stretch
    assert [p["top_k"][0]["index"] for p in sorted(default, key=lambda p: p["pos"])] == [
        p["top_k"][0]["index"]
        for p in sorted(
            serve_log(build, video, tmp_path, "--resize", "stretch")[0], key=lambda p: p["pos"]
        )  # fmt: skip
    ]
    print("4:3 video accuracy per resize mode:", results)


def first_jpeg(port: int) -> Image.Image:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"\xff\xd9") < 2 and len(data) < 2_000_000:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    rest = data.partition(b"\r\n\r\n")[2]
    start = rest.index(b"\xff\xd8")
    return Image.open(io.BytesIO(rest[start : rest.index(b"\xff\xd9", start) + 2])).convert("L")


def test_no_overlay_streams_the_plain_frame(build, tmp_path):
    """A white image folder: with the overlay the top-left panel is dimmed; without, it is not."""
    folder = tmp_path / "white"
    folder.mkdir()
    Image.fromarray(np.full((96, 96), 255, np.uint8)).save(folder / "a.png")
    brightness = {}
    for flag in ("--overlay", "--no-overlay"):
        with Served("--model", str(build), "--source", str(folder), "--loop", flag) as s:
            s.wait_for(lambda s=s: get_json(s.url("/api/predictions"))[1]["prediction"],
                       what="a first prediction")  # fmt: skip
            im = np.asarray(first_jpeg(s.port), dtype=np.float32)
        brightness[flag] = im[5:40, 5:100].mean()
        assert im.shape[1] >= 320 and im[-20:, -20:].mean() > 240  # upscaled, white
    assert brightness["--no-overlay"] > 240 > 160 > brightness["--overlay"], brightness


def test_overlay_draws_with_pillow_alone():
    from edgecnn.daemon.overlay import annotate, encode_jpeg, placeholder_jpeg

    img = np.full((96, 128, 3), 255, np.uint8)
    top = [{"label": "7", "score": 0.9}, {"label": "1", "score": 0.05}]
    drawn = np.asarray(annotate(img, top, 12.5, {"name": "m", "version": "1"}))
    plain = np.asarray(annotate(img, top, 12.5, {"name": "m"}, overlay=False))
    assert drawn.shape == plain.shape == (240, 320, 3)
    assert plain.min() == 255 and drawn[:40, :100].mean() < 160
    assert encode_jpeg(annotate(img, top, 1.0, {}))[:2] == b"\xff\xd8"
    assert placeholder_jpeg("source reconnecting")[:2] == b"\xff\xd8"


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_training_fits_its_images_by_the_recipes_mode(mode, digits_data):
    """Real digits on 4:3 frames (black side bars) reach the model as the manifest will say."""
    from edgecnn.data import Dataset, adapt_images
    from edgecnn.train import TrainConfig, _load_data

    def wide(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)))  # 8x8 -> 8x12, a 3:2 frame

    d = digits_data
    ds = Dataset("digits", d.class_names, wide(d.x_train), d.y_train, wide(d.x_val), d.y_val,
                 wide(d.x_test), d.y_test)  # fmt: skip
    cfg = TrainConfig(arch="cnn_mnist", data="digits", input_size=28, resize=mode)
    fitted, shape = _load_data(cfg, ds)
    assert shape == (28, 28, 1)
    assert np.array_equal(fitted.x_train, adapt_images(ds.x_train, shape, mode))
    others = [m for m in RESIZE_MODES if m != mode]
    for other in others:
        assert not np.array_equal(fitted.x_train[:50], adapt_images(ds.x_train[:50], shape, other))
