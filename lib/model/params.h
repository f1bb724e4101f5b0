/* params.h: THE list of a model's parameter tensors for a config: native
 * names (DESIGN.md "Model"), PyTorch [out, in] shapes, and their place in one
 * contiguous float buffer. Forward, backward, optimizers, checkpoints, export
 * and `llm info` all walk this one list, so they cannot disagree.
 *
 * Dim letters: V vocab, T context_length, C d_model, L n_layers, NH n_heads,
 * HS = C / NH head size, NKV = n_kv_heads (0 -> NH), F d_ff, E n_experts,
 * K kv_lora_rank, R = MLA's decoupled rope dims (llm_param_mla_rope_dim).
 *
 * Order (fixed; the offsets follow it):
 *   tok_emb.weight                       (V, C)
 *   pos_emb.weight                       (T, C)       position = learned only
 *   for each layer i:
 *     layers.i.attn_norm.weight          (C)
 *     layers.i.attn_norm.bias            (C)          layernorm with bias only
 *     layers.i.attn.wq.weight            (NH*HS, C)   [+ .bias (NH*HS) if bias]
 *     standard attention_kv:
 *       layers.i.attn.wk.weight          (NKV*HS, C)  [+ .bias if bias]
 *       layers.i.attn.wv.weight          (NKV*HS, C)  [+ .bias if bias]
 *     mla (DeepSeek-V2 layout, see below):
 *       layers.i.attn.wkv_a.weight       (K + R, C)
 *       layers.i.attn.kv_norm.weight     (K)
 *       layers.i.attn.wkv_b.weight       (NH*(HS-R) + NH*HS, K)
 *     layers.i.attn.wo.weight            (C, NH*HS)   [+ .bias (C) if bias]
 *     layers.i.attn.q_norm.weight        (HS)         qk_norm only
 *     layers.i.attn.k_norm.weight        (HS)         qk_norm only
 *     layers.i.mlp_norm.weight           (C)
 *     layers.i.mlp_norm.bias             (C)          layernorm with bias only
 *     dense mlp:
 *       layers.i.mlp.w1.weight           (F, C)       [+ .bias (F) if bias]   gate (swiglu) / up
 *       layers.i.mlp.w3.weight           (F, C)       [+ .bias (F) if bias]   up, swiglu only
 *       layers.i.mlp.w2.weight           (C, F)       [+ .bias (C) if bias]   down
 *     moe:
 *       layers.i.moe.router.weight       (E, C)
 *       for each expert e: layers.i.moe.experts.e.{w1,w3,w2}.weight as dense,
 *       w3 for swiglu only, never biases
 *   final_norm.weight                    (C)
 *   final_norm.bias                      (C)          layernorm with bias only
 *   lm_head.weight                       (V, C)       tie_embeddings = false only
 *
 * Norm weights exist for both layernorm and rmsnorm; norm biases only for
 * layernorm with bias = true (rmsnorm has no bias).
 *
 * MLA (attention_kv = mla), as in DeepSeek-V2 (arXiv 2405.04434 sec. 2.1):
 * each head's query of HS dims is split into a no-rope part of HS-R dims and
 * a rope part of R dims, R = HS/2 rounded down to even (rope rotates pairs).
 * wq gives all NH*HS query dims. wkv_a maps x to the latent c_kv (K dims,
 * normalized by kv_norm) followed by ONE shared rope key k_rope (R dims per
 * token, all heads share it). wkv_b maps c_kv to, per head, the no-rope key
 * (HS-R) rows first (NH*(HS-R) rows), then the values (HS per head, NH*HS
 * rows). Head h's key is [k_nope_h (HS-R) ; k_rope (R)], so q.k keeps HS dims
 * and wo is unchanged. The KV cache holds only K + R floats per token.
 * MLA with qk_norm: k_norm applies to the assembled HS-dim key. */
#ifndef LLM_MODEL_PARAMS_H
#define LLM_MODEL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Every offset is a multiple of this many floats (64 bytes: a cache line,
 * and aligned for vector loads and cuBLAS). */
#define LLM_PARAM_ALIGN 16

