# scaling.sh: `llm scaling-fit` on synthetic runs written here (CSV, JSONL,
# stdin) from the Chinchilla law: every method recovers its exponents, the
# outputs (JSON, table, plot), and a clear error for degenerate input; then
# `llm scaling-sweep` on a tiny IsoFLOP grid of real pretrain runs: the plan,
# the run folders, runs.jsonl, the fit, resuming, and bad input.
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1

# num FILE KEY: the first number after "KEY": in a JSON file.
num() { tr -d '\n\t ' <"$1" | tr ',{}' '\n\n\n' | sed -n "s/^\"$2\":\([-0-9.eE+]*\)$/\1/p" | head -n 1; }
# near DESC X Y TOL: |X - Y| <= TOL.
near() {
    if [ -n "$2" ] && [ -n "$3" ] && awk "BEGIN { d = ($2) - ($3); exit !(d <= $4 && -d <= $4) }"; then ok "$1"
    else nok "$1" "got '$2', want '$3' +- $4"; fi
}

# ---- synthetic runs: L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022), 5 budgets x 7 sizes ----
# about the law's optimum, with a fixed +-0.3% wobble; a = beta / (alpha + beta) = 0.4516.
awk 'BEGIN {
    E = 1.69; A = 406.4; B = 410.7; al = 0.34; be = 0.28
    a = be / (al + be); G = (al * A / (be * B)) ^ (1 / (al + be))
    print "name,N,D,loss,C"
    for (b = 0; b < 5; b++) {
        C = 1e18 * 3 ^ b; No = G * (C / 6) ^ a
        for (k = -3; k <= 3; k++) {
            N = No * 10 ^ (0.3 * k); D = C / (6 * N); i++
            L = (E + A / N ^ al + B / D ^ be) * (1 + 0.003 * sin(i * 12.9898))
            printf "run%d,%.6e,%.6e,%.6f,%.6e\n", i, N, D, L, C
        }
    }
}' >"$T/runs.csv"
# The same runs as JSON Lines without C (6ND is the default).
awk -F, 'NR > 1 { printf "{\"N\": %s, \"D\": %s, \"loss\": %s}\n", $2, $3, $4 }' "$T/runs.csv" >"$T/runs.jsonl"

expect "fit CSV: exit 0" 0 "$LLM" scaling-fit "$T/runs.csv" --bootstrap 100 --budget 1e21
cp "$T/out" "$T/par.json"
has "$T/par.json" "JSON on stdout: method" '"method":[[:space:]]*"parametric"'
has "$T/par.json" "JSON: params.E" '"E":'
has "$T/err" "a readable table on stderr" "scaling fit (parametric): 35 runs in 5 compute budgets"
near "parametric: alpha ~ 0.34" "$(num "$T/par.json" alpha)" 0.34 0.03
near "parametric: beta ~ 0.28" "$(num "$T/par.json" beta)" 0.28 0.03
near "parametric: a ~ 0.4516" "$(num "$T/par.json" a)" 0.4516 0.02
has "$T/par.json" "bootstrap intervals" '"ci":'
has "$T/par.json" "a prediction at 1e21" '"tokens_per_param":'

expect "fit JSONL, isoflop: exit 0" 0 "$LLM" scaling-fit "$T/runs.jsonl" --method isoflop --bootstrap 0 -q
cp "$T/out" "$T/iso.json"
has "$T/iso.json" "isoflop JSON" '"method":[[:space:]]*"isoflop"'
near "isoflop and parametric agree on a" "$(num "$T/iso.json" a)" "$(num "$T/par.json" a)" 0.03
if grep -q '"ci"' "$T/iso.json"; then nok "--bootstrap 0: no intervals"; else ok "--bootstrap 0: no intervals"; fi
if [ -s "$T/err" ]; then nok "-q: no table" "$(head -c 300 "$T/err")"; else ok "-q: no table"; fi

expect "kaplan: exit 0" 0 "$LLM" scaling-fit "$T/runs.csv" --method kaplan --bootstrap 0 -o "$T/kap.json" --plot "$T/kap.svg"
has "$T/kap.json" "kaplan JSON in -o" '"alpha_N":'
if [ ! -s "$T/out" ]; then ok "-o: nothing on stdout"; else nok "-o: nothing on stdout" "$(head -c 200 "$T/out")"; fi
if head -c 5 "$T/kap.svg" | grep -q '<svg' && tail -n 1 "$T/kap.svg" | grep -q '</svg>' && ! grep -qi 'nan\|inf"' "$T/kap.svg"
then ok "--plot writes an SVG"; else nok "--plot writes an SVG" "$(head -c 200 "$T/kap.svg")"; fi

"$LLM" scaling-fit - --method isoflop --bootstrap 0 -q <"$T/runs.jsonl" >"$T/stdin.json" 2>"$T/err"
if cmp -s "$T/stdin.json" "$T/iso.json"; then ok "stdin ('-') gives the same fit"
else nok "stdin ('-') gives the same fit" "$(head -c 300 "$T/err")"; fi

