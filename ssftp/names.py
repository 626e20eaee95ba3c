"""The names files get on their way out of staging: their own, unless it cannot be carried.

A file in staging has whatever name its writer gave it: bytes that are not UTF-8 (a Latin-1
name from a remote server, another writer on the share), control characters (a newline, an
escape sequence), up to the filesystem's 255 bytes. Below ``clean/`` and ``quarantine/``
every name is one that consumers, logs, terminals and Prefect's API carry as it is: valid
UTF-8, without control characters (C0, DEL, C1). A name that is not gets a safe name
(:func:`safe_name`): each character that cannot stay becomes ``_``, and ``~`` with the first
hex digits of the sha256 of the original bytes goes before the extension
(``caf\\xe9.txt`` -> ``caf_~5d2d7d10b1.txt``). It is deterministic, so a newer upload of the
same name replaces the older one in ``clean/`` as any name does, and unique, so two names that
look alike once made safe stay apart. The scan's audit record keeps the original, escaped.

Names grow on the way too: a quarantined file's verdict record is ``<name>.verdict.json``,
and a quarantined name already taken gets a number (``name (2).ext``). Where that would pass
the 255 bytes a name may have, the name is shortened and the hash of the whole original added
(:func:`fitting`), so a long name never keeps a file from its destination.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import PurePosixPath

# Bytes in one name on Linux filesystems (ext4, XFS, tmpfs, NFS, SMB): NAME_MAX.
NAME_MAX = 255
# Hex digits of the sha256 that tell apart names made safe or shortened: 40 bits.
_DIGEST_HEX = 10
_MARK = "~"
# An extension longer than this is part of the name, not kept apart when shortening.
_EXTENSION_MAX = 16


def _carried(char: str) -> bool:
    """A character every consumer carries as it is: not an undecodable byte (a surrogate of
    ``os.fsdecode``), not a control character of C0, DEL or C1."""
    code = ord(char)
    return not (code < 0x20 or 0x7F <= code <= 0x9F or 0xDC80 <= code <= 0xDCFF)


def _digest(name: str) -> str:
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:_DIGEST_HEX]


def _size(text: str) -> int:
    return len(os.fsencode(text))


def _cut(text: str, size: int) -> str:
    """``text`` cut to at most ``size`` bytes, never inside a character."""
    return os.fsencode(text)[:max(size, 0)].decode("utf-8", "ignore")


def _stem_and_extension(name: str) -> tuple[str, str]:
    extension = PurePosixPath(name).suffix
    if len(extension) > _EXTENSION_MAX or extension == name:
        return name, ""
    return name.removesuffix(extension), extension


def safe_name(name: str) -> str:
    """``name`` if every consumer can carry it, else its safe name (see the module's doc)."""
    if all(map(_carried, name)):
        return name
    shown = "".join(char if _carried(char) else "_" for char in name)
    stem, extension = _stem_and_extension(shown)
    return fitting(stem, _MARK + _digest(name) + extension, original=name)


def safe_sub_path(sub_path: PurePosixPath) -> PurePosixPath:
    """A staging sub path with each of its names made safe."""
    return PurePosixPath(*map(safe_name, sub_path.parts))


def fitting(name: str, tail: str, *, original: str | None = None) -> str:
    """``name + tail`` when it fits in one name; else ``name`` shortened, then ``~`` and the
    hash of ``original`` (default: ``name``), then ``tail``. Two long names that share their
    beginning keep apart by their hash."""
    if _size(name) + _size(tail) <= NAME_MAX:
        return name + tail
    mark = _MARK + _digest(original if original is not None else name)
    if tail.startswith(_MARK):  # already marked by safe_name
        mark = ""
    return _cut(name, NAME_MAX - _size(mark) - _size(tail)) + mark + tail


def numbered(name: str, number: int) -> str:
    """``name.ext`` for 1, ``name (2).ext`` for 2 ...; shortened to fit in one name."""
    if number == 1:
        return name
    stem, extension = _stem_and_extension(name)
    return fitting(stem, f" ({number}){extension}")

