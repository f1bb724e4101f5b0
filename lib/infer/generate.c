/* generate.c: the generation loop of generate.h: continuous batching over
 * the KV-cache engine, sampling, UTF-8-safe detokenizing, stop strings. */
#include "infer/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "infer/speculative.h"
#include "infer/utf8stream.h"

struct seq {
    int prompt;              /* index of its prompt; -1: the slot is free */
    struct llm_sampler sampler;
    int32_t *hist;           /* prompt + generated ids (the repetition penalty's history) */
    int nhist, caphist;
    int64_t gen, gen_max;    /* generated so far, and the most it may */
    int32_t next;            /* the token the next decode step feeds */
    struct llm_utf8_stream u8;
    int32_t *out;            /* the generated ids, the last one (end-of-text, stop, length) included */
    int nout, capout;
    char *text;              /* the completion so far (complete characters) */
    size_t len, cap, emitted;
    double t0;
};

static int push_id(struct seq *s, int32_t id)
{
    if (s->nhist == s->caphist) {
        int cap = s->caphist ? 2 * s->caphist : 256;
        int32_t *h = realloc(s->hist, (size_t)cap * sizeof(*h));
        if (!h)
            return llm_err(LLM_ENOMEM, "out of memory in generation");
        s->hist = h, s->caphist = cap;
    }
    s->hist[s->nhist++] = id;
    return 0;
}

static int push_text(struct seq *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;
        char *t = realloc(s->text, cap);
        if (!t)
            return llm_err(LLM_ENOMEM, "out of memory in generation");
        s->text = t, s->cap = cap;
    }
    memcpy(s->text + s->len, p, n);
    s->len += n;
    s->text[s->len] = 0;
    return 0;
}

/* The first stop string that ends within the last `added` bytes: cut the
 * text there. Returns 1 if one was found. */
static int cut_at_stop(struct seq *s, size_t added, const struct llm_gen_opts *o)
{
    size_t best = (size_t)-1;
    for (int i = 0; i < o->n_stops; i++) {
        size_t k = strlen(o->stops[i]);
        if (!k || k > s->len)
            continue;
        size_t from = s->len - added >= k - 1 ? s->len - added - (k - 1) : 0;
        for (size_t at = from; at + k <= s->len && at < best; at++)
            if (!memcmp(s->text + at, o->stops[i], k)) {
                best = at;
                break;
            }
    }
    if (best == (size_t)-1)
        return 0;
    s->len = best;
    s->text[best] = 0;
    return 1;
}

/* Bytes at the end of the text that could still grow into a stop string. */
static size_t holdback(const struct seq *s, const struct llm_gen_opts *o)
{
    size_t h = 0;
    for (int i = 0; i < o->n_stops; i++) {
        size_t k = strlen(o->stops[i]);
        for (size_t L = k - 1 < s->len ? k - 1 : s->len; L > h; L--)
            if (!memcmp(s->text + s->len - L, o->stops[i], L)) {
                h = L;
                break;
            }
    }
    return h;
}

static int emit(struct seq *s, size_t upto, llm_gen_stream_fn fn, void *ctx)
{
    if (upto <= s->emitted)
        return 0;
    int rc = fn ? fn(ctx, s->prompt, s->text + s->emitted, upto - s->emitted) : 0;
    s->emitted = upto;
    return rc;
}

struct gen {
    struct llm_model *m;
    struct llm_infer *x;
    struct llm_infer *dx;    /* the draft's caches (speculative decoding), or NULL */
    const struct llm_tokenizer *tok;
    struct llm_tok_encoder *enc;
    const struct llm_gen_opts *o;
    llm_gen_stream_fn fn;
    void *ctx;
    struct llm_gen_result *res;
    struct llm_gen_stats *st;
    struct seq *seqs;        /* (batch) */
    int nactive;
    int max_len;
};

static void free_slot(struct gen *g, int slot)
{
    struct seq *s = &g->seqs[slot];
    llm_sampler_release(&s->sampler);
    free(s->hist);
    free(s->text);
    free(s->out);
    memset(s, 0, sizeof(*s));
    s->prompt = -1;
}

/* The sequence in slot is complete: flush, emit the rest, hand the text to
 * its result, free the slot (and its cache). */
