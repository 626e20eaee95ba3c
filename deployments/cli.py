"""The ``ssftp`` command line, and its one error boundary.

Every command is a function that returns an exit status. :func:`main` runs it inside the
boundary: an expected failure (an :class:`~ssftp.errors.SsftpError`, or an ``OSError`` from the
system, e.g. a data root that cannot be created) prints ``ssftp <command>: <what is wrong>`` on
stderr and exits 2. An operator never gets a traceback for a mistake of configuration or
environment; a traceback means a bug.

Commands import the server, the worker and Prefect only when they run, so ``check-config`` and
``hash-password`` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import pwd
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from typing import TypeAlias

from ssftp.addresses import Address, ClamdAddress, check_http_url, parse_listen
from ssftp.areas.quarantine import (
    checked_reason,
    delete,
    directory_of,
    entries,
    format_entry,
    parse_name,
)
from ssftp.areas.release import APPROVAL_TIMEOUT_SECONDS, Releaser, Request
from ssftp.audit_history import (
    AUDIT_LOG,
    AuditSource,
    audit_logs,
    file_history,
    format_record,
    parse_query,
)
from ssftp.bans import SharedBans, parse_address
from ssftp.config import load_config
from ssftp.config.reload import ConfigStore
from ssftp.config.schema import Downloader, SsftpConfig, Uploader
from ssftp.errors import (
    ClamdError,
    ConfigError,
    ConfigIssue,
    InvalidValueError,
    PrefectServerError,
    ReleaseRefusedError,
    SignatureUpdateError,
    SsftpError,
)
from ssftp.layout import DataLayout
from ssftp.logs import (
    APP,
    RunRecordFormatter,
    RunRecordHandler,
    audit_event,
    configure_logging,
    lines_shown,
    log_event,
    one_line,
    set_console,
)
from ssftp.moves import write_durably
from ssftp.notify.direct import send_now
from ssftp.notify.outbox import Outbox
from ssftp.passwords import hash_password
from ssftp.runtime.clamd_daemon import socket_in
from ssftp.runtime.stop import ignore_hangups
from ssftp.scan.clamd import ClamdClient
from ssftp.scan.database import update_target
from ssftp.scan.engines import Engines, configured_engines
from ssftp.scan.results import ScanResult
from ssftp.scan.updates import update_signatures
from ssftp.scan.verdict import VerdictKind
from ssftp.scan.workers import checked_name

DEFAULT_DATA_DIR = "./var/ssftp"
EXAMPLE_CONFIG = "config/ssftp.example.yaml"
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
              "error": logging.ERROR}
# Exit statuses.
OK, FOUND, FAILED = 0, 1, 2


def _data_dir_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("SSFTP_DATA_DIR", DEFAULT_DATA_DIR)),
                        help=f"{help_text} (default: $SSFTP_DATA_DIR or {DEFAULT_DATA_DIR})")


def _log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                        help="least important application event shown and kept in log/ssftp.log "
                             "(transfer and audit logs keep everything) (default: info)")
    parser.add_argument("--log-format", choices=["auto", "json", "text"], default="auto",
                        help="console format; files under log/ are always JSON lines "
                             "(default: auto = text on a terminal, JSON lines otherwise)")


def _instance_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path,
                        help="ssftp.yaml (default: <data dir>/system/ssftp.yaml)")
    parser.add_argument("--initial-config", type=Path, metavar="FILE",
                        help="without --config: when the data root has no system/ssftp.yaml "
                             "yet, start it as a copy of FILE (./run does, from "
                             f"{EXAMPLE_CONFIG})")
    _data_dir_option(parser, "data root with the six areas")
    _log_options(parser)


def _listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: sftpHost, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: sftpPort)")


def _metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-listen", metavar="HOST:PORT",
                        help="serve /metrics (Prometheus) and /healthz there (default: "
                             "metrics.listen, else off)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssftp", description="Scanned SFTP gateway")
    parser.add_argument("--version", action="version", version=f"ssftp {version('ssftp')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="everything on one machine: Prefect server, clamd, "
                                        "SFTP server and scan worker")
    _instance_options(up)
    _listen_options(up)
    _metrics_option(up)
    up.add_argument("--prefect-port", type=int, default=4200,
                    help="port of the Prefect server this instance starts; something already "
                         "answering there is an error (default: 4200)")
    up.add_argument("--prefect-url", metavar="URL",
                    help="use this running Prefect server's API (e.g. http://127.0.0.1:4200/api, "
                         "another instance's) instead of starting one (default: "
                         "$PREFECT_API_URL, else start one)")

    serve = commands.add_parser("serve", help="run the SFTP server only")
    _instance_options(serve)
    _listen_options(serve)
    _metrics_option(serve)

    worker = commands.add_parser("worker", help="run the staging watcher, scan flows and "
                                                "transfers only (against PREFECT_API_URL)")
    _instance_options(worker)
    _metrics_option(worker)
    worker.add_argument("--name", help="the name its audit records, verdicts and scan runs "
                                       "(tag worker:NAME) carry (default: <host>.<pid>)")

    scan = commands.add_parser("scan", help="scan files with the configured clamd and print "
                                            "verdicts (moves nothing)")
    scan.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    scan.add_argument("--config", type=Path,
                      help="ssftp.yaml whose clamav section to use "
                           "(default: <data dir>/system/ssftp.yaml, when it exists)")
    scan.add_argument("--clamd", help="clamd address (socket path or host:port); "
                                      "overrides the config")
    _data_dir_option(scan, "without --clamd or clamav.address: use the clamd that `ssftp up` "
                           "started for this data root")

    rescan = commands.add_parser(
        "rescan", help="scan the files already handed on again with the signatures clamd has "
                       "now; infected files leave clean/ for quarantine/")
    rescan.add_argument("--area", choices=["clean", "quarantine", "uploadarchive"],
                        default="clean", help="what to rescan (default: clean/); quarantine/ "
                        "is only reported on: files no longer detected, nothing moves")
    rescan.add_argument("--include-archive", action="store_true",
                        help="uploadarchive/ too (as rescan.includeArchive: true)")
    rescan.add_argument("--config", type=Path,
                        help="ssftp.yaml (default: <data dir>/system/ssftp.yaml)")
    rescan.add_argument("--clamd", help="clamd address (socket path or host:port); "
                                        "overrides the config")
    _data_dir_option(rescan, "the data root to rescan")

    portable = commands.add_parser(
        "portable", help="one-user SFTP server over a directory (no config file, no scanning)")
    portable.add_argument("--directory", type=Path, required=True,
                          help="the directory the user sees as /")
    portable.add_argument("--username", required=True, help="the one account's name")
    portable.add_argument("--password", help="plaintext or a bcrypt/argon2id hash "
                                             "(or set SSFTP_PORTABLE_PASSWORD)")
    portable.add_argument("--public-key", action="append", default=[],
                          help="an OpenSSH public key line or a .pub file (repeatable)")
    portable.add_argument("--permissions", default="list,download",
                          help="comma-separated SFTPGo names, '*' for all "
                               "(default: list,download)")
    portable.add_argument("--host", default="127.0.0.1",
                          help="address to listen on (default: 127.0.0.1)")
    portable.add_argument("--port", type=int, default=2022,
                          help="port to listen on (default: 2022)")
    _data_dir_option(portable, "where host keys (system/) and logs (log/) are kept")
    _log_options(portable)

    status = commands.add_parser("status", help="a file's history from the audit log, by its "
                                                "path or sha256")
    status.add_argument("file", metavar="PATH|SHA256",
                        help="<account dir>/<sub path> (or clean/..., quarantine/...), or a "
                             "sha256 (a prefix of at least 12 hex digits will do)")
    status.add_argument("--config", type=Path,
                        help="ssftp.yaml whose logDests file destinations hold audit logs too "
                             "(default: <data dir>/system/ssftp.yaml, when it exists; with "
                             "several --data-dir, each one's own)")
    status.add_argument("--json", action="store_true", help="print the records as a JSON array")
    status.add_argument("--data-dir", type=Path, action="append", dest="data_dirs",
                        help="data root whose log/audit.log to read; give it once per "
                             "instance to follow a file along a chain (default: "
                             f"$SSFTP_DATA_DIR or {DEFAULT_DATA_DIR})")

    _quarantine_parser(commands)
    _defender_parser(commands)
    update = commands.add_parser(
        "update-signatures", help="run freshclam once for the clamd ssftp scans with, and "
                                  "have clamd load what changed")
    update.add_argument("--config", type=Path,
                        help="ssftp.yaml (default: <data dir>/system/ssftp.yaml)")
    _data_dir_option(update, "without clamav.address: update the clamd that `ssftp up` "
                             "started for this data root")

    _automations_parser(commands)
    check = commands.add_parser("check-config", help="validate ssftp.yaml and explain problems")
    check.add_argument("file", type=Path)
    _data_dir_option(check, "relative privateKeyPath and knownHosts files are under its "
                            "system/")

    hasher = commands.add_parser("hash-password", help="print a password hash for ssftp.yaml")
    hasher.add_argument("--scheme", choices=["bcrypt", "argon2id"], default="bcrypt",
                        help="(default: bcrypt)")
    return parser


def _seconds(text: str) -> int:
    """A whole number of seconds, at least one (a wait of none would refuse every approval)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds >= 1")
    return int(text)


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _actions(commands: Commands, name: str, help_text: str) -> Commands:
    """A command whose first argument is an ACTION (``quarantine list``)."""
    command = commands.add_parser(name, help=help_text)
    return command.add_subparsers(dest="action", required=True, metavar="ACTION")


