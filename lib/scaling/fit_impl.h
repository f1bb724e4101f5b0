/* fit_impl.h: what fit.c (the driver, bootstrap, predictions) and laws.c
 * (the three fitting methods) share inside lib/scaling; not public. */
#ifndef LLM_SCALING_FIT_IMPL_H
#define LLM_SCALING_FIT_IMPL_H

#include "scaling/fit.h"

#define LAW_MAX LLM_SCALING_MAX_PARAMS

/* The runs in log space with resampling weights. Rows with w = 0 are not
 * part of the fit (a bootstrap resample leaves them out). */
struct scaling_data {
    int n;
    const double *lnN, *lnD, *lnC, *L, *lnL; /* (n) */
    const double *w;                         /* (n) integer counts */
    const int *group;                        /* (n) compute budget */
    int ngroups;
    const double *lnCg;                      /* (ngroups) */
    double delta;                            /* Huber threshold */
};

/* A fitted law in its fitting coordinates:
 *   parametric  th = (a, b, e, alpha, beta): A = e^a, B = e^b, E = e^e
 *   kaplan      th = (ln N_c, ln D_c, alpha_N, alpha_D)
 *   isoflop     th = (ln k_N, a, ln k_D, b, ln k_L, gamma)
 * f = the objective at th (mean Huber loss; isoflop: 0). */
struct law {
    enum llm_scaling_method method;
    double th[LAW_MAX];
    double f;
    int start; /* index of the start it came from (a tie-break that keeps fits deterministic) */
};

/* Parametric / kaplan: L-BFGS from each start (NULL: the method's grid,
 * *nstarts set to its size), the best in *best. When top is not NULL, up to
 * ntop distinct local minima, best first, go there (*ntop updated): the
 * starts of the bootstrap refits. Returns 0, or LLM_EINVAL when no start
 * reached a finite objective. */
int law_fit_smooth(const struct scaling_data *d, enum llm_scaling_method m, const struct law *starts,
                   int *nstarts, struct law *best, struct law *top, int *ntop);
/* Kaplan's starting power laws (fit.h): env = N_c, alpha_N, D_c, alpha_D
 * (NAN where the envelope has < 2 points or a non-negative slope). */
void law_kaplan_envelope(const struct scaling_data *d, double env[4]);
/* Isoflop: parabolas per budget (bud may be NULL: then nothing is recorded),
 * then the power laws. Returns 0, or LLM_EINVAL (fewer than 2 budgets with
 * 3+ distinct sizes and a convex parabola; the message says which). */
int law_fit_isoflop(const struct scaling_data *d, struct law *out, struct llm_scaling_budget *bud);

/* Number of parameters and their public names and values (E, A, B, ...). */
int law_nparams(enum llm_scaling_method m);
const char *law_param_name(enum llm_scaling_method m, int i);
void law_public(const struct law *l, double *p);
/* a, b, G of N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b; NAN when the law has
 * no optimum (an exponent <= 0). */
void law_derive(const struct law *l, double *a, double *b, double *G);
/* The law at (N, D) (NAN for isoflop) and the optimum at C. */
double law_loss(const struct law *l, double N, double D);
void law_optimum(const struct law *l, double C, double *N, double *D, double *loss);

#endif
