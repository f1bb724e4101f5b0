/* ppo.c: the PPO task. A rollout batch (GRPO's: P prompts x G completions,
 * old and reference log-probs) gets per-token rewards
 *   r_t = -kl_coef (log pi_old(a_t) - log ref(a_t)) + [t = last] score,
 * values V_t = the value model's <|value|> logit after the prefix s_t, GAE
 * advantages (whitened over the batch) and returns R_t = A_t + V_t. Each of
 * grpo.epochs optimizer steps then minimizes, over the batch's completion
 * tokens, the mean clipped ratio loss (the policy, through the loop) and
 * vf_coef x the mean clipped value loss (the value model, through its own
 * optimizer, stepped here at the step's last micro-batch). */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align/ppo.h"
#include "core/ckpt.h"
#include "core/err.h"
#include "model/model_io.h"
#include "optim/schedule.h"

void llm_ppo_gae(const double *r, const double *v, int n, double gamma, double lam, double *adv, double *ret)
{
    double next_v = 0, next_a = 0; /* after the last token the episode is over: V = 0, A = 0 */
    for (int t = n - 1; t >= 0; t--) {
        double delta = r[t] + gamma * next_v - v[t];
        adv[t] = delta + gamma * lam * next_a;
        ret[t] = adv[t] + v[t];
        next_v = v[t], next_a = adv[t];
    }
}

void llm_ppo_whiten(double *x, size_t n)
{
    if (n == 0)
        return;
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; i++)
        mean += x[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    double inv = n > 1 ? 1 / sqrt(var / (double)(n - 1) + 1e-8) : 1;
    for (size_t i = 0; i < n; i++)
        x[i] = (x[i] - mean) * inv;
}

double llm_ppo_value_loss(double v, double v_old, double ret, double c, double *dv, int *clipped)
{
    double lo = v_old - c, hi = v_old + c;
    double vc = v < lo ? lo : v > hi ? hi : v;
    double a = (v - ret) * (v - ret), b = (vc - ret) * (vc - ret);
    *clipped = b > a;
    /* the max picks the pessimistic term; the clipped one depends on v only inside the range, where vc = v */
    *dv = *clipped ? (vc == v ? v - ret : 0) : v - ret;
    return 0.5 * (*clipped ? b : a);
}

/* Forward of the value model over rows of completions; V at every learned
 * position q = r Tb + t into p->buf (0 elsewhere) and its logit's flat index
 * into p->index. training keeps what the backward needs. */
static int value_forward(struct llm_ppo *p, const struct llm_seq *const *rows, int n, int training, int *Tb)
{
    struct llm_model *vm = &p->vm;
    const int V = vm->cfg.vocab_size;
    llm_align_batch(rows, n, p->g.tok, p->g.tgt, Tb);
    int rc = llm_model_forward(vm, p->g.tok, NULL, n, *Tb, training, NULL);
    const float *logits = rc ? NULL : llm_model_logits(vm);
    for (size_t q = 0; !rc && q < (size_t)n * *Tb; q++) {
        p->buf[q] = 0, p->index[q] = -1;
        if (p->g.tgt[q] < 0)
            continue;
        p->index[q] = (int64_t)q * V + p->value_id;
        float v;
        if (!(rc = vm->be->ops->download(vm->be->ctx, &v, logits + p->index[q], sizeof(float))))
            p->buf[q] = v;
    }
    return rc ? rc : vm->be->ops->sync(vm->be->ctx);
}

/* The old values of every completion, B rows at a time (no dropout). */
static int old_values(struct llm_ppo *p, int n)
{
    struct llm_grpo *g = &p->g;
    int rc = 0;
    for (int i0 = 0; !rc && i0 < n; i0 += g->B) {
        int rows = n - i0 < g->B ? n - i0 : g->B, Tb;
        for (int r = 0; r < rows; r++)
            g->rows[r] = &g->roll[i0 + r].seq;
        if ((rc = value_forward(p, g->rows, rows, 0, &Tb)))
            break;
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < g->roll[i0 + r].seq.n - 1; t++)
                p->pr[i0 + r].v[t] = (float)p->buf[(size_t)r * Tb + t];
    }
    return rc;
}

/* Rewards, GAE and whitening of completion i's tokens (its learned targets),
 * appending its raw advantages to all[*na]. */
