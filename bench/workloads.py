"""The workloads: what is timed, against which reference, and what ssftp must reach.

Each SFTP workload runs ssftp and OpenSSH alternately (A B A B ...), so that a slow moment of
the machine falls on both. Files move to and from a ``Side``: a server plus the directories its
uploads land in and its downloads come from, checked after every transfer (a transfer that did
not arrive whole is an error, not a figure) and emptied before the next one, outside the timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from bench.clients import (
    Login,
    concurrent_sftp,
    idle_sessions,
    login_rate,
    soak,
    timed_get,
    timed_sftp,
    upload_latencies,
)
from bench.cpu import CpuSplit, Meter, cpu_burners
from bench.memory import Memory, tree_memory
from bench.results import Better, Row, Samples, Target, format_number
from ssftp.scan.clamd import ClamdClient
from testkit.delay_proxy import delay_proxy
from testkit.files import make_random_file

MB = 1_000_000
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
T = TypeVar("T")
RAW_CLAMD = "raw clamd CONTSCAN"
FLOOR = "asyncssh's bare SFTP server"


@dataclass(frozen=True)
class Side:
    """One server as the workloads see it."""

    name: str
    pid: int
    uploader: Login
    downloader: Login
    upload_dir: Path
    download_dir: Path


@dataclass(frozen=True)
class Sizes:
    """How much each workload moves; the defaults are the issue's, ``--smoke`` shrinks them."""

    rounds: int = 5
    big_file_bytes: int = 256 * MIB
    far_file_bytes: int = 64 * MIB
    link_delay_seconds: float = 0.04  # each way: a continent away
    small_files: int = 1000
    small_downloads: int = 1000
    small_file_bytes: int = 4 * KIB
    concurrent_downloads: int = 8
    concurrent_file_bytes: int = 64 * MIB
    sshfs_file_bytes: int = 64 * MIB
    sshfs_listing_files: int = 2000
    logins: int = 50
    idle_sessions: int = 100
    pipeline_files: int = 1000
    pipeline_file_bytes: int = 64 * KIB
    latency_samples: int = 20
    soak_clients: int = 8
    soak_rate: float = 52.0  # files/s offered: the target's 50 reached with a little to spare
    soak_seconds: float = 30.0
    # 1 KiB to 8 MiB, most files small: 0.94 MiB on average, some 49 MB/s at 52 files/s.
    soak_file_sizes: tuple[int, ...] = (1 * KIB, 2 * KIB, 4 * KIB, 8 * KIB, 16 * KIB, 32 * KIB,
                                        64 * KIB, 256 * KIB, 1 * MIB, 8 * MIB)
    rescan_files: int = 20000


def write_file_set(directory: Path, count: int, size: int) -> list[str]:
    """``count`` random files of ``size`` bytes in ``directory``; their names."""
    names = [f"file-{index:05d}.bin" for index in range(count)]
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        make_random_file(directory / name, size)
    return names


def expect_file(path: Path, size: int) -> None:
    try:
        found = path.stat().st_size
    except FileNotFoundError:
        raise RuntimeError(f"{path} is missing after the transfer") from None
    if found != size:
        raise RuntimeError(f"{path} has {found} bytes after the transfer, expected {size}")


def alternate(sides: list[Side], rounds: int, measure: Callable[[Side], T]) \
        -> dict[str, list[T]]:
    """``measure`` each side in turn, ``rounds`` times; the results by side name."""
    results: dict[str, list[T]] = {side.name: [] for side in sides}
    for _ in range(rounds):
        for side in sides:
            results[side.name].append(measure(side))
    return results


def side_row(name: str, unit: str, better: Better, values: dict[str, list[float]], ssftp: Side,
             reference: Side | None, target: Target | None, note: str = "") -> Row:
    return Row(name=name, better=better, figure=Samples(unit, values[ssftp.name]),
               reference_name=reference.name if reference else None,
               reference=Samples(unit, values[reference.name]) if reference else None,
               target=target, note=note)


@contextlib.contextmanager
def served(sides: list[Side], files: dict[str, Path]) -> Iterator[None]:
    """``files`` (name: local source) in every side's download directory for the block.
    Copies: ssftp refuses to open a file with other hard links."""
    placed = []
    for side in sides:
        for name, source in files.items():
            target = side.download_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            placed.append(target)
    try:
        yield
    finally:
        for target in placed:
            target.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Transfer:
    """One timed ``sftp`` session and the CPU the server spent on it."""

    seconds: float
    cpu_seconds: float


