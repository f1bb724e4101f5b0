/* test_train.c: the training loop's arithmetic with a fake task whose
 * gradients and losses are set by hand: gradient averaging and clipping
 * (through SGD with lr 1, the update is the scaled gradient), the noise-scale
 * estimate, NaN and spike skipping, and the stop-after path. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/err.h"
#include "model/model.h"
#include "nn/backend.h"
#include "train/train.h"

/* micro-batch i of each step adds a * (1 + (i even ? d : -d)) to every
 * gradient; losses come from a script. */
struct fake {
    double a, d;
    int calls;
    const double *losses; /* per step (NULL: 1.0) */
    int nlosses;
    int accum;
};

static int fake_micro(void *ctx, struct llm_model *m, double *loss, int64_t *tokens)
{
    struct fake *f = ctx;
    int i = f->calls % f->accum, step = f->calls / f->accum;
    f->calls++;
    double g = f->a * (1 + (i % 2 ? -f->d : f->d));
    for (size_t k = 0; k < m->layout.n; k++) {
        float *p = m->grads + m->layout.p[k].offset;
        for (size_t j = 0; j < m->layout.p[k].numel; j++)
            p[j] += (float)g;
    }
    *loss = f->losses && step < f->nlosses ? f->losses[step] : 1.0;
    *tokens = 100;
    return 0;
}

static struct llm_config cfg;
static struct llm_backend be;
static struct llm_model m;
static char dir[64];

static void setup_run(int accum, int64_t steps, double clip)
{
    assert_int_equal(llm_config_defaults(&cfg), 0);
    cfg.model.vocab_size = 8, cfg.model.context_length = 4, cfg.model.d_model = 4;
    cfg.model.n_layers = 1, cfg.model.n_heads = 1, cfg.model.d_ff = 4;
    cfg.train.grad_accum = accum, cfg.train.steps = steps, cfg.train.clip_grad = clip;
    cfg.train.eval_every = 0, cfg.train.checkpoint_every = 0, cfg.train.log_every = 1;
    cfg.schedule.name = LLM_SCHEDULE_CONSTANT, cfg.schedule.warmup = 0;
    cfg.optim.name = LLM_OPTIM_SGD, cfg.optim.lr = 1.0, cfg.optim.momentum = 0.0;
    cfg.optim.nesterov = false, cfg.optim.weight_decay = 0;
    snprintf(dir, sizeof(dir), "/tmp/llm-test-train-XXXXXX");
    assert_non_null(mkdtemp(dir));
    free(cfg.train.out_dir);
    cfg.train.out_dir = strdup(dir);
    assert_int_equal(llm_backend_cpu_init(&be, 1, 0), 0);
    assert_int_equal(llm_model_init(&m, &cfg.model, &be, 1), 0);
}

