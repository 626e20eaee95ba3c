"""Write docs/configuration.md, the reference of ssftp.yaml, from its pydantic schema.

What a key does and why its default is what it is are written once, as the ``description`` of
its field in ``ssftp/config/schema.py``; this renders them with each key's type, constraints and
default, so the reference cannot say anything the loader does not do. A hand-written page would
drift the first time someone changed a default. ``--check`` lets a test or CI fail when the
committed page is not what the schema renders, instead of shipping a stale one.

    .venv/bin/python -m scripts.config_reference            # rewrite docs/configuration.md
    .venv/bin/python -m scripts.config_reference --check    # exit 1 if it is stale

Imports only pydantic and ``ssftp.config``, so it runs wherever the schema loads.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, SecretStr
from pydantic.fields import FieldInfo

from ssftp.config import SsftpConfig

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "configuration.md"
COMMAND = ".venv/bin/python -m scripts.config_reference"

PREAMBLE = """\
# Configuration: ssftp.yaml

ssftp reads one YAML file: `--config FILE`, by default `<data dir>/system/ssftp.yaml`. An
sSFTP (Azure Scanned SFTP) file loads unchanged: its camelCase keys keep their meaning, and
every key below that sSFTP does not have is an extension in the same style.
[`config/ssftp.example.yaml`](../config/ssftp.example.yaml) is a file to start from.
`ssftp check-config FILE` validates a file and explains it: exit 0 with its warnings, or exit 2
naming the file, the line and the key path of each error (never a value: it may be a password).

Where ssftp differs from sSFTP, it is on the safe side: scanning is on unless switched off,
passwords may be bcrypt or argon2id hashes, remote host keys are checked, directories are
validated.

- **Secrets stay out of the file.** `${NAME}` anywhere in a value is replaced by the
  environment variable NAME (`$${` writes a literal `${`). Secrets are never logged or shown.
- **Mistakes are refused, not guessed at.** Unknown keys are errors (a typo must not silently
  drop a setting), and so are keys given twice. A file must be a regular file (or a symlink to
  one) of at most 4 MiB, nested at most 64 deep, whose YAML aliases do not expand it beyond
  4 MiB; anything else is refused with one line, at start and on reload.
- **Hot reload.** Edit the file in place, rename a new one over it, or swap a symlinked
  directory under it (a Kubernetes ConfigMap update): a valid change applies without a
  restart (accounts, keys, webhooks, scanning, downloaders and uploaders) to new logins and
  new work; an invalid one is logged with its reasons and the last good config stays. The
  file is read and validated in a thread while sessions go on (40 000 accounts take a few
  seconds), then swapped in whole; a change saved during that read is read next, so the last
  save wins. Its directory is watched by inotify (not its sub-directories); any name in it,
  UTF-8 or not, is harmless. A watch the kernel refuses is logged once (`config watch
  failed`) and the file is looked at every 2 s instead. SIGHUP to `up`, `serve` or `worker`
  (`systemctl reload ssftp`) reads the file at once, changed or not (a share that sends no
  inotify events, such as NFS), and logs one line: `config reloaded`, `config unchanged` or
  the rejection, each with `trigger: SIGHUP`; it never stops the process. Keys read at start
  only say so.

Each section below is one mapping of the file; its keys are listed with their type, their
default, and what they do.
"""

# Markdown wraps paragraphs itself; the source is wrapped for people reading it as text.
WIDTH = 100
_BOUNDS = {"gt": "more than", "ge": "at least", "lt": "less than", "le": "at most"}
_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}


def render(model: type[BaseModel], preamble: str = PREAMBLE) -> str:
    """The reference page of ``model``: the preamble, then one section per mapping of the
    file (the model, and each model below it, once, in the order the keys are declared)."""
    sections = _sections(model)
    out = [f"<!-- Generated from ssftp/config/schema.py by `{COMMAND}`: edit the field "
           "descriptions there, not this file. -->", "", preamble.rstrip("\n")]
    for section in sections.values():
        out += ["", f"## `{section.path}`" if section.path else "## Top-level keys", ""]
        doc = _docstring(section.model)
        if doc:
            out += [doc, ""]
        if section.also:
            out += [f"Also at {', '.join(f'`{path}`' for path in section.also)}.", ""]
        for name, info in section.model.model_fields.items():
            out += _key(section.model, name, info, sections)
    return "\n".join(out) + "\n"


@dataclass
class _Section:
    path: str
    model: type[BaseModel]
    # Other key paths where the same mapping appears; it is described once.
    also: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """The heading's anchor as GitHub and Python-Markdown make it: lowercase, punctuation
        dropped, spaces as hyphens."""
        title = f"`{self.path}`" if self.path else "Top-level keys"
        kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
        return kept.strip().replace(" ", "-")


def _sections(model: type[BaseModel]) -> dict[type[BaseModel], _Section]:
    """Every model reachable from ``model``, depth first, with the key paths it appears at."""
    sections: dict[type[BaseModel], _Section] = {}

    def visit(path: str, current: type[BaseModel]) -> None:
        if current in sections:
            sections[current].also.append(path)
            return
        sections[current] = _Section(path, current)
        for name, info in current.model_fields.items():
            key = _key_name(name, info)
            for child, in_list in _models_in(info.annotation):
                child_path = f"{path}.{key}" if path else key
                visit(child_path + ("[]" if in_list else ""), child)

    visit("", model)
    return sections


def _models_in(annotation: Any, in_list: bool = False) -> Iterator[tuple[type[BaseModel], bool]]:
    """The models a key's type holds, and whether each is an entry of a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, in_list
        return
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        yield from _models_in(args[0], in_list)
    elif origin is list:
        yield from _models_in(args[0], True)
    elif origin is not Literal:
        for arg in args:
            yield from _models_in(arg, in_list)


