#!/bin/sh
# Instructions per parse + request rewrite of the ~900-byte INVITE (tests/data/invite_900.sip),
# counted by callgrind: independent of machine noise, so later changes compare against it.
# Two runs with different iteration counts; the difference divided by the extra iterations
# removes process start-up.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --example wire_iterations
bin=target/release/examples/wire_iterations
out=perf/out
mkdir -p "$out"
count() {
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.wire.$1${2:-}" "$bin" "$1" ${2:-} 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
small=1000
large=21000
a=$(count $small)
b=$(count $large)
echo "instructions: $small iterations: $a, $large iterations: $b"
both=$(( (b - a) / (large - small) ))
echo "instructions per parse+rewrite: $both"
pa=$(count $small parse)
pb=$(count $large parse)
parse=$(( (pb - pa) / (large - small) ))
echo "instructions per parse alone: $parse (parse+rewrite = $(( both * 100 / parse ))% of parse alone)"
