/* test_model.c: the transformer end to end on the CPU backend, for each
 * architecture variant: gradients against finite differences of the loss,
 * causality, determinism, and memorizing one batch. */
#include "testutil.h"

#include <math.h>
#include "config/config.h"
#include "core/err.h"
#include "core/rng.h"
#include "model/model.h"

/* A tiny model: odd sizes so nothing lines up by accident. */
static void tiny(struct llm_model_config *m)
{
    struct llm_config c;
    assert_int_equal(llm_config_defaults(&c), 0);
    *m = c.model;
    llm_config_release(&c);
    m->vocab_size = 13;
    m->context_length = 7;
    m->d_model = 8;
    m->n_layers = 2;
    m->n_heads = 2;
    m->n_kv_heads = 0;
    m->d_ff = 12;
    m->dropout = 0;
    m->init_std = 0.3; /* large enough that every path carries gradient */
}

enum variant {
    GPT2, LLAMA, SLIDING, LINEAR, POST, QKNORM, SINUS_RELU, RELU2_MQA,
    MOE, MOE_SWIGLU, MLA, MLA_QKNORM, DEEPSEEK, NVARIANTS
};
static const char *const variant_name[] = {
    "gpt2", "llama", "sliding", "linear", "post-norm", "qk_norm", "sinusoidal+relu", "relu2+mqa",
    "moe (gelu, top-2 of 4)", "moe (swiglu, top-1 of 3, post-norm)", "mla", "mla+qk_norm",
    "mla+moe (deepseek)"};

static void make_variant(struct llm_model_config *m, enum variant v)
{
    tiny(m);
    switch (v) {
    case GPT2: /* learned, layernorm, gelu, bias, tied: the defaults */
        m->position = LLM_POSITION_LEARNED, m->norm = LLM_NORM_LAYERNORM;
        m->activation = LLM_ACTIVATION_GELU, m->bias = true, m->tie_embeddings = true;
        break;
    case LLAMA:
        m->position = LLM_POSITION_ROPE, m->norm = LLM_NORM_RMSNORM;
        m->activation = LLM_ACTIVATION_SWIGLU, m->bias = false, m->tie_embeddings = false;
        m->n_heads = 4, m->n_kv_heads = 2; /* GQA */
        break;
    case SLIDING:
        m->attention = LLM_ATTENTION_SLIDING, m->window = 3, m->position = LLM_POSITION_ROPE;
        break;
    case LINEAR:
        m->attention = LLM_ATTENTION_LINEAR;
        break;
    case POST:
        m->norm_position = LLM_NORM_POSITION_POST;
        break;
    case QKNORM:
        m->qk_norm = true, m->position = LLM_POSITION_ROPE, m->norm = LLM_NORM_RMSNORM;
        break;
    case SINUS_RELU:
        m->position = LLM_POSITION_SINUSOIDAL, m->activation = LLM_ACTIVATION_RELU;
        break;
    case RELU2_MQA:
        m->activation = LLM_ACTIVATION_RELU2, m->n_heads = 4, m->n_kv_heads = 1, m->bias = false;
        break;
    case MOE: /* the GPT-2 defaults (biases elsewhere, none in experts) with 4 experts */
        m->mlp = LLM_MLP_MOE, m->n_experts = 4, m->top_k = 2, m->aux_loss_coef = 0.1;
        break;
    case MOE_SWIGLU: /* Switch's top-1 routing, with llama's swiglu, rmsnorm, rope */
        m->mlp = LLM_MLP_MOE, m->n_experts = 3, m->top_k = 1, m->aux_loss_coef = 0.1;
        m->activation = LLM_ACTIVATION_SWIGLU, m->norm = LLM_NORM_RMSNORM;
        m->position = LLM_POSITION_ROPE, m->bias = false, m->norm_position = LLM_NORM_POSITION_POST;
        break;
    case MLA: /* HS 4: rope dims R 2, no-rope dims 2 */
        m->attention_kv = LLM_ATTENTION_KV_MLA, m->kv_lora_rank = 3;
        m->position = LLM_POSITION_ROPE, m->norm = LLM_NORM_RMSNORM, m->bias = false;
        break;
    case MLA_QKNORM: /* with layernorm and biases (wq, wo) too */
        m->attention_kv = LLM_ATTENTION_KV_MLA, m->kv_lora_rank = 5, m->qk_norm = true;
        m->position = LLM_POSITION_ROPE;
        break;
    case DEEPSEEK: /* MLA with HS 8 (R 4) and a swiglu MoE */
        m->attention_kv = LLM_ATTENTION_KV_MLA, m->kv_lora_rank = 4, m->n_heads = 1;
        m->position = LLM_POSITION_ROPE, m->norm = LLM_NORM_RMSNORM, m->bias = false;
        m->activation = LLM_ACTIVATION_SWIGLU, m->tie_embeddings = false;
        m->mlp = LLM_MLP_MOE, m->n_experts = 4, m->top_k = 2, m->aux_loss_coef = 0.05;
        break;
    case NVARIANTS:
        break;
    }
}

static void random_batch(struct llm_rng *r, int32_t *tok, int32_t *tgt, int n, int V, int ignore)
{
    for (int i = 0; i < n; i++) {
        tok[i] = (int32_t)llm_rng_below(r, (uint64_t)V);
        tgt[i] = (int32_t)llm_rng_below(r, (uint64_t)V);
        if (ignore && i % 5 == 3)
            tgt[i] = -1; /* ignored positions carry no loss and no gradient */
    }
}

static double loss_at(struct llm_model *m, const int32_t *tok, const int32_t *tgt, int B, int T)
{
    float loss;
    assert_int_equal(llm_model_forward(m, tok, tgt, B, T, 1, &loss), 0);
    return loss;
}

