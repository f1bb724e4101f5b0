/* tok_train.c: byte-level BPE training. Pre-tokens are counted in parallel
 * into a word -> count table (memory grows with distinct words, not with the
 * corpus); merges are then learned with pair counts, an index from each pair
 * to the words that contain it, a max-heap with lazy deletion, and updates of
 * only the words a merge touches.
 *
 * Rule: the pair with the highest count is merged; ties go to the pair whose
 * (bytes(a), bytes(b)) is lexicographically greatest (CS336). A merge whose
 * result equals an existing token reuses its id (as HF does), and merging
 * stops when the vocabulary has vocab_size distinct tokens or no pair is
 * left. Ids: specials 0..S-1, byte b is S+b, merges follow in order. */
#include "tok_impl.h"
#include "core/err.h"
#include "core/log.h"
#include "core/str.h"

#include <omp.h>
#include <stdlib.h>

/* Word -> count tables. Slots are 24 bytes and hold words of up to 8 bytes
 * inline (most pre-tokens), so a lookup usually touches one cache line;
 * longer words live in a blob. The tables are hit once per pre-token, so
 * this is the trainer's hottest data structure. */
struct wslot {
    uint64_t k;     /* the word's bytes (zero padded) if len <= 8, else its blob offset */
    uint64_t count;
    uint32_t h32;   /* hash: its low bits pick the slot */
    uint32_t len;   /* 0 = empty slot */
};

struct wmap {
    struct wslot *slot;
    size_t cap, n; /* cap is a power of two, n <= cap / 2 */
    char *blob;
    size_t blob_n, blob_cap;
};

static int wmap_init(struct wmap *m)
{
    memset(m, 0, sizeof(*m));
    m->cap = 1 << 12;
    m->slot = calloc(m->cap, sizeof(*m->slot));
    return m->slot ? 0 : llm_err(LLM_ENOMEM, "out of memory for a word table");
}

static void wmap_release(struct wmap *m)
{
    free(m->slot), free(m->blob);
    memset(m, 0, sizeof(*m));
}

static void wmap_clear(struct wmap *m)
{
    memset(m->slot, 0, m->cap * sizeof(*m->slot));
    m->n = m->blob_n = 0;
}

static inline const char *wmap_key(const struct wmap *m, const struct wslot *sl)
{
    return sl->len <= 8 ? (const char *)&sl->k : m->blob + sl->k;
}

static int wmap_grow(struct wmap *m)
{
    size_t ncap = m->cap * 2, mask = ncap - 1;
    struct wslot *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return llm_err(LLM_ENOMEM, "out of memory for a word table of %zu words", m->n);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slot[i].len)
            continue;
        size_t j = m->slot[i].h32 & mask;
        while (ns[j].len)
            j = (j + 1) & mask;
        ns[j] = m->slot[i];
    }
    free(m->slot);
    m->slot = ns, m->cap = ncap;
    return 0;
}

/* The key and hash of a word: words of up to 8 bytes hash as one integer. */
static inline uint32_t wmap_hash(const char *s, size_t n, uint64_t *k)
{
    *k = 0;
    if (n <= 8) {
        memcpy(k, s, n);
        return (uint32_t)tok_mix(*k * 0x9e3779b97f4a7c15ULL + n);
    }
    return (uint32_t)tok_hash(s, n);
}

/* Adds delta to the count of word s[0..n) (n > 0), whose key and hash are
 * k and h32 (wmap_hash). */
