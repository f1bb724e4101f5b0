/* report.c: a scaling fit (fit.h) as JSON and as a readable table. Numbers
 * that do not exist (no interval, no optimum) are JSON null and "-". */
#include <math.h>
#include <stdio.h>

#include "scaling/fit.h"

static void add_num(cJSON *o, const char *k, double v)
{
    cJSON_AddItemToObject(o, k, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
}

static void add_interval(cJSON *o, const char *k, const struct llm_scaling_est *e)
{
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, isfinite(e->lo) ? cJSON_CreateNumber(e->lo) : cJSON_CreateNull());
    cJSON_AddItemToArray(a, isfinite(e->hi) ? cJSON_CreateNumber(e->hi) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, k, a);
}

static const char *const pred_keys[4] = {"N_opt", "D_opt", "loss", "tokens_per_param"};

static const struct llm_scaling_est *pred_est(const struct llm_scaling_prediction *p, int k)
{
    return k == 0 ? &p->N_opt : k == 1 ? &p->D_opt : k == 2 ? &p->loss : &p->tokens_per_param;
}

cJSON *llm_scaling_fit_json(const struct llm_scaling_fit *f)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int boot = f->bootstrap > 0;
    cJSON_AddStringToObject(o, "method", llm_scaling_method_name(f->method));
    cJSON_AddNumberToObject(o, "runs", (double)f->nruns);
    cJSON *params = cJSON_AddObjectToObject(o, "params");
    for (int k = 0; k < f->nparams; k++)
        add_num(params, f->names[k], f->p[k].v);
    add_num(o, "a", f->a.v);
    add_num(o, "b", f->b.v);
    add_num(o, "G", f->G.v);
    if (boot) {
        cJSON *ci = cJSON_AddObjectToObject(o, "ci");
        cJSON_AddNumberToObject(ci, "level", f->level);
        for (int k = 0; k < f->nparams; k++)
            add_interval(ci, f->names[k], &f->p[k]);
        add_interval(ci, "a", &f->a);
        add_interval(ci, "b", &f->b);
        add_interval(ci, "G", &f->G);
        cJSON *bs = cJSON_AddObjectToObject(o, "bootstrap");
        cJSON_AddNumberToObject(bs, "samples", f->bootstrap);
        cJSON_AddNumberToObject(bs, "failed", f->boot_failed);
        cJSON_AddNumberToObject(bs, "seed", (double)f->seed);
    }
    cJSON *fit = cJSON_AddObjectToObject(o, "fit");
    if (f->method != LLM_SCALING_ISOFLOP) {
        add_num(fit, "objective", f->objective);
        cJSON_AddNumberToObject(fit, "huber_delta", f->huber_delta);
        cJSON_AddNumberToObject(fit, "starts", f->starts);
    }
    add_num(fit, "rmse_log", f->rmse_log);
    if (f->method == LLM_SCALING_KAPLAN) {
        cJSON *env = cJSON_AddObjectToObject(o, "envelope");
        static const char *const ek[4] = {"N_c", "alpha_N", "D_c", "alpha_D"};
        for (int k = 0; k < 4; k++)
            add_num(env, ek[k], f->envelope[k]);
    }
    cJSON *bud = cJSON_AddArrayToObject(o, "budgets");
    for (int g = 0; g < f->nbudgets; g++) {
        const struct llm_scaling_budget *u = &f->budgets[g];
        cJSON *b = cJSON_CreateObject();
        cJSON_AddItemToArray(bud, b);
        add_num(b, "C", u->C);
        cJSON_AddNumberToObject(b, "runs", u->runs);
        add_num(b, "N_opt", u->N_opt);
        add_num(b, "D_opt", u->D_opt);
        add_num(b, "loss", u->loss);
        if (f->method == LLM_SCALING_ISOFLOP) {
            cJSON_AddBoolToObject(b, "used", u->used);
            if (u->used) {
                cJSON_AddBoolToObject(b, "inside", u->inside);
                cJSON *pa = cJSON_AddArrayToObject(b, "parabola");
                for (int k = 0; k < 3; k++)
                    cJSON_AddItemToArray(pa, cJSON_CreateNumber(u->parabola[k]));
            }
        }
    }
    cJSON *preds = cJSON_AddArrayToObject(o, "predictions");
    for (int j = 0; j < f->npred; j++) {
        const struct llm_scaling_prediction *p = &f->pred[j];
        cJSON *po = cJSON_CreateObject();
        cJSON_AddItemToArray(preds, po);
        cJSON_AddNumberToObject(po, "C", p->C);
        for (int k = 0; k < 4; k++)
            add_num(po, pred_keys[k], pred_est(p, k)->v);
        if (boot) {
            cJSON *ci = cJSON_AddObjectToObject(po, "ci");
            for (int k = 0; k < 4; k++)
                add_interval(ci, pred_keys[k], pred_est(p, k));
        }
    }
    /* cJSON_Add* return NULL on allocation failure: check the whole once. */
    char *probe = cJSON_PrintUnformatted(o);
    if (!probe) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_free(probe);
    return o;
}