/* MoE: the set of experts of each token in every layer of the last forward,
 * as (L, N) bit masks, into dst (NULL: only counted); 0 for a dense model. */
static size_t routing_sets(const struct llm_model *m, uint32_t *dst, int N)
{
    if (m->cfg.mlp != LLM_MLP_MOE)
        return 0;
    for (int l = 0; dst && l < m->cfg.n_layers; l++) {
        const int32_t *r = llm_model_routing(m, l);
        assert_non_null(r);
        for (int n = 0; n < N; n++) {
            dst[l * N + n] = 0;
            for (int k = 0; k < m->cfg.top_k; k++)
                dst[l * N + n] |= 1u << r[n * m->cfg.top_k + k];
        }
    }
    return (size_t)N * m->cfg.n_layers;
}

/* The loss at the current parameters, and whether any token went to another
 * set of experts than in base: a MoE's loss jumps there (the order among the
 * chosen does not matter), so a finite difference across it is meaningless
 * and the probe is drawn again. */
static double loss_routed(struct llm_model *m, const int32_t *tok, const int32_t *tgt, int B, int T,
                          const uint32_t *base, int *moved)
{
    double l = loss_at(m, tok, tgt, B, T);
    uint32_t now[64];
    size_t n = routing_sets(m, now, B * T);
    if (n && memcmp(now, base, n * sizeof(uint32_t)))
        *moved = 1;
    return l;
}

/* The analytic gradient against central differences: along random directions
 * over all parameters, and element by element on a few entries of each tensor. */
static void gradcheck(enum variant v)
{
    struct llm_model_config cfg;
    make_variant(&cfg, v);
    struct llm_backend be;
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    struct llm_model m;
    if (llm_model_init(&m, &cfg, &be, 42) != 0)
        fail_msg("%s: %s", variant_name[v], llm_errmsg());
    int B = 2, T = 6, N = B * T;
    int32_t tok[12], tgt[12];
    struct llm_rng r;
    llm_rng_seed(&r, 7 + v);
    random_batch(&r, tok, tgt, N, cfg.vocab_size, 1);
    assert_int_equal(llm_model_zero_grad(&m), 0);
    loss_at(&m, tok, tgt, B, T);
    assert_int_equal(llm_model_backward(&m), 0);
    uint32_t route[64]; /* L * N <= 64 sets */
    assert_true(routing_sets(&m, NULL, N) <= 64);
    routing_sets(&m, route, N);
    size_t P = m.layout.total;
    float *g = malloc(P * sizeof(float)), *p0 = malloc(P * sizeof(float));
    memcpy(g, m.grads, P * sizeof(float)); /* CPU backend: device memory is host memory */
    memcpy(p0, m.params, P * sizeof(float));
    /* Directional derivatives along random directions over all parameters,
     * central differences at h and h/2 combined by Richardson extrapolation
     * (4 D(h/2) - D(h)) / 3, which cancels the h^2 term: with every parameter
     * moved at once the curvature is large enough to matter at h = 1e-3,
     * while float rounding of the loss (~1e-7 * 2.5 / h) forbids a smaller h. */
    double eps = 1e-3;
    int redrawn = 0;
    for (int dir = 0; dir < 3; dir++) {
        float *d = malloc(P * sizeof(float));
        double gd = 0, D[2], h0 = eps;
        int moved = 1;
        for (size_t i = 0; i < P; i++) {
            d[i] = (float)llm_rng_normal(&r);
            gd += (double)g[i] * d[i];
        }
        /* MoE: where a token changes experts within +-h0 (a near tie), shrink
         * h0 (4x, twice), then draw another direction */
        for (int shrink = 0; moved && shrink < 3; shrink++, h0 /= 4) {
            moved = 0;
            for (int k = 0; k < 2; k++) {
                double h = k ? h0 / 2 : h0;
                for (size_t i = 0; i < P; i++)
                    m.params[i] = p0[i] + (float)h * d[i];
                double lp = loss_routed(&m, tok, tgt, B, T, route, &moved);
                for (size_t i = 0; i < P; i++)
                    m.params[i] = p0[i] - (float)h * d[i];
                double lm = loss_routed(&m, tok, tgt, B, T, route, &moved);
                D[k] = (lp - lm) / (2 * h);
            }
        }
        h0 *= 4;
        memcpy(m.params, p0, P * sizeof(float));
        free(d);
        if (moved) {
            if (++redrawn > 10)
                fail_msg("%s: the routing flips along every direction tried", variant_name[v]);
            dir--;
            continue;
        }
        /* float rounding of the loss grows as 1/h: the absolute term with it */
        double num = (4 * D[1] - D[0]) / 3;
        if (fabs(num - gd) > 3e-3 * (eps / h0) + 1e-2 * fabs(gd))
            fail_msg("%s: directional derivative %d (step %g): analytic %.6g, numeric %.6g",
                     variant_name[v], dir, h0, gd, num);
    }
    /* entries of every tensor: each one carries its own gradient right */
    for (size_t t = 0; t < m.layout.n; t++) {
        const struct llm_param_spec *s = &m.layout.p[t];
        for (int k = 0, tries = 0; k < 3; k++) {
            size_t i = s->offset + llm_rng_below(&r, s->numel);
            int moved = 0;
            m.params[i] = p0[i] + (float)eps;
            double lp = loss_routed(&m, tok, tgt, B, T, route, &moved);
            m.params[i] = p0[i] - (float)eps;
            double lm = loss_routed(&m, tok, tgt, B, T, route, &moved);
            m.params[i] = p0[i];
            if (moved && ++tries <= 10) { /* this entry flips a routing: another one */
                k--;
                continue;
            }
            if (moved)
                fail_msg("%s: %s: every entry tried flips a routing", variant_name[v], s->name);
            double num = (lp - lm) / (2 * eps);
            if (fabs(num - g[i]) > 1e-3 + 5e-2 * fabs(num))
                fail_msg("%s: %s[%zu]: analytic %.6g, numeric %.6g", variant_name[v], s->name,
                         i - s->offset, g[i], num);
        }
    }
    free(g), free(p0);
    llm_model_release(&m);
    llm_backend_release(&be);
}

