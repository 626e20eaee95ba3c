"""The test suite's own rules (tests/README.md), checked on its source like the layering is on
the product's.

- A test module never imports another test module or a conftest: what two of them share is in
  ``tests/support/`` or :mod:`testkit` (helpers) or a conftest.py (fixtures). A test module used
  as a library drags its fixtures, its module-scoped servers and its imports into every module
  that takes one helper from it.
- Only the tests of ``bench`` import ``bench``: what tests and benchmarks share is in testkit.
- Every unit test module is named after the module it tests: ``tests/unit/test_scan_queue.py``
  for ``ssftp/scan/queue.py`` (the dotted name, less ``ssftp.``, with ``_`` for ``.``), so the
  tests of a module are found by its name. :data:`TOPICS` are the exceptions: they check the
  whole tree.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

from tests.support.repo import REPO

# Unit test modules about the whole tree rather than one module: the imports of the source, the
# rules of the tests, the index of the invariants, the links of the docs.
TOPICS = {"test_layering.py", "test_suite.py", "test_invariants.py", "test_docs.py"}
# Where a module named by a unit test may be: the core first (``test_names`` is ssftp.names),
# then the other packages and the files of the checkout (``test_docker_healthcheck``).
MODULE_ROOTS = ("ssftp", ".")


def is_test_module(name: str) -> bool:
    """A dotted module name that names a test module or a conftest (``tests.unit.test_x``)."""
    return any(part.startswith("test_") or part == "conftest" for part in name.split("."))


def suite_violations(root: Path) -> list[str]:
    """Every import of a test module, and every import of ``bench`` outside bench's own tests,
    below ``root/tests``, as ``path:line: module``. Relative imports count too."""
    problems = []
    for path in sorted((root / "tests").rglob("*.py")):
        relative = path.relative_to(root)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                names = [module] + [f"{module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                bench = name.split(".")[0] == "bench" and not path.name.startswith("test_bench")
                if is_test_module(name) or bench:
                    problems.append(f"{relative}:{node.lineno}: {name}")
                    break
    return problems


def module_named_by(test_file: str, root: Path) -> Path | None:
    """The module a unit test module is named after, if there is one: each ``_`` of the name
    is tried as a ``.`` of a module path and as itself."""
    parts = test_file.removeprefix("test_").removesuffix(".py").split("_")
    for joints in itertools.product(("/", "_"), repeat=len(parts) - 1):
        name = parts[0] + "".join(joint + part for joint, part in zip(joints, parts[1:],
                                                                      strict=True))
        for base in MODULE_ROOTS:
            for candidate in (root / base / f"{name}.py", root / base / name / "__init__.py"):
                if candidate.is_file():
                    return candidate
    return None


def unnamed_unit_tests(root: Path) -> list[str]:
    """The unit test modules named after no module (and not a topic of :data:`TOPICS`)."""
    return [path.name for path in sorted((root / "tests" / "unit").glob("test_*.py"))
            if path.name not in TOPICS and module_named_by(path.name, root) is None]


def test_no_test_module_imports_another():
    assert suite_violations(REPO) == []


def test_an_import_of_a_test_module_is_found(tmp_path):
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_a.py").write_text(
        "from tests.support.gateway import ServerThread\n"
        "from tests.e2e.test_cli import ssftp\n"
        "import tests.conftest\n"
        "from tests.unit import test_b\n"
        "from .test_c import helper\n"
        "def test_x():\n    from bench.results import Row\n")
    (tmp_path / "tests" / "unit" / "test_bench_results.py").write_text(
        "from bench.results import Row\n")
    assert suite_violations(tmp_path) == [
        "tests/unit/test_a.py:2: tests.e2e.test_cli",
        "tests/unit/test_a.py:3: tests.conftest",
        "tests/unit/test_a.py:4: tests.unit.test_b",
        "tests/unit/test_a.py:5: .test_c",
        "tests/unit/test_a.py:7: bench.results",
    ]


def test_every_unit_test_module_is_named_after_its_module():
    assert unnamed_unit_tests(REPO) == []


def test_a_unit_test_module_named_after_no_module_is_found(tmp_path):
    for module in ("ssftp/scan/queue.py", "ssftp/names.py", "server/exec_commands.py",
                   "docker/healthcheck.py", "ssftp/config/__init__.py"):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text("")
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    for test in ("test_scan_queue.py", "test_names.py", "test_server_exec_commands.py",
                 "test_docker_healthcheck.py", "test_config.py", "test_scan_queues.py",
                 "test_staging_queue.py", "test_layering.py"):
        (tmp_path / "tests" / "unit" / test).write_text("")
    assert unnamed_unit_tests(tmp_path) == ["test_scan_queues.py", "test_staging_queue.py"]
