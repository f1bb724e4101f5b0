/* model.c: the transformer's forward and backward passes over the backend
 * ops (nn/backend.h), for every dense variant of the config: learned,
 * sinusoidal or rotary positions; layernorm or rmsnorm, before (pre) or after
 * (post) each sublayer; full, sliding-window or linear attention with MHA,
 * GQA or MQA; qk_norm; relu, gelu, relu2 or swiglu MLPs; biases; tied or
 * untied head; dropout. Shapes: N = B*T rows, C, NH, NKV, HS, F, V. */
#include "model.h"
#include "core/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Calls a backend op, failing cleanly if the backend lacks it. */
#define OP(m, op, ...)                                                                           \
    ((m)->be->ops->op ? (m)->be->ops->op((m)->be->ctx, __VA_ARGS__)                              \
                      : llm_err(LLM_EUNSUPPORTED, "the %s backend has no op " #op,               \
                                (m)->be->ops->name))

/* Parameter indices of one block (-1 when the variant has no such tensor). */
struct layer_params {
    long attn_norm_w, attn_norm_b, wq, bq, wk, bk, wv, bv, wo, bo, q_norm, k_norm;
    long mlp_norm_w, mlp_norm_b, w1, b1, w3, b3, w2, b2;
};

/* Activation pointers of one block (into m->act_mem). */
struct layer_acts {
    float *res_in;                  /* (N, C) the block's input (borrowed from the one before) */
    float *n1, *n1_mean, *n1_rstd;  /* (N, C), (N), (N): pre: norm(res_in); post: norm(s1) */
    float *q_lin, *k_lin;           /* (N, NH*HS), (N, NKV*HS): before qk_norm */
    float *q_rstd, *k_rstd;         /* (N*NH), (N*NKV) */
    float *q, *k, *v;               /* (N, NH*HS), (N, NKV*HS) x2: attention inputs */
    float *att, *lse;               /* (N, NH*HS), (B, NH, T) */
    float *s1;                      /* (N, C) res_in + attention output */
    float *n2, *n2_mean, *n2_rstd;  /* pre: norm(s1); post: norm(s2) */
    float *h, *u, *a;               /* (N, F) x3: w1 out, w3 out (swiglu), activation out */
    float *s2;                      /* (N, C) mid + MLP output */
};

struct llm_model_acts {
    struct layer_params *lp;        /* (L) */
    struct layer_acts *la;          /* (L) */
    long tok_emb, pos_emb, final_w, final_b, lm_head;
    float *emb;                     /* (N, C) embedding output */
    float *nf, *nf_mean, *nf_rstd;  /* final norm */
    float *logits;                  /* (N, V), dlogits in backward */
    float *losses;                  /* (N) */
    float *scratch;                 /* (N, C) sublayer outputs before the residual add */
    /* backward scratch */
    float *g, *dA, *dB, *dC;        /* (N, C) */
    float *dq, *dk, *dv, *datt;     /* (N, NH*HS), (N, NKV*HS) x2, (N, NH*HS) */
    float *dql, *dkl;               /* qk_norm: before the norm */
    float *dh, *du, *da;            /* (N, F) */
};

/* ---- dims ---- */
static int HS_(const struct llm_model *m) { return m->cfg.d_model / m->cfg.n_heads; }
static int NKV_(const struct llm_model *m) { return llm_config_kv_heads(&m->cfg); }
static int pre_norm(const struct llm_model *m) { return m->cfg.norm_position == LLM_NORM_POSITION_PRE; }
static int has_layernorm(const struct llm_model *m) { return m->cfg.norm == LLM_NORM_LAYERNORM; }

static long find(const struct llm_model *m, const char *fmt, int layer)
{
    char name[96];
    snprintf(name, sizeof(name), fmt, layer);
    return llm_param_find(&m->layout, name);
}

static float *P(const struct llm_model *m, long i) { return i < 0 ? NULL : m->params + m->layout.p[i].offset; }
static float *G(const struct llm_model *m, long i) { return i < 0 ? NULL : m->grads + m->layout.p[i].offset; }

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

