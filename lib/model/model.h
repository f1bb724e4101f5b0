/* model.h: the decoder-only transformer of DESIGN.md ("Model"), written once
 * against the backend interface (nn/backend.h): parameters, activations,
 * forward pass with loss, backward pass into gradients.
 *
 * One model = its config, a backend, one parameter buffer laid out by
 * params.h, and (lazily) one gradient buffer of the same layout and the
 * activations of the largest batch seen. Everything lives in backend memory.
 *
 * Variants: every key of the model section except mlp = moe and
 * attention_kv = mla, which are refused (LLM_EUNSUPPORTED) until they land. */
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
    int32_t *host_targets;         /* (B, T) host copy, to count valid targets */
    float *host_losses;            /* (B, T) */
    /* the last forward */
    int B, T;
    int n_valid;                   /* targets >= 0 */
    int training;                  /* dropout on, and the backward pass possible */
    uint64_t dropout_seed;         /* of the last forward: backward regenerates masks */
    struct llm_rng rng;            /* dropout seeds */
};

/* Builds the model for cfg on backend be: lays out and allocates parameters
 * and initializes them from seed (GPT-2's init: normal(0, init_std), output
 * projections scaled by 1/sqrt(2 n_layers), norms 1, biases 0). */
int llm_model_init(struct llm_model *m, const struct llm_model_config *cfg, struct llm_backend *be,
                   uint64_t seed);
void llm_model_release(struct llm_model *m);

/* Forward pass over tokens (B, T) (host memory), T <= context_length. With
 * targets (B, T) (host; < 0 = ignore) it computes the mean cross-entropy
 * into *loss. training turns dropout on and keeps what backward needs. */
int llm_model_forward(struct llm_model *m, const int32_t *tokens, const int32_t *targets, int B,
                      int T, int training, float *loss);
/* Backward pass of the last training forward: gradients of the mean loss are
 * ADDED to m->grads (allocated and zeroed on first use). */
int llm_model_backward(struct llm_model *m);
int llm_model_zero_grad(struct llm_model *m);

/* The logits (B*T, V) of the last forward (device memory, borrowed). */
const float *llm_model_logits(const struct llm_model *m);

/* A parameter's device pointer by its index in m->layout (grads: NULL if none yet). */
static inline float *llm_model_param(const struct llm_model *m, long i)
{
    return i < 0 ? NULL : m->params + m->layout.p[i].offset;
}

#endif
