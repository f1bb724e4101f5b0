/* schema.c: the one table of config keys (path, type, default, range, doc,
 * field) and the checks that involve several keys. Everything else in
 * lib/config and docs/config.md is derived from these tables. */
#include "config.h"
#include "err.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* Enum fields are written through int *: they must be int-sized. */
_Static_assert(sizeof(enum llm_activation) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_norm) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_norm_position) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_position) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_attention) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_attention_kv) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_mlp) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_device) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_optim_name) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_schedule_name) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_cooldown) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_data_order) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_data_boundaries) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_chat_template) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_sft_task) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_dpo_loss) == sizeof(int), "enum size");
_Static_assert(sizeof(enum llm_grpo_agg) == sizeof(int), "enum size");

/* Index = C enum value, so the table and the enums cannot disagree. */
static const char *const activation_names[] = {
    [LLM_ACTIVATION_RELU] = "relu", [LLM_ACTIVATION_GELU] = "gelu",
    [LLM_ACTIVATION_SWIGLU] = "swiglu", [LLM_ACTIVATION_RELU2] = "relu2", NULL};
static const char *const norm_names[] = {
    [LLM_NORM_LAYERNORM] = "layernorm", [LLM_NORM_RMSNORM] = "rmsnorm", NULL};
static const char *const norm_position_names[] = {
    [LLM_NORM_POSITION_PRE] = "pre", [LLM_NORM_POSITION_POST] = "post", NULL};
static const char *const position_names[] = {
    [LLM_POSITION_LEARNED] = "learned", [LLM_POSITION_SINUSOIDAL] = "sinusoidal",
    [LLM_POSITION_ROPE] = "rope", NULL};
static const char *const attention_names[] = {
    [LLM_ATTENTION_FULL] = "full", [LLM_ATTENTION_SLIDING] = "sliding",
    [LLM_ATTENTION_LINEAR] = "linear", NULL};
static const char *const attention_kv_names[] = {
    [LLM_ATTENTION_KV_STANDARD] = "standard", [LLM_ATTENTION_KV_MLA] = "mla", NULL};
static const char *const mlp_names[] = {[LLM_MLP_DENSE] = "dense", [LLM_MLP_MOE] = "moe", NULL};
static const char *const device_names[] = {
    [LLM_DEVICE_CPU] = "cpu", [LLM_DEVICE_CUDA] = "cuda", [LLM_DEVICE_AUTO] = "auto", NULL};
static const char *const optim_names[] = {
    [LLM_OPTIM_ADAMW] = "adamw", [LLM_OPTIM_MUON] = "muon", [LLM_OPTIM_SOAP] = "soap",
    [LLM_OPTIM_SGD] = "sgd", NULL};
static const char *const schedule_names[] = {
    [LLM_SCHEDULE_COSINE] = "cosine", [LLM_SCHEDULE_WSD] = "wsd",
    [LLM_SCHEDULE_CONSTANT] = "constant", [LLM_SCHEDULE_LINEAR] = "linear", NULL};
static const char *const cooldown_names[] = {
    [LLM_COOLDOWN_LINEAR] = "linear", [LLM_COOLDOWN_1_SQRT] = "1-sqrt", NULL};
static const char *const order_names[] = {
    [LLM_DATA_RANDOM] = "random", [LLM_DATA_SEQUENTIAL] = "sequential", NULL};
static const char *const boundaries_names[] = {
    [LLM_DATA_BOUNDARIES_AUTO] = "auto", [LLM_DATA_BOUNDARIES_ALIGN] = "align",
    [LLM_DATA_BOUNDARIES_CROSS] = "cross", NULL};
static const char *const sft_task_names[] = {[LLM_SFT_LM] = "lm", [LLM_SFT_REWARD] = "reward", NULL};
static const char *const template_names[] = {[LLM_CHAT_SIMPLE] = "simple", [LLM_CHAT_CHATML] = "chatml", NULL};
static const char *const dpo_loss_names[] = {
    [LLM_DPO_SIGMOID] = "sigmoid", [LLM_DPO_IPO] = "ipo", [LLM_DPO_HINGE] = "hinge", NULL};
