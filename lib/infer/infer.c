/* infer.c: the inference forward pass with a per-sequence cache (infer.h):
 * the transformer of lib/model/model.c for new tokens only, written against
 * the backend ops, with keys and values (or MLA's latent, or linear
 * attention's state) carried from one call to the next.
 *
 * A step runs R rows (new tokens) through the model. Rows come in groups of
 * consecutive positions of one sequence: a prefill chunk is one group of up
 * to LLM_INFER_CHUNK rows, a decode step n groups of one row. Row-wise ops
 * (embedding, norms, linear layers, activations, the MoE) run over all R rows
 * at once; position-dependent ones (positions, rope, the cache, attention)
 * per group. Each layer mirrors model.c's forward (dropout off):
 *   pre-norm:  x = s + mlp(norm2(s)),  s = x + attn(norm1(x))
 *   post-norm: x = norm2(n + mlp(n)),  n = norm1(x + attn(x))
 *   attn: q, k, v projections; qk_norm (rmsnorm per head); rope at the rows'
 *   absolute positions; keys and values appended to the cache; attention of
 *   the group's queries over the cache (attention_cached); wo.
 * Linear layers use linear_rows (row-independent, bit-identical whatever the
 * batch) in decode and in chunks of <= LLM_INFER_ROWS rows, matmul_forward
 * (sgemm) in longer chunks.
 *
 * MLA (DeepSeek-V2 sec. 2.1, the layout of params.h): per new row the cache
 * gets c_n = rmsnorm(x @ wkv_a[0:K]^T) * kv_norm (K floats) and the shared
 * rope key k_r = x @ wkv_a[K:K+R]^T before rope (R floats): the compressed
 * cache. To attend, the positions a group's queries see are expanded:
 *   k_nope (NH*D) = c_n @ wkv_b[0:NH*D]^T,  v (NH*HS) = c_n @ wkv_b[NH*D:]^T,
 *   k_h = [k_nope_h ; k_r], then qk_norm and rope on channels D.. as model.c,
 * into scratch rows at the same ring slots, and attention_cached runs on them
 * (NKV = NH). This recomputes the expansion every step (O(len K NH HS)):
 * correctness first; absorbing wkv_b into the query (attending in latent
 * space) would avoid it but cannot host qk_norm of the assembled key.
 *
 * Linear attention keeps per (layer, sequence, kv head) the state S (HS x HS)
 * and z (HS) of the backend's linear_attention_forward, on the host (there
 * is no backend op for a recurrent step): q, k, v of a group are downloaded,
 * stepped through phi = elu + 1, and the output uploaded. The state after
 * each of the last LLM_INFER_SLACK + 1 lengths is kept in a ring of
 * snapshots (slot = length % (SLACK + 1)), so truncate can go back SLACK steps.
 * With MLA keys too (attention linear, attention_kv mla), the new rows' keys
 * and values are expanded from their latents and nothing is cached.
 *
 * Sliding window: a ring of cap = min(max_len, window + CHUNK - 1 + SLACK)
 * rows; position p lives in row p % cap; attention_cached's contract (cap >=
 * window + Tq - 1) holds for every chunk, and truncation may drop up to
 * cap - window + 1 positions below the highest position ever written. */
#include "infer/infer.h"
#include "infer/quant.h"
#include "core/err.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Calls a backend op, failing cleanly when the backend lacks it. */
#define OP(x, op, ...)                                                                           \
    ((x)->be->ops->op ? (x)->be->ops->op((x)->be->ctx, __VA_ARGS__)                              \
                      : llm_err(LLM_EUNSUPPORTED, "infer: the %s backend has no op " #op,        \
                                (x)->be->ops->name))

enum attn_kind { KIND_KV, KIND_MLA, KIND_LINEAR };

/* Parameter indices of one block (-1: the variant has no such tensor). */
struct seq_state {
    int len;    /* tokens in the sequence */
    int hw;     /* highest length reached since the last reset (ring eviction) */
    int lin_lo; /* linear attention: the smallest length with a valid snapshot */
};

/* Consecutive rows row0 .. row0+cnt-1 of a step: positions pos0 .. of seq. */
struct grp {
    int seq, pos0, cnt, row0;
};

struct llm_infer {
    const struct llm_model *m;
    struct llm_backend *be;
    int S, max_len, chunk, rows; /* rows: scratch rows = max(chunk, S) */
    enum attn_kind kind;
    int mla;                     /* keys and values from MLA's latent (any kind) */
    int cap, window;             /* cache rows per (layer, seq); window for attention_cached */
    int L, C, V, NH, NKV, HS, F, K, R, D, E, topk, QW, KW, MR;
    int rot, rot_off;            /* rope: rotated channels per head and where they start */
    struct llm_param_index ix;   /* tensors by role (params.h) */
    const struct llm_param_block *lp; /* (L) = ix.layer */
    struct seq_state *seq;       /* (S) */
    int *stamp, stamp_now;       /* (S) decode's duplicate check */
    /* caches, backend memory, one buffer */
    float *cache;
    float *kc, *vc;              /* KV: (L, S, cap, KW) each */
    float *lat, *krc;            /* MLA: (L, S, cap, K), (L, S, cap, R) */
    float *lin;                  /* linear, host: (L, S, SLACK + 1, NKV, HS*HS + HS) */
    size_t lin_floats;           /* NKV * (HS*HS + HS): one snapshot of one layer */
    /* scratch, backend memory, one buffer (shapes for `rows` rows) */
    float *scr;
    int32_t *tok;                /* (rows) */
    int32_t *idx_dev;            /* moe: (2 MR) */
    float *x, *xa, *s, *sc;      /* (rows, C) */
    float *mean, *rstd;          /* (rows), (max(rows*NH, cap*NH)) */
    float *q, *ql, *k, *kl, *v, *att; /* (rows, QW), qk_norm (rows, QW), (rows, KW) x3, (rows, QW) */
    float *cl, *cn, *kr;         /* mla: (rows, K) x2, (rows, R) */
    float *ek, *ekl, *ev, *ekn;  /* mla expansion by slot: (cap, QW) x3, (cap, NH*D) */
    float *h, *u, *a;            /* (MR, F) */
    float *probs, *xe, *gate, *y;/* moe: (rows, E), (MR, C), (MR), (MR, C) */
    float *logits;               /* (rows, V) */
    /* host */
    float *probs_h;              /* moe: (rows, E) */
    int32_t *idx_h, *choice;     /* moe: (2 MR), (rows, topk) */
    int *count, *mark;           /* moe: (E) x2 */
    float *hq, *hk, *hv, *ho, *phq, *phk; /* linear: (rows, QW), (rows, KW) x2, (rows, QW), (HS) x2 */
    const struct llm_q8 *q8;     /* int8 weights for the row-independent path, or NULL */
    int a8;                      /* with q8: int8 activations too (linear_rows_q8a8) */
};

