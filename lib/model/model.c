/* model.c: the transformer's forward and backward passes over the backend
 * ops (nn/backend.h), for every variant of the config: learned, sinusoidal
 * or rotary positions; layernorm or rmsnorm, before (pre) or after (post)
 * each sublayer; full, sliding-window or linear attention with MHA, GQA, MQA
 * or multi-head latent attention (MLA); qk_norm; relu, gelu, relu2 or swiglu
 * MLPs, dense or a mixture of experts (moe.c); biases; tied or untied head;
 * dropout. Shapes: N = B*T rows, C, NH, NKV, HS, F, V (model_impl.h).
 *
 * MLA (attention_kv = mla, DeepSeek-V2 sec. 2.1; layout in params.h), with
 * K = kv_lora_rank, R = rope dims, D = HS - R, all NH heads (no GQA):
 *   c_lat (N, K) = x @ wkv_a[0:K]^T          k_r (N, R) = x @ wkv_a[K:K+R]^T
 *   c_n = rmsnorm(c_lat) * kv_norm            (eps = norm_eps)
 *   k_nope (N, NH*D) = c_n @ wkv_b[0:NH*D]^T  v (N, NH*HS) = c_n @ wkv_b[NH*D:]^T
 *   k[n,h,:] = [k_nope[n,h,:] ; k_r[n,:]]     (the one rope key shared by all heads)
 *   q (N, NH*HS) = x @ wq^T (+ bias): head h = [q_nope (D) ; q_rope (R)]
 * (a row slice of a [out, in] weight is itself a contiguous matrix, so each
 * part is one matmul on a sub-block of wkv_a or wkv_b). Then as the standard
 * path: qk_norm (if set) over the assembled HS-dim q and k heads, then rope
 * on the last R channels of every q and k head only (with position = rope;
 * otherwise no rotation), attention with scale 1/sqrt(HS), wo. Rotating the
 * assembled keys per head rather than k_r once gives the same numbers without
 * qk_norm (every head carries the same k_r) and keeps qk_norm before rope,
 * as in the standard path. */
#include "model_impl.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- dims ---- */
static int pre_norm(const struct llm_model *m) { return m->cfg.norm_position == LLM_NORM_POSITION_PRE; }
static int has_layernorm(const struct llm_model *m) { return m->cfg.norm == LLM_NORM_LAYERNORM; }
/* MLA's rope dims R per head (0 without MLA); D = HS - R is where they start. */
static int mla_R(const struct llm_model *m)
{
    return is_mla(m) ? llm_param_mla_rope_dim(&m->cfg) : 0;
}

/* ---- init ---- */
static int init_params(struct llm_model *m, uint64_t seed)
{
    size_t total = m->layout.total;
    float *host = llm_calloc(total ? total : 1, sizeof(float), "the initial parameters");
    if (!host)
        return LLM_ENOMEM;
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    double std = m->cfg.init_std, proj_std = std / sqrt(2.0 * m->cfg.n_layers);
    for (size_t i = 0; i < m->layout.n; i++) {
        const struct llm_param_spec *p = &m->layout.p[i];
        float *x = host + p->offset;
        const char *dot = strrchr(p->name, '.');
        int is_bias = dot && !strcmp(dot, ".bias");
        if (p->kind == LLM_PARAM_NORM) {
            for (size_t j = 0; j < p->numel; j++)
                x[j] = is_bias ? 0.0f : 1.0f;
        } else if (p->kind == LLM_PARAM_BIAS) {
            /* zeros (calloc) */
        } else {
            /* GPT-2: residual output projections get std / sqrt(2 L) */
            int out_proj = strstr(p->name, "attn.wo.") || strstr(p->name, ".w2.");
            double s = out_proj ? proj_std : std;
            for (size_t j = 0; j < p->numel; j++)
                x[j] = (float)(s * llm_rng_normal(&r));
        }
    }
    int rc = m->be->ops->upload(m->be->ctx, m->params, host, total * sizeof(float));
    free(host);
    return rc;
}

static int init_pos_table(struct llm_model *m)
{
    int T = m->cfg.context_length, C = m->cfg.d_model;
    float *host = llm_malloc((size_t)T * C * sizeof(float), "the position table");
    if (!host)
        return LLM_ENOMEM;
    /* Vaswani et al. 2017: PE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(...) */
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++) {
            double freq = pow(10000.0, -(double)(i & ~1) / C);
            host[(size_t)t * C + i] = (float)(i & 1 ? cos(t * freq) : sin(t * freq));
        }
    int rc = m->be->ops->alloc(m->be->ctx, (void **)&m->pos_table, (size_t)T * C * sizeof(float));
    if (!rc)
        rc = m->be->ops->upload(m->be->ctx, m->pos_table, host, (size_t)T * C * sizeof(float));
    free(host);
    return rc;
}

/* random = 0 leaves the parameters as the backend's alloc gives them (zero). */
static int setup(struct llm_model *m, const struct llm_model_config *cfg, struct llm_backend *be,
                 uint64_t seed, int random)
{
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
    m->be = be;
    int rc = llm_param_layout_init(&m->layout, cfg);
    if (rc)
        return rc;
    m->acts = llm_calloc(1, sizeof(*m->acts), "the model");
    if (!m->acts) {
        llm_model_release(m);
        return LLM_ENOMEM;
    }
    struct llm_model_acts *A = m->acts;
    A->la = llm_calloc((size_t)cfg->n_layers, sizeof(*A->la), "the model");
    if (!A->la) {
        llm_model_release(m);
        return LLM_ENOMEM;
    }
    if (!(rc = llm_param_index_init(&A->ix, &m->layout, cfg))) {
        A->lp = A->ix.layer;
    }
    if (rc ||
        (rc = be->ops->alloc(be->ctx, (void **)&m->params, m->layout.total * sizeof(float))) ||
        (random && (rc = init_params(m, seed))) ||
        (cfg->position == LLM_POSITION_SINUSOIDAL && (rc = init_pos_table(m)))) {
        llm_model_release(m);
        return rc;
    }
    llm_rng_seed(&m->rng, seed ^ 0x5eedd0d0ULL);
    return 0;
}

