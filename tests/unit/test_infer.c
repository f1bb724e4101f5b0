/* test_infer.c: the inference forward pass with a cache (lib/infer/infer.c)
 * against the training forward (llm_model_forward) for every model variant,
 * the bit-identities of batched decode, truncation, errors, and the CPU op
 * attention_cached against a plain double reference. */
#include "testutil.h"

#include <math.h>
#include "config/config.h"
#include "core/err.h"
#include "core/rng.h"
#include "infer/infer.h"
#include "model/model.h"
#include "nn/backend.h"

/* ---- model variants: odd sizes, HS 6 (MLA: R 2, D 4) ---- */
enum variant {
    GPT2, LLAMA, SINUS_RELU, POST_RELU2_MQA, QKNORM, SLIDING, LINEAR, LINEAR_GQA_ROPE, MOE,
    MOE_SWIGLU_POST, MLA, MLA_QKNORM_SLIDING, DEEPSEEK, LINEAR_MLA, NVARIANTS
};
static const char *const variant_name[] = {
    "gpt2", "llama (gqa, swiglu, rope)", "sinusoidal+relu", "post-norm+relu2+mqa", "qk_norm",
    "sliding (window 5, gqa)", "linear", "linear+gqa+rope", "moe (top-2 of 4)",
    "moe (swiglu, top-1 of 3, post-norm)", "mla", "mla+qk_norm+sliding", "mla+moe (deepseek)",
    "linear+mla+qk_norm"};

static void make_variant(struct llm_model_config *m, enum variant v, int T)
{
    struct llm_config c;
    assert_int_equal(llm_config_defaults(&c), 0);
    *m = c.model;
    llm_config_release(&c);
    m->vocab_size = 37, m->context_length = T, m->d_model = 24, m->n_layers = 2;
    m->n_heads = 4, m->n_kv_heads = 0, m->d_ff = 20, m->dropout = 0, m->init_std = 0.3;
    m->position = LLM_POSITION_LEARNED, m->norm = LLM_NORM_LAYERNORM;
    m->activation = LLM_ACTIVATION_GELU, m->bias = true, m->tie_embeddings = true;
    switch (v) {
    case GPT2:
        break;
    case LLAMA:
        m->position = LLM_POSITION_ROPE, m->norm = LLM_NORM_RMSNORM, m->n_kv_heads = 2;
        m->activation = LLM_ACTIVATION_SWIGLU, m->bias = false, m->tie_embeddings = false;
        break;
    case SINUS_RELU:
        m->position = LLM_POSITION_SINUSOIDAL, m->activation = LLM_ACTIVATION_RELU;
        break;
    case POST_RELU2_MQA:
        m->norm_position = LLM_NORM_POSITION_POST, m->activation = LLM_ACTIVATION_RELU2;
        m->n_kv_heads = 1, m->bias = false, m->norm = LLM_NORM_RMSNORM;
        break;
    case QKNORM:
        m->qk_norm = true, m->position = LLM_POSITION_ROPE, m->norm = LLM_NORM_RMSNORM;
        break;
    case SLIDING:
        m->attention = LLM_ATTENTION_SLIDING, m->window = 5, m->position = LLM_POSITION_ROPE;
        m->n_kv_heads = 2;
        break;
    case LINEAR:
        m->attention = LLM_ATTENTION_LINEAR;
        break;
    case LINEAR_GQA_ROPE:
        m->attention = LLM_ATTENTION_LINEAR, m->position = LLM_POSITION_ROPE, m->n_kv_heads = 2;
        m->qk_norm = true, m->norm = LLM_NORM_RMSNORM;
        break;
    case MOE:
        m->mlp = LLM_MLP_MOE, m->n_experts = 4, m->top_k = 2, m->aux_loss_coef = 0.1;
        break;
    case MOE_SWIGLU_POST:
        m->mlp = LLM_MLP_MOE, m->n_experts = 3, m->top_k = 1, m->aux_loss_coef = 0.1;
        m->activation = LLM_ACTIVATION_SWIGLU, m->norm = LLM_NORM_RMSNORM;
        m->position = LLM_POSITION_ROPE, m->bias = false, m->norm_position = LLM_NORM_POSITION_POST;
        break;
    case MLA:
        m->attention_kv = LLM_ATTENTION_KV_MLA, m->kv_lora_rank = 5;
        m->position = LLM_POSITION_ROPE, m->norm = LLM_NORM_RMSNORM, m->bias = false;
        break;
    case MLA_QKNORM_SLIDING:
        m->attention_kv = LLM_ATTENTION_KV_MLA, m->kv_lora_rank = 7, m->qk_norm = true;
        m->position = LLM_POSITION_ROPE, m->attention = LLM_ATTENTION_SLIDING, m->window = 4;
        break;
    case DEEPSEEK:
        m->attention_kv = LLM_ATTENTION_KV_MLA, m->kv_lora_rank = 6;
        m->position = LLM_POSITION_ROPE, m->norm = LLM_NORM_RMSNORM, m->bias = false;
        m->activation = LLM_ACTIVATION_SWIGLU, m->tie_embeddings = false;
        m->mlp = LLM_MLP_MOE, m->n_experts = 4, m->top_k = 2, m->aux_loss_coef = 0.05;
        break;
    case LINEAR_MLA:
        m->attention = LLM_ATTENTION_LINEAR, m->attention_kv = LLM_ATTENTION_KV_MLA;
        m->kv_lora_rank = 5, m->qk_norm = true, m->position = LLM_POSITION_ROPE;
        break;
    case NVARIANTS:
        break;
    }
}

