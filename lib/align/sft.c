/* sft.c: the SFT task. Each micro-batch is B examples, one per row, padded
 * on the right, or with sft.packing B rows of whole examples (below);
 * targets are the response tokens. The loss of a step is
 *   L = sum over the step's k micro-batches and their learned tokens of CE_t / N_step
 * (N_step = learned tokens of the whole step), so every response token
 * weighs the same however the examples fall into micro-batches; the loop
 * averages the k micro-gradients, so each micro-batch backpropagates
 * sum_t CE_t * k / N_step (llm_model_backward_ex). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align/sft.h"
#include "core/err.h"
#include "core/jsonl.h"
#include "core/log.h"

/* Packing (sft.packing): a row of T = context_length tokens takes whole
 * examples in the shuffled order while the next one's n - 1 inputs still
 * fit (next fit: an example is never split, the order never changes, so a
 * resumed run packs the same rows), then padding (token 0, target -1).
 * Each token's position within its example goes to the model
 * (llm_model_forward_packed): positions restart per example and attention
 * stays within it, so every example is trained on exactly as if it were
 * alone in its row (tests/unit/test_model.c: test_packed), without the
 * padding of rows to the longest example of the micro-batch. */

/* The order's position (epoch, pos), moved past one example (as
 * llm_align_order_next moves the order's own). */
static void order_step(const struct llm_sft *s, int64_t *e, int *p)
{
    if (++*p == s->n_train)
        *p = 0, ++*e;
}

/* The examples of one packed row from (e, p): their count, moving (e, p)
 * past them; with tok (T) it also writes the row (tok, tgt, pos). *used
 * gets its tokens without padding, *learned (when not NULL) adds the
 * examples' learned tokens. */
static int pack_row(struct llm_sft *s, int64_t *e, int *p, int32_t *tok, int32_t *tgt, int32_t *pos,
                    int *used, int64_t *learned)
{
    int t = 0, k = 0;
    for (;;) {
        const struct llm_seq *x = &s->train[llm_align_order_at(&s->order, *e, *p)];
        int n = x->n - 1;
        if (k > 0 && t + n > s->T)
            break;
        if (tok) {
            const struct llm_seq *one = x;
            int Tb;
            llm_align_batch(&one, 1, tok + t, tgt + t, &Tb);
            for (int i = 0; i < n; i++)
                pos[t + i] = i;
        }
        if (learned)
            *learned += x->n_learn;
        t += n, k++;
        order_step(s, e, p);
        if (k == s->n_train) /* every example in one row: do not wrap into the next epoch */
            break;
    }
    *used = t;
    return k;
}

/* The learned tokens of the next k micro-batches (one step), peeked at
 * without moving the order. */
static int64_t step_learned(struct llm_sft *s, int k)
{
    int64_t e = s->order.epoch, n = 0;
    int p = s->order.pos;
    for (int i = 0, used; i < k * s->B; i++) {
        if (s->packing) {
            pack_row(s, &e, &p, NULL, NULL, NULL, &used, &n);
        } else {
            n += s->train[llm_align_order_at(&s->order, e, p)].n_learn;
            order_step(s, &e, &p);
        }
    }
    return n;
}

/* One packed micro-batch (B rows) into tok, tgt, pos, moving the order;
 * *Tb = the longest row, *real = tokens without padding. */
static void pack_batch(struct llm_sft *s, int *Tb, int64_t *real)
{
    int *used = s->used, T = 0;
    *real = 0;
    for (int r = 0; r < s->B; r++) {
        pack_row(s, &s->order.epoch, &s->order.pos, s->tok + (size_t)r * s->T, s->tgt + (size_t)r * s->T,
                 s->pos + (size_t)r * s->T, &used[r], NULL);
        *real += used[r];
        T = used[r] > T ? used[r] : T;
    }
    /* to (B, T): rows closed up, padding continuing each row's positions */
    for (int r = 0; r < s->B; r++)
        for (int t = 0; t < T; t++) {
            size_t from = (size_t)r * s->T + t, to = (size_t)r * T + t;
            if (t >= used[r]) {
                s->tok[from] = 0, s->tgt[from] = -1;
                s->pos[from] = t == used[r] ? 0 : s->pos[from - 1] + 1;
            }
            s->tok[to] = s->tok[from], s->tgt[to] = s->tgt[from], s->pos[to] = s->pos[from];
        }
    *Tb = T;
}