static const char *const agg_names[] = {
    [LLM_GRPO_AGG_GRPO] = "grpo", [LLM_GRPO_AGG_DR_GRPO] = "dr_grpo", [LLM_GRPO_AGG_DAPO] = "dapo", NULL};

/* Largest integer a JSON number (a double) holds exactly. */
#define I64_MAX_EXACT ((int64_t)9007199254740991)

/* A pointer comparison inside sizeof (never evaluated) makes the compiler
 * warn when a field's C type does not match its key type. */
#define OFF(f, T) (offsetof(struct llm_config, f) + 0 * sizeof((T *)0 == &((struct llm_config *)0)->f))
#define OFF_ENUM(f) (offsetof(struct llm_config, f) + \
                     0 * sizeof(char[sizeof(((struct llm_config *)0)->f) == sizeof(int) ? 1 : -1]))

typedef double double2[2];

#define INT(p, f, d, lo, doc_) \
    {.path = p, .type = LLM_CONFIG_INT, .offset = OFF(f, int), .idef = d, .ilo = lo, .ihi = INT_MAX, .doc = doc_}
#define I64(p, f, d, lo, doc_) \
    {.path = p, .type = LLM_CONFIG_I64, .offset = OFF(f, int64_t), .idef = d, .ilo = lo, .ihi = I64_MAX_EXACT, .doc = doc_}
#define NUM(p, f, d, range, doc_) \
    {.path = p, .type = LLM_CONFIG_NUM, .offset = OFF(f, double), .ndef = {d}, range, .doc = doc_}
#define BOOL(p, f, d, doc_) \
    {.path = p, .type = LLM_CONFIG_BOOL, .offset = OFF(f, bool), .idef = d, .doc = doc_}
#define STR(p, f, d, minlen, doc_) \
    {.path = p, .type = LLM_CONFIG_STR, .offset = OFF(f, char *), .sdef = d, .ilo = minlen, .doc = doc_}
#define ENUM(p, f, d, names, doc_) \
    {.path = p, .type = LLM_CONFIG_ENUM, .offset = OFF_ENUM(f), .idef = d, .choices = names, .doc = doc_}
#define NUMS2(p, f, d0, d1, range, doc_) \
    {.path = p, .type = LLM_CONFIG_NUMS, .offset = OFF(f, double2), .len = 2, .ndef = {d0, d1}, range, .doc = doc_}

/* Number ranges. */
#define GT0 .lo = 0, .lo_open = true, .hi = INFINITY
#define GE0 .lo = 0, .hi = INFINITY
#define ANY .lo = -INFINITY, .hi = INFINITY
#define UNIT_OPEN .lo = 0, .hi = 1, .hi_open = true /* [0, 1) */
#define UNIT .lo = 0, .hi = 1                       /* [0, 1] */
#define UNIT_LEFT_OPEN .lo = 0, .lo_open = true, .hi = 1 /* (0, 1] */

/* Defaults: a small GPT-2-shaped model that trains on a laptop CPU in
 * minutes (DESIGN.md's example config), with nanoGPT/llm.c's optimizer
 * settings. */
