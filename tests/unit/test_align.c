/* test_align.c: the pieces of SFT, DPO and GRPO that can be checked
 * exactly: the losses and their derivatives (against finite differences),
 * group advantages, tokenization with loss masks, chat templates and the
 * vocabulary growth they cause, and the example order. End-to-end training
 * is in tests/cli/align.sh. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "align/align.h"
#include "align/dpo.h"
#include "align/grpo.h"
#include "align/sft.h"
#include "core/err.h"
#include "core/rng.h"
#include "model/model.h"
#include "nn/backend.h"
#include "testutil.h"

/* ---- losses ---- */

static void test_dpo_losses(void **state)
{
    (void)state;
    const enum llm_dpo_loss kinds[] = {LLM_DPO_SIGMOID, LLM_DPO_IPO, LLM_DPO_HINGE};
    const double beta = 0.3, hs[] = {-4.0, -0.7, 0.0, 0.9, 2.5, 30.0};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < sizeof(hs) / sizeof(*hs); i++) {
            double h = hs[i], dh, e = 1e-6, d1, d2;
            double l = llm_dpo_loss(kinds[k], beta, h, &dh);
            double num = (llm_dpo_loss(kinds[k], beta, h + e, &d1) - llm_dpo_loss(kinds[k], beta, h - e, &d2)) / (2 * e);
            if (!(kinds[k] == LLM_DPO_HINGE && fabs(beta * h - 1) < 1e-3))
                assert_float_equal(dh, num, 1e-5 * (1 + fabs(num)));
            assert_true(l >= 0);
        }
    double dh;
    /* sigmoid: -log sigmoid(0) = log 2; no overflow far out */
    assert_float_equal(llm_dpo_loss(LLM_DPO_SIGMOID, 0.1, 0, &dh), log(2.0), 1e-12);
    assert_float_equal(dh, -0.05, 1e-12);
    assert_true(isfinite(llm_dpo_loss(LLM_DPO_SIGMOID, 1.0, -1e4, &dh)));
    /* ipo: zero at the target margin 1 / (2 beta) */
    assert_float_equal(llm_dpo_loss(LLM_DPO_IPO, 0.25, 2.0, &dh), 0.0, 1e-12);
    /* hinge: zero past the margin */
    assert_float_equal(llm_dpo_loss(LLM_DPO_HINGE, 0.5, 3.0, &dh), 0.0, 1e-12);
    assert_float_equal(dh, 0.0, 0);
}

static void test_grpo_token_loss(void **state)
{
    (void)state;
    struct llm_rng r;
    llm_rng_seed(&r, 4);
    for (int i = 0; i < 200; i++) {
        double old = -3 * llm_rng_double(&r), logp = old + 0.6 * (llm_rng_double(&r) - 0.5);
        double ref = old + 0.3 * (llm_rng_double(&r) - 0.5), A = 2 * llm_rng_double(&r) - 1;
        double beta = i % 2 ? 0.04 : 0, d, e = 1e-6, dd;
        int c, c1, c2;
        llm_grpo_token_loss(logp, old, ref, A, 0.2, 0.28, beta, &d, &c);
        double lp = llm_grpo_token_loss(logp + e, old, ref, A, 0.2, 0.28, beta, &dd, &c1);
        double lm = llm_grpo_token_loss(logp - e, old, ref, A, 0.2, 0.28, beta, &dd, &c2);
        if (c1 == c2) /* not at the clip's kink */
            assert_float_equal(d, (lp - lm) / (2 * e), 1e-5);
    }
    double d;
    int c;
    /* ratio 1, no KL: loss -A, gradient -A */
    assert_float_equal(llm_grpo_token_loss(-1.0, -1.0, -1.0, 0.5, 0.2, 0.2, 0, &d, &c), -0.5, 1e-12);
    assert_float_equal(d, -0.5, 1e-12);
    assert_int_equal(c, 0);
    /* a positive advantage past 1 + eps_high: clipped, no gradient */
    llm_grpo_token_loss(log(1.5), 0.0, 0.0, 1.0, 0.2, 0.28, 0, &d, &c);
    assert_int_equal(c, 1);
    assert_float_equal(d, 0.0, 0);
    /* a negative advantage below 1 - eps: clipped too; above 1 + eps_high: not (pessimistic bound) */
    llm_grpo_token_loss(log(0.5), 0.0, 0.0, -1.0, 0.2, 0.28, 0, &d, &c);
    assert_int_equal(c, 1);
    llm_grpo_token_loss(log(1.5), 0.0, 0.0, -1.0, 0.2, 0.28, 0, &d, &c);
    assert_int_equal(c, 0);
    assert_float_equal(d, 1.5, 1e-12);
    /* k3 >= 0, and 0 when logp = ref */
    assert_float_equal(llm_grpo_token_loss(-2.0, -2.0, -2.0, 0.0, 0.2, 0.2, 1.0, &d, &c), 0.0, 1e-12);
    assert_true(llm_grpo_token_loss(-2.0, -2.0, -1.0, 0.0, 0.2, 0.2, 1.0, &d, &c) > 0);
}

