/* tok_encode.c: byte-level BPE encoding and decoding. Encoding splits the
 * text on added tokens, pre-tokenizes each stretch with the regex, and turns
 * each piece into ids by applying merges lowest rank first (leftmost among
 * equals), with a per-thread cache of piece -> ids. */
#include "tok_impl.h"
#include "core/err.h"
#include "core/str.h"

#include <stdlib.h>
#include <utf8proc.h>

int llm_ids_push(struct llm_ids *ids, uint32_t id)
{
    if (ids->n == ids->cap) {
        size_t ncap = ids->cap ? ids->cap * 2 : 256;
        uint32_t *p = realloc(ids->v, ncap * sizeof(*p));
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory for %zu token ids", ncap);
        ids->v = p, ids->cap = ncap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

void llm_ids_release(struct llm_ids *ids)
{
    free(ids->v);
    memset(ids, 0, sizeof(*ids));
}

int llm_bytes_append(struct llm_bytes *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 4096;
        while (ncap < b->n + n + 1)
            ncap *= 2;
        char *q = realloc(b->v, ncap);
        if (!q)
            return llm_err(LLM_ENOMEM, "out of memory for %zu bytes", ncap);
        b->v = q, b->cap = ncap;
    }
    memcpy(b->v + b->n, p, n);
    b->n += n;
    b->v[b->n] = '\0';
    return 0;
}

void llm_bytes_release(struct llm_bytes *b)
{
    free(b->v);
    memset(b, 0, sizeof(*b));
}

uint32_t llm_tok_vocab_size(const struct llm_tokenizer *t) { return t->n_vocab; }

int64_t llm_tok_special_id(const struct llm_tokenizer *t, const char *content)
{
    size_t n = strlen(content);
    for (uint32_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, content, n))
            return t->added[i].id;
    return -1;
}

const char *llm_tok_token_bytes(const struct llm_tokenizer *t, uint32_t id, size_t *len)
{
    if (id >= t->n_vocab || t->tok_len[id] == UINT32_MAX)
        return NULL;
    *len = t->tok_len[id];
    return t->blob + t->tok_off[id];
}

uint32_t llm_tok_n_merges(const struct llm_tokenizer *t) { return t->n_merges; }

int llm_tok_merge(const struct llm_tokenizer *t, uint32_t rank, uint32_t *a, uint32_t *b,
                  uint32_t *result)
{
    if (rank >= t->n_merges)
        return llm_err(LLM_EINVAL, "merge %u does not exist (%u merges)", rank, t->n_merges);
    *a = t->merges[rank][0], *b = t->merges[rank][1], *result = t->merges[rank][2];
    return 0;
}

