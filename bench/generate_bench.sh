#!/bin/sh
# generate_bench.sh: `llm generate` decode speed at batch 1 (and batched
# throughput) on the Llama shapes of llama2.c's 15M and 110M models, fp32 and
# int8 (weights only, and W8A8: int8 activations too) and Q4, against the
# memory-bandwidth roofline measured in the same run
# (bench/README.md "Generation").
#
#   sh bench/generate_bench.sh        # TOKENS=200 THREADS=$(nproc)
#
# Models: random weights (one training step of `llm pretrain`, so they are
# real checkpoints), dim 288 / 768, hidden 768 / 2048, 6 / 12 layers and
# heads, vocab 32000, context 256 / 1024, rmsnorm, swiglu, rope, untied head.
# Decode speed does not depend on the weights' values; --no-eot keeps every
# run at TOKENS tokens. Roofline: bytes read per decoded token = every weight
# matrix (4 bytes each in fp32, 1 + 4/32 in int8, 0.5 + 4/32 in Q4) + one
# embedding row + the KV cache at the mean position, over the read bandwidth
# of a 1 GiB buffer with all threads (bench/decode_bench --bandwidth).
#
# LLAMA2C=DIR (a llama2.c checkout holding run.c) adds llama2.c side by side:
# DIR/run.c built with cc -Ofast -march=native -fopenmp, each shape written in
# run.c's format by bench/l2c_export (random weights, untied classifier whose
# BOS row is zero so greedy decoding never stops early), then per shape
# ROUNDS (5) rounds alternating `llm generate` fp32 batch 1 and `run MODEL -t
# 0 -n TOKENS` (OMP_NUM_THREADS=THREADS), best of each reported with their
# ratio. Two rooflines for these rows:
#  - pct: against the best 50 ms read of the whole run (measured again before
#    each round; the least flattering bound);
#  - pct_sustained_median: each program's run against the mean rate of
#    SUSTAIN (2) seconds of back-to-back reads of the 1 GiB buffer taken just
#    before and just after it (the higher of the two), the median over the
#    rounds. A decode run's tok/s is a mean over about as many seconds, so
#    this compares like with like: on this VM the memory bandwidth swings by
#    2x between minutes and by 5-10% between a read's best 50 ms and its mean
#    over 2 s, and a run compared with a best sample taken minutes earlier
#    measures the VM as much as the program.
# Both time TOKENS - 1 one-position forward passes with the classifier: ours
# the decode steps after the prompt's prefill, run.c every position after its
# first (it counts its prompt positions too, each a full forward).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/data/generate}
BUILD=build/bench-generate
TOKENS=${TOKENS:-200}
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-5}
SUSTAIN=${SUSTAIN:-2}
LLAMA2C=${LLAMA2C:-}
mkdir -p "$OUT"
if [ -n "$LLAMA2C" ] && [ ! -f "$LLAMA2C/run.c" ]; then
    echo "generate_bench.sh: error: LLAMA2C=$LLAMA2C holds no run.c" >&2; exit 1
fi
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -n 1)), $(uname -sr)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo ?)  load (start): $(cut -d' ' -f1-3 /proc/loadavg)"
tries=0
l2c_export=""; [ -n "$LLAMA2C" ] && l2c_export="$BUILD/bench/l2c_export"
# shellcheck disable=SC2086
until make CUDA=0 BUILD="$BUILD" "$BUILD/llm" "$BUILD/bench/decode_bench" $l2c_export >"$OUT/make.log" 2>&1; do
    tries=$((tries + 1)); [ "$tries" -lt 5 ] || { cat "$OUT/make.log" >&2; exit 1; }
    sleep 30
