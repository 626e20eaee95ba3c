"""Content policy: what a staging account's files may be, besides free of malware.

Two rules, both judged during the scan, on the bytes that were hashed and scanned:

- **Encrypted content.** clamd cannot look inside an archive or document under a password, so
  its answer (``Heuristics.Encrypted.*``) is unscannable: quarantined, never clean. An account
  with ``allowEncrypted`` takes such files as they are: they pass to ``clean/`` marked
  ``clean (encrypted, not inspected)``. Only that answer: a file another engine finds
  infected, or that is unscannable for another reason, is not let through.
- **True file types.** The type libmagic reads from the content (:mod:`ssftp.scan.filetypes`),
  not the name: a file whose type the account's ``deniedFileTypes`` or the global
  ``scanning.deniedFileTypes`` names, or that its ``allowedFileTypes`` does not, is blocked
  (quarantined, ``ssftp.policy.filetype:<type>``). An archive is judged by its own type
  (``application/zip``), not its members': looking inside means unpacking a partner's archive
  on the gateway, which is clamd's job and its attack surface, not this module's.

Malware wins over policy: an infected file of a denied type is infected (``virusFound``), so
nobody is told "policy" about a virus.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from ssftp.scan.verdict import Verdict, VerdictKind

FILE_TYPE_SIGNATURE = "ssftp.policy.filetype:"
NOT_INSPECTED = "clean (encrypted, not inspected)"


@dataclass(frozen=True)
class ContentPolicy:
    """The rules for one owner's files (a staging account, a downloader, or nobody's)."""

    allow_encrypted: bool = False
    # None: any type not denied.
    allowed_types: tuple[str, ...] | None = None
    denied_types: tuple[str, ...] = ()

    @property
    def judges_types(self) -> bool:
        """Whether a file's type must be read at all: not when no list applies."""
        return self.allowed_types is not None or bool(self.denied_types)

    def refusal(self, file_type: str) -> Verdict | None:
        """The blocked verdict on a file of ``file_type``; None when it may pass."""
        signature = FILE_TYPE_SIGNATURE + file_type
        if any(fnmatchcase(file_type, pattern) for pattern in self.denied_types):
            return Verdict(VerdictKind.BLOCKED,
                           f"file type {file_type} is denied (deniedFileTypes)", signature)
        if self.allowed_types is not None and not any(
                fnmatchcase(file_type, pattern) for pattern in self.allowed_types):
            return Verdict(VerdictKind.BLOCKED,
                           f"file type {file_type} is not allowed (allowedFileTypes)", signature)
        return None

    def settle(self, scanned: Verdict, file_type: str | None) -> Verdict:
        """The verdict on a file the engines judged ``scanned``, whose type is ``file_type``
        (None when not read)."""
        if scanned.kind is VerdictKind.INFECTED:
            return scanned
        if file_type is not None and (refused := self.refusal(file_type)) is not None:
            return refused
        if scanned.encrypted and self.allow_encrypted:
            return replace(scanned, kind=VerdictKind.CLEAN,
                           detail=f"{NOT_INSPECTED}: {scanned.detail}", inspected=False)
        return scanned
