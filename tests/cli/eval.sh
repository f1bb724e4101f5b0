# eval.sh: `llm eval` end to end on a briefly trained tiny model: perplexity
# equals the trainer's validation loss on the same windows, int8 perplexity
# stays close, the report and per-example logs of each task, IFEval on given
# responses, and bad input. (Known-answer scoring with hand-set models is in
# tests/unit/test_eval.c.)
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1

close() { awk "BEGIN { a = $2; b = $3; d = a - b; if (d < 0) d = -d; s = a < 0 ? -a : a; exit !(d <= $4 * s) }"; }

D="$T/data"
if ! LLM="$LLM" sh configs/tiny.sh "$D" 2>"$T/tinyerr"; then
    nok "configs/tiny.sh makes the data" "$(cat "$T/tinyerr")"
    echo "1..$n"
    exit 1
fi
# Packed (cross) windows, so the validation windows are exactly eval's.
expect "a short tiny run" 0 "$LLM" pretrain configs/tiny.json --set data.train="$D/train.bin" \
    --set data.val="$D/val.bin" --set data.tokenizer="$D/tokenizer.json" --set data.boundaries=cross \
    --set train.steps=12 --set train.eval_every=12 --set train.eval_batches=4 --set train.out_dir="$T/run" \
    --set schedule.warmup=2 --json
M="$T/run/final.llm"
VAL=$(num "$T/out" val_loss)

# ---- perplexity ----
expect "perplexity on the validation shard" 0 "$LLM" eval -m "$M" --task perplexity --data "$D/val.bin" \
    --max-windows 32 -o "$T/ppl.json"
LOSS=$(num "$T/ppl.json" loss)
if [ -n "$VAL" ] && [ -n "$LOSS" ] && close x "$LOSS" "$VAL" 1e-5; then
    ok "perplexity loss ($LOSS) = the trainer's val_loss ($VAL) on the same 4 x 8 windows"
else nok "perplexity loss equals val_loss" "eval $LOSS, trainer $VAL"; fi
has "$T/ppl.json" "report: windows" '"windows":[[:space:]]*32'
has "$T/ppl.json" "report: n = 32 x 128 tokens" '"n":[[:space:]]*4096'
has "$T/ppl.json" "report: the model" '"context_length":[[:space:]]*128'
has "$T/ppl.json" "report: the date" '"date":[[:space:]]*"20'
expect "perplexity on text (bits per byte)" 0 "$LLM" eval -m "$M" --task perplexity --data "$D/val.jsonl" \
    --max-windows 8 --stride 64
has "$T/out" "text input reports bits_per_byte" '"bits_per_byte"'
has "$T/out" "stride 64: 1 + 7 half windows = 8 windows" '"n":[[:space:]]*576'
expect "int8 perplexity" 0 "$LLM" eval -m "$M" --task perplexity --data "$D/val.bin" --max-windows 32 --quantize int8
Q=$(num "$T/out" perplexity) P=$(num "$T/ppl.json" perplexity)
if close x "$Q" "$P" 0.01; then ok "int8 perplexity ($Q) within 1% of fp32 ($P)"
else nok "int8 perplexity within 1%" "int8 $Q fp32 $P"; fi
expect "q4 perplexity" 0 "$LLM" eval -m "$M" --task perplexity --data "$D/val.bin" --max-windows 32 --quantize q4
Q4=$(num "$T/out" perplexity)
if close x "$Q4" "$P" 0.1 && [ "$Q4" != "$P" ]; then ok "q4 perplexity ($Q4) within 10% of fp32 ($P), not equal"
else nok "q4 perplexity within 10% of fp32 and not equal" "q4 $Q4 fp32 $P"; fi
has "$T/out" "q4: the report names it" '"quantize":[[:space:]]*"q4"'
expect "--quantize w8a8 is a usage error" 2 "$LLM" eval -m "$M" --task perplexity --data "$D/val.bin" --quantize w8a8
has "$T/err" "w8a8: says why" 'float activations'

# ---- multiple choice, every layout ----
cat >"$T/choice.jsonl" <<'J'
{"context": "The model reads a", "choices": ["config", "banana"], "label": 0}
{"context": "Checkpoints are written", "choices": ["atomically", "purple"], "label": 0}
{"context": "The tokenizer", "choices": ["encodes text", "eats soup"], "label": 0}
J
expect "choice: plain JSONL, 1-shot, samples logged" 0 "$LLM" eval -m "$M" --task choice --data "$T/choice.jsonl" \
    --shots 1 --log-samples "$T/s.jsonl" -o "$T/c.json"
