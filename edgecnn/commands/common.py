"""Shared CLI plumbing: error handling, quiet TensorFlow, tables and JSON output."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import click

from edgecnn.errors import EdgeCNNError


def quiet_tensorflow(import_now: bool = True) -> None:
    """Silence TensorFlow/absl start-up noise before anything imports TensorFlow.

    TF 2.21 logs through absl's C++ logger before `TF_CPP_MIN_LOG_LEVEL` is
    read, so the import itself runs inside `captured_output` (file descriptors 1 and 2).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    if import_now and "tensorflow" not in sys.modules:
        from edgecnn.export.quiet import captured_output

        with captured_output(), contextlib.suppress(ImportError):
            import tensorflow  # noqa: F401  (the caller's own import reports a missing TF)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn known failures into a one-line message and the convention's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgeCNNError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except MemoryError:
            fail("out of memory", 2)
        except Exception as e:  # last resort: never a traceback from the CLI
            if os.environ.get("EDGECNN_DEBUG"):
                raise
            text = str(e).strip().splitlines()
            detail = text[0] if text else ""
            fail(f"{type(e).__name__}: {detail} (set EDGECNN_DEBUG=1 for a traceback)", 2)

    return wrapper


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain aligned text table (no extra dependency for the device side)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
        return str(v)

    grid = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(g[i]) for g in grid)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(g, widths, strict=True)) for g in grid]
    return "\n".join([line, sep, *body])


def emit(data: Any, as_json: bool, table: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif table is not None:
        click.echo(table)
