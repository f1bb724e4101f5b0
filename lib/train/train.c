/* train.c: the training loop of train.h: accumulation, clipping, skipping,
 * optimizer + schedule, noise scale, evaluation, metrics and the run folder.
 * Checkpoint files and resume are in train_ckpt.c. */
#include "train/train.h"
#include "train/train_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "core/svg.h"
#include "model/info.h"
#include "optim/optim.h"
#include "optim/schedule.h"

/* ---- the run folder ---- */

int train_path(char *dst, const char *dir, const char *name)
{
    int k = snprintf(dst, TRAIN_PATH_MAX, "%s/%s", dir, name);
    return k < 0 || k >= TRAIN_PATH_MAX ? llm_err(LLM_EINVAL, "path too long: '%s/%s'", dir, name) : 0;
}

/* ---- metrics ---- */

static void add_num(cJSON *o, const char *k, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
}

static cJSON *report_json(const struct llm_train_report *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "step", (double)r->step);
    add_num(o, "loss", r->loss);
    add_num(o, "val_loss", r->val_loss);
    add_num(o, "lr", r->lr);
    add_num(o, "grad_norm", r->grad_norm);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    add_num(o, "tokens_per_s", r->tokens_per_s);
    add_num(o, "mfu", r->mfu);
    add_num(o, "elapsed_s", r->elapsed_s);
    add_num(o, "noise_scale", r->noise_scale);
    cJSON_AddNumberToObject(o, "skipped", (double)r->skipped);
    return o;
}

static int history_push(struct train_history *h, int64_t step, double loss, double val)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 256;
        double *s = realloc(h->step, cap * sizeof(double));
        if (s)
            h->step = s;
        double *l = s ? realloc(h->loss, cap * sizeof(double)) : NULL;
        if (l)
            h->loss = l;
        double *v = l ? realloc(h->val, cap * sizeof(double)) : NULL;
        if (!v)
            return llm_err(LLM_ENOMEM, "out of memory keeping the loss history");
        h->val = v;
        h->cap = cap;
    }
    h->step[h->n] = (double)step, h->loss[h->n] = loss, h->val[h->n] = val;
    h->n++;
    return 0;
}

void train_history_release(struct train_history *h)
{
    free(h->step), free(h->loss), free(h->val);
    memset(h, 0, sizeof(*h));
}

/* Keeps the rows of out_dir/metrics.jsonl up to step `upto` (a resumed run
 * redoes the later ones; a torn last line from a kill is dropped) and
 * reloads them into the history. */
int train_metrics_trim(struct train_loop *L, int64_t upto)
{
    FILE *f = fopen(L->metrics_path, "r");
    if (!f)
        return 0; /* none yet */
    char *line = NULL, *kept = NULL;
    size_t cap = 0, klen = 0, kcap = 0;
    ssize_t n;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, f)) > 0) {
        cJSON *o = line[n - 1] == '\n' ? cJSON_Parse(line) : NULL;
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
        if (cJSON_IsNumber(st) && st->valuedouble <= (double)upto) {
            const cJSON *lo = cJSON_GetObjectItemCaseSensitive(o, "loss");
            const cJSON *va = cJSON_GetObjectItemCaseSensitive(o, "val_loss");
            rc = history_push(&L->hist, (int64_t)st->valuedouble, cJSON_IsNumber(lo) ? lo->valuedouble : NAN,
                              cJSON_IsNumber(va) ? va->valuedouble : NAN);
            if (!rc && klen + (size_t)n + 1 > kcap) {
                size_t nc = (klen + (size_t)n + 1) * 2;
                char *k = realloc(kept, nc);
                if (!k)
                    rc = llm_err(LLM_ENOMEM, "out of memory reading '%s'", L->metrics_path);
                else
                    kept = k, kcap = nc;
            }
            if (!rc) {
                memcpy(kept + klen, line, (size_t)n);
                klen += (size_t)n;
                kept[klen] = 0;
            }
        }
        cJSON_Delete(o);
    }
    fclose(f);
    free(line);
    if (!rc)
        rc = llm_write_text(L->metrics_path, kept ? kept : "", 0);
    free(kept);
    return rc;
}