def _docstring(model: type[BaseModel]) -> str:
    """The model's own docstring, with reST literals turned into Markdown. Not an inherited
    one: a base class describes what its subclasses share, not what each of them is."""
    doc = model.__dict__.get("__doc__")
    return inspect.cleandoc(doc).replace("``", "`") if isinstance(doc, str) else ""


def _key_name(name: str, info: FieldInfo) -> str:
    """The key as the file spells it: the camelCase alias (or sSFTP's own spelling)."""
    return info.alias or name


def _key(model: type[BaseModel], name: str, info: FieldInfo,
         sections: dict[type[BaseModel], _Section]) -> list[str]:
    """One key as a list item: name, type, default, then its description."""
    if not info.description:
        raise ValueError(f"{model.__name__}.{name} has no description")
    key = _key_name(name, info)
    # ssftp.yaml names its byte counts ...Bytes or ...Size; they read better in MiB too.
    in_bytes = key.endswith(("Bytes", "Size"))
    kind = _type(info.annotation, sections)
    limits = _constraints(info.metadata, in_bytes)
    if limits:
        kind += f" ({limits})"
    head = f"- **`{key}`**: {kind}; {_default(info, in_bytes)}."
    body = textwrap.fill(info.description, WIDTH, initial_indent="  ", subsequent_indent="  ",
                         break_long_words=False, break_on_hyphens=False)
    return [head, body]


def _type(annotation: Any, sections: dict[type[BaseModel], _Section],
          plural: bool = False) -> str:
    """A key's type in the words of a YAML file (``plural`` for the entries of a list); an
    unknown type is an error, so that a new kind of key cannot be rendered as something it is
    not."""
    s = "s" if plural else ""
    if annotation is type(None):
        return f"null{s}"
    if annotation in _SCALARS:
        return _SCALARS[annotation] + s
    if annotation is SecretStr:
        return f"string{s} (secret)"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        section = sections[annotation]
        return f"mapping{s} ([`{section.path}`](#{section.anchor}))"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        limits = _constraints(args[1:], in_bytes=False)
        return _type(args[0], sections, plural) + (f" ({limits})" if limits else "")
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in args)
    if origin is list:
        return f"list{s} of {_type(args[0], sections, plural=True)}"
    if origin is dict:
        keys, values = (_type(arg, sections, plural=True) for arg in args)
        return f"mapping{s} of {keys} to {values}"
    if origin in (Union, types.UnionType):
        return " or ".join(_type(arg, sections, plural) for arg in args)
    raise TypeError(f"cannot describe the type {annotation!r}")


def _constraints(metadata: Any, in_bytes: bool) -> str:
    """Bounds, lengths, patterns and strictness, as words; validators are left to the
    description, which says what they check."""
    found: dict[str, Any] = {}
    for meta in metadata:
        if isinstance(meta, FieldInfo):
            found.update(_known_constraints(meta.metadata))
        elif not isinstance(meta, AfterValidator):
            found.update(_known_constraints([meta]))
    words = ["strict: not converted from other types"] if found.get("strict") else []
    for bound in _BOUNDS:
        if bound in found:
            units = _in_units(found[bound]) if in_bytes else None
            words.append(f"{_BOUNDS[bound]} {units or _number(found[bound])}")
    shortest, longest = found.get("min_length"), found.get("max_length")
    if shortest is not None and longest is not None:
        words.append(f"{shortest} to {longest} characters")
    elif shortest is not None:
        words.append(f"at least {shortest} character{'s' if shortest != 1 else ''}")
    elif longest is not None:
        words.append(f"at most {longest} characters")
    if "pattern" in found:
        words.append(f"matching `{found['pattern']}`")
    return ", ".join(words)


def _known_constraints(metadata: list[Any]) -> dict[str, Any]:
    names = ("strict", *_BOUNDS, "min_length", "max_length", "pattern")
    found: dict[str, Any] = {}
    for meta in metadata:
        values = {name: getattr(meta, name) for name in names
                  if getattr(meta, name, None) is not None}
        if not values:
            raise TypeError(f"cannot describe the constraint {meta!r}")
        found.update(values)
    return found


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _in_units(value: float) -> str | None:
    """A byte count of whole KiB, MiB, GiB or TiB in those units: 16777216 is hard to read."""
    if isinstance(value, int) and value >= 1024:
        for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
            if value % 1024**power == 0:
                return f"{value // 1024**power} {unit}"
    return None


def _default(info: FieldInfo, in_bytes: bool) -> str:
    """The default as it would be written in the file; a secret's default is never shown."""
    if info.is_required():
        return "required"
    factory = info.default_factory
    if factory is not None:
        if isinstance(factory, type) and issubclass(factory, BaseModel):
            return "default: each of its keys' defaults"
        if factory in (list, dict):
            return f"default `{factory()!r}`"
        return f"default computed when the file is loaded (`{factory.__name__}()`)"
    value = info.default
    if value is None:
        return "default: none"
    if isinstance(value, SecretStr):
        return "default: a secret, not shown"
    if isinstance(value, bool):
        return f"default `{str(value).lower()}`"
    if isinstance(value, int | float):
        units = _in_units(value) if in_bytes else None
        return f"default `{_number(value)}`" + (f" ({units})" if units else "")
    return f"default `{value}`"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.config_reference",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/configuration.md is not what the schema renders")
    args = parser.parse_args(argv)
    text = render(SsftpConfig)
    if args.check:
        if OUTPUT.is_file() and OUTPUT.read_text(encoding="utf-8") == text:
            return 0
        print(f"{OUTPUT.relative_to(ROOT)} is stale: run {COMMAND}", file=sys.stderr)
        return 1
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
