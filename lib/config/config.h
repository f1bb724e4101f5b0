/* config.h: the run configuration: JSON (over cJSON) loaded into one
 * validated struct. One key table (schema.c) gives every key's JSON path,
 * type, default, range and doc; defaults, loading, --set overrides,
 * validation, the effective-config JSON and docs/config.md all derive from it,
 * so they cannot drift apart. */
#ifndef LLM_CONFIG_H
#define LLM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* Enum keys are stored as these C enums; the JSON spelling of each value is
 * in the key table (llm_config_choice_name turns one into the other). */
enum llm_activation { LLM_ACTIVATION_RELU, LLM_ACTIVATION_GELU, LLM_ACTIVATION_SWIGLU, LLM_ACTIVATION_RELU2 };
enum llm_norm { LLM_NORM_LAYERNORM, LLM_NORM_RMSNORM };
enum llm_norm_position { LLM_NORM_POSITION_PRE, LLM_NORM_POSITION_POST };
enum llm_position { LLM_POSITION_LEARNED, LLM_POSITION_SINUSOIDAL, LLM_POSITION_ROPE };
enum llm_attention { LLM_ATTENTION_FULL, LLM_ATTENTION_SLIDING, LLM_ATTENTION_LINEAR };
enum llm_attention_kv { LLM_ATTENTION_KV_STANDARD, LLM_ATTENTION_KV_MLA };
enum llm_mlp { LLM_MLP_DENSE, LLM_MLP_MOE };
enum llm_device { LLM_DEVICE_CPU, LLM_DEVICE_CUDA, LLM_DEVICE_AUTO };
enum llm_optim_name { LLM_OPTIM_ADAMW, LLM_OPTIM_MUON, LLM_OPTIM_SOAP, LLM_OPTIM_SGD };
enum llm_schedule_name { LLM_SCHEDULE_COSINE, LLM_SCHEDULE_WSD, LLM_SCHEDULE_CONSTANT, LLM_SCHEDULE_LINEAR };
enum llm_cooldown { LLM_COOLDOWN_LINEAR, LLM_COOLDOWN_1_SQRT };
enum llm_data_order { LLM_DATA_RANDOM, LLM_DATA_SEQUENTIAL };
enum llm_data_boundaries { LLM_DATA_BOUNDARIES_AUTO, LLM_DATA_BOUNDARIES_ALIGN, LLM_DATA_BOUNDARIES_CROSS };
enum llm_chat_template { LLM_CHAT_SIMPLE, LLM_CHAT_CHATML };
enum llm_sft_task { LLM_SFT_LM, LLM_SFT_REWARD };
enum llm_dpo_loss { LLM_DPO_SIGMOID, LLM_DPO_IPO, LLM_DPO_HINGE };
enum llm_grpo_agg { LLM_GRPO_AGG_GRPO, LLM_GRPO_AGG_DR_GRPO, LLM_GRPO_AGG_DAPO };

/* Dim letters as in llm.c: V vocab, T sequence, C channels, L layers,
 * NH heads, HS = C / NH head size, B batch. */
struct llm_model_config {
    int vocab_size;        /* V: token ids are in [0, V) */
    int context_length;    /* T max: positions a sequence can have */
    int d_model;           /* C: width of the residual stream */
    int n_layers;          /* L */
    int n_heads;           /* NH query heads; HS = C / NH */
    int n_kv_heads;        /* key/value heads (GQA/MQA); 0 = n_heads (llm_config_kv_heads) */
    int d_ff;              /* hidden width of the MLP (of each expert with moe) */
    enum llm_activation activation;
    enum llm_norm norm;
    double norm_eps;       /* added to the variance inside the norm */
    enum llm_norm_position norm_position;
    enum llm_position position;
    double rope_theta;     /* rope base frequency */
    enum llm_attention attention;
    int window;            /* sliding attention: keys per query, itself included */
    enum llm_attention_kv attention_kv;
    int kv_lora_rank;      /* mla: width of the compressed key/value latent */
    enum llm_mlp mlp;
    int n_experts;         /* moe: experts per layer */
    int top_k;             /* moe: experts each token is routed to */
    double aux_loss_coef;  /* moe: weight of the load-balancing loss */
    bool qk_norm;          /* normalize q and k per head before attention */
    bool bias;             /* biases in linear layers and layernorm */
    bool tie_embeddings;   /* lm_head shares tok_emb.weight */
    double dropout;        /* probability, training only */
    double init_std;       /* std of the normal init of weights */
};