int llm_model_init(struct llm_model *m, const struct llm_model_config *cfg, struct llm_backend *be,
                   uint64_t seed)
{
    return setup(m, cfg, be, seed, 1);
}

int llm_model_init_zero(struct llm_model *m, const struct llm_model_config *cfg, struct llm_backend *be)
{
    return setup(m, cfg, be, 0, 0);
}

void llm_model_release(struct llm_model *m)
{
    if (m->be) {
        void *ctx = m->be->ctx;
        void (*fr)(void *, void *) = m->be->ops->free;
        if (m->params)
            fr(ctx, m->params);
        if (m->grads)
            fr(ctx, m->grads);
        if (m->pos_table)
            fr(ctx, m->pos_table);
        if (m->act_mem)
            fr(ctx, m->act_mem);
        if (m->tokens)
            fr(ctx, m->tokens);
        if (m->targets)
            fr(ctx, m->targets);
        if (m->pos)
            fr(ctx, m->pos);
    }
    moe_release(m);
    if (m->acts)
        llm_param_index_release(&m->acts->ix), free(m->acts->la);
    free(m->acts);
    free(m->host_targets), free(m->host_losses);
    llm_param_layout_release(&m->layout);
    memset(m, 0, sizeof(*m));
}

/* ---- activation memory: one buffer, carved in a fixed order ---- */
struct carver {
    float *base;
    size_t used;
};

static float *carve(struct carver *c, size_t n)
{
    float *p = c->base ? c->base + c->used : NULL;
    c->used += (n + 15) & ~(size_t)15; /* keep 64-byte alignment */
    return p;
}

/* Lays out the activations for B x T tokens; with base NULL only counts. */
static size_t layout_acts(struct llm_model *m, float *base, int B, int T)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    size_t N = (size_t)B * T, C = (size_t)c->d_model, F = (size_t)c->d_ff, V = (size_t)c->vocab_size;
    size_t NH = (size_t)c->n_heads, NKV = (size_t)NKV_(m), HS = (size_t)HS_(m);
    size_t K = (size_t)c->kv_lora_rank, R = (size_t)mla_R(m), D = HS - R;
    size_t E = (size_t)c->n_experts, M = N * (size_t)c->top_k;
    size_t MR = is_moe(m) ? M : N; /* rows of the MLP's hidden layer */
    int swiglu = is_swiglu(m), ln = has_layernorm(m), mla = is_mla(m), moe = is_moe(m);
    struct carver cv = {base, 0};
    A->emb = carve(&cv, N * C);
    float *prev = A->emb;
    for (int l = 0; l < c->n_layers; l++) {
        struct layer_acts *a = &A->la[l];
        memset(a, 0, sizeof(*a));
        a->res_in = prev;
        a->n1 = carve(&cv, N * C);
        a->n1_mean = ln ? carve(&cv, N) : NULL;
        a->n1_rstd = carve(&cv, N);
        a->q_lin = c->qk_norm ? carve(&cv, N * NH * HS) : NULL;
        a->k_lin = c->qk_norm ? carve(&cv, N * NKV * HS) : NULL;
        a->q_rstd = c->qk_norm ? carve(&cv, N * NH) : NULL;
        a->k_rstd = c->qk_norm ? carve(&cv, N * NKV) : NULL;
        a->q = carve(&cv, N * NH * HS);
        a->k = carve(&cv, N * NKV * HS);
        a->v = carve(&cv, N * NKV * HS);
        if (mla) {
            a->c_lat = carve(&cv, N * K);
            a->c_rstd = carve(&cv, N);
            a->c_n = carve(&cv, N * K);
        }
        a->att = carve(&cv, N * NH * HS);
        a->lse = carve(&cv, (size_t)B * NH * T);
        a->s1 = carve(&cv, N * C);
        a->n2 = carve(&cv, N * C);
        a->n2_mean = ln ? carve(&cv, N) : NULL;
        a->n2_rstd = carve(&cv, N);
        a->h = carve(&cv, MR * F);
        a->u = swiglu ? carve(&cv, MR * F) : NULL;
        a->a = carve(&cv, MR * F);
        if (moe) {
            a->probs = carve(&cv, N * E);
            a->xe = carve(&cv, M * C);
            a->gate = carve(&cv, M);
            a->y = carve(&cv, M * C);
        }
        a->s2 = carve(&cv, N * C);
        prev = pre_norm(m) ? a->s2 : a->n2;
    }
    A->nf = carve(&cv, N * C);
    A->nf_mean = ln ? carve(&cv, N) : NULL;
    A->nf_rstd = carve(&cv, N);
    A->logits = carve(&cv, N * V);
    A->losses = carve(&cv, N);
    A->scratch = carve(&cv, N * C);
    A->kn = mla ? carve(&cv, N * NH * D) : NULL;
    A->kr = mla ? carve(&cv, N * R) : NULL;
    A->g = carve(&cv, N * C);
    A->dA = carve(&cv, N * C);
    A->dB = carve(&cv, N * C);
    A->dC = carve(&cv, N * C);
    A->dq = carve(&cv, N * NH * HS);
    A->dk = carve(&cv, N * NKV * HS);
    A->dv = carve(&cv, N * NKV * HS);
    A->datt = carve(&cv, N * NH * HS);
    A->dql = c->qk_norm ? carve(&cv, N * NH * HS) : NULL;
    A->dkl = c->qk_norm ? carve(&cv, N * NKV * HS) : NULL;
    A->dc = mla ? carve(&cv, N * K) : NULL;
    A->dc2 = mla ? carve(&cv, N * K) : NULL;
    A->dh = carve(&cv, MR * F);
    A->du = swiglu ? carve(&cv, MR * F) : NULL;
    A->da = carve(&cv, MR * F);
    A->dy = moe ? carve(&cv, M * C) : NULL;
    A->dy2 = moe && swiglu ? carve(&cv, M * C) : NULL;
    A->dgate = moe ? carve(&cv, M) : NULL;
    A->dp = moe ? carve(&cv, N * E) : NULL;
    return cv.used;
}