struct fixture {
    struct llm_backend be;
    struct llm_model m;
    struct llm_model_config cfg;
};

static void setup(struct fixture *f, enum variant v, int T, uint64_t seed)
{
    make_variant(&f->cfg, v, T);
    assert_int_equal(llm_backend_cpu_init(&f->be, 2, 0), 0);
    if (llm_model_init(&f->m, &f->cfg, &f->be, seed))
        fail_msg("%s: %s", variant_name[v], llm_errmsg());
}

static void teardown(struct fixture *f)
{
    llm_model_release(&f->m);
    llm_backend_release(&f->be);
}

static void random_tokens(int32_t *t, int n, int V, uint64_t seed)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        t[i] = (int32_t)llm_rng_below(&r, (uint64_t)V);
}

/* The training forward's logits (T, V) of one sequence, into ref (host). */
static void ref_logits(struct fixture *f, const int32_t *tok, int T, float *ref)
{
    if (llm_model_forward(&f->m, tok, NULL, 1, T, 0, NULL))
        fail_msg("forward: %s", llm_errmsg());
    size_t bytes = (size_t)T * f->cfg.vocab_size * sizeof(float);
    assert_int_equal(f->be.ops->download(f->be.ctx, ref, llm_model_logits(&f->m), bytes), 0);
}

/* max |a - b| over n values, relative to max(1, max |b|). */
static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, mx = 1;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        d = e > d ? e : d;
        mx = fabs(b[i]) > mx ? fabs(b[i]) : mx;
    }
    return d / mx;
}

#define TOL 1e-4

static void expect_close(const float *got, const float *ref, size_t n, const char *what,
                         enum variant v, int pos)
{
    double e = rel_err(got, ref, n);
    if (!(e <= TOL))
        fail_msg("%s, %s, position %d: relative error %.3g > %g", variant_name[v], what, pos, e, TOL);
}

/* Prefill of a whole sequence (all = 1) equals the training forward; so do
 * pieces (long, short) then token-by-token decode at every position. */
