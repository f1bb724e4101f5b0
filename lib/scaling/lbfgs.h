/* lbfgs.h: limited-memory BFGS for the small smooth minimizations of the
 * scaling fits (5 parameters, a few hundred residuals): Nocedal & Wright,
 * "Numerical Optimization" (2nd ed. 2006), Algorithm 7.5 with the two-loop
 * recursion (Algorithm 7.4) and a line search for the strong Wolfe
 * conditions (Algorithms 3.5 and 3.6). No allocation: the state lives on the
 * stack, so n is at most LLM_LBFGS_MAX_N. */
#ifndef LLM_SCALING_LBFGS_H
#define LLM_SCALING_LBFGS_H

#define LLM_LBFGS_MAX_N 16 /* parameters */
#define LLM_LBFGS_MEMORY 10 /* (s, y) pairs kept (m in Nocedal & Wright) */

/* The objective: returns f(x) and writes its gradient to g (both n long).
 * A point outside the domain may return +INFINITY or NaN: the line search
 * then backs off (the gradient is not read). */
typedef double (*llm_lbfgs_fn)(void *ctx, const double *x, double *g, int n);

struct llm_lbfgs_opts {
    int max_iter;  /* iterations; <= 0: 500 */
    double gtol;   /* stop when max |g_i| <= gtol; < 0: 0 (off), 0: 1e-10 */
    double ftol;   /* stop when an iteration lowers f by <= ftol * |f| (relative); 0: 1e-12 */
};

enum llm_lbfgs_status {
    LLM_LBFGS_GTOL,       /* the gradient is (near) zero */
    LLM_LBFGS_FTOL,       /* f stopped decreasing */
    LLM_LBFGS_MAX_ITER,   /* ran out of iterations */
    LLM_LBFGS_NO_DESCENT, /* the line search found no lower point along -g either */
    LLM_LBFGS_BAD_START,  /* f(x0) is not finite: x is unchanged */
};

struct llm_lbfgs_result {
    double f;                      /* at the returned x */
    int iters, evals;
    enum llm_lbfgs_status status;
};

/* Minimizes fn from x (n <= LLM_LBFGS_MAX_N; updated in place to the best
 * point found, whose value is res->f; never a point worse than x0). o and
 * res may be NULL. Returns 0, or LLM_EINVAL for a bad n (a caller's bug). */
int llm_lbfgs_minimize(llm_lbfgs_fn fn, void *ctx, double *x, int n, const struct llm_lbfgs_opts *o,
                       struct llm_lbfgs_result *res);

#endif
