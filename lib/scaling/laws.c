/* laws.c: the three scaling-law fits of fit.h on one (weighted) set of
 * runs: the Chinchilla parametric law and Kaplan's L(N, D) by Huber loss and
 * multi-start L-BFGS, and IsoFLOP parabolas with power laws by least squares;
 * plus what each law says about the compute-optimal model. */
#include "scaling/fit_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "scaling/lbfgs.h"

/* ---- the Huber objectives ---- */

/* Huber (1964): r^2/2 within delta, linear beyond; *dh = its derivative. */
static double huber(double r, double delta, double *dh)
{
    double ar = fabs(r);
    if (ar <= delta) {
        *dh = r;
        return 0.5 * r * r;
    }
    *dh = copysign(delta, r);
    return delta * (ar - 0.5 * delta);
}

/* Chinchilla's objective (Hoffmann et al. 2022, eq. 10 and appendix D.2):
 * the mean over runs of Huber_delta(LSE(a - alpha lnN, b - beta lnD, e) - lnL),
 * LSE the log-sum-exp, so that L = E + A/N^alpha + B/D^beta in log space.
 * With softmax weights s_k of the three terms, dLSE/da = s_1,
 * dLSE/dalpha = -s_1 lnN, dLSE/db = s_2, dLSE/dbeta = -s_2 lnD, dLSE/de = s_3. */
static double obj_parametric(void *ctx, const double *th, double *g, int n)
{
    const struct scaling_data *d = ctx;
    double f = 0, W = 0;
    memset(g, 0, (size_t)n * sizeof(*g));
    for (int i = 0; i < d->n; i++) {
        double w = d->w[i];
        if (w == 0)
            continue;
        double u1 = th[0] - th[3] * d->lnN[i], u2 = th[1] - th[4] * d->lnD[i], u3 = th[2];
        double m = fmax(u1, fmax(u2, u3));
        double e1 = exp(u1 - m), e2 = exp(u2 - m), e3 = exp(u3 - m), s = e1 + e2 + e3;
        double dh, r = m + log(s) - d->lnL[i];
        f += w * huber(r, d->delta, &dh);
        double c = w * dh / s;
        g[0] += c * e1;
        g[3] -= c * e1 * d->lnN[i];
        g[1] += c * e2;
        g[4] -= c * e2 * d->lnD[i];
        g[2] += c * e3;
        W += w;
    }
    for (int k = 0; k < n; k++)
        g[k] /= W;
    return f / W;
}

/* Kaplan et al. 2020 eq. 1.5 in log space: ln L = alpha_D LSE(u1, u2) with
 * u1 = p (ln N_c - ln N), p = alpha_N / alpha_D, u2 = ln D_c - ln D. With
 * softmax weights s1, s2 and S = LSE: d/dlnN_c = alpha_N s1, d/dlnD_c =
 * alpha_D s2, d/dalpha_N = s1 (ln N_c - ln N), d/dalpha_D = S - s1 u1.
 * alpha_D <= 0 is outside the law's domain. */
static double obj_kaplan(void *ctx, const double *th, double *g, int n)
{
    const struct scaling_data *d = ctx;
    double nc = th[0], dc = th[1], aN = th[2], aD = th[3];
    if (!(aD > 1e-8))
        return INFINITY;
    double p = aN / aD, f = 0, W = 0;
    memset(g, 0, (size_t)n * sizeof(*g));
    for (int i = 0; i < d->n; i++) {
        double w = d->w[i];
        if (w == 0)
            continue;
        double u1 = p * (nc - d->lnN[i]), u2 = dc - d->lnD[i], m = fmax(u1, u2);
        double e1 = exp(u1 - m), e2 = exp(u2 - m), s = e1 + e2;
        double S = m + log(s), s1 = e1 / s, s2 = e2 / s;
        double dh, r = aD * S - d->lnL[i];
        f += w * huber(r, d->delta, &dh);
        double c = w * dh;
        g[0] += c * aN * s1;
        g[1] += c * aD * s2;
        g[2] += c * s1 * (nc - d->lnN[i]);
        g[3] += c * (S - s1 * u1);
        W += w;
    }
    for (int k = 0; k < n; k++)
        g[k] /= W;
    return f / W;
}