static int finish(struct gen *g, int slot, enum llm_gen_finish why)
{
    struct seq *s = &g->seqs[slot];
    char tail[16];
    size_t n = llm_utf8_stream_flush(&s->u8, tail);
    int rc = 0, stopped = 0;
    if (n && !(rc = push_text(s, tail, n)))
        stopped = cut_at_stop(s, n, g->o);
    if (!rc && !s->text && (s->text = malloc(1)))
        s->text[0] = 0, s->cap = 1;
    if (!rc && !s->text)
        rc = llm_err(LLM_ENOMEM, "out of memory in generation");
    if (!rc)
        rc = emit(s, s->len, g->fn, g->ctx);
    struct llm_gen_result *r = &g->res[s->prompt];
    r->finish = stopped ? LLM_GEN_STOP : why;
    r->tokens = s->gen;
    r->ids = s->out, r->n_ids = s->nout;
    s->out = NULL, s->nout = s->capout = 0;
    if (!rc) {
        r->completion = s->text, r->len = s->len;
        s->text = NULL;
    }
    if (!rc)
        rc = llm_infer_truncate(g->x, slot, 0);
    free_slot(g, slot);
    g->nactive--;
    return rc;
}

/* A new token for the sequence in slot: text, stops, limits. */
static int take(struct gen *g, int slot, int32_t id)
{
    struct seq *s = &g->seqs[slot];
    const struct llm_gen_opts *o = g->o;
    s->gen++;
    g->st->gen_tokens++;
    if (s->nout == s->capout) {
        int cap = s->capout ? 2 * s->capout : 64;
        int32_t *v = realloc(s->out, (size_t)cap * sizeof(*v));
        if (!v)
            return llm_err(LLM_ENOMEM, "out of memory in generation");
        s->out = v, s->capout = cap;
    }
    s->out[s->nout++] = id;
    if (o->eot >= 0 && id == o->eot)
        return finish(g, slot, LLM_GEN_STOP);
    size_t nb;
    const char *b = llm_tok_token_bytes(g->tok, (uint32_t)id, &nb);
    char buf[LLM_UTF8_STREAM_OUT_MAX(256)]; /* an invalid byte may become a 3-byte U+FFFD */
    int rc = 0;
    for (size_t at = 0; !rc && b && at < nb; at += 256) {
        size_t k = nb - at < 256 ? nb - at : 256;
        size_t w = llm_utf8_stream_push(&s->u8, b + at, k, buf);
        if (w && !(rc = push_text(s, buf, w)) && cut_at_stop(s, w, o))
            return finish(g, slot, LLM_GEN_STOP);
    }
    if (rc)
        return rc;
    if (s->gen >= s->gen_max)
        return finish(g, slot, LLM_GEN_LENGTH);
    if ((rc = push_id(s, id)))
        return rc;
    s->next = id;
    return emit(s, s->len - holdback(s, o), g->fn, g->ctx);
}

static int speculate(struct gen *g, int32_t *prompt, int nprompt);

/* Encodes prompt i, prefills it into a free slot, samples its first token. */
static int start(struct gen *g, int i, const char *text, size_t n)
{
    const struct llm_gen_opts *o = g->o;
    int slot = 0;
    while (g->seqs[slot].prompt >= 0)
        slot++;
    struct seq *s = &g->seqs[slot];
    struct llm_ids ids = {0};
    int rc = llm_tok_encode(g->enc, text, n, o->allow_special, &ids);
    if (rc)
        return llm_err_wrap(rc, "prompt %d", i + 1);
    int64_t P = (int64_t)ids.n;
    size_t first = 0;
    if (P == 0)
        rc = llm_err(LLM_EINVAL, "prompt %d is empty (no tokens)", i + 1);
    else if (P >= g->max_len && o->truncate == LLM_GEN_TRUNCATE_ERROR)
        rc = llm_err(LLM_EINVAL, "prompt %d has %lld tokens, the context holds %d: shorten it or use "
                     "--truncate left", i + 1, (long long)P, g->max_len);
    else if (P >= g->max_len) {
        int keep = g->max_len - (o->max_tokens < g->max_len / 2 ? o->max_tokens : g->max_len / 2);
        first = (size_t)(P - keep);
        P = keep;
    }
    s->prompt = i;
    g->nactive++;
    struct llm_sampler_opts so = o->sample;
    if (o->seeds)
        so.seed = o->seeds[i];
    if (!rc)
        rc = llm_sampler_init(&s->sampler, &so);
    for (size_t k = first; !rc && k < ids.n; k++)
        rc = push_id(s, (int32_t)ids.v[k]);
    llm_ids_release(&ids);
    float *logits = NULL;
    if (!rc && !(logits = malloc((size_t)g->m->cfg.vocab_size * sizeof(float))))
        rc = llm_err(LLM_ENOMEM, "out of memory in generation");
    s->t0 = llm_now();
    if (!rc) {
        s->gen_max = g->max_len - P + 1 < o->max_tokens ? g->max_len - P + 1 : o->max_tokens;
        g->res[i].prompt_tokens = P;
        g->st->prompt_tokens += P;
        rc = llm_infer_prefill(g->x, slot, s->hist, (int)P, logits, 0);
        g->st->prefill_s += llm_now() - s->t0;
    }
    int32_t id = 0;
    if (!rc)
        rc = llm_sampler_next(&s->sampler, logits, g->m->cfg.vocab_size, s->hist, s->nhist, &id);
    free(logits);
    if (!rc) {
        g->res[i].ttft_s = llm_now() - s->t0;
        if (i == 0)
            g->st->ttft_s = g->res[i].ttft_s;
        rc = take(g, slot, id);
    }
    if (!rc && g->dx && s->prompt >= 0)
        rc = speculate(g, s->hist, (int)P);
    return rc;
}

