"""One error hierarchy: every exception the product defines is an SsftpError, each one sits in
the tree that ``ssftp.errors`` draws, and the command line turns any of them into one line."""

from __future__ import annotations

import ast
import inspect
import re

import pytest

from ssftp import errors
from tests.support.repo import REPO

PRODUCT = ("ssftp", "server", "client", "flows", "deployments")


def defined_exceptions() -> list[str]:
    """``path: Class`` for every class in the product whose bases name an Error or Exception,
    other than those of ssftp.errors (private control-flow signals start with ``_``)."""
    found = []
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "ssftp" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.ClassDef) and not node.name.startswith("_")
                        and any(ast.unparse(base).endswith(("Error", "Exception"))
                                for base in node.bases)):
                    found.append(f"{path.relative_to(REPO)}: {node.name}")
    return found


def hierarchy() -> list[type[Exception]]:
    return [value for value in vars(errors).values()
            if inspect.isclass(value) and issubclass(value, Exception)
            and value.__module__ == errors.__name__]


def drawn_parents() -> dict[str, str | None]:
    """Each class of the docstring's tree, with the class it is drawn under."""
    tree = (errors.__doc__ or "").split("::", 1)[1]
    rows = [(len(match["lead"]), match["name"]) for line in tree.splitlines()
            if (match := re.match(r"(?P<lead>[ │├└─]*)(?P<name>[A-Z]\w+)", line))]
    parents: dict[str, str | None] = {}
    for index, (column, name) in enumerate(rows):
        above = [other for col, other in reversed(rows[:index]) if col == column - 4]
        parents[name] = above[0] if above else None
    return parents


def test_every_error_of_the_product_is_defined_in_ssftp_errors():
    assert defined_exceptions() == []


@pytest.mark.parametrize("error", hierarchy(), ids=lambda error: error.__name__)
def test_each_error_is_an_ssftp_error_drawn_under_its_parent(error):
    assert issubclass(error, errors.SsftpError)
    parent = next((base.__name__ for base in error.__mro__[1:]
                   if base.__module__ == errors.__name__), None)
    assert drawn_parents().get(error.__name__, "not drawn") == parent
