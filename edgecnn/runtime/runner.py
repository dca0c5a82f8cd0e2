"""`Runner`: load an artifact from a build directory, preprocess, run, postprocess.

The one implementation of "run a model" shared by predict, parity, bench and
the camera daemon. Device side: numpy, LiteRT / ONNX Runtime, Pillow (lazily);
never TensorFlow.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput
from edgecnn.fsutil import sha256_file
from edgecnn.manifest import MANIFEST_NAME, InputSpec, find_artifact, load_manifest
from edgecnn.runtime.backends import EDGETPU_LIB, Backend, open_backend
from edgecnn.runtime.preprocess import (
    InputQuantizer,
    Prediction,
    dequantize,
    fit_image,
    to_uint8_image,
    top_k,
)
from edgecnn.runtime.validate import check_onnx_file, check_tflite_file

BATCH_CHUNK = 64


def artifact_matches(art: dict[str, Any], spec: str) -> bool:
    name = Path(art["path"]).name
    fmt, prec = art.get("format", ""), art.get("precision", "")
    return spec in (
        name,
        art["path"],
        prec,
        fmt,
        f"{fmt}:{prec}",
        f"{prec}.{fmt}",
        f"{prec}:{fmt}",
        Path(name).stem,
    )


def select_artifact(manifest: dict[str, Any], spec: str | None = None) -> dict[str, Any]:
    """Pick by filename, precision, format, "onnx:int8" ...; default: int8 TFLite, else the first."""
    arts = manifest.get("artifacts") or []
    if not arts:
        raise BadInput("the manifest lists no artifacts")
    if spec:
        hits = [a for a in arts if artifact_matches(a, spec)]
        if not hits:
            names = ", ".join(Path(a["path"]).name for a in arts)
            raise BadInput(f"no artifact matches {spec!r}; the manifest has: {names}")
        # Prefer TFLite when a spec like "int8" matches several formats.
        hits.sort(key=lambda a: {"tflite": 0, "edgetpu": 1, "onnx": 2}.get(a.get("format"), 3))
        return hits[0]
    for a in arts:
        if a.get("format") == "tflite" and a.get("precision") == "int8":
            return a
    return arts[0]


def resolve(path: str | os.PathLike, artifact: str | None = None) -> tuple[Path, dict, dict]:
    """(build dir, manifest, artifact entry) for a build dir, a manifest or an artifact file."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p} does not exist")
    if p.is_dir():
        build = p
    elif p.name == MANIFEST_NAME:
        build = p.parent
    else:
        build = p.parent
        manifest = load_manifest(build)
        art = find_artifact(manifest, p)
        if art is None:
            raise BadInput(f"{p.name} is not listed in {build / MANIFEST_NAME}")
        if artifact:
            raise BadInput("give either an artifact file or --artifact, not both")
        return build, manifest, art
    manifest = load_manifest(build)
    return build, manifest, select_artifact(manifest, artifact)


def _quant_params(scale: float, zero_point: int, entries: Any) -> tuple[float, int]:
    """The model's own quantization, else the manifest's (ONNX tensors carry none of their own)."""
    if scale or not entries:
        return scale, zero_point
    q = entries[0].get("quantization") if isinstance(entries[0], dict) else None
    if q and q.get("scale"):
        return float(q["scale"]), int(q.get("zero_point", 0))
    return scale, zero_point


def edgetpu_available() -> bool:
    """True when the Edge TPU delegate library can be loaded."""
    from edgecnn.runtime.backends import edgetpu_library_error

    return edgetpu_library_error() is None