static void test_gradients(void **state)
{
    (void)state;
    for (int v = 0; v < NVARIANTS; v++)
        gradcheck((enum variant)v);
}

/* An objective J(params) of the alignment backward entry points, and its inputs. */
struct objective {
    const int32_t *tok, *tgt; /* tgt NULL: a forward without targets */
    int B, T;
    const float *w, *G;       /* weighted: per-token CE weights, hidden-state gradient */
    const int64_t *idx;       /* logits: flat indices and their weights g */
    const float *g;
    int n;
};

/* J = sum_t w_t CE_t + sum <G, hidden> (weighted), or sum_i g_i logits[idx_i]. */
static double objective_at(struct llm_model *m, const struct objective *o)
{
    float loss;
    assert_int_equal(llm_model_forward(m, o->tok, o->tgt, o->B, o->T, 1, &loss), 0);
    double J = 0;
    if (o->idx) {
        const float *lg = llm_model_logits(m); /* CPU backend: host memory */
        for (int i = 0; i < o->n; i++)
            J += (double)o->g[i] * lg[o->idx[i]];
        return J;
    }
    int N = o->B * o->T, C = m->cfg.d_model;
    const float *h = llm_model_hidden(m);
    for (int i = 0; i < N; i++)
        J += o->tgt[i] >= 0 ? (double)o->w[i] * m->host_losses[i] : 0.0;
    for (size_t i = 0; i < (size_t)N * C; i++)
        J += (double)o->G[i] * h[i];
    return J;
}

/* m->grads (of J at the current parameters) against central differences of
 * J along 3 random directions, Richardson-extrapolated as in gradcheck. */
static void check_directions(struct llm_model *m, const struct objective *o, struct llm_rng *r, const char *what)
{
    size_t P = m->layout.total;
    float *g0 = malloc(P * sizeof(float)), *p0 = malloc(P * sizeof(float)), *d = malloc(P * sizeof(float));
    memcpy(g0, m->grads, P * sizeof(float));
    memcpy(p0, m->params, P * sizeof(float));
    for (int dir = 0; dir < 3; dir++) {
        double gd = 0, D[2], h0 = 1e-3;
        for (size_t i = 0; i < P; i++) {
            d[i] = (float)llm_rng_normal(r);
            gd += (double)g0[i] * d[i];
        }
        for (int k = 0; k < 2; k++) {
            double h = k ? h0 / 2 : h0;
            for (size_t i = 0; i < P; i++)
                m->params[i] = p0[i] + (float)h * d[i];
            double jp = objective_at(m, o);
            for (size_t i = 0; i < P; i++)
                m->params[i] = p0[i] - (float)h * d[i];
            double jm = objective_at(m, o);
            D[k] = (jp - jm) / (2 * h);
        }
        double num = (4 * D[1] - D[0]) / 3;
        if (fabs(num - gd) > 3e-3 + 1e-2 * fabs(gd))
            fail_msg("%s, direction %d: analytic %.6g, numeric %.6g", what, dir, gd, num);
    }
    memcpy(m->params, p0, P * sizeof(float));
    free(g0), free(p0), free(d);
}

/* llm_model_backward_ex: with w = 1/n_valid and no G it is
 * llm_model_backward (to float rounding: the scale is applied after
 * (softmax - onehot), not inside); with signed weights and a hidden-state
 * gradient, its directional derivatives match finite differences of J. */
static void test_weighted_backward(void **state)
{
    (void)state;
    struct llm_model_config cfg;
    make_variant(&cfg, LLAMA);
    struct llm_backend be;
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    struct llm_model m;
    assert_int_equal(llm_model_init(&m, &cfg, &be, 5), 0);
    enum { B = 2, T = 6, N = B * T };
    int32_t tok[N], tgt[N];
    struct llm_rng r;
    llm_rng_seed(&r, 99);
    random_batch(&r, tok, tgt, N, cfg.vocab_size, 1);
    size_t P = m.layout.total, NC = (size_t)N * cfg.d_model;
    float *g0 = malloc(P * sizeof(float)), *w = malloc(N * sizeof(float)), *G = malloc(NC * sizeof(float));
    /* the mean loss through weights */
    assert_int_equal(llm_model_zero_grad(&m), 0);
    loss_at(&m, tok, tgt, B, T);
    assert_int_equal(llm_model_backward(&m), 0);
    memcpy(g0, m.grads, P * sizeof(float));
    for (int i = 0; i < N; i++)
        w[i] = 1.0f / (float)m.n_valid;
    assert_int_equal(llm_model_zero_grad(&m), 0);
    loss_at(&m, tok, tgt, B, T);
    assert_int_equal(llm_model_backward_ex(&m, w, NULL), 0);
    for (size_t i = 0; i < P; i++)
        if (fabsf(g0[i] - m.grads[i]) > 1e-4f * fabsf(g0[i]) + 1e-7f)
            fail_msg("backward_ex with mean weights: grad[%zu] %g vs %g", i, m.grads[i], g0[i]);
    /* signed weights and a head's gradient on the hidden state */
    for (int i = 0; i < N; i++)
        w[i] = (float)(llm_rng_normal(&r) * 0.5);
    for (size_t i = 0; i < NC; i++)
        G[i] = (float)(llm_rng_normal(&r) * 0.1);
    float *Gd;
    assert_int_equal(be.ops->alloc(be.ctx, (void **)&Gd, NC * sizeof(float)), 0);
    assert_int_equal(be.ops->upload(be.ctx, Gd, G, NC * sizeof(float)), 0);
    assert_int_equal(llm_model_zero_grad(&m), 0);
    loss_at(&m, tok, tgt, B, T);
    assert_int_equal(llm_model_backward_ex(&m, w, Gd), 0);
    const struct objective o = {.tok = tok, .tgt = tgt, .B = B, .T = T, .w = w, .G = G};
    check_directions(&m, &o, &r, "weighted backward");
    be.ops->free(be.ctx, Gd);
    free(g0), free(w), free(G);
    llm_model_release(&m);
    llm_backend_release(&be);
}