static int write_row(struct train_loop *L, const struct llm_train_report *r)
{
    cJSON *o = report_json(r);
    cJSON *x = o && L->task->metrics ? L->task->metrics(L->task->ctx) : NULL, *f;
    cJSON_ArrayForEach(f, x) {
        if (cJSON_IsNumber(f) && isfinite(f->valuedouble))
            cJSON_AddNumberToObject(o, f->string, f->valuedouble);
    }
    cJSON_Delete(x);
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s)
        return llm_err(LLM_ENOMEM, "out of memory writing metrics");
    int rc = 0;
    if (fprintf(L->metrics, "%s\n", s) < 0 || fflush(L->metrics))
        rc = llm_err(LLM_EIO, "cannot write '%s': %s", L->metrics_path, strerror(errno));
    free(s);
    return rc ? rc : history_push(&L->hist, r->step, r->loss, r->val_loss);
}

/* loss.svg: the training loss of every row and the validation loss of every
 * evaluation, against the step. */
static int write_plot(struct train_loop *L)
{
    struct train_history *h = &L->hist;
    double *vx = malloc((h->n ? h->n : 1) * sizeof(double)), *vy = malloc((h->n ? h->n : 1) * sizeof(double));
    if (!vx || !vy) {
        free(vx), free(vy);
        return llm_err(LLM_ENOMEM, "out of memory drawing the loss curve");
    }
    size_t nv = 0;
    for (size_t i = 0; i < h->n; i++)
        if (isfinite(h->val[i]))
            vx[nv] = h->step[i], vy[nv++] = h->val[i];
    struct llm_svg_series s[2] = {
        {.name = "train loss", .x = h->step, .y = h->loss, .n = h->n},
        {.name = "val loss", .x = vx, .y = vy, .n = nv},
    };
    struct llm_svg_chart c = {.title = L->cfg->train.out_dir, .xlabel = "step", .ylabel = "loss (nats/token)"};
    char path[TRAIN_PATH_MAX];
    int rc = train_path(path, L->cfg->train.out_dir, "loss.svg");
    if (!rc)
        rc = llm_svg_write(path, &c, s, nv ? 2 : 1);
    free(vx), free(vy);
    return rc;
}

/* ---- the peak for MFU ---- */

/* The backend's matmul throughput on a 1024^3 product (best of 4): the
 * ceiling MFU is measured against (the same definition as bench/). */
static double measure_peak(struct llm_backend *be)
{
    const int n = 1024;
    size_t bytes = (size_t)n * n * sizeof(float);
    float *a = NULL, *b = NULL, *c = NULL;
    double best = 0;
    if (!be->ops->alloc(be->ctx, (void **)&a, bytes) && !be->ops->alloc(be->ctx, (void **)&b, bytes) &&
        !be->ops->alloc(be->ctx, (void **)&c, bytes)) {
        for (int i = 0; i < 5; i++) {
            double t0 = llm_now();
            if (be->ops->matmul_forward(be->ctx, c, a, b, NULL, n, n, n) ||
                (be->ops->sync && be->ops->sync(be->ctx)))
                break;
            double dt = llm_now() - t0;
            if (i && dt > 0 && 2.0 * n * n * n / dt > best)
                best = 2.0 * n * n * n / dt;
        }
    }
    if (a)
        be->ops->free(be->ctx, a);
    if (b)
        be->ops->free(be->ctx, b);
    if (c)
        be->ops->free(be->ctx, c);
    llm_err_clear();
    return best;
}

/* ---- one step ---- */

/* McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training",
 * appendix A.1): with |G_s|^2 the squared norm of one micro-batch's gradient
 * (B_s tokens) and |G_b|^2 that of the accumulated step (B_b tokens),
 *   |G|^2 ~ (B_b |G_b|^2 - B_s |G_s|^2) / (B_b - B_s)
 *   S     ~ (|G_s|^2 - |G_b|^2) / (1/B_s - 1/B_b)
 * are unbiased estimates of the true gradient's squared norm and of the trace
 * of the per-token covariance; B_simple = S / |G|^2, from exponential moving
 * averages of both (each estimate alone is very noisy). Tokens of a sequence
 * are correlated, so this is a token-count estimate. */
