/* test_scaling.c: scaling laws (lib/scaling): L-BFGS on known minima; the
 * parametric, isoflop and kaplan fits recover the laws that generated
 * synthetic runs (with noise: within stated tolerances, bootstrap intervals
 * covering the truth); both Chinchilla approaches agree on a and b; reading
 * runs (CSV, JSONL, run folders); budgets; the sweep plan; the plot; and a
 * clear error for every degenerate input. */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

#include "config/config.h"
#include "core/err.h"
#include "core/rng.h"
#include "core/svg.h"
#include "scaling/fit.h"
#include "scaling/lbfgs.h"
#include "scaling/plot.h"
#include "scaling/runs.h"
#include "scaling/sweep.h"

/* Hoffmann et al. 2022's fitted law (their eq. 10 values). */
#define E0 1.69
#define A0 406.4
#define B0 410.7
#define AL0 0.34
#define BE0 0.28

/* ---- L-BFGS ---- */

static double rosenbrock(void *ctx, const double *x, double *g, int n)
{
    (void)ctx, (void)n;
    double a = 1 - x[0], b = x[1] - x[0] * x[0];
    g[0] = -2 * a - 400 * x[0] * b;
    g[1] = 200 * b;
    return a * a + 100 * b * b;
}

/* sum_i (i+1) (x_i - i)^2: badly scaled, minimum at x_i = i. */
static double bowl(void *ctx, const double *x, double *g, int n)
{
    (void)ctx;
    double f = 0;
    for (int i = 0; i < n; i++) {
        double d = x[i] - i;
        f += (i + 1) * 100.0 * d * d;
        g[i] = 2 * (i + 1) * 100.0 * d;
    }
    return f;
}

/* Infinite outside x > 0: the line search must back off, not step out. */
static double barrier(void *ctx, const double *x, double *g, int n)
{
    (void)ctx, (void)n;
    if (!(x[0] > 0))
        return INFINITY;
    g[0] = 1 - 1 / x[0];
    return x[0] - log(x[0]); /* minimum at 1 */
}

static void test_lbfgs(void **state)
{
    (void)state;
    double x[2] = {-1.2, 1};
    struct llm_lbfgs_result r;
    assert_int_equal(llm_lbfgs_minimize(rosenbrock, NULL, x, 2, NULL, &r), 0);
    assert_true(fabs(x[0] - 1) < 1e-5 && fabs(x[1] - 1) < 1e-5);
    assert_true(r.f < 1e-10);
    double y[6] = {5, -3, 8, 0, 1, 2};
    assert_int_equal(llm_lbfgs_minimize(bowl, NULL, y, 6, NULL, &r), 0);
    for (int i = 0; i < 6; i++)
        assert_true(fabs(y[i] - i) < 1e-6);
    double z[1] = {40};
    assert_int_equal(llm_lbfgs_minimize(barrier, NULL, z, 1, NULL, &r), 0);
    assert_true(fabs(z[0] - 1) < 1e-5);
    /* A start outside the domain is reported and left alone. */
    z[0] = -1;
    assert_int_equal(llm_lbfgs_minimize(barrier, NULL, z, 1, NULL, &r), 0);
    assert_int_equal(r.status, LLM_LBFGS_BAD_START);
    assert_true(z[0] == -1);
    assert_int_equal(llm_lbfgs_minimize(bowl, NULL, y, 0, NULL, &r), LLM_EINVAL);
    assert_int_equal(llm_lbfgs_minimize(bowl, NULL, y, LLM_LBFGS_MAX_N + 1, NULL, &r), LLM_EINVAL);
}

/* ---- synthetic runs ---- */

/* An IsoFLOP grid from the Chinchilla law: nb budgets from 1e18 by factors
 * of 3, each with ns sizes spaced 10^0.25 around the law's optimum, log-loss
 * noise of std sigma. */
