"""The `edgecnn` entry point: one thin command per verb, no logic here."""

from __future__ import annotations

import importlib

import click

from edgecnn import __version__

# verb -> module in edgecnn.commands holding a click command named `command`.
VERBS = {
    "train": "train",
    "inspect": "inspect",
    "convert": "convert",
    "predict": "predict",
    "bench": "bench",
    "parity": "parity",
    "serve": "serve",
    "deploy": "deploy",
    "collect": "collect",
    "label": "label",
    "retrain": "retrain",
    "run": "run",
    "tune": "tune",
}


class LazyGroup(click.Group):
    """Import a verb's module only when it runs, so `predict` never loads TensorFlow."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [v for v in VERBS if self._load(v) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        try:
            module = importlib.import_module(f"edgecnn.commands.{VERBS[name]}")
        except ModuleNotFoundError as e:
            if e.name == f"edgecnn.commands.{VERBS[name]}":
                return None  # verb not built in this version
            raise
        return module.command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecnn")
def main() -> None:
    """Train, prune, quantize, convert, check, bench and serve Keras image classifiers.

    \b
    Example:
      edgecnn run models/digits_cnn.toml
    """


if __name__ == "__main__":
    main()