/* One decode step of every active sequence. */
static int step(struct gen *g, float *logits, int *slots, int32_t *toks)
{
    int n = 0, B = g->o->batch, V = g->m->cfg.vocab_size;
    for (int k = 0; k < B; k++)
        if (g->seqs[k].prompt >= 0)
            slots[n] = k, toks[n] = g->seqs[k].next, n++;
    double t0 = llm_now();
    int rc = llm_infer_decode(g->x, slots, toks, n, logits);
    g->st->decode_s += llm_now() - t0;
    g->st->decode_steps++;
    for (int k = 0; !rc && k < n; k++) {
        struct seq *s = &g->seqs[slots[k]];
        int32_t id;
        rc = llm_sampler_next(&s->sampler, logits + (size_t)k * V, V, s->hist, s->nhist, &id);
        g->st->decode_tokens++;
        if (!rc)
            rc = take(g, slots[k], id);
    }
    return rc;
}

/* The largest probability of softmax(l) (V): 1 / sum_v exp(l_v - max l).
 * Once per draft step when --draft-p-min is on, so in float (expf): it is
 * only compared with a threshold. */
static float top_prob(const float *l, int V)
{
    float mx = l[0];
    for (int v = 1; v < V; v++)
        mx = l[v] > mx ? l[v] : mx;
    float sum = 0;
    for (int v = 0; v < V; v++)
        sum += expf(l[v] - mx);
    return 1.0f / sum;
}

/* Speculative decoding of the sequence in slot 0 (batch 1) until it ends.
 * Its prompt is in both caches' histories; s->next is the last sampled token
 * (in neither cache). Each round: the draft proposes K tokens (its own
 * sampler, the same transforms), the target scores [next, x_1..x_K] in one
 * pass of at most LLM_INFER_ROWS rows (the bits of decoding them one by one),
 * llm_spec_round accepts a prefix and adds one token, both caches are cut
 * back to what was accepted. With draft_p_min the round ends after the
 * first token the draft was unsure of (its top probability below p_min; a
 * wrong guess is likely there, and every later proposal would be wasted
 * with it). llama.cpp's speculative example drops that token instead, which
 * costs the draft step that found it unsure; here it is proposed, so a round
 * of k proposals still costs k draft passes. Still exact: whether x_(i+1) is
 * proposed depends only on the draft's state after x_1..x_i, and at each
 * position the target either judges a proposal or draws the bonus token,
 * both of which emit its distribution. */
