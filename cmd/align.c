/* align.c: `llm sft`, `llm dpo`, `llm grpo` and `llm ppo CONFIG.json`: alignment
 * of train.init_from through the training loop (lib/align, lib/train). The four
 * differ only in their task; flags, loading and the run are shared here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align/dpo.h"
#include "align/grpo.h"
#include "align/ppo.h"
#include "align/reward.h"
#include "align/sft.h"
#include "cmd.h"
#include "config/config.h"
#include "core/log.h"
#include "nn/backend.h"

/* One alignment method: its task, built over the loaded model. */
struct method {
    const char *name, *summary, *epilog;
    void *(*init)(struct llm_config *c, struct llm_align_base *b, struct llm_model *m, int *rc);
    void (*release)(void *t);
    const struct llm_train_task *(*task)(const void *t);
};

static void *reward_init(struct llm_config *c, struct llm_align_base *b, struct llm_model *m, int *rc)
{
    struct llm_reward *t = malloc(sizeof(*t));
    *rc = t ? llm_reward_init(t, c, b, m) : llm_err(LLM_ENOMEM, "out of memory");
    if (*rc)
        free(t);
    return *rc ? NULL : t;
}
static void reward_release(void *t) { llm_reward_release(t), free(t); }
static const struct llm_train_task *reward_task(const void *t) { return &((const struct llm_reward *)t)->task; }

static void *sft_init(struct llm_config *c, struct llm_align_base *b, struct llm_model *m, int *rc)
{
    struct llm_sft *t = malloc(sizeof(*t));
    *rc = t ? llm_sft_init(t, c, b, m) : llm_err(LLM_ENOMEM, "out of memory");
    if (*rc)
        free(t);
    return *rc ? NULL : t;
}
static void sft_release(void *t) { llm_sft_release(t), free(t); }
static const struct llm_train_task *sft_task(const void *t) { return &((const struct llm_sft *)t)->task; }

static void *dpo_init(struct llm_config *c, struct llm_align_base *b, struct llm_model *m, int *rc)
{
    struct llm_dpo *t = malloc(sizeof(*t));
    *rc = t ? llm_dpo_init(t, c, b, m) : llm_err(LLM_ENOMEM, "out of memory");
    if (*rc)
        free(t);
    return *rc ? NULL : t;
}
static void dpo_release(void *t) { llm_dpo_release(t), free(t); }
static const struct llm_train_task *dpo_task(const void *t) { return &((const struct llm_dpo *)t)->task; }

static void *grpo_init(struct llm_config *c, struct llm_align_base *b, struct llm_model *m, int *rc)
{
    struct llm_grpo *t = malloc(sizeof(*t));
    *rc = t ? llm_grpo_init(t, c, b, m) : llm_err(LLM_ENOMEM, "out of memory");
    if (*rc)
        free(t);
    return *rc ? NULL : t;
}
static void grpo_release(void *t) { llm_grpo_release(t), free(t); }
static const struct llm_train_task *grpo_task(const void *t) { return &((const struct llm_grpo *)t)->task; }

static void *ppo_init(struct llm_config *c, struct llm_align_base *b, struct llm_model *m, int *rc)
{
    struct llm_ppo *t = malloc(sizeof(*t));
    *rc = t ? llm_ppo_init(t, c, b, m) : llm_err(LLM_ENOMEM, "out of memory");
    if (*rc)
        free(t);
    return *rc ? NULL : t;
}
static void ppo_release(void *t) { llm_ppo_release(t), free(t); }
static const struct llm_train_task *ppo_task(const void *t) { return &((const struct llm_ppo *)t)->task; }

static const struct method SFT = {
    "sft", "Supervised fine-tuning of train.init_from on prompt/response or chat examples (data.train).",
    "The loss is on response tokens only, per token over each step's accumulated batch.\n"
    "Chat examples ({\"messages\"}) are rendered with sft.template. --task reward (sft.task) trains a\n"
    "reward model on {prompt, chosen, rejected} pairs instead (Bradley-Terry). See docs/align.md.",
    sft_init, sft_release, sft_task,
};
/* `llm sft --task reward` (sft.task = reward): a reward model on preference pairs */
static const struct method REWARD = {
    "sft", NULL, NULL, reward_init, reward_release, reward_task,
};
static const struct method DPO = {
    "dpo", "Direct preference optimization of train.init_from on {prompt, chosen, rejected} pairs.",
    "The reference is the starting model (its log-probabilities computed once). dpo.loss: sigmoid,\n"
    "ipo or hinge; dpo.beta. Metrics: rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins,\n"
    "logps/chosen, logps/rejected. See docs/align.md.",
    dpo_init, dpo_release, dpo_task,
};
static const struct method GRPO = {
    "grpo", "Reinforcement learning of train.init_from with verifiable rewards (GRPO) on {prompt, answer} data.",
    "Each step samples grpo.group_size completions per prompt, scores them with grpo.verifier, and\n"
    "optimizes the clipped objective on group-normalized advantages. Completions are logged to\n"
    "samples.jsonl. See docs/align.md and docs/verify.md.",
    grpo_init, grpo_release, grpo_task,
};
static const struct method PPO = {
    "ppo", "RLHF with PPO (Ouyang et al. 2022) of train.init_from on {prompt, answer} data, with a value model.",
    "Rollouts, verifier, reward model, epsilon and epochs come from the grpo section (group_size may be 1);\n"
    "per-token rewards -ppo.kl_coef x (log pi - log ref) plus the score at the last token, GAE\n"
    "(ppo.gamma, ppo.lam), clipped policy and value losses. The value model (ppo.value_from, <|value|>)\n"
    "is saved to train.out_dir/value.llm with every checkpoint. See docs/align.md.",
    ppo_init, ppo_release, ppo_task,
};