/* How full packed rows are over the first epoch (a row may end in the next). */
static void log_packing(struct llm_sft *s)
{
    int64_t e = 0, tokens = 0;
    int p = 0, rows = 0, used;
    while (e == 0) {
        pack_row(s, &e, &p, NULL, NULL, NULL, &used, NULL);
        tokens += used, rows++;
    }
    llm_info("sft: packing %d examples into %d rows of %d tokens per epoch (%.1f%% of the tokens are "
             "examples, the rest padding)",
             s->n_train, rows, s->T, 100.0 * (double)tokens / ((double)rows * s->T));
}

static int micro_step(void *ctx, struct llm_model *m, double *loss, int64_t *tokens)
{
    struct llm_sft *s = ctx;
    if (s->micro == 0) /* the learned tokens of the whole step */
        s->w_scale = (float)((double)s->accum / (double)step_learned(s, s->accum));
    int Tb, rc;
    int64_t real = 0;
    float mean;
    if (s->packing) {
        pack_batch(s, &Tb, &real);
        rc = llm_model_forward_packed(m, s->tok, s->tgt, s->pos, s->B, Tb, 1, &mean);
    } else {
        for (int r = 0; r < s->B; r++)
            s->rows[r] = &s->train[llm_align_order_next(&s->order)];
        llm_align_batch(s->rows, s->B, s->tok, s->tgt, &Tb);
        rc = llm_model_forward(m, s->tok, s->tgt, s->B, Tb, 1, &mean);
        for (int r = 0; r < s->B; r++)
            real += s->rows[r]->n - 1;
    }
    for (int i = 0; i < s->B * Tb; i++)
        s->w[i] = s->tgt[i] >= 0 ? s->w_scale : 0.0f;
    if (!rc)
        rc = llm_model_backward_ex(m, s->w, NULL);
    s->micro = (s->micro + 1) % s->accum;
    *loss = mean - m->aux_loss;
    *tokens = real;
    return rc;
}

static int evaluate(void *ctx, struct llm_model *m, double *val_loss)
{
    struct llm_sft *s = ctx;
    double sum = 0;
    int64_t n = 0;
    int rc = 0;
    for (int i = 0; !rc && i < s->n_val; i += s->B) {
        int rows = s->n_val - i < s->B ? s->n_val - i : s->B, Tb;
        for (int r = 0; r < rows; r++)
            s->rows[r] = &s->val[i + r];
        llm_align_batch(s->rows, rows, s->tok, s->tgt, &Tb);
        float mean;
        rc = llm_model_forward(m, s->tok, s->tgt, rows, Tb, 0, &mean);
        for (int k = 0; !rc && k < rows * Tb; k++)
            if (s->tgt[k] >= 0)
                sum += m->host_losses[k], n++;
    }
    *val_loss = n ? sum / (double)n : NAN;
    return rc;
}

static cJSON *state(void *ctx) { return llm_align_order_state(&((struct llm_sft *)ctx)->order); }

static int restore(void *ctx, const cJSON *st)
{
    struct llm_sft *s = ctx;
    s->micro = 0;
    return llm_align_order_restore(&s->order, st);
}

