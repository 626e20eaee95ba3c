"""What an engine says about a file: a :class:`Verdict` of one :class:`VerdictKind`.

Every engine (clamd, an ICAP server, a pool of either) answers in these terms and never
raises, so no caller can turn a failure into "clean" by forgetting an ``except``; what a
found name means is decided once, in :func:`finding`, for every engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

LIMITS_EXCEEDED = "Heuristics.Limits.Exceeded"
ENCRYPTED = "Heuristics.Encrypted."
BROKEN = "Heuristics.Broken."
STRUCTURED = "Heuristics.Structured."
# What follows ENCRYPTED for a document rather than an archive (Heuristics.Encrypted.PDF).
ENCRYPTED_DOCUMENTS = frozenset({"pdf", "doc", "ole2", "xls", "ppt", "ooxml", "docx", "xlsx",
                                 "pptx", "office"})

class VerdictKind(StrEnum):
    CLEAN = "clean"
    INFECTED = "infected"
    # Can never be scanned as it is (over a size or scan limit): quarantine, do not retry.
    UNSCANNABLE = "unscannable"
    # Could not be scanned this time (clamd down, timeout, error, unreadable reply): retry.
    ERROR = "error"
    # Never asked: the operator switched scanning off (``enableVirusScan: false``), so the
    # file passes to clean/ as it is. clamd never answers this; it is here so that every
    # scan outcome is one of these kinds.
    UNSCANNED = "unscanned"
    # Refused by a content policy, not for malware: a file type the account may not send
    # (ssftp.scan.policy), or what the operator's clamd flags as structured data. Quarantined.
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    detail: str
    signature: str | None = None
    # clamd could not be connected to at all, or hangs (a scan timed out and a PING got no
    # answer either): not about this file, so the staging queue waits for clamd (PING)
    # instead of retrying every file on its own.
    unreachable: bool = False
    # The scan waited out the whole timeout: worth a log line of its own, which the caller
    # writes as it knows the file's name (the client sees a descriptor).
    timed_out: bool = False
    # Unscannable because it is encrypted: an account that allows encrypted files passes it
    # to clean/, marked not inspected (ssftp.scan.policy).
    encrypted: bool = False
    # False for a clean verdict on bytes no engine could look inside (an encrypted file an
    # account allows): it is in clean/ on the operator's word, not on a scanner's.
    inspected: bool = True
    # Each engine's own answer when more than one judged (engine name -> its answer, e.g.
    # {"clamd": "OK", "icap": "Threat=Eicar FOUND"}): the audit record says who said what.
    engines: dict[str, str] = field(default_factory=dict)


def finding(signature: str) -> Verdict:
    """The verdict on what an engine reports it found (clamd's ``<signature> FOUND``, an ICAP
    server's threat name).

    Most names are malware: infected. The heuristics that say the engine could not look
    inside are unscannable, never clean: an archive or document under a password
    (``Heuristics.Encrypted.*``), content beyond a scan limit (``Heuristics.Limits.Exceeded``),
    an executable or media file too malformed to parse (``Heuristics.Broken.*``: what it
    would run as is unknown). Structured data (``Heuristics.Structured.*``: card or social
    security numbers, found only by a clamd whose operator switched that on) is a content
    policy of the operator's: blocked.
    """
    if signature.startswith(LIMITS_EXCEEDED):
        return Verdict(VerdictKind.UNSCANNABLE, f"scan limits exceeded ({signature})",
                       signature)
    if signature.startswith(ENCRYPTED):
        what = ("document" if signature.removeprefix(ENCRYPTED).lower() in ENCRYPTED_DOCUMENTS
                else "archive")
        return Verdict(VerdictKind.UNSCANNABLE, f"encrypted {what} ({signature})", signature,
                       encrypted=True)
    if signature.startswith(BROKEN):
        what = signature.removeprefix(BROKEN).split(".")[0].lower() or "file"
        return Verdict(VerdictKind.UNSCANNABLE, f"broken {what} ({signature})", signature)
    if signature.startswith(STRUCTURED):
        return Verdict(VerdictKind.BLOCKED, f"structured data ({signature})", signature)
    return Verdict(VerdictKind.INFECTED, f"{signature} FOUND", signature)


WORST_FIRST = (VerdictKind.INFECTED, VerdictKind.BLOCKED, VerdictKind.ERROR,
               VerdictKind.UNSCANNABLE, VerdictKind.UNSCANNED, VerdictKind.CLEAN)


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The answer that stands among several (engines, or threats one engine names), in the
    order of :data:`WORST_FIRST`: malware found anywhere is infected whatever else was said;
    an answer missing makes an error, even beside one that could not look inside. Among
    unscannable answers one not about encryption outranks an encrypted one: an owner's
    allowEncrypted may pass an encrypted file, never one over a size limit."""
    return min(verdicts, key=lambda verdict: (WORST_FIRST.index(verdict.kind),
                                              verdict.encrypted))
