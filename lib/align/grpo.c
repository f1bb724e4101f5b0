/* grpo.c: the GRPO task. A rollout batch is P prompts x G completions; it
 * is used for grpo.epochs optimizer steps of train.grad_accum micro-batches
 * of train.batch_size completions each. For completion i with tokens t:
 *   l_it = -min(r_it A_i, clip(r_it, 1-eps, 1+eps_high) A_i) + beta k3_it,
 *   r_it = pi(t) / pi_old(t),
 * aggregated as grpo: mean_i (1/|o_i|) sum_t l_it; dr_grpo: sum_it l_it /
 * (P G max_tokens); dapo: sum_it l_it / sum_i |o_i|. The gradient goes
 * through llm_model_backward_ex with per-token weights -dl/dlogp x the
 * aggregation coefficient x k (the loop averages the k micro-gradients). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align/grpo.h"
#include "align/reward.h"
#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "infer/generate.h"
#include "model/model_io.h"

int llm_grpo_advantages(const double *r, int groups, int G, int scale, double *adv)
{
    int flat = 0;
    for (int g = 0; g < groups; g++) {
        const double *x = r + (size_t)g * G;
        double mean = 0, var = 0;
        for (int i = 0; i < G; i++)
            mean += x[i];
        mean /= G;
        for (int i = 0; i < G; i++)
            var += (x[i] - mean) * (x[i] - mean);
        double sd = G > 1 ? sqrt(var / (G - 1)) : 0; /* the sample std, as TRL's torch.std */
        flat += var == 0;
        for (int i = 0; i < G; i++)
            adv[(size_t)g * G + i] = scale ? (x[i] - mean) / (sd + 1e-4) : x[i] - mean;
    }
    return flat;
}

double llm_grpo_token_loss(double logp, double old, double ref, double A, double eps, double eps_high, double beta,
                           double *dlogp, int *clipped)
{
    double ratio = exp(logp - old);
    double lo = 1 - eps, hi = 1 + eps_high;
    double rc = ratio < lo ? lo : ratio > hi ? hi : ratio;
    double un = ratio * A, cl = rc * A;
    /* min(un, cl): the clipped term binds (and passes no gradient) when the
     * ratio left the range in the direction the advantage pushes it */
    *clipped = cl < un;
    double obj = *clipped ? cl : un;
    double d = *clipped ? 0 : -un; /* d(-ratio A)/dlogp = -ratio A */
    double loss = -obj;
    if (beta > 0) {
        double x = ref - logp;
        loss += beta * (exp(x) - x - 1);
        d += beta * (1 - exp(x)); /* d/dlogp of exp(ref - logp) - (ref - logp) - 1 */
    }
    *dlogp = d;
    return loss;
}

static void roll_release(struct llm_grpo_roll *r)
{
    llm_seq_release(&r->seq);
    free(r->text), free(r->old_logp), free(r->ref_logp);
    memset(r, 0, sizeof(*r));
}

/* Per-token log-probabilities (learned positions) of rolls under model m, B rows at a time. */
static int score(struct llm_grpo *g, struct llm_model *m, struct llm_grpo_roll *rolls, int n, int ref, int entropy)
{
    const int V = m->cfg.vocab_size;
    int rc = 0;
    for (int i0 = 0; !rc && i0 < n; i0 += g->B) {
        int rows = n - i0 < g->B ? n - i0 : g->B, Tb;
        for (int r = 0; r < rows; r++)
            g->rows[r] = &rolls[i0 + r].seq;
        llm_align_batch(g->rows, rows, g->tok, g->tgt, &Tb);
        float mean;
        if ((rc = llm_model_forward(m, g->tok, g->tgt, rows, Tb, 0, &mean)))
            break;
        if (entropy) {
            /* H = -sum_v p_v log p_v of the policy at each completion token */
            rc = m->be->ops->download(m->be->ctx, g->logits, llm_model_logits(m), (size_t)rows * Tb * V * sizeof(float));
            if (!rc)
                rc = m->be->ops->sync(m->be->ctx);
            for (size_t k = 0; !rc && k < (size_t)rows * Tb; k++) {
                if (g->tgt[k] < 0)
                    continue;
                const float *z = g->logits + k * V;
                double mx = z[0], s = 0, sz = 0;
                for (int v = 1; v < V; v++)
                    mx = z[v] > mx ? z[v] : mx;
                for (int v = 0; v < V; v++) {
                    double e = exp(z[v] - mx);
                    s += e, sz += e * (z[v] - mx);
                }
                g->stats.entropy += log(s) - sz / s;
            }
        }
        for (int r = 0; !rc && r < rows; r++) {
            struct llm_grpo_roll *x = &rolls[i0 + r];
            float *dst = ref ? x->ref_logp : x->old_logp;
            for (int t = 0; t < x->seq.n - 1; t++)
                dst[t] = g->tgt[(size_t)r * Tb + t] >= 0 ? -m->host_losses[(size_t)r * Tb + t] : 0.0f;
        }
    }
    return rc;
}