static int wmap_add_h(struct wmap *m, const char *s, size_t n, uint64_t k, uint32_t h32,
                      uint64_t delta)
{
    size_t mask = m->cap - 1, i = h32 & mask;
    for (;; i = (i + 1) & mask) {
        struct wslot *sl = &m->slot[i];
        if (!sl->len)
            break;
        if (sl->h32 != h32 || sl->len != n)
            continue;
        if (n <= 8 ? sl->k == k : !memcmp(m->blob + sl->k, s, n)) {
            sl->count += delta;
            return 0;
        }
    }
    if (n > 8) { /* a long word: keep its bytes in the blob */
        if (m->blob_n + n > m->blob_cap) {
            size_t nc = m->blob_cap ? m->blob_cap * 2 : 1 << 16;
            while (nc < m->blob_n + n)
                nc *= 2;
            char *b = realloc(m->blob, nc);
            if (!b)
                return llm_err(LLM_ENOMEM, "out of memory for a word table");
            m->blob = b, m->blob_cap = nc;
        }
        memcpy(m->blob + m->blob_n, s, n);
        k = m->blob_n;
        m->blob_n += n;
    }
    if (n > UINT32_MAX)
        return llm_err(LLM_EINVAL, "a pre-token of %zu bytes is too long", n);
    m->slot[i] = (struct wslot){k, delta, h32, (uint32_t)n};
    if (++m->n * 2 > m->cap)
        return wmap_grow(m);
    return 0;
}

static inline void wmap_prefetch(const struct wmap *m, uint32_t h32)
{
    __builtin_prefetch(&m->slot[h32 & (m->cap - 1)], 1);
}

/* Pre-tokens waiting to be counted: their slots are prefetched as a group,
 * so the cache misses of a big table overlap instead of queueing. */
#define PENDING 32
struct pending {
    struct wmap *m;
    const char *s[PENDING];
    uint32_t n[PENDING];
    int count;
};

static int pending_flush(struct pending *p)
{
    uint64_t k[PENDING];
    uint32_t h[PENDING];
    for (int i = 0; i < p->count; i++) {
        h[i] = wmap_hash(p->s[i], p->n[i], &k[i]);
        wmap_prefetch(p->m, h[i]);
    }
    int rc = 0;
    for (int i = 0; i < p->count && !rc; i++)
        rc = wmap_add_h(p->m, p->s[i], p->n[i], k[i], h[i], 1);
    p->count = 0;
    return rc;
}

struct llm_tok_trainer {
    struct llm_tok_train_opts o;
    char **specials;       /* owned copies, longest first */
    size_t *special_len;
    uint8_t special_first[256];
    char *pattern;
    struct tok_regex re;
    struct tok_cuts cuts;
    int threads;
    struct tok_matcher *m;  /* (threads) */
    struct wmap *local;       /* (threads) per-batch word counts */
    struct wmap words;        /* all word counts */
    uint64_t total;
};

void llm_tok_trainer_free(struct llm_tok_trainer *tr)
{
    if (!tr)
        return;
    for (int i = 0; i < tr->o.n_specials; i++)
        free(tr->specials[i]);
    free(tr->specials), free(tr->special_len), free(tr->pattern);
    for (int i = 0; tr->m && i < tr->threads; i++)
        tok_matcher_release(&tr->m[i]);
    for (int i = 0; tr->local && i < tr->threads; i++)
        wmap_release(&tr->local[i]);
    free(tr->m), free(tr->local);
    wmap_release(&tr->words);
    tok_regex_release(&tr->re);
    free(tr);
}

