# generate.sh: `llm generate` end to end: a model trained to memorize a
# sentence continues it greedily; sampling is reproducible from the seed;
# batched decoding gives each prompt the same completion as alone; stop
# strings, max tokens, streaming = JSON; bad input.
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1

# str FILE KEY: the string value of "KEY" in a one-line JSON object (texts here have no quotes).
str() { sed -n "s/.*\"$2\":[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$1" | head -n 1; }
# raw FILE KEY OUT: that value with its \n escapes turned back into newlines, into OUT.
raw() { printf '%b' "$(str "$1" "$2")" >"$3"; }

# ---- a model that memorized one sentence ----
S="the quick brown fox jumps over the lazy dog."
i=0
while [ $i -lt 400 ]; do echo "$S"; i=$((i + 1)); done >"$T/text.txt"
"$LLM" tokenize train -q --vocab-size 280 --special '<|endoftext|>' -o "$T/tok.json" "$T/text.txt"
"$LLM" tokenize encode -q --tokenizer "$T/tok.json" --format bin -o "$T/train.bin" "$T/text.txt"
if "$LLM" pretrain configs/tiny.json -q --set data.train="$T/train.bin" --set data.val= \
    --set data.tokenizer="$T/tok.json" --set data.eot=-1 --set model.vocab_size=300 --set model.d_model=64 \
    --set model.n_layers=2 --set model.n_heads=2 --set model.d_ff=128 --set model.context_length=48 \
    --set train.batch_size=8 --set train.grad_accum=1 --set train.steps=150 --set schedule.warmup=10 \
    --set train.checkpoint_every=0 --set train.out_dir="$T/run" 2>"$T/trainerr"; then
    ok "train a model on one sentence"
else nok "train a model on one sentence" "$(tail -n 3 "$T/trainerr")"; fi
M="$T/run/final.llm"

expect "greedy: exit 0" 0 "$LLM" generate -m "$M" -p "the quick brown" -t 0 -n 24
case "$(cat "$T/out")" in
" fox jumps over the lazy dog."*) ok "greedy continues the memorized sentence" ;;
*) nok "greedy continues the memorized sentence" "got: $(head -c 200 "$T/out")" ;;
esac
expect "--json: exit 0" 0 "$LLM" generate -m "$M" -p "the quick brown" -t 0 -n 12 --json
tr -d '\n' <"$T/out" >"$T/json1"
has "$T/json1" "--json: finish_reason length" '"finish_reason":[[:space:]]*"length"'
has "$T/json1" "--json: 12 tokens" '"tokens":[[:space:]]*12'
has "$T/json1" "--json: timing" '"decode_tokens_per_s"'
has "$T/json1" "--json: time to first token" '"time_to_first_token_s"'
"$LLM" generate -m "$M" -p "the quick brown" -t 0 -n 12 >"$T/stream"
raw "$T/json1" completion "$T/json1.txt"
if cmp -s "$T/json1.txt" "$T/stream"; then ok "streamed text = the JSON completion"
else nok "streamed text = the JSON completion" "$(cat "$T/stream")" "$(cat "$T/json1.txt")"; fi

# ---- stop strings, end of text ----
expect "--stop" 0 "$LLM" generate -m "$M" -p "the quick brown" -t 0 -n 40 --stop "lazy" --json
tr -d '\n' <"$T/out" >"$T/json2"
if [ "$(str "$T/json2" completion)" = " fox jumps over the " ]; then ok "--stop: cut before the stop string"
else nok "--stop: cut before the stop string" "$(str "$T/json2" completion)"; fi
has "$T/json2" "--stop: finish_reason stop" '"finish_reason":[[:space:]]*"stop"'
"$LLM" generate -m "$M" -p "the quick brown" -t 0 -n 40 --stop "lazy" >"$T/stream2"
if [ "$(cat "$T/stream2")" = " fox jumps over the " ]; then ok "--stop: the stream holds back a partial match"
else nok "--stop: the stream holds back a partial match" "$(cat "$T/stream2")"; fi

# ---- sampling: the seed decides ----
"$LLM" generate -m "$M" -p "the" -t 1.5 -n 20 --seed 7 >"$T/s7a"
"$LLM" generate -m "$M" -p "the" -t 1.5 -n 20 --seed 7 >"$T/s7b"
"$LLM" generate -m "$M" -p "the" -t 1.5 -n 20 --seed 8 >"$T/s8"
if cmp -s "$T/s7a" "$T/s7b"; then ok "same seed, same text"; else nok "same seed, same text"; fi
if ! cmp -s "$T/s7a" "$T/s8"; then ok "another seed, another text"; else nok "another seed, another text" "$(cat "$T/s8")"; fi