int llm_model_init(struct llm_model *m, const struct llm_model_config *cfg, struct llm_backend *be,
                   uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
    m->be = be;
    if (cfg->mlp == LLM_MLP_MOE)
        return llm_err(LLM_EUNSUPPORTED, "model.mlp: moe is not implemented yet in the model");
    if (cfg->attention_kv == LLM_ATTENTION_KV_MLA)
        return llm_err(LLM_EUNSUPPORTED, "model.attention_kv: mla is not implemented yet in the model");
    int rc = llm_param_layout_init(&m->layout, cfg);
    if (rc)
        return rc;
    m->acts = llm_calloc(1, sizeof(*m->acts), "the model");
    if (!m->acts) {
        llm_model_release(m);
        return LLM_ENOMEM;
    }
    struct llm_model_acts *A = m->acts;
    A->lp = llm_calloc((size_t)cfg->n_layers, sizeof(*A->lp), "the model");
    A->la = llm_calloc((size_t)cfg->n_layers, sizeof(*A->la), "the model");
    if (!A->lp || !A->la) {
        llm_model_release(m);
        return LLM_ENOMEM;
    }
    for (int l = 0; l < cfg->n_layers; l++) {
        struct layer_params *p = &A->lp[l];
        p->attn_norm_w = find(m, "layers.%d.attn_norm.weight", l);
        p->attn_norm_b = find(m, "layers.%d.attn_norm.bias", l);
        p->wq = find(m, "layers.%d.attn.wq.weight", l);
        p->bq = find(m, "layers.%d.attn.wq.bias", l);
        p->wk = find(m, "layers.%d.attn.wk.weight", l);
        p->bk = find(m, "layers.%d.attn.wk.bias", l);
        p->wv = find(m, "layers.%d.attn.wv.weight", l);
        p->bv = find(m, "layers.%d.attn.wv.bias", l);
        p->wo = find(m, "layers.%d.attn.wo.weight", l);
        p->bo = find(m, "layers.%d.attn.wo.bias", l);
        p->q_norm = find(m, "layers.%d.attn.q_norm.weight", l);
        p->k_norm = find(m, "layers.%d.attn.k_norm.weight", l);
        p->mlp_norm_w = find(m, "layers.%d.mlp_norm.weight", l);
        p->mlp_norm_b = find(m, "layers.%d.mlp_norm.bias", l);
        p->w1 = find(m, "layers.%d.mlp.w1.weight", l);
        p->b1 = find(m, "layers.%d.mlp.w1.bias", l);
        p->w3 = find(m, "layers.%d.mlp.w3.weight", l);
        p->b3 = find(m, "layers.%d.mlp.w3.bias", l);
        p->w2 = find(m, "layers.%d.mlp.w2.weight", l);
        p->b2 = find(m, "layers.%d.mlp.w2.bias", l);
    }
    A->tok_emb = llm_param_find(&m->layout, "tok_emb.weight");
    A->pos_emb = llm_param_find(&m->layout, "pos_emb.weight");
    A->final_w = llm_param_find(&m->layout, "final_norm.weight");
    A->final_b = llm_param_find(&m->layout, "final_norm.bias");
    A->lm_head = cfg->tie_embeddings ? A->tok_emb : llm_param_find(&m->layout, "lm_head.weight");
    if ((rc = be->ops->alloc(be->ctx, (void **)&m->params, m->layout.total * sizeof(float))) ||
        (rc = init_params(m, seed)) ||
        (cfg->position == LLM_POSITION_SINUSOIDAL && (rc = init_pos_table(m)))) {
        llm_model_release(m);
        return rc;
    }
    llm_rng_seed(&m->rng, seed ^ 0x5eedd0d0ULL);
    return 0;
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
    }
    if (m->acts)
        free(m->acts->lp), free(m->acts->la);
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
    int swiglu = c->activation == LLM_ACTIVATION_SWIGLU, ln = has_layernorm(m);
    struct carver cv = {base, 0};
    A->emb = carve(&cv, N * C);
    float *prev = A->emb;
    for (int l = 0; l < c->n_layers; l++) {
        struct layer_acts *a = &A->la[l];
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
        a->att = carve(&cv, N * NH * HS);
        a->lse = carve(&cv, (size_t)B * NH * T);
        a->s1 = carve(&cv, N * C);
        a->n2 = carve(&cv, N * C);
        a->n2_mean = ln ? carve(&cv, N) : NULL;
        a->n2_rstd = carve(&cv, N);
        a->h = carve(&cv, N * F);
        a->u = swiglu ? carve(&cv, N * F) : NULL;
        a->a = carve(&cv, N * F);
        a->s2 = carve(&cv, N * C);
        prev = pre_norm(m) ? a->s2 : a->n2;
    }
    A->nf = carve(&cv, N * C);
    A->nf_mean = ln ? carve(&cv, N) : NULL;
    A->nf_rstd = carve(&cv, N);
    A->logits = carve(&cv, N * V);
    A->losses = carve(&cv, N);
    A->scratch = carve(&cv, N * C);
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
    A->dh = carve(&cv, N * F);
    A->du = swiglu ? carve(&cv, N * F) : NULL;
    A->da = carve(&cv, N * F);
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
    if (m->act_mem)
        m->be->ops->free(ctx, m->act_mem), m->act_mem = NULL;
    if (m->tokens)
        m->be->ops->free(ctx, m->tokens), m->tokens = NULL;
    if (m->targets)
        m->be->ops->free(ctx, m->targets), m->targets = NULL;
    size_t n = layout_acts(m, NULL, B, T);
    size_t N = (size_t)B * T;
    int rc;
    if ((rc = m->be->ops->alloc(ctx, (void **)&m->act_mem, n * sizeof(float))) ||
        (rc = m->be->ops->alloc(ctx, (void **)&m->tokens, N * sizeof(int32_t))) ||
        (rc = m->be->ops->alloc(ctx, (void **)&m->targets, N * sizeof(int32_t))))
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