def _list_action(actions: Commands, help_text: str, data_dir_help: str) -> None:
    """An ACTION ``list [--json] [--data-dir DIR]``."""
    listing = actions.add_parser("list", help=help_text)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    _data_dir_option(listing, data_dir_help)


def _quarantine_parser(commands: Commands) -> None:
    actions = _actions(commands, "quarantine", "list, release or delete quarantined files")
    _list_action(actions, "every file in quarantine/ with what its verdict record says",
                 "data root whose quarantine/ to list")
    name_help = ("the file's name in quarantine, as `list` shows it (quarantine/acme/x.pdf "
                 "or acme/x.pdf)")
    release = actions.add_parser("release", help="rescan a quarantined file and move it to "
                                                 "clean/ (a false positive)")
    release.add_argument("path", metavar="PATH", help=name_help)
    release.add_argument("--reason", required=True, help="why (goes into the audit record)")
    release.add_argument("--force", action="store_true",
                         help="release even when the rescan still detects it (never when "
                              "the rescan fails)")
    release.add_argument("--clamd", help="clamd address (socket path or host:port); "
                                         "overrides the config")
    _prefect_url_option(release, "the Prefect API the release runs on; needed with "
                                 "quarantine.releaseApproval")
    release.add_argument("--approval-timeout", type=_seconds, metavar="SECONDS",
                         default=APPROVAL_TIMEOUT_SECONDS,
                         help="with quarantine.releaseApproval, how long to wait for the "
                              f"approver (default: {APPROVAL_TIMEOUT_SECONDS})")
    delete = actions.add_parser("delete", help="remove a quarantined file and its record")
    delete.add_argument("path", metavar="PATH", help=name_help)
    delete.add_argument("--reason", required=True, help="why (goes into the audit record)")
    for parser in (release, delete):
        parser.add_argument("--config", type=Path,
                            help="ssftp.yaml (default: <data dir>/system/ssftp.yaml, when it "
                                 "exists): clamd, webhooks, log dirs, releaseApproval")
        _data_dir_option(parser, "data root of the quarantine/")


