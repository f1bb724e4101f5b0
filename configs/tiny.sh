#!/bin/sh
# tiny.sh [OUT_DIR]: the data of configs/tiny.json from this repository's own
# text (its docs and C sources, one JSONL document per file): a byte-level BPE
# tokenizer of 512 ids, then train.bin and val.bin token shards with an
# <|endoftext|> (id 0) after each document. Every 10th file is held out for
# validation. Deterministic: the same checkout gives the same shards.
#   sh configs/tiny.sh && llm pretrain configs/tiny.json
set -eu
LLM=${LLM:-./llm}
out=${1:-data/tiny}
mkdir -p "$out"

# JSON string of a file's text: backslashes, quotes and tabs escaped, lines
# joined with \n (the sources hold no other control characters).
jsonl() {
    for f in "$@"; do
        printf '{"id": "%s", "text": "' "$f"
        sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' -e 's/\r//g' "$f" | awk '{ printf "%s\\n", $0 }'
        printf '"}\n'
    done
}
files=$(ls README.md docs/*.md lib/*/*.h lib/*/*.c lib/*/*/*.c cmd/*.c 2>/dev/null | LC_ALL=C sort)
train="" val="" i=0
for f in $files; do
    i=$((i + 1))
    if [ $((i % 10)) -eq 0 ]; then val="$val $f"; else train="$train $f"; fi
done
# shellcheck disable=SC2086
jsonl $train >"$out/train.jsonl"
# shellcheck disable=SC2086
jsonl $val >"$out/val.jsonl"
"$LLM" tokenize train -q --vocab-size 512 --special "<|endoftext|>" --field text -o "$out/tokenizer.json" "$out/train.jsonl"
for s in train val; do
    "$LLM" tokenize encode -q --tokenizer "$out/tokenizer.json" --field text --format bin -o "$out/$s.bin" "$out/$s.jsonl"
done
echo "$out: $(( ($(wc -c <"$out/train.bin") - 32) / 2 )) train tokens, $(( ($(wc -c <"$out/val.bin") - 32) / 2 )) val tokens" >&2
