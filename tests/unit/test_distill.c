/* test_distill.c: the distillation objective (train/distill.h) against a
 * plain double-precision oracle and finite differences; the model's
 * backward from a whole dlogits (llm_model_backward_dlogits) against
 * llm_model_backward; the pretraining task with a teacher (errors, metrics,
 * and that alpha = 0 trains exactly as without a teacher). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/err.h"
#include "core/rng.h"
#include "data/shard.h"
#include "model/model.h"
#include "model/model_io.h"
#include "nn/backend.h"
#include "train/distill.h"
#include "train/pretrain.h"

/* The oracle: the objective written from its definition, in double. */
static double objective(const double *zs, const double *zt, const int32_t *tg, int N, int V, double alpha, double tau)
{
    double ce = 0, kl = 0;
    int nv = 0;
    for (int n = 0; n < N; n++) {
        if (tg[n] < 0)
            continue;
        nv++;
        const double *s = zs + (size_t)n * V, *t = zt + (size_t)n * V;
        double z1 = 0, zst = 0, ztt = 0;
        for (int v = 0; v < V; v++)
            z1 += exp(s[v]), zst += exp(s[v] / tau), ztt += exp(t[v] / tau);
        ce -= log(exp(s[tg[n]]) / z1);
        for (int v = 0; v < V; v++) {
            double p = exp(t[v] / tau) / ztt, q = exp(s[v] / tau) / zst;
            kl += p * log(p / q);
        }
    }
    return nv ? ((1 - alpha) * ce + alpha * tau * tau * kl) / nv : 0;
}

static void test_grad(void **state)
{
    (void)state;
    enum { N = 5, V = 7 };
    int32_t tg[N] = {3, -1, 0, 6, 2};
    float zs[N * V], zt[N * V], dz[N * V];
    double ds[N * V], dt[N * V];
    struct llm_rng r;
    llm_rng_seed(&r, 7);
    for (int i = 0; i < N * V; i++) {
        zs[i] = (float)(2 * llm_rng_normal(&r)), zt[i] = (float)(2 * llm_rng_normal(&r));
        ds[i] = zs[i], dt[i] = zt[i];
    }
    const double cases[][2] = {{0.0, 1.0}, {1.0, 1.0}, {0.3, 2.0}, {0.7, 0.5}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        double alpha = cases[c][0], tau = cases[c][1], ce, kl;
        assert_int_equal(llm_distill_grad(zs, zt, tg, N, V, alpha, tau, dz, &ce, &kl), 4);
        /* the reported means make the oracle's objective */
        assert_true(fabs((1 - alpha) * ce + alpha * tau * tau * kl - objective(ds, dt, tg, N, V, alpha, tau)) < 1e-9);
        assert_true(kl > 0 && ce > 0);
        for (int i = 0; i < N * V; i++) {
            double h = 1e-5, keep = ds[i];
            ds[i] = keep + h;
            double up = objective(ds, dt, tg, N, V, alpha, tau);
            ds[i] = keep - h;
            double dn = objective(ds, dt, tg, N, V, alpha, tau);
            ds[i] = keep;
            double fd = (up - dn) / (2 * h);
            if (fabs(dz[i] - fd) > 1e-6 + 1e-4 * fabs(fd))
                fail_msg("alpha %g tau %g: dz[%d] = %.9g, finite difference %.9g", alpha, tau, i, dz[i], fd);
        }
        for (int v = 0; v < V; v++) /* the ignored row */
            assert_true(dz[1 * V + v] == 0.0f);
    }
    /* a teacher equal to the model: KL 0, and with alpha 1 no gradient */
    double ce, kl;
    assert_int_equal(llm_distill_grad(zs, zs, tg, N, V, 1.0, 1.5, dz, &ce, &kl), 4);
    assert_true(fabs(kl) < 1e-12);
    for (int i = 0; i < N * V; i++)
        assert_true(fabs(dz[i]) < 1e-7);
    /* a target outside the vocabulary */
    tg[2] = V;
    llm_err_clear();
    assert_int_equal(llm_distill_grad(zs, zt, tg, N, V, 0.5, 1.0, dz, &ce, &kl), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "outside"));
}

static void tiny_config(struct llm_config *cfg)
{
    assert_int_equal(llm_config_defaults(cfg), 0);
    cfg->model.vocab_size = 40, cfg->model.context_length = 16, cfg->model.d_model = 16, cfg->model.n_layers = 2;
    cfg->model.n_heads = 2, cfg->model.d_ff = 32, cfg->model.dropout = 0;
}

/* dlogits = (softmax - onehot) / n_valid through backward_dlogits gives the
 * gradients of llm_model_backward (the mean cross-entropy). */
