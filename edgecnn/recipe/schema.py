"""Recipes: one TOML file per reference model naming its data, model, training and later stages.

A recipe is validated against a small schema before anything runs, so a typo
(`epoch = 5`) is a one-line error instead of a silently ignored field.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STAGES = ("train", "tune", "convert", "parity", "bench")

# section -> field -> (accepted types, default).  None default = optional.
_NUM = (int, float)
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "data": {
        "name": ((str,), "digits"),
        "val_split": (_NUM, 0.1),
        "test_split": (_NUM, 0.2),
        "limit_train": ((int,), None),
        "seed": ((int,), 0),
    },
    "model": {
        "arch": ((str,), "cnn_mnist"),
        "input_size": ((int,), None),
        "resize": ((str,), None),  # stretch | crop | letterbox (manifest input.resize)
        "weights": ((str,), "none"),
        "alpha": (_NUM, 1.0),
        "head": ((str,), "avg"),
        "dense_units": ((int,), 128),
        "dropout": (_NUM, 0.0),
        "l2": (_NUM, 0.0),
    },
    "train": {
        "epochs": ((int,), 10),
        "batch_size": ((int,), 64),
        "learning_rate": (_NUM, 1e-3),
        "early_stopping": ((int,), 5),
        "seed": ((int,), 0),
        "flip": ((bool,), False),
        "rotation": (_NUM, 0.0),
        "shift": (_NUM, 0.0),
        "zoom": (_NUM, 0.0),
        "brightness": (_NUM, 0.0),
        "contrast": (_NUM, 0.0),
        "blur": (_NUM, 0.0),  # sigma in pixels
        "noise": (_NUM, 0.0),  # standard deviation in pixel levels (0-255)
        "fine_tune_layers": ((int,), 0),
        "fine_tune_epochs": ((int,), 0),
        "fine_tune_learning_rate": (_NUM, 1e-5),
        "strategy": ((str,), "default"),
    },
    "convert": {
        "precision": ((list,), ["float32", "int8"]),
        "formats": ((list,), ["tflite", "onnx"]),
        "prune": (_NUM, None),
        "prune_filters": (_NUM, None),
        "filter_multiple": ((int,), 8),
        "prune_importance": ((str,), "auto"),
        "prune_steps": ((int,), 1),
        "prune_distill": (_NUM, 0.0),
        "prune_plan": ((dict,), None),
        "fine_tune_epochs": ((int,), 2),
        "calib_samples": ((int,), 200),
        "io_dtype": ((str,), "int8"),
        "edgetpu": ((bool,), False),
    },
    # `tune` replaces train + convert: it searches, and its best build feeds parity and bench.
    "tune": {
        "device": ((str,), "host"),
        "host": ((str,), None),
        "max_latency_ms": (_NUM, None),
        "max_size_kb": (_NUM, None),
        "max_ram_mb": (_NUM, None),
        "max_drop": (_NUM, None),
        "trials": ((int,), 20),
        "timeout_min": (_NUM, None),
        "storage": ((str,), None),
        "study": ((str,), None),
        "sampler": ((str,), "tpe"),
        "archs": ((list,), None),
        "alphas": ((list,), None),
        "sizes": ((list,), None),
        "prune": ((list,), None),
        "precisions": ((list,), None),
        "epochs": ((list,), None),
        "weights": ((str,), None),
        "fine_tune_layers": ((list,), None),
    },
    "parity": {
        "split": ((str,), "test"),
        "max_drop": (_NUM, 1.0),
        "min_agreement": (_NUM, 0.98),
    },
    "bench": {
        "device": ((str,), "host"),
        "runs": ((int,), 100),
        "warmup": ((int,), 10),
        "threads": ((int,), None),
        "min_accuracy": (_NUM, None),  # exit 1 below this (accuracy on the recipe's test split)
    },
}
TOP_LEVEL = {"name", "description", "stages", *SCHEMA}


@dataclass
class Recipe:
    name: str
    description: str
    stages: list[str]
    sections: dict[str, dict[str, Any]]
    path: Path | None = None

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.sections[section]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "stages": self.stages,
            **self.sections,
        }


def _check(section: str, key: str, value: Any, where: str) -> Any:
    types, _default = SCHEMA[section][key]
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        want = " or ".join(t.__name__ for t in types)
        raise BadInput(f"{where}: field '{section}.{key}' must be {want}, got {value!r}")
    return float(value) if types == _NUM else value


def recipe_from_dict(
    raw: dict[str, Any], where: str = "recipe", path: Path | None = None
) -> Recipe:
    unknown = sorted(set(raw) - TOP_LEVEL)
    if unknown:
        raise BadInput(
            f"{where}: unknown field '{unknown[0]}' (known: {', '.join(sorted(TOP_LEVEL))})"
        )
    sections: dict[str, dict[str, Any]] = {}
    for section, fields in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise BadInput(f"{where}: '{section}' must be a table")
        bad = sorted(set(given) - set(fields))
        if bad:
            raise BadInput(
                f"{where}: unknown field '{section}.{bad[0]}' (known: {', '.join(fields)})"
            )
        merged = {k: copy.deepcopy(d) for k, (_t, d) in fields.items()}
        for k, v in given.items():
            merged[k] = _check(section, k, v, where)
        sections[section] = merged
    stages = raw.get("stages", ["train"])
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        raise BadInput(f"{where}: 'stages' must be a list of names")
    for s in stages:
        if s not in STAGES:
            raise BadInput(f"{where}: unknown stage {s!r} (known: {', '.join(STAGES)})")
    if "train" not in stages and "tune" not in stages:
        raise BadInput(f"{where}: stages must start with 'train' (or 'tune')")
    if "tune" in stages and ({"train", "convert"} & set(stages)):
        raise BadInput(f"{where}: 'tune' trains and builds by itself; drop 'train' and 'convert'")
    name = raw.get("name") or (path.stem if path else "recipe")
    if not isinstance(name, str):
        raise BadInput(f"{where}: 'name' must be a string")
    return Recipe(
        name=name,
        description=str(raw.get("description", "")),
        stages=[s for s in STAGES if s in stages],
        sections=sections,
        path=path,
    )


def load_recipe(path: str | Path) -> Recipe:
    """Load a recipe file; a bare name like `digits_cnn` is looked up in models/."""
    p = Path(path)
    if not p.exists() and not p.is_absolute():
        # A bare name (`digits_cnn`) or the default path, looked up in ./models and then in the
        # checkout this package was installed from (pip install -e .), so `edgecnn run` works
        # from any directory.
        name = p.name if p.suffix == ".toml" else f"{p.name}.toml"
        for base in (Path("models"), Path(__file__).resolve().parents[2] / "models"):
            if (base / name).is_file():
                p = base / name
                break
    if not p.is_file():
        raise BadInput(f"recipe {str(path)!r} not found")
    try:
        raw = tomllib.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read recipe {p}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"recipe {p} is not valid TOML: {e}") from None
    return recipe_from_dict(raw, where=f"recipe {p}", path=p)
