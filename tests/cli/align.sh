# align.sh: llm sft, dpo and grpo end to end. The demo of docs/align.md
# (configs/align/run.sh: single-digit addition; pretrain, SFT to the
# " <answer>N</answer>" format, DPO on right vs wrong answers, GRPO with the
# exact verifier) must improve what each stage targets on held-out prompts;
# then chat templates, resume, and bad input.
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1

# val STAGE KEY: a number of the demo's summary
val() { sed -n "/\"$1\"/,/}/p" "$T/demo.json" | tr ',{}' '\n\n\n' | sed -n "s/.*\"$2\":[[:space:]]*\([-0-9.eE+]*\).*/\1/p" | head -n 1; }
# cmp_ok DESC EXPR: an awk comparison of numbers
cmp_ok() { if awk "BEGIN { exit !($2) }"; then ok "$1 ($2)"; else nok "$1" "$2"; fi; }

D="$T/demo"
if LLM="$LLM" sh configs/align/run.sh "$D" >"$T/demo.json" 2>"$T/demo.err"; then ok "the demo runs"
else
    nok "the demo runs" "$(tail -n 5 "$T/demo.err")"
    echo "1..$n"
    exit 1
fi
echo "# $(tr -d '\n' <"$T/demo.json")"
base=$(val pretrain accuracy) sft=$(val sft accuracy) dpo=$(val dpo accuracy) grpo=$(val grpo accuracy)
cmp_ok "the pretrained model does not use the answer format" "$(val pretrain format) == 0"
cmp_ok "SFT teaches the format" "$(val sft format) >= 0.9"
cmp_ok "SFT raises held-out accuracy" "$sft > $base + 0.2"
cmp_ok "DPO prefers the right answers on held-out pairs" "$(val dpo val_preference_accuracy) >= 0.7"
cmp_ok "DPO raises held-out accuracy" "$dpo > $sft"
cmp_ok "GRPO raises the mean reward" "$(val grpo reward_last) > $(val grpo reward_first)"
cmp_ok "GRPO raises held-out accuracy" "$grpo > $dpo"
has "$D/dpo/metrics.jsonl" "dpo metrics: rewards/margins" '"rewards/margins"'
has "$D/grpo/metrics.jsonl" "grpo metrics: frac_reward_zero_std" '"frac_reward_zero_std"'
has "$D/grpo/metrics.jsonl" "grpo metrics: clip_ratio and entropy" '"clip_ratio".*"entropy"\|"entropy".*"clip_ratio"'
has "$D/grpo/samples.jsonl" "grpo logs sample completions" '"completion":" <answer>'

# ---- a reward model (Bradley-Terry), and GRPO reading it ----
expect "sft --task reward" 0 "$LLM" sft configs/align/dpo.json --task reward --set train.init_from="$D/sft/final.llm" \
    --set data.train="$D/dpo.jsonl" --set data.val="$D/dpo.val.jsonl" --set optim.lr=1e-3 --set train.out_dir="$T/rm" -q
VA=$(grep -o '"val_accuracy":[0-9.]*' "$T/rm/metrics.jsonl" | tail -n 1 | cut -d: -f2)
cmp_ok "the reward model ranks held-out pairs" "${VA:-0} >= 0.7"
expect "grpo with the reward model" 0 "$LLM" grpo configs/align/grpo.json --set train.init_from="$D/sft/final.llm" \
    --set data.train="$D/grpo.jsonl" --set data.val= --set grpo.reward_model="$T/rm/final.llm" \
    --set grpo.reward_model_weight=0.2 --set train.steps=4 --set train.out_dir="$T/grm" -q
has "$T/grm/metrics.jsonl" "grpo reports the reward model's score" '"rewards/model"'
fails "grpo refuses a checkpoint that is not a reward model" 1 "not a reward model" "$LLM" grpo configs/align/grpo.json \
    --set train.init_from="$D/sft/final.llm" --set data.train="$D/grpo.jsonl" --set data.val= \
    --set grpo.reward_model="$D/sft/final.llm" --set train.out_dir="$T/x"
fails "--task on dpo" 2 "--task is a flag of llm sft" "$LLM" dpo configs/align/dpo.json --task reward

