"""Shared CLI plumbing: error handling and output (tables come from `edgecnn.tables`)."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from edgecnn.errors import EdgeCNNError


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
            if isinstance(e, ModuleNotFoundError):  # an optional package: name its extra
                from edgecnn.optional import missing_message

                if msg := missing_message(e.name):
                    fail(msg, 2)
            text = str(e).strip().splitlines()
            detail = text[0] if text else ""
            fail(f"{type(e).__name__}: {detail} (set EDGECNN_DEBUG=1 for a traceback)", 2)

    return wrapper


def emit(data: Any, as_json: bool, table: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif table is not None:
        click.echo(table)
