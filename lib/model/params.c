/* params.c: builds the fixed list of parameter tensors of a model config
 * (names, [out, in] shapes, aligned offsets into one float buffer); the
 * order and the MLA layout are documented in params.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "model/params.h"

/* More tensors than this is a config mistake, not a model (a 256-expert,
 * 100-layer MoE has ~77k). Checked before allocating. */
#define MAX_TENSORS ((size_t)1 << 24)
/* Largest buffer we lay out: 2^60 floats keeps every byte count in 63 bits. */
#define MAX_FLOATS ((size_t)1 << 60)

/* The builder runs twice: once with b->p == NULL to count, then to fill. */
struct builder {
    struct llm_param_spec *p;
    size_t n;
    size_t total;   /* floats so far, padding included */
    int overflow;   /* a name did not fit or the sizes overflowed */
};

static size_t align_up(size_t x)
{
    return (x + LLM_PARAM_ALIGN - 1) / LLM_PARAM_ALIGN * LLM_PARAM_ALIGN;
}

/* Appends one tensor. d1 == 0 means a 1-D tensor of d0 elements. */
static void add(struct builder *b, enum llm_param_kind kind, int layer, int expert, int64_t d0,
                int64_t d1, const char *fmt, ...) LLM_PRINTF(7, 8);

static void add(struct builder *b, enum llm_param_kind kind, int layer, int expert, int64_t d0,
                int64_t d1, const char *fmt, ...)
{
    size_t numel = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    /* every dim is a validated int >= 1, so d0 * d1 < 2^62; the running
     * total is kept under MAX_FLOATS */
    if (numel > MAX_FLOATS || b->total > MAX_FLOATS - align_up(numel) || b->n >= MAX_TENSORS)
        b->overflow = 1; /* the loops of build() stop on it */
    if (b->p && !b->overflow) {
        struct llm_param_spec *s = &b->p[b->n];
        memset(s, 0, sizeof(*s));
        va_list ap;
        va_start(ap, fmt);
        int len = vsnprintf(s->name, sizeof(s->name), fmt, ap);
        va_end(ap);
        if (len < 0 || (size_t)len >= sizeof(s->name))
            b->overflow = 1;
        s->ndim = d1 ? 2 : 1;
        s->shape[0] = d0;
        s->shape[1] = d1;
        s->numel = numel;
        s->offset = b->total;
        s->kind = kind;
        s->layer = layer;
        s->expert = expert;
    }
    b->n++;
    if (!b->overflow)
        b->total += align_up(numel);
}

/* A norm: its weight, and its bias for layernorm with bias (rmsnorm has none). */
static void add_norm(struct builder *b, const struct llm_model_config *m, int layer,
                     const char *prefix, int64_t dim)
{
    add(b, LLM_PARAM_NORM, layer, -1, dim, 0, "%s.weight", prefix);
    if (m->norm == LLM_NORM_LAYERNORM && m->bias)
        add(b, LLM_PARAM_NORM, layer, -1, dim, 0, "%s.bias", prefix);
}

/* A linear layer y = x W^T (+ b): W is (out, in), the bias (out). */
static void add_linear(struct builder *b, int layer, int expert, int bias, int64_t out,
                       int64_t in, const char *prefix)
{
    add(b, LLM_PARAM_MATRIX, layer, expert, out, in, "%s.weight", prefix);
    if (bias)
        add(b, LLM_PARAM_BIAS, layer, -1, out, 0, "%s.bias", prefix);
}

/* The MLP of a dense layer or of one expert: w1 (F, C) is the gate for
 * swiglu and the up projection otherwise, w3 (F, C) the up projection of
 * swiglu, w2 (C, F) the down projection. */
static void add_mlp(struct builder *b, const struct llm_model_config *m, int layer, int expert,
                    int bias, const char *prefix)
{
    char name[80];
    int64_t C = m->d_model, F = m->d_ff;
    snprintf(name, sizeof(name), "%s.w1", prefix);
    add_linear(b, layer, expert, bias, F, C, name);
    if (m->activation == LLM_ACTIVATION_SWIGLU) {
        snprintf(name, sizeof(name), "%s.w3", prefix);
        add_linear(b, layer, expert, bias, F, C, name);
    }
    snprintf(name, sizeof(name), "%s.w2", prefix);
    add_linear(b, layer, expert, bias, C, F, name);
}