# ---- SFT on chat messages: the template's tokens are added ----
cat >"$T/chat.jsonl" <<'J'
{"messages": [{"role": "user", "content": "3+4="}, {"role": "assistant", "content": "7"}]}
{"messages": [{"role": "system", "content": "Add."}, {"role": "user", "content": "2+2="}, {"role": "assistant", "content": "4"}]}
J
expect "sft on chat messages" 0 "$LLM" sft configs/align/sft.json --set train.init_from="$D/pretrain/final.llm" \
    --set data.train="$T/chat.jsonl" --set train.out_dir="$T/chat" --set train.steps=3 --set train.batch_size=2 --set schedule.warmup=0 -q
"$LLM" ckpt --json "$T/chat/final.llm" >"$T/ck.json" 2>/dev/null
has "$T/ck.json" "the checkpoint's tokenizer has <|assistant|>" '<|assistant|>'
expect "generate reads the grown model" 0 "$LLM" generate -m "$T/chat/final.llm" -p "<|user|>
3+4=<|end|>
<|assistant|>
" -n 3 -t 0

# ---- resume: 2 + 2 steps = 4 steps ----
sft() { "$LLM" sft configs/align/sft.json --set train.init_from="$D/pretrain/final.llm" \
    --set data.train="$D/sft.jsonl" --set train.steps=4 --set train.checkpoint_every=2 --set schedule.warmup=0 -q "$@"; }
sft --set train.out_dir="$T/r1" && sft --set train.out_dir="$T/r2" --stop-after 2 && sft --set train.out_dir="$T/r2"
"$LLM" export "$T/r1/final.llm" --format safetensors -o "$T/r1.st" 2>/dev/null
"$LLM" export "$T/r2/final.llm" --format safetensors -o "$T/r2.st" 2>/dev/null
if [ -s "$T/r1.st" ] && cmp -s "$T/r1.st" "$T/r2.st"; then ok "sft: stopped and resumed = uninterrupted, bit for bit"
else nok "sft: stopped and resumed = uninterrupted"; fi

# ---- packing: rows of whole examples, each attending only to itself ----
# The demo's examples take 11 or 12 of the 32 positions, so every packed row
# holds two: 16 packed rows are the same 32 examples per step as the demo's
# unpacked batch of 32, and the loss must be the same (to float rounding).
"$LLM" sft configs/align/sft.json --set train.init_from="$D/pretrain/final.llm" --set data.train="$D/sft.jsonl" \
    --set sft.packing=true --set train.batch_size=16 --set train.steps=25 --set train.out_dir="$T/pack" 2>"$T/pack.err"
has "$T/pack.err" "sft.packing reports its rows" 'packing 1000 examples into 500 rows of 32 tokens'
lp=$(sed -n 's/.*"step":25,"loss":\([0-9.eE+-]*\).*/\1/p' "$T/pack/metrics.jsonl")
lu=$(sed -n 's/.*"step":25,"loss":\([0-9.eE+-]*\).*/\1/p' "$D/sft/metrics.jsonl")
cmp_ok "packed rows train as one example per row (step-25 loss)" "${lp:-0} > 0 && ${lu:-1} > 0 && ($lp - $lu)^2 < (1e-4 * $lu)^2"
fails "a reward model does not pack" 1 "sft.packing" "$LLM" sft configs/align/dpo.json --task reward \
    --set train.init_from="$D/sft/final.llm" --set data.train="$D/dpo.jsonl" --set sft.packing=true --set train.out_dir="$T/x"

# ---- bad input ----
fails "no init_from" 1 "train.init_from" "$LLM" sft configs/align/sft.json --set train.init_from= \
    --set train.out_dir="$T/x"
fails "a teacher is for pretraining only" 1 "distill.teacher" "$LLM" sft configs/align/sft.json \
    --set train.init_from="$D/pretrain/final.llm" --set distill.teacher="$D/pretrain/final.llm" --set train.out_dir="$T/x"
printf '{"prompt": "1+1="}\n' >"$T/bad.jsonl"
fails "an example without a response names its line" 1 "bad.jsonl:1" "$LLM" sft configs/align/sft.json \
    --set train.init_from="$D/pretrain/final.llm" --set data.train="$T/bad.jsonl" --set train.out_dir="$T/x"
fails "dpo needs chosen and rejected" 1 "bad.jsonl:1: expected" "$LLM" dpo configs/align/dpo.json \
    --set train.init_from="$D/pretrain/final.llm" --set data.train="$T/bad.jsonl" --set data.val= \
    --set train.out_dir="$T/x"
fails "grpo: rollout batch must match the micro-batches" 1 "prompts_per_step" "$LLM" grpo configs/align/grpo.json \
    --set train.init_from="$D/pretrain/final.llm" --set data.train="$D/grpo.jsonl" --set grpo.group_size=3 \
    --set train.out_dir="$T/x"
