"""flows.transfer_run's wording and its choice of runs to delete, as plain functions: what a
transfer run's final state, message and tags say, and which older idle runs an idle run may
delete. Real runs read back through the API are in tests/integration/test_flows_transfers.py."""

from __future__ import annotations

from uuid import uuid4

from prefect.client.schemas.objects import FlowRun
from prefect.states import Completed, Failed, Running

from client.kinds import DOWNLOAD, UPLOAD
from flows.transfer_run import (
    IDLE_STATE,
    counts_message,
    entry_tags,
    final_state,
    older_idle_runs,
)
from ssftp.transfer.local import TransferResult

TAGS = ["instance:gw-1", "downloader:partner"]


def rows(*outcomes: str) -> list[TransferResult]:
    return [TransferResult(file=f"f{index}", bytes=1, outcome=outcome)  # type: ignore[arg-type]
            for index, outcome in enumerate(outcomes)]


def test_a_run_that_moved_files_says_so_with_its_counts():
    state = final_state(DOWNLOAD, rows("downloaded", "downloaded", "skipped"))
    assert state.is_completed()
    assert (state.name, state.message) == ("Downloaded", "2 downloaded, 1 skipped")
    assert final_state(UPLOAD, rows("uploaded")).name == "Uploaded"


def test_a_run_that_moved_nothing_is_idle():
    assert (final_state(DOWNLOAD, []).name, final_state(DOWNLOAD, []).message) == (
        IDLE_STATE, "nothing to download")
    only_skipped = final_state(UPLOAD, rows("skipped"))
    assert (only_skipped.name, only_skipped.message) == (IDLE_STATE, "1 skipped")
    assert final_state(DOWNLOAD, [], "the previous run is still going").message == (
        "the previous run is still going")


def test_failed_files_are_counted_and_never_idle():
    assert counts_message(UPLOAD, rows("uploaded", "failed")) == "1 uploaded, 1 failed"
    assert final_state(UPLOAD, rows("failed")).name == "Uploaded"


def test_tags_name_the_instance_and_the_entry_by_its_role():
    assert entry_tags(DOWNLOAD, "gw-1", "partner") == TAGS
    assert entry_tags(UPLOAD, "gw-1", "next-hop") == ["instance:gw-1", "uploader:next-hop"]


def run(tags: list[str], state=None) -> FlowRun:
    return FlowRun(id=uuid4(), flow_id=uuid4(), tags=tags,
                   state=state if state is not None else Completed(name=IDLE_STATE))


def test_an_idle_run_deletes_only_older_idle_runs_of_its_own_entry():
    own = run([*TAGS, "idle"])
    older = run([*TAGS, "idle"])
    candidates = [
        own, older,
        run([*TAGS, "idle"], Completed(name="Downloaded")),  # moved files
        run([*TAGS, "idle"], Failed(name=IDLE_STATE)),  # failed
        run([*TAGS, "idle"], Running()),  # still going
        run(["instance:gw-2", "downloader:partner", "idle"]),  # another instance's
        run(["instance:gw-1", "downloader:other", "idle"]),  # another entry's
        run(TAGS),  # not tagged idle
    ]
    assert older_idle_runs(candidates, own.id, TAGS) == [older]
