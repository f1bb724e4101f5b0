#!/bin/sh
# demo.sh LLM: runs what `llm` can do today on built-in data (this repository's
# own documentation as the corpus), end to end. It grows with each capability
# until it goes from raw text to generated text.
set -eu
LLM=${1:-./llm}
out=${DEMO_DIR:-build/demo}
mkdir -p "$out"

echo "== the binary, its backends and the devices it finds"
"$LLM" --version

echo
echo "== train a byte-level BPE tokenizer (vocab 1024) on the docs of this repository"
cat README.md docs/*.md >"$out/corpus.txt"
"$LLM" tokenize train --vocab-size 1024 --special "<|endoftext|>" -o "$out/tokenizer.json" "$out/corpus.txt"

echo
echo "== encode the corpus to a token shard and decode it back"
"$LLM" tokenize encode --tokenizer "$out/tokenizer.json" --format bin -o "$out/train.bin" "$out/corpus.txt"
"$LLM" tokenize decode --tokenizer "$out/tokenizer.json" -o "$out/decoded.txt" "$out/train.bin"
cmp "$out/corpus.txt" "$out/decoded.txt"
bytes=$(wc -c <"$out/corpus.txt")
tokens=$(( ($(wc -c <"$out/train.bin") - 32) / 2 ))
echo "$bytes bytes -> $tokens tokens ($(awk "BEGIN{printf \"%.2f\", $bytes/$tokens}") bytes/token); decode gives the exact bytes back"
printf 'Hello, world! Tokenizers turn text into ids.' >"$out/hello.txt"
printf '"%s" -> ' "$(cat "$out/hello.txt")"
"$LLM" tokenize encode --tokenizer "$out/tokenizer.json" "$out/hello.txt"

echo
echo "== the effective config of configs/tiny.json, with command-line overrides"
"$LLM" config configs/tiny.json --set train.steps=20 --set schedule.warmup=5 --set optim.lr=1e-3 >"$out/config.json"
head -n 8 "$out/config.json"
echo "   ... (full effective config in $out/config.json)"

echo
echo "== the GPT-2-style reference model of bench/: parameters, FLOPs per token, memory"
"$LLM" info configs/gpt2-ref.json | head -n 20

echo
echo "== a bad config is refused with one line naming the key"
"$LLM" config configs/tiny.json --set model.d_model=-5 || true

echo
echo "== pretrain configs/tiny.json on this repository's text (docs and C sources; ~2 minutes on 2 cores)"
LLM="$LLM" sh configs/tiny.sh "$out/tiny"
"$LLM" pretrain configs/tiny.json --set data.train="$out/tiny/train.bin" --set data.val="$out/tiny/val.bin" \
    --set data.tokenizer="$out/tiny/tokenizer.json" --set train.out_dir="$out/runs/tiny" --json >"$out/summary.json"
cat "$out/summary.json"
echo "   run folder $out/runs/tiny: metrics.jsonl, loss.svg, checkpoints; run the same command again to resume"

echo
echo "== generate with it: greedy, then sampled with a seed (the same seed gives the same text)"
"$LLM" generate -m "$out/runs/tiny/final.llm" -p "/* model.c: " -t 0 -n 40
echo
"$LLM" generate -m "$out/runs/tiny/final.llm" -p "## Checkpoints" -t 0.8 --top-k 40 --seed 1 -n 40 --json

echo
echo "demo done."
