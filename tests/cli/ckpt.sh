#!/bin/sh
# ckpt.sh: `llm ckpt`: the summary, --verify and --json of a small checkpoint
# (written by the unit test binary), and one-line errors with exit 1 for bad
# files (2 for usage).
. tests/cli/lib.sh

FIX="$(dirname "$LLM")/tests/test_ckpt"
CK="$T/fix.llm"

# fails DESC PATTERN CMD...: exit 1, one stderr line "llm ckpt: error: ...PATTERN", no stdout.
fails() {
    what=$1 pat=$2; shift 2
    expect "$what: exit 1" 1 "$@"
    one_line "$what: one stderr line"
    has "$T/err" "$what: message" "^llm ckpt: error: .*$pat"
    if [ -s "$T/out" ]; then nok "$what: nothing on stdout" "$(head -c 300 "$T/out")"; else ok "$what: nothing on stdout"; fi
}

# json_ok FILE DESC: FILE is one valid JSON document (where python3 exists).
json_ok() {
    if ! command -v python3 >/dev/null 2>&1; then skip_test "$2: no python3 to parse JSON"; return; fi
    if python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" 2>"$T/pyerr"; then ok "$2"; else
        nok "$2" "$(cat "$T/pyerr")" "$(head -c 600 "$1")"; fi
}

# flip FILE OFFSET: changes the byte at OFFSET (to 255 minus itself, never equal).
flip() {
    v=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\$(printf %o $((255 - v)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

if [ ! -x "$FIX" ]; then
    skip_test "no fixture writer at $FIX (build the unit tests first)"
    exit 0
fi
expect "fixture written" 0 "$FIX" --write-fixture "$CK"

expect "summary" 0 "$LLM" ckpt "$CK"
has "$T/out" "summary: format version" '^format: *llm checkpoint, version 1$'
has "$T/out" "summary: file size" '^size: .*(1[0-9][0-9][0-9] bytes)$'
has "$T/out" "summary: header keys" '^header: *4 keys: format, step, config, note$'
has "$T/out" "summary: totals" '^tensors: *6, 220 elements, 692 B raw'
has "$T/out" "summary: a 2-d bf16 row" '^  layers\.0\.attn\.wq\.weight  *bf16  *\[8, 8\]  *128$'
has "$T/out" "summary: a scalar" '^  scale  *f32  *\[\]  *4$'
has "$T/out" "summary: an empty tensor" '^  empty  *f16  *\[4, 0\]  *0$'
if [ -s "$T/err" ]; then nok "summary: nothing on stderr" "$(head -c 300 "$T/err")"; else ok "summary: nothing on stderr"; fi

expect "--verify" 0 "$LLM" ckpt --verify "$CK"
has "$T/out" "--verify says ok" '^ok: 6 tensors verified$'
has "$T/out" "--verify prints the summary too" '^  tok_emb\.weight  *f32  *\[16, 8\]  *512$'

expect "--json" 0 "$LLM" ckpt --json "$CK"
cp "$T/out" "$T/j.json"
json_ok "$T/j.json" "--json is JSON"
has "$T/j.json" "--json has the full header" '"d_model":'
has "$T/j.json" "--json has the tensors" '"name":.*"train.steps"'
if grep -q '"verified"' "$T/j.json"; then nok "--json without --verify claims nothing"; else ok "--json without --verify claims nothing"; fi
expect "--json --verify" 0 "$LLM" ckpt --json --verify "$CK"
has "$T/out" "--json --verify says verified" '"verified":.*true'

expect "--help" 0 "$LLM" ckpt --help
has "$T/out" "--help shows usage" 'usage: llm ckpt'

fails "missing file" "cannot open '$T/none.llm'" "$LLM" ckpt "$T/none.llm"
fails "a directory" "is a directory" "$LLM" ckpt "$T"
head -c 700 "$CK" >"$T/cut.llm"
fails "truncated file" "cut.llm' is truncated" "$LLM" ckpt "$T/cut.llm"
printf 'hello, this is not a checkpoint\n' >"$T/text.llm"
fails "not a checkpoint" "text.llm' is not an llm checkpoint (bad magic)" "$LLM" ckpt "$T/text.llm"
: >"$T/empty.llm"
fails "empty file" "is empty" "$LLM" ckpt "$T/empty.llm"
cp "$CK" "$T/flip.llm"
flip "$T/flip.llm" 40
fails "flipped byte in the header" "the header is corrupt" "$LLM" ckpt "$T/flip.llm"
cp "$CK" "$T/flip2.llm"
flip "$T/flip2.llm" 400
fails "flipped byte in a tensor, --verify" "tensor 'tok_emb.weight' is corrupt" "$LLM" ckpt --verify --json "$T/flip2.llm"
expect "flipped byte in a tensor: the summary still reads" 0 "$LLM" ckpt "$T/flip2.llm"
expect "flipped byte in a tensor: --verify fails" 1 "$LLM" ckpt --verify "$T/flip2.llm"
has "$T/err" "--verify names the tensor" "^llm ckpt: error: .*flip2.llm': tensor 'tok_emb.weight' is corrupt"
cp "$CK" "$T/flip3.llm"
flip "$T/flip3.llm" $(($(wc -c <"$CK") - 20))
fails "flipped byte in the trailer" "corrupt trailer" "$LLM" ckpt "$T/flip3.llm"

expect "missing argument: exit 2" 2 "$LLM" ckpt
one_line "missing argument: one stderr line"
expect "unknown flag: exit 2" 2 "$LLM" ckpt --verfy "$CK"
one_line "unknown flag: one stderr line"
has "$T/err" "unknown flag: hint" "verify"
expect "stdin: exit 2" 2 "$LLM" ckpt -
one_line "stdin: one stderr line"
expect "two files: exit 2" 2 "$LLM" ckpt "$CK" "$CK"
one_line "two files: one stderr line"
