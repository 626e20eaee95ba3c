"""The release flow: a release from quarantine as a Prefect run, and with
``quarantine.releaseApproval`` the second person's approval, asked for in the Prefect UI.

The run rescans the file first (a file still detected is refused before anyone is asked),
then, when approval is on, pauses for :class:`Approval` input (Prefect's pause-for-input: the
UI shows a form on the paused run). The file moves only when an approver who is not the
operator says yes; a no, the operator approving their own release, or no answer within the
timeout moves nothing, and each is in the audit record. Prefect OSS has no logins, so the
approver's name is the one typed into the form: the audit record keeps it as given.

The run's final state says what happened (``Released``, ``Refused``, ``Rejected``); a
failure (no verdict from clamd, the name taken in ``clean/``) fails the run with the reason.
A release emits ``ssftp.file.released`` and sends its ``released`` webhooks at once (what
is not delivered stays owed in the outbox for the worker).

The work is :class:`ssftp.areas.release.Releaser`; the run is built per caller, like the
scan flow, so the releaser stays out of the run's parameters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import cast

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.exceptions import FailedRun, FlowPauseTimeout
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from pydantic import Field

from flows.artifacts import publish_quarantine_table
from flows.events import scan_event
from flows.parameters import decode_name, encode_name
from ssftp.areas.quarantine import AREA
from ssftp.areas.release import APPROVAL_TIMEOUT_SECONDS, Releaser, Request
from ssftp.errors import ReleaseRefusedError, SsftpError
from ssftp.logs import one_line
from ssftp.notify.direct import send_now

# How often the paused run asks whether it was resumed.
APPROVAL_POLL_SECONDS = 2


class Approval(RunInput):
    """The form on the paused run in the Prefect UI."""

    approver: str = Field(min_length=1, max_length=200, description=(
        "Your name: a second person, not the one who asked for the release"))
    approve: bool = Field(description="Release the file to clean/ (unchecked: keep it in "
                                      "quarantine)")


@dataclass(frozen=True)
class Outcome:
    """What a release run did, for its caller: moved or not, and the line that says so."""

    released: bool
    message: str


def to_parameter(sub_path: PurePosixPath) -> str:
    """A quarantined file's name (below quarantine/) as the run's parameter."""
    return encode_name(sub_path.as_posix())


def from_parameter(value: str) -> PurePosixPath:
    return PurePosixPath(decode_name(value))


def _run_name() -> str:
    shown = one_line(str(from_parameter(str(flow_run.parameters.get("file", "")))))
    return f"release {shown}"


class ReleaseRuns:
    """The release flow bound to a :class:`Releaser`; ``announce`` is told where the run
    waits for its approver (the CLI prints it)."""

    def __init__(self, releaser: Releaser, *, approval: bool,
                 announce: Callable[[str], None],
                 timeout: int = APPROVAL_TIMEOUT_SECONDS) -> None:
        self.releaser = releaser
        self.approval = approval
        self.announce = announce
        self.timeout = timeout

        @flow(name="release", flow_run_name=_run_name)
        async def release(file: str, reason: str, operator: str, force: bool) -> State[Outcome]:
            try:
                return await self._release(from_parameter(file),
                                           Request(reason, operator, force))
            except SsftpError as exc:
                # An expected failure (no verdict, the name taken in clean/): the run fails
                # with the reason, and its caller gets the error, without a traceback in the
                # run's log (the one of a bug still has one).
                get_run_logger().error("%s", exc)
                return Failed(message=str(exc), data=exc)

        self._flow = release

    async def _release(self, sub_path: PurePosixPath, request: Request) -> State[Outcome]:
        """The run's body, in the module's order: rescan, check, ask, release, tell."""
        releaser = self.releaser
        rescan = await asyncio.to_thread(releaser.rescan, sub_path)
        logger = get_run_logger()
        logger.info("%s rescanned: %s (%s)", rescan.shown, rescan.verdict.kind,
                    one_line(rescan.finding))
        try:
            releaser.check(rescan, request.force)
        except ReleaseRefusedError as exc:
            releaser.refused(rescan, request, str(exc), flow_run.id)
            return Completed(name="Refused", message=str(exc), data=Outcome(False, str(exc)))
        if self.approval:
            approver, refusal = await self._approval(request)
            request = Request(request.reason, request.operator, request.force, approver)
            if refusal is not None:
                message = f"{rescan.shown} stays in quarantine: {refusal}"
                releaser.refused(rescan, request, refusal, flow_run.id)
                return Completed(name="Rejected", message=message, data=Outcome(False, message))
        released = await asyncio.to_thread(releaser.release, rescan, request, flow_run.id)
        scan_event(released.event, released.result, releaser.config.instance_name).emit()
        await publish_quarantine_table(releaser.layout, releaser.config.instance_name)
        for line in await send_now(releaser.outbox, released.notifications):
            logger.warning("%s", line)
        message = f"{rescan.shown} released to {released.result.destination}"
        return Completed(name="Released", message=message, data=Outcome(True, message))

    async def _approval(self, request: Request) -> tuple[str | None, str | None]:
        """Pause for the approver; (their name, None) when approved, else (name, why not)."""
        timeout = self.timeout
        self.announce(f"waiting for a second person's approval in the Prefect UI: flow run "
                      f"{flow_run.id} {flow_run.ui_url or ''}".rstrip())
        try:
            answer = await apause_flow_run(wait_for_input=Approval, timeout=timeout,
                                           poll_interval=APPROVAL_POLL_SECONDS)
        except FlowPauseTimeout:
            return None, f"not approved within {timeout} s"
        approver = answer.approver.strip()
        if approver.casefold() == request.operator.casefold():
            return approver, "the operator who asked cannot approve their own release"
        if not answer.approve:
            return approver, f"rejected by {approver}"
        return approver, None

    async def run(self, sub_path: PurePosixPath, request: Request) -> Outcome:
        """One release run; raises what failed it (nothing moved then). The run ends in the
        state its body returns, and Prefect hands the caller that state's data: the cast.

        Except after a pause that timed out: Prefect then fails the run whatever its body
        returns (a paused run may only resume), and hands the caller a FailedRun. Nothing moved
        (the body has written the audit record saying why): a refusal."""
        try:
            return cast("Outcome", await self._flow(
                file=to_parameter(sub_path), reason=request.reason,
                operator=request.operator, force=request.force))
        except FailedRun as exc:
            if not self.approval:  # no pause: a failure of its own, not a refusal
                raise
            message = (f"{AREA}/{one_line(sub_path.as_posix())} stays in quarantine: not "
                       f"approved within {self.timeout} s ({exc})")
            return Outcome(False, message)