static void test_grpo_advantages(void **state)
{
    (void)state;
    const double r[] = {1, 0, 0, 1, /* group 2: flat */ 1, 1, 1, 1};
    double a[8];
    assert_int_equal(llm_grpo_advantages(r, 2, 4, 1, a), 1);
    double sd = sqrt(1.0 / 3); /* sample std of {1, 0, 0, 1} */
    assert_float_equal(a[0], 0.5 / (sd + 1e-4), 1e-12);
    assert_float_equal(a[1], -0.5 / (sd + 1e-4), 1e-12);
    for (int i = 4; i < 8; i++)
        assert_float_equal(a[i], 0.0, 0);
    assert_int_equal(llm_grpo_advantages(r, 2, 4, 0, a), 1); /* Dr. GRPO: r - mean */
    assert_float_equal(a[0], 0.5, 1e-12);
    assert_float_equal(a[2], -0.5, 1e-12);
}

/* ---- tokenization ---- */

static struct llm_align_base base;

static void make_base(void)
{
    const char *specials[] = {"<|endoftext|>"};
    struct llm_tok_train_opts o = {.vocab_size = 280, .specials = specials, .n_specials = 1, .threads = 1};
    struct llm_tok_trainer *tr;
    assert_int_equal(llm_tok_trainer_new(&o, &tr), 0);
    const char *doc = "the answer is 42. the answer is 7. the question is what.";
    size_t len = strlen(doc);
    assert_int_equal(llm_tok_trainer_feed(tr, &doc, &len, 1), 0);
    assert_int_equal(llm_tok_trainer_finish(tr, &base.tok, NULL, NULL), 0);
    llm_tok_trainer_free(tr);
    char *dir = test_mkdtemp(), *path = test_path(dir, "tok.json");
    assert_int_equal(llm_tok_save(base.tok, path), 0);
    FILE *f = fopen(path, "rb");
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    base.tok_json = cJSON_Parse(buf);
    assert_non_null(base.tok_json);
    assert_int_equal(llm_tok_encoder_new(base.tok, &base.enc), 0);
    base.eot = llm_tok_special_id(base.tok, "<|endoftext|>");
    free(path);
    test_rmdir(dir);
}

static char *decode(const int32_t *ids, int n, const uint8_t *learn, int want)
{
    struct llm_bytes b = {0};
    for (int i = 0; i < n; i++)
        if (!learn || learn[i] == want) {
            uint32_t id = (uint32_t)ids[i];
            assert_int_equal(llm_tok_decode(base.tok, &id, 1, &b), 0);
        }
    llm_bytes_append(&b, "", 1);
    return b.v;
}

