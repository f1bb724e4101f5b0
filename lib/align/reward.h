/* reward.h: a learned verifier: a reward model trained on preference pairs
 * with the Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected))
 * (Ouyang et al. 2022), as a task of the training loop (`llm sft --task
 * reward`). The scalar head is one token's logit: the special token
 * <|reward|> is appended to every sequence, and r(x) is the logit of
 * <|reward|> at the position before it (after the whole text), so the
 * head is a row of lm_head (trained with the rest) and a reward model is an
 * ordinary checkpoint. GRPO reads it with grpo.reward_model. */
#ifndef LLM_ALIGN_REWARD_H
#define LLM_ALIGN_REWARD_H

#include "align/dpo.h"

#define LLM_REWARD_TOKEN "<|reward|>"

struct llm_reward_stats {
    double accuracy, margin, chosen, rejected;
    int64_t n;
};

struct llm_reward {
    struct llm_train_task task;
    const struct llm_config *cfg;
    struct llm_dpo_pair *train, *val;   /* ref_* unused */
    int n_train, n_val, n_val_all;
    int B, reward_id;
    struct llm_align_order order;
    struct llm_reward_stats stats;
    double val_accuracy;
    int32_t *tok, *tgt;
    int64_t *index;
    float *grad;
    double *r;
    const struct llm_seq **rows;
    struct llm_dpo_pair **pairs;
};

/* Adds <|reward|> to the tokenizer (and grows m), reads data.train/data.val
 * pairs and appends the token to every response. */
int llm_reward_init(struct llm_reward *t, struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m);
void llm_reward_release(struct llm_reward *t);

/* The rewards of n sequences (each ending with the reward token), batch rows
 * at a time, in eval mode; tok/out sized by the caller: tok (batch x T). */
int llm_reward_score(struct llm_model *m, int reward_id, const struct llm_seq *const *seqs, int n, int batch,
                     double *out);

#endif
