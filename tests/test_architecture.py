"""The rules of ARCHITECTURE.md, checked on the source (tools/code_stats.py does the reading)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cli_helpers import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import code_stats  # noqa: E402


def test_no_import_cycles_lazy_ones_included():
    assert code_stats.import_cycles() == []


def test_the_library_never_imports_the_cli():
    assert code_stats.commands_imported_by_library() == []


def test_format_names_are_compared_only_in_the_registry_and_exporters():
    outside = [
        h for h in code_stats.format_comparisons() if not h.startswith(code_stats.FORMAT_PLACES)
    ]
    assert outside == []


def test_interpreters_are_built_only_in_the_runtime():
    assert code_stats.interpreters_outside_runtime() == []


def test_the_checker_can_fail(tmp_path):
    """The checks see what they look for: a planted cycle, format test and interpreter."""
    pkg = tmp_path / "edgecnn"
    (pkg / "runtime").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from edgecnn import b\n")
    (pkg / "b.py").write_text("import edgecnn.a\nx = 1 if y == 'onnx' else Interpreter()\n")
    code_stats.REPO, old = tmp_path, code_stats.REPO
    try:
        assert code_stats.import_cycles(pkg) == [["edgecnn.a", "edgecnn.b"]]
        assert code_stats.format_comparisons(pkg) == ["edgecnn/b.py:2"]
        assert code_stats.interpreters_outside_runtime(pkg) == ["edgecnn/b.py:2"]
    finally:
        code_stats.REPO = old


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["convert", "m.keras", "--data", "digits", "--out", "o", "--precision", "bogus"],
            "unknown precision",
        ),
        (
            ["convert", "m.keras", "--data", "digits", "--out", "o", "--formats", "tar"],
            "unknown format",
        ),
        (["convert", "m.keras", "--data", "nodata", "--out", "o"], "unknown dataset"),
        (["train", "--arch", "cnn_mnist", "--data", "nodata", "--out", "o"], "unknown dataset"),
        (["bench", "m", "--device", "toaster"], "unknown device"),
    ],
)
def test_bad_flags_are_refused_before_tensorflow_loads(args, message, tmp_path):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['edgecnn', *{args!r}]\n"
        "try:\n    runpy.run_module('edgecnn.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    print('EXIT', e.code, 'tensorflow' in sys.modules)\n"
    )
    import subprocess

    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "EXIT 2 False", r.stdout
    assert run_cli(*args).returncode == 2