# ---- batched decoding = each prompt alone ----
printf '{"prompt": "the"}\n{"prompt": "the quick brown fox jumps"}\n{"prompt": "over the lazy dog. the quick"}\n{"prompt": "dog"}\n' >"$T/prompts.jsonl"
for b in 1 3; do
    expect "--prompts --batch $b: exit 0" 0 "$LLM" generate -m "$M" --prompts "$T/prompts.jsonl" -t 0.9 -n 16 \
        --top-k 5 --seed 3 --batch $b
    cp "$T/out" "$T/batch$b.jsonl"
done
if [ "$(wc -l <"$T/batch3.jsonl")" -eq 4 ]; then ok "--prompts: one JSONL line per prompt"; else nok "--prompts: 4 lines"; fi
if cmp -s "$T/batch1.jsonl" "$T/batch3.jsonl"; then ok "batch 3 = batch 1, prompt by prompt"
else nok "batch 3 = batch 1" "$(diff "$T/batch1.jsonl" "$T/batch3.jsonl" | head -n 6)"; fi
has "$T/batch3.jsonl" "--prompts: fields" '"prompt":.*"completion":.*"tokens":.*"finish_reason":'
printf '%s' "$(sed -n 2p "$T/prompts.jsonl" | sed 's/.*"prompt": "\(.*\)"}/\1/')" >"$T/p2"
"$LLM" generate -m "$M" --prompt-file "$T/p2" -t 0.9 -n 16 --top-k 5 --seed 3 --json | tr -d '\n' >"$T/alone2"
if [ "$(str "$T/alone2" completion)" = "$(sed -n 2p "$T/batch3.jsonl" | tr -d '\n' >"$T/l2"; str "$T/l2" completion)" ]
then ok "prompt 2 alone = prompt 2 in the batch"; else nok "prompt 2 alone = in the batch" "$(cat "$T/alone2")"; fi

# ---- int8 weights ----
expect "--quantize int8: exit 0" 0 "$LLM" generate -m "$M" -p "the quick brown" -t 0 -n 24 --quantize int8
case "$(cat "$T/out")" in
" fox jumps over the lazy dog."*) ok "--quantize int8: still continues the memorized sentence" ;;
*) nok "--quantize int8: still continues the memorized sentence" "got: $(head -c 200 "$T/out")" ;;
esac
expect "--quantize int8 --group 64 --batch 3" 0 "$LLM" generate -m "$M" --prompts "$T/prompts.jsonl" -t 0.9 -n 16 \
    --top-k 5 --seed 3 --batch 3 --quantize int8 --group 64
cp "$T/out" "$T/q64b3.jsonl"
"$LLM" generate -m "$M" --prompts "$T/prompts.jsonl" -t 0.9 -n 16 --top-k 5 --seed 3 --quantize int8 --group 64 \
    >"$T/q64b1.jsonl"
if cmp -s "$T/q64b1.jsonl" "$T/q64b3.jsonl"; then ok "--quantize int8: batch 3 = batch 1"
else nok "--quantize int8: batch 3 = batch 1"; fi
# W8A8: int8 activations too; the memorized sentence survives, batch 3 = batch 1
expect "--quantize w8a8: exit 0" 0 "$LLM" generate -m "$M" -p "the quick brown" -t 0 -n 24 --quantize w8a8
case "$(cat "$T/out")" in
" fox jumps over the lazy dog."*) ok "--quantize w8a8: still continues the memorized sentence" ;;
*) nok "--quantize w8a8: still continues the memorized sentence" "got: $(head -c 200 "$T/out")" ;;
esac
"$LLM" generate -m "$M" --prompts "$T/prompts.jsonl" -t 0.9 -n 16 --top-k 5 --seed 3 --batch 3 --quantize w8a8 \
    >"$T/a8b3.jsonl"
"$LLM" generate -m "$M" --prompts "$T/prompts.jsonl" -t 0.9 -n 16 --top-k 5 --seed 3 --quantize w8a8 >"$T/a8b1.jsonl"
if [ -s "$T/a8b1.jsonl" ] && cmp -s "$T/a8b1.jsonl" "$T/a8b3.jsonl"; then ok "--quantize w8a8: batch 3 = batch 1"
else nok "--quantize w8a8: batch 3 = batch 1" "$(diff "$T/a8b1.jsonl" "$T/a8b3.jsonl" | head -n 4)"; fi
# Q4 weights (int8 activations): runs, batch 3 = batch 1, int8 checkpoints only
"$LLM" generate -m "$M" --prompts "$T/prompts.jsonl" -t 0.9 -n 16 --top-k 5 --seed 3 --batch 3 --quantize q4 \
    >"$T/q4b3.jsonl" 2>"$T/q4err"
