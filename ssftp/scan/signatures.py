"""Which signatures judged a file: the engine and the database clamd has loaded.

clamd's ``VERSION`` reply (``ClamAV 1.4.6/27480/Sat Dec  5 08:26:00 2026``) names the engine
and the official daily database, but not custom signature files: a ``DatabaseCustomURL``
update, or a site's own ``.ndb``, leaves it as it was, and with no official database at all
(offline) it is just ``ClamAV 1.4.6``. So a database that ssftp updates also carries a
*generation*: a one-line hash signature file (:data:`GENERATION_FILE`) whose signature is named
after a fingerprint of the other files, matching a fixed marker (:data:`GENERATION_MARKER`).
Scanning the marker asks clamd which generation it has *loaded*, not which files lie on disk:
the proof that a RELOAD has finished, and a database identity that changes with every custom
signature too. A clamd whose database has no generation file answers the probe ``OK``: it is
known by its ``VERSION`` alone.

Pure values and parsing; asking clamd is :meth:`ssftp.scan.clamd.ClamdClient.signatures`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# The bytes every generation signature matches; scanning them names the loaded generation.
GENERATION_MARKER = b"ssftp signature generation marker: not malware\n"
GENERATION_PREFIX = "ssftp.Generation."
# Sorts after the official files; clamd loads every *.hdb in the directory.
GENERATION_FILE = "ssftp-generation.hdb"
# What clamd loads from a database directory (and freshclam writes); anything else there
# (freshclam's mirrors.dat, temp files) is not part of the database.
DATABASE_SUFFIXES = frozenset({
    ".cvd", ".cld", ".cud", ".hdb", ".hsb", ".hdu", ".hsu", ".mdb", ".msb", ".mdu", ".msu",
    ".ndb", ".ndu", ".ldb", ".ldu", ".idb", ".sdb", ".zmd", ".rmd", ".pdb", ".gdb",
    ".wdb", ".cbc", ".ftm", ".cfg", ".crb", ".cdb", ".ign", ".ign2", ".info", ".yar", ".yara",
    ".pwdb", ".imp", ".sfp",
})
_VERSION_DATE = "%a %b %d %H:%M:%S %Y"


@dataclass(frozen=True)
class Signatures:
    """The engine and database that judge a verdict, as clamd reported them."""

    engine: str  # "ClamAV 1.4.6"
    # The official daily database's number; None when none is loaded (offline).
    daily: int | None = None
    # When that database was built (clamd reports it in its own local time, read as UTC).
    built: datetime | None = None
    # The generation of a database ssftp updates (see the module docstring), if any.
    generation: str | None = None

    @property
    def database(self) -> str:
        """One label for the loaded database, changing whenever any signature does:
        ``27480``, ``27480+3f9a1c2b0d4e``, ``+3f9a1c2b0d4e`` (custom only) or ``none``."""
        daily = "" if self.daily is None else str(self.daily)
        generation = "" if self.generation is None else f"+{self.generation}"
        return (daily + generation) or "none"

    def __str__(self) -> str:
        return f"{self.engine}/{self.database}"

    def age_seconds(self, now: datetime | None = None) -> float | None:
        """How long ago the official database was built; None without one."""
        if self.built is None:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - self.built).total_seconds())


def parse_version(reply: str, generation: str | None = None) -> Signatures:
    """Read a ``VERSION`` reply (``ClamAV <engine>[/<daily>/<date>]``)."""
    engine, _, rest = reply.strip().partition("/")
    daily_text, _, date_text = rest.partition("/")
    daily = int(daily_text) if daily_text.isdigit() else None
    built = None
    if date_text:
        try:
            built = datetime.strptime(" ".join(date_text.split()),
                                      _VERSION_DATE).replace(tzinfo=UTC)
        except ValueError:
            built = None
    return Signatures(engine=engine or "unknown", daily=daily, built=built,
                      generation=generation)


def parse_generation(signature: str | None) -> str | None:
    """The generation a probe's signature names (``ssftp.Generation.<fp>``), or None."""
    if signature is None:
        return None
    name = signature.removesuffix(".UNOFFICIAL")
    return name.removeprefix(GENERATION_PREFIX) if name.startswith(GENERATION_PREFIX) else None


def database_files(directory: Path) -> list[Path]:
    """The signature files of a database directory, without the generation file, by name."""
    return sorted(path for path in directory.iterdir()
                  if path.suffix in DATABASE_SUFFIXES and path.name != GENERATION_FILE
                  and path.is_file())


def fingerprint(files: Iterable[Path]) -> str:
    """A short hash over the files' names and contents: equal exactly when they are."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:  # main.cvd is 160 MB: streamed, never read whole
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:12]


def generation_line(generation: str) -> str:
    """The hash signature (``.hdb``: md5, size, name) that names ``generation``."""
    md5 = hashlib.md5(GENERATION_MARKER, usedforsecurity=False).hexdigest()
    return f"{md5}:{len(GENERATION_MARKER)}:{GENERATION_PREFIX}{generation}\n"


def write_generation(directory: Path) -> str:
    """Stamp ``directory``'s signature files with their generation (atomically, so a clamd
    reloading meanwhile reads the old line or the new, never half of one); return it."""
    generation = fingerprint(database_files(directory))
    target = directory / GENERATION_FILE
    temp = directory / f".{GENERATION_FILE}.tmp"
    temp.write_text(generation_line(generation))
    temp.replace(target)
    return generation