static void check_variant(enum variant v, int T)
{
    struct fixture f;
    setup(&f, v, T, 100 + v);
    int V = f.cfg.vocab_size;
    int32_t *tok = malloc((size_t)T * sizeof(int32_t));
    float *ref = malloc((size_t)T * V * sizeof(float)), *got = malloc((size_t)T * V * sizeof(float));
    random_tokens(tok, T, V, 7 + v);
    ref_logits(&f, tok, T, ref);
    struct llm_infer *x;
    if (llm_infer_new(&x, &f.m, 2, T))
        fail_msg("%s: %s", variant_name[v], llm_errmsg());
    /* the whole sequence in one call (chunked beyond LLM_INFER_CHUNK) */
    if (llm_infer_prefill(x, 1, tok, T, got, 1))
        fail_msg("%s: prefill: %s", variant_name[v], llm_errmsg());
    assert_int_equal(llm_infer_len(x, 1), T);
    for (int t = 0; t < T; t++)
        expect_close(got + (size_t)t * V, ref + (size_t)t * V, (size_t)V, "prefill", v, t);
    /* pieces: a long one (sgemm when > LLM_INFER_ROWS), a short one (last row
     * only), then decode */
    int a = T / 2 > LLM_INFER_ROWS ? T / 2 : LLM_INFER_ROWS + 1, b = 3;
    if (a + b > T)
        a = T - b - 2;
    assert_int_equal(llm_infer_prefill(x, 0, tok, a, got, 1), 0);
    for (int t = 0; t < a; t++)
        expect_close(got + (size_t)t * V, ref + (size_t)t * V, (size_t)V, "prefill piece", v, t);
    assert_int_equal(llm_infer_prefill(x, 0, tok + a, b, got, 0), 0);
    expect_close(got, ref + (size_t)(a + b - 1) * V, (size_t)V, "short piece", v, a + b - 1);
    for (int t = a + b; t < T; t++) {
        int s = 0;
        if (llm_infer_decode(x, &s, &tok[t], 1, got))
            fail_msg("%s: decode: %s", variant_name[v], llm_errmsg());
        expect_close(got, ref + (size_t)t * V, (size_t)V, "decode", v, t);
    }
    assert_int_equal(llm_infer_len(x, 0), T);
    llm_infer_free(x);
    free(tok), free(ref), free(got);
    teardown(&f);
}

static void test_matches_training_forward(void **state)
{
    (void)state;
    for (int v = 0; v < NVARIANTS; v++)
        check_variant((enum variant)v, 20);
}

/* Sequences longer than a prefill chunk and than the sliding window's ring:
 * chunked prefill across the ring's wrap, then decode past it. */
static void test_long_sequences(void **state)
{
    (void)state;
    static const enum variant vs[] = {SLIDING, MLA_QKNORM_SLIDING, GPT2, LINEAR_GQA_ROPE};
    for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++)
        check_variant(vs[i], 2 * LLM_INFER_CHUNK + 3 * LLM_INFER_SLACK + 11);
}

/* Decode of 3 sequences of different lengths in one batch: the bits of
 * decoding each alone, and of a one-token prefill; a prefill of k <=
 * LLM_INFER_ROWS tokens gives the bits of k decodes. */
