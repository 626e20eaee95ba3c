"""The servers a benchmark run compares, each started on 127.0.0.1 in the run's own directory.

- ssftp as users run it: ``ssftp serve`` for the SFTP figures (the process whose memory is
  measured), ``ssftp up`` for the pipeline figures (server, watcher, Prefect, all of it), both
  started by ``testkit.ssftp_process`` with the accounts and the config of this module.
- OpenSSH's sshd with ``internal-sftp``, its config, keys and log in a temp directory
  (``testkit/openssh_server.py``, shared with the tests so both know one way to run it).
- clamd with the project's clamd.conf; ``ssftp up`` is pointed at the same clamd the raw
  reference scans with, so both pipelines use one engine with one signature set.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

UPLOADER = "bench-up"
DOWNLOADER = "bench-down"
ACCOUNT_DIRECTORY = "bench"


def bench_config(public_key: str, clamd_socket: Path | None = None, *,
                 trusted_proxy: str | None = None, concurrent_runs: int | None = None) -> str:
    """ssftp.yaml for the run: one staging account to upload to, one clean account to read.

    Everything else keeps its default, fsyncUploads included: the figures are those of ssftp as
    shipped. Except the connection limits: the memory workload holds 100 idle sessions of one
    account from one address, which the defaults (20 per account, 50 per address) refuse, as
    they should for a real partner.

    ``trusted_proxy``: the address a load balancer sending the PROXY protocol connects from
    (``limits.proxyProtocol``); ``concurrent_runs``: ``scanning.concurrentRuns``, for workers
    on a Prefect server they did not start (its ``auto`` is 1 there, whatever the database).
    """
    clamav = f"clamav:\n  address: {clamd_socket}\n" if clamd_socket else ""
    # Indented as the template's limits, before it is dedented.
    proxy = (f"\n{' ' * 10}proxyProtocol: true\n{' ' * 10}trustedProxies: [\"{trusted_proxy}\"]"
             if trusted_proxy else "")
    scanning = f"scanning:\n  concurrentRuns: {concurrent_runs}\n" if concurrent_runs else ""
    return textwrap.dedent(f"""\
        sftpPort: 0
        instanceName: bench
        limits:
          maxConnectionsPerAccount: 200
          maxConnectionsPerAddress: 200{proxy}
        users:
          stagingDir:
            - directory: {ACCOUNT_DIRECTORY}
              auth:
                username: {UPLOADER}
                publicKey: "{public_key}"
          cleanDir:
            - directory: {ACCOUNT_DIRECTORY}
              allowDelete: true
              auth:
                username: {DOWNLOADER}
                publicKey: "{public_key}"
        """) + clamav + scanning