/* Attention sublayer: in (N, C) -> scratch (N, C), keeping q, k, v, att, lse. */
static int attention_forward(struct llm_model *m, int l, const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct layer_params *p = &m->acts->lp[l];
    struct layer_acts *a = &m->acts->la[l];
    int B = m->B, T = m->T, N = B * T, C = c->d_model, NH = c->n_heads, NKV = NKV_(m), HS = HS_(m);
    float eps = (float)c->norm_eps;
    int rc;
    float *q = c->qk_norm ? a->q_lin : a->q, *k = c->qk_norm ? a->k_lin : a->k;
    if ((rc = OP(m, matmul_forward, q, in, P(m, p->wq), P(m, p->bq), N, C, NH * HS)) ||
        (rc = OP(m, matmul_forward, k, in, P(m, p->wk), P(m, p->bk), N, C, NKV * HS)) ||
        (rc = OP(m, matmul_forward, a->v, in, P(m, p->wv), P(m, p->bv), N, C, NKV * HS)))
        return rc;
    if (c->qk_norm && /* rmsnorm over each head's HS channels */
        ((rc = OP(m, rmsnorm_forward, a->q, a->q_rstd, a->q_lin, P(m, p->q_norm), N * NH, HS, eps)) ||
         (rc = OP(m, rmsnorm_forward, a->k, a->k_rstd, a->k_lin, P(m, p->k_norm), N * NKV, HS, eps))))
        return rc;
    if (c->position == LLM_POSITION_ROPE &&
        ((rc = OP(m, rope_forward, a->q, B, T, NH, HS, HS, (float)c->rope_theta, 0)) ||
         (rc = OP(m, rope_forward, a->k, B, T, NKV, HS, HS, (float)c->rope_theta, 0))))
        return rc;
    if (c->attention == LLM_ATTENTION_LINEAR)
        rc = OP(m, linear_attention_forward, a->att, a->q, a->k, a->v, B, T, NH, NKV, HS);
    else
        rc = OP(m, attention_forward, a->att, a->lse, a->q, a->k, a->v, B, T, NH, NKV, HS,
                c->attention == LLM_ATTENTION_SLIDING ? c->window : 0, 1.0f / sqrtf((float)HS));
    if (rc || (rc = OP(m, matmul_forward, m->acts->scratch, a->att, P(m, p->wo), P(m, p->bo), N,
                       NH * HS, C)))
        return rc;
    if (dropout_on(m))
        rc = OP(m, dropout_forward, m->acts->scratch, m->acts->scratch, (size_t)N * C,
                (float)c->dropout, site_seed(m, 1 + 2 * l));
    return rc;
}

