"""A throwaway PostgreSQL cluster, for a test module or a benchmark run: Debian's binaries
(``postgresql`` in scripts/bootstrap.sh), a cluster of its own under a temp directory,
listening on 127.0.0.1 on a free port (and a Unix socket in that directory), trust
authentication, durability off (the cluster lives as long as its user). PostgreSQL refuses
to run as root, so under root the cluster belongs to the ``postgres`` user that Debian's
package creates.

Prefect connects with asyncpg (``postgresql+asyncpg://``), a dependency of Prefect itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testkit.openssh_server import free_port

# The database and role Prefect uses; the cluster's superuser, so Prefect's migrations may
# create the extensions they need (pg_trgm).
USER = "prefect"
DATABASE = "prefect"
START_SECONDS = 60


class PostgresError(RuntimeError):
    """The cluster could not be made or started; the message says which step and why."""


def _binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda path: int(path.parent.parent.name)
                   if path.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


@dataclass(frozen=True)
class Postgres:
    directory: Path
    port: int
    bin: Path
    user: str | None  # who runs it (None: this process's user)

    @property
    def url(self) -> str:
        """The URL Prefect's server takes (PREFECT_API_DATABASE_CONNECTION_URL)."""
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def pid(self) -> int:
        """The postmaster's, parent of every backend: pg_ctl leaves it no child of ours."""
        return int((self.directory / "data" / "postmaster.pid").read_text().split()[0])

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True,
                                text=True, timeout=START_SECONDS, user=self.user,
                                cwd=self.directory)
        if result.returncode != 0:
            raise PostgresError(f"{' '.join(args[:2])} failed: {result.stdout}\n{result.stderr}")
        return result

    def stop(self) -> None:
        subprocess.run([str(self.bin / "pg_ctl"), "stop", "-D", str(self.directory / "data"),
                        "-m", "immediate", "-w"], capture_output=True, timeout=START_SECONDS,
                       user=self.user, cwd=self.directory)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """A running cluster with the database :data:`DATABASE`, stopped and removed at exit."""
    binaries = _binaries()
    if binaries is None:
        raise PostgresError("PostgreSQL is not installed (scripts/bootstrap.sh installs "
                            "postgresql)")
    user = "postgres" if os.geteuid() == 0 else None
    # Not under pytest's tmp_path: its directories are root's alone, and the cluster's user
    # must reach its own.
    directory = Path(tempfile.mkdtemp(prefix="ssftp-pg-"))
    if user is not None:
        shutil.chown(directory, user)
    cluster = Postgres(directory, free_port(), binaries, user)
    try:
        cluster.run("initdb", "-D", str(directory / "data"), "-U", USER, "-A", "trust",
                    "-E", "UTF8", "--no-sync", "--no-instructions")
        cluster.run("pg_ctl", "start", "-w", "-t", str(START_SECONDS), "-D",
                    str(directory / "data"), "-l", str(directory / "log"), "-o",
                    f"-p {cluster.port} -k {directory} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        cluster.run("createdb", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", USER,
                    DATABASE)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
