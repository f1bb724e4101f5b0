#!/bin/sh
# data.sh: `llm data synth`: every format of both tasks, answers that check out, the same file from the
# same seed, the held-out sibling file, and one-line errors (exit 2 for usage, 1 otherwise) that leave
# no output behind.
. "$(dirname "$0")/lib.sh"

# fails DESC CODE PATTERN CMD...: exit CODE, one stderr line "llm data...: error: ...PATTERN", no stdout.
fails() {
    desc=$1 want=$2 pat=$3; shift 3
    run "$@"
    if [ "$rc" -eq "$want" ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^llm data.*error: .*$pat" "$T/err" &&
        [ ! -s "$T/out" ]; then ok "$desc"
    else nok "$desc" "exit $rc (wanted $want): $*" "stderr: $(head -c 600 "$T/err")"; fi
}
lines() { wc -l <"$1" | tr -d ' '; }

# ---- addition ----
expect "add jsonl: exit 0" 0 "$LLM" data synth --task add --n 200 --seed 3 -o "$T/add.jsonl"
if [ "$(lines "$T/add.jsonl")" = 200 ]; then ok "add jsonl: 200 lines"; else nok "add jsonl: 200 lines" "$(lines "$T/add.jsonl")"; fi
bad=$(sed 's/^{"prompt":"\([0-9]*\)+\([0-9]*\)=","answer":"\([0-9]*\)"}$/\1 \2 \3/' "$T/add.jsonl" |
    awk 'NF != 3 || $1 + $2 != $3 || length($1) != 2 || length($2) != 2 { print }')
if [ -z "$bad" ]; then ok "add jsonl: two 2-digit operands, right sums"; else nok "add jsonl: right sums" "$bad"; fi
"$LLM" data synth -q --task add --n 200 --seed 3 -o "$T/add2.jsonl"
if cmp -s "$T/add.jsonl" "$T/add2.jsonl"; then ok "same seed, same file"; else nok "same seed, same file"; fi
"$LLM" data synth -q --task add --n 200 --seed 4 -o "$T/add3.jsonl"
if cmp -s "$T/add.jsonl" "$T/add3.jsonl"; then nok "another seed, another file"; else ok "another seed, another file"; fi

"$LLM" data synth -q --task add --n 50 --seed 3 --format text -o "$T/add50.txt"
sed 's/.*"prompt":"\([^"]*\)".*/\1/' "$T/add.jsonl" | head -n 50 >"$T/p200"
sed 's/= .*/=/' "$T/add50.txt" >"$T/p50"
if cmp -s "$T/p200" "$T/p50"; then ok "fewer examples, another format: the same first problems"
else nok "fewer examples, another format: the same first problems"; fi

expect "add text: exit 0" 0 "$LLM" data synth --task add --n 50 --digits 4 --format text -o "$T/add.txt"
bad=$(awk '!/^[0-9]+\+[0-9]+= [0-9]+$/ { print; next } { split($1, a, /[+=]/); if (a[1] + a[2] != $2 || length(a[1]) != 4) print }' "$T/add.txt")
if [ -z "$bad" ] && [ "$(lines "$T/add.txt")" = 50 ]; then ok "add text: \"a+b= sum\" lines"; else nok "add text" "$bad"; fi

expect "add sft: exit 0" 0 "$LLM" data synth --task add --n 20 --format sft -o "$T/add.sft.jsonl"
if grep -vq '^{"prompt":"[0-9]*+[0-9]*=","response":" <answer>[0-9]*</answer>"}$' "$T/add.sft.jsonl"; then
    nok "add sft: the strict answer format" "$(head -n 2 "$T/add.sft.jsonl")"; else ok "add sft: the strict answer format"; fi

expect "add dpo: exit 0" 0 "$LLM" data synth --task add --n 100 --format dpo -o "$T/add.dpo.jsonl"
bad=$(sed 's/^{"prompt":"\([0-9]*\)+\([0-9]*\)=","chosen":" <answer>\([0-9]*\)<\/answer>","rejected":" <answer>\([0-9]*\)<\/answer>"}$/\1 \2 \3 \4/' \
    "$T/add.dpo.jsonl" | awk 'NF != 4 || $1 + $2 != $3 || $3 == $4 { print }')
if [ -z "$bad" ]; then ok "add dpo: chosen right, rejected wrong"; else nok "add dpo: chosen right, rejected wrong" "$bad"; fi

# ---- sorting ----
expect "sort jsonl: exit 0" 0 "$LLM" data synth --task sort --n 30 --words 5 -o "$T/sort.jsonl"
bad=$(sed 's/^{"prompt":"sort: \(.*\) =","answer":"\(.*\)"}$/\1|\2/' "$T/sort.jsonl" | while IFS='|' read -r p a; do
    s=$(printf '%s\n' $p | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')
    [ "$s" = "$a" ] && [ "$(printf '%s\n' $p | wc -l)" -eq 5 ] || echo "$p -> $a"
done)
if [ -z "$bad" ]; then ok "sort jsonl: five words, sorted"; else nok "sort jsonl: sorted" "$bad"; fi
expect "sort dpo: exit 0" 0 "$LLM" data synth --task sort --n 30 --format dpo -o "$T/sort.dpo.jsonl"
if grep -q '"chosen":"\([^"]*\)","rejected":"\1"' "$T/sort.dpo.jsonl"; then nok "sort dpo: rejected != chosen"
else ok "sort dpo: rejected != chosen"; fi

# ---- held out ----
expect "--split-eval: exit 0" 0 "$LLM" data synth --task add --n 100 --split-eval 25 --format sft -o "$T/h.sft.jsonl"
if [ "$(lines "$T/h.sft.jsonl")" = 100 ] && [ "$(lines "$T/h.sft.eval.jsonl")" = 25 ]; then
    ok "--split-eval: 100 + 25 in <stem>.eval.jsonl"; else nok "--split-eval: 100 + 25" "$(ls "$T")"; fi
sed 's/.*"prompt":"\([^"]*\)".*/\1/' "$T/h.sft.jsonl" | sort -u >"$T/train.p"
sed 's/.*"prompt":"\([^"]*\)".*/\1/' "$T/h.sft.eval.jsonl" | sort -u >"$T/eval.p"
if [ -z "$(comm -12 "$T/train.p" "$T/eval.p")" ] && [ "$(lines "$T/eval.p")" = 25 ] &&
    grep -q '^{"prompt":"[0-9]*+[0-9]*=","answer":"[0-9]*"}$' "$T/h.sft.eval.jsonl"; then
    ok "--split-eval: jsonl, distinct, disjoint from the training prompts"; else nok "--split-eval: disjoint"; fi
expect "-o - writes stdout" 0 "$LLM" data synth -q --task sort --n 3 -o -
if [ "$(lines "$T/out")" = 3 ]; then ok "-o -: three lines"; else nok "-o -: three lines" "$(cat "$T/out")"; fi

# ---- errors ----
fails "unknown task" 2 "--task: expected add or sort, got 'mul'" "$LLM" data synth --task mul --n 3 -o "$T/x"
fails "--n 0" 2 "--n: expected 1" "$LLM" data synth --task add --n 0 -o "$T/x"
fails "--n absurd" 2 "--n: expected 1" "$LLM" data synth --task add --n 99999999999 -o "$T/x"
fails "no --n" 2 "--n is required" "$LLM" data synth --task add -o "$T/x"
fails "no -o" 2 "-o FILE is required" "$LLM" data synth --task add --n 3
fails "bad format" 2 "--format: expected text, jsonl, sft or dpo" "$LLM" data synth --task add --n 3 --format csv -o "$T/x"
fails "--digits 10" 2 "--digits: expected 1..9" "$LLM" data synth --task add --n 3 --digits 10 -o "$T/x"
fails "--words 1" 2 "--words: expected 2..12" "$LLM" data synth --task sort --n 3 --words 1 -o "$T/x"
fails "unknown flag" 2 "digts" "$LLM" data synth --task add --n 3 --digts 3 -o "$T/x"
fails "not enough problems to hold out" 2 "--split-eval 5: only" "$LLM" data synth --task add --digits 1 --n 3000 \
    --split-eval 5 -o "$T/full.jsonl"
fails "--split-eval with stdout" 2 "--split-eval needs -o FILE" "$LLM" data synth --task add --n 3 --split-eval 1 -o -
fails "a folder that does not exist" 1 "cannot create" "$LLM" data synth --task add --n 3 -o "$T/no/such/x.jsonl"
if [ -e "$T/x" ] || [ -e "$T/full.jsonl" ] || [ -e "$T/full.eval.jsonl" ] || ls -a "$T" | grep -q '\.tmp\.'; then
    nok "errors leave no output" "$(ls -a "$T")"; else ok "errors leave no output"; fi
fails "unknown subcommand" 2 "unknown subcommand 'make'" "$LLM" data make
expect "data synth --help: exit 0" 0 "$LLM" data synth --help
has "$T/out" "--help lists --split-eval" "--split-eval"
echo "1..$n"