static int speculate(struct gen *g, int32_t *prompt, int nprompt)
{
    const struct llm_gen_opts *o = g->o;
    struct seq *s = &g->seqs[0];
    int V = g->m->cfg.vocab_size, K = o->draft_tokens, rc;
    struct llm_sampler ds;
    struct llm_sampler_opts dopt = o->sample;
    dopt.seed ^= 0x9e3779b97f4a7c15ULL; /* the draft's own stream */
    if ((rc = llm_sampler_init(&ds, &dopt)))
        return rc;
    float *p = malloc((size_t)(K + 1) * V * sizeof(float)), *q = malloc((size_t)K * V * sizeof(float));
    float *lg = malloc((size_t)(K + 1) * V * sizeof(float)), *scratch = malloc((size_t)V * sizeof(float));
    int32_t in[LLM_INFER_ROWS + 2], x[LLM_INFER_ROWS], out[LLM_INFER_ROWS + 1];
    int pend = -1; /* a token the draft's cache still lacks (all K were accepted) */
    if (!p || !q || !lg || !scratch)
        rc = llm_err(LLM_ENOMEM, "out of memory in speculative decoding");
    if (!rc)
        rc = llm_infer_prefill(g->dx, 0, prompt, nprompt, lg, 0);
    while (!rc && s->prompt >= 0) {
        int L = llm_infer_len(g->x, 0), Ld = llm_infer_len(g->dx, 0), nh = s->nhist;
        int k = K < g->max_len - L - 1 ? K : g->max_len - L - 1;
        double t0 = llm_now();
        if (k < 1) { /* no room left for a draft: one plain step */
            int slot = 0;
            int32_t id;
            rc = llm_infer_decode(g->x, &slot, &s->next, 1, lg);
            if (!rc)
                rc = llm_sampler_next(&s->sampler, lg, V, s->hist, s->nhist, &id);
            g->st->decode_s += llm_now() - t0;
            g->st->decode_steps++;
            g->st->decode_tokens++;
            if (!rc)
                rc = take(g, 0, id);
            continue;
        }
        /* the draft proposes x_1..x_k */
        int nin = 0;
        if (pend >= 0)
            in[nin++] = pend;
        in[nin++] = s->next;
        rc = llm_infer_prefill(g->dx, 0, in, nin, lg, 0);
        for (int i = 0; !rc && i < k; i++) {
            /* unsure of x_(i+1): propose it, then let the target take over */
            int last = o->draft_p_min > 0 && top_prob(lg, V) < o->draft_p_min;
            rc = llm_sampler_probs(&ds.o, lg, V, s->hist, s->nhist, q + (size_t)i * V);
            if (!rc)
                rc = llm_sampler_draw(&ds, q + (size_t)i * V, V, &x[i]);
            if (!rc)
                rc = push_id(s, x[i]); /* the history the next rows are penalized with */
            if (!rc && last)
                k = i + 1;
            if (!rc && i + 1 < k) {
                int slot = 0;
                rc = llm_infer_decode(g->dx, &slot, &x[i], 1, lg);
            }
        }
        s->nhist = nh;
        /* the target scores [next, x_1..x_k] */
        in[0] = s->next;
        memcpy(in + 1, x, (size_t)k * sizeof(int32_t));
        if (!rc)
            rc = llm_infer_prefill(g->x, 0, in, k + 1, lg, 1);
        for (int i = 0; !rc && i <= k; i++) {
            rc = llm_sampler_probs(&s->sampler.o, lg + (size_t)i * V, V, s->hist, s->nhist, p + (size_t)i * V);
            if (!rc && i < k)
                rc = push_id(s, x[i]);
        }
        s->nhist = nh;
        int n = 0, a = 0;
        if (!rc)
            rc = llm_spec_round(&s->sampler, p, q, x, k, V, scratch, out, &n, &a);
        g->st->decode_s += llm_now() - t0;
        g->st->decode_steps++;
        g->st->draft_proposed += k;
        g->st->draft_accepted += a;
        /* keep [next, x_1..x_a] in both caches */
        if (!rc && a < k)
            rc = llm_infer_truncate(g->x, 0, L + 1 + a);
        if (!rc) {
            int keep = Ld + nin + a; /* the draft saw pend, next, x_1..x_{k-1} */
            if (a < k) {
                rc = llm_infer_truncate(g->dx, 0, keep);
                pend = -1;
            } else {
                pend = x[k - 1];
            }
        }
        for (int i = 0; !rc && i < n && s->prompt >= 0; i++) {
            g->st->decode_tokens++;
            rc = take(g, 0, out[i]);
        }
    }
    if (!rc || llm_infer_len(g->dx, 0))
        llm_infer_truncate(g->dx, 0, 0);
    llm_sampler_release(&ds);
    free(p), free(q), free(lg), free(scratch);
    return rc;
}