static void build(struct builder *b, const struct llm_model_config *m)
{
    int64_t V = m->vocab_size, T = m->context_length, C = m->d_model;
    int64_t NH = m->n_heads, NKV = llm_config_kv_heads(m), HS = llm_param_head_size(m);
    int64_t K = m->kv_lora_rank, R = llm_param_mla_rope_dim(m);
    int bias = m->bias;
    char pre[80];

    add(b, LLM_PARAM_EMBEDDING, -1, -1, V, C, "tok_emb.weight");
    if (m->position == LLM_POSITION_LEARNED)
        add(b, LLM_PARAM_POSITION, -1, -1, T, C, "pos_emb.weight");
    for (int i = 0; i < m->n_layers && !b->overflow; i++) {
        snprintf(pre, sizeof(pre), "layers.%d.attn_norm", i);
        add_norm(b, m, i, pre, C);
        snprintf(pre, sizeof(pre), "layers.%d.attn.wq", i);
        add_linear(b, i, -1, bias, NH * HS, C, pre);
        if (m->attention_kv == LLM_ATTENTION_KV_MLA) {
            /* x -> [c_kv (K) ; k_rope (R)]; norm(c_kv) -> [k_nope (NH*(HS-R)) ; v (NH*HS)] */
            add(b, LLM_PARAM_MATRIX, i, -1, K + R, C, "layers.%d.attn.wkv_a.weight", i);
            add(b, LLM_PARAM_NORM, i, -1, K, 0, "layers.%d.attn.kv_norm.weight", i);
            add(b, LLM_PARAM_MATRIX, i, -1, NH * (HS - R) + NH * HS, K, "layers.%d.attn.wkv_b.weight", i);
        } else {
            snprintf(pre, sizeof(pre), "layers.%d.attn.wk", i);
            add_linear(b, i, -1, bias, NKV * HS, C, pre);
            snprintf(pre, sizeof(pre), "layers.%d.attn.wv", i);
            add_linear(b, i, -1, bias, NKV * HS, C, pre);
        }
        snprintf(pre, sizeof(pre), "layers.%d.attn.wo", i);
        add_linear(b, i, -1, bias, C, NH * HS, pre);
        if (m->qk_norm) {
            add(b, LLM_PARAM_NORM, i, -1, HS, 0, "layers.%d.attn.q_norm.weight", i);
            add(b, LLM_PARAM_NORM, i, -1, HS, 0, "layers.%d.attn.k_norm.weight", i);
        }
        snprintf(pre, sizeof(pre), "layers.%d.mlp_norm", i);
        add_norm(b, m, i, pre, C);
        if (m->mlp == LLM_MLP_MOE) {
            add(b, LLM_PARAM_ROUTER, i, -1, m->n_experts, C, "layers.%d.moe.router.weight", i);
            for (int e = 0; e < m->n_experts && !b->overflow; e++) {
                snprintf(pre, sizeof(pre), "layers.%d.moe.experts.%d", i, e);
                add_mlp(b, m, i, e, 0, pre);
            }
        } else {
            snprintf(pre, sizeof(pre), "layers.%d.mlp", i);
            add_mlp(b, m, i, -1, bias, pre);
        }
    }
    add_norm(b, m, -1, "final_norm", C);
    if (!m->tie_embeddings)
        add(b, LLM_PARAM_MATRIX, -1, -1, V, C, "lm_head.weight");
}

/* What the layout needs of the config, with the key to blame. lib/config
 * checks several of these too; a config built in code skips that. */
