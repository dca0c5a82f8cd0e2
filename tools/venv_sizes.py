"""How much each install of edgecnn weighs: a fresh venv per extra, its size on disk.

    python tools/venv_sizes.py                     # base, device, device+onnx, device+video, ...
    python tools/venv_sizes.py --extras device train --json

Builds the wheel from this checkout once (no isolated build env to download), then for
every extra makes a venv without system site-packages, installs `wheel[extra]` into it and
sums the file sizes under the venv (what the SD card of a Pi loses). Prints the largest
packages too, so a change in what an extra pulls in shows up. Needs the package index
(or a warm pip cache); takes about a minute per extra, several for `train`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_EXTRAS = ["", "device", "device,onnx", "device,video", "device,onnx,video"]


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(REPO), "-w", str(out)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return next(out.glob("edgecnn-*.whl"))


def measure(wheel: Path, extra: str, root: Path) -> dict:
    venv = root / f"venv-{extra.replace(',', '-') or 'base'}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    empty = tree_bytes(venv)
    spec = f"{wheel}[{extra}]" if extra else str(wheel)
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if pip.returncode != 0:
        return {"extra": extra or "(base)", "error": pip.stderr.strip().splitlines()[-1]}
    site = next((venv / "lib").glob("python*/site-packages"))
    packages = {p.name: tree_bytes(p) for p in site.iterdir() if p.is_dir()}
    largest = sorted(packages.items(), key=lambda kv: -kv[1])[:6]
    total = tree_bytes(venv)
    return {
        "extra": extra or "(base)",
        "venv_mb": round(total / 1e6, 1),
        "installed_mb": round((total - empty) / 1e6, 1),
        "largest": [{"package": k, "mb": round(v / 1e6, 1)} for k, v in largest],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extras", nargs="*", default=DEFAULT_EXTRAS, help="'' is the base install")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgecnn-venvs-") as tmp:
        root = Path(tmp)
        wheel = build_wheel(root / "wheels")
        rows = []
        for extra in args.extras:
            rows.append(measure(wheel, extra, root))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| install | venv size | largest packages |\n|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| `{r['extra']}` | failed: {r['error']} | |")
            continue
        big = ", ".join(f"{p['package']} {p['mb']:.0f} MB" for p in r["largest"][:4])
        print(f"| `{r['extra']}` | {r['venv_mb']:.0f} MB | {big} |")


if __name__ == "__main__":
    main()