static const struct llm_config_key keys[] = {
    INT("model.vocab_size", model.vocab_size, 4096, 1, "V: number of token ids; must match the tokenizer"),
    INT("model.context_length", model.context_length, 256, 1, "T: the longest sequence the model sees"),
    INT("model.d_model", model.d_model, 256, 1, "C: width of the residual stream"),
    INT("model.n_layers", model.n_layers, 4, 1, "L: number of transformer blocks"),
    INT("model.n_heads", model.n_heads, 4, 1, "query heads per layer; head size is d_model / n_heads"),
    INT("model.n_kv_heads", model.n_kv_heads, 0, 0, "key/value heads (grouped-query attention, 1 = multi-query); 0 = n_heads"),
    INT("model.d_ff", model.d_ff, 1024, 1, "hidden width of the MLP (of each expert with moe)"),
    ENUM("model.activation", model.activation, LLM_ACTIVATION_GELU, activation_names,
         "MLP nonlinearity; swiglu gates w1 and adds an up matrix w3"),
    ENUM("model.norm", model.norm, LLM_NORM_LAYERNORM, norm_names, "normalization layer"),
    NUM("model.norm_eps", model.norm_eps, 1e-5, GT0, "epsilon added to the variance in the norms"),
    ENUM("model.norm_position", model.norm_position, LLM_NORM_POSITION_PRE, norm_position_names,
         "norm before each sublayer (pre, GPT-2) or after the residual add (post, original transformer)"),
    ENUM("model.position", model.position, LLM_POSITION_LEARNED, position_names,
         "position encoding: learned table pos_emb, fixed sinusoids, or rotary in attention"),
    NUM("model.rope_theta", model.rope_theta, 10000.0, GT0, "rope base frequency (used when position is rope)"),
    ENUM("model.attention", model.attention, LLM_ATTENTION_FULL, attention_names,
         "causal attention over all earlier tokens, over the last window tokens, or linear attention"),
    INT("model.window", model.window, 0, 0, "sliding attention: keys each query sees, itself included"),
    ENUM("model.attention_kv", model.attention_kv, LLM_ATTENTION_KV_STANDARD, attention_kv_names,
         "key/value projections: standard, or multi-head latent attention (mla)"),
    INT("model.kv_lora_rank", model.kv_lora_rank, 0, 0, "mla: width of the compressed key/value latent"),
    ENUM("model.mlp", model.mlp, LLM_MLP_DENSE, mlp_names, "one MLP per layer, or a mixture of experts"),
    INT("model.n_experts", model.n_experts, 8, 1, "moe: experts per layer"),
    INT("model.top_k", model.top_k, 2, 1, "moe: experts each token is routed to"),
    NUM("model.aux_loss_coef", model.aux_loss_coef, 0.01, GE0, "moe: weight of the load-balancing loss"),
    BOOL("model.qk_norm", model.qk_norm, false, "normalize queries and keys per head before attention"),
    BOOL("model.bias", model.bias, true, "biases in the linear layers and layernorms"),
    BOOL("model.tie_embeddings", model.tie_embeddings, true, "the output layer reuses tok_emb.weight (no lm_head.weight)"),
    NUM("model.dropout", model.dropout, 0.0, UNIT_OPEN, "dropout probability in training"),
    NUM("model.init_std", model.init_std, 0.02, GT0, "standard deviation of the normal weight init"),

    STR("data.train", data.train, "", 0, "training data: a token shard (pretrain) or JSONL (sft, dpo, grpo); \"\" = unset"),
    STR("data.val", data.val, "", 0, "validation data, in data.train's format (\"\" = unset)"),
    STR("data.tokenizer", data.tokenizer, "", 0, "tokenizer.json of the shards (\"\" = unset)"),
    ENUM("data.order", data.order, LLM_DATA_RANDOM, order_names,
         "training windows: uniformly random (seeded), or sequential epochs over the data"),
    {.path = "data.eot", .type = LLM_CONFIG_INT, .offset = OFF(data.eot, int), .idef = -1, .ilo = -1,
     .ihi = INT_MAX, .doc = "end-of-text token id that separates documents; -1 = none"},
    ENUM("data.boundaries", data.boundaries, LLM_DATA_BOUNDARIES_AUTO, boundaries_names,
         "align: windows start at document starts and the loss stops at the document's end; "
         "cross: windows span documents; auto = align when data.eot >= 0"),

    INT("train.batch_size", train.batch_size, 8, 1, "B: sequences per micro-batch"),
    INT("train.grad_accum", train.grad_accum, 1, 1, "micro-batches accumulated per optimizer step"),
    I64("train.steps", train.steps, 1000, 0, "optimizer steps"),
    I64("train.seed", train.seed, 1, 0, "seed of initialization, data order and dropout"),
    INT("train.eval_every", train.eval_every, 100, 0, "steps between evaluations on data.val; 0 = never"),
    INT("train.eval_batches", train.eval_batches, 10, 1, "batches per evaluation"),
    INT("train.checkpoint_every", train.checkpoint_every, 500, 0, "steps between checkpoints; 0 = only `final.llm`"),
    INT("train.keep_checkpoints", train.keep_checkpoints, 0, 0, "newest `ckpt_<step>.llm` files kept (`final.llm` always is); 0 = all"),
    STR("train.out_dir", train.out_dir, "runs/default", 1, "run folder: config.json, metrics.jsonl, checkpoints"),
    NUM("train.clip_grad", train.clip_grad, 1.0, GE0, "largest global gradient norm; 0 = no clipping"),
    ENUM("train.device", train.device, LLM_DEVICE_AUTO, device_names, "backend; auto = cuda when a GPU is usable, else cpu"),
    INT("train.threads", train.threads, 0, 0, "CPU threads; 0 = all cores"),
    INT("train.log_every", train.log_every, 10, 1, "steps between log lines and metrics.jsonl rows"),
    I64("train.batch_tokens", train.batch_tokens, 0, 0,
        "tokens per optimizer step; sets grad_accum = batch_tokens / (batch_size * context_length); 0 = unset"),
    NUM("train.spike_factor", train.spike_factor, 0.0, GE0,
        "skip a step whose loss exceeds this times the running mean loss; 0 = off (NaN/inf always skip)"),
    INT("train.max_skipped", train.max_skipped, 10, 0, "stop the run after this many skipped steps"),
    STR("train.init_from", train.init_from, "", 0,
        "sft/dpo/grpo: the checkpoint to start from (its model replaces the model section); pretrain: "
        "a warm start from its weights (same model; fresh optimizer and schedule); \"\" = unset"),

    ENUM("optim.name", optim.name, LLM_OPTIM_ADAMW, optim_names, "optimizer"),
    NUM("optim.lr", optim.lr, 3e-4, GT0, "peak learning rate"),
    NUMS2("optim.betas", optim.betas, 0.9, 0.95, UNIT_OPEN, "adamw/soap decay rates of the first and second moments"),
    NUM("optim.eps", optim.eps, 1e-8, GT0, "adamw/soap denominator epsilon"),
    NUM("optim.weight_decay", optim.weight_decay, 0.1, GE0, "decoupled weight decay"),
    NUM("optim.momentum", optim.momentum, 0.95, UNIT_OPEN, "muon/sgd momentum"),
    BOOL("optim.nesterov", optim.nesterov, true, "muon/sgd: Nesterov momentum"),
    INT("optim.precondition_frequency", optim.precondition_frequency, 10, 1,
        "soap: steps between updates of the preconditioner eigenbases"),
    INT("optim.max_precond_dim", optim.max_precond_dim, 2048, 1,
        "soap: a side of a matrix longer than this keeps the identity basis (no rotation)"),
    NUM("optim.adamw_lr", optim.adamw_lr, 0.0, GE0,
        "muon: peak lr of embeddings, head, norms and biases (AdamW); 0 = optim.lr"),
    BOOL("optim.decay_embeddings", optim.decay_embeddings, false, "apply weight decay to tok_emb and pos_emb"),
    BOOL("optim.decay_norms_biases", optim.decay_norms_biases, false, "apply weight decay to norm gains and biases"),

    ENUM("schedule.name", schedule.name, LLM_SCHEDULE_COSINE, schedule_names,
         "learning-rate schedule after warmup: cosine, warmup-stable-decay, constant or linear decay"),
    I64("schedule.warmup", schedule.warmup, 100, 0, "steps of linear warmup from 0 to optim.lr"),
    NUM("schedule.min_lr_ratio", schedule.min_lr_ratio, 0.1, UNIT, "the final learning rate is optim.lr * min_lr_ratio"),
    NUM("schedule.decay_fraction", schedule.decay_fraction, 0.2, UNIT, "wsd: fraction of train.steps spent decaying"),
    ENUM("schedule.cooldown", schedule.cooldown, LLM_COOLDOWN_1_SQRT, cooldown_names, "wsd: shape of the decay"),

    STR("distill.teacher", distill.teacher, "", 0,
        "pretrain: a teacher checkpoint (same vocabulary) whose next-token distribution the model also learns; \"\" = none"),
    NUM("distill.weight", distill.weight, 1.0, UNIT,
        "alpha: loss = (1 - alpha) cross-entropy + alpha tau^2 KL(teacher || model), over the same target tokens"),
    NUM("distill.temperature", distill.temperature, 1.0, GT0, "tau: both distributions are softmax(logits / tau)"),

    ENUM("sft.task", sft.task, LLM_SFT_LM, sft_task_names,
         "lm: fine-tune on responses; reward: a reward model on {prompt, chosen, rejected} pairs (Bradley-Terry)"),
    ENUM("sft.template", sft.template, LLM_CHAT_SIMPLE, template_names,
         "chat template of {\"messages\"} examples (docs/align.md); its special tokens are added when missing"),
    BOOL("sft.add_eot", sft.add_eot, true, "end each response with the end-of-text token, so the model learns to stop"),
    BOOL("sft.packing", sft.packing, false,
         "pack whole examples into rows of context_length tokens; each attends only to itself, positions restart"),

    NUM("dpo.beta", dpo.beta, 0.1, GT0, "inverse temperature of the implicit reward beta * log(pi / ref)"),
    ENUM("dpo.loss", dpo.loss, LLM_DPO_SIGMOID, dpo_loss_names,
         "sigmoid (Rafailov et al. 2023), ipo (Azar et al. 2023) or hinge (SLiC, Zhao et al. 2023)"),

    INT("grpo.group_size", grpo.group_size, 8, 1, "G: completions sampled per prompt (grpo needs 2 or more)"),
    INT("grpo.prompts_per_step", grpo.prompts_per_step, 8, 1,
        "prompts per rollout batch (prompts x group_size = train.batch_size x train.grad_accum)"),
    INT("grpo.max_tokens", grpo.max_tokens, 64, 1, "new tokens per completion"),
    NUM("grpo.temperature", grpo.temperature, 1.0, GT0, "sampling temperature of the rollouts"),
    NUM("grpo.top_p", grpo.top_p, 1.0, UNIT_LEFT_OPEN, "nucleus sampling of the rollouts"),
    STR("grpo.stop", grpo.stop, "", 0, "completions end before this string (\"\" = only at end-of-text)"),
    NUM("grpo.epsilon", grpo.epsilon, 0.2, UNIT_OPEN, "policy ratio clipped below at 1 - epsilon"),
    NUM("grpo.epsilon_high", grpo.epsilon_high, 0.2, GE0,
        "policy ratio clipped above at 1 + epsilon_high (DAPO's clip-higher: 0.28)"),
    NUM("grpo.beta", grpo.beta, 0.0, GE0, "KL penalty to the reference model (k3 estimator); 0 = none"),
    BOOL("grpo.scale_rewards", grpo.scale_rewards, true,
         "advantages divided by the group's reward std; false = Dr. GRPO (Liu et al. 2025)"),
    ENUM("grpo.loss_agg", grpo.loss_agg, LLM_GRPO_AGG_GRPO, agg_names,
         "grpo: mean per sequence then over sequences; dr_grpo: sum / (sequences x max_tokens); dapo: mean over tokens"),
    INT("grpo.epochs", grpo.epochs, 1, 1, "optimizer steps on each rollout batch (old log-probs kept for the ratio)"),
    STR("grpo.verifier", grpo.verifier, "exact", 1,
        "reward: comma-separated name[:weight] of exact, regex, format, command (docs/verify.md)"),
    STR("grpo.marker", grpo.marker, "", 0, "exact: the answer follows the last marker (\"\" = the last number)"),
    STR("grpo.regex", grpo.regex, "", 0, "regex verifier: reward 1 when the completion matches"),
    STR("grpo.format_tags", grpo.format_tags, "<answer>,</answer>", 0,
        "format verifier: the completion must hold exactly one open...close pair"),
    STR("grpo.command", grpo.command, "", 0,
        "command verifier: program and arguments (split at spaces, no shell); JSONL in, one reward per line out"),
    NUM("grpo.command_timeout", grpo.command_timeout, 60.0, GT0, "command verifier: seconds per call"),
    INT("grpo.sample_every", grpo.sample_every, 10, 0, "steps between completions written to samples.jsonl; 0 = never"),
    STR("grpo.reward_model", grpo.reward_model, "", 0,
        "a reward model checkpoint (`llm sft --task reward`) whose score is added to the reward; \"\" = none"),
    NUM("grpo.reward_model_weight", grpo.reward_model_weight, 1.0, ANY,
        "weight of the reward model's score"),

    NUM("ppo.gamma", ppo.gamma, 1.0, UNIT, "GAE discount gamma"),
    NUM("ppo.lam", ppo.lam, 0.95, UNIT, "GAE lambda: 0 = one-step TD advantages, 1 = Monte Carlo returns"),
    NUM("ppo.kl_coef", ppo.kl_coef, 0.05, GE0, "per-token KL penalty -kl_coef (log pi - log ref) in the reward"),
    NUM("ppo.vf_coef", ppo.vf_coef, 0.1, GT0, "weight of the value loss"),
    NUM("ppo.cliprange_value", ppo.cliprange_value, 0.2, GT0, "values clipped to old value +- this in the value loss"),
    STR("ppo.value_from", ppo.value_from, "", 0,
        "the value model's starting checkpoint (a reward model, ...); \"\" = train.init_from"),
    NUM("ppo.value_lr", ppo.value_lr, 0.0, GE0, "the value model's peak learning rate; 0 = optim.lr"),
    NUM("ppo.value_clip_grad", ppo.value_clip_grad, 1.0, GE0, "the value gradient's norm clipped to this; 0 = none"),
};

