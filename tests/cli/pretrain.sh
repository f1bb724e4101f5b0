# pretrain.sh: `llm pretrain` end to end: configs/tiny.json learns (its
# validation loss ends well below the unigram entropy of the data), the run
# folder, resume bit for bit (for every optimizer), kill -9 and SIGINT at
# arbitrary moments, sweeps, skipped steps, and bad input.
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1



# params_of CKPT OUT: the parameters only, as a safetensors file (byte-comparable).
params_of() { "$LLM" export "$1" --format safetensors -o "$2" >/dev/null 2>"$T/experr"; }

# same_params DESC A B: two checkpoints hold bit-identical parameters.
same_params() {
    rm -f "$T/a.st" "$T/b.st"
    if params_of "$2" "$T/a.st" && params_of "$3" "$T/b.st" && cmp -s "$T/a.st" "$T/b.st"; then ok "$1"
    else nok "$1" "$2 and $3 differ" "$(cat "$T/experr")"; fi
}

# rows FILE: the metrics rows without the timing fields (which differ run to
# run) and val_loss (a run also evaluates at its own last step).
rows() {
    sed -e 's/"tokens_per_s":[^,}]*,\{0,1\}//' -e 's/"mfu":[^,}]*,\{0,1\}//' -e 's/"elapsed_s":[^,}]*,\{0,1\}//' \
        -e 's/"val_loss":[^,}]*,\{0,1\}//' "$1"
}

# ---- data: configs/tiny.sh on this repository's text ----
D="$T/data"
if ! LLM="$LLM" sh configs/tiny.sh "$D" 2>"$T/tinyerr"; then
    nok "configs/tiny.sh makes the data" "$(cat "$T/tinyerr")"
    echo "1..$n"
    exit 1
fi
ok "configs/tiny.sh makes the data"
DATA="--set data.train=$D/train.bin --set data.val=$D/val.bin --set data.tokenizer=$D/tokenizer.json"

# ---- configs/tiny.json learns ----
# Under a sanitizer (3-10x slower) the run is cut to 150 of its 300 steps
# (still 3 checkpoints and evaluations); the loss bound stays the same.
TINY_STEPS=300 TINY_EVAL=50 TINY_CKPT=100
if [ "${LLM_TEST_SANITIZED:-0}" = 1 ]; then
    TINY_STEPS=150 TINY_EVAL=30 TINY_CKPT=50
    echo "# sanitizer build: configs/tiny.json runs 150 steps instead of 300"
fi
# shellcheck disable=SC2086
expect "tiny: exit 0" 0 "$LLM" pretrain configs/tiny.json $DATA --set train.out_dir="$T/tiny" --json \
    --set train.steps=$TINY_STEPS --set train.checkpoint_every=$TINY_CKPT --set train.eval_every=$TINY_EVAL
cp "$T/out" "$T/tiny.json"
# The unigram entropy of the validation tokens, computed here independently:
# the loss of the best model that ignores context.
H=$(od -An -v -tu2 -j32 "$D/val.bin" | tr -s ' ' '\n' | grep -v '^$' | sort -n | uniq -c |
    awk '{ c[$2] = $1; n += $1 } END { for (k in c) { p = c[k] / n; h -= p * log(p) } printf "%.4f", h }')
VAL=$(num "$T/tiny.json" val_loss)
if [ -n "$VAL" ] && awk "BEGIN { exit !($VAL < $H - 1.0) }"; then
    ok "tiny: val loss $VAL is well below the unigram entropy $H"
else nok "tiny: val loss well below the unigram entropy" "val $VAL, entropy $H" "$(cat "$T/tiny.json")"; fi
UH=$(num "$T/tiny.json" unigram_entropy)
if awk "BEGIN { d = $UH - $H; exit !(d < 1e-3 && d > -1e-3) }"; then ok "summary's unigram_entropy ($UH) agrees"
else nok "summary's unigram_entropy agrees" "$UH vs $H"; fi
has "$T/tiny.json" "summary: step $TINY_STEPS" "\"step\":[[:space:]]*$TINY_STEPS"
for f in config.json metrics.jsonl loss.svg final.llm summary.json ckpt_$TINY_CKPT.llm ckpt_$((TINY_CKPT * 2)).llm; do
    if [ -s "$T/tiny/$f" ]; then ok "run folder has $f"; else nok "run folder has $f" "$(ls "$T/tiny")"; fi
