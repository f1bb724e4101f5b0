/* grpo.h: reinforcement learning with verifiable rewards as a task of the
 * training loop: Group Relative Policy Optimization (Shao et al. 2024,
 * DeepSeekMath) with the Dr. GRPO (Liu et al. 2025) and DAPO (Yu et al.
 * 2025) variants of advantage scaling, loss aggregation and clip-higher.
 * Rollouts come from the generate path (KV cache, batched), rewards from
 * verifiers (verify.h). docs/align.md has the math. */
#ifndef LLM_ALIGN_GRPO_H
#define LLM_ALIGN_GRPO_H

#include <stdio.h>

#include "align/align.h"
#include "align/verify.h"
#include "core/jsonl.h"
#include "train/train.h"

/* One sampled completion of the rollout batch. */
struct llm_grpo_roll {
    struct llm_seq seq;      /* prompt + completion ids; learned = the completion */
    char *text;              /* the completion as text (stop strings cut) */
    double reward, adv;
    float *old_logp;         /* (seq.n - 1) log p of target t+1 at rollout time (learned positions) */
    float *ref_logp;         /* the same under the reference (grpo.beta > 0), else NULL */
};

struct llm_grpo_stats {
    double reward, reward2, zero_std_groups, groups, length, kl, clipped, entropy, tokens, n, model;
    double *terms;           /* per verifier term: summed rewards */
};

struct llm_grpo {
    struct llm_train_task task;
    const struct llm_config *cfg;
    struct llm_align_base *base;          /* borrowed */
    struct llm_jsonl_records train, val;  /* {"prompt","answer",...} */
    struct llm_align_order order;
    struct llm_verifier *verifier;
    struct llm_model ref;                 /* the starting model, when grpo.beta > 0 */
    int have_ref;
    struct llm_model rm;                  /* grpo.reward_model, when set */
    int have_rm, rm_id;                   /* rm_id: its <|reward|> token */
    int P, G, B, accum, epochs, n_val;
    int micro;                            /* micro-batch of the current rollout cycle: 0 .. accum*epochs-1 */
    int64_t rollouts;                     /* rollout batches done (for seeds and samples.jsonl) */
    struct llm_grpo_roll *roll;           /* (P G) */
    int *roll_prompt;                     /* (P) record index of each prompt */
    double norm_tokens;                   /* dapo: learned tokens of the rollout batch */
    struct llm_grpo_stats stats;
    double val_reward;                    /* greedy mean reward on data.val at the last evaluation */
    int32_t *tok, *tgt;
    float *w;
    float *logits;                        /* host copy of a batch's logits (entropy) */
    const struct llm_seq **rows;
    char samples_path[4200];
};

/* Reads data.train (and data.val): JSONL {"prompt", "answer", ...extra
 * fields passed to the verifier}; builds the verifier from grpo.*; with
 * grpo.beta > 0 loads train.init_from again as the frozen reference.
 * prompts_per_step x group_size must equal batch_size x grad_accum. */
int llm_grpo_init(struct llm_grpo *g, const struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m);
void llm_grpo_release(struct llm_grpo *g);
/* The same with the reference always loaded when always_ref (PPO's KL
 * penalty), and any group size >= 1 (GRPO's init requires 2). */
int llm_grpo_init_ex(struct llm_grpo *g, const struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m,
                     int always_ref);

/* What GRPO and PPO share of a rollout batch: the next P prompts x G
 * completions of policy m (seeded per completion), their rewards into r (n =
 * P G: the verifier plus the weighted reward model), the sequences and their
 * old (and reference) log-probabilities in g->roll, and the statistics of
 * rewards, lengths and entropy. Then the caller sets each roll's adv and calls
 * llm_grpo_rollout_done (samples.jsonl, the rollout count). */
int llm_grpo_rollout(struct llm_grpo *g, struct llm_model *m, double *r);
void llm_grpo_rollout_done(struct llm_grpo *g);

/* Forward and backward of the policy on micro-batch `block` (B completions)
 * of the rollout batch: the clipped objective per token, aggregated by
 * grpo.loss_agg with each completion's advantage and the beta KL term; or,
 * with tok_adv (B rows of per-target advantages, PPO), tok_adv[r][t] per
 * token, averaged over all completion tokens of the batch, no KL term. */
int llm_grpo_policy_micro(struct llm_grpo *g, struct llm_model *m, int block, const float *const *tok_adv,
                          double *loss, int64_t *tokens);

/* Group-relative advantages of n = groups x G rewards (in place into adv):
 * (r - mean of its group) / (sample std of its group + 1e-4) with scale, or
 * r - mean without (Dr. GRPO). Returns the number of groups whose rewards
 * are all equal (they carry no signal). */
int llm_grpo_advantages(const double *r, int groups, int G, int scale, double *adv);

/* The per-token clipped objective's loss and d loss / d logp for one token:
 * ratio = exp(logp - old), loss = -min(ratio A, clip(ratio, 1-eps, 1+eps_high) A)
 * + beta (exp(ref - logp) - (ref - logp) - 1) (the k3 estimator of KL(pi || ref),
 * Schulman 2020). *clipped = 1 when the clip is the binding term. */
double llm_grpo_token_loss(double logp, double old, double ref, double A, double eps, double eps_high, double beta,
                           double *dlogp, int *clipped);

#endif
