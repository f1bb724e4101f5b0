/* eval.c: perplexity, multiple-choice and exact-match evaluation over the
 * scorer (score.h) and the generator (infer/generate.h). IFEval and the
 * judge live in eval_gen.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"
#include "core/jsonl.h"
#include "core/str.h"
#include "data/shard.h"
#include "eval/eval.h"
#include "eval/eval_impl.h"
#include "eval/score.h"

#define MAX_TEXT_BYTES ((size_t)1 << 32)

void llm_eval_result_release(struct llm_eval_result *r)
{
    cJSON_Delete(r->samples);
    memset(r, 0, sizeof(*r));
}

double llm_eval_metric(const struct llm_eval_result *r, const char *name)
{
    for (int i = 0; i < r->n_metrics; i++)
        if (!strcmp(r->m[i].name, name))
            return r->m[i].value;
    return NAN;
}

void eval_add_metric(struct llm_eval_result *r, const char *name, double value, double se)
{
    if (r->n_metrics == LLM_EVAL_MAX_METRICS)
        return;
    struct llm_metric *m = &r->m[r->n_metrics++];
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->value = value, m->stderr_ = se, m->n = r->n;
}

/* Mean of n 0/1 outcomes summing to k, with the standard error of the mean
 * (sample standard deviation / sqrt(n), as lm-evaluation-harness reports). */
void eval_add_rate(struct llm_eval_result *r, const char *name, double k, int64_t n)
{
    double p = n ? k / (double)n : NAN;
    eval_add_metric(r, name, p, n > 1 ? sqrt(p * (1 - p) / (double)(n - 1)) : NAN);
    r->m[r->n_metrics - 1].n = n;
}

int eval_samples_init(struct llm_eval_result *r, const struct llm_eval_opts *o)
{
    if (o->keep_samples && !(r->samples = cJSON_CreateArray()))
        return llm_err(LLM_ENOMEM, "out of memory");
    return 0;
}

int eval_sample_add(struct llm_eval_result *r, cJSON *s)
{
    if (!s)
        return llm_err(LLM_ENOMEM, "out of memory logging samples");
    cJSON_AddItemToArray(r->samples, s);
    return 0;
}

void eval_progress_start(struct llm_progress *p, const struct llm_eval_opts *o, const char *unit, uint64_t total)
{
    llm_progress_init(p, stderr, "eval", unit, total, o->show_progress ? LLM_PROGRESS_AUTO : LLM_PROGRESS_OFF);
}

/* ---- perplexity ---- */

/* Reads path into ids: a shard's tokens, or text (JSONL "text" fields joined
 * by eot, or the whole file) through tok. */
