"""The new labels: `folder:DIR` (what `edgecnn label` writes), checked against the model's
classes before anything slow, then read as the device would see the frames.

Class folder names are decoded with `edgecnn.label.label_of` ("T-shirt%2Ftop" is the class
"T-shirt/top"). Images are fitted to the model's input exactly as the runtime fits a camera
frame (`runtime.preprocess.fit_image`: the manifest's resize mode and colour order).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.data.sources import IMAGE_SUFFIXES
from edgecnn.errors import BadInput
from edgecnn.label.store import label_of
from edgecnn.manifest import InputSpec


@dataclass
class LabelFolder:
    spec: str
    path: Path
    files: dict[str, list[Path]]  # class name -> image files

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.files.values())


def scan_labels(spec: str) -> LabelFolder:
    """`folder:DIR` with one sub-folder per class; BadInput if it holds no image."""
    kind, _, arg = spec.partition(":")
    if kind != "folder" or not arg:
        raise BadInput(f"--add takes folder:DIR (what `edgecnn label` writes), got {spec!r}")
    root = Path(arg)
    if not root.is_dir():
        raise BadInput(f"label folder {root} does not exist")
    files: dict[str, list[Path]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(
            f for f in d.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
        )  # fmt: skip
        if images:
            files[label_of(d.name)] = images
    folder = LabelFolder(spec, root, files)
    if not folder.count:
        raise BadInput(
            f"label folder {root} holds no labelled images (expected {root}/CLASS/*.jpg)"
        )
    return folder


def check_classes(folders: list[LabelFolder], labels: list[str], new_classes: bool) -> list[str]:
    """The model's labels, extended by the new classes when --new-classes allows them."""
    found = sorted({c for f in folders for c in f.files})
    unknown = [c for c in found if c not in labels]
    if unknown and not new_classes:
        names = ", ".join(repr(c) for c in unknown)
        raise BadInput(
            f"labels for class(es) the model does not know: {names}; "
            "add --new-classes to retrain the head with them"
        )
    return list(labels) + unknown


def read_labels(
    folders: list[LabelFolder], labels: list[str], spec: InputSpec
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images at the model's input, class indices, file names) for every labelled image."""
    from edgecnn.runtime.images import decode_image
    from edgecnn.runtime.preprocess import fit_image

    shape = tuple(spec.shape)
    xs, ys, names = [], [], []
    for folder in folders:
        for cls, paths in folder.files.items():
            for p in paths:
                try:
                    img = decode_image(p, mode="RGB")  # the whole frame, as the camera gave it
                except BadInput as e:
                    raise BadInput(f"cannot read labelled image {p}: {e}") from None
                xs.append(fit_image(img, shape, spec.color_order, spec.resize))  # type: ignore[arg-type]
                ys.append(labels.index(cls))
                names.append(str(p))
    return np.stack(xs).astype(np.uint8), np.array(ys, dtype=np.int64), names
