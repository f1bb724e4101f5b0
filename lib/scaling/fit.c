/* fit.c: the driver of fit.h: checks the runs, fits the chosen law
 * (laws.c), derives the compute-optimal allocation and predictions, and
 * bootstraps every reported number (Efron & Tibshirani 1993, percentile
 * intervals; resampling runs with replacement, within each compute budget
 * for isoflop so every IsoFLOP profile keeps its size). */
#include "scaling/fit_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/rng.h"

#define BOOT_STARTS 6 /* distinct local minima of the full fit each resample restarts from */

static const char *const method_names[] = {"parametric", "isoflop", "kaplan"};

const char *llm_scaling_method_name(enum llm_scaling_method m)
{
    return (unsigned)m < 3 ? method_names[m] : "?";
}

int llm_scaling_method_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, method_names[i]))
            return i;
    return -1;
}

void llm_scaling_fit_release(struct llm_scaling_fit *f)
{
    free(f->group);
    free(f->budgets);
    free(f->pred);
    memset(f, 0, sizeof(*f));
}

/* The data arrays of scaling_data, owned here. */
struct arrays {
    double *buf;
    int *group;
    const double *Cg; /* (ngroups) the budgets themselves (d.lnCg are their logs) */
    struct scaling_data d;
};

/* 1 if v holds two values that differ (beyond rounding). */
static int varies(const double *v, int n)
{
    for (int i = 1; i < n; i++)
        if (fabs(v[i] - v[0]) > 1e-9 * fmax(1, fabs(v[0])))
            return 1;
    return 0;
}

static int check_runs(const struct llm_scaling_runs *r)
{
    if (r->n < LLM_SCALING_MIN_RUNS)
        return llm_err(LLM_EINVAL, "a scaling fit needs at least %d runs; got %zu", LLM_SCALING_MIN_RUNS, r->n);
    if (r->n > 1000000)
        return llm_err(LLM_EINVAL, "%zu runs: at most 1000000", r->n);
    for (size_t i = 0; i < r->n; i++) {
        const struct llm_scaling_run *u = &r->v[i];
        const double v[4] = {u->N, u->D, u->C, u->loss};
        static const char *const nm[4] = {"N", "D", "C", "loss"};
        for (int k = 0; k < 4; k++)
            if (!isfinite(v[k]) || !(v[k] > 0))
                return llm_err(LLM_EINVAL, "run %zu: %s is %g; it must be a finite positive number", i + 1, nm[k],
                               v[k]);
    }
    return 0;
}

static int arrays_init(struct arrays *A, const struct llm_scaling_runs *r, const struct llm_scaling_opts *o)
{
    int n = (int)r->n;
    memset(A, 0, sizeof(*A));
    A->buf = llm_malloc((size_t)(8 * n) * sizeof(double), "the fit's data");
    A->group = llm_malloc((size_t)n * sizeof(int), "the fit's data");
    if (!A->buf || !A->group)
        return LLM_ENOMEM;
    double *lnN = A->buf, *lnD = lnN + n, *lnC = lnD + n, *L = lnC + n, *lnL = L + n, *w = lnL + n, *Cg = w + n;
    double *lnCg = Cg + n;
    for (int i = 0; i < n; i++) {
        lnN[i] = log(r->v[i].N), lnD[i] = log(r->v[i].D), lnC[i] = log(r->v[i].C);
        L[i] = r->v[i].loss, lnL[i] = log(r->v[i].loss), w[i] = 1;
    }
    int G = llm_scaling_group_budgets(r, A->group, Cg);
    if (G < 0)
        return G;
    for (int g = 0; g < G; g++)
        lnCg[g] = log(Cg[g]);
    A->Cg = Cg;
    A->d = (struct scaling_data){.n = n, .lnN = lnN, .lnD = lnD, .lnC = lnC, .L = L, .lnL = lnL, .w = w,
                                 .group = A->group, .ngroups = G, .lnCg = lnCg,
                                 .delta = o->huber_delta > 0 ? o->huber_delta : 1e-3};
    if (G < 2)
        return llm_err(LLM_EINVAL, "all %d runs have one compute budget (C = %.3g): a scaling law needs runs at 2 "
                       "or more budgets", n, Cg[0]);
    if (!varies(lnN, n))
        return llm_err(LLM_EINVAL, "all %d runs have the same N (%.4g): a scaling law needs 2 or more model sizes",
                       n, r->v[0].N);
    if (!varies(lnD, n))
        return llm_err(LLM_EINVAL, "all %d runs have the same D (%.4g): a scaling law needs 2 or more token counts",
                       n, r->v[0].D);
    return 0;
}