static int check(const struct llm_model_config *m)
{
    static const struct { const char *key; size_t off; } pos[] = {
        {"model.vocab_size", offsetof(struct llm_model_config, vocab_size)},
        {"model.context_length", offsetof(struct llm_model_config, context_length)},
        {"model.d_model", offsetof(struct llm_model_config, d_model)},
        {"model.n_layers", offsetof(struct llm_model_config, n_layers)},
        {"model.n_heads", offsetof(struct llm_model_config, n_heads)},
        {"model.d_ff", offsetof(struct llm_model_config, d_ff)},
    };
    for (size_t i = 0; i < sizeof(pos) / sizeof(pos[0]); i++) {
        int v = *(const int *)((const char *)m + pos[i].off);
        if (v < 1)
            return llm_err(LLM_EINVAL, "%s: expected an integer >= 1, got %d", pos[i].key, v);
    }
    if (m->d_model % m->n_heads)
        return llm_err(LLM_EINVAL, "model.n_heads: expected a divisor of model.d_model (%d), got %d",
                       m->d_model, m->n_heads);
    if (m->n_kv_heads < 0 || (m->n_kv_heads && m->n_heads % m->n_kv_heads))
        return llm_err(LLM_EINVAL, "model.n_kv_heads: expected 0 or a divisor of model.n_heads (%d), got %d",
                       m->n_heads, m->n_kv_heads);
    int hs = m->d_model / m->n_heads;
    if (m->position == LLM_POSITION_ROPE && hs % 2)
        return llm_err(LLM_EINVAL, "model.position: rope needs an even head size, got "
                       "model.d_model / model.n_heads = %d / %d = %d", m->d_model, m->n_heads, hs);
    if (m->attention == LLM_ATTENTION_SLIDING && m->window < 1)
        return llm_err(LLM_EINVAL, "model.window: expected an integer >= 1 with attention \"sliding\", got %d",
                       m->window);
    if (m->attention_kv == LLM_ATTENTION_KV_MLA) {
        if (m->kv_lora_rank < 1)
            return llm_err(LLM_EINVAL, "model.kv_lora_rank: expected an integer >= 1 with attention_kv \"mla\", got %d",
                           m->kv_lora_rank);
        /* R = HS/2 rounded down to even must be >= 2, and HS even so the
         * no-rope and rope parts tile the head */
        if (hs % 2 || hs < 4)
            return llm_err(LLM_EINVAL, "model.attention_kv: mla needs an even head size >= 4, got "
                           "model.d_model / model.n_heads = %d / %d = %d", m->d_model, m->n_heads, hs);
        if (m->n_kv_heads && m->n_kv_heads != m->n_heads)
            return llm_err(LLM_EINVAL, "model.n_kv_heads: mla derives keys and values for every query head "
                           "from the latent; expected 0 or model.n_heads (%d), got %d",
                           m->n_heads, m->n_kv_heads);
    }
    if (m->mlp == LLM_MLP_MOE) {
        if (m->n_experts < 1)
            return llm_err(LLM_EINVAL, "model.n_experts: expected an integer >= 1 with mlp \"moe\", got %d",
                           m->n_experts);
        if (m->top_k < 1 || m->top_k > m->n_experts)
            return llm_err(LLM_EINVAL, "model.top_k: expected 1..model.n_experts (%d) with mlp \"moe\", got %d",
                           m->n_experts, m->top_k);
    }
    return 0;
}

int llm_param_layout_init(struct llm_param_layout *l, const struct llm_model_config *m)
{
    memset(l, 0, sizeof(*l));
    int rc = check(m);
    if (rc)
        return rc;
    struct builder b = {0};
    build(&b, m);
    if (b.overflow)
        return llm_err(LLM_EINVAL, "model: more than %zu tensors or 2^60 floats: too large to lay out "
                       "(check model.n_layers, model.n_experts, model.d_model)", MAX_TENSORS);
    size_t n = b.n;
    b = (struct builder){.p = llm_calloc(n, sizeof(*b.p), "parameter layout")};
    if (!b.p)
        return LLM_ENOMEM;
    build(&b, m);
    if (b.overflow || b.n != n) { /* a name longer than 95 bytes cannot happen within the limits */
        free(b.p);
        return llm_err(LLM_EINVAL, "model: a tensor name is longer than %zu bytes",
                       sizeof(b.p->name) - 1);
    }
    l->p = b.p;
    l->n = b.n;
    l->total = b.total;
    return 0;
}

void llm_param_layout_release(struct llm_param_layout *l)
{
    free(l->p);
    memset(l, 0, sizeof(*l));
}

long llm_param_find(const struct llm_param_layout *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->p[i].name, name))
            return (long)i;
    return -1;
}

size_t llm_param_count(const struct llm_param_layout *l)
{
    size_t s = 0;
    for (size_t i = 0; i < l->n; i++)
        s += l->p[i].numel;
    return s;
}

const char *llm_param_kind_name(enum llm_param_kind k)
{
    switch (k) {
    case LLM_PARAM_EMBEDDING: return "embedding";
    case LLM_PARAM_POSITION: return "position";
    case LLM_PARAM_NORM: return "norm";
    case LLM_PARAM_BIAS: return "bias";
    case LLM_PARAM_MATRIX: return "matrix";
    case LLM_PARAM_ROUTER: return "router";
    }
    return "?";
}

/* ---- the index by role ---- */