static float *P(const struct llm_infer *x, long i)
{
    return i < 0 ? NULL : x->m->params + x->m->layout.p[i].offset;
}

/* ---- sizes ---- */
size_t llm_infer_cache_bytes_per_token(const struct llm_model *m)
{
    const struct llm_model_config *c = &m->cfg;
    size_t L = (size_t)c->n_layers, HS = (size_t)llm_param_head_size(c);
    if (c->attention == LLM_ATTENTION_LINEAR)
        return 0;
    if (c->attention_kv == LLM_ATTENTION_KV_MLA)
        return L * ((size_t)c->kv_lora_rank + (size_t)llm_param_mla_rope_dim(c)) * sizeof(float);
    return L * 2 * (size_t)llm_config_kv_heads(c) * HS * sizeof(float);
}

size_t llm_infer_state_bytes(const struct llm_model *m)
{
    const struct llm_model_config *c = &m->cfg;
    if (c->attention != LLM_ATTENTION_LINEAR)
        return 0;
    size_t HS = (size_t)llm_param_head_size(c);
    return (size_t)c->n_layers * (LLM_INFER_SLACK + 1) * (size_t)llm_config_kv_heads(c) *
           (HS * HS + HS) * sizeof(float);
}

/* A bump allocator over one buffer; with base NULL it only counts. */
struct carver {
    char *base;
    size_t used;
};

static void *carve(struct carver *c, size_t n, size_t elem)
{
    void *p = c->base && n ? c->base + c->used : NULL;
    c->used += (n * elem + 63) & ~(size_t)63; /* 64-byte aligned pieces */
    return p;
}

/* Lays out the backend scratch; returns its bytes. */
static size_t layout_scratch(struct llm_infer *x, char *base)
{
    const struct llm_model_config *c = &x->m->cfg;
    struct carver cv = {base, 0};
    size_t R = (size_t)x->rows, MR = (size_t)x->MR, C = (size_t)x->C, cap = (size_t)x->cap;
    size_t QW = (size_t)x->QW, KW = (size_t)x->KW, F = (size_t)x->F;
    /* mla: the cached kind expands the cache by slot (cap rows), linear
     * attention the new rows (R) */
    int mla = x->mla, moe = x->E > 0, swiglu = c->activation == LLM_ACTIVATION_SWIGLU;
    int kv_rows = !mla || x->kind == KIND_LINEAR; /* k, v per row */
    size_t ecap = x->kind == KIND_MLA ? cap : R;
    size_t nrstd = R * (size_t)x->NH;
    if (mla && ecap * x->NH > nrstd)
        nrstd = ecap * x->NH;
    x->tok = carve(&cv, R, sizeof(int32_t));
    x->idx_dev = moe ? carve(&cv, 2 * MR, sizeof(int32_t)) : NULL;
    x->x = carve(&cv, R * C, sizeof(float));
    x->xa = carve(&cv, R * C, sizeof(float));
    x->s = carve(&cv, R * C, sizeof(float));
    x->sc = carve(&cv, R * C, sizeof(float));
    x->mean = carve(&cv, R, sizeof(float));
    x->rstd = carve(&cv, nrstd, sizeof(float));
    x->q = carve(&cv, R * QW, sizeof(float));
    x->ql = c->qk_norm ? carve(&cv, R * QW, sizeof(float)) : NULL;
    x->att = carve(&cv, R * QW, sizeof(float));
    x->k = kv_rows ? carve(&cv, R * KW, sizeof(float)) : NULL;
    x->kl = kv_rows && c->qk_norm ? carve(&cv, R * KW, sizeof(float)) : NULL;
    x->v = kv_rows ? carve(&cv, R * KW, sizeof(float)) : NULL;
    x->cl = mla ? carve(&cv, R * x->K, sizeof(float)) : NULL;
    x->cn = mla ? carve(&cv, R * x->K, sizeof(float)) : NULL;
    x->kr = mla ? carve(&cv, R * x->R, sizeof(float)) : NULL;
    x->ek = x->kind == KIND_MLA ? carve(&cv, cap * QW, sizeof(float)) : NULL;
    x->ekl = x->kind == KIND_MLA && c->qk_norm ? carve(&cv, cap * QW, sizeof(float)) : NULL;
    x->ev = x->kind == KIND_MLA ? carve(&cv, cap * QW, sizeof(float)) : NULL;
    x->ekn = mla ? carve(&cv, ecap * x->NH * x->D, sizeof(float)) : NULL;
    x->h = carve(&cv, MR * F, sizeof(float));
    x->u = swiglu ? carve(&cv, MR * F, sizeof(float)) : NULL;
    x->a = carve(&cv, MR * F, sizeof(float));
    x->probs = moe ? carve(&cv, R * x->E, sizeof(float)) : NULL;
    x->xe = moe ? carve(&cv, MR * C, sizeof(float)) : NULL;
    x->gate = moe ? carve(&cv, MR, sizeof(float)) : NULL;
    x->y = moe ? carve(&cv, MR * C, sizeof(float)) : NULL;
    x->logits = carve(&cv, R * x->V, sizeof(float));
    return cv.used;
}

void llm_infer_free(struct llm_infer *x)
{
    if (!x)
        return;
    if (x->be) {
        if (x->cache)
            x->be->ops->free(x->be->ctx, x->cache);
        if (x->scr)
            x->be->ops->free(x->be->ctx, x->scr);
    }
    llm_param_index_release(&x->ix);
    free(x->seq), free(x->stamp), free(x->lin);
    free(x->probs_h), free(x->idx_h), free(x->choice), free(x->count), free(x->mark);
    free(x->hq), free(x->hk), free(x->hv), free(x->ho), free(x->phq), free(x->phk);
    free(x);
}