/* llm_model_backward_logits: the gradient of J = sum_i g_i logits[index_i]
 * (a reward read from single logits) against finite differences. */
static void test_logit_backward(void **state)
{
    (void)state;
    struct llm_model_config cfg;
    make_variant(&cfg, GPT2);
    struct llm_backend be;
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    struct llm_model m;
    assert_int_equal(llm_model_init(&m, &cfg, &be, 8), 0);
    enum { B = 2, T = 5, N = B * T };
    int32_t tok[N], tgt[N];
    struct llm_rng r;
    llm_rng_seed(&r, 12);
    random_batch(&r, tok, tgt, N, cfg.vocab_size, 0);
    const int V = cfg.vocab_size;
    const int64_t idx[3] = {(int64_t)(T - 1) * V + 3, (int64_t)(2 * T - 1) * V + 3, (int64_t)2 * V + 7};
    const float g[3] = {-0.7f, 0.5f, 0.25f};
    const struct objective o = {.tok = tok, .B = B, .T = T, .idx = idx, .g = g, .n = 3};
    assert_int_equal(llm_model_zero_grad(&m), 0);
    objective_at(&m, &o);
    assert_int_equal(llm_model_backward_logits(&m, idx, g, 3), 0);
    check_directions(&m, &o, &r, "logit backward");
    int64_t bad = (int64_t)N * V;
    assert_int_equal(llm_model_backward_logits(&m, &bad, g, 1), LLM_EINVAL);
    llm_model_release(&m);
    llm_backend_release(&be);
}

/* Changing token t never changes the logits at positions < t, bit for bit.
 * MoE runs on the reference backend here: changing a token changes which
 * rows share an expert's matmul, and OpenBLAS's blocking (so the last bits
 * of a row's product) depends on the row count and position; the plain
 * loops give every row the same bits whatever its neighbours. */
static void test_causality(void **state)
{
    (void)state;
    for (int v = 0; v < NVARIANTS; v++) {
        struct llm_model_config cfg;
        make_variant(&cfg, (enum variant)v);
        struct llm_backend be;
        assert_int_equal(llm_backend_cpu_init(&be, 2, cfg.mlp == LLM_MLP_MOE), 0);
        struct llm_model m;
        assert_int_equal(llm_model_init(&m, &cfg, &be, 1), 0);
        int T = 7, V = cfg.vocab_size;
        int32_t tok[7] = {1, 2, 3, 4, 5, 6, 7};
        assert_int_equal(llm_model_forward(&m, tok, NULL, 1, T, 0, NULL), 0);
        float *before = malloc((size_t)T * V * sizeof(float));
        memcpy(before, llm_model_logits(&m), (size_t)T * V * sizeof(float));
        for (int t = 1; t < T; t++) {
            int32_t tok2[7];
            memcpy(tok2, tok, sizeof(tok));
            tok2[t] = (tok2[t] + 5) % V;
            assert_int_equal(llm_model_forward(&m, tok2, NULL, 1, T, 0, NULL), 0);
            const float *after = llm_model_logits(&m);
            for (int i = 0; i < t * V; i++)
                if (after[i] != before[i])
                    fail_msg("%s: token %d changed logits at position %d", variant_name[v], t, i / V);
            int changed = 0;
            for (int i = t * V; i < (t + 1) * V; i++)
                changed |= after[i] != before[i];
            assert_true(changed); /* and it does change its own position */
        }
        free(before);
        llm_model_release(&m);
        llm_backend_release(&be);
    }
}

/* One AdamW step over the whole parameter buffer (no decay). */
static void adam_step(struct llm_model *m, int t, float lr, float *mom, float *vel)
{
    assert_int_equal(m->be->ops->adamw(m->be->ctx, m->params, m->grads, mom, vel, m->layout.total, lr,
                                       0.9f, 0.95f, 1e-8f, 0.0f, t, 1.0f), 0);
}

static void test_memorizes_a_batch(void **state)
{
    (void)state;
    for (int v = 0; v < NVARIANTS; v++) {
        struct llm_model_config cfg;
        make_variant(&cfg, (enum variant)v);
        cfg.d_model = 16, cfg.d_ff = 32, cfg.init_std = 0.05;
        struct llm_backend be;
        assert_int_equal(llm_backend_cpu_init(&be, 2, 0), 0);
        struct llm_model m;
        assert_int_equal(llm_model_init(&m, &cfg, &be, 3), 0);
        int B = 2, T = 7, N = B * T;
        int32_t tok[14], tgt[14];
        struct llm_rng r;
        llm_rng_seed(&r, 11);
        random_batch(&r, tok, tgt, N, cfg.vocab_size, 0);
        float *mom = calloc(m.layout.total, sizeof(float)), *vel = calloc(m.layout.total, sizeof(float));
        float first = 0, loss = 0;
        for (int step = 1; step <= 300; step++) {
            assert_int_equal(llm_model_zero_grad(&m), 0);
            assert_int_equal(llm_model_forward(&m, tok, tgt, B, T, 1, &loss), 0);
            if (step == 1)
                first = loss;
            assert_int_equal(llm_model_backward(&m), 0);
            adam_step(&m, step, 1e-2f, mom, vel);
        }
        float ce = loss - m.aux_loss; /* MoE: the balancing loss stays near its minimum, 1 per layer */
        if (!(ce < 0.1f))
            fail_msg("%s: cross-entropy %.4f after 300 steps (from %.4f): the batch was not memorized",
                     variant_name[v], ce, first);
        free(mom), free(vel);
        llm_model_release(&m);
        llm_backend_release(&be);
    }
}