/* Appends the first group's completions to samples.jsonl (every sample_every steps). */
static void log_samples(struct llm_grpo *g, int64_t step)
{
    FILE *f = fopen(g->samples_path, "a");
    if (!f) {
        llm_warn("cannot write %s", g->samples_path);
        return;
    }
    const cJSON *rec = g->train.v[g->roll_prompt[0]];
    for (int i = 0; i < g->G; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "step", (double)step);
        cJSON_AddItemToObject(o, "prompt", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(rec, "prompt"), 1));
        cJSON_AddItemToObject(o, "answer", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(rec, "answer"), 1));
        cJSON_AddStringToObject(o, "completion", g->roll[i].text);
        cJSON_AddNumberToObject(o, "reward", g->roll[i].reward);
        cJSON_AddNumberToObject(o, "advantage", g->roll[i].adv);
        llm_jsonl_write(f, o, g->samples_path);
        cJSON_Delete(o);
    }
    fclose(f);
}

/* The verifier's items: each record with "completion" set (caller frees). */
static int rewards(struct llm_grpo *g, const struct llm_jsonl_records *recs, const int *rec_of, char **texts, int n,
                   double *out)
{
    cJSON **items = calloc((size_t)n, sizeof(cJSON *));
    int rc = items ? 0 : llm_err(LLM_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        if (!(items[i] = cJSON_Duplicate(recs->v[rec_of[i]], 1)))
            rc = llm_err(LLM_ENOMEM, "out of memory");
        else
            cJSON_AddStringToObject(items[i], "completion", texts[i]);
    }
    if (!rc)
        rc = llm_verifier_score(g->verifier, (const cJSON *const *)items, n, out);
    for (int i = 0; items && i < n; i++)
        cJSON_Delete(items[i]);
    free(items);
    return rc;
}

static struct llm_gen_opts gen_opts(const struct llm_grpo *g, const char **stop, double temperature)
{
    const struct llm_grpo_config *c = &g->cfg->grpo;
    *stop = c->stop;
    struct llm_gen_opts o = {
        .sample = {.temperature = temperature, .top_p = c->top_p, .repetition_penalty = 1.0,
                   .seed = (uint64_t)g->cfg->train.seed},
        .max_tokens = c->max_tokens,
        .stops = c->stop[0] ? stop : NULL,
        .n_stops = c->stop[0] ? 1 : 0,
        .eot = g->base->eot,
        .batch = g->P * g->G < 64 ? g->P * g->G : 64,
        .truncate = LLM_GEN_TRUNCATE_ERROR,
        .allow_special = 0,
    };
    return o;
}

/* Adds grpo.reward_model_weight x the reward model's score of each rollout
 * (its sequence with the reward token appended) to r. */