def _big_file_rounds(sides: list[Side], client: Path, sizes: Sizes) \
        -> tuple[dict[str, list[_Transfer]], dict[str, list[_Transfer]]]:
    """``sizes.rounds`` uploads and downloads of one big file on every side, alternating."""
    size = sizes.big_file_bytes
    source = make_random_file(client / "big.bin", size)

    def transfer(side: Side, login: Login, command: str, arrived: Path) -> _Transfer:
        meter = Meter(side.pid)
        meter.start()
        seconds = timed_sftp(login, [command], client)
        cpu_seconds = meter.stop()
        expect_file(arrived, size)
        arrived.unlink()
        return _Transfer(seconds, cpu_seconds)

    def upload(side: Side) -> _Transfer:
        return transfer(side, side.uploader, "put big.bin up.bin", side.upload_dir / "up.bin")

    def download(side: Side) -> _Transfer:
        return transfer(side, side.downloader, "get down.bin fetched.bin",
                        client / "fetched.bin")

    with served(sides, {"down.bin": source}):
        uploads = alternate(sides, sizes.rounds, upload)
        downloads = alternate(sides, sizes.rounds, download)
    source.unlink()
    return uploads, downloads


def _throughput(transfers: dict[str, list[_Transfer]], size: int) -> dict[str, list[float]]:
    return {name: [size / one.seconds / MB for one in ones] for name, ones in transfers.items()}


def big_file(ssftp: Side, reference: Side | None, client: Path, sizes: Sizes) -> list[Row]:
    """Upload and download of one large file: MB/s over the whole ``sftp`` session, and the
    CPU the server's process tree spent per GiB moved (bench.cpu says how it is counted)."""
    sides = [side for side in (ssftp, reference) if side is not None]
    uploads, downloads = _big_file_rounds(sides, client, sizes)
    size = sizes.big_file_bytes
    label = f"{size / MIB:g} MiB"

    def cpu_per_gib(transfers: dict[str, list[_Transfer]]) -> dict[str, list[float]]:
        return {name: [one.cpu_seconds / (size / GIB) for one in ones]
                for name, ones in transfers.items()}

    return [
        side_row(f"upload 1x{label}", "MB/s", Better.HIGHER, _throughput(uploads, size), ssftp,
                 reference, Target.ratio_at_least(1.3)),
        side_row(f"download 1x{label}", "MB/s", Better.HIGHER, _throughput(downloads, size),
                 ssftp, reference, Target.ratio_at_least(1.3)),
        side_row("CPU seconds per GiB, upload", "s", Better.LOWER, cpu_per_gib(uploads), ssftp,
                 reference, Target.ratio_at_least(1.0, Better.LOWER),
                 note=f"server process tree, user + system, over 1x{label} (login included)"),
        side_row("CPU seconds per GiB, download", "s", Better.LOWER, cpu_per_gib(downloads), ssftp,
                 reference, Target.ratio_at_least(1.0, Better.LOWER),
                 note=f"server process tree, user + system, over 1x{label} (login included)"),
    ]


def asyncssh_get(ssftp: Side, reference: Side | None, client: Path, sizes: Sizes) -> list[Row]:
    """One big file fetched by asyncssh's ``SFTPClient.get()`` with its defaults: a server
    that only an ``sftp`` with many requests in flight keeps busy would show here."""
    size = sizes.big_file_bytes
    source = make_random_file(client / "big.bin", size)
    sides = [side for side in (ssftp, reference) if side is not None]
    fetched = client / "fetched.bin"

    def download(side: Side) -> float:
        seconds = asyncio.run(timed_get(side.downloader, "down.bin", fetched))
        expect_file(fetched, size)
        fetched.unlink()
        return size / seconds / MB

    with served(sides, {"down.bin": source}):
        values = alternate(sides, sizes.rounds, download)
    source.unlink()
    return [side_row(f"asyncssh get 1x{size / MIB:g} MiB (defaults)", "MB/s", Better.HIGHER,
                     values, ssftp, reference, Target.ratio_at_least(1.0))]