static void chinchilla_runs(struct llm_scaling_runs *r, int nb, int ns, double sigma, uint64_t seed)
{
    struct llm_rng rng;
    llm_rng_seed(&rng, seed);
    double a = BE0 / (AL0 + BE0), G = pow(AL0 * A0 / (BE0 * B0), 1 / (AL0 + BE0));
    for (int b = 0; b < nb; b++) {
        double C = 1e18 * pow(3, b), Nopt = G * pow(C / 6, a);
        for (int k = 0; k < ns; k++) {
            double N = Nopt * pow(10, 0.25 * (k - (ns - 1) / 2.0)), D = C / (6 * N);
            double L = (E0 + A0 * pow(N, -AL0) + B0 * pow(D, -BE0)) * exp(sigma * llm_rng_normal(&rng));
            assert_int_equal(llm_scaling_runs_add(r, N, D, C, L, "test"), 0);
        }
    }
}

static void fit_ok(struct llm_scaling_fit *f, const struct llm_scaling_runs *r, const struct llm_scaling_opts *o)
{
    int rc = llm_scaling_fit_run(f, r, o);
    if (rc)
        fail_msg("fit: %d %s", rc, llm_errmsg());
}

static void expect_covers(const struct llm_scaling_est *e, double truth, const char *what)
{
    if (!(e->lo <= truth && truth <= e->hi))
        fail_msg("%s: the interval [%g, %g] misses the truth %g (estimate %g)", what, e->lo, e->hi, truth, e->v);
}

static void test_parametric_exact(void **state)
{
    (void)state;
    struct llm_scaling_runs r = {0};
    chinchilla_runs(&r, 5, 7, 0, 1);
    double budgets[2] = {1e21, 5.76e23};
    struct llm_scaling_opts o = {.method = LLM_SCALING_PARAMETRIC, .budgets = budgets, .nbudgets = 2};
    struct llm_scaling_fit f;
    fit_ok(&f, &r, &o);
    assert_int_equal(f.nparams, 5);
    assert_string_equal(f.names[0], "E");
    assert_string_equal(f.names[4], "beta");
    /* Noise-free: the law comes back to 4 digits. */
    const double truth[5] = {E0, A0, B0, AL0, BE0};
    for (int k = 0; k < 5; k++)
        if (fabs(f.p[k].v / truth[k] - 1) > 1e-3)
            fail_msg("%s = %g, want %g", f.names[k], f.p[k].v, truth[k]);
    double a = BE0 / (AL0 + BE0), G = pow(AL0 * A0 / (BE0 * B0), 1 / (AL0 + BE0));
    assert_true(fabs(f.a.v - a) < 1e-3 && fabs(f.b.v - (1 - a)) < 1e-3);
    assert_true(fabs(f.G.v / G - 1) < 1e-2);
    assert_true(isnan(f.a.lo)); /* no bootstrap, no interval */
    /* Predictions follow N_opt = G (C/6)^a and C = 6 N D. */
    for (int j = 0; j < 2; j++) {
        const struct llm_scaling_prediction *p = &f.pred[j];
        double N = G * pow(budgets[j] / 6, a);
        assert_true(fabs(p->N_opt.v / N - 1) < 2e-2);
        assert_true(fabs(6 * p->N_opt.v * p->D_opt.v / budgets[j] - 1) < 1e-9);
        assert_true(fabs(p->tokens_per_param.v - p->D_opt.v / p->N_opt.v) < 1e-9 * p->tokens_per_param.v);
        double L = E0 + A0 * pow(p->N_opt.v, -AL0) + B0 * pow(p->D_opt.v, -BE0);
        assert_true(fabs(p->loss.v - L) < 1e-3);
    }
    assert_true(f.rmse_log < 1e-4);
    assert_int_equal(f.nbudgets, 5);
    assert_int_equal(f.budgets[2].runs, 7);
    llm_scaling_fit_release(&f);
    llm_scaling_runs_release(&r);
}

/* With 0.5% log-loss noise: stated tolerances, and 95% bootstrap intervals
 * that cover every true parameter. */