fails "grpo: an unknown verifier" 1 "grpo.verifier" "$LLM" grpo configs/align/grpo.json \
    --set train.init_from="$D/pretrain/final.llm" --set data.train="$D/grpo.jsonl" --set grpo.verifier=vibes \
    --set data.val= --set train.out_dir="$T/x"
fails "a missing checkpoint" 1 "nope.llm" "$LLM" dpo configs/align/dpo.json --set train.init_from="$T/nope.llm" \
    --set train.out_dir="$T/x"
# ---- PPO on the demo's DPO model: a value model, GAE, clipped losses ----
ppo() { "$LLM" ppo configs/align/grpo.json --set train.init_from="$D/dpo/final.llm" --set data.train="$D/grpo.jsonl" \
    --set data.val= --set grpo.group_size=2 --set grpo.prompts_per_step=8 --set train.batch_size=8 \
    --set train.grad_accum=2 --set ppo.value_lr=1e-3 --set train.log_every=1 -q "$@"; }
expect "ppo runs" 0 ppo --set train.steps=6 --set train.out_dir="$T/ppo"
for k in reward reward_std score kl clip_ratio value_loss value_clip_ratio explained_variance entropy completion_length; do
    has "$T/ppo/metrics.jsonl" "ppo metrics: $k" "\"$k\":"
done
has "$T/ppo/samples.jsonl" "ppo logs sample completions" '"completion":" <answer>'
ppo_col() { grep -o "\"$1\":[-0-9.eE+]*" "$T/ppo/metrics.jsonl" | cut -d: -f2; }
# the DPO model answers most prompts right when sampling: PPO must not wreck that in 6 steps
cmp_ok "ppo: the score does not collapse" "$(ppo_col score | awk '{ s += $1 } END { print s / NR }') >= 0.4"
cmp_ok "ppo: the value model learns (value loss falls)" "$(ppo_col value_loss | tail -n 1) < $(ppo_col value_loss | head -n 1)"
[ -s "$T/ppo/value.llm" ] && ok "ppo writes value.llm" || nok "ppo writes value.llm"
expect "ppo with the reward model" 0 ppo --set grpo.reward_model="$T/rm/final.llm" --set grpo.reward_model_weight=0.2 \
    --set train.steps=2 --set train.out_dir="$T/ppo_rm"
has "$T/ppo_rm/metrics.jsonl" "ppo reports the reward model's score" '"rewards/model"'
ppo --set train.steps=4 --set train.checkpoint_every=2 --set train.out_dir="$T/pr1" &&
    ppo --set train.steps=4 --set train.checkpoint_every=2 --set train.out_dir="$T/pr2" --stop-after 2 &&
    ppo --set train.steps=4 --set train.checkpoint_every=2 --set train.out_dir="$T/pr2"
for f in final value; do
    "$LLM" export "$T/pr1/$f.llm" --format safetensors -o "$T/pr1.$f.st" 2>/dev/null
    "$LLM" export "$T/pr2/$f.llm" --format safetensors -o "$T/pr2.$f.st" 2>/dev/null
    if [ -s "$T/pr1.$f.st" ] && cmp -s "$T/pr1.$f.st" "$T/pr2.$f.st"; then ok "ppo: stopped and resumed = uninterrupted, bit for bit ($f)"
    else nok "ppo: stopped and resumed = uninterrupted ($f)"; fi
done
ppo --set train.steps=4 --set train.checkpoint_every=2 --set train.out_dir="$T/pr3" --stop-after 2 && rm -f "$T/pr3/value.llm"
fails "ppo: resuming without value.llm" 1 "value.llm" ppo --set train.steps=4 --set train.out_dir="$T/pr3"
fails "ppo: a missing value model" 1 "ppo.value_from" ppo --set ppo.value_from="$T/nope.llm" --set train.out_dir="$T/x"
fails "ppo: gamma out of range" 1 "ppo.gamma" ppo --set ppo.gamma=2 --set train.out_dir="$T/x"
fails "grpo still needs 2 completions per prompt" 1 "grpo.group_size" "$LLM" grpo configs/align/grpo.json \
    --set train.init_from="$D/dpo/final.llm" --set data.train="$D/grpo.jsonl" --set data.val= --set grpo.group_size=1 \
    --set grpo.prompts_per_step=16 --set train.batch_size=16 --set train.grad_accum=1 --set train.out_dir="$T/x"
echo "1..$n"
