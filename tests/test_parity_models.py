"""The CI parity suite: int8 TFLite and int8 ONNX stay within 1 point of float top-1 and
agree with it on at least 98% of images, on real data, for the seed CNN, its
filter-pruned version and a MobileNetV2 transfer model."""

from __future__ import annotations

from pathlib import Path

import pytest

CASES = {
    "mnist5k_build": ("mnist5k", 1000),
    "mnist5k_pruned_build": ("mnist5k", 1000),
    "fashion_build": ("fashion_mnist", 10000),
    "mobilenet_build": ("digits", 359),
}


@pytest.mark.parametrize("fixture", list(CASES))
def test_int8_matches_float(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from edgecnn.parity import run_parity

    build = request.getfixturevalue(fixture)
    data, samples = CASES[fixture]
    report = run_parity(build, data, max_drop=1.0, min_agreement=0.98, report=tmp_path / "p.md")
    assert report["samples"] == samples  # the whole held-out test split
    assert report["reference"]["top1"] > 0.5  # well above chance (10 classes)
    by = {r["artifact"]: r for r in report["artifacts"]}
    for name in ("model_int8.tflite", "model_int8.onnx"):
        row = by[name]
        print(
            f"{fixture} {name}: float {report['reference']['top1']:.2%} int8 {row['top1']:.2%} "
            f"drop {row['drop']:+.2f} pts agreement {row['agreement']:.2%}"
        )
        assert row["drop"] <= 1.0, row
        assert row["agreement"] >= 0.98, row
    assert report["passed"], report["failed"]


def test_pruned_build_is_smaller(mnist5k_build: Path, mnist5k_pruned_build: Path) -> None:
    """The pruned reference really is the pruned model (parity compares against it)."""
    from edgecnn.manifest import load_manifest

    full = {a.path: a.size for a in load_manifest(mnist5k_build).artifacts}
    pruned = {a.path: a.size for a in load_manifest(mnist5k_pruned_build).artifacts}
    assert pruned["model_int8.tflite"] < 0.8 * full["model_int8.tflite"]
