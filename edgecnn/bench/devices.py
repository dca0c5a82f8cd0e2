"""The devices `edgecnn bench --device` knows: how to run on each, how to recognise it.

How fast each one is lives in its latency profile (edgecnn.bench.profiles): measured with
`edgecnn bench --calibrate`, else fitted to published figures (edgecnn.bench.published).
An Edge TPU device runs only int8 models on its TPU; anything else runs on the CPU beside
it (coral-usb: a Pi 4; coral-devboard: its own A53s).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import BadInput


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    threads: int | None  # the thread count it is benchmarked and estimated at
    backend: str = "auto"  # runtime backend for "on that device" runs
    edgetpu: bool = False
    cpu_fallback: str | None = None  # device whose CPU runs what the accelerator cannot
    accelerator_format: str | None = None  # artifacts of this format run on its accelerator


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device("host", "this machine", os.cpu_count()),
        Device("pi4", "Raspberry Pi 4 (4x Cortex-A72 @ 1.5-1.8 GHz)", 4),
        Device("pi5", "Raspberry Pi 5 (4x Cortex-A76 @ 2.4 GHz)", 4),
        Device("pi-zero2", "Raspberry Pi Zero 2 W (4x Cortex-A53 @ 1.0 GHz)", 4),
        Device(
            "coral-usb",
            "Coral USB Accelerator (Edge TPU) on a Pi 4",
            1,
            "edgetpu",
            True,
            "pi4",
            "edgetpu",
        ),
        Device(
            "coral-devboard",
            "Coral Dev Board (Edge TPU + 4x Cortex-A53 @ 1.5 GHz)",
            1,
            "edgetpu",
            True,
            "coral-devboard-cpu",
            "edgetpu",
        ),  # fmt: skip
        # Not user-selectable: the Dev Board's own CPU, for models the Edge TPU cannot run.
        Device("coral-devboard-cpu", "Coral Dev Board CPU (4x Cortex-A53 @ 1.5 GHz)", 4),
    )
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
