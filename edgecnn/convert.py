"""`convert`: prune (optionally), quantize and export a Keras model into a build directory.

The build directory holds one artifact per requested format x precision,
`labels.txt`, `manifest.json` (the device contract) and `model.keras`, the
float model the artifacts were made from (after pruning, the pruned one), so
parity compares every artifact against exactly its reference. It is written
with `atomic_dir`: complete or absent.
"""

from __future__ import annotations

import gzip
import os
import platform
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import Dataset, load_dataset
from edgecnn.errors import BadInput, EdgeCNNError
from edgecnn.fsutil import atomic_dir, sha256_file
from edgecnn.manifest import (
    MANIFEST_NAME,
    InputSpec,
    load_manifest,
    new_manifest,
    save_manifest,
    write_labels,
)
from edgecnn.optimize.prune import check_sparsity
from edgecnn.optimize.quantize import (
    MIN_CALIB_SAMPLES,
    calibration_images,
    check_io_dtype,
    parse_precisions,
)

FORMATS = ("tflite", "onnx")
ONNX_PRECISIONS = ("float32", "int8")
REFERENCE_NAME = "model.keras"
DEFAULT_PRECISIONS = ("float32", "int8")
DEFAULT_FORMATS = ("tflite", "onnx")


def parse_formats(value: str | list[str] | tuple[str, ...]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out = [f.strip().lower() for f in items if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise BadInput(
            f"unknown format {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}"
        )
    return list(dict.fromkeys(out))


def artifact_name(fmt: str, precision: str) -> str:
    return f"model_{precision}.{fmt}"


def _gzip_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9))


def tool_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in (
        "edgecnn",
        "tensorflow",
        "keras",
        "numpy",
        "ai-edge-litert",
        "tf2onnx",
        "onnx",
        "onnxruntime",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


# -- loading ---------------------------------------------------------------------------------


def _load_model(model: Any) -> tuple[Any, Path | None, dict[str, Any] | None]:
    """(keras model, source file or None, training manifest fragment or None)."""
    if not isinstance(model, (str, os.PathLike)):
        return model, None, None
    p = Path(model)
    if not p.exists():
        raise BadInput(f"model not found: {p}")
    fragment = None
    frag_dir = p if p.is_dir() else p.parent
    if (frag_dir / MANIFEST_NAME).is_file():
        try:
            fragment = load_manifest(frag_dir)
        except BadInput:
            fragment = None  # a broken fragment is not fatal: labels then come from the data
    if p.is_file() and p.suffix != ".h5" and not zipfile.is_zipfile(p):
        raise BadInput(
            f"{p} is not a Keras model (.keras zip archive, .h5 or SavedModel directory)"
        )
    if p.is_dir() and (p / "saved_model.pb").is_file():
        return _load_saved_model(p), p, fragment
    try:
        from edgecnn.zoo.io import load_keras_model, resolve_model_path
    except ImportError:  # pragma: no cover - zoo.io is part of the package
        load_keras_model = resolve_model_path = None  # type: ignore[assignment]
    if load_keras_model is not None:
        src = resolve_model_path(p)
        return load_keras_model(src), src, fragment
    import keras  # pragma: no cover

    return keras.saving.load_model(str(p), compile=False), p, fragment


def _load_saved_model(p: Path) -> Any:
    """Wrap a TF SavedModel's serving signature as a Keras model (conversion only, no pruning)."""
    import keras
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(p))
        fn = loaded.signatures["serving_default"]
        spec = list(fn.structured_input_signature[1].values())[0]
        shape = tuple(int(v) for v in spec.shape[1:])
        layer = keras.layers.TFSMLayer(str(p), call_endpoint="serving_default")
        inp = keras.Input(shape=shape, name="image")
        out = layer(inp)
        if isinstance(out, dict):
            out = list(out.values())[0]
        return keras.Model(inp, out, name=p.name)
    except Exception as e:
        lines = str(e).strip().splitlines()
        raise BadInput(f"{p} is not a usable SavedModel: {lines[0] if lines else e}") from None


def _model_shapes(model: Any) -> tuple[tuple[int, int, int], int]:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BadInput("convert handles single-input, single-output image classifiers")
    in_shape = tuple(model.inputs[0].shape[1:])
    out_shape = tuple(model.outputs[0].shape[1:])
    if len(in_shape) != 3 or any(v is None for v in in_shape):
        raise BadInput(f"model input must be a fixed (H, W, C) image, got {in_shape}")
    if len(out_shape) != 1 or out_shape[0] is None:
        raise BadInput(f"model output must be a vector of class scores, got {out_shape}")
    return tuple(int(v) for v in in_shape), int(out_shape[0])  # type: ignore[return-value]


