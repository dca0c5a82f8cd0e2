"""The format registry: the one place that knows artifact formats (device side, no TensorFlow).

Each format is one `ArtifactFormat` record: its file suffix, the precisions it comes in,
the runtime backends that can open it, how to check its bytes before a native runtime
sees them, how to open it, how to read its tensors and MACs. Everything that asks
"what kind of artifact is this?" reads this table: the manifest entries convert writes,
`select_artifact`'s order, the daemon's reload watch, `--backend` choices, bench
estimates and MAC counting. Adding a format is one record here plus one exporter in
`edgecnn.export.EXPORTERS` (see ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgecnn.errors import BadInput
from edgecnn.manifest import Artifact, Quantization, TensorSpec
from edgecnn.runtime import artifact_ops, backends, macs, opgraph, validate
from edgecnn.runtime.backends import Backend, TensorInfo

PRECISIONS = ("float32", "float16", "dynamic", "int8")
INTEGER_DTYPES = ("int8", "uint8")
Opener = Callable[[bytes, str, str, "int | None"], Backend]


@dataclass(frozen=True)
class ArtifactFormat:
    name: str
    title: str  # for messages: "Edge TPU"
    suffix: str  # file name ending (longest match wins: "_edgetpu.tflite" before ".tflite")
    precisions: tuple[str, ...]
    backends: tuple[str, ...]  # --backend values that can open it ("auto" always can)
    rank: int  # preference when a spec such as "int8" matches several formats
    check: Callable[[bytes, str], None]  # structural check before a native runtime loads it
    opener: Opener  # (model bytes, name, backend, threads) -> Backend
    layers: Callable[[bytes], list[dict[str, Any]]]  # per-op MACs
    ops: Callable[[bytes], list[opgraph.Op]]  # operators as the latency model sees them
    inspect_ops: Callable[[bytes], list[dict[str, Any]]]  # per-op rows for `edgecnn inspect`
    on_cpu: bool = True  # False: needs its accelerator; `cpu_twin` runs instead
    cpu_twin: str | None = None  # the format of the same model for a plain CPU
    accelerator_problem: Callable[[], str | None] | None = None  # why the accelerator is absent
    tpu_ready_int8: bool = False  # an int8 model of this format runs on the Edge TPU (compiled)
    tensor_debug: bool = False  # intermediate tensors can be read (per-layer diagnosis)
    # How a float-input model quantizes its input inside the graph (parity's diagnosis).
    inner_input_quant: Callable[[bytes], dict[str, Any] | None] | None = None
    # Scales of integer inputs/outputs whose tensors carry none ({name: quant}, {name: quant}).
    io_quant: Callable[[bytes], tuple[dict[str, Any], dict[str, Any]]] | None = None

    def open(
        self, model: bytes, name: str, backend: str = "auto", threads: int | None = None
    ) -> Backend:
        if backend not in ("auto", *self.backends):
            choices = ", ".join(self.backends)
            raise BadInput(f"a {self.name} artifact needs the {choices} backend, not {backend}")
        return self.opener(model, name, backend, threads)

    def accelerator_missing(self) -> str | None:
        return self.accelerator_problem() if self.accelerator_problem else None


def _open_tflite(model: bytes, name: str, backend: str, threads: int | None) -> Backend:
    if backend == "edgetpu":
        return backends.TFLiteBackend(model, name, threads, edgetpu="require")
    return backends.TFLiteBackend(model, name, threads, prefer=backend)


def _open_edgetpu(model: bytes, name: str, backend: str, threads: int | None) -> Backend:
    mode = "require" if backend == "edgetpu" else "prefer"
    return backends.TFLiteBackend(model, name, threads, prefer=backend, edgetpu=mode)


def _onnx_graph() -> Any:
    from edgecnn.runtime import onnx_graph  # needs the optional onnx package

    return onnx_graph


def _open_onnx(model: bytes, name: str, backend: str, threads: int | None) -> Backend:
    return backends.OnnxBackend(model, name, threads)


FORMATS: dict[str, ArtifactFormat] = {
    "tflite": ArtifactFormat(
        name="tflite", title="TFLite", suffix=".tflite", precisions=PRECISIONS,
        backends=("litert", "tflite_runtime", "edgetpu"), rank=0,
        check=validate.check_tflite_bytes, opener=_open_tflite, layers=macs.tflite_layers,
        ops=opgraph.tflite_ops, inspect_ops=artifact_ops.tflite_ops,
        tpu_ready_int8=True, tensor_debug=True,
    ),
    "edgetpu": ArtifactFormat(
        name="edgetpu", title="Edge TPU", suffix="_edgetpu.tflite", precisions=("int8",),
        backends=("edgetpu", "litert", "tflite_runtime"), rank=1,
        check=validate.check_tflite_bytes, opener=_open_edgetpu, layers=macs.tflite_layers,
        ops=opgraph.tflite_ops, inspect_ops=artifact_ops.tflite_ops,
        on_cpu=False, cpu_twin="tflite", accelerator_problem=backends.edgetpu_library_error,
        tpu_ready_int8=True,
    ),
    "onnx": ArtifactFormat(
        name="onnx", title="ONNX", suffix=".onnx", precisions=("float32", "int8"), backends=("onnxruntime",),
        rank=2, check=validate.check_onnx_bytes, opener=_open_onnx, layers=macs.onnx_layers,
        ops=opgraph.onnx_ops, inspect_ops=artifact_ops.onnx_ops,
        inner_input_quant=lambda model: _onnx_graph().input_quantization(model),
        io_quant=lambda model: _onnx_graph().integer_io_quantization(model),
    ),
}  # fmt: skip
BACKENDS = ("auto", *dict.fromkeys(b for f in FORMATS.values() for b in f.backends))
SUFFIXES = tuple(sorted({f.suffix for f in FORMATS.values()}, key=len, reverse=True))


def get_format(name: str) -> ArtifactFormat:
    if name not in FORMATS:
        raise BadInput(f"unknown artifact format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def format_for_file(filename: str) -> ArtifactFormat | None:
    """The format whose suffix the file name ends with (longest suffix first)."""
    for suffix in SUFFIXES:
        if filename.endswith(suffix):
            return next(f for f in FORMATS.values() if f.suffix == suffix)
    return None


def is_artifact_file(filename: str) -> bool:
    return format_for_file(filename) is not None


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise BadInput(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    return backend


def _parse_list(
    value: str | list[str] | tuple[str, ...], known: tuple[str, ...], what: str
) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out = [v.strip().lower() for v in items if v.strip()]
    bad = [v for v in out if v not in known]
    if bad or not out:
        raise BadInput(
            f"unknown {what} {', '.join(bad) or '(none)'}; choose from {', '.join(known)}"
        )
    return list(dict.fromkeys(out))


def parse_precisions(value: str | list[str] | tuple[str, ...]) -> list[str]:
    return _parse_list(value, PRECISIONS, "precision")


def parse_formats(value: str | list[str] | tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    return _parse_list(value, allowed, "format")


# -- manifest entries and artifact selection ---------------------------------------------------


def _spec(info: TensorInfo, quant: dict[str, Any] | None = None) -> TensorSpec:
    q = Quantization(info.scale, info.zero_point) if info.scale else Quantization.from_dict(quant)
    return TensorSpec(info.name, list(info.shape), info.dtype.name, q)


def tensor_specs(fmt: ArtifactFormat, model: bytes) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """What the manifest records of an artifact's I/O; ([], []) if it needs its accelerator."""
    try:
        b = fmt.open(model, "artifact")
    except BadInput:
        if fmt.on_cpu:
            raise
        return [], []  # e.g. an Edge TPU model: its custom op needs the delegate to open
    ins, outs = b.inputs, b.outputs
    b.close()
    q_in: dict[str, Any] = {}
    q_out: dict[str, Any] = {}
    if fmt.io_quant and any(t.dtype.name in INTEGER_DTYPES and not t.scale for t in ins + outs):
        q_in, q_out = fmt.io_quant(model)
    return [_spec(t, q_in.get(t.name)) for t in ins], [_spec(t, q_out.get(t.name)) for t in outs]


