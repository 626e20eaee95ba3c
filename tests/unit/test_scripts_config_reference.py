"""scripts/config_reference.py: docs/configuration.md is the schema, rendered.

The page is generated from the field descriptions of ``ssftp/config/schema.py``: these tests
fail when the committed page is stale, when a key has no description to render, and when the
rendering itself goes wrong, so that the page an operator reads is always what the loader
does."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

from scripts.config_reference import COMMAND, render
from ssftp.config import SsftpConfig
from tests.support.repo import REPO


def test_the_committed_reference_is_what_the_schema_renders():
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
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