static int run(const struct method *me, int argc, char **argv)
{
    struct llm_strlist sets = {0};
    const char *resume = NULL, *task = NULL;
    long stop_after = 0;
    int json = 0;
    const struct llm_opt opts[] = {
        {"task", 0, LLM_OPT_STR, &task, "lm|reward", "sft only: what to train (sft.task; default lm)"},
        {"set", 0, LLM_OPT_LIST, &sets, "PATH=VALUE", "override one config key, e.g. train.init_from=run/final.llm"},
        {"resume", 0, LLM_OPT_STR, &resume, "DIR|CKPT", "resume from this checkpoint or run folder "
                                                        "(default: the newest checkpoint in train.out_dir)"},
        {"stop-after", 0, LLM_OPT_INT, &stop_after, "N", "stop (with a checkpoint) after N steps; rerun to continue"},
        {"json", 0, LLM_OPT_FLAG, &json, NULL, "print the final summary as JSON on stdout"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = me->name,
        .usage = "CONFIG.json [--set PATH=VALUE]... [--resume DIR|CKPT] [--stop-after N] [--json]",
        .summary = me->summary,
        .opts = opts,
        .min_pos = 1,
        .max_pos = 1,
        .epilog = me->epilog,
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    int rc = stop_after < 0 ? llm_err(LLM_EUSAGE, "--stop-after: expected a step count >= 0, got %ld", stop_after) : 0;
    if (!rc && task && me != &SFT)
        rc = llm_err(LLM_EUSAGE, "--task is a flag of llm sft");
    else if (!rc && task && strcmp(task, "lm") && strcmp(task, "reward"))
        rc = llm_err(LLM_EUSAGE, "--task: expected lm or reward, got '%s'", task);
    struct llm_config c;
    int loaded = 0, sig = 0;
    const char **all = rc ? NULL : calloc((size_t)sets.n + 1, sizeof(char *));
    if (!rc && !all)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    for (int i = 0; all && i < sets.n; i++)
        all[i] = sets.v[i];
    char taskset[32];
    if (all && task) {
        snprintf(taskset, sizeof(taskset), "sft.task=%s", task);
        all[sets.n] = taskset;
    }
    if (!rc) {
        rc = llm_config_load(&c, a.pos[0], all, sets.n + (task != NULL));
        loaded = 1;
    }
    if (!rc && me == &SFT && c.sft.task == LLM_SFT_REWARD)
        me = &REWARD;
    if (!rc && c.train.device == LLM_DEVICE_CUDA)
        rc = llm_err(LLM_EUNSUPPORTED, "train.device: the CUDA backend is not built yet; use \"cpu\" or \"auto\"");
    struct llm_backend be;
    struct llm_model m;
    struct llm_align_base base;
    void *t = NULL;
    int have_be = 0, have_m = 0;
    if (!rc && !(rc = llm_backend_cpu_init(&be, c.train.threads, 0)))
        have_be = 1;
    if (!rc && !(rc = llm_align_load(&c, &be, &m, &base)))
        have_m = 1;
    if (!rc)
        t = me->init(&c, &base, &m, &rc);
    if (!rc) {
        cJSON *extra = llm_align_header(&base); /* after init: a chat template may add tokens */
        struct cmd_train_run r = {
            .c = &c, .m = &m, .task = me->task(t), .extra_header = extra, .resume = resume,
            .stop_after = stop_after, .json = json, .label = me->name,
        };
        rc = extra ? cmd_train(&r, &sig) : LLM_ENOMEM;
        cJSON_Delete(extra);
    }
    if (t)
        me->release(t);
    if (have_m) {
        llm_model_release(&m);
        llm_align_base_release(&base);
    }
    if (have_be)
        llm_backend_release(&be);
    if (loaded)
        llm_config_release(&c);
    free(all);
    llm_args_release(&spec, &a);
    if (rc)
        return cmd_fail(&spec, rc);
    return sig ? 128 + sig : 0;
}

int cmd_sft(int argc, char **argv) { return run(&SFT, argc, argv); }
int cmd_dpo(int argc, char **argv) { return run(&DPO, argc, argv); }
int cmd_grpo(int argc, char **argv) { return run(&GRPO, argc, argv); }
int cmd_ppo(int argc, char **argv) { return run(&PPO, argc, argv); }