static void test_batched_decode_bits(void **state)
{
    (void)state;
    for (int v = 0; v < NVARIANTS; v++) {
        struct fixture f;
        setup(&f, (enum variant)v, 24, 300 + v);
        int V = f.cfg.vocab_size;
        struct llm_infer *xb, *xs, *xp;
        assert_int_equal(llm_infer_new(&xb, &f.m, 3, 24), 0);
        assert_int_equal(llm_infer_new(&xs, &f.m, 3, 24), 0);
        assert_int_equal(llm_infer_new(&xp, &f.m, 3, 24), 0);
        int32_t tok[3][24];
        int len[3] = {2, 9, 5};
        float *lb = malloc(3 * (size_t)V * sizeof(float)), *ls = malloc((size_t)V * sizeof(float));
        float *lp = malloc(8 * (size_t)V * sizeof(float));
        for (int s = 0; s < 3; s++) {
            random_tokens(tok[s], 24, V, 50 + 3 * v + s);
            assert_int_equal(llm_infer_prefill(xb, s, tok[s], len[s], lb, 0), 0);
            assert_int_equal(llm_infer_prefill(xs, s, tok[s], len[s], lb, 0), 0);
            assert_int_equal(llm_infer_prefill(xp, s, tok[s], len[s], lb, 0), 0);
        }
        for (int stepi = 0; stepi < 6; stepi++) {
            int seqs[3] = {stepi % 3, (stepi + 2) % 3, (stepi + 1) % 3}; /* orders vary */
            int32_t t3[3];
            for (int i = 0; i < 3; i++)
                t3[i] = tok[seqs[i]][len[seqs[i]]];
            if (llm_infer_decode(xb, seqs, t3, 3, lb))
                fail_msg("%s: %s", variant_name[v], llm_errmsg());
            for (int i = 0; i < 3; i++) {
                int s = seqs[i];
                assert_int_equal(llm_infer_decode(xs, &s, &t3[i], 1, ls), 0);
                if (memcmp(ls, lb + (size_t)i * V, (size_t)V * sizeof(float)))
                    fail_msg("%s: step %d seq %d: batched decode differs from decoding alone",
                             variant_name[v], stepi, s);
                assert_int_equal(llm_infer_prefill(xp, s, &t3[i], 1, ls, 0), 0);
                if (memcmp(ls, lb + (size_t)i * V, (size_t)V * sizeof(float)))
                    fail_msg("%s: step %d seq %d: decode differs from a one-token prefill",
                             variant_name[v], stepi, s);
                len[s]++;
            }
        }
        /* a draft of 5 tokens scored in one prefill (all = 1) = 5 decodes */
        int s = 1;
        assert_int_equal(llm_infer_prefill(xp, s, &tok[s][len[s]], 5, lp, 1), 0);
        for (int i = 0; i < 5; i++) {
            assert_int_equal(llm_infer_decode(xs, &s, &tok[s][len[s] + i], 1, ls), 0);
            if (memcmp(ls, lp + (size_t)i * V, (size_t)V * sizeof(float)))
                fail_msg("%s: row %d of a 5-token prefill differs from its decode", variant_name[v], i);
        }
        free(lb), free(ls), free(lp);
        llm_infer_free(xb), llm_infer_free(xs), llm_infer_free(xp);
        teardown(&f);
    }
}