int llm_infer_new(struct llm_infer **out, const struct llm_model *m, int max_seqs, int max_len)
{
    *out = NULL;
    if (!m || !m->be || !m->params)
        return llm_err(LLM_EINVAL, "infer: no model");
    const struct llm_model_config *c = &m->cfg;
    if (max_seqs < 1 || max_len < 1 || max_len > c->context_length)
        return llm_err(LLM_EINVAL,
                       "infer: %d sequences of %d tokens: expected >= 1 sequence of 1..%d "
                       "(context_length) tokens",
                       max_seqs, max_len, c->context_length);
    struct llm_infer *x = llm_calloc(1, sizeof(*x), "the inference state");
    if (!x)
        return LLM_ENOMEM;
    x->m = m;
    x->be = m->be;
    x->S = max_seqs, x->max_len = max_len;
    x->chunk = max_len < LLM_INFER_CHUNK ? max_len : LLM_INFER_CHUNK;
    x->rows = x->chunk > max_seqs ? x->chunk : max_seqs;
    x->L = c->n_layers, x->C = c->d_model, x->V = c->vocab_size, x->NH = c->n_heads;
    x->HS = llm_param_head_size(c), x->F = c->d_ff;
    x->kind = c->attention == LLM_ATTENTION_LINEAR  ? KIND_LINEAR
              : c->attention_kv == LLM_ATTENTION_KV_MLA ? KIND_MLA
                                                        : KIND_KV;
    x->mla = c->attention_kv == LLM_ATTENTION_KV_MLA;
    x->NKV = x->mla ? c->n_heads : llm_config_kv_heads(c);
    x->K = x->mla ? c->kv_lora_rank : 0;
    x->R = x->mla ? llm_param_mla_rope_dim(c) : 0;
    x->D = x->HS - x->R;
    x->E = c->mlp == LLM_MLP_MOE ? c->n_experts : 0;
    x->topk = x->E ? c->top_k : 1;
    x->QW = x->NH * x->HS, x->KW = x->NKV * x->HS;
    x->MR = x->rows * x->topk;
    x->rot = x->mla ? x->R : x->HS;
    x->rot_off = x->HS - x->rot;
    x->window = c->attention == LLM_ATTENTION_SLIDING ? c->window : 0;
    x->cap = max_len;
    if (x->window > 0 && (long)x->window + x->chunk - 1 + LLM_INFER_SLACK < max_len)
        x->cap = x->window + x->chunk - 1 + LLM_INFER_SLACK;
    int rc = 0;
    x->seq = llm_calloc((size_t)max_seqs, sizeof(*x->seq), "the inference state");
    x->stamp = llm_calloc((size_t)max_seqs, sizeof(int), "the inference state");
    if (!x->seq || !x->stamp) {
        rc = LLM_ENOMEM;
        goto fail;
    }
    if ((rc = llm_param_index_init(&x->ix, &m->layout, &m->cfg)))
        goto fail;
    x->lp = x->ix.layer;
    /* the cache */
    size_t per = (size_t)x->L * x->S * x->cap; /* rows of each cache part */
    size_t cache_floats = x->kind == KIND_KV    ? 2 * per * x->KW
                          : x->kind == KIND_MLA ? per * (size_t)(x->K + x->R)
                                                : 0;
    if (cache_floats) {
        if ((rc = x->be->ops->alloc(x->be->ctx, (void **)&x->cache, cache_floats * sizeof(float))))
            goto fail;
        if (x->kind == KIND_KV)
            x->kc = x->cache, x->vc = x->cache + per * x->KW;
        else
            x->lat = x->cache, x->krc = x->cache + per * x->K;
    }
    if (x->kind == KIND_LINEAR) {
        x->lin_floats = (size_t)x->NKV * ((size_t)x->HS * x->HS + x->HS);
        x->lin = llm_calloc((size_t)x->L * x->S * (LLM_INFER_SLACK + 1) * x->lin_floats + 1,
                            sizeof(float), "the linear attention state");
        size_t R = (size_t)x->rows;
        x->hq = llm_malloc(R * x->QW * sizeof(float), "the linear attention state");
        x->ho = llm_malloc(R * x->QW * sizeof(float), "the linear attention state");
        x->hk = llm_malloc(R * x->KW * sizeof(float), "the linear attention state");
        x->hv = llm_malloc(R * x->KW * sizeof(float), "the linear attention state");
        x->phq = llm_malloc((size_t)x->HS * sizeof(float), "the linear attention state");
        x->phk = llm_malloc((size_t)x->HS * sizeof(float), "the linear attention state");
        if (!x->lin || !x->hq || !x->ho || !x->hk || !x->hv || !x->phq || !x->phk) {
            rc = LLM_ENOMEM;
            goto fail;
        }
    }
    if (x->E) {
        x->probs_h = llm_malloc((size_t)x->rows * x->E * sizeof(float), "the expert routing");
        x->idx_h = llm_malloc(2 * (size_t)x->MR * sizeof(int32_t), "the expert routing");
        x->choice = llm_malloc((size_t)x->MR * sizeof(int32_t), "the expert routing");
        x->count = llm_calloc((size_t)x->E, sizeof(int), "the expert routing");
        x->mark = llm_calloc((size_t)x->E, sizeof(int), "the expert routing");
        if (!x->probs_h || !x->idx_h || !x->choice || !x->count || !x->mark) {
            rc = LLM_ENOMEM;
            goto fail;
        }
    }
    size_t bytes = layout_scratch(x, NULL);
    if ((rc = x->be->ops->alloc(x->be->ctx, (void **)&x->scr, bytes)))
        goto fail;
    layout_scratch(x, (char *)x->scr);
    *out = x;
    return 0;
fail:
    llm_infer_free(x);
    return rc;
}

/* ---- row-wise helpers ---- */

/* out (N, OC) = in (N, IC) @ w^T + b: linear_rows when gemv (row-independent
 * bits), else the sgemm of matmul_forward. */
/* The int8 copy of the weight rows starting at w (a parameter, or a block of
 * whole rows of one: MLA's splits), or 0 when that tensor is not quantized. */
