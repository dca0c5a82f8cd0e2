"""The profiles that ship: devices edgecnn has not measured, fitted to public latency figures.

A device's figures (below, each with its source) are whole-network latencies of networks
edgecnn can rebuild (keras.applications MobileNets and VGG16, its own EfficientNet-Lite0).
For a CPU, the latency of a network is modelled as

    t = s * R(network) + c

where R is a *reference* kernel model (per-operator costs measured on an x86 host by
`edgecnn bench --calibrate`, relative weights only) and (s, c) are fitted to the device's
figures. For the Edge TPU, t = c + a * MACs + b * (weight bytes beyond its 8 MB SRAM):
weights that do not fit on the chip stream over USB on every inference (VGG16's 296 ms).
Each fit reports its leave-one-out error on its own figures: how wrong it was on the one
figure it did not see, in turn for each.

The operators of the published networks and the reference model are data made by
`python tools/fit_published_profiles.py` (edgecnn/bench/data/published_inputs.json);
edit the figures here, then run it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from edgecnn.bench.latency_model import KernelModel, error_summary
from edgecnn.bench.profiles import Profile
from edgecnn.errors import BadInput
from edgecnn.runtime.opgraph import Op

DATA = "published_inputs.json"
SRAM_BYTES = 8 * 1024 * 1024  # Edge TPU on-chip parameter cache
TILE = 8


@dataclass(frozen=True)
class Figure:
    net: str  # a network of tools/fit_published_profiles.py
    precision: str
    threads: int
    ms: float
    source: str


XNNPACK = (
    "XNNPACK README (github.com/google/XNNPACK), Raspberry Pi table, FP32 multi-threaded, Feb 2020"
)
CORAL = "coral.ai/docs/edgetpu/benchmarks, table 1 (time per inference, ms)"
QENG = (
    "Raspberry Pi 4 64-bit OS, C++ TFLite, quantized MobileNet V2 (community figure, Q-engineering)"
)

FIGURES: dict[str, list[Figure]] = {
    "pi4": [
        Figure("mobilenet_v1_224", "float32", 4, 75.0, XNNPACK + ": RPi 4 (BCM2711)"),
        Figure("mobilenet_v2_224", "float32", 4, 44.0, XNNPACK + ": RPi 4 (BCM2711)"),
        Figure("mobilenet_v3_large_224", "float32", 4, 41.0, XNNPACK + ": RPi 4 (BCM2711)"),
        Figure("mobilenet_v3_small_224", "float32", 4, 14.0, XNNPACK + ": RPi 4 (BCM2711)"),
        Figure("mobilenet_v2_224", "int8", 4, 22.0, QENG),
    ],
    # Pi 3+ (quad A53 at 1.4 GHz) figures scaled by 1.4 for the Zero 2 W's A53s at 1.0 GHz,
    # and the i.MX 8M's (quad A53 at 1.5 GHz) int8 figures scaled by 1.5. Derived, not measured.
    "pi-zero2": [
        Figure("mobilenet_v1_224", "float32", 4, 115.0 * 1.4, XNNPACK + ": RPi 3+ x 1.4 (clock)"),
        Figure("mobilenet_v2_224", "float32", 4, 79.0 * 1.4, XNNPACK + ": RPi 3+ x 1.4 (clock)"),
        Figure(
            "mobilenet_v3_large_224", "float32", 4, 67.0 * 1.4, XNNPACK + ": RPi 3+ x 1.4 (clock)"
        ),
        Figure(
            "mobilenet_v3_small_224", "float32", 4, 23.0 * 1.4, XNNPACK + ": RPi 3+ x 1.4 (clock)"
        ),
        Figure("mobilenet_v1_224", "int8", 4, 164.0 * 1.5, CORAL + ": embedded CPU x 1.5 (clock)"),
        Figure("mobilenet_v2_224", "int8", 4, 122.0 * 1.5, CORAL + ": embedded CPU x 1.5 (clock)"),
        Figure("vgg16_224", "int8", 4, 4595.0 * 1.5, CORAL + ": embedded CPU x 1.5 (clock)"),
    ],
    "coral-devboard-cpu": [
        Figure("mobilenet_v1_224", "int8", 4, 164.0, CORAL + ": embedded CPU (quad A53 1.5 GHz)"),
        Figure("mobilenet_v2_224", "int8", 4, 122.0, CORAL + ": embedded CPU (quad A53 1.5 GHz)"),
        Figure("vgg16_224", "int8", 4, 4595.0, CORAL + ": embedded CPU (quad A53 1.5 GHz)"),
    ],
    "host": [
        Figure("mobilenet_v1_224", "int8", 1, 53.0, CORAL + ": desktop CPU (Xeon Gold 6154)"),
        Figure("mobilenet_v2_224", "int8", 1, 51.0, CORAL + ": desktop CPU (Xeon Gold 6154)"),
        Figure("vgg16_224", "int8", 1, 867.0, CORAL + ": desktop CPU (Xeon Gold 6154)"),
    ],
    "coral-usb": [
        Figure("mobilenet_v1_224", "int8", 1, 2.4, CORAL + ": USB Accelerator (USB 3.0)"),
        Figure("mobilenet_v2_224", "int8", 1, 2.6, CORAL + ": USB Accelerator (USB 3.0)"),
        Figure("vgg16_224", "int8", 1, 296.0, CORAL + ": USB Accelerator (USB 3.0)"),
        Figure("densenet121_224", "int8", 1, 20.0, CORAL + ": USB Accelerator (USB 3.0)"),
        Figure("resnet50_299", "int8", 1, 49.0, CORAL + ": USB Accelerator (USB 3.0)"),
    ],
    "coral-devboard": [
        Figure("mobilenet_v1_224", "int8", 1, 2.4, CORAL + ": Dev Board"),
        Figure("mobilenet_v2_224", "int8", 1, 2.6, CORAL + ": Dev Board"),
        Figure("vgg16_224", "int8", 1, 343.0, CORAL + ": Dev Board"),
        Figure("densenet121_224", "int8", 1, 25.0, CORAL + ": Dev Board"),
        Figure("resnet50_299", "int8", 1, 56.0, CORAL + ": Dev Board"),
    ],
}
EDGETPU_DEVICES = ("coral-usb", "coral-devboard")
# Raspberry Pi Ltd at the Pi 5 launch: "a 2-3x increase in CPU performance" over the Pi 4.
PI5_SPEEDUP = 2.5
PI5_SOURCE = "the pi4 fit / 2.5 (Raspberry Pi Ltd: Pi 5 has 2-3x the Pi 4's CPU performance)"
# EfficientNet-Lite README (tensorflow/tpu), Pixel 4 CPU, 4 threads: Lite0 FP32 12 ms, INT8 6.5 ms.
FLOAT_OVER_INT8 = 12.0 / 6.5
FLOAT_SOURCE = (
    "no float figure: the int8 fit x 1.85 (EfficientNet-Lite0 on Pixel 4: FP32 12 ms, INT8 6.5 ms)"
)


class TpuModel:
    """Edge TPU latency: a fixed cost, a cost per MAC, a cost per weight byte off the SRAM."""

    def __init__(self, c: float, per_mac: float, per_offchip_byte: float, cv: dict[str, float]):
        self.c, self.per_mac, self.per_offchip_byte, self.cv = c, per_mac, per_offchip_byte, cv
        self.tile, self.samples = 1, 0

    def predict_ops(self, ops: list[Op]) -> float:
        macs = sum(op.macs for op in ops)
        weights = sum(op.weight_elems for op in ops)  # int8: one byte each
        return self.c + self.per_mac * macs + self.per_offchip_byte * max(0, weights - SRAM_BYTES)

    def op_ms(self, op: Op) -> float:
        return self.per_mac * op.macs

    def to_dict(self) -> dict[str, Any]:
        return {"type": "edgetpu", "c": self.c, "per_mac": self.per_mac,
                "per_offchip_byte": self.per_offchip_byte, "cv": self.cv}  # fmt: skip


@cache
def _inputs() -> dict[str, Any]:
    try:
        text = resources.files("edgecnn.bench").joinpath("data", DATA).read_text("utf-8")
    except (FileNotFoundError, OSError):
        raise BadInput(
            f"edgecnn/bench/data/{DATA} is missing; run tools/fit_published_profiles.py"
        ) from None
    return json.loads(text)


def _ops(net: str, precision: str) -> list[Op]:
    return [Op(*o) for o in _inputs()["networks"][f"{net}/{precision}"]["ops"]]


def _reference(precision: str) -> KernelModel:
    return KernelModel.from_dict(_inputs()["reference"][precision])


def _fit_scale(r: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(s, c) >= 0 of t = s * r + c, on relative error; c = 0 with fewer than 3 figures."""
    from_figures = np.stack([r, np.ones_like(r)], axis=1) if len(r) >= 3 else r[:, None]
    w = from_figures / y[:, None]
    coef, *_ = np.linalg.lstsq(w, np.ones(len(y)), rcond=None)
    coef = np.maximum(coef, 0.0)
    return float(coef[0]), float(coef[1]) if len(coef) > 1 else 0.0


