"""tests/INVARIANTS.md, the index from each invariant of DESIGN.md to the tests that prove it,
cannot rot: every test it lists exists (a renamed or moved test must be renamed there too),
and every invariant lists a test or says plainly that it has none yet."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support.repo import REPO

INDEX = REPO / "tests" / "INVARIANTS.md"
LISTED = re.compile(r"^- (tests/\S+\.py)::(\w+)$")
NOT_YET = "Not yet tested:"


def invariants(text: str) -> dict[str, list[str]]:
    """Each ``## `` heading and the lines below it, up to the next heading."""
    sections: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("## "):
            lines = sections.setdefault(line[3:].strip(), [])
        else:
            lines.append(line)
    return sections


def defined_tests(path: Path) -> set[str]:
    """The test functions of a module (top level, or methods of its classes)."""
    tree = ast.parse(path.read_text())
    nodes = [*tree.body, *(node for cls in tree.body if isinstance(cls, ast.ClassDef)
                           for node in cls.body)]
    return {node.name for node in nodes
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


def missing_tests(text: str, root: Path) -> list[str]:
    """The listed node ids whose module or test does not exist below ``root``."""
    missing = []
    for lines in invariants(text).values():
        for line in lines:
            if (listed := LISTED.match(line)) is None:
                continue
            module, name = root / listed[1], listed[2]
            if not module.is_file() or name not in defined_tests(module):
                missing.append(f"{listed[1]}::{name}")
    return missing


def untested(text: str) -> list[str]:
    """The invariants that list no test and do not say that they have none yet."""
    return [title for title, lines in invariants(text).items()
            if not any(LISTED.match(line) for line in lines)
            and not any(line.startswith(NOT_YET) for line in lines)]


def test_every_listed_test_exists():
    assert missing_tests(INDEX.read_text(), REPO) == []


def test_every_invariant_lists_its_tests_or_says_it_has_none():
    text = INDEX.read_text()
    assert len(invariants(text)) >= 10
    assert untested(text) == []


def test_a_listed_test_that_is_gone_is_found(tmp_path):
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_x.py").write_text(
        "def test_here():\n    pass\n\nclass TestGroup:\n    async def test_method(self):\n"
        "        pass\n")
    index = ("## Kept\n\n- tests/unit/test_x.py::test_here\n- tests/unit/test_x.py::test_method\n"
             "- tests/unit/test_x.py::test_renamed\n- tests/unit/test_gone.py::test_here\n"
             "## Untested\n\nsome words\n## Later\n\nNot yet tested: an open issue.\n")
    assert missing_tests(index, tmp_path) == ["tests/unit/test_x.py::test_renamed",
                                              "tests/unit/test_gone.py::test_here"]
    assert untested(index) == ["Untested"]
