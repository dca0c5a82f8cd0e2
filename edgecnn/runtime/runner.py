"""`Runner`: load an artifact from a build directory, preprocess, run, postprocess.

The one implementation of "run a model", shared by predict, convert's accuracy
column, parity and its diagnosis, bench and the camera daemon. Device side: numpy,
LiteRT / ONNX Runtime, Pillow (lazily); never TensorFlow.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput
from edgecnn.manifest import (
    MANIFEST_NAME,
    RESIZE_MODES,
    Artifact,
    InputSpec,
    Manifest,
    load_manifest,
)
from edgecnn.runtime import formats
from edgecnn.runtime.backends import Backend, read_model_bytes
from edgecnn.runtime.preprocess import (
    InputQuantizer,
    Prediction,
    aspect_mismatch,
    dequantize,
    fit_image,
    to_uint8_image,
    top_k,
)

BATCH_CHUNK = 64
log = logging.getLogger("edgecnn.runtime")


def _not_a_build(build: Path) -> str:
    """Why a directory with a manifest but no artifacts is not a build, and what to run."""
    if (build / "model.keras").is_file():
        return (
            f"{build} is a training directory (a model.keras, no artifacts), not a build; "
            "convert it first: "
            f"edgecnn convert {build} --data DATA --out BUILD_DIR"
        )
    return f"{build / MANIFEST_NAME} lists no artifacts; build them with edgecnn convert"


def load_build(path: str | os.PathLike) -> tuple[Path, Manifest]:
    """(build dir, manifest) for a path that must be a build; a Keras model or a training
    directory given instead gets an error that says what it is and to convert it first."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p} does not exist")
    if p.is_file() and p.suffix in (".keras", ".h5"):
        raise BadInput(
            f"{p} is a Keras model, not a build; convert it first: "
            f"edgecnn convert {p} --data DATA --out BUILD_DIR"
        )
    build = p if p.is_dir() else p.parent
    if not (build / MANIFEST_NAME).is_file() and (build / "model.keras").is_file():
        raise BadInput(_not_a_build(build))
    manifest = load_manifest(build)
    if not manifest.artifacts:
        raise BadInput(_not_a_build(build))
    return build, manifest


def resolve(
    path: str | os.PathLike, artifact: str | None = None
) -> tuple[Path, Manifest, Artifact]:
    """(build dir, manifest, artifact) for a build dir, a manifest or an artifact file."""
    p = Path(path)
    build, manifest = load_build(p)
    if p.is_dir() or p.name == MANIFEST_NAME:
        return build, manifest, formats.select_artifact(manifest.artifacts, artifact)
    art = manifest.by_path(p)
    if art is None:
        raise BadInput(f"{p.name} is not listed in {build / MANIFEST_NAME}")
    if artifact:
        raise BadInput("give either an artifact file or --artifact, not both")
    return build, manifest, art


def select_artifact(manifest: Manifest, spec: str | None = None) -> Artifact:
    return formats.select_artifact(manifest.artifacts, spec)


def accelerator_fallback(manifest: Manifest, art: Artifact, backend: str) -> Artifact:
    """Under backend "auto", an artifact whose accelerator is absent runs as its CPU twin."""
    fmt = formats.get_format(art.format)
    problem = fmt.accelerator_missing() if backend == "auto" else None
    twin = formats.cpu_twin(manifest.artifacts, art) if problem else None
    if twin is None:
        return art
    warnings.warn(
        f"{fmt.title} not available ({problem}); running {twin.name} on the CPU instead",
        RuntimeWarning,
        stacklevel=3,
    )
    return twin


def _with_resize(spec: InputSpec, resize: str | None) -> InputSpec:
    if resize is None or resize == spec.resize:
        return spec
    if resize not in RESIZE_MODES:
        raise BadInput(f"unknown resize mode {resize!r}; choose one of: {', '.join(RESIZE_MODES)}")
    return dataclasses.replace(spec, resize=resize)


def _check_spec(spec: InputSpec) -> None:
    shape = spec.shape
    if len(shape) != 3:
        raise BadInput(
            f"model input must be an image (H, W, C); the manifest says {len(shape) + 1}-D {shape}"
        )
    if any(v <= 0 for v in shape):
        raise BadInput(f"model input {shape} is dynamic; edgecnn needs a fixed H, W and C")
    if shape[2] not in (1, 3):
        raise BadInput(f"model input has {shape[2]} channels; edgecnn supports 1 or 3")


def _check_model_input(backend: Backend, spec: InputSpec) -> None:
    shape = list(backend.inputs[0].shape)
    if len(shape) != 4:
        raise BadInput(f"model input is {len(shape)}-D {shape}; edgecnn runs 4-D image batches")
    dims = shape[1:]
    if any(v <= 0 for v in dims):
        raise BadInput(f"model input {shape} is dynamic; edgecnn needs a fixed H, W and C")
    h, w, c = spec.shape
    want = [c, h, w] if spec.layout.upper() == "NCHW" else [h, w, c]
    if dims != want:
        raise BadInput(f"model input {shape} does not match the manifest's {spec.shape}")


def _quant(scale: float, zero_point: int, recorded: Any) -> tuple[float, int]:
    """The model's own quantization, else the manifest's (ONNX tensors carry none)."""
    if scale or recorded is None:
        return scale, zero_point
    return recorded.scale, recorded.zero_point


