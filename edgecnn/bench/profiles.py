"""Device latency profiles: fitted kernel models per (format, precision, threads), on disk.

A profile comes from one of two places, and says which:
* measured: `edgecnn bench --calibrate` ran the corpus on the target (this machine, or a
  device over SSH) and fitted a model per key; its error is cross-validated on the corpus;
* published: the profiles that ship for devices edgecnn has never measured (pi4, pi5,
  pi-zero2, coral-usb, coral-devboard, and the host until it is calibrated), fitted to
  public latency figures (`edgecnn.bench.published`), with a leave-one-out error.

Measured profiles live in the user's config directory ($EDGECNN_PROFILE_DIR, else
$XDG_CONFIG_HOME/edgecnn/profiles, else ~/.config/edgecnn/profiles), one `<device>.json`
each, or wherever `--profile PATH` says.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn import __version__
from edgecnn.bench.latency_model import WITHIN, KernelModel
from edgecnn.errors import BadInput
from edgecnn.fsutil import atomic_write_text

SCHEMA = "edgecnn.latency-profile/1"


def profile_key(fmt: str, precision: str, threads: int | None) -> str:
    return f"{fmt}/{precision}/t{threads or 1}"


def split_key(key: str) -> tuple[str, str, int]:
    fmt, precision, t = key.split("/")
    return fmt, precision, int(t[1:])


@dataclass
class Profile:
    device: str
    arch: str  # the target's machine (x86_64, aarch64)
    source: str  # "measured" or "published"
    basis: str  # what it stands on, for humans
    created: str
    models: dict[str, KernelModel] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # key -> why it is not in the profile
    system: dict[str, Any] = field(default_factory=dict)  # the target's state while measured
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "edgecnn": __version__, "device": self.device, "arch": self.arch,
            "source": self.source, "basis": self.basis, "created": self.created,
            "models": {k: m.to_dict() for k, m in sorted(self.models.items())},
            "failed": self.failed, "system": self.system, "versions": self.versions,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "profile") -> Profile:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise BadInput(
                f"{where} is not an edgecnn latency profile (schema {SCHEMA!r} expected)"
            )
        major = str(d.get("edgecnn", "")).split(".")[0]
        if major != __version__.split(".")[0]:
            raise BadInput(
                f"{where} was written by edgecnn {d.get('edgecnn')}, this is {__version__}; "
                "calibrate again with edgecnn bench --calibrate"
            )
        try:
            models = {str(k): KernelModel.from_dict(v) for k, v in d["models"].items()}
            return cls(str(d["device"]), str(d["arch"]), str(d["source"]), str(d["basis"]), str(d["created"]),
                       models, dict(d.get("failed") or {}), dict(d.get("system") or {}),
                       dict(d.get("versions") or {}))  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadInput(
                f"{where} is a corrupt latency profile ({type(e).__name__}: {e})"
            ) from None

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    def model_for(
        self, fmt: str, precision: str, threads: int | None
    ) -> tuple[KernelModel, str, str]:
        """(model, its key, a note when it is not the exact key asked for)."""
        want = profile_key(fmt, precision, threads)
        if want in self.models:
            return self.models[want], want, ""
        candidates = [k for k in self.models if k.startswith(f"{fmt}/{precision}/")]
        why = "no model for that thread count"
        if not candidates:
            candidates = [k for k in self.models if split_key(k)[1] == _cpu_precision(precision)]
            why = f"no {fmt} {precision} model"
        if not candidates:
            known = ", ".join(sorted(self.models)) or "none"
            raise BadInput(f"the {self.device} profile has no model for {want} (it has: {known})")
        t = threads or 1
        key = min(candidates, key=lambda k: abs(split_key(k)[2] - t))
        return self.models[key], key, f"{why}: the {key} fit is used"

    def error_text(self, key: str) -> str:
        cv = self.models[key].cv
        if not cv:
            return "error unknown (too few figures to hold one out)"
        held = (
            "cross-validated on the corpus"
            if self.source == "measured"
            else "leave-one-out on the figures"
        )
        return f"{cv['within_15']:.0%} within +-{WITHIN:.0%}, median error {cv['median_abs']:.0%} ({held})"


def _cpu_precision(precision: str) -> str:
    """float16 and dynamic-range models compute in float32 on CPUs."""
    return "float32" if precision in ("float16", "dynamic") else precision


def profile_dir() -> Path:
    if os.environ.get("EDGECNN_PROFILE_DIR"):
        return Path(os.environ["EDGECNN_PROFILE_DIR"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "edgecnn" / "profiles"


def load_profile(path: str | os.PathLike) -> Profile:
    p = Path(path)
    try:
        raw = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise BadInput(f"latency profile {p} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"latency profile {p} is not readable JSON ({type(e).__name__})") from None
    return Profile.from_dict(raw, where=str(p))


def measured_profile(device: str, expect_arch: str | None = None) -> Profile | None:
    """The user's measured profile of `device`, or None (with a warning when one is there
    but unusable: corrupt, from another version, for another architecture)."""
    p = profile_dir() / f"{device}.json"
    if not p.is_file():
        return None
    try:
        prof = load_profile(p)
    except BadInput as e:
        warnings.warn(f"{e}; using the published figures instead", RuntimeWarning, stacklevel=2)
        return None
    if expect_arch and prof.arch != expect_arch:
        warnings.warn(
            f"{p} was measured on {prof.arch}, this is {expect_arch}; using the published figures instead",
            RuntimeWarning, stacklevel=2,
        )  # fmt: skip
        return None
    return prof


def profile_for(device: str, runs_here: bool, path: str | os.PathLike | None = None) -> Profile:
    """The profile an estimate for `device` stands on: --profile, else the user's measured
    one, else the published figures."""
    from edgecnn.bench.published import published_profile

    if path:
        prof = load_profile(path)
        if runs_here and prof.arch != platform.machine():
            raise BadInput(
                f"profile {path} is for {prof.arch}; this machine is {platform.machine()}"
            )
        return prof
    found = measured_profile(device, platform.machine() if runs_here else None)
    return found or published_profile(device)
