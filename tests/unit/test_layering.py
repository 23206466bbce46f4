"""Imports point one way: schemas ← gateway core ← adapters. Only the wiring modules import adapters."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The composition root, the HTTP app factory, the arq worker, the CLI and its command bodies choose adapters.
WIRING = {"gateway/bootstrap.py", "gateway/cli.py", "gateway/commands.py", "gateway/demo.py", "gateway/jobs.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_does_not_import_adapters() -> None:
    offenders = []
    for path in sorted((REPO / "gateway").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in WIRING:
            continue
        bad = sorted(n for n in _imports(path) if n == "adapters" or n.startswith("adapters."))
        if bad:
            offenders.append(f"{rel}: {bad}")
    assert offenders == []


def test_schemas_import_nothing_of_ours() -> None:
    for path in sorted((REPO / "schemas").rglob("*.py")):
        ours = [n for n in _imports(path) if n.split(".")[0] in ("gateway", "adapters")]
        assert ours == [], path