class Runner:
    """A loaded classifier: `classify(image)` for cameras, `predict_batch(x)` for parity.

    `manifest=` runs an artifact of a build whose manifest is not on disk yet (convert
    measures each artifact before it writes manifest.json). `resize=` overrides the
    manifest's resize mode for camera frames (`serve --resize`).
    """

    def __init__(
        self,
        path_or_build_dir: str | os.PathLike,
        backend: str = "auto",
        threads: int | None = None,
        artifact: str | None = None,
        verify: bool = True,
        manifest: Manifest | None = None,
        resize: str | None = None,
    ) -> None:
        t0 = time.perf_counter()
        formats.check_backend(backend)
        if manifest is None:
            self.build_dir, self.manifest, art = resolve(path_or_build_dir, artifact)
        else:
            self.build_dir, self.manifest = Path(path_or_build_dir), manifest
            art = select_artifact(manifest, artifact)
        art = accelerator_fallback(self.manifest, art, backend)
        self.artifact: Artifact = art
        self.format = formats.get_format(art.format)
        self.path = art.file(self.build_dir)
        self.name: str = self.manifest.name or self.build_dir.name
        self.labels: list[str] = list(self.manifest.labels)
        self.input_spec: InputSpec = _with_resize(self.manifest.input, resize)
        _check_spec(self.input_spec)
        self._frame_shapes_seen: set[tuple[int, int]] = set()
        model = self._model_bytes(verify)
        self.backend: Backend = self.format.open(model, art.name, backend, threads)
        self.backend_name = self.backend.name
        _check_model_input(self.backend, self.input_spec)
        tin, tout = self.backend.inputs[0], self.backend.outputs[0]
        in_scale, in_zp = _quant(tin.scale, tin.zero_point, art.input_quantization())
        self._quant = InputQuantizer(tin.dtype, in_scale, in_zp, self.input_spec.pixel_range)
        self._out_q = _quant(tout.scale, tout.zero_point, art.output_quantization())
        self._nchw = self.input_spec.layout.upper() == "NCHW"
        self._first_done = False
        self.timings: dict[str, float] = {"load_s": time.perf_counter() - t0}

    def _model_bytes(self, verify: bool) -> bytes:
        """Read once, check sha256 and structure on those bytes, load those bytes."""
        if not self.path.is_file():
            raise BadInput(f"artifact {self.path} is missing")
        if verify:
            data = self.manifest.verify(self.build_dir, self.artifact)
        else:
            data = read_model_bytes(self.path)
        self.format.check(data, self.path.name)
        return data

    # -- the pipeline --------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def preprocess(self, image: Any) -> np.ndarray:
        """One image (any size, gray/RGB/RGBA, uint8 or PIL) -> one model-ready example."""
        spec = self.input_spec
        arr = to_uint8_image(image)
        self._check_aspect(arr.shape[:2])
        arr = fit_image(arr, tuple(spec.shape), spec.color_order, spec.resize)
        return self.to_model(arr[None])[0]

    def _check_aspect(self, hw: tuple[int, int]) -> None:
        """Warn once per frame size when "stretch" would squash it (a 4:3 camera, a square
        model): accuracy drops silently otherwise."""
        if hw in self._frame_shapes_seen:
            return
        self._frame_shapes_seen.add(hw)
        spec = self.input_spec
        if spec.resize == "stretch" and aspect_mismatch(hw, tuple(spec.shape[:2])):
            log.warning(
                "frames are %dx%d but %s takes %dx%d and resizes by 'stretch', which squashes "
                "them; train with --resize crop or letterbox, or serve --resize crop",
                hw[1], hw[0], self.name, spec.shape[1], spec.shape[0],
            )  # fmt: skip

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) at the model's size -> the input tensor (dtype, layout)."""
        x = self._quant(x)
        if self._nchw:
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Model-ready batch -> float32 probabilities (N, classes)."""
        if not self._first_done:
            t0 = time.perf_counter()
            raw = self.backend.run(x)
            self.timings["first_invoke_s"] = time.perf_counter() - t0
            self._first_done = True
        else:
            raw = self.backend.run(x)
        return dequantize(raw.reshape(raw.shape[0], -1), *self._out_q)

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) at the model's size -> float32 (N, classes) probabilities."""
        x = np.asarray(images)
        want = tuple(self.input_spec.shape)
        if x.ndim == 3 and want[2] == 1 and x.shape[1:] == want[:2]:
            x = x[..., None]
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise BadInput(
                f"expected images of shape (N, {', '.join(map(str, want))}), got {tuple(x.shape)}"
            )
        if x.dtype != np.uint8:
            raise BadInput(f"expected uint8 pixels 0-255, got {x.dtype}")
        if self.input_spec.color_order.upper() == "BGR" and want[2] == 3:
            x = x[..., ::-1]
        if len(x) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        parts = [
            self.run(self.to_model(x[i : i + BATCH_CHUNK])) for i in range(0, len(x), BATCH_CHUNK)
        ]
        return np.concatenate(parts)

    def classify(self, image: Any, top_k: int = 5) -> list[Prediction]:
        """Top-k (index, label, score) for one image, best first."""
        probs = self.run(self.preprocess(image)[None])[0]
        return _top_k(probs, self.labels, top_k)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Runner({self.path}, backend={self.backend_name})"


_top_k = top_k