# ---- degenerate input: one clear line, exit 1, no output file ----
head -n 5 "$T/runs.csv" >"$T/four.csv"
fails "fewer than 5 runs" 1 "at least 5 runs; got 4" "$LLM" scaling-fit "$T/four.csv" -o "$T/none.json"
if [ -e "$T/none.json" ]; then nok "no output file on error"; else ok "no output file on error"; fi
head -n 8 "$T/runs.csv" >"$T/one.csv"
fails "one budget" 1 "one compute budget" "$LLM" scaling-fit "$T/one.csv"
fails "one budget (isoflop)" 1 "one compute budget" "$LLM" scaling-fit "$T/one.csv" --method isoflop
{ cat "$T/runs.csv"; echo "bad,-1e8,1e9,3.0,"; } >"$T/neg.csv"
fails "a negative N" 1 "neg.csv:37: N is -1e+08; it must be a finite positive number" "$LLM" scaling-fit "$T/neg.csv"
{ cat "$T/runs.csv"; echo "bad,1e8,1e9,nan,"; } >"$T/nan.csv"
fails "a NaN loss" 1 "nan.csv:37: loss is nan" "$LLM" scaling-fit "$T/nan.csv"
{ cat "$T/runs.jsonl"; echo '{"N": 1e8, "D": 0, "loss": 3}'; } >"$T/zero.jsonl"
fails "D = 0" 1 "zero.jsonl:36: D is 0" "$LLM" scaling-fit "$T/zero.jsonl"
printf 'N,D\n1,2\n' >"$T/nocol.csv"
fails "a missing column" 1 "no column 'loss'" "$LLM" scaling-fit "$T/nocol.csv"
fails "a missing file" 1 "cannot open" "$LLM" scaling-fit "$T/nope.csv"
fails "an unknown method" 2 "--method: expected parametric, isoflop or kaplan" "$LLM" scaling-fit "$T/runs.csv" --method x
fails "a bad budget" 2 "--budget: expected positive numbers" "$LLM" scaling-fit "$T/runs.csv" --budget -5
fails "no runs given" 2 "" "$LLM" scaling-fit

# ---- scaling-sweep: a tiny IsoFLOP grid of real runs ----
# The data: this repository's own text, as configs/tiny.sh makes it but in
# one piece (three commands instead of a few hundred: the test stays fast):
# a 512-id BPE, the last tenth of the lines held out for validation.
D="$T/data"
mkdir -p "$D"
cat README.md docs/*.md lib/*/*.h lib/*/*.c >"$D/all.txt"
lines=$(wc -l <"$D/all.txt")
head -n $((lines * 9 / 10)) "$D/all.txt" >"$D/train.txt"
tail -n +$((lines * 9 / 10 + 1)) "$D/all.txt" >"$D/val.txt"
if "$LLM" tokenize train -q --vocab-size 512 --special '<|endoftext|>' -o "$D/tokenizer.json" "$D/train.txt" 2>"$T/err" &&
    "$LLM" tokenize encode -q --tokenizer "$D/tokenizer.json" --format bin -o "$D/train.bin" "$D/train.txt" 2>"$T/err" &&
    "$LLM" tokenize encode -q --tokenizer "$D/tokenizer.json" --format bin -o "$D/val.bin" "$D/val.txt" 2>"$T/err"; then
    ok "the data for the sweep"
else
    nok "the data for the sweep" "$(cat "$T/err")"
    echo "1..$n"
    exit 1
fi
# 4-wide heads so sizes of 4, 8 and 16 fit; 128 tokens a step; one thread
# per run (a tiny model gains nothing from two). Each budget's loss is lowest
# at the middle size, so both parabolas have a minimum.
SW="--set data.train=$D/train.bin --set data.val=$D/val.bin --set data.tokenizer=$D/tokenizer.json
    --set model.context_length=32 --set train.batch_size=4 --set train.grad_accum=1 --set model.d_model=64
    --set model.n_heads=16 --set train.eval_batches=4 --set train.eval_every=0 --set train.checkpoint_every=0
    --set train.threads=1 --set optim.lr=1e-2 --budgets 3e9,1e10 --sizes 4x1,8x1,16x1 --min-steps 10"
# shellcheck disable=SC2086
expect "sweep --dry-run: exit 0" 0 "$LLM" scaling-sweep configs/tiny.json $SW --out "$T/sweep" --dry-run
if [ "$(grep -c '^C=' "$T/out")" -eq 6 ] && grep -q 'C=1e+10_16x1' "$T/out"; then ok "--dry-run: a plan of 6 runs"
else nok "--dry-run: a plan of 6 runs" "$(cat "$T/out")"; fi
if [ ! -e "$T/sweep" ]; then ok "--dry-run runs nothing"; else nok "--dry-run runs nothing"; fi
# shellcheck disable=SC2086
expect "sweep: exit 0" 0 "$LLM" scaling-sweep configs/tiny.json $SW --out "$T/sweep" --bootstrap 0 --predict 1e12
cp "$T/out" "$T/sweep.out"
if [ "$(wc -l <"$T/sweep/runs.jsonl")" -eq 6 ]; then ok "runs.jsonl: 6 runs"
else nok "runs.jsonl: 6 runs" "$(cat "$T/sweep/runs.jsonl")"; fi
# D = C / 6N in whole steps of 128 tokens: the 8x1 model at 1e10 (N from the
# plan) trains round(1e10 / 6N / 128) steps.
row=$(grep '"name":"C=1e+10_8x1"' "$T/sweep/runs.jsonl")
N=$(echo "$row" | sed 's/.*"N":\([0-9.e+]*\).*/\1/')
S=$(echo "$row" | sed 's/.*"steps":\([0-9]*\).*/\1/')
DD=$(echo "$row" | sed 's/.*"D":\([0-9.e+]*\).*/\1/')
near "steps = round(C / 6N / 128)" "$S" "$(awk "BEGIN { printf \"%d\", 1e10 / (6 * $N) / 128 + 0.5 }")" 0
near "D = steps x 128 (the run's own token count)" "$DD" "$((S * 128))" 0
for f in summary.json log.txt config.json; do
    if [ -s "$T/sweep/C=3e+09_4x1/$f" ]; then ok "run folder has $f"; else nok "run folder has $f" "$(ls "$T/sweep/C=3e+09_4x1")"; fi