/* The numbers of one fit, in a fixed order: public parameters, a, b, G,
 * then N_opt, D_opt, loss, tokens per parameter at each prediction budget. */
static int n_quantities(int np, int npred) { return np + 3 + 4 * npred; }

static void quantities(const struct law *l, const double *budgets, int npred, double *q)
{
    int np = law_nparams(l->method);
    law_public(l, q);
    law_derive(l, &q[np], &q[np + 1], &q[np + 2]);
    for (int j = 0; j < npred; j++) {
        double *p = q + np + 3 + 4 * j;
        law_optimum(l, budgets[j], &p[0], &p[1], &p[2]);
        p[3] = p[1] / p[0];
    }
}

/* The p-quantile of sorted v[0..k) by linear interpolation. */
static double quantile(const double *v, int k, double p)
{
    double h = p * (k - 1);
    int i = (int)floor(h);
    return i + 1 < k ? v[i] + (h - i) * (v[i + 1] - v[i]) : v[k - 1];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Resample weights: counts of n draws with replacement, per budget group for
 * isoflop (each group redraws its own runs). One sequential stream from the
 * seed, drawn before any fitting, so the result does not depend on threads. */
static void draw_weights(struct llm_rng *rng, const struct scaling_data *d, enum llm_scaling_method m, double *w,
                         int *members)
{
    memset(w, 0, (size_t)d->n * sizeof(*w));
    if (m != LLM_SCALING_ISOFLOP) {
        for (int k = 0; k < d->n; k++)
            w[llm_rng_below(rng, (uint64_t)d->n)] += 1;
        return;
    }
    for (int g = 0; g < d->ngroups; g++) {
        int c = 0;
        for (int i = 0; i < d->n; i++)
            if (d->group[i] == g)
                members[c++] = i;
        for (int k = 0; k < c; k++)
            w[members[llm_rng_below(rng, (uint64_t)c)]] += 1;
    }
}

static void set_est(struct llm_scaling_est *e, double v, const double *ci)
{
    e->v = v;
    e->lo = ci ? ci[0] : NAN;
    e->hi = ci ? ci[1] : NAN;
}

static int bootstrap(struct llm_scaling_fit *f, const struct scaling_data *d, const struct law *top, int ntop,
                     const struct llm_scaling_opts *o, double *ci)
{
    int B = o->bootstrap, n = d->n, np = law_nparams(f->method), Q = n_quantities(np, o->nbudgets);
    double *W = llm_malloc((size_t)B * (size_t)n * sizeof(double), "bootstrap weights");
    double *vals = llm_malloc((size_t)B * (size_t)Q * sizeof(double), "bootstrap results");
    double *col = llm_malloc((size_t)B * sizeof(double), "bootstrap results");
    int *members = llm_malloc((size_t)n * sizeof(int), "bootstrap");
    int rc = 0;
    if (!W || !vals || !col || !members) {
        rc = LLM_ENOMEM;
        goto out;
    }
    struct llm_rng rng;
    llm_rng_seed(&rng, o->seed);
    for (int b = 0; b < B; b++)
        draw_weights(&rng, d, f->method, W + (size_t)b * n, members);
    int failed = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : failed)
    for (int b = 0; b < B; b++) {
        struct scaling_data db = *d;
        db.w = W + (size_t)b * n;
        struct law l;
        int nst = ntop, err;
        if (f->method == LLM_SCALING_ISOFLOP)
            err = law_fit_isoflop(&db, &l, NULL);
        else
            err = law_fit_smooth(&db, f->method, top, &nst, &l, NULL, NULL);
        double *q = vals + (size_t)b * Q;
        if (err) {
            for (int k = 0; k < Q; k++)
                q[k] = NAN;
            failed++;
        } else {
            quantities(&l, o->budgets, o->nbudgets, q);
        }
    }
    llm_err_clear(); /* resamples that failed set messages; they are counted, not errors */
    f->boot_failed = failed;
    double lo = (1 - f->level) / 2, hi = 1 - lo;
    for (int k = 0; k < Q; k++) {
        int c = 0;
        for (int b = 0; b < B; b++) {
            double v = vals[(size_t)b * Q + k];
            if (isfinite(v))
                col[c++] = v;
        }
        qsort(col, (size_t)c, sizeof(double), cmp_double);
        /* Fewer than half the resamples with a value: no interval. */
        ci[2 * k] = 2 * c >= B && c > 0 ? quantile(col, c, lo) : NAN;
        ci[2 * k + 1] = 2 * c >= B && c > 0 ? quantile(col, c, hi) : NAN;
    }
out:
    free(W), free(vals), free(col), free(members);
    return rc;
}

