"""Cross-source check: train on one real digit source, evaluate on the other.

    python tools/cross_source.py                  # both directions, with and without augmentation
    python tools/cross_source.py --seeds 0 1 2 --json

The two offline digit sources are real but were captured differently: MNIST-5k (28x28,
scanned, size-normalized into a 20x20 box and centred by centre of mass) and
scikit-learn's digits (8x8, 16 grey levels, drawn on a tablet). The digits are framed as
MNIST frames its own (`mnist_framed`: the 8x8 image scaled into a 20x20 box, pasted into
28x28 with its centre of mass at the centre), so what differs is the capture, not the
layout. A model that only learned one source's look scores well on its own test split and
badly on the other source: the gap is what a camera will cost it.

Each run trains cnn_mnist with models/mnist5k_cnn.toml's settings (epochs, batch, early
stopping, dropout) on one source's training split, once with the recipe's camera-like
augmentation (edgecnn.train.CAMERA_AUGMENT) and once with none, and reports top-1 on its own
test split and on every image of the other source. Figures on a shared 2-core machine are
accuracies, not timings; the README quotes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgecnn.data import Dataset, load_dataset  # noqa: E402


def mnist_framed(x: np.ndarray) -> np.ndarray:
    """(N, h, w, 1) digits -> (N, 28, 28, 1) framed as MNIST: 20x20 box, centre of mass centred."""
    from PIL import Image

    out = np.zeros((len(x), 28, 28, 1), np.uint8)
    for i, img in enumerate(x[..., 0]):
        box = np.asarray(Image.fromarray(img).resize((20, 20), Image.BILINEAR), np.float64)
        mass = box.sum() or 1.0
        cy = (box.sum(1) * np.arange(20)).sum() / mass
        cx = (box.sum(0) * np.arange(20)).sum() / mass
        top, left = int(round(14 - cy)), int(round(14 - cx))
        top, left = min(max(top, 0), 8), min(max(left, 0), 8)
        out[i, top : top + 20, left : left + 20, 0] = box.round().clip(0, 255).astype(np.uint8)
    return out


def source(name: str, seed: int) -> Dataset:
    """mnist5k as it is, or digits framed as MNIST (same splits as `edgecnn train` makes)."""
    ds = load_dataset(name, seed=seed, test_split=0.2)
    if name == "mnist5k":
        return ds
    return Dataset(
        name="digits(mnist-framed)", class_names=ds.class_names,
        x_train=mnist_framed(ds.x_train), y_train=ds.y_train,
        x_val=mnist_framed(ds.x_val), y_val=ds.y_val,
        x_test=mnist_framed(ds.x_test), y_test=ds.y_test, source=ds.source,
    )  # fmt: skip


def every_image(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.concatenate([ds.x_train, ds.x_val, ds.x_test]),
        np.concatenate([ds.y_train, ds.y_val, ds.y_test]),
    )


def train_and_score(train_ds: Dataset, other: Dataset, augment: bool, seed: int) -> dict:
    from edgecnn.recipe import load_recipe
    from edgecnn.train import AUGMENT_FIELDS, CAMERA_AUGMENT, TrainConfig, train
    from edgecnn.zoo import load_keras_model

    cfg = TrainConfig.from_recipe(load_recipe(REPO / "models" / "mnist5k_cnn.toml"))
    cfg.seed, cfg.verbose, cfg.data = seed, 0, train_ds.name
    for key in AUGMENT_FIELDS:
        setattr(cfg, key, CAMERA_AUGMENT.get(key, 0.0) if augment else 0.0)
    cfg.flip = False
    with tempfile.TemporaryDirectory(prefix="edgecnn-xsrc-") as tmp:
        summary = train(cfg, Path(tmp) / "run", dataset=train_ds)
        model = load_keras_model(Path(tmp) / "run" / "model.keras")
        x, y = every_image(other)
        pred = model.predict(x.astype(np.float32), batch_size=256, verbose=0).argmax(1)
    return {
        "train_on": train_ds.name, "evaluate_on": other.name, "augment": augment, "seed": seed,
        "own_test": summary["test_accuracy"], "other_source": float((pred == y).mean()),
        "other_images": int(len(y)), "epochs_run": summary["epochs_run"],
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = [
        "| trained on | evaluated on | augmentation | own test split | other source |",
        "|---|---|---|---|---|",
    ]
    keys = sorted({(r["train_on"], r["evaluate_on"], r["augment"]) for r in rows})
    for a, b, aug in keys:
        sel = [r for r in rows if (r["train_on"], r["evaluate_on"], r["augment"]) == (a, b, aug)]
        own, other = (np.array([r[k] for r in sel]) for k in ("own_test", "other_source"))
        pm = (
            (lambda v: f"{v.mean():.1%} ± {v.std():.1%}")
            if len(sel) > 1
            else (lambda v: f"{v.mean():.1%}")
        )
        lines.append(
            f"| {a} | {b} (all {sel[0]['other_images']}) | {'camera' if aug else 'none'} | "
            f"{pm(own)} | {pm(other)} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from edgecnn.quiet import quiet_tensorflow

    quiet_tensorflow()
    rows = []
    for seed in args.seeds:
        m5k, dig = source("mnist5k", seed), source("digits", seed)
        for train_ds, other in ((m5k, dig), (dig, m5k)):
            for augment in (False, True):
                rows.append(train_and_score(train_ds, other, augment, seed))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