done
# metrics: one row per 10 steps (log_every) plus evaluations, every field there
if [ "$(wc -l <"$T/tiny/metrics.jsonl")" -eq $((TINY_STEPS / 10)) ]; then ok "metrics.jsonl: a row every 10 steps"
else nok "metrics.jsonl: a row every 10 steps" "$(wc -l <"$T/tiny/metrics.jsonl")"; fi
for k in step loss lr grad_norm tokens tokens_per_s mfu elapsed_s noise_scale skipped; do
    has "$T/tiny/metrics.jsonl" "metrics has $k" "\"$k\":"
done
if [ "$(grep -c '"val_loss"' "$T/tiny/metrics.jsonl")" -eq $((TINY_STEPS / TINY_EVAL)) ]; then
    ok "metrics: an evaluation every $TINY_EVAL steps"
else nok "metrics: an evaluation every $TINY_EVAL steps" "$(grep -c val_loss "$T/tiny/metrics.jsonl")"; fi
has "$T/tiny/loss.svg" "loss.svg is an SVG with two curves" "val loss"
expect "final.llm verifies" 0 "$LLM" ckpt --verify "$T/tiny/final.llm"
has "$T/out" "final.llm holds optimizer state" "optim\."
expect "run again: nothing to do, exit 0" 0 "$LLM" pretrain configs/tiny.json $DATA --set train.out_dir="$T/tiny" \
    --set train.steps=$TINY_STEPS
has "$T/err" "run again: says it is complete" "complete"
fails "another model in the same folder" 1 "model.d_model differs" \
    "$LLM" pretrain configs/tiny.json $DATA --set train.out_dir="$T/tiny" --set model.d_model=64

# ---- train.init_from: a warm start from another run's weights ----
# One step (lr 1e-4) from the trained tiny model: the
# validation loss stays near the tiny run's, far below a fresh model's
# (~ln 512 = 6.2); the optimizer starts afresh (step 1, not a resume).
# shellcheck disable=SC2086
expect "init_from: exit 0" 0 "$LLM" pretrain configs/tiny.json $DATA --set train.out_dir="$T/warm" --json \
    --set train.steps=1 --set schedule.warmup=1 --set optim.lr=1e-4 --set train.eval_every=1 \
    --set train.init_from="$T/tiny/final.llm"
WARM=$(num "$T/out" val_loss)
if [ -n "$WARM" ] && [ -n "$VAL" ] && awk "BEGIN { exit !($WARM < $VAL + 0.2 && $WARM < $H - 1.0) }"; then
    ok "init_from: after one step the val loss ($WARM) is the trained model's ($VAL)"
else nok "init_from: the val loss is the trained model's" "warm $WARM, tiny $VAL, entropy $H" "$(head -c 600 "$T/out")"; fi
has "$T/out" "init_from: a fresh run of 1 step" '"step":[[:space:]]*1[,}[:space:]]'
fails "init_from: another model" 1 "model.d_model differs" "$LLM" pretrain configs/tiny.json $DATA \
    --set train.out_dir="$T/warm2" --set train.steps=1 --set schedule.warmup=1 --set model.d_model=64 --set train.init_from="$T/tiny/final.llm"
fails "init_from: a missing file" 1 "train.init_from" "$LLM" pretrain configs/tiny.json $DATA \
    --set train.out_dir="$T/warm3" --set train.steps=1 --set schedule.warmup=1 --set train.init_from="$T/nonexistent.llm"
fails "init_from: not a checkpoint" 1 "train.init_from" "$LLM" pretrain configs/tiny.json $DATA \
    --set train.out_dir="$T/warm4" --set train.steps=1 --set schedule.warmup=1 --set train.init_from="$D/tokenizer.json"
if [ ! -e "$T/warm2/final.llm" ] && [ ! -e "$T/warm3/final.llm" ]; then ok "init_from: no checkpoint after an error"
else nok "init_from: no checkpoint after an error" "$(ls "$T/warm2" "$T/warm3" 2>&1)"; fi

# ---- resume: N + N steps equal 2N, for every optimizer ----
SMALL="$DATA --set model.d_model=32 --set model.n_layers=2 --set model.n_heads=2 --set model.d_ff=64 \
  --set model.context_length=32 --set train.batch_size=4 --set train.grad_accum=2 --set train.eval_every=4 \
  --set train.eval_batches=2 --set train.log_every=1 --set schedule.warmup=2 --set model.dropout=0.1 \
  --set train.checkpoint_every=0 --set train.threads=2"