/* MLP sublayer: in (N, C) -> scratch (N, C), keeping h, u, a. */
static int mlp_forward(struct llm_model *m, int l, const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct layer_params *p = &m->acts->lp[l];
    struct layer_acts *a = &m->acts->la[l];
    int N = m->B * m->T, C = c->d_model, F = c->d_ff;
    size_t nf = (size_t)N * F;
    int rc = OP(m, matmul_forward, a->h, in, P(m, p->w1), P(m, p->b1), N, C, F);
    if (rc)
        return rc;
    if (c->activation == LLM_ACTIVATION_SWIGLU) {
        if ((rc = OP(m, matmul_forward, a->u, in, P(m, p->w3), P(m, p->b3), N, C, F)) ||
            (rc = OP(m, swiglu_forward, a->a, a->h, a->u, nf)))
            return rc;
    } else {
        int kind = c->activation == LLM_ACTIVATION_RELU    ? LLM_ACT_RELU
                   : c->activation == LLM_ACTIVATION_RELU2 ? LLM_ACT_RELU2
                                                           : LLM_ACT_GELU;
        if ((rc = OP(m, activation_forward, kind, a->a, a->h, nf)))
            return rc;
    }
    if ((rc = OP(m, matmul_forward, m->acts->scratch, a->a, P(m, p->w2), P(m, p->b2), N, F, C)))
        return rc;
    if (dropout_on(m))
        rc = OP(m, dropout_forward, m->acts->scratch, m->acts->scratch, (size_t)N * C,
                (float)c->dropout, site_seed(m, 2 + 2 * l));
    return rc;
}

