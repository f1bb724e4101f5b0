/* model_impl.h: private to lib/model: what model.c (the transformer) and
 * moe.c (its mixture-of-experts MLP) share: the per-layer parameter indices
 * and activation pointers, the routing state, and small helpers. No other
 * module includes it.
 *
 * Dim letters: N = B*T rows, C d_model, NH heads, NKV kv heads, HS head size,
 * F d_ff, V vocab, E n_experts, k top_k, M = N*k rows dispatched to experts,
 * K kv_lora_rank, R MLA rope dims, D = HS - R MLA no-rope dims. */
#ifndef LLM_MODEL_IMPL_H
#define LLM_MODEL_IMPL_H

#include "model.h"
#include "core/err.h"

/* Calls a backend op, failing cleanly if the backend lacks it. */
#define OP(m, op, ...)                                                                           \
    ((m)->be->ops->op ? (m)->be->ops->op((m)->be->ctx, __VA_ARGS__)                              \
                      : llm_err(LLM_EUNSUPPORTED, "the %s backend has no op " #op,               \
                                (m)->be->ops->name))

/* Parameter indices of one block (-1 when the variant has no such tensor). */
/* Activation pointers of one block (into m->act_mem). */
struct layer_acts {
    float *res_in;                  /* (N, C) the block's input (borrowed from the one before) */
    float *n1, *n1_mean, *n1_rstd;  /* (N, C), (N), (N): pre: norm(res_in); post: norm(s1) */
    float *q_lin, *k_lin;           /* (N, NH*HS), (N, NKV*HS): before qk_norm */
    float *q_rstd, *k_rstd;         /* (N*NH), (N*NKV) */
    float *q, *k, *v;               /* (N, NH*HS), (N, NKV*HS) x2: attention inputs */
    float *c_lat, *c_rstd, *c_n;    /* mla: (N, K) latent, (N) its kv_norm rstd, (N, K) normalized */
    float *att, *lse;               /* (N, NH*HS), (B, NH, T) */
    float *s1;                      /* (N, C) res_in + attention output */
    float *n2, *n2_mean, *n2_rstd;  /* pre: norm(s1); post: norm(s2) */
    float *h, *u, *a;               /* (N, F) x3 (moe: (M, F)): w1 out, w3 out (swiglu), activation */
    float *probs;                   /* moe: (N, E) router probabilities */
    float *xe, *gate, *y;           /* moe: (M, C) rows dispatched, (M) their gates, (M, C) expert outputs */
    float *s2;                      /* (N, C) mid + MLP output */
};

/* One MoE layer's routing of the last forward (moe.c). Dispatched rows are
 * sorted by expert, then by token: expert e owns rows off_e .. off_e +
 * count[e] - 1, off_e = count[0] + ... + count[e-1]. */
struct moe_route {
    int32_t *choice;                /* host (N, k): each token's experts, by decreasing probability */
    int *count;                     /* host (E): rows routed to each expert */
    double aux;                     /* E * sum_e f_e P_e (unweighted) */
    int32_t *idx;                   /* device (2M): token of each row, then token*E + expert */
};

struct llm_model_acts {
    struct llm_param_index ix;      /* tensors by role (params.h) */
    struct llm_param_block *lp;     /* (L) = ix.layer */
    struct layer_acts *la;          /* (L) */
    float *emb;                     /* (N, C) embedding output */
    float *nf, *nf_mean, *nf_rstd;  /* final norm */
    float *logits;                  /* (N, V), dlogits in backward */
    float *losses;                  /* (N) */
    float *scratch;                 /* (N, C) sublayer outputs before the residual add */
    float *kn, *kr;                 /* mla: (N, NH*D) no-rope keys, (N, R) shared rope key:
                                       forward temporaries, their gradients in backward */
    /* backward scratch */
    float *g, *dA, *dB, *dC;        /* (N, C) */
    float *dq, *dk, *dv, *datt;     /* (N, NH*HS), (N, NKV*HS) x2, (N, NH*HS) */
    float *dql, *dkl;               /* qk_norm: before the norm */
    float *dc, *dc2;                /* mla: (N, K) x2 */
    float *dh, *du, *da;            /* (N, F) (moe: (M, F)) */
    float *dy, *dy2, *dgate, *dp;   /* moe: (M, C) x2, (M), (N, E) */
    /* moe routing (moe.c), sized for N_cap = B_cap * T_cap tokens */
    struct moe_route *route;        /* (L) */
    int32_t *route_dev;             /* device (L, 2 M_cap) */
    int32_t *route_host;            /* host (L, N_cap, k) */
    int *count_host;                /* host (L, E) */
    int *mark;                      /* host (E) top-k bookkeeping */
    float *host_p;                  /* host (N_cap, E): probabilities, then the aux gradient */
    int32_t *host_idx;              /* host (2 M_cap) staging of the index lists */
    int routed;                     /* every layer of the last forward was routed */
};

static inline int HS_(const struct llm_model *m) { return m->cfg.d_model / m->cfg.n_heads; }
static inline int NKV_(const struct llm_model *m) { return llm_config_kv_heads(&m->cfg); }
static inline int is_moe(const struct llm_model *m) { return m->cfg.mlp == LLM_MLP_MOE; }
/* The packed positions of the last forward, or NULL (one sequence per row). */
#define POS(m) ((m)->packed ? (const int32_t *)(m)->pos : NULL)

static inline int is_mla(const struct llm_model *m) { return m->cfg.attention_kv == LLM_ATTENTION_KV_MLA; }
static inline int is_swiglu(const struct llm_model *m) { return m->cfg.activation == LLM_ACTIVATION_SWIGLU; }

/* Parameter i's values and gradient (device), NULL for -1 (no such tensor). */
static inline float *P(const struct llm_model *m, long i)
{
    return i < 0 ? NULL : m->params + m->layout.p[i].offset;
}
static inline float *G(const struct llm_model *m, long i)
{
    return i < 0 ? NULL : m->grads + m->layout.p[i].offset;
}

/* The backend's activation kind for a non-swiglu config. */
static inline int act_kind(const struct llm_model *m)
{
    return m->cfg.activation == LLM_ACTIVATION_RELU    ? LLM_ACT_RELU
           : m->cfg.activation == LLM_ACTIVATION_RELU2 ? LLM_ACT_RELU2
                                                       : LLM_ACT_GELU;
}

/* moe.c. moe_ensure sizes the routing buffers for N tokens (after model.c
 * laid out the activations); moe_release frees them (safe twice). */
int moe_ensure(struct llm_model *m, int N);
void moe_release(struct llm_model *m);
/* The MoE sublayer on in (N, C) = (m->B * m->T, C) into m->acts->scratch,
 * before dropout; sets route[l] (aux included). */
int moe_forward(struct llm_model *m, int l, const float *in);
/* Its backward: dout (N, C) the gradient of its output (after dropout's
 * backward); writes dx (N, C), accumulates expert and router gradients, and
 * adds aux_loss_coef * d aux / d router. Uses dB, dy, dy2, dgate, dp, dh, du, da. */
int moe_backward(struct llm_model *m, int l, float *dx, const float *dout, const float *in);

#endif