def concurrent_downloads(ssftp: Side, reference: Side | None, client: Path,
                         sizes: Sizes) -> list[Row]:
    """``sizes.concurrent_downloads`` ``sftp`` clients started together, each fetching a file
    of its own: aggregate MB/s until the last has its file. ssftp serves them all from one
    event loop, sshd from a process each."""
    count, size = sizes.concurrent_downloads, sizes.concurrent_file_bytes
    sources = {f"together-{index}.bin": make_random_file(client / f"together-{index}.bin", size)
               for index in range(count)}
    sides = [side for side in (ssftp, reference) if side is not None]

    def download(side: Side) -> float:
        return count * size / concurrent_round(side, list(sources), client, size) / MB

    with served(sides, sources):
        values = alternate(sides, sizes.rounds, download)
    for source in sources.values():
        source.unlink()
    return [side_row(f"download {count}x{size / MIB:g} MiB concurrently", "MB/s", Better.HIGHER,
                     values, ssftp, reference, Target.ratio_at_least(1.0),
                     note="aggregate, from the start of all clients until the last has ended")]


def concurrent_round(side: Side, names: list[str], client: Path, size: int) -> float:
    """Seconds until every one of ``names`` (each of ``size`` bytes) has been fetched by an
    ``sftp`` client of its own, all started at once; the fetched copies are checked and
    removed."""
    seconds = concurrent_sftp([(side.downloader, [f"get {name} fetched-{name}"])
                               for name in names], client)
    for name in names:
        expect_file(client / f"fetched-{name}", size)
        (client / f"fetched-{name}").unlink()
    return seconds