static const struct llm_config_section sections[] = {
    {"model", "The decoder-only transformer (DESIGN.md, \"Model\")."},
    {"data", "Inputs of training; paths are relative to the working directory."},
    {"train", "The training loop, its evaluations, checkpoints and logs."},
    {"optim", "The optimizer; keys of other optimizers are accepted and ignored."},
    {"schedule", "The learning rate over the steps: linear warmup, then the named shape."},
    {"distill", "Knowledge distillation (`llm pretrain`): a teacher's distributions as soft targets."},
    {"sft", "Supervised fine-tuning (`llm sft`): data and chat template."},
    {"dpo", "Direct preference optimization (`llm dpo`)."},
    {"grpo", "Reinforcement learning with verifiable rewards (`llm grpo`): rollouts, advantages, the clipped objective."},
    {"ppo", "PPO with a value model (`llm ppo`); rollouts and rewards come from the grpo section."},
};

const struct llm_config_key *llm_config_keys(size_t *n)
{
    *n = sizeof(keys) / sizeof(keys[0]);
    return keys;
}

const struct llm_config_section *llm_config_sections(size_t *n)
{
    *n = sizeof(sections) / sizeof(sections[0]);
    return sections;
}

const struct llm_config_key *llm_config_find(const char *path)
{
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(keys[i].path, path) == 0)
            return &keys[i];
    return NULL;
}

