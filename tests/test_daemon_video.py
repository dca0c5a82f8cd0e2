"""Serve a real MP4 of digits test images: the daemon's labels match the ground truth.

The video is written with OpenCV (mp4v) from scikit-learn digits test images
(3 frames each, upscaled); `--sync --no-pace` makes the daemon classify every
frame, so each logged prediction can be checked against its image's label.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from daemon_fixtures import (
    FRAMES_PER_IMAGE,
    Served,
    daemon_build,
    daemon_video,
    decoded_frames,
    digits_test,
)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return daemon_build(tmp_path_factory)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return daemon_video(tmp_path_factory)


def test_video_predictions_match_labels(build, video, tmp_path):
    from edgecnn.runtime import Runner

    path, labels = video
    log = tmp_path / "pred.jsonl"
    s = Served(
        "--model",
        str(build),
        "--source",
        str(path),
        "--sync",
        "--no-pace",
        "--exit-on-end",
        "--log-file",
        str(log),
    )
    assert s.proc.wait(60) == 0, s.output()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    preds = [r for r in records if "event" not in r]
    events = [r["event"] for r in records if "event" in r]
    assert events == ["start", "stop"]
    n_frames = len(labels) * FRAMES_PER_IMAGE
    assert len(preds) == n_frames  # --sync: every frame classified, none dropped
    assert sorted(r["pos"] for r in preds) == list(range(n_frames))

    daemon_acc = np.mean([r["label"] == str(labels[r["pos"] // FRAMES_PER_IMAGE]) for r in preds])
    # The model's own test accuracy, offline on the original (uncompressed) images.
    runner = Runner(build)
    x_test, y_test = digits_test()
    test_acc = float(np.mean(runner.predict_batch(x_test).argmax(1) == y_test))
    assert test_acc > 0.6, f"the tiny model did not learn (test accuracy {test_acc:.3f})"
    # mp4v compression of the upscaled frames costs a little; frame boundaries blend.
    assert daemon_acc >= test_acc - 0.03, (daemon_acc, test_acc)

    # Same frames, same model, no server: the daemon's answers are the offline ones
    # (a daemon label must have the offline top score; int8 scores can tie).
    frames = decoded_frames(path)
    offline = np.stack([runner.run(runner.preprocess(f)[None])[0] for f in frames])
    by_pos = {r["pos"]: int(r["top_k"][0]["index"]) for r in preds}
    agree = np.mean([offline[i, by_pos[i]] >= offline[i].max() - 1e-6 for i in range(n_frames)])
    assert agree >= 0.999, agree
    print(
        f"daemon accuracy {daemon_acc:.4f}, model test accuracy {test_acc:.4f}, agreement {agree:.4f}"
    )


def test_smoothing_and_threshold_from_the_video(build, video, tmp_path):
    """--smooth averages over frames (top-1 flips lag image changes); --threshold blanks weak labels."""
    path, labels = video
    log = tmp_path / "pred.jsonl"
    s = Served(
        "--model", str(build), "--source", str(path), "--sync", "--no-pace", "--exit-on-end",
        "--log-file", str(log), "--smooth", "6", "--threshold", "0.9", "--top-k", "3",
    )  # fmt: skip
    assert s.proc.wait(60) == 0, s.output()
    preds = [r for r in map(json.loads, log.read_text().splitlines()) if "event" not in r]
    assert all(len(r["top_k"]) == 3 for r in preds)
    assert all((r["label"] is None) == (r["score"] < 0.9) for r in preds)
    assert any(r["label"] is None for r in preds) and any(r["label"] is not None for r in preds)

    # Smoothed scores are means of 6 consecutive frames: the first frame of each new image still
    # leans on the previous image, so fewer first-frames are right than middle frames.
    def acc(offset: int) -> float:
        sel = [r for r in preds if r["pos"] % FRAMES_PER_IMAGE == offset]
        return float(
            np.mean(
                [r["top_k"][0]["label"] == str(labels[r["pos"] // FRAMES_PER_IMAGE]) for r in sel]
            )
        )

    assert acc(0) < acc(2)