static int q8_of(const struct llm_infer *x, const float *w, int IC, const int8_t **wq, const float **sc)
{
    const struct llm_param_layout *l = &x->m->layout;
    size_t off = (size_t)(w - x->m->params), lo = 0, hi = l->n;
    while (hi - lo > 1) { /* the last tensor starting at or before off */
        size_t mid = (lo + hi) / 2;
        if (l->p[mid].offset <= off)
            lo = mid;
        else
            hi = mid;
    }
    const struct llm_param_spec *p = &l->p[lo];
    if (x->q8->wq_off[lo] == SIZE_MAX || off >= p->offset + p->numel || p->shape[1] != IC)
        return 0;
    size_t in = off - p->offset; /* whole rows: a multiple of IC, hence of G */
    *wq = x->q8->wq + x->q8->wq_off[lo] + in * (size_t)x->q8->bits / 8; /* Q4: two codes a byte */
    *sc = x->q8->scales + x->q8->sc_off[lo] + in / (size_t)x->q8->G;
    return 1;
}

void llm_infer_use_q8(struct llm_infer *x, const struct llm_q8 *q) { x->q8 = q; }
void llm_infer_use_a8(struct llm_infer *x, int on) { x->a8 = on != 0; }

static int linear(struct llm_infer *x, int gemv, float *out, const float *in, const float *w,
                  const float *b, int N, int IC, int OC)
{
    if (N == 0)
        return 0;
    const int8_t *wq;
    const float *sc;
    if (gemv && x->q8 && q8_of(x, w, IC, &wq, &sc))
        return x->q8->bits == 4 ? OP(x, linear_rows_q4a8, out, in, (const uint8_t *)wq, sc, b, N, IC, OC)
               : x->a8          ? OP(x, linear_rows_q8a8, out, in, wq, sc, b, N, IC, OC, x->q8->G)
                                : OP(x, linear_rows_q8, out, in, wq, sc, b, N, IC, OC, x->q8->G);
    if (gemv)
        return OP(x, linear_rows, out, in, w, b, N, IC, OC);
    return OP(x, matmul_forward, out, in, w, b, N, IC, OC);
}

/* linear() of nseg matrices over the same input in one call (one split over
 * the threads and one wait for them, not one per matrix) when decoding
 * float weights (linear_rows_multi) or int8 weight-only ones
 * (linear_rows_q8_multi: every matrix quantized; fills seg's wq and scales)
 * on a backend that has the op; otherwise one linear() each. The bits are
 * the same either way. */
static int linear_multi(struct llm_infer *x, int gemv, const float *in, int N, int IC,
                        struct llm_rows_seg *seg, int nseg)
{
    const struct llm_backend_ops *ops = x->be->ops;
    if (gemv && N > 0 && !x->q8 && ops->linear_rows_multi)
        return OP(x, linear_rows_multi, in, N, IC, seg, nseg);
    if (gemv && N > 0 && x->q8 && x->q8->bits == 8 && !x->a8 && ops->linear_rows_q8_multi) {
        int all = 1;
        for (int m = 0; all && m < nseg; m++)
            all = q8_of(x, seg[m].w, IC, &seg[m].wq, &seg[m].scales);
        if (all)
            return OP(x, linear_rows_q8_multi, in, N, IC, x->q8->G, seg, nseg);
    }
    int rc = 0;
    for (int m = 0; m < nseg && !rc; m++)
        rc = linear(x, gemv, seg[m].out, in, seg[m].w, seg[m].bias, N, IC, seg[m].OC);
    return rc;
}

static int norm(struct llm_infer *x, float *out, const float *in, long w, long b, int N)
{
    float eps = (float)x->m->cfg.norm_eps;
    if (x->m->cfg.norm == LLM_NORM_LAYERNORM)
        return OP(x, layernorm_forward, out, x->mean, x->rstd, in, P(x, w), P(x, b), N, x->C, eps);
    return OP(x, rmsnorm_forward, out, x->rstd, in, P(x, w), N, x->C, eps);
}

static int act_kind(const struct llm_infer *x)
{
    enum llm_activation a = x->m->cfg.activation;
    return a == LLM_ACTIVATION_RELU ? LLM_ACT_RELU : a == LLM_ACTIVATION_RELU2 ? LLM_ACT_RELU2 : LLM_ACT_GELU;
}

/* The MLP sublayer on in (n, C) into sc (n, C): dense, or the mixture of
 * experts of moe.c (top-k of the router's softmax on the host, ties to the
 * lower expert, gates = the probabilities; rows sorted by expert then row, so
 * each row sums its experts' terms in expert order whatever the other rows). */
