"""`edgecnn train`: fit a zoo model on a named dataset, or from a recipe."""

from __future__ import annotations

import sys

import click

from edgecnn.commands.common import emit, handle_errors
from edgecnn.manifest import RESIZE_MODES
from edgecnn.quiet import quiet_tensorflow
from edgecnn.tables import format_table


@click.command("train")
@click.option(
    "--recipe",
    type=click.Path(dir_okay=False),
    help="Recipe TOML (models/*.toml); CLI options override it.",
)
@click.option("--arch", help="Architecture name, e.g. cnn_mnist, mobilenet_v2.")
@click.option(
    "--data",
    "data_name",
    help="Dataset: digits, mnist5k, fashion_mnist, mnist, cifar10, lfw_subset, imagenet_photos, "
    "folder:PATH, npz:PATH.",
)
@click.option("--epochs", type=int, help="Training epochs.")
@click.option("--batch-size", type=int)
@click.option("--lr", "learning_rate", type=float, help="Learning rate.")
@click.option("--input-size", type=int, help="Square input side (default: the architecture's).")
@click.option(
    "--resize",
    type=click.Choice(RESIZE_MODES),
    help="How images of another aspect are fitted, in training and on the device "
    "(recorded in the manifest; default stretch, crop for --head imagenet).",
)
@click.option("--weights", help="Transfer backbones: imagenet, none, or a weights file.")
@click.option("--alpha", type=float, help="Width multiplier (MobileNets).")
@click.option(
    "--head",
    type=click.Choice(["avg", "max", "flatten", "imagenet"]),
    help="Transfer head; 'imagenet' keeps efficientnet_lite0's 1000-class classifier (--epochs 0).",
)
@click.option("--dropout", type=float)
@click.option("--l2", type=float)
@click.option(
    "--augment/--no-augment",
    default=None,
    help="Camera-like augmentation during training only (rotation, shift, zoom, brightness, "
    "contrast, blur, noise); --no-augment turns off the recipe's.",
)
@click.option("--early-stopping", type=int, help="Patience in epochs (0 disables).")
@click.option(
    "--fine-tune-layers",
    type=int,
    help="Transfer: unfreeze the top N backbone layers after the head is trained.",
)
@click.option("--fine-tune-epochs", type=int)
@click.option(
    "--strategy",
    type=click.Choice(["default", "mirrored", "multi-worker"]),
    help="tf.distribute strategy.",
)
@click.option("--seed", type=int)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No Keras progress output.")
@handle_errors
def command(
    recipe: str | None, out: str, as_json: bool, quiet: bool, augment: bool | None, **opts: object
) -> None:
    """Train a model and write model.keras, labels.txt, manifest.json, history.csv and plots.

    \b
    Examples:
      edgecnn train --arch cnn_mnist --data digits --epochs 10 --out runs/digits
      edgecnn train --recipe models/mnist5k_cnn.toml --out runs/mnist5k
      edgecnn train --recipe models/mnist5k_cnn.toml --resize crop --out runs/m5k-crop
      edgecnn train --arch efficientnet_lite0 --weights imagenet --data mnist5k \\
          --input-size 96 --epochs 5 --out runs/effl0
    """
    quiet_tensorflow(import_now=False)
    from edgecnn.recipe import load_recipe
    from edgecnn.train import AUGMENT_FIELDS, CAMERA_AUGMENT, TrainConfig, train

    cfg = TrainConfig.from_recipe(load_recipe(recipe)) if recipe else TrainConfig()
    if not recipe and not opts.get("arch"):
        raise click.UsageError("give --arch (and --data) or --recipe")
    rename = {"data_name": "data"}
    for key, value in opts.items():
        if value is not None:
            setattr(cfg, rename.get(key, key), value)
    if augment is True:
        for key, value in CAMERA_AUGMENT.items():
            setattr(cfg, key, getattr(cfg, key) or value)
    elif augment is False:
        for key in AUGMENT_FIELDS:
            setattr(cfg, key, False if key == "flip" else 0.0)
    cfg.verbose = 0 if (quiet or as_json) else (1 if sys.stdout.isatty() else 2)
    summary = train(cfg, out)
    emit(
        summary,
        as_json,
        format_table(
            [summary],
            [
                "arch",
                "data",
                "epochs_run",
                "seconds_per_epoch",
                "best_val_accuracy",
                "test_accuracy",
                "params",
                "out",
            ],
        ),
    )