struct llm_data_config {
    char *train;     /* token shard for training; "" = unset */
    char *val;       /* token shard for evaluation; "" = unset */
    char *tokenizer; /* tokenizer.json; "" = unset */
    enum llm_data_order order;           /* random windows or sequential epochs */
    int eot;                             /* end-of-text token id; -1 = none */
    enum llm_data_boundaries boundaries; /* auto = align when eot >= 0, else cross */
};

struct llm_train_config {
    int batch_size;       /* B: sequences per micro-batch */
    int grad_accum;       /* micro-batches per optimizer step */
    int64_t steps;        /* optimizer steps */
    int64_t seed;
    int eval_every;       /* steps between evaluations; 0 = never */
    int eval_batches;     /* batches per evaluation */
    int checkpoint_every; /* steps between checkpoints; 0 = final only */
    int keep_checkpoints; /* newest ckpt_<step>.llm kept; 0 = all */
    char *out_dir;        /* run folder */
    double clip_grad;     /* max global gradient norm; 0 = no clipping */
    enum llm_device device;
    int threads;          /* CPU threads; 0 = all cores */
    int log_every;        /* steps between log lines and metrics rows */
    int64_t batch_tokens; /* tokens per optimizer step; 0 = batch_size * T * grad_accum */
    double spike_factor;  /* skip a step whose loss exceeds this times the running mean; 0 = off */
    int max_skipped;      /* stop after this many skipped (NaN/spike) steps */
    char *init_from;      /* sft/dpo/grpo: the checkpoint to start from; "" = unset */
};

struct llm_optim_config {
    enum llm_optim_name name;
    double lr;                 /* peak learning rate */
    double betas[2];           /* adamw/soap moment decays */
    double eps;
    double weight_decay;       /* decoupled, on matrices */
    double momentum;           /* muon and sgd */
    bool nesterov;             /* muon and sgd */
    int precondition_frequency; /* soap: steps between eigenbasis updates */
    int max_precond_dim;       /* soap: sides larger than this are not rotated */
    double adamw_lr;           /* muon: peak lr of the AdamW-handled tensors; 0 = optim.lr */
    bool decay_embeddings;     /* weight decay on tok_emb/pos_emb too */
    bool decay_norms_biases;   /* weight decay on norm gains and biases too */
};

struct llm_schedule_config {
    enum llm_schedule_name name;
    int64_t warmup;         /* steps of linear warmup from 0 */
    double min_lr_ratio;    /* final lr = lr * min_lr_ratio */
    double decay_fraction;  /* wsd: fraction of train.steps spent decaying */
    enum llm_cooldown cooldown; /* wsd: shape of the decay */
};

/* Knowledge distillation in pretraining (lib/train/distill.h, docs/train.md). */
struct llm_distill_config {
    char *teacher;                   /* the teacher checkpoint; "" = no distillation */
    double weight;                   /* alpha: loss = (1 - alpha) CE + alpha tau^2 KL(teacher || student) */
    double temperature;              /* tau: both distributions softened by it */
};

/* Alignment (lib/align, docs/align.md). */
struct llm_sft_config {
    enum llm_sft_task task;          /* lm: fine-tune the language model; reward: train a reward model */
    enum llm_chat_template template; /* how {"messages": [...]} examples are rendered */
    bool add_eot;                    /* end each response with the end-of-text token (learned: stops generation) */
    bool packing;                    /* several examples per row, each attending only to itself */
};

struct llm_dpo_config {
    double beta;                     /* strength of the implicit KL to the reference */
    enum llm_dpo_loss loss;          /* sigmoid (DPO), ipo, hinge (SLiC) */
};