static int cmp_added(const void *a, const void *b)
{
    const struct tok_added *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int tok_finalize(struct llm_tokenizer *t)
{
    int rc = tok_strmap_init(&t->vocab);
    if (rc)
        return rc;
    for (uint32_t id = 0; id < t->n_vocab; id++) {
        if (t->tok_len[id] == UINT32_MAX)
            continue;
        int added = 0;
        for (uint32_t k = 0; k < t->n_added && !added; k++)
            added = t->added[k].id == id && t->added[k].special;
        if (added)
            continue; /* special tokens are found by the added-token pass only */
        if ((rc = tok_strmap_put(&t->vocab, t->blob + t->tok_off[id], t->tok_len[id], id)))
            return rc;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (!tok_strmap_get(&t->vocab, &c, 1, &t->byte_id[b]))
            return llm_err(LLM_EUNSUPPORTED,
                           "the vocabulary has no token for byte 0x%02x: not a byte-level BPE", b);
    }
    if ((rc = tok_pairmap_init(&t->merge_map, t->n_merges)))
        return rc;
    for (uint32_t r = 0; r < t->n_merges; r++) {
        uint32_t a = t->merges[r][0], b = t->merges[r][1];
        uint64_t key = (uint64_t)a << 32 | b;
        uint32_t old;
        if (tok_pairmap_get(&t->merge_map, key, &old, NULL))
            continue; /* a repeated merge keeps its first (lowest) rank */
        if ((rc = tok_pairmap_put(&t->merge_map, key, r, t->merges[r][2])))
            return rc;
    }
    qsort(t->added, t->n_added, sizeof(*t->added), cmp_added);
    memset(t->added_first, 0, sizeof(t->added_first));
    for (uint32_t k = 0; k < t->n_added; k++)
        if (t->added[k].len)
            t->added_first[(unsigned char)t->added[k].content[0]] = 1;
    if (t->pattern && (rc = tok_regex_compile(&t->re, t->pattern)))
        return rc;
    return tok_cuts_probe(t->pattern ? &t->re : NULL, &t->cuts);
}

size_t llm_tok_cut(const struct llm_tokenizer *t, const char *s, size_t n)
{
    return tok_cut(&t->cuts, s, n);
}

void llm_tok_free(struct llm_tokenizer *t)
{
    if (!t)
        return;
    free(t->blob), free(t->tok_off), free(t->tok_len), free(t->merges);
    for (uint32_t k = 0; k < t->n_added; k++)
        free(t->added[k].content);
    free(t->added);
    free(t->pattern);
    tok_strmap_release(&t->vocab);
    tok_pairmap_release(&t->merge_map);
    tok_regex_release(&t->re);
    free(t);
}

/* ---- the per-thread encoder ---- */
#define CACHE_BITS 16
#define CACHE_MAX_PIECE 64 /* longer pieces are rare; not cached */

struct cache_ent {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, ids_n;
};

struct llm_tok_encoder {
    const struct llm_tokenizer *t;
    struct tok_matcher m;
    struct cache_ent *ent; /* 1 << CACHE_BITS slots; key_len 0 = empty */
    size_t n_ent;
    char *keys;
    size_t keys_n, keys_cap;
    uint32_t *cids;
    size_t cids_n, cids_cap;
    /* scratch for merging one piece */
    uint32_t *sym;
    int32_t *nxt, *prv;
    struct heap_ent { uint32_t rank, pos, a, b; } *heap;
    size_t scratch_cap;
    struct llm_ids *out;
    int allow_special;
};

int llm_tok_encoder_new(const struct llm_tokenizer *t, struct llm_tok_encoder **out)
{
    struct llm_tok_encoder *e = llm_calloc(1, sizeof(*e), "a tokenizer encoder");
    if (!e)
        return LLM_ENOMEM;
    e->t = t;
    e->ent = calloc((size_t)1 << CACHE_BITS, sizeof(*e->ent));
    int rc = e->ent ? tok_matcher_init(&e->m, t->pattern ? &t->re : NULL)
                    : llm_err(LLM_ENOMEM, "out of memory for the encoder cache");
    if (rc) {
        llm_tok_encoder_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void llm_tok_encoder_free(struct llm_tok_encoder *e)
{
    if (!e)
        return;
    tok_matcher_release(&e->m);
    free(e->ent), free(e->keys), free(e->cids);
    free(e->sym), free(e->nxt), free(e->prv), free(e->heap);
    free(e);
}

static int ensure_scratch(struct llm_tok_encoder *e, size_t n)
{
    if (n <= e->scratch_cap)
        return 0;
    size_t cap = e->scratch_cap ? e->scratch_cap : 64;
    while (cap < n)
        cap *= 2;
    void *a = realloc(e->sym, cap * sizeof(*e->sym));
    if (a)
        e->sym = a;
    void *b = realloc(e->nxt, cap * sizeof(*e->nxt));
    if (b)
        e->nxt = b;
    void *c = realloc(e->prv, cap * sizeof(*e->prv));
    if (c)
        e->prv = c;
    void *d = realloc(e->heap, 2 * cap * sizeof(*e->heap));
    if (d)
        e->heap = d;
    if (!a || !b || !c || !d)
        return llm_err(LLM_ENOMEM, "out of memory encoding a %zu-byte piece", n);
    e->scratch_cap = cap;
    return 0;
}

/* Short pieces: rescan for the lowest-rank pair after each merge, O(n^2). */
static size_t merge_scan(const struct llm_tokenizer *t, uint32_t *sym, size_t n)
{
    for (;;) {
        uint32_t best = UINT32_MAX, best_id = 0, r, id;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (tok_pairmap_get(&t->merge_map, (uint64_t)sym[i] << 32 | sym[i + 1], &r, &id) &&
                r < best)
                best = r, best_id = id, at = i;
        if (best == UINT32_MAX)
            return n;
        sym[at] = best_id;
        memmove(sym + at + 1, sym + at + 2, (n - at - 2) * sizeof(*sym));
        n--;
    }
}

/* Heap order: lower rank first, then the leftmost position. */
static int heap_less(const struct heap_ent *x, const struct heap_ent *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(struct heap_ent *h, size_t *n, struct heap_ent x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&x, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static struct heap_ent heap_pop(struct heap_ent *h, size_t *n)
{
    struct heap_ent top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

/* Long pieces (runs of spaces or digits): a linked list of symbols and a heap
 * of candidate pairs, O(n log n). Stale heap entries are skipped on pop. */
static size_t merge_heap(struct llm_tok_encoder *e, uint32_t *sym, size_t n)
{
    const struct llm_tokenizer *t = e->t;
    int32_t *nxt = e->nxt, *prv = e->prv;
    struct heap_ent *h = e->heap;
    size_t hn = 0;
    uint32_t r = 0, id = 0;
    for (size_t i = 0; i < n; i++) {
        nxt[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prv[i] = (int32_t)i - 1;
        if (i + 1 < n && tok_pairmap_get(&t->merge_map, (uint64_t)sym[i] << 32 | sym[i + 1], &r, &id))
            heap_push(h, &hn, (struct heap_ent){r, (uint32_t)i, sym[i], sym[i + 1]});
    }
    while (hn) {
        struct heap_ent x = heap_pop(h, &hn);
        int32_t i = (int32_t)x.pos, j = nxt[i];
        if (sym[i] != x.a || j < 0 || sym[j] != x.b || sym[i] == UINT32_MAX)
            continue; /* stale: one side was merged away since */
        tok_pairmap_get(&t->merge_map, (uint64_t)x.a << 32 | x.b, &r, &id);
        sym[i] = id;
        sym[j] = UINT32_MAX; /* dead */
        nxt[i] = nxt[j];
        if (nxt[j] >= 0)
            prv[nxt[j]] = i;
        int32_t p = prv[i], q = nxt[i];
        if (p >= 0 && tok_pairmap_get(&t->merge_map, (uint64_t)sym[p] << 32 | sym[i], &r, &id))
            heap_push(h, &hn, (struct heap_ent){r, (uint32_t)p, sym[p], sym[i]});
        if (q >= 0 && tok_pairmap_get(&t->merge_map, (uint64_t)sym[i] << 32 | sym[q], &r, &id))
            heap_push(h, &hn, (struct heap_ent){r, (uint32_t)i, sym[i], sym[q]});
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = nxt[i])
        sym[k++] = sym[i];
    return k;
}

static int cache_put(struct llm_tok_encoder *e, size_t slot, uint64_t h, const char *s, size_t n,
                     const uint32_t *ids, size_t m)
{
    if (e->n_ent * 2 >= ((size_t)1 << CACHE_BITS) || e->keys_n + n > (64u << 20)) {
        /* Full: start over. Bounded memory beats an exact LRU here. */
        memset(e->ent, 0, ((size_t)1 << CACHE_BITS) * sizeof(*e->ent));
        e->n_ent = e->keys_n = e->cids_n = 0;
        return 0; /* the slot index is stale now; skip caching this one */
    }
    if (e->keys_n + n > e->keys_cap) {
        size_t c = e->keys_cap ? e->keys_cap * 2 : 1 << 16;
        char *p = realloc(e->keys, c);
        if (!p)
            return 0;
        e->keys = p, e->keys_cap = c;
    }
    if (e->cids_n + m > e->cids_cap) {
        size_t c = e->cids_cap ? e->cids_cap * 2 : 1 << 16;
        uint32_t *p = realloc(e->cids, c * sizeof(*p));
        if (!p)
            return 0;
        e->cids = p, e->cids_cap = c;
    }
    memcpy(e->keys + e->keys_n, s, n);
    memcpy(e->cids + e->cids_n, ids, m * sizeof(*ids));
    e->ent[slot] = (struct cache_ent){h, (uint32_t)e->keys_n, (uint32_t)n, (uint32_t)e->cids_n,
                                      (uint32_t)m};
    e->keys_n += n, e->cids_n += m, e->n_ent++;
    return 0;
}

static int push_ids(struct llm_ids *out, const uint32_t *ids, size_t m)
{
    if (out->n + m > out->cap) {
        size_t ncap = out->cap ? out->cap : 256;
        while (ncap < out->n + m)
            ncap *= 2;
        uint32_t *p = realloc(out->v, ncap * sizeof(*p));
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory for %zu token ids", ncap);
        out->v = p, out->cap = ncap;
    }
    memcpy(out->v + out->n, ids, m * sizeof(*ids));
    out->n += m;
    return 0;
}

/* Encodes one pre-token piece (the callback of tok_pretokenize). */
static int encode_piece(void *ctx, const char *s, size_t n)
{
    struct llm_tok_encoder *e = ctx;
    const struct llm_tokenizer *t = e->t;
    if (n == 1)
        return llm_ids_push(e->out, t->byte_id[(unsigned char)s[0]]);
    uint32_t id;
    if (t->ignore_merges && tok_strmap_get(&t->vocab, s, n, &id))
        return llm_ids_push(e->out, id);
    uint64_t h = 0;
    size_t slot = 0, mask = ((size_t)1 << CACHE_BITS) - 1;
    if (n <= CACHE_MAX_PIECE) {
        h = tok_hash(s, n);
        for (slot = h & mask; e->ent[slot].key_len; slot = (slot + 1) & mask) {
            const struct cache_ent *c = &e->ent[slot];
            if (c->hash == h && c->key_len == n && !memcmp(e->keys + c->key_off, s, n))
                return push_ids(e->out, e->cids + c->ids_off, c->ids_n);
        }
    }
    int rc = ensure_scratch(e, n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        e->sym[i] = t->byte_id[(unsigned char)s[i]];
    size_t m = n <= 48 ? merge_scan(t, e->sym, n) : merge_heap(e, e->sym, n);
    if (n <= CACHE_MAX_PIECE && (rc = cache_put(e, slot, h, s, n, e->sym, m)))
        return rc;
    return push_ids(e->out, e->sym, m);
}

/* NFC normalization (normalizer NFC, as Qwen2's tokenizer.json has) of the
 * valid UTF-8 runs of s; bytes that are not valid UTF-8 pass unchanged. */
static int nfc(const char *s, size_t n, struct llm_bytes *out)
{
    size_t i = 0;
    while (i < n) {
        size_t bad = n - i;
        int valid = llm_utf8_valid(s + i, n - i, &bad);
        size_t run = valid ? n - i : bad;
        if (run) {
            utf8proc_uint8_t *dst = NULL;
            utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)run,
                                              &dst, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (m < 0)
                return llm_err(LLM_EINVAL, "NFC normalization failed: %s", utf8proc_errmsg(m));
            int rc = llm_bytes_append(out, dst, (size_t)m);
            free(dst);
            if (rc)
                return rc;
            i += run;
        }
        if (!valid) { /* one bad byte, as it is */
            int rc = llm_bytes_append(out, s + i, 1);
            if (rc)
                return rc;
            i++;
        }
    }
    return 0;
}

static int encode_plain(struct llm_tok_encoder *e, const char *s, size_t n)
{
    const struct llm_tokenizer *t = e->t;
    if (t->nfc && n) {
        struct llm_bytes norm = {0};
        int rc = nfc(s, n, &norm);
        if (!rc)
            rc = tok_pretokenize(t->pattern ? &t->re : NULL, &e->m, norm.v, norm.n, encode_piece, e);
        llm_bytes_release(&norm);
        return rc;
    }
    return tok_pretokenize(t->pattern ? &t->re : NULL, &e->m, s, n, encode_piece, e);
}

int llm_tok_encode(struct llm_tok_encoder *e, const char *text, size_t n, int allow_special,
                   struct llm_ids *out)
{
    const struct llm_tokenizer *t = e->t;
    e->out = out;
    int rc;
    if (t->add_prefix_space && n > 0 && text[0] != ' ') {
        /* ByteLevel add_prefix_space: the text is encoded as if it began with a space. */
        char *tmp = llm_malloc(n + 1, "the text");
        if (!tmp)
            return LLM_ENOMEM;
        tmp[0] = ' ';
        memcpy(tmp + 1, text, n);
        rc = llm_tok_encode(e, tmp, n + 1, allow_special, out);
        free(tmp);
        return rc;
    }
    if (!allow_special || !t->n_added)
        return encode_plain(e, text, n);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (!t->added_first[(unsigned char)text[i]])
            continue;
        for (uint32_t k = 0; k < t->n_added; k++) {
            const struct tok_added *a = &t->added[k];
            if (a->len && a->len <= n - i && !memcmp(text + i, a->content, a->len)) {
                if ((rc = encode_plain(e, text + start, i - start)) ||
                    (rc = llm_ids_push(out, a->id)))
                    return rc;
                i += a->len - 1;
                start = i + 1;
                break;
            }
        }
    }
    return encode_plain(e, text + start, n - start);
}

int llm_tok_decode(const struct llm_tokenizer *t, const uint32_t *ids, size_t n,
                   struct llm_bytes *out)
{
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *b = llm_tok_token_bytes(t, ids[i], &len);
        if (!b)
            return llm_err(LLM_EINVAL, "token id %u is not in the vocabulary (size %u)", ids[i],
                           t->n_vocab);
        int rc = llm_bytes_append(out, b, len);
        if (rc)
            return rc;
    }
    return 0;
}
