#!/bin/sh
# train_bench.sh: training steps of llm against PyTorch on this machine's CPU,
# side by side, on the two reference configs (README.md "Training step vs
# PyTorch").
#
#   sh bench/train_bench.sh            # STEPS=10 WARMUP=3 REPEATS=2 PYTHON=/usr/bin/python3
#
# One invocation:
#  1. writes the configs bench/data/train/{gpt2,llama}.json: GPT-2 style
#     (V 4096, T 256, C 256, L 4, NH 4, F 1024, learned positions, layernorm,
#     gelu, biases, tied) and Llama style (the same sizes, rope, rmsnorm,
#     swiglu F 688, no biases, untied); batch 8; AdamW lr 3e-4, betas 0.9 /
#     0.95, weight decay 0.1 on matrices; clip 1.0;
#  2. builds bench/train_step (make CUDA=0, its own build folder) and measures
#     the threaded sgemm peak (train_step --peak, a process of its own);
#  3. per config, REPEATS rounds of: PyTorch (bench/torch_train.py) then llm
#     (llm_side below), each WARMUP + STEPS steps, threads = nproc; the best
#     round of each side is kept (the machine may be shared: alternating the
#     two spreads any load over both);
#  4. checks the parameter counts agree, prints the table (tokens/s, ratio,
#     MFU against the measured peak, peak RSS) and writes
#     bench/data/train/results.txt (the RESULT lines) and table.md.
# Needs PyTorch for PYTHON (Debian: apt-get install python3-torch, then
# /usr/bin/python3).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/data/train}
BUILD=build/bench-train
PYTHON=${PYTHON:-/usr/bin/python3}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
REPEATS=${REPEATS:-2}
THREADS=$(nproc)
mkdir -p "$OUT"

cat > "$OUT/gpt2.json" << 'EOF'
{
  "model": {"vocab_size": 4096, "context_length": 256, "d_model": 256, "n_layers": 4,
            "n_heads": 4, "d_ff": 1024, "activation": "gelu", "norm": "layernorm",
            "position": "learned", "bias": true, "tie_embeddings": true, "dropout": 0.0},
  "train": {"batch_size": 8, "clip_grad": 1.0, "seed": 1},
  "optim": {"name": "adamw", "lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8,
            "weight_decay": 0.1}
}
EOF
cat > "$OUT/llama.json" << 'EOF'
{
  "model": {"vocab_size": 4096, "context_length": 256, "d_model": 256, "n_layers": 4,
            "n_heads": 4, "d_ff": 688, "activation": "swiglu", "norm": "rmsnorm",
            "position": "rope", "bias": false, "tie_embeddings": false, "dropout": 0.0},
  "train": {"batch_size": 8, "clip_grad": 1.0, "seed": 1},
  "optim": {"name": "adamw", "lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8,
            "weight_decay": 0.1}
}
EOF

echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
field() { lscpu | sed -n "s/^$1: *//p" | head -n 1; }
echo "machine: $(nproc) cores ($(field 'Model name')), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr)"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset} threads=$THREADS"
if git rev-parse --git-dir > /dev/null 2>&1; then
    dirty=$(git --no-optional-locks status --porcelain -- lib bench 2> /dev/null | head -n 1)
    echo "commit: $(git rev-parse --short HEAD)${dirty:+ (with uncommitted changes in lib/ or bench/)}"
fi
echo "load average (start): $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "(" + torch.__file__ + ")")' 2> /dev/null ||
    { echo "train_bench.sh: no PyTorch for $PYTHON (apt-get install python3-torch)" >&2; exit 1; }

tries=0
until make CUDA=0 BUILD="$BUILD" "$BUILD/bench/train_step" "$BUILD/llm" > "$OUT/make.log" 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 5 ]; then
        cat "$OUT/make.log" >&2
        echo "train_bench.sh: make failed 5 times" >&2
        exit 1
    fi
    echo "make failed (the tree is shared: retrying in 60 s)" >&2
    sleep 60
done
cp "$BUILD/bench/train_step" "$OUT/train_step.bin" # pinned: others may rebuild meanwhile
cp "$BUILD/llm" "$OUT/llm.bin"

