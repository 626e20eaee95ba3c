#!/usr/bin/env bash
# Make this machine able to build and run docker/compose.yaml, idempotently; run by tests/e2e/test_docker.py
# (only when that test runs: the rest of the suite needs no Docker) and usable by hand:
#   1. Debian's docker.io and docker-compose (apt-get, only the missing ones; mmdebstrap too
#      when step 3 needs it);
#   2. a Docker daemon: when none answers, start dockerd (root only) and wait until `docker info`
#      answers; its pid goes to $SSFTP_DOCKERD_PIDFILE when set, so the caller can stop what it started;
#   3. the base image debian:bookworm-slim: pulled where a registry answers, else built from
#      Debian's packages with mmdebstrap, trusting the host's extra CA certificates (a
#      TLS-inspecting proxy would otherwise break pip inside the builds).
# Exit 0 when Docker is ready; exit 3 with one line on stderr when it cannot be here (something
# needs root and this is not root, without passwordless sudo; no apt-get; no dockerd).
set -euo pipefail

say() { echo "docker-test-env: $*" >&2; }
unavailable() { say "$*"; exit 3; }

# Root only for what needs it (installing, starting dockerd, mmdebstrap): a user of a running
# daemon (the docker group) needs none.
as_root=""
need_root() {
    [ "$(id -u)" -eq 0 ] && return
    sudo -n true 2>/dev/null || unavailable "$1 needs root: not root and no passwordless sudo"
    as_root="sudo -n"
}

install_missing() {
    [ $# -gt 0 ] || return 0
    command -v apt-get >/dev/null 2>&1 || unavailable "no apt-get to install $*"
    need_root "installing $*"
    say "installing Debian packages: $*"
    $as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends \
        "$@" >/dev/null
}

missing=()
# dockerd, not docker: a machine may have a client alone (this kind has one in /usr/local/bin).
command -v docker >/dev/null 2>&1 && { command -v dockerd >/dev/null 2>&1 ||
    docker info >/dev/null 2>&1; } || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 ||
    missing+=(docker-compose)
install_missing "${missing[@]}"

if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null 2>&1 || unavailable "no daemon answers and no dockerd to start"
    need_root "starting dockerd"
    log="${SSFTP_DOCKERD_LOG:-/tmp/ssftp-dockerd.log}"
    say "starting dockerd (log $log)"
    # setsid: the daemon outlives this script and is stopped by whoever started us (by its pid).
    $as_root setsid dockerd >"$log" 2>&1 </dev/null &
    pid=$!
    [ -z "${SSFTP_DOCKERD_PIDFILE:-}" ] || echo "$pid" >"$SSFTP_DOCKERD_PIDFILE"
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || unavailable "dockerd exited at start: $(tail -n 1 "$log")"
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || unavailable "dockerd did not answer within 60 s (log $log)"
fi

base=debian:bookworm-slim
if ! docker image inspect "$base" >/dev/null 2>&1 && ! docker pull -q "$base" >/dev/null 2>&1; then
    command -v mmdebstrap >/dev/null 2>&1 || install_missing mmdebstrap
    need_root "building $base with mmdebstrap"
    say "no registry: building $base from Debian's packages with mmdebstrap"
    cas=/usr/local/share/ca-certificates
    hooks=()
    if compgen -G "$cas/*.crt" >/dev/null; then
        hooks=(--customize-hook="mkdir -p \"\$1$cas\" && cp $cas/*.crt \"\$1$cas/\""
            --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1')
    fi
    # Without manuals, documentation and translations, as Debian's own slim image (the
    # dpkg options stay in the image, for the packages our Dockerfiles add).
    slim=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
        --dpkgopt='path-include=/usr/share/doc/*/copyright'
        --dpkgopt='path-exclude=/usr/share/locale/*'
        --dpkgopt='path-include=/usr/share/locale/locale.alias')
    $as_root mmdebstrap --quiet --variant=minbase --include=ca-certificates "${slim[@]}" \
        "${hooks[@]}" bookworm - | docker import - "$base" >/dev/null
fi
