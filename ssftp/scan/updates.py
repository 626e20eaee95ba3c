"""One signature update: freshclam, then clamd made to load what changed, and proof it did.

:func:`update_signatures` removes the files of custom URLs no longer configured, runs
freshclam's passes on the target's database directory (:mod:`ssftp.scan.freshclam`), stamps
the directory with its generation (:mod:`ssftp.scan.signatures`) and, when that is not the
generation clamd has loaded, sends clamd ``RELOAD`` and polls until clamd *answers* with the
new generation: ``RELOADING`` only says a reload began, and a clamd that cannot load the new
files keeps scanning with the old ones (clamd 1.x: "Database reload failed, keeping the
previous instance"), which the poll sees as a generation that never comes.

The official download failing (offline, a mirror down) is a warning: the custom signatures
still update and clamd goes on with what it has. Anything else that goes wrong (freshclam that
cannot run on this machine, a custom URL that fails, a clamd that does not reload) is the
result's ``failure``, one line. The caller (the CLI, the Prefect flow) decides what that means
for its exit status or state; nothing here knows of either.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ssftp.config.schema import SignatureSettings
from ssftp.errors import SignatureUpdateError
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.database import UpdateTarget, drop_custom_files
from ssftp.scan.freshclam import passes, render_config, run_freshclam
from ssftp.scan.signatures import Signatures, write_generation

# A first download of the official databases is some 200 MB.
FRESHCLAM_TIMEOUT = 1800.0
# Loading the official databases takes clamd tens of seconds on a small machine.
RELOAD_TIMEOUT = 300.0
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class UpdateResult:
    """What an update did: the signatures clamd had before and has after, and what went wrong
    on the way (``warnings`` did not stop it; ``failure`` did, in one line)."""

    before: Signatures
    after: Signatures
    warnings: tuple[str, ...] = ()
    failure: str | None = None
    # What freshclam printed, every pass: for the log of whoever ran the update.
    freshclam_output: str = ""
    # The files of custom URLs no longer configured, removed from the database.
    removed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return str(self.before) != str(self.after)

    def describe(self) -> str:
        """``ClamAV 1.4.6/+3f9a… -> ClamAV 1.4.6/+77c0…``, or ``unchanged: …``."""
        return f"{self.before} -> {self.after}" if self.changed else f"unchanged: {self.after}"


def update_signatures(settings: SignatureSettings, target: UpdateTarget, *,
                      freshclam_timeout: float = FRESHCLAM_TIMEOUT,
                      reload_timeout: float = RELOAD_TIMEOUT,
                      poll_seconds: float = POLL_SECONDS) -> UpdateResult:
    """Update the signatures of ``target``'s clamd as ``settings`` say. Raises
    SignatureUpdateError when nothing could be tried (clamd does not answer, no database
    directory, another update under way); what went wrong later is the result's failure."""
    if not target.database.is_dir():
        raise SignatureUpdateError(f"no signature database directory at {target.database}")
    try:
        return _update(settings, target, freshclam_timeout, reload_timeout, poll_seconds)
    except OSError as exc:  # the database or run directory cannot be written
        raise SignatureUpdateError(f"signatures in {target.database} not updated: "
                                   f"{exc}") from None


def _update(settings: SignatureSettings, target: UpdateTarget, freshclam_timeout: float,
            reload_timeout: float, poll_seconds: float) -> UpdateResult:
    client = ClamdClient(target.address, timeout=30)
    with _one_update(target):
        before = _loaded(client)
        warnings: list[str] = []
        removed = drop_custom_files(target, settings.custom_urls)
        output: list[str] = []
        failure = None
        for which in passes(settings):
            conf = render_config(settings, target.database, target.run_dir, which)
            run = run_freshclam(conf, which, freshclam_timeout)
            output.append(run.output)
            if run.ok:
                continue
            if which == "official" and run.download_failed:
                warnings.append(f"official signatures not updated: {run.reason}")
            else:
                failure = failure or f"{which} signatures not updated: {run.reason}"
        generation = write_generation(target.database)
        after = before
        if before.generation != generation:
            after, late = _reload(client, generation, reload_timeout, poll_seconds)
            failure = failure or late
    return UpdateResult(before, after, tuple(warnings), failure, "".join(output),
                        tuple(removed))


def _loaded(client: ClamdClient) -> Signatures:
    try:
        return client.signatures()
    except OSError as exc:
        raise SignatureUpdateError(f"clamd at {client.address} does not answer: {exc}") from None


def _reload(client: ClamdClient, generation: str, timeout: float,
            poll_seconds: float) -> tuple[Signatures, str | None]:
    """RELOAD, and poll until clamd has loaded ``generation``; (what it has loaded, why it
    did not)."""
    try:
        client.command("RELOAD")
    except OSError as exc:
        return _loaded(client), f"clamd at {client.address} did not take RELOAD: {exc}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            current = client.signatures()
        except OSError:
            current = None  # busy swapping its engine: ask again
        if current is not None and current.generation == generation:
            return current, None
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_seconds)
    current = _loaded(client)
    return current, (f"clamd at {client.address} did not load the new signatures within "
                     f"{timeout:g} s (a signature file it cannot load? its log says why); it "
                     f"scans with {current}")


@contextmanager
def _one_update(target: UpdateTarget) -> Iterator[None]:
    """One update of a directory at a time (the schedule and `ssftp update-signatures` may
    meet): an flock that the kernel drops with a process that dies."""
    target.run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.run_dir / "update.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SignatureUpdateError(f"another signature update of {target.database} is "
                                       "under way") from None
        yield
    finally:
        os.close(fd)
