#!/bin/sh
# spec_bench.sh: speculative decoding's speed-up at temperature 0 (bench/README.md
# "Speculative decoding"): a target and two ~6x smaller drafts trained on the
# same data, one on the data alone and one distilled from the target
# (distill.teacher), then `llm generate` greedy with and without --draft on a
# few prompts;
# the texts must be equal (exactness) and the decode tokens/s give the
# speed-up. The data: the first 12 MB of bench/data/corpus.txt
# (make_corpus.sh: Debian's documentation; the first 22 MB are the Linux
# kernel's) when it is there, 11.5 MB to train on (half an epoch at these
# settings) and 0.5 MB held out, with a 512-id tokenizer trained on it; else
# configs/tiny.sh's (this repository's docs and sources, ~1M tokens, which
# 1500 steps go over three times).
# Plain and speculative runs alternate for ROUNDS rounds per prompt and the
# best of each is kept (this VM's speed swings between runs). Each draft runs
# in fp32 and in int8 (--draft-quantize int8: a cheaper proposal, the same
# output). Each round's parts are timed too: the target's decode step, its
# pass over K + 1 rows (the verification) and the draft's step
# (bench/spec_parts.c).
#
#   sh bench/spec_bench.sh       # ~45 min on 2 cores, ~40 of them training three models
#   PMIN="0 0.3" sh bench/spec_bench.sh   # also with --draft-p-min 0.3
#   CORPUS= TSTEPS=400 DSTEPS=400 TLR=3e-3 K="2 4" DRAFTQ=fp32 DRAFTS=draft ROUNDS=1 sh bench/spec_bench.sh  # the second run
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/data/spec}
BUILD=build/bench-spec
TSTEPS=${TSTEPS:-1500}      # training steps of the target and of the draft
DSTEPS=${DSTEPS:-1500}
TLR=${TLR:-1.5e-3}          # the target's learning rate (configs/tiny.json's 3e-3 suits d_model <= 192)
TOKENS=${TOKENS:-100}
KS=${K:-2 3 4}
ROUNDS=${ROUNDS:-3}
DRAFTQ=${DRAFTQ:-fp32 int8}  # the draft's weights: fp32, int8, w8a8 (int8 activations too), q4
DT=${DRAFT_THREADS:-1}      # the draft's threads (a 7 MB draft gains nothing from two)
DRAFTS=${DRAFTS:-draft draft-kd}  # trained on the data alone; distilled from the target
PMIN=${PMIN:-0}             # --draft-p-min values (0: always K tokens a round)
# model keys over configs/tiny.json (d_model 128, 4 layers, d_ff 512, vocab 512):
# the target, 10.9M parameters (43 MB in fp32: beyond L2, decode bound by
# memory), and the draft, 1.9M (5.7x smaller)
TARGET=${TARGET-d_model=384 n_layers=6 n_heads=6 d_ff=1536}
DRAFT=${DRAFT-d_model=192 n_layers=4 n_heads=4 d_ff=768}
mkdir -p "$OUT"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit: $(git rev-parse --short HEAD 2>/dev/null || echo ?)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
make CUDA=0 BUILD="$BUILD" "$BUILD/llm" "$BUILD/bench/spec_parts" >"$OUT/make.log" 2>&1 || { cat "$OUT/make.log" >&2; exit 1; }
cp "$BUILD/llm" "$OUT/llm.bin"
LLM="$OUT/llm.bin"
CORPUS=${CORPUS-bench/data/corpus.txt}
if [ -n "$CORPUS" ] && [ -s "$CORPUS" ]; then
    set -- "The driver" "This document describes" "To enable the" "If the device"
    if [ ! -s "$OUT/data/val.bin" ]; then
        mkdir -p "$OUT/data"
        head -c 11500000 "$CORPUS" >"$OUT/data/train.txt"
        head -c 12000000 "$CORPUS" | tail -c 500000 >"$OUT/data/val.txt"
        "$LLM" tokenize train -q --vocab-size 512 --special "<|endoftext|>" -o "$OUT/data/tokenizer.json" "$OUT/data/train.txt"
        for s in train val; do
            "$LLM" tokenize encode -q --tokenizer "$OUT/data/tokenizer.json" --format bin -o "$OUT/data/$s.bin" "$OUT/data/$s.txt"
        done
    fi
else
    echo "data: configs/tiny.sh (no ${CORPUS:-corpus}: sh bench/make_corpus.sh for the corpus)"
    set -- "/* model.c: " "## Checkpoints" "int llm_" "The training loop"
    [ -s "$OUT/data/val.bin" ] || LLM="$LLM" sh configs/tiny.sh "$OUT/data"
