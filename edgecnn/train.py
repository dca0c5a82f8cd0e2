"""Training: data -> zoo model -> fit (with training-only augmentation) -> a training directory.

The directory holds `model.keras` (the best checkpoint, inference graph only),
`labels.txt`, `manifest.json` (the model section of the build manifest, no
artifacts yet), `history.csv`, `curves.png` and `confusion.png`.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import Dataset, load_dataset
from edgecnn.errors import BadInput
from edgecnn.fsutil import atomic_dir, check_writable_dir, sha256_file
from edgecnn.manifest import RESIZE_MODES, InputSpec, Manifest, new_manifest, write_labels
from edgecnn.quiet import quiet_tensorflow
from edgecnn.versions import tool_versions
from edgecnn.zoo.registry import default_input_shape, get_arch, is_transfer

STRATEGIES = ("default", "mirrored", "multi-worker")
# `train --augment` and the digit recipes: what a camera does to a centred digit (a slight
# tilt, off-centre, nearer or farther, exposure, focus, sensor noise).
CAMERA_AUGMENT = {
    "rotation": 0.05, "shift": 0.1, "zoom": 0.1, "brightness": 0.2, "contrast": 0.2,
    "blur": 1.0, "noise": 8.0,
}  # fmt: skip
AUGMENT_FIELDS = ("flip", *CAMERA_AUGMENT)


@dataclass
class TrainConfig:
    arch: str = "cnn_mnist"
    data: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    early_stopping: int = 5  # patience in epochs; 0 disables
    seed: int = 0
    val_split: float = 0.1
    test_split: float = 0.2
    limit_train: int | None = None
    input_size: int | None = None
    # how images of another shape are fitted, in training and on the device (manifest
    # input.resize); None: "stretch", or "crop" for the ImageNet head
    resize: str | None = None
    # model options
    weights: str = "none"
    alpha: float = 1.0
    head: str = "avg"
    dense_units: int = 128
    dropout: float = 0.0
    l2: float = 0.0
    # augmentation (training only)
    flip: bool = False
    rotation: float = 0.0
    shift: float = 0.0
    zoom: float = 0.0
    # what a camera does to an image: brightness/contrast factors in [0, 1), blur sigma in
    # pixels (up to), sensor noise as a standard deviation in pixel levels (0-255)
    brightness: float = 0.0
    contrast: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    # transfer fine-tuning
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-5
    strategy: str = "default"
    verbose: int | str = "auto"
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        get_arch(self.arch)
        if self.head == "imagenet":
            if self.epochs != 0 or self.fine_tune_epochs != 0:
                raise BadInput(
                    "head 'imagenet' keeps the ImageNet-trained classifier as it is; "
                    f"set epochs = 0 (got {self.epochs}) and no fine-tune epochs"
                )
        elif self.epochs < 1:
            raise BadInput(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise BadInput(f"batch size must be at least 1, got {self.batch_size}")
        if not 0 < self.learning_rate < 1:
            raise BadInput(f"learning rate must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.dropout < 1:
            raise BadInput(f"dropout must be in [0, 1), got {self.dropout}")
        if self.l2 < 0:
            raise BadInput(f"l2 must be >= 0, got {self.l2}")
        if self.strategy not in STRATEGIES:
            raise BadInput(
                f"unknown strategy {self.strategy!r}; choose one of: {', '.join(STRATEGIES)}"
            )
        if self.resize is not None and self.resize not in RESIZE_MODES:
            raise BadInput(
                f"unknown resize mode {self.resize!r}; choose one of: {', '.join(RESIZE_MODES)}"
            )
        for k in ("rotation", "shift", "zoom", "brightness", "contrast"):
            if not 0 <= getattr(self, k) < 1:
                raise BadInput(f"{k} must be in [0, 1), got {getattr(self, k)}")
        if not 0 <= self.blur <= 5:
            raise BadInput(f"blur must be a sigma in [0, 5] pixels, got {self.blur}")
        if not 0 <= self.noise <= 64:
            raise BadInput(
                f"noise must be a standard deviation in [0, 64] levels, got {self.noise}"
            )

    @classmethod
    def from_recipe(cls, recipe: Any) -> TrainConfig:
        d, m, t = recipe["data"], recipe["model"], recipe["train"]
        return cls(
            arch=m["arch"], data=d["name"], epochs=t["epochs"], batch_size=t["batch_size"],
            learning_rate=t["learning_rate"], early_stopping=t["early_stopping"], seed=t["seed"],
            val_split=d["val_split"], test_split=d["test_split"], limit_train=d["limit_train"],
            input_size=m["input_size"], resize=m["resize"], weights=m["weights"], alpha=m["alpha"], head=m["head"],
            dense_units=m["dense_units"], dropout=m["dropout"], l2=m["l2"], flip=t["flip"],
            rotation=t["rotation"], shift=t["shift"], zoom=t["zoom"],
            brightness=t["brightness"], contrast=t["contrast"], blur=t["blur"], noise=t["noise"],
            fine_tune_layers=t["fine_tune_layers"], fine_tune_epochs=t["fine_tune_epochs"],
            fine_tune_learning_rate=t["fine_tune_learning_rate"], strategy=t["strategy"],
            name=recipe.name,
        )  # fmt: skip


@functools.cache
def _strategy(name: str) -> Any:
    """One strategy per process: collective ops are configured once, at first use."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        # Reads the cluster from TF_CONFIG, as every TF multi-worker job does.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: str) -> bool:
    """Whether this process writes the outputs: in a multi-worker job, only the chief does
    (TF_CONFIG's "chief" task, else worker 0), as TensorFlow's guide has it; the others
    write theirs to a temporary directory, because saving joins collective operations."""
    if strategy != "multi-worker":
        return True
    try:
        cfg = json.loads(os.environ.get("TF_CONFIG") or "{}")
        task = cfg.get("task") or {}
        kind, index = task.get("type", "worker"), int(task.get("index", 0))
        has_chief = "chief" in (cfg.get("cluster") or {})
    except (ValueError, TypeError, AttributeError):
        raise BadInput("TF_CONFIG is not valid JSON with a cluster and a task") from None
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