"$LLM" generate -m "$M" --prompts "$T/prompts.jsonl" -t 0.9 -n 16 --top-k 5 --seed 3 --quantize q4 >"$T/q4b1.jsonl"
if [ -s "$T/q4b1.jsonl" ] && cmp -s "$T/q4b1.jsonl" "$T/q4b3.jsonl"; then ok "--quantize q4: batch 3 = batch 1"
else nok "--quantize q4: batch 3 = batch 1" "$(cat "$T/q4err")" "$(diff "$T/q4b1.jsonl" "$T/q4b3.jsonl" | head -n 4)"; fi
has "$T/q4err" "--quantize q4: says it quantized to 4 bits" "4 bits"
# a quantized checkpoint: the same text as quantizing at load
expect "llm quantize" 0 "$LLM" quantize "$M" -o "$T/q.llm" --group 64
"$LLM" generate -m "$T/q.llm" --prompts "$T/prompts.jsonl" -t 0.9 -n 16 --top-k 5 --seed 3 >"$T/qckpt.jsonl"
if cmp -s "$T/qckpt.jsonl" "$T/q64b1.jsonl"; then ok "quantized checkpoint = --quantize int8 at load"
else nok "quantized checkpoint = --quantize int8 at load" "$(diff "$T/qckpt.jsonl" "$T/q64b1.jsonl" | head -n 4)"; fi
qs=$(wc -c <"$T/q.llm") fs=$(wc -c <"$M")
if [ "$qs" -lt "$fs" ]; then ok "the quantized checkpoint is smaller ($qs < $fs bytes)"; else nok "smaller checkpoint" "$qs vs $fs"; fi
expect "llm ckpt --verify on it" 0 "$LLM" ckpt --verify "$T/q.llm"
fails "export refuses a quantized checkpoint" 1 "quantized" "$LLM" export "$T/q.llm" --format safetensors -o "$T/q.st"
fails "quantize: --group 48" 2 "group" "$LLM" quantize "$M" -o "$T/q2.llm" --group 48
fails "quantize: no -o" 2 "required" "$LLM" quantize "$M"
fails "quantize: a missing file" 1 "nope.llm" "$LLM" quantize "$T/nope.llm" -o "$T/q3.llm"
if [ ! -e "$T/q3.llm" ]; then ok "quantize: no output after an error"; else nok "quantize: no output after an error"; fi
fails "--quantize int4" 2 "expected int8, w8a8 or q4" "$LLM" generate -m "$M" -p hi --quantize int4
fails "--group 16" 2 "group" "$LLM" generate -m "$M" -p hi --quantize int8 --group 16

# ---- speculative decoding: a smaller draft trained on the same text ----
"$LLM" pretrain configs/tiny.json -q --set data.train="$T/train.bin" --set data.val= \
    --set data.tokenizer="$T/tok.json" --set data.eot=-1 --set model.vocab_size=300 --set model.d_model=32 \
    --set model.n_layers=1 --set model.n_heads=2 --set model.d_ff=64 --set model.context_length=48 \
    --set train.batch_size=8 --set train.grad_accum=1 --set train.steps=60 --set schedule.warmup=5 \
    --set train.checkpoint_every=0 --set train.seed=2 --set train.out_dir="$T/draft" 2>/dev/null
D="$T/draft/final.llm"
"$LLM" generate -m "$M" -p "the quick" -t 0 -n 30 >"$T/plain"
expect "--draft: exit 0" 0 "$LLM" generate -m "$M" -p "the quick" -t 0 -n 30 --draft "$D" --draft-tokens 4 --json
tr -d '\n' <"$T/out" >"$T/spec.json"
raw "$T/spec.json" completion "$T/spec.txt"
if cmp -s "$T/spec.txt" "$T/plain"; then ok "--draft, greedy: the same text as the model alone"
else nok "--draft, greedy: the same text" "$(cat "$T/spec.txt")" "$(cat "$T/plain")"; fi
has "$T/spec.json" "--draft: acceptance rate reported" '"acceptance_rate"'
for k in 1 7; do
    "$LLM" generate -m "$M" -p "the quick" -t 0 -n 30 --draft "$D" --draft-tokens $k >"$T/spec$k"
    if cmp -s "$T/spec$k" "$T/plain"; then ok "--draft-tokens $k, greedy: the same text"
    else nok "--draft-tokens $k, greedy: the same text" "$(cat "$T/spec$k")"; fi