static void test_encode_pair(void **state)
{
    (void)state;
    make_base();
    struct llm_seq s;
    assert_int_equal(llm_align_encode_pair(&base, "the question is", " what the answer is", 1, 64, &s), 0);
    char *all = decode(s.ids, s.n, NULL, 0), *resp = decode(s.ids, s.n, s.learn, 1);
    assert_string_equal(all, "the question is what the answer is<|endoftext|>");
    assert_string_equal(resp, " what the answer is<|endoftext|>");
    assert_int_equal(s.ids[s.n - 1], base.eot);
    assert_int_equal(s.learn[0], 0);
    int learned = 0;
    for (int i = 0; i < s.n; i++)
        learned += s.learn[i];
    assert_int_equal(learned, s.n_learn);
    free(all), free(resp);
    /* the batch: targets are the learned ids, shifted */
    const struct llm_seq *rows[1] = {&s};
    int32_t tok[64], tgt[64];
    int Tb;
    llm_align_batch(rows, 1, tok, tgt, &Tb);
    assert_int_equal(Tb, s.n - 1);
    for (int t = 0; t < Tb; t++) {
        assert_int_equal(tok[t], s.ids[t]);
        assert_int_equal(tgt[t], s.learn[t + 1] ? s.ids[t + 1] : -1);
    }
    llm_seq_release(&s);
    /* cut to the context: the start is kept */
    assert_int_equal(llm_align_encode_pair(&base, "the", " answer is 42. the answer is 7.", 0, 5, &s), 0);
    assert_int_equal(s.n, 5);
    assert_true(s.truncated);
    llm_seq_release(&s);
    assert_int_equal(llm_align_encode_pair(&base, "the answer is 42. the answer is 7.", " x", 0, 3, &s), LLM_EINVAL);
    assert_int_equal(llm_align_encode_pair(&base, "the", "", 0, 64, &s), LLM_EINVAL);
}

static void test_chat_template_and_resize(void **state)
{
    (void)state;
    struct llm_backend be;
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    struct llm_config cfg;
    assert_int_equal(llm_config_defaults(&cfg), 0);
    cfg.model.vocab_size = 280, cfg.model.context_length = 64, cfg.model.d_model = 16, cfg.model.n_layers = 1;
    cfg.model.n_heads = 2, cfg.model.d_ff = 32, cfg.model.tie_embeddings = false;
    struct llm_model m;
    assert_int_equal(llm_model_init(&m, &cfg.model, &be, 3), 0);
    long e = llm_param_find(&m.layout, "tok_emb.weight");
    float *old = malloc(280 * 16 * sizeof(float));
    memcpy(old, llm_model_param(&m, e), 280 * 16 * sizeof(float));
    assert_int_equal(llm_align_add_template_tokens(&base, &m, LLM_CHAT_SIMPLE), 0);
    assert_int_equal(m.cfg.vocab_size, 284); /* <|system|> <|user|> <|assistant|> <|end|> */
    assert_int_equal(llm_tok_vocab_size(base.tok), 284);
    e = llm_param_find(&m.layout, "tok_emb.weight");
    const float *emb = llm_model_param(&m, e);
    assert_memory_equal(emb, old, 280 * 16 * sizeof(float)); /* the old rows kept */
    for (int c = 0; c < 16; c++) {                             /* the new ones: their mean */
        double mean = 0;
        for (int v = 0; v < 280; v++)
            mean += old[v * 16 + c];
        assert_float_equal(emb[283 * 16 + c], mean / 280, 1e-6);
    }
    assert_int_equal(llm_align_add_template_tokens(&base, &m, LLM_CHAT_SIMPLE), 0); /* idempotent */
    assert_int_equal(m.cfg.vocab_size, 284);
    cJSON *msgs = cJSON_Parse("[{\"role\": \"system\", \"content\": \"the answer\"},"
                              "{\"role\": \"user\", \"content\": \"what is it\"},"
                              "{\"role\": \"assistant\", \"content\": \"42\"}]");
    struct llm_seq s;
    assert_int_equal(llm_align_encode_chat(&base, LLM_CHAT_SIMPLE, msgs, 64, &s), 0);
    char *all = decode(s.ids, s.n, NULL, 0), *learned = decode(s.ids, s.n, s.learn, 1);
    assert_string_equal(all, "<|endoftext|><|system|>\nthe answer<|end|>\n<|user|>\nwhat is it<|end|>\n"
                             "<|assistant|>\n42<|end|>\n");
    assert_string_equal(learned, "42<|end|>");
    char *prompt = llm_align_chat_prompt(LLM_CHAT_SIMPLE, "hi");
    assert_string_equal(prompt, "<|user|>\nhi<|end|>\n<|assistant|>\n");
    free(all), free(learned), free(prompt);
    llm_seq_release(&s);
    cJSON_Delete(msgs);
    msgs = cJSON_Parse("[{\"role\": \"user\", \"content\": \"no answer\"}]");
    assert_int_equal(llm_align_encode_chat(&base, LLM_CHAT_SIMPLE, msgs, 64, &s), LLM_EINVAL);
    cJSON_Delete(msgs);
    msgs = cJSON_Parse("[{\"role\": \"robot\", \"content\": \"x\"}]");
    assert_int_equal(llm_align_encode_chat(&base, LLM_CHAT_SIMPLE, msgs, 64, &s), LLM_EINVAL);
    cJSON_Delete(msgs);
    free(old);
    llm_model_release(&m);
    llm_config_release(&cfg);
    llm_backend_release(&be);
    llm_align_base_release(&base);
}

