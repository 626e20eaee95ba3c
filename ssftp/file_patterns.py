"""Which names an account may give its files: its ``filePatterns``, SFTPGo's per-directory
``file_patterns`` under ssftp's keys.

A name is refused when it matches one of the ``denied`` patterns, or when there are ``allowed``
patterns and it matches none of them. Patterns are shell patterns (``*``, ``?``, ``[...]``, as
:mod:`fnmatch` reads them), compared without regard to letter case (``*.exe`` refuses
``SETUP.EXE``), and matched against the final name only, never the path. The rules of the
deepest configured directory that holds the name apply, and apply whole: a sub-directory's
rules replace the account's rather than add to them, as SFTPGo's do, so a sub-directory
configured with no patterns lifts the account's there.

A directory's own name is held to the ``denied`` patterns only: ``allowed`` patterns are written
for files (``*.csv``), and held to them no sub-directory could be made at all.

Built once per config load (ssftp.config.accounts) with each pattern compiled, so a check is a
dictionary lookup and a few regular expression matches; an account without patterns has no
rules at all, and the server skips the check.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

REFUSED = "name refused by filePatterns"

# A directory below an account's root, as its names from the root ("reports/2024": ("reports",
# "2024")); the root itself is ().
DirectoryKey = tuple[str, ...]


@dataclass(frozen=True)
class _Pattern:
    text: str  # as the operator wrote it, for the reason a client is told
    match: Callable[[str], re.Match[str] | None]  # of a casefolded name


@functools.lru_cache(maxsize=4096)
def _pattern(text: str) -> _Pattern:
    """Compiled once for all accounts: thousands of them often share one list."""
    return _Pattern(text, re.compile(fnmatch.translate(text.casefold())).match)


def _compiled(patterns: Iterable[str]) -> tuple[_Pattern, ...]:
    return tuple(map(_pattern, patterns))


@dataclass(frozen=True)
class NameRules:
    """The patterns of one directory."""

    allowed: tuple[_Pattern, ...]
    denied: tuple[_Pattern, ...]

    @classmethod
    def of(cls, allowed: Iterable[str], denied: Iterable[str]) -> NameRules:
        return cls(_compiled(allowed), _compiled(denied))

    @property
    def restricts(self) -> bool:
        return bool(self.allowed or self.denied)

    def refusal(self, name: str, *, directory: bool) -> str | None:
        """Why ``name`` is refused here (the pattern it matches, or the allowed ones it does
        not), or None when it may be used."""
        folded = name.casefold()
        for pattern in self.denied:
            if pattern.match(folded) is not None:
                return f"{REFUSED}: {pattern.text}"
        if directory or not self.allowed:
            return None
        if any(pattern.match(folded) is not None for pattern in self.allowed):
            return None
        return f"{REFUSED}: not one of {', '.join(pattern.text for pattern in self.allowed)}"


@dataclass(frozen=True)
class FilePatternRules:
    """An account's rules by directory (see the module's doc)."""

    by_directory: Mapping[DirectoryKey, NameRules]

    def refusal(self, parent: str, name: str, *, directory: bool = False) -> str | None:
        """Why ``name`` in the directory ``parent`` (a path as the account sees it, ``/`` its
        root) is refused, or None: by the rules of the deepest configured directory that
        holds it."""
        above = tuple(part for part in parent.split("/") if part)
        for depth in range(len(above), -1, -1):
            rules = self.by_directory.get(above[:depth])
            if rules is not None:
                return rules.refusal(name, directory=directory)
        return None


def rules_by_directory(by_directory: Mapping[DirectoryKey, NameRules],
                       ) -> FilePatternRules | None:
    """The account's rules, or None when no directory restricts any name (the server then
    checks nothing)."""
    if not any(rules.restricts for rules in by_directory.values()):
        return None
    return FilePatternRules(by_directory)