int llm_tok_trainer_new(const struct llm_tok_train_opts *o, struct llm_tok_trainer **out)
{
    if (o->n_specials < 0 || (uint64_t)o->vocab_size < 256 + (uint64_t)o->n_specials)
        return llm_err(LLM_EINVAL, "vocabulary size %u is smaller than 256 bytes + %d special tokens",
                       o->vocab_size, o->n_specials);
    struct llm_tok_trainer *tr = llm_calloc(1, sizeof(*tr), "the trainer");
    if (!tr)
        return LLM_ENOMEM;
    tr->o = *o;
    tr->threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    int rc = 0;
    size_t ns = (size_t)o->n_specials;
    tr->specials = llm_calloc(ns ? ns : 1, sizeof(char *), "special tokens");
    tr->special_len = llm_calloc(ns ? ns : 1, sizeof(size_t), "special tokens");
    if (!tr->specials || !tr->special_len) {
        rc = LLM_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < ns; i++) {
        const char *s = o->specials[i];
        if (!s[0]) {
            rc = llm_err(LLM_EINVAL, "a special token cannot be empty");
            goto fail;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(o->specials[j], s)) {
                rc = llm_err(LLM_EINVAL, "special token '%s' is given twice", s);
                goto fail;
            }
        if (!(tr->specials[i] = llm_strdup(s))) {
            rc = LLM_ENOMEM;
            goto fail;
        }
    }
    /* longest first, so "<|a|>" never hides "<|a|>b" */
    for (size_t i = 0; i < ns; i++)
        for (size_t j = i + 1; j < ns; j++)
            if (strlen(tr->specials[j]) > strlen(tr->specials[i])) {
                char *t = tr->specials[i];
                tr->specials[i] = tr->specials[j], tr->specials[j] = t;
            }
    for (size_t i = 0; i < ns; i++) {
        tr->special_len[i] = strlen(tr->specials[i]);
        tr->special_first[(unsigned char)tr->specials[i][0]] = 1;
    }
    tr->pattern = llm_strdup(o->pattern ? o->pattern : LLM_TOK_GPT2_PATTERN);
    if (!tr->pattern || (rc = tok_regex_compile(&tr->re, tr->pattern)) ||
        (rc = tok_cuts_probe(&tr->re, &tr->cuts)))
        goto fail;
    tr->m = llm_calloc((size_t)tr->threads, sizeof(*tr->m), "regex scratch");
    tr->local = llm_calloc((size_t)tr->threads, sizeof(*tr->local), "word tables");
    if (!tr->m || !tr->local) {
        rc = LLM_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < tr->threads; i++)
        if ((rc = tok_matcher_init(&tr->m[i], &tr->re)) || (rc = wmap_init(&tr->local[i])))
            goto fail;
    if ((rc = wmap_init(&tr->words)))
        goto fail;
    *out = tr;
    return 0;
fail:
    llm_tok_trainer_free(tr);
    return rc ? rc : LLM_ENOMEM;
}

/* Counting one pre-token into a thread's table (val = count in this batch). */
static int count_piece(void *ctx, const char *s, size_t n)
{
    struct pending *p = ctx;
    if (n > UINT32_MAX)
        return llm_err(LLM_EINVAL, "a pre-token of %zu bytes is too long", n);
    p->s[p->count] = s, p->n[p->count] = (uint32_t)n;
    return ++p->count == PENDING ? pending_flush(p) : 0;
}

/* Pre-tokenizes doc, never across a special token (specials are not counted). */
static int count_doc(struct llm_tok_trainer *tr, int th, const char *s, size_t n)
{
    size_t start = 0;
    int rc;
    struct pending pend = {.m = &tr->local[th]};
    if (tr->o.n_specials) {
        for (size_t i = 0; i < n; i++) {
            if (!tr->special_first[(unsigned char)s[i]])
                continue;
            for (int k = 0; k < tr->o.n_specials; k++) {
                size_t len = tr->special_len[k];
                if (len <= n - i && !memcmp(s + i, tr->specials[k], len)) {
                    if ((rc = tok_pretokenize(&tr->re, &tr->m[th], s + start, i - start,
                                              count_piece, &pend)))
                        return rc;
                    i += len - 1;
                    start = i + 1;
                    break;
                }
            }
        }
    }
    if ((rc = tok_pretokenize(&tr->re, &tr->m[th], s + start, n - start, count_piece, &pend)))
        return rc;
    return pending_flush(&pend);
}