/* truncate then re-append reproduces the logits (bits); its limits. */
static void test_truncate(void **state)
{
    (void)state;
    static const enum variant vs[] = {GPT2, SLIDING, MLA, LINEAR, MLA_QKNORM_SLIDING, MOE};
    for (size_t vi = 0; vi < sizeof(vs) / sizeof(vs[0]); vi++) {
        enum variant v = vs[vi];
        int T = 160;
        struct fixture f;
        setup(&f, v, T, 500 + v);
        int V = f.cfg.vocab_size;
        struct llm_infer *x;
        assert_int_equal(llm_infer_new(&x, &f.m, 2, T), 0);
        int32_t tok[160], alt[8];
        random_tokens(tok, T, V, 9 + v);
        random_tokens(alt, 8, V, 99 + v);
        float *a = malloc(4 * (size_t)V * sizeof(float)), *b = malloc(4 * (size_t)V * sizeof(float));
        float *one = malloc((size_t)V * sizeof(float));
        int s = 1, L = 120; /* past a sliding window's ring (cap 5 + 63 + 16 = 84) */
        assert_int_equal(llm_infer_prefill(x, s, tok, L, one, 0), 0);
        assert_int_equal(llm_infer_prefill(x, s, tok + L, 4, a, 1), 0);
        /* a rejected draft: truncate, then other tokens, then truncate again */
        assert_int_equal(llm_infer_truncate(x, s, L), 0);
        assert_int_equal(llm_infer_len(x, s), L);
        assert_int_equal(llm_infer_prefill(x, s, alt, 3, b, 1), 0);
        assert_int_equal(llm_infer_truncate(x, s, L + 1), 0);
        assert_int_equal(llm_infer_truncate(x, s, L), 0);
        for (int i = 0; i < 4; i++) { /* the same 4 tokens by decode: same bits as before */
            assert_int_equal(llm_infer_decode(x, &s, &tok[L + i], 1, b + (size_t)i * V), 0);
        }
        if (memcmp(a, b, 4 * (size_t)V * sizeof(float)))
            fail_msg("%s: truncate + re-append changed the logits", variant_name[v]);
        /* errors: beyond the length, negative, bad sequence */
        assert_int_equal(llm_infer_truncate(x, s, L + 5), LLM_EINVAL);
        assert_int_equal(llm_infer_truncate(x, s, -1), LLM_EINVAL);
        assert_int_equal(llm_infer_truncate(x, 2, 0), LLM_EINVAL);
        assert_int_equal(llm_infer_truncate(x, -1, 0), LLM_EINVAL);
        /* going back far: fine with a full cache, refused where the state is gone */
        int far = L + 4 - LLM_INFER_CHUNK - 2 * LLM_INFER_SLACK;
        int rc = llm_infer_truncate(x, s, far);
        int limited = v == SLIDING || v == MLA_QKNORM_SLIDING || v == LINEAR;
        assert_int_equal(rc, limited ? LLM_EUNSUPPORTED : 0);
        assert_int_equal(llm_infer_len(x, s), limited ? L + 4 : far);
        /* the furthest truncation allowed, then 8 tokens: the training forward's logits */
        int edge = v == LINEAR ? L + 4 - LLM_INFER_SLACK /* the snapshots kept */
                   : limited   ? L + 4 - LLM_INFER_CHUNK - LLM_INFER_SLACK /* the ring's slack */
                               : 0;
        if (edge) {
            assert_int_equal(llm_infer_truncate(x, s, edge - 1), LLM_EUNSUPPORTED);
            assert_int_equal(llm_infer_truncate(x, s, edge), 0);
            float *ref = malloc((size_t)(edge + 8) * V * sizeof(float));
            float *got = malloc(8 * (size_t)V * sizeof(float));
            ref_logits(&f, tok, edge + 8, ref);
            assert_int_equal(llm_infer_prefill(x, s, tok + edge, 8, got, 1), 0);
            for (int i = 0; i < 8; i++)
                expect_close(got + (size_t)i * V, ref + (size_t)(edge + i) * V, (size_t)V,
                             "after truncate", v, edge + i);
            free(ref), free(got);
        }
        /* reset: the sequence starts over with the logits of a fresh one */
        assert_int_equal(llm_infer_truncate(x, s, 0), 0);
        assert_int_equal(llm_infer_len(x, s), 0);
        assert_int_equal(llm_infer_prefill(x, s, tok, 10, a, 0), 0);
        assert_int_equal(llm_infer_prefill(x, 0, tok, 10, b, 0), 0);
        if (memcmp(a, b, (size_t)V * sizeof(float)))
            fail_msg("%s: a reset sequence differs from a fresh one", variant_name[v]);
        free(a), free(b), free(one);
        llm_infer_free(x);
        teardown(&f);
    }
}