def _defender_parser(commands: Commands) -> None:
    actions = _actions(commands, "defender", "list or lift the brute-force defender's bans")
    _list_action(actions, "the addresses banned now, by every server of the data root",
                 "data root whose bans to list")
    unban = actions.add_parser("unban", help="lift an address's ban on every server of the "
                                             "data root (at its next login)")
    unban.add_argument("address", metavar="ADDRESS", help="the banned IP address, as `list` "
                                                          "shows it")
    unban.add_argument("--config", type=Path,
                       help="ssftp.yaml (default: <data dir>/system/ssftp.yaml, when it "
                            "exists): the log dirs the audit record goes to")
    _data_dir_option(unban, "data root whose bans to change")


def _prefect_url_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--prefect-url", metavar="URL",
                        help=f"{help_text} (e.g. http://127.0.0.1:4200/api, the one `ssftp up` "
                             "started) (default: $PREFECT_API_URL)")


def _automations_parser(commands: Commands) -> None:
    actions = _actions(commands, "automations", "Prefect Automations that alert on infected "
                                                "files")
    install = actions.add_parser("install", help="create or update the automation that alerts "
                                                 "on every infected file of this instance")
    target = install.add_mutually_exclusive_group(required=True)
    target.add_argument("--webhook", metavar="URL",
                        help="POST a JSON body (file, path, signature) to URL, kept in the "
                             "Webhook block ssftp-infected-<instance> and never printed; '-' "
                             "reads it from stdin (out of shell history and ps)")
    target.add_argument("--block", metavar="NAME",
                        help="send through this block of the Prefect server: a notification "
                             "block (Slack, email, ...) or a Webhook block; TYPE/NAME "
                             "(slack-webhook/alerts) when blocks of several types have NAME")
    install.add_argument("--all-instances", action="store_true",
                         help="alert on the infected files of every instance on the Prefect "
                              "server, not only this instance's")
    install.add_argument("--config", type=Path,
                         help="ssftp.yaml whose instanceName the automation matches "
                              "(default: <data dir>/system/ssftp.yaml)")
    _data_dir_option(install, "data root whose system/ssftp.yaml names the instance")
    _prefect_url_option(install, "the Prefect API to install the automation on")
    listing = actions.add_parser("list", help="the automations ssftp installed")
    _prefect_url_option(listing, "the Prefect API whose automations to list")


