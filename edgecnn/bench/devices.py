"""Device profiles: how to run on each target, how to recognise it, how fast it is.

The throughput figures calibrate the estimate mode (`edgecnn bench --device pi4`
away from a Pi and without `--host`). Each device has one *anchor*: the public
latency of int8 MobileNetV2-224 on it. Our own MAC counter gives that network
301,292,992 MACs in 67 TFLite ops (`edgecnn.runtime.macs` on a Keras
MobileNetV2(alpha=1.0, 224) converted to full-int8), so

    effective int8 MAC/s = MNV2_MACS / (anchor_ms - fixed_ms - MNV2_OPS * op_us / 1000)

Sources of the anchors:
  [coral]  coral.ai/docs/edgetpu/benchmarks, table 1 "Time per inference":
           MobileNet v2 (224x224): desktop CPU (one Xeon Gold 6154 @ 3.0 GHz) 51 ms,
           USB Accelerator (USB 3.0) 2.6 ms, embedded CPU (quad Cortex-A53 @ 1.5 GHz,
           NXP i.MX 8M) 122 ms, Dev Board with Edge TPU 2.6 ms.
  [pi4]    Raspberry Pi 4, 64-bit OS, C++ TFLite: quantized MobileNet V2 ~22 ms/frame
           (community benchmark figure, Q-engineering / Pi forums).
  [pi5]    Raspberry Pi Ltd, Pi 5 launch: "a 2-3x increase in CPU performance" over
           Pi 4 -> we take 2.5x, i.e. 8.8 ms.
  [zero2]  Pi Zero 2 W: quad Cortex-A53 @ 1.0 GHz. Derived, not measured: the [coral]
           embedded-CPU figure (A53 @ 1.5 GHz, 122 ms) scaled by clock -> 183 ms.
Assumptions (not from a public figure, stated so they can be corrected):
  * float32 runs FLOAT_FACTOR = 2x slower than int8 on CPUs (LiteRT's docs claim
    int8 brings 2-4x; XNNPACK narrowed the gap); float16 and dynamic-range
    models execute in float32 on CPUs.
  * per-op interpreter overhead `op_us` and per-invoke fixed cost `fixed_ms`
    (USB transfer for the accelerator), which dominate tiny models. The CPU
    values come from our own measurement of an 11-op digits CNN on the x86 host
    (LiteRT 2.3 + XNNPACK: ~7 us per invoke -> 0.5 us/op, 3 us fixed), scaled
    by each board's anchor ratio to a desktop CPU (roughly 4x for a Pi 4).
  * The host anchor (coral.ai's desktop CPU) predates XNNPACK; LiteRT 2.3 on
    this machine runs MobileNetV2-224 int8 ~3-4x faster, so host estimates are
    pessimistic for large models (see the closing note of issue 4).
  * An Edge TPU device runs only int8 models; others fall back to its host CPU
    (coral-usb: a Pi 4; coral-devboard: its A53s).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import BadInput

MNV2_MACS = 301_292_992
MNV2_OPS = 67
FLOAT_FACTOR = 2.0


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    threads: int | None  # None: the runtime's default (all cores for host)
    backend: str  # runtime backend for "on that device" runs
    prefer: str  # artifact preference when the build has several
    anchor_ms: float  # int8 MobileNetV2-224 latency
    anchor_source: str
    op_us: float = 5.0
    fixed_ms: float = 0.02
    edgetpu: bool = False
    cpu_fallback: str | None = None  # device whose CPU runs what the accelerator cannot
    accelerator_format: str | None = None  # artifacts of this format run on its accelerator

    def int8_macs_per_s(self) -> float:
        compute_ms = self.anchor_ms - self.fixed_ms - MNV2_OPS * self.op_us / 1000.0
        return MNV2_MACS / (compute_ms / 1000.0)


DEVICES: dict[str, Device] = {
    "host": Device(
        "host",
        "this machine (x86-64/arm64 desktop or server CPU)",
        os.cpu_count(),
        "auto",
        "int8",
        51.0,
        "coral.ai benchmarks: desktop CPU, MobileNet v2 224, 51 ms",
        op_us=0.5,
        fixed_ms=0.003,
    ),
    "pi4": Device(
        "pi4",
        "Raspberry Pi 4 (4x Cortex-A72 @ 1.5-1.8 GHz)",
        4,
        "auto",
        "int8",
        22.0,
        "Raspberry Pi 4 64-bit TFLite: quantized MobileNet V2 ~22 ms",
        op_us=2.0,
        fixed_ms=0.01,
    ),
    "pi5": Device(
        "pi5",
        "Raspberry Pi 5 (4x Cortex-A76 @ 2.4 GHz)",
        4,
        "auto",
        "int8",
        8.8,
        "Pi 4 figure / 2.5 (Raspberry Pi Ltd: Pi 5 has 2-3x the CPU performance)",
        op_us=1.0,
    ),
    "pi-zero2": Device(
        "pi-zero2",
        "Raspberry Pi Zero 2 W (4x Cortex-A53 @ 1.0 GHz)",
        4,
        "auto",
        "int8",
        183.0,
        "coral.ai embedded CPU (A53 @ 1.5 GHz) 122 ms scaled to 1.0 GHz",
        op_us=4.0,
        fixed_ms=0.015,
    ),
    "coral-usb": Device(
        "coral-usb",
        "Coral USB Accelerator (Edge TPU) on a Pi 4 / PC",
        1,
        "edgetpu",
        "edgetpu",
        2.6,
        "coral.ai benchmarks: USB Accelerator, MobileNet v2 224, 2.6 ms",
        op_us=0.0,
        fixed_ms=0.3,
        edgetpu=True,
        cpu_fallback="pi4",
        accelerator_format="edgetpu",
    ),
    "coral-devboard": Device(
        "coral-devboard",
        "Coral Dev Board (Edge TPU + 4x Cortex-A53 @ 1.5 GHz)",
        1,
        "edgetpu",
        "edgetpu",
        2.6,
        "coral.ai benchmarks: Dev Board with Edge TPU, MobileNet v2 224, 2.6 ms",
        op_us=0.0,
        fixed_ms=0.2,
        edgetpu=True,
        cpu_fallback="coral-devboard-cpu",
        accelerator_format="edgetpu",
    ),
    # Not user-selectable: the Dev Board's own CPU, for models the Edge TPU cannot run.
    "coral-devboard-cpu": Device(
        "coral-devboard-cpu",
        "Coral Dev Board CPU (4x Cortex-A53 @ 1.5 GHz)",
        4,
        "auto",
        "int8",
        122.0,
        "coral.ai benchmarks: embedded CPU, MobileNet v2 224, 122 ms",
        op_us=3.0,
        fixed_ms=0.015,
    ),
}
ALIASES = {"pi": "pi4", "pizero2": "pi-zero2", "pi-zero-2": "pi-zero2", "coral": "coral-usb"}
DEVICE_NAMES = [n for n in DEVICES if not n.endswith("-cpu")]


def get_device(name: str) -> Device:
    key = ALIASES.get(name, name)
    if key not in DEVICE_NAMES:
        raise BadInput(
            f"unknown device {name!r}; choose one of: {', '.join(DEVICE_NAMES)} (pi = pi4)"
        )
    return DEVICES[key]


def _read(path: str) -> str:
    try:
        return Path(path).read_text("utf-8", "replace").replace("\x00", "")
    except OSError:
        return ""


def _coral_usb_plugged() -> bool:
    """Edge TPU USB ids: 1a6e:089a before the first model upload, 18d1:9302 after."""
    for dev in Path("/sys/bus/usb/devices").glob("*"):
        ids = (_read(str(dev / "idVendor")).strip(), _read(str(dev / "idProduct")).strip())
        if ids in (("1a6e", "089a"), ("18d1", "9302")):
            return True
    return False


def detect_board() -> str | None:
    """Which profile's hardware this is, from the device tree (None: a generic host)."""
    model = _read("/proc/device-tree/model")
    if "Raspberry Pi 5" in model:
        return "pi5"
    if "Raspberry Pi 4" in model:
        return "pi4"
    if "Raspberry Pi Zero 2" in model:
        return "pi-zero2"
    if "Coral" in model or "Phanbell" in model:
        return "coral-devboard"
    return None


def runs_here(device: Device) -> bool:
    """True when benchmarking `device` means simply running on this machine."""
    if device.name == "host":
        return True
    if device.name == "coral-usb":
        return _coral_usb_plugged()
    return detect_board() == device.name