static void test_order(void **state)
{
    (void)state;
    struct llm_align_order a, b;
    assert_int_equal(llm_align_order_init(&a, 10, 5), 0);
    assert_int_equal(llm_align_order_init(&b, 10, 5), 0);
    int seen[10] = {0}, first[25];
    for (int i = 0; i < 25; i++) {
        first[i] = llm_align_order_next(&a);
        if (i < 10)
            seen[first[i]]++;
    }
    for (int i = 0; i < 10; i++)
        assert_int_equal(seen[i], 1); /* an epoch is a permutation */
    /* resume from a state taken after 13 */
    for (int i = 0; i < 13; i++)
        llm_align_order_next(&b);
    cJSON *st = llm_align_order_state(&b);
    struct llm_align_order c;
    assert_int_equal(llm_align_order_init(&c, 10, 5), 0);
    assert_int_equal(llm_align_order_restore(&c, st), 0);
    for (int i = 13; i < 25; i++)
        assert_int_equal(llm_align_order_next(&c), first[i]);
    cJSON_Delete(st);
    st = cJSON_Parse("{\"epoch\": -1}");
    assert_int_equal(llm_align_order_restore(&c, st), LLM_EFORMAT);
    cJSON_Delete(st);
    llm_align_order_release(&a), llm_align_order_release(&b), llm_align_order_release(&c);
}

/* ---- SFT packing ---- */

/* One micro-step of an SFT task on a fresh model (seed 3): its loss, the
 * gradient (copied into *grad, *P floats) and how many examples it consumed. */
static int sft_micro(struct llm_config *cfg, struct llm_backend *be, double *loss, float **grad,
                     size_t *P, struct llm_sft *keep)
{
    struct llm_model m;
    assert_int_equal(llm_model_init(&m, &cfg->model, be, 3), 0);
    struct llm_sft s;
    assert_int_equal(llm_sft_init(&s, cfg, &base, &m), 0);
    assert_int_equal(llm_model_zero_grad(&m), 0);
    int64_t tokens;
    assert_int_equal(s.task.micro_step(s.task.ctx, &m, loss, &tokens), 0);
    *P = m.layout.total;
    *grad = malloc(m.layout.total * sizeof(float));
    memcpy(*grad, m.grads, m.layout.total * sizeof(float));
    int used = s.order.pos;
    if (keep) { /* the packed row, for the caller to inspect */
        keep->T = m.T;
        keep->pos = malloc((size_t)m.T * sizeof(int32_t));
        keep->tgt = malloc((size_t)m.T * sizeof(int32_t));
        memcpy(keep->pos, s.pos, (size_t)m.T * sizeof(int32_t));
        memcpy(keep->tgt, s.tgt, (size_t)m.T * sizeof(int32_t));
    }
    llm_sft_release(&s);
    llm_model_release(&m);
    return used;
}