def _deterministic() -> None:
    """Same seed, same weights: without this, threaded reductions make runs differ."""
    import tensorflow as tf

    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001 - older TF builds; seeds still apply
        pass


def _augmenter(cfg: TrainConfig, seed: int) -> Any | None:
    """Random layers applied in the input pipeline only, so the saved model stays clean."""
    import keras
    from keras import layers

    parts = []
    if cfg.flip:
        parts.append(layers.RandomFlip("horizontal", seed=seed))
    if cfg.rotation:
        parts.append(layers.RandomRotation(cfg.rotation, fill_mode="constant", seed=seed))
    if cfg.shift:
        parts.append(
            layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="constant", seed=seed)
        )
    if cfg.zoom:
        parts.append(layers.RandomZoom(cfg.zoom, fill_mode="constant", seed=seed))
    parts += _camera_layers(cfg, seed)
    return keras.Sequential(parts, name="augment") if parts else None


def _camera_layers(cfg: TrainConfig, seed: int) -> list[Any]:
    """Exposure, focus and sensor noise, on 0-255 pixels (training only, like the rest)."""
    import keras
    from keras import layers

    parts: list[Any] = []
    if cfg.brightness:
        parts.append(layers.RandomBrightness(cfg.brightness, value_range=(0, 255), seed=seed))
    if cfg.contrast:
        parts.append(layers.RandomContrast(cfg.contrast, value_range=(0, 255), seed=seed))
    if cfg.blur:
        sigma = (0.1, max(0.1, cfg.blur))
        parts.append(layers.RandomGaussianBlur(1.0, 3, sigma, value_range=(0, 255), seed=seed))
    if cfg.noise:
        # GaussianNoise takes a stddev of at most 1: add it on the 0-1 scale, then clip.
        parts += [
            layers.Rescaling(1 / 255),
            layers.GaussianNoise(cfg.noise / 255, seed=seed),
            layers.Rescaling(255.0),
            layers.Lambda(lambda t: keras.ops.clip(t, 0.0, 255.0)),
        ]
    return parts


