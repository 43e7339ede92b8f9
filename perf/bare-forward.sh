#!/usr/bin/env bash
# CPU per forwarded packet: the io_uring driver with a trivial forwarding core
# (examples/driver_forward.rs, 1,000 sockets) against the peer harness's bare
# recvmmsg/sendmmsg forwarder (udpfwd, one socket), side by side in one run, under the same
# paced blaster (udpblast) at fixed rates, 172-byte packets unless --size.
#
#   perf/bare-forward.sh [--rates 20000,50000] [--secs 10] [--pairs 500] [--min-wait-us 300]
#                        [--gso 8] [--burst 32] [--size 172]
#
# --burst sets the blaster's packets per sendmmsg (udpblast -B): 1 paces every datagram on its
# own, as SIP arrives at a proxy (each message from a different call), so every datagram may
# cost the forwarder a wake-up. --size sets the datagram size (e.g. 800 for SIP).
#
# --gso N sends with tools/gso-blast (UDP GSO bursts of N packets per stream) instead of
# udpblast, with the sender and the sink pinned to CPU 1, away from the forwarders on CPU 0:
# the rates where a forwarder saturates, which the sendmmsg blaster cannot reach here.
#
# Needs the peer harness sources $PEER_SRC/{udpfwd,udpblast}.c (copied to a temp dir and built with gcc,
# never committed). CPU is se.sum_exec_runtime summed over /proc/PID/task/*/sched.
# Loopback only; every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=20000,50000
SECS=10
PAIRS=500
MIN_WAIT=300
GSO=
BURST=32
SIZE=172
PEER_SRC=${PEER_SRC:?set PEER_SRC to the peer harness src directory (udpfwd.c, udpblast.c)}
while [ $# -gt 0 ]; do
    case "$1" in
        --rates) RATES=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --pairs) PAIRS=$2; shift 2 ;;
        --min-wait-us) MIN_WAIT=$2; shift 2 ;;
        --gso) GSO=$2; shift 2 ;;
        --burst) BURST=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$SECS" -le 20 ] || { echo "--secs must be <= 20" >&2; exit 2; }

IP=127.0.0.1
FIRST_PORT=20000
SINK_PORT=51010
BLAST_SRC=51000
UDPFWD_PORT=51100

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

cp "$PEER_SRC/udpfwd.c" "$PEER_SRC/udpblast.c" "$TMP/"
gcc -O2 -pthread -o "$TMP/udpfwd" "$TMP/udpfwd.c"
gcc -O2 -o "$TMP/udpblast" "$TMP/udpblast.c"
cargo build --release --example driver_forward --example gso-blast -q
DRIVER=target/release/examples/driver_forward
if [ -n "$GSO" ]; then
    SEND=(taskset -c 1 target/release/examples/gso-blast send -g "$GSO")
    SINK=(taskset -c 1 "$TMP/udpblast" recv)
else
    SEND=("$TMP/udpblast" send -B "$BURST")
    SINK=("$TMP/udpblast" recv)
fi

cpu_ns() { # summed run time of every thread of $1, in ns (%.0f: mawk's %d stops at 2^31)
    awk '/se.sum_exec_runtime/ { split($3, a, "."); s += a[1] * 1000000 + substr(a[2] "000000", 1, 6) } END { printf "%.0f\n", s }' /proc/"$1"/task/*/sched
}

wait_ready() { # file
    for _ in $(seq 100); do grep -q ready "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "forwarder did not start: $(cat "$1")" >&2; exit 1
}

# One trial: forwarder pid $1, destination ports spec $2, rate $3. Prints "sent received cpu_ns".
trial() {
    local pid=$1 spec=$2 rate=$3
    "${SINK[@]}" -b "$IP:$SINK_PORT" -t $((SECS + 5)) >"$TMP/sink.out" &
    local sink=$!; PIDS+=("$sink")
    sleep 0.3
    local c0; c0=$(cpu_ns "$pid")
    "${SEND[@]}" -b "$IP:$BLAST_SRC" -d "$IP" -P "$spec" -r "$rate" -t "$SECS" -s "$SIZE" >"$TMP/blast.out"
    sleep 0.5
    local c1; c1=$(cpu_ns "$pid")
    kill -INT "$sink" 2>/dev/null || true; wait "$sink" || true
    local sent recv
    sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$TMP/blast.out")
    recv=$(sed -n 's/.*received=\([0-9]*\).*/\1/p' "$TMP/sink.out")
    echo "$sent ${recv:-0} $((c1 - c0))"
}

report() { # label rate sent received cpu_ns
    awk -v l="$1" -v r="$2" -v s="$3" -v g="$4" -v c="$5" 'BEGIN {
        printf "%-34s %7d pps  sent %8d  loss %6.3f%%  CPU %6.1f%%  %6.2f us/packet\n",
               l, r, s, (s - g) * 100 / s, c / 1e7 / (s / r), c / 1e3 / s }'
}

PORTS=$(seq $FIRST_PORT $((FIRST_PORT + 2 * PAIRS - 1)) | paste -sd,)
echo "$PORTS" | tr , '\n' >"$TMP/ports.txt"

echo "# $(date -u +%F) $(nproc) vCPU, kernel $(uname -r); ${SECS}s trials, ${SIZE}-byte packets; sender: ${SEND[*]}"
declare -A RES
for rate in ${RATES//,/ }; do
    # The driver: 1 worker pinned to CPU 0, $PAIRS pairs = $((2 * PAIRS)) sockets.
    "$DRIVER" --ip $IP --first-port $FIRST_PORT --pairs "$PAIRS" --sink "$IP:$SINK_PORT" \
        --min-wait-us "$MIN_WAIT" --workers 1 >"$TMP/driver.out" 2>&1 &
    local_pid=$!; PIDS+=("$local_pid")
    wait_ready "$TMP/driver.out"
    read -r s g c < <(trial "$local_pid" "@$TMP/ports.txt" "$rate")
    kill -TERM "$local_pid"; wait "$local_pid" || true
    report "driver ($((2 * PAIRS)) sockets, min-wait ${MIN_WAIT}us)" "$rate" "$s" "$g" "$c"
    tail -1 "$TMP/driver.out"
    RES[driver_$rate]=$(awk -v c="$c" -v s="$s" 'BEGIN { print c / 1e3 / s }')

    # The bare recvmmsg/sendmmsg forwarder, pinned to CPU 0, one socket.
    taskset -c 0 "$TMP/udpfwd" -l "$IP:$UDPFWD_PORT" -o "$IP:$SINK_PORT" -T 1 >"$TMP/udpfwd.out" 2>&1 &
    local_pid=$!; PIDS+=("$local_pid")
    wait_ready "$TMP/udpfwd.out"
    read -r s g c < <(trial "$local_pid" "$UDPFWD_PORT" "$rate")
    kill -INT "$local_pid"; wait "$local_pid" || true
    report "udpfwd (recvmmsg, 1 socket)" "$rate" "$s" "$g" "$c"
    RES[udpfwd_$rate]=$(awk -v c="$c" -v s="$s" 'BEGIN { print c / 1e3 / s }')
done
for rate in ${RATES//,/ }; do
    awk -v r="$rate" -v d="${RES[driver_$rate]}" -v u="${RES[udpfwd_$rate]}" \
        'BEGIN { printf "ratio driver/udpfwd at %d pps: %.2f\n", r, d / u }'
done