/* A packed row of k examples trains exactly like k rows of one example each:
 * the same loss and gradient from the same model; the row's positions
 * restart at every example; linear attention refuses packing. */
static void test_sft_packing(void **state)
{
    (void)state;
    make_base();
    char *dir = test_mkdtemp(), *path = test_path(dir, "sft.jsonl");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    static const char *const resp[] = {" 42.", " 7.", " what the answer is.", " 42. the answer is 7.", " what.", " 7. 42."};
    for (int i = 0; i < 6; i++)
        fprintf(f, "{\"prompt\": \"the %s is\", \"response\": \"%s\"}\n", i % 2 ? "answer" : "question", resp[i]);
    fclose(f);
    struct llm_backend be;
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    struct llm_config cfg;
    assert_int_equal(llm_config_defaults(&cfg), 0);
    cfg.model.vocab_size = 280, cfg.model.context_length = 32, cfg.model.d_model = 16, cfg.model.n_layers = 2;
    cfg.model.n_heads = 2, cfg.model.d_ff = 32, cfg.model.dropout = 0;
    cfg.model.position = LLM_POSITION_ROPE, cfg.model.norm = LLM_NORM_RMSNORM;
    char set[4200];
    snprintf(set, sizeof(set), "data.train=%s", path);
    assert_int_equal(llm_config_set(&cfg, set), 0);
    cfg.train.grad_accum = 1, cfg.train.batch_tokens = 0, cfg.train.seed = 11;
    cfg.train.batch_size = 1, cfg.sft.packing = true;
    double lp, lu;
    float *gp, *gu;
    struct llm_sft row = {0};
    size_t P, Pu;
    int k = sft_micro(&cfg, &be, &lp, &gp, &P, &row);
    assert_true(k >= 2 && k < 6); /* several examples in the row, not all */
    int starts = 0;
    for (int t = 0; t < row.T; t++) {
        assert_true(row.pos[t] == 0 || (t > 0 && row.pos[t] == row.pos[t - 1] + 1));
        starts += row.pos[t] == 0;
    }
    assert_true(starts >= k); /* one per example (and one where padding starts) */
    cfg.train.batch_size = k, cfg.sft.packing = false;
    assert_int_equal(sft_micro(&cfg, &be, &lu, &gu, &Pu, NULL), k);
    assert_true(fabs(lp - lu) <= 1e-5 * fabs(lu));
    assert_true(P == Pu);
    for (size_t i = 0; i < P; i++)
        if (fabsf(gp[i] - gu[i]) > 1e-4f * fabsf(gu[i]) + 1e-6f)
            fail_msg("grad[%zu]: packed %g, one example per row %g", i, gp[i], gu[i]);
    free(gp), free(gu), free(row.pos), free(row.tgt);
    /* linear attention cannot pack */
    cfg.sft.packing = true, cfg.model.attention = LLM_ATTENTION_LINEAR;
    struct llm_model m;
    assert_int_equal(llm_model_init(&m, &cfg.model, &be, 3), 0);
    struct llm_sft s;
    llm_err_clear();
    assert_int_equal(llm_sft_init(&s, &cfg, &base, &m), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "sft.packing"));
    llm_model_release(&m);
    llm_config_release(&cfg);
    llm_backend_release(&be);
    llm_align_base_release(&base);
    free(path);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dpo_losses),
        cmocka_unit_test(test_grpo_token_loss),
        cmocka_unit_test(test_grpo_advantages),
        cmocka_unit_test(test_encode_pair),
        cmocka_unit_test(test_chat_template_and_resize),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_sft_packing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