struct llm_grpo_config {
    int group_size;                  /* G: completions per prompt */
    int prompts_per_step;            /* prompts per rollout batch */
    int max_tokens;                  /* new tokens per completion */
    double temperature, top_p;       /* sampling of the rollouts */
    char *stop;                      /* completions end before this string; "" = none */
    double epsilon, epsilon_high;    /* clip range of the policy ratio: [1 - eps, 1 + eps_high] */
    double beta;                     /* KL penalty to the reference (k3 estimator); 0 = none */
    bool scale_rewards;              /* divide advantages by the group's std (false: Dr. GRPO) */
    enum llm_grpo_agg loss_agg;      /* grpo (per sequence), dr_grpo (constant), dapo (per token) */
    int epochs;                      /* optimizer steps per rollout batch */
    char *verifier;                  /* "exact", "exact:1,format:0.2", ... (lib/align/verify.h) */
    char *marker;                    /* exact: the answer follows the last marker ("" = the last number) */
    char *regex;                     /* regex verifier's pattern */
    char *format_tags;               /* format verifier: "open,close" */
    char *command;                   /* command verifier: program and arguments, split at spaces (no shell) */
    double command_timeout;          /* seconds per call */
    int sample_every;                /* steps between completions logged to samples.jsonl; 0 = never */
    char *reward_model;              /* a reward model (`llm sft --task reward`) added to the verifier's reward; "" = none */
    double reward_model_weight;      /* its weight */
};

/* PPO (`llm ppo`): rollouts, verifier, reward model, epsilon and epochs
 * come from the grpo section; these are its own. */
struct llm_ppo_config {
    double gamma, lam;               /* GAE discount and lambda (Schulman et al. 2016) */
    double kl_coef;                  /* per-token KL penalty to the reference in the reward */
    double vf_coef;                  /* weight of the value loss */
    double cliprange_value;          /* values clipped to old +- this in the value loss */
    char *value_from;                /* the value model's starting checkpoint; "" = train.init_from */
    double value_lr;                 /* the value optimizer's peak lr; 0 = optim.lr */
    double value_clip_grad;          /* the value gradient's norm clipped to this; 0 = no clipping */
};

/* Owns its strings (malloc'd, never NULL once loaded or defaulted): free them
 * with llm_config_release; copy a config with llm_config_copy, not '='. */
struct llm_config {
    struct llm_model_config model;
    struct llm_data_config data;
    struct llm_train_config train;
    struct llm_optim_config optim;
    struct llm_schedule_config schedule;
    struct llm_distill_config distill;
    struct llm_sft_config sft;
    struct llm_dpo_config dpo;
    struct llm_grpo_config grpo;
    struct llm_ppo_config ppo;
};

/* ---- the key table ---- */

enum llm_config_type {
    LLM_CONFIG_INT,  /* int; bounds ilo..ihi */
    LLM_CONFIG_I64,  /* int64_t; bounds ilo..ihi (at most 2^53-1, exact in JSON) */
    LLM_CONFIG_NUM,  /* double; bounds lo..hi, each open or closed */
    LLM_CONFIG_BOOL, /* bool */
    LLM_CONFIG_STR,  /* char * (owned); ilo = minimum length */
    LLM_CONFIG_ENUM, /* a C enum (int-sized); JSON string among choices */
    LLM_CONFIG_NUMS, /* double[len]; each element within lo..hi */
};

#define LLM_CONFIG_MAX_NUMS 4

struct llm_config_key {
    const char *path;            /* JSON path, "model.d_model" */
    enum llm_config_type type;
    size_t offset;               /* of the field in struct llm_config */
    int64_t ilo, ihi;            /* INT/I64 inclusive bounds; STR min length in ilo */
    double lo, hi;               /* NUM/NUMS bounds (+-INFINITY = none) */
    bool lo_open, hi_open;       /* NUM/NUMS: bound excluded */
    const char *const *choices;  /* ENUM: NULL-terminated; index = C value */
    int len;                     /* NUMS: element count */
    int64_t idef;                /* default of INT, I64, BOOL, ENUM */
    double ndef[LLM_CONFIG_MAX_NUMS]; /* default of NUM (ndef[0]) and NUMS */
    const char *sdef;            /* default of STR */
    const char *doc;             /* one line, for docs/config.md */
};

