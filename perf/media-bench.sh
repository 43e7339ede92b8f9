#!/usr/bin/env bash
# Media relay vs rtpengine vs the bare forwarder, side by side, 172-byte RTP, one direction
# (caller -> relay -> callee), one stream per call, loopback. Each timed trial holds
# flock /tmp/bench.lock and lasts <= 15 s.
#
#   perf/media-bench.sh [--calls 500] [--rates 20000,50000] [--high 100000,150000,200000] [--secs 8]
#
# Needs the peer comparison harness in $PEER (copied to a temp dir, never committed): udpblast is built there
# with gcc; rtpengine and udpfwd run through its bench.py. Every process is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=500; RATES=20000,50000; HIGH=100000,150000,200000; SECS=8
PEER=${PEER:?set PEER to the peer comparison harness (Kamailio/rtpengine/udpfwd) directory}
while [ $# -gt 0 ]; do
    case "$1" in
        --calls) CALLS=$2; shift 2 ;;
        --rates) RATES=$2; shift 2 ;;
        --high) HIGH=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
T=$(mktemp -d)
cp -r "$PEER" "$T/peer-bench"
gcc -O2 -o "$T/udpblast" "$T/peer-bench/src/udpblast.c"
cargo build --release --bin intertrunk --example media-load
ML=target/release/examples/media-load
echo "== intertrunk, $CALLS calls, rates $RATES"
timeout 150 "$ML" --relay target/release/intertrunk --udpblast "$T/udpblast" \
    --calls "$CALLS" --rates "$RATES" --secs "$SECS" | tee "$T/ours.jsonl"
echo "== intertrunk, $CALLS calls, high rates $HIGH"
timeout 150 "$ML" --relay target/release/intertrunk --udpblast "$T/udpblast" \
    --calls "$CALLS" --rates "$HIGH" --secs 5 | tee "$T/ours-high.jsonl"
echo "== rtpengine userspace, $CALLS sessions"
(cd "$T/peer-bench" && timeout 150 ./bench-rtpengine-raw.sh --sessions "$CALLS" --rates "$RATES" \
    --reps 1 --secs "$SECS" --no-search --budget-s 90)
echo "== bare recvmmsg/sendmmsg forwarder"
(cd "$T/peer-bench" && timeout 120 ./bench-bare-fwd.sh --rates "$RATES" --reps 1 --secs "$SECS" \
    --no-search --budget-s 60)
echo "results: $T"
