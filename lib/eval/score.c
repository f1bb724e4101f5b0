/* score.c: batched log-likelihoods and perplexity windows over the model's
 * training forward pass (model.h), whose per-position losses (host_losses)
 * are exactly -log p(target) in eval mode. */
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "eval/score.h"

/* Logits dominate activation memory (rows x T x V floats): a forward pass
 * keeps them under this many floats (256 MB), fewer rows when V is large. */
#define MAX_LOGIT_FLOATS ((size_t)64 << 20)

static int rows_for(const struct llm_model *m, int T, int batch)
{
    size_t per = (size_t)T * (size_t)m->cfg.vocab_size;
    size_t rows = per ? MAX_LOGIT_FLOATS / per : 1;
    if (rows < 1)
        rows = 1;
    return rows < (size_t)batch ? (int)rows : batch;
}

/* Row length (input tokens) of a request after truncation to T. */
static int row_len(const struct llm_ll_req *q, int T)
{
    long L = (long)q->n_ctx + q->n_cont - 1;
    return L > T ? T : (int)L;
}

static const struct llm_ll_req *sort_reqs;
static int T_sort;

static int by_len_desc(const void *a, const void *b)
{
    int ia = *(const int *)a, ib = *(const int *)b;
    int la = row_len(&sort_reqs[ia], T_sort), lb = row_len(&sort_reqs[ib], T_sort);
    if (la != lb)
        return lb - la;
    return ia - ib; /* stable: same batches for the same input */
}

int llm_eval_loglik(struct llm_model *m, const struct llm_ll_req *reqs, int n, int batch,
                    struct llm_ll_out *out, struct llm_progress *progress)
{
    const int T = m->cfg.context_length, V = m->cfg.vocab_size;
    if (n <= 0)
        return 0;
    if (batch < 1)
        return llm_err(LLM_EINVAL, "loglik: batch %d < 1", batch);
    for (int i = 0; i < n; i++) {
        const struct llm_ll_req *q = &reqs[i];
        if (q->n_ctx < 1 || q->n_cont < 1)
            return llm_err(LLM_EINVAL, "request %d: an empty %s", i, q->n_ctx < 1 ? "context" : "continuation");
        if (q->n_cont > T)
            return llm_err(LLM_EINVAL, "request %d: the continuation (%d tokens) is longer than the context "
                           "length %d", i, q->n_cont, T);
        for (int j = 0; j < q->n_ctx + q->n_cont; j++) {
            int32_t id = j < q->n_ctx ? q->ctx[j] : q->cont[j - q->n_ctx];
            if (id < 0 || id >= V)
                return llm_err(LLM_EINVAL, "request %d: token id %d outside the vocabulary (%d)", i, id, V);
        }
    }
    int *order = llm_malloc((size_t)n * sizeof(int), "request order");
    int rows_max = rows_for(m, T, batch);
    int32_t *tok = llm_malloc((size_t)rows_max * T * sizeof(int32_t), "a batch");
    int32_t *tgt = llm_malloc((size_t)rows_max * T * sizeof(int32_t), "a batch");
    int rc = order && tok && tgt ? 0 : LLM_ENOMEM;
    for (int i = 0; !rc && i < n; i++)
        order[i] = i;
    if (!rc) {
        sort_reqs = reqs, T_sort = T;
        qsort(order, (size_t)n, sizeof(int), by_len_desc);
    }
    for (int i0 = 0; !rc && i0 < n;) {
        /* the first row is the longest of the batch: it sets Tb and so the rows */
        int Tb = row_len(&reqs[order[i0]], T);
        int rows = rows_for(m, Tb, batch);
        if (rows > n - i0)
            rows = n - i0;
        for (int r = 0; r < rows; r++) {
            const struct llm_ll_req *q = &reqs[order[i0 + r]];
            int L = q->n_ctx + q->n_cont;          /* the full sequence */
            int len = row_len(q, T), s = L - 1 - len; /* inputs full[s .. s+len), targets full[s+1 ..] */
            int32_t *x = tok + (size_t)r * Tb, *y = tgt + (size_t)r * Tb;
            for (int t = 0; t < Tb; t++) {
                int j = s + t; /* input index in full; its target is j + 1 */
                if (t >= len) {
                    x[t] = 0, y[t] = -1;
                    continue;
                }
                x[t] = j < q->n_ctx ? q->ctx[j] : q->cont[j - q->n_ctx];
                y[t] = j + 1 >= q->n_ctx ? q->cont[j + 1 - q->n_ctx] : -1;
            }
            out[order[i0 + r]].truncated = s > 0;
        }
        float loss;
        rc = llm_model_forward(m, tok, tgt, rows, Tb, 0, &loss);
        for (int r = 0; !rc && r < rows; r++) {
            double lp = 0;
            for (int t = 0; t < Tb; t++)
                if (tgt[(size_t)r * Tb + t] >= 0)
                    lp -= m->host_losses[(size_t)r * Tb + t];
            out[order[i0 + r]].logprob = lp;
        }
        if (!rc && progress)
            llm_progress_add(progress, (uint64_t)rows);
        i0 += rows;
    }
    free(order), free(tok), free(tgt);
    return rc;
}