static void teardown_run(void)
{
    llm_model_release(&m);
    llm_backend_release(&be);
    llm_config_release(&cfg);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int run(struct fake *f, struct llm_train_summary *s, int64_t stop_after)
{
    struct llm_train_task t = {.ctx = f, .micro_step = fake_micro};
    struct llm_train_opts o = {.cfg = &cfg, .stop_after = stop_after};
    return llm_train_run(&m, &t, &o, s);
}

/* With SGD (lr 1, no momentum, no decay) one step moves every parameter by
 * -grad_scale * accumulated gradient: the mean gradient, clipped. */
static void test_average_and_clip(void **state)
{
    (void)state;
    setup_run(2, 1, 0.0);
    size_t n = llm_param_count(&m.layout);
    float p0 = m.params[m.layout.p[0].offset];
    struct fake f = {.a = 1e-3, .d = 0.5, .accum = 2};
    struct llm_train_summary s;
    assert_int_equal(run(&f, &s, 0), 0);
    /* mean gradient = a (the +-d parts cancel); norm = a sqrt(n) < clip off */
    assert_float_equal(m.params[m.layout.p[0].offset], p0 - 1e-3f, 1e-6);
    teardown_run();

    setup_run(2, 1, 0.01);
    p0 = m.params[m.layout.p[0].offset];
    f = (struct fake){.a = 1.0, .d = 0.5, .accum = 2};
    assert_int_equal(run(&f, &s, 0), 0);
    /* norm sqrt(n) clipped to 0.01: each entry moves by 0.01 / sqrt(n) */
    assert_float_equal(m.params[m.layout.p[0].offset], p0 - (float)(0.01 / sqrt((double)n)), 1e-6);
    teardown_run();
}

/* McCandlish's estimator for one step of two micro-batches of 100 tokens:
 * |G_s|^2 = n (a(1+d))^2, |G_b|^2 = n a^2, B_s = 100, B_b = 200:
 *   |G|^2 = (200 n a^2 - 100 n a^2 (1+d)^2) / 100 = n a^2 (2 - (1+d)^2)
 *   S = n a^2 ((1+d)^2 - 1) / (1/100 - 1/200)
 * and one EMA step (bias-corrected) gives exactly S / |G|^2. */
static void test_noise_scale(void **state)
{
    (void)state;
    setup_run(2, 1, 0.0);
    struct fake f = {.a = 1e-2, .d = 0.2, .accum = 2};
    struct llm_train_summary s;
    assert_int_equal(run(&f, &s, 0), 0);
    double d = 0.2, want = ((1 + d) * (1 + d) - 1) / (1.0 / 100 - 1.0 / 200) / (2 - (1 + d) * (1 + d));
    assert_true(isfinite(s.noise_scale));
    assert_float_equal(s.noise_scale, want, want * 1e-3);
    teardown_run();

    /* one micro-batch per step: nothing to estimate */
    setup_run(1, 2, 0.0);
    f = (struct fake){.a = 1e-2, .accum = 1};
    assert_int_equal(run(&f, &s, 0), 0);
    assert_true(isnan(s.noise_scale));
    teardown_run();
}

static void test_skips(void **state)
{
    (void)state;
    /* NaN losses are skipped without touching the parameters, then the run stops */
    setup_run(1, 10, 0.0);
    cfg.train.max_skipped = 2;
    double nan_losses[10] = {1, NAN, NAN, NAN, 1, 1, 1, 1, 1, 1};
    struct fake f = {.a = 1e-3, .accum = 1, .losses = nan_losses, .nlosses = 10};
    struct llm_train_summary s;
    float p0 = m.params[m.layout.p[0].offset];
    int rc = run(&f, &s, 0);
    assert_int_equal(rc, LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "skipped"));
    assert_float_equal(m.params[m.layout.p[0].offset], p0 - 1e-3f, 1e-7); /* only step 1 updated */
    teardown_run();

    /* a spike of 10x the running mean is skipped when spike_factor is 3 */
    setup_run(1, 14, 0.0);
    cfg.train.spike_factor = 3;
    double losses[14] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 10, 1};
    f = (struct fake){.a = 1e-3, .accum = 1, .losses = losses, .nlosses = 14};
    p0 = m.params[m.layout.p[0].offset];
    assert_int_equal(run(&f, &s, 0), 0);
    assert_int_equal(s.skipped, 1);
    assert_int_equal(s.step, 14);
    assert_float_equal(m.params[m.layout.p[0].offset], p0 - 13e-3f, 1e-6);
    teardown_run();
}

/* stop_after: a checkpoint at the step reached and a summary that says so;
 * a second call finishes the run from it. */
static void test_stop_after(void **state)
{
    (void)state;
    setup_run(1, 6, 0.0);
    struct fake f = {.a = 1e-3, .accum = 1};
    struct llm_train_summary s;
    assert_int_equal(run(&f, &s, 4), 0);
    assert_int_equal(s.step, 4);
    assert_true(s.interrupted);
    assert_non_null(strstr(s.checkpoint, "ckpt_4.llm"));
    assert_int_equal(run(&f, &s, 0), 0);
    assert_int_equal(s.step, 6);
    assert_int_equal(s.resumed_from, 4);
    assert_false(s.interrupted);
    assert_non_null(strstr(s.checkpoint, "final.llm"));
    teardown_run();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_average_and_clip),
        cmocka_unit_test(test_noise_scale),
        cmocka_unit_test(test_skips),
        cmocka_unit_test(test_stop_after),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
