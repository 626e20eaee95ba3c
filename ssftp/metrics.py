"""Every Prometheus metric ssftp exports, defined once, in ssftp's own registry.

Each metric is changed at exactly one place, where the fact is already known (the login log
line, the transfer log line or a scheduled transfer's run, the scan's result, the PING's
answer, the webhook's settlement), so no second bookkeeping can drift from the logs. Label
values are bounded: a method, a result, a verdict kind, a configured webhook name, a
configured clamd's address or ICAP server's URL, a configured account with a quota; never a
file name, a login name tried or a client's address.

The registry is ours, not prometheus_client's global default: Prefect registers its own
client counters there (events and logs emitted), which are not ssftp's contract and change
with Prefect's version; ``/metrics`` (:mod:`ssftp.runtime.listener`) serves exactly what is
below. The metrics are module-level, one set per process: ``ssftp up`` runs the SFTP server and the
worker in one process, and one scrape sees both. Defining them once at import is also what
lets tests and a second gateway in one process start without a duplicate-registration error;
their figures then add up, so tests compare values before and after.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()
M = TypeVar("M", Gauge, Info)


class TransferTotals(Collector):
    """``ssftp_transfers_total{direction,result}``: files moved (``ok``) or not (``failed``).

    The SFTP server's (``upload``, ``download``) are counted here, in this process. The
    downloaders' and uploaders' (``pull``, ``push``) run in processes of their own (a Prefect
    runner's subprocess per run, or a work pool's worker), so each run adds its figures to
    ``system/transfers.sqlite`` (ssftp.transfer.state), and a process that serves the
    transfers (``worker``, ``up``) reads them there when scraped (:meth:`read_from`). The
    reading is passed in, so that defining a metric needs no database."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._stored: Callable[[], Mapping[tuple[str, str], int]] | None = None
        registry.register(self)

    def inc(self, direction: str, result: str) -> None:
        with self._lock:
            self._counts[direction, result] += 1

    def read_from(self, stored: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        """Export the scheduled transfers' figures too, as ``stored()`` reads them."""
        self._stored = stored

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = collections.Counter(self._counts)
        if self._stored is not None:
            counts.update(self._stored())
        family = self._family()
        for (direction, result), files in sorted(counts.items()):
            family.add_metric([direction, result], files)
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "ssftp_transfers", "Files transferred, by direction (upload, download: through "
            "the SFTP server; pull, push: the downloaders' and uploaders') and result (ok, "
            "failed)", labels=["direction", "result"])


class SignatureFigures(Collector):
    """``ssftp_signatures_version`` and ``ssftp_signatures_age_seconds``: what the last look at
    clamd's loaded signatures found (:meth:`ssftp.scan.clamd.ClamdClient.signatures`).

    Exported from the first look on, like ``ssftp_clamd_up``: a process that asks no clamd has
    no figure. One series only, the loaded database's (an old one would otherwise stay in
    every scrape after an update). The age is computed at each scrape, from when the official
    database was built: it grows between looks, as the database does not change; without an
    official database (offline, custom signatures only) there is no age to export."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._loaded: tuple[str, str, int, float | None] | None = None
        registry.register(self)

    def loaded(self, engine: str, database: str, daily: int | None, built: float | None) -> None:
        with self._lock:
            self._loaded = (engine, database, daily or 0, built)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # what it exports depends on what it has seen

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            loaded = self._loaded
        if loaded is None:
            return
        engine, database, daily, built = loaded
        version = GaugeMetricFamily(
            "ssftp_signatures_version", "The official daily database's number that clamd has "
            "loaded (0 when none is), labelled with the engine and the database label that "
            "verdicts carry (it changes with custom signatures too)",
            labels=["engine", "database"])
        version.add_metric([engine, database], daily)
        yield version
        if built is not None:
            yield GaugeMetricFamily(
                "ssftp_signatures_age_seconds", "Seconds since the official database clamd "
                "has loaded was built", value=max(0.0, time.time() - built))


# An account's quota figures, as the SFTP server's tallies have them (server.quota): its name,
# bytes and files used, and its maxBytes and maxFiles (None: not limited).
QuotaFigure = tuple[str, int, int, int | None, int | None]


class QuotaFigures(Collector):
    """``ssftp_quota_used_bytes``, ``ssftp_quota_used_files``, ``ssftp_quota_max_bytes`` and
    ``ssftp_quota_max_files``, per account with a quota: read from the server's tallies at
    each scrape (:meth:`read_from`), so an upload's WRITEs cost no metric update. An account
    shows from its first OPEN for writing or ``df`` in this process on (its first count), and
    only in the process that serves it: with several ``ssftp serve``, each shows its own
    count of the same area."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._read: Callable[[], Iterable[QuotaFigure]] = tuple
        registry.register(self)

    def read_from(self, read: Callable[[], Iterable[QuotaFigure]]) -> None:
        self._read = read

    def describe(self) -> Iterator[Metric]:
        return iter(())  # what it exports depends on the accounts counted

    def collect(self) -> Iterator[Metric]:
        figures = sorted(self._read())
        if not figures:
            return
        families = [GaugeMetricFamily(
            f"ssftp_quota_{name}", f"{text}, per account with a quota (server.quota)",
            labels=["account"]) for name, text in (
                ("used_bytes", "Bytes in the account's area, its uploads in progress included"),
                ("used_files", "Files in the account's area, its uploads in progress included"),
                ("max_bytes", "The account's quota.maxBytes"),
                ("max_files", "The account's quota.maxFiles"))]
        for account, *values in figures:
            for family, value in zip(families, values, strict=True):
                if value is not None:
                    family.add_metric([account], value)
        yield from (family for family in families if family.samples)


