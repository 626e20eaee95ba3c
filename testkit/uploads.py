"""Uploads without an SSH client: the lifecycle object of server.upload on a directory of the
test's, as an SFTP session makes it at OPEN, for unit tests of the upload and the handles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from server.descriptors import DescriptorBudget
from server.jail import Jail
from server.off_loop import SessionThread
from server.recent_uploads import RecentUploads
from server.upload import Upload, UploadContext
from server.upload_writer import partial_path
from server.verdict_wait import VerdictWatch
from ssftp.layout import PARTIALS_DIR

USERNAME = "partner-a"


def room_for(handles: int) -> DescriptorBudget:
    """A descriptor budget of the test's own (not the process's) with room for ``handles``."""
    return DescriptorBudget(limit=handles + 1, handles=handles, connections=1)


@contextmanager
def upload_context(*, client_left: Callable[[], bool] = lambda: False,
                   budget: DescriptorBudget | None = None,
                   verdicts: VerdictWatch | None = None) -> Iterator[UploadContext]:
    """What a session's uploads share, with a session thread of their own (let go at the end)."""
    executor = SessionThread()
    try:
        yield UploadContext(executor, USERNAME, client_left=client_left,
                            budget=budget or room_for(64), recent=RecentUploads(), durable=False,
                            verdicts=verdicts)
    finally:
        executor.shutdown()


def begin_upload(context: UploadContext, root: Path, virtual: str, *, resume: bool = False,
                 replace: bool = True) -> Upload:
    """A new upload of ``virtual`` below ``root`` (the account's home), as OPEN makes it."""
    jail = Jail(root)
    target = jail.resolve(virtual.encode())
    return Upload.begin(context, jail, target, partial_path(jail, USERNAME, target.virtual),
                        replace=replace, append=False, resume=resume)


def partials(root: Path) -> dict[str, bytes]:
    """The interrupted uploads kept below ``root`` for a resume, by slot name."""
    kept = root / PARTIALS_DIR
    return {path.name: path.read_bytes() for path in kept.iterdir()} if kept.exists() else {}
