"""What trials share, kept under OUT/cache by what made it.

A trained model is reused by every trial that differs from it only in pruning or
precision; a pruned, fine-tuned model by every trial that differs only in precision.
Entries are written in a work directory and renamed into place, so a crashed or
interrupted trial leaves nothing that a later one would trust, and two workers that
build the same entry at once both end up using one complete copy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.data import Dataset
from edgecnn.manifest import MANIFEST_NAME, REFERENCE_NAME, Manifest, load_manifest
from edgecnn.tune.params import TrialParams
from edgecnn.tune.space import SearchSpace

BASE_PRECISION = {"int8": "int8", "float16": "float16", "int8-mixed": "int8"}


def complete(entry: Path) -> bool:
    return (entry / MANIFEST_NAME).is_file()


def replace_dir(work: Path, final: Path) -> None:
    """Move a finished work directory into place (another worker may have got there first)."""
    if complete(final):
        shutil.rmtree(work, ignore_errors=True)
        return
    shutil.rmtree(final, ignore_errors=True)
    work.replace(final)


def work_dir(final: Path) -> Path:
    work = final.with_name(f".{final.name}.work-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    return work


@contextlib.contextmanager
def _removed_on_failure(work: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def inherit_pruning(build: Path, pruned_from: Manifest) -> None:
    """A build converted from an already pruned model keeps the record of that pruning."""
    manifest = load_manifest(build)
    old = pruned_from.model_extra.get("optimization") or {}
    opt = manifest.model_extra.setdefault("optimization", {})
    for key in (
        "prune_filters",
        "filter_multiple",
        "pruning",
        "fine_tune_epochs",
        "accuracy_before",
    ):
        opt[key] = old.get(key)
    manifest.save(build)


@dataclass
class TrialCache:
    root: Path
    data_key: str
    seed: int

    def train_dir(self, p: TrialParams) -> Path:
        return self.root / p.train_key(self.data_key, self.seed)

    def build_dir(self, p: TrialParams) -> Path:
        return self.root / f"{p.pruned_key(self.data_key, self.seed)}-{p.precision}"

    def pruned_sibling(self, p: TrialParams) -> Path | None:
        """A finished build of the same pruned model at another precision."""
        stem = p.pruned_key(self.data_key, self.seed)
        hits = [d for d in sorted(self.root.glob(f"{stem}-*")) if complete(d)]
        return hits[0] if hits else None

    def trained(self, p: TrialParams, train_fn: Callable[[Path], bool]) -> tuple[Path, bool]:
        """(the trained model's directory, reused?). `train_fn(work)` trains into `work` and
        returns False when the run was stopped early (then nothing is kept)."""
        final = self.train_dir(p)
        if complete(final):
            return final, True
        work = work_dir(final)
        with _removed_on_failure(work):
            if not train_fn(work):
                raise EarlyStop
        replace_dir(work, final)
        return final, False

    def built(
        self, p: TrialParams, model_dir: Path, data: Dataset, space: SearchSpace, seed: int,
        convert: Callable[..., Any],
    ) -> tuple[Path, bool]:  # fmt: skip
        """(the trial's build directory, reused?), converted from `model_dir` or from the same
        pruned model built at another precision."""
        from edgecnn.build.config import BuildConfig
        from edgecnn.tune.mixed import keep_worst_in_float

        final = self.build_dir(p)
        if complete(final):
            return final, True
        sibling = self.pruned_sibling(p) if p.prune else None
        cfg = BuildConfig(
            prune_filters=p.prune if p.prune and sibling is None else None,
            fine_tune_epochs=space.prune_fine_tune_epochs, precisions=[BASE_PRECISION[p.precision]],
            formats=["tflite"], eval_samples=0, seed=seed,
        )  # fmt: skip
        work = work_dir(final)
        with _removed_on_failure(work):
            convert(sibling / REFERENCE_NAME if sibling else model_dir, data, work, cfg)
            if sibling is not None:
                inherit_pruning(work, load_manifest(sibling))
            if p.precision == "int8-mixed":
                keep_worst_in_float(work, data, space.mixed_float_layers)
        replace_dir(work, final)
        return final, False


class EarlyStop(Exception):
    """Training was stopped by the search's pruner."""
