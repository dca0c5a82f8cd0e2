"""`edgecnn retrain`: fine-tune a deployed model on new labels; ship only if it is better."""

from __future__ import annotations

import sys

import click

from edgecnn.commands.common import emit, handle_errors
from edgecnn.quiet import quiet_tensorflow


@click.command(
    "retrain",
    epilog="""\b
Examples:
  edgecnn retrain build/digits --add folder:captures/labelled --out build/digits-2
  edgecnn retrain build/digits --add folder:captures/labelled --new-classes \\
      --epochs 8 --out build/digits-3 --json

\b
Fine-tunes BUILD_OR_RUN's Keras source on its own training data (same splits)
plus the new labels, converts with the same build settings, then gates: on the
old test split the new build may lose at most --max-drop points of top-1, and
on the held-out labels it must be better than the old build (exact McNemar
test, p <= --alpha). OUT is written either way, with the verdict in its
manifest; deploy refuses a build that failed. Exit 0: passed; 1: the gate
failed; 2: bad input.""",
)
@click.argument("build_or_run", type=click.Path(file_okay=False))
@click.option("--add", "add", multiple=True, required=True,
              help="New labels, folder:DIR (one sub-folder per class); repeatable.")  # fmt: skip
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The new build.")
@click.option("--data", default=None, help="The old training data, if the manifest lacks it.")
@click.option("--epochs", default=5, show_default=True, type=int)
@click.option("--lr", "learning_rate", default=5e-4, show_default=True, type=float)
@click.option("--holdout", default=0.25, show_default=True, type=float,
              help="Fraction of each class's labels kept out of training, for the gate.")  # fmt: skip
@click.option("--repeat", default=None, type=int,
              help="Times the new training images are repeated (default: about a third of the mix).")  # fmt: skip
@click.option("--new-classes", is_flag=True,
              help="Accept labels for classes the model lacks (widens and retrains the head).")  # fmt: skip
@click.option("--artifact", default=None,
              help="Artifact the gate compares (default: the one serve runs, int8 TFLite).")  # fmt: skip
@click.option("--max-drop", default=1.0, show_default=True, type=float,
              help="Points of top-1 the old test split may lose (parity's threshold).")  # fmt: skip
@click.option("--alpha", default=0.05, show_default=True, type=float,
              help="Significance the held-out gain must reach.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
@handle_errors
def command(build_or_run: str, add: tuple[str, ...], out: str, data: str | None, epochs: int,
            learning_rate: float, holdout: float, repeat: int | None, new_classes: bool,
            artifact: str | None, max_drop: float, alpha: float, seed: int, as_json: bool,
            quiet: bool) -> None:  # fmt: skip
    """Fine-tune BUILD_OR_RUN on new labels, rebuild it, and gate it against the old build."""
    from edgecnn.errors import CheckFailed
    from edgecnn.retrain import RetrainOptions, plan, retrain
    from edgecnn.retrain.report import text
    from edgecnn.retrain.run import as_jsonable

    opts = RetrainOptions(add=list(add), data=data, epochs=epochs, learning_rate=learning_rate,
                          holdout=holdout, repeat=repeat, new_classes=new_classes, artifact=artifact,
                          max_drop=max_drop, alpha=alpha, seed=seed)  # fmt: skip
    p = plan(build_or_run, out, opts)  # every bad argument fails here, before TensorFlow

    def progress(msg: str) -> None:
        if not (quiet or as_json):
            click.echo(f"... {msg}", err=True)

    quiet_tensorflow()
    report = retrain(p, progress)
    emit(as_jsonable(report), as_json, text(report))
    sys.stdout.flush()
    if not report["gate"]["passed"]:
        raise CheckFailed(f"the gate failed: {'; '.join(report['gate']['reasons'])}")
