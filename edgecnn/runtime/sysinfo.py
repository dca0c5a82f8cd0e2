"""What can disturb a latency figure, read where the machine exposes it (device side).

CPU frequency governor and current frequency (cpufreq in /sys), temperature (thermal
zones), throttling (`vcgencmd get_throttled` on a Raspberry Pi), the load average and
the core count. Each field is None where this machine does not say; nothing here fails.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")
THERMAL = Path("/sys/class/thermal")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _number(text: str | None, scale: float = 1.0) -> float | None:
    try:
        return float(text) / scale if text is not None else None
    except ValueError:
        return None


def _temperature_c() -> float | None:
    """The hottest CPU-ish thermal zone, in degrees C."""
    temps = []
    for zone in sorted(THERMAL.glob("thermal_zone*")):
        t = _number(_read(zone / "temp"), 1000.0)
        if t is not None and -40 < t < 150:
            temps.append(t)
    return max(temps) if temps else None


def _throttled() -> str | None:
    """vcgencmd's throttle bits on a Pi ("0x0": never throttled), else None."""
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "get_throttled"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().split("=", 1)[-1] or None


def system_state() -> dict[str, Any]:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "governor": _read(CPUFREQ / "scaling_governor"),
        "cpu_mhz": _number(_read(CPUFREQ / "scaling_cur_freq"), 1000.0),
        "temperature_c": _temperature_c(),
        "throttled": _throttled(),
        "load_avg": [round(v, 2) for v in load] if load else None,
    }


def disturbances(state: dict[str, Any]) -> list[str]:
    """Plain-words reasons to distrust a figure taken in this state."""
    out = []
    if state.get("governor") not in (None, "performance"):
        out.append(f"CPU governor is {state['governor']!r} (not 'performance'): clocks may vary")
    load = state.get("load_avg")
    cpus = state.get("cpus") or 1
    if load and load[0] > 0.5 * cpus:
        out.append(f"load average {load[0]:.2f} on {cpus} cores: other work shares the CPU")
    if state.get("throttled") not in (None, "0x0"):
        out.append(f"the board reports throttling ({state['throttled']})")
    if (state.get("temperature_c") or 0) > 80:
        out.append(f"CPU at {state['temperature_c']:.0f} C: near the throttling point")
    return out
