"""The data root and its six areas, and the names that mark a file as not yet complete.

Every process (server, watcher, downloaders, uploaders) agrees on these names through this
module, because the staging directory is the only queue between them: a name that one side
treats as "in progress" must be invisible to the other.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

AREAS = ("staging", "clean", "quarantine", "uploadarchive", "log", "system")

# Every name starting with this belongs to ssftp itself: no client may see or address it.
RESERVED_PREFIX = ".ssftp-"
# Hidden temp files written by ssftp itself (server uploads, downloaders, atomic moves).
TEMP_PREFIX = RESERVED_PREFIX + "tmp-"
# Where the scanner holds the files it is scanning: staging/.ssftp-claims/<owner>/<sub path>.
CLAIMS_DIR = RESERVED_PREFIX + "claims"
# Where a rescan holds a handed-on file it found infected, between taking it out of its area
# and moving it to quarantine: <area>/.ssftp-rescan/<token> beside <token>.json (its name).
RESCAN_HOLD_DIR = RESERVED_PREFIX + "rescan"
# Where the server keeps interrupted uploads for a resume, in each account's root:
# <root>/.ssftp-partials/<hash of account and path>. Never scanned, removed after
# ``partialUploadTtlSeconds``.
PARTIALS_DIR = RESERVED_PREFIX + "partials"
# The socket of a clamd that ssftp starts, in its run directory.
CLAMD_SOCKET = "clamd.sock"

# Temp names that clients upload to before renaming to the final name. Such a file is an
# upload still in progress: never scanned under this name, its rename to the final name needs
# only the ``upload`` permission, and one left behind is removed after
# ``partialUploadTtlSeconds``. The conventions (see docs/server.md, "Client temp names"):
# - ``NAME.filepart``: WinSCP (resumable transfers) and rclone;
# - ``.in.NAME``: lftp with ``set xfer:use-temp-file yes`` (its ``xfer:temp-file-name``
#   default ``.in.*``; lftp 4.9 measured), so also ``.in.NAME.`` of other lftp versions;
# - ``.giosaveXXXXXX``: gvfs's SFTP backend (Nautilus, ``gio copy`` onto an ``sftp://``
#   location) when it replaces a file: its ``replace_create_temp``, six random characters;
# - ``.goutputstream-XXXXXX``: GLib's local files (gedit, ``gio``) on an sshfs mount, its
#   ``g_local_file_output_stream_replace`` (``g_mkstemp``).
# Other clients upload to a name of their own choosing and rename (ssh2-sftp-client, JSch):
# that rename is allowed for the account's own recent upload (server.renames).
PARTIAL_UPLOAD_SUFFIXES = (".filepart",)
PARTIAL_UPLOAD_PREFIXES = (".in.", ".giosave", ".goutputstream-")


def is_reserved_name(name: str) -> bool:
    """True for ssftp's own hidden names (temp files, claims), which no client may see or touch.

    In any letter case: on a case-insensitive share ``.SSFTP-tmp-x`` *is* ssftp's temp file,
    and elsewhere such a look-alike has no business beside ssftp's names either.
    """
    return name.casefold().startswith(RESERVED_PREFIX)


def is_temp_name(name: str) -> bool:
    """True for a temp file that is garbage once nobody writes it (not claims: those hold data).

    Exact case: ssftp writes these names itself, and only its own files are ever deleted."""
    return name.startswith(TEMP_PREFIX)


def is_partial_upload_name(name: str) -> bool:
    """True for a client's in-progress upload name (``report.csv.filepart``,
    ``.in.report.csv``, ``.giosaveAB12CD``): the conventions listed at
    ``PARTIAL_UPLOAD_SUFFIXES``."""
    return name.endswith(PARTIAL_UPLOAD_SUFFIXES) or any(
        name.startswith(prefix) and len(name) > len(prefix)
        for prefix in PARTIAL_UPLOAD_PREFIXES)


def final_upload_name(name: str) -> str | None:
    """The name an upload at ``name`` is meant to end with: ``name`` itself, unless it is a
    client temp name; ``NAME`` for ``NAME.filepart`` and ``.in.NAME`` (``.in.NAME.``); None for
    the temp names that do not carry it (``.giosaveXXXXXX``, ``.goutputstream-XXXXXX``)."""
    if not is_partial_upload_name(name):
        return name
    for suffix in PARTIAL_UPLOAD_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    if name.startswith(".in."):
        return name.removeprefix(".in.").removesuffix(".") or None
    return None


def is_pending_name(name: str) -> bool:
    """True when a file of this name must not be scanned or handed on yet."""
    return is_reserved_name(name) or is_partial_upload_name(name)


def remove_stale_temp_files(root: Path, older_than_seconds: float, *,
                            now: float | None = None) -> list[Path]:
    """Delete ssftp temp files left by a crash (an upload that was never closed).

    Only old ones (untouched for ``older_than_seconds`` before ``now``, the clock unless a
    test gives one; see :func:`_untouched_since`): several instances may share the data
    root, and a young temp file may be an upload another instance is receiving right now.
    """
    cutoff = (time.time() if now is None else now) - older_than_seconds
    return _remove_old_files(root, cutoff, lambda relative: is_temp_name(relative.name))


def remove_stale_partial_uploads(root: Path, older_than_seconds: float, *,
                                 client_temp_names: bool, now: float | None = None,
                                 ) -> list[Path]:
    """Delete the uploads in progress that nobody finished: interrupted uploads the server
    kept for a resume (in a ``PARTIALS_DIR``) and, with ``client_temp_names``, clients' temp
    files (``*.filepart``, ``.in.NAME``, ...) whose client went away. Untouched for
    ``older_than_seconds`` (``partialUploadTtlSeconds``) before ``now`` (the clock, unless a
    test gives one): a resume or a live client keeps changing the file (see
    :func:`_untouched_since`).

    Client temp names are for staging only: in ``clean/`` such a name may be a file that was
    scanned before it counted as one (``.in.*`` did not), and a clean file is never deleted.
    """
    cutoff = (time.time() if now is None else now) - older_than_seconds
    return _remove_old_files(root, cutoff, lambda relative: _is_partial_upload(
        relative, client_temp_names=client_temp_names))


def _is_partial_upload(relative: Path, *, client_temp_names: bool) -> bool:
    """Never one in the scanner's claims: those hold files being scanned."""
    directories = relative.parts[:-1]
    return CLAIMS_DIR not in directories and (
        directories[-1:] == (PARTIALS_DIR,)
        or (client_temp_names and is_partial_upload_name(relative.name)))


