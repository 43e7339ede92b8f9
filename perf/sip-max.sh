#!/usr/bin/env bash
# Highest sustained calls/s with zero failed calls, the relay and Kamailio side by side in one
# run, both driven by the native generator (tools/sip-load, example `sip-load`) beyond what
# SIPp can offer: UAC 127.0.0.1:5091 -> proxy 127.0.0.1:5070 -> UAS 127.0.0.1:5090, number
# 4930123456, the peer-bench call flow without media. For each: one fixed trial at
# FIXED_RATE (CPU per call), then a search from START up to MAX (x1.5 until a trial fails,
# then bisection), bounded by BUDGET_S. Kamailio is started exactly as the peer-bench harness
# does (proxy.cfg, its dispatcher list, 8 children, -m 512 -M 16).
#
#   perf/sip-max.sh PEER_BENCH_DIR [START,MAX] [SECS]
#   env: FIXED_RATE (2000), BUDGET_S (search budget per system, 60), HOLD_MS (0),
#        GEN_BATCH_US (0: the generator's wake-up batching window, sip-load --batch-us)
#
# PEER_BENCH_DIR is copied to a temporary directory first. Every run is bounded (timeout),
# every process is started and stopped by PID; each trial holds the /tmp/bench.lock flock.
set -euo pipefail
cd "$(dirname "$0")/.."
peer=${1:?usage: perf/sip-max.sh PEER_BENCH_DIR [START,MAX] [SECS]}
search=${2:-3000,40000}
secs=${3:-5}
fixed=${FIXED_RATE:-2000}
budget=${BUDGET_S:-60}
hold=${HOLD_MS:-0}
gen_batch=${GEN_BATCH_US:-0}

work=$(mktemp -d)
cp -r "$peer" "$work/peer"
out="$work/out"
mkdir -p "$out"
relay_pid=
kam_pid=
cleanup() {
    for p in $relay_pid $kam_pid; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

[ -x target/release/intertrunk ] || cargo build --release
[ -x target/release/examples/sip-load ] || cargo build --release --example sip-load

udp_bound() { ss -Hluan "sport = :$1" | grep -q "127.0.0.1:$1"; }
# Another benchmark may be using the harness ports: wait for them (at most 5 minutes) before
# each system under test starts, so that neither binds a port someone else holds.
ports_free() { ! udp_bound 5070 && ! udp_bound 5090 && ! udp_bound 5091; }
wait_ports() {
    for _ in $(seq 150); do ports_free && return 0; sleep 2; done
    echo "127.0.0.1:5070/5090/5091 still in use" >&2
    exit 1
}

# The generator: fixed trial, then the search; bounded by `timeout` well above the budget.
load() { # PID LABEL
    timeout $((budget + 4 * secs + 60)) target/release/examples/sip-load \
        --sut-pid "$1" --label "$2" --secs "$secs" --hold-ms "$hold" --batch-us "$gen_batch" \
        --rates "$fixed" --search "$search" --budget-s "$budget"
}

start_relay() {
    wait_ports
    RUST_LOG=warn target/release/intertrunk run --config "${SIP_MAX_CONFIG:-perf/sip-bench.toml}" \
        >"$out/relay.log" 2>&1 &
    relay_pid=$!
    for _ in $(seq 50); do
        kill -0 "$relay_pid" 2>/dev/null || break
        curl -sf http://127.0.0.1:8070/metrics >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "relay did not start:" >&2
    cat "$out/relay.log" >&2
    exit 1
}
stop_relay() { kill "$relay_pid"; wait "$relay_pid" || true; relay_pid=; }

# As the harness's start_kamailio: no daemon, log to stderr, its own run directory.
start_kamailio() {
    local kdir="$work/kamailio"
    mkdir -p "$kdir"
    wait_ports
    kamailio -DD -E -f "$work/peer/kamailio/proxy.cfg" -Y "$kdir" -P "$kdir/kamailio.pid" \
        -m 512 -M 16 -A "DS_LIST=\"$work/peer/kamailio/dispatcher.list\"" \
        -A KAM_CHILDREN=8 >"$out/kamailio.log" 2>&1 &
    kam_pid=$!
    for _ in $(seq 100); do
        kill -0 "$kam_pid" 2>/dev/null || break
        if udp_bound 5070; then
            sleep 0.5 # let all workers fork; a failed bind ends the main process
            kill -0 "$kam_pid" 2>/dev/null && return 0
            break
        fi
        sleep 0.1
    done
    echo "kamailio did not start:" >&2
    cat "$out/kamailio.log" >&2
    exit 1
}
stop_kamailio() { kill "$kam_pid"; wait "$kam_pid" || true; kam_pid=; }

start_relay
echo "== relay (pid $relay_pid): fixed ${fixed} calls/s, search $search, ${secs}s trials"
load "$relay_pid" relay | tee "$out/relay.jsonl"
stop_relay

start_kamailio
echo "== kamailio (pid $kam_pid): fixed ${fixed} calls/s, search $search, ${secs}s trials"
load "$kam_pid" kamailio | tee "$out/kamailio.jsonl"
stop_kamailio

echo "== summary (generator: sip-load)"
for sut in relay kamailio; do
    jq -r --arg sut "$sut" '
      if .search then
        "\($sut): highest passing \(.max_pass_cps) calls/s (first failing \(.first_fail_cps); highest without any retransmission \(.max_clean_cps)), \(.trials) trials"
          + (if .best then ", at that rate: \(.best.retx_sent) retransmissions, setup p99 \(.best.setup_p99_ms) ms, SUT \(.best.sut_cpu_ms_per_call) ms/call, \(.best.sut_cpu_pct)% of a core" else "" end)
      elif .phase == "fixed" then
        "\($sut): \(.offered_cps) calls/s: \(.completed)/\(.attempted) completed, \(.failed) failed, \(.retx_sent) retransmissions, SUT \(.sut_cpu_ms_per_call) ms CPU/call (\(.sut_cpu_pct)% of a core), generator \(.gen_cpu_ms_per_call) ms/call, setup p99 \(.setup_p99_ms) ms"
      else empty end' "$out/$sut.jsonl"
done | tee "$out/summary.txt"
echo "results in $out"
