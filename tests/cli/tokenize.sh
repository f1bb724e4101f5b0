# tokenize.sh: `llm tokenize train|encode|decode` end to end on small data.
. tests/cli/lib.sh

# A small corpus: prose, code-ish lines, digits, non-ASCII, a special token.
{
    i=0
    while [ $i -lt 40 ]; do
        echo "The quick brown fox jumps over the lazy dog, line $i. It's here: 3.14159!"
        echo "    for (int k = 0; k < $i; k++) sum += k * 2;  // café naïve 東京"
        echo "<|endoftext|>"
        i=$((i + 1))
    done
} >"$T/corpus.txt"
printf '{"id":1,"text":"hello world"}\n{"id":2,"text":"the lazy dog\\nsleeps"}\n' >"$T/docs.jsonl"

expect "train writes a tokenizer" 0 "$LLM" tokenize train --vocab-size 400 --special "<|endoftext|>" -o "$T/tok.json" "$T/corpus.txt"
has "$T/tok.json" "tokenizer.json is a HF BPE model" '"type":[[:space:]]*"BPE"'
has "$T/tok.json" "the special token is an added token" '"content":[[:space:]]*"<|endoftext|>"'
expect "train from stdin gives the same file" 0 sh -c "\"$LLM\" tokenize train --vocab-size 400 --special '<|endoftext|>' -o \"$T/tok2.json\" - <\"$T/corpus.txt\""
if cmp -s "$T/tok.json" "$T/tok2.json"; then ok "training is deterministic (file and stdin agree)"; else nok "training is deterministic (file and stdin agree)"; fi
expect "train with 1 thread gives the same file" 0 "$LLM" tokenize train -j 1 --vocab-size 400 --special "<|endoftext|>" -o "$T/tok3.json" "$T/corpus.txt"
if cmp -s "$T/tok.json" "$T/tok3.json"; then ok "1 and N threads train the same tokenizer"; else nok "1 and N threads train the same tokenizer"; fi

expect "encode to ids" 0 "$LLM" tokenize encode --tokenizer "$T/tok.json" -o "$T/ids.txt" "$T/corpus.txt"
if grep -Eq '^[0-9]+( [0-9]+)*$' "$T/ids.txt" && [ "$(wc -l <"$T/ids.txt")" -eq 1 ]; then ok "ids are one line of decimal ids"; else nok "ids are one line of decimal ids" "$(head -c 200 "$T/ids.txt")"; fi
if tr ' ' '\n' <"$T/ids.txt" | grep -qx 0; then ok "the special token text encodes to its id"; else nok "the special token text encodes to its id"; fi
expect "decode ids" 0 "$LLM" tokenize decode --tokenizer "$T/tok.json" -o "$T/back.txt" "$T/ids.txt"
if cmp -s "$T/back.txt" "$T/corpus.txt"; then ok "decode(encode(x)) == x"; else nok "decode(encode(x)) == x"; fi

head -c 3000 /dev/urandom >"$T/random.bin" 2>/dev/null || dd if=/dev/urandom of="$T/random.bin" bs=3000 count=1 2>/dev/null
"$LLM" tokenize encode --tokenizer "$T/tok.json" "$T/random.bin" | "$LLM" tokenize decode --tokenizer "$T/tok.json" >"$T/random.back"
if cmp -s "$T/random.bin" "$T/random.back"; then ok "random bytes (invalid UTF-8) round-trip through a pipe"; else nok "random bytes (invalid UTF-8) round-trip through a pipe"; fi

expect "encode to a token shard" 0 "$LLM" tokenize encode --tokenizer "$T/tok.json" --format bin -o "$T/c.bin" "$T/corpus.txt"
n_ids=$(wc -w <"$T/ids.txt")
size=$(wc -c <"$T/c.bin")
if [ "$size" -eq $((32 + 2 * n_ids)) ]; then ok "shard is a 32-byte header + uint16 ids"; else nok "shard is a 32-byte header + uint16 ids" "size $size, ids $n_ids"; fi
if [ "$(head -c 8 "$T/c.bin")" = "LLMSHARD" ]; then ok "shard starts with its magic"; else nok "shard starts with its magic"; fi
expect "decode a shard" 0 "$LLM" tokenize decode --tokenizer "$T/tok.json" -o "$T/back2.txt" "$T/c.bin"
if cmp -s "$T/back2.txt" "$T/corpus.txt"; then ok "a shard decodes to the original"; else nok "a shard decodes to the original"; fi

