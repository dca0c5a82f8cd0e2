"""Cross-check edgecnn's numpy .pth reader against PyTorch itself (a developer check).

PyTorch is not an edgecnn dependency; install it where you run this, e.g.
`pip install --target /tmp/torchlib torch==2.13.0 --no-deps` and
`PYTHONPATH=/tmp/torchlib python tools/check_pth_reader.py`.
Prints one line per mismatch and a summary; exits 1 on any difference.
"""

from __future__ import annotations

import sys

import numpy as np

from edgecnn.zoo.efficientnet_lite import weights_path
from edgecnn.zoo.torch_checkpoint import read_state_dict


def main() -> int:
    import torch

    path = weights_path()
    ours = read_state_dict(path)
    theirs = {k: v.numpy() for k, v in torch.load(path, map_location="cpu").items()}
    bad = 0
    for k in sorted(set(ours) | set(theirs)):
        if k not in ours or k not in theirs:
            print(f"only in {'torch' if k in theirs else 'edgecnn'}: {k}")
            bad += 1
        elif ours[k].shape != theirs[k].shape or not np.array_equal(ours[k], theirs[k]):
            print(f"differs: {k} {ours[k].shape} vs {theirs[k].shape}")
            bad += 1
    print(f"{len(theirs)} tensors in torch {torch.__version__}, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