static void gae_of(struct llm_ppo *p, int i, double score, double *r, double *v, double *a, double *ret, double *all,
                   size_t *na)
{
    const struct llm_ppo_config *c = &p->cfg->ppo;
    const struct llm_grpo_roll *x = &p->g.roll[i];
    struct llm_ppo_roll *y = &p->pr[i];
    int L = 0;
    double kl = 0;
    for (int t = 0; t < x->seq.n - 1; t++) {
        if (!x->seq.learn[t + 1])
            continue;
        double d = (double)x->old_logp[t] - x->ref_logp[t]; /* the sampled log-ratio: an estimate of KL(pi || ref) */
        kl += d;
        r[L] = -c->kl_coef * d, v[L] = y->v[t], L++;
    }
    if (L == 0)
        return;
    r[L - 1] += score;
    llm_ppo_gae(r, v, L, c->gamma, c->lam, a, ret);
    struct llm_ppo_stats *s = &p->stats;
    for (int t = 0, k = 0; t < x->seq.n - 1; t++) {
        if (!x->seq.learn[t + 1])
            continue;
        y->ret[t] = (float)ret[k];
        s->ret += ret[k], s->ret2 += ret[k] * ret[k];
        s->res += ret[k] - v[k], s->res2 += (ret[k] - v[k]) * (ret[k] - v[k]);
        all[(*na)++] = a[k++];
    }
    double rlhf = score - c->kl_coef * kl;
    s->kl += kl, s->ev_tokens += L;
    s->rlhf += rlhf, s->rlhf2 += rlhf * rlhf, s->seqs++;
}

/* A new rollout batch: GRPO's rollout, then values, rewards and advantages. */
static int rollout(struct llm_ppo *p, struct llm_model *m)
{
    struct llm_grpo *g = &p->g;
    const int n = g->P * g->G, M = g->cfg->grpo.max_tokens + 1;
    double *score = calloc((size_t)n, sizeof(double)), *tmp = malloc(4 * (size_t)M * sizeof(double)), *all = NULL;
    int rc = score && tmp ? llm_grpo_rollout(g, m, score) : llm_err(LLM_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        struct llm_ppo_roll *y = &p->pr[i];
        size_t L = (size_t)g->roll[i].seq.n;
        free(y->v), free(y->adv), free(y->ret);
        y->v = calloc(L, sizeof(float)), y->adv = calloc(L, sizeof(float)), y->ret = calloc(L, sizeof(float));
        if (!y->v || !y->adv || !y->ret)
            rc = llm_err(LLM_ENOMEM, "out of memory");
        if (g->roll[i].seq.n_learn >= M)
            rc = llm_err(LLM_EINVAL, "a completion is longer than grpo.max_tokens"); /* cannot happen: a guard */
    }
    if (!rc)
        rc = old_values(p, n);
    if (!rc && !(all = malloc(((size_t)g->norm_tokens + 1) * sizeof(double))))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    size_t na = 0;
    for (int i = 0; !rc && i < n; i++)
        gae_of(p, i, score[i], tmp, tmp + M, tmp + 2 * M, tmp + 3 * M, all, &na);
    if (!rc) {
        /* whitened over all completion tokens of the batch (Ouyang et al. 2022; TRL) */
        llm_ppo_whiten(all, na);
        size_t k = 0;
        for (int i = 0; i < n; i++) {
            const struct llm_grpo_roll *x = &g->roll[i];
            int first = 1;
            for (int t = 0; t < x->seq.n - 1; t++) {
                if (!x->seq.learn[t + 1])
                    continue;
                p->pr[i].adv[t] = (float)all[k++];
                if (first)
                    g->roll[i].adv = p->pr[i].adv[t], first = 0; /* samples.jsonl: the first token's advantage */
            }
        }
        llm_grpo_rollout_done(g);
    }
    free(score), free(tmp), free(all);
    return rc;
}

/* The value model's gradient of vf_coef x the mean clipped value loss over
 * the batch's completion tokens, for this micro-batch's rows; its optimizer
 * steps at the step's last micro-batch (the loss goes to the metrics). */