static int read_ids(const char *path, const struct llm_tokenizer *tok, int64_t need, int32_t **ids, int64_t *n,
                    int *is_text, int64_t *eot_out)
{
    *ids = NULL, *n = 0, *is_text = 0, *eot_out = -1;
    FILE *f;
    char head[8] = {0};
    int rc = llm_fopen_read(path, &f);
    if (rc)
        return rc;
    size_t got = fread(head, 1, sizeof(head), f);
    fclose(f);
    if (llm_shard_sniff(head, got)) {
        struct llm_shard s;
        if ((rc = llm_shard_open(&s, path)))
            return rc;
        int64_t cnt = (int64_t)s.n_tokens;
        if (need > 0 && cnt > need)
            cnt = need;
        if (!(*ids = llm_malloc((size_t)(cnt ? cnt : 1) * sizeof(int32_t), "the tokens"))) {
            llm_shard_close(&s);
            return LLM_ENOMEM;
        }
        for (int64_t i = 0; i < cnt; i++)
            (*ids)[i] = (int32_t)llm_shard_token(&s, (uint64_t)i);
        *n = cnt;
        llm_shard_close(&s);
        return 0;
    }
    if (!tok)
        return llm_err(LLM_EINVAL, "%s is text: a tokenizer is needed (the checkpoint has none; pass --tokenizer)",
                       path);
    *is_text = 1;
    int64_t eot = llm_gen_default_eot(tok);
    *eot_out = eot;
    struct llm_tok_encoder *e;
    if ((rc = llm_tok_encoder_new(tok, &e)))
        return rc;
    struct llm_ids out = {0};
    size_t pl = strlen(path);
    if (pl > 6 && !strcmp(path + pl - 6, ".jsonl")) {
        struct llm_jsonl_reader r;
        if (!(rc = llm_jsonl_open(&r, path, 0))) {
            cJSON *o;
            int docs = 0;
            while (!rc && (rc = llm_jsonl_next(&r, &o)) == 1) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
                rc = 0;
                if (!cJSON_IsString(t))
                    rc = llm_err(LLM_EFORMAT, "%s:%llu: no string \"text\"", path, (unsigned long long)r.line);
                else if (docs++ && eot >= 0)
                    rc = llm_ids_push(&out, (uint32_t)eot);
                if (!rc)
                    rc = llm_tok_encode(e, t->valuestring, strlen(t->valuestring), 0, &out);
                cJSON_Delete(o);
            }
            llm_jsonl_close(&r);
        }
    } else {
        char *text;
        size_t len;
        if (!(rc = llm_read_file(path, MAX_TEXT_BYTES, &text, &len))) {
            size_t bad;
            if (!llm_utf8_valid(text, len, &bad))
                rc = llm_err(LLM_EFORMAT, "%s: invalid UTF-8 at byte %zu", path, bad);
            else
                rc = llm_tok_encode(e, text, len, 0, &out);
            free(text);
        }
    }
    llm_tok_encoder_free(e);
    if (rc < 0) {
        llm_ids_release(&out);
        return rc;
    }
    *ids = (int32_t *)out.v; /* ids < 2^31: the same bits */
    *n = (int64_t)out.n;
    return 0;
}

int llm_eval_perplexity_task(struct llm_model *m, const struct llm_tokenizer *tok, const char *path,
                             const struct llm_eval_opts *o, struct llm_eval_result *r)
{
    memset(r, 0, sizeof(*r));
    const int T = m->cfg.context_length;
    int S = o->stride ? o->stride : T;
    int64_t need = o->max_windows > 0 ? (o->max_windows - 1) * (int64_t)S + T + 1 : 0;
    int32_t *ids;
    int64_t n, eot;
    int is_text;
    int rc = read_ids(path, tok, need, &ids, &n, &is_text, &eot);
    if (rc)
        return rc;
    struct llm_ppl_opts po = {.stride = o->stride, .batch = o->batch, .max_windows = o->max_windows};
    struct llm_ppl_result pr;
    struct llm_progress prog;
    int64_t total = n > T ? (n - 1 - T) / (S < 1 ? 1 : S) * S + T : 0;
    eval_progress_start(&prog, o, "tok", (uint64_t)(total > 0 ? total : 0));
    rc = llm_eval_perplexity(m, ids, n, &po, &pr, &prog);
    llm_progress_finish(&prog);
    if (rc == LLM_EINVAL)
        rc = llm_err_wrap(rc, "%s", path);
    if (!rc) {
        double loss = pr.nats / (double)pr.tokens;
        r->n = pr.tokens;
        eval_add_metric(r, "loss", loss, NAN);
        eval_add_metric(r, "perplexity", exp(loss), NAN);
        if (is_text) {
            double bytes = 0;
            for (int64_t i = 1; i <= pr.tokens; i++) {
                size_t len = 0;
                if (ids[i] != eot && llm_tok_token_bytes(tok, (uint32_t)ids[i], &len))
                    bytes += (double)len;
            }
            if (bytes > 0)
                eval_add_metric(r, "bits_per_byte", pr.nats / (log(2.0) * bytes), NAN);
        }
        eval_add_metric(r, "windows", (double)pr.windows, NAN);
    }
    free(ids);
    return rc;
}

/* ---- multiple choice ---- */

