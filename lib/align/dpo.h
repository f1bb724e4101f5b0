/* dpo.h: direct preference optimization (Rafailov et al. 2023) as a task of
 * the training loop: pairs of a chosen and a rejected response to a prompt,
 * the policy against a frozen reference (the starting model, whose
 * log-probabilities are computed once), and the IPO and hinge variants. */
#ifndef LLM_ALIGN_DPO_H
#define LLM_ALIGN_DPO_H

#include "align/align.h"
#include "train/train.h"

struct llm_dpo_pair {
    struct llm_seq chosen, rejected;
    double ref_chosen, ref_rejected; /* summed log-probabilities under the reference */
};

/* Running means for the metrics rows. */
struct llm_dpo_stats {
    double reward_chosen, reward_rejected, accuracy, margin, logp_chosen, logp_rejected;
    int64_t n;
};

struct llm_dpo {
    struct llm_train_task task;
    const struct llm_config *cfg;
    struct llm_dpo_pair *train, *val;
    int n_train, n_val, n_val_all;
    int B;
    struct llm_align_order order;
    struct llm_dpo_stats stats;
    double val_accuracy;             /* of the last evaluation, NAN before */
    int32_t *tok, *tgt;
    float *w;
    double *lp;                      /* (2B) log-probabilities of a micro-batch's rows */
    const struct llm_seq **rows;
    struct llm_dpo_pair **pairs;
};

/* Reads data.train (and data.val): JSONL {"prompt","chosen","rejected"};
 * each response ends with end-of-text when sft.add_eot. The reference
 * log-probabilities come from m as it is now (train.init_from), so call
 * this before training (a resumed run still compares with the start). */
int llm_dpo_init(struct llm_dpo *d, const struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m);
void llm_dpo_release(struct llm_dpo *d);

/* The pairs of a JSONL file {"prompt","chosen","rejected"}, tokenized as
 * prompt/response examples (sft.add_eot); errors name file:line. Shared
 * with the reward model (reward.h). */
int llm_dpo_read_pairs(const char *path, const struct llm_config *cfg, struct llm_align_base *b,
                       struct llm_dpo_pair **out, int *n_out);
void llm_dpo_pairs_free(struct llm_dpo_pair *v, int n);

/* The loss of one pair and its derivative: h = (logp_w - ref_w) - (logp_l -
 * ref_l); sigmoid: -log sigmoid(beta h); ipo: (h - 1/(2 beta))^2; hinge:
 * max(0, 1 - beta h). Returns the loss; *dh = dloss/dh. */
double llm_dpo_loss(enum llm_dpo_loss kind, double beta, double h, double *dh);

#endif