static int ensure_acts(struct llm_model *m, int B, int T)
{
    if (m->act_mem && B <= m->B_cap && T <= m->T_cap) {
        /* re-carve for this B x T inside the existing buffer (it fits) */
        layout_acts(m, m->act_mem, B, T);
        return 0;
    }
    void *ctx = m->be->ctx;
    m->B_cap = m->T_cap = 0; /* until every buffer below is in place */
    if (m->act_mem)
        m->be->ops->free(ctx, m->act_mem), m->act_mem = NULL;
    if (m->tokens)
        m->be->ops->free(ctx, m->tokens), m->tokens = NULL;
    if (m->targets)
        m->be->ops->free(ctx, m->targets), m->targets = NULL;
    if (m->pos)
        m->be->ops->free(ctx, m->pos), m->pos = NULL;
    size_t N = (size_t)B * T;
    /* MoE: row indices token * E + expert (and M = N * top_k <= N * E) are ints */
    if (is_moe(m) && N * (size_t)m->cfg.n_experts > (size_t)INT_MAX / 2)
        return llm_err(LLM_EINVAL, "model: %zu tokens x %d experts are too many to route in one batch",
                       N, m->cfg.n_experts);
    size_t n = layout_acts(m, NULL, B, T);
    int rc;
    if ((rc = m->be->ops->alloc(ctx, (void **)&m->act_mem, n * sizeof(float))) ||
        (rc = m->be->ops->alloc(ctx, (void **)&m->tokens, N * sizeof(int32_t))) ||
        (rc = m->be->ops->alloc(ctx, (void **)&m->targets, N * sizeof(int32_t))) ||
        (rc = m->be->ops->alloc(ctx, (void **)&m->pos, N * sizeof(int32_t))) ||
        (is_moe(m) && (rc = moe_ensure(m, (int)N))))
        return rc;
    free(m->host_targets), free(m->host_losses);
    m->host_targets = llm_malloc(N * sizeof(int32_t), "targets");
    m->host_losses = llm_malloc(N * sizeof(float), "losses");
    if (!m->host_targets || !m->host_losses)
        return LLM_ENOMEM;
    m->act_floats = n;
    m->B_cap = B, m->T_cap = T;
    layout_acts(m, m->act_mem, B, T);
    return 0;
}

/* ---- sublayer helpers ---- */
static int norm_forward(struct llm_model *m, float *out, float *mean, float *rstd, const float *x,
                        long w, long b, int N)
{
    int C = m->cfg.d_model;
    float eps = (float)m->cfg.norm_eps;
    if (has_layernorm(m))
        return OP(m, layernorm_forward, out, mean, rstd, x, P(m, w), P(m, b), N, C, eps);
    return OP(m, rmsnorm_forward, out, rstd, x, P(m, w), N, C, eps);
}

static int norm_backward(struct llm_model *m, float *dx, long w, long b, const float *dout,
                         const float *x, const float *mean, const float *rstd, int N)
{
    int C = m->cfg.d_model;
    if (has_layernorm(m))
        return OP(m, layernorm_backward, dx, G(m, w), G(m, b), dout, x, P(m, w), mean, rstd, N, C);
    return OP(m, rmsnorm_backward, dx, G(m, w), dout, x, P(m, w), rstd, N, C);
}

static uint64_t site_seed(const struct llm_model *m, int site)
{
    uint64_t x = m->dropout_seed + (uint64_t)site * 0x9e3779b97f4a7c15ULL;
    return llm_splitmix64(&x);
}

static int dropout_on(const struct llm_model *m) { return m->training && m->cfg.dropout > 0; }

/* MLA's keys and values (see the top of the file): in (N, C) -> k (N, NH, HS)
 * assembled before qk_norm and rope, v (N, NH*HS); keeps c_lat, c_rstd, c_n. */
static int mla_kv_forward(struct llm_model *m, int l, const float *in, float *k, float *v)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    struct llm_param_block *p = &A->lp[l];
    struct layer_acts *a = &A->la[l];
    int N = m->B * m->T, C = c->d_model, NH = c->n_heads, HS = HS_(m);
    int K = c->kv_lora_rank, R = mla_R(m), D = HS - R;
    const float *wa = P(m, p->wkv_a), *wb = P(m, p->wkv_b);
    int rc;
    if ((rc = OP(m, matmul_forward, a->c_lat, in, wa, NULL, N, C, K)) ||
        (rc = OP(m, matmul_forward, A->kr, in, wa + (size_t)K * C, NULL, N, C, R)) ||
        (rc = OP(m, rmsnorm_forward, a->c_n, a->c_rstd, a->c_lat, P(m, p->kv_norm), N, K,
                 (float)c->norm_eps)) ||
        (rc = OP(m, matmul_forward, A->kn, a->c_n, wb, NULL, N, K, NH * D)) ||
        (rc = OP(m, matmul_forward, v, a->c_n, wb + (size_t)NH * D * K, NULL, N, K, NH * HS)))
        return rc;
    /* k viewed as (N*NH, HS) rows: [0, D) from k_nope viewed as (N*NH, D) */
    if ((rc = OP(m, copy_cols, k, HS, A->kn, D, N * NH, D, 0)))
        return rc;
    for (int h = 0; h < NH; h++) /* [D, HS) of head h: the shared k_r */
        if ((rc = OP(m, copy_cols, k + (size_t)h * HS + D, NH * HS, A->kr, R, N, R, 0)))
            return rc;
    return 0;
}