/* The fitted law, kept for llm_scaling_fit_loss/optimum: its fitting
 * coordinates are recovered from the public parameters. */
static void law_of(const struct llm_scaling_fit *f, struct law *l)
{
    memset(l, 0, sizeof(*l));
    l->method = f->method;
    const struct llm_scaling_est *p = f->p;
    switch (f->method) {
    case LLM_SCALING_PARAMETRIC:
        l->th[0] = log(p[1].v), l->th[1] = log(p[2].v), l->th[2] = log(p[0].v), l->th[3] = p[3].v,
        l->th[4] = p[4].v;
        break;
    case LLM_SCALING_KAPLAN:
        l->th[0] = log(p[0].v), l->th[1] = log(p[2].v), l->th[2] = p[1].v, l->th[3] = p[3].v;
        break;
    case LLM_SCALING_ISOFLOP:
        l->th[0] = log(p[0].v), l->th[1] = p[1].v, l->th[2] = log(p[2].v), l->th[3] = p[3].v,
        l->th[4] = log(p[4].v), l->th[5] = p[5].v;
        break;
    }
}

double llm_scaling_fit_loss(const struct llm_scaling_fit *f, double N, double D)
{
    struct law l;
    law_of(f, &l);
    return law_loss(&l, N, D);
}

void llm_scaling_fit_optimum(const struct llm_scaling_fit *f, double C, double *N, double *D, double *loss)
{
    struct law l;
    law_of(f, &l);
    law_optimum(&l, C, N, D, loss);
}

static int check_opts(const struct llm_scaling_opts *o)
{
    if ((unsigned)o->method > LLM_SCALING_KAPLAN)
        return llm_err(LLM_EINVAL, "unknown scaling-fit method %d", (int)o->method);
    if (o->bootstrap < 0 || o->bootstrap > LLM_SCALING_MAX_BOOTSTRAP)
        return llm_err(LLM_EINVAL, "bootstrap: %d resamples (0 to %d)", o->bootstrap, LLM_SCALING_MAX_BOOTSTRAP);
    if (o->level != 0 && !(o->level > 0 && o->level < 1))
        return llm_err(LLM_EINVAL, "interval level %g: it must be in (0, 1)", o->level);
    if (!(o->huber_delta >= 0) || !isfinite(o->huber_delta))
        return llm_err(LLM_EINVAL, "huber delta %g: it must be a positive number", o->huber_delta);
    if (o->nbudgets < 0 || o->nbudgets > 1000)
        return llm_err(LLM_EINVAL, "%d prediction budgets (at most 1000)", o->nbudgets);
    for (int j = 0; j < o->nbudgets; j++)
        if (!isfinite(o->budgets[j]) || !(o->budgets[j] > 0))
            return llm_err(LLM_EINVAL, "budget %g: it must be a finite positive number of FLOPs", o->budgets[j]);
    return 0;
}

