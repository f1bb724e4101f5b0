/* sweep.c: planning an IsoFLOP grid (sweep.h): model shapes from
 * "CxL" sizes, parameter counts from lib/model/info.h (the one place that
 * counts them), and each run's steps from D = C / 6N. */
#include "scaling/sweep.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "model/info.h"

#define MAX_SIZES 64
#define MAX_BUDGETS 64

void llm_scaling_plan_release(struct llm_scaling_plan *p)
{
    free(p->sizes);
    free(p->points);
    memset(p, 0, sizeof(*p));
}

/* One "CxL" of the list at *s; *s moves past it and its comma. */
static int parse_size(const char **s, int *C, int *L)
{
    const char *q = *s;
    char *end;
    errno = 0;
    long c = strtol(q, &end, 10);
    if (end == q || (*end != 'x' && *end != 'X'))
        goto bad;
    q = end + 1;
    long l = strtol(q, &end, 10);
    if (end == q || (*end && *end != ',') || errno || c < 1 || c > 65536 || l < 1 || l > 4096)
        goto bad;
    if (*end && !end[1])
        return llm_err(LLM_EINVAL, "sizes: an empty size after the last comma");
    *C = (int)c, *L = (int)l;
    *s = *end ? end + 1 : end;
    return 0;
bad:;
    size_t n = strcspn(*s, ",");
    return llm_err(LLM_EINVAL, "size '%.*s': expected d_model x n_layers, e.g. 128x4 (d_model 1..65536, "
                   "n_layers 1..4096)", (int)(n > 40 ? 40 : n), *s);
}

/* The model of size C x L on top of base: heads of the base's head size,
 * d_ff in the base's ratio to d_model, kv heads in the base's ratio to heads. */
static int shape(struct llm_scaling_size *z, const struct llm_model_config *base, int C, int L)
{
    int hs = base->d_model / base->n_heads;
    if (hs < 1 || C % hs)
        return llm_err(LLM_EINVAL, "size %dx%d: d_model %d is not a multiple of the head size %d (model.d_model / "
                       "model.n_heads of the config)", C, L, C, hs);
    z->d_model = C, z->n_layers = L, z->n_heads = C / hs;
    z->d_ff = (int)lround((double)C * base->d_ff / base->d_model);
    if (z->d_ff < 1)
        z->d_ff = 1;
    z->n_kv_heads = 0;
    if (base->n_kv_heads > 0) {
        int per = base->n_heads / llm_config_kv_heads(base); /* queries per kv head */
        if (per < 1 || z->n_heads % per)
            return llm_err(LLM_EINVAL, "size %dx%d: %d heads do not split into groups of %d per kv head (as "
                           "model.n_heads / model.n_kv_heads of the config)", C, L, z->n_heads, per);
        z->n_kv_heads = z->n_heads / per;
    }
    return 0;
}

