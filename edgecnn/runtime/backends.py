"""Interpreters behind one small interface: LiteRT, tflite-runtime, Edge TPU, ONNX Runtime.

No TensorFlow: LiteRT (`ai-edge-litert`) is the TFLite interpreter as its own
wheel; `tflite-runtime` is its predecessor (last release 2.14, needs numpy<2).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from edgecnn.errors import BadInput

BACKENDS = ("auto", "litert", "tflite_runtime", "edgetpu", "onnxruntime")
EDGETPU_LIB = "libedgetpu.so.1"
EDGETPU_INSTALL = "sudo apt-get install libedgetpu1-std (Coral apt repo)"
LITERT_INSTALL = "pip install 'edgecnn[device]' (or: pip install ai-edge-litert)"
ORT_INSTALL = "pip install onnxruntime"


def edgetpu_library_error() -> str | None:
    """Why libedgetpu cannot be loaded, or None if it can.

    Checked with ctypes before LiteRT's `load_delegate`: a failing `load_delegate`
    leaves a half-built Delegate whose __del__ prints a stray traceback.
    """
    import ctypes

    try:
        ctypes.CDLL(EDGETPU_LIB)
        return None
    except OSError as e:
        return str(e).splitlines()[0][:120]


class MissingRuntime(BadInput):
    """No interpreter for this artifact is installed: the message names the install command."""


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # with the batch axis; -1 where dynamic
    dtype: np.dtype
    scale: float  # 0.0 when not quantized
    zero_point: int


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _tflite_runtime_numpy_problem() -> str | None:
    """tflite-runtime (last release 2.14) is built against numpy 1.x: with numpy 2 it
    imports, then fails inside the interpreter after printing a long banner. Say so first."""
    if int(np.__version__.split(".")[0]) < 2:
        return None
    return (
        f"tflite-runtime {_version('tflite-runtime')} needs numpy<2 but numpy {np.__version__} "
        "is installed; pip install 'numpy<2' (or use ai-edge-litert, which supports numpy 2)"
    )


def import_tflite_interpreter(prefer: str = "litert") -> tuple[Any, Any, str]:
    """(Interpreter class, load_delegate, backend name), LiteRT first, then tflite-runtime."""
    order = ["litert", "tflite_runtime"] if prefer != "tflite_runtime" else ["tflite_runtime"]
    problems = []
    for name in order:
        module = "ai_edge_litert.interpreter" if name == "litert" else "tflite_runtime.interpreter"
        if importlib.util.find_spec(module.split(".")[0]) is None:
            problems.append(f"{module.split('.')[0]} not installed")
            continue
        if name == "tflite_runtime" and (problem := _tflite_runtime_numpy_problem()):
            problems.append(problem)
            continue
        try:
            mod = importlib.import_module(module)
            return mod.Interpreter, mod.load_delegate, name
        except (ImportError, AttributeError) as e:
            problems.append(
                f"{module.split('.')[0]} failed to import: {str(e).splitlines()[0][:120]}"
            )
    raise MissingRuntime(
        f"no TFLite interpreter: {'; '.join(problems)}; install with {LITERT_INSTALL}"
    )


@contextlib.contextmanager
def native_info_filtered() -> Iterator[None]:
    """Drop the native "INFO: Created TensorFlow Lite XNNPACK delegate" line, keep real messages.

    LiteRT logs it from C++ on every interpreter and ignores TF_CPP_MIN_LOG_LEVEL;
    on a device printing to a console or journal it is noise. Set EDGECNN_VERBOSE=1
    to see everything.
    """
    if os.environ.get("EDGECNN_VERBOSE"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not line.startswith("INFO: "):
                    sys.stderr.write(line)


class Backend:
    """One loaded model. `run` takes a model-ready batch and returns raw output arrays."""

    name = "?"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    batch_dynamic: bool

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def invoke(self) -> None:
        """Invoke on whatever input is already set (for bare timing)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class TFLiteBackend(Backend):
    def __init__(
        self,
        path: str,
        threads: int | None = None,
        prefer: str = "litert",
        edgetpu: str = "no",  # "no" | "prefer" | "require"
    ) -> None:
        interpreter_cls, load_delegate, self.name = import_tflite_interpreter(prefer)
        delegates = []
        self.edgetpu_active = False
        if edgetpu != "no":
            problem = edgetpu_library_error()
            if problem is None:
                try:
                    delegates.append(load_delegate(EDGETPU_LIB))
                    self.edgetpu_active = True
                    self.name = f"{self.name}+edgetpu"
                except (ValueError, OSError, RuntimeError) as e:
                    problem = str(e).splitlines()[0][:120]
            if problem is not None:
                msg = f"Edge TPU delegate {EDGETPU_LIB} not available ({problem})"
                if edgetpu == "require":
                    raise BadInput(f"{msg}; install it with {EDGETPU_INSTALL}") from None
                warnings.warn(f"{msg}; running on the CPU instead", RuntimeWarning, stacklevel=3)
        try:
            with native_info_filtered():
                self.interp = interpreter_cls(
                    model_path=path, num_threads=threads, experimental_delegates=delegates or None
                )
                self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise BadInput(f"cannot load {path}: {str(e).strip().splitlines()[0][:200]}") from None
        ins = self.interp.get_input_details()
        outs = self.interp.get_output_details()
        if len(ins) != 1:
            raise BadInput(f"model has {len(ins)} inputs; edgecnn runs single-image classifiers")
        self._in = ins[0]
        self._out = outs[0]
        sig = [int(v) for v in self._in.get("shape_signature", self._in["shape"])]
        self.inputs = [self._info(ins[0], sig)]
        self.outputs = [self._info(o, list(o["shape"])) for o in outs]
        self.batch_dynamic = sig[0] == -1 and not self.edgetpu_active
        self._batch = int(self._in["shape"][0])

    @staticmethod
    def _info(d: dict[str, Any], shape: list[int]) -> TensorInfo:
        scale, zp = d["quantization"]
        return TensorInfo(
            d["name"], tuple(int(v) for v in shape), np.dtype(d["dtype"]), float(scale), int(zp)
        )

    def _resize(self, n: int) -> None:
        if n != self._batch:
            shape = [n, *self._in["shape"][1:]]
            self.interp.resize_tensor_input(self._in["index"], shape, strict=False)
            self.interp.allocate_tensors()
            self._batch = n

    def run(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if n != self._batch:
            if not self.batch_dynamic and n > 1:
                return np.concatenate([self.run(x[i : i + 1]) for i in range(n)])
            self._resize(n)
        self.interp.set_tensor(self._in["index"], x)
        self.interp.invoke()
        return self.interp.get_tensor(self._out["index"])

    def invoke(self) -> None:
        self.interp.invoke()

    def close(self) -> None:
        self.interp = None


class OnnxBackend(Backend):
    def __init__(self, path: str, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingRuntime(
                f"onnxruntime is not installed; install with {ORT_INSTALL}"
            ) from None
        self.name = "onnxruntime"
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.sess = ort.InferenceSession(
                path, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception classes
            raise BadInput(f"cannot load {path}: {str(e).strip().splitlines()[0][:200]}") from None
        ins = self.sess.get_inputs()
        if len(ins) != 1:
            raise BadInput(f"model has {len(ins)} inputs; edgecnn runs single-image classifiers")
        self._in_name = ins[0].name
        self.inputs = [self._info(ins[0])]
        self.outputs = [self._info(o) for o in self.sess.get_outputs()]
        self.batch_dynamic = self.inputs[0].shape[0] == -1
        self._last: np.ndarray | None = None

    @staticmethod
    def _info(a: Any) -> TensorInfo:
        shape = tuple(v if isinstance(v, int) and v > 0 else -1 for v in a.shape)
        t = a.type.removeprefix("tensor(").removesuffix(")")
        dtype = np.dtype({"float": "float32", "double": "float64"}.get(t, t))
        return TensorInfo(a.name, shape, dtype, 0.0, 0)

    def run(self, x: np.ndarray) -> np.ndarray:
        if not self.batch_dynamic and x.shape[0] != self.inputs[0].shape[0]:
            return np.concatenate([self.run(x[i : i + 1]) for i in range(x.shape[0])])
        self._last = x
        return self.sess.run(None, {self._in_name: x})[0]

    def invoke(self) -> None:
        self.sess.run(None, {self._in_name: self._last})

    def close(self) -> None:
        self.sess = None


def open_backend(path: str, fmt: str, backend: str = "auto", threads: int | None = None) -> Backend:
    """Pick and load the interpreter for an artifact of format `fmt`."""
    if backend not in BACKENDS:
        raise BadInput(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if fmt == "onnx":
        if backend not in ("auto", "onnxruntime"):
            raise BadInput(f"an ONNX model needs the onnxruntime backend, not {backend}")
        return OnnxBackend(path, threads)
    if fmt not in ("tflite", "edgetpu"):
        raise BadInput(f"unknown artifact format {fmt!r}")
    if backend == "onnxruntime":
        raise BadInput("a TFLite model needs the litert, tflite_runtime or edgetpu backend")
    if backend == "edgetpu":
        return TFLiteBackend(path, threads, edgetpu="require")
    edgetpu = "prefer" if fmt == "edgetpu" else "no"
    return TFLiteBackend(path, threads, prefer=backend, edgetpu=edgetpu)