def _check_config(args: argparse.Namespace) -> int:
    loaded = load_config(args.file)
    config = loaded.config
    problems, missing = _remote_file_issues(config, DataLayout.at(args.data_dir))
    if problems:
        raise ConfigError(loaded.source, problems)
    print(one_line(f"{args.file}: valid ({len(config.users.staging_dir)} staging and "
                   f"{len(config.users.clean_dir)} clean accounts, "
                   f"{len(config.sftp_client_downloaders)} downloaders, "
                   f"{len(config.sftp_client_uploaders)} uploaders)"))
    for warning in [*loaded.warnings, *missing]:
        print(one_line("warning: " + warning.describe(loaded.source)))
    return OK


def _remote_file_issues(config: SsftpConfig,
                        layout: DataLayout) -> tuple[list[ConfigIssue], list[ConfigIssue]]:
    """The downloaders' and uploaders' key and known_hosts files, loaded as a run loads them:
    the ones that cannot be used (problems), and the ones that do not exist (yet)."""
    if not config.sftp_client_downloaders and not config.sftp_client_uploaders:
        return [], []
    from client.connection import file_issues

    problems: list[ConfigIssue] = []
    missing: list[ConfigIssue] = []
    sections: list[tuple[str, Sequence[Downloader | Uploader]]] = [
        ("sftpClientDownloaders", config.sftp_client_downloaders),
        ("sftpClientUploaders", config.sftp_client_uploaders)]
    for section, remote_entries in sections:
        for index, entry in enumerate(remote_entries):
            for issue in file_issues(entry, layout.system):
                found = ConfigIssue((section, index, issue.setting), issue.message)
                (missing if issue.missing else problems).append(found)
    return problems, missing


def _hash_password(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise SsftpError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    print(hash_password(password, args.scheme))
    return OK


def _configure_console(args: argparse.Namespace) -> None:
    """The console format and level for this process, and Prefect's console to match."""
    console_format = args.log_format
    if console_format == "auto":
        console_format = "text" if sys.stdout.isatty() else "json"
    set_console(console_format, LOG_LEVELS[args.log_level])
    # Prefect reads these when it is first imported, which is after this point.
    if console_format == "json":
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER", "json")
        os.environ.setdefault("PREFECT_LOGGING_FORMATTERS_JSON_CLASS",
                              f"{RunRecordFormatter.__module__}.{RunRecordFormatter.__name__}")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS",
                              f"{RunRecordHandler.__module__}.{RunRecordHandler.__name__}")
    if args.log_level != "info":
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", args.log_level.upper())


def _open_store(args: argparse.Namespace, initial: Path | None = None) -> ConfigStore:
    """The instance's config, validated before anything else is created on disk; with
    ``initial``, the data root's own config, first copied from ``initial``."""
    layout = DataLayout.at(args.data_dir)
    path: Path = args.config or layout.default_config
    if initial is not None:
        if args.config is not None:
            raise SsftpError("--initial-config starts the data root's own config: it does not "
                             "go with --config")
        adopt_initial_config(initial, path)
    if not path.exists():
        hint = ("" if args.config else
                f"; pass --config FILE, or start from {EXAMPLE_CONFIG} of the ssftp source")
        raise SsftpError(f"no config file at {path}{hint}")
    store = ConfigStore.open(path, layout)
    layout.create()
    return store


def _open_instance(args: argparse.Namespace) -> ConfigStore:
    """The config store of a long-running ``up``, ``serve`` or ``worker``: SIGHUP will reload
    it, so from now on a SIGHUP no longer kills the process."""
    ignore_hangups()
    return _open_store(args, args.initial_config)


def adopt_initial_config(initial: Path, path: Path) -> None:
    """Make ``path`` a copy of ``initial`` unless it exists, and say so: ``./run`` then
    edits a file of the data root, not the tracked example, and a reload picks up every
    change. Owner-only, as the config holds password hashes."""
    if path.exists():
        return
    try:
        content = initial.read_bytes()
    except OSError as exc:
        raise SsftpError(f"--initial-config {initial}: {exc.strerror}") from None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # system/: the owner's
    with contextlib.suppress(FileExistsError):  # another start copied it meanwhile
        write_durably(path, content, replace=False, mode=0o600)
    print(f"ssftp: {path} is a copy of {initial}: edit it there (changes apply while ssftp "
          "runs)", file=sys.stderr, flush=True)