static int mlp(struct llm_infer *x, int l, const float *in, int n, int gemv)
{
    const struct llm_param_block *p = &x->lp[l];
    int C = x->C, F = x->F, swiglu = x->m->cfg.activation == LLM_ACTIVATION_SWIGLU;
    int rc;
    if (!x->E) {
        size_t nf = (size_t)n * F;
        struct llm_rows_seg up[2] = {{.w = P(x, p->w1), .bias = P(x, p->b1), .out = x->h, .OC = F},
                                     {.w = P(x, p->w3), .bias = P(x, p->b3), .out = x->u, .OC = F}};
        if ((rc = linear_multi(x, gemv, in, n, C, up, swiglu ? 2 : 1)))
            return rc;
        rc = swiglu ? OP(x, swiglu_forward, x->a, x->h, x->u, nf)
                    : OP(x, activation_forward, act_kind(x), x->a, x->h, nf);
        return rc ? rc : linear(x, gemv, x->sc, x->a, P(x, p->w2), P(x, p->b2), n, F, C);
    }
    int E = x->E, K = x->topk, M = n * K;
    if ((rc = linear(x, gemv, x->probs, in, P(x, p->router), NULL, n, C, E)) ||
        (rc = OP(x, softmax_forward, x->probs, x->probs, n, E)) ||
        (rc = x->be->ops->download(x->be->ctx, x->probs_h, x->probs, (size_t)n * E * sizeof(float))) ||
        (rc = x->be->ops->sync(x->be->ctx)))
        return rc;
    /* top-k per row: k passes of an argmax over the experts not yet taken
     * (strict >: ties keep the lower index); mark[e] == r + 1: taken for row r */
    memset(x->count, 0, (size_t)E * sizeof(int));
    memset(x->mark, 0, (size_t)E * sizeof(int));
    for (int r = 0; r < n; r++) {
        const float *pr = x->probs_h + (size_t)r * E;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++)
                if (x->mark[e] != r + 1 && (best < 0 || pr[e] > pr[best]))
                    best = e;
            x->mark[best] = r + 1;
            x->choice[(size_t)r * K + k] = best;
            x->count[best]++;
        }
    }
    int32_t *idx = x->idx_h, *flat = x->idx_h + M;
    for (int e = 0, off = 0; e < E; e++)
        x->mark[e] = off, off += x->count[e];
    for (int r = 0; r < n; r++)
        for (int k = 0; k < K; k++) {
            int e = x->choice[(size_t)r * K + k], row = x->mark[e]++;
            idx[row] = r;
            flat[row] = r * E + e;
        }
    const int32_t *didx = x->idx_dev, *dflat = x->idx_dev + M;
    if ((rc = x->be->ops->upload(x->be->ctx, x->idx_dev, x->idx_h, 2 * (size_t)M * sizeof(int32_t))) ||
        (rc = OP(x, gather_rows, x->xe, in, didx, NULL, M, n, C)) ||
        (rc = OP(x, gather_rows, x->gate, x->probs, dflat, NULL, M, n * E, 1)))
        return rc;
    for (int e = 0, off = 0, ne; e < E; e++, off += ne) {
        ne = x->count[e];
        const long *w = &p->expert[e * 3];
        if ((rc = linear(x, gemv, x->h + (size_t)off * F, x->xe + (size_t)off * C, P(x, w[0]), NULL,
                         ne, C, F)) ||
            (swiglu && (rc = linear(x, gemv, x->u + (size_t)off * F, x->xe + (size_t)off * C,
                                    P(x, w[1]), NULL, ne, C, F))))
            return rc;
    }
    rc = swiglu ? OP(x, swiglu_forward, x->a, x->h, x->u, (size_t)M * F)
                : OP(x, activation_forward, act_kind(x), x->a, x->h, (size_t)M * F);
    if (rc)
        return rc;
    for (int e = 0, off = 0, ne; e < E; e++, off += ne) {
        ne = x->count[e];
        if ((rc = linear(x, gemv, x->y + (size_t)off * C, x->a + (size_t)off * F,
                         P(x, p->expert[e * 3 + 2]), NULL, ne, F, C)))
            return rc;
    }
    if ((rc = x->be->ops->zero(x->be->ctx, x->sc, (size_t)n * C * sizeof(float))))
        return rc;
    return OP(x, scatter_add_rows, x->sc, x->y, didx, x->gate, M, n, C);
}

/* ---- attention ---- */

/* First row (of cap) of sequence s's cache in layer l. */
static size_t cache_row(const struct llm_infer *x, int l, int s)
{
    return ((size_t)l * x->S + s) * (size_t)x->cap;
}

/* Rows src (cnt, W) into the ring (cap, W) at positions pos0 .. pos0+cnt-1
 * (row p % cap; cnt <= cap, so at most two contiguous pieces). */
static int ring_write(struct llm_infer *x, float *ring, const float *src, int W, int pos0, int cnt)
{
    int a = pos0 % x->cap, n1 = cnt < x->cap - a ? cnt : x->cap - a;
    int rc = x->be->ops->copy(x->be->ctx, ring + (size_t)a * W, src, (size_t)n1 * W * sizeof(float));
    if (!rc && cnt > n1)
        rc = x->be->ops->copy(x->be->ctx, ring, src + (size_t)n1 * W,
                              (size_t)(cnt - n1) * W * sizeof(float));
    return rc;
}

/* Rope of cnt rows of H heads at positions pos0.. (MLA: each head's last R channels). */
static int rope(struct llm_infer *x, float *base, int cnt, int H, int pos0)
{
    if (x->m->cfg.position != LLM_POSITION_ROPE)
        return 0;
    return OP(x, rope_forward, base + x->rot_off, NULL, 1, cnt, H, x->HS, x->rot,
              (float)x->m->cfg.rope_theta, pos0);
}

/* MLA: expands len cached positions starting at ring slot a (position pos)
 * of sequence s into ek (keys, after qk_norm and rope) and ev at the same
 * slots. */
static int mla_expand(struct llm_infer *x, int l, int s, int a, int len, int pos, int gemv)
{
    const struct llm_param_block *p = &x->lp[l];
    int NH = x->NH, HS = x->HS, K = x->K, R = x->R, D = x->D, QW = x->QW, qk = x->m->cfg.qk_norm;
    size_t row = cache_row(x, l, s) + (size_t)a;
    const float *lat = x->lat + row * K, *kr = x->krc + row * R, *wb = P(x, p->wkv_b);
    float *kn = x->ekn + (size_t)a * NH * D, *v = x->ev + (size_t)a * QW;
    float *kasm = (qk ? x->ekl : x->ek) + (size_t)a * QW, *k = x->ek + (size_t)a * QW;
    int rc;
    if ((rc = linear(x, gemv, kn, lat, wb, NULL, len, K, NH * D)) ||
        (rc = linear(x, gemv, v, lat, wb + (size_t)NH * D * K, NULL, len, K, QW)) ||
        (rc = OP(x, copy_cols, kasm, HS, kn, D, len * NH, D, 0)))
        return rc;
    for (int h = 0; h < NH; h++) /* [D, HS) of every head: the shared rope key */
        if ((rc = OP(x, copy_cols, kasm + (size_t)h * HS + D, QW, kr, R, len, R, 0)))
            return rc;
    if (qk && (rc = OP(x, rmsnorm_forward, k, x->rstd, kasm, P(x, p->k_norm), len * NH, HS,
                       (float)x->m->cfg.norm_eps)))
        return rc;
    return rope(x, k, len, NH, pos);
}

static inline float phi(float v) { return v > 0 ? v + 1.0f : expf(v); }

