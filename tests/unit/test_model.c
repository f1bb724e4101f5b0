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

enum variant { GPT2, LLAMA, SLIDING, LINEAR, POST, QKNORM, SINUS_RELU, RELU2_MQA, NVARIANTS };
static const char *const variant_name[] = {"gpt2", "llama", "sliding", "linear", "post-norm",
                                           "qk_norm", "sinusoidal+relu", "relu2+mqa"};

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
    for (int dir = 0; dir < 3; dir++) {
        float *d = malloc(P * sizeof(float));
        double gd = 0, D[2];
        for (size_t i = 0; i < P; i++) {
            d[i] = (float)llm_rng_normal(&r);
            gd += (double)g[i] * d[i];
        }
        for (int k = 0; k < 2; k++) {
            double h = k ? eps / 2 : eps;
            for (size_t i = 0; i < P; i++)
                m.params[i] = p0[i] + (float)h * d[i];
            double lp = loss_at(&m, tok, tgt, B, T);
            for (size_t i = 0; i < P; i++)
                m.params[i] = p0[i] - (float)h * d[i];
            double lm = loss_at(&m, tok, tgt, B, T);
            D[k] = (lp - lm) / (2 * h);
        }
        memcpy(m.params, p0, P * sizeof(float));
        double num = (4 * D[1] - D[0]) / 3;
        if (fabs(num - gd) > 3e-3 + 1e-2 * fabs(gd))
            fail_msg("%s: directional derivative %d: analytic %.6g, numeric %.6g", variant_name[v],
                     dir, gd, num);
        free(d);
    }
    /* entries of every tensor: each one carries its own gradient right */
    for (size_t t = 0; t < m.layout.n; t++) {
        const struct llm_param_spec *s = &m.layout.p[t];
        for (int k = 0; k < 3; k++) {
            size_t i = s->offset + llm_rng_below(&r, s->numel);
            m.params[i] = p0[i] + (float)eps;
            double lp = loss_at(&m, tok, tgt, B, T);
            m.params[i] = p0[i] - (float)eps;
            double lm = loss_at(&m, tok, tgt, B, T);
            m.params[i] = p0[i];
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

/* Changing token t never changes the logits at positions < t. */
static void test_causality(void **state)
{
    (void)state;
    for (int v = 0; v < NVARIANTS; v++) {
        struct llm_model_config cfg;
        make_variant(&cfg, (enum variant)v);
        struct llm_backend be;
        assert_int_equal(llm_backend_cpu_init(&be, 2, 0), 0);
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
        if (!(loss < 0.1f))
            fail_msg("%s: loss %.4f after 300 steps (from %.4f): the batch was not memorized",
                     variant_name[v], loss, first);
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
        cmocka_unit_test(test_causality),
        cmocka_unit_test(test_memorizes_a_batch),
        cmocka_unit_test(test_dropout_and_determinism),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
