/* ppo.h: RLHF with PPO as a task of the training loop (Ouyang et al. 2022;
 * Schulman et al. 2017): a value model next to the policy, per-token rewards
 * (a KL penalty to the reference plus the sequence's score at its last
 * token), GAE advantages (Schulman et al. 2016), the clipped policy and value
 * losses. Rollouts, verifier rewards, the reward model, the reference and
 * samples.jsonl are GRPO's (grpo.h). docs/align.md has the math. */
#ifndef LLM_ALIGN_PPO_H
#define LLM_ALIGN_PPO_H

#include <stddef.h>

#include "align/grpo.h"
#include "optim/optim.h"

#define LLM_VALUE_TOKEN "<|value|>"

/* Per completion of the rollout batch, at its learned positions t of the
 * (seq.n - 1) targets (0 elsewhere). */
struct llm_ppo_roll {
    float *v;    /* (seq.n - 1) V(s_t) of the value model at rollout time */
    float *adv;  /* (seq.n - 1) GAE advantage, whitened over the batch */
    float *ret;  /* (seq.n - 1) return R_t = A_t + V_t (before whitening) */
};

struct llm_ppo_stats {
    double rlhf, rlhf2, seqs;                   /* per sequence: score - kl_coef x its summed log-ratio */
    double kl, ev_tokens;                       /* per rollout token: log pi_old - log ref, and the count */
    double ret, ret2, res, res2;                /* explained variance: sums of R and of R - V per token */
    double vloss, vclipped, vtokens;            /* vf_coef x value loss, clipped count: per token and epoch */
};

struct llm_ppo {
    struct llm_train_task task;
    struct llm_grpo g;                 /* rollouts, rewards, reference, samples, evaluation */
    const struct llm_config *cfg;
    struct llm_model vm;               /* the value model */
    struct llm_align_base vbase;       /* its tokenizer, with <|value|> */
    int have_vm, value_id;
    struct llm_optim *vopt;
    struct llm_ppo_roll *pr;           /* (P G) */
    const float **tok_adv;             /* (B) the micro-batch's rows of pr[].adv */
    int64_t *index;                    /* (B T) flat logit index of each value read */
    float *vgrad;                      /* (B T) */
    double *buf;                       /* (B T) scratch, and (P G max_len) for whitening */
    struct llm_ppo_stats stats;
    char value_path[4200];             /* out_dir/value.llm */
};

/* Builds GRPO's machinery with the reference always loaded (grpo.* keys:
 * prompts, group size >= 1, sampling, verifier, reward model, epsilon,
 * epochs), then the value model: ppo.value_from (or train.init_from) loaded
 * again on m's backend with <|value|> added to its tokenizer, and its
 * optimizer (the optim section, ppo.value_lr). */
int llm_ppo_init(struct llm_ppo *p, const struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m);
void llm_ppo_release(struct llm_ppo *p);

/* Generalized advantage estimation over one completion of n tokens:
 * delta_t = r_t + gamma V_{t+1} - V_t (V_n = 0: the episode ends),
 * A_t = sum_l (gamma lam)^l delta_{t+l}, computed backwards as
 * A_t = delta_t + gamma lam A_{t+1}; ret_t = A_t + V_t. */
void llm_ppo_gae(const double *r, const double *v, int n, double gamma, double lam, double *adv, double *ret);

/* Mean 0 and std 1 in place (unbiased std, + 1e-8 under the root, as TRL's
 * masked_whiten); n < 2 leaves x centred only. */
void llm_ppo_whiten(double *x, size_t n);

/* The clipped value loss of one token, 0.5 max((v - ret)^2, (vc - ret)^2)
 * with vc = clip(v, v_old - c, v_old + c), and its derivative in v.
 * *clipped = 1 when the clipped term is the larger (it then passes no
 * gradient when v is outside the range). */
double llm_ppo_value_loss(double v, double v_old, double ret, double c, double *dv, int *clipped);

#endif