static void test_dropout_and_determinism(void **state)
{
    (void)state;
    struct llm_model_config cfg;
    make_variant(&cfg, GPT2);
    cfg.dropout = 0.2;
    float l[2][2];
    for (int run = 0; run < 2; run++) {
        struct llm_backend be;
        assert_int_equal(llm_backend_cpu_init(&be, run + 1, 0), 0); /* 1 then 2 threads */
        struct llm_model m;
        assert_int_equal(llm_model_init(&m, &cfg, &be, 5), 0);
        int32_t tok[7] = {1, 2, 3, 4, 5, 6, 7}, tgt[7] = {2, 3, 4, 5, 6, 7, 8};
        assert_int_equal(llm_model_forward(&m, tok, tgt, 1, 7, 1, &l[run][0]), 0);
        assert_int_equal(llm_model_forward(&m, tok, tgt, 1, 7, 0, &l[run][1]), 0);
        llm_model_release(&m);
        llm_backend_release(&be);
    }
    assert_true(l[0][0] == l[1][0]); /* same seed, any thread count: the same masks */
    assert_true(l[0][1] == l[1][1]);
    assert_true(l[0][0] != l[0][1]); /* training applies dropout, evaluation does not */
}

/* ---- a plain double-precision forward of a one-layer model, to pin the
 * MLA and MoE math (layouts, the rope sub-range, the un-renormalized gate,
 * ties) independently of the backend ops. Pre-norm, rmsnorm, rope, swiglu,
 * no biases, tied embeddings; standard or MLA attention, dense or MoE. */

static const double *ref_w(const struct llm_model *m, double *buf, const char *name)
{
    long i = llm_param_find(&m->layout, name);
    if (i < 0)
        fail_msg("no tensor %s", name);
    const struct llm_param_spec *s = &m->layout.p[i];
    for (size_t j = 0; j < s->numel; j++)
        buf[j] = m->params[s->offset + j];
    return buf;
}

/* y (n, out) = x (n, in) @ w (out, in)^T */
static void ref_mm(double *y, const double *x, const double *w, int n, int in, int out)
{
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            double acc = 0;
            for (int i = 0; i < in; i++)
                acc += x[r * in + i] * w[o * in + i];
            y[r * out + o] = acc;
        }
}

static void ref_rmsnorm(double *y, const double *x, const double *w, int n, int c, double eps)
{
    for (int r = 0; r < n; r++) {
        double ss = 0;
        for (int i = 0; i < c; i++)
            ss += x[r * c + i] * x[r * c + i];
        double rs = 1 / sqrt(ss / c + eps);
        for (int i = 0; i < c; i++)
            y[r * c + i] = x[r * c + i] * rs * w[i];
    }
}

/* rotate_half rope of the channels [off, off + rot) of a vector at position t */
static void ref_rope(double *x, int off, int rot, int t, double theta)
{
    for (int i = 0; i < rot / 2; i++) {
        double a = t * pow(theta, -2.0 * i / rot), x0 = x[off + i], x1 = x[off + i + rot / 2];
        x[off + i] = x0 * cos(a) - x1 * sin(a);
        x[off + i + rot / 2] = x1 * cos(a) + x0 * sin(a);
    }
}

/* swiglu MLP of one row: out (C) = (silu(x W1^T) * (x W3^T)) W2^T */
static void ref_mlp(double *out, const double *x, const double *w1, const double *w3,
                    const double *w2, int C, int F)
{
    double h[64], u[64], a[64];
    ref_mm(h, x, w1, 1, C, F);
    ref_mm(u, x, w3, 1, C, F);
    for (int f = 0; f < F; f++)
        a[f] = h[f] / (1 + exp(-h[f])) * u[f];
    ref_mm(out, a, w2, 1, F, C);
}