/* Its backward: dk (N, NH, HS) and dv (N, NH*HS) are the gradients of the
 * assembled keys and of the values; ADDS the input gradient to dx (N, C).
 * Uses kn, kr (as gradients), dc, dc2, dB. */
static int mla_kv_backward(struct llm_model *m, int l, float *dx, const float *dk, const float *dv,
                           const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    struct llm_param_block *p = &A->lp[l];
    struct layer_acts *a = &A->la[l];
    int N = m->B * m->T, C = c->d_model, NH = c->n_heads, HS = HS_(m);
    int K = c->kv_lora_rank, R = mla_R(m), D = HS - R;
    const float *wa = P(m, p->wkv_a), *wb = P(m, p->wkv_b);
    float *dwa = G(m, p->wkv_a), *dwb = G(m, p->wkv_b);
    size_t nc = (size_t)N * C;
    int rc;
    /* dk_nope = dk[:, :, 0:D]; dk_r = sum over heads of dk[:, h, D:HS], heads in order */
    if ((rc = OP(m, copy_cols, A->kn, D, dk, HS, N * NH, D, 0)))
        return rc;
    for (int h = 0; h < NH; h++)
        if ((rc = OP(m, copy_cols, A->kr, R, dk + (size_t)h * HS + D, NH * HS, N, R, h > 0)))
            return rc;
    /* dc_n = dk_nope @ wkv_b[0:NH*D] + dv @ wkv_b[NH*D:] (and their weight gradients) */
    if ((rc = OP(m, matmul_backward, A->dc, dwb, NULL, A->kn, a->c_n, wb, N, K, NH * D)) ||
        (rc = OP(m, matmul_backward, A->dc2, dwb + (size_t)NH * D * K, NULL, dv, a->c_n,
                 wb + (size_t)NH * D * K, N, K, NH * HS)) ||
        (rc = OP(m, add, A->dc, A->dc, A->dc2, (size_t)N * K)) ||
        (rc = OP(m, rmsnorm_backward, A->dc2, G(m, p->kv_norm), A->dc, a->c_lat, P(m, p->kv_norm),
                 a->c_rstd, N, K)))
        return rc;
    /* dx += dc_lat @ wkv_a[0:K] + dk_r @ wkv_a[K:K+R] */
    if ((rc = OP(m, matmul_backward, A->dB, dwa, NULL, A->dc2, in, wa, N, C, K)) ||
        (rc = OP(m, add, dx, dx, A->dB, nc)) ||
        (rc = OP(m, matmul_backward, A->dB, dwa + (size_t)K * C, NULL, A->kr, in, wa + (size_t)K * C,
                 N, C, R)))
        return rc;
    return OP(m, add, dx, dx, A->dB, nc);
}

/* Rope on q (N, NH, HS) and k (N, NKV, HS) in place (backward: their
 * gradients, sign -1): whole heads, or MLA's last R channels of each head. */
static int rope_qk(struct llm_model *m, float *q, float *k, int backward)
{
    const struct llm_model_config *c = &m->cfg;
    if (c->position != LLM_POSITION_ROPE)
        return 0;
    int HS = HS_(m), rot = is_mla(m) ? mla_R(m) : HS, off = HS - rot;
    float theta = (float)c->rope_theta;
    const int32_t *pos = POS(m);
    int rc;
    if (backward) {
        if ((rc = OP(m, rope_backward, q + off, pos, m->B, m->T, c->n_heads, HS, rot, theta, 0)))
            return rc;
        return OP(m, rope_backward, k + off, pos, m->B, m->T, NKV_(m), HS, rot, theta, 0);
    }
    if ((rc = OP(m, rope_forward, q + off, pos, m->B, m->T, c->n_heads, HS, rot, theta, 0)))
        return rc;
    return OP(m, rope_forward, k + off, pos, m->B, m->T, NKV_(m), HS, rot, theta, 0);
}

/* Attention sublayer: in (N, C) -> scratch (N, C), keeping q, k, v, att, lse. */
static int attention_forward(struct llm_model *m, int l, const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_param_block *p = &m->acts->lp[l];
    struct layer_acts *a = &m->acts->la[l];
    int B = m->B, T = m->T, N = B * T, C = c->d_model, NH = c->n_heads, NKV = NKV_(m), HS = HS_(m);
    float eps = (float)c->norm_eps;
    int rc;
    float *q = c->qk_norm ? a->q_lin : a->q, *k = c->qk_norm ? a->k_lin : a->k;
    if ((rc = OP(m, matmul_forward, q, in, P(m, p->wq), P(m, p->bq), N, C, NH * HS)))
        return rc;
    if (is_mla(m))
        rc = mla_kv_forward(m, l, in, k, a->v);
    else if (!(rc = OP(m, matmul_forward, k, in, P(m, p->wk), P(m, p->bk), N, C, NKV * HS)))
        rc = OP(m, matmul_forward, a->v, in, P(m, p->wv), P(m, p->bv), N, C, NKV * HS);
    if (rc)
        return rc;
    if (c->qk_norm && /* rmsnorm over each head's HS channels */
        ((rc = OP(m, rmsnorm_forward, a->q, a->q_rstd, a->q_lin, P(m, p->q_norm), N * NH, HS, eps)) ||
         (rc = OP(m, rmsnorm_forward, a->k, a->k_rstd, a->k_lin, P(m, p->k_norm), N * NKV, HS, eps))))
        return rc;
    if ((rc = rope_qk(m, a->q, a->k, 0)))
        return rc;
    if (c->attention == LLM_ATTENTION_LINEAR)
        rc = OP(m, linear_attention_forward, a->att, a->q, a->k, a->v, B, T, NH, NKV, HS);
    else
        rc = OP(m, attention_forward, a->att, a->lse, a->q, a->k, a->v, POS(m), B, T, NH, NKV, HS,
                c->attention == LLM_ATTENTION_SLIDING ? c->window : 0, 1.0f / sqrtf((float)HS));
    if (rc || (rc = OP(m, matmul_forward, m->acts->scratch, a->att, P(m, p->wo), P(m, p->bo), N,
                       NH * HS, C)))
        return rc;
    if (dropout_on(m))
        rc = OP(m, dropout_forward, m->acts->scratch, m->acts->scratch, (size_t)N * C,
                (float)c->dropout, site_seed(m, 1 + 2 * l));
    return rc;
}