def _split_args(fragment: dict[str, Any] | None, data: str, seed: int) -> dict[str, Any]:
    """Reproduce the training run's splits, so calibration and fine-tuning never see its test set."""
    training = (fragment or {}).get("model", {}).get("training") or {}
    if training.get("data") != data:
        return {"seed": seed}
    args: dict[str, Any] = {"seed": int(training.get("seed", seed))}
    for key in ("val_split", "test_split", "limit_train"):
        if training.get(key) is not None:
            args[key] = training[key]
    return args


def _prepare_data(
    data: str | Dataset,
    in_shape: tuple[int, int, int],
    classes: int,
    seed: int,
    fragment: dict[str, Any] | None = None,
) -> Dataset:
    ds = load_dataset(data, **_split_args(fragment, data, seed)) if isinstance(data, str) else data
    if ds.num_classes != classes:
        raise BadInput(
            f"dataset {ds.name!r} has {ds.num_classes} classes but the model outputs {classes}"
        )
    if ds.input_shape != in_shape:
        ds = ds.adapted(in_shape)  # e.g. 8x8 digits into a 28x28 model: resizing is fine
    return ds


# -- evaluation ------------------------------------------------------------------------------


def _eval_subset(ds: Dataset, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = ds.x_test, ds.y_test
    if n and len(y) > n:
        idx = np.random.default_rng(seed).permutation(len(y))[:n]
        x, y = x[idx], y[idx]
    return x.astype(np.float32), y


def _calibration_counts(ds: Dataset, n: int, seed: int, classes: int) -> list[int]:
    """Images per class in the calibration set (same draw as `calibration_images`): parity's
    diagnosis reads it to recognise calibration that missed classes."""
    from edgecnn.data import calibration_sample

    _, ys = calibration_sample(
        ds.x_train, ds.y_train, n, seed=seed, num_classes=ds.classes_to_cover
    )
    return np.bincount(np.asarray(ys, dtype=np.int64), minlength=classes).tolist()


def keras_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    probs = model.predict(x, batch_size=256, verbose=0)
    return float((np.asarray(probs).argmax(axis=1) == y).mean())


def _model_stats(model: Any, path: Path | None = None) -> dict[str, Any]:
    stats: dict[str, Any] = {"params": int(model.count_params())}
    try:
        from edgecnn.cost import model_cost  # written alongside `inspect`

        stats["macs"] = int(model_cost(model)["total_macs"])
    except Exception:
        stats["macs"] = None
    if path is not None and path.exists():
        stats["size"] = path.stat().st_size
        stats["gzip_size"] = _gzip_size(path)
    return stats


def _trainable_for_finetune(model: Any) -> None:
    """After filter pruning every kernel is re-fit; BatchNorm stays in inference mode."""
    for layer in model.layers:
        if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense", "SeparableConv2D"):
            layer.trainable = True


# -- the conversion --------------------------------------------------------------------------


def convert_model(
    model: str | os.PathLike | Any,
    data: str | Dataset,
    out_dir: str | os.PathLike,
    *,
    prune: float | None = None,
    prune_filters: float | None = None,
    filter_multiple: int = 1,
    fine_tune_epochs: int = 3,
    precisions: list[str] | tuple[str, ...] | str = DEFAULT_PRECISIONS,
    formats: list[str] | tuple[str, ...] | str = DEFAULT_FORMATS,
    calib_samples: int = 200,
    io_dtype: str = "int8",
    edgetpu: bool = False,
    onnx_int8: str = "qdq",
    eval_samples: int = 1000,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Build `out_dir` from `model` (a path or a Keras model) and `data` (a name or a Dataset).

    prune: unstructured sparsity in [0, 1) (shrinks the gzipped download);
    prune_filters: fraction of conv filters to remove by L1 norm (makes it faster);
    both fine-tune for `fine_tune_epochs` on the training split. Returns a report
    dict (before/after stats, one row per artifact, Edge TPU check).
    """
    from edgecnn.export.onnx import check_int8_method

    say = progress or (lambda msg: None)
    # Validate every option before any slow work.
    precisions = parse_precisions(precisions)
    formats = parse_formats(formats)
    io_dtype = check_io_dtype(io_dtype)
    check_int8_method(onnx_int8)
    sparsity = check_sparsity(prune) if prune is not None else 0.0
    fraction = check_sparsity(prune_filters, "filter-pruning fraction") if prune_filters else 0.0
    if filter_multiple < 1:
        raise BadInput(f"filter multiple must be >= 1, got {filter_multiple}")
    if fine_tune_epochs < 0:
        raise BadInput(f"fine-tune epochs must be >= 0, got {fine_tune_epochs}")
    if calib_samples < MIN_CALIB_SAMPLES:
        raise BadInput(
            f"calibration set too small: {calib_samples} samples (need at least {MIN_CALIB_SAMPLES})"
        )
    if edgetpu and "int8" not in precisions:
        raise BadInput("--edgetpu needs --precision to include int8")
    if edgetpu and io_dtype == "float32":
        raise BadInput("--edgetpu needs integer I/O (--io-dtype int8 or uint8)")
    out_dir = Path(out_dir)

    say("loading model")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras_model, src_path, fragment = _load_model(model)
    in_shape, classes = _model_shapes(keras_model)
    if fragment and len(fragment["model"]["labels"]) != classes:
        fragment = None  # stale fragment: it describes another model
    say("loading data")
    ds = _prepare_data(data, in_shape, classes, seed, fragment)
    labels = list(fragment["model"]["labels"]) if fragment else list(ds.class_names)
    calib = calibration_images(ds.x_train, ds.y_train, calib_samples, seed, ds.classes_to_cover)
    calib_counts = _calibration_counts(ds, calib_samples, seed, classes)
    x_eval, y_eval = _eval_subset(ds, eval_samples, seed)

    before = _model_stats(keras_model, src_path if src_path and src_path.is_file() else None)
    before["accuracy"] = keras_accuracy(keras_model, x_eval, y_eval)
    pruning: dict[str, Any] = {}
    reference = keras_model
    if fraction > 0 or sparsity > 0:
        if src_path is not None and src_path.is_dir():
            raise BadInput("pruning needs a Keras model (.keras), not a SavedModel")
        import keras

        keras.utils.set_random_seed(seed)
        # Prune a copy: a model passed in by the caller stays untouched.
        reference = keras.models.clone_model(keras_model)
        reference.set_weights(keras_model.get_weights())
        val = (ds.x_val, ds.y_val) if len(ds.y_val) else None
        if fraction > 0:
            from edgecnn.optimize.filters import prune_filters as _prune_filters
            from edgecnn.optimize.prune import compile_for_finetune

            say(f"filter pruning {fraction:.0%}")
            reference, plan = _prune_filters(reference, fraction, multiple=filter_multiple)
            pruning["filters"] = {
                "fraction": fraction,
                "multiple": filter_multiple,
                **plan.summary(),
            }
            pruning["filters"]["accuracy_before_finetune"] = keras_accuracy(
                reference, x_eval, y_eval
            )
            if fine_tune_epochs > 0 and sparsity == 0:
                _trainable_for_finetune(reference)
                compile_for_finetune(reference, learning_rate)
                reference.fit(
                    ds.x_train.astype(np.float32),
                    ds.y_train,
                    epochs=fine_tune_epochs,
                    batch_size=batch_size,
                    validation_data=None if val is None else (val[0].astype(np.float32), val[1]),
                    verbose=0,
                )
        if sparsity > 0:
            from edgecnn.optimize.prune import overall_sparsity, prune_magnitude, sparsity_report

            say(f"magnitude pruning to {sparsity:.0%}")
            if fraction > 0:
                _trainable_for_finetune(reference)
            prune_magnitude(
                reference,
                ds.x_train,
                ds.y_train,
                sparsity,
                epochs=fine_tune_epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                validation=val,
                seed=seed,
            )
            pruning["magnitude"] = {
                "target_sparsity": sparsity,
                "sparsity": overall_sparsity(reference),
                "layers": sparsity_report(reference),
            }
        pruning["fine_tune_epochs"] = fine_tune_epochs

    with atomic_dir(out_dir) as tmp:
        ref_path = tmp / REFERENCE_NAME
        reference.save(ref_path)
        after = _model_stats(reference, ref_path)
        after["accuracy"] = (
            keras_accuracy(reference, x_eval, y_eval) if pruning else before["accuracy"]
        )

        manifest = _start_manifest(fragment, keras_model, labels, in_shape, ds)
        manifest["model"]["source"] = {
            "path": REFERENCE_NAME,
            "sha256": sha256_file(ref_path),
            "original": str(src_path) if src_path else None,
            "original_sha256": sha256_file(src_path) if src_path and src_path.is_file() else None,
        }
        manifest["model"]["optimization"] = {
            "prune": sparsity or None,
            "prune_filters": fraction or None,
            "filter_multiple": filter_multiple if fraction else None,
            "fine_tune_epochs": fine_tune_epochs if pruning else 0,
            "calibration": {
                "samples": int(len(calib)),
                "split": "train",
                "stratified": True,
                "class_counts": calib_counts,
            },
            "io_dtype": io_dtype,
            "onnx_int8": onnx_int8,
            "accuracy_before": before["accuracy"],
            "accuracy_after": after["accuracy"],
            "eval_samples": int(len(y_eval)),
        }
        manifest["tools"] = tool_versions()
        if after.get("macs") is not None:
            # The cost of what was built (the training fragment's is stale after pruning).
            manifest["model"]["cost"] = {"macs": after["macs"], "params": after["params"]}

        rows: list[dict[str, Any]] = []
        artifacts: list[dict[str, Any]] = []
        skipped: list[str] = []
        for fmt in formats:
            for prec in precisions:
                if fmt == "onnx" and prec not in ONNX_PRECISIONS:
                    skipped.append(f"onnx {prec} (ONNX artifacts are float32 and int8)")
                    continue
                name = artifact_name(fmt, prec)
                say(f"writing {name}")
                t0 = time.perf_counter()
                _export_one(reference, fmt, prec, tmp, name, calib, io_dtype, edgetpu, onnx_int8)
                seconds = time.perf_counter() - t0
                entry = _artifact_entry(tmp, name, fmt, prec)
                if fmt == "onnx":
                    _onnx_metadata(tmp / name, manifest, entry)
                    entry = _artifact_entry(tmp, name, fmt, prec)  # the file changed
                artifacts.append(entry)
                acc = _artifact_accuracy(tmp / name, entry, x_eval, y_eval)
                rows.append(
                    {
                        "artifact": name,
                        "format": fmt,
                        "precision": prec,
                        "size": entry["size"],
                        "gzip_size": entry["gzip_size"],
                        "accuracy": acc,
                        "seconds": round(seconds, 2),
                    }
                )
        edgetpu_report = None
        if edgetpu:
            from edgecnn.export.edgetpu import check_edgetpu, compile_edgetpu

            int8_path = tmp / artifact_name("tflite", "int8")
            if not int8_path.exists():
                raise BadInput("--edgetpu needs the int8 TFLite artifact (--formats tflite)")
            edgetpu_report = check_edgetpu(int8_path)
            edgetpu_report["compiler"] = compile_edgetpu(int8_path, tmp)
            compiled = edgetpu_report["compiler"].get("output")
            if compiled:
                entry = _artifact_entry(tmp, compiled, "edgetpu", "int8")
                artifacts.append(entry)
                rows.append(
                    {
                        "artifact": compiled,
                        "format": "edgetpu",
                        "precision": "int8",
                        "size": entry["size"],
                        "gzip_size": entry["gzip_size"],
                        "accuracy": None,
                        "seconds": None,
                    }
                )
            manifest["model"]["edgetpu"] = {
                k: v for k, v in edgetpu_report.items() if k not in ("ops",)
            }
        manifest["artifacts"] = artifacts
        save_manifest(tmp, manifest)
        write_labels(tmp, labels)

    return {
        "out": str(out_dir.resolve()),
        "model": manifest["model"]["name"],
        "data": ds.name,
        "input_shape": list(in_shape),
        "before": before,
        "after": after,
        "pruning": pruning,
        "artifacts": rows,
        "skipped": skipped,
        "edgetpu": edgetpu_report,
    }


def _start_manifest(
    fragment: dict[str, Any] | None, model: Any, labels: list[str], in_shape: Any, ds: Dataset
) -> dict[str, Any]:
    """Continue the training fragment (labels, input spec, provenance) or start afresh."""
    if fragment:
        m = dict(fragment)
        m["model"] = dict(fragment["model"])
        m["model"]["labels"] = labels
        spec = InputSpec.from_dict(m["model"]["input"])
        if list(spec.shape) != list(in_shape):
            m["model"]["input"] = asdict(InputSpec.for_shape(in_shape))
        m["artifacts"] = []
        m["created"] = new_manifest("x", "x", [], InputSpec.for_shape(in_shape))["created"]
        return m
    arch = getattr(model, "name", "model")
    return new_manifest(
        name=arch,
        arch=arch,
        labels=labels,
        input_spec=InputSpec.for_shape(in_shape),
        data=ds.describe(),
    )


def _export_one(
    model: Any,
    fmt: str,
    prec: str,
    tmp: Path,
    name: str,
    calib: np.ndarray,
    io_dtype: str,
    edgetpu: bool,
    onnx_int8: str,
) -> None:
    from edgecnn.fsutil import atomic_write_bytes

    if fmt == "tflite":
        from edgecnn.export.tflite import to_tflite

        data = to_tflite(
            model,
            prec,
            calib=calib,
            io_dtype=io_dtype,
            static_batch=edgetpu and prec == "int8",
        )
        atomic_write_bytes(tmp / name, data)
        return
    from edgecnn.export import onnx as ox

    if prec == "float32":
        ox.to_onnx_float(model, tmp / name)
        return
    if onnx_int8 == "tflite":
        src = tmp / artifact_name("tflite", "int8")
        if not src.exists():
            from edgecnn.export.tflite import to_tflite

            src = tmp / ".int8-for-onnx.tflite"
            atomic_write_bytes(src, to_tflite(model, "int8", calib=calib, io_dtype=io_dtype))
        ox.onnx_from_tflite(src, tmp / name)
        if src.name.startswith("."):
            src.unlink()
        return
    float_path = tmp / artifact_name("onnx", "float32")
    made_float = not float_path.exists()
    if made_float:
        float_path = tmp / ".float-for-int8.onnx"
        ox.to_onnx_float(model, float_path)
    ox.quantize_onnx_qdq(float_path, tmp / name, calib)
    if made_float:
        float_path.unlink()


def _artifact_entry(tmp: Path, name: str, fmt: str, prec: str) -> dict[str, Any]:
    path = tmp / name
    if fmt in ("tflite", "edgetpu"):
        from edgecnn.export.tflite import tflite_io

        try:
            ins, outs = tflite_io(path)
        except Exception:
            ins, outs = [], []  # an Edge TPU model needs the delegate to open
    else:
        from edgecnn.export.onnx import onnx_io

        ins, outs = onnx_io(path)  # integer I/O (from_tflite) carries its quantization
    return {
        "path": name,
        "format": fmt,
        "precision": prec,
        "size": path.stat().st_size,
        "gzip_size": _gzip_size(path),
        "sha256": sha256_file(path),
        "inputs": ins,
        "outputs": outs,
    }


def _onnx_metadata(path: Path, manifest: dict[str, Any], entry: dict[str, Any]) -> None:
    import json

    m = manifest["model"]
    from edgecnn.export.onnx import set_metadata

    set_metadata(
        path,
        {
            "edgecnn.schema": manifest["schema"],
            "labels": json.dumps(m["labels"]),
            "name": m.get("name", ""),
            "arch": m.get("arch", ""),
            "input_shape": json.dumps(m["input"]["shape"]),
            "pixel_range": json.dumps(m["input"]["pixel_range"]),
            "color_order": m["input"]["color_order"],
            "layout": m["input"].get("layout", "NHWC"),
            "precision": entry["precision"],
            "source_sha256": m.get("source", {}).get("sha256", ""),
        },
    )


def _artifact_accuracy(path: Path, entry: dict[str, Any], x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a written artifact, run the way the device runs it."""
    from edgecnn.export.quiet import captured_output

    try:
        with captured_output():  # LiteRT announces its XNNPACK delegate on stderr
            if entry["format"] == "tflite":
                from edgecnn.export.tflite import predict_tflite

                scores = predict_tflite(path, x)
            else:
                from edgecnn.export.onnx import predict_onnx

                q_in = entry["inputs"][0].get("quantization") if entry["inputs"] else None
                q_out = entry["outputs"][0].get("quantization") if entry["outputs"] else None
                scores = predict_onnx(path, x, in_quant=q_in, out_quant=q_out)
    except EdgeCNNError:
        raise
    except Exception as e:
        raise EdgeCNNError(
            f"{path.name} was written but does not run: {str(e).splitlines()[0]}"
        ) from None
    return float((scores.argmax(axis=1) == y).mean())


def convert_from_recipe(
    recipe: Any, model_dir: str | os.PathLike, out_dir: str | os.PathLike, progress: Any = None
) -> dict[str, Any]:
    """The `run` stage: the recipe's [convert] section applied to the trained model in `model_dir`."""
    c = recipe["convert"]
    return convert_model(
        model_dir,
        recipe["data"]["name"],
        out_dir,
        prune=c.get("prune"),
        prune_filters=c.get("prune_filters"),
        filter_multiple=int(c.get("filter_multiple", 1)),
        fine_tune_epochs=int(c.get("fine_tune_epochs", 2)),
        precisions=c.get("precision", list(DEFAULT_PRECISIONS)),
        formats=c.get("formats", list(DEFAULT_FORMATS)),
        calib_samples=int(c.get("calib_samples", 200)),
        io_dtype=c.get("io_dtype", "int8"),
        edgetpu=bool(c.get("edgetpu", False)),
        onnx_int8=c.get("onnx_int8", "qdq"),
        seed=int(recipe["data"].get("seed", 0) or 0),
        progress=progress,
    )