# Upload close -> verdict: from a tenth of a second (a small file on an idle gateway) to an
# hour (a backlog, or clamd down); slower ones fall in +Inf.
SCAN_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                        1800.0, 3600.0)

LOGINS = Counter(
    "ssftp_logins", "SFTP login attempts, by method (password, publickey) and result (ok, "
    "failed, banned, denied: the right credentials from an address the account's "
    "allowedIps/deniedIps keep out); a key the account does not have counts as failed "
    "(clients offer each key they hold)", ["method", "result"], registry=REGISTRY)
REFUSED_CONNECTIONS = Counter(
    "ssftp_refused_connections", "Connections refused before a login, by the key of limits "
    "that refused them (allowedIps, deniedIps, proxyProtocol: a trusted proxy's header "
    "missing or malformed, or a limit: maxConnectionsPerAddress, ...)", ["limit"],
    registry=REGISTRY)
SESSIONS = Gauge("ssftp_sessions", "SSH connections logged in now", registry=REGISTRY)
UPLOAD_BYTES = Counter(
    "ssftp_upload_bytes", "Bytes received in SFTP uploads (counted as each upload ends)",
    registry=REGISTRY)
DOWNLOAD_BYTES = Counter(
    "ssftp_download_bytes", "Bytes sent in SFTP downloads (counted as each download ends)",
    registry=REGISTRY)
TRANSFERS = TransferTotals(REGISTRY)
SCANS = Counter(
    "ssftp_scans", "Scan attempts, by verdict (clean, infected, unscannable, error, "
    "unscanned); an error is retried", ["verdict"], registry=REGISTRY)
SCAN_SECONDS = Histogram(
    "ssftp_scan_seconds", "Seconds from an upload's close (the staged file's last change, "
    "which a client cannot set; after a failed attempt, its return to staging) to its "
    "verdict, for files that left staging", buckets=SCAN_SECONDS_BUCKETS, registry=REGISTRY)
STAGING_FILES = Gauge(
    "ssftp_staging_files", "Staged files waiting: changing, batched, or waiting for a retry "
    "(or for clamd)", registry=REGISTRY)
# Exported from the first PING on (:func:`clamd_answered`): a process that talks to no clamd
# (``serve``) has no such figure, rather than a 0 that an alert would read as "clamd is down".
# One series per clamd (a pool has several, :mod:`ssftp.scan.pool`), by the address it is
# configured at: so one dead clamd in a pool that still scans is seen.
CLAMD_UP = Gauge(
    "ssftp_clamd_up", "1 when the clamd at this address answered its last PING, else 0 "
    "(PINGs at start, during an outage, after a restart, and at each /healthz; a pool also "
    "sets 0 when a scan finds its clamd gone)", ["address"], registry=None)
# Likewise from the first OPTIONS on (:func:`icap_answered`), one series per ICAP server: its
# URL as configured, a bounded set (the operator's list), which says which one is down.
ICAP_UP = Gauge(
    "ssftp_icap_up", "1 when the ICAP server answered its last OPTIONS probe with 200, else 0 "
    "(probes at start, during an outage, and at each /healthz)", ["server"], registry=None)
# From the scan worker's start on (:func:`worker_started`): which worker this process is, by
# the name its records and runs carry (ssftp.scan.workers); a process that scans nothing
# (``serve``) has none.
WORKER = Info("ssftp_worker", "The name of the scan worker this process runs, as its audit "
              "records and runs' tags (worker:<name>) carry it", registry=None)
_exported_lock = threading.Lock()
_exported: set[Gauge | Info] = set()
WEBHOOKS = Counter(
    "ssftp_webhooks", "Webhook notifications settled, by webhook name (virusFound, "
    "scanError) and result (delivered, failed: after its retries; it stays owed)",
    ["name", "result"], registry=REGISTRY)
SIGNATURES = SignatureFigures(REGISTRY)
QUOTAS = QuotaFigures(REGISTRY)
BANDWIDTH_DELAY_SECONDS = Counter(
    "ssftp_bandwidth_delay_seconds", "Seconds SFTP requests waited for their account's "
    "bandwidth limit, by direction (upload: WRITE requests, download: READ replies)",
    ["direction"], registry=REGISTRY)
DEFENDER_BANS = Counter(
    "ssftp_defender_bans", "Addresses banned after repeated failed logins", registry=REGISTRY)


def _export(gauge: M) -> M:
    """``gauge``, registered on its first use: a figure of an engine the process asks, or of
    the worker it runs."""
    with _exported_lock:
        if gauge not in _exported:
            REGISTRY.register(gauge)
            _exported.add(gauge)
    return gauge


def worker_started(name: str) -> None:
    """This process runs the scan worker ``name``."""
    _export(WORKER).info({"name": name})


def clamd_answered(address: str, answered: bool) -> None:
    """What the last PING of the clamd at ``address`` said (its text form: a socket path or
    ``tcp://host:port``), as ``ssftp_clamd_up``, exported once a PING has been made."""
    _export(CLAMD_UP).labels(address=address).set(answered)


def icap_answered(server: str, answered: bool) -> None:
    """What the last OPTIONS probe of the ICAP server at ``server`` (its URL) said, as
    ``ssftp_icap_up{server=...}``, exported once a probe has been made."""
    _export(ICAP_UP).labels(server=server).set(answered)
