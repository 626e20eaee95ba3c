"""The docs' links lead somewhere: a link in the README or docs/ that leads nowhere fails (pages
move, and a reader following one should not land on a 404)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.repo import REPO

# A Markdown link or image: [text](target) or ![alt](target), target up to a space or ")".
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _anchors(page: Path) -> set[str]:
    """The anchors of a page's headings as GitHub and Python-Markdown make them: lowercase,
    punctuation dropped, spaces as hyphens, a repeated one numbered."""
    anchors: set[str] = set()
    for line in _FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        if heading := re.match(r"#{1,6} (.*)", line):
            kept = "".join(c for c in heading[1].lower() if c.isalnum() or c in " -_")
            anchor = base = kept.strip().replace(" ", "-")
            number = 0
            while anchor in anchors:
                number += 1
                anchor = f"{base}-{number}"
            anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.relative_to(REPO).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path):
    text = _CODE.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto:: not ours to check offline
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.relative_to(REPO)} links to what is not there: {broken}"


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.relative_to(REPO).as_posix())
def test_no_page_holds_a_merge_conflict(page: Path):
    """A conflict resolved in the code but not in the docs once reached a commit."""
    markers = [line for line in page.read_text(encoding="utf-8").splitlines()
               if re.fullmatch(r"(<{7}|>{7}) ?.*|={7}", line)]
    assert markers == []