int llm_scaling_fit_run(struct llm_scaling_fit *f, const struct llm_scaling_runs *r,
                        const struct llm_scaling_opts *o)
{
    memset(f, 0, sizeof(*f));
    f->method = o->method;
    f->level = o->level > 0 ? o->level : 0.95;
    f->bootstrap = o->bootstrap;
    f->seed = o->seed;
    f->nruns = r->n;
    for (int k = 0; k < 4; k++)
        f->envelope[k] = NAN;
    int rc = check_opts(o);
    if (!rc)
        rc = check_runs(r);
    if (rc)
        return rc;
    struct arrays A;
    struct law best, top[BOOT_STARTS];
    int ntop = BOOT_STARTS;
    double *ci = NULL;
    rc = arrays_init(&A, r, o);
    const struct scaling_data *d = &A.d;
    f->huber_delta = d->delta;
    int G = d->ngroups, np = law_nparams(o->method);
    if (!rc) {
        f->nbudgets = G;
        f->budgets = llm_calloc((size_t)G, sizeof(*f->budgets), "the fit's budgets");
        f->pred = llm_calloc((size_t)(o->nbudgets ? o->nbudgets : 1), sizeof(*f->pred), "the fit's predictions");
        f->group = llm_malloc(r->n * sizeof(int), "the fit's groups");
        if (!f->budgets || !f->pred || !f->group)
            rc = LLM_ENOMEM;
        else
            memcpy(f->group, A.group, r->n * sizeof(int));
    }
    if (!rc) {
        if (o->method == LLM_SCALING_ISOFLOP) {
            rc = law_fit_isoflop(d, &best, f->budgets);
            top[0] = best, ntop = 1;
        } else {
            if (o->method == LLM_SCALING_KAPLAN)
                law_kaplan_envelope(d, f->envelope);
            rc = law_fit_smooth(d, o->method, NULL, &f->starts, &best, top, &ntop);
        }
    }
    double a = NAN, b = NAN, Gc = NAN;
    if (!rc) {
        law_derive(&best, &a, &b, &Gc);
        if (!isfinite(a) || !isfinite(b) || !isfinite(Gc)) {
            /* the two exponents: alpha, beta (parametric) or alpha_N, alpha_D (kaplan) */
            int i1 = o->method == LLM_SCALING_KAPLAN ? 1 : 3, i2 = o->method == LLM_SCALING_KAPLAN ? 3 : 4;
            double p[LAW_MAX];
            law_public(&best, p);
            rc = llm_err(LLM_EINVAL, "%s fit: the fitted exponents (%s = %.3g, %s = %.3g) are not both positive: "
                         "these runs do not show the loss falling with both N and D",
                         llm_scaling_method_name(o->method), law_param_name(o->method, i1), p[i1],
                         law_param_name(o->method, i2), p[i2]);
        }
    }
    if (!rc) {
        f->nparams = np;
        f->objective = o->method == LLM_SCALING_ISOFLOP ? NAN : best.f;
        for (int g = 0; g < G; g++) {
            struct llm_scaling_budget *u = &f->budgets[g];
            u->C = A.Cg[g];
            for (int i = 0; i < d->n; i++)
                u->runs += d->group[i] == g;
            if (o->method != LLM_SCALING_ISOFLOP) {
                law_optimum(&best, u->C, &u->N_opt, &u->D_opt, &u->loss);
                u->parabola[0] = u->parabola[1] = u->parabola[2] = NAN;
            }
        }
        /* Goodness of fit: RMS residual of ln L (ln N_opt about its law for isoflop). */
        double ss = 0;
        int k = 0;
        for (int i = 0; i < d->n && o->method != LLM_SCALING_ISOFLOP; i++, k++) {
            double e = log(law_loss(&best, r->v[i].N, r->v[i].D)) - d->lnL[i];
            ss += e * e;
        }
        for (int g = 0; g < G && o->method == LLM_SCALING_ISOFLOP; g++)
            if (f->budgets[g].used) {
                double e = log(f->budgets[g].N_opt) - (best.th[0] + best.th[1] * d->lnCg[g]);
                ss += e * e, k++;
            }
        f->rmse_log = sqrt(ss / k);
    }
    int Q = n_quantities(np, o->nbudgets);
    if (!rc && o->bootstrap > 0) {
        if (!(ci = llm_malloc((size_t)(2 * Q) * sizeof(double), "bootstrap intervals")))
            rc = LLM_ENOMEM;
        else
            rc = bootstrap(f, d, top, ntop, o, ci);
    }
    if (!rc) {
        double *q = llm_malloc((size_t)Q * sizeof(double), "the fit's results");
        if (!q) {
            rc = LLM_ENOMEM;
        } else {
            quantities(&best, o->budgets, o->nbudgets, q);
            for (int k = 0; k < np; k++) {
                f->names[k] = law_param_name(o->method, k);
                set_est(&f->p[k], q[k], ci ? ci + 2 * k : NULL);
            }
            set_est(&f->a, q[np], ci ? ci + 2 * np : NULL);
            set_est(&f->b, q[np + 1], ci ? ci + 2 * (np + 1) : NULL);
            set_est(&f->G, q[np + 2], ci ? ci + 2 * (np + 2) : NULL);
            f->npred = o->nbudgets;
            for (int j = 0; j < o->nbudgets; j++) {
                int base = np + 3 + 4 * j;
                struct llm_scaling_prediction *p = &f->pred[j];
                p->C = o->budgets[j];
                set_est(&p->N_opt, q[base], ci ? ci + 2 * base : NULL);
                set_est(&p->D_opt, q[base + 1], ci ? ci + 2 * (base + 1) : NULL);
                set_est(&p->loss, q[base + 2], ci ? ci + 2 * (base + 2) : NULL);
                set_est(&p->tokens_per_param, q[base + 3], ci ? ci + 2 * (base + 3) : NULL);
            }
            free(q);
        }
    }
    if (!rc && o->bootstrap > 0 && f->boot_failed > 0)
        llm_warn("%d of %d bootstrap resamples gave no fit (left out of the intervals)", f->boot_failed,
                 o->bootstrap);
    free(ci);
    free(A.buf);
    free(A.group);
    return rc;
}
