/* test_q8model.c: a whole model in Q8 (quant.h llm_model_quantize_q8) and
 * the inference engine's int8 path: decoding with the int8 copies gives the
 * logits of decoding the (dequantized) fp32 model within float rounding
 * (linear_rows_q8 sums in its own order, cpu_q8.c: 1e-4 of the largest
 * logit), a batched int8 decode of two sequences gives the bits of decoding
 * each alone, and quantizing moves the loss by well under 1%. */
#include "testutil.h"

#include <math.h>

#include "config/config.h"
#include "core/err.h"
#include "infer/infer.h"
#include "infer/quant.h"
#include "model/model.h"
#include "nn/backend.h"

static void config(struct llm_model_config *m, int llama)
{
    struct llm_config c;
    assert_int_equal(llm_config_defaults(&c), 0);
    *m = c.model;
    llm_config_release(&c);
    m->vocab_size = 96, m->context_length = 32, m->d_model = 64, m->n_layers = 2, m->n_heads = 4;
    m->d_ff = 128, m->init_std = 0.1;
    if (llama) {
        m->activation = LLM_ACTIVATION_SWIGLU, m->norm = LLM_NORM_RMSNORM, m->position = LLM_POSITION_ROPE;
        m->bias = false, m->tie_embeddings = false, m->n_kv_heads = 2;
    }
}

static double mean_loss(struct llm_model *m, const int32_t *tok, const int32_t *tgt)
{
    float loss;
    assert_int_equal(llm_model_forward(m, tok, tgt, 2, 32, 0, &loss), 0);
    return loss;
}

/* a (int8) against b (fp32 on the dequantized weights): within 1e-4 of the
 * largest |b| (the rounding differences of linear_rows_q8's order, carried
 * through 2 layers, are ~1e-6 of it). */
static void check_close(const char *what, const float *a, const float *b, int n)
{
    double mx = 0;
    for (int i = 0; i < n; i++)
        mx = fmax(mx, fabs(b[i]));
    for (int i = 0; i < n; i++)
        if (!(fabs((double)a[i] - b[i]) <= 1e-4 * mx))
            fail_msg("%s: logit %d = %.9g, fp32 %.9g (largest |logit| %.3g)", what, i,
                     (double)a[i], (double)b[i], mx);
}

static void check(int llama, int G)
{
    struct llm_backend be;
    struct llm_model m;
    struct llm_model_config mc;
    config(&mc, llama);
    assert_int_equal(llm_backend_cpu_init(&be, 2, 0), 0);
    assert_int_equal(llm_model_init(&m, &mc, &be, 7), 0);
    int32_t tok[64], tgt[64];
    struct llm_rng r;
    llm_rng_seed(&r, 3);
    for (int i = 0; i < 64; i++)
        tok[i] = (int32_t)llm_rng_below(&r, 96);
    for (int i = 0; i < 64; i++)
        tgt[i] = i % 32 == 31 ? -1 : tok[i + 1];
    double before = mean_loss(&m, tok, tgt);
    struct llm_q8 q;
    assert_int_equal(llm_model_quantize_q8(&m, G, &q), 0);
    assert_true(q.quantized > 0);
    for (size_t i = 0; i < m.layout.n; i++) { /* every matrix is in: all widths are multiples of G */
        const struct llm_param_spec *p = &m.layout.p[i];
        int want = p->kind == LLM_PARAM_MATRIX || p->kind == LLM_PARAM_EMBEDDING;
        assert_int_equal(q.wq_off[i] != SIZE_MAX, want);
    }
    double after = mean_loss(&m, tok, tgt);
    if (!(fabs(after - before) < 0.01 * before))
        fail_msg("quantizing moved the loss from %.6f to %.6f", before, after);

    /* int8 decode = fp32 decode of the dequantized model, within rounding */
    struct llm_infer *a, *b;
    assert_int_equal(llm_infer_new(&a, &m, 1, 32), 0);
    assert_int_equal(llm_infer_new(&b, &m, 1, 32), 0);
    llm_infer_use_q8(a, &q);
    float la[96 * 5], lb[96 * 5];
    assert_int_equal(llm_infer_prefill(a, 0, tok, 5, la, 1), 0);
    assert_int_equal(llm_infer_prefill(b, 0, tok, 5, lb, 1), 0);
    for (int row = 0; row < 5; row++)
        check_close("prefill", la + 96 * row, lb + 96 * row, 96);
    for (int t = 5; t < 9; t++) {
        int seq = 0;
        assert_int_equal(llm_infer_decode(a, &seq, &tok[t], 1, la), 0);
        assert_int_equal(llm_infer_decode(b, &seq, &tok[t], 1, lb), 0);
        check_close("decode", la, lb, 96);
    }
    llm_infer_free(a);
    llm_infer_free(b);

    /* int8: a batched decode of sequences {0, 1} (different lengths) = each
     * decoded alone, bit for bit (linear_rows_q8's rows are independent) */
    assert_int_equal(llm_infer_new(&a, &m, 2, 32), 0);
    assert_int_equal(llm_infer_new(&b, &m, 2, 32), 0);
    llm_infer_use_q8(a, &q);
    llm_infer_use_q8(b, &q);
    for (int s = 0; s < 2; s++) {
        assert_int_equal(llm_infer_prefill(a, s, tok + 20 * s, 5 + 2 * s, la, 0), 0);
        assert_int_equal(llm_infer_prefill(b, s, tok + 20 * s, 5 + 2 * s, lb, 0), 0);
    }
    for (int t = 0; t < 4; t++) {
        int seqs[2] = {0, 1};
        int32_t next[2] = {tok[40 + t], tok[50 + t]};
        float lbatch[96 * 2];
        assert_int_equal(llm_infer_decode(a, seqs, next, 2, lbatch), 0);
        for (int s = 0; s < 2; s++) {
            assert_int_equal(llm_infer_decode(b, &seqs[s], &next[s], 1, lb), 0);
            assert_memory_equal(lbatch + 96 * s, lb, 96 * sizeof(float));
        }
    }
    llm_infer_free(a);
    llm_infer_free(b);
    llm_q8_release(&q, &m);
    llm_model_release(&m);
    llm_backend_release(&be);
}

static void test_gpt2_g32(void **state) { (void)state; check(0, 32); }
static void test_llama_g64(void **state) { (void)state; check(1, 64); }

static void test_errors(void **state)
{
    (void)state;
    struct llm_backend be;
    struct llm_model m;
    struct llm_model_config mc;
    config(&mc, 0);
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    assert_int_equal(llm_model_init(&m, &mc, &be, 7), 0);
    struct llm_q8 q;
    assert_int_equal(llm_model_quantize_q8(&m, 16, &q), LLM_EINVAL);
    /* widths that are not multiples of G: nothing quantized, nothing fails */
    llm_model_release(&m);
    mc.d_model = 40, mc.n_heads = 2, mc.d_ff = 72;
    assert_int_equal(llm_model_init(&m, &mc, &be, 7), 0);
    assert_int_equal(llm_model_quantize_q8(&m, 32, &q), 0);
    assert_int_equal(q.quantized, 0);
    llm_q8_release(&q, &m);
    llm_model_release(&m);
    llm_backend_release(&be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_g32),
        cmocka_unit_test(test_llama_g64),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
