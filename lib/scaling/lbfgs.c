/* lbfgs.c: L-BFGS (Nocedal & Wright 2006, Algorithms 7.4-7.5) with a
 * strong-Wolfe line search (Algorithms 3.5-3.6, cubic interpolation in zoom,
 * eq. 3.59), for the scaling fits' few-parameter objectives. */
#include "scaling/lbfgs.h"

#include <math.h>
#include <string.h>

#include "core/err.h"

#define C1 1e-4        /* sufficient decrease (Armijo) */
#define C2 0.9         /* curvature; 0.9 is the usual choice for quasi-Newton */
#define LS_BRACKET 40  /* trial steps while bracketing */
#define LS_ZOOM 40     /* trial steps while zooming */

struct search {
    llm_lbfgs_fn fn;
    void *ctx;
    int n;
    const double *x, *d; /* the line x + a d */
    double f0, dphi0;    /* phi(0) and phi'(0) < 0 */
    double xt[LLM_LBFGS_MAX_N], gt[LLM_LBFGS_MAX_N]; /* the last trial point and its gradient */
    int evals;
};

static double dot(const double *a, const double *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* phi(a) = f(x + a d); *dphi = phi'(a). A non-finite value reads as +inf
 * (the step is too long) with an unknown slope. */
static double phi(struct search *s, double a, double *dphi)
{
    for (int i = 0; i < s->n; i++)
        s->xt[i] = s->x[i] + a * s->d[i];
    double f = s->fn(s->ctx, s->xt, s->gt, s->n);
    s->evals++;
    if (!isfinite(f)) {
        *dphi = NAN;
        return INFINITY;
    }
    *dphi = dot(s->gt, s->d, s->n);
    return f;
}

/* The minimizer of the cubic through (lo, flo, dlo) and (hi, fhi, dhi)
 * (eq. 3.59), or of the quadratic through flo, dlo, fhi when dhi is unknown;
 * bisection when neither lands well inside the interval. */
static double interpolate(double lo, double flo, double dlo, double hi, double fhi, double dhi)
{
    double a = NAN, w = hi - lo;
    if (isfinite(fhi) && isfinite(dhi)) {
        double d1 = dlo + dhi - 3 * (flo - fhi) / (lo - hi);
        double disc = d1 * d1 - dlo * dhi;
        if (disc >= 0) {
            double d2 = copysign(sqrt(disc), hi - lo);
            a = hi - (hi - lo) * (dhi + d2 - d1) / (dhi - dlo + 2 * d2);
        }
    } else if (isfinite(fhi)) {
        double den = 2 * (fhi - flo - dlo * w);
        if (den > 0)
            a = lo - dlo * w * w / den;
    }
    double mn = fmin(lo, hi) + 0.1 * fabs(w), mx = fmax(lo, hi) - 0.1 * fabs(w);
    return isfinite(a) && a >= mn && a <= mx ? a : lo + 0.5 * w;
}

/* Algorithm 3.6: a step in the bracket between lo (which satisfies
 * sufficient decrease and has the lowest value so far) and hi. Returns the
 * step, or lo when the bracket shrinks without meeting the curvature
 * condition (0 if lo is 0: no progress). */
static double zoom(struct search *s, double lo, double flo, double dlo, double hi, double fhi, double dhi,
                   double *fout)
{
    for (int k = 0; k < LS_ZOOM; k++) {
        double a = interpolate(lo, flo, dlo, hi, fhi, dhi), da;
        double fa = phi(s, a, &da);
        if (fa > s->f0 + C1 * a * s->dphi0 || fa >= flo) {
            hi = a, fhi = fa, dhi = da;
        } else {
            if (fabs(da) <= -C2 * s->dphi0) {
                *fout = fa;
                return a;
            }
            if (da * (hi - lo) >= 0)
                hi = lo, fhi = flo, dhi = dlo;
            lo = a, flo = fa, dlo = da;
        }
        if (fabs(hi - lo) <= 1e-16 * fmax(1, fabs(lo)))
            break;
    }
    *fout = flo;
    return lo;
}

/* Algorithm 3.5: a step a > 0 meeting the strong Wolfe conditions (or at
 * least sufficient decrease), starting from a0; 0 when none was found. */
static double line_search(struct search *s, double a0, double *fout)
{
    double prev = 0, fprev = s->f0, dprev = s->dphi0, a = a0;
    for (int k = 0; k < LS_BRACKET; k++) {
        double da, fa = phi(s, a, &da);
        if (fa > s->f0 + C1 * a * s->dphi0 || (k > 0 && fa >= fprev))
            return zoom(s, prev, fprev, dprev, a, fa, da, fout);
        if (fabs(da) <= -C2 * s->dphi0) {
            *fout = fa;
            return a;
        }
        if (da >= 0)
            return zoom(s, a, fa, da, prev, fprev, dprev, fout);
        prev = a, fprev = fa, dprev = da;
        a *= 2;
    }
    *fout = fprev; /* still descending after 2^40 a0: take the last step */
    return prev;
}

int llm_lbfgs_minimize(llm_lbfgs_fn fn, void *ctx, double *x, int n, const struct llm_lbfgs_opts *o,
                       struct llm_lbfgs_result *res)
{
    struct llm_lbfgs_result r0;
    if (!res)
        res = &r0;
    memset(res, 0, sizeof(*res));
    if (n < 1 || n > LLM_LBFGS_MAX_N)
        return llm_err(LLM_EINVAL, "lbfgs: %d parameters (1 to %d supported)", n, LLM_LBFGS_MAX_N);
    int max_iter = o && o->max_iter > 0 ? o->max_iter : 500;
    double gtol = !o || o->gtol == 0 ? 1e-10 : o->gtol < 0 ? 0 : o->gtol;
    double ftol = o && o->ftol > 0 ? o->ftol : 1e-12;

    /* History: pair j of k lives at (head - 1 - j) mod M, newest first. */
    double S[LLM_LBFGS_MEMORY][LLM_LBFGS_MAX_N], Y[LLM_LBFGS_MEMORY][LLM_LBFGS_MAX_N], rho[LLM_LBFGS_MEMORY];
    double g[LLM_LBFGS_MAX_N], d[LLM_LBFGS_MAX_N], alpha[LLM_LBFGS_MEMORY];
    int head = 0, k = 0;
    struct search s = {.fn = fn, .ctx = ctx, .n = n, .x = x, .d = d};
    double f = fn(ctx, x, g, n);
    s.evals = 1;
    res->f = f;
    res->status = LLM_LBFGS_BAD_START;
    if (!isfinite(f)) {
        res->evals = s.evals;
        return 0;
    }
    res->status = LLM_LBFGS_MAX_ITER;
    int it;
    for (it = 0; it < max_iter; it++) {
        double gmax = 0;
        for (int i = 0; i < n; i++)
            gmax = fmax(gmax, fabs(g[i]));
        if (gmax <= gtol) {
            res->status = LLM_LBFGS_GTOL;
            break;
        }
        /* Two-loop recursion (Algorithm 7.4): d = -H g, with H0 = gamma I,
         * gamma = s'y / y'y of the newest pair (eq. 7.20). */
        for (int i = 0; i < n; i++)
            d[i] = -g[i];
        for (int j = 0; j < k; j++) {
            int p = (head - 1 - j + LLM_LBFGS_MEMORY) % LLM_LBFGS_MEMORY;
            alpha[j] = rho[p] * dot(S[p], d, n);
            for (int i = 0; i < n; i++)
                d[i] -= alpha[j] * Y[p][i];
        }
        if (k > 0) {
            int p = (head - 1 + LLM_LBFGS_MEMORY) % LLM_LBFGS_MEMORY;
            double gamma = 1 / (rho[p] * dot(Y[p], Y[p], n));
            for (int i = 0; i < n; i++)
                d[i] *= gamma;
        }
        for (int j = k - 1; j >= 0; j--) {
            int p = (head - 1 - j + LLM_LBFGS_MEMORY) % LLM_LBFGS_MEMORY;
            double beta = rho[p] * dot(Y[p], d, n);
            for (int i = 0; i < n; i++)
                d[i] += (alpha[j] - beta) * S[p][i];
        }
        double dg = dot(d, g, n);
        if (!(dg < 0)) { /* not a descent direction (rounding): restart from -g */
            k = 0;
            for (int i = 0; i < n; i++)
                d[i] = -g[i];
            dg = -dot(g, g, n);
        }
        /* A first step of unit length along -g; after that the quasi-Newton
         * step a = 1 is the natural trial (N&W sec. 6.1). */
        double a0 = k ? 1.0 : 1.0 / sqrt(-dg);
        s.f0 = f, s.dphi0 = dg;
        double fnew, a = line_search(&s, a0, &fnew);
        if (!(a > 0) || !(fnew < f)) {
            if (k > 0) { /* the curvature pairs misled us: forget them, try -g */
                k = 0;
                continue;
            }
            res->status = LLM_LBFGS_NO_DESCENT;
            break;
        }
        /* The gradient at the accepted step (the last trial may differ). */
        double dd;
        if (phi(&s, a, &dd) != fnew) {
            res->status = LLM_LBFGS_NO_DESCENT; /* fn is not deterministic: stop where we are */
            break;
        }
        double *sp = S[head], *yp = Y[head];
        for (int i = 0; i < n; i++) {
            sp[i] = s.xt[i] - x[i];
            yp[i] = s.gt[i] - g[i];
        }
        double sy = dot(sp, yp, n);
        if (sy > 1e-12 * sqrt(dot(sp, sp, n) * dot(yp, yp, n))) { /* keeps H positive definite */
            rho[head] = 1 / sy;
            head = (head + 1) % LLM_LBFGS_MEMORY;
            if (k < LLM_LBFGS_MEMORY)
                k++;
        }
        double drop = f - fnew;
        memcpy(x, s.xt, (size_t)n * sizeof(double));
        memcpy(g, s.gt, (size_t)n * sizeof(double));
        f = fnew;
        if (drop <= ftol * fabs(f)) {
            res->status = LLM_LBFGS_FTOL;
            it++;
            break;
        }
    }
    res->f = f;
    res->iters = it;
    res->evals = s.evals;
    return 0;
}