/* ---- starts ---- */

/* Hoffmann et al. 2022 appendix D.2: alpha, beta in {0, 0.5, ..., 2},
 * e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}: 4500 starts. */
#define PARAMETRIC_STARTS (5 * 5 * 5 * 6 * 6)

static void parametric_start(int k, struct law *l)
{
    l->method = LLM_SCALING_PARAMETRIC;
    memset(l->th, 0, sizeof(l->th));
    l->th[3] = 0.5 * (k % 5), k /= 5;      /* alpha */
    l->th[4] = 0.5 * (k % 5), k /= 5;      /* beta */
    l->th[2] = -1 + 0.5 * (k % 5), k /= 5; /* e */
    l->th[0] = 5.0 * (k % 6), k /= 6;      /* a */
    l->th[1] = 5.0 * k;                    /* b */
}

/* A least-squares line y = c0 + c1 x through k points; 0, or -1 when the
 * x are all equal. */
static int line_fit(const double *x, const double *y, int k, double *c0, double *c1)
{
    double mx = 0, my = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < k; i++)
        mx += x[i] / k, my += y[i] / k;
    for (int i = 0; i < k; i++)
        sxx += (x[i] - mx) * (x[i] - mx), sxy += (x[i] - mx) * (y[i] - my);
    if (k < 2 || !(sxx > 1e-12 * fmax(1, mx * mx)))
        return -1;
    *c1 = sxy / sxx;
    *c0 = my - *c1 * mx;
    return 0;
}

/* The lower envelope of (key, ln L) over the rows in use: one point per
 * distinct key (within 1%), its lowest loss; a power law through them.
 * Returns 0 with ln K_c and alpha (L = (K_c / K)^alpha), or -1. */
static int envelope_law(const struct scaling_data *d, const double *key, double *lnKc, double *alpha)
{
    double *px = malloc((size_t)d->n * sizeof(double)), *py = malloc((size_t)d->n * sizeof(double));
    int k = 0, rc = -1;
    if (px && py) {
        for (int i = 0; i < d->n; i++) {
            if (d->w[i] == 0)
                continue;
            int j = 0;
            while (j < k && fabs(px[j] - key[i]) > 0.01)
                j++;
            if (j == k)
                px[k] = key[i], py[k++] = d->lnL[i];
            else
                py[j] = fmin(py[j], d->lnL[i]);
        }
        double c0, c1;
        if (!line_fit(px, py, k, &c0, &c1) && c1 < 0) {
            *alpha = -c1;      /* ln L = alpha ln K_c - alpha ln K */
            *lnKc = c0 / *alpha;
            rc = 0;
        }
    }
    free(px), free(py);
    return rc;
}