enum llm_param_kind {
    LLM_PARAM_EMBEDDING, /* tok_emb (lm_head, tied or not, is a MATRIX) */
    LLM_PARAM_POSITION,  /* pos_emb */
    LLM_PARAM_NORM,      /* norm weights and norm biases (gains, no decay) */
    LLM_PARAM_BIAS,      /* biases of linear layers */
    LLM_PARAM_MATRIX,    /* 2-D weights of linear layers, lm_head included */
    LLM_PARAM_ROUTER,    /* moe.router.weight */
};

struct llm_param_spec {
    char name[96];      /* "layers.3.attn.wq.weight" */
    int ndim;           /* 1 or 2 */
    int64_t shape[2];   /* [out, in] for matrices; [n, 0] for 1-D tensors */
    size_t numel;       /* shape[0] (* shape[1] if ndim == 2) */
    size_t offset;      /* in floats into one contiguous buffer; LLM_PARAM_ALIGN-aligned */
    enum llm_param_kind kind;
    int layer;          /* block index, -1 outside the blocks */
    int expert;         /* moe expert index, -1 otherwise */
};

/* Owns p (malloc'd): free with llm_param_layout_release. */
struct llm_param_layout {
    struct llm_param_spec *p; /* n specs in the fixed order above */
    size_t n;
    size_t total;             /* floats in the buffer, padding included */
};

/* Fills l for the model config m (l need not be initialized). Validates what
 * the layout needs and fails with LLM_EINVAL naming the key ("model.n_heads:
 * 12 does not divide model.d_model 100"), or LLM_ENOMEM. On error l is left
 * empty (release is safe). */
int llm_param_layout_init(struct llm_param_layout *l, const struct llm_model_config *m);
/* Frees l->p and zeroes l; safe twice. */
void llm_param_layout_release(struct llm_param_layout *l);
/* Index of the tensor named name, or -1. */
long llm_param_find(const struct llm_param_layout *l, const char *name);
/* Sum of numel over all tensors (no padding): the parameter count. */
size_t llm_param_count(const struct llm_param_layout *l);

/* Derived dims, shared by params, the model and info. */
static inline int llm_param_head_size(const struct llm_model_config *m)
{
    return m->n_heads > 0 ? m->d_model / m->n_heads : 0;
}
/* R: MLA's decoupled rope dims per head = HS/2 rounded down to even. */
static inline int llm_param_mla_rope_dim(const struct llm_model_config *m)
{
    return (llm_param_head_size(m) / 2) & ~1;
}

/* Every tensor's index in the layout by its role, -1 where the config has
 * none: what the forward passes (model.c, lib/infer) look tensors up by. */
struct llm_param_block {
    long attn_norm_w, attn_norm_b, wq, bq, wk, bk, wv, bv, wo, bo, q_norm, k_norm;
    long wkv_a, kv_norm, wkv_b;     /* mla */
    long mlp_norm_w, mlp_norm_b, w1, b1, w3, b3, w2, b2;
    long router;                    /* moe */
    long *expert;                   /* moe: (E, 3) experts.e.{w1, w3, w2} (w3 -1 unless swiglu); NULL if dense */
};
struct llm_param_index {
    long tok_emb, pos_emb, final_w, final_b;
    long lm_head;                   /* = tok_emb when tie_embeddings */
    struct llm_param_block *layer;  /* (L) */
    long *expert_idx;               /* moe: (L, E, 3), what layer[l].expert points into */
};
/* Fills ix from one pass over l (a lookup by name per tensor would cost
 * O(tensors^2): ~77k tensors in a large MoE); ix need not be initialized. A
 * tensor without a role is LLM_EINVAL (a bug in params.c); LLM_ENOMEM. On
 * error ix is released. */
int llm_param_index_init(struct llm_param_index *ix, const struct llm_param_layout *l,
                         const struct llm_model_config *m);
void llm_param_index_release(struct llm_param_index *ix); /* safe twice */

/* JSON-ish name of a kind ("matrix"), for reports. */
const char *llm_param_kind_name(enum llm_param_kind k);

#endif
