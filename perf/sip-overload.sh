#!/usr/bin/env bash
# Goodput past capacity: calls completed per second, retransmissions and setup time when the
# native generator offers more calls than the box can carry, with the relay's overload control
# (`sip_overload_queue_ms = MARK_MS`, 20 unless set) and without it (the default), side by
# side. Each trial starts a fresh relay (perf/sip-bench.toml, 127.0.0.1:5070), so state left by
# an earlier trial (lingering transactions) does not weaken the next one.
#
#   perf/sip-overload.sh [RATES] [SECS]      e.g. perf/sip-overload.sh 8000,12000,20000,27000 5
#
# One line per trial: control, offered calls/s, completed/attempted, completed per second,
# generator retransmissions, the relay's 503s for overload, setup p50/p99. Every process is
# bounded by timeout and stopped by PID; trials hold the /tmp/bench.lock flock (sip-load).
set -euo pipefail
cd "$(dirname "$0")/.."
rates=${1:-8000,12000,20000,27000}
secs=${2:-5}
work=$(mktemp -d)
relay_pid=
cleanup() {
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --bin intertrunk --example sip-load -q
sed "s/^\[server\]/[server]\nsip_overload_queue_ms = ${MARK_MS:-20}/" perf/sip-bench.toml >"$work/on.toml"

trial() { # control config rate
    RUST_LOG=warn target/release/intertrunk run --config "$2" >"$work/relay.log" 2>&1 &
    relay_pid=$!
    for _ in $(seq 50); do
        curl -sf http://127.0.0.1:8070/metrics >/dev/null 2>&1 && break
        sleep 0.1
    done
    local line
    line=$(timeout 120 target/release/examples/sip-load --sut-pid "$relay_pid" --label "$1" \
        --secs "$secs" --hold-ms 1000 --rates "$3" 2>/dev/null | tail -1)
    local rejected
    rejected=$(curl -s http://127.0.0.1:8070/metrics |
        awk '/^intertrunk_sip_rejected_overload_total/ { print $2 }')
    kill "$relay_pid"; wait "$relay_pid" || true; relay_pid=
    while ss -Hlun | grep -q ':5070 '; do sleep 0.1; done
    echo "$line" | jq -r --arg c "$1" --arg r "${rejected:-0}" --argjson s "$secs" \
        '"\($c)\t\(.offered_cps)/s\t\(.completed)/\(.attempted) completed\t\(.completed / $s | floor)/s\tretx \(.retx_sent)\t503 overload \($r)\tsetup p50 \(.setup_p50_ms) ms p99 \(.setup_p99_ms) ms"'
}

echo "# $(date -u '+%F %H:%M') $(nproc) vCPU, kernel $(uname -r); ${secs}s trials, hold 1 s, generator sip-load"
for rate in ${rates//,/ }; do
    trial "control on " "$work/on.toml" "$rate"
    trial "control off" perf/sip-bench.toml "$rate"
done
