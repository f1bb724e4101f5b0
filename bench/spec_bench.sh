#!/bin/sh
# spec_bench.sh: speculative decoding's speed-up at temperature 0 (bench/README.md
# "Speculative decoding"): a target and a ~6x smaller draft trained on the same
# data (configs/tiny.sh: this repository's docs and C sources), then
# `llm generate` greedy with and without --draft on a few prompts; the texts
# must be equal (exactness) and the decode tokens/s give the speed-up.
# Each round's parts are timed too: the target's decode step, its pass over
# K + 1 rows (the verification) and the draft's step (bench/spec_parts.c).
#
#   sh bench/spec_bench.sh       # STEPS=400 TOKENS=100 K="2 4"
#   TARGET="d_model=256 n_layers=6 d_ff=1024" DRAFT="" sh bench/spec_bench.sh   # the first run's pair
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/data/spec}
BUILD=build/bench-spec
STEPS=${STEPS:-400}
TOKENS=${TOKENS:-100}
KS=${K:-2 4}
# model keys over configs/tiny.json (d_model 128, 4 layers, d_ff 512, vocab 512):
# the target, 10.8M parameters (43 MB in fp32: beyond L2, decode bound by
# memory), and the draft, 1.9M (5.8x smaller)
TARGET=${TARGET-d_model=384 n_layers=6 n_heads=6 d_ff=1536}
DRAFT=${DRAFT-d_model=192 n_layers=4 n_heads=4 d_ff=768}
mkdir -p "$OUT"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit: $(git rev-parse --short HEAD 2>/dev/null || echo ?)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
make CUDA=0 BUILD="$BUILD" "$BUILD/llm" "$BUILD/bench/spec_parts" >"$OUT/make.log" 2>&1 || { cat "$OUT/make.log" >&2; exit 1; }
cp "$BUILD/llm" "$OUT/llm.bin"
LLM="$OUT/llm.bin"
[ -s "$OUT/data/val.bin" ] || LLM="$LLM" sh configs/tiny.sh "$OUT/data"
D="--set data.train=$OUT/data/train.bin --set data.val=$OUT/data/val.bin --set data.tokenizer=$OUT/data/tokenizer.json"
sets() { for kv in $1; do printf ' --set model.%s' "$kv"; done; }
# shellcheck disable=SC2086,SC2046
[ -s "$OUT/target/final.llm" ] || "$LLM" pretrain configs/tiny.json -q $D --set train.steps="$STEPS" \
    $(sets "$TARGET") --set train.checkpoint_every=0 --set train.out_dir="$OUT/target"
# shellcheck disable=SC2086,SC2046
[ -s "$OUT/draft/final.llm" ] || "$LLM" pretrain configs/tiny.json -q $D --set train.steps="$STEPS" \
    $(sets "$DRAFT") --set train.checkpoint_every=0 --set train.out_dir="$OUT/draft"
"$LLM" info "$OUT/target/final.llm" | grep -i 'total' | head -n 1 | sed 's/^/target: /'
"$LLM" info "$OUT/draft/final.llm" | grep -i 'total' | head -n 1 | sed 's/^/draft:  /'
: >"$OUT/results.txt"
for p in "/* model.c: " "## Checkpoints" "int llm_" "The training loop"; do
    "$LLM" generate -m "$OUT/target/final.llm" -p "$p" -t 0 -n "$TOKENS" --no-eot --json >"$OUT/plain.json"
    base=$(tr -d '\n' <"$OUT/plain.json" | sed -n 's/.*"decode_tokens_per_s":[[:space:]]*\([0-9.e+]*\).*/\1/p')
    for k in $KS; do
        "$LLM" generate -m "$OUT/target/final.llm" -p "$p" -t 0 -n "$TOKENS" --no-eot --json --draft "$OUT/draft/final.llm" \
            --draft-tokens "$k" >"$OUT/spec.json"
        tr -d '\n' <"$OUT/spec.json" >"$OUT/spec1.json"
        tps=$(sed -n 's/.*"decode_tokens_per_s":[[:space:]]*\([0-9.e+]*\).*/\1/p' "$OUT/spec1.json")
        acc=$(sed -n 's/.*"acceptance_rate":[[:space:]]*\([0-9.e+-]*\).*/\1/p' "$OUT/spec1.json")
        same=no
        if [ "$(sed -n 's/.*"completion":[[:space:]]*\(".*"\),[[:space:]]*"prompt_tokens".*/\1/p' "$OUT/spec1.json")" = \
             "$(tr -d '\n' <"$OUT/plain.json" | sed -n 's/.*"completion":[[:space:]]*\(".*"\),[[:space:]]*"prompt_tokens".*/\1/p')" ]; then
            same=yes
        fi
        echo "RESULT prompt=$(echo "$p" | tr ' ' '_') K=$k plain_tok_s=$base spec_tok_s=$tps speedup=$(awk "BEGIN{printf \"%.2f\", $tps/$base}") acceptance=$acc same_text=$same" | tee -a "$OUT/results.txt"
    done
done
# the parts of a round: target step, target over K + 1 rows, draft step
# shellcheck disable=SC2086
"$BUILD/bench/spec_parts" "$OUT/target/final.llm" "$OUT/draft/final.llm" $KS
awk '{ for (i = 1; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] } s[v["K"]] += v["speedup"]; n[v["K"]]++; ac[v["K"]] += v["acceptance"] }
     END { for (k in s) printf "K=%s: mean speed-up %.2fx, mean acceptance %.2f\n", k, s[k] / n[k], ac[k] / n[k] }' "$OUT/results.txt"
echo "load (end): $(cut -d' ' -f1-3 /proc/loadavg)"
