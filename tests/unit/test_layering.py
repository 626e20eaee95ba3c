"""The dependency direction of ../shared/DESIGN.md, checked on the source itself.

Every import counts, also one inside a function (a lazy import is still a dependency, and a
routine lint fix may move it to the top of the file): ``server`` and ``client`` use the core
only; ``flows`` the core and ``client``; ``deployments`` (the composition root) all of them;
nothing uses ``deployments``, ``bench``, ``tests`` or ``testkit``. asyncssh is the SFTP code's
(``server``, ``client``), Prefect the orchestration's (``flows``, ``deployments``); the core
uses neither. ``bench`` and ``testkit`` are tools around the product and may use both.

Inside the core the groups of ``ssftp/__init__.py`` keep their own direction: the leaves (the
modules directly in ``ssftp/``) use only each other, ``config/`` only the leaves, and so on up
(:data:`CORE`); ``runtime/`` (a process's lifetime) is for what runs a process: ``server`` and
``deployments``, and the tools.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.repo import REPO

OURS = {"ssftp", "server", "client", "flows", "deployments", "bench", "tests", "testkit"}
# What each package may import, among ours and among the libraries that are some layer's own.
ALLOWED = {
    "ssftp": {"ssftp"},
    "server": {"ssftp", "server", "asyncssh"},
    "client": {"ssftp", "client", "asyncssh"},
    "flows": {"ssftp", "client", "flows", "prefect"},
    "deployments": {"ssftp", "server", "client", "flows", "deployments", "prefect"},
    "testkit": {"ssftp", "server", "client", "testkit", "asyncssh"},
    "bench": {"ssftp", "testkit", "bench", "asyncssh"},
}
LAYER_LIBRARIES = {"asyncssh", "prefect"}
# Each group of the core, and the groups it may use.
CORE = {
    "leaves": {"leaves"},
    "config": {"leaves", "config"},
    "scan": {"leaves", "config", "scan"},
    "notify": {"leaves", "config", "scan", "notify"},
    "transfer": {"leaves", "config", "transfer"},
    "areas": {"leaves", "config", "scan", "notify", "areas"},
    "runtime": {"leaves", "config", "scan", "runtime"},
}
RUNTIME_USERS = {"server", "deployments", "testkit", "bench"}


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) for every import in a file of ``package``, wherever it stands, also
    ``importlib.import_module("...")`` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, package if node.level else node.module or ""))
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ast.unparse(node.func) in ("importlib.import_module", "import_module",
                                             "__import__")):
            found.append((node.lineno, node.args[0].value))
    return sorted(found)


def violations(root: Path) -> list[str]:
    """Every import below ``root`` that breaks the layering, as ``path:line: a -> b``."""
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, module in imported_modules(path.read_text(), package):
                top = module.split(".")[0]
                if (top in OURS or top in LAYER_LIBRARIES) and top not in allowed:
                    problems.append(f"{path.relative_to(root)}:{line}: {package} -> {module}")
    return problems


def core_group(module: str) -> str | None:
    """The group of the core that ``module`` (``ssftp.scan.clamd``) belongs to; None when it
    is not the core's. ``from ssftp import x`` names a leaf."""
    parts = module.split(".")
    if parts[0] != "ssftp":
        return None
    if len(parts) > 1 and parts[1] in CORE:
        return parts[1]
    return "leaves"


def core_violations(root: Path) -> list[str]:
    """Every import of a core group that breaks :data:`CORE`, and every use of ``runtime``
    outside :data:`RUNTIME_USERS`, as ``path:line: a -> b``; also an annotation's (under
    ``if TYPE_CHECKING:``): a leaf that needs a higher group's type belongs higher up."""
    problems = []
    for package in ALLOWED:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            own = core_group(".".join(parts))
            for line, module in imported_modules(path.read_text(), package):
                target = core_group(module)
                if target is None or target == own:
                    continue
                allowed = CORE[own] if own else (CORE if package in RUNTIME_USERS
                                                 else set(CORE) - {"runtime"})
                if target not in allowed:
                    problems.append(f"{path.relative_to(root)}:{line}: {own or package} -> "
                                    f"{module}")
    return problems


def test_the_code_keeps_the_layering():
    assert violations(REPO) == []


def test_the_core_keeps_its_inner_layering():
    assert core_violations(REPO) == []


def test_an_import_against_the_core_layering_is_found(tmp_path):
    (tmp_path / "ssftp" / "config").mkdir(parents=True)
    (tmp_path / "ssftp" / "layout.py").write_text(
        "from ssftp.moves import x\nif TYPE_CHECKING:\n"
        "    from ssftp.config.schema import SsftpConfig\n")
    (tmp_path / "ssftp" / "config" / "schema.py").write_text(
        "from ssftp import layout\nfrom ssftp.scan.clamd import ClamdClient\n")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "x.py").write_text(
        "from ssftp.scan import scanner\nfrom ssftp.runtime.stop import StopDeadline\n")
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "x.py").write_text("from ssftp.runtime.stop import StopDeadline\n")
    assert core_violations(tmp_path) == [
        "ssftp/config/schema.py:2: config -> ssftp.scan.clamd",
        "ssftp/layout.py:3: leaves -> ssftp.config.schema",
        "flows/x.py:2: flows -> ssftp.runtime.stop",
    ]


def test_every_layer_exists_and_is_a_package():
    for package in ALLOWED:
        assert (REPO / package / "__init__.py").is_file(), package


def test_a_lazy_import_against_the_layering_is_found(tmp_path):
    (tmp_path / "ssftp").mkdir()
    (tmp_path / "ssftp" / "cli.py").write_text(
        "import os\n\ndef run():\n    from server.app import serve\n    import asyncssh\n"
        "    return serve\n")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "x.py").write_text(
        "import importlib\nfrom . import y\nfrom ssftp import layout\n"
        "importlib.import_module('deployments.cli')\nimport asyncssh.sftp\n")
    assert violations(tmp_path) == [
        "ssftp/cli.py:4: ssftp -> server.app",
        "ssftp/cli.py:5: ssftp -> asyncssh",
        "flows/x.py:4: flows -> deployments.cli",
        "flows/x.py:5: flows -> asyncssh.sftp",
    ]


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, less what stands under ``if TYPE_CHECKING:`` (never run: an annotation's
    import cannot make a loop)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            pending += node.orelse
            continue
        pending += ast.iter_child_nodes(node)
    return nodes


def module_imports(root: Path) -> dict[str, set[str]]:
    """Our modules (``flows.download``) and the modules of ours each one imports at run time,
    wherever the import stands. A name imported from a package counts as its module when it
    is one."""
    modules = {}
    for package in ALLOWED:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets |= {f"{node.module}.{alias.name}" for alias in node.names}
                targets.add(node.module)
        graph[name] = {target for target in targets if target in modules and target != name
                       and not name.startswith(target + ".")}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Modules that import each other, directly or around a loop (Tarjan's components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_modules_import_each_other():
    """A loop of imports (even a lazy one) means two modules share one job."""
    assert import_cycles(module_imports(REPO)) == []


def test_an_import_loop_is_found(tmp_path):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "__init__.py").write_text("")
    (tmp_path / "flows" / "a.py").write_text("from flows.b import run\n")
    (tmp_path / "flows" / "b.py").write_text("def run():\n    from flows import a\n")
    (tmp_path / "flows" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nimport flows.a\nif TYPE_CHECKING:\n"
        "    from flows.d import X\n")
    (tmp_path / "flows" / "d.py").write_text("from flows import c\n")
    assert import_cycles(module_imports(tmp_path)) == [["flows.a", "flows.b"]]