static int value_step(struct llm_ppo *p, int block, const struct llm_ppo_roll *pr)
{
    struct llm_grpo *g = &p->g;
    const struct llm_ppo_config *c = &p->cfg->ppo;
    const double k = g->accum, coef = g->norm_tokens > 0 ? 1.0 / g->norm_tokens : 0;
    int Tb, rc = block == 0 ? llm_model_zero_grad(&p->vm) : 0;
    if (!rc)
        rc = value_forward(p, g->rows, g->B, 1, &Tb);
    if (rc)
        return rc;
    int cnt = 0;
    for (int r = 0; r < g->B; r++)
        for (int t = 0; t < Tb; t++) {
            size_t q = (size_t)r * Tb + t;
            if (p->index[q] < 0)
                continue;
            double dv;
            int clipped;
            double l = llm_ppo_value_loss(p->buf[q], pr[r].v[t], pr[r].ret[t], c->cliprange_value, &dv, &clipped);
            p->stats.vloss += c->vf_coef * l, p->stats.vclipped += clipped, p->stats.vtokens++;
            /* x k: the optimizer step below divides by k, as the loop does for the policy */
            p->index[cnt] = p->index[q], p->vgrad[cnt++] = (float)(c->vf_coef * coef * dv * k);
        }
    if (cnt && (rc = llm_model_backward_logits(&p->vm, p->index, p->vgrad, cnt)))
        return rc;
    if (block != g->accum - 1)
        return 0;
    if (!p->vm.grads) /* no completion tokens in the whole step: nothing to learn */
        return 0;
    double ss;
    struct llm_backend *be = p->vm.be;
    if ((rc = be->ops->sumsq(be->ctx, &ss, p->vm.grads, p->vm.layout.total)))
        return rc;
    double norm = sqrt(ss) / k;
    double clip = c->value_clip_grad > 0 && norm > c->value_clip_grad ? c->value_clip_grad / norm : 1.0;
    double factor = llm_schedule_factor(&p->cfg->schedule, llm_optim_t(p->vopt) + 1, p->cfg->train.steps);
    if (!isfinite(norm))
        return 0; /* as the loop: a non-finite gradient is skipped (the policy's step is skipped too) */
    return llm_optim_step(p->vopt, &p->vm, factor, (float)(clip / k));
}

static int micro_step(void *ctx, struct llm_model *m, double *loss, int64_t *tokens)
{
    struct llm_ppo *p = ctx;
    struct llm_grpo *g = &p->g;
    int rc = g->micro == 0 ? rollout(p, m) : 0;
    int block = g->micro % g->accum;
    const struct llm_ppo_roll *pr = p->pr + (size_t)block * g->B;
    for (int r = 0; r < g->B; r++)
        p->tok_adv[r] = pr[r].adv;
    /* the policy (GRPO's step with per-token advantages), then the value model on the same rows */
    if (!rc)
        rc = llm_grpo_policy_micro(g, m, block, p->tok_adv, loss, tokens);
    if (!rc)
        rc = value_step(p, block, pr);
    g->micro = (g->micro + 1) % (g->accum * g->epochs);
    return rc;
}

static void rename_item(cJSON *o, const char *from, const char *to)
{
    cJSON *it = cJSON_DetachItemFromObjectCaseSensitive(o, from);
    if (it)
        cJSON_AddItemToObject(o, to, it);
}

static cJSON *metrics(void *ctx)
{
    struct llm_ppo *p = ctx;
    struct llm_ppo_stats *s = &p->stats;
    /* GRPO's: score (its "reward"), completion_length, rewards/<term>, entropy, clip_ratio, val_reward */
    cJSON *o = p->g.task.metrics(&p->g);
    if (o) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, "frac_reward_zero_std");
        cJSON_DeleteItemFromObjectCaseSensitive(o, "kl");
        rename_item(o, "reward", "score");
        rename_item(o, "reward_std", "score_std");
    }
    if (o && s->seqs > 0) {
        double mean = s->rlhf / s->seqs;
        cJSON_AddNumberToObject(o, "reward", mean);
        cJSON_AddNumberToObject(o, "reward_std", sqrt(fmax(0, s->rlhf2 / s->seqs - mean * mean)));
    }
    if (o && s->ev_tokens > 0) {
        double n = s->ev_tokens, mr = s->ret / n, me = s->res / n;
        double vr = s->ret2 / n - mr * mr, ve = s->res2 / n - me * me;
        cJSON_AddNumberToObject(o, "kl", s->kl / n);
        /* 1 - Var(R - V) / Var(R): 1 = the values predict the returns, <= 0 = no better than a constant */
        if (vr > 0)
            cJSON_AddNumberToObject(o, "explained_variance", 1 - ve / vr);
    }
    if (o && s->vtokens > 0) {
        cJSON_AddNumberToObject(o, "value_loss", s->vloss / s->vtokens); /* vf_coef x, per token */
        cJSON_AddNumberToObject(o, "value_clip_ratio", s->vclipped / s->vtokens);
    }
    memset(s, 0, sizeof(*s));
    return o;
}

/* ---- the value model in out_dir/value.llm, written with every checkpoint ---- */