/* MLP sublayer, dense or mixture of experts (moe.c): in (N, C) -> scratch
 * (N, C), keeping h, u, a (and the MoE's routing and rows). */
static int mlp_forward(struct llm_model *m, int l, const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_param_block *p = &m->acts->lp[l];
    struct layer_acts *a = &m->acts->la[l];
    int N = m->B * m->T, C = c->d_model, F = c->d_ff;
    size_t nf = (size_t)N * F;
    int rc;
    if (is_moe(m)) {
        if ((rc = moe_forward(m, l, in)))
            return rc;
    } else {
        if ((rc = OP(m, matmul_forward, a->h, in, P(m, p->w1), P(m, p->b1), N, C, F)))
            return rc;
        if (is_swiglu(m)) {
            if ((rc = OP(m, matmul_forward, a->u, in, P(m, p->w3), P(m, p->b3), N, C, F)) ||
                (rc = OP(m, swiglu_forward, a->a, a->h, a->u, nf)))
                return rc;
        } else if ((rc = OP(m, activation_forward, act_kind(m), a->a, a->h, nf))) {
            return rc;
        }
        if ((rc = OP(m, matmul_forward, m->acts->scratch, a->a, P(m, p->w2), P(m, p->b2), N, F, C)))
            return rc;
    }
    if (dropout_on(m))
        rc = OP(m, dropout_forward, m->acts->scratch, m->acts->scratch, (size_t)N * C,
                (float)c->dropout, site_seed(m, 2 + 2 * l));
    return rc;
}

int llm_model_forward(struct llm_model *m, const int32_t *tokens, const int32_t *targets, int B,
                      int T, int training, float *loss)
{
    return llm_model_forward_packed(m, tokens, targets, NULL, B, T, training, loss);
}