def _metrics_address(args: argparse.Namespace, store: ConfigStore) -> Address | None:
    """Where /metrics and /healthz are served: --metrics-listen, else metrics.listen."""
    if args.metrics_listen is not None:
        try:
            return parse_listen(args.metrics_listen)
        except InvalidValueError as exc:
            raise InvalidValueError(f"--metrics-listen: {exc}") from None
    configured = store.current.loaded.config.metrics.listen
    return None if configured is None else parse_listen(configured)


def _serve(args: argparse.Namespace) -> int:
    from server import event_loop
    from server.app import serve
    from server.heap import shape_heap

    shape_heap()
    store = _open_instance(args)
    event_loop.run(serve(store, host=args.host, port=args.port,
                         metrics=_metrics_address(args, store)))
    return OK


def _up(args: argparse.Namespace) -> int:
    from deployments.up import run_up
    from server import event_loop
    from server.heap import shape_heap

    shape_heap()
    store = _open_instance(args)
    event_loop.run(run_up(store, host=args.host, port=args.port,
                          prefect_port=args.prefect_port, prefect_url=args.prefect_url,
                          metrics=_metrics_address(args, store)))
    return OK


def _worker(args: argparse.Namespace) -> int:
    from deployments.worker import run_worker
    from ssftp.logs import configure_logging
    from ssftp.runtime.prefect_server import is_healthy

    name = checked_name(args.name) if args.name is not None else None
    store = _open_instance(args)
    metrics = _metrics_address(args, store)
    configure_logging(store.current.loaded.config.log_dirs(store.layout))
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url or not is_healthy(api_url):
        raise PrefectServerError(
            f"no Prefect server answers at PREFECT_API_URL={api_url or ''} (e.g. "
            "http://127.0.0.1:4200/api, started by `ssftp up` or `prefect server start`)")
    asyncio.run(run_worker(store, api_url, metrics, name))
    return OK


def _scan_config(args: argparse.Namespace) -> SsftpConfig:
    config = args.config or DataLayout.at(args.data_dir).default_config
    if args.config is None and not config.exists():
        return SsftpConfig()
    return load_config(config).config


def _engines(args: argparse.Namespace, config: SsftpConfig) -> Engines:
    """The engines a command scans with: the config's, with ``--clamd`` instead of its
    clamds, or else the clamd a running ``ssftp up`` of ``--data-dir`` started."""
    clamds = [ClamdAddress.parse(args.clamd)] if args.clamd else config.clamav.addresses
    if config.clamav.enabled and not clamds:
        started = ClamdAddress(unix_path=str(socket_in(DataLayout.at(args.data_dir).clamd)))
        if not ClamdClient(started, timeout=5).ping():
            raise ClamdError("no clamd: pass --clamd, set clamav.address in --config, or give "
                             "the --data-dir of a running `ssftp up`")
        clamds = [started]
    return configured_engines(config, clamds)


def _scan(args: argparse.Namespace) -> int:
    """Exit status: 0 all clean, 1 something infected or unscannable, 2 could not scan."""
    config = _scan_config(args)
    engines = _engines(args, config)
    missing = [path for path in args.paths if not path.exists()]
    if missing:
        raise SsftpError(f"no such file or directory: {', '.join(map(str, missing))}")
    files = _files(args.paths)
    if not files:
        raise SsftpError("no files to scan")
    worst = OK
    for path in files:
        verdict = engines.scan(path.absolute(), config.clamav.mode)
        # Partners choose the names, and clamd's details repeat them.
        print(one_line(f"{path}: {verdict.kind.value}: {verdict.detail}"))
        status = {VerdictKind.CLEAN: OK, VerdictKind.ERROR: FAILED}.get(verdict.kind, FOUND)
        worst = max(worst, status)
    return worst


