"""The layout's import rules, checked from the source: tests never import bench (benchmarks may import
tests/support), and the package imports neither tests nor bench (what the wheel ships stands alone)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(folder: str) -> list[tuple[str, str]]:
    """(file, imported module) for every import under `folder`, lazy ones inside functions included."""
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((str(path.relative_to(ROOT)), node.module))
    return found


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def test_nothing_under_tests_imports_bench() -> None:
    assert len(_imports("tests")) > 100
    assert [(f, m) for f, m in _imports("tests") if _top(m) == "bench"] == []


def test_the_package_imports_neither_tests_nor_bench() -> None:
    assert [(f, m) for f, m in _imports("monitor") if _top(m) in ("tests", "bench")] == []