const char *llm_config_choice_name(const char *path, int value)
{
    const struct llm_config_key *k = llm_config_find(path);
    if (!k || k->type != LLM_CONFIG_ENUM || value < 0)
        return NULL;
    for (int i = 0; k->choices[i]; i++)
        if (i == value)
            return k->choices[i];
    return NULL;
}

/* ---- rules across keys; each names the key it blames ---- */

static int rule_heads(const struct llm_config *c)
{
    if (c->model.d_model % c->model.n_heads)
        return llm_err(LLM_EINVAL, "model.n_heads: expected a divisor of model.d_model (%d), got %d",
                       c->model.d_model, c->model.n_heads);
    return 0;
}

static int rule_kv_heads(const struct llm_config *c)
{
    if (c->model.n_kv_heads && c->model.n_heads % c->model.n_kv_heads)
        return llm_err(LLM_EINVAL, "model.n_kv_heads: expected 0 or a divisor of model.n_heads (%d), got %d",
                       c->model.n_heads, c->model.n_kv_heads);
    return 0;
}

static int rule_rope(const struct llm_config *c)
{
    /* rope rotates pairs of channels within a head */
    int hs = c->model.d_model / c->model.n_heads;
    if (c->model.position == LLM_POSITION_ROPE && hs % 2)
        return llm_err(LLM_EINVAL, "model.position: rope needs an even head size, got "
                       "model.d_model / model.n_heads = %d / %d = %d",
                       c->model.d_model, c->model.n_heads, hs);
    return 0;
}