done
has "$T/sweep/C=3e+09_4x1/config.json" "the run has its size" '"d_model":[[:space:]]*4,'
for f in fit.json fit.svg; do
    if [ -s "$T/sweep/$f" ]; then ok "sweep writes $f"; else nok "sweep writes $f" "$(tail -n 3 "$T/err")"; fi
done
has "$T/sweep.out" "the fit on stdout (isoflop)" '"method":[[:space:]]*"isoflop"'
if cmp -s "$T/sweep.out" "$T/sweep/fit.json"; then ok "stdout = fit.json"; else nok "stdout = fit.json"; fi
# The sweep folder is also a scaling-fit input (run folders; C = 6ND there).
expect "scaling-fit on the sweep's folder" 0 "$LLM" scaling-fit "$T/sweep" --method isoflop --bootstrap 0 -q
has "$T/out" "  ... reads all 6 runs" '"runs":[[:space:]]*6'
expect "scaling-fit on runs.jsonl" 0 "$LLM" scaling-fit "$T/sweep/runs.jsonl" --method isoflop --bootstrap 0 -q
# Rerunning resumes: every run is complete, nothing retrains, same rows.
cp "$T/sweep/runs.jsonl" "$T/runs1.jsonl"
# shellcheck disable=SC2086
expect "sweep again: exit 0" 0 "$LLM" scaling-sweep configs/tiny.json $SW --out "$T/sweep" --bootstrap 0
if cmp -s "$T/runs1.jsonl" "$T/sweep/runs.jsonl"; then ok "rerun: the same runs (resumed, not retrained)"
else nok "rerun: the same runs" "$(diff "$T/runs1.jsonl" "$T/sweep/runs.jsonl" | head -5)"; fi
if grep -q "nothing to do" "$T/sweep/C=1e+10_16x1/log.txt"; then ok "rerun: the run says it was complete"
else nok "rerun: the run says it was complete" "$(tail -n 2 "$T/sweep/C=1e+10_16x1/log.txt")"; fi

# ---- sweep: bad input ----
fails "sweep: --budgets is required" 2 "--budgets is required" "$LLM" scaling-sweep configs/tiny.json --sizes 64x2
fails "sweep: a size off the head size" 1 "not a multiple of the head size 32" \
    "$LLM" scaling-sweep configs/tiny.json --budgets 1e12 --sizes 48x2 --dry-run
fails "sweep: a malformed size" 1 "expected d_model x n_layers" \
    "$LLM" scaling-sweep configs/tiny.json --budgets 1e12 --sizes 64 --dry-run
fails "sweep: an unknown config key" 1 "nope" \
    "$LLM" scaling-sweep configs/tiny.json --budgets 1e12 --sizes 64x2 --set model.nope=1 --dry-run
fails "sweep: no validation data" 1 "data.val is not set" \
    "$LLM" scaling-sweep configs/tiny.json --budgets 1e12 --sizes 64x2 --set data.val= --dry-run
fails "sweep: budgets too small" 1 "every point of the grid" \
    "$LLM" scaling-sweep configs/tiny.json --budgets 1e6 --sizes 64x2 --dry-run
fails "sweep: a bad --tokens-per-param" 2 "--tokens-per-param: expected MIN,MAX" \
    "$LLM" scaling-sweep configs/tiny.json --budgets 1e12 --sizes 64x2 --tokens-per-param 5 --dry-run
echo "1..$n"