/* logits (T, V) of tokens (T) for m (one layer); *aux: the aux loss */
static void ref_forward(const struct llm_model *m, const int32_t *tok, int T, double *logits,
                        double *aux)
{
    const struct llm_model_config *c = &m->cfg;
    int C = c->d_model, NH = c->n_heads, HS = C / NH, F = c->d_ff, V = c->vocab_size;
    int mla = c->attention_kv == LLM_ATTENTION_KV_MLA, K = c->kv_lora_rank;
    int R = mla ? llm_param_mla_rope_dim(c) : HS, D = HS - R, E = c->n_experts, top = c->top_k;
    double eps = c->norm_eps, theta = c->rope_theta;
    double *w = malloc(4096 * sizeof(double)), *w2 = malloc(4096 * sizeof(double));
    double *w3 = malloc(4096 * sizeof(double)), x[7 * 16], n1[7 * 16], q[7 * 16], k[7 * 16],
           v[7 * 16], att[7 * 16], s1[7 * 16], n2[7 * 16], s2[7 * 16];
    assert_true(T <= 7 && C <= 16 && F <= 64);
    const double *emb = ref_w(m, w, "tok_emb.weight");
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++)
            x[t * C + i] = emb[tok[t] * C + i];
    ref_rmsnorm(n1, x, ref_w(m, w, "layers.0.attn_norm.weight"), T, C, eps);
    ref_mm(q, n1, ref_w(m, w, "layers.0.attn.wq.weight"), T, C, NH * HS);
    if (mla) {
        double ckv[7 * 16], lat[7 * 16], cn[7 * 16], kv[7 * 64];
        ref_mm(ckv, n1, ref_w(m, w, "layers.0.attn.wkv_a.weight"), T, C, K + R);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < K; i++)
                lat[t * K + i] = ckv[t * (K + R) + i];
        ref_rmsnorm(cn, lat, ref_w(m, w, "layers.0.attn.kv_norm.weight"), T, K, eps);
        ref_mm(kv, cn, ref_w(m, w, "layers.0.attn.wkv_b.weight"), T, K, NH * D + NH * HS);
        int W = NH * D + NH * HS;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                for (int i = 0; i < D; i++) /* per-head no-rope key, then the shared rope key */
                    k[(t * NH + h) * HS + i] = kv[t * W + h * D + i];
                for (int i = 0; i < R; i++)
                    k[(t * NH + h) * HS + D + i] = ckv[t * (K + R) + K + i];
                for (int i = 0; i < HS; i++)
                    v[(t * NH + h) * HS + i] = kv[t * W + NH * D + h * HS + i];
            }
    } else {
        ref_mm(k, n1, ref_w(m, w, "layers.0.attn.wk.weight"), T, C, NH * HS);
        ref_mm(v, n1, ref_w(m, w, "layers.0.attn.wv.weight"), T, C, NH * HS);
    }
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++) {
            ref_rope(q + (t * NH + h) * HS, D, R, t, theta);
            ref_rope(k + (t * NH + h) * HS, D, R, t, theta);
        }
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++) {
            double sc[7], mx = -1e300, z = 0;
            for (int s = 0; s <= t; s++) {
                sc[s] = 0;
                for (int i = 0; i < HS; i++)
                    sc[s] += q[(t * NH + h) * HS + i] * k[(s * NH + h) * HS + i];
                sc[s] /= sqrt((double)HS);
                mx = sc[s] > mx ? sc[s] : mx;
            }
            for (int s = 0; s <= t; s++)
                z += sc[s] = exp(sc[s] - mx);
            for (int i = 0; i < HS; i++) {
                double acc = 0;
                for (int s = 0; s <= t; s++)
                    acc += sc[s] / z * v[(s * NH + h) * HS + i];
                att[(t * NH + h) * HS + i] = acc;
            }
        }
    ref_mm(s1, att, ref_w(m, w, "layers.0.attn.wo.weight"), T, NH * HS, C);
    for (int i = 0; i < T * C; i++)
        s1[i] += x[i];
    ref_rmsnorm(n2, s1, ref_w(m, w, "layers.0.mlp_norm.weight"), T, C, eps);
    *aux = 0;
    if (c->mlp == LLM_MLP_MOE) {
        double p[7 * 8], P[8] = {0}, f[8] = {0};
        ref_mm(p, n2, ref_w(m, w, "layers.0.moe.router.weight"), T, C, E);
        for (int t = 0; t < T; t++) {
            double mx = p[t * E], z = 0;
            for (int e = 1; e < E; e++)
                mx = p[t * E + e] > mx ? p[t * E + e] : mx;
            for (int e = 0; e < E; e++)
                z += p[t * E + e] = exp(p[t * E + e] - mx);
            for (int e = 0; e < E; e++)
                P[e] += (p[t * E + e] /= z) / T;
            int taken[8] = {0};
            for (int i = 0; i < C; i++)
                s2[t * C + i] = s1[t * C + i];
            for (int j = 0; j < top; j++) { /* the top_k by probability, ties to the lower index */
                int best = -1;
                for (int e = 0; e < E; e++)
                    if (!taken[e] && (best < 0 || p[t * E + e] > p[t * E + best]))
                        best = e;
                taken[best] = 1;
                f[best] += 1.0 / (T * top);
                char n[96];
                double y[16];
                snprintf(n, sizeof(n), "layers.0.moe.experts.%d.w1.weight", best);
                ref_w(m, w, n);
                snprintf(n, sizeof(n), "layers.0.moe.experts.%d.w3.weight", best);
                ref_w(m, w3, n);
                snprintf(n, sizeof(n), "layers.0.moe.experts.%d.w2.weight", best);
                ref_w(m, w2, n);
                ref_mlp(y, n2 + t * C, w, w3, w2, C, F);
                for (int i = 0; i < C; i++) /* gate: the softmax probability itself */
                    s2[t * C + i] += p[t * E + best] * y[i];
            }
        }
        for (int e = 0; e < E; e++)
            *aux += E * f[e] * P[e];
        *aux *= c->aux_loss_coef;
    } else {
        ref_w(m, w, "layers.0.mlp.w1.weight");
        ref_w(m, w3, "layers.0.mlp.w3.weight");
        ref_w(m, w2, "layers.0.mlp.w2.weight");
        for (int t = 0; t < T; t++) {
            double y[16];
            ref_mlp(y, n2 + t * C, w, w3, w2, C, F);
            for (int i = 0; i < C; i++)
                s2[t * C + i] = s1[t * C + i] + y[i];
        }
    }
    ref_rmsnorm(n2, s2, ref_w(m, w, "final_norm.weight"), T, C, eps);
    ref_mm(logits, n2, ref_w(m, w, "tok_emb.weight"), T, C, V);
    free(w), free(w2), free(w3);
}

/* The model's logits (and aux loss) against ref_forward, for standard and
 * latent attention, dense and MoE MLPs. */