int llm_tok_trainer_feed(struct llm_tok_trainer *tr, const char *const *docs, const size_t *lens,
                         size_t n_docs)
{
    int rc = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(tr->threads)
    for (size_t i = 0; i < n_docs; i++) {
        int r = count_doc(tr, omp_get_thread_num(), docs[i], lens[i]);
        if (r) {
#pragma omp critical
            rc = rc ? rc : llm_err(r, "%s", llm_errmsg()); /* keep the first message */
        }
    }
    /* Fold the per-thread tables into the global one, then empty them. */
    for (int th = 0; th < tr->threads; th++) {
        struct wmap *l = &tr->local[th];
        for (size_t i = 0; i < l->cap && !rc; i++) {
            const struct wslot *sl = &l->slot[i];
            if (i + 16 < l->cap && l->slot[i + 16].len)
                wmap_prefetch(&tr->words, l->slot[i + 16].h32);
            if (sl->len) {
                /* same hash function, so the local slot's key and hash carry over */
                uint64_t k = sl->len <= 8 ? sl->k : 0;
                rc = wmap_add_h(&tr->words, wmap_key(l, sl), sl->len, k, sl->h32, sl->count);
                tr->total += sl->count;
            }
        }
        wmap_clear(l);
    }
    return rc;
}

size_t llm_tok_trainer_cut(const struct llm_tok_trainer *tr, const char *s, size_t n)
{
    return tok_cut(&tr->cuts, s, n);
}

void llm_tok_trainer_stats(const struct llm_tok_trainer *tr, uint64_t *distinct, uint64_t *total)
{
    *distinct = tr->words.n;
    *total = tr->total;
}

/* ---- learning merges ---- */
struct pairinfo {
    int64_t count;
    uint32_t a, b;
    uint32_t mark;   /* the merge step that last raised the count */
    uint32_t *words; /* words that contain (or once contained) the pair */
    uint32_t nw, cw;
};

struct heapent {
    int64_t count;
    uint32_t pair;
};

struct learner {
    uint32_t *sym;       /* all words' symbols, back to back */
    uint64_t *woff;      /* (W) start of word w in sym */
    uint32_t *wlen;      /* (W) current number of symbols */
    uint64_t *wcount;    /* (W) occurrences of the word */
    uint32_t *stamp;     /* (W) last merge that visited the word */
    size_t W;
    /* token bytes by internal id (bytes 0..255, then merges) */
    char *tb;
    uint64_t *toff;
    uint32_t *tlen;
    size_t ntok, tb_n, tb_cap, tok_cap;
    struct tok_strmap tok_by_bytes;
    struct tok_pairmap pair_idx; /* a<<32|b -> pair index */
    struct pairinfo *pairs;
    size_t npairs, pairs_cap;
    struct heapent *heap;
    size_t hn, hcap;
    uint32_t *raised; /* pairs whose count rose in this merge step: queued once at its end */
    size_t nraised, raised_cap;
    uint32_t step;
};

/* Is pair x ranked above pair y at equal counts? (bytes(a), bytes(b)) greater. */
static int pair_greater(const struct learner *L, uint32_t x, uint32_t y)
{
    const struct pairinfo *p = &L->pairs[x], *q = &L->pairs[y];
    for (int side = 0; side < 2; side++) {
        uint32_t u = side ? p->b : p->a, v = side ? q->b : q->a;
        size_t lu = L->tlen[u], lv = L->tlen[v];
        int c = memcmp(L->tb + L->toff[u], L->tb + L->toff[v], lu < lv ? lu : lv);
        if (c)
            return c > 0;
        if (lu != lv)
            return lu > lv;
    }
    return 0;
}

static int heap_above(const struct learner *L, const struct heapent *x, const struct heapent *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    return pair_greater(L, x->pair, y->pair);
}