static void test_parametric_noisy(void **state)
{
    (void)state;
    struct llm_scaling_runs r = {0};
    chinchilla_runs(&r, 6, 9, 0.005, 7);
    double budget = 1e21;
    struct llm_scaling_opts o = {.method = LLM_SCALING_PARAMETRIC, .bootstrap = 200, .seed = 3, .budgets = &budget,
                                 .nbudgets = 1};
    struct llm_scaling_fit f;
    fit_ok(&f, &r, &o);
    double a = BE0 / (AL0 + BE0);
    assert_true(fabs(f.p[0].v - E0) < 0.1);               /* E */
    assert_true(fabs(log(f.p[1].v / A0)) < 0.5);          /* A within a factor e^0.5 */
    assert_true(fabs(log(f.p[2].v / B0)) < 0.5);          /* B */
    assert_true(fabs(f.p[3].v - AL0) < 0.03);             /* alpha */
    assert_true(fabs(f.p[4].v - BE0) < 0.03);             /* beta */
    assert_true(fabs(f.a.v - a) < 0.03);
    const double truth[5] = {E0, A0, B0, AL0, BE0};
    for (int k = 0; k < 5; k++)
        expect_covers(&f.p[k], truth[k], f.names[k]);
    expect_covers(&f.a, a, "a");
    expect_covers(&f.b, 1 - a, "b");
    assert_true(f.a.lo < f.a.v && f.a.v < f.a.hi);
    assert_int_equal(f.boot_failed, 0);
    /* The prediction's interval holds its estimate. */
    assert_true(f.pred[0].N_opt.lo < f.pred[0].N_opt.v && f.pred[0].N_opt.v < f.pred[0].N_opt.hi);
    /* The same seed gives the same fit, to the bit. */
    struct llm_scaling_fit g;
    fit_ok(&g, &r, &o);
    cJSON *j1 = llm_scaling_fit_json(&f), *j2 = llm_scaling_fit_json(&g);
    char *s1 = cJSON_PrintUnformatted(j1), *s2 = cJSON_PrintUnformatted(j2);
    assert_string_equal(s1, s2);
    /* JSON: the keys of docs/scaling.md. */
    const cJSON *ci = cJSON_GetObjectItemCaseSensitive(j1, "ci");
    assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(ci, "alpha")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j1, "params"), "E")));
    const cJSON *pred = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j1, "predictions"), 0);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(pred, "tokens_per_param")));
    assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(pred, "ci")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j1, "method")->valuestring, "parametric");
    free(s1), free(s2);
    cJSON_Delete(j1), cJSON_Delete(j2);
    llm_scaling_fit_release(&g);
    llm_scaling_fit_release(&f);
    llm_scaling_runs_release(&r);
}

/* Approach 2 and approach 3 on the same runs: consistent exponents. */
static void test_methods_agree(void **state)
{
    (void)state;
    struct llm_scaling_runs r = {0};
    chinchilla_runs(&r, 6, 9, 0.003, 11);
    struct llm_scaling_opts o = {.method = LLM_SCALING_ISOFLOP, .bootstrap = 100, .seed = 1};
    struct llm_scaling_fit iso, par;
    fit_ok(&iso, &r, &o);
    o.method = LLM_SCALING_PARAMETRIC;
    o.bootstrap = 0;
    fit_ok(&par, &r, &o);
    double a = BE0 / (AL0 + BE0);
    if (fabs(iso.a.v - par.a.v) > 0.03 || fabs(iso.b.v - par.b.v) > 0.03)
        fail_msg("isoflop a %g b %g, parametric a %g b %g", iso.a.v, iso.b.v, par.a.v, par.b.v);
    assert_true(fabs(iso.a.v - a) < 0.03);
    assert_true(fabs(iso.a.v + iso.b.v - 1) < 1e-9); /* D_opt = C / 6 N_opt per budget */
    assert_int_equal(iso.nparams, 6);
    assert_string_equal(iso.names[1], "a");
    for (int g = 0; g < iso.nbudgets; g++) {
        assert_true(iso.budgets[g].used);
        assert_true(iso.budgets[g].inside); /* the grid is centered on the optimum */
        assert_true(iso.budgets[g].parabola[2] > 0);
        /* The vertex of the stored parabola (in ln N) is N_opt. */
        double xs = -iso.budgets[g].parabola[1] / (2 * iso.budgets[g].parabola[2]);
        assert_true(fabs(exp(xs) / iso.budgets[g].N_opt - 1) < 1e-6);
    }
    expect_covers(&iso.a, par.a.v, "isoflop a");
    double N, D, L;
    llm_scaling_fit_optimum(&iso, 1e20, &N, &D, &L);
    assert_true(fabs(6 * N * D / 1e20 - 1) < 1e-6);
    assert_true(isnan(llm_scaling_fit_loss(&iso, 1e9, 1e10)));
    llm_scaling_fit_release(&iso);
    llm_scaling_fit_release(&par);
    llm_scaling_runs_release(&r);
}