def _dataset(x: np.ndarray, y: np.ndarray, cfg: TrainConfig, shuffle: bool, augment: Any) -> Any:
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b))
    if augment is not None:
        ds = ds.map(
            lambda a, b: (augment(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE
        )
    return ds.prefetch(tf.data.AUTOTUNE)


class _EpochTimer:
    """Keras callback factory: seconds per epoch, for the closing report."""

    @staticmethod
    def make() -> Any:
        import keras

        class EpochTimer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.times: list[float] = []
                self._t = 0.0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.times.append(time.perf_counter() - self._t)

        return EpochTimer()


def _compile(model: Any, lr: float) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def _fit(
    model: Any, cfg: TrainConfig, data: Dataset, epochs: int, ckpt: Path, phase: str,
    extra: Sequence[Any] = (),
) -> tuple[list[dict], list[float]]:  # fmt: skip
    import keras

    timer = _EpochTimer.make()
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            str(ckpt), monitor="val_accuracy", mode="max", save_best_only=True, verbose=0
        ),
        timer,
        *extra,
    ]
    if cfg.early_stopping > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                mode="max",
                patience=cfg.early_stopping,
                restore_best_weights=True,
            )
        )
    augment = _augmenter(cfg, cfg.seed)
    train_ds = _dataset(data.x_train, data.y_train, cfg, True, augment)
    if cfg.strategy == "multi-worker":
        from edgecnn.multiworker import fit_multi_worker

        with _strategy(cfg.strategy).scope():
            history = fit_multi_worker(model, train_ds, (data.x_val, data.y_val), epochs, callbacks)
    else:
        history = model.fit(
            train_ds,
            validation_data=_dataset(data.x_val, data.y_val, cfg, False, None),
            epochs=epochs,
            callbacks=callbacks,
            verbose=cfg.verbose,
        ).history
    rows = []
    for i in range(len(history.get("loss", []))):
        row = {"phase": phase, "epoch": i + 1}
        row.update({k: float(v[i]) for k, v in history.items()})
        row["seconds"] = timer.times[i] if i < len(timer.times) else None
        rows.append(row)
    return rows, timer.times


def fit_more(model: Any, cfg: TrainConfig, data: Dataset, epochs: int) -> list[dict]:
    """Continue training a trained model (`edgecnn retrain`): the run's own augmentation, a
    fixed number of epochs at `cfg.learning_rate`, the final weights kept. History rows."""
    quiet_tensorflow()
    _compile(model, cfg.learning_rate)
    hist = model.fit(
        _dataset(data.x_train, data.y_train, cfg, True, _augmenter(cfg, cfg.seed)),
        validation_data=_dataset(data.x_val, data.y_val, cfg, False, None),
        epochs=epochs,
        verbose=cfg.verbose,
    )
    n = len(hist.history.get("loss", []))
    return [
        {"phase": "retrain", "epoch": i + 1, **{k: float(v[i]) for k, v in hist.history.items()}}
        for i in range(n)
    ]


def write_history(path: Path, rows: list[dict]) -> None:
    _write_history(path, rows)


