"""One upload from its OPEN to its close reply, and the one place that decides what its bytes
become (as SFTPGo's ``BaseTransfer.Close`` does for its transfers).

The bytes go to a hidden temp file, and the writer (server.upload_writer) carries out what the
close decides, remembering on the way the first request of the client's that failed. At the
close:

- the client has left (a dropped connection, or a client that sent EOF with the handle open:
  asyncssh then closes the handles for it): the upload is cut off, never published; what was
  received is kept hidden under ``.ssftp-partials/`` for a resume at its exact size, or
  discarded when there is nothing to resume (nothing received, a failed write);
- the client saw a request about this upload fail (a failed or short write, a failed fsync, a
  full disk, a write past the account's quota, a refused STAT of it): the bytes are of unknown
  content and discarded (kept for a resume only when the failure was a refused continuation
  of a resume, which changed nothing), and the close answers that nothing was published;
- else it is published under its final name, remembered for the SETSTATs that clients send
  by path right after (server.recent_uploads), and, when the account's close waits for the
  verdict, followed until the scanner has moved it (server.verdict_wait).

Whichever it is, the upload's part of its account's quota (server.quota) is settled with it:
counted on as a file of the area when published or kept, given back when discarded.

The transfer is logged as soon as the bytes are settled, not after the wait for the verdict,
which can last many seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from server.descriptors import DescriptorBudget
from server.jail import Jail, JailPath
from server.off_loop import SessionThread, run_off_loop
from server.quota import QuotaHold
from server.recent_uploads import RecentUploads
from server.upload_writer import UploadWriter
from server.verdict_wait import Destinations, PublishedFile, VerdictWatch, verdict_at_close
from ssftp.errors import UploadFailedError
from ssftp.file_stamp import FileStamp
from ssftp.layout import is_partial_upload_name
from ssftp.moves import proc_path
from ssftp.published import published_whole

CUT_OFF = "session ended before the file was closed"


@dataclass(frozen=True)
class UploadContext:
    """What the uploads of one session share."""

    executor: SessionThread  # where each upload's files are touched (server.off_loop)
    username: str
    # Whether the client is gone: asked at the close, and between looks for the verdict.
    client_left: Callable[[], bool]
    budget: DescriptorBudget  # the process's, which a wait for a verdict takes a slot of
    recent: RecentUploads
    durable: bool = True
    verdicts: VerdictWatch | None = None  # None where nothing scans (portable mode)


class Upload:
    """One upload: its ``writer`` takes the bytes, :meth:`close` settles them."""

    def __init__(self, writer: UploadWriter, virtual: str, context: UploadContext) -> None:
        self.writer = writer
        self.virtual = virtual
        self._context = context
        # Its part of the account's quota (server.quota), settled at the close; None when the
        # account has none.
        self.quota: QuotaHold | None = None

    @classmethod
    def begin(cls, context: UploadContext, jail: Jail, target: JailPath, partial: Path, *,
              replace: bool, append: bool, resume: bool,
              existing: Callable[[], int] | None = None) -> Upload:
        """A new upload of ``target``; with ``resume``, the continuation of the one waiting
        in ``partial`` if it is still there. ``existing`` opens the file the upload starts
        from (a write without truncate): its content is copied first, and the temp file is
        removed if that fails."""
        writer = UploadWriter(target.host, jail, replace=replace, append=append,
                              durable=context.durable, partial=partial, resume=resume,
                              when_idle=context.executor.when_idle)
        if existing is not None:
            try:
                fd = existing()
                try:
                    writer.start_from(fd)
                finally:
                    os.close(fd)
            except BaseException:
                writer.abort()
                raise
        return cls(writer, virtual=target.virtual, context=context)

    async def close(self, finished: Callable[[str | None], None]) -> str | None:
        """Publish, keep or discard the upload (see the module's doc); then the message the
        close reply fails with when the verdict is infected or unscannable, or None for OK.

        ``finished`` is called once with the transfer's error (None when published), before
        the wait for the verdict. An upload that is not published raises: UploadFailedError
        when the client saw a request fail (or the directory now leads out of the jail),
        FileExistsError when the name appeared meanwhile and may not be overwritten, OSError
        when the publish itself failed; in each case the temp file is gone."""
        context = self._context
        if context.client_left():
            kept = await run_off_loop(context.executor, self.writer.suspend)
            self._settle(kept)
            finished(CUT_OFF + ("; kept for a resume" if kept else ""))
            return None
        wait = self._verdict_wait()
        try:
            published = await run_off_loop(context.executor, self._publish,
                                           None if wait is None else wait[0])
        except UploadFailedError as exc:
            self._settle(self.writer.resumable_failure)  # a refused continuation is kept
            finished(str(exc))
            raise
        except FileExistsError:
            self._settle(False)
            finished("target appeared meanwhile; not overwritten")
            raise
        except OSError as exc:
            self._settle(False)
            finished(f"publish failed: {exc.strerror}")
            raise
        self._settle(True)
        finished(None)
        if published is None or wait is None:
            return None
        return await self._verdict(published, wait[1])

    def _settle(self, kept: bool) -> None:
        if self.quota is not None:
            self.quota.settle(kept)

    def _publish(self, follow: Destinations | None) -> PublishedFile | None:
        """Publish under the final name (refused for a void upload, which is discarded) and
        remember it, by its identity taken before the rename: the scanner may claim the file
        at once. With ``follow``, the file to wait for the verdict of (the caller closes
        it); its descriptor too is taken before, as a failure after the publish must not
        fail it."""
        writer = self.writer
        writer.finish_writes()  # a failure there voids the upload: commit() then discards it
        info = os.fstat(writer.fd)
        if follow is None:
            self._commit(info)
            return None
        followed = os.open(proc_path(writer.fd), os.O_PATH | os.O_CLOEXEC)
        try:
            self._commit(info)
        except BaseException:
            os.close(followed)
            raise
        return PublishedFile.just_published(followed, writer.target, follow)

    def _commit(self, info: os.stat_result) -> None:
        # Before the name appears, for the watcher that sees it appear; a client's temp name
        # too: renamed by the client, it is the same whole file.
        published_whole().remember(FileStamp.of(info))
        self.writer.commit()
        self._context.recent.remember(self._context.username, self.writer.target,
                                      (info.st_dev, info.st_ino))

    def _verdict_wait(self) -> tuple[Destinations, float] | None:
        """Where to follow the file and for how long (``scanning.verdictOnClose``), or None;
        asked at each close, so that a reload applies to the next one. Not at all for a
        client's temp name (``NAME.filepart``): it is scanned only once renamed."""
        verdicts = self._context.verdicts
        if verdicts is None or is_partial_upload_name(PurePosixPath(self.virtual).name):
            return None
        seconds = verdicts.seconds()
        return None if seconds is None else (verdicts.destinations, seconds)

    async def _verdict(self, published: PublishedFile, seconds: float) -> str | None:
        """The verdict's message (server.verdict_wait). The wait holds a descriptor, counted in
        the process's budget: without room there, the close answers OK at once."""
        context = self._context
        if not context.budget.take_handle():
            await run_off_loop(context.executor, published.close)
            return None
        try:
            return await verdict_at_close(context.executor, published, seconds,
                                          context.client_left)
        finally:
            context.budget.release_file()