void law_kaplan_envelope(const struct scaling_data *d, double env[4])
{
    double lnc, al;
    env[0] = env[1] = env[2] = env[3] = NAN;
    if (!envelope_law(d, d->lnN, &lnc, &al))
        env[0] = exp(lnc), env[1] = al;
    if (!envelope_law(d, d->lnD, &lnc, &al))
        env[2] = exp(lnc), env[3] = al;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of the in-use values of v (scratch: n doubles). */
static double median(const struct scaling_data *d, const double *v, double *scratch)
{
    int k = 0;
    for (int i = 0; i < d->n; i++)
        if (d->w[i] != 0)
            scratch[k++] = v[i];
    qsort(scratch, (size_t)k, sizeof(double), cmp_double);
    return k ? (k % 2 ? scratch[k / 2] : 0.5 * (scratch[k / 2 - 1] + scratch[k / 2])) : NAN;
}

/* Kaplan starts: alpha_N, alpha_D in {0.05, 0.1, 0.2, 0.4, 0.8}; ln N_c and
 * ln D_c where each term alone gives the median loss at the median N or D
 * (ln L = alpha (ln K_c - ln K)), or e^-0.5 or e^0.5 times it; then the
 * envelope laws (fit.h). Returns the count written to s (at most 226). */
#define KAPLAN_STARTS (5 * 5 * 3 * 3 + 1)

static int kaplan_starts(const struct scaling_data *d, struct law *s)
{
    static const double al[5] = {0.05, 0.1, 0.2, 0.4, 0.8}, off[3] = {-0.5, 0, 0.5};
    double *scratch = malloc((size_t)d->n * sizeof(double));
    if (!scratch)
        return 0;
    double mN = median(d, d->lnN, scratch), mD = median(d, d->lnD, scratch), mL = median(d, d->lnL, scratch);
    free(scratch);
    int k = 0;
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            for (int u = 0; u < 3; u++)
                for (int v = 0; v < 3; v++) {
                    struct law *l = &s[k++];
                    memset(l, 0, sizeof(*l));
                    l->method = LLM_SCALING_KAPLAN;
                    l->th[2] = al[i], l->th[3] = al[j];
                    l->th[0] = mN + (mL + off[u]) / al[i];
                    l->th[1] = mD + (mL + off[v]) / al[j];
                }
    double env[4];
    law_kaplan_envelope(d, env);
    if (isfinite(env[0] + env[1] + env[2] + env[3])) {
        struct law *l = &s[k++];
        memset(l, 0, sizeof(*l));
        l->method = LLM_SCALING_KAPLAN;
        l->th[0] = log(env[0]), l->th[1] = log(env[2]), l->th[2] = env[1], l->th[3] = env[3];
    }
    return k;
}

/* ---- multi-start L-BFGS ---- */

int law_nparams(enum llm_scaling_method m)
{
    return m == LLM_SCALING_PARAMETRIC ? 5 : m == LLM_SCALING_KAPLAN ? 4 : 6;
}

/* By objective; ties (equal minima) keep their start order, so the result
 * is the same on every run. */
static int cmp_f(const void *a, const void *b)
{
    const struct law *x = a, *y = b;
    if (x->f != y->f)
        return x->f < y->f ? -1 : 1;
    return (x->start > y->start) - (x->start < y->start);
}

#define POLISH 8 /* distinct best starts refined to the tight tolerance */

int law_fit_smooth(const struct scaling_data *d, enum llm_scaling_method m, const struct law *starts,
                   int *nstarts, struct law *best, struct law *top, int *ntop)
{
    llm_lbfgs_fn fn = m == LLM_SCALING_PARAMETRIC ? obj_parametric : obj_kaplan;
    int np = law_nparams(m), ns = *nstarts;
    struct law *grid = NULL;
    if (!starts) {
        ns = m == LLM_SCALING_PARAMETRIC ? PARAMETRIC_STARTS : KAPLAN_STARTS;
        if (!(grid = llm_malloc((size_t)ns * sizeof(*grid), "the fit's starts")))
            return LLM_ENOMEM;
        if (m == LLM_SCALING_PARAMETRIC)
            for (int k = 0; k < ns; k++)
                parametric_start(k, &grid[k]);
        else
            ns = kaplan_starts(d, grid);
        starts = grid;
        *nstarts = ns;
    }
    struct law *res = llm_malloc((size_t)(ns ? ns : 1) * sizeof(*res), "the fit's results");
    if (!res) {
        free(grid);
        return LLM_ENOMEM;
    }
    /* Two passes: every start to a loose tolerance (most of the grid falls
     * into the same few basins), then the best distinct few polished to a
     * tight one. Starts are independent and deterministic and the order of
     * the results is fixed (f, then index), so threads cannot change the fit. */
    const struct llm_lbfgs_opts loose = {.ftol = 1e-6}, tight = {.ftol = 1e-12};
    int polish_all = ns <= POLISH;
#pragma omp parallel for schedule(dynamic, 8) if (ns > 64)
    for (int k = 0; k < ns; k++) {
        res[k] = starts[k];
        res[k].start = k;
        struct llm_lbfgs_result lr;
        llm_lbfgs_minimize(fn, (void *)d, res[k].th, np, polish_all ? &tight : &loose, &lr);
        res[k].f = isfinite(lr.f) ? lr.f : INFINITY;
    }
    qsort(res, (size_t)ns, sizeof(*res), cmp_f);
    int kt = 0; /* distinct candidates, moved to the front of res */
    for (int k = 0; k < ns && kt < POLISH && isfinite(res[k].f); k++) {
        int dup = 0;
        for (int j = 0; j < kt && !dup; j++) {
            double dist = 0;
            for (int i = 0; i < np; i++)
                dist = fmax(dist, fabs(res[k].th[i] - res[j].th[i]));
            dup = dist < 1e-2;
        }
        if (!dup)
            res[kt++] = res[k];
    }
    if (!polish_all)
        for (int k = 0; k < kt; k++) {
            struct llm_lbfgs_result lr;
            llm_lbfgs_minimize(fn, (void *)d, res[k].th, np, &tight, &lr);
            res[k].f = isfinite(lr.f) ? lr.f : INFINITY;
        }
    qsort(res, (size_t)kt, sizeof(*res), cmp_f);
    int rc = 0;
    if (kt == 0 || !isfinite(res[0].f)) {
        rc = llm_err(LLM_EINVAL, "%s fit: no start reached a finite objective", llm_scaling_method_name(m));
    } else {
        *best = res[0];
        /* The bootstrap restarts from these distinct local minima, so a
         * resample may fall into another basin. */
        if (top) {
            int nt = kt < *ntop ? kt : *ntop;
            for (int k = 0; k < nt; k++)
                top[k] = res[k];
            *ntop = nt;
        }
    }
    free(res);
    free(grid);
    return rc;
}

/* ---- isoflop ---- */

/* The weighted least-squares parabola y = p0 + p1 t + p2 t^2 (t = x - xm)
 * through k points: 0, or -1 when the normal equations are singular. */
static int parabola_fit(const double *x, const double *y, const double *w, int k, double xm, double p[3])
{
    double S[5] = {0}, T[3] = {0}; /* sums of w t^j and w y t^j */
    for (int i = 0; i < k; i++) {
        double t = x[i] - xm, tj = w[i];
        for (int j = 0; j < 5; j++) {
            if (j < 3)
                T[j] += tj * y[i];
            S[j] += tj;
            tj *= t;
        }
    }
    /* Solve [[S0 S1 S2] [S1 S2 S3] [S2 S3 S4]] p = T by Cramer's rule. */
    double M[3][3] = {{S[0], S[1], S[2]}, {S[1], S[2], S[3]}, {S[2], S[3], S[4]}};
#define DET3(A) ((A)[0][0] * ((A)[1][1] * (A)[2][2] - (A)[1][2] * (A)[2][1]) - \
                 (A)[0][1] * ((A)[1][0] * (A)[2][2] - (A)[1][2] * (A)[2][0]) + \
                 (A)[0][2] * ((A)[1][0] * (A)[2][1] - (A)[1][1] * (A)[2][0]))
    double det = DET3(M);
    if (!(fabs(det) > 1e-12 * fabs(S[0] * S[2] * S[4])) || !isfinite(det))
        return -1;
    for (int c = 0; c < 3; c++) {
        double A[3][3];
        memcpy(A, M, sizeof(A));
        for (int r = 0; r < 3; r++)
            A[r][c] = T[r];
        p[c] = DET3(A) / det;
    }
#undef DET3
    return 0;
}

