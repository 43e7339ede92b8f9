#!/usr/bin/env bash
# Media relay vs rtpengine vs the bare forwarder, side by side, 172-byte RTP, one direction
# (caller -> relay -> callee), one stream per call, loopback. Each timed trial holds
# flock /tmp/bench.lock and lasts <= 15 s.
#
#   perf/media-bench.sh [--calls 500] [--rates 20000,50000] [--high 100000,150000,200000] [--secs 8]
#                       [--saturation 100000,150000,200000 [--saturation-only]]
#
# --saturation adds, for the relay and for rtpengine, trials under tools/gso-blast (UDP GSO
# bursts of 8 packets per stream; the receiver still gets separate 172-byte datagrams): the
# rates where each saturates, which the sendmmsg blaster cannot offer on a small box.
#
# Needs the peer comparison harness in $PEER (copied to a temp dir, never committed): udpblast is built there
# with gcc; rtpengine and udpfwd run through its bench.py. Every process is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=500; RATES=20000,50000; HIGH=100000,150000,200000; SECS=8; SAT=; SAT_ONLY=
PEER=${PEER:?set PEER to the peer comparison harness (Kamailio/rtpengine/udpfwd) directory}
while [ $# -gt 0 ]; do
    case "$1" in
        --calls) CALLS=$2; shift 2 ;;
        --rates) RATES=$2; shift 2 ;;
        --high) HIGH=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --saturation) SAT=$2; shift 2 ;;
        --saturation-only) SAT_ONLY=1; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
T=$(mktemp -d)
cp -r "$PEER" "$T/peer-bench"
gcc -O2 -o "$T/udpblast" "$T/peer-bench/src/udpblast.c"
cargo build --release --bin intertrunk --example media-load --example gso-blast
ML=target/release/examples/media-load
GSO=target/release/examples/gso-blast
# media-load against the relay: TIMEOUT_S then media-load's own arguments.
relay_trials() {
    timeout "$1" "$ML" --relay target/release/intertrunk --udpblast "$T/udpblast" --calls "$CALLS" "${@:2}"
}
if [ -z "$SAT_ONLY" ]; then
    echo "== intertrunk, $CALLS calls, rates $RATES"
    relay_trials 150 --rates "$RATES" --secs "$SECS" | tee "$T/ours.jsonl"
    echo "== intertrunk, $CALLS calls, high rates $HIGH"
    relay_trials 150 --rates "$HIGH" --secs 5 | tee "$T/ours-high.jsonl"
    echo "== rtpengine userspace, $CALLS sessions"
    (cd "$T/peer-bench" && timeout 150 ./bench-rtpengine-raw.sh --sessions "$CALLS" --rates "$RATES" \
        --reps 1 --secs "$SECS" --no-search --budget-s 90)
    echo "== bare recvmmsg/sendmmsg forwarder"
    (cd "$T/peer-bench" && timeout 120 ./bench-bare-fwd.sh --rates "$RATES" --reps 1 --secs "$SECS" \
        --no-search --budget-s 60)
fi
if [ -n "$SAT" ]; then
    echo "== intertrunk, $CALLS calls, gso-blast -g 8, saturation rates $SAT"
    relay_trials 200 --gso-blast "$GSO" --gso 8 --rates "$SAT" --secs 5 | tee "$T/ours-sat.jsonl"
    echo "== rtpengine userspace, $CALLS sessions, the same sender"
    (
        cd "$T/peer-bench"
        ./install.sh --check
        # The harness runs build/udpblast for both ends: keep its sink, swap its sender.
        mv build/udpblast build/udpblast-sendmmsg
        printf '#!/bin/sh\nif [ "$1" = send ]; then shift; exec "%s" send -g 8 "$@"; fi\nexec "%s" "$@"\n' \
            "$(realpath "$OLDPWD/$GSO")" "$PWD/build/udpblast-sendmmsg" >build/udpblast
        chmod +x build/udpblast
        timeout 200 python3 bench.py rtp-raw --sessions "$CALLS" --rates "$SAT" --reps 1 --secs 5 \
            --no-search --budget-s 150
    )
fi
echo "results: $T"