static int rule_top_k(const struct llm_config *c)
{
    if (c->model.mlp == LLM_MLP_MOE && c->model.top_k > c->model.n_experts)
        return llm_err(LLM_EINVAL, "model.top_k: expected at most model.n_experts (%d) with mlp \"moe\", got %d",
                       c->model.n_experts, c->model.top_k);
    return 0;
}

static int rule_window(const struct llm_config *c)
{
    if (c->model.attention == LLM_ATTENTION_SLIDING && c->model.window < 1)
        return llm_err(LLM_EINVAL, "model.window: expected an integer >= 1 with attention \"sliding\", got %d",
                       c->model.window);
    return 0;
}

static int rule_mla(const struct llm_config *c)
{
    if (c->model.attention_kv == LLM_ATTENTION_KV_MLA && c->model.kv_lora_rank < 1)
        return llm_err(LLM_EINVAL, "model.kv_lora_rank: expected an integer >= 1 with attention_kv \"mla\", got %d",
                       c->model.kv_lora_rank);
    return 0;
}

static int rule_batch_tokens(const struct llm_config *c)
{
    int64_t seq = (int64_t)c->train.batch_size * c->model.context_length;
    if (c->train.batch_tokens && c->train.batch_tokens % seq)
        return llm_err(LLM_EINVAL, "train.batch_tokens: expected a multiple of train.batch_size * "
                       "model.context_length (%lld), got %lld", (long long)seq,
                       (long long)c->train.batch_tokens);
    return 0;
}

