#!/bin/sh
# decode_bench.sh: the decode matmul (linear_rows) against the memory-bandwidth
# roofline at llama2.c's stories15M / stories110M shapes (bench/decode_bench.c;
# README.md "Decode matmul (linear_rows) against the bandwidth roofline").
#
#   sh bench/decode_bench.sh [decode_bench options: --threads N, --quick]
#
# Builds build/cpu/bench/decode_bench (BUILD=dir to build elsewhere; make is
# retried: others rebuild the tree too), pins the binary in bench/data/decode/,
# runs it, and prints the date, the machine, the commit, the load average
# before and after, and the tables. Writes bench/data/decode/results.txt (all
# of it: header, tables, RESULT lines) and bench/data/decode/make.log.
set -eu
cd "$(dirname "$0")/.."
OUT=bench/data/decode
BUILD=${BUILD:-build/cpu}
mkdir -p "$OUT"

tries=0
until make CUDA=0 BUILD="$BUILD" "$BUILD/bench/decode_bench" > "$OUT/make.log" 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 5 ]; then
        cat "$OUT/make.log" >&2
        echo "decode_bench.sh: make failed 5 times" >&2
        exit 1
    fi
    echo "make $BUILD/bench/decode_bench failed (the tree is shared: retrying in 30 s)" >&2
    sleep 30
done
# pin the binary: others may rebuild $BUILD while this runs
cp "$BUILD/bench/decode_bench" "$OUT/decode_bench.bin"

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    field() { lscpu | sed -n "s/^$1: *//p" | head -n 1; }
    echo "machine: $(nproc) cores ($(field 'Model name'), family $(field 'CPU family') model $(field 'Model')), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr)"
    echo "transparent hugepages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2> /dev/null || echo unknown)"
    echo "OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
    if command -v git > /dev/null 2>&1 && git rev-parse --git-dir > /dev/null 2>&1; then
        dirty=$(git --no-optional-locks status --porcelain -- lib/nn bench/decode_bench.c 2> /dev/null | head -n 1)
        echo "commit: $(git rev-parse --short HEAD)${dirty:+ (with uncommitted changes in lib/nn or bench/decode_bench.c)}"
    fi
    echo "load average (start): $(cut -d' ' -f1-3 /proc/loadavg)"
    t0=$(date +%s)
    "$OUT/decode_bench.bin" "$@"
    echo
    echo "load average (end): $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "wall: $(($(date +%s) - t0)) s"
} > "$OUT/results.txt"
grep -v '^RESULT' "$OUT/results.txt"
echo "results: $OUT/results.txt"