static int heap_push(struct learner *L, uint32_t pair, int64_t count)
{
    if (L->hn == L->hcap) {
        size_t nc = L->hcap ? L->hcap * 2 : 1 << 16;
        struct heapent *h = realloc(L->heap, nc * sizeof(*h));
        if (!h)
            return llm_err(LLM_ENOMEM, "out of memory for the pair heap");
        L->heap = h, L->hcap = nc;
    }
    struct heapent x = {count, pair};
    size_t i = L->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_above(L, &x, &L->heap[p]))
            break;
        L->heap[i] = L->heap[p];
        i = p;
    }
    L->heap[i] = x;
    return 0;
}

static struct heapent heap_pop(struct learner *L)
{
    struct heapent top = L->heap[0], x = L->heap[--L->hn];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= L->hn)
            break;
        if (c + 1 < L->hn && heap_above(L, &L->heap[c + 1], &L->heap[c]))
            c++;
        if (!heap_above(L, &L->heap[c], &x))
            break;
        L->heap[i] = L->heap[c];
        i = c;
    }
    L->heap[i] = x;
    return top;
}

/* The index of pair (a, b), created with count 0 if new. */
static int pair_get(struct learner *L, uint32_t a, uint32_t b, uint32_t *out)
{
    uint64_t key = (uint64_t)a << 32 | b;
    if (tok_pairmap_get(&L->pair_idx, key, out, NULL))
        return 0;
    if (L->npairs == L->pairs_cap) {
        size_t nc = L->pairs_cap ? L->pairs_cap * 2 : 1 << 16;
        struct pairinfo *p = realloc(L->pairs, nc * sizeof(*p));
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory for pair counts");
        L->pairs = p, L->pairs_cap = nc;
    }
    *out = (uint32_t)L->npairs;
    L->pairs[L->npairs++] = (struct pairinfo){0, a, b, 0, NULL, 0, 0};
    return tok_pairmap_put(&L->pair_idx, key, *out, 0);
}

static int pair_add_word(struct pairinfo *p, uint32_t w)
{
    if (p->nw && p->words[p->nw - 1] == w)
        return 0;
    if (p->nw == p->cw) {
        uint32_t nc = p->cw ? p->cw * 2 : 4;
        uint32_t *x = realloc(p->words, nc * sizeof(*x));
        if (!x)
            return llm_err(LLM_ENOMEM, "out of memory for the pair index");
        p->words = x, p->cw = nc;
    }
    p->words[p->nw++] = w;
    return 0;
}

static int add_token(struct learner *L, const char *bytes, size_t n, uint32_t *id)
{
    if (L->ntok == L->tok_cap) {
        size_t nc = L->tok_cap ? L->tok_cap * 2 : 1024;
        uint64_t *o = realloc(L->toff, nc * sizeof(*o));
        if (o)
            L->toff = o;
        uint32_t *l = realloc(L->tlen, nc * sizeof(*l));
        if (l)
            L->tlen = l;
        if (!o || !l)
            return llm_err(LLM_ENOMEM, "out of memory for the vocabulary");
        L->tok_cap = nc;
    }
    if (L->tb_n + n > L->tb_cap) {
        size_t nc = L->tb_cap ? L->tb_cap * 2 : 1 << 20;
        while (nc < L->tb_n + n)
            nc *= 2;
        char *p = realloc(L->tb, nc);
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory for the vocabulary");
        L->tb = p, L->tb_cap = nc;
    }
    memcpy(L->tb + L->tb_n, bytes, n);
    L->toff[L->ntok] = L->tb_n;
    L->tlen[L->ntok] = (uint32_t)n;
    L->tb_n += n;
    *id = (uint32_t)L->ntok++;
    return tok_strmap_put(&L->tok_by_bytes, bytes, n, *id);
}

static void learner_release(struct learner *L)
{
    for (size_t i = 0; i < L->npairs; i++)
        free(L->pairs[i].words);
    free(L->pairs), free(L->heap), free(L->raised), free(L->sym), free(L->woff), free(L->wlen), free(L->wcount),
        free(L->stamp), free(L->tb), free(L->toff), free(L->tlen);
    tok_strmap_release(&L->tok_by_bytes);
    tok_pairmap_release(&L->pair_idx);
}