static int cmp_size(const void *a, const void *b)
{
    const struct llm_scaling_size *x = a, *y = b;
    return x->params < y->params ? -1 : x->params > y->params;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int llm_scaling_plan_init(struct llm_scaling_plan *p, const struct llm_config *base, const double *budgets,
                          int nbudgets, const char *sizes, int64_t min_steps, double tpp_min, double tpp_max,
                          enum llm_scaling_count count)
{
    memset(p, 0, sizeof(*p));
    if (!(tpp_min >= 0) || !(tpp_max >= 0) || (tpp_max > 0 && tpp_max < tpp_min))
        return llm_err(LLM_EINVAL, "tokens per parameter: the range %g..%g is empty", tpp_min, tpp_max);
    if (nbudgets < 1 || nbudgets > MAX_BUDGETS)
        return llm_err(LLM_EINVAL, "%d budgets: 1 to %d", nbudgets, MAX_BUDGETS);
    double bs[MAX_BUDGETS];
    for (int i = 0; i < nbudgets; i++) {
        if (!isfinite(budgets[i]) || !(budgets[i] >= 1))
            return llm_err(LLM_EINVAL, "budget %g: expected a number of FLOPs >= 1", budgets[i]);
        bs[i] = budgets[i];
    }
    qsort(bs, (size_t)nbudgets, sizeof(double), cmp_double);
    for (int i = 1; i < nbudgets; i++)
        if (bs[i] < bs[i - 1] * LLM_SCALING_BUDGET_TOL)
            return llm_err(LLM_EINVAL, "budgets %g and %g are within %.0f%% of each other: a fit could not tell "
                           "them apart", bs[i - 1], bs[i], 100 * (LLM_SCALING_BUDGET_TOL - 1));
    int rc = 0;
    if (!(p->sizes = llm_calloc(MAX_SIZES, sizeof(*p->sizes), "the sweep's sizes")))
        return LLM_ENOMEM;
    for (const char *s = sizes; !rc && *s;) {
        int C = 0, L = 0;
        if (p->nsizes == MAX_SIZES)
            rc = llm_err(LLM_EINVAL, "more than %d sizes", MAX_SIZES);
        else if (!(rc = parse_size(&s, &C, &L)))
            rc = shape(&p->sizes[p->nsizes], &base->model, C, L);
        if (rc)
            break;
        struct llm_scaling_size *z = &p->sizes[p->nsizes];
        struct llm_model_config m = base->model;
        m.d_model = z->d_model, m.n_layers = z->n_layers, m.n_heads = z->n_heads, m.d_ff = z->d_ff;
        m.n_kv_heads = z->n_kv_heads;
        struct llm_model_info info;
        if ((rc = llm_model_info_compute(&info, &m, 0, 1))) {
            llm_err_wrap(rc, "size %dx%d", C, L);
            break;
        }
        z->params = info.params;
        z->N = count == LLM_SCALING_COUNT_NON_EMBEDDING ? (double)info.non_embedding : (double)info.params;
        for (int j = 0; j < p->nsizes && !rc; j++)
            if (p->sizes[j].d_model == C && p->sizes[j].n_layers == L)
                rc = llm_err(LLM_EINVAL, "size %dx%d is given twice", C, L);
        p->nsizes++;
    }
    if (!rc && p->nsizes == 0)
        rc = llm_err(LLM_EINVAL, "no sizes (expected d_model x n_layers, e.g. 64x2,128x4)");
    if (rc) {
        llm_scaling_plan_release(p);
        return rc;
    }
    qsort(p->sizes, (size_t)p->nsizes, sizeof(*p->sizes), cmp_size);
    /* Tokens per optimizer step, as the training loop counts them. */
    int64_t seq = (int64_t)base->train.batch_size * base->model.context_length;
    int64_t accum = base->train.batch_tokens ? base->train.batch_tokens / seq : base->train.grad_accum;
    p->tokens_per_step = seq * accum;
    if (!(p->points = llm_calloc((size_t)(nbudgets * p->nsizes), sizeof(*p->points), "the sweep's points"))) {
        llm_scaling_plan_release(p);
        return LLM_ENOMEM;
    }
    for (int b = 0; b < nbudgets; b++)
        for (int k = 0; k < p->nsizes; k++) {
            const struct llm_scaling_size *z = &p->sizes[k];
            /* D = C / 6N (Kaplan et al. 2020 sec. 2.1), in whole steps. */
            double steps = round(bs[b] / (6 * z->N) / (double)p->tokens_per_step);
            double tpp = steps * (double)p->tokens_per_step / z->N;
            if (steps < (double)(min_steps > 1 ? min_steps : 1) || steps > 1e12 || (tpp_min > 0 && tpp < tpp_min) ||
                (tpp_max > 0 && tpp > tpp_max)) {
                p->skipped++;
                continue;
            }
            struct llm_scaling_point *q = &p->points[p->npoints++];
            q->budget = bs[b];
            q->size = k;
            q->steps = (int64_t)steps;
            /* The warmup must not eat a short run: at most a tenth of it. */
            q->warmup = base->schedule.warmup < q->steps / 10 ? base->schedule.warmup : q->steps / 10;
            q->tokens = steps * (double)p->tokens_per_step;
            snprintf(q->name, sizeof(q->name), "C=%.3g_%dx%d", bs[b], z->d_model, z->n_layers);
        }
    if (p->npoints == 0) {
        int skipped = p->skipped;
        llm_scaling_plan_release(p);
        return llm_err(LLM_EINVAL, "every point of the grid (%d) is left out: under %lld steps or outside the "
                       "tokens-per-parameter range; change the budgets or the sizes", skipped,
                       (long long)(min_steps > 1 ? min_steps : 1));
    }
    return 0;
}

int llm_scaling_plan_sets(const struct llm_scaling_plan *p, int i, char sets[][64])
{
    const struct llm_scaling_point *q = &p->points[i];
    const struct llm_scaling_size *z = &p->sizes[q->size];
    int n = 0;
    snprintf(sets[n++], 64, "model.d_model=%d", z->d_model);
    snprintf(sets[n++], 64, "model.n_layers=%d", z->n_layers);
    snprintf(sets[n++], 64, "model.n_heads=%d", z->n_heads);
    snprintf(sets[n++], 64, "model.n_kv_heads=%d", z->n_kv_heads);
    snprintf(sets[n++], 64, "model.d_ff=%d", z->d_ff);
    snprintf(sets[n++], 64, "train.steps=%lld", (long long)q->steps);
    snprintf(sets[n++], 64, "schedule.warmup=%lld", (long long)q->warmup);
    return n;
}
