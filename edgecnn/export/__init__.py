"""One exporter per artifact format, in a table keyed by format name (host side).

`EXPORTERS[fmt].export(job, precision, path)` writes one artifact. The runtime's format
registry (`edgecnn.runtime.formats`) says what a format *is*; this table says how to
*make* it. Adding a format means one record there and one exporter here. The modules
below import TensorFlow, tf2onnx and onnxruntime only inside their functions, so
importing this table is cheap (convert checks its flags against it before TensorFlow).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput
from edgecnn.fsutil import atomic_write_bytes
from edgecnn.runtime.formats import FORMATS


def artifact_name(fmt: str, precision: str) -> str:
    return f"model_{precision}{FORMATS[fmt].suffix}"


@dataclass
class ExportJob:
    """What every exporter of one build shares."""

    model: Any  # the float Keras reference (after pruning)
    calib: np.ndarray  # float32 0-255 calibration images (stratified training sample)
    out_dir: Path
    io_dtype: str = "int8"  # int8 TFLite I/O
    onnx_int8: str = "qdq"  # "qdq" or "tflite"
    static_batch: bool = False  # batch-1 int8 TFLite (the Edge TPU compiler needs it)
    metadata: dict[str, str] = field(default_factory=dict)  # embedded where a format carries it

    def written(self, fmt: str, precision: str) -> Path | None:
        p = self.out_dir / artifact_name(fmt, precision)
        return p if p.is_file() else None


class TFLiteExporter:
    format = "tflite"
    direct = True  # chosen with --formats

    def export(self, job: ExportJob, precision: str, path: Path) -> dict[str, Any] | None:
        from edgecnn.export.tflite import to_tflite

        static = job.static_batch and precision == "int8"
        atomic_write_bytes(path, to_tflite(job.model, precision, calib=job.calib, io_dtype=job.io_dtype,
                                           static_batch=static))  # fmt: skip
        return None

    def requantize(
        self, job: ExportJob, ranker: Any, float_layers: list[str], integer_io: bool, path: Path
    ) -> None:
        """int8 with `float_layers` kept in float (parity --fix)."""
        tensors = [lay["tensor"] for lay in ranker.layers if lay["layer"] in float_layers]
        path.write_bytes(ranker.selective_tflite(tensors, integer_io))


class OnnxExporter:
    format = "onnx"
    direct = True

    def export(self, job: ExportJob, precision: str, path: Path) -> dict[str, Any] | None:
        from edgecnn.export import onnx as ox

        if precision == "float32":
            ox.to_onnx_float(job.model, path)
        elif job.onnx_int8 == "tflite":
            with self._source(job, "tflite") as src:
                ox.onnx_from_tflite(src, path)
        else:
            with self._source(job, "onnx") as src:
                ox.quantize_onnx_qdq(src, path, job.calib)
        if job.metadata:
            ox.set_metadata(path, {**job.metadata, "precision": precision})
        return None

    def requantize(
        self, job: ExportJob, ranker: Any, float_layers: list[str], integer_io: bool, path: Path
    ) -> None:
        from edgecnn.export import onnx as ox

        with self._source(job, "onnx") as src:
            nodes = ox.nodes_for_layers(src, float_layers) if float_layers else None
            ox.quantize_onnx_qdq(src, path, job.calib, nodes_to_exclude=nodes)
        if job.metadata:
            ox.set_metadata(path, {**job.metadata, "precision": "int8"})

    @staticmethod
    @contextlib.contextmanager
    def _source(job: ExportJob, kind: str) -> Any:
        """The float ONNX (kind "onnx") or int8 TFLite (kind "tflite") the int8 ONNX comes
        from: the build's own artifact when it has one, else a temporary conversion."""
        from edgecnn.export import onnx as ox
        from edgecnn.export.tflite import to_tflite

        precision = "float32" if kind == "onnx" else "int8"
        found = job.written(kind, precision)
        if found:
            yield found
            return
        with tempfile.TemporaryDirectory(prefix="edgecnn-export-") as tmp:
            src = Path(tmp) / artifact_name(kind, precision)
            if kind == "onnx":
                ox.to_onnx_float(job.model, src)
            else:
                src.write_bytes(
                    to_tflite(job.model, "int8", calib=job.calib, io_dtype=job.io_dtype)
                )
            yield src


class EdgeTPUExporter:
    """Compiles the build's int8 TFLite with `edgetpu_compiler` when it is installed; always
    reports the compatibility check. Chosen with `--edgetpu`, not `--formats`."""

    format = "edgetpu"
    direct = False

    def export(self, job: ExportJob, precision: str, path: Path) -> dict[str, Any] | None:
        from edgecnn.export.edgetpu import check_edgetpu, compile_edgetpu

        src = job.written("tflite", "int8")
        if src is None:
            raise BadInput("--edgetpu needs the int8 TFLite artifact (--formats tflite)")
        report = check_edgetpu(src)
        report["compiler"] = compile_edgetpu(src, job.out_dir)
        compiled = report["compiler"].get("output")
        if compiled and compiled != path.name:
            (job.out_dir / compiled).replace(path)
            report["compiler"]["output"] = path.name
        return report


EXPORTERS: dict[str, Any] = {
    e.format: e for e in (TFLiteExporter(), OnnxExporter(), EdgeTPUExporter())
}
DIRECT_FORMATS = tuple(name for name, e in EXPORTERS.items() if e.direct)


def exporter_for(fmt: str) -> Any:
    if fmt not in EXPORTERS:
        raise BadInput(f"edgecnn cannot make {fmt!r} artifacts; it makes: {', '.join(EXPORTERS)}")
    return EXPORTERS[fmt]
