"""`edgecnn parity`: check every artifact in a build directory against its float model."""

from __future__ import annotations

import sys

import click

from edgecnn.commands.common import emit, handle_errors
from edgecnn.errors import CheckFailed


@click.command("parity")
@click.argument("build_dir", type=click.Path())
@click.option(
    "--data",
    "data_name",
    required=True,
    help="Dataset with the model's classes (digits, mnist5k, fashion_mnist, folder:PATH, ...).",
)
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train"]),
    default="test",
    show_default=True,
    help="Which split to evaluate (the training run's own split settings are reused).",
)
@click.option(
    "--max-drop",
    type=float,
    default=1.0,
    show_default=True,
    help="Largest allowed top-1 drop vs the float model, in points.",
)
@click.option(
    "--min-agreement",
    type=float,
    default=0.98,
    show_default=True,
    help="Smallest allowed fraction of images whose top-1 matches the float model's.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    default=None,
    help="Markdown report to write (JSON beside it, confusion PNGs in parity/ next to it). "
    "Default: BUILD_DIR/parity.md.",
)
@click.option("--limit", type=int, default=None, help="Evaluate a stratified subset of N images.")
@click.option(
    "--fix",
    is_flag=True,
    help="If an int8 artifact fails, re-convert it with its worst layers kept in float and keep "
    "the result only if it passes (reports the size and latency cost).",
)
@click.option(
    "--other-data",
    is_flag=True,
    help="DATA is meant to be another source than the model was trained on (e.g. digits for "
    "an MNIST model): evaluate it and say so in the report instead of refusing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
@handle_errors
def command(
    build_dir: str,
    data_name: str,
    split: str,
    max_drop: float,
    min_agreement: float,
    report: str | None,
    limit: int | None,
    fix: bool,
    other_data: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Evaluate the float model and every artifact of BUILD_DIR on the same images.

    Per artifact: top-1/top-5, per-class accuracy, agreement with the float
    model's top-1, mean KL divergence, max probability difference, a confusion
    PNG and a verdict. Failing int8 artifacts get a diagnosis: recognised causes
    in plain words and the layers with the largest quantization error.
    Exit 0 when every artifact passes, 1 when one fails, 2 on bad input
    (no manifest, sha256 mismatch, dataset classes differ from the labels, or DATA is
    another source than the training data's without --other-data).

    \b
    Examples:
      edgecnn parity build/digits --data digits
      edgecnn parity build/fmnist --data fashion_mnist --max-drop 0.5 --report parity.md
      edgecnn parity build/fmnist --data fashion_mnist --fix --json
    """
    from edgecnn.errors import BadInput
    from edgecnn.parity import Thresholds, findings_lines, run_parity, table_text

    Thresholds(max_drop, min_agreement).check()  # before TensorFlow loads
    if limit is not None and limit < 1:
        raise BadInput(f"--limit must be positive, got {limit}")
    from edgecnn.parity import check_build

    check_build(build_dir)  # a training dir or a .keras: say so, and to convert it first
    # TensorFlow loads only for the float reference (parity.reference_predict), after the
    # manifest, sha256 and dataset checks: bad input fails fast.

    def progress(msg: str) -> None:
        if not (quiet or as_json):
            click.echo(f"... {msg}", err=True)

    result = run_parity(
        build_dir,
        data_name,
        split=split,
        max_drop=max_drop,
        min_agreement=min_agreement,
        report=report,
        limit=limit,
        fix=fix,
        progress=progress,
        other_data=other_data,
    )
    from edgecnn.parity.report import other_data_line

    lines = [
        f"{result['model']} on {result['data']} {result['split']} ({result['samples']} images, "
        f"{result['seconds']:.1f} s)",
        *([other_data_line(result)] if result.get("other_data") else []),
        table_text(result),
    ]
    found = findings_lines(result)
    if found:
        lines += ["", *found]
    lines += ["", f"report: {result['report']}"]
    emit(result, as_json, "\n".join(lines))
    sys.stdout.flush()
    if not result["passed"]:
        raise CheckFailed("parity failed for " + ", ".join(result["failed"]))