def _leave_one_out(r: np.ndarray, y: np.ndarray, fit: Any, predict: Any) -> dict[str, float]:
    if len(y) < 3:
        return {}
    pred = np.array(
        [predict(fit(np.delete(r, i, 0), np.delete(y, i)), r[i]) for i in range(len(y))]
    )
    return error_summary(pred, y)


def _cpu_model(figs: list[Figure]) -> KernelModel:
    ref = _reference(figs[0].precision)
    r = np.array([ref.predict_ops(_ops(f.net, f.precision)) for f in figs])
    y = np.array([f.ms for f in figs])
    s, c = _fit_scale(r, y)
    cv = _leave_one_out(r, y, _fit_scale, lambda sc, ri: sc[0] * ri + sc[1])
    model = ref.scaled(s, cv)
    model.coef["t0"] = model.coef.get("t0", 0.0) + c
    model.samples = len(figs)
    return model


def _tpu_features(f: Figure) -> np.ndarray:
    net = _inputs()["networks"][f"{f.net}/int8"]
    return np.array([1.0, net["total_macs"], max(0.0, net["weight_bytes"] - SRAM_BYTES)])


def _fit_tpu(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from_scale = x.max(axis=0)
    from_scale[from_scale == 0] = 1.0
    coef, *_ = np.linalg.lstsq((x / from_scale) / y[:, None], np.ones(len(y)), rcond=None)
    return np.maximum(coef, 0.0) / from_scale


def _tpu_model(figs: list[Figure]) -> TpuModel:
    x = np.stack([_tpu_features(f) for f in figs])
    y = np.array([f.ms for f in figs])
    c, a, b = _fit_tpu(x, y)
    cv = _leave_one_out(x, y, _fit_tpu, lambda coef, xi: float(xi @ coef))
    return TpuModel(float(c), float(a), float(b), cv)


def _grouped(figs: list[Figure]) -> dict[tuple[str, int], list[Figure]]:
    out: dict[tuple[str, int], list[Figure]] = {}
    for f in figs:
        out.setdefault((f.precision, f.threads), []).append(f)
    return out


def _basis(device: str, figs: list[Figure]) -> str:
    sources = sorted({f.source.split(":")[0] for f in figs})
    return f"published figures for {device} ({len(figs)}: {'; '.join(sources)})"


@cache
def published_profile(device: str) -> Profile:
    """The shipped profile of `device` (see the module docstring)."""
    if device == "pi5":
        base = published_profile("pi4")
        models = {k: m.scaled(1.0 / PI5_SPEEDUP, {}) for k, m in base.models.items()}
        return Profile("pi5", "aarch64", "published", PI5_SOURCE, "", models)
    if device not in FIGURES:
        raise BadInput(f"no published latency figures for {device}")
    figs = FIGURES[device]
    models: dict[str, Any] = {}
    for (precision, threads), group in _grouped(figs).items():
        model = _tpu_model(group) if device in EDGETPU_DEVICES else _cpu_model(group)
        models[f"tflite/{precision}/t{threads}"] = model
    for key in list(models):
        if (
            key.startswith("tflite/int8/")
            and key.replace("int8", "float32") not in models
            and device not in EDGETPU_DEVICES
        ):
            models[key.replace("int8", "float32")] = models[key].scaled(FLOAT_OVER_INT8, {})
    arch = "x86_64" if device == "host" else "aarch64"
    return Profile(device, arch, "published", _basis(device, figs), "", models)
