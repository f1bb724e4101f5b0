#!/bin/sh
# nn_bench.sh: the CPU backend's ops and whole training steps against the
# machine's sgemm peak (bench/nn_bench.c; README.md "Neural-network ops (CPU)").
#
#   sh bench/nn_bench.sh [nn_bench options: --threads N, --sections LIST, --quick, --no-large-model]
#
# Builds with `make CUDA=0 bench` (retried: others rebuild the tree too), pins
# the binary in bench/data/nn/, runs it, and prints the date, the machine, the
# commit, the load average before and after, and the markdown tables. Logs:
# bench/data/nn/main.log (tables + RESULT lines), bench/data/nn/results.txt
# (the RESULT lines only).
#
# When OPENBLAS_CORETYPE is set in the environment (it forces OpenBLAS's
# kernels), a second, short run with it unset (OpenBLAS detects the CPU)
# measures the sgemm peak and the two small models again, so both are on
# record: NN_BENCH_AUTO=0 skips it.
set -eu
cd "$(dirname "$0")/.."
OUT=bench/data/nn
mkdir -p "$OUT"

echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
field() { lscpu | sed -n "s/^$1: *//p" | head -n 1; }
echo "machine: $(nproc) cores ($(field 'Model name'), family $(field 'CPU family') model $(field 'Model'), $(field 'Thread(s) per core') thread(s) per core), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr)"
flags=$(lscpu | sed -n 's/^Flags: *//p' | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512_bf16)$' | tr '\n' ' ')
echo "cpu flags (of interest): $flags"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
if command -v git > /dev/null 2>&1 && git rev-parse --git-dir > /dev/null 2>&1; then
    dirty=$(git --no-optional-locks status --porcelain -- lib 2> /dev/null | head -n 1)
    echo "commit: $(git rev-parse --short HEAD)${dirty:+ (with uncommitted changes in lib/)}"
fi
echo "load average (start): $(cut -d' ' -f1-3 /proc/loadavg)"

tries=0
until make CUDA=0 bench > "$OUT/make.log" 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 5 ]; then
        cat "$OUT/make.log" >&2
        echo "nn_bench.sh: make CUDA=0 bench failed 5 times" >&2
        exit 1
    fi
    echo "make CUDA=0 bench failed (the tree is shared: retrying in 60 s)" >&2
    sleep 60
done
# pin the binary: others may rebuild build/cpu while this runs
cp build/cpu/bench/nn_bench "$OUT/nn_bench.bin"

t0=$(date +%s)
"$OUT/nn_bench.bin" "$@" > "$OUT/main.log"
grep -v '^RESULT' "$OUT/main.log"
grep '^RESULT' "$OUT/main.log" > "$OUT/results.txt"

if [ -n "${OPENBLAS_CORETYPE:-}" ] && [ "${NN_BENCH_AUTO:-1}" != 0 ]; then
    echo
    echo "## Again with OPENBLAS_CORETYPE unset (OpenBLAS picks its kernels for this CPU)"
    env -u OPENBLAS_CORETYPE "$OUT/nn_bench.bin" --sections sgemm,models --no-large-model \
        > "$OUT/auto.log"
    grep -v '^RESULT' "$OUT/auto.log"
    grep '^RESULT' "$OUT/auto.log" | sed 's/^RESULT /RESULT run=auto /' >> "$OUT/results.txt"
fi

echo
echo "load average (end): $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wall: $(($(date +%s) - t0)) s; logs in $OUT/"