/* Kaplan et al. 2020's eq. 1.5 with their Table 2 constants. */
static void test_kaplan(void **state)
{
    (void)state;
    const double aN = 0.076, aD = 0.103, Nc = 6.4e13, Dc = 1.8e13;
    struct llm_scaling_runs r = {0};
    struct llm_rng rng;
    llm_rng_seed(&rng, 5);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++) {
            double N = 1e6 * pow(10, 0.6 * i), D = 1e8 * pow(10, 0.5 * j);
            double L = pow(pow(Nc / N, aN / aD) + Dc / D, aD) * exp(0.002 * llm_rng_normal(&rng));
            assert_int_equal(llm_scaling_runs_add(&r, N, D, 0, L, "test"), 0);
        }
    struct llm_scaling_opts o = {.method = LLM_SCALING_KAPLAN};
    struct llm_scaling_fit f;
    fit_ok(&f, &r, &o);
    assert_int_equal(f.nparams, 4);
    assert_string_equal(f.names[1], "alpha_N");
    if (fabs(f.p[1].v - aN) > 0.01 || fabs(f.p[3].v - aD) > 0.01)
        fail_msg("alpha_N %g alpha_D %g", f.p[1].v, f.p[3].v);
    assert_true(fabs(f.a.v - aD / (aN + aD)) < 0.03);
    assert_true(fabs(f.a.v + f.b.v - 1) < 1e-12);
    /* The envelope laws (the starts) exist and have the right sign. */
    assert_true(f.envelope[1] > 0 && f.envelope[3] > 0);
    /* At the optimum the law is lower than at 2x or 1/2x the size. */
    double N, D, L;
    llm_scaling_fit_optimum(&f, 1e22, &N, &D, &L);
    assert_true(L < llm_scaling_fit_loss(&f, 2 * N, D / 2) && L < llm_scaling_fit_loss(&f, N / 2, 2 * D));
    llm_scaling_fit_release(&f);
    llm_scaling_runs_release(&r);
}

static void expect_fit_error(const struct llm_scaling_runs *r, enum llm_scaling_method m, const char *msg)
{
    struct llm_scaling_opts o = {.method = m};
    struct llm_scaling_fit f;
    int rc = llm_scaling_fit_run(&f, r, &o);
    llm_scaling_fit_release(&f);
    if (rc != LLM_EINVAL || !strstr(llm_errmsg(), msg))
        fail_msg("want LLM_EINVAL with '%s', got %d '%s'", msg, rc, llm_errmsg());
}