static void noise_update(struct train_loop *L, double gs2, double gb2, double bs, double bb)
{
    double g2 = (bb * gb2 - bs * gs2) / (bb - bs);
    double s = (gs2 - gb2) / (1.0 / bs - 1.0 / bb);
    if (!isfinite(g2) || !isfinite(s))
        return;
    const double beta = 0.95;
    L->st.noise_g2 = beta * L->st.noise_g2 + (1 - beta) * g2;
    L->st.noise_s = beta * L->st.noise_s + (1 - beta) * s;
    L->st.noise_n++;
}

static double noise_scale(const struct train_loop *L)
{
    if (L->st.noise_n < 1)
        return NAN;
    double corr = 1 - pow(0.95, (double)L->st.noise_n); /* the same bias on both cancels */
    double g2 = L->st.noise_g2 / corr, s = L->st.noise_s / corr;
    return g2 > 0 && s > 0 ? s / g2 : NAN;
}

/* One optimizer step: k micro-batches, the checks, the update. Sets *r's
 * step fields; *skipped = 1 when the update was skipped. */
static int train_step(struct train_loop *L, struct llm_model *m, struct llm_train_report *r, int *skipped)
{
    const struct llm_config *c = L->cfg;
    struct llm_backend *be = m->be;
    int k = L->accum, rc = llm_model_zero_grad(m);
    double loss = 0, gs2 = 0, total = 0;
    int64_t tok0 = 0, tok = 0;
    for (int i = 0; !rc && i < k; i++) {
        double li;
        int64_t ti;
        rc = L->task->micro_step(L->task->ctx, m, &li, &ti);
        loss += li / k;
        tok += ti;
        if (!rc && i == 0 && k > 1) {
            tok0 = ti;
            rc = be->ops->sumsq(be->ctx, &gs2, m->grads, m->layout.total);
        }
    }
    if (!rc)
        rc = be->ops->sumsq(be->ctx, &total, m->grads, m->layout.total);
    if (rc)
        return rc;
    double norm = sqrt(total) / k; /* of the mean gradient */
    int64_t step = L->st.step + 1;
    double factor = llm_schedule_factor(&c->schedule, step, c->train.steps);
    L->st.tokens += tok;
    r->step = step;
    r->loss = loss;
    r->grad_norm = norm;
    r->lr = c->optim.lr * factor;
    *skipped = 0;
    if (!isfinite(loss) || !isfinite(norm)) {
        *skipped = 1;
        llm_warn("step %lld: %s is %s; step skipped", (long long)step, isfinite(loss) ? "gradient norm" : "loss",
                 isnan(isfinite(loss) ? norm : loss) ? "NaN" : "infinite");
    } else if (c->train.spike_factor > 0 && L->st.loss_n >= 10 && loss > c->train.spike_factor * L->st.loss_ema) {
        *skipped = 1;
        llm_warn("step %lld: loss %.4f is over %g x its running mean %.4f; step skipped", (long long)step, loss,
                 c->train.spike_factor, L->st.loss_ema);
    }
    if (*skipped) {
        L->st.skipped++;
        L->st.step = step;
        if (L->st.skipped > c->train.max_skipped)
            return llm_err(LLM_EINVAL, "%lld steps skipped (train.max_skipped is %d): stopping; lower optim.lr "
                           "or check the data", (long long)L->st.skipped, c->train.max_skipped);
        return 0;
    }
    L->st.loss_ema = L->st.loss_n ? 0.9 * L->st.loss_ema + 0.1 * loss : loss;
    L->st.loss_n++;
    if (k > 1 && tok > tok0)
        noise_update(L, gs2, norm * norm, (double)tok0, (double)tok);
    double clip = c->train.clip_grad > 0 && norm > c->train.clip_grad ? c->train.clip_grad / norm : 1.0;
    rc = llm_optim_step(L->opt, m, factor, (float)(clip / k));
    if (!rc)
        L->st.step = step;
    return rc;
}