static int save_value(struct llm_ppo *p)
{
    cJSON *h = llm_align_header(&p->vbase), *st = cJSON_CreateObject(), *rng = cJSON_CreateArray();
    int rc = h && st && rng ? 0 : llm_err(LLM_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < 4; i++) {
        char b[24];
        snprintf(b, sizeof(b), "%" PRIu64, p->vm.rng.s[i]);
        cJSON_AddItemToArray(rng, cJSON_CreateString(b));
    }
    if (!rc) {
        cJSON_AddNumberToObject(st, "rollouts", (double)p->g.rollouts);
        cJSON_AddNumberToObject(st, "optim_t", (double)llm_optim_t(p->vopt));
        cJSON_AddItemToObject(st, "dropout_rng", rng), rng = NULL;
        cJSON_AddItemToObject(h, "ppo_value", st), st = NULL;
    }
    size_t n = p->vopt ? llm_optim_tensor_count(p->vopt) : 0;
    struct llm_state_tensor *t = rc ? NULL : calloc(n ? n : 1, sizeof(*t));
    if (!rc && !t)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        const struct llm_optim_tensor *ot = llm_optim_tensor(p->vopt, i);
        t[i] = (struct llm_state_tensor){ot->name, ot->ndim, ot->shape, ot->numel, ot->data};
    }
    if (!rc)
        rc = llm_model_save_state(&p->vm, p->value_path, h, t, n);
    free(t);
    cJSON_Delete(h), cJSON_Delete(st), cJSON_Delete(rng);
    return rc;
}

/* Tensor name of r (f32, numel floats) into device memory dst. */
static int read_tensor(struct llm_ckpt_reader *r, const char *name, size_t numel, float *dst, const char *path,
                       struct llm_backend *be)
{
    long k = llm_ckpt_find(r, name);
    const struct llm_ckpt_tensor *t = k < 0 ? NULL : llm_ckpt_tensor(r, (size_t)k);
    if (!t || t->dtype != LLM_CKPT_F32 || t->nbytes != numel * sizeof(float))
        return llm_err(LLM_EFORMAT, "%s: tensor '%s' is missing or not f32 of %zu values", path, name, numel);
    return llm_model_read_device(r, (size_t)k, be, dst);
}

static int load_value(struct llm_ppo *p)
{
    const char *path = p->value_path;
    struct llm_ckpt_reader *r;
    int rc = llm_ckpt_open(&r, path);
    if (rc)
        return llm_err_wrap(rc, "PPO's value model (written with every checkpoint)");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(llm_ckpt_header(r), "ppo_value");
    const cJSON *ro = cJSON_GetObjectItemCaseSensitive(st, "rollouts");
    const cJSON *ot = cJSON_GetObjectItemCaseSensitive(st, "optim_t");
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(st, "dropout_rng");
    if (!cJSON_IsNumber(ro) || !cJSON_IsNumber(ot) || ot->valuedouble < 0 || cJSON_GetArraySize(rng) != 4)
        rc = llm_err(LLM_EFORMAT, "%s: not a PPO value model (no ppo_value state in its header)", path);
    else if ((int64_t)ro->valuedouble != p->g.rollouts)
        rc = llm_err(LLM_EFORMAT, "%s is at rollout batch %lld, the checkpoint at %lld: resume from the newest "
                     "checkpoint", path, (long long)ro->valuedouble, (long long)p->g.rollouts);
    struct llm_model *vm = &p->vm;
    for (int i = 0; !rc && i < 4; i++) {
        const cJSON *s = cJSON_GetArrayItem(rng, i);
        char *end = NULL;
        if (cJSON_IsString(s))
            vm->rng.s[i] = strtoull(s->valuestring, &end, 10);
        if (!end || *end)
            rc = llm_err(LLM_EFORMAT, "%s: ppo_value.dropout_rng[%d] is not a u64", path, i);
    }
    for (size_t i = 0; !rc && i < vm->layout.n; i++)
        rc = read_tensor(r, vm->layout.p[i].name, vm->layout.p[i].numel, vm->params + vm->layout.p[i].offset, path,
                         vm->be);
    for (size_t i = 0; !rc && i < llm_optim_tensor_count(p->vopt); i++) {
        const struct llm_optim_tensor *t = llm_optim_tensor(p->vopt, i);
        rc = read_tensor(r, t->name, t->numel, t->data, path, vm->be);
    }
    if (!rc)
        llm_optim_set_t(p->vopt, (int64_t)ot->valuedouble);
    if (!rc && vm->be->ops->sync)
        rc = vm->be->ops->sync(vm->be->ctx);
    llm_ckpt_close(r);
    return rc;
}