static void test_degenerate(void **state)
{
    (void)state;
    struct llm_scaling_runs r = {0};
    chinchilla_runs(&r, 2, 2, 0, 1); /* 4 runs */
    for (int m = 0; m < 3; m++)
        expect_fit_error(&r, (enum llm_scaling_method)m, "at least 5 runs; got 4");
    llm_scaling_runs_release(&r);
    chinchilla_runs(&r, 1, 7, 0, 1); /* one budget */
    for (int m = 0; m < 3; m++)
        expect_fit_error(&r, (enum llm_scaling_method)m, "one compute budget");
    llm_scaling_runs_release(&r);
    chinchilla_runs(&r, 3, 2, 0, 1); /* 3 budgets of 2 sizes: no parabola */
    expect_fit_error(&r, LLM_SCALING_ISOFLOP, "at least 2 compute budgets with 3 or more model sizes");
    llm_scaling_runs_release(&r);
    /* Same N everywhere. */
    for (int i = 0; i < 6; i++)
        assert_int_equal(llm_scaling_runs_add(&r, 1e6, 1e6 * (i + 1), 0, 3.0 - 0.1 * i, "t"), 0);
    expect_fit_error(&r, LLM_SCALING_PARAMETRIC, "same N");
    llm_scaling_runs_release(&r);
    /* Loss rising with N and D: no positive exponents. */
    for (int i = 0; i < 8; i++)
        assert_int_equal(llm_scaling_runs_add(&r, 1e6 * (1 + i), 1e8 * (1 + i % 3), 0, 2 + 0.1 * i, "t"), 0);
    expect_fit_error(&r, LLM_SCALING_PARAMETRIC, "not both positive");
    /* Values that are not finite and positive. */
    assert_int_equal(llm_scaling_runs_add(&r, -1, 1e9, 0, 3, "row 7"), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "row 7: N is -1"));
    assert_int_equal(llm_scaling_runs_add(&r, 1e6, 0, 0, 3, "x"), LLM_EINVAL);
    assert_int_equal(llm_scaling_runs_add(&r, 1e6, 1e9, 0, NAN, "x"), LLM_EINVAL);
    assert_int_equal(llm_scaling_runs_add(&r, 1e6, 1e9, INFINITY, 3, "x"), LLM_EINVAL);
    assert_int_equal(llm_scaling_runs_add(&r, 1e6, 1e9, -5, 3, "x"), LLM_EINVAL);
    r.v[0].loss = NAN; /* runs that bypassed the reader are checked too */
    expect_fit_error(&r, LLM_SCALING_PARAMETRIC, "run 1: loss is nan");
    llm_scaling_runs_release(&r);
    /* Bad options. */
    chinchilla_runs(&r, 3, 5, 0, 1);
    struct llm_scaling_fit f;
    double bad = -1;
    struct llm_scaling_opts o = {.method = LLM_SCALING_PARAMETRIC, .budgets = &bad, .nbudgets = 1};
    assert_int_equal(llm_scaling_fit_run(&f, &r, &o), LLM_EINVAL);
    llm_scaling_fit_release(&f);
    o = (struct llm_scaling_opts){.method = LLM_SCALING_PARAMETRIC, .bootstrap = -1};
    assert_int_equal(llm_scaling_fit_run(&f, &r, &o), LLM_EINVAL);
    llm_scaling_fit_release(&f);
    llm_scaling_runs_release(&r);
    assert_int_equal(llm_scaling_method_parse("isoflop"), LLM_SCALING_ISOFLOP);
    assert_int_equal(llm_scaling_method_parse("chinchilla"), -1);
}