def _remove_old_files(root: Path, cutoff: float,
                      garbage: Callable[[Path], bool]) -> list[Path]:
    """Remove the files below ``root`` for which ``garbage`` (of the path relative to
    ``root``) holds and that were last touched before ``cutoff``."""
    removed = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if garbage(path.relative_to(root)) and _untouched_since(path, cutoff):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _untouched_since(path: Path, cutoff: float) -> bool:
    """Whether nothing has changed ``path`` since ``cutoff``, by the server's own clock: its
    ctime, which every write, rename (kept for a resume) and attribute change sets to now.
    Not its mtime: a client sets that (``put -p``, SETSTAT on its open handle), and a partial
    dated 2100 would be kept for ever. False for a file gone since it was listed (published
    or removed by its writer)."""
    try:
        return path.lstat().st_ctime < cutoff
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class DataLayout:
    """The data root (``--data-dir``) and the areas under it."""

    root: Path

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def clean(self) -> Path:
        return self.root / "clean"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def uploadarchive(self) -> Path:
        return self.root / "uploadarchive"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def system(self) -> Path:
        return self.root / "system"

    @property
    def clamd(self) -> Path:
        """The run directory of the clamd that ``ssftp up`` starts (``ssftp scan`` finds it)."""
        return self.system / "clamd"

    @property
    def clamd_socket(self) -> Path:
        """Where the clamd that ``ssftp up`` starts listens."""
        return self.clamd / CLAMD_SOCKET

    @property
    def signatures(self) -> Path:
        """The signature database of the clamd that ``ssftp up`` starts: ssftp's own copy,
        so that freshclam can update it (the shipped test signatures are read-only package
        data, and ``/var/lib/clamav`` belongs to Debian's freshclam)."""
        return self.system / "clamav"

    @property
    def freshclam(self) -> Path:
        """The run directory of this instance's signature updates: freshclam's config and pid
        files, the lock that keeps two updates from running at once, and the files its
        custom URLs gave."""
        return self.system / "freshclam"

    @property
    def outbox(self) -> Path:
        """The webhook outbox (:mod:`ssftp.notify.outbox`): notifications owed and delivered."""
        return self.system / "outbox.sqlite3"

    @property
    def workers(self) -> Path:
        """The scan workers' heartbeats (:mod:`ssftp.scan.workers`): a file per live worker,
        by which they share out the staged files."""
        return self.system / "workers"

    @property
    def bans(self) -> Path:
        """The defender's bans (:mod:`ssftp.bans`), shared by every server on this root."""
        return self.system / "defender.sqlite3"

    @property
    def clamd_pid_file(self) -> Path:
        """Which clamd ``ssftp up`` runs: a start after a SIGKILL stops the one left behind."""
        return self.system / "clamd.pid"

    @property
    def prefect_pid_file(self) -> Path:
        """Which Prefect server ``ssftp up`` started, for the same reason."""
        return self.system / "prefect-server.pid"

    @property
    def default_config(self) -> Path:
        return self.system / "ssftp.yaml"

    def create(self) -> DataLayout:
        """Create the areas. ``system/`` holds keys and state, so only the owner may enter it."""
        for area in AREAS:
            path = self.root / area
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.system, 0o700)
        return self

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> DataLayout:
        return cls(Path(root).absolute())