/* Block tensors by their name after "layers.<i>.". */
static const struct {
    const char *suffix;
    size_t off;
} block_tensors[] = {
#define F_(name, field) {name, offsetof(struct llm_param_block, field)}
    F_("attn_norm.weight", attn_norm_w), F_("attn_norm.bias", attn_norm_b),
    F_("attn.wq.weight", wq),            F_("attn.wq.bias", bq),
    F_("attn.wk.weight", wk),            F_("attn.wk.bias", bk),
    F_("attn.wv.weight", wv),            F_("attn.wv.bias", bv),
    F_("attn.wo.weight", wo),            F_("attn.wo.bias", bo),
    F_("attn.q_norm.weight", q_norm),    F_("attn.k_norm.weight", k_norm),
    F_("attn.wkv_a.weight", wkv_a),      F_("attn.kv_norm.weight", kv_norm),
    F_("attn.wkv_b.weight", wkv_b),
    F_("mlp_norm.weight", mlp_norm_w),   F_("mlp_norm.bias", mlp_norm_b),
    F_("mlp.w1.weight", w1),             F_("mlp.w1.bias", b1),
    F_("mlp.w3.weight", w3),             F_("mlp.w3.bias", b3),
    F_("mlp.w2.weight", w2),             F_("mlp.w2.bias", b2),
    F_("moe.router.weight", router),
#undef F_
};
#define N_BLOCK_TENSORS (sizeof(block_tensors) / sizeof(block_tensors[0]))

void llm_param_index_release(struct llm_param_index *ix)
{
    free(ix->layer);
    free(ix->expert_idx);
    memset(ix, 0, sizeof(*ix));
}

int llm_param_index_init(struct llm_param_index *ix, const struct llm_param_layout *l,
                         const struct llm_model_config *c)
{
    memset(ix, 0, sizeof(*ix));
    int L = c->n_layers, E = c->mlp == LLM_MLP_MOE ? c->n_experts : 0;
    ix->layer = llm_calloc(L > 0 ? (size_t)L : 1, sizeof(*ix->layer), "the parameter index");
    if (E)
        ix->expert_idx = llm_calloc((size_t)L * E * 3, sizeof(long), "the parameter index");
    if (!ix->layer || (E && !ix->expert_idx)) {
        llm_param_index_release(ix);
        return LLM_ENOMEM;
    }
    for (int k = 0; k < L; k++) {
        struct llm_param_block *p = &ix->layer[k];
        for (size_t f = 0; f < N_BLOCK_TENSORS; f++)
            *(long *)((char *)p + block_tensors[f].off) = -1;
        p->expert = E ? ix->expert_idx + (size_t)k * E * 3 : NULL;
        for (int i = 0; i < 3 * E; i++)
            p->expert[i] = -1;
    }
    ix->tok_emb = ix->pos_emb = ix->final_w = ix->final_b = ix->lm_head = -1;
    for (size_t i = 0; i < l->n; i++) {
        const struct llm_param_spec *s = &l->p[i];
        long *slot = NULL;
        if (s->layer < 0) {
            slot = !strcmp(s->name, "tok_emb.weight")      ? &ix->tok_emb
                   : !strcmp(s->name, "pos_emb.weight")    ? &ix->pos_emb
                   : !strcmp(s->name, "final_norm.weight") ? &ix->final_w
                   : !strcmp(s->name, "final_norm.bias")   ? &ix->final_b
                   : !strcmp(s->name, "lm_head.weight")    ? &ix->lm_head
                                                           : NULL;
        } else if (s->layer < L) {
            struct llm_param_block *p = &ix->layer[s->layer];
            const char *suffix = strchr(s->name + strlen("layers."), '.');
            suffix = suffix ? suffix + 1 : "";
            if (s->expert >= 0 && s->expert < E) { /* moe.experts.<e>.w1.weight */
                static const char *const part[3] = {".w1.weight", ".w3.weight", ".w2.weight"};
                size_t len = strlen(s->name);
                for (int k = 0; k < 3; k++)
                    if (len > strlen(part[k]) && !strcmp(s->name + len - strlen(part[k]), part[k]))
                        slot = &p->expert[s->expert * 3 + k];
            } else {
                for (size_t f = 0; f < N_BLOCK_TENSORS; f++)
                    if (!strcmp(suffix, block_tensors[f].suffix))
                        slot = (long *)((char *)p + block_tensors[f].off);
            }
        }
        if (!slot) {
            llm_param_index_release(ix);
            return llm_err(LLM_EINVAL, "parameter '%s' has no place in the model", s->name);
        }
        *slot = (long)i;
    }
    if (c->tie_embeddings)
        ix->lm_head = ix->tok_emb;
    return 0;
}
