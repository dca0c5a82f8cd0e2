"""The ImageNet-1k class list shipped with edgecnn, for the pretrained classifiers.

The file (`data/imagenet_classes.tsv`) is taken from timm (Apache-2.0); its
header says where from. Short names are each class's first WordNet lemma;
the two lemmas ImageNet uses twice (crane, maillot) get their synset id so
every label is unique.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from importlib import resources

IMAGENET_CLASSES = 1000


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """(synset, lemmas) per class, in model output order."""
    text = resources.files("edgecnn.zoo").joinpath("data/imagenet_classes.tsv").read_text("utf-8")
    rows = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        index, synset, lemmas = line.split("\t")
        if int(index) != len(rows):
            raise RuntimeError(f"imagenet_classes.tsv is out of order at class {index}")
        rows.append((synset, lemmas))
    if len(rows) != IMAGENET_CLASSES:
        raise RuntimeError(f"imagenet_classes.tsv has {len(rows)} classes, not 1000")
    return tuple(rows)


def imagenet_labels() -> list[str]:
    """One unique short name per class, e.g. 'tabby', 'espresso', 'crane (n02012849)'."""
    rows = imagenet_classes()
    first = [lemmas.split(",")[0].strip() for _s, lemmas in rows]
    twice = {name for name, n in Counter(first).items() if n > 1}
    return [
        f"{name} ({syn})" if name in twice else name
        for name, (syn, _l) in zip(first, rows, strict=True)
    ]


def imagenet_index(label: str) -> int:
    """Class index of a short name or a synset id."""
    labels = imagenet_labels()
    if label in labels:
        return labels.index(label)
    for i, (synset, _lemmas) in enumerate(imagenet_classes()):
        if synset == label:
            return i
    raise KeyError(label)
