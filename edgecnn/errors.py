"""Errors the CLI turns into one-line messages and exit codes (no TensorFlow here)."""

from __future__ import annotations


class EdgeCNNError(Exception):
    """A user-facing problem: bad input, a missing file, a failing tool.

    `exit_code` follows the CLI convention: 2 for bad input or usage,
    1 for a check that ran and failed.
    """

    exit_code = 2


class BadInput(EdgeCNNError):
    exit_code = 2


class CheckFailed(EdgeCNNError):
    exit_code = 1
