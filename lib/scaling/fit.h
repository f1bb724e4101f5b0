/* fit.h: scaling laws fitted to training runs, and what they predict: the
 * compute-optimal model size N_opt, token count D_opt and loss at a compute
 * budget C = 6 N D, with bootstrap intervals. Three methods:
 *
 *   parametric  Hoffmann et al. 2022 ("Chinchilla"), approach 3:
 *               L(N, D) = E + A / N^alpha + B / D^beta, fitted in log space
 *               (log L = LSE(a - alpha log N, b - beta log D, e), A = e^a,
 *               B = e^b, E = e^e) by minimizing the Huber loss of the
 *               residuals with L-BFGS from a grid of starts;
 *               N_opt(C) = G (C/6)^a, D_opt(C) = G^-1 (C/6)^b with
 *               G = (alpha A / (beta B))^(1/(alpha+beta)),
 *               a = beta / (alpha+beta), b = alpha / (alpha+beta).
 *   isoflop     approach 2: per compute budget a parabola of loss against
 *               ln N, its minimum N_opt (D_opt = C / 6 N_opt); then the
 *               power laws N_opt = k_N C^a, D_opt = k_D C^b (and the
 *               minimum loss L_opt = k_L C^-gamma) by least squares in log-log.
 *   kaplan      Kaplan et al. 2020, eq. 1.5: L(N, D) = ((N_c/N)^(alpha_N /
 *               alpha_D) + D_c/D)^alpha_D, whose limits are the power laws
 *               L(N) = (N_c/N)^alpha_N and L(D) = (D_c/D)^alpha_D; fitted like
 *               the parametric law, started from power laws fitted to the runs
 *               each variable limits (the lowest loss of each model size for
 *               L(N), of each token count for L(D)). At fixed C = 6 N D it
 *               gives a = alpha_D / (alpha_N + alpha_D), b = 1 - a.
 *
 * The math, the starts and the choices made where the papers are silent are
 * in docs/scaling.md. */
#ifndef LLM_SCALING_FIT_H
#define LLM_SCALING_FIT_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "scaling/runs.h"

enum llm_scaling_method { LLM_SCALING_PARAMETRIC, LLM_SCALING_ISOFLOP, LLM_SCALING_KAPLAN };

/* "parametric", "isoflop", "kaplan"; and back (-1 if unknown). */
const char *llm_scaling_method_name(enum llm_scaling_method m);
int llm_scaling_method_parse(const char *s);

#define LLM_SCALING_MIN_RUNS 5     /* the parametric law has 5 parameters */
#define LLM_SCALING_MAX_BOOTSTRAP 100000
#define LLM_SCALING_MAX_PARAMS 6

struct llm_scaling_opts {
    enum llm_scaling_method method;
    int bootstrap;          /* resamples for the intervals (0 = none) */
    uint64_t seed;          /* of the resampling */
    double level;           /* of the central percentile intervals; 0 = 0.95 */
    double huber_delta;     /* parametric and kaplan; 0 = 1e-3 (Hoffmann et al.) */
    const double *budgets;  /* predictions at these C (borrowed) */
    int nbudgets;
};

/* A value and its bootstrap percentile interval (lo = hi = NAN when there
 * is no bootstrap, or when too few resamples gave a finite value). */
struct llm_scaling_est {
    double v, lo, hi;
};

/* One compute budget of the runs (runs.h groups them). */
struct llm_scaling_budget {
    double C;            /* geometric mean of the group's C */
    int runs;            /* runs in the group */
    double N_opt, D_opt; /* isoflop: the parabola's minimum; else the law's optimum at C */
    double loss;         /* the loss there */
    double parabola[3];  /* isoflop: loss = p0 + p1 x + p2 x^2, x = ln N; else NAN */
    int used;            /* isoflop: entered the power-law fits (3+ sizes, convex) */
    int inside;          /* isoflop: the minimum lies within the group's N */
};

struct llm_scaling_prediction {
    double C;
    struct llm_scaling_est N_opt, D_opt, loss, tokens_per_param;
};

/* Owns group, budgets and pred (malloc'd): llm_scaling_fit_release. */
struct llm_scaling_fit {
    enum llm_scaling_method method;
    int nparams;
    const char *names[LLM_SCALING_MAX_PARAMS]; /* "E", "A", ...: static strings */
    struct llm_scaling_est p[LLM_SCALING_MAX_PARAMS];
    struct llm_scaling_est a, b;   /* N_opt ~ C^a, D_opt ~ C^b */
    struct llm_scaling_est G;      /* N_opt = G (C/6)^a */
    double objective;              /* parametric/kaplan: mean Huber loss; isoflop: NAN */
    double rmse_log;               /* parametric/kaplan: RMS of log L residuals; isoflop: of ln N_opt about its law */
    double envelope[4];            /* kaplan: the starting power laws N_c, alpha_N, D_c, alpha_D (NAN if none) */
    size_t nruns;
    int *group;                    /* (nruns) budget of each run */
    struct llm_scaling_budget *budgets;
    int nbudgets;
    struct llm_scaling_prediction *pred;
    int npred;
    int bootstrap, boot_failed;    /* resamples asked, and those that gave no fit */
    uint64_t seed;
    double level, huber_delta;
    int starts;                    /* parametric/kaplan: L-BFGS starts of the full fit */
};

/* Fits r by o. f need not be initialized; release it in any case. Errors
 * (LLM_EINVAL) say what is wrong with the data: fewer than 5 runs, a single
 * compute budget, one model size, values that are not finite and positive,
 * no budget with 3+ sizes and a convex parabola (isoflop), or a fit whose
 * exponents are not positive; LLM_ENOMEM. */
int llm_scaling_fit_run(struct llm_scaling_fit *f, const struct llm_scaling_runs *r,
                        const struct llm_scaling_opts *o);
void llm_scaling_fit_release(struct llm_scaling_fit *f);

/* The fitted law at (N, D) (parametric, kaplan; NAN for isoflop), and the
 * compute-optimal N, D and loss at budget C (every method). */
double llm_scaling_fit_loss(const struct llm_scaling_fit *f, double N, double D);
void llm_scaling_fit_optimum(const struct llm_scaling_fit *f, double C, double *N, double *D, double *loss);

/* The fit as JSON: {"method", "runs", "params", "ci", "a", "b", "G",
 * "budgets", "predictions", ...} (docs/scaling.md). NULL on ENOMEM. */
cJSON *llm_scaling_fit_json(const struct llm_scaling_fit *f);
/* A readable report (parameters, intervals, budgets, predictions) to out. */
void llm_scaling_fit_table(const struct llm_scaling_fit *f, FILE *out);

#endif