/* Tokenizes the examples of path. */
static int read_examples(const char *path, struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m,
                         struct llm_seq **out, int *n_out)
{
    struct llm_jsonl_records rs;
    int rc = llm_jsonl_read_all(&rs, path, 0);
    if (rc)
        return rc;
    if (rs.n == 0)
        rc = llm_err(LLM_EINVAL, "%s: no examples", path);
    /* chat examples need the template's tokens before anything is encoded */
    for (int i = 0; !rc && i < rs.n; i++)
        if (cJSON_GetObjectItemCaseSensitive(rs.v[i], "messages")) {
            if (!(rc = llm_align_add_template_tokens(b, m, cfg->sft.template)))
                cfg->model = m->cfg;
            break;
        }
    struct llm_seq *v = rc ? NULL : calloc((size_t)rs.n, sizeof(*v));
    if (!rc && !v)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    int cut = 0, max_len = cfg->model.context_length + 1;
    for (int i = 0; !rc && i < rs.n; i++) {
        const cJSON *o = rs.v[i], *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt"), *r = cJSON_GetObjectItemCaseSensitive(o, "response");
        if (msgs)
            rc = llm_align_encode_chat(b, cfg->sft.template, msgs, max_len, &v[i]);
        else if (cJSON_IsString(p) && cJSON_IsString(r))
            rc = llm_align_encode_pair(b, p->valuestring, r->valuestring, cfg->sft.add_eot, max_len, &v[i]);
        else
            rc = llm_err(LLM_EINVAL, "expected {\"prompt\": string, \"response\": string} or {\"messages\": [...]}");
        if (rc)
            rc = llm_err_wrap(rc, "%s:%llu", path, (unsigned long long)rs.line[i]);
        else
            cut += v[i].truncated;
    }
    if (!rc && cut)
        llm_warn("%s: %d of %d examples cut to the context length %d", path, cut, rs.n, cfg->model.context_length);
    int n = rs.n;
    llm_jsonl_records_release(&rs);
    if (rc) {
        for (int i = 0; v && i < n; i++)
            llm_seq_release(&v[i]);
        free(v);
        return rc;
    }
    *out = v, *n_out = n;
    return 0;
}

int llm_sft_init(struct llm_sft *s, struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m)
{
    memset(s, 0, sizeof(*s));
    s->base = b;
    s->B = cfg->train.batch_size;
    s->T = cfg->model.context_length;
    s->accum = llm_train_accum(cfg);
    s->packing = cfg->sft.packing;
    int rc = 0;
    if (s->packing && cfg->model.attention == LLM_ATTENTION_LINEAR)
        rc = llm_err(LLM_EINVAL, "sft.packing: not supported with linear attention (its state would "
                                 "carry from one example to the next); set it to false");
    if (!rc && !cfg->data.train[0])
        rc = llm_err(LLM_EINVAL, "data.train: the SFT examples (JSONL {\"prompt\",\"response\"} or {\"messages\"})");
    if (!rc)
        rc = read_examples(cfg->data.train, cfg, b, m, &s->train, &s->n_train);
    if (!rc && cfg->data.val[0])
        rc = read_examples(cfg->data.val, cfg, b, m, &s->val, &s->n_val_all);
    s->n_val = s->n_val_all;
    if (!rc && cfg->data.val[0] && s->n_val > cfg->train.eval_batches * s->B)
        s->n_val = cfg->train.eval_batches * s->B; /* the first eval_batches x B, as pretraining */
    size_t n = (size_t)s->B * s->T;
    if (!rc)
        rc = llm_align_order_init(&s->order, s->n_train, (uint64_t)cfg->train.seed);
    if (!rc && (!(s->tok = malloc(n * sizeof(int32_t))) || !(s->tgt = malloc(n * sizeof(int32_t))) ||
                !(s->pos = malloc(n * sizeof(int32_t))) || !(s->used = malloc((size_t)s->B * sizeof(int))) ||
                !(s->w = malloc(n * sizeof(float))) || !(s->rows = calloc((size_t)s->B, sizeof(*s->rows)))))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (rc) {
        llm_sft_release(s);
        return rc;
    }
    if (s->packing)
        log_packing(s);
    s->task = (struct llm_train_task){
        .ctx = s, .micro_step = micro_step, .evaluate = s->n_val ? evaluate : NULL, .state = state,
        .restore = restore,
    };
    return 0;
}

void llm_sft_release(struct llm_sft *s)
{
    for (int i = 0; s->train && i < s->n_train; i++)
        llm_seq_release(&s->train[i]);
    for (int i = 0; s->val && i < s->n_val_all; i++)
        llm_seq_release(&s->val[i]);
    free(s->train), free(s->val);
    llm_align_order_release(&s->order);
    free(s->tok), free(s->tgt), free(s->pos), free(s->used), free(s->w), free(s->rows);
    memset(s, 0, sizeof(*s));
}