static void test_errors(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, LLAMA, 20, 1);
    int V = f.cfg.vocab_size;
    struct llm_infer *x = NULL;
    assert_int_equal(llm_infer_new(&x, &f.m, 0, 10), LLM_EINVAL);
    assert_null(x);
    assert_int_equal(llm_infer_new(&x, &f.m, 2, 21), LLM_EINVAL);
    assert_int_equal(llm_infer_new(&x, &f.m, 2, 0), LLM_EINVAL);
    assert_int_equal(llm_infer_new(&x, &f.m, 2, 10), 0);
    float *lg = malloc(3 * (size_t)V * sizeof(float));
    int32_t tok[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, bad[2] = {3, 37}, neg[1] = {-1};
    /* prefill */
    assert_int_equal(llm_infer_prefill(x, 2, tok, 3, lg, 0), LLM_EINVAL);
    assert_int_equal(llm_infer_prefill(x, -1, tok, 3, lg, 0), LLM_EINVAL);
    assert_int_equal(llm_infer_prefill(x, 0, tok, 0, lg, 0), LLM_EINVAL);
    assert_int_equal(llm_infer_prefill(x, 0, bad, 2, lg, 0), LLM_EINVAL);
    assert_int_equal(llm_infer_prefill(x, 0, neg, 1, lg, 0), LLM_EINVAL);
    assert_int_equal(llm_infer_len(x, 0), 0);
    assert_int_equal(llm_infer_prefill(x, 0, tok, 11, lg, 0), LLM_EINVAL); /* > max_len */
    assert_int_equal(llm_infer_len(x, 0), 0);
    assert_int_equal(llm_infer_prefill(x, 0, tok, 8, lg, 0), 0);
    assert_int_equal(llm_infer_prefill(x, 0, tok, 3, lg, 0), LLM_EINVAL); /* 8 + 3 > 10 */
    assert_int_equal(llm_infer_len(x, 0), 8);
    /* decode */
    int dup[2] = {0, 0}, out[2] = {0, 2}, ok[2] = {1, 0};
    assert_int_equal(llm_infer_decode(x, dup, tok, 2, lg), LLM_EINVAL);
    assert_int_equal(llm_infer_decode(x, out, tok, 2, lg), LLM_EINVAL);
    assert_int_equal(llm_infer_decode(x, ok, tok, 0, lg), LLM_EINVAL);
    assert_int_equal(llm_infer_decode(x, ok, tok, 3, lg), LLM_EINVAL); /* > max_seqs */
    assert_int_equal(llm_infer_decode(x, ok, bad, 2, lg), LLM_EINVAL);
    assert_int_equal(llm_infer_len(x, 0), 8);
    assert_int_equal(llm_infer_len(x, 1), 0);
    assert_int_equal(llm_infer_decode(x, ok, tok, 2, lg), 0);
    assert_int_equal(llm_infer_decode(x, ok, tok, 2, lg), 0);
    assert_int_equal(llm_infer_len(x, 0), 10);
    assert_int_equal(llm_infer_decode(x, ok, tok, 2, lg), LLM_EINVAL); /* seq 0 is full */
    assert_int_equal(llm_infer_len(x, 1), 2);
    assert_int_equal(llm_infer_len(x, 5), 0);
    /* bytes per token: K + V of NKV = 2 heads of 6, 2 layers */
    assert_int_equal(llm_infer_cache_bytes_per_token(&f.m), 2 * 2 * 2 * 6 * sizeof(float));
    assert_int_equal(llm_infer_state_bytes(&f.m), 0);
    llm_infer_free(x);
    llm_infer_free(NULL);
    free(lg);
    teardown(&f);
    /* MLA: the latent and the rope key only (K 5 + R 2 per layer) */
    setup(&f, MLA, 20, 1);
    assert_int_equal(llm_infer_cache_bytes_per_token(&f.m), 2 * (5 + 2) * sizeof(float));
    teardown(&f);
    setup(&f, LINEAR, 20, 1);
    assert_int_equal(llm_infer_cache_bytes_per_token(&f.m), 0);
    assert_int_equal(llm_infer_state_bytes(&f.m),
                     2 * (LLM_INFER_SLACK + 1) * 4 * (6 * 6 + 6) * sizeof(float));
    teardown(&f);
}

/* ---- attention_cached against a plain double reference ---- */
struct kv_case {
    int Tq, pos0, cap, NH, NKV, HS, window;
};