static void test_reference_forward(void **state)
{
    (void)state;
    for (int variant = 0; variant < 4; variant++) {
        int mla = variant & 1, moe = variant >> 1;
        struct llm_model_config cfg;
        tiny(&cfg);
        cfg.n_layers = 1, cfg.position = LLM_POSITION_ROPE, cfg.norm = LLM_NORM_RMSNORM;
        cfg.activation = LLM_ACTIVATION_SWIGLU, cfg.bias = false, cfg.tie_embeddings = true;
        if (mla)
            cfg.attention_kv = LLM_ATTENTION_KV_MLA, cfg.kv_lora_rank = 3;
        if (moe)
            cfg.mlp = LLM_MLP_MOE, cfg.n_experts = 4, cfg.top_k = 2, cfg.aux_loss_coef = 0.25;
        struct llm_backend be;
        assert_int_equal(llm_backend_cpu_init(&be, 2, 0), 0);
        struct llm_model m;
        assert_int_equal(llm_model_init(&m, &cfg, &be, 9), 0);
        int32_t tok[7] = {3, 1, 4, 1, 5, 9, 2}, tgt[7] = {1, 4, 1, 5, 9, 2, 6};
        float loss;
        assert_int_equal(llm_model_forward(&m, tok, tgt, 1, 7, 0, &loss), 0);
        double want[7 * 13], aux;
        ref_forward(&m, tok, 7, want, &aux);
        const float *got = llm_model_logits(&m);
        for (int i = 0; i < 7 * 13; i++)
            if (fabs(got[i] - want[i]) > 1e-5 + 1e-4 * fabs(want[i]))
                fail_msg("mla %d moe %d: logit %d: got %.7g, want %.7g", mla, moe, i, got[i], want[i]);
        if (fabs(m.aux_loss - aux) > 1e-6)
            fail_msg("mla %d moe %d: aux loss %.7g, want %.7g", mla, moe, m.aux_loss, aux);
        assert_true(moe ? aux > 0 : aux == 0);
        llm_model_release(&m);
        llm_backend_release(&be);
    }
}

/* A zero router: every probability is 1/E, every token ties, so each goes
 * to experts 0..k-1 (ties to the lower index) and aux = E sum_e f_e / E = 1
 * per layer, whatever the counts. */
static void test_moe_ties_and_aux(void **state)
{
    (void)state;
    struct llm_model_config cfg;
    make_variant(&cfg, MOE);
    cfg.top_k = 3, cfg.aux_loss_coef = 0.5;
    struct llm_backend be;
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    struct llm_model m;
    assert_int_equal(llm_model_init(&m, &cfg, &be, 5), 0);
    assert_null(llm_model_routing(&m, 0)); /* no forward yet */
    for (size_t i = 0; i < m.layout.n; i++)
        if (m.layout.p[i].kind == LLM_PARAM_ROUTER)
            memset(llm_model_param(&m, (long)i), 0, m.layout.p[i].numel * sizeof(float));
    int32_t tok[14] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 1}, tgt[14] = {0};
    float loss;
    assert_int_equal(llm_model_forward(&m, tok, tgt, 2, 7, 1, &loss), 0);
    assert_true(fabs(m.aux_loss - 0.5 * cfg.n_layers) < 1e-6);
    for (int l = 0; l < cfg.n_layers; l++) {
        const int32_t *r = llm_model_routing(&m, l);
        assert_non_null(r);
        for (int n = 0; n < 14; n++)
            for (int k = 0; k < 3; k++)
                assert_int_equal(r[n * 3 + k], k);
    }
    assert_null(llm_model_routing(&m, cfg.n_layers));
    /* all ties: the backward still runs and stays finite */
    assert_int_equal(llm_model_zero_grad(&m), 0);
    assert_int_equal(llm_model_backward(&m), 0);
    for (size_t i = 0; i < m.layout.total; i++)
        assert_true(isfinite(m.grads[i]));
    llm_model_release(&m);
    llm_backend_release(&be);
    /* a dense model has no routing */
    make_variant(&cfg, GPT2);
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    assert_int_equal(llm_model_init(&m, &cfg, &be, 5), 0);
    assert_int_equal(llm_model_forward(&m, tok, tgt, 2, 7, 0, &loss), 0);
    assert_null(llm_model_routing(&m, 0));
    assert_true(m.aux_loss == 0.0f);
    llm_model_release(&m);
    llm_backend_release(&be);
}

/* MoE and MLA give the same loss and gradients, bit for bit, on 1 and 2
 * threads (the routing on the host, the ops' fixed summation orders). */
static void test_threads_determinism(void **state)
{
    (void)state;
    static const enum variant vs[] = {MOE, MOE_SWIGLU, MLA_QKNORM, DEEPSEEK};
    for (size_t k = 0; k < sizeof(vs) / sizeof(vs[0]); k++) {
        struct llm_model_config cfg;
        make_variant(&cfg, vs[k]);
        cfg.d_model = 64, cfg.d_ff = 96, cfg.context_length = 64; /* past the one-thread cutoffs */
        float loss[2], *grads[2];
        for (int run = 0; run < 2; run++) {
            struct llm_backend be;
            assert_int_equal(llm_backend_cpu_init(&be, run + 1, 0), 0);
            struct llm_model m;
            assert_int_equal(llm_model_init(&m, &cfg, &be, 5), 0);
            int B = 4, T = 64;
            int32_t *tok = malloc(B * T * sizeof(int32_t)), *tgt = malloc(B * T * sizeof(int32_t));
            struct llm_rng r;
            llm_rng_seed(&r, 3);
            random_batch(&r, tok, tgt, B * T, cfg.vocab_size, 1);
            assert_int_equal(llm_model_zero_grad(&m), 0);
            assert_int_equal(llm_model_forward(&m, tok, tgt, B, T, 1, &loss[run]), 0);
            assert_int_equal(llm_model_backward(&m), 0);
            grads[run] = malloc(m.layout.total * sizeof(float));
            memcpy(grads[run], m.grads, m.layout.total * sizeof(float));
            if (run == 1 && memcmp(grads[0], grads[1], m.layout.total * sizeof(float)))
                fail_msg("%s: gradients differ between 1 and 2 threads", variant_name[vs[k]]);
            free(tok), free(tgt);
            llm_model_release(&m);
            llm_backend_release(&be);
        }
        assert_true(loss[0] == loss[1]);
        free(grads[0]), free(grads[1]);
    }
}

