"""Layers point one way (STYLE.md; docs/architecture.md "Layers"): transports -> service ->
spaces -> cognition -> core -> index / storage / embedding. A lower layer importing a higher
one (even under TYPE_CHECKING) fails here, naming the module and the import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "engram"
# What each layer must not import (everything above it; the leaves also not each other's callers).
FORBIDDEN = {
    "spaces": {"api", "cli", "client", "service"},
    "cognition": {"api", "cli", "client", "service", "spaces"},
    "core": {"api", "cli", "client", "service", "spaces", "cognition"},
    "index": {"api", "cli", "client", "service", "spaces", "cognition", "core"},
    "storage": {"api", "cli", "client", "service", "spaces", "cognition", "core", "index"},
    "embedding": {"api", "cli", "client", "service", "spaces", "cognition", "core", "index", "storage"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """Top-level engram packages a module imports, with the line."""
    rel = path.relative_to(SRC).with_suffix("").parts
    out: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(rel[:-1])[: len(rel) - node.level] if node.level > 1 else list(rel[:-1])
                target = [*base, *(node.module.split(".") if node.module else [])]
            else:
                if not (node.module or "").startswith("engram"):
                    continue
                target = (node.module or "").split(".")[1:]
            if target:
                out.add((target[0].removesuffix(".py"), node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "engram" and len(parts) > 1:
                    out.add((parts[1], node.lineno))
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_never_import_higher_ones(layer: str) -> None:
    bad = []
    for path in sorted((SRC / layer).rglob("*.py")):
        if "gen" in path.parts:
            continue
        for pkg, line in imported_packages(path):
            if pkg in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(SRC)}:{line} imports engram.{pkg}")
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_the_checker_sees_relative_imports() -> None:
    assert any(p == "cognition" for p, _ in imported_packages(SRC / "spaces" / "registry.py"))
    assert any(p == "core" for p, _ in imported_packages(SRC / "cognition" / "recall.py"))
