#!/bin/sh
# demo.sh LLM: runs what `llm` can do today on built-in data, end to end.
# It grows with each capability until it goes from raw text to generated text.
set -eu
LLM=${1:-./llm}
out=${DEMO_DIR:-build/demo}
mkdir -p "$out"

echo "== the binary, its backends and the devices it finds"
"$LLM" --version

echo
echo "== the effective config of configs/tiny.json, with a command-line override"
"$LLM" config configs/tiny.json --set train.steps=20 --set optim.lr=1e-3 >"$out/config.json"
head -n 12 "$out/config.json"
echo "   ... (full effective config in $out/config.json)"

echo
echo "== a bad config is refused with one line naming the key"
"$LLM" config configs/tiny.json --set model.d_model=-5 || true

echo
echo "demo done: tokenizer, training and generation arrive with the next issues."
