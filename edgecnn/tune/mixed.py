"""The `int8-mixed` precision: an int8 artifact whose worst layers stay in float.

The layers are the ones `parity --fix` would try first (the TFLite quantization
debugger's op-by-op error on calibration data), so a search can weigh the accuracy they
win against the latency and size they cost before any parity check fails.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.build.export import describe_artifact
from edgecnn.build.record import embedded_metadata
from edgecnn.data import Dataset
from edgecnn.export import EXPORTERS, ExportJob
from edgecnn.manifest import load_manifest


def keep_worst_in_float(build: Path, data: Dataset, count: int) -> list[str]:
    """Re-quantize the build's int8 artifacts in place with `count` layers in float; the
    layer names kept. `build` must be a work directory the caller renames afterwards."""
    from edgecnn.parity.fix import LayerRanker, calibration
    from edgecnn.zoo.io import load_keras_model

    manifest = load_manifest(build)
    model = load_keras_model(manifest.reference_path(build))
    calib = calibration(manifest, data)
    ranker = LayerRanker(model, calib)
    names = list(dict.fromkeys(lay["layer"] for lay in ranker.layers))[:count]
    job = ExportJob(model, calib, build, metadata=embedded_metadata(manifest))
    for art in [a for a in manifest.artifacts if a.precision == "int8"]:
        integer_io = bool(art.inputs) and art.inputs[0].dtype in ("int8", "uint8")
        EXPORTERS[art.format].requantize(job, ranker, names, integer_io, build / art.path)
        entry = describe_artifact(build, art.path, art.format, art.precision)
        entry.extra = {
            **art.extra,
            "selective_quantization": {"float_layers": names, "by": "edgecnn tune"},
        }
        manifest.replace(entry)
    manifest.save(build)
    return names
