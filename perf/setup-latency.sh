#!/usr/bin/env bash
# Added setup latency: for every call, the time from the INVITE arriving at the SIP server to
# its INVITE leaving toward the callee, from kernel capture timestamps on the loopback
# interface (both packets are seen by the same capture, so the clock is the same).
# SIPp UAC (127.0.0.1:5091) -> server (127.0.0.1:5070) -> SIPp UAS (127.0.0.1:5090), calls
# without media, at each rate for SECS seconds. The server is the relay (perf/sip-bench.toml,
# or $SETUP_CONFIG); given the peer comparison harness directory, Kamailio doing the same job
# (its proxy.cfg and dispatcher list, started as the harness starts it) is measured after it
# in the same run, the same way, and so is the harness's bare recvmmsg/sendmmsg forwarder
# (udpfwd, 127.0.0.1:5070 -> the callee, no parsing): the floor this box puts under any SIP
# server's added latency. It adds no Via, so the callee answers the caller directly and SIPp's
# calls do not complete through it: SIPp stops at its concurrent-call limit (3 x rate) after
# about 3 s, and fewer INVITEs are matched than for the servers.
# For the relay, the figures are also split by the worker port each INVITE left from: the
# worker that received it against the one it was handed to (its Call-ID's owner).
#
#   perf/setup-latency.sh [RATES] [SECS] [PEER_BENCH_DIR]    e.g. perf/setup-latency.sh 300,1000 10
#
# REALTIME_PRIORITY=N runs the relay's workers under SCHED_FIFO priority N (the
# `realtime_priority` key added to the config; needs root or CAP_SYS_NICE).
#
# Needs sipp and tshark (dumpcap). Every process is bounded by timeout and stopped by PID;
# the run holds flock /tmp/bench.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
rates=${1:-300,1000}
secs=${2:-10}
peer=${3:-}
command -v sipp >/dev/null || { echo "needs sipp (apt-get install sip-tester)" >&2; exit 2; }
command -v dumpcap >/dev/null || { echo "needs dumpcap/tshark (apt-get install tshark)" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

port_free() { ! ss -uan | awk '{print $4}' | grep -qx "127.0.0.1:$1"; }
wait_port_free() {
    for _ in $(seq 50); do port_free 5070 && return 0; sleep 0.2; done
    echo "127.0.0.1:5070 stays in use" >&2; exit 1
}

start_relay() {
    [ -x target/release/intertrunk ] || cargo build --release
    wait_port_free
    config=${SETUP_CONFIG:-perf/sip-bench.toml}
    if [ -n "${REALTIME_PRIORITY:-}" ]; then
        sed "s/^\[server\]\$/[server]\nrealtime_priority = $REALTIME_PRIORITY/" "$config" >"$work/relay.toml"
        config=$work/relay.toml
    fi
    RUST_LOG=warn target/release/intertrunk run --config "$config" \
        >"$work/relay.log" 2>&1 &
    sut=$!
    pids+=("$sut")
    for _ in $(seq 50); do
        curl -sf http://127.0.0.1:8070/metrics >/dev/null 2>&1 && break
        sleep 0.1
    done
    kill -0 "$sut" || { cat "$work/relay.log" >&2; exit 1; }
}

# The harness is copied once (it may be read-only where it lives).
copy_peer() { [ -d "$work/peer" ] || cp -r "$peer" "$work/peer"; }

start_kamailio() {
    copy_peer
    mkdir -p "$work/kamailio"
    wait_port_free
    kamailio -DD -E -f "$work/peer/kamailio/proxy.cfg" -Y "$work/kamailio" \
        -P "$work/kamailio/kamailio.pid" -m 512 -M 16 \
        -A "DS_LIST=\"$work/peer/kamailio/dispatcher.list\"" -A KAM_CHILDREN=8 \
        >"$work/kamailio.log" 2>&1 &
    sut=$!
    pids+=("$sut")
    for _ in $(seq 50); do
        port_free 5070 || break
        sleep 0.1
    done
    sleep 0.5
    kill -0 "$sut" || { cat "$work/kamailio.log" >&2; exit 1; }
}

start_bare_forwarder() {
    copy_peer
    gcc -O2 -pthread -o "$work/udpfwd" "$work/peer/src/udpfwd.c"
    wait_port_free
    "$work/udpfwd" -l 127.0.0.1:5070 -o 127.0.0.1:5090 -T 1 >"$work/udpfwd.log" 2>&1 &
    sut=$!
    pids+=("$sut")
    sleep 0.3
    kill -0 "$sut" || { cat "$work/udpfwd.log" >&2; exit 1; }
}

stop_sut() { kill "$sut" 2>/dev/null || true; wait "$sut" 2>/dev/null || true; }

measure() {
label=$1
IFS=, read -ra rate_list <<<"$rates"
for rate in "${rate_list[@]}"; do
    calls=$((rate * secs))
    pcap="$work/setup-$label-$rate.pcap"
    # Only the SIP ports of this topology: the relay's listener and per-worker ports, the two
    # SIPp agents. Snap length covers the headers tshark needs.
    timeout $((secs + 30)) dumpcap -q -i lo -s 1500 -B 64 -w "$pcap" \
        -f "udp and (port 5070 or port 5071 or port 5072 or port 5073 or port 5074)" \
        >/dev/null 2>&1 &
    cap=$!
    pids+=("$cap")
    sleep 1
    timeout $((secs + 30)) sipp -sf tools/sipp/uas.xml -i 127.0.0.1 -p 5090 -nostdin \
        -timeout $((secs + 20))s -m "$calls" >/dev/null 2>&1 &
    uas=$!
    pids+=("$uas")
    sleep 0.3
    timeout $((secs + 30)) sipp -sf tools/sipp/uac.xml -i 127.0.0.1 -p 5091 -s 4930123456 \
        127.0.0.1:5070 -r "$rate" -m "$calls" -d 0 -nostdin -timeout $((secs + 20))s \
        -trace_stat -stf "$work/uac-$label-$rate.csv" >/dev/null 2>&1 || true
    kill "$uas" 2>/dev/null || true
    wait "$uas" 2>/dev/null || true
    sleep 0.5
    kill -INT "$cap" 2>/dev/null || true
    wait "$cap" 2>/dev/null || true
    # Decode every port of this topology as SIP (5072 is AYIYA to tshark by default).
    tshark -r "$pcap" -d udp.port==5070-5074,sip -d udp.port==5090-5091,sip -Y 'sip.Method == "INVITE"' -T fields -E separator=/t \
        -e frame.time_epoch -e udp.srcport -e udp.dstport -e sip.Call-ID \
        >"$work/invites-$label-$rate.tsv" 2>/dev/null || true  # a capture cut short still reads
    python3 - "$work/invites-$label-$rate.tsv" "$rate" "$label" <<'EOF'
import sys
path, rate, label = sys.argv[1], sys.argv[2], sys.argv[3]
first_in, first_out, out_port = {}, {}, {}
for line in open(path):
    f = line.rstrip("\n").split("\t")
    if len(f) < 4:
        continue
    t, sport, dport, cid = float(f[0]), int(f[1]), int(f[2]), f[3]
    if dport == 5070 and sport == 5091:          # INVITE into the relay (first copy only)
        first_in.setdefault(cid, t)
    elif dport == 5090:                          # the relay's INVITE toward the callee
        if cid not in first_out:
            first_out[cid] = t
            out_port[cid] = sport
d = sorted((first_out[c] - first_in[c]) * 1e6 for c in first_in if c in first_out)
if not d:
    print(f"{label} rate {rate}/s: no matched INVITEs")
    sys.exit(0)
def pcts(v):  # sorted v -> "p50 .. us, p90 .. us, p99 .. us"
    return ", ".join(f"p{p} {v[min(len(v) - 1, len(v) * p // 100)]:.0f} us" for p in (50, 90, 99))
print(f"{label} rate {rate}/s: {len(d)} of {len(first_in)} INVITEs matched; added setup latency "
      f"(INVITE in -> INVITE out) {pcts(d)}, max {d[-1]:.0f} us")
# The relay sends each INVITE from the own port of the worker that owns its Call-ID: split by
# it, the worker that received the INVITE (no hand-off) shows against the other one.
ports = sorted({out_port[c] for c in first_in if c in first_out})
for port in ports if len(ports) > 1 else []:
    e = sorted((first_out[c] - first_in[c]) * 1e6 for c in first_in if out_port.get(c) == port)
    print(f"  sent from port {port}: {len(e)} INVITEs, {pcts(e)}")
EOF
done
}

# The whole run holds the bench lock (no other benchmark overlaps it).
exec 9>/tmp/bench.lock
flock 9
start_relay
measure relay
stop_sut
if [ -n "$peer" ]; then
    start_kamailio
    measure kamailio
    stop_sut
    start_bare_forwarder
    measure bare-forwarder
    stop_sut
fi