fi
D="--set data.train=$OUT/data/train.bin --set data.val=$OUT/data/val.bin --set data.tokenizer=$OUT/data/tokenizer.json"
sets() { for kv in $1; do printf ' --set model.%s' "$kv"; done; }
# shellcheck disable=SC2086,SC2046
[ -s "$OUT/target/final.llm" ] || "$LLM" pretrain configs/tiny.json -q $D --set train.steps="$TSTEPS" \
    --set optim.lr="$TLR" $(sets "$TARGET") --set train.checkpoint_every=0 --set train.eval_every=250 \
    --set train.out_dir="$OUT/target"
# the drafts DRAFTS names that are not there yet: "draft" on the data alone,
# "draft-kd" the same shape distilled from the target on the same data
# (distill.teacher, docs/train.md: its next-token distributions as soft
# targets); any other name must already hold final.llm
for dm in $DRAFTS; do
    [ -s "$OUT/$dm/final.llm" ] && continue
    case $dm in
    draft) kd="" ;;
    draft-kd) kd="--set distill.teacher=$OUT/target/final.llm" ;;
    *) echo "spec_bench: no $OUT/$dm/final.llm" >&2; exit 1 ;;
    esac
    # shellcheck disable=SC2086,SC2046
    "$LLM" pretrain configs/tiny.json -q $D --set train.steps="$DSTEPS" $(sets "$DRAFT") $kd \
        --set train.checkpoint_every=0 --set train.eval_every=250 --set train.out_dir="$OUT/$dm"
done
for m in target $DRAFTS; do
    printf '%s: %s parameters, val loss %s\n' "$m" "$("$LLM" info "$OUT/$m/final.llm" | grep -i 'total' | head -n 1 | awk '{ print $2 }')" \
        "$(tail -n 1 "$OUT/$m/metrics.jsonl" | sed -n 's/.*"val_loss":[[:space:]]*\([0-9.e+-]*\).*/\1/p')"
done
field() { tr -d '\n' <"$1" | sed -n "s/.*\"$2\":[[:space:]]*\([0-9.e+-]*\).*/\1/p"; }
text() { tr -d '\n' <"$1" | sed -n 's/.*"completion":[[:space:]]*\(".*"\),[[:space:]]*"prompt_tokens".*/\1/p'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 > b + 0) ? a : b }'; }
: >"$OUT/results.txt"
for p in "$@"; do
    gen() { "$LLM" generate -m "$OUT/target/final.llm" -p "$p" -t 0 -n "$TOKENS" --no-eot --json "$@"; }
    for dm in $DRAFTS; do for q in $DRAFTQ; do
        qf=""
        [ "$q" = fp32 ] || qf="--draft-quantize $q"
        for k in $KS; do for pm in $PMIN; do
            base="" tps="" same=yes
            for _ in $(seq "$ROUNDS"); do
                gen >"$OUT/plain.json"
                # shellcheck disable=SC2086
                gen --draft "$OUT/$dm/final.llm" --draft-tokens "$k" --draft-threads "$DT" --draft-p-min "$pm" \
                    $qf >"$OUT/spec.json"
                base=$(best "$(field "$OUT/plain.json" decode_tokens_per_s)" "$base")
                tps=$(best "$(field "$OUT/spec.json" decode_tokens_per_s)" "$tps")
                acc=$(field "$OUT/spec.json" acceptance_rate)
                per=$(awk -v a="$(field "$OUT/spec.json" draft_proposed)" -v b="$(field "$OUT/spec.json" speculative_rounds)" \
                    'BEGIN { printf "%.2f", a / b }')
                [ "$(text "$OUT/spec.json")" = "$(text "$OUT/plain.json")" ] || same=no
            done
            echo "RESULT prompt=$(echo "$p" | tr ' ' '_') draft=$dm/$q K=$k pmin=$pm plain_tok_s=$base spec_tok_s=$tps speedup=$(awk "BEGIN{printf \"%.2f\", $tps/$base}") acceptance=$acc proposed_per_round=$per same_text=$same" | tee -a "$OUT/results.txt"
        done; done
    done; done
done
# the parts of a round: target step, target over K + 1 rows, draft step (the
# drafts share one shape, so the first one's costs are every one's)
for q in $DRAFTQ; do
    echo "parts, $q draft:"
    qf=""
    [ "$q" = int8 ] && qf="--draft-int8"
    [ "$q" = w8a8 ] && qf="--draft-w8a8"
    [ "$q" = q4 ] && qf="--draft-q4"
    # shellcheck disable=SC2086
    "$BUILD/bench/spec_parts" "$OUT/target/final.llm" "$OUT/${DRAFTS%% *}/final.llm" $KS --draft-threads "$DT" $qf
done
awk '{ for (i = 1; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] } c = v["draft"] " K=" v["K"] " p_min=" v["pmin"]
       s[c] += v["speedup"]; n[c]++; ac[c] += v["acceptance"] }
     END { for (c in s) printf "%s: mean speed-up %.2fx, mean acceptance %.2f\n", c, s[c] / n[c], ac[c] / n[c] }' "$OUT/results.txt" | sort
echo "load (end): $(cut -d' ' -f1-3 /proc/loadavg)"
