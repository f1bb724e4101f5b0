#!/bin/sh
# generate_bench.sh: `llm generate` decode speed at batch 1 (and batched
# throughput) on the Llama shapes of llama2.c's 15M and 110M models, fp32 and
# int8, against the memory-bandwidth roofline measured in the same run
# (bench/README.md "Generation").
#
#   sh bench/generate_bench.sh        # TOKENS=200 THREADS=$(nproc)
#
# Models: random weights (one training step of `llm pretrain`, so they are
# real checkpoints), dim 288 / 768, hidden 768 / 2048, 6 / 12 layers and
# heads, vocab 32000, context 256 / 1024, rmsnorm, swiglu, rope, untied head.
# Decode speed does not depend on the weights' values; --no-eot keeps every
# run at TOKENS tokens. Roofline: bytes read per decoded token = every weight
# matrix (4 bytes each in fp32, 1 + 4/32 in int8) + one embedding row + the
# KV cache at the mean position, over the read bandwidth of a 1 GiB buffer
# with all threads (bench/decode_bench --bandwidth).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/data/generate}
BUILD=build/bench-generate
TOKENS=${TOKENS:-200}
THREADS=${THREADS:-$(nproc)}
mkdir -p "$OUT"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -n 1)), $(uname -sr)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo ?)  load (start): $(cut -d' ' -f1-3 /proc/loadavg)"
tries=0
until make CUDA=0 BUILD="$BUILD" "$BUILD/llm" "$BUILD/bench/decode_bench" >"$OUT/make.log" 2>&1; do
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

BW=$("$BUILD/bench/decode_bench" --bandwidth --threads "$THREADS" | sed -n 's/.*gbs=\([0-9.]*\).*/\1/p')
echo "read bandwidth (1 GiB, $THREADS threads): $BW GB/s"
: >"$OUT/results.txt"
run() { # name dim layers ctx quant batch
    q=""; [ "$5" = int8 ] && q="--quantize int8"
    prompts=""
    if [ "$6" -gt 1 ]; then
        i=0; : >"$OUT/prompts.jsonl"
        while [ $i -lt "$6" ]; do echo '{"prompt": "The model"}' >>"$OUT/prompts.jsonl"; i=$((i + 1)); done
        # shellcheck disable=SC2086
        "$LLM" generate -m "$OUT/$1/final.llm" --prompts "$OUT/prompts.jsonl" --batch "$6" -t 0 -n "$TOKENS" \
            --no-eot --threads "$THREADS" $q --json 2>/dev/null | tail -n 1 >"$OUT/t.json"
    else
        # shellcheck disable=SC2086
        "$LLM" generate -m "$OUT/$1/final.llm" -p "The model" -t 0 -n "$TOKENS" --no-eot --threads "$THREADS" \
            $q --json 2>/dev/null | tr -d '\n' >"$OUT/t.json"
    fi
    tps=$(sed -n 's/.*"decode_tokens_per_s":[[:space:]]*\([0-9.e+]*\).*/\1/p' "$OUT/t.json")
    awk -v name="$1" -v d="$2" -v L="$3" -v ctx="$4" -v q="$5" -v b="$6" -v tps="$tps" -v bw="$BW" -v T="$TOKENS" '
    BEGIN {
        V = 32000; F = (d == 288) ? 768 : 2048
        w = L * (4 * d * d + 3 * d * F) + V * d            # weight matrices read per step (untied head)
        bpw = (q == "int8") ? 1 + 4 / 32 : 4
        kv = L * 2 * d * 4 * (T / 2 + 3)                   # the KV cache read at the mean position
        bytes = w * bpw + d * 4 + kv
        roof = bw * 1e9 / bytes
        printf "RESULT name=%s quant=%s batch=%d decode_tok_s=%.1f roofline_tok_s=%.1f pct=%.1f\n", name, q, b, tps, roof, 100 * tps / roof
    }' >>"$OUT/results.txt"
    tail -n 1 "$OUT/results.txt"
}
for m in "15M 288 6 256" "110M 768 12 1024"; do
    # shellcheck disable=SC2086
    set -- $m
    run "$1" "$2" "$3" "$4" fp32 1
    run "$1" "$2" "$3" "$4" int8 1
    for b in 4 16; do run "$1" "$2" "$3" "$4" fp32 $b; done
done
echo "load (end): $(cut -d' ' -f1-3 /proc/loadavg)"