def _rescan(args: argparse.Namespace) -> int:
    """Exit status: 0 nothing found, 1 something found (a file moved to quarantine/, or one
    in quarantine/ no longer detected), 2 some file could not be scanned."""
    from deployments.rescan_watcher import RESCAN_LOCK, rescanned_areas
    from ssftp.logs import configure_logging
    from ssftp.notify.outbox import Outbox
    from ssftp.notify.record import OutboxRecorder
    from ssftp.run_lock import exclusive_run
    from ssftp.scan.owners import StagingOwners
    from ssftp.scan.rescan import Rescanner, remember_rescanned
    from ssftp.scan.results import Area

    store = _open_store(args)
    layout, config = store.layout, store.current.loaded.config
    if not config.enable_virus_scan:
        raise SsftpError("scanning is switched off (enableVirusScan: false): nothing to "
                         "rescan with")
    # The records go to the logs; the console gets the report below, not the records.
    configure_logging(config.log_dirs(layout), stdout=False)
    client = _engines(args, config)
    try:
        signatures = str(client.signatures())
    except OSError as exc:
        raise ClamdError(f"{client} cannot say which signatures it judges by: {exc}") from None
    areas = [Area(args.area)]
    if args.area == "clean":
        areas = rescanned_areas(config.rescan)
    if args.include_archive and Area.UPLOADARCHIVE not in areas:
        areas.append(Area.UPLOADARCHIVE)
    # Webhooks go through the outbox: a running worker sends them (it looks every 30 s).
    recorder = OutboxRecorder(Outbox(layout.outbox), lambda: config)
    rescanner = Rescanner(layout, client, recorder, StagingOwners(config),
                          config.instance_name, config.clamav.mode)
    with exclusive_run(layout.system, *RESCAN_LOCK) as ours:
        if not ours:
            raise SsftpError("a rescan of this data root is running already (the worker's, "
                             "or another `ssftp rescan`); try again when it is done")
        results = rescanner.rescan_all(areas)
        if Area.CLEAN in areas and not any(r.clamd_unreachable for r in results):
            remember_rescanned(layout, signatures)
    return _rescan_report(results, signatures)


def _rescan_report(results: list[ScanResult], signatures: str) -> int:
    """One line per file that needs a look (moved, still or no longer detected, not
    scanned), then the counts; the exit status of :func:`_rescan`."""
    found = failed = 0
    for result in results:
        if result.verdict in (VerdictKind.ERROR, VerdictKind.UNSCANNABLE):
            failed += 1
            what = f"not scanned: {result.detail}"
        elif not result.stays:
            found += 1
            what = f"{result.signature} -> {result.destination}"
        elif result.area.value == "quarantine":
            if result.verdict is VerdictKind.INFECTED:
                continue
            found += 1
            what = "no longer detected (release it with `ssftp quarantine release`)"
        else:
            continue
        print(one_line(f"{result.source}: {what}"))
    print(f"rescanned {len(results)} file(s) with {signatures}: {found} found, "
          f"{failed} not scanned")
    return FAILED if failed else FOUND if found else OK


def _status(args: argparse.Namespace) -> int:
    """Exit status: 0 the file is in the audit log, 1 it is not, 2 bad input."""
    data_dirs = args.data_dirs or [Path(os.environ.get("SSFTP_DATA_DIR", DEFAULT_DATA_DIR))]
    if args.config is not None and len(data_dirs) > 1:
        raise InvalidValueError("--config goes with one --data-dir (with several, each one's "
                                "system/ssftp.yaml is read)")
    sources = [_audit_source(DataLayout.at(data_dir), args.config) for data_dir in data_dirs]
    query = parse_query(args.file, sources[0].root)
    records = file_history(sources, query)
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        for record in records:
            print(format_record(record))
    if not records:  # an empty answer looked like a command that did nothing
        searched = ", ".join(str(source.root) for source in sources)
        print(one_line(f"ssftp status: no audit record of {args.file} (searched the audit "
                       f"log of {searched})"), file=sys.stderr)
    return OK if records else FOUND


def _audit_source(layout: DataLayout, config_path: Path | None) -> AuditSource:
    """An instance's audit logs: those of the first log dir that has one, the data root's
    log/, else a ``logDests`` file destination (where a split deployment ships them)."""
    if not layout.root.is_dir():
        raise InvalidValueError(f"no data dir at {layout.root}")
    path = config_path or layout.default_config
    dirs, instance = [layout.log], None
    if config_path is not None or path.exists():
        config = load_config(path).config
        dirs, instance = config.log_dirs(layout), config.instance_name
    for directory in dirs:
        if logs := audit_logs(directory):
            return AuditSource(logs, layout.root, instance)
    raise InvalidValueError(f"no {AUDIT_LOG} in {', '.join(map(str, dirs))}")


def _update_signatures(args: argparse.Namespace) -> int:
    """Exit status: 0 clamd loaded new signatures, 1 nothing changed, 2 could not update."""
    layout = DataLayout.at(args.data_dir)
    path: Path = args.config or layout.default_config
    if not path.exists():
        raise SsftpError(f"no config file at {path}")
    config = load_config(path).config
    result = update_signatures(config.clamav.signatures, update_target(config, layout))
    for warning in result.warnings:
        print(one_line(f"warning: {warning}"), file=sys.stderr)
    if result.changed or result.failure is None:
        print(one_line(result.describe()))
    if result.failure is not None:
        raise SignatureUpdateError(result.failure)
    return OK if result.changed else FOUND


