"""``python -m bench``: measure ssftp against OpenSSH and raw clamd on this machine.

Prints the table on stdout and writes the same figures as JSON (``--json``); with
``--compare REF``, then runs the same for another checkout and prints both side by side (see
bench/compare.py). Exit status 0 when every workload ran, whatever the figures; 1 when a workload
could not run.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from bench.compare import compare, comparison_json, render_comparison, run_ref
from bench.results import render_cpu_table, render_table, write_json
from bench.run import ALL_GROUPS, GROUPS, Options, default_workdir_parent, run, say
from bench.workloads import KIB, MIB, Sizes

# A run small enough for the test suite: every workload and server, a few seconds of load.
SMOKE = Sizes(rounds=2, big_file_bytes=4 * MIB, far_file_bytes=1 * MIB, small_files=20,
              small_downloads=20, concurrent_downloads=3, concurrent_file_bytes=1 * MIB,
              sshfs_file_bytes=1 * MIB, sshfs_listing_files=20,
              logins=5, idle_sessions=5,
              pipeline_files=20, pipeline_file_bytes=4 * KIB, latency_samples=3,
              soak_clients=2, soak_rate=4.0, soak_seconds=2.0,
              soak_file_sizes=(1 * KIB, 64 * KIB), rescan_files=20)


def _parser() -> argparse.ArgumentParser:
    defaults = Sizes()
    # No abbreviations: --compare hands REF's run our arguments minus its own options, which
    # it finds by their full names.
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     allow_abbrev=False)
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"),
                        help="where to write the figures as JSON (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=defaults.rounds,
                        help="A B rounds per workload (default: %(default)s)")
    parser.add_argument("--big-file-mib", type=int, default=defaults.big_file_bytes // MIB)
    parser.add_argument("--small-files", type=int, default=defaults.small_files)
    parser.add_argument("--small-downloads", type=int, default=defaults.small_downloads)
    parser.add_argument("--concurrent-downloads", type=int,
                        default=defaults.concurrent_downloads)
    parser.add_argument("--concurrent-file-mib", type=int,
                        default=defaults.concurrent_file_bytes // MIB)
    parser.add_argument("--logins", type=int, default=defaults.logins)
    parser.add_argument("--idle-sessions", type=int, default=defaults.idle_sessions)
    parser.add_argument("--pipeline-files", type=int, default=defaults.pipeline_files)
    parser.add_argument("--latency-samples", type=int, default=defaults.latency_samples)
    parser.add_argument("--soak-clients", type=int, default=defaults.soak_clients)
    parser.add_argument("--soak-rate", type=float, default=defaults.soak_rate,
                        help="files per second the soak's clients offer in all "
                             "(default: %(default)s)")
    parser.add_argument("--soak-seconds", type=float, default=defaults.soak_seconds)
    parser.add_argument("--rescan-files", type=int, default=defaults.rescan_files)
    parser.add_argument("--only", choices=ALL_GROUPS, action="append",
                        help="run only this group of workloads (may be given more than once); "
                             f"without it: {', '.join(GROUPS)}. scale (not run by default, "
                             "about 8 minutes): the pipeline with 1, 2 and 4 workers on SQLite "
                             "and PostgreSQL, and concurrent downloads through HAProxy from 1 "
                             "and 2 ssftp serve, each row with where the CPU went")
    parser.add_argument("--workdir", type=Path,
                        help="where to make the run directory (default: /dev/shm when tmpfs)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and 2 rounds: checks the harness, measures nothing")
    parser.add_argument("--compare", metavar="REF",
                        help="then run the same for REF (a git ref of this repository or the "
                             "path of a checkout) and compare the medians")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    sizes = SMOKE if args.smoke else replace(
        Sizes(), rounds=args.rounds, big_file_bytes=args.big_file_mib * MIB,
        small_files=args.small_files, small_downloads=args.small_downloads,
        concurrent_downloads=args.concurrent_downloads,
        concurrent_file_bytes=args.concurrent_file_mib * MIB, logins=args.logins,
        idle_sessions=args.idle_sessions,
        pipeline_files=args.pipeline_files, latency_samples=args.latency_samples,
        soak_clients=args.soak_clients, soak_rate=args.soak_rate,
        soak_seconds=args.soak_seconds, rescan_files=args.rescan_files)
    options = Options(sizes=sizes, json_path=args.json, keep=args.keep,
                      workdir_parent=args.workdir or default_workdir_parent(),
                      groups=tuple(args.only or GROUPS))
    try:
        rows, context = run(options)
    except (RuntimeError, OSError) as exc:  # testkit.ssftp_process.StartError among them
        say(f"failed: {exc}")
        return 1
    print(render_table(rows), flush=True)
    if cpu_table := render_cpu_table(rows):
        print()
        print(cpu_table, flush=True)
    compared = None
    if args.compare:
        say(f"the same run for {args.compare}")
        try:
            ref_document = run_ref(args.compare, argv)
        except (RuntimeError, OSError, ValueError) as exc:  # ValueError: its JSON unreadable
            say(f"failed: {exc}")
            write_json(options.json_path, rows, context)
            return 1
        ref_rows = ref_document.get("rows")
        found = compare([row.as_json() for row in rows],
                        ref_rows if isinstance(ref_rows, list) else [])
        print()
        print(render_comparison(found, args.compare))
        compared = comparison_json(args.compare, ref_document, found)
    write_json(options.json_path, rows, context, compared)
    say(f"figures written to {options.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
