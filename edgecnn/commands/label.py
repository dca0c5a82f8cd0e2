"""`edgecnn label`: label captures in a local web page (127.0.0.1), one key per class."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from edgecnn.commands.common import emit, handle_errors
from edgecnn.tables import format_table


@click.command(
    "label",
    epilog="""\b
Examples:
  edgecnn label captures/                       # classes from the captures' top-k
  edgecnn label captures/ --model build/digits --port 8090
  edgecnn retrain build/digits --add folder:captures/labelled --out build/digits2

\b
Open the printed address. Each capture shows the model's guess and score; a
class key (or button) moves it into DIR/labelled/CLASS/, x moves it into
DIR/discarded/, z undoes the last answer. Answers are saved as they are given
(a journal, DIR/.label-journal.jsonl, replayed at start). Ctrl-C stops and
prints how many images each class has.""",
)
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--model", type=click.Path(), help="Build or training dir whose labels to offer.")
@click.option("--classes", help="Comma-separated class names (instead of --model).")
@click.option(
    "--port",
    default=8090,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port on 127.0.0.1 (0: any free port).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the closing summary as JSON.")
@handle_errors
def command(folder: str, model: str | None, classes: str | None, port: int, as_json: bool) -> None:
    """Label the captures in FOLDER (what `edgecnn collect` fetched)."""
    from edgecnn.label import LabelStore, resolve_classes
    from edgecnn.label.server import LabelServer

    if model and classes:
        raise click.UsageError("give --model or --classes, not both")
    store = LabelStore(folder, resolve_classes(folder, model, classes))
    server = LabelServer(store, port)
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server.start()
    pending = store.state()["pending"]
    click.echo(f"labelling {pending} capture(s) in {folder} at {server.url} (Ctrl-C to stop)",
               err=True)  # fmt: skip
    while not stop.wait(0.2):
        pass
    server.shutdown()
    server.server_close()
    state = store.state()
    store.close()
    rows = [
        {"class": c["name"], "key": c["key"] or "", "labelled": c["count"]}
        for c in state["classes"]
    ]
    summary = {"folder": folder, "labelled": state["labelled"], "discarded": state["discarded"],
               "pending": state["pending"], "classes": rows}  # fmt: skip
    emit(
        summary,
        as_json,
        format_table(rows, ["class", "key", "labelled"])
        + f"\n{state['labelled']} labelled, {state['discarded']} discarded, {state['pending']} to go",
    )