/* ---- the loop ---- */

static int evaluate(struct train_loop *L, struct llm_model *m, double *val)
{
    *val = NAN;
    if (!L->task->evaluate)
        return 0;
    int rc = L->task->evaluate(L->task->ctx, m, val);
    if (!rc && isfinite(*val) && !(*val >= L->st.best_val))
        L->st.best_val = *val;
    return rc;
}

static void fill_summary(const struct train_loop *L, const struct llm_model *m, struct llm_train_summary *s)
{
    s->step = L->st.step;
    s->steps = L->cfg->train.steps;
    s->tokens = L->st.tokens;
    s->skipped = L->st.skipped;
    s->loss = L->last_loss;
    s->val_loss = L->last_val;
    s->best_val_loss = L->st.best_val;
    s->elapsed_s = L->st.elapsed;
    s->tokens_per_s = L->st.train_time > 0 ? (double)L->st.tokens / L->st.train_time : NAN;
    s->peak_flops = L->peak;
    s->mfu = L->peak > 0 ? s->tokens_per_s * L->flops_per_token / L->peak : NAN;
    s->noise_scale = noise_scale(L);
    s->params = (int64_t)llm_param_count(&m->layout);
    s->resumed_from = L->resumed_from;
    snprintf(s->checkpoint, sizeof(s->checkpoint), "%s", L->ckpt_path);
}

static int write_summary(const struct train_loop *L, const struct llm_train_summary *s)
{
    cJSON *j = llm_train_summary_json(s);
    char *text = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    char path[TRAIN_PATH_MAX];
    int rc = text ? train_path(path, L->cfg->train.out_dir, "summary.json")
                  : llm_err(LLM_ENOMEM, "out of memory writing the summary");
    if (!rc)
        rc = llm_write_text(path, text, 1);
    free(text);
    return rc;
}

cJSON *llm_train_summary_json(const struct llm_train_summary *s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "step", (double)s->step);
    cJSON_AddNumberToObject(o, "steps", (double)s->steps);
    cJSON_AddNumberToObject(o, "tokens", (double)s->tokens);
    cJSON_AddNumberToObject(o, "params", (double)s->params);
    add_num(o, "loss", s->loss);
    add_num(o, "val_loss", s->val_loss);
    add_num(o, "best_val_loss", s->best_val_loss);
    add_num(o, "elapsed_s", s->elapsed_s);
    add_num(o, "tokens_per_s", s->tokens_per_s);
    add_num(o, "mfu", s->mfu);
    add_num(o, "peak_flops", s->peak_flops);
    add_num(o, "noise_scale", s->noise_scale);
    cJSON_AddNumberToObject(o, "skipped", (double)s->skipped);
    if (s->resumed_from >= 0)
        cJSON_AddNumberToObject(o, "resumed_from", s->resumed_from);
    cJSON_AddBoolToObject(o, "interrupted", s->interrupted);
    cJSON_AddStringToObject(o, "checkpoint", s->checkpoint);
    return o;
}

int llm_train_accum(const struct llm_config *c)
{
    int64_t seq_tokens = (int64_t)c->train.batch_size * c->model.context_length;
    return c->train.batch_tokens ? (int)(c->train.batch_tokens / seq_tokens) : c->train.grad_accum;
}

