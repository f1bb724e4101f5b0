/* info.h: the one place that counts a model's parameters, FLOPs per token
 * and memory, for `llm info`, MFU in training logs, and scaling fits (so
 * there is one formula). The formulas, with their sources, are in
 * docs/info.md; in short (per token, fp32, B batch, S sequence length):
 *
 *   d_attn   = NH * HS (query width; GQA and MLA do not change it)
 *   S_keys   = keys each query attends to: S for full (causal attention is
 *              counted over all S keys, as in PaLM, not S/2), min(window, S)
 *              for sliding, HS for linear (a HS x HS state per head)
 *   N_mm     = weights a token multiplies by in the forward pass: every
 *              attention and MLP matrix (MoE: the router and top_k experts
 *              per layer) and the lm head (V*C, tied or not); embedding
 *              lookups, norms, biases and nonlinearities are not counted
 *   fwd      = 2 * N_mm + 4 * L * S_keys * d_attn  (QK^T and AV: 2 each)
 *   bwd      = 2 * fwd;  train (fwd + bwd) = 3 * fwd = 6 N_mm + 12 L S_keys d_attn
 *   MFU      = tokens/s * train / peak FLOP/s   (PaLM, appendix B)
 *   Chinchilla-optimal tokens = 20 * total parameters (Hoffmann et al. 2022)
 */
#ifndef LLM_MODEL_INFO_H
#define LLM_MODEL_INFO_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "model/params.h"

/* Tokens per parameter for compute-optimal training (Hoffmann et al. 2022). */
#define LLM_CHINCHILLA_TOKENS_PER_PARAM 20.0

struct llm_model_info {
    /* ---- parameters (elements, no padding) ---- */
    int64_t params;            /* all tensors of the layout */
    int64_t embedding;         /* tok_emb + pos_emb */
    int64_t non_embedding;     /* params - embedding (an untied lm_head is in here) */
    int64_t active;            /* per token: params - (E - top_k) experts' share; = params for dense */
    int64_t by_kind[6];        /* indexed by enum llm_param_kind */
    int64_t attention;         /* attn.* tensors of every layer (projections, MLA, qk norms, biases) */
    int64_t mlp;               /* mlp.* and moe.* tensors (all experts) */
    int64_t norms;             /* attn_norm, mlp_norm, final_norm */
    int64_t lm_head;           /* lm_head.weight (0 when tied) */
    int64_t expert;            /* one expert of one layer (0 for dense) */
    int64_t layout_floats;     /* llm_param_layout.total: the buffer with padding */
    size_t n_tensors;

    /* ---- FLOPs per token (forward), at sequence length seq ---- */
    int seq;                   /* S used below */
    int64_t attn_keys;         /* S_keys */
    int64_t d_attn;            /* NH * HS */
    int64_t matmul_params;     /* N_mm */
    double flops_attn_proj;    /* 2 * attention matrices (wq, wk, wv / wkv_a, wkv_b, wo) */
    double flops_attn_scores;  /* 4 * L * S_keys * d_attn */
    double flops_mlp;          /* 2 * (dense MLP matrices | router + top_k experts) */
    double flops_lm_head;      /* 2 * V * C */
    double flops_fwd;          /* the sum of the four above */
    double flops_bwd;          /* 2 * flops_fwd */
    double flops_train;        /* flops_fwd + flops_bwd */
    double attn_share;         /* flops_attn_scores / flops_fwd */
    double attn_share_blocks;  /* flops_attn_scores / (flops_fwd - flops_lm_head): within the blocks */
    double mlp_share;          /* flops_mlp / flops_fwd */

    /* ---- memory in bytes (fp32 everywhere; activations at batch B, seq) ---- */
    int batch;                 /* B */
    double bytes_params;       /* 4 * params */
    double bytes_grads;        /* 4 * params */
    double bytes_adamw;        /* 8 * params (first and second moments) */
    double act_floats_layer;   /* activations kept by one block per token (docs/info.md) */
    double act_floats_other;   /* outside the blocks per token: embedding, final norm, logits */
    double bytes_activations;  /* 4 * B * seq * (L * act_floats_layer + act_floats_other) */
    double bytes_train;        /* params + grads + adamw + activations */

    /* ---- compute-optimal training (Hoffmann et al. 2022) ---- */
    double chinchilla_tokens;  /* 20 * params */
    double chinchilla_flops;   /* chinchilla_tokens * flops_train */
};

/* Fills info for the model config m at sequence length seq (0 = the
 * context length) and batch B (activations; 0 = 1). Validates m as
 * llm_param_layout_init does: 0, LLM_EINVAL naming the key, or LLM_ENOMEM. */
int llm_model_info_compute(struct llm_model_info *info, const struct llm_model_config *m, int seq,
                           int batch);

/* Training FLOPs per token (fwd + bwd) at sequence length seq (0 = context
 * length): the MFU numerator per token. 0 if m is invalid (error set). */
double llm_model_train_flops_per_token(const struct llm_model_config *m, int seq);

/* MFU = tokens_per_s * train FLOPs per token / peak FLOP/s (PaLM app. B). */
static inline double llm_model_mfu(double tokens_per_s, double train_flops_per_token, double peak_flops)
{
    return peak_flops > 0 ? tokens_per_s * train_flops_per_token / peak_flops : 0.0;
}

#endif
