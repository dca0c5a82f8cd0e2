"""Accuracy parity: is every converted artifact still the model that was trained?

The float Keras reference (`model.keras` in the build directory) and every artifact in
the manifest are evaluated on the same samples. The reference sees the dataset's pixels
(0-255, what it was trained on); each artifact runs through `edgecnn.runtime.Runner`,
i.e. with the preprocessing the manifest tells the device to use, so a manifest that
disagrees with the model shows up here, not on the device.

    evaluate.py  the measurement, metrics and verdicts
    diagnose.py  why a failing artifact fails: known shapes in plain words, per-layer error
    fix.py       `--fix`: re-quantize a failing int8 artifact with its worst layers in float
    report.py    table rows, findings lines, Markdown and JSON
    run.py       `run_parity`: all of the above, as the CLI and `edgecnn run` use it
"""

from edgecnn.parity.data import check_build, load_eval_data, stratified_limit
from edgecnn.parity.evaluate import Thresholds, compare, evaluate, verdict
from edgecnn.parity.report import (
    DROP_NOTE,
    TABLE_COLUMNS,
    findings_lines,
    markdown,
    table_rows,
    table_text,
)
from edgecnn.parity.run import run_parity

__all__ = [
    "DROP_NOTE",
    "TABLE_COLUMNS",
    "Thresholds",
    "check_build",
    "compare",
    "evaluate",
    "findings_lines",
    "load_eval_data",
    "markdown",
    "run_parity",
    "stratified_limit",
    "table_rows",
    "table_text",
    "verdict",
]
