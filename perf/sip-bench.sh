#!/usr/bin/env bash
# The relay against Kamailio under the same SIPp load (INVITE/100/180/200/ACK/BYE/200, no
# media), in one session: the peer-bench harness measures the relay through its --sut-pid hook
# (listening on 127.0.0.1:5070 with perf/sip-bench.toml), then Kamailio doing the same job.
# Then the relay's RSS with 10,000 concurrent dialogs. The trunks bypass media (the job
# Kamailio does); BENCH_MEDIA=1 runs the relay with media anchored instead (4 media sockets
# per call, the job of Kamailio + rtpengine).
#
#   perf/sip-bench.sh PEER_BENCH_DIR [RATES] [SECS] [SEARCH_BUDGET_S]
#
# PEER_BENCH_DIR is the comparison harness; it is copied to a temporary directory first.
# Every run is bounded (timeout), every process is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
peer=${1:?usage: perf/sip-bench.sh PEER_BENCH_DIR [RATES] [SECS] [SEARCH_BUDGET_S]}
rates=${2:-300,2000}
secs=${3:-10}
budget=${4:-0}

work=$(mktemp -d)
cp -r "$peer" "$work/peer"
out="$work/out"
mkdir -p "$out"
relay_pid=
cleanup() {
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
    [ -n "$relay_pid" ] && wait "$relay_pid" 2>/dev/null || true
}
trap cleanup EXIT

[ -x target/release/intertrunk ] || cargo build --release
config=perf/sip-bench.toml
if [ "${BENCH_MEDIA:-0}" = 1 ]; then
    config="$work/sip-bench-media.toml"
    grep -v '^enable_bypass' perf/sip-bench.toml >"$config"
fi
start_relay() {
    RUST_LOG=warn target/release/intertrunk run --config "$config" \
        >"$out/relay.log" 2>&1 &
    relay_pid=$!
    for _ in $(seq 50); do
        curl -sf http://127.0.0.1:8070/metrics >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "relay did not start:" >&2; cat "$out/relay.log" >&2; exit 1
}
stop_relay() { kill "$relay_pid"; wait "$relay_pid" || true; relay_pid=; }

search=(--no-search)
[ "$budget" != 0 ] && search=(--search --budget-s "$budget")

start_relay
echo "== relay (pid $relay_pid): rates $rates, ${secs}s"
(cd "$work/peer" && timeout 900 python3 bench.py sip --sut-pid "$relay_pid" \
    --rates "$rates" --secs "$secs" --reps 1 "${search[@]}") | tee "$out/relay-sip.txt"
stop_relay

echo "== kamailio: rates $rates, ${secs}s"
(cd "$work/peer" && timeout 900 python3 bench.py sip \
    --rates "$rates" --secs "$secs" --reps 1 "${search[@]}") | tee "$out/kamailio-sip.txt"

# RSS with 10,000 concurrent dialogs: 10,000 calls held 60 s, set up at 1,000 calls/s.
start_relay
rss() { awk '/^VmRSS/ {print $2}' "/proc/$relay_pid/status"; }
before=$(rss)
timeout 60 sipp -sf "$work/peer/sipp/uas.xml" -i 127.0.0.1 -p 5090 -nostdin -timeout 55s \
    -m 10000 >/dev/null 2>&1 &
uas=$!
sleep 0.3
timeout 60 sipp -sf "$work/peer/sipp/uac.xml" -i 127.0.0.1 -p 5091 -s 4930123456 \
    127.0.0.1:5070 -d 60000 -r 1000 -m 10000 -l 10000 -nostdin -timeout 55s \
    >/dev/null 2>&1 &
uac=$!
sleep 15
during=$(rss)
dialogs=$(curl -s http://127.0.0.1:8070/metrics | awk '/^intertrunk_active_calls / {print $2; exit}')
kill "$uac" "$uas" 2>/dev/null || true
wait "$uac" "$uas" 2>/dev/null || true
stop_relay
echo "== RSS: before ${before} kB, with ${dialogs:-?} dialogs ${during} kB," \
    "per dialog $(( (during - before) * 1024 / ${dialogs:-10000} )) B" | tee "$out/rss.txt"
echo "results in $out"