static int model_rewards(struct llm_grpo *g, int n, double *r)
{
    const struct llm_seq **seqs = calloc((size_t)n, sizeof(*seqs));
    struct llm_seq *tmp = calloc((size_t)n, sizeof(*tmp));
    double *score = calloc((size_t)n, sizeof(double));
    int rc = seqs && tmp && score ? 0 : llm_err(LLM_ENOMEM, "out of memory"), T = g->rm.cfg.context_length;
    for (int i = 0; !rc && i < n; i++) {
        const struct llm_seq *x = &g->roll[i].seq;
        int at = x->n < T + 1 ? x->n : T; /* keep room for the token: the end of a long one is cut */
        if (!(tmp[i].ids = malloc((size_t)(at + 1) * sizeof(int32_t)))) {
            rc = llm_err(LLM_ENOMEM, "out of memory");
            break;
        }
        memcpy(tmp[i].ids, x->ids, (size_t)at * sizeof(int32_t));
        tmp[i].ids[at] = g->rm_id;
        tmp[i].n = at + 1;
        seqs[i] = &tmp[i];
    }
    if (!rc)
        rc = llm_reward_score(&g->rm, g->rm_id, seqs, n, g->B, score);
    for (int i = 0; !rc && i < n; i++) {
        r[i] += g->cfg->grpo.reward_model_weight * score[i];
        g->stats.model += score[i];
    }
    for (int i = 0; tmp && i < n; i++)
        free(tmp[i].ids);
    free(seqs), free(tmp), free(score);
    return rc;
}

int llm_grpo_rollout(struct llm_grpo *g, struct llm_model *m, double *r)
{
    const int n = g->P * g->G;
    char **prompts = calloc((size_t)n, sizeof(char *)), **texts = calloc((size_t)n, sizeof(char *));
    uint64_t *seeds = calloc((size_t)n, sizeof(uint64_t));
    size_t *lens = calloc((size_t)n, sizeof(size_t));
    int *rec_of = calloc((size_t)n, sizeof(int));
    struct llm_gen_result *res = calloc((size_t)n, sizeof(*res));
    int rc = prompts && texts && seeds && lens && rec_of && res ? 0 : llm_err(LLM_ENOMEM, "out of memory");
    for (int p = 0; !rc && p < g->P; p++) {
        g->roll_prompt[p] = llm_align_order_next(&g->order);
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(g->train.v[g->roll_prompt[p]], "prompt");
        for (int k = 0; k < g->G; k++) {
            int i = p * g->G + k;
            prompts[i] = pr->valuestring, lens[i] = strlen(pr->valuestring), rec_of[i] = g->roll_prompt[p];
            /* a seed per completion: the G samples of a prompt differ */
            seeds[i] = (uint64_t)g->cfg->train.seed * 0x9E3779B97F4A7C15ull + (uint64_t)g->rollouts * 1000003u + (uint64_t)i;
        }
    }
    const char *stop;
    struct llm_gen_opts go = gen_opts(g, &stop, g->cfg->grpo.temperature);
    go.seeds = seeds;
    struct llm_gen_stats st;
    if (!rc)
        rc = llm_generate(m, g->base->tok, (const char *const *)prompts, lens, n, &go, NULL, NULL, res, &st);
    for (int i = 0; !rc && i < n; i++)
        texts[i] = res[i].completion;
    if (!rc)
        rc = rewards(g, &g->train, rec_of, texts, n, r);
    /* the sequences: the prompt's ids as generate encoded them, then the sampled ids */
    g->norm_tokens = 0;
    for (int i = 0; !rc && i < n; i++) {
        struct llm_grpo_roll *x = &g->roll[i];
        roll_release(x);
        struct llm_ids ids = {0};
        rc = llm_tok_encode(g->base->enc, prompts[i], lens[i], 0, &ids);
        int L = (int)ids.n + res[i].n_ids;
        if (!rc && (!(x->seq.ids = malloc((size_t)L * sizeof(int32_t))) || !(x->seq.learn = calloc((size_t)L, 1)) || !(x->old_logp = calloc((size_t)L, sizeof(float))) ||
                    (g->have_ref && !(x->ref_logp = calloc((size_t)L, sizeof(float))))))
            rc = llm_err(LLM_ENOMEM, "out of memory");
        for (size_t k = 0; !rc && k < ids.n; k++)
            x->seq.ids[k] = (int32_t)ids.v[k];
        for (int k = 0; !rc && k < res[i].n_ids; k++)
            x->seq.ids[ids.n + k] = res[i].ids[k], x->seq.learn[ids.n + k] = 1;
        if (!rc) {
            x->seq.n = L, x->seq.n_learn = res[i].n_ids;
            x->text = res[i].completion, res[i].completion = NULL;
            g->norm_tokens += res[i].n_ids;
            g->stats.length += res[i].n_ids;
        }
        llm_ids_release(&ids);
    }
    if (!rc && g->have_rm)
        rc = model_rewards(g, n, r);
    for (int i = 0; !rc && i < n; i++)
        g->roll[i].reward = r[i];
    /* the rollout policy's log-probabilities (the ratio's denominator), and the reference's */
    if (!rc)
        rc = score(g, m, g->roll, n, 0, 1);
    if (!rc && g->have_ref)
        rc = score(g, &g->ref, g->roll, n, 1, 0);
    if (!rc) {
        struct llm_grpo_stats *s = &g->stats;
        for (int i = 0; i < n; i++)
            s->reward += r[i], s->reward2 += r[i] * r[i];
        for (int t = 0; t < llm_verifier_terms(g->verifier); t++) {
            const double *tr = llm_verifier_term_rewards(g->verifier, t);
            for (int i = 0; i < n; i++)
                s->terms[t] += tr[i];
        }
        s->n += n, s->tokens += g->norm_tokens;
    }
    if (res)
        llm_gen_results_release(res, n);
    free(prompts), free(texts), free(seeds), free(lens), free(rec_of), free(res);
    return rc;
}