for opt in adamw sgd muon soap; do
    extra="--set optim.name=$opt --set optim.precondition_frequency=3"
    # shellcheck disable=SC2086
    "$LLM" pretrain configs/tiny.json $SMALL $extra --set train.steps=12 --set train.out_dir="$T/r-$opt-full" -q
    # shellcheck disable=SC2086
    "$LLM" pretrain configs/tiny.json $SMALL $extra --set train.steps=12 --stop-after 6 --set train.out_dir="$T/r-$opt-half" -q
    # shellcheck disable=SC2086
    expect "$opt: resume 6 -> 12 steps" 0 "$LLM" pretrain configs/tiny.json $SMALL $extra --set train.steps=12 \
        --set train.out_dir="$T/r-$opt-half"
    same_params "$opt: 6 + 6 steps = 12 steps, bit for bit" "$T/r-$opt-full/final.llm" "$T/r-$opt-half/final.llm"
    rows "$T/r-$opt-half/metrics.jsonl" >"$T/h.rows"
    if rows "$T/r-$opt-full/metrics.jsonl" | cmp -s - "$T/h.rows"; then ok "$opt: the metrics rows (loss, lr, grad norm, noise scale) are the same"
    else nok "$opt: the metrics rows are the same" "$(rows "$T/r-$opt-full/metrics.jsonl" | diff - "$T/h.rows" | head -n 6)"; fi
done
# --resume from an explicit checkpoint of another folder
# shellcheck disable=SC2086
expect "--resume CKPT" 0 "$LLM" pretrain configs/tiny.json $SMALL --set train.steps=12 --set train.out_dir="$T/r-explicit" \
    --resume "$T/r-adamw-half/ckpt_6.llm" --json
has "$T/out" "--resume CKPT: resumed_from 6" '"resumed_from":[[:space:]]*6'
same_params "--resume CKPT: the same parameters" "$T/r-adamw-full/final.llm" "$T/r-explicit/final.llm"

# ---- kill -9 at arbitrary moments, SIGINT ----
LONG="$SMALL --set train.steps=200 --set train.checkpoint_every=3 --set train.keep_checkpoints=3"
# shellcheck disable=SC2086
"$LLM" pretrain configs/tiny.json $LONG --set train.out_dir="$T/k-ref" -q
for delay in 0.3 0.8 1.5; do
    # shellcheck disable=SC2086
    "$LLM" pretrain configs/tiny.json $LONG --set train.out_dir="$T/k" -q &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
done
# a write killed half-way leaves a temp file; the resumed run removes it
printf 'partial' >"$T/k/.ckpt_99.llm.tmp.AbC123"
bad=0
for c in "$T"/k/ckpt_*.llm; do
    [ -e "$c" ] || continue
    "$LLM" ckpt --verify "$c" >/dev/null 2>&1 || bad=$((bad + 1))
done
if [ "$bad" -eq 0 ]; then ok "after kill -9: every checkpoint verifies"; else nok "after kill -9: every checkpoint verifies" "$bad bad"; fi
# shellcheck disable=SC2086
expect "after kill -9: the run resumes to the end" 0 "$LLM" pretrain configs/tiny.json $LONG --set train.out_dir="$T/k"
same_params "after kill -9 and resume: the same parameters as without" "$T/k-ref/final.llm" "$T/k/final.llm"
if ls -a "$T/k" | grep -q '\.tmp\.'; then nok "after kill -9 and resume: no temp files left" "$(ls -a "$T/k")"
else ok "after kill -9 and resume: no temp files left"; fi
rows "$T/k-ref/metrics.jsonl" >"$T/ref.rows"
if rows "$T/k/metrics.jsonl" | cmp -s - "$T/ref.rows"; then ok "after kill -9 and resume: the same metrics rows"
else nok "after kill -9: the same metrics rows" "$(rows "$T/k/metrics.jsonl" | diff - "$T/ref.rows" | head -n 6)"; fi

# SIGINT: finish the step, checkpoint, exit 130; resuming completes the same run
# shellcheck disable=SC2086
"$LLM" pretrain configs/tiny.json $LONG --set train.checkpoint_every=1000 --set train.out_dir="$T/i" --json \
    >"$T/i.out" 2>"$T/i.err" &