static int setup(struct train_loop *L, struct llm_model *m, const struct llm_train_opts *o)
{
    const struct llm_config *c = o->cfg;
    L->accum = llm_train_accum(c);
    L->st.best_val = NAN;
    L->last_loss = L->last_val = NAN;
    L->resumed_from = -1;
    int rc = llm_mkdir_p(c->train.out_dir);
    if (!rc)
        train_remove_stale(c->train.out_dir);
    if (!rc)
        rc = train_path(L->metrics_path, c->train.out_dir, "metrics.jsonl");
    if (!rc)
        rc = llm_optim_new(&L->opt, &c->optim, m);
    if (!rc)
        rc = train_resume(L, m, o->resume);
    if (rc)
        return rc;
    if (L->st.step > 0 || L->resumed_from >= 0)
        rc = train_metrics_trim(L, L->st.step);
    else
        rc = llm_write_text(L->metrics_path, "", 0); /* a fresh run starts a fresh file */
    char path[TRAIN_PATH_MAX];
    char *text = rc ? NULL : llm_config_to_string(c);
    if (!rc && !text)
        rc = LLM_ENOMEM;
    if (!rc && !(rc = train_path(path, c->train.out_dir, "config.json")))
        rc = llm_write_text(path, text, 0);
    free(text);
    if (!rc && !(L->metrics = fopen(L->metrics_path, "a")))
        rc = llm_err(LLM_EIO, "cannot open '%s': %s", L->metrics_path, strerror(errno));
    L->flops_per_token = llm_model_train_flops_per_token(&c->model, c->model.context_length);
    L->peak = measure_peak(m->be);
    return rc;
}

int llm_train_run(struct llm_model *m, const struct llm_train_task *task, const struct llm_train_opts *o,
                  struct llm_train_summary *sum)
{
    struct train_loop L;
    memset(&L, 0, sizeof(L));
    memset(sum, 0, sizeof(*sum));
    L.cfg = o->cfg;
    L.o = o;
    L.task = task;
    const struct llm_config *c = o->cfg;
    int rc = setup(&L, m, o);
    double t_session = llm_now(), elapsed0 = L.st.elapsed, t_row = L.st.train_time;
    int64_t step0 = L.st.step, tok_row = L.st.tokens, last_ckpt = L.st.step;
    if (!rc && L.st.step >= c->train.steps && L.resumed_from >= 0)
        sum->already_done = 1;
    int pause = 0; /* stop flag or stop_after: end early with a checkpoint */
    while (!rc && L.st.step < c->train.steps && !pause) {
        struct llm_train_report r = {.steps = c->train.steps, .val_loss = NAN, .tokens_per_s = NAN, .mfu = NAN};
        int skipped;
        double t0 = llm_now();
        rc = train_step(&L, m, &r, &skipped);
        if (rc)
            break;
        L.st.train_time += llm_now() - t0;
        if (!skipped)
            L.last_loss = r.loss;
        int64_t s = L.st.step;
        pause = (o->stop && *o->stop) || (o->stop_after > 0 && s - step0 >= o->stop_after);
        int last = s == c->train.steps || pause;
        int eval = (c->train.eval_every && s % c->train.eval_every == 0) || last;
        if (eval && !(rc = evaluate(&L, m, &r.val_loss)))
            L.last_val = r.val_loss;
        L.st.elapsed = elapsed0 + (llm_now() - t_session);
        r.tokens = L.st.tokens;
        r.elapsed_s = L.st.elapsed;
        r.skipped = L.st.skipped;
        r.noise_scale = noise_scale(&L);
        double dt = L.st.train_time - t_row;
        if (dt > 0) {
            r.tokens_per_s = (double)(L.st.tokens - tok_row) / dt;
            if (L.peak > 0)
                r.mfu = r.tokens_per_s * L.flops_per_token / L.peak;
        }
        if (!rc && (s % c->train.log_every == 0 || eval || last)) {
            rc = write_row(&L, &r);
            t_row = L.st.train_time, tok_row = L.st.tokens;
        }
        if (!rc && eval)
            rc = write_plot(&L);
        if (o->on_step)
            o->on_step(o->on_step_ctx, &r);
        if (!rc && (last || (c->train.checkpoint_every && s % c->train.checkpoint_every == 0))) {
            rc = train_checkpoint(&L, m, s == c->train.steps);
            last_ckpt = s;
        }
    }
    if (!rc && pause && L.st.step < c->train.steps) {
        sum->interrupted = 1;
        if (last_ckpt != L.st.step)
            rc = train_checkpoint(&L, m, 0);
    }
    if (!rc) {
        fill_summary(&L, m, sum); /* all but interrupted and already_done, set above */
        if (!sum->already_done)
            rc = write_summary(&L, sum);
    }
    if (L.metrics)
        fclose(L.metrics);
    llm_optim_free(L.opt);
    train_history_release(&L.hist);
    return rc;
}
