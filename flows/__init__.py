"""Prefect flows and tasks: thin orchestration over :mod:`ssftp` (scan, notify, signature
updates) and :mod:`client` (download, upload), adding runs, retries, artifacts and history.

A scheduled run (a transfer, a signature update, retention) that the Prefect runner of an
``ssftp up`` or ``ssftp worker`` starts runs in a process of its own (``python -m
prefect.engine``), which imports this package first. That process dies with the ssftp process
that started it, even a SIGKILLed one: a killed ``up`` must leave nothing running, and with
``up``'s Prefect server gone the run has nobody to report to (its client would retry for a
while). The runner's process says who it is in :data:`RUNNER_PARENT`; flow runs that a
``prefect worker`` starts (the split deployments of ``prefect.yaml``) are not concerned.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

RUNNER_PARENT = "SSFTP_RUNNER_PARENT"
_PR_SET_PDEATHSIG = 1


def _die_with_the_runner_s_process() -> None:
    """Only in the runner's own child: the variable is inherited further (by a ``prefect
    worker`` started from a process that ran a runner, and by its flow runs), and those must
    live on."""
    parent = os.environ.get(RUNNER_PARENT)
    if parent is None or not parent.isdigit() or os.getppid() != int(parent) or not (
            sys.argv[0].endswith(os.path.join("prefect", "engine.py"))):
        return  # not a flow run process of ssftp's runner
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM), ctypes.c_ulong(0),
               ctypes.c_ulong(0), ctypes.c_ulong(0))
    if os.getppid() != int(parent):  # it died between the check and the line above
        os.kill(os.getpid(), signal.SIGTERM)


_die_with_the_runner_s_process()