def _write_history(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _load_data(cfg: TrainConfig, dataset: Dataset | None) -> tuple[Dataset, tuple[int, int, int]]:
    data = dataset or load_dataset(
        cfg.data, val_split=cfg.val_split, test_split=cfg.test_split, seed=cfg.seed,
        limit_train=cfg.limit_train,
    )  # fmt: skip
    if data.label_space and cfg.epochs > 0:
        raise BadInput(
            f"dataset {cfg.data!r} is for checking ImageNet classifiers (head 'imagenet', "
            "epochs 0), not for training"
        )
    shape = default_input_shape(cfg.arch, data.input_shape, cfg.input_size)
    return data.adapted(shape, resize_mode(cfg)), shape


def resize_mode(cfg: TrainConfig) -> str:
    """The recipe's resize mode; an ImageNet classifier used as it is was evaluated on crops."""
    return cfg.resize or ("crop" if cfg.head == "imagenet" else "stretch")


def model_options(cfg: TrainConfig) -> dict[str, Any]:
    opts: dict[str, Any] = {"dropout": cfg.dropout, "l2": cfg.l2, "dense_units": cfg.dense_units}
    if is_transfer(cfg.arch):
        opts.update(weights=cfg.weights, alpha=cfg.alpha, head=cfg.head)
    return opts


def _fit_phases(
    cfg: TrainConfig, data: Dataset, shape: tuple[int, int, int], ckpt: Path,
    extra: Sequence[Any] = (),
) -> tuple[Any, list[dict], list[float]]:  # fmt: skip
    """Build and fit (then, for transfer backbones, fine-tune); (last model, history, epoch times)."""
    from edgecnn.zoo import build_model, load_keras_model
    from edgecnn.zoo.io import canonical_keras

    with _strategy(cfg.strategy).scope():
        model = build_model(cfg.arch, shape, data.num_classes, **model_options(cfg))
        _compile(model, cfg.learning_rate)
    # epochs == 0: a pretrained classifier used as it is (head "imagenet")
    rows, times = (
        _fit(model, cfg, data, cfg.epochs, ckpt, "train", extra) if cfg.epochs else ([], [])
    )
    if is_transfer(cfg.arch) and cfg.fine_tune_layers > 0 and cfg.fine_tune_epochs > 0:
        from edgecnn.zoo.transfer import set_fine_tune

        model = load_keras_model(ckpt) if ckpt.exists() else model
        with _strategy(cfg.strategy).scope():
            n = set_fine_tune(model, cfg.fine_tune_layers)
            _compile(model, cfg.fine_tune_learning_rate)
        more, more_t = _fit(
            model, cfg, data, cfg.fine_tune_epochs, ckpt, f"fine_tune({n} layers)", extra
        )
        rows += more
        times += more_t
    if not ckpt.exists():  # no epoch improved on nothing: keep the final weights
        model.save(ckpt)
    canonical_keras(ckpt)  # the same seed gives the same bytes (no save date inside)
    return model, rows, times


def _training_manifest(cfg: TrainConfig, data: Dataset, shape: tuple[int, int, int], ckpt: Path,
                       best: Any, stats: dict[str, Any]) -> Manifest:  # fmt: skip
    from edgecnn.zoo.cost import manifest_cost

    spec = InputSpec.for_shape(shape)
    spec.resize = resize_mode(cfg)
    manifest = new_manifest(
        name=cfg.name or f"{cfg.arch}_{cfg.data.split(':')[0]}",
        arch=cfg.arch,
        labels=data.class_names,
        input_spec=spec,
        source={"path": "model.keras", "sha256": sha256_file(ckpt)},
        cost=manifest_cost(best),
        data=data.describe(),
        training={
            **{k: v for k, v in asdict(cfg).items() if k not in ("extra", "verbose")},
            **stats,
        },
    )
    manifest.tools = tool_versions()
    return manifest


def _write_outputs(
    tmp: Path, cfg: TrainConfig, data: Dataset, rows: list[dict], pred: np.ndarray, test_acc: float
) -> None:
    from edgecnn.plots import can_plot, plot_confusion, plot_curves

    if rows:
        _write_history(tmp / "history.csv", rows)
    if can_plot():
        if rows:
            plot_curves(rows, tmp / "curves.png", title=f"{cfg.arch} on {cfg.data}")
        plot_confusion(data.y_test, pred, data.class_names, tmp / "confusion.png",
                       title=f"test accuracy {test_acc:.2%}")  # fmt: skip
    write_labels(tmp, data.class_names)


def train(
    cfg: TrainConfig, out: str | os.PathLike, dataset: Dataset | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:  # fmt: skip
    """Train one model into `out` (complete or absent) and return a summary dict.

    `callbacks` are extra Keras callbacks for every phase (a search stops hopeless runs)."""
    # Everything a user can get wrong is checked before TensorFlow's slow import.
    cfg.validate()
    chief = is_chief(cfg.strategy)
    check_writable_dir(out)
    if not chief:
        out = tempfile.mkdtemp(prefix="edgecnn-worker-")
    try:
        return _train(cfg, Path(out), dataset, callbacks, chief)
    finally:
        if not chief:
            shutil.rmtree(out, ignore_errors=True)


def _train(
    cfg: TrainConfig, out: Path, dataset: Dataset | None, callbacks: Sequence[Any], chief: bool
) -> dict[str, Any]:
    data, shape = _load_data(cfg, dataset)
    quiet_tensorflow()
    import keras

    from edgecnn.zoo import load_keras_model

    keras.utils.set_random_seed(cfg.seed)
    _deterministic()
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        ckpt = tmp / "model.keras"
        _, rows, times = _fit_phases(cfg, data, shape, ckpt, callbacks)
        best = load_keras_model(ckpt)
        pred = best.predict(data.x_test.astype(np.float32), batch_size=256, verbose=0).argmax(
            axis=1
        )
        test_acc = float((pred == data.y_test).mean())
        train_seconds = time.perf_counter() - t0
        _write_outputs(tmp, cfg, data, rows, pred, test_acc)
        stats = {
            "epochs_run": len(rows), "seconds_per_epoch": float(np.mean(times)) if times else None,
            "test_accuracy": test_acc, "params": int(best.count_params()),
        }  # fmt: skip
        _training_manifest(cfg, data, shape, ckpt, best, stats).save(tmp)
    return {
        "out": str(out.resolve()) if chief else None, "arch": cfg.arch, "data": cfg.data, "input_shape": list(shape),
        **{k: stats[k] for k in ("epochs_run", "seconds_per_epoch")},
        "train_seconds": round(train_seconds, 2),
        "best_val_accuracy": max((r.get("val_accuracy", 0.0) for r in rows), default=None),
        "test_accuracy": test_acc, "params": stats["params"],
    }  # fmt: skip
