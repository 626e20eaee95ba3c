"""The download and upload flows and their deployments, on a real Prefect (the session's test
harness) against a real OpenSSH sshd on 127.0.0.1.

The transfer logic itself is tested without Prefect in test_client_transfers.py; here: run names,
table artifacts, retries on connection errors only, failed runs with clear messages, the
per-entry run lock, the per-host concurrency limit, schedules that follow ssftp.yaml on hot
reload, and prefect.yaml deployed with ``prefect deploy --all`` and run by a process worker.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import asyncssh
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterId,
    FlowRunFilterTags,
    TaskRunFilter,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.states import Running

from deployments.schedules import ScheduledDeployments, skip_busy_ticks
from deployments.transfers import TRANSFER_DEPLOYMENTS
from flows.download import download
from flows.transfer_run import host_limit_name
from ssftp.config.reload import ConfigStore
from ssftp.config.schema import Downloader
from ssftp.errors import RemoteRefusedError, RemoteUnavailableError, TransferFailedError
from ssftp.run_lock import exclusive_run
from testkit.openssh_server import OpenSshServer, sshd_available
from tests.support.repo import REPO
from tests.support.transfers import Instance

pytestmark = pytest.mark.skipif(not sshd_available(), reason="OpenSSH sshd is not installed")


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def instance(tmp_path: Path, client_key: asyncssh.SSHKey, sshd: OpenSshServer) -> Instance:
    return Instance(tmp_path, client_key, sshd)


async def latest_flow_run(flow_name: str, run_name: str):
    async with get_client() as client:
        runs = await client.read_flow_runs(limit=200)
    matching = [run for run in runs if run.name == run_name]
    assert matching, f"no flow run named {run_name!r}"
    return max(matching, key=lambda run: run.created)


async def task_runs_of(flow_run_id: UUID):
    async with get_client() as client:
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter())


async def test_download_run_is_named_after_its_downloader_and_has_a_table(prefect_api,
                                                                          instance):
    (instance.remote / "sub").mkdir()
    (instance.remote / "sub" / "report.csv").write_bytes(b"a,b\n1,2\n")
    instance.write([instance.entry("download", "partner-x.out")])

    results = await instance.download("partner-x.out")

    assert [(r.file, r.bytes, r.outcome) for r in results] == [("sub/report.csv", 8, "downloaded")]
    staged = instance.layout.staging / "partner-x.out" / "sub" / "report.csv"
    assert staged.read_bytes() == b"a,b\n1,2\n"
    run = await latest_flow_run("download", "download partner-x.out")
    assert run.state.is_completed()
    async with get_client() as client:
        artifact = await client.read_latest_artifacts()
        tables = [a for a in artifact if a.key == "download-partner-x-out"]
    assert tables and tables[0].type == "table"
    assert "sub/report.csv" in str(tables[0].data) and "downloaded" in str(tables[0].data)


async def test_remote_down_is_retried_then_the_run_fails_and_nothing_is_lost(prefect_api,
                                                                              instance):
    port = dead_port()
    (instance.layout.clean / "to-dead" / "keep.txt").parent.mkdir(parents=True)
    (instance.layout.clean / "to-dead" / "keep.txt").write_bytes(b"precious")
    instance.write(uploaders=[instance.entry("upload", "to-dead", port=port)])

    with pytest.raises(RemoteUnavailableError, match=f"cannot reach 127.0.0.1:{port}"):
        await instance.upload("to-dead")

    run = await latest_flow_run("upload", "upload to-dead")
    assert run.state.is_failed()
    assert f"cannot reach 127.0.0.1:{port}" in run.state.message
    (task_run,) = await task_runs_of(run.id)
    assert task_run.run_count == 3  # the first attempt and retries: 2
    assert (instance.layout.clean / "to-dead" / "keep.txt").read_bytes() == b"precious"
    assert not any(instance.layout.uploadarchive.rglob("*.txt"))


async def test_an_untrusted_host_key_fails_at_once_without_retries(prefect_api, instance):
    (instance.remote / "secret.txt").write_bytes(b"not for impostors")
    wrong = "SHA256:" + "A" * 43
    instance.write([instance.entry("download", "pinned").replace(
        instance.server.fingerprint, wrong)])

    with pytest.raises(RemoteRefusedError, match="is not trusted") as refused:
        await instance.download("pinned")

    assert instance.server.fingerprint in str(refused.value)
    run = await latest_flow_run("download", "download pinned")
    (task_run,) = await task_runs_of(run.id)
    assert task_run.run_count == 1
    assert task_run.name == f"download pinned with 127.0.0.1:{instance.server.port}"
    assert not (instance.layout.staging / "pinned").exists()


async def test_a_run_with_failed_files_fails_after_sending_the_others(prefect_api, instance):
    outbox = instance.layout.clean / "mixed"
    outbox.mkdir(parents=True)
    (outbox / "fine.txt").write_bytes(b"fine")
    (outbox / "blocked.txt").write_bytes(b"blocked")
    # A directory where the file should go: the remote rename cannot succeed.
    (instance.remote / "blocked.txt").mkdir()
    (instance.remote / "blocked.txt" / "x").write_bytes(b"")
    instance.write(uploaders=[instance.entry("upload", "mixed")])

    with pytest.raises(TransferFailedError, match=r"1 of 2 file\(s\) failed; first: "
                                                  r"mixed/blocked.txt"):
        await instance.upload("mixed")

    assert (instance.remote / "fine.txt").read_bytes() == b"fine"
    assert (instance.layout.uploadarchive / "mixed" / "fine.txt").read_bytes() == b"fine"
    assert (outbox / "blocked.txt").read_bytes() == b"blocked"
    assert not list(instance.remote.glob("*.filepart"))


async def test_switched_off_transfers_do_nothing(prefect_api, instance):
    (instance.remote / "a.txt").write_bytes(b"a")
    instance.write([instance.entry("download", "paused-dl")]).write_text(
        instance.config.read_text().replace("enableSftpClientDownloader: true",
                                            "enableSftpClientDownloader: false"))

    assert await instance.download("paused-dl") == []
    assert not (instance.layout.staging / "paused-dl").exists()


async def test_an_unknown_entry_fails_with_its_name(prefect_api, instance):
    instance.write()
    with pytest.raises(Exception, match="there is no uploader named 'ghost'"):
        await instance.upload("ghost")


async def test_a_run_does_nothing_while_the_previous_run_of_its_entry_is_going(prefect_api,
                                                                               instance):
    (instance.remote / "once.txt").write_bytes(b"once")
    instance.write([instance.entry("download", "busy")])

    with exclusive_run(instance.layout.system, "download", "busy") as mine:
        assert mine
        assert await instance.download("busy") == []
    assert not (instance.layout.staging / "busy").exists()
    # Once the lock is free the next run does the work.
    assert [r.outcome for r in await instance.download("busy")] == ["downloaded"]


async def test_runs_share_a_per_host_concurrency_limit_set_from_the_config(prefect_api,
                                                                           instance):
    (instance.remote / "p.txt").write_bytes(b"p")
    instance.write([instance.entry("download", "limited")],
                   transfers="maxConnectionsPerHost: 1, retries: 0")

    await instance.download("limited")

    entry = Downloader.model_validate({"name": "limited", "host": "127.0.0.1",
                                       "port": instance.server.port, "username": "u",
                                       "localStagingDirectory": "x"})
    async with get_client() as client:
        limit = await client.read_global_concurrency_limit_by_name(host_limit_name(entry))
    assert (limit.limit, limit.active) == (1, True)


async def deployment_schedules(deployment_id: UUID) -> dict[str, tuple[str, dict]]:
    async with get_client() as client:
        deployment = await client.read_deployment(deployment_id)
    found = {}
    for item in deployment.schedules:
        schedule = item.schedule
        when = (f"cron {schedule.cron}" if isinstance(schedule, CronSchedule)
                else f"every {schedule.interval.total_seconds():g}s"
                if isinstance(schedule, IntervalSchedule) else repr(schedule))
        found[item.slug] = (when, item.parameters)
    return found


async def test_schedules_follow_the_config_on_hot_reload(prefect_api, instance):
    instance.write([instance.entry("download", "d1", cron='"0 0 1 1 *"'),
                    instance.entry("download", "d2", cron='"30 2 * * *"')])
    store = ConfigStore.open(instance.config, instance.layout)
    transfers = ScheduledDeployments(store, str(instance.config), str(instance.layout.root),
                                     TRANSFER_DEPLOYMENTS)
    ready = asyncio.Event()
    running = asyncio.create_task(transfers.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        assert set(transfers.deployment_ids) == {"download"}  # no uploaders: nothing created
        download_id = transfers.deployment_ids["download"]
        assert await deployment_schedules(download_id) == {
            "d1": ("cron 0 0 1 1 *", {"name": "d1"}),
            "d2": ("cron 30 2 * * *", {"name": "d2"}),
        }
        async with get_client() as client:
            deployment = await client.read_deployment(download_id)
        assert deployment.name == instance.layout.root.parent.name
        assert deployment.parameters == {"config": str(instance.config),
                                         "data_dir": str(instance.layout.root)}

        # Change d1, remove d2, add an uploader: one reload does all three.
        instance.write([instance.entry("download", "d1", interval=7200)],
                       [instance.entry("upload", "u1", cron='"0 0 1 1 *"')])
        assert store.reload()
        for _ in range(200):
            if "upload" in transfers.deployment_ids and await deployment_schedules(
                    download_id) == {"d1": ("every 7200s", {"name": "d1"})}:
                break
            await asyncio.sleep(0.1)
        assert await deployment_schedules(download_id) == {"d1": ("every 7200s", {"name": "d1"})}
        assert await deployment_schedules(transfers.deployment_ids["upload"]) == {
            "u1": ("cron 0 0 1 1 *", {"name": "u1"})}

        # Switching downloaders off removes their schedules.
        instance.config.write_text(instance.config.read_text().replace(
            "enableSftpClientDownloader: true", "enableSftpClientDownloader: false"))
        assert store.reload()
        for _ in range(200):
            if await deployment_schedules(download_id) == {}:
                break
            await asyncio.sleep(0.1)
        assert await deployment_schedules(download_id) == {}
        # Both are served by this process's runner: Prefect knows them without a work pool.
        assert await work_pools(transfers) == {"download": None, "upload": None}
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    async with get_client() as client:
        deployment = await client.read_deployment(transfers.deployment_ids["upload"])
    assert deployment.paused  # nobody serves it any more: its schedules are paused


async def work_pools(transfers: ScheduledDeployments) -> dict[str, str | None]:
    """Which work pool runs each deployment, as the Prefect server records it (None: the
    process that serves it)."""
    async with get_client() as client:
        return {kind: (await client.read_deployment(deployment_id)).work_pool_name
                for kind, deployment_id in transfers.deployment_ids.items()}


def prefect_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    prefect = str(Path(sys.executable).with_name("prefect"))
    return subprocess.run([prefect, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)


async def test_prefect_yaml_deploys_to_a_work_pool_that_runs_the_transfers(prefect_api,
                                                                           instance):
    (instance.remote / "pooled.txt").write_bytes(b"run by a process worker")
    instance.write([instance.entry("download", "pooled", cron='"0 0 1 1 *"')])
    name = instance.layout.root.parent.name
    env = dict(os.environ, PREFECT_API_URL=prefect_api, SSFTP_INSTANCE=name,
               SSFTP_CONFIG=str(instance.config), SSFTP_DATA_DIR=str(instance.layout.root))
    created = prefect_cli("work-pool", "create", "ssftp", "--type", "process", env=env)
    assert created.returncode == 0 or "already exists" in created.stdout + created.stderr
    deployed = prefect_cli("--no-prompt", "deploy", "--all", env=env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    store = ConfigStore.open(instance.config, instance.layout)
    transfers = ScheduledDeployments(store, str(instance.config), str(instance.layout.root),
                                     TRANSFER_DEPLOYMENTS)
    await transfers.sync()
    # The pool runs them; ssftp only keeps the schedules.
    assert await work_pools(transfers) == {"download": "ssftp"}
    assert await deployment_schedules(transfers.deployment_ids["download"]) == {
        "pooled": ("cron 0 0 1 1 *", {"name": "pooled"})}

    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(
            transfers.deployment_ids["download"], parameters={"name": "pooled"})
    worked = await asyncio.to_thread(
        prefect_cli, "worker", "start", "--pool", "ssftp", "--run-once", env=env)
    assert worked.returncode == 0, worked.stdout + worked.stderr
    async with get_client() as client:
        finished = await client.read_flow_run(run.id)
    assert finished.state.is_completed(), (finished.state, worked.stdout[-3000:])
    assert finished.name == "download pooled"
    staged = instance.layout.staging / "pooled" / "pooled.txt"
    assert staged.read_bytes() == b"run by a process worker"


async def runs_tagged(*tags: str):
    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=list(tags))))


async def test_a_run_says_what_it_did_in_its_state_and_tags(prefect_api, instance):
    (instance.remote / "one.txt").write_bytes(b"1")
    instance.write([instance.entry("download", "told")])

    await instance.download("told")

    run = await latest_flow_run("download", "download told")
    assert (run.state.type, run.state.name, run.state.message) == (
        StateType.COMPLETED, "Downloaded", "1 downloaded")
    assert {f"instance:{instance.layout.root.parent.name}", "downloader:told"} <= set(run.tags)
    assert "idle" not in run.tags


async def test_only_the_latest_idle_run_of_an_entry_stays(prefect_api, instance):
    name = instance.layout.root.parent.name
    instance.write([instance.entry("download", "quiet"), instance.entry("download", "other")])
    await instance.download("quiet")
    await instance.download("quiet")
    await instance.download("other")
    (instance.remote / "news.txt").write_bytes(b"news")
    await instance.download("quiet")  # moves news.txt
    await instance.download("quiet")  # idle again: news.txt was fetched

    quiet = sorted(await runs_tagged(f"instance:{name}", "downloader:quiet"),
                   key=lambda run: run.created)
    assert [(run.state.name, run.state.message) for run in quiet] == [
        ("Downloaded", "1 downloaded"), ("Idle", "nothing to download")]
    assert "idle" in quiet[-1].tags
    other = await runs_tagged(f"instance:{name}", "downloader:other")
    assert [run.state.name for run in other] == ["Idle"]


async def test_the_ticks_of_a_busy_entry_are_skipped_before_they_start(prefect_api, instance):
    instance.write()
    deployment = await download.ato_deployment(
        name=f"ticks-{instance.layout.root.parent.name}",
        parameters={"config": str(instance.config), "data_dir": str(instance.layout.root)},
        schedules=[DeploymentScheduleCreate(schedule=IntervalSchedule(interval=timedelta(
            seconds=5)), slug=entry, parameters={"name": entry}) for entry in ("slow", "quick")])
    deployment_id = await deployment.apply()
    async with get_client() as client:
        by_hand = await client.create_flow_run_from_deployment(
            deployment_id, parameters={"name": "slow"}, state=Running())

    async def ticks(entry: str, before: datetime) -> list:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])))
        return [run for run in runs if run.parameters.get("name") == entry
                and run.auto_scheduled and run.state.is_scheduled()
                and run.next_scheduled_start_time < before]

    # What Prefect's scheduler service does for a deployment's schedules (the test harness
    # runs no such service): ticks of each schedule, auto-scheduled. Through Prefect's client,
    # which asks again when the harness's SQLite turns the write away (a 503 failed it in CI).
    async with get_client() as client:
        made = await client.request("POST", "/deployments/{id}/schedule",
                                    path_params={"id": deployment_id},
                                    json={"min_runs": 8, "max_runs": 8})
    assert made.is_success, made.text
    ahead = datetime.now(UTC) + timedelta(seconds=55)
    assert [len(await ticks(entry, ahead)) >= 3 for entry in ("slow", "quick")] == [True, True]

    assert await skip_busy_ticks([deployment_id], ahead=60) > 0

    assert await ticks("slow", ahead) == []  # its run by hand still goes
    assert len(await ticks("quick", ahead)) == 1  # its earliest tick runs
    async with get_client() as client:
        assert (await client.read_flow_run(by_hand.id)).state.is_running()


async def test_the_deployments_of_an_earlier_instance_name_are_paused(prefect_api, instance):
    old = f"old-{instance.layout.root.parent.name}"
    instance.write([instance.entry("download", "renamed", cron='"0 0 1 1 *"')])
    instance.config.write_text(instance.config.read_text().replace(
        f"instanceName: {instance.layout.root.parent.name}", f"instanceName: {old}"))
    elsewhere = await download.ato_deployment(
        name=f"elsewhere-{old}", parameters={"config": str(instance.config),
                                             "data_dir": "/srv/another-root"})
    elsewhere_id = await elsewhere.apply()

    async def serve_once() -> dict[str, UUID]:
        transfers = ScheduledDeployments(ConfigStore.open(instance.config, instance.layout),
                                         str(instance.config), str(instance.layout.root),
                                         TRANSFER_DEPLOYMENTS)
        ready = asyncio.Event()
        running = asyncio.create_task(transfers.run(ready))
        try:
            await asyncio.wait_for(ready.wait(), 60)
            return dict(transfers.deployment_ids)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    old_ids = await serve_once()
    async with get_client() as client:
        await client.resume_deployment(old_ids["download"])  # as a killed `up` leaves it
    instance.write([instance.entry("download", "renamed", cron='"0 0 1 1 *"')])
    new_ids = await serve_once()

    async with get_client() as client:
        stale = await client.read_deployment(old_ids["download"])
        other = await client.read_deployment(elsewhere_id)
        current = await client.read_deployment(new_ids["download"])
    assert stale.name == old and stale.paused
    assert not other.paused  # another data root's: not this config's to pause
    assert current.name == instance.layout.root.parent.name


async def test_a_stop_leaves_no_runner_directory(prefect_api, instance, tmp_path, monkeypatch):
    """``ssftp up``'s worker cancels its parts twice (a gather, then each part): the runner's
    stop was cut short, and ``$TMPDIR/runner_storage/<uuid>`` stayed."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    instance.write([instance.entry("download", "stopped", cron='"0 0 1 1 *"')])
    transfers = ScheduledDeployments(ConfigStore.open(instance.config, instance.layout),
                                     str(instance.config), str(instance.layout.root),
                                     TRANSFER_DEPLOYMENTS)
    ready = asyncio.Event()
    running = asyncio.create_task(transfers.run(ready))
    await asyncio.wait_for(ready.wait(), 60)
    assert list((temp / "runner_storage").iterdir())  # the runner's own, while it serves
    parts = asyncio.gather(running)
    parts.cancel()
    await asyncio.sleep(0)
    running.cancel()
    await asyncio.gather(parts, return_exceptions=True)

    assert running.done()
    assert list((temp / "runner_storage").iterdir()) == []
