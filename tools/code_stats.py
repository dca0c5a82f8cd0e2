"""The shape of the code: line counts per package, the longest functions, import cycles,
format-name comparisons, interpreter construction and CLI imports outside their places.

    python tools/code_stats.py            # a report
    python tools/code_stats.py --json

tests/test_architecture.py asserts the rules with these functions, so the rules of
ARCHITECTURE.md stay true as the code grows.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "edgecnn"
FORMAT_NAMES = {"tflite", "onnx", "edgetpu"}
# Where knowing format names is the point: the registry and the exporters.
FORMAT_PLACES = ("edgecnn/runtime/formats.py", "edgecnn/export/")
INTERPRETER_CALLS = ("Interpreter", "InferenceSession", "interpreter_cls")


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for p in sorted(package.rglob("*.py")):
        rel = p.relative_to(package.parent).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    return out


def line_counts(package: Path = PACKAGE) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for p in package.rglob("*.py"):
        rel = p.relative_to(package)
        counts[rel.parts[0] if len(rel.parts) > 1 else "(top level)"] += len(
            p.read_text().splitlines()
        )
    return dict(sorted(counts.items()))


def longest_functions(package: Path = PACKAGE, n: int = 5) -> list[tuple[int, str]]:
    found = []
    for p in package.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append(
                    (node.end_lineno - node.lineno + 1, f"{p.relative_to(REPO)}:{node.name}")
                )
    return sorted(found, reverse=True)[:n]


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [
            e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        ]
    return []


def format_comparisons(package: Path = PACKAGE) -> list[str]:
    """file:line of every comparison against a format name literal."""
    hits = []
    for p in package.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Compare) and any(
                set(_strings(c)) & FORMAT_NAMES for c in [node.left, *node.comparators]
            ):
                hits.append(f"{p.relative_to(REPO)}:{node.lineno}")
    return hits


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
            skip.update(id(x) for b in n.body for x in ast.walk(b))
    return skip


def _imported(module: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """edgecnn modules `module` imports anywhere (inside functions too, not for type checks)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names} & set(mods)
            out |= subs or ({base} & set(mods))
            if len(subs) < len(node.names) and base in mods:
                out.add(base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names} & set(mods)
    out.discard(module)
    return out


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    mods = modules(package)
    return {m: _imported(m, p, mods) for m, p in mods.items()}


def import_cycles(package: Path = PACKAGE) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = import_graph(package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def commands_imported_by_library(package: Path = PACKAGE) -> list[str]:
    graph = import_graph(package)
    return sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if not m.startswith("edgecnn.commands") and m != "edgecnn.cli"
        for t in targets
        if t.startswith("edgecnn.commands")
    )


def interpreters_outside_runtime(package: Path = PACKAGE) -> list[str]:
    hits = []
    for p in package.rglob("*.py"):
        if "runtime" in p.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name in INTERPRETER_CALLS:
                    hits.append(f"{p.relative_to(REPO)}:{node.lineno}")
    return hits


def report() -> dict[str, object]:
    comps = format_comparisons()
    return {
        "lines": line_counts(),
        "total_lines": sum(line_counts().values()),
        "longest_functions": longest_functions(),
        "format_comparisons": dict(Counter(h.rsplit(":", 1)[0] for h in comps)),
        "import_cycles": import_cycles(),
        "library_imports_commands": commands_imported_by_library(),
        "interpreters_outside_runtime": interpreters_outside_runtime(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", action="store_true")
    r = report()
    if ap.parse_args().json:
        print(json.dumps(r, indent=2))
        return
    for pkg, n in r["lines"].items():  # type: ignore[union-attr]
        print(f"{pkg:14s} {n:6d}")
    print(f"{'total':14s} {r['total_lines']:6d}")
    print("longest functions:")
    for n, name in r["longest_functions"]:  # type: ignore[union-attr]
        print(f"  {n:4d} lines  {name}")
    for key in (
        "format_comparisons",
        "import_cycles",
        "library_imports_commands",
        "interpreters_outside_runtime",
    ):
        print(f"{key}: {r[key] or 'none'}")


if __name__ == "__main__":
    main()