expect "encode JSONL documents" 0 "$LLM" tokenize encode --tokenizer "$T/tok.json" --field text -o "$T/docs.ids" "$T/docs.jsonl"
if [ "$(wc -l <"$T/docs.ids")" -eq 2 ] && awk '{ if ($NF != 0) exit 1 }' "$T/docs.ids"; then ok "one line per document, each ending with the end-of-text id"; else nok "one line per document, each ending with the end-of-text id" "$(cat "$T/docs.ids")"; fi
printf 'hello world<|endoftext|>the lazy dog\nsleeps<|endoftext|>' >"$T/docs.want"
"$LLM" tokenize decode --tokenizer "$T/tok.json" "$T/docs.ids" >"$T/docs.back"
if cmp -s "$T/docs.want" "$T/docs.back"; then ok "JSONL documents decode with their separators"; else nok "JSONL documents decode with their separators"; fi

# Bad input: one line, exit 1 (2 for usage), nothing written.
expect "missing tokenizer file exits 1" 1 "$LLM" tokenize encode --tokenizer "$T/nope.json" -o "$T/x.ids" "$T/corpus.txt"
one_line "missing tokenizer file: one line"
if [ ! -e "$T/x.ids" ]; then ok "no output file after a failure"; else nok "no output file after a failure"; fi
echo '{"model":{"type":"WordPiece","vocab":{}}}' >"$T/wp.json"
expect "a WordPiece tokenizer is refused" 1 "$LLM" tokenize encode --tokenizer "$T/wp.json" "$T/corpus.txt"
has "$T/err" "the refusal names the model type" "model type 'WordPiece' is not supported"
expect "vocab smaller than 256 + specials exits 1" 1 "$LLM" tokenize train --vocab-size 256 --special "<|endoftext|>" -o "$T/small.json" "$T/corpus.txt"
one_line "too-small vocab: one line"
if [ ! -e "$T/small.json" ]; then ok "no tokenizer written after a failure"; else nok "no tokenizer written after a failure"; fi
expect "train without -o is a usage error" 2 "$LLM" tokenize train --vocab-size 300 "$T/corpus.txt"
expect "train of a missing file exits 1" 1 "$LLM" tokenize train --vocab-size 300 -o "$T/m.json" "$T/missing.txt"
one_line "missing input: one line"
expect "a bin shard to stdout is a usage error" 2 "$LLM" tokenize encode --tokenizer "$T/tok.json" --format bin "$T/corpus.txt"
echo "1 2 x 3" >"$T/bad.ids"
expect "decode of non-numeric ids exits 1" 1 "$LLM" tokenize decode --tokenizer "$T/tok.json" "$T/bad.ids"
has "$T/err" "the decode error names the position" "after id #2"
echo "1 99999 3" >"$T/bad2.ids"
expect "decode of an id outside the vocabulary exits 1" 1 "$LLM" tokenize decode --tokenizer "$T/tok.json" -o "$T/bad2.out" "$T/bad2.ids"
if [ ! -e "$T/bad2.out" ]; then ok "no partial decode output"; else nok "no partial decode output"; fi
expect "unknown subcommand exits 2" 2 "$LLM" tokenize frob
expect "tokenize with nothing exits 2" 2 "$LLM" tokenize
expect "JSONL without the field exits 1" 1 "$LLM" tokenize encode --tokenizer "$T/tok.json" --field body "$T/docs.jsonl"
has "$T/err" "the JSONL error names file and line" "docs.jsonl:1: no string field \"body\""
expect "train --help exits 0" 0 "$LLM" tokenize train --help
has "$T/out" "train --help shows usage" "usage: llm tokenize train"