/* out (Tq, NH, HS) in double from logical keys and values (pos0+Tq, NKV, HS). */
static void kv_reference(double *out, const float *q, const float *kl, const float *vl,
                         const struct kv_case *c, float scale)
{
    int G = c->NH / c->NKV;
    for (int t = 0; t < c->Tq; t++)
        for (int h = 0; h < c->NH; h++) {
            int p = c->pos0 + t, lo = c->window && p - c->window + 1 > 0 ? p - c->window + 1 : 0;
            const float *qt = q + ((size_t)t * c->NH + h) * c->HS;
            double m = -INFINITY, l = 0, *o = out + ((size_t)t * c->NH + h) * c->HS;
            double *sc = malloc((size_t)(p + 1) * sizeof(double));
            for (int s = lo; s <= p; s++) {
                const float *ks = kl + ((size_t)s * c->NKV + h / G) * c->HS;
                double d = 0;
                for (int i = 0; i < c->HS; i++)
                    d += (double)qt[i] * ks[i];
                sc[s] = d * scale;
                m = sc[s] > m ? sc[s] : m;
            }
            for (int i = 0; i < c->HS; i++)
                o[i] = 0;
            for (int s = lo; s <= p; s++) {
                double e = exp(sc[s] - m);
                l += e;
                for (int i = 0; i < c->HS; i++)
                    o[i] += e * vl[((size_t)s * c->NKV + h / G) * c->HS + i];
            }
            for (int i = 0; i < c->HS; i++)
                o[i] /= l;
            free(sc);
        }
}

