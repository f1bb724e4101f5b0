/* distill.h: the knowledge-distillation objective of pretraining (Hinton et
 * al. 2015): the model learns the data's next tokens and a teacher's
 * next-token distributions at the same positions. Host-side math over
 * downloaded logits; the trainer (pretrain.c) feeds its gradient back with
 * llm_model_backward_dlogits. */
#ifndef LLM_TRAIN_DISTILL_H
#define LLM_TRAIN_DISTILL_H

#include <stdint.h>

/* Over the rows n of zs (student logits, N x V) whose targets[n] >= 0
 * (n_valid of them), with p = softmax(zt / tau) (teacher), q = softmax(zs /
 * tau):
 *   loss = (1 - alpha) CE + alpha tau^2 KL,
 *   CE = mean -log softmax(zs)[target],  KL = mean sum_v p_v (log p_v - log q_v),
 * and into dz (N x V) its gradient with respect to zs:
 *   dz_n = [(1 - alpha) (softmax(zs_n) - onehot(target_n)) + alpha tau (q_n - p_n)] / n_valid
 * (the tau^2 keeps the soft term's gradient scale independent of tau), 0 on
 * ignored rows. *ce and *kl get the two means (0 when no row is valid).
 * Returns n_valid, or a negative code (LLM_EINVAL: a target outside [0, V)). */
int llm_distill_grad(const float *zs, const float *zt, const int32_t *targets, int N, int V, double alpha,
                     double tau, float *dz, double *ce, double *kl);

#endif
