/* model.h: the decoder-only transformer of DESIGN.md ("Model"), written once
 * against the backend interface (nn/backend.h): parameters, activations,
 * forward pass with loss, backward pass into gradients.
 *
 * One model = its config, a backend, one parameter buffer laid out by
 * params.h, and (lazily) one gradient buffer of the same layout and the
 * activations of the largest batch seen. Everything lives in backend memory.
 *
 * Variants: every key of the model section, mixture-of-experts MLPs (mlp =
 * moe: top-k softmax router, Switch load-balancing loss; lib/model/moe.c) and
 * multi-head latent attention (attention_kv = mla) included; docs/model.md
 * has the math. */
#ifndef LLM_MODEL_MODEL_H
#define LLM_MODEL_MODEL_H

#include <stdint.h>

#include "config/config.h"
#include "core/rng.h"
#include "model/params.h"
#include "nn/backend.h"

struct llm_model_acts; /* private: per-layer activation pointers */

struct llm_model {
    struct llm_model_config cfg;
    struct llm_backend *be;        /* borrowed */
    struct llm_param_layout layout;
    float *params;                 /* (layout.total) device */
    float *grads;                  /* (layout.total) device, NULL until the first backward */
    float *pos_table;              /* (T, C) sinusoids when position = sinusoidal */
    /* activations, sized for B_cap x T_cap tokens */
    int B_cap, T_cap;
    float *act_mem;
    size_t act_floats;
    struct llm_model_acts *acts;
    int32_t *tokens, *targets;     /* (B, T) device copies of the last forward */
    int32_t *pos;                  /* (B, T) device: packed positions of the last forward */
    int packed;                    /* the last forward was packed (pos holds its positions) */
    int32_t *host_targets;         /* (B, T) host copy, to count valid targets */
    float *host_losses;            /* (B, T) */
    /* the last forward */
    int B, T;
    int n_valid;                   /* targets >= 0 */
    float aux_loss;                /* moe: aux_loss_coef * sum over layers of the load-balancing
                                      loss, included in the forward's loss; 0 for dense MLPs */
    int training;                  /* dropout on, and the backward pass possible */
    uint64_t dropout_seed;         /* of the last forward: backward regenerates masks */
    struct llm_rng rng;            /* dropout seeds */
};

/* Builds the model for cfg on backend be: lays out and allocates parameters
 * and initializes them from seed (GPT-2's init: normal(0, init_std), output
 * projections scaled by 1/sqrt(2 n_layers), norms 1, biases 0). */
int llm_model_init(struct llm_model *m, const struct llm_model_config *cfg, struct llm_backend *be,
                   uint64_t seed);
/* The same with every parameter zero, for loaders that then write all of
 * them (llm_model_load): drawing 100M normals costs seconds of start-up. */
int llm_model_init_zero(struct llm_model *m, const struct llm_model_config *cfg, struct llm_backend *be);
void llm_model_release(struct llm_model *m);

/* Forward pass over tokens (B, T) (host memory), T <= context_length. With
 * targets (B, T) (host; < 0 = ignore) it computes into *loss the mean
 * cross-entropy plus m->aux_loss (MoE; 0 otherwise): the objective that
 * backward differentiates. Perplexity is exp(*loss - m->aux_loss). training
 * turns dropout on and keeps what backward needs. A MoE model downloads each
 * layer's router probabilities to route on the host (N * n_experts floats). */
int llm_model_forward(struct llm_model *m, const int32_t *tokens, const int32_t *targets, int B,
                      int T, int training, float *loss);
/* The same over packed rows: each row holds whole examples one after another
 * and pos (B, T) (host) gives each token's position within its example (0
 * where one starts, else the previous + 1). Positions (learned, sinusoidal,
 * rope) restart per example and attention stays within it, so every
 * example's logits and losses are those of running it alone (SFT packing);
 * backward uses the same positions. Not with linear attention. */
int llm_model_forward_packed(struct llm_model *m, const int32_t *tokens, const int32_t *targets,
                             const int32_t *pos, int B, int T, int training, float *loss);
/* Backward pass of the last training forward: gradients of the mean loss are
 * ADDED to m->grads (allocated and zeroed on first use). */
int llm_model_backward(struct llm_model *m);
/* The same for other objectives (alignment losses, lib/align): with token_w
 * (B*T, host) the gradient is that of sum_t token_w[t] * CE_t, CE_t =
 * -log p(target_t) (ignored targets contribute nothing), instead of the mean;
 * with dhidden (B*T, C, device) the gradient of a head reading the final
 * hidden state (llm_model_hidden) is added there. token_w NULL = the mean
 * loss as llm_model_backward. */
int llm_model_backward_ex(struct llm_model *m, const float *token_w, const float *dhidden);
/* Backward of an objective that reads single logits (a reward or value
 * "head" that is one token's logit, lib/align/reward.c): dlogits is zero
 * except grad[i] at flat index index[i] into the (B*T, V) logits. */
int llm_model_backward_logits(struct llm_model *m, const int64_t *index, const float *grad, int n);
/* Backward of an objective given by its whole gradient dlogits (B*T, V)
 * (host) with respect to the last training forward's logits (distillation,
 * lib/train/distill.h); a MoE's load-balancing term is added inside the
 * layers, as in every backward. */
int llm_model_backward_dlogits(struct llm_model *m, const float *dlogits);

/* The final hidden state of the last forward (B*T, C) after the final norm,
 * what lm_head reads (device memory, borrowed). */
const float *llm_model_hidden(const struct llm_model *m);
int llm_model_zero_grad(struct llm_model *m);

/* Grows the vocabulary to V2 >= V (new tokens appended, as added special
 * tokens are): tok_emb and an untied lm_head get V2 - V new rows, each the
 * mean of the old rows (Hewitt 2021: a new token starts as an average
 * token, not a random one that the softmax would favor or starve); every
 * other tensor is kept. m is rebuilt (grads and activations dropped). */
int llm_model_resize_vocab(struct llm_model *m, int V2);

/* The logits (B*T, V) of the last forward (device memory, borrowed). */
const float *llm_model_logits(const struct llm_model *m);

/* MoE: the experts layer `layer` sent each token to in the last forward,
 * (B*T, top_k) in decreasing router probability (host memory, borrowed,
 * overwritten by the next forward); NULL for a dense model, a layer out of
 * range or before any forward. */
const int32_t *llm_model_routing(const struct llm_model *m, int layer);

/* A parameter's device pointer by its index in m->layout (grads: NULL if none yet). */
static inline float *llm_model_param(const struct llm_model *m, long i)
{
    return i < 0 ? NULL : m->params + m->layout.p[i].offset;
}

#endif