/* Applies merge (a, b) -> t to word w; updates the counts of the pairs it
 * changes (only pairs next to a merge position change). */
static int merge_word(struct learner *L, uint32_t w, uint32_t a, uint32_t b, uint32_t t,
                      uint8_t *mark, uint8_t *made, uint32_t *tmp)
{
    uint32_t *s = L->sym + L->woff[w];
    uint32_t n = L->wlen[w], m = 0;
    int64_t c = (int64_t)L->wcount[w];
    int found = 0;
    for (uint32_t i = 0; i < n; i++) {
        mark[i] = 0;
        if (i + 1 < n && s[i] == a && s[i + 1] == b)
            found = 1;
    }
    if (!found)
        return 0; /* stale entry of the index */
    for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            mark[i] = mark[i + 1] = 1;
            made[m] = 1;
            tmp[m++] = t;
            i += 2;
        } else {
            made[m] = 0;
            tmp[m++] = s[i++];
        }
    }
    int rc;
    uint32_t p;
    for (uint32_t i = 0; i + 1 < n; i++) /* pairs that are gone */
        if (mark[i] || mark[i + 1]) {
            tok_pairmap_get(&L->pair_idx, (uint64_t)s[i] << 32 | s[i + 1], &p, NULL);
            L->pairs[p].count -= c;
        }
    for (uint32_t j = 0; j + 1 < m; j++) /* pairs that are new */
        if (made[j] || made[j + 1]) {
            if ((rc = pair_get(L, tmp[j], tmp[j + 1], &p)))
                return rc;
            L->pairs[p].count += c;
            if ((rc = pair_add_word(&L->pairs[p], w)))
                return rc;
            /* Queue each raised pair once per step (with its final count), not
             * once per word: the heap stays small and pops stay cheap. */
            if (L->pairs[p].mark != L->step) {
                L->pairs[p].mark = L->step;
                if (L->nraised == L->raised_cap) {
                    size_t nc = L->raised_cap ? L->raised_cap * 2 : 1024;
                    uint32_t *x = realloc(L->raised, nc * sizeof(*x));
                    if (!x)
                        return llm_err(LLM_ENOMEM, "out of memory for pair counts");
                    L->raised = x, L->raised_cap = nc;
                }
                L->raised[L->nraised++] = p;
            }
        }
    memcpy(s, tmp, m * sizeof(*s));
    L->wlen[w] = m;
    return 0;
}