has "$T/c.json" "choice: acc" '"acc":'
has "$T/c.json" "choice: acc_norm_stderr" '"acc_norm_stderr":'
if [ "$(wc -l <"$T/s.jsonl")" -eq 3 ] && grep -q '"loglik":\[' "$T/s.jsonl"; then ok "one logged sample per example"
else nok "one logged sample per example" "$(head -c 400 "$T/s.jsonl")"; fi
if grep -q 'Answer\|\\n\\n' "$T/s.jsonl"; then ok "the 1-shot prompt holds an example"
else nok "the 1-shot prompt holds an example" "$(head -c 400 "$T/s.jsonl")"; fi
cat >"$T/hs.jsonl" <<'J'
{"ind": 4, "activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the window of a car.", "ctx_b": "then", "endings": [", the man adds wax.", ", a person boards a ski lift.", ", the man puts on a coat.", ", the man removes the snow on his car."], "split": "val", "label": 3}
{"ind": 5, "activity_label": "Baking cookies", "ctx_a": "A chef shows baking pans.", "ctx_b": "the pans", "endings": ["contain eggs.", "are sprinkled [with sugar].", "are placed on the counter.", "are loaded into the oven."], "label": "3"}
J
expect "choice: HellaSwag layout" 0 "$LLM" eval -m "$M" --task choice --format hellaswag --data "$T/hs.jsonl"
has "$T/out" "report names the task hellaswag" '"hellaswag":'
mkdir -p "$T/mmlu"
printf 'What is 1+1?,1,2,3,4,B\n"A ""quoted"" question, with a comma",w,x,y,z,D\n' >"$T/mmlu/abstract_algebra_test.csv"
printf 'Pick C.,a,b,c,d,C\n' >"$T/mmlu/anatomy_test.csv"
expect "choice: MMLU folder of CSVs" 0 "$LLM" eval -m "$M" --task choice --format mmlu --data "$T/mmlu"
has "$T/out" "MMLU: 3 questions from 2 subjects" '"n":[[:space:]]*3'

# ---- exact match ----
cat >"$T/gsm.jsonl" <<'J'
{"question": "Tom has 3 apples and buys 4 more. How many apples?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}
{"question": "A box holds 12 eggs. How many in 2 boxes?", "answer": "2 * 12 = <<2*12=24>>24\n#### 24"}
J
expect "exact: GSM8K layout, self-consistency k=4" 0 "$LLM" eval -m "$M" --task exact --format gsm8k \
    --data "$T/gsm.jsonl" -n 12 --samples 4 --cot --log-samples "$T/g.jsonl"
has "$T/out" "exact: maj@4" '"maj@4":'
has "$T/out" "exact: pass@4" '"pass@4":'
has "$T/g.jsonl" "the CoT trigger is in the prompt" "Let's think step by step."
# answers are normalized (no commas) or null: 4 of them, 3 commas
if [ "$(grep -o '"answers":\[[^]]*\]' "$T/g.jsonl" | head -n 1 | tr -cd ',' | wc -c)" -eq 3 ]; then
    ok "4 answers logged per question"
else nok "4 answers logged per question" "$(head -c 400 "$T/g.jsonl")"; fi

# ---- IFEval on given responses ----
expect "ifeval: the fixture's responses" 0 "$LLM" eval --task ifeval --data tests/data/eval/ifeval.jsonl \
    --responses tests/data/eval/ifeval_responses.jsonl -o "$T/if.json"
# tests/data/eval/README.md: 9/18 prompts and 17/26 instructions strict, 14/18 and 22/26 loose
for kv in prompt_level_strict_acc=0.5 inst_level_strict_acc=0.653846 prompt_level_loose_acc=0.777778 \
          inst_level_loose_acc=0.846154; do
    k=${kv%%=*} want=${kv#*=} got=$(num "$T/if.json" "${kv%%=*}")
    if [ -n "$got" ] && close x "$got" "$want" 1e-5; then ok "ifeval $k = $want"
    else nok "ifeval $k = $want" "got '$got'"; fi
done

# ---- judge ----
printf '{"prompt": "Name a color.", "a": "Blue.", "b": "Seven."}\n' >"$T/pairs.jsonl"
expect "judge: pairs" 0 "$LLM" eval --task judge --judge "$M" --data "$T/pairs.jsonl"
has "$T/out" "judge: win_rate" '"win_rate":'

# ---- bad input ----
fails "no --task" 2 "--task is required" "$LLM" eval -m "$M" --data "$T/choice.jsonl"
fails "unknown task" 2 "expected perplexity, choice" "$LLM" eval -m "$M" --task vibes --data "$T/choice.jsonl"
fails "missing data file" 1 "nope.jsonl" "$LLM" eval -m "$M" --task choice --data "$T/nope.jsonl"
fails "a format of another task" 2 "does not go with" "$LLM" eval -m "$M" --task choice --format gsm8k \
    --data "$T/gsm.jsonl"
printf '{"context": "x", "choices": ["a", "b"], "label": 5}\n' >"$T/bad.jsonl"
rm -f "$T/never.json"
fails "label out of range names the line" 1 "bad.jsonl:1: label 5" "$LLM" eval -m "$M" --task choice \
    --data "$T/bad.jsonl" -o "$T/never.json"
if [ ! -e "$T/never.json" ]; then ok "no report file after an error"; else nok "no report file after an error"; fi
fails "judge without --judge" 2 "needs --judge" "$LLM" eval --task judge --data "$T/pairs.jsonl"
fails "a bad regex" 2 "regex" "$LLM" eval -m "$M" --task exact --data "$T/gsm.jsonl" --format gsm8k --regex '(x'
fails "not a checkpoint" 1 "not an llm checkpoint" "$LLM" eval -m "$T/choice.jsonl" --task choice --data "$T/choice.jsonl"
printf 'Too short.' >"$T/short.txt"
fails "too few tokens for a window" 1 "short.txt: .* a window needs" "$LLM" eval -m "$M" --task perplexity \
    --data "$T/short.txt"
echo "1..$n"
