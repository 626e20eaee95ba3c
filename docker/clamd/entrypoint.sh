#!/bin/bash
# clamd in the foreground, with freshclam on its interval beside it.
#   clamd-entrypoint        start (the container's command)
#   clamd-entrypoint ping   exit 0 when clamd answers PING on TCP 3310 (the HEALTHCHECK)
# Environment: FRESHCLAM_INTERVAL_SECONDS (default 7200; 0 = never), CLAMD_MAX_FILE_SIZE
# (bytes, default 100 MiB: keep it at least ssftp's clamav.maxFileSize).
set -euo pipefail

db=/var/lib/clamav
run=/run/clamav

if [ "${1:-}" = ping ]; then
    exec 3<>/dev/tcp/127.0.0.1/3310
    printf 'zPING\0' >&3
    IFS= read -r -d '' -t 4 answer <&3
    [ "$answer" = PONG ]
    exit
fi

has_real_database() { compgen -G "$db/*.cvd" >/dev/null || compgen -G "$db/*.cld" >/dev/null; }

if has_real_database; then
    rm -f "$db"/ssftp-test.*
else
    echo "clamd-entrypoint: WARNING: no real signature database: loading the offline EICAR" \
        "test signatures only; clamd finds the test file and nothing else" >&2
    cp /usr/share/ssftp/test-signatures/ssftp-test.* "$db/"
fi

mkdir -p "$run/tmp"
sed -e "s|@SOCKET@|$run/clamd.sock|" \
    -e "s|@TCP@|TCPSocket 3310\nTCPAddr 0.0.0.0|" \
    -e "s|@DATABASE@|$db|" \
    -e "s|@TMPDIR@|$run/tmp|" \
    -e "s|@LOGFILE@|$run/clamd.log|" \
    -e "s|@MAXSIZE@|${CLAMD_MAX_FILE_SIZE:-104857600}|" \
    /usr/share/ssftp/clamd.conf.in >"$run/clamd.conf"

# freshclam beside clamd: at once (a first start gets real signatures where the network
# allows; clamd starts meanwhile with what it has), then on its interval, telling clamd to
# reload after an update. A failure is logged and retried; it never stops clamd.
interval="${FRESHCLAM_INTERVAL_SECONDS:-7200}"
if [ "$interval" -gt 0 ]; then
    (
        while true; do
            if freshclam --config-file=/etc/clamav/freshclam.conf --stdout --no-warnings; then
                # Real signatures now: the test ones go at clamd's next reload.
                ! has_real_database || rm -f "$db"/ssftp-test.*
            else
                echo "clamd-entrypoint: freshclam failed: will retry in $interval s" >&2
            fi
            sleep "$interval"
        done
    ) &
fi
exec clamd --config-file="$run/clamd.conf"