int law_fit_isoflop(const struct scaling_data *d, struct law *out, struct llm_scaling_budget *bud)
{
    int G = d->ngroups, n = d->n;
    double *buf = llm_malloc((size_t)(4 * n + 4 * G) * sizeof(double), "the isoflop fit");
    if (!buf)
        return LLM_ENOMEM;
    double *x = buf, *y = x + n, *w = y + n, *ux = w + n;
    double *lc = ux + n, *ln = lc + G, *ll = ln + G, *ld = ll + G;
    int used = 0, sized = 0;
    for (int g = 0; g < G; g++) {
        int k = 0, distinct = 0;
        double xm = 0, W = 0, lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < n; i++) {
            if (d->group[i] != g || d->w[i] == 0)
                continue;
            x[k] = d->lnN[i], y[k] = d->L[i], w[k] = d->w[i];
            int seen = distinct >= 3; /* 3 are enough: stop counting */
            for (int j = 0; j < distinct && !seen; j++)
                seen = fabs(ux[j] - x[k]) < 1e-9;
            if (!seen)
                ux[distinct++] = x[k];
            xm += w[k] * x[k], W += w[k];
            lo = fmin(lo, x[k]), hi = fmax(hi, x[k]);
            k++;
        }
        if (bud) {
            bud[g].used = 0;
            bud[g].N_opt = bud[g].D_opt = bud[g].loss = NAN;
            bud[g].parabola[0] = bud[g].parabola[1] = bud[g].parabola[2] = NAN;
        }
        if (distinct < 3)
            continue;
        sized++;
        xm /= W;
        double p[3];
        /* Chinchilla approach 2 (Hoffmann et al. 2022 sec. 3.2): loss is a
         * parabola in ln N along an IsoFLOP profile; its vertex is N_opt. */
        if (parabola_fit(x, y, w, k, xm, p) || !(p[2] > 0))
            continue;
        double t = -p[1] / (2 * p[2]), xs = xm + t, ys = p[0] + p[1] * t + p[2] * t * t;
        if (bud) {
            bud[g].used = 1;
            bud[g].inside = xs >= lo && xs <= hi;
            bud[g].N_opt = exp(xs);
            bud[g].D_opt = exp(d->lnCg[g] - log(6.0) - xs);
            bud[g].loss = ys;
            /* In x itself: p0 + p1 (x - xm) + p2 (x - xm)^2. */
            bud[g].parabola[0] = p[0] - p[1] * xm + p[2] * xm * xm;
            bud[g].parabola[1] = p[1] - 2 * p[2] * xm;
            bud[g].parabola[2] = p[2];
        }
        lc[used] = d->lnCg[g];
        ln[used] = xs;
        ld[used] = d->lnCg[g] - log(6.0) - xs;
        ll[used] = ys > 0 ? log(ys) : NAN;
        used++;
    }
    int rc = 0;
    memset(out, 0, sizeof(*out));
    out->method = LLM_SCALING_ISOFLOP;
    if (sized < 2)
        rc = llm_err(LLM_EINVAL, "isoflop fit: needs at least 2 compute budgets with 3 or more model sizes each; "
                     "these runs have %d budget%s, %d with 3+ sizes", G, G == 1 ? "" : "s", sized);
    else if (used < 2)
        rc = llm_err(LLM_EINVAL, "isoflop fit: only %d of the %d budgets with 3+ sizes have a loss curve that "
                     "bends up (a minimum); widen the range of sizes", used, sized);
    /* The power laws (approach 2): ln N_opt = ln k_N + a ln C, ln D_opt =
     * ln k_D + b ln C, ln L_opt = ln k_L - gamma ln C. */
    double c0, c1;
    if (!rc && !line_fit(lc, ln, used, &c0, &c1))
        out->th[0] = c0, out->th[1] = c1;
    else if (!rc)
        rc = llm_err(LLM_EINVAL, "isoflop fit: the budgets are too close together");
    if (!rc && !line_fit(lc, ld, used, &c0, &c1))
        out->th[2] = c0, out->th[3] = c1;
    int lok = 1;
    for (int j = 0; j < used; j++)
        lok &= isfinite(ll[j]);
    if (!rc && lok && !line_fit(lc, ll, used, &c0, &c1))
        out->th[4] = c0, out->th[5] = -c1;
    else if (!rc)
        out->th[4] = out->th[5] = NAN;
    free(buf);
    return rc;
}

