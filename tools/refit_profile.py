"""Refit a measured latency profile from the measurements kept beside it, without measuring.

`edgecnn bench --calibrate` writes PROFILE.json and PROFILE.measurements.json (every corpus
artifact's timings with its operators). When the latency model changes (a new cost, another
SIMD tile), this fits the same measurements again, so old and new models can be compared on
the same numbers and a device need not be calibrated again:

    python tools/refit_profile.py ~/.config/edgecnn/profiles/host.json
    python tools/refit_profile.py host.json --out host_refit.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit 2 (the CLI's convention)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    from edgecnn.bench.calibrate import fit_profile
    from edgecnn.bench.profiles import load_profile
    from edgecnn.errors import BadInput
    from edgecnn.fsutil import atomic_write_text
    from edgecnn.manifest import now_iso
    from edgecnn.tables import format_table

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("profile", type=Path)
    ap.add_argument("--out", type=Path, help="where to write it (default: over PROFILE)")
    a = ap.parse_args()
    try:
        prof = load_profile(a.profile)
    except BadInput as e:
        fail(str(e))
    raw = a.profile.with_suffix(".measurements.json")
    if prof.source != "measured" or not raw.is_file():
        fail(f"{a.profile}: no measurements beside it ({raw.name}) to refit")
    try:
        rows = json.loads(raw.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"{raw}: not readable JSON ({type(e).__name__})")
    if any("ops" not in r for r in rows if "file" in r and "error" not in r):
        fail(f"{raw}: measurements without their operators (an older edgecnn)")
    models, failed = fit_profile(rows)
    # Keys the calibration never measured stay named; the rest is what this fit found.
    kept = {k: v for k, v in prof.failed.items() if k not in models and k not in failed}
    prof.models, prof.failed = models, {**kept, **failed}
    prof.basis = f"{prof.basis.split(' (refitted')[0]} (refitted on {now_iso()[:10]})"
    out = a.out or a.profile
    prof.save(out)
    if a.out:
        atomic_write_text(out.with_suffix(".measurements.json"), raw.read_text())
    table = [
        {"model": k, "tile": m.tile, "variants": len(m.variants), **m.cv} for k, m in models.items()
    ]
    print(format_table(table, ["model", "tile", "variants", "median_abs", "p90_abs", "within_15"]))
    print(f"refitted {out}: {prof.basis}")


if __name__ == "__main__":
    main()
