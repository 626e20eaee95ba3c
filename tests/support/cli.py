"""The ``ssftp`` console script of this checkout's Python, run as a user runs it: in a
subprocess, with no Prefect server or home of the test's own and analytics off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SSFTP = str(Path(sys.executable).with_name("ssftp"))


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment without any Prefect server or home of its own, analytics off."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", **extra)
    return env


def ssftp(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
          timeout: float = 120, input: str = "") -> subprocess.CompletedProcess[str]:
    """The command's outcome; its stdin is ``input`` and then ends."""
    return subprocess.run([SSFTP, *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else child_env(), cwd=cwd, input=input)
