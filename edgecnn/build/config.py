"""What a build is asked to do, checked before anything slow (no TensorFlow here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgecnn.errors import BadInput
from edgecnn.export import DIRECT_FORMATS
from edgecnn.export.onnx import check_int8_method
from edgecnn.optimize.prune import check_sparsity
from edgecnn.optimize.quantize import MIN_CALIB_SAMPLES, check_io_dtype
from edgecnn.optimize.structured import BUILD_IMPORTANCE, IMPORTANCES
from edgecnn.runtime.formats import parse_formats, parse_precisions

DEFAULT_PRECISIONS = ("float32", "int8")
DEFAULT_FORMATS = ("tflite", "onnx")


@dataclass
class BuildConfig:
    prune: float | None = None  # unstructured sparsity in [0, 1): a smaller gzipped download
    prune_filters: float | None = (
        None  # fraction of channels to remove (structured): a faster model
    )
    filter_multiple: int = 8  # kept channels are a multiple of this
    prune_importance: str = BUILD_IMPORTANCE
    prune_steps: int = 1  # prune, fine-tune, repeat
    prune_distill: float = 0.0  # weight of the unpruned model's soft targets in fine-tuning
    prune_plan: dict[str, float] = field(default_factory=dict)  # layer -> its group's ratio
    fine_tune_epochs: int = 3
    precisions: list[str] = field(default_factory=lambda: list(DEFAULT_PRECISIONS))
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    calib_samples: int = 200
    io_dtype: str = "int8"
    edgetpu: bool = False
    onnx_int8: str = "qdq"
    eval_samples: int = 1000  # test images for the accuracy column (0: all)
    learning_rate: float = 1e-3
    batch_size: int = 64
    seed: int = 0

    def validated(self) -> BuildConfig:
        """Parse the lists and check every option; BadInput with one line on the first problem."""
        self.precisions = parse_precisions(self.precisions)
        self.formats = parse_formats(self.formats, DIRECT_FORMATS)
        self.io_dtype = check_io_dtype(self.io_dtype)
        check_int8_method(self.onnx_int8)
        if self.prune is not None:
            self.prune = check_sparsity(self.prune) or None
        if self.prune_filters:
            self.prune_filters = (
                check_sparsity(self.prune_filters, "filter-pruning fraction") or None
            )
        if self.filter_multiple < 1:
            raise BadInput(f"filter multiple must be >= 1, got {self.filter_multiple}")
        if self.prune_importance not in (BUILD_IMPORTANCE, *IMPORTANCES):
            raise BadInput(
                f"unknown pruning importance {self.prune_importance!r}; choose from "
                f"{', '.join((BUILD_IMPORTANCE, *IMPORTANCES))}"
            )
        if self.prune_steps < 1:
            raise BadInput(f"pruning steps must be >= 1, got {self.prune_steps}")
        if not 0.0 <= self.prune_distill <= 1.0:
            raise BadInput(f"distillation weight must be in [0, 1], got {self.prune_distill}")
        for layer, r in self.prune_plan.items():
            check_sparsity(r, f"pruning ratio of {layer}")
        if self.fine_tune_epochs < 0:
            raise BadInput(f"fine-tune epochs must be >= 0, got {self.fine_tune_epochs}")
        if self.calib_samples < MIN_CALIB_SAMPLES:
            raise BadInput(
                f"calibration set too small: {self.calib_samples} samples "
                f"(need at least {MIN_CALIB_SAMPLES})"
            )
        if self.edgetpu and "int8" not in self.precisions:
            raise BadInput("--edgetpu needs --precision to include int8")
        if self.edgetpu and self.io_dtype == "float32":
            raise BadInput("--edgetpu needs integer I/O (--io-dtype int8 or uint8)")
        return self

    @property
    def prunes(self) -> bool:
        return bool(self.prune or self.prune_filters or self.prune_plan)

    @classmethod
    def from_recipe(cls, recipe: Any) -> BuildConfig:
        """The recipe's [convert] section."""
        c = recipe["convert"]
        return cls(
            prune=c.get("prune"), prune_filters=c.get("prune_filters"),
            filter_multiple=int(c.get("filter_multiple", 8)), prune_importance=c.get("prune_importance", BUILD_IMPORTANCE),
            prune_steps=int(c.get("prune_steps", 1)), prune_distill=float(c.get("prune_distill", 0.0)),
            prune_plan=dict(c.get("prune_plan") or {}),
            fine_tune_epochs=int(c.get("fine_tune_epochs", 2)),
            precisions=list(c.get("precision", DEFAULT_PRECISIONS)),
            formats=list(c.get("formats", DEFAULT_FORMATS)),
            calib_samples=int(c.get("calib_samples", 200)), io_dtype=c.get("io_dtype", "int8"),
            edgetpu=bool(c.get("edgetpu", False)), onnx_int8=c.get("onnx_int8", "qdq"),
            seed=int(recipe["data"].get("seed", 0) or 0),
        )  # fmt: skip