/* ---- reading runs ---- */

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *p = test_path(dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static void expect_read_error(const char *dir, const char *text, const char *msg)
{
    char *p = write_file(dir, "bad.csv", text);
    struct llm_scaling_runs r = {0};
    int rc = llm_scaling_runs_read(&r, p, LLM_SCALING_COUNT_TOTAL);
    if (rc >= 0 || !strstr(llm_errmsg(), msg))
        fail_msg("'%s': want an error with '%s', got %d '%s'", text, msg, rc, llm_errmsg());
    assert_int_equal(r.n, 0);
    llm_scaling_runs_release(&r);
    free(p);
}

static void test_read_tables(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *csv = write_file(dir, "runs.csv",
                           "# my runs\nname, loss ,D,N,C\n"
                           "a,3.5,2e9,1e8,\n"
                           "\n"
                           "\"b\",3.25,4e9,1e8,3e18\r\n");
    struct llm_scaling_runs r = {0};
    assert_int_equal(llm_scaling_runs_read(&r, csv, LLM_SCALING_COUNT_TOTAL), 0);
    assert_int_equal(r.n, 2);
    assert_true(r.v[0].N == 1e8 && r.v[0].D == 2e9 && r.v[0].loss == 3.5);
    assert_true(r.v[0].C == 6 * 1e8 * 2e9); /* empty C: 6ND */
    assert_true(r.v[1].C == 3e18);
    char *jl = write_file(dir, "runs.jsonl", "{\"N\": 2e8, \"D\": 1e9, \"loss\": 3.1, \"name\": \"x\"}\n\n"
                                             "{\"N\": 3e8, \"D\": 1e9, \"loss\": 3.0, \"C\": 2e18}\n");
    assert_int_equal(llm_scaling_runs_read(&r, jl, LLM_SCALING_COUNT_TOTAL), 0); /* appends */
    assert_int_equal(r.n, 4);
    assert_true(r.v[2].C == 6 * 2e8 * 1e9 && r.v[3].C == 2e18);
    llm_scaling_runs_release(&r);
    expect_read_error(dir, "N,D\n1,2\n", "no column 'loss'");
    expect_read_error(dir, "N,D,loss,N\n", "given twice");
    expect_read_error(dir, "N,D,loss\n1e6,1e9,3\n1e6,abc,3\n", ":3: D is not a number ('abc')");
    expect_read_error(dir, "N,D,loss\n1e6,1e9,nan\n", ":2: loss is nan");
    expect_read_error(dir, "N,D,loss\n1e6,-1e9,3\n", ":2: D is -1e+09");
    expect_read_error(dir, "N,D,loss\n1e6,1e9\n", "2 cells, the header has 3 columns");
    expect_read_error(dir, "N,D,loss\n1e6,1e9,3,4\n", "more cells than the header");
    expect_read_error(dir, "\n# nothing\n", "empty");
    expect_read_error(dir, "{\"N\": 1, \"D\": 2}\n", ":1: no \"loss\"");
    expect_read_error(dir, "{\"N\": \"1\", \"D\": 2, \"loss\": 3}\n", "\"N\" is not a number");
    expect_read_error(dir, "{\"N\": 1, \"D\": 2, \"loss\": 3}\n[1]\n", ":2: not a JSON object");
    expect_read_error(dir, "{\"N\": 1, \"D\": 2, \"loss\": 3, \"x\": \"\xff\"}\n", "invalid UTF-8");
    char *missing = test_path(dir, "nope.csv");
    assert_int_equal(llm_scaling_runs_read(&r, missing, LLM_SCALING_COUNT_TOTAL), LLM_EIO);
    free(missing);
    free(csv), free(jl);
    test_rmdir(dir);
}

/* A fake finished run folder as `llm pretrain` leaves it. */
static void make_run(const char *dir, const char *name, int d_model, double tokens, double loss, int finished)
{
    char *p = test_path(dir, name);
    assert_int_equal(mkdir(p, 0755), 0);
    struct llm_config c;
    assert_int_equal(llm_config_defaults(&c), 0);
    c.model.vocab_size = 256, c.model.context_length = 32, c.model.d_model = d_model, c.model.n_layers = 1;
    c.model.n_heads = 2, c.model.d_ff = 4 * d_model;
    char *text = llm_config_to_string(&c);
    llm_config_release(&c);
    free(write_file(p, "config.json", text));
    free(text);
    char sum[512];
    snprintf(sum, sizeof(sum), "{\"step\": %d, \"steps\": 100, \"tokens\": %g, \"params\": 12345, \"val_loss\": %g, "
                               "\"interrupted\": false}\n", finished ? 100 : 50, tokens, loss);
    free(write_file(p, "summary.json", sum));
    free(p);
}

static void test_read_folders(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    make_run(dir, "b", 32, 2e6, 4.5, 1);
    make_run(dir, "a", 16, 1e6, 5.0, 1);
    char *other = test_path(dir, "notes");
    assert_int_equal(mkdir(other, 0755), 0); /* no run here: ignored */
    struct llm_scaling_runs r = {0};
    assert_int_equal(llm_scaling_runs_read(&r, dir, LLM_SCALING_COUNT_TOTAL), 0);
    assert_int_equal(r.n, 2);
    assert_true(r.v[0].D == 1e6 && r.v[0].loss == 5.0); /* name order: a, b */
    assert_true(r.v[0].N == 12345 && r.v[0].C == 6 * 12345 * 1e6);
    llm_scaling_runs_release(&r);
    /* Non-embedding: from the run's config (V 256, T 32, C 16: 4608 embedding floats). */
    char *a = test_path(dir, "a");
    assert_int_equal(llm_scaling_runs_read(&r, a, LLM_SCALING_COUNT_NON_EMBEDDING), 0);
    assert_int_equal(r.n, 1);
    assert_true(r.v[0].N > 1000 && r.v[0].N < 12345);
    llm_scaling_runs_release(&r);
    /* An unfinished run is an error, naming it. */
    make_run(dir, "c", 16, 1e6, 5.0, 0);
    assert_int_equal(llm_scaling_runs_read(&r, dir, LLM_SCALING_COUNT_TOTAL), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "is not finished (step 50 of 100)"));
    assert_int_equal(r.n, 0);
    assert_int_equal(llm_scaling_runs_read(&r, other, LLM_SCALING_COUNT_TOTAL), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "no runs"));
    llm_scaling_runs_release(&r);
    free(a), free(other);
    test_rmdir(dir);
}

