#!/bin/sh
# info.sh: `llm info`: the report of a config and of a checkpoint, --json,
# --sweep (attention share falling as d_model grows), and one-line errors
# with exit 1 (2 for usage).
. tests/cli/lib.sh

FIX="$(dirname "$LLM")/tests/test_ckpt"       # a small checkpoint (config: d_model 8, n_layers 1)
PARAMS="$(dirname "$LLM")/tests/test_params"  # the default (= tiny) model, with or without its config

# fails DESC PATTERN CODE CMD...: exit CODE, one stderr line "llm info: error: ...PATTERN", no stdout.
fails() {
    what=$1 pat=$2 code=$3; shift 3
    expect "$what: exit $code" "$code" "$@"
    one_line "$what: one stderr line"
    has "$T/err" "$what: message" "^llm info: error: .*$pat"
    if [ -s "$T/out" ]; then nok "$what: nothing on stdout" "$(head -c 300 "$T/out")"; else ok "$what: nothing on stdout"; fi
}

# json FILE EXPR DESC: FILE parses as JSON and the python expression on d is true.
json() {
    if ! command -v python3 >/dev/null 2>&1; then skip_test "$3: no python3 to parse JSON"; return; fi
    if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$1" "$2" 2>"$T/pyerr"; then ok "$3"; else nok "$3" "$2" "$(cat "$T/pyerr")" "$(head -c 600 "$1")"; fi
}

# the gpt2-ref config: 4,273,664 parameters (tok 4096*256 + pos 256*256 + 4 blocks + final norm)
expect "tiny: exit 0" 0 "$LLM" info configs/gpt2-ref.json
has "$T/out" "tiny: total parameters" "total *4,273,664"
has "$T/out" "tiny: embedding" "embedding (tok + pos) *1,114,112"
has "$T/out" "tiny: FLOPs per token" "attention scores (QK^T, AV)"
has "$T/out" "tiny: memory table" "adamw state"
has "$T/out" "tiny: compute-optimal tokens" "compute-optimal (Chinchilla, 20 tokens/parameter): 85.5M tokens"
[ -s "$T/err" ] && nok "tiny: nothing on stderr" "$(head -c 300 "$T/err")" || ok "tiny: nothing on stderr"

# --set and --batch: GPT-2 small is the known 124,439,808
expect "gpt-2 small via --set: exit 0" 0 "$LLM" info configs/gpt2-ref.json --set model.vocab_size=50257 \
    --set model.context_length=1024 --set model.d_model=768 --set model.n_layers=12 --set model.n_heads=12 \
    --set model.d_ff=3072 --batch 4
has "$T/out" "gpt-2 small: 124,439,808 parameters" "total *124,439,808"
has "$T/out" "--batch shows in the memory table" "batch 4, seq 1024"

expect "--json: exit 0" 0 "$LLM" info configs/gpt2-ref.json --json
json "$T/out" 'd["params"]["total"] == 4273664 and d["flops_per_token"]["forward"] == 9437184' "--json: parses, same numbers"
json "$T/out" 'd["flops_per_token"]["train"] == 3 * d["flops_per_token"]["forward"]' "--json: train = 3 x forward"
json "$T/out" 'd["memory_bytes"]["adamw"] == 8 * d["params"]["total"] and d["memory_bytes"]["batch"] == 8' "--json: memory"
json "$T/out" 'd["chinchilla"]["tokens"] == 20 * d["params"]["total"]' "--json: chinchilla tokens"

expect "moe: exit 0" 0 "$LLM" info configs/gpt2-ref.json --set model.mlp=moe --set model.n_experts=8 --set model.top_k=2 --json
json "$T/out" 'd["params"]["active"] < d["params"]["total"]' "moe: active < total"

