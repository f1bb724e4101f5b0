#!/bin/sh
# config.sh: `llm config`: the effective config of a file, --set, one-line
# errors with exit 1 (2 for usage), and --docs equal to docs/config.md.
. tests/cli/lib.sh

# json_ok FILE DESC: FILE is one valid JSON document (checked with the
# Python json module where there is one).
json_ok() {
    if ! command -v python3 >/dev/null 2>&1; then skip_test "$2: no python3 to parse JSON"; return; fi
    if python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" 2>"$T/pyerr"; then ok "$2"; else
        nok "$2" "$(cat "$T/pyerr")" "$(head -c 600 "$1")"; fi
}

# fails DESC PATTERN CMD...: exit 1, one stderr line "llm config: error: ...PATTERN", no stdout.
fails() {
    what=$1 pat=$2; shift 2 # not $desc: expect sets that
    expect "$what: exit 1" 1 "$@"
    one_line "$what: one stderr line"
    has "$T/err" "$what: message" "^llm config: error: .*$pat"
    if [ -s "$T/out" ]; then nok "$what: nothing on stdout" "$(head -c 300 "$T/out")"; else ok "$what: nothing on stdout"; fi
}

expect "config of configs/tiny.json" 0 "$LLM" config configs/tiny.json
cp "$T/out" "$T/tiny.json"
json_ok "$T/tiny.json" "output is JSON"
has "$T/tiny.json" "has model.d_model" '"d_model": 128'
has "$T/tiny.json" "has a default not in the file" '"precondition_frequency": 10'
has "$T/tiny.json" "has the file's value over the default" '"out_dir": "runs/tiny"'
has "$T/tiny.json" "has optim.betas" '"betas": \[0.9, 0.95\]'

# the printed config is itself a valid config that prints the same
expect "output loads back" 0 "$LLM" config "$T/tiny.json"
if cmp -s "$T/out" "$T/tiny.json"; then ok "output is a fixed point"; else nok "output is a fixed point"; fi

expect "no file: defaults" 0 "$LLM" config
has "$T/out" "defaults have out_dir" '"out_dir": "runs/default"'
expect "--dry-run is accepted" 0 "$LLM" config configs/tiny.json --dry-run
if cmp -s "$T/out" "$T/tiny.json"; then ok "--dry-run prints the same"; else nok "--dry-run prints the same"; fi

expect "--set" 0 "$LLM" config configs/tiny.json --set optim.lr=1e-3 --set model.activation=swiglu \
    --set data.train=foo.bin --set 'optim.betas=[0.8,0.9]' --set=model.bias=false
has "$T/out" "--set number" '"lr": 0.001'
has "$T/out" "--set enum, bare word" '"activation": "swiglu"'
has "$T/out" "--set string, bare word" '"train": "foo.bin"'
has "$T/out" "--set array" '"betas": \[0.8, 0.9\]'
has "$T/out" "--set bool" '"bias": false'
expect "stdin as the file" 0 sh -c "echo '{\"train\": {\"steps\": 7}, \"schedule\": {\"warmup\": 0}}' | \"$LLM\" config -"
has "$T/out" "stdin value" '"steps": 7'

printf '{"model": {"d_modle": 128}}\n' >"$T/key.json"
fails "unknown key" "key.json: model.d_modle: unknown key (did you mean 'd_model'?)" "$LLM" config "$T/key.json"
printf '{"optim": {"lr": "abc"}}\n' >"$T/type.json"
fails "wrong type" 'type.json: optim.lr: expected a number > 0, got "abc"' "$LLM" config "$T/type.json"
printf '{"model": {"d_model": 3.5}}\n' >"$T/int.json"
fails "not an integer" "int.json: model.d_model: expected an integer >= 1, got 3.5" "$LLM" config "$T/int.json"
printf '{"model": {"dropout": 1.5}}\n' >"$T/range.json"
fails "out of range" "range.json: model.dropout: expected a number in \[0, 1), got 1.5" "$LLM" config "$T/range.json"
printf '{"model": {"activation": "tanh"}}\n' >"$T/enum.json"
fails "bad choice" 'model.activation: expected one of relu, gelu, swiglu, relu2, got "tanh"' "$LLM" config "$T/enum.json"
printf '{\n  "model": {\n    "d_model": 256\n    "n_heads": 4\n  }\n}\n' >"$T/syntax.json"
fails "invalid JSON" "syntax.json: invalid JSON at line 4, column 5" "$LLM" config "$T/syntax.json"
printf '{"model": {"d_model": 250}}\n' >"$T/rule.json"
fails "rule across keys" "model.n_heads: expected a divisor of model.d_model (250), got 4" "$LLM" config "$T/rule.json"
fails "bad --set value" '--set optim.lr: expected a number > 0, got "abc"' "$LLM" config --set optim.lr=abc
fails "unknown --set key" "--set optim.lrr: unknown key (did you mean 'optim.lr'?)" "$LLM" config --set optim.lrr=1
fails "error about stdin" "<stdin>: expected an object at the top level, got \\[\\]" sh -c "echo '[]' | \"\$LLM\" config -"
fails "missing file" "no-such.json" "$LLM" config "$T/no-such.json"

expect "unknown flag: exit 2" 2 "$LLM" config --bogus
one_line "unknown flag: one stderr line"
expect "two files: exit 2" 2 "$LLM" config configs/tiny.json configs/tiny.json
expect "--docs with a file: exit 2" 2 "$LLM" config --docs configs/tiny.json
one_line "--docs with a file: one stderr line"
expect "--help" 0 "$LLM" config --help
has "$T/out" "--help shows --set" "--set PATH=VALUE"

expect "--docs" 0 "$LLM" config --docs
if cmp -s "$T/out" docs/config.md; then ok "--docs equals docs/config.md"; else
    nok "--docs equals docs/config.md" "run: ./llm config --docs > docs/config.md" "$(diff docs/config.md "$T/out" | head -20)"; fi
echo "1..$n"