/* ---- what a law says ---- */

const char *law_param_name(enum llm_scaling_method m, int i)
{
    static const char *const par[] = {"E", "A", "B", "alpha", "beta"};
    static const char *const kap[] = {"N_c", "alpha_N", "D_c", "alpha_D"};
    static const char *const iso[] = {"k_N", "a", "k_D", "b", "k_L", "gamma"};
    return m == LLM_SCALING_PARAMETRIC ? par[i] : m == LLM_SCALING_KAPLAN ? kap[i] : iso[i];
}

void law_public(const struct law *l, double *p)
{
    const double *t = l->th;
    switch (l->method) {
    case LLM_SCALING_PARAMETRIC:
        p[0] = exp(t[2]), p[1] = exp(t[0]), p[2] = exp(t[1]), p[3] = t[3], p[4] = t[4];
        break;
    case LLM_SCALING_KAPLAN:
        p[0] = exp(t[0]), p[1] = t[2], p[2] = exp(t[1]), p[3] = t[3];
        break;
    case LLM_SCALING_ISOFLOP:
        p[0] = exp(t[0]), p[1] = t[1], p[2] = exp(t[2]), p[3] = t[3], p[4] = exp(t[4]), p[5] = t[5];
        break;
    }
}

void law_derive(const struct law *l, double *a, double *b, double *G)
{
    const double *t = l->th;
    *a = *b = *G = NAN;
    if (l->method == LLM_SCALING_PARAMETRIC) {
        /* Minimizing E + A N^-alpha + B D^-beta on 6 N D = C (Hoffmann et al.
         * 2022, eq. 4): N_opt = G (C/6)^a, G = (alpha A / (beta B))^(1/(alpha+beta)). */
        double al = t[3], be = t[4];
        if (!(al > 0 && be > 0))
            return;
        *a = be / (al + be), *b = al / (al + be);
        *G = exp((log(al) + t[0] - log(be) - t[1]) / (al + be));
    } else if (l->method == LLM_SCALING_KAPLAN) {
        /* Minimizing (N_c/N)^p + D_c/D, p = alpha_N/alpha_D, on 6 N D = C:
         * p N_c^p N^-(p+1) = 6 D_c / C, so N_opt = G (C/6)^(1/(p+1)) with
         * G = (p N_c^p / D_c)^(1/(p+1)). */
        double aN = t[2], aD = t[3];
        if (!(aN > 0 && aD > 0))
            return;
        double p = aN / aD;
        *a = 1 / (p + 1), *b = p / (p + 1);
        *G = exp((log(p) + p * t[0] - t[1]) / (p + 1));
    } else {
        *a = t[1], *b = t[3];
        *G = exp(t[0] + t[1] * log(6.0)); /* k_N C^a = k_N 6^a (C/6)^a */
    }
}

double law_loss(const struct law *l, double N, double D)
{
    const double *t = l->th;
    if (l->method == LLM_SCALING_PARAMETRIC)
        return exp(t[2]) + exp(t[0] - t[3] * log(N)) + exp(t[1] - t[4] * log(D));
    if (l->method == LLM_SCALING_KAPLAN) {
        double p = t[2] / t[3];
        return pow(exp(p * (t[0] - log(N))) + exp(t[1] - log(D)), t[3]);
    }
    return NAN;
}

void law_optimum(const struct law *l, double C, double *N, double *D, double *loss)
{
    double a, b, G;
    law_derive(l, &a, &b, &G);
    if (l->method == LLM_SCALING_ISOFLOP) {
        double lc = log(C);
        *N = exp(l->th[0] + a * lc);
        *D = exp(l->th[2] + b * lc);
        *loss = exp(l->th[4] - l->th[5] * lc);
        return;
    }
    *N = G * pow(C / 6, a);
    *D = C / 6 / *N;
    *loss = isfinite(*N) ? law_loss(l, *N, *D) : NAN;
}