void llm_grpo_rollout_done(struct llm_grpo *g)
{
    int64_t step = g->rollouts * g->epochs + 1;
    if (g->cfg->grpo.sample_every && (step - 1) % g->cfg->grpo.sample_every == 0)
        log_samples(g, step);
    g->rollouts++;
}

/* A new rollout batch from the current policy m, with group-relative advantages. */
static int rollout(struct llm_grpo *g, struct llm_model *m)
{
    const int n = g->P * g->G;
    double *r = calloc((size_t)n, sizeof(double)), *adv = calloc((size_t)n, sizeof(double));
    int rc = r && adv ? llm_grpo_rollout(g, m, r) : llm_err(LLM_ENOMEM, "out of memory");
    if (!rc) {
        int flat = llm_grpo_advantages(r, g->P, g->G, g->cfg->grpo.scale_rewards, adv);
        for (int i = 0; i < n; i++)
            g->roll[i].adv = adv[i];
        g->stats.zero_std_groups += flat, g->stats.groups += g->P;
        llm_grpo_rollout_done(g);
    }
    free(r), free(adv);
    return rc;
}

int llm_grpo_policy_micro(struct llm_grpo *g, struct llm_model *m, int block, const float *const *tok_adv,
                          double *loss, int64_t *tokens)
{
    const struct llm_grpo_config *c = &g->cfg->grpo;
    int Tb, rc;
    struct llm_grpo_roll *rolls = g->roll + (size_t)block * g->B;
    for (int r = 0; r < g->B; r++)
        g->rows[r] = &rolls[r].seq;
    llm_align_batch(g->rows, g->B, g->tok, g->tgt, &Tb);
    float mean;
    if ((rc = llm_model_forward(m, g->tok, g->tgt, g->B, Tb, 1, &mean)))
        return rc;
    double total = 0;
    int64_t real = 0;
    const double k = g->accum, n = (double)g->P * g->G;
    const double beta = tok_adv ? 0 : c->beta;
    for (int r = 0; r < g->B; r++) {
        const struct llm_grpo_roll *x = &rolls[r];
        double coef; /* the aggregation's weight of each of this completion's tokens */
        if (!tok_adv && c->loss_agg == LLM_GRPO_AGG_GRPO)
            coef = x->seq.n_learn ? 1.0 / (n * x->seq.n_learn) : 0;
        else if (!tok_adv && c->loss_agg == LLM_GRPO_AGG_DR_GRPO)
            coef = 1.0 / (n * c->max_tokens);
        else
            coef = g->norm_tokens > 0 ? 1.0 / g->norm_tokens : 0;
        for (int t = 0; t < Tb; t++) {
            size_t q = (size_t)r * Tb + t;
            g->w[q] = 0;
            if (g->tgt[q] < 0)
                continue;
            double logp = -m->host_losses[q], dl;
            int clipped;
            double l = llm_grpo_token_loss(logp, x->old_logp[t], x->ref_logp && beta > 0 ? x->ref_logp[t] : logp,
                                           tok_adv ? tok_adv[r][t] : x->adv, c->epsilon, c->epsilon_high, beta, &dl,
                                           &clipped);
            total += coef * l;
            g->w[q] = (float)(-dl * coef * k); /* CE = -logp */
            g->stats.clipped += clipped;
            if (x->ref_logp && beta > 0) {
                double d = x->ref_logp[t] - logp;
                g->stats.kl += exp(d) - d - 1;
            }
        }
        real += x->seq.n - 1;
    }
    rc = llm_model_backward_ex(m, g->w, NULL);
    *loss = total * k; /* this micro-batch's share, scaled as the loop averages */
    *tokens = real;
    return rc;
}

