#!/usr/bin/env bash
# Set up everything ssftp needs on a fresh Debian machine with Python 3.11, idempotently:
# Debian packages (through apt-get, only when missing), then .venv/ with pinned Python packages
# (reinstalled only when pyproject.toml or constraints.txt changed). Sourced by ./run and ./test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v sftp >/dev/null 2>&1 || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
[ -x /usr/sbin/clamd ] || missing+=(clamav-daemon)
[ -x /usr/bin/freshclam ] || missing+=(clamav-freshclam)  # ssftp update-signatures
command -v sshfs >/dev/null 2>&1 || missing+=(sshfs)  # tests/e2e/test_off_loop.py: a FUSE mount that hangs
# The clients of tests/e2e/test_interop_matrix.py (sftp, scp, sshfs above; paramiko, asyncssh in .venv).
command -v lftp >/dev/null 2>&1 || missing+=(lftp)
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
command -v psftp >/dev/null 2>&1 || missing+=(putty-tools)  # psftp, pscp, puttygen (.ppk keys)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)  # a load balancer sending the PROXY protocol (e2e)
# tests/e2e/test_systemd.py: systemd-analyze verify and security on deploy/systemd/ssftp.service.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v curl >/dev/null 2>&1 || missing+=(curl)  # sftp:// through libssh2
# libmagic: true file types (ssftp/scan/filetypes.py, through python-magic).
ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1 ' || missing+=(libmagic1)
command -v zip >/dev/null 2>&1 || missing+=(zip)  # tests: zip -P makes an encrypted archive
# tests: a real ICAP server (c-icap) in front of clamd, for ssftp/scan/icap.py.
command -v c-icap >/dev/null 2>&1 || missing+=(c-icap)
compgen -G '/usr/lib/*/c_icap/virus_scan.so' >/dev/null || missing+=(libc-icap-mod-virus-scan)
# tests: a throwaway PostgreSQL cluster under the Prefect server (tests/support/postgres.py).
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
# Docker (docker.io, docker-compose, mmdebstrap, a running dockerd, the base image) is set up by
# scripts/docker-test-env.sh, which tests/e2e/test_docker.py runs itself: nothing else needs it.
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "bootstrap: need root or sudo for apt-get" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

python=""
for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        python="$candidate"
        break
    fi
done
[ -n "$python" ] || { echo "bootstrap: Python 3.11 is required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv

stamp=.venv/.ssftp-installed
wanted="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "bootstrap: installing Python packages into .venv" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
    echo "$wanted" > "$stamp"
fi