done
# --draft-p-min: the draft stops once unsure, so rounds propose fewer than
# K; the text is still the model's own
for pm in 0 0.99; do
    "$LLM" generate -m "$M" -p "the quick" -t 0 -n 30 --draft "$D" --draft-tokens 7 --draft-p-min $pm --json \
        | tr -d '\n' >"$T/pm$pm.json"
    raw "$T/pm$pm.json" completion "$T/pm$pm.txt"
    if cmp -s "$T/pm$pm.txt" "$T/plain"; then ok "--draft-p-min $pm, greedy: the same text"
    else nok "--draft-p-min $pm, greedy: the same text" "$(cat "$T/pm$pm.txt")"; fi
done
per_round() { awk -v p="$(num "$1" draft_proposed)" -v r="$(num "$1" speculative_rounds)" 'BEGIN { print (r > 0 ? p / r : -1) }'; }
if [ "$(per_round "$T/pm0.json")" = 7 ] && awk -v x="$(per_round "$T/pm0.99.json")" 'BEGIN { exit !(x >= 1 && x < 7) }'
then ok "--draft-p-min 0.99 proposes fewer tokens per round than K (0: always K)"
else nok "--draft-p-min: tokens per round" "$(per_round "$T/pm0.json") and $(per_round "$T/pm0.99.json")"; fi
fails "--draft-p-min 1.5" 2 "draft-p-min" "$LLM" generate -m "$M" -p hi --draft "$D" --draft-p-min 1.5
fails "--draft-p-min without --draft" 2 "needs --draft" "$LLM" generate -m "$M" -p hi --draft-p-min 0.5
"$LLM" generate -m "$M" -p "the" -t 1 -n 20 --draft "$D" --seed 4 >"$T/sd1"
"$LLM" generate -m "$M" -p "the" -t 1 -n 20 --draft "$D" --seed 4 >"$T/sd2"
if cmp -s "$T/sd1" "$T/sd2"; then ok "--draft, sampling: same seed, same text"; else nok "--draft, sampling: same seed"; fi
"$LLM" pretrain configs/tiny.json -q --set data.train="$T/train.bin" --set data.val= --set data.eot=-1 \
    --set data.tokenizer="$T/tok.json" --set model.vocab_size=301 --set model.d_model=16 --set model.n_layers=1 \
    --set model.n_heads=1 --set model.d_ff=16 --set model.context_length=16 --set train.steps=1 \
    --set schedule.warmup=0 --set train.checkpoint_every=0 --set train.out_dir="$T/v301" 2>/dev/null
fails "--draft with another vocabulary" 1 "vocab" "$LLM" generate -m "$M" -p hi --draft "$T/v301/final.llm"
fails "--draft-tokens 16" 2 "draft-tokens" "$LLM" generate -m "$M" -p hi --draft "$D" --draft-tokens 16
"$LLM" generate -m "$M" -p "the quick" -t 0 -n 30 --draft "$D" --draft-threads 1 >"$T/spec_t1"
if cmp -s "$T/spec_t1" "$T/plain"; then ok "--draft-threads 1, greedy: the same text"
else nok "--draft-threads 1, greedy: the same text" "$(cat "$T/spec_t1")"; fi
fails "--draft-threads -1" 2 "draft-threads" "$LLM" generate -m "$M" -p hi --draft "$D" --draft-threads -1
# an int8 draft (quantized at load, or an `llm quantize` checkpoint): the
# target still decides every token, so greedy text is the target's
expect "--draft-quantize int8: exit 0" 0 "$LLM" generate -m "$M" -p "the quick" -t 0 -n 30 --draft "$D" \
    --draft-quantize int8 --json
tr -d '\n' <"$T/out" >"$T/specq.json"
raw "$T/specq.json" completion "$T/specq.txt"
if cmp -s "$T/specq.txt" "$T/plain"; then ok "--draft-quantize int8, greedy: the same text as the model alone"
else nok "--draft-quantize int8, greedy: the same text" "$(cat "$T/specq.txt")"; fi
has "$T/specq.json" "--draft-quantize int8: acceptance rate reported" '"acceptance_rate"'
for q in w8a8 q4; do
    "$LLM" generate -m "$M" -p "the quick" -t 0 -n 30 --draft "$D" --draft-quantize $q >"$T/speca8" 2>/dev/null
    if cmp -s "$T/speca8" "$T/plain"; then ok "--draft-quantize $q, greedy: the same text as the model alone"
    else nok "--draft-quantize $q, greedy: the same text" "$(cat "$T/speca8")"; fi