static int rule_eot(const struct llm_config *c)
{
    if (c->data.eot >= c->model.vocab_size)
        return llm_err(LLM_EINVAL, "data.eot: expected a token id below model.vocab_size (%d), got %d",
                       c->model.vocab_size, c->data.eot);
    return 0;
}

static int rule_warmup(const struct llm_config *c)
{
    if (c->schedule.warmup > c->train.steps)
        return llm_err(LLM_EINVAL, "schedule.warmup: expected at most train.steps (%lld), got %lld",
                       (long long)c->train.steps, (long long)c->schedule.warmup);
    return 0;
}

/* rule_heads runs first: the others divide by n_heads only after it passed. */
static const struct llm_config_rule rules[] = {
    {"`model.n_heads` divides `model.d_model`", rule_heads},
    {"`model.n_kv_heads` is 0 or divides `model.n_heads`", rule_kv_heads},
    {"with `model.position` rope, the head size `model.d_model / model.n_heads` is even", rule_rope},
    {"with `model.mlp` moe, `model.top_k` <= `model.n_experts`", rule_top_k},
    {"with `model.attention` sliding, `model.window` >= 1", rule_window},
    {"with `model.attention_kv` mla, `model.kv_lora_rank` >= 1", rule_mla},
    {"`schedule.warmup` <= `train.steps`", rule_warmup},
    {"`train.batch_tokens` is 0 or a multiple of `train.batch_size * model.context_length`", rule_batch_tokens},
    {"`data.eot` < `model.vocab_size`", rule_eot},
};

const struct llm_config_rule *llm_config_rules(size_t *n)
{
    *n = sizeof(rules) / sizeof(rules[0]);
    return rules;
}