class Runner:
    """A loaded classifier: `classify(image)` for cameras, `predict_batch(x)` for parity."""

    def __init__(
        self,
        path_or_build_dir: str | os.PathLike,
        backend: str = "auto",
        threads: int | None = None,
        artifact: str | None = None,
        verify: bool = True,
    ) -> None:
        t0 = time.perf_counter()
        self.build_dir, self.manifest, art = resolve(path_or_build_dir, artifact)
        if art.get("format") == "edgetpu" and backend == "auto" and not edgetpu_available():
            fallback = [
                a
                for a in self.manifest["artifacts"]
                if a.get("format") == "tflite" and a.get("precision") == "int8"
            ]
            if fallback:
                warnings.warn(
                    f"Edge TPU delegate {EDGETPU_LIB} not available; running "
                    f"{Path(fallback[0]['path']).name} on the CPU instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
                art = fallback[0]
        self.artifact: dict[str, Any] = art
        self.path = self.build_dir / art["path"]
        model = self.manifest["model"]
        self.name: str = str(model.get("name", self.build_dir.name))
        self.labels: list[str] = [str(v) for v in model["labels"]]
        self.input_spec: InputSpec = InputSpec.from_dict(model["input"])
        self._check_spec()
        if not self.path.is_file():
            raise BadInput(f"artifact {self.path} is missing")
        if verify:
            self._verify_file()
        self.backend: Backend = open_backend(
            str(self.path), art.get("format", ""), backend, threads
        )
        self.backend_name = self.backend.name
        self._check_model_input()
        tin = self.backend.inputs[0]
        in_scale, in_zp = _quant_params(tin.scale, tin.zero_point, art.get("inputs"))
        self._quant = InputQuantizer(tin.dtype, in_scale, in_zp, self.input_spec.pixel_range)
        tout = self.backend.outputs[0]
        self._out_q = _quant_params(tout.scale, tout.zero_point, art.get("outputs"))
        self._nchw = self.input_spec.layout.upper() == "NCHW"
        self._first_done = False
        self.timings: dict[str, float] = {"load_s": time.perf_counter() - t0}

    # -- checks --------------------------------------------------------------
    def _check_spec(self) -> None:
        shape = self.input_spec.shape
        if len(shape) != 3:
            raise BadInput(
                f"model input must be an image (H, W, C); the manifest says {len(shape) + 1}-D {shape}"
            )
        if any(v <= 0 for v in shape):
            raise BadInput(f"model input {shape} is dynamic; edgecnn needs a fixed H, W and C")
        if shape[2] not in (1, 3):
            raise BadInput(f"model input has {shape[2]} channels; edgecnn supports 1 or 3")

    def _verify_file(self) -> None:
        want = self.artifact.get("sha256")
        if not want:
            raise BadInput(f"the manifest has no sha256 for {self.path.name}")
        got = sha256_file(self.path)
        if got != want:
            raise BadInput(
                f"{self.path.name} does not match its manifest (sha256 {got[:12]}... != {want[:12]}...)"
            )
        if self.artifact.get("format") == "onnx":
            check_onnx_file(self.path)
        else:
            check_tflite_file(self.path)

    def _check_model_input(self) -> None:
        shape = list(self.backend.inputs[0].shape)
        if len(shape) != 4:
            raise BadInput(f"model input is {len(shape)}-D {shape}; edgecnn runs 4-D image batches")
        dims = shape[1:]
        if any(v <= 0 for v in dims):
            raise BadInput(f"model input {shape} is dynamic; edgecnn needs a fixed H, W and C")
        h, w, c = self.input_spec.shape
        want = [c, h, w] if self.input_spec.layout.upper() == "NCHW" else [h, w, c]
        if dims != want:
            raise BadInput(
                f"model input {shape} does not match the manifest's {self.input_spec.shape}"
            )

    # -- the pipeline --------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def preprocess(self, image: Any) -> np.ndarray:
        """One image (any size, gray/RGB/RGBA, uint8 or PIL) -> one model-ready example."""
        spec = self.input_spec
        arr = fit_image(to_uint8_image(image), tuple(spec.shape), spec.color_order, spec.resize)
        return self._to_model(arr[None])[0]

    def _to_model(self, x: np.ndarray) -> np.ndarray:
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
            self.run(self._to_model(x[i : i + BATCH_CHUNK])) for i in range(0, len(x), BATCH_CHUNK)
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