/* Linear attention snapshot `slot` of (layer l, sequence s): (NKV, HS*HS + HS). */
static float *lin_state(const struct llm_infer *x, int l, int s, int slot)
{
    return x->lin + (((size_t)l * x->S + s) * (LLM_INFER_SLACK + 1) + slot) * x->lin_floats;
}

/* Linear attention of one group on the host: for each row (position p) the
 * state of length p (snapshot p % (SLACK+1)) is copied to snapshot p + 1 and
 * stepped: S += phi(k) v^T, z += phi(k); out = phi(q) S / (phi(q) . z), as
 * linear_attention_forward computes it. */
static int linear_group(struct llm_infer *x, int l, const struct grp *g)
{
    int HS = x->HS, NH = x->NH, NKV = x->NKV, G = NH / NKV, NS1 = LLM_INFER_SLACK + 1;
    size_t qb = (size_t)g->cnt * x->QW * sizeof(float), kb = (size_t)g->cnt * x->KW * sizeof(float);
    size_t HH = (size_t)HS * HS;
    void *ctx = x->be->ctx;
    int rc;
    if ((rc = x->be->ops->download(ctx, x->hq, x->q + (size_t)g->row0 * x->QW, qb)) ||
        (rc = x->be->ops->download(ctx, x->hk, x->k + (size_t)g->row0 * x->KW, kb)) ||
        (rc = x->be->ops->download(ctx, x->hv, x->v + (size_t)g->row0 * x->KW, kb)) ||
        (rc = x->be->ops->sync(ctx)))
        return rc;
    float *Q = x->phq, *Kp = x->phk;
    for (int t = 0; t < g->cnt; t++) {
        int p = g->pos0 + t;
        float *cur = lin_state(x, l, g->seq, (p + 1) % NS1);
        memcpy(cur, lin_state(x, l, g->seq, p % NS1), x->lin_floats * sizeof(float));
        for (int kv = 0; kv < NKV; kv++) {
            float *S = cur + (size_t)kv * (HH + HS), *z = S + HH;
            const float *kt = x->hk + ((size_t)t * NKV + kv) * HS, *vt = x->hv + ((size_t)t * NKV + kv) * HS;
            for (int i = 0; i < HS; i++) {
                Kp[i] = phi(kt[i]);
                z[i] += Kp[i];
                float *Si = S + (size_t)i * HS;
                for (int j = 0; j < HS; j++)
                    Si[j] += Kp[i] * vt[j];
            }
            for (int h = kv * G; h < (kv + 1) * G; h++) {
                const float *qt = x->hq + ((size_t)t * NH + h) * HS;
                float *ot = x->ho + ((size_t)t * NH + h) * HS, den = 0;
                for (int i = 0; i < HS; i++) {
                    Q[i] = phi(qt[i]);
                    den += Q[i] * z[i];
                }
                float inv = 1.0f / den;
                memset(ot, 0, (size_t)HS * sizeof(float));
                for (int i = 0; i < HS; i++) {
                    const float *Si = S + (size_t)i * HS;
                    for (int j = 0; j < HS; j++)
                        ot[j] += Q[i] * Si[j];
                }
                for (int j = 0; j < HS; j++)
                    ot[j] *= inv;
            }
        }
    }
    return x->be->ops->upload(ctx, x->att + (size_t)g->row0 * x->QW, x->ho, qb);
}

/* MLA with linear attention: the keys (before qk_norm and rope) and values
 * of the n new rows from their latents, as model.c builds them (no cache:
 * the recurrent state consumes them). */
static int mla_rows(struct llm_infer *x, int l, int n, int gemv)
{
    const float *wb = P(x, x->lp[l].wkv_b);
    int NH = x->NH, HS = x->HS, K = x->K, R = x->R, D = x->D, QW = x->QW;
    float *k = x->m->cfg.qk_norm ? x->kl : x->k;
    int rc;
    if ((rc = linear(x, gemv, x->ekn, x->cn, wb, NULL, n, K, NH * D)) ||
        (rc = linear(x, gemv, x->v, x->cn, wb + (size_t)NH * D * K, NULL, n, K, QW)) ||
        (rc = OP(x, copy_cols, k, HS, x->ekn, D, n * NH, D, 0)))
        return rc;
    for (int h = 0; h < NH; h++)
        if ((rc = OP(x, copy_cols, k + (size_t)h * HS + D, QW, x->kr, R, n, R, 0)))
            return rc;
    return 0;
}