static void test_backward_dlogits(void **state)
{
    (void)state;
    struct llm_backend be;
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    struct llm_config cfg;
    tiny_config(&cfg);
    enum { B = 2, T = 16, V = 40 };
    struct llm_model m;
    assert_int_equal(llm_model_init(&m, &cfg.model, &be, 5), 0);
    int32_t tok[B * T], tg[B * T];
    for (int i = 0; i < B * T; i++)
        tok[i] = (i * 7 + 3) % V, tg[i] = i % 5 == 4 ? -1 : (i * 11 + 1) % V;
    float loss;
    assert_int_equal(llm_model_forward(&m, tok, tg, B, T, 1, &loss), 0);
    assert_int_equal(llm_model_zero_grad(&m), 0);
    assert_int_equal(llm_model_backward(&m), 0);
    size_t np = m.layout.total;
    float *g1 = malloc(np * sizeof(float)), *z = malloc((size_t)B * T * V * sizeof(float));
    float *dz = malloc((size_t)B * T * V * sizeof(float));
    memcpy(g1, m.grads, np * sizeof(float));
    assert_int_equal(llm_model_forward(&m, tok, tg, B, T, 1, &loss), 0);
    memcpy(z, llm_model_logits(&m), (size_t)B * T * V * sizeof(float));
    double ce, kl;
    /* alpha 0: the gradient is the cross-entropy's alone (the teacher is unused) */
    assert_int_equal(llm_distill_grad(z, z, tg, B * T, V, 0.0, 1.0, dz, &ce, &kl), 26);
    assert_true(fabs(ce - loss) < 1e-5);
    assert_int_equal(llm_model_zero_grad(&m), 0);
    assert_int_equal(llm_model_backward_dlogits(&m, dz), 0);
    for (size_t i = 0; i < np; i++)
        if (fabsf(m.grads[i] - g1[i]) > 1e-6f + 1e-4f * fabsf(g1[i]))
            fail_msg("grad %zu: %.9g from dlogits, %.9g from backward", i, m.grads[i], g1[i]);
    /* without a training forward there is nothing to differentiate */
    assert_int_equal(llm_model_forward(&m, tok, NULL, B, T, 0, NULL), 0);
    llm_err_clear();
    assert_int_equal(llm_model_backward_dlogits(&m, dz), LLM_EINVAL);
    free(g1), free(z), free(dz);
    llm_model_release(&m);
    llm_config_release(&cfg);
    llm_backend_release(&be);
}

/* A token shard of n pseudo-random ids below vocab at path. */
static void write_tokens(const char *path, size_t n, uint32_t vocab)
{
    uint32_t *ids = malloc(n * sizeof(uint32_t));
    struct llm_rng r;
    llm_rng_seed(&r, 3);
    for (size_t i = 0; i < n; i++)
        ids[i] = (uint32_t)llm_rng_below(&r, vocab);
    struct llm_shard_writer w;
    assert_int_equal(llm_shard_writer_open(&w, path, vocab), 0);
    assert_int_equal(llm_shard_write(&w, ids, n), 0);
    assert_int_equal(llm_shard_writer_commit(&w), 0);
    free(ids);
}

static void test_pretrain_teacher(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    struct llm_backend be;
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    struct llm_config cfg;
    tiny_config(&cfg);
    /* a teacher checkpoint, and one of another vocabulary */
    struct llm_model t;
    char *tp = test_path(dir, "teacher.llm"), *tv = test_path(dir, "v41.llm"), *data = test_path(dir, "d.bin");
    assert_int_equal(llm_model_init(&t, &cfg.model, &be, 9), 0);
    assert_int_equal(llm_model_save(&t, tp, NULL), 0);
    llm_model_release(&t);
    cfg.model.vocab_size = 41;
    assert_int_equal(llm_model_init(&t, &cfg.model, &be, 9), 0);
    assert_int_equal(llm_model_save(&t, tv, NULL), 0);
    llm_model_release(&t);
    cfg.model.vocab_size = 40;
    write_tokens(data, 4000, 40);
    free(cfg.data.train);
    cfg.data.train = strdup(data);
    cfg.train.batch_size = 2;
    struct llm_pretrain p;
    free(cfg.distill.teacher);
    cfg.distill.teacher = strdup(tv);
    llm_err_clear();
    assert_int_equal(llm_pretrain_init(&p, &cfg, &be), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "vocab_size"));
    free(cfg.distill.teacher);
    cfg.distill.teacher = strdup(tp);
    /* alpha 0: the same gradients as plain pretraining on the same batch */
    cfg.distill.weight = 0.0;
    assert_int_equal(llm_pretrain_init(&p, &cfg, &be), 0);
    struct llm_pretrain plain;
    char *keep = cfg.distill.teacher;
    cfg.distill.teacher = strdup("");
    assert_int_equal(llm_pretrain_init(&plain, &cfg, &be), 0);
    struct llm_model a, b;
    assert_int_equal(llm_model_init(&a, &cfg.model, &be, 1), 0);
    assert_int_equal(llm_model_init(&b, &cfg.model, &be, 1), 0);
    assert_int_equal(llm_model_zero_grad(&a), 0);
    assert_int_equal(llm_model_zero_grad(&b), 0);
    double la, lb;
    int64_t na, nb;
    assert_int_equal(p.task.micro_step(p.task.ctx, &a, &la, &na), 0);
    assert_int_equal(plain.task.micro_step(plain.task.ctx, &b, &lb, &nb), 0);
    assert_true(la == lb && na == nb);
    for (size_t i = 0; i < a.layout.total; i++)
        if (fabsf(a.grads[i] - b.grads[i]) > 1e-6f + 1e-4f * fabsf(b.grads[i]))
            fail_msg("alpha 0: grad %zu %.9g, without a teacher %.9g", i, a.grads[i], b.grads[i]);
    /* the KL to the teacher is reported; a task without a teacher has no metrics */
    assert_null(plain.task.metrics);
    cJSON *mo = p.task.metrics(p.task.ctx);
    assert_non_null(mo);
    const cJSON *kl = cJSON_GetObjectItemCaseSensitive(mo, "distill_kl");
    assert_true(cJSON_IsNumber(kl) && kl->valuedouble > 0);
    cJSON_Delete(mo);
    assert_null(p.task.metrics(p.task.ctx)); /* nothing new since */
    llm_model_release(&a), llm_model_release(&b);
    llm_pretrain_release(&p), llm_pretrain_release(&plain);
    free(cfg.distill.teacher);
    cfg.distill.teacher = keep;
    llm_config_release(&cfg);
    llm_backend_release(&be);
    free(tp), free(tv), free(data);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad),
        cmocka_unit_test(test_backward_dlogits),
        cmocka_unit_test(test_pretrain_teacher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