static int micro_step(void *ctx, struct llm_model *m, double *loss, int64_t *tokens)
{
    struct llm_grpo *g = ctx;
    int rc = g->micro == 0 ? rollout(g, m) : 0;
    if (!rc)
        rc = llm_grpo_policy_micro(g, m, g->micro % g->accum, NULL, loss, tokens);
    g->micro = (g->micro + 1) % (g->accum * g->epochs);
    return rc;
}

/* Greedy completions of the validation prompts: their mean reward. */
static int evaluate(void *ctx, struct llm_model *m, double *val_loss)
{
    struct llm_grpo *g = ctx;
    int n = g->n_val, rc = 0;
    const char **prompts = calloc((size_t)n, sizeof(char *));
    char **texts = calloc((size_t)n, sizeof(char *));
    size_t *lens = calloc((size_t)n, sizeof(size_t));
    int *rec_of = calloc((size_t)n, sizeof(int));
    double *r = calloc((size_t)n, sizeof(double));
    struct llm_gen_result *res = calloc((size_t)n, sizeof(*res));
    if (!prompts || !texts || !lens || !rec_of || !r || !res)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        prompts[i] = cJSON_GetObjectItemCaseSensitive(g->val.v[i], "prompt")->valuestring;
        lens[i] = strlen(prompts[i]), rec_of[i] = i;
    }
    const char *stop;
    struct llm_gen_opts go = gen_opts(g, &stop, 0.0);
    struct llm_gen_stats st;
    if (!rc)
        rc = llm_generate(m, g->base->tok, prompts, lens, n, &go, NULL, NULL, res, &st);
    for (int i = 0; !rc && i < n; i++)
        texts[i] = res[i].completion;
    if (!rc)
        rc = rewards(g, &g->val, rec_of, texts, n, r);
    double sum = 0;
    for (int i = 0; !rc && i < n; i++)
        sum += r[i];
    g->val_reward = rc ? NAN : sum / n;
    *val_loss = NAN; /* no loss to validate: the reward is the measure (metrics: val_reward) */
    if (res)
        llm_gen_results_release(res, n);
    free(prompts), free(texts), free(lens), free(rec_of), free(r), free(res);
    return rc;
}

static cJSON *metrics(void *ctx)
{
    struct llm_grpo *g = ctx;
    struct llm_grpo_stats *s = &g->stats;
    cJSON *o = cJSON_CreateObject();
    if (o && s->n > 0) {
        double mean = s->reward / s->n;
        cJSON_AddNumberToObject(o, "reward", mean);
        cJSON_AddNumberToObject(o, "reward_std", sqrt(fmax(0, s->reward2 / s->n - mean * mean)));
        cJSON_AddNumberToObject(o, "frac_reward_zero_std", s->zero_std_groups / s->groups);
        cJSON_AddNumberToObject(o, "completion_length", s->length / s->n);
        if (g->have_rm)
            cJSON_AddNumberToObject(o, "rewards/model", s->model / s->n);
        for (int t = 0; t < llm_verifier_terms(g->verifier); t++) {
            char name[64];
            snprintf(name, sizeof(name), "rewards/%s", llm_verifier_term_name(g->verifier, t));
            cJSON_AddNumberToObject(o, name, s->terms[t] / s->n);
        }
        if (s->tokens > 0) {
            cJSON_AddNumberToObject(o, "entropy", s->entropy / s->tokens);
            /* clipped and kl are counted once per epoch over the same tokens */
            cJSON_AddNumberToObject(o, "clip_ratio", s->clipped / (s->tokens * g->epochs));
            if (g->have_ref)
                cJSON_AddNumberToObject(o, "kl", s->kl / (s->tokens * g->epochs));
        }
    }
    if (o && isfinite(g->val_reward)) {
        cJSON_AddNumberToObject(o, "val_reward", g->val_reward);
        g->val_reward = NAN;
    }
    double *terms = s->terms;
    int nt = llm_verifier_terms(g->verifier);
    memset(s, 0, sizeof(*s));
    s->terms = terms;
    memset(terms, 0, (size_t)nt * sizeof(double));
    return o;
}