/* Characters (code points) of a UTF-8 string: acc_norm's length. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int eval_encode_pair(struct llm_tok_encoder *e, int64_t eot, const char *context, const char *cont,
                     struct llm_ids *ctx_ids, struct llm_ids *cont_ids)
{
    /* lm-evaluation-harness's _encode_pair: trailing spaces of the context
     * move to the continuation; the continuation's ids are those of
     * context + continuation past the context's own ids, so they are what
     * the model sees after that context. */
    size_t nc = strlen(context), sp = 0;
    while (sp < nc && context[nc - 1 - sp] == ' ')
        sp++;
    size_t lc = strlen(cont), nw = nc + lc;
    char *whole = llm_malloc(nw + 1, "a prompt");
    if (!whole)
        return LLM_ENOMEM;
    memcpy(whole, context, nc);
    memcpy(whole + nc, cont, lc + 1);
    struct llm_ids w = {0};
    ctx_ids->n = cont_ids->n = 0;
    int rc = llm_tok_encode(e, context, nc - sp, 0, ctx_ids);
    if (!rc)
        rc = llm_tok_encode(e, whole, nw, 0, &w);
    size_t k = ctx_ids->n;
    if (!rc && k == 0) { /* an empty context: condition on end-of-text */
        rc = eot >= 0 ? llm_ids_push(ctx_ids, (uint32_t)eot)
                      : llm_err(LLM_EINVAL, "an empty context and no end-of-text token to stand for it");
    }
    for (size_t i = k; !rc && i < w.n; i++)
        rc = llm_ids_push(cont_ids, w.v[i]);
    if (!rc && cont_ids->n == 0)
        rc = llm_err(LLM_EINVAL, "the continuation \"%.40s\" adds no tokens to its context", cont);
    llm_ids_release(&w);
    free(whole);
    return rc;
}

int llm_eval_choice(struct llm_model *m, const struct llm_tokenizer *tok, const struct llm_eval_docs *docs,
                    const struct llm_eval_docs *dev, const struct llm_eval_opts *o, struct llm_eval_result *r)
{
    memset(r, 0, sizeof(*r));
    int64_t eot = llm_gen_default_eot(tok);
    int nreq = 0;
    for (int i = 0; i < docs->n; i++)
        nreq += docs->v[i].n_choices;
    struct llm_ids *ids = llm_calloc((size_t)nreq * 2, sizeof(struct llm_ids), "requests");
    struct llm_ll_req *req = llm_calloc((size_t)nreq, sizeof(*req), "requests");
    struct llm_ll_out *out = llm_calloc((size_t)nreq, sizeof(*out), "requests");
    char **prompts = llm_calloc((size_t)docs->n, sizeof(char *), "prompts");
    struct llm_tok_encoder *e = NULL;
    int rc = ids && req && out && prompts ? llm_tok_encoder_new(tok, &e) : LLM_ENOMEM;
    if (!rc)
        rc = eval_samples_init(r, o);
    for (int i = 0, q = 0; !rc && i < docs->n; i++) {
        const struct llm_eval_doc *d = &docs->v[i];
        struct llm_bytes p = {0};
        rc = llm_eval_prompt(dev, d, LLM_EVAL_CHOICE, o->shots, o->seed, i, &p);
        if (!rc)
            rc = llm_bytes_append(&p, "", 1);
        prompts[i] = p.v;
        for (int j = 0; !rc && j < d->n_choices; j++, q++) {
            size_t n = strlen(d->choices[j]) + 2;
            char *cont = llm_malloc(n, "a choice");
            if (!cont) {
                rc = LLM_ENOMEM;
                break;
            }
            snprintf(cont, n, " %s", d->choices[j]);
            rc = eval_encode_pair(e, eot, prompts[i], cont, &ids[2 * q], &ids[2 * q + 1]);
            free(cont);
            if (rc)
                rc = llm_err_wrap(rc, "document %d, choice %d", i + 1, j);
            req[q] = (struct llm_ll_req){(const int32_t *)ids[2 * q].v, (int)ids[2 * q].n,
                                         (const int32_t *)ids[2 * q + 1].v, (int)ids[2 * q + 1].n};
        }
    }
    struct llm_progress prog;
    if (!rc) {
        eval_progress_start(&prog, o, "req", (uint64_t)nreq);
        rc = llm_eval_loglik(m, req, nreq, o->batch, out, &prog);
        llm_progress_finish(&prog);
    }
    double acc = 0, acc_norm = 0;
    for (int i = 0, q = 0; !rc && i < docs->n; q += docs->v[i].n_choices, i++) {
        const struct llm_eval_doc *d = &docs->v[i];
        int best = 0, best_n = 0;
        for (int j = 1; j < d->n_choices; j++) {
            /* the first of equal maxima, as numpy's argmax */
            if (out[q + j].logprob > out[q + best].logprob)
                best = j;
            double lj = out[q + j].logprob / (double)utf8_chars(d->choices[j]);
            double lb = out[q + best_n].logprob / (double)utf8_chars(d->choices[best_n]);
            if (lj > lb)
                best_n = j;
        }
        acc += best == d->label;
        acc_norm += best_n == d->label;
        if (r->samples) {
            cJSON *s = cJSON_CreateObject(), *ll = cJSON_AddArrayToObject(s, "loglik");
            for (int j = 0; ll && j < d->n_choices; j++)
                cJSON_AddItemToArray(ll, cJSON_CreateNumber(out[q + j].logprob));
            cJSON_AddNumberToObject(s, "doc", i);
            cJSON_AddStringToObject(s, "prompt", prompts[i]);
            cJSON_AddItemToObject(s, "choices", cJSON_CreateStringArray((const char *const *)d->choices,
                                                                          d->n_choices));
            cJSON_AddNumberToObject(s, "label", d->label);
            cJSON_AddNumberToObject(s, "pred", best);
            cJSON_AddNumberToObject(s, "pred_norm", best_n);
            cJSON_AddNumberToObject(s, "acc", best == d->label);
            cJSON_AddNumberToObject(s, "acc_norm", best_n == d->label);
            rc = eval_sample_add(r, s);
        }
    }
    if (!rc) {
        r->n = docs->n;
        eval_add_rate(r, "acc", acc, docs->n);
        eval_add_rate(r, "acc_norm", acc_norm, docs->n);
    }
    for (int i = 0; ids && i < 2 * nreq; i++)
        llm_ids_release(&ids[i]);
    for (int i = 0; prompts && i < docs->n; i++)
        free(prompts[i]);
    free(ids), free(req), free(out), free(prompts);
    llm_tok_encoder_free(e);
    if (rc)
        llm_eval_result_release(r);
    return rc;
}