static void test_budgets(void **state)
{
    (void)state;
    struct llm_scaling_runs r = {0};
    const double C[6] = {1.05e18, 1e18, 3e18, 2.9e18, 1e19, 1.08e18};
    for (int i = 0; i < 6; i++)
        assert_int_equal(llm_scaling_runs_add(&r, 1e6, 1e9, C[i], 3, "t"), 0);
    int g[6];
    double Cg[6];
    assert_int_equal(llm_scaling_group_budgets(&r, g, Cg), 3);
    assert_true(g[0] == 0 && g[1] == 0 && g[5] == 0 && g[2] == 1 && g[3] == 1 && g[4] == 2);
    assert_true(fabs(Cg[0] / cbrt(1.05e18 * 1e18 * 1.08e18) - 1) < 1e-12);
    assert_true(Cg[2] == 1e19);
    llm_scaling_runs_release(&r);
}

/* ---- the sweep plan ---- */

static void test_plan(void **state)
{
    (void)state;
    struct llm_config c;
    assert_int_equal(llm_config_defaults(&c), 0);
    c.model.vocab_size = 512, c.model.context_length = 64, c.model.d_model = 64, c.model.n_heads = 4;
    c.model.d_ff = 256, c.model.n_layers = 2;
    c.train.batch_size = 8, c.train.grad_accum = 2, c.schedule.warmup = 100;
    struct llm_scaling_plan p;
    double budgets[2] = {1e12, 1e11};
    assert_int_equal(llm_scaling_plan_init(&p, &c, budgets, 2, "32x2,16x1,64x3", 20, 0, 0,
                                           LLM_SCALING_COUNT_TOTAL), 0);
    assert_int_equal(p.tokens_per_step, 8 * 64 * 2);
    assert_int_equal(p.nsizes, 3);
    assert_int_equal(p.sizes[0].d_model, 16); /* by size */
    assert_int_equal(p.sizes[0].n_heads, 1);  /* head size 16 kept */
    assert_int_equal(p.sizes[2].n_heads, 4);
    assert_int_equal(p.sizes[1].d_ff, 128);   /* d_ff = 4 d_model kept */
    assert_true(p.points[0].budget == 1e11);  /* budgets ascending */
    for (int i = 0; i < p.npoints; i++) {
        const struct llm_scaling_point *q = &p.points[i];
        double want = round(q->budget / (6 * p.sizes[q->size].N) / 1024);
        assert_true((double)q->steps == want && q->steps >= 20);
        assert_true(q->tokens == (double)q->steps * 1024);
        assert_true(q->warmup == (q->steps / 10 < 100 ? q->steps / 10 : 100));
    }
    char sets[LLM_SCALING_PLAN_SETS][64];
    int n = llm_scaling_plan_sets(&p, 0, sets);
    assert_int_equal(n, 7);
    assert_string_equal(sets[0], "model.d_model=16");
    assert_string_equal(p.points[0].name, "C=1e+11_16x1");
    int all = p.npoints + p.skipped;
    assert_int_equal(all, 6);
    llm_scaling_plan_release(&p);
    /* Tokens per parameter between 10 and 100 only. */
    assert_int_equal(llm_scaling_plan_init(&p, &c, budgets, 2, "16x1,32x2,64x3", 1, 10, 100,
                                           LLM_SCALING_COUNT_TOTAL), 0);
    for (int i = 0; i < p.npoints; i++) {
        double tpp = p.points[i].tokens / p.sizes[p.points[i].size].N;
        assert_true(tpp >= 10 && tpp <= 100);
    }
    assert_true(p.skipped > 0);
    llm_scaling_plan_release(&p);
    const struct { const char *sizes; double b; const char *msg; } bad[] = {
        {"24x2", 1e12, "not a multiple of the head size 16"},
        {"32x2,32x2", 1e12, "given twice"},
        {"32", 1e12, "expected d_model x n_layers"},
        {"32x2,", 1e12, "an empty size after the last comma"},
        {"32x0", 1e12, "expected d_model x n_layers"},
        {"", 1e12, "no sizes"},
        {"16x1", 1e3, "every point of the grid"},
        {"16x1", -1, "budget -1"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = llm_scaling_plan_init(&p, &c, &bad[i].b, 1, bad[i].sizes, 20, 0, 0, LLM_SCALING_COUNT_TOTAL);
        if (rc != LLM_EINVAL || !strstr(llm_errmsg(), bad[i].msg))
            fail_msg("sizes '%s': want '%s', got %d '%s'", bad[i].sizes, bad[i].msg, rc, llm_errmsg());
        assert_null(p.points);
    }
    double close[2] = {1e12, 1.05e12};
    assert_int_equal(llm_scaling_plan_init(&p, &c, close, 2, "16x1", 1, 0, 0, LLM_SCALING_COUNT_TOTAL), LLM_EINVAL);
    assert_int_equal(llm_scaling_plan_init(&p, &c, budgets, 2, "16x1", 1, 50, 10, LLM_SCALING_COUNT_TOTAL),
                     LLM_EINVAL);
    llm_config_release(&c);
}

/* ---- the plot, and the svg additions it uses ---- */

static void test_plot(void **state)
{
    (void)state;
    struct llm_scaling_runs r = {0};
    chinchilla_runs(&r, 3, 5, 0.002, 2);
    double budget = 1e21;
    for (int m = 0; m < 3; m++) {
        struct llm_scaling_opts o = {.method = (enum llm_scaling_method)m, .budgets = &budget, .nbudgets = 1};
        struct llm_scaling_fit f;
        fit_ok(&f, &r, &o);
        char *svg = llm_scaling_plot_render(&r, &f);
        assert_non_null(svg);
        assert_true(strncmp(svg, "<svg ", 5) == 0);
        assert_non_null(strstr(svg, "</svg>\n"));
        assert_null(strstr(svg, "nan"));
        assert_null(strstr(svg, "inf"));
        assert_non_null(strstr(svg, "C = 1e+18"));
        assert_non_null(strstr(svg, "compute-optimal"));
        assert_non_null(strstr(svg, "translate(720,0)")); /* two charts side by side */
        free(svg);
        llm_scaling_fit_release(&f);
    }
    llm_scaling_runs_release(&r);
    /* Series sharing a color, one left out of the legend. */
    double x[2] = {1, 2}, y[2] = {3, 4};
    struct llm_svg_series s[3] = {
        {.name = "data", .x = x, .y = y, .n = 2, .markers = 1},
        {.name = "hidden", .x = x, .y = y, .n = 2},
        {.name = "other", .x = x, .y = y, .n = 2},
    };
    const struct llm_svg_series_style ss[3] = {{.color = 3}, {.color = 3, .nolegend = 1}, {0}};
    struct llm_svg_style st = {.legend = LLM_SVG_LEGEND_BOTTOM_LEFT, .series = ss};
    struct llm_svg_chart c = {.title = "t"};
    char *plain = llm_svg_render(&c, s, 3), *styled = llm_svg_render_styled(&c, s, 3, NULL);
    assert_string_equal(plain, styled); /* no style = the plain chart */
    assert_non_null(strstr(plain, ">hidden</text>"));
    free(plain), free(styled);
    char *svg = llm_svg_render_styled(&c, s, 3, &st);
    assert_non_null(svg);
    assert_null(strstr(svg, "hidden"));
    assert_non_null(strstr(svg, "stroke=\"#2ca02c\""));   /* the curve in color 3 */
    assert_non_null(strstr(svg, "stroke=\"#2ca02c\" stroke-width=\"1.5\" points"));
    assert_non_null(strstr(svg, "<g fill=\"#2ca02c\">")); /* and the dots */
    assert_non_null(strstr(svg, "stroke=\"#2ca02c\" stroke-width=\"1.5\" points"));
    assert_non_null(strstr(svg, ">data</text>"));
    assert_non_null(strstr(svg, ">other</text>"));
    assert_non_null(strstr(svg, "<rect x=\"80.0\"")); /* the legend at the left: x0 + 8 */
    free(svg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lbfgs),
        cmocka_unit_test(test_parametric_exact),
        cmocka_unit_test(test_parametric_noisy),
        cmocka_unit_test(test_methods_agree),
        cmocka_unit_test(test_kaplan),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_read_tables),
        cmocka_unit_test(test_read_folders),
        cmocka_unit_test(test_budgets),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_plot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