static cJSON *state(void *ctx)
{
    struct llm_grpo *g = ctx;
    cJSON *o = llm_align_order_state(&g->order);
    if (o)
        cJSON_AddNumberToObject(o, "rollouts", (double)g->rollouts);
    return o;
}

static int restore(void *ctx, const cJSON *st)
{
    struct llm_grpo *g = ctx;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(st, "rollouts");
    if (!cJSON_IsNumber(r) || r->valuedouble < 0)
        return llm_err(LLM_EFORMAT, "the checkpoint's data position is not a GRPO one");
    g->rollouts = (int64_t)r->valuedouble;
    g->micro = 0; /* a resumed run starts a new rollout batch */
    return llm_align_order_restore(&g->order, st);
}

static int check_records(const struct llm_jsonl_records *rs, const char *path)
{
    if (rs->n == 0)
        return llm_err(LLM_EINVAL, "%s: no prompts", path);
    for (int i = 0; i < rs->n; i++)
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rs->v[i], "prompt")))
            return llm_err(LLM_EINVAL, "%s:%llu: expected {\"prompt\": string, \"answer\": ..., ...}", path,
                           (unsigned long long)rs->line[i]);
    return 0;
}

/* "prog arg1 arg2" -> argv (split at spaces; no quoting, no shell). */
static int split_command(char *s, const char ***argv, int *argc)
{
    int n = 0;
    const char **v = calloc(strlen(s) / 2 + 2, sizeof(char *));
    if (!v)
        return llm_err(LLM_ENOMEM, "out of memory");
    for (char *tok = strtok(s, " "); tok; tok = strtok(NULL, " "))
        v[n++] = tok;
    *argv = v, *argc = n;
    return 0;
}

int llm_grpo_init(struct llm_grpo *g, const struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m)
{
    int rc = llm_grpo_init_ex(g, cfg, b, m, 0);
    if (!rc && g->G < 2) {
        llm_grpo_release(g);
        return llm_err(LLM_EINVAL, "grpo.group_size: GRPO compares completions of a prompt: it needs 2 or more");
    }
    return rc;
}

