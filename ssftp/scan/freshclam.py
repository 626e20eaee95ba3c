"""Running freshclam once on a database directory, and reading what it said.

freshclam 1.x updates the official databases first and the ``DatabaseCustomURL`` files after
them, and gives up on the custom ones when the official download fails: offline, a site's own
``file://`` signatures would never arrive. So an update is two passes of its own
(:data:`PASSES`): ``official`` (main, daily, bytecode from the mirrors or the private mirror,
no custom URLs) and ``custom`` (``--update-db=custom``: the custom URLs only, without asking
DNS or touching the official files). ``official: false`` runs the custom pass alone, so no
official database is fetched, and those already in the directory are left as they are (an
``ExcludeDatabase`` would delete them).

freshclam downloads into a temp directory, loads each new file into a test engine
(``TestDatabases``) and only then renames it into place: a missing, broken or truncated file
never replaces a good one where clamd loads it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ssftp.config.schema import SignatureSettings

TEMPLATE = Path(__file__).resolve().parents[1] / "clamav" / "freshclam.conf"
# ClamAV's own mirror, asked by DNS first (what freshclam's example config has).
OFFICIAL_MIRROR = "database.clamav.net"
FRESHCLAM_BINARIES = ("/usr/bin/freshclam", "freshclam")

Pass = Literal["official", "custom"]
PASSES: tuple[Pass, ...] = ("official", "custom")
# freshclam's exit statuses (libfreshclam's fc_error_t) that blame the server or the network,
# not this machine: connection failed, empty file, bad CVD, HTTP GET failed, mirror not in
# sync, blocked by the CDN, too many requests. The others (its config, the database
# directory, its user) fail on this machine whatever the network does.
DOWNLOAD_FAILURES = frozenset({5, 6, 7, 11, 12, 17, 18})
# Lines freshclam ends every failure with: they say that it failed, not why.
_GENERIC = ("Update failed.", "Database update process failed:")
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


@dataclass(frozen=True)
class FreshclamRun:
    """What one pass of freshclam did."""

    which: Pass
    ok: bool
    # Why it failed, in one line (empty when ``ok``).
    reason: str
    # Everything it printed, for the log of whoever ran it.
    output: str
    # It failed to download (the mirror, the network), not to run: for the official
    # databases a warning, not a failure (see ssftp.scan.updates).
    download_failed: bool = False


def passes(settings: SignatureSettings) -> list[Pass]:
    """The passes an update of ``settings`` runs, official first."""
    wanted = {"official": settings.official, "custom": bool(settings.custom_urls)}
    return [which for which in PASSES if wanted[which]]


def render_config(settings: SignatureSettings, database: Path, run_dir: Path,
                  which: Pass) -> Path:
    """Write ``freshclam-<pass>.conf`` for ``database`` into ``run_dir``."""
    if settings.private_mirror:
        mirrors = f"PrivateMirror {settings.private_mirror.rstrip('/')}"
    else:
        # freshclam refuses to start without one, also for the custom pass.
        mirrors = f"DatabaseMirror {OFFICIAL_MIRROR}"
    custom = ("\n".join(f"DatabaseCustomURL {url}" for url in settings.custom_urls)
              if which == "custom" else "")
    values = {
        "@DATABASE@": str(database),
        "@PIDFILE@": str(run_dir / f"freshclam-{which}.pid"),
        "@OWNER@": database_owner(database),
        "@MIRRORS@": mirrors,
        "@CUSTOM@": custom,
    }
    text = TEMPLATE.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = run_dir / f"freshclam-{which}.conf"
    conf.write_text(text)
    return conf


def database_owner(database: Path) -> str:
    """The user freshclam drops to when started by root (it refuses to run as root without
    one): the directory's owner, so the files it writes belong to whoever owns the rest (the
    clamd that loads them); this process's user when that has no name."""
    for uid in (database.stat().st_uid, os.geteuid()):
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            continue
    return "root"


def run_freshclam(conf: Path, which: Pass, timeout: float) -> FreshclamRun:
    """One pass of freshclam with ``conf``, its output captured; never raises for what
    freshclam did (a failure is a run that is not ``ok``, with the reason)."""
    options = [f"--config-file={conf}", "--stdout"]
    if which == "custom":
        options += ["--update-db=custom", "--no-dns"]
    try:
        done = subprocess.run([_binary(), *options], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        return FreshclamRun(which, False, "freshclam is not installed (Debian package "
                            "clamav-freshclam)", "")
    except subprocess.TimeoutExpired as exc:
        output = _redacted(_text(exc.stdout))
        return FreshclamRun(which, False, f"freshclam did not finish within {timeout:g} s",
                            output, download_failed=True)
    output = _redacted(_text(done.stdout))
    if done.returncode == 0:
        return FreshclamRun(which, True, "", output)
    return FreshclamRun(which, False, failure_reason(output, done.returncode), output,
                        download_failed=done.returncode in DOWNLOAD_FAILURES)


def failure_reason(output: str, returncode: int) -> str:
    """The lines of freshclam's output that say why it failed, in one line: its errors
    (``ERROR: ...``) and what it said of a custom URL, less the generic last words."""
    picked: list[str] = []
    for raw in output.splitlines():
        line = " ".join(raw.split())
        text = line.removeprefix("ERROR:").strip()
        said = line.startswith("ERROR:") or "DatabaseCustomURL" in line \
            or "custom database URL" in line
        if said and text and not text.startswith(_GENERIC) and text not in picked:
            picked.append(text)
    return "; ".join(picked) or f"freshclam exited with status {returncode}"


def _redacted(output: str) -> str:
    """freshclam names the URLs it fetched: a password in one (``https://user:pw@host/``)
    must not reach a log or a run's state."""
    return _USERINFO.sub(r"\1***@", output)


def _binary() -> str:
    for candidate in FRESHCLAM_BINARIES:
        if found := shutil.which(candidate):
            return found
    raise FileNotFoundError("freshclam")


def _text(output: bytes | str | None) -> str:
    if output is None:
        return ""
    return output if isinstance(output, str) else output.decode("utf-8", "replace")