pid=$!
i=0
while [ ! -s "$T/i/metrics.jsonl" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -INT "$pid"
wait "$pid"
rc=$?
if [ "$rc" -eq 130 ]; then ok "SIGINT: exit 130"; else nok "SIGINT: exit 130" "exit $rc" "$(tail -n 3 "$T/i.err")"; fi
has "$T/i.out" "SIGINT: summary says interrupted" '"interrupted":[[:space:]]*true'
if ls "$T"/i/ckpt_*.llm >/dev/null 2>&1; then ok "SIGINT: a checkpoint was written"; else nok "SIGINT: a checkpoint was written" "$(ls "$T/i")"; fi
# shellcheck disable=SC2086
expect "SIGINT: the run resumes" 0 "$LLM" pretrain configs/tiny.json $LONG --set train.checkpoint_every=1000 --set train.out_dir="$T/i"
same_params "SIGINT and resume: the same parameters as without" "$T/k-ref/final.llm" "$T/i/final.llm"

# SIGTERM: the same, exit 143
# shellcheck disable=SC2086
"$LLM" pretrain configs/tiny.json $LONG --set train.checkpoint_every=1000 --set train.out_dir="$T/term" -q &
pid=$!
i=0
while [ ! -s "$T/term/metrics.jsonl" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM "$pid"
wait "$pid"
rc=$?
if [ "$rc" -eq 143 ] && ls "$T"/term/ckpt_*.llm >/dev/null 2>&1; then ok "SIGTERM: a checkpoint, exit 143"
else nok "SIGTERM: a checkpoint, exit 143" "exit $rc" "$(ls "$T/term")"; fi

# ---- sweeps ----
# shellcheck disable=SC2086
expect "sweep 2 x 2, -j 2: exit 0" 0 "$LLM" pretrain configs/tiny.json $SMALL --set train.steps=4 \
    --set train.out_dir="$T/sw" --sweep optim.lr=1e-3,3e-3 --sweep model.d_model=16,32 -j 2
if [ "$(grep -c ' ok$' "$T/out")" -eq 4 ]; then ok "sweep: a table of 4 runs"; else nok "sweep: a table of 4 runs" "$(cat "$T/out")"; fi
has "$T/out" "sweep: header" "val_loss"
for p in optim.lr=1e-3_model.d_model=16 optim.lr=3e-3_model.d_model=32; do
    if [ -s "$T/sw/$p/summary.json" ]; then ok "sweep: $p has its run folder"; else nok "sweep: $p folder" "$(ls "$T/sw")"; fi
done
# shellcheck disable=SC2086
expect "sweep --json" 0 "$LLM" pretrain configs/tiny.json $SMALL --set train.steps=4 --set train.out_dir="$T/sw" \
    --sweep 'optim.betas=[0.9,0.95],[0.8,0.9]' --json
has "$T/out" "sweep --json: points" '"optim.betas"'
fails "sweep: bad key" 2 "unknown config key" "$LLM" pretrain configs/tiny.json --sweep optim.lrr=1,2
fails "sweep: a bad value fails before any run" 1 "sweep point" "$LLM" pretrain configs/tiny.json $SMALL \
    --set train.out_dir="$T/sw2" --sweep model.d_model=16,-3
if [ ! -e "$T/sw2" ]; then ok "sweep: nothing run after a bad point"; else nok "sweep: nothing run after a bad point"; fi

# ---- skipped steps: a diverging run warns at each skip, then stops with one error line ----
# shellcheck disable=SC2086
run "$LLM" pretrain configs/tiny.json $SMALL --set train.steps=50 --set optim.lr=1e12 --set train.clip_grad=0 \
    --set train.max_skipped=2 --set train.out_dir="$T/nan"
if [ "$rc" -eq 1 ] && [ "$(grep -c 'step skipped' "$T/err")" -eq 3 ] && [ "$(grep -c 'error' "$T/err")" -eq 1 ] &&
    tail -n 1 "$T/err" | grep -q 'steps skipped (train.max_skipped is 2)'; then
    ok "diverging run: 3 skips, then it stops with one error line"
else nok "diverging run: 3 skips, then it stops" "exit $rc" "$(tail -c 600 "$T/err")"; fi

# ---- distillation: the tiny model above as the teacher of a smaller one ----
KD="--set model.d_model=32 --set model.n_layers=2 --set model.n_heads=2 --set model.d_ff=64 --set train.log_every=5 \
  --set train.checkpoint_every=0 --set train.steps=60 --set schedule.warmup=5"
# shellcheck disable=SC2086
expect "distill.teacher: exit 0" 0 "$LLM" pretrain configs/tiny.json $DATA $KD --set distill.teacher="$T/tiny/final.llm" \
    --set distill.weight=0.8 --set distill.temperature=2 --set train.out_dir="$T/kd" -q
kl_first=$(head -n 1 "$T/kd/metrics.jsonl" | sed -n 's/.*"distill_kl":[[:space:]]*\([0-9.e+-]*\).*/\1/p')
kl_last=$(tail -n 1 "$T/kd/metrics.jsonl" | sed -n 's/.*"distill_kl":[[:space:]]*\([0-9.e+-]*\).*/\1/p')
if [ -n "$kl_first" ] && [ -n "$kl_last" ] && awk "BEGIN { exit !($kl_last < 0.9 * $kl_first) }"; then
    ok "distillation: the KL to the teacher falls ($kl_first -> $kl_last)"
else nok "distillation: the KL to the teacher falls" "first '$kl_first', last '$kl_last'"; fi
has "$T/kd/config.json" "distillation: the run's config names the teacher" '"teacher":[[:space:]]*"[^"]*tiny/final.llm"'
# shellcheck disable=SC2086
fails "distill.teacher: a missing file" 1 "nope.llm" "$LLM" pretrain configs/tiny.json $DATA $KD \
    --set distill.teacher="$T/nope.llm" --set train.out_dir="$T/kd2"
# shellcheck disable=SC2086
fails "distill.teacher: another vocabulary" 1 "vocab_size" "$LLM" pretrain configs/tiny.json $DATA $KD \
    --set model.vocab_size=600 --set distill.teacher="$T/tiny/final.llm" --set train.out_dir="$T/kd3"
fails "distill.weight 1.5" 1 "distill.weight" "$LLM" pretrain configs/tiny.json $DATA --set distill.weight=1.5
if [ ! -e "$T/kd2/final.llm" ] && [ ! -e "$T/kd3/final.llm" ]; then ok "distillation errors: no checkpoint written"
else nok "distillation errors: no checkpoint written"; fi

# ---- bad input ----
fails "missing config" 1 "nope.json" "$LLM" pretrain "$T/nope.json"
fails "unknown key" 1 "train.stepz" "$LLM" pretrain configs/tiny.json --set train.stepz=3
fails "missing shard" 1 "missing.bin" "$LLM" pretrain configs/tiny.json --set data.train="$T/missing.bin" \
    --set train.out_dir="$T/bad1"
printf 'not a shard at all, just text\n' >"$T/text.bin"
fails "not a shard" 1 "text.bin" "$LLM" pretrain configs/tiny.json --set data.train="$T/text.bin" \
    --set train.out_dir="$T/bad2"
fails "no data.train" 1 "data.train" "$LLM" pretrain configs/tiny.json --set data.train= --set train.out_dir="$T/bad3"
fails "vocab too small for the shard" 1 "vocab" "$LLM" pretrain configs/tiny.json $DATA --set model.vocab_size=100 \
    --set data.eot=-1 --set train.out_dir="$T/bad4"
fails "cuda without a CUDA backend" 1 "CUDA" "$LLM" pretrain configs/tiny.json $DATA --device cuda --set train.out_dir="$T/bad5"
fails "--jobs 0" 2 "jobs" "$LLM" pretrain configs/tiny.json -j 0
fails "no config" 2 "usage\|expected" "$LLM" pretrain
mkdir -p "$T/corrupt"
cp "$T/r-adamw-full/final.llm" "$T/corrupt/final.llm"
printf 'XXXX' | dd of="$T/corrupt/final.llm" bs=1 seek=2000 conv=notrunc 2>/dev/null
# shellcheck disable=SC2086
fails "corrupt checkpoint: refused" 1 "final.llm" "$LLM" pretrain configs/tiny.json $SMALL --set train.steps=20 \
    --set train.out_dir="$T/corrupt"
fails "--resume a missing file" 1 "nothing.llm" "$LLM" pretrain configs/tiny.json $DATA --resume "$T/nothing.llm" \
    --set train.out_dir="$T/bad6"

echo "1..$n"
