"""`edgecnn run` twice into two directories gives byte-identical artifacts (issue 13, item 10),
and the run prints its stage tables in the order the stages ran (item 7).

Two fresh processes, so nothing (Python object ids, tf2onnx's constant folding, save dates)
can be shared between them. A small recipe keeps it to about a minute per run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cli_helpers import run_cli

RECIPE = """
name = "repro"
stages = ["train", "convert", "parity", "bench"]
[data]
name = "digits"
limit_train = 400
[model]
arch = "cnn_small"
[train]
epochs = 2
batch_size = 64
rotation = 0.05
noise = 8.0
[convert]
precision = ["float32", "int8"]
formats = ["tflite", "onnx"]
calib_samples = 50
[parity]
# a two-epoch model: the test is about bytes and order, not this model's parity
max_drop = 5.0
min_agreement = 0.9
[bench]
runs = 20
warmup = 2
"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("repro")
    recipe = root / "repro.toml"
    recipe.write_text(RECIPE)
    first = run_cli("run", str(recipe), "--out", str(root / "a"), "-q", timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli(
        "run", str(recipe), "--out", str(root / "b"), "--stages", "train,convert", "-q",
        timeout=900,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    return root / "a", root / "b", first.stdout


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_every_artifact_is_byte_identical(two_runs):
    a, b, _ = two_runs
    files = ["train/model.keras", "build/model.keras"] + [
        f"build/{p.name}" for p in (a / "build").iterdir() if p.suffix in (".tflite", ".onnx")
    ]
    assert len(files) == 6
    differ = [f for f in files if sha(a / f) != sha(b / f)]
    assert differ == []


def test_the_build_records_the_reference_it_embeds(two_runs):
    """The int8 ONNX embeds model.keras's sha256: the same bytes, so the same hash."""
    import onnx

    from edgecnn.manifest import load_manifest

    a, _, _ = two_runs
    m = load_manifest(a / "build")
    props = {p.key: p.value for p in onnx.load(str(a / "build" / "model_int8.onnx")).metadata_props}
    assert props["source_sha256"] == m.source["sha256"] == sha(a / "build" / "model.keras")


def test_run_prints_stage_tables_in_the_order_they_ran(two_runs):
    from edgecnn.parity import DROP_NOTE

    _, _, out = two_runs
    heads = [line for line in out.splitlines() if line in ("[parity]", "[bench]")]
    assert heads == ["[parity]", "[bench]"], out[-3000:]
    assert DROP_NOTE in out
    assert " MB" in out and "KiB" not in out