done
"$LLM" quantize "$D" -o "$T/dq.llm" 2>/dev/null
"$LLM" generate -m "$M" -p "the quick" -t 0 -n 30 --draft "$T/dq.llm" --draft-tokens 3 >"$T/specdq"
if cmp -s "$T/specdq" "$T/plain"; then ok "--draft with an int8 checkpoint, greedy: the same text"
else nok "--draft with an int8 checkpoint, greedy: the same text" "$(cat "$T/specdq")"; fi
# the flag reaches the draft's loader (whether the int8 kernel then runs
# shows only in speed, bench/spec_parts --draft-int8: on these tiny models
# the int8 draft's acceptances match the fp32 draft's, so no output tells)
"$LLM" generate -m "$M" -p "the" -n 4 --draft "$D" --draft-quantize int8 >/dev/null 2>"$T/dqerr"
"$LLM" generate -m "$M" -p "the" -n 4 --draft "$D" >/dev/null 2>"$T/dferr"
if grep -q 'quantized [0-9]* weights to int8' "$T/dqerr" && ! grep -q 'quantized' "$T/dferr"; then
    ok "--draft-quantize int8 quantizes the draft, and only with the flag"
else nok "--draft-quantize int8 quantizes the draft, and only with the flag" "$(cat "$T/dqerr" "$T/dferr")"; fi
fails "--draft-quantize int4" 2 "draft-quantize" "$LLM" generate -m "$M" -p hi --draft "$D" --draft-quantize int4
fails "--draft-quantize without --draft" 2 "needs --draft" "$LLM" generate -m "$M" -p hi --draft-quantize int8

# ---- the context: a prompt too long ----
i=0
while [ $i -lt 20 ]; do printf '%s ' "$S"; i=$((i + 1)); done >"$T/long.txt"
fails "prompt longer than the context" 1 "truncate" "$LLM" generate -m "$M" --prompt-file "$T/long.txt" -n 4
expect "--truncate left" 0 "$LLM" generate -m "$M" --prompt-file "$T/long.txt" -n 4 --truncate left -t 0 --json
has "$T/out" "--truncate left: generates" '"tokens":[[:space:]]*4'

# ---- bad input ----
fails "no --model" 2 "model" "$LLM" generate -p hi
fails "no prompt" 2 "prompt" "$LLM" generate -m "$M"
fails "two prompt sources" 2 "exactly one" "$LLM" generate -m "$M" -p hi --prompts "$T/prompts.jsonl"
fails "empty prompt" 1 "empty" "$LLM" generate -m "$M" -p ""
fails "missing checkpoint" 1 "nope.llm" "$LLM" generate -m "$T/nope.llm" -p hi
fails "bad --top-p" 2 "top-p" "$LLM" generate -m "$M" -p hi --top-p 1.5
fails "bad --temperature" 2 "temperature" "$LLM" generate -m "$M" -p hi --temperature -1
fails "bad --max-tokens" 2 "max-tokens" "$LLM" generate -m "$M" -p hi -n 0
fails "bad --truncate" 2 "truncate" "$LLM" generate -m "$M" -p hi --truncate right
# a checkpoint without a tokenizer: a model saved from a run without data.tokenizer
"$LLM" pretrain configs/tiny.json -q --set data.train="$T/train.bin" --set data.val= --set data.tokenizer= \
    --set data.eot=-1 --set model.vocab_size=300 --set model.d_model=16 --set model.n_layers=1 --set model.n_heads=1 \
    --set model.d_ff=16 --set model.context_length=16 --set train.steps=1 --set schedule.warmup=0 \
    --set train.checkpoint_every=0 --set train.out_dir="$T/notok" 2>/dev/null
fails "a checkpoint without a tokenizer" 1 "no tokenizer" "$LLM" generate -m "$T/notok/final.llm" -p hi
expect "... works with --tokenizer" 0 "$LLM" generate -m "$T/notok/final.llm" -p hi --tokenizer "$T/tok.json" -n 3
printf '{"prompt": "ok"}\n{"text": "no prompt"}\n' >"$T/bad.jsonl"
fails "--prompts line without a prompt" 1 "bad.jsonl:2" "$LLM" generate -m "$M" --prompts "$T/bad.jsonl"

echo "1..$n"