# --sweep: rows d_model 256..8192, attention share (column 9, "12.34%") strictly falling
expect "--sweep: exit 0" 0 "$LLM" info configs/gpt2-ref.json --sweep d_model=256..8192
rows=$(grep -c '^ *[0-9]' "$T/out")
[ "$rows" -eq 6 ] && ok "--sweep: 6 rows (256..8192 doubling)" || nok "--sweep: 6 rows" "got $rows" "$(cat "$T/out")"
if grep '^ *[0-9]' "$T/out" | awk '{ s = $8 + 0; if (NR > 1 && s >= prev) bad = 1; prev = s } END { exit bad }'; then
    ok "--sweep: attention share falls as d_model grows"
else
    nok "--sweep: attention share falls as d_model grows" "$(cat "$T/out")"
fi
has "$T/out" "--sweep: 8192 row" "^ *8192 "
expect "--sweep --json: exit 0" 0 "$LLM" info configs/gpt2-ref.json --sweep d_model=256..1024 --json
json "$T/out" '[r["d_model"] for r in d["sweep"]] == [256, 512, 1024] and d["sweep"][0]["attn_share"] > d["sweep"][2]["attn_share"]' "--sweep --json: rows"

# checkpoints: the config comes from the header
if [ -x "$PARAMS" ] && "$PARAMS" --write-ckpt "$T/cfg.llm" 2>"$T/fixerr"; then
    expect "checkpoint with a config: exit 0" 0 "$LLM" info "$T/cfg.llm"
    has "$T/out" "checkpoint: tensor count" "checkpoint: 68 tensors"
    has "$T/out" "checkpoint: parameters from its config" "total *4,273,664"
    expect "checkpoint --json: exit 0" 0 "$LLM" info "$T/cfg.llm" --json --set model.n_layers=2
    json "$T/out" 'd["checkpoint_tensors"] == 68 and d["model"]["n_layers"] == 2' "checkpoint --json: tensors, --set applied"
else
    nok "write a checkpoint with a config" "$(cat "$T/fixerr" 2>/dev/null)"
fi
if [ -x "$PARAMS" ] && "$PARAMS" --write-ckpt-no-config "$T/nocfg.llm" 2>"$T/fixerr"; then
    fails "checkpoint without a config" "nocfg.llm: the checkpoint header has no \"config\"" 1 "$LLM" info "$T/nocfg.llm"
else
    nok "write a checkpoint without a config" "$(cat "$T/fixerr" 2>/dev/null)"
fi
if [ -x "$FIX" ] && "$FIX" --write-fixture "$T/fix.llm" 2>"$T/fixerr"; then
    expect "test_ckpt's fixture (a partial config): exit 0" 0 "$LLM" info "$T/fix.llm"
    has "$T/out" "test_ckpt's fixture: its d_model and tensor count" "C 8, L 1"
    has "$T/out" "test_ckpt's fixture: 6 tensors" "checkpoint: 6 tensors"
else
    nok "write test_ckpt's fixture" "$(cat "$T/fixerr" 2>/dev/null)"
fi

# errors
printf '{"model": {"d_model": 100, "n_heads": 3}}\n' >"$T/bad.json"
fails "bad config" "model.n_heads" 1 "$LLM" info "$T/bad.json"
printf '{"model": {"d_modle": 100}}\n' >"$T/typo.json"
fails "unknown key" "d_modle" 1 "$LLM" info "$T/typo.json"
fails "bad --set" "model.n_heads" 1 "$LLM" info configs/gpt2-ref.json --set model.n_heads=7
fails "missing file" "$T/missing.json" 1 "$LLM" info "$T/missing.json"
printf 'LLMCKPT\0garbage' >"$T/trunc.llm"
fails "truncated checkpoint" "trunc.llm" 1 "$LLM" info "$T/trunc.llm"
fails "bad --sweep" "--sweep" 2 "$LLM" info configs/gpt2-ref.json --sweep n_layers=1..4
fails "bad --sweep range" "--sweep" 2 "$LLM" info configs/gpt2-ref.json --sweep d_model=100..200
fails "bad --batch" "--batch" 2 "$LLM" info configs/gpt2-ref.json --batch -1
expect "no argument: exit 2" 2 "$LLM" info
one_line "no argument: one stderr line"
expect "--help: exit 0" 0 "$LLM" info --help
has "$T/out" "--help: usage" "usage: llm info"

