#!/bin/sh
# run.sh OUT_DIR: the alignment demo of docs/align.md on single-digit addition:
# pretrain a tiny model on the task's text, SFT it to answer as
# " <answer>N</answer>", DPO on right (chosen) vs wrong (rejected) answers,
# GRPO with the exact verifier; after each stage `llm eval --task exact` on
# held-out prompts. Prints one JSON object with every stage's numbers.
# About 15 s on 2 cores. LLM = the binary (default ./llm).
set -eu
LLM=${LLM:-$(pwd)/llm}
CFG=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: configs/align/run.sh OUT_DIR}
mkdir -p "$OUT"
cd "$OUT"
q=-q
synth() { "$LLM" data synth --task add --digits 1 "$@" $q; }
synth --n 3000 --seed 1 --format text -o pre.txt
synth --n 1000 --seed 2 --format sft -o sft.jsonl
synth --n 1000 --seed 3 --format dpo -o dpo.jsonl
synth --n 400 --seed 6 --format dpo -o dpo.val.jsonl
synth --n 1000 --seed 4 --format jsonl -o grpo.jsonl
synth --n 200 --seed 5 --format jsonl -o eval.jsonl
# the tokenizer sees the answer format too, so "<answer>" is a few tokens
"$LLM" tokenize train --vocab-size 300 --special '<|endoftext|>' -o tokenizer.json pre.txt sft.jsonl $q
"$LLM" tokenize encode --tokenizer tokenizer.json --format bin -o pre.bin pre.txt $q
"$LLM" pretrain "$CFG/pretrain.json" $q
"$LLM" sft "$CFG/sft.json" $q
"$LLM" dpo "$CFG/dpo.json" $q
"$LLM" grpo "$CFG/grpo.json" $q

# accuracy STAGE EXTRA...: exact match on eval.jsonl (held out from every
# training set), samples in STAGE.samples.jsonl
accuracy() {
    s=$1; shift
    "$LLM" eval -m "$s/final.llm" --task exact --data eval.jsonl -n 10 "$@" --log-samples "$s.samples.jsonl" \
        -o "$s.eval.json" $q
    sed -n 's/.*"exact_match":[[:space:]]*\([0-9.eE+-]*\).*/\1/p' "$s.eval.json" | head -n 1
}
# the fraction of answers in the taught format
formatted() { n=$(wc -l <"$1.samples.jsonl"); k=$(grep -c '<answer>[^<]*</answer>' "$1.samples.jsonl" || true); \
              awk "BEGIN { print $k / $n }"; }
tags="--extract regex --regex <answer>(.*?)</answer>"
# shellcheck disable=SC2086
{
    base=$(accuracy pretrain --stop "
") ; base_fmt=$(formatted pretrain)
    sft=$(accuracy sft $tags); sft_fmt=$(formatted sft)
    dpo=$(accuracy dpo $tags); dpo_fmt=$(formatted dpo)
    grpo=$(accuracy grpo $tags); grpo_fmt=$(formatted grpo)
}
last() { grep -o "\"$2\":[-0-9.eE+]*" "$1" | tail -n 1 | cut -d: -f2; }
first() { grep -o "\"$2\":[-0-9.eE+]*" "$1" | head -n 1 | cut -d: -f2; }
cat <<J
{"pretrain": {"accuracy": $base, "format": $base_fmt},
 "sft": {"accuracy": $sft, "format": $sft_fmt},
 "dpo": {"accuracy": $dpo, "format": $dpo_fmt, "val_preference_accuracy": $(last dpo/metrics.jsonl 'val_rewards/accuracies')},
 "grpo": {"accuracy": $grpo, "format": $grpo_fmt, "reward_first": $(first grpo/metrics.jsonl reward),
          "reward_last": $(last grpo/metrics.jsonl reward), "val_reward_last": $(last grpo/metrics.jsonl val_reward)}}
J