/* Learns merges until the vocabulary has `want` distinct tokens (bytes included). */
static int learn(struct llm_tok_trainer *tr, struct learner *L, uint32_t want,
                 uint32_t (**merges_out)[3], uint32_t *n_merges_out,
                 void (*progress)(void *, uint64_t, uint64_t), void *ctx)
{
    int rc;
    const struct wmap *wm = &tr->words;
    size_t W = wm->n, total_syms = 0, maxlen = 1;
    for (size_t i = 0; i < wm->cap; i++) {
        total_syms += wm->slot[i].len;
        if (wm->slot[i].len > maxlen)
            maxlen = wm->slot[i].len;
    }
    L->W = W;
    L->sym = malloc((total_syms ? total_syms : 1) * sizeof(*L->sym));
    L->woff = malloc((W ? W : 1) * sizeof(*L->woff));
    L->wlen = malloc((W ? W : 1) * sizeof(*L->wlen));
    L->wcount = malloc((W ? W : 1) * sizeof(*L->wcount));
    L->stamp = calloc(W ? W : 1, sizeof(*L->stamp));
    uint8_t *mark = malloc(maxlen), *made = malloc(maxlen);
    uint32_t *tmp = malloc(maxlen * sizeof(*tmp));
    size_t merges_cap = want > 256 ? want - 256 : 1;
    uint32_t (*merges)[3] = malloc(merges_cap * sizeof(*merges));
    if (!L->sym || !L->woff || !L->wlen || !L->wcount || !L->stamp || !mark || !made || !tmp ||
        !merges) {
        rc = llm_err(LLM_ENOMEM, "out of memory for %zu words (%zu symbols)", W, total_syms);
        goto out;
    }
    if ((rc = tok_strmap_init(&L->tok_by_bytes)) || (rc = tok_pairmap_init(&L->pair_idx, 1 << 16)))
        goto out;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        uint32_t id;
        if ((rc = add_token(L, &c, 1, &id)))
            goto out;
    }
    /* words and their initial pairs */
    size_t off = 0;
    size_t wi = 0;
    for (size_t i = 0; i < wm->cap; i++) {
        const struct wslot *sl = &wm->slot[i];
        if (!sl->len)
            continue;
        const unsigned char *bytes = (const unsigned char *)wmap_key(wm, sl);
        L->woff[wi] = off;
        L->wlen[wi] = sl->len;
        L->wcount[wi] = sl->count;
        for (uint32_t j = 0; j < sl->len; j++)
            L->sym[off + j] = bytes[j];
        off += sl->len;
        wi++;
    }
    for (size_t w = 0; w < W; w++) {
        const uint32_t *s = L->sym + L->woff[w];
        for (uint32_t i = 0; i + 1 < L->wlen[w]; i++) {
            uint32_t p;
            if ((rc = pair_get(L, s[i], s[i + 1], &p)))
                goto out;
            L->pairs[p].count += (int64_t)L->wcount[w];
            if ((rc = pair_add_word(&L->pairs[p], (uint32_t)w)))
                goto out;
        }
    }
    for (size_t p = 0; p < L->npairs; p++)
        if ((rc = heap_push(L, (uint32_t)p, L->pairs[p].count)))
            goto out;

    uint32_t nm = 0, vocab = 256, step = 0;
    L->step = 0;
    while (vocab < want && L->hn) {
        struct heapent top = heap_pop(L);
        struct pairinfo *P = &L->pairs[top.pair];
        if (top.count != P->count) {
            /* stale: re-queue with the current count if it fell (a newer
             * entry exists if it rose) */
            if (P->count > 0 && P->count < top.count && (rc = heap_push(L, top.pair, P->count)))
                goto out;
            continue;
        }
        if (P->count <= 0)
            break; /* only pairs that no longer occur are left */
        uint32_t a = P->a, b = P->b, t;
        size_t la = L->tlen[a], lb = L->tlen[b];
        char *cat = malloc(la + lb);
        if (!cat) {
            rc = llm_err(LLM_ENOMEM, "out of memory for a token");
            goto out;
        }
        memcpy(cat, L->tb + L->toff[a], la);
        memcpy(cat + la, L->tb + L->toff[b], lb);
        int existed = tok_strmap_get(&L->tok_by_bytes, cat, la + lb, &t);
        if (!existed) {
            rc = add_token(L, cat, la + lb, &t);
            vocab++;
        }
        free(cat);
        if (rc)
            goto out;
        if (nm == merges_cap) { /* merges that re-made an existing token need room */
            void *g = realloc(merges, 2 * merges_cap * sizeof(*merges));
            if (!g) {
                rc = llm_err(LLM_ENOMEM, "out of memory for the merges");
                goto out;
            }
            merges = g, merges_cap *= 2;
        }
        merges[nm][0] = a, merges[nm][1] = b, merges[nm][2] = t;
        nm++;
        step++;
        L->step = step;
        L->nraised = 0;
        /* P may move when pairs grow: work from a copy of its word list */
        uint32_t pidx = top.pair, nw = L->pairs[pidx].nw;
        uint32_t *ws = L->pairs[pidx].words;
        L->pairs[pidx].words = NULL, L->pairs[pidx].nw = L->pairs[pidx].cw = 0;
        for (uint32_t k = 0; k < nw && !rc; k++) {
            uint32_t w = ws[k];
            if (L->stamp[w] == step)
                continue;
            L->stamp[w] = step;
            rc = merge_word(L, w, a, b, t, mark, made, tmp);
        }
        free(ws);
        if (rc)
            goto out;
        L->pairs[pidx].count = 0;
        for (size_t k = 0; k < L->nraised && !rc; k++)
            if (L->pairs[L->raised[k]].count > 0)
                rc = heap_push(L, L->raised[k], L->pairs[L->raised[k]].count);
        if (rc)
            goto out;
        if (progress && (nm % 64 == 0))
            progress(ctx, vocab - 256, want - 256);
    }
    if (progress)
        progress(ctx, vocab - 256, want - 256);
    *merges_out = merges;
    *n_merges_out = nm;
    merges = NULL;