int llm_model_forward_packed(struct llm_model *m, const int32_t *tokens, const int32_t *targets,
                             const int32_t *pos, int B, int T, int training, float *loss)
{
    const struct llm_model_config *c = &m->cfg;
    if (B <= 0 || T <= 0 || T > c->context_length)
        return llm_err(LLM_EINVAL, "a batch of %d x %d tokens does not fit context_length %d", B, T,
                       c->context_length);
    if (pos && c->attention == LLM_ATTENTION_LINEAR)
        return llm_err(LLM_EINVAL, "packed sequences are not supported with linear attention");
    int rc = ensure_acts(m, B, T);
    if (rc)
        return rc;
    struct llm_model_acts *A = m->acts;
    int N = B * T, C = c->d_model, V = c->vocab_size;
    m->B = B, m->T = T;
    m->packed = 0; /* until the positions are in place */
    if (pos) {
        if ((rc = m->be->ops->upload(m->be->ctx, m->pos, pos, (size_t)N * sizeof(int32_t))))
            return rc;
        m->packed = 1;
    }
    m->training = training;
    if (training) /* evaluation draws nothing: it never shifts the dropout masks of training */
        m->dropout_seed = llm_rng_u64(&m->rng);
    if ((rc = m->be->ops->upload(m->be->ctx, m->tokens, tokens, (size_t)N * sizeof(int32_t))) ||
        (rc = OP(m, embedding_forward, A->emb, m->tokens, P(m, A->ix.tok_emb), N, C, V)))
        return rc;
    if (c->position == LLM_POSITION_LEARNED)
        rc = OP(m, add_positions, A->emb, P(m, A->ix.pos_emb), POS(m), B, T, C, 0);
    else if (c->position == LLM_POSITION_SINUSOIDAL)
        rc = OP(m, add_positions, A->emb, m->pos_table, POS(m), B, T, C, 0);
    if (!rc && dropout_on(m))
        rc = OP(m, dropout_forward, A->emb, A->emb, (size_t)N * C, (float)c->dropout, site_seed(m, 0));
    if (rc)
        return rc;
    for (int l = 0; l < c->n_layers; l++) {
        struct llm_param_block *p = &A->lp[l];
        struct layer_acts *a = &A->la[l];
        size_t nc = (size_t)N * C;
        if (pre_norm(m)) { /* x + attn(norm(x)), then + mlp(norm(.)) */
            if ((rc = norm_forward(m, a->n1, a->n1_mean, a->n1_rstd, a->res_in, p->attn_norm_w,
                                   p->attn_norm_b, N)) ||
                (rc = attention_forward(m, l, a->n1)) ||
                (rc = OP(m, add, a->s1, a->res_in, A->scratch, nc)) ||
                (rc = norm_forward(m, a->n2, a->n2_mean, a->n2_rstd, a->s1, p->mlp_norm_w,
                                   p->mlp_norm_b, N)) ||
                (rc = mlp_forward(m, l, a->n2)) || (rc = OP(m, add, a->s2, a->s1, A->scratch, nc)))
                return rc;
        } else { /* norm(x + attn(x)), then norm(. + mlp(.)) */
            if ((rc = attention_forward(m, l, a->res_in)) ||
                (rc = OP(m, add, a->s1, a->res_in, A->scratch, nc)) ||
                (rc = norm_forward(m, a->n1, a->n1_mean, a->n1_rstd, a->s1, p->attn_norm_w,
                                   p->attn_norm_b, N)) ||
                (rc = mlp_forward(m, l, a->n1)) || (rc = OP(m, add, a->s2, a->n1, A->scratch, nc)) ||
                (rc = norm_forward(m, a->n2, a->n2_mean, a->n2_rstd, a->s2, p->mlp_norm_w,
                                   p->mlp_norm_b, N)))
                return rc;
        }
    }
    const float *last = c->n_layers ? (pre_norm(m) ? A->la[c->n_layers - 1].s2 : A->la[c->n_layers - 1].n2)
                                    : A->emb;
    if ((rc = norm_forward(m, A->nf, A->nf_mean, A->nf_rstd, last, A->ix.final_w, A->ix.final_b, N)) ||
        (rc = OP(m, matmul_forward, A->logits, A->nf, P(m, A->ix.lm_head), NULL, N, C, V)))
        return rc;
    /* MoE: the load-balancing losses of the layers, in layer order (host doubles) */
    m->aux_loss = 0.0f;
    if (is_moe(m)) {
        double aux = 0.0;
        for (int l = 0; l < c->n_layers; l++)
            aux += A->route[l].aux;
        m->aux_loss = (float)(c->aux_loss_coef * aux);
    }
    double aux_loss = m->aux_loss;
    m->n_valid = 0;
    if (!targets)
        return 0;
    memcpy(m->host_targets, targets, (size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++) {
        if (targets[i] >= V)
            return llm_err(LLM_EINVAL, "target id %d at position %d is outside the vocabulary (%d)",
                           targets[i], i, V);
        m->n_valid += targets[i] >= 0;
    }
    if ((rc = m->be->ops->upload(m->be->ctx, m->targets, targets, (size_t)N * sizeof(int32_t))) ||
        (rc = OP(m, cross_entropy, A->losses, NULL, A->logits, m->targets, N, V, 0.0f)) ||
        (rc = m->be->ops->download(m->be->ctx, m->host_losses, A->losses, (size_t)N * sizeof(float))) ||
        (rc = m->be->ops->sync(m->be->ctx)))
        return rc;
    double sum = 0; /* in a fixed order: the mean does not depend on threads */
    for (int i = 0; i < N; i++)
        sum += m->host_losses[i];
    if (loss)
        *loss = (float)((m->n_valid ? sum / m->n_valid : 0.0) + aux_loss);
    return 0;
}

const float *llm_model_logits(const struct llm_model *m) { return m->acts ? m->acts->logits : NULL; }

int llm_model_zero_grad(struct llm_model *m)
{
    if (!m->grads) {
        int rc = m->be->ops->alloc(m->be->ctx, (void **)&m->grads, m->layout.total * sizeof(float));
        if (rc)
            return rc;
    }
    return m->be->ops->zero(m->be->ctx, m->grads, m->layout.total * sizeof(float));
}

/* ---- backward ---- */

/* MLP sublayer backward: dout (N, C) is the gradient of its output (after
 * dropout); writes the gradient of its input into dx (N, C). Uses dB, dh, du,
 * da (and the MoE's backward scratch). */
static int mlp_backward(struct llm_model *m, int l, float *dx, const float *dout, const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    struct llm_param_block *p = &A->lp[l];
    struct layer_acts *a = &A->la[l];
    int N = m->B * m->T, C = c->d_model, F = c->d_ff;
    size_t nf = (size_t)N * F;
    int rc;
    if (dropout_on(m)) {
        if ((rc = OP(m, dropout_backward, A->dB, dout, (size_t)N * C, (float)c->dropout,
                     site_seed(m, 2 + 2 * l))))
            return rc;
        dout = A->dB;
    }
    if (is_moe(m))
        return moe_backward(m, l, dx, dout, in);
    if ((rc = OP(m, matmul_backward, A->da, G(m, p->w2), G(m, p->b2), dout, a->a, P(m, p->w2), N, F, C)))
        return rc;
    if (is_swiglu(m)) {
        /* out = silu(h) * u: two input matmuls, their input gradients summed */
        if ((rc = OP(m, swiglu_backward, A->dh, A->du, A->da, a->h, a->u, nf)) ||
            (rc = OP(m, matmul_backward, dx, G(m, p->w1), G(m, p->b1), A->dh, in, P(m, p->w1), N, C, F)) ||
            (rc = OP(m, matmul_backward, A->dB, G(m, p->w3), G(m, p->b3), A->du, in, P(m, p->w3), N, C, F)))
            return rc;
        return OP(m, add, dx, dx, A->dB, (size_t)N * C);
    }
    if ((rc = OP(m, activation_backward, act_kind(m), A->dh, A->da, a->h, nf)))
        return rc;
    return OP(m, matmul_backward, dx, G(m, p->w1), G(m, p->b1), A->dh, in, P(m, p->w1), N, C, F);
}

/* Attention sublayer backward, like mlp_backward; uses dB, dq, dk, dv, datt,
 * dql, dkl (and MLA's kn, kr, dc, dc2). */
static int attention_backward(struct llm_model *m, int l, float *dx, const float *dout, const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    struct llm_param_block *p = &A->lp[l];
    struct layer_acts *a = &A->la[l];
    int B = m->B, T = m->T, N = B * T, C = c->d_model, NH = c->n_heads, NKV = NKV_(m), HS = HS_(m);
    int rc;
    if (dropout_on(m)) {
        if ((rc = OP(m, dropout_backward, A->dB, dout, (size_t)N * C, (float)c->dropout,
                     site_seed(m, 1 + 2 * l))))
            return rc;
        dout = A->dB;
    }
    if ((rc = OP(m, matmul_backward, A->datt, G(m, p->wo), G(m, p->bo), dout, a->att, P(m, p->wo), N,
                 NH * HS, C)))
        return rc;
    if (c->attention == LLM_ATTENTION_LINEAR)
        rc = OP(m, linear_attention_backward, A->dq, A->dk, A->dv, A->datt, a->q, a->k, a->v, B, T,
                NH, NKV, HS);
    else
        rc = OP(m, attention_backward, A->dq, A->dk, A->dv, A->datt, a->q, a->k, a->v, a->att, a->lse,
                POS(m), B, T, NH, NKV, HS, c->attention == LLM_ATTENTION_SLIDING ? c->window : 0,
                1.0f / sqrtf((float)HS));
    if (rc || (rc = rope_qk(m, A->dq, A->dk, 1)))
        return rc;
    float *dq = A->dq, *dk = A->dk;
    if (c->qk_norm) {
        if ((rc = OP(m, rmsnorm_backward, A->dql, G(m, p->q_norm), A->dq, a->q_lin, P(m, p->q_norm),
                     a->q_rstd, N * NH, HS)) ||
            (rc = OP(m, rmsnorm_backward, A->dkl, G(m, p->k_norm), A->dk, a->k_lin, P(m, p->k_norm),
                     a->k_rstd, N * NKV, HS)))
            return rc;
        dq = A->dql, dk = A->dkl;
    }
    size_t nc = (size_t)N * C;
    if ((rc = OP(m, matmul_backward, dx, G(m, p->wq), G(m, p->bq), dq, in, P(m, p->wq), N, C, NH * HS)))
        return rc;
    if (is_mla(m))
        return mla_kv_backward(m, l, dx, dk, A->dv, in);
    if ((rc = OP(m, matmul_backward, A->dB, G(m, p->wk), G(m, p->bk), dk, in, P(m, p->wk), N, C, NKV * HS)) ||
        (rc = OP(m, add, dx, dx, A->dB, nc)) ||
        (rc = OP(m, matmul_backward, A->dB, G(m, p->wv), G(m, p->bv), A->dv, in, P(m, p->wv), N, C, NKV * HS)))
        return rc;
    return OP(m, add, dx, dx, A->dB, nc);
}

int llm_model_backward(struct llm_model *m) { return llm_model_backward_ex(m, NULL, NULL); }

const float *llm_model_hidden(const struct llm_model *m) { return m->acts ? m->acts->nf : NULL; }

/* The backward pass from dlogits (already in the logits buffer) down:
 * every objective's gradient enters the model there (plus dhidden). */
static int backward_from_dlogits(struct llm_model *m, const float *dhidden);

/* Checks shared by the backward entry points; allocates the gradients. */
static int backward_ready(struct llm_model *m, int need_targets)
{
    if (!m->acts || !m->training || (need_targets && !m->n_valid))
        return llm_err(LLM_EINVAL, "backward needs a training forward pass%s first",
                       need_targets ? " with targets" : "");
    return m->grads ? 0 : llm_model_zero_grad(m);
}

int llm_model_backward_logits(struct llm_model *m, const int64_t *index, const float *grad, int n)
{
    int rc = backward_ready(m, 0);
    if (rc)
        return rc;
    struct llm_model_acts *A = m->acts;
    size_t NV = (size_t)m->B * m->T * (size_t)m->cfg.vocab_size;
    rc = m->be->ops->zero(m->be->ctx, A->logits, NV * sizeof(float));
    /* a few entries (a reward or a value per sequence): one small copy each */
    for (int i = 0; !rc && i < n; i++) {
        if (index[i] < 0 || (size_t)index[i] >= NV)
            return llm_err(LLM_EINVAL, "backward_logits: index %lld outside the logits", (long long)index[i]);
        rc = m->be->ops->upload(m->be->ctx, A->logits + index[i], &grad[i], sizeof(float));
    }
    return rc ? rc : backward_from_dlogits(m, NULL);
}

int llm_model_backward_dlogits(struct llm_model *m, const float *dlogits)
{
    int rc = backward_ready(m, 0);
    if (!rc)
        rc = m->be->ops->upload(m->be->ctx, m->acts->logits, dlogits,
                                (size_t)m->B * m->T * (size_t)m->cfg.vocab_size * sizeof(float));
    return rc ? rc : backward_from_dlogits(m, NULL);
}

int llm_model_backward_ex(struct llm_model *m, const float *token_w, const float *dhidden)
{
    int rc = backward_ready(m, !token_w && !dhidden);
    if (rc)
        return rc;
    struct llm_model_acts *A = m->acts;
    int N = m->B * m->T, V = m->cfg.vocab_size;
    if (token_w) {
        /* d(sum_t w_t CE_t)/dlogits_t = w_t (softmax - onehot), into the logits
         * buffer; the per-token losses are no longer needed, so the weights
         * go to their buffer on the device */
        if ((rc = OP(m, cross_entropy, NULL, A->logits, A->logits, m->targets, N, V, 1.0f)) ||
            (rc = m->be->ops->upload(m->be->ctx, A->losses, token_w, (size_t)N * sizeof(float))) ||
            (rc = OP(m, scale_rows, A->logits, A->losses, N, V)))
            return rc;
    } else if ((rc = OP(m, cross_entropy, A->losses, A->logits, A->logits, m->targets, N, V,
                        1.0f / (float)m->n_valid))) {
        /* d(mean loss)/dlogits = (softmax - onehot) / n_valid, into the logits buffer */
        return rc;
    }
    return backward_from_dlogits(m, dhidden);
}

static int backward_from_dlogits(struct llm_model *m, const float *dhidden)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, V = c->vocab_size, L = c->n_layers, rc;
    size_t nc = (size_t)N * C;
    if ((rc = OP(m, matmul_backward, A->dA, G(m, A->ix.lm_head), NULL, A->logits, A->nf,
                 P(m, A->ix.lm_head), N, C, V)))
        return rc;
    /* a head on the final hidden state (value, reward) adds its gradient */
    if (dhidden && (rc = OP(m, add, A->dA, A->dA, dhidden, nc)))
        return rc;
    const float *last = L ? (pre_norm(m) ? A->la[L - 1].s2 : A->la[L - 1].n2) : A->emb;
    if ((rc = norm_backward(m, A->g, A->ix.final_w, A->ix.final_b, A->dA, last, A->nf_mean, A->nf_rstd, N)))
        return rc;
    /* A->g: gradient of the current block's output, then of its input */
    for (int l = L - 1; l >= 0; l--) {
        struct llm_param_block *p = &A->lp[l];
        struct layer_acts *a = &A->la[l];
        if (pre_norm(m)) {
            /* s2 = s1 + mlp(norm2(s1)); s1 = x + attn(norm1(x)) */
            if ((rc = mlp_backward(m, l, A->dC, A->g, a->n2)) ||
                (rc = norm_backward(m, A->dA, p->mlp_norm_w, p->mlp_norm_b, A->dC, a->s1, a->n2_mean,
                                    a->n2_rstd, N)) ||
                (rc = OP(m, add, A->g, A->g, A->dA, nc)) ||
                (rc = attention_backward(m, l, A->dC, A->g, a->n1)) ||
                (rc = norm_backward(m, A->dA, p->attn_norm_w, p->attn_norm_b, A->dC, a->res_in,
                                    a->n1_mean, a->n1_rstd, N)) ||
                (rc = OP(m, add, A->g, A->g, A->dA, nc)))
                return rc;
        } else {
            /* out = norm2(n1 + mlp(n1)); n1 = norm1(x + attn(x)) */
            if ((rc = norm_backward(m, A->dA, p->mlp_norm_w, p->mlp_norm_b, A->g, a->s2, a->n2_mean,
                                    a->n2_rstd, N)) ||
                (rc = mlp_backward(m, l, A->dC, A->dA, a->n1)) ||
                (rc = OP(m, add, A->g, A->dA, A->dC, nc)) ||
                (rc = norm_backward(m, A->dA, p->attn_norm_w, p->attn_norm_b, A->g, a->s1, a->n1_mean,
                                    a->n1_rstd, N)) ||
                (rc = attention_backward(m, l, A->dC, A->dA, a->res_in)) ||
                (rc = OP(m, add, A->g, A->dA, A->dC, nc)))
                return rc;
        }
    }
    const float *demb = A->g;
    if (dropout_on(m)) {
        if ((rc = OP(m, dropout_backward, A->dA, A->g, nc, (float)c->dropout, site_seed(m, 0))))
            return rc;
        demb = A->dA;
    }
    if ((rc = OP(m, embedding_backward, G(m, A->ix.tok_emb), demb, m->tokens, N, C)))
        return rc;
    if (c->position == LLM_POSITION_LEARNED)
        rc = OP(m, add_positions_backward, G(m, A->ix.pos_emb), demb, POS(m), B, T, C, 0);
    return rc;
}