struct llm_config_section {
    const char *name; /* "model" */
    const char *doc;  /* one line */
};

/* A check that involves several keys (run after the per-key checks). */
struct llm_config_rule {
    const char *doc;                            /* one line, for the docs */
    int (*check)(const struct llm_config *c);   /* 0 or LLM_EINVAL naming a key */
};

/* The tables, in document order (borrowed, static). */
const struct llm_config_key *llm_config_keys(size_t *n);
const struct llm_config_section *llm_config_sections(size_t *n);
const struct llm_config_rule *llm_config_rules(size_t *n);
/* The key with this JSON path, or NULL. */
const struct llm_config_key *llm_config_find(const char *path);
/* JSON spelling of value for the enum key at path ("model.activation", 1 ->
 * "gelu"); NULL if path is not an enum key or value is out of range. */
const char *llm_config_choice_name(const char *path, int value);

/* ---- lifecycle ---- */

/* Sets every key to its default. c need not be initialized (it is
 * overwritten, not released). Returns 0 or LLM_ENOMEM; either way
 * llm_config_release(c) is safe and needed. */
int llm_config_defaults(struct llm_config *c);
/* Frees the strings of c and sets them to NULL; safe to call twice. */
void llm_config_release(struct llm_config *c);
/* Deep copy of src into dst (dst uninitialized). On error dst is released. */
int llm_config_copy(struct llm_config *dst, const struct llm_config *src);

/* ---- loading ---- */

/* The whole pipeline of a command: defaults, then the JSON file at path (NULL
 * = none, "-" = stdin) on top, then each "PATH=VALUE" of sets in order, then
 * llm_config_validate. c need not be initialized; release it afterwards
 * whether this succeeds or not. Errors (LLM_EINVAL, LLM_EIO, LLM_ENOMEM) are
 * one line: about the file they start "PATH_OF_FILE: " ("<stdin>: " for "-"),
 * about --set "--set KEY: ", otherwise the JSON path ("schedule.warmup: ...").
 * Not thread-safe: cJSON's parser keeps its error position in a global. */
#define LLM_CONFIG_MAX_FILE (16u << 20)
int llm_config_load(struct llm_config *c, const char *path, const char *const *sets, int nsets);

/* Applies the keys present in root (an object of sections) on top of c,
 * which must hold a config (defaults or loaded), then validates. Keys absent
 * from root keep their value. Unknown or duplicate keys, wrong types and
 * values out of range are LLM_EINVAL naming the JSON path. On error c may be
 * partly updated but stays releasable. */
int llm_config_from_json(struct llm_config *c, const cJSON *root);

/* Applies one "PATH=VALUE" override to c (no cross-key validation: call
 * llm_config_validate after the last one). VALUE is read as JSON when it
 * parses as JSON (3e-4, true, [0.9,0.95], "x"); otherwise, and for string and
 * enum keys whenever it is not a JSON string, it is the text itself, so
 * data.train=foo.bin and schedule.cooldown=1-sqrt work unquoted. */
int llm_config_set(struct llm_config *c, const char *assignment);

/* Checks every key's value against its type and range, then the rules that
 * involve several keys (listed in docs/config.md). 0 or LLM_EINVAL. */
int llm_config_validate(const struct llm_config *c);

/* ---- output ---- */

/* Every key with its value, as nested objects; loading it back with
 * llm_config_from_json gives an identical struct. Caller cJSON_Deletes it.
 * NULL (LLM_ENOMEM set) on allocation failure. */
cJSON *llm_config_to_json(const struct llm_config *c);
/* The same as indented JSON text with a final newline, keys in table order.
 * Caller frees. NULL (error set) on failure. */
char *llm_config_to_string(const struct llm_config *c);
/* Writes docs/config.md (markdown: one table per section, the cross-key
 * rules, the defaults as JSON). 0, or LLM_EIO if writing failed. */
int llm_config_write_docs(FILE *f);

/* Key/value heads, with 0 meaning one per query head. */
static inline int llm_config_kv_heads(const struct llm_model_config *m)
{
    return m->n_kv_heads > 0 ? m->n_kv_heads : m->n_heads;
}

#endif