int llm_eval_perplexity(struct llm_model *m, const int32_t *ids, int64_t n, const struct llm_ppl_opts *o,
                        struct llm_ppl_result *r, struct llm_progress *progress)
{
    const int T = m->cfg.context_length, V = m->cfg.vocab_size;
    int S = o->stride ? o->stride : T;
    memset(r, 0, sizeof(*r));
    if (S < 1 || S > T)
        return llm_err(LLM_EINVAL, "stride %d: expected 1..%d (the context length)", S, T);
    if (o->batch < 1)
        return llm_err(LLM_EINVAL, "batch %d < 1", o->batch);
    if (n < (int64_t)T + 1)
        return llm_err(LLM_EINVAL, "%lld tokens: a window needs the context length + 1 = %d", (long long)n,
                       T + 1);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return llm_err(LLM_EINVAL, "token %lld: id %d outside the vocabulary (%d)", (long long)i, ids[i], V);
    int64_t W = (n - 1 - T) / S + 1; /* windows with kS + T + 1 <= n */
    if (o->max_windows > 0 && W > o->max_windows)
        W = o->max_windows;
    int rows_max = rows_for(m, T, o->batch);
    int32_t *tok = llm_malloc((size_t)rows_max * T * sizeof(int32_t), "a batch");
    int32_t *tgt = llm_malloc((size_t)rows_max * T * sizeof(int32_t), "a batch");
    int rc = tok && tgt ? 0 : LLM_ENOMEM;
    for (int64_t k0 = 0; !rc && k0 < W; k0 += rows_max) {
        int rows = W - k0 < rows_max ? (int)(W - k0) : rows_max;
        int64_t scored = 0;
        for (int b = 0; b < rows; b++) {
            int64_t k = k0 + b, s = k * S;
            int first = k == 0 ? 0 : T - S; /* positions before it were scored by window k - 1 */
            for (int t = 0; t < T; t++) {
                tok[(size_t)b * T + t] = ids[s + t];
                tgt[(size_t)b * T + t] = t >= first ? ids[s + t + 1] : -1;
            }
            scored += T - first;
        }
        float loss;
        rc = llm_model_forward(m, tok, tgt, rows, T, 0, &loss);
        for (size_t i = 0; !rc && i < (size_t)rows * T; i++)
            if (tgt[i] >= 0)
                r->nats += m->host_losses[i];
        if (!rc) {
            r->tokens += scored;
            r->windows += rows;
            if (progress)
                llm_progress_add(progress, (uint64_t)scored);
        }
    }
    free(tok), free(tgt);
    return rc;
}