/* The attention sublayer on in (n, C) into sc (n, C). */
static int attention(struct llm_infer *x, int l, const float *in, const struct grp *grps, int ng,
                     int n, int gemv)
{
    const struct llm_param_block *p = &x->lp[l];
    int C = x->C, NH = x->NH, NKV = x->NKV, HS = x->HS, QW = x->QW, KW = x->KW;
    int qk = x->m->cfg.qk_norm;
    float eps = (float)x->m->cfg.norm_eps, scale = 1.0f / sqrtf((float)HS);
    int rc;
    /* the projections of the input: q, k, v; with MLA q and the two parts
     * of wkv_a (the latent c, the decoupled rope key) */
    struct llm_rows_seg qkv[3] = {{.w = P(x, p->wq), .bias = P(x, p->bq), .out = qk ? x->ql : x->q, .OC = QW},
                                  {.w = P(x, p->wk), .bias = P(x, p->bk), .out = qk ? x->kl : x->k, .OC = KW},
                                  {.w = P(x, p->wv), .bias = P(x, p->bv), .out = x->v, .OC = KW}};
    if (x->mla) {
        const float *wa = P(x, p->wkv_a);
        qkv[1] = (struct llm_rows_seg){.w = wa, .out = x->cl, .OC = x->K};
        qkv[2] = (struct llm_rows_seg){.w = wa + (size_t)x->K * C, .out = x->kr, .OC = x->R};
    }
    if ((rc = linear_multi(x, gemv, in, n, C, qkv, 3)))
        return rc;
    if (x->mla && ((rc = OP(x, rmsnorm_forward, x->cn, x->rstd, x->cl, P(x, p->kv_norm), n, x->K, eps)) ||
                   (x->kind == KIND_LINEAR && (rc = mla_rows(x, l, n, gemv)))))
        return rc;
    if (qk && ((rc = OP(x, rmsnorm_forward, x->q, x->rstd, x->ql, P(x, p->q_norm), n * NH, HS, eps)) ||
               (x->kind != KIND_MLA &&
                (rc = OP(x, rmsnorm_forward, x->k, x->rstd, x->kl, P(x, p->k_norm), n * NKV, HS, eps)))))
        return rc;
    for (int i = 0; i < ng; i++) {
        const struct grp *g = &grps[i];
        float *q = x->q + (size_t)g->row0 * QW, *att = x->att + (size_t)g->row0 * QW;
        size_t row = cache_row(x, l, g->seq);
        if ((rc = rope(x, q, g->cnt, NH, g->pos0)))
            return rc;
        if (x->kind == KIND_KV) {
            float *k = x->k + (size_t)g->row0 * KW, *v = x->v + (size_t)g->row0 * KW;
            float *kc = x->kc + row * KW, *vc = x->vc + row * KW;
            if ((rc = rope(x, k, g->cnt, NKV, g->pos0)) ||
                (rc = ring_write(x, kc, k, KW, g->pos0, g->cnt)) ||
                (rc = ring_write(x, vc, v, KW, g->pos0, g->cnt)) ||
                (rc = OP(x, attention_cached, att, q, kc, vc, g->cnt, g->pos0, x->cap, NH, NKV, HS,
                         x->window, scale)))
                return rc;
        } else if (x->kind == KIND_MLA) {
            int K = x->K, R = x->R, last = g->pos0 + g->cnt - 1;
            int lo = x->window > 0 && g->pos0 - x->window + 1 > 0 ? g->pos0 - x->window + 1 : 0;
            int npos = last - lo + 1, a = lo % x->cap, n1 = npos < x->cap - a ? npos : x->cap - a;
            if ((rc = ring_write(x, x->lat + row * K, x->cn + (size_t)g->row0 * K, K, g->pos0, g->cnt)) ||
                (rc = ring_write(x, x->krc + row * R, x->kr + (size_t)g->row0 * R, R, g->pos0, g->cnt)) ||
                (rc = mla_expand(x, l, g->seq, a, n1, lo, gemv)) ||
                (npos > n1 && (rc = mla_expand(x, l, g->seq, 0, npos - n1, lo + n1, gemv))) ||
                (rc = OP(x, attention_cached, att, q, x->ek, x->ev, g->cnt, g->pos0, x->cap, NH, NH,
                         HS, x->window, scale)))
                return rc;
        } else {
            if ((rc = rope(x, x->k + (size_t)g->row0 * KW, g->cnt, NKV, g->pos0)) ||
                (rc = linear_group(x, l, g)))
                return rc;
        }
    }
    return linear(x, gemv, x->sc, x->att, P(x, p->wo), P(x, p->bo), n, QW, C);
}

/* ---- one step: n rows in ng groups ----
 * Logits of rows lrow0 .. lrow0+lrows-1 (none when lrows = 0) into host out. */
static int step(struct llm_infer *x, const struct grp *grps, int ng, int n, const int32_t *tokens,
                int gemv, int lrow0, int lrows, float *out)
{
    const struct llm_model_config *c = &x->m->cfg;
    int C = x->C, rc;
    size_t nc = (size_t)n * C;
    if ((rc = x->be->ops->upload(x->be->ctx, x->tok, tokens, (size_t)n * sizeof(int32_t))) ||
        (rc = OP(x, embedding_forward, x->x, x->tok, P(x, x->ix.tok_emb), n, C, x->V)))
        return rc;
    const float *table = c->position == LLM_POSITION_LEARNED      ? P(x, x->ix.pos_emb)
                         : c->position == LLM_POSITION_SINUSOIDAL ? x->m->pos_table
                                                                  : NULL;
    for (int i = 0; table && i < ng; i++)
        if ((rc = OP(x, add_positions, x->x + (size_t)grps[i].row0 * C, table, NULL, 1, grps[i].cnt, C,
                     grps[i].pos0)))
            return rc;
    for (int l = 0; l < x->L; l++) {
        const struct llm_param_block *p = &x->lp[l];
        if (c->norm_position == LLM_NORM_POSITION_PRE) {
            if ((rc = norm(x, x->xa, x->x, p->attn_norm_w, p->attn_norm_b, n)) ||
                (rc = attention(x, l, x->xa, grps, ng, n, gemv)) ||
                (rc = OP(x, add, x->s, x->x, x->sc, nc)) ||
                (rc = norm(x, x->xa, x->s, p->mlp_norm_w, p->mlp_norm_b, n)) ||
                (rc = mlp(x, l, x->xa, n, gemv)) || (rc = OP(x, add, x->x, x->s, x->sc, nc)))
                return rc;
        } else {
            if ((rc = attention(x, l, x->x, grps, ng, n, gemv)) ||
                (rc = OP(x, add, x->s, x->x, x->sc, nc)) ||
                (rc = norm(x, x->xa, x->s, p->attn_norm_w, p->attn_norm_b, n)) ||
                (rc = mlp(x, l, x->xa, n, gemv)) || (rc = OP(x, add, x->s, x->xa, x->sc, nc)) ||
                (rc = norm(x, x->x, x->s, p->mlp_norm_w, p->mlp_norm_b, n)))
                return rc;
        }
    }
    if (lrows <= 0)
        return 0;
    float *xa = x->xa + (size_t)lrow0 * C;
    if ((rc = norm(x, xa, x->x + (size_t)lrow0 * C, x->ix.final_w, x->ix.final_b, lrows)) ||
        (rc = linear(x, gemv, x->logits, xa, P(x, x->ix.lm_head), NULL, lrows, C, x->V)) ||
        (rc = x->be->ops->download(x->be->ctx, out, x->logits, (size_t)lrows * x->V * sizeof(float))))
        return rc;
    return x->be->ops->sync(x->be->ctx);
}

/* ---- sequences ---- */

static int seq_ok(const struct llm_infer *x, int seq)
{
    return x && seq >= 0 && seq < x->S;
}

/* Whether seq can go back to len (0 < len <= its length) with what the cache still holds. */
static int can_truncate(const struct llm_infer *x, int seq, int len)
{
    const struct seq_state *s = &x->seq[seq];
    if (x->kind == KIND_LINEAR)
        return len >= s->lin_lo;
    /* rows of positions < hw - cap were overwritten; the next query (at len)
     * needs keys from len - window + 1 on (window 0: cap = max_len >= hw) */
    return s->hw <= x->cap || s->hw - len <= x->cap - x->window + 1;
}