int llm_grpo_init_ex(struct llm_grpo *g, const struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m,
                     int always_ref)
{
    memset(g, 0, sizeof(*g));
    const struct llm_grpo_config *c = &cfg->grpo;
    g->cfg = cfg, g->base = b;
    g->P = c->prompts_per_step, g->G = c->group_size, g->B = cfg->train.batch_size;
    g->accum = llm_train_accum(cfg), g->epochs = c->epochs;
    g->val_reward = NAN;
    int rc = 0;
    if ((int64_t)g->P * g->G != (int64_t)g->B * g->accum)
        rc = llm_err(LLM_EINVAL, "grpo.prompts_per_step x grpo.group_size (%d x %d) must equal train.batch_size x "
                     "train.grad_accum (%d x %d): each step trains on the whole rollout batch", g->P, g->G, g->B,
                     g->accum);
    else if (!cfg->data.train[0])
        rc = llm_err(LLM_EINVAL, "data.train: the prompts (JSONL {\"prompt\", \"answer\", ...})");
    if (!rc && !(rc = llm_jsonl_read_all(&g->train, cfg->data.train, 0)))
        rc = check_records(&g->train, cfg->data.train);
    if (!rc && cfg->data.val[0] && !(rc = llm_jsonl_read_all(&g->val, cfg->data.val, 0)))
        rc = check_records(&g->val, cfg->data.val);
    g->n_val = g->val.n < cfg->train.eval_batches * g->B ? g->val.n : cfg->train.eval_batches * g->B;
    char *cmd = NULL;
    const char **argv = NULL;
    int argc = 0;
    if (!rc && c->command[0] && (!(cmd = strdup(c->command)) || split_command(cmd, &argv, &argc)))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    struct llm_verifier_opts vo = {.marker = c->marker, .regex = c->regex[0] ? c->regex : NULL,
                                   .format_tags = c->format_tags, .argv = argv, .argc = argc,
                                   .timeout_s = c->command_timeout};
    if (!rc && (rc = llm_verifier_new(&g->verifier, c->verifier, &vo)))
        rc = llm_err_wrap(rc == LLM_EUSAGE ? LLM_EINVAL : rc, "grpo.verifier"); /* a config value, not a flag */
    free(argv), free(cmd);
    int n = g->P * g->G, T = cfg->model.context_length, V = cfg->model.vocab_size;
    if (!rc && (!(g->roll = calloc((size_t)n, sizeof(*g->roll))) || !(g->roll_prompt = calloc((size_t)g->P, sizeof(int))) ||
                !(g->tok = malloc((size_t)g->B * T * sizeof(int32_t))) ||
                !(g->tgt = malloc((size_t)g->B * T * sizeof(int32_t))) || !(g->w = malloc((size_t)g->B * T * sizeof(float))) ||
                !(g->logits = malloc((size_t)g->B * T * V * sizeof(float))) ||
                !(g->rows = calloc((size_t)g->B, sizeof(*g->rows))) ||
                !(g->stats.terms = calloc((size_t)llm_verifier_terms(g->verifier), sizeof(double)))))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (!rc)
        rc = llm_align_order_init(&g->order, g->train.n, (uint64_t)cfg->train.seed);
    if (!rc && (c->beta > 0 || always_ref)) {
        if ((rc = llm_model_load(&g->ref, cfg->train.init_from, m->be, NULL)))
            rc = llm_err_wrap(rc, "the reference model");
        else
            g->have_ref = 1;
        if (!rc && g->ref.cfg.vocab_size != m->cfg.vocab_size)
            rc = llm_err(LLM_EINVAL, "the reference's vocabulary differs from the policy's");
    }
    if (!rc && c->reward_model[0]) {
        cJSON *header = NULL;
        struct llm_tokenizer *rt = NULL;
        if ((rc = llm_model_load(&g->rm, c->reward_model, m->be, &header)))
            rc = llm_err_wrap(rc, "grpo.reward_model");
        else
            g->have_rm = 1;
        const cJSON *tj = cJSON_GetObjectItemCaseSensitive(header, "tokenizer");
        if (!rc && (!tj || llm_tok_load_json(&rt, tj, c->reward_model)))
            rc = llm_err(LLM_EINVAL, "grpo.reward_model: %s has no tokenizer", c->reward_model);
        g->rm_id = rt ? (int)llm_tok_special_id(rt, LLM_REWARD_TOKEN) : -1;
        if (!rc && g->rm_id < 0)
            rc = llm_err(LLM_EINVAL, "grpo.reward_model: %s has no %s token: not a reward model (llm sft --task "
                         "reward)", c->reward_model, LLM_REWARD_TOKEN);
        else if (!rc && g->rm.cfg.vocab_size < m->cfg.vocab_size)
            rc = llm_err(LLM_EINVAL, "grpo.reward_model: its vocabulary (%d) is smaller than the policy's (%d)",
                         g->rm.cfg.vocab_size, m->cfg.vocab_size);
        llm_tok_free(rt);
        cJSON_Delete(header);
    }
    snprintf(g->samples_path, sizeof(g->samples_path), "%s/samples.jsonl", cfg->train.out_dir);
    if (rc) {
        llm_grpo_release(g);
        return rc;
    }
    g->task = (struct llm_train_task){
        .ctx = g, .micro_step = micro_step, .evaluate = g->n_val ? evaluate : NULL, .state = state,
        .restore = restore, .metrics = metrics,
    };
    return 0;
}

void llm_grpo_release(struct llm_grpo *g)
{
    for (int i = 0; g->roll && i < g->P * g->G; i++)
        roll_release(&g->roll[i]);
    free(g->roll), free(g->roll_prompt), free(g->tok), free(g->tgt), free(g->w), free(g->logits), free(g->rows);
    free(g->stats.terms);
    llm_verifier_free(g->verifier);
    if (g->have_ref)
        llm_model_release(&g->ref);
    if (g->have_rm)
        llm_model_release(&g->rm);
    llm_jsonl_records_release(&g->train);
    llm_jsonl_records_release(&g->val);
    llm_align_order_release(&g->order);
    memset(g, 0, sizeof(*g));
}