/* "1.234e+09" or "-" */
static const char *num(char *buf, size_t n, double v)
{
    if (isfinite(v))
        snprintf(buf, n, "%.4g", v);
    else
        snprintf(buf, n, "-");
    return buf;
}

static const char *interval(char *buf, size_t n, const struct llm_scaling_est *e)
{
    if (isfinite(e->lo) && isfinite(e->hi))
        snprintf(buf, n, "[%.4g, %.4g]", e->lo, e->hi);
    else
        snprintf(buf, n, "-");
    return buf;
}

void llm_scaling_fit_table(const struct llm_scaling_fit *f, FILE *out)
{
    static const char *const law[3] = {
        "L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, approach 3)",
        "per budget: loss = parabola in ln N; N_opt = k_N C^a, D_opt = k_D C^b, L_opt = k_L C^-gamma "
        "(Hoffmann et al. 2022, approach 2)",
        "L(N, D) = ((N_c / N)^(alpha_N / alpha_D) + D_c / D)^alpha_D (Kaplan et al. 2020, eq. 1.5)",
    };
    char b1[48], b2[64], b3[48], b4[48], b5[48];
    fprintf(out, "scaling fit (%s): %zu runs in %d compute budgets\n  %s\n", llm_scaling_method_name(f->method),
            f->nruns, f->nbudgets, law[f->method]);
    int boot = f->bootstrap > 0;
    fprintf(out, "  %-10s %12s  %s\n", "", "value", boot ? "interval" : "");
    for (int k = 0; k < f->nparams; k++)
        fprintf(out, "  %-10s %12s  %s\n", f->names[k], num(b1, sizeof(b1), f->p[k].v),
                boot ? interval(b2, sizeof(b2), &f->p[k]) : "");
    if (f->method != LLM_SCALING_ISOFLOP) { /* isoflop: a and b are parameters, listed above */
        fprintf(out, "  %-10s %12s  %s   N_opt ~ C^a\n", "a", num(b1, sizeof(b1), f->a.v),
                boot ? interval(b2, sizeof(b2), &f->a) : "");
        fprintf(out, "  %-10s %12s  %s   D_opt ~ C^b\n", "b", num(b1, sizeof(b1), f->b.v),
                boot ? interval(b2, sizeof(b2), &f->b) : "");
    }
    fprintf(out, "  %-10s %12s  %s   N_opt = G (C/6)^a\n", "G", num(b1, sizeof(b1), f->G.v),
            boot ? interval(b2, sizeof(b2), &f->G) : "");
    if (f->method != LLM_SCALING_ISOFLOP)
        fprintf(out, "  fit: mean Huber loss %.4g (delta %g), rms log-loss residual %.4g, %d L-BFGS starts\n",
                f->objective, f->huber_delta, f->rmse_log, f->starts);
    else
        fprintf(out, "  fit: rms ln N_opt residual %.4g\n", f->rmse_log);
    if (boot)
        fprintf(out, "  intervals: %.0f%% percentile bootstrap, %d resamples (seed %llu)%s\n", 100 * f->level,
                f->bootstrap, (unsigned long long)f->seed, f->boot_failed ? ", some failed" : "");
    fprintf(out, "budgets\n  %-10s %5s %11s %11s %9s%s\n", "C", "runs", "N_opt", "D_opt", "loss",
            f->method == LLM_SCALING_ISOFLOP ? "  parabola" : "");
    for (int g = 0; g < f->nbudgets; g++) {
        const struct llm_scaling_budget *u = &f->budgets[g];
        const char *note = f->method != LLM_SCALING_ISOFLOP ? ""
                           : !u->used                        ? "  not used (under 3 sizes or no minimum)"
                           : u->inside                       ? "  minimum inside the sizes"
                                                             : "  minimum OUTSIDE the sizes (extrapolated)";
        fprintf(out, "  %-10s %5d %11s %11s %9s%s\n", num(b1, sizeof(b1), u->C), u->runs,
                num(b3, sizeof(b3), u->N_opt), num(b4, sizeof(b4), u->D_opt), num(b5, sizeof(b5), u->loss), note);
    }
    if (f->npred)
        fprintf(out, "predictions\n");
    for (int j = 0; j < f->npred; j++) {
        const struct llm_scaling_prediction *p = &f->pred[j];
        fprintf(out, "  C = %s\n", num(b1, sizeof(b1), p->C));
        static const char *const lab[4] = {"N_opt", "D_opt", "loss", "tokens/param"};
        for (int k = 0; k < 4; k++) {
            const struct llm_scaling_est *e = pred_est(p, k);
            fprintf(out, "    %-12s %11s  %s\n", lab[k], num(b3, sizeof(b3), e->v),
                    boot ? interval(b2, sizeof(b2), e) : "");
        }
    }
}