static int evaluate(void *ctx, struct llm_model *m, double *val_loss)
{
    struct llm_ppo *p = ctx;
    return p->g.task.evaluate(&p->g, m, val_loss);
}

static cJSON *state(void *ctx)
{
    struct llm_ppo *p = ctx;
    cJSON *o = p->g.task.state(&p->g);
    if (o && save_value(p)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int restore(void *ctx, const cJSON *st)
{
    struct llm_ppo *p = ctx;
    int rc = p->g.task.restore(&p->g, st);
    return rc ? rc : load_value(p);
}

/* The value model: ppo.value_from (or train.init_from) with <|value|> added. */
static int value_init(struct llm_ppo *p, const struct llm_config *cfg, const struct llm_model *m)
{
    struct llm_config vc;
    const char *from = cfg->ppo.value_from[0] ? cfg->ppo.value_from : cfg->train.init_from;
    int rc = llm_config_copy(&vc, cfg);
    if (rc)
        return rc;
    free(vc.train.init_from);
    if (!(vc.train.init_from = strdup(from)))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (!rc && (rc = llm_align_load(&vc, m->be, &p->vm, &p->vbase)))
        rc = llm_err_wrap(rc, "the value model (ppo.value_from)");
    else if (!rc)
        p->have_vm = 1;
    const char *name = LLM_VALUE_TOKEN;
    if (!rc)
        rc = llm_align_add_specials(&p->vbase, &p->vm, &name, 1);
    p->value_id = rc ? -1 : (int)llm_tok_special_id(p->vbase.tok, LLM_VALUE_TOKEN);
    if (!rc && p->vm.cfg.vocab_size < m->cfg.vocab_size)
        rc = llm_err(LLM_EINVAL, "ppo.value_from: its vocabulary (%d) is smaller than the policy's (%d)",
                     p->vm.cfg.vocab_size, m->cfg.vocab_size);
    else if (!rc && p->vm.cfg.context_length < m->cfg.context_length)
        rc = llm_err(LLM_EINVAL, "ppo.value_from: its context (%d) is shorter than the policy's (%d)",
                     p->vm.cfg.context_length, m->cfg.context_length);
    struct llm_optim_config oc = cfg->optim;
    if (cfg->ppo.value_lr > 0)
        oc.lr = cfg->ppo.value_lr;
    if (!rc)
        rc = llm_optim_new(&p->vopt, &oc, &p->vm);
    llm_config_release(&vc);
    return rc;
}

int llm_ppo_init(struct llm_ppo *p, const struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m)
{
    memset(p, 0, sizeof(*p));
    p->cfg = cfg;
    int rc = llm_grpo_init_ex(&p->g, cfg, b, m, 1);
    if (rc)
        return rc;
    size_t n = (size_t)p->g.P * p->g.G, bt = (size_t)p->g.B * cfg->model.context_length;
    rc = value_init(p, cfg, m);
    if (!rc && (!(p->pr = calloc(n, sizeof(*p->pr))) || !(p->tok_adv = calloc((size_t)p->g.B, sizeof(float *))) || !(p->index = malloc(bt * sizeof(int64_t))) ||
                !(p->vgrad = malloc(bt * sizeof(float))) || !(p->buf = malloc(bt * sizeof(double)))))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (!rc && snprintf(p->value_path, sizeof(p->value_path), "%s/value.llm", cfg->train.out_dir) >=
                   (int)sizeof(p->value_path))
        rc = llm_err(LLM_EINVAL, "train.out_dir: path too long");
    if (rc) {
        llm_ppo_release(p);
        return rc;
    }
    p->task = (struct llm_train_task){
        .ctx = p, .micro_step = micro_step, .evaluate = p->g.task.evaluate ? evaluate : NULL,
        .state = state, .restore = restore, .metrics = metrics,
    };
    return 0;
}

void llm_ppo_release(struct llm_ppo *p)
{
    for (int i = 0; p->pr && i < p->g.P * p->g.G; i++)
        free(p->pr[i].v), free(p->pr[i].adv), free(p->pr[i].ret);
    free(p->pr), free(p->tok_adv), free(p->index), free(p->vgrad), free(p->buf);
    llm_optim_free(p->vopt);
    if (p->have_vm)
        llm_model_release(&p->vm);
    llm_align_base_release(&p->vbase);
    llm_grpo_release(&p->g);
    memset(p, 0, sizeof(*p));
}