out:
    free(mark), free(made), free(tmp), free(merges);
    return rc;
}

int llm_tok_trainer_finish(struct llm_tok_trainer *tr, struct llm_tokenizer **out,
                           void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx)
{
    uint32_t S = (uint32_t)tr->o.n_specials;
    uint32_t want = tr->o.vocab_size - S; /* bytes + merged tokens */
    struct learner L = {0};
    uint32_t(*merges)[3] = NULL, nm = 0;
    int rc = learn(tr, &L, want, &merges, &nm, progress, ctx);
    struct llm_tokenizer *t = NULL;
    if (rc)
        goto out;
    if (L.ntok < want)
        llm_warn("the corpus ran out of pairs: %zu tokens instead of %u", L.ntok + S, tr->o.vocab_size);
    t = llm_calloc(1, sizeof(*t), "a tokenizer");
    if (!t) {
        rc = LLM_ENOMEM;
        goto out;
    }
    t->n_vocab = S + (uint32_t)L.ntok;
    size_t blob = L.tb_n;
    for (uint32_t i = 0; i < S; i++)
        blob += strlen(tr->o.specials[i]);
    t->blob = malloc(blob ? blob : 1);
    t->tok_off = malloc(t->n_vocab * sizeof(*t->tok_off));
    t->tok_len = malloc(t->n_vocab * sizeof(*t->tok_len));
    t->added = llm_calloc(S ? S : 1, sizeof(*t->added), "special tokens");
    t->merges = malloc((nm ? nm : 1) * sizeof(*t->merges));
    t->pattern = llm_strdup(tr->pattern);
    if (!t->blob || !t->tok_off || !t->tok_len || !t->added || !t->merges || !t->pattern) {
        rc = llm_err(LLM_ENOMEM, "out of memory building the tokenizer");
        goto out;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < S; i++) { /* specials in the order given */
        size_t n = strlen(tr->o.specials[i]);
        memcpy(t->blob + k, tr->o.specials[i], n);
        t->tok_off[i] = k, t->tok_len[i] = (uint32_t)n;
        k += n;
        struct tok_added *a = &t->added[t->n_added++];
        a->content = llm_strdup(tr->o.specials[i]);
        a->len = (uint32_t)n, a->id = i, a->special = 1;
        if (!a->content) {
            rc = LLM_ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < L.ntok; i++) {
        memcpy(t->blob + k, L.tb + L.toff[i], L.tlen[i]);
        t->tok_off[S + i] = k, t->tok_len[S + i] = L.tlen[i];
        k += L.tlen[i];
    }
    for (uint32_t r = 0; r < nm; r++)
        for (int j = 0; j < 3; j++)
            t->merges[r][j] = merges[r][j] + S;
    t->n_merges = nm;
    t->pattern_is_bytelevel = !strcmp(tr->pattern, LLM_TOK_GPT2_PATTERN);
    rc = tok_finalize(t);
out:
    free(merges);
    learner_release(&L);
    if (rc) {
        llm_tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}