# Our side of one measurement: `llm pretrain` itself (bench/llm_pretrain.py:
# the whole trainer on a shard of random tokens), one "RESULT section=train
# impl=llm ..." line. LLM_SIDE=step times the bare model step instead
# (bench/train_step.c: forward, backward, grad norm, AdamW; no trainer).
llm_side() {
    if [ "${LLM_SIDE:-pretrain}" = step ]; then
        "$OUT/train_step.bin" "$1" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" \
            2>> "$OUT/steps.log"
    else
        "$PYTHON" bench/llm_pretrain.py "$OUT/llm.bin" "$1" "$OUT" --steps "$STEPS" --warmup "$WARMUP" \
            --threads "$THREADS" 2>> "$OUT/steps.log"
    fi
}
torch_side() {
    OMP_NUM_THREADS=$THREADS "$PYTHON" bench/torch_train.py "$1" --steps "$STEPS" \
        --warmup "$WARMUP" --threads "$THREADS" 2>> "$OUT/steps.log"
}

: > "$OUT/steps.log"
"$OUT/train_step.bin" --peak --threads "$THREADS" > "$OUT/results.txt"
for cfg in gpt2 llama; do
    r=1
    while [ "$r" -le "$REPEATS" ]; do
        torch_side "$OUT/$cfg.json" | sed "s/^RESULT /RESULT name=$cfg round=$r /" >> "$OUT/results.txt"
        llm_side "$OUT/$cfg.json" | sed "s/^RESULT /RESULT name=$cfg round=$r /" >> "$OUT/results.txt"
        r=$((r + 1))
    done
done
echo "load average (end): $(cut -d' ' -f1-3 /proc/loadavg)"

# The table: best round (highest tokens/s) of each side per config.
awk -v load="$(cut -d' ' -f1-3 /proc/loadavg)" '
function get(k,   i, a) { for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "" }
/section=peak/ { peak = get("gflops"); core = get("openblas_core") }
/section=train/ {
    n = get("name"); s = get("impl"); t = get("tokens_per_s") + 0
    if (t > best[n, s]) { best[n, s] = t; rss[n, s] = get("peak_rss_mb"); ms[n, s] = get("step_ms") }
    par[n, s] = get("params")
    if (s == "llm") fpt[n] = get("train_flops_per_token")
    if (!(n in seen)) { seen[n] = 1; order[++nn] = n }
}
END {
    printf "sgemm peak: %.1f GFLOP/s (threaded cblas_sgemm, OpenBLAS %s kernels)\n\n", peak, core
    print "| config | params (llm = torch) | llm step ms | llm tok/s | PyTorch step ms | PyTorch tok/s | ratio | llm MFU | PyTorch MFU | llm peak RSS MB | PyTorch peak RSS MB |"
    print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    bad = 0
    for (i = 1; i <= nn; i++) {
        n = order[i]
        if (par[n, "llm"] != par[n, "torch"]) bad = 1
        printf "| %s | %s%s | %.1f | %.0f | %.1f | %.0f | %.2fx | %.1f%% | %.1f%% | %.0f | %.0f |\n", n,
            par[n, "llm"], par[n, "llm"] == par[n, "torch"] ? "" : " != " par[n, "torch"],
            ms[n, "llm"], best[n, "llm"], ms[n, "torch"], best[n, "torch"],
            best[n, "llm"] / best[n, "torch"], 100 * best[n, "llm"] * fpt[n] / (peak * 1e9),
            100 * best[n, "torch"] * fpt[n] / (peak * 1e9), rss[n, "llm"], rss[n, "torch"]
    }
    for (i = 1; i <= nn; i++)
        printf "ratio %s: llm %.0f tok/s / PyTorch %.0f tok/s = %.2fx\n", order[i],
            best[order[i], "llm"], best[order[i], "torch"], best[order[i], "llm"] / best[order[i], "torch"]
    if (bad) { print "train_bench.sh: parameter counts differ between llm and PyTorch" > "/dev/stderr"; exit 1 }
}' "$OUT/results.txt" | tee "$OUT/table.md"
echo "logs: $OUT/results.txt (RESULT lines), $OUT/steps.log (every step)"