def _files(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        found += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return found


def _public_key_lines(values: list[str]) -> list[str]:
    lines: list[str] = []
    for value in values:
        path = Path(value).expanduser()
        if path.is_file():
            lines += [line for line in path.read_text().splitlines() if line.strip()]
        else:
            lines.append(value)
    return lines


def _portable(args: argparse.Namespace) -> int:
    from server import event_loop
    from server.portable import portable_account, run_portable

    password = args.password or os.environ.get("SSFTP_PORTABLE_PASSWORD")
    account = portable_account(args.directory, args.username, password,
                               _public_key_lines(args.public_key), args.permissions)
    layout = DataLayout.at(args.data_dir).create()
    event_loop.run(run_portable(account, layout, args.host, args.port))
    return OK


def _quarantine(args: argparse.Namespace) -> int:
    """Exit status: 0 done; 1 a release refused (still detected, not approved); 2 failed."""
    layout = DataLayout.at(args.data_dir)
    if not layout.quarantine.is_dir():
        raise InvalidValueError(f"no data dir with a quarantine/ at {layout.root}")
    if args.action == "list":
        return _quarantine_list(layout, json_lines=args.json)
    config = _instance_config(args, layout)
    configure_logging(config.log_dirs(layout), stdout=False)
    sub_path = parse_name(args.path, layout)
    reason = checked_reason(args.reason)
    if args.action == "delete":
        delete(layout, sub_path, reason=reason, operator=_operator())
        print(one_line(f"quarantine/{sub_path.as_posix()} deleted"))
        return OK
    try:
        return _release(args, layout, config, sub_path, Request(reason, _operator(), args.force))
    except ReleaseRefusedError as exc:
        _say_failure("quarantine release", exc)
        return FOUND


def _quarantine_list(layout: DataLayout, *, json_lines: bool) -> int:
    for entry in entries(layout):
        print(json.dumps(entry.as_dict()) if json_lines else format_entry(entry))
    return OK


def _defender(args: argparse.Namespace) -> int:
    """Exit status: 0 done; 1 the address was not banned; 2 failed (a bad address, no data
    root)."""
    address = parse_address(args.address) if args.action == "unban" else ""
    layout = DataLayout.at(args.data_dir)
    if not layout.system.is_dir():
        raise InvalidValueError(f"no data dir with a system/ at {layout.root}")
    if args.action == "unban":
        config = _instance_config(args, layout)
        configure_logging(config.log_dirs(layout), stdout=False)
    bans = SharedBans(layout.bans)
    try:
        if args.action == "list":
            for ban in bans.live(time.time()):
                print(json.dumps(ban.as_dict()) if args.json else ban.describe())
            return OK
        lifted = bans.remove(address, time.time())
    finally:
        bans.close()
    if lifted is None:
        _say_failure("defender unban", SsftpError(f"{address} is not banned"))
        return FOUND
    audit_event("unban", logging.INFO, **lifted.as_dict(), operator=_operator())
    log_event(logging.getLogger(APP), "address unbanned", ip=address, operator=_operator())
    print(one_line(f"{address} unbanned (was banned until {lifted.as_dict()['until']} by "
                   f"{lifted.server})"))
    return OK


def _instance_config(args: argparse.Namespace, layout: DataLayout) -> SsftpConfig:
    """--config, else the data root's own, else the defaults (no webhooks, no approval)."""
    path: Path = args.config or layout.default_config
    if args.config is None and not path.exists():
        return SsftpConfig()
    return load_config(path).config


def _operator() -> str:
    """Who runs the command: the login name of the real user id (not $USER, which anyone
    can set), for the audit record."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no name (a container's)
        return f"uid {os.getuid()}"


def _release(args: argparse.Namespace, layout: DataLayout, config: SsftpConfig,
             sub_path: PurePosixPath, request: Request) -> int:
    """A release, as a Prefect run when a Prefect API is given (required for an approval),
    else here and now."""
    client = _engines(args, config) if config.enable_virus_scan else None
    with directory_of(layout, sub_path):  # a mistyped name is told before any run starts
        pass
    releaser = Releaser(layout, client, mode=config.clamav.mode, outbox=Outbox(layout.outbox),
                        config=config)
    api_url = args.prefect_url or os.environ.get("PREFECT_API_URL")
    if api_url:
        return _release_run(args, releaser, api_url, sub_path, request)
    if config.quarantine.release_approval:
        raise PrefectServerError("quarantine.releaseApproval is on: a release waits for an "
                                 "approver in Prefect; pass --prefect-url or set "
                                 "PREFECT_API_URL")
    rescan = releaser.rescan(sub_path)
    try:
        releaser.check(rescan, request.force)
    except ReleaseRefusedError as exc:
        releaser.refused(rescan, request, str(exc))
        raise
    released = releaser.release(rescan, request)
    for line in asyncio.run(send_now(releaser.outbox, released.notifications)):
        print(one_line(f"warning: {line}"), file=sys.stderr)
    print(one_line(f"{rescan.shown} released to {released.result.destination}"))
    return OK


def _release_run(args: argparse.Namespace, releaser: Releaser, api_url: str,
                 sub_path: PurePosixPath, request: Request) -> int:
    _use_prefect(api_url)
    from deployments.prefect_flush import flush_prefect_workers
    from flows.quarantine import ReleaseRuns

    def announce(line: str) -> None:
        print(one_line(line), flush=True)

    runs = ReleaseRuns(releaser, approval=releaser.config.quarantine.release_approval,
                       announce=announce, timeout=args.approval_timeout)
    try:
        outcome = asyncio.run(runs.run(sub_path, request))
    finally:
        flush_prefect_workers()
    if not outcome.released:
        raise ReleaseRefusedError(outcome.message)
    print(one_line(outcome.message))
    return OK


def _automations(args: argparse.Namespace) -> int:
    """Install the alerting automation, or list ssftp's; Prefect is told only once every
    argument checked out."""
    instance = webhook = None
    if args.action == "install":
        webhook = _webhook_url(args.webhook)
        instance = None if args.all_instances else _named_instance(args)
    api_url = _use_prefect(args.prefect_url or os.environ.get("PREFECT_API_URL"))
    from deployments.automations import describe_automation, install, installed, prefect_errors

    with prefect_errors(api_url):
        if args.action == "list":
            for automation in asyncio.run(installed()):
                print(describe_automation(automation))
            return OK
        done = asyncio.run(install(instance, webhook_url=webhook, block=args.block))
    print(done.describe())
    return OK


def _webhook_url(given: str | None) -> str | None:
    """--webhook's URL (from stdin for '-'), checked; never repeated in a message."""
    url = sys.stdin.readline().strip() if given == "-" else given
    if url is None:
        return None
    try:
        return check_http_url(url)
    except InvalidValueError as exc:
        raise InvalidValueError(f"--webhook: {exc} (the URL given is not shown: it may hold "
                                "a secret)") from None


def _named_instance(args: argparse.Namespace) -> str:
    """The instanceName of --config, else of the data root's own config."""
    path: Path = args.config or DataLayout.at(args.data_dir).default_config
    if not path.exists():
        raise SsftpError(f"no config file at {path}: its instanceName names the instance; "
                         "pass --config FILE or --data-dir DIR, or --all-instances")
    return load_config(path).config.instance_name


def _use_prefect(api_url: str | None) -> str:
    """Point Prefect at ``api_url`` before it is first imported (it reads its settings once,
    then): without one, Prefect would quietly start a temporary server of its own."""
    from ssftp.runtime.prefect_server import is_healthy

    if not api_url:
        raise PrefectServerError("no Prefect API: pass --prefect-url URL or set "
                                 "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api, the one "
                                 "`ssftp up` started)")
    if not is_healthy(api_url):
        hint = "" if api_url.rstrip("/").endswith("/api") else " (its API's URL ends in /api)"
        raise PrefectServerError(f"no Prefect server answers at {api_url}{hint}")
    os.environ["PREFECT_API_URL"] = api_url
    return api_url


COMMANDS = {"up": _up, "serve": _serve, "worker": _worker, "scan": _scan, "rescan": _rescan,
            "portable": _portable, "status": _status, "quarantine": _quarantine,
            "defender": _defender,
            "update-signatures": _update_signatures, "automations": _automations,
            "check-config": _check_config, "hash-password": _hash_password}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if "log_format" in args:
        _configure_console(args)
    try:
        return COMMANDS[args.command](args)
    except SsftpError as exc:
        _say_failure(args.command, exc)
    except BrokenPipeError:
        # The reader of our output went away (``ssftp status ... | head``): what it read was
        # whole, and nothing failed. stdout goes to /dev/null, or Python's exit flush fails.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    except OSError as exc:
        # The system refused something the operator can fix (permissions, a full disk).
        _say_failure(args.command, exc)
    except KeyboardInterrupt:
        # Ctrl-C before a server took over SIGINT (at a prompt, during start).
        print(file=sys.stderr)
    return FAILED


def _say_failure(command: str, exc: Exception) -> None:
    """The failure on stderr, escaped for the terminal: it may name a file a partner named.
    Its own lines stay (a config's problems are one a line)."""
    print(lines_shown(f"ssftp {command}: {exc}"), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