static void reset_seq(struct llm_infer *x, int seq)
{
    memset(&x->seq[seq], 0, sizeof(x->seq[seq]));
    if (x->kind == KIND_LINEAR) /* length 0: the zero state in snapshot 0 */
        for (int l = 0; l < x->L; l++)
            memset(lin_state(x, l, seq, 0), 0, x->lin_floats * sizeof(float));
}

/* Before a step appends cnt rows at pos0: what the writes may overwrite,
 * counted as overwritten even if the step fails. */
static void note_writes(struct llm_infer *x, int seq, int pos0, int cnt)
{
    struct seq_state *s = &x->seq[seq];
    int end = pos0 + cnt, lo = end + 1 - (LLM_INFER_SLACK + 1);
    if (end > s->hw)
        s->hw = end;
    if (x->kind == KIND_LINEAR && lo > s->lin_lo)
        s->lin_lo = lo;
}

/* After a failed step: back to len if the cache allows, else empty. */
static void rollback(struct llm_infer *x, int seq, int len)
{
    if (len > 0 && can_truncate(x, seq, len))
        x->seq[seq].len = len;
    else
        reset_seq(x, seq);
}

int llm_infer_len(const struct llm_infer *x, int seq)
{
    return seq_ok(x, seq) ? x->seq[seq].len : 0;
}

int llm_infer_truncate(struct llm_infer *x, int seq, int len)
{
    if (!seq_ok(x, seq))
        return llm_err(LLM_EINVAL, "infer: sequence %d is outside [0, %d)", seq, x ? x->S : 0);
    int cur = x->seq[seq].len;
    if (len < 0 || len > cur)
        return llm_err(LLM_EINVAL, "infer: cannot truncate sequence %d of %d tokens to %d", seq,
                       cur, len);
    if (len == cur)
        return 0;
    if (len == 0) {
        reset_seq(x, seq);
        return 0;
    }
    if (!can_truncate(x, seq, len))
        return llm_err(LLM_EUNSUPPORTED,
                       "infer: sequence %d cannot go back to %d tokens: %s", seq, len,
                       x->kind == KIND_LINEAR ? "linear attention keeps snapshots of its last "
                                                "steps only"
                                              : "the sliding window's ring no longer holds those keys");
    x->seq[seq].len = len;
    return 0;
}

static int check_tokens(const struct llm_infer *x, const int32_t *tokens, int n)
{
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= x->V)
            return llm_err(LLM_EINVAL, "infer: token id %d at position %d is outside the vocabulary (%d)",
                           tokens[i], i, x->V);
    return 0;
}

int llm_infer_prefill(struct llm_infer *x, int seq, const int32_t *tokens, int n, float *logits,
                      int all)
{
    if (!seq_ok(x, seq))
        return llm_err(LLM_EINVAL, "infer: sequence %d is outside [0, %d)", seq, x ? x->S : 0);
    if (n < 1 || !tokens || !logits)
        return llm_err(LLM_EINVAL, "infer: prefill needs n >= 1 tokens and a logits buffer (n = %d)", n);
    int orig = x->seq[seq].len, rc;
    if ((long)orig + n > x->max_len)
        return llm_err(LLM_EINVAL, "infer: sequence %d of %d tokens cannot take %d more (max_len %d)",
                       seq, orig, n, x->max_len);
    if ((rc = check_tokens(x, tokens, n)))
        return rc;
    for (int done = 0; done < n;) {
        int cnt = n - done < x->chunk ? n - done : x->chunk, last = done + cnt == n;
        struct grp g = {seq, x->seq[seq].len, cnt, 0};
        int lrow0 = all ? 0 : cnt - 1, lrows = all ? cnt : last;
        note_writes(x, seq, g.pos0, cnt);
        rc = step(x, &g, 1, cnt, tokens + done, cnt <= LLM_INFER_ROWS, lrow0, lrows,
                  all ? logits + (size_t)done * x->V : logits);
        if (rc) {
            rollback(x, seq, orig);
            return rc;
        }
        x->seq[seq].len += cnt;
        done += cnt;
    }
    return 0;
}

int llm_infer_decode(struct llm_infer *x, const int *seqs, const int32_t *tokens, int n,
                     float *logits)
{
    if (!x || n < 1 || n > x->S || !seqs || !tokens || !logits)
        return llm_err(LLM_EINVAL, "infer: decode needs 1..%d sequences, got %d", x ? x->S : 0, n);
    int rc = check_tokens(x, tokens, n);
    if (rc)
        return rc;
    if (x->stamp_now == INT_MAX) { /* before it would overflow: start the stamps afresh */
        memset(x->stamp, 0, (size_t)x->S * sizeof(int));
        x->stamp_now = 0;
    }
    x->stamp_now++;
    for (int i = 0; i < n; i++) {
        int s = seqs[i];
        if (!seq_ok(x, s))
            return llm_err(LLM_EINVAL, "infer: sequence %d (entry %d) is outside [0, %d)", s, i, x->S);
        if (x->stamp[s] == x->stamp_now)
            return llm_err(LLM_EINVAL, "infer: sequence %d appears twice in one decode step", s);
        x->stamp[s] = x->stamp_now;
        if (x->seq[s].len >= x->max_len)
            return llm_err(LLM_EINVAL, "infer: sequence %d is full (max_len %d)", s, x->max_len);
    }
    struct grp *g = llm_malloc((size_t)n * sizeof(*g), "a decode step");
    if (!g)
        return LLM_ENOMEM;
    for (int i = 0; i < n; i++) {
        g[i] = (struct grp){seqs[i], x->seq[seqs[i]].len, 1, i};
        note_writes(x, seqs[i], g[i].pos0, 1);
    }
    rc = step(x, g, n, n, tokens, 1, 0, n, logits);
    for (int i = 0; i < n; i++) {
        if (rc)
            rollback(x, seqs[i], g[i].pos0);
        else
            x->seq[seqs[i]].len++;
    }
    free(g);
    return rc;
}