/* Packing (llm_model_forward_packed): two rows of whole examples (3 + 4 and
 * 2 + 5 tokens) give every token the loss it has when its example runs
 * alone, and the summed-loss gradient equals the sum of the examples' own
 * gradients, for every variant but linear attention, which refuses. The MoE
 * load-balancing loss is switched off: it is a statistic of the whole batch
 * (what packing changes by design). */
static void test_packed(void **state)
{
    (void)state;
    enum { B = 2, T = 7, N = B * T, NEX = 4 };
    static const int ex_row[NEX] = {0, 0, 1, 1}, ex_len[NEX] = {3, 4, 2, 5};
    int32_t tok[N], tgt[N], pos[N];
    int ex_at[NEX]; /* where each example starts in (B, T) */
    struct llm_rng r;
    llm_rng_seed(&r, 17);
    random_batch(&r, tok, tgt, N, 13, 1);
    for (int e = 0, t0 = 0; e < NEX; e++) {
        if (e && ex_row[e] != ex_row[e - 1])
            t0 = 0;
        ex_at[e] = ex_row[e] * T + t0;
        for (int t = 0; t < ex_len[e]; t++)
            pos[ex_at[e] + t] = t;
        t0 += ex_len[e];
    }
    for (int v = 0; v < NVARIANTS; v++) {
        struct llm_model_config cfg;
        make_variant(&cfg, (enum variant)v);
        cfg.aux_loss_coef = 0;
        struct llm_backend be;
        assert_int_equal(llm_backend_cpu_init(&be, 2, 0), 0);
        struct llm_model m;
        assert_int_equal(llm_model_init(&m, &cfg, &be, 23), 0);
        float loss, w[N];
        for (int i = 0; i < N; i++)
            w[i] = 1.0f;
        assert_int_equal(llm_model_zero_grad(&m), 0);
        int rc = llm_model_forward_packed(&m, tok, tgt, pos, B, T, 1, &loss);
        if (v == LINEAR) {
            assert_int_equal(rc, LLM_EINVAL);
            assert_non_null(strstr(llm_errmsg(), "linear attention"));
            llm_model_release(&m);
            llm_backend_release(&be);
            continue;
        }
        assert_int_equal(rc, 0);
        float packed_losses[N];
        memcpy(packed_losses, m.host_losses, sizeof(packed_losses));
        assert_int_equal(llm_model_backward_ex(&m, w, NULL), 0);
        size_t P = m.layout.total;
        float *gp = malloc(P * sizeof(float));
        assert_non_null(gp);
        memcpy(gp, m.grads, P * sizeof(float));
        assert_int_equal(llm_model_zero_grad(&m), 0);
        for (int e = 0; e < NEX; e++) {
            int at = ex_at[e], n = ex_len[e];
            assert_int_equal(llm_model_forward(&m, tok + at, tgt + at, 1, n, 1, &loss), 0);
            for (int t = 0; t < n; t++)
                if (tgt[at + t] >= 0 &&
                    fabsf(m.host_losses[t] - packed_losses[at + t]) > 1e-5f * (1 + packed_losses[at + t]))
                    fail_msg("%s: example %d token %d: alone %.7g, packed %.7g", variant_name[v], e, t,
                             m.host_losses[t], packed_losses[at + t]);
            assert_int_equal(llm_model_backward_ex(&m, w, NULL), 0); /* += */
        }
        for (size_t i = 0; i < P; i++)
            if (fabsf(gp[i] - m.grads[i]) > 1e-4f * fabsf(m.grads[i]) + 1e-5f)
                fail_msg("%s: grad[%zu] packed %g, examples alone %g", variant_name[v], i, gp[i],
                         m.grads[i]);
        free(gp);
        llm_model_release(&m);
        llm_backend_release(&be);
    }
}

static void test_bad_input(void **state)
{
    (void)state;
    struct llm_model_config cfg;
    make_variant(&cfg, GPT2);
    struct llm_backend be;
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    struct llm_model m;
    assert_int_equal(llm_model_init(&m, &cfg, &be, 5), 0);
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tgt[8] = {0};
    assert_int_equal(llm_model_forward(&m, tok, tgt, 1, 8, 1, NULL), LLM_EINVAL); /* T > context */
    tok[2] = 13;
    assert_int_equal(llm_model_forward(&m, tok, tgt, 1, 7, 1, NULL), LLM_EINVAL); /* token >= V */
    tok[2] = 2, tgt[3] = 99;
    assert_int_equal(llm_model_forward(&m, tok, tgt, 1, 7, 1, NULL), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "outside the vocabulary"));
    llm_model_release(&m);
    llm_backend_release(&be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_weighted_backward),
        cmocka_unit_test(test_logit_backward),
        cmocka_unit_test(test_causality),
        cmocka_unit_test(test_memorizes_a_batch),
        cmocka_unit_test(test_dropout_and_determinism),
        cmocka_unit_test(test_reference_forward),
        cmocka_unit_test(test_moe_ties_and_aux),
        cmocka_unit_test(test_threads_determinism),
        cmocka_unit_test(test_packed),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