@contextlib.contextmanager
def _delayed_port(target: int, delay: float) -> Iterator[int]:
    """A port on 127.0.0.1 that reaches ``target`` ``delay`` seconds later each way
    (testkit.delay_proxy, on a thread of its own while the blocking ``sftp`` runs)."""
    listening: list[int] = []
    started, stop = threading.Event(), asyncio.Event()

    async def serve() -> None:
        async with delay_proxy(target, delay) as port:
            listening.append(port)
            started.set()
            await stop.wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        if not started.wait(timeout=30):
            raise RuntimeError("the delay proxy did not start")
        yield listening[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


def far_upload(ssftp: Side, reference: Side | None, client: Path, sizes: Sizes) -> list[Row]:
    """One file uploaded over a long link: what the SSH window lets through when every
    acknowledgement takes ``2 x link_delay_seconds`` to come back; MB/s."""
    size = sizes.far_file_bytes
    make_random_file(client / "far.bin", size)
    sides = [side for side in (ssftp, reference) if side is not None]

    def upload(side: Side) -> float:
        with _delayed_port(side.uploader.port, sizes.link_delay_seconds) as port:
            seconds = timed_sftp(replace(side.uploader, port=port), ["put far.bin far.bin"],
                                 client)
        expect_file(side.upload_dir / "far.bin", size)
        (side.upload_dir / "far.bin").unlink()
        return size / seconds / MB

    name = f"upload 1x{size / MIB:g} MiB, {sizes.link_delay_seconds * 1000:g} ms each way"
    rows = [side_row(name, "MB/s", Better.HIGHER, alternate(sides, sizes.rounds, upload), ssftp,
                     reference, Target.ratio_at_least(1.0))]
    (client / "far.bin").unlink()
    return rows


def floor_row(name: str, values: dict[str, list[float]], floor: Side,
              reference: Side | None) -> Row:
    """The same workload on asyncssh's bare SFTP server (bench.floor), in ssftp's column:
    what any server on ssftp's stack reaches, before it does a gateway's work."""
    return side_row(f"{name}: {floor.name}, not ssftp", "files/s", Better.HIGHER, values,
                    floor, reference, None,
                    note="the floor of the stack: asyncssh's own SFTPServer (a chroot, nothing "
                    "else) on the same asyncssh, uvloop and cipher; no jail, session thread, "
                    "temp files, fsync, logs or scanning")


def many_files(ssftp: Side, reference: Side | None, client: Path, sizes: Sizes,
               condition: str = "", factor: float = 1.2, floor: Side | None = None) -> list[Row]:
    """One session uploading many small files (``put small/*``); files per second, to be
    ``factor`` times OpenSSH's; also on ``floor`` when given (:func:`floor_row`)."""
    names = write_file_set(client / "small", sizes.small_files, sizes.small_file_bytes)
    sides = [side for side in (ssftp, reference, floor) if side is not None]

    def upload(side: Side) -> float:
        seconds = timed_sftp(side.uploader, ["put small/*"], client)
        for name in names:
            expect_file(side.upload_dir / name, sizes.small_file_bytes)
            (side.upload_dir / name).unlink()
        return len(names) / seconds

    name = f"upload {len(names)}x{sizes.small_file_bytes // KIB} KiB, one session{condition}"
    values = alternate(sides, sizes.rounds, upload)
    rows = [side_row(name, "files/s", Better.HIGHER, values, ssftp, reference,
                     Target.ratio_at_least(factor))]
    if floor is not None:
        rows.append(floor_row(name, values, floor, reference))
    shutil.rmtree(client / "small")
    return rows


def many_downloads(ssftp: Side, reference: Side | None, client: Path,
                   sizes: Sizes, floor: Side | None = None) -> list[Row]:
    """One session downloading many small files (``get small/*``); files per second. Every
    file is an open, reads, a close and a directory entry, so the per-request cost shows.
    Also on ``floor`` when given (:func:`floor_row`)."""
    source = client / "small"
    names = write_file_set(source, sizes.small_downloads, sizes.small_file_bytes)
    sides = [side for side in (ssftp, reference, floor) if side is not None]
    fetched = client / "small-fetched"

    def download(side: Side) -> float:
        fetched.mkdir()
        seconds = timed_sftp(side.downloader, [f"lcd {fetched.name}", "get small/*"], client)
        for name in names:
            expect_file(fetched / name, sizes.small_file_bytes)
        shutil.rmtree(fetched)
        return len(names) / seconds

    with served(sides, {f"small/{name}": source / name for name in names}):
        values = alternate(sides, sizes.rounds, download)
    for side in sides:
        (side.download_dir / "small").rmdir()
    shutil.rmtree(source)
    name = f"download {len(names)}x{sizes.small_file_bytes // KIB} KiB, one session"
    rows = [side_row(name, "files/s", Better.HIGHER, values, ssftp, reference,
                     Target.ratio_at_least(1.2))]
    if floor is not None:
        rows.append(floor_row(name, values, floor, reference))
    return rows


def loaded(ssftp: Side, reference: Side | None, client: Path, sizes: Sizes) -> list[Row]:
    """The big file up and down and the small-file upload again, with a busy-looping process
    on every core but one, from before the first round to after the last, for both servers
    alike: how each copes when it does not have the machine to itself (a gateway shares its
    host with the scanner)."""
    sides = [side for side in (ssftp, reference) if side is not None]
    condition = ", machine loaded"
    with cpu_burners((os.cpu_count() or 1) - 1) as burners:
        uploads, downloads = _big_file_rounds(sides, client, sizes)
        small = many_files(ssftp, reference, client, sizes, condition, factor=1.0)
    size = sizes.big_file_bytes
    label = f"{size / MIB:g} MiB"
    rows = [
        side_row(f"upload 1x{label}{condition}", "MB/s", Better.HIGHER, _throughput(uploads, size),
                 ssftp, reference, Target.ratio_at_least(1.0)),
        side_row(f"download 1x{label}{condition}", "MB/s", Better.HIGHER,
                 _throughput(downloads, size), ssftp, reference, Target.ratio_at_least(1.0)),
        *small,
    ]
    for row in rows:
        row.note = f"{burners} busy-looping processes beside the servers and clients"
    return rows


def logins(ssftp: Side, reference: Side | None, sizes: Sizes) -> list[Row]:
    """Logins per second: connect, key auth, open SFTP, close, ``sizes.logins`` in a row."""
    sides = [side for side in (ssftp, reference) if side is not None]

    def rate(side: Side) -> float:
        return asyncio.run(login_rate(side.uploader, sizes.logins))

    return [side_row(f"logins, {sizes.logins} in a row", "logins/s", Better.HIGHER,
                     alternate(sides, sizes.rounds, rate), ssftp, reference,
                     Target.ratio_at_least(8.0))]


def idle_memory(ssftp: Side, reference: Side | None, sizes: Sizes) -> list[Row]:
    """The server's memory while ``sizes.idle_sessions`` logged-in SFTP sessions sit idle."""
    sides = [side for side in (ssftp, reference) if side is not None]

    async def hold(side: Side) -> Memory:
        async with idle_sessions(side.uploader, sizes.idle_sessions):
            return tree_memory(side.pid)

    measured = alternate(sides, sizes.rounds, lambda side: asyncio.run(hold(side)))

    def values(field: str) -> dict[str, list[float]]:
        return {name: [getattr(memory, field) / MB for memory in memories]
                for name, memories in measured.items()}

    processes = "; ".join(f"{name}: {memories[-1].processes} processes"
                          for name, memories in measured.items())
    label = f"memory, {sizes.idle_sessions} idle sessions"
    return [
        side_row(f"{label} (RSS)", "MB", Better.LOWER, values("rss_bytes"), ssftp, reference,
                 Target.at_most(80, "MB"), note=processes),
        side_row(f"{label} (PSS)", "MB", Better.LOWER, values("pss_bytes"), ssftp, reference, None,
                 note="RSS summed over processes counts shared pages once per process; PSS "
                  "shares them out"),
    ]


def _wait_for_files(directory: Path, names: set[str], timeout: float = 600.0,
                    poll: float = 0.01) -> float:
    """Wait until every name is in ``directory``; the time it happened (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while True:
        now = time.perf_counter()
        with os.scandir(directory) as entries:
            present = sum(1 for entry in entries if entry.name in names)
        if present == len(names):
            return now
        if now > deadline:
            raise RuntimeError(f"only {present} of {len(names)} files reached {directory} "
                               f"within {timeout:.0f} s")
        time.sleep(poll)


@dataclass(frozen=True)
class PipelineRound:
    """One round of the pipeline workload, in seconds, and where the CPU went from the upload's
    end until all were in clean/ (empty without a split)."""

    after_upload: float
    overall: float
    raw: float
    cores: dict[str, float]


def pipeline_round(uploader: Login, clean: Path, quarantine: Path, clamd: ClamdClient,
                   client: Path, names: set[str], split: CpuSplit | None = None) \
        -> PipelineRound:
    """``client``/pipeline's files uploaded in one session until all are in clean/, then
    removed from there; then raw clamd scanning the same files (CONTSCAN of their directory)."""
    started = time.perf_counter()
    uploaded = started + timed_sftp(uploader, ["put pipeline/*"], client)
    reading = split.read() if split else None
    done = _wait_for_files(clean, names)
    cores = split.cores_since(reading) if split and reading else {}
    if any(quarantine.rglob("file-*")):
        raise RuntimeError(f"random test files were quarantined: see {quarantine}")
    for name in names:
        (clean / name).unlink()
    scan_started = time.perf_counter()
    reply = clamd.command(f"CONTSCAN {client / 'pipeline'}")
    raw = time.perf_counter() - scan_started
    if not reply.endswith(": OK"):
        raise RuntimeError(f"raw clamd CONTSCAN did not pass the test files: {reply}")
    return PipelineRound(max(0.0, done - uploaded), done - started, raw, cores)


def pipeline_label(sizes: Sizes) -> str:
    return f"pipeline {sizes.pipeline_files}x{sizes.pipeline_file_bytes // KIB} KiB"


def pipeline(uploader: Login, clean: Path, quarantine: Path, clamd: ClamdClient, client: Path,
             sizes: Sizes) -> list[Row]:
    """Many files uploaded in one session until all are in clean/, against raw clamd
    scanning the same files (CONTSCAN of their directory)."""
    source = client / "pipeline"
    names = set(write_file_set(source, sizes.pipeline_files, sizes.pipeline_file_bytes))
    clean.mkdir(parents=True, exist_ok=True)
    rounds = [pipeline_round(uploader, clean, quarantine, clamd, client, names)
              for _ in range(sizes.rounds)]
    label = pipeline_label(sizes)
    rows = [
        Row(f"{label}: upload end -> all in clean/", Better.LOWER,
            Samples("s", [one.after_upload for one in rounds]), RAW_CLAMD,
            Samples("s", [one.raw for one in rounds]),
            Target.at_most_reference_times(2.0, 1.0, "s")),
        Row(f"{label}: upload start -> all in clean/", Better.LOWER,
            Samples("s", [one.overall for one in rounds]), note="includes the upload itself"),
    ]
    shutil.rmtree(source)
    return rows


def first_latency(uploader: Login, clean: Path) -> list[Row]:
    """The first upload right after ``ssftp up`` printed its banner: what was not warmed
    before the banner shows here (one sample per start)."""
    values = asyncio.run(upload_latencies(uploader, clean, 1))
    return [Row("first upload after the start, close -> clean/", Better.LOWER,
                Samples("s", values), target=Target.at_most(0.5, "s"))]


def latency(uploader: Login, clean: Path, sizes: Sizes) -> list[Row]:
    """One small file at a time: seconds from the upload's close until it is in clean/."""
    values = asyncio.run(upload_latencies(uploader, clean, sizes.latency_samples))
    return [Row(f"latency, upload close -> clean/ (median of {len(values)})", Better.LOWER,
                Samples("s", values), target=Target.at_most(0.5, "s"))]


def soak_rows(uploader: Login, clean: Path, sizes: Sizes) -> list[Row]:
    """Several partners uploading at once, for a while, at a steady rate: each file's seconds
    from its close until it is in clean/ (p99 and p50 over every file of the soak), and the
    rate the clients managed (bench.clients.soak)."""
    result = asyncio.run(soak(uploader, clean, clients=sizes.soak_clients, rate=sizes.soak_rate,
                              seconds=sizes.soak_seconds, file_sizes=sizes.soak_file_sizes))
    latencies = sorted(result.latencies)
    label = (f"soak, {sizes.soak_clients} clients, {sizes.soak_rate:g} files/s offered for "
             f"{sizes.soak_seconds:g} s")
    note = (f"{len(latencies)} files of {format_number(sizes.soak_file_sizes[0] / KIB)} KiB to "
            f"{format_number(max(sizes.soak_file_sizes) / MIB)} MiB")
    return [
        Row(f"{label}: files/s uploaded", Better.HIGHER,
            Samples("files/s", [result.uploaded_rate]), target=Target.at_least(50.0, "files/s"),
            note=note),
        Row(f"{label}: close -> clean/, p99", Better.LOWER,
            Samples("s", [_percentile(latencies, 0.99)]), target=Target.at_most(2.0, "s"),
            note=note),
        Row(f"{label}: close -> clean/, p50", Better.LOWER,
            Samples("s", [_percentile(latencies, 0.5)]), note=note),
    ]


def _percentile(ordered: list[float], fraction: float) -> float:
    """The value ``fraction`` of the way through ``ordered`` (nearest rank)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


# How long the worker may take to notice that clean/ needs a rescan (it looks every 30 s).
_RESCAN_NOTICED_SECONDS = 120.0


def _rescanning(audit_log: Path) -> bool:
    """The worker has begun a rescan: its audit log ends with a rescan's record."""
    with contextlib.suppress(FileNotFoundError), audit_log.open("rb") as log:
        log.seek(max(0, audit_log.stat().st_size - 4096))
        return b'"rescan"' in log.read()
    return False


def _wait(what: str, ready: Callable[[], bool], timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while not ready():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.01)
    return time.perf_counter()


def rescan(uploader: Login, clean: Path, system: Path, audit_log: Path,
           sizes: Sizes) -> list[Row]:
    """Fresh uploads while the worker rescans many small files of clean/ (as after a
    signature update; here by forgetting which signatures the last rescan was for): their
    latency, which must stay that of an idle gateway (fresh uploads go first), and the
    rescan's own pace."""
    planted = clean / "rescan-bench"
    write_file_set(planted, sizes.rescan_files, sizes.small_file_bytes)
    state = system / "rescan.json"
    _wait("the worker's first look at the signatures", state.exists, _RESCAN_NOTICED_SECONDS)
    state.unlink()
    began = _wait("a rescan", lambda: _rescanning(audit_log), _RESCAN_NOTICED_SECONDS)
    values = asyncio.run(upload_latencies(uploader, clean, sizes.latency_samples))
    overlapped = not state.exists()
    done = _wait("the rescan's end", state.exists, 3600.0)
    shutil.rmtree(planted)
    note = "" if overlapped else "the rescan ended before the last sample"
    return [
        Row(f"latency during a rescan of {sizes.rescan_files} files, upload close -> clean/ "
            f"(median of {len(values)})", Better.LOWER, Samples("s", values),
            target=Target.at_most(0.5, "s"), note=note),
        Row(f"rescan of {sizes.rescan_files}x{sizes.small_file_bytes // KIB} KiB beside "
            "the uploads", Better.HIGHER,
            Samples("files/s", [sizes.rescan_files / max(done - began, 1e-6)])),
    ]
