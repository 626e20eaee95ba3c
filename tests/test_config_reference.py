"""The configuration reference is the schema, rendered; the docs' links lead somewhere.

docs/configuration.md is generated from the field descriptions of ``ssftp/config/schema.py``
(``scripts/config_reference.py``): these tests fail when the committed page is stale, when a
key has no description to render, and when the rendering itself goes wrong, so that the page an
operator reads is always what the loader does. A link in the README or docs/ that leads nowhere
fails too: pages move, and a reader following one should not land on a 404.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

from scripts.config_reference import COMMAND, render
from ssftp.config import SsftpConfig

ROOT = next(parent for parent in Path(__file__).resolve().parents
            if (parent / "pyproject.toml").is_file())


def test_the_committed_reference_is_what_the_schema_renders():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(SsftpConfig), f"docs/configuration.md is stale: run {COMMAND}"


def test_every_key_of_every_mapping_has_a_description():
    schema = SsftpConfig.model_json_schema(by_alias=True)
    models = {"SsftpConfig": schema, **schema["$defs"]}
    missing = [f"{name}.{key}" for name, model in models.items()
               for key, prop in model["properties"].items() if not prop.get("description")]
    assert missing == [], "add description= to these fields in ssftp/config/schema.py"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel)


class _Part(_Model):
    """One part, written ``so``."""

    window_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=1 << 20, description="How much fits.")
    token: SecretStr = Field(default=SecretStr("hunter2"), description="Who it is.")


class _Whole(_Model):
    name: Annotated[str, Field(min_length=1, max_length=8)] = Field(description="What it is.")
    mode: Literal["fast", "safe"] = Field(default="safe", description="How it runs.")
    every: Annotated[int, Field(gt=0)] | None = Field(default=None, description="How often.")
    parts: list[_Part] = Field(default_factory=list, description="Its parts.")
    spare: _Part = Field(default_factory=_Part, description="One more.")


def test_a_small_schema_renders_key_by_key():
    assert render(_Whole, preamble="# Title\n") == f"""\
<!-- Generated from ssftp/config/schema.py by `{COMMAND}`: edit the field descriptions there, \
not this file. -->

# Title

## Top-level keys

- **`name`**: string (1 to 8 characters); required.
  What it is.
- **`mode`**: one of `fast`, `safe`; default `safe`.
  How it runs.
- **`every`**: integer (more than 0) or null; default: none.
  How often.
- **`parts`**: list of mappings ([`parts[]`](#parts)); default `[]`.
  Its parts.
- **`spare`**: mapping ([`parts[]`](#parts)); default: each of its keys' defaults.
  One more.

## `parts[]`

One part, written `so`.

Also at `spare`.

- **`windowBytes`**: integer (at least 1 KiB); default `1048576` (1 MiB).
  How much fits.
- **`token`**: string (secret); default: a secret, not shown.
  Who it is.
"""


def test_a_key_without_a_description_is_not_rendered():
    class Undescribed(_Model):
        port: int = 22

    with pytest.raises(ValueError, match=r"Undescribed\.port has no description"):
        render(Undescribed)


# A Markdown link or image: [text](target) or ![alt](target), target up to a space or ")".
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


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


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
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
    assert not broken, f"{page.relative_to(ROOT)} links to what is not there: {broken}"