done
cp "$BUILD/llm" "$OUT/llm.bin"
LLM="$OUT/llm.bin"
cat README.md docs/*.md >"$OUT/corpus.txt"
[ -s "$OUT/tok.json" ] || "$LLM" tokenize train -q --vocab-size 512 --special '<|endoftext|>' -o "$OUT/tok.json" "$OUT/corpus.txt"
[ -s "$OUT/data.bin" ] || "$LLM" tokenize encode -q --tokenizer "$OUT/tok.json" --format bin -o "$OUT/data.bin" "$OUT/corpus.txt"

model() { # name dim hidden layers ctx
    [ -s "$OUT/$1/final.llm" ] && return 0
    "$LLM" pretrain configs/tiny.json -q --set data.train="$OUT/data.bin" --set data.val= \
        --set data.tokenizer="$OUT/tok.json" --set data.eot=-1 --set model.vocab_size=32000 \
        --set model.d_model="$2" --set model.d_ff="$3" --set model.n_layers="$4" --set model.n_heads="$4" \
        --set model.context_length="$5" --set model.norm=rmsnorm --set model.activation=swiglu \
        --set model.position=rope --set model.bias=false --set model.tie_embeddings=false \
        --set train.batch_size=1 --set train.grad_accum=1 --set train.steps=1 --set schedule.warmup=0 \
        --set train.checkpoint_every=0 --set train.out_dir="$OUT/$1"
}
model 15M 288 768 6 256
model 110M 768 2048 12 1024

if [ -n "$LLAMA2C" ]; then
    cc -Ofast -march=native -fopenmp "$LLAMA2C/run.c" -lm -o "$OUT/l2c_run" 2>"$OUT/l2c_cc.log" ||
        { cat "$OUT/l2c_cc.log" >&2; exit 1; }
    echo "llama2.c: $LLAMA2C/run.c (sha256 $(sha256sum "$LLAMA2C/run.c" | cut -c1-12)), $(cc --version | head -n 1), -Ofast -march=native -fopenmp"
    l2c_model() { # name dim hidden layers ctx: run.c's checkpoint (and the tokenizer) from bench/l2c_export
        [ -s "$OUT/$1/l2c.bin" ] && [ -s "$OUT/l2c_tok.bin" ] && return 0
        "$BUILD/bench/l2c_export" --dim "$2" --hidden "$3" --layers "$4" --heads "$4" --vocab 32000 \
            --seq-len "$5" --seed 1 -o "$OUT/$1/l2c.bin" --tokenizer "$OUT/l2c_tok.bin"
    }
    l2c_model 15M 288 768 6 256
    l2c_model 110M 768 2048 12 1024
fi

bandwidth() { "$BUILD/bench/decode_bench" --bandwidth --threads "$THREADS" | sed -n 's/.*gbs=\([0-9.]*\).*/\1/p'; }
sustained() { # the mean read rate over SUSTAIN seconds of back-to-back reads
    "$BUILD/bench/decode_bench" --bandwidth --sustained "$SUSTAIN" --threads "$THREADS" |
        sed -n 's/.*sustained_gbs=\([0-9.]*\).*/\1/p'
}
BW=$(bandwidth)
echo "read bandwidth (1 GiB, $THREADS threads): $BW GB/s"
: >"$OUT/results.txt"
ours() { # name quant batch: prints `llm generate`'s decode tokens/s (all sequences)
    q=""; [ "$2" = fp32 ] || q="--quantize $2"
    if [ "$3" -gt 1 ]; then
        i=0; : >"$OUT/prompts.jsonl"
        while [ $i -lt "$3" ]; do echo '{"prompt": "The model"}' >>"$OUT/prompts.jsonl"; i=$((i + 1)); done
        # shellcheck disable=SC2086
        "$LLM" generate -m "$OUT/$1/final.llm" --prompts "$OUT/prompts.jsonl" --batch "$3" -t 0 -n "$TOKENS" \
            --no-eot --threads "$THREADS" $q --json 2>/dev/null | tail -n 1 >"$OUT/t.json"
    else
        # shellcheck disable=SC2086
        "$LLM" generate -m "$OUT/$1/final.llm" -p "The model" -t 0 -n "$TOKENS" --no-eot --threads "$THREADS" \
            $q --json 2>/dev/null | tr -d '\n' >"$OUT/t.json"
    fi
    sed -n 's/.*"decode_tokens_per_s":[[:space:]]*\([0-9.e+]*\).*/\1/p' "$OUT/t.json"
}
bytes_tok() { # dim layers quant: bytes read per decoded token (the roofline's numerator)
    awk -v d="$1" -v L="$2" -v q="$3" -v T="$TOKENS" 'BEGIN {
        V = 32000; F = (d == 288) ? 768 : 2048
        w = L * (4 * d * d + 3 * d * F) + V * d            # weight matrices read per step (untied head)
        bpw = (q == "fp32") ? 4 : (q == "q4") ? 0.5 + 4 / 32 : 1 + 4 / 32
        kv = L * 2 * d * 4 * (T / 2 + 3)                   # the KV cache read at the mean position
        printf "%.0f\n", w * bpw + d * 4 + kv
    }'
}
result() { # name dim layers quant batch tok/s [impl]: appends a RESULT row against the roofline
    awk -v name="$1" -v bytes="$(bytes_tok "$2" "$3" "$4")" -v q="$4" -v b="$5" -v tps="$6" -v impl="${7:-}" -v bw="$BW" '
    BEGIN {
        roof = bw * 1e9 / bytes
        printf "RESULT name=%s%s quant=%s batch=%d decode_tok_s=%.1f roofline_tok_s=%.1f pct=%.1f%s\n", name,
            impl == "" ? "" : " impl=" impl, q, b, tps, roof, 100 * tps / roof, impl == "" ? "" : " bw_gbs=" bw
    }' >>"$OUT/results.txt"
    tail -n 1 "$OUT/results.txt"
}
run() { # name dim layers quant batch
    result "$1" "$2" "$3" "$4" "$5" "$(ours "$1" "$4" "$5")"
}
l2c() { # name: prints run.c's "achieved tok/s" (greedy, TOKENS positions after a short prompt)
    OMP_NUM_THREADS=$THREADS "$OUT/l2c_run" "$OUT/$1/l2c.bin" -z "$OUT/l2c_tok.bin" -t 0 -n "$TOKENS" \
        -i "The model" >/dev/null 2>"$OUT/l2c.log" || { cat "$OUT/l2c.log" >&2; return 1; }
    sed -n 's/^achieved tok\/s: *\([0-9.]*\).*/\1/p' "$OUT/l2c.log"
}
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
side_by_side() { # name dim layers: ROUNDS alternated rounds, best of each, their ratio
    best_o=0; best_l=0; r=1; rounds="$OUT/rounds_$1.txt"; : >"$rounds"
    bytes=$(bytes_tok "$2" "$3" fp32)
    while [ "$r" -le "$ROUNDS" ]; do
        bw=$(bandwidth); BW=$(max "$BW" "$bw")
        s0=$(sustained); o=$(ours "$1" fp32 1); s1=$(sustained); l=$(l2c "$1"); s2=$(sustained)
        if [ -z "$o" ] || [ -z "$l" ] || [ -z "$s0" ] || [ -z "$s1" ] || [ -z "$s2" ]; then
            echo "generate_bench.sh: error: round $r of $1 gave no tok/s or bandwidth" >&2; exit 1
        fi
        awk -v r="$r" -v n="$1" -v o="$o" -v l="$l" -v load="$(cut -d' ' -f1 /proc/loadavg)" -v bw="$bw" \
            -v s0="$s0" -v s1="$s1" -v s2="$s2" -v bytes="$bytes" -v f="$rounds" 'BEGIN {
            so = s0 > s1 ? s0 : s1; sl = s1 > s2 ? s1 : s2
            po = 100 * o * bytes / (so * 1e9); pl = 100 * l * bytes / (sl * 1e9)
            printf "round %d %s fp32 batch 1: llm %.1f tok/s (%.1f%% of the sustained read %.1f GB/s), llama2.c %.1f tok/s (%.1f%% of %.1f GB/s); best read %.1f GB/s, load %s\n", r, n, o, po, so, l, pl, sl, bw, load
            printf "%.2f %.2f\n", po, pl >>f
        }'
        best_o=$(max "$best_o" "$o"); best_l=$(max "$best_l" "$l")
        r=$((r + 1))
    done
    result "$1" "$2" "$3" fp32 1 "$best_o" llm
    result "$1" "$2" "$3" fp32 1 "$best_l" llama2.c
    # the median round against the sustained read around it
    for c in 1 2; do sort -n -k "$c" "$rounds" | awk -v c="$c" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'; done |
        { read -r mo; read -r ml
          echo "RESULT name=$1 impl=llm quant=fp32 batch=1 pct_sustained_median=$mo rounds=$ROUNDS" >>"$OUT/results.txt"
          echo "RESULT name=$1 impl=llama2.c quant=fp32 batch=1 pct_sustained_median=$ml rounds=$ROUNDS" >>"$OUT/results.txt"; }
    tail -n 2 "$OUT/results.txt"
    awk -v name="$1" -v o="$best_o" -v l="$best_l" \
        'BEGIN { printf "RESULT name=%s llm_over_llama2c=%.2f\n", name, o / l }' >>"$OUT/results.txt"
    tail -n 1 "$OUT/results.txt"
}
for m in "15M 288 6" "110M 768 12"; do
    # shellcheck disable=SC2086
    set -- $m
    run "$1" "$2" "$3" fp32 1
    run "$1" "$2" "$3" int8 1
    run "$1" "$2" "$3" w8a8 1
    run "$1" "$2" "$3" q4 1
    for b in 4 16 64; do run "$1" "$2" "$3" fp32 $b; done
    if [ -n "$LLAMA2C" ]; then side_by_side "$1" "$2" "$3"; fi
done
[ -n "$LLAMA2C" ] || echo "llama2.c: not measured (set LLAMA2C=path/to/llama2.c with run.c)"
echo "load (end): $(cut -d' ' -f1-3 /proc/loadavg)"
