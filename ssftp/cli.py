"""The ``ssftp`` command line.

Commands that run a server import it only when they run, so ``check-config`` and
``hash-password`` work without the SSH stack, and the core keeps its one-way dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path

from ssftp.config import load_config
from ssftp.config.reload import ConfigStore
from ssftp.errors import ConfigError
from ssftp.layout import DataLayout
from ssftp.passwords import hash_password

DEFAULT_DATA_DIR = "./var/ssftp"


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path,
                        help="ssftp.yaml (default: <data dir>/system/ssftp.yaml)")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("SSFTP_DATA_DIR", DEFAULT_DATA_DIR)),
                        help=f"data root with the six areas (default: {DEFAULT_DATA_DIR})")
    parser.add_argument("--host", help="address to listen on (default: sftpHost, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: sftpPort)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssftp", description="Scanned SFTP gateway")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="everything on one machine: Prefect server, clamd, "
                                        "SFTP server and scan worker")
    _add_server_options(up)
    up.add_argument("--prefect-port", type=int, default=4200,
                    help="port of the local Prefect server to use or start (default: 4200)")

    serve = commands.add_parser("serve", help="run the SFTP server only")
    _add_server_options(serve)

    worker = commands.add_parser("worker", help="run the staging watcher and scan flows only "
                                                "(against PREFECT_API_URL)")
    _add_server_options(worker)

    scan = commands.add_parser("scan", help="scan files with the configured clamd and print "
                                            "verdicts (moves nothing)")
    scan.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    scan.add_argument("--config", type=Path, help="ssftp.yaml whose clamav section to use")
    scan.add_argument("--clamd", help="clamd address (socket path or host:port); "
                                      "overrides the config")

    portable = commands.add_parser("portable", help="one-user SFTP server over a directory")
    portable.add_argument("--directory", type=Path, required=True)
    portable.add_argument("--username", required=True)
    portable.add_argument("--password", help="plaintext or a bcrypt/argon2id hash "
                                             "(or set SSFTP_PORTABLE_PASSWORD)")
    portable.add_argument("--public-key", action="append", default=[],
                          help="an OpenSSH public key line or a .pub file (repeatable)")
    portable.add_argument("--permissions", default="list,download",
                          help="comma-separated SFTPGo names, '*' for all "
                               "(default: list,download)")
    portable.add_argument("--host", default="127.0.0.1")
    portable.add_argument("--port", type=int, default=2022)
    portable.add_argument("--data-dir", type=Path,
                          default=Path(os.environ.get("SSFTP_DATA_DIR", DEFAULT_DATA_DIR)),
                          help="where host keys (system/) and logs (log/) are kept")

    check = commands.add_parser("check-config", help="validate ssftp.yaml and explain problems")
    check.add_argument("file", type=Path)

    hasher = commands.add_parser("hash-password", help="print a password hash for ssftp.yaml")
    hasher.add_argument("--scheme", choices=["bcrypt", "argon2id"], default="bcrypt")
    return parser


def _check_config(file: Path) -> int:
    try:
        loaded = load_config(file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    config = loaded.config
    print(f"{file}: valid ({len(config.users.staging_dir)} staging and "
          f"{len(config.users.clean_dir)} clean accounts, "
          f"{len(config.sftp_client_downloaders)} downloaders, "
          f"{len(config.sftp_client_uploaders)} uploaders)")
    for warning in loaded.warnings:
        print("warning: " + warning.describe(loaded.source))
    return 0


def _hash_password(scheme: str) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        print(hash_password(password, scheme))  # type: ignore[arg-type]
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def _open_store(args: argparse.Namespace) -> ConfigStore | None:
    layout = DataLayout.at(args.data_dir).create()
    try:
        return ConfigStore.open(args.config or layout.default_config, layout)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from server import event_loop
    from server.app import serve

    if (store := _open_store(args)) is None:
        return 2
    try:
        event_loop.run(serve(store, host=args.host, port=args.port))
    except OSError as exc:
        print(f"ssftp serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _up(args: argparse.Namespace) -> int:
    from deployments.prefect_server import PrefectServerError
    from deployments.up import WorkerDiedError, run_up
    from server import event_loop
    from ssftp.errors import ClamdStartError

    if (store := _open_store(args)) is None:
        return 2
    try:
        event_loop.run(run_up(store, host=args.host, port=args.port,
                           prefect_port=args.prefect_port))
    except (PrefectServerError, ClamdStartError, WorkerDiedError, OSError) as exc:
        # OSError: the SFTP port cannot be bound (in use, or a privileged port).
        print(f"ssftp up: {exc}", file=sys.stderr)
        return 1
    return 0


def _worker(args: argparse.Namespace) -> int:
    from deployments.prefect_server import is_healthy
    from deployments.worker import NoClamdError, run_worker
    from ssftp.logs import configure_logging

    if (store := _open_store(args)) is None:
        return 2
    configure_logging([store.layout.log])
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url or not is_healthy(api_url):
        print(f"ssftp worker: no Prefect server answers at PREFECT_API_URL={api_url or ''} "
              "(e.g. http://127.0.0.1:4200/api, started by `ssftp up` or `prefect server "
              "start`)", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_worker(store))
    except NoClamdError as exc:
        print(f"ssftp worker: {exc}", file=sys.stderr)
        return 1
    return 0


def _scan(args: argparse.Namespace) -> int:
    """Exit status: 0 all clean, 1 something infected or unscannable, 2 could not scan."""
    from ssftp.clamd import ClamdAddress, ClamdClient, VerdictKind
    from ssftp.config.schema import ClamavSettings

    settings = ClamavSettings()
    if args.config is not None:
        try:
            settings = load_config(args.config).config.clamav
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
    address_text = args.clamd or settings.address
    if not address_text:
        print("ssftp scan: no clamd: pass --clamd or set clamav.address in --config",
              file=sys.stderr)
        return 2
    try:
        address = ClamdAddress.parse(address_text)
    except ValueError as exc:
        print(f"ssftp scan: {exc}", file=sys.stderr)
        return 2
    missing = [path for path in args.paths if not path.exists()]
    if missing:
        print(f"ssftp scan: no such file or directory: {', '.join(map(str, missing))}",
              file=sys.stderr)
        return 2
    files = _files(args.paths)
    if not files:
        print("ssftp scan: no files to scan", file=sys.stderr)
        return 2
    client = ClamdClient(address, timeout=settings.timeout, max_file_size=settings.max_file_size)
    worst = 0
    for path in files:
        verdict = client.scan(path.absolute(), settings.mode)
        print(f"{path}: {verdict.kind.value}: {verdict.detail}")
        status = {VerdictKind.CLEAN: 0, VerdictKind.ERROR: 2}.get(verdict.kind, 1)
        worst = max(worst, status)
    return worst


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
    try:
        account = portable_account(args.directory, args.username, password,
                                   _public_key_lines(args.public_key), args.permissions)
    except ValueError as exc:
        print(f"ssftp portable: {exc}", file=sys.stderr)
        return 2
    layout = DataLayout.at(args.data_dir).create()
    event_loop.run(run_portable(account, layout, args.host, args.port))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file)
    if args.command == "hash-password":
        return _hash_password(args.scheme)
    commands = {"up": _up, "serve": _serve, "worker": _worker, "scan": _scan,
                "portable": _portable}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