def preferred(artifacts: list[Artifact]) -> list[Artifact]:
    """Artifacts in the registry's preference order (stable within a format)."""
    rank = {name: f.rank for name, f in FORMATS.items()}
    return sorted(artifacts, key=lambda a: rank.get(a.format, len(rank)))


def select_artifact(artifacts: list[Artifact], spec: str | None = None) -> Artifact:
    """Pick by file name, precision, format, "onnx:int8" ...; default: the preferred int8
    artifact that runs on a CPU, else the first listed."""
    if not artifacts:
        raise BadInput("the manifest lists no artifacts")
    if spec:
        hits = [a for a in artifacts if a.matches(spec)]
        if not hits:
            names = ", ".join(a.name for a in artifacts)
            raise BadInput(f"no artifact matches {spec!r}; the manifest has: {names}")
        return preferred(hits)[0]
    for a in preferred(artifacts):
        fmt = FORMATS.get(a.format)
        if fmt is not None and fmt.on_cpu and a.precision == "int8":
            return a
    return artifacts[0]


def cpu_twin(artifacts: list[Artifact], art: Artifact) -> Artifact | None:
    """For an artifact that needs an accelerator: the same precision in its CPU format."""
    fmt = FORMATS.get(art.format)
    if fmt is None or fmt.cpu_twin is None:
        return None
    return next(
        (a for a in artifacts if a.format == fmt.cpu_twin and a.precision == art.precision), None
    )