static void test_attention_cached(void **state)
{
    (void)state;
    static const struct kv_case cases[] = {
        {1, 0, 1, 2, 2, 5, 0},      /* the first token */
        {7, 13, 20, 6, 2, 5, 0},    /* full cache, GQA, odd HS */
        {1, 40, 41, 4, 1, 16, 0},   /* decode, MQA */
        {5, 37, 12, 6, 3, 9, 8},    /* ring (cap = window + Tq - 1), wrapped */
        {1, 100, 9, 4, 4, 33, 9},   /* decode on a ring */
        {4, 2, 30, 2, 1, 8, 3},     /* window inside a cache that does not wrap */
        {3, 200, 260, 8, 2, 32, 0}, /* large enough for 2 threads: tasks per kv group */
        {1, 600, 700, 8, 1, 32, 0}, /* MQA decode on 2 threads: tasks per head */
        {2, 900, 301, 4, 2, 24, 300}, /* a long ring */
        /* queries of more than 384 keys take key blocks and a combine (cpu_kv.c) */
        {5, 382, 600, 6, 3, 9, 0},    /* 383 .. 387 keys: short and long queries in one call */
        {3, 1500, 800, 4, 2, 16, 700}, /* a wrapped ring, blocks from a first key off the grid */
        {1, 1100, 1200, 12, 12, 64, 0}, /* 110M-like decode */
        {2, 2047, 2049, 2, 1, 7, 0},  /* MQA, 9 blocks, odd HS */
    };
    struct llm_backend be[3];
    assert_int_equal(llm_backend_cpu_init(&be[0], 1, 1), 0); /* reference path */
    assert_int_equal(llm_backend_cpu_init(&be[1], 1, 0), 0); /* optimized, 1 thread */
    assert_int_equal(llm_backend_cpu_init(&be[2], 2, 0), 0); /* optimized, 2 threads */
    struct llm_rng r;
    llm_rng_seed(&r, 3);
    for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
        const struct kv_case *c = &cases[ci];
        int P = c->pos0 + c->Tq, QW = c->NH * c->HS, KW = c->NKV * c->HS;
        float scale = 1.0f / sqrtf((float)c->HS);
        float *q = malloc((size_t)c->Tq * QW * sizeof(float));
        float *kl = malloc((size_t)P * KW * sizeof(float)), *vl = malloc((size_t)P * KW * sizeof(float));
        float *k = calloc((size_t)c->cap * KW, sizeof(float)), *v = calloc((size_t)c->cap * KW, sizeof(float));
        float *out[4];
        for (int i = 0; i < 4; i++)
            out[i] = malloc((size_t)c->Tq * QW * sizeof(float));
        double *ref = malloc((size_t)c->Tq * QW * sizeof(double));
        for (int i = 0; i < c->Tq * QW; i++)
            q[i] = (float)(2 * llm_rng_normal(&r));
        for (int i = 0; i < P * KW; i++)
            kl[i] = (float)llm_rng_normal(&r), vl[i] = (float)llm_rng_normal(&r);
        for (int p = 0; p < P; p++) { /* the ring as written in order: later overwrite earlier */
            memcpy(k + (size_t)(p % c->cap) * KW, kl + (size_t)p * KW, (size_t)KW * sizeof(float));
            memcpy(v + (size_t)(p % c->cap) * KW, vl + (size_t)p * KW, (size_t)KW * sizeof(float));
        }
        kv_reference(ref, q, kl, vl, c, scale);
        for (int b = 0; b < 3; b++) {
            if (be[b].ops->attention_cached(be[b].ctx, out[b], q, k, v, c->Tq, c->pos0, c->cap, c->NH,
                                            c->NKV, c->HS, c->window, scale))
                fail_msg("case %zu: %s", ci, llm_errmsg());
            for (int i = 0; i < c->Tq * QW; i++)
                if (!(fabs(out[b][i] - ref[i]) <= 2e-6 * (1 + fabs(ref[i]))))
                    fail_msg("case %zu backend %d element %d: %.9g vs %.9g", ci, b, i, out[b][i], ref[i]);
        }
        if (memcmp(out[1], out[2], (size_t)c->Tq * QW * sizeof(float)))
            fail_msg("case %zu: 1 and 2 threads differ", ci);
        /* each query alone (Tq = 1) gives the bits of the batch */
        for (int b = 0; b < 3; b++)
            for (int t = 0; t < c->Tq; t++) {
                assert_int_equal(be[b].ops->attention_cached(be[b].ctx, out[3], q + (size_t)t * QW, k, v,
                                                             1, c->pos0 + t, c->cap, c->NH, c->NKV,
                                                             c->HS, c->window, scale),
                                 0);
                if (memcmp(out[3], out[b] + (size_t)t * QW, (size_t)QW * sizeof(float)))
                    fail_msg("case %zu backend %d query %d: alone differs from within Tq", ci, b, t);
            }
        free(q), free(kl), free(vl), free(k), free(v), free(ref);
        for (int i = 0; i < 4; i++)
            free(out[i]);
    }
    /* a ring too small for the queries, bad shapes */
    float buf[64] = {0};
    const struct llm_backend_ops *o = be[1].ops;
    assert_int_equal(o->attention_cached(be[1].ctx, buf, buf, buf, buf, 2, 5, 6, 1, 1, 4, 0, 1.0f), LLM_EINVAL);
    assert_int_equal(o->attention_cached(be[1].ctx, buf, buf, buf, buf, 3, 9, 4, 1, 1, 4, 3, 1.0f), LLM_EINVAL);
    assert_int_equal(o->attention_cached(be[1].ctx, buf, buf, buf, buf, 1, 0, 4, 3, 2, 4, 0, 1.0f), LLM_EINVAL);
    assert_int_equal(o->attention_cached(be[1].ctx, buf, buf, buf, buf, 1, 0, 4, 2, 2, 4, -1, 1.0f), LLM_EINVAL);
    assert_int_equal(o->attention_cached(be[1].ctx, buf, buf, buf, buf, 0, 0, 4, 2, 2, 4, 0, 1.0f), 0);
    for (int b = 0; b < 3; b++)
        llm_backend_release(&be[b]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_cached),
        cmocka_unit_test(test_matches_training_forward),
        cmocka_unit_test(test_long_sequences),
        cmocka_unit_test(test_batched_decode_bits),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