/* ---- exact match ---- */

int eval_generate(struct llm_model *m, const struct llm_tokenizer *tok, char **prompts, int n,
                  const struct llm_gen_opts *go, struct llm_gen_result *res, struct llm_progress *prog)
{
    size_t *lens = llm_malloc((size_t)n * sizeof(size_t), "prompt lengths");
    if (!lens)
        return LLM_ENOMEM;
    for (int i = 0; i < n; i++)
        lens[i] = strlen(prompts[i]);
    /* in chunks, so the progress moves; each prompt's completion does not
     * depend on its neighbours (generate.h) */
    int chunk = go->batch * 4 > 16 ? go->batch * 4 : 16, rc = 0;
    struct llm_gen_stats st;
    for (int i = 0; !rc && i < n; i += chunk) {
        int k = n - i < chunk ? n - i : chunk;
        rc = llm_generate(m, tok, (const char *const *)prompts + i, lens + i, k, go, NULL, NULL, res + i, &st);
        if (!rc && prog)
            llm_progress_add(prog, (uint64_t)k);
    }
    free(lens);
    return rc;
}

int llm_eval_exact(struct llm_model *m, const struct llm_tokenizer *tok, const struct llm_eval_docs *docs,
                   const struct llm_eval_docs *dev, const struct llm_eval_opts *o, struct llm_eval_result *r)
{
    memset(r, 0, sizeof(*r));
    const int n = docs->n, K = o->samples < 1 ? 1 : o->samples;
    char **prompts = llm_calloc((size_t)n, sizeof(char *), "prompts");
    char **ans = llm_calloc((size_t)n * K, sizeof(char *), "answers");
    struct llm_gen_result *res = llm_calloc((size_t)n * K, sizeof(*res), "completions");
    int rc = prompts && ans && res ? eval_samples_init(r, o) : LLM_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        struct llm_bytes p = {0};
        rc = llm_eval_prompt(dev, &docs->v[i], LLM_EVAL_EXACT, o->shots, o->seed, i, &p);
        if (!rc && o->cot)
            rc = llm_bytes_append(&p, o->cot, strlen(o->cot));
        if (!rc)
            rc = llm_bytes_append(&p, "", 1);
        prompts[i] = p.v;
    }
    struct llm_progress prog;
    if (!rc)
        eval_progress_start(&prog, o, "gen", (uint64_t)n * K);
    for (int s = 0; !rc && s < K; s++) {
        struct llm_gen_opts go = o->gen;
        go.sample.seed = o->seed + (uint64_t)s; /* sample s of every prompt */
        go.truncate = LLM_GEN_TRUNCATE_LEFT;    /* long k-shot prompts keep their end, as the harness does */
        go.allow_special = 0;
        rc = eval_generate(m, tok, prompts, n, &go, res + (size_t)s * n, &prog);
        for (int i = 0; !rc && i < n; i++)
            ans[(size_t)i * K + s] = llm_extract(o->extract, res[(size_t)s * n + i].completion, &rc);
    }
    if (!rc)
        llm_progress_finish(&prog);
    /* maj@j for j = 1, 2, 4, ..., and K itself */
    int js[32], nj = 0;
    for (int j = 1; j < K && nj < 30; j *= 2)
        js[nj++] = j;
    js[nj++] = K;
    double first = 0, pass = 0, maj[32] = {0};
    for (int i = 0; !rc && i < n; i++) {
        const char *gold = docs->v[i].answer;
        char **a = ans + (size_t)i * K;
        int any = 0, ok0 = a[0] && llm_answer_equal(a[0], gold);
        for (int s = 0; s < K; s++)
            any |= a[s] && llm_answer_equal(a[s], gold);
        first += ok0, pass += any;
        int vote = -1;
        for (int t = 0; t < nj; t++) {
            vote = llm_vote_majority((const char *const *)a, js[t]);
            maj[t] += vote >= 0 && llm_answer_equal(a[vote], gold);
        }
        if (r->samples) {
            cJSON *sm = cJSON_CreateObject(), *cs = cJSON_AddArrayToObject(sm, "completions");
            cJSON *as = cJSON_AddArrayToObject(sm, "answers");
            for (int s = 0; cs && as && s < K; s++) {
                cJSON_AddItemToArray(cs, cJSON_CreateString(res[(size_t)s * n + i].completion));
                cJSON_AddItemToArray(as, a[s] ? cJSON_CreateString(a[s]) : cJSON_CreateNull());
            }
            cJSON_AddNumberToObject(sm, "doc", i);
            cJSON_AddStringToObject(sm, "prompt", prompts[i]);
            cJSON_AddStringToObject(sm, "gold", gold);
            if (vote >= 0)
                cJSON_AddStringToObject(sm, "vote", a[vote]);
            else
                cJSON_AddNullToObject(sm, "vote");
            cJSON_AddNumberToObject(sm, "exact_match", ok0);
            rc = eval_sample_add(r, sm);
        }
    }
    if (!rc) {
        r->n = n;
        eval_add_rate(r, "exact_match", first, n);
        if (K > 1) {
            for (int t = 0; t < nj; t++) {
                char name[24];
                snprintf(name, sizeof(name), "maj@%d", js[t]);
                eval_add_rate(r, name, maj[t], n);
            }
            char name[24];
            snprintf(name, sizeof(name), "pass@%d", K);
            eval_add_rate(r, name, pass, n);
        }
    }
    for (int i = 0; prompts && i < n; i++)
        free(prompts[i]);
    for (size_t i = 0; ans && i < (size_t)n * K; i++)
        free(ans[i]);
    if (res)
        llm_gen_results_release(res, n * K);
    free(prompts), free(ans), free(res);
    if (rc)
        llm_eval_result_release(r);
    return rc;
}