int llm_generate(struct llm_model *m, const struct llm_tokenizer *tok, const char *const *prompts,
                 const size_t *lens, int n, const struct llm_gen_opts *o, llm_gen_stream_fn fn, void *ctx,
                 struct llm_gen_result *results, struct llm_gen_stats *stats)
{
    memset(results, 0, (size_t)n * sizeof(*results));
    memset(stats, 0, sizeof(*stats));
    if (o->max_tokens < 1 || o->batch < 1)
        return llm_err(LLM_EINVAL, "max_tokens and batch must be >= 1 (got %d, %d)", o->max_tokens, o->batch);
    if (llm_tok_vocab_size(tok) > (uint32_t)m->cfg.vocab_size)
        return llm_err(LLM_EINVAL, "the tokenizer has %u ids, more than the model's vocab_size %d",
                       llm_tok_vocab_size(tok), m->cfg.vocab_size);
    int rc = llm_sampler_check(&o->sample);
    if (rc)
        return rc;
    struct gen g = {.m = m, .tok = tok, .o = o, .fn = fn, .ctx = ctx, .res = results, .st = stats,
                    .max_len = m->cfg.context_length};
    int B = o->draft ? 1 : o->batch < n ? o->batch : n;
    if (o->draft && (o->draft->cfg.vocab_size != m->cfg.vocab_size))
        return llm_err(LLM_EINVAL, "the draft's vocab_size %d differs from the model's %d",
                       o->draft->cfg.vocab_size, m->cfg.vocab_size);
    if (o->draft && (o->draft_tokens < 1 || o->draft_tokens > LLM_INFER_ROWS - 1))
        return llm_err(LLM_EINVAL, "draft_tokens: expected 1..%d, got %d", LLM_INFER_ROWS - 1, o->draft_tokens);
    struct llm_gen_opts ob = *o;
    ob.batch = B;
    g.o = &ob;
    float *logits = NULL;
    int *slots = NULL;
    int32_t *toks = NULL;
    if (n <= 0)
        return 0;
    if (!(g.seqs = calloc((size_t)B, sizeof(*g.seqs))) || !(slots = malloc((size_t)B * sizeof(int))) ||
        !(toks = malloc((size_t)B * sizeof(int32_t))) ||
        !(logits = malloc((size_t)B * m->cfg.vocab_size * sizeof(float))))
        rc = llm_err(LLM_ENOMEM, "out of memory in generation");
    for (int k = 0; !rc && k < B; k++)
        g.seqs[k].prompt = -1;
    if (!rc)
        rc = llm_tok_encoder_new(tok, &g.enc);
    if (!rc)
        rc = llm_infer_new(&g.x, m, B, g.max_len);
    if (!rc && o->q8) {
        llm_infer_use_q8(g.x, o->q8);
        llm_infer_use_a8(g.x, o->a8);
    }
    if (!rc && o->draft) {
        int dl = o->draft->cfg.context_length < g.max_len ? o->draft->cfg.context_length : g.max_len;
        g.max_len = dl; /* both caches hold the sequence */
        rc = llm_infer_new(&g.dx, o->draft, 1, dl);
        if (!rc && o->draft_q8) {
            llm_infer_use_q8(g.dx, o->draft_q8);
            llm_infer_use_a8(g.dx, o->draft_a8);
        }
    }
    int next = 0;
    while (!rc && (next < n || g.nactive > 0)) {
        if (next < n && g.nactive < B) {
            rc = start(&g, next, prompts[next], lens[next]);
            next++;
            continue;
        }
        rc = step(&g, logits, slots, toks);
    }
    for (int k = 0; g.seqs && k < B; k++)
        if (g.seqs[k].prompt >= 0)
            free_slot(&g, k);
    llm_infer_free(g.x);
    llm_infer_free(g.dx);
    llm_tok_encoder_free(g.enc);
    free(g.seqs), free(slots), free(toks), free(logits);
    if (rc)
        llm_gen_results_release(results, n);
    return rc;
}

void llm_gen_results_release(struct llm_gen_result *r, int n)
{
    for (int i = 0; r && i < n; i++) {
        free(r[i].completion), free(r[i].ids);
        r[i].completion = NULL, r[i].ids = NULL;
        r[i].len = 0, r[i].n_ids = 0;
    }
}

const char *llm_gen_finish_name(enum llm_gen_finish f) { return f == LLM_GEN_STOP ? "stop" : "length"; }

int64_t llm_gen_default_eot(const struct llm_tokenizer *tok)
{
    static const char *const names[] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<eos>"};
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        int64_t id = llm_tok_special_id(tok, names[i]);
        if (id >= 0)
            return id;
    }
    return -1;
}