int llm_model_resize_vocab(struct llm_model *m, int V2)
{
    int V = m->cfg.vocab_size;
    if (V2 < V)
        return llm_err(LLM_EINVAL, "resize_vocab: %d < the vocabulary %d", V2, V);
    if (V2 == V)
        return 0;
    struct llm_model_config cfg = m->cfg;
    cfg.vocab_size = V2;
    struct llm_model n;
    int rc = llm_model_init(&n, &cfg, m->be, 1);
    if (rc)
        return rc;
    struct llm_backend *be = m->be;
    float *host = NULL;
    for (size_t i = 0; !rc && i < n.layout.n; i++) {
        const struct llm_param_spec *d = &n.layout.p[i];
        long j = llm_param_find(&m->layout, d->name);
        if (j < 0) {
            rc = llm_err(LLM_EINVAL, "resize_vocab: no %s in the model", d->name);
            break;
        }
        const struct llm_param_spec *o = &m->layout.p[j];
        float *src = m->params + o->offset, *dst = n.params + d->offset;
        if (o->numel == d->numel) {
            rc = be->ops->copy(be->ctx, dst, src, o->numel * sizeof(float));
            continue;
        }
        /* (V, C) -> (V2, C): the old rows, then their mean */
        size_t C = o->numel / (size_t)V;
        free(host);
        if (!(host = llm_malloc(d->numel * sizeof(float), "a resized tensor"))) {
            rc = LLM_ENOMEM;
            break;
        }
        if ((rc = be->ops->download(be->ctx, host, src, o->numel * sizeof(float))) || (rc = be->ops->sync(be->ctx)))
            break;
        for (size_t c = 0; c < C; c++) {
            double mean = 0;
            for (int v = 0; v < V; v++)
                mean += host[(size_t)v * C + c];
            mean /= V;
            for (int v = V; v < V2; v++)
                host[(size_t)v * C + c] = (float)mean;
        }
        rc = be->ops->upload(be->ctx, dst, host, d->numel * sizeof(float));
    }
    free(host);
    if (rc) {
        llm_model_release(&n);
        return rc;
    }
    llm_model_release(m);
    *m = n;
    return 0;
}
