"""The layers import downwards only: `domain/` is pure (no I/O libraries, no other layer), and
`db/` records nothing itself (no metrics, no services), so no import loop runs through it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "state_manager"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


FORBIDDEN = {
    "domain": (
        "fastapi",
        "beanie",
        "motor",
        "pymongo",
        "state_manager.db",
        "state_manager.services",
        "state_manager.metrics",
        "state_manager.api",
    ),
    "db": ("state_manager.metrics", "state_manager.services", "state_manager.api", "fastapi"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    found = {
        f"{path.name} imports {name}"
        for path in sorted((PACKAGE / layer).glob("*.py"))
        for name in _imports(path)
        if name.startswith(FORBIDDEN[layer])
    }
    assert not found, sorted(found)