int llm_model_forward(struct llm_model *m, const int32_t *tokens, const int32_t *targets, int B,
                      int T, int training, float *loss)
{
    const struct llm_model_config *c = &m->cfg;
    if (B <= 0 || T <= 0 || T > c->context_length)
        return llm_err(LLM_EINVAL, "a batch of %d x %d tokens does not fit context_length %d", B, T,
                       c->context_length);
    int rc = ensure_acts(m, B, T);
    if (rc)
        return rc;
    struct llm_model_acts *A = m->acts;
    int N = B * T, C = c->d_model, V = c->vocab_size;
    m->B = B, m->T = T;
    m->training = training;
    m->dropout_seed = llm_rng_u64(&m->rng);
    if ((rc = m->be->ops->upload(m->be->ctx, m->tokens, tokens, (size_t)N * sizeof(int32_t))) ||
        (rc = OP(m, embedding_forward, A->emb, m->tokens, P(m, A->tok_emb), N, C, V)))
        return rc;
    if (c->position == LLM_POSITION_LEARNED)
        rc = OP(m, add_positions, A->emb, P(m, A->pos_emb), B, T, C, 0);
    else if (c->position == LLM_POSITION_SINUSOIDAL)
        rc = OP(m, add_positions, A->emb, m->pos_table, B, T, C, 0);
    if (!rc && dropout_on(m))
        rc = OP(m, dropout_forward, A->emb, A->emb, (size_t)N * C, (float)c->dropout, site_seed(m, 0));
    if (rc)
        return rc;
    for (int l = 0; l < c->n_layers; l++) {
        struct layer_params *p = &A->lp[l];
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
    if ((rc = norm_forward(m, A->nf, A->nf_mean, A->nf_rstd, last, A->final_w, A->final_b, N)) ||
        (rc = OP(m, matmul_forward, A->logits, A->nf, P(m, A->lm_head), NULL, N, C, V)))
        return rc;
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
        *loss = m->n_valid ? (float)(sum / m->n_valid) : 0.0f;
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
 * dropout); writes the gradient of its input into dx (N, C). Uses dB, dh, du, da. */
static int mlp_backward(struct llm_model *m, int l, float *dx, const float *dout, const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    struct layer_params *p = &A->lp[l];
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
    if ((rc = OP(m, matmul_backward, A->da, G(m, p->w2), G(m, p->b2), dout, a->a, P(m, p->w2), N, F, C)))
        return rc;
    if (c->activation == LLM_ACTIVATION_SWIGLU) {
        /* out = silu(h) * u: two input matmuls, their input gradients summed */
        if ((rc = OP(m, swiglu_backward, A->dh, A->du, A->da, a->h, a->u, nf)) ||
            (rc = OP(m, matmul_backward, dx, G(m, p->w1), G(m, p->b1), A->dh, in, P(m, p->w1), N, C, F)) ||
            (rc = OP(m, matmul_backward, A->dB, G(m, p->w3), G(m, p->b3), A->du, in, P(m, p->w3), N, C, F)))
            return rc;
        return OP(m, add, dx, dx, A->dB, (size_t)N * C);
    }
    int kind = c->activation == LLM_ACTIVATION_RELU    ? LLM_ACT_RELU
               : c->activation == LLM_ACTIVATION_RELU2 ? LLM_ACT_RELU2
                                                       : LLM_ACT_GELU;
    if ((rc = OP(m, activation_backward, kind, A->dh, A->da, a->h, nf)))
        return rc;
    return OP(m, matmul_backward, dx, G(m, p->w1), G(m, p->b1), A->dh, in, P(m, p->w1), N, C, F);
}

/* Attention sublayer backward, like mlp_backward; uses dB, dq, dk, dv, datt, dql, dkl. */
static int attention_backward(struct llm_model *m, int l, float *dx, const float *dout, const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    struct layer_params *p = &A->lp[l];
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
                B, T, NH, NKV, HS, c->attention == LLM_ATTENTION_SLIDING ? c->window : 0,
                1.0f / sqrtf((float)HS));
    if (rc)
        return rc;
    if (c->position == LLM_POSITION_ROPE &&
        ((rc = OP(m, rope_backward, A->dq, B, T, NH, HS, HS, (float)c->rope_theta, 0)) ||
         (rc = OP(m, rope_backward, A->dk, B, T, NKV, HS, HS, (float)c->rope_theta, 0))))
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
    if ((rc = OP(m, matmul_backward, dx, G(m, p->wq), G(m, p->bq), dq, in, P(m, p->wq), N, C, NH * HS)) ||
        (rc = OP(m, matmul_backward, A->dB, G(m, p->wk), G(m, p->bk), dk, in, P(m, p->wk), N, C, NKV * HS)) ||
        (rc = OP(m, add, dx, dx, A->dB, nc)) ||
        (rc = OP(m, matmul_backward, A->dB, G(m, p->wv), G(m, p->bv), A->dv, in, P(m, p->wv), N, C, NKV * HS)))
        return rc;
    return OP(m, add, dx, dx, A->dB, nc);
}

int llm_model_backward(struct llm_model *m)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    if (!A || !m->training || !m->n_valid)
        return llm_err(LLM_EINVAL, "backward needs a training forward pass with targets first");
    int rc = m->grads ? 0 : llm_model_zero_grad(m);
    if (rc)
        return rc;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, V = c->vocab_size, L = c->n_layers;
    size_t nc = (size_t)N * C;
    /* d(mean loss)/dlogits = (softmax - onehot) / n_valid, into the logits buffer */
    if ((rc = OP(m, cross_entropy, A->losses, A->logits, A->logits, m->targets, N, V,
                 1.0f / (float)m->n_valid)) ||
        (rc = OP(m, matmul_backward, A->dA, G(m, A->lm_head), NULL, A->logits, A->nf,
                 P(m, A->lm_head), N, C, V)))
        return rc;
    const float *last = L ? (pre_norm(m) ? A->la[L - 1].s2 : A->la[L - 1].n2) : A->emb;
    if ((rc = norm_backward(m, A->g, A->final_w, A->final_b, A->dA, last, A->nf_mean, A->nf_rstd, N)))
        return rc;
    /* A->g: gradient of the current block's output, then of its input */
    for (int l = L - 1; l >= 0; l--) {
        struct layer_params *p = &A->lp[l];
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
    if ((rc = OP(m, embedding_backward, G(m, A->tok_emb), demb, m->tokens, N, C)))
        return rc;
    if (c->position == LLM_POSITION_LEARNED)
        rc = OP(m, add_positions_backward, G(m, A->pos_emb), demb, B, T, C, 0);
    return rc;
}
