"""`edgecnn run RECIPE`: every stage the recipe names, in order, then a summary."""

from __future__ import annotations

import sys

import click

from edgecnn.commands.common import emit, handle_errors
from edgecnn.errors import CheckFailed
from edgecnn.quiet import quiet_tensorflow
from edgecnn.tables import format_table


@click.command("run")
@click.argument("recipe", default="models/digits_cnn.toml", required=False)
@click.option(
    "--out", type=click.Path(file_okay=False), help="Run directory (default: runs/<recipe name>)."
)
@click.option("--stages", help="Comma-separated subset of the recipe's stages, e.g. train,convert.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No Keras progress output.")
@handle_errors
def command(recipe: str, out: str | None, stages: str | None, as_json: bool, quiet: bool) -> None:
    """Run a recipe end to end (train, convert, parity, bench: what it names).

    \b
    Examples:
      edgecnn run                          # the default recipe, models/digits_cnn.toml
      edgecnn run models/mnist5k_cnn.toml --out runs/mnist5k
      edgecnn run models/digits_cnn.toml --stages train
    """
    quiet_tensorflow(import_now=False)
    from edgecnn.recipe import load_recipe, run_recipe

    r = load_recipe(recipe)
    wanted = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    verbose = 0 if (quiet or as_json) else (1 if sys.stdout.isatty() else 2)
    results = run_recipe(r, out or f"runs/{r.name}", wanted, verbose=verbose)
    if as_json:
        emit(results, True)
    else:
        click.echo(f"\nrecipe {r.name}: summary")
        click.echo(format_table(results, ["stage", "status", "seconds", "result"]))
        # Then each stage's own table, in the order the stages ran.
        for x in (x for x in results if x.get("table")):
            click.echo(f"\n[{x['stage']}]\n{x['table']}")
    if any(x["status"] != "ok" for x in results):
        raise CheckFailed(f"stage {results[-1]['stage']} failed: {results[-1]['result']}")
