/* test_tok.c: the byte-level BPE tokenizer against plain, obviously-correct
 * oracles written here: a naive trainer (recount every pair after every
 * merge) and a naive encoder (rescan for the lowest-rank pair); round trips
 * of random bytes; tokenizer.json save/load; token shards; bad input. */
#include "testutil.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include "core/err.h"
#include "core/file.h"
#include "core/rng.h"
#include "data/shard.h"
#include "tok/tok.h"

/* ---- a tiny table of u64 -> int64 for the oracles ---- */
struct tab {
    uint64_t *k;
    int64_t *v;
    size_t cap;
};
static void tab_init(struct tab *t, size_t cap)
{
    t->cap = cap;
    t->k = malloc(cap * sizeof(*t->k));
    t->v = calloc(cap, sizeof(*t->v));
    memset(t->k, 0xff, cap * sizeof(*t->k));
}
static int64_t *tab_slot(struct tab *t, uint64_t key)
{
    size_t i = (key * 0x9e3779b97f4a7c15ULL) % t->cap;
    while (t->k[i] != key && t->k[i] != UINT64_MAX)
        i = (i + 1) % t->cap;
    t->k[i] = key;
    return &t->v[i];
}
static void tab_free(struct tab *t) { free(t->k), free(t->v); }

/* ---- oracle pre-tokenizer: PCRE2 directly, every byte covered ---- */
typedef void (*piece_fn)(void *ctx, const char *s, size_t n);
static void naive_pieces(const char *pattern, const char *s, size_t n, piece_fn fn, void *ctx)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, NULL);
    assert_non_null(re);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    size_t pos = 0;
    while (pos < n) {
        int r = pcre2_match(re, (PCRE2_SPTR)s, n, pos, 0, md, NULL);
        if (r < 0)
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[0] > pos)
            fn(ctx, s + pos, ov[0] - pos);
        assert_true(ov[1] > ov[0]); /* our test patterns never match empty */
        fn(ctx, s + ov[0], ov[1] - ov[0]);
        pos = ov[1];
    }
    if (pos < n)
        fn(ctx, s + pos, n - pos);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
}

/* Splits on specials (longest first), calling naive_pieces on the rest. */
static void naive_split(const char *pattern, const char *const *specials, int ns, const char *s,
                        size_t n, piece_fn fn, void (*special_fn)(void *, int), void *ctx)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        int best = -1;
        size_t bl = 0;
        for (int k = 0; k < ns; k++) {
            size_t l = strlen(specials[k]);
            if (l <= n - i && l > bl && !memcmp(s + i, specials[k], l))
                best = k, bl = l;
        }
        if (best < 0)
            continue;
        naive_pieces(pattern, s + start, i - start, fn, ctx);
        if (special_fn)
            special_fn(ctx, best);
        i += bl - 1;
        start = i + 1;
    }
    naive_pieces(pattern, s + start, n - start, fn, ctx);
}

/* ---- oracle trainer ---- */
struct oracle {
    char **tok;      /* token bytes (not NUL-terminated inside; lengths below) */
    size_t *tlen;
    int ntok;
    int (*merges)[3];
    int nm;
    /* words */
    int **w;
    int *wn;
    int64_t *wc;
    char **wkey;
    size_t *wkeylen;
    int nw;
};

static void add_word(void *ctx, const char *s, size_t n)
{
    struct oracle *o = ctx;
    for (int i = 0; i < o->nw; i++)
        if (o->wkeylen[i] == n && !memcmp(o->wkey[i], s, n)) {
            o->wc[i]++;
            return;
        }
    o->w = realloc(o->w, (size_t)(o->nw + 1) * sizeof(*o->w));
    o->wn = realloc(o->wn, (size_t)(o->nw + 1) * sizeof(*o->wn));
    o->wc = realloc(o->wc, (size_t)(o->nw + 1) * sizeof(*o->wc));
    o->wkey = realloc(o->wkey, (size_t)(o->nw + 1) * sizeof(*o->wkey));
    o->wkeylen = realloc(o->wkeylen, (size_t)(o->nw + 1) * sizeof(*o->wkeylen));
    o->w[o->nw] = malloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++)
        o->w[o->nw][i] = (unsigned char)s[i];
    o->wn[o->nw] = (int)n;
    o->wc[o->nw] = 1;
    o->wkey[o->nw] = malloc(n);
    memcpy(o->wkey[o->nw], s, n);
    o->wkeylen[o->nw] = n;
    o->nw++;
}

static int bytes_cmp(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static void oracle_train(struct oracle *o, const char *pattern, const char *const *specials, int ns,
                         const char *const *docs, int ndocs, int want_tokens)
{
    memset(o, 0, sizeof(*o));
    for (int d = 0; d < ndocs; d++)
        naive_split(pattern, specials, ns, docs[d], strlen(docs[d]), add_word, NULL, o);
    o->tok = malloc(sizeof(char *) * (size_t)(want_tokens + 10000));
    o->tlen = malloc(sizeof(size_t) * (size_t)(want_tokens + 10000));
    o->merges = malloc(sizeof(*o->merges) * (size_t)(want_tokens + 10000));
    for (int b = 0; b < 256; b++) {
        o->tok[b] = malloc(1);
        o->tok[b][0] = (char)b;
        o->tlen[b] = 1;
    }
    o->ntok = 256;
    while (o->ntok < want_tokens) {
        struct tab counts;
        tab_init(&counts, 1 << 16);
        for (int i = 0; i < o->nw; i++)
            for (int j = 0; j + 1 < o->wn[i]; j++)
                *tab_slot(&counts, (uint64_t)o->w[i][j] << 32 | (uint32_t)o->w[i][j + 1]) += o->wc[i];
        int64_t best = 0;
        int ba = -1, bb = -1;
        for (size_t s = 0; s < counts.cap; s++) {
            if (counts.k[s] == UINT64_MAX || counts.v[s] <= 0)
                continue;
            int a = (int)(counts.k[s] >> 32), b = (int)(counts.k[s] & 0xffffffff);
            int better = counts.v[s] > best;
            if (counts.v[s] == best) {
                int c = bytes_cmp(o->tok[a], o->tlen[a], o->tok[ba], o->tlen[ba]);
                if (!c)
                    c = bytes_cmp(o->tok[b], o->tlen[b], o->tok[bb], o->tlen[bb]);
                better = c > 0;
            }
            if (better)
                best = counts.v[s], ba = a, bb = b;
        }
        tab_free(&counts);
        if (ba < 0)
            break;
        size_t n = o->tlen[ba] + o->tlen[bb];
        char *cat = malloc(n);
        memcpy(cat, o->tok[ba], o->tlen[ba]);
        memcpy(cat + o->tlen[ba], o->tok[bb], o->tlen[bb]);
        int t = -1;
        for (int i = 0; i < o->ntok; i++)
            if (o->tlen[i] == n && !memcmp(o->tok[i], cat, n))
                t = i;
        if (t < 0) {
            t = o->ntok++;
            o->tok[t] = cat, o->tlen[t] = n;
        } else
            free(cat);
        o->merges[o->nm][0] = ba, o->merges[o->nm][1] = bb, o->merges[o->nm][2] = t;
        o->nm++;
        for (int i = 0; i < o->nw; i++) {
            int m = 0;
            for (int j = 0; j < o->wn[i];) {
                if (j + 1 < o->wn[i] && o->w[i][j] == ba && o->w[i][j + 1] == bb)
                    o->w[i][m++] = t, j += 2;
                else
                    o->w[i][m++] = o->w[i][j++];
            }
            o->wn[i] = m;
        }
    }
}

static void oracle_free(struct oracle *o)
{
    for (int i = 0; i < o->ntok; i++)
        free(o->tok[i]);
    for (int i = 0; i < o->nw; i++)
        free(o->w[i]), free(o->wkey[i]);
    free(o->tok), free(o->tlen), free(o->merges), free(o->w), free(o->wn), free(o->wc), free(o->wkey),
        free(o->wkeylen);
}

static struct llm_tokenizer *fast_train(const char *pattern, const char *const *specials, int ns,
                                        const char *const *docs, int ndocs, uint32_t vocab,
                                        int threads)
{
    struct llm_tok_train_opts opts = {vocab, specials, ns, pattern, threads};
    struct llm_tok_trainer *tr;
    assert_int_equal(llm_tok_trainer_new(&opts, &tr), 0);
    size_t *lens = malloc((size_t)ndocs * sizeof(*lens));
    for (int i = 0; i < ndocs; i++)
        lens[i] = strlen(docs[i]);
    assert_int_equal(llm_tok_trainer_feed(tr, docs, lens, (size_t)ndocs), 0);
    struct llm_tokenizer *t;
    assert_int_equal(llm_tok_trainer_finish(tr, &t, NULL, NULL), 0);
    llm_tok_trainer_free(tr);
    free(lens);
    return t;
}

/* The fast trainer's merges equal the oracle's, merge for merge, as bytes. */
static void check_same_merges(const char *pattern, const char *const *specials, int ns,
                              const char *const *docs, int ndocs, uint32_t vocab)
{
    struct oracle o;
    oracle_train(&o, pattern ? pattern : LLM_TOK_GPT2_PATTERN, specials, ns, docs, ndocs,
                 (int)vocab - ns);
    struct llm_tokenizer *t = fast_train(pattern, specials, ns, docs, ndocs, vocab, 2);
    assert_true(o.nm > 10); /* the corpus is big enough to learn something */
    if (getenv("TOK_TEST_DEBUG"))
        printf("# %d merges, %d distinct new tokens\n", o.nm, o.ntok - 256);
    assert_int_equal(llm_tok_n_merges(t), (uint32_t)o.nm);
    assert_int_equal(llm_tok_vocab_size(t), (uint32_t)(o.ntok + ns));
    for (int i = 0; i < ns; i++) {
        size_t len;
        const char *b = llm_tok_token_bytes(t, (uint32_t)i, &len);
        assert_int_equal(len, strlen(specials[i]));
        assert_memory_equal(b, specials[i], len);
    }
    for (int r = 0; r < o.nm; r++) {
        uint32_t a, b, res;
        assert_int_equal(llm_tok_merge(t, (uint32_t)r, &a, &b, &res), 0);
        size_t la, lb, lr;
        const char *pa = llm_tok_token_bytes(t, a, &la), *pb = llm_tok_token_bytes(t, b, &lb),
                   *pr = llm_tok_token_bytes(t, res, &lr);
        int oa = o.merges[r][0], ob = o.merges[r][1], orr = o.merges[r][2];
        if (la != o.tlen[oa] || memcmp(pa, o.tok[oa], la) || lb != o.tlen[ob] ||
            memcmp(pb, o.tok[ob], lb))
            fail_msg("merge %d differs: fast '%.*s'+'%.*s', oracle '%.*s'+'%.*s'", r, (int)la, pa,
                     (int)lb, pb, (int)o.tlen[oa], o.tok[oa], (int)o.tlen[ob], o.tok[ob]);
        assert_int_equal(lr, o.tlen[orr]);
        assert_memory_equal(pr, o.tok[orr], lr);
        assert_int_equal(res, (uint32_t)(orr + ns)); /* same ids: specials, bytes, merges */
    }
    llm_tok_free(t);
    oracle_free(&o);
}

static const char *const english[] = {
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.\n"
    "It's what they'd said: we'll see, you're right, I'm sure they've gone.\n",
    "Numbers like 12345 and 2024 appear, and so do   spaces and\ttabs.\n\n\nNewlines too.",
    "the the the then there their they theory thesis thermal the end\n",
};

static void test_train_matches_oracle_english(void **state)
{
    (void)state;
    check_same_merges(NULL, NULL, 0, english, 3, 256 + 120);
}

static char *random_text(struct llm_rng *r, size_t n, const char *alphabet)
{
    size_t k = strlen(alphabet);
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = alphabet[llm_rng_below(r, k)];
    s[n] = 0;
    return s;
}

static void test_train_matches_oracle_ties(void **state)
{
    (void)state;
    /* A tiny alphabet makes equal counts (ties) and tokens reachable by two
     * different merges (a result that already exists) common. */
    struct llm_rng r;
    for (int seed = 1; seed <= 4; seed++) {
        llm_rng_seed(&r, (uint64_t)seed);
        char *docs[3];
        for (int i = 0; i < 3; i++)
            docs[i] = random_text(&r, 300 + 50 * (size_t)i, seed % 2 ? "ab ab\n" : "abc  ");
        check_same_merges(NULL, NULL, 0, (const char *const *)docs, 3, 256 + 60);
        check_same_merges("\\S+|\\s+", NULL, 0, (const char *const *)docs, 3, 256 + 60);
        for (int i = 0; i < 3; i++)
            free(docs[i]);
    }
}

static void test_train_specials_never_merge(void **state)
{
    (void)state;
    const char *specials[] = {"<|endoftext|>", "<|pad|>"};
    const char *docs[] = {
        "hello<|endoftext|>hello world<|pad|><|pad|>world<|endoftext|>",
        "<|endoftext|>say hello to the world<|endoftext|> hello",
    };
    check_same_merges(NULL, specials, 2, docs, 2, 2 + 256 + 40);
    struct llm_tokenizer *t = fast_train(NULL, specials, 2, docs, 2, 2 + 256 + 40, 1);
    /* No token contains any byte of a special's text next to other text:
     * "<|" never becomes a learned token, since specials are cut out first. */
    for (uint32_t id = 2 + 256; id < llm_tok_vocab_size(t); id++) {
        size_t len;
        const char *b = llm_tok_token_bytes(t, id, &len);
        assert_null(memchr(b, '|', len));
    }
    assert_int_equal(llm_tok_special_id(t, "<|endoftext|>"), 0);
    assert_int_equal(llm_tok_special_id(t, "<|pad|>"), 1);
    llm_tok_free(t);
}

static void test_train_threads_agree(void **state)
{
    (void)state;
    struct llm_rng r;
    llm_rng_seed(&r, 9);
    char *docs[8];
    for (int i = 0; i < 8; i++)
        docs[i] = random_text(&r, 2000, "the quick brown fox, THE LAZY DOG 0123\n");
    struct llm_tokenizer *a = fast_train(NULL, NULL, 0, (const char *const *)docs, 8, 600, 1);
    struct llm_tokenizer *b = fast_train(NULL, NULL, 0, (const char *const *)docs, 8, 600, 2);
    assert_int_equal(llm_tok_n_merges(a), llm_tok_n_merges(b));
    for (uint32_t k = 0; k < llm_tok_n_merges(a); k++) {
        uint32_t x[3], y[3];
        llm_tok_merge(a, k, &x[0], &x[1], &x[2]);
        llm_tok_merge(b, k, &y[0], &y[1], &y[2]);
        assert_memory_equal(x, y, sizeof(x));
    }
    llm_tok_free(a), llm_tok_free(b);
    for (int i = 0; i < 8; i++)
        free(docs[i]);
}

/* ---- oracle encoder ---- */
struct enc_ctx {
    const struct llm_tokenizer *t;
    struct tab ranks; /* a<<32|b -> rank+1 */
    struct llm_ids *out;
};

static void naive_encode_piece(void *ctx, const char *s, size_t n)
{
    struct enc_ctx *c = ctx;
    uint32_t *sym = malloc(n * sizeof(*sym));
    for (size_t i = 0; i < n; i++) {
        /* the byte's id: the token whose bytes are exactly this byte */
        for (uint32_t id = 0; id < llm_tok_vocab_size(c->t); id++) {
            size_t len;
            const char *b = llm_tok_token_bytes(c->t, id, &len);
            if (b && len == 1 && b[0] == s[i]) {
                sym[i] = id;
                break;
            }
        }
    }
    for (;;) {
        int64_t best = INT64_MAX;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int64_t r = *tab_slot(&c->ranks, (uint64_t)sym[i] << 32 | sym[i + 1]);
            if (r > 0 && r < best)
                best = r, at = i;
        }
        if (best == INT64_MAX)
            break;
        uint32_t a, b, res;
        llm_tok_merge(c->t, (uint32_t)(best - 1), &a, &b, &res);
        sym[at] = res;
        memmove(sym + at + 1, sym + at + 2, (n - at - 2) * sizeof(*sym));
        n--;
    }
    for (size_t i = 0; i < n; i++)
        llm_ids_push(c->out, sym[i]);
    free(sym);
}

static void naive_encode(const struct llm_tokenizer *t, const char *pattern, const char *s, size_t n,
                         struct llm_ids *out)
{
    struct enc_ctx c = {t, {0}, out};
    tab_init(&c.ranks, 1 << 16);
    for (uint32_t r = llm_tok_n_merges(t); r-- > 0;) { /* lowest rank wins: write it last */
        uint32_t a, b, res;
        llm_tok_merge(t, r, &a, &b, &res);
        *tab_slot(&c.ranks, (uint64_t)a << 32 | b) = r + 1;
    }
    naive_pieces(pattern, s, n, naive_encode_piece, &c);
    tab_free(&c.ranks);
}

static void test_encode_matches_oracle(void **state)
{
    (void)state;
    struct llm_rng r;
    llm_rng_seed(&r, 3);
    char *docs[4];
    for (int i = 0; i < 4; i++)
        docs[i] = random_text(&r, 3000, "aab ba  ab\n0011 ");
    struct llm_tokenizer *t = fast_train(NULL, NULL, 0, (const char *const *)docs, 4, 256 + 200, 2);
    struct llm_tok_encoder *e;
    assert_int_equal(llm_tok_encoder_new(t, &e), 0);
    for (int k = 0; k < 30; k++) {
        /* Texts include long runs (the heap path of the encoder) and short words. */
        size_t n = 1 + llm_rng_below(&r, 400);
        char *s = random_text(&r, n, k % 3 ? "ab 01\n" : "aaaaaaaaaaaaaaab    ");
        struct llm_ids fast = {0}, slow = {0};
        assert_int_equal(llm_tok_encode(e, s, n, 1, &fast), 0);
        naive_encode(t, LLM_TOK_GPT2_PATTERN, s, n, &slow);
        assert_int_equal(fast.n, slow.n);
        assert_memory_equal(fast.v, slow.v, fast.n * sizeof(uint32_t));
        llm_ids_release(&fast), llm_ids_release(&slow);
        free(s);
    }
    llm_tok_encoder_free(e);
    llm_tok_free(t);
    for (int i = 0; i < 4; i++)
        free(docs[i]);
}

static void test_roundtrip_random_bytes(void **state)
{
    (void)state;
    const char *docs[] = {english[0], english[1], english[2]};
    const char *specials[] = {"<|endoftext|>"};
    struct llm_tokenizer *t = fast_train(NULL, specials, 1, docs, 3, 1 + 256 + 150, 1);
    struct llm_tok_encoder *e;
    assert_int_equal(llm_tok_encoder_new(t, &e), 0);
    struct llm_rng r;
    llm_rng_seed(&r, 11);
    for (int k = 0; k < 300; k++) {
        size_t n = llm_rng_below(&r, 200);
        char *s = malloc(n + 1);
        for (size_t i = 0; i < n; i++) /* every byte value, mostly invalid UTF-8 */
            s[i] = k % 2 ? (char)llm_rng_below(&r, 256)
                         : "the fox \xff\xc3\xa9\xe4<|endoftext|>"[llm_rng_below(&r, 24)];
        struct llm_ids ids = {0};
        struct llm_bytes back = {0};
        assert_int_equal(llm_tok_encode(e, s, n, 1, &ids), 0);
        assert_int_equal(llm_tok_decode(t, ids.v, ids.n, &back), 0);
        assert_int_equal(back.n, n);
        if (n)
            assert_memory_equal(back.v, s, n);
        llm_ids_release(&ids), llm_bytes_release(&back);
        free(s);
    }
    uint32_t bad = 999999;
    struct llm_bytes b = {0};
    assert_int_equal(llm_tok_decode(t, &bad, 1, &b), LLM_EINVAL);
    llm_bytes_release(&b);
    llm_tok_encoder_free(e);
    llm_tok_free(t);
}

static void test_special_matching(void **state)
{
    (void)state;
    const char *specials[] = {"<|endoftext|>"};
    const char *docs[] = {english[0]};
    struct llm_tokenizer *t = fast_train(NULL, specials, 1, docs, 1, 1 + 256 + 20, 1);
    struct llm_tok_encoder *e;
    assert_int_equal(llm_tok_encoder_new(t, &e), 0);
    const char *s = "a<|endoftext|>b";
    struct llm_ids ids = {0};
    assert_int_equal(llm_tok_encode(e, s, strlen(s), 1, &ids), 0);
    assert_int_equal(ids.n, 3);
    assert_int_equal(ids.v[1], 0);
    ids.n = 0;
    assert_int_equal(llm_tok_encode(e, s, strlen(s), 0, &ids), 0); /* not special: plain text */
    assert_true(ids.n > 3);
    for (size_t i = 0; i < ids.n; i++)
        assert_int_not_equal(ids.v[i], 0);
    llm_ids_release(&ids);
    llm_tok_encoder_free(e);
    llm_tok_free(t);
}

static void test_cuts_keep_ids(void **state)
{
    (void)state;
    /* Train on whitespace-heavy text so "\n\n", "\r\n" and runs of spaces are
     * tokens: a cut that split a whitespace run differently would show. */
    const char *docs[] = {"a\n\nb\n\n\nc\r\nd\r\n\r\ne  f   g\n\n  h.\n\ni\n", english[0],
                          "x\n\ny\n\nz\r\n\r\nw\n\n\nv  \n\nu"};
    for (int custom = 0; custom < 3; custom++) {
        /* GPT-2's pattern, cl100k's, and one with no safe cut at all */
        const char *pat = custom == 0 ? NULL
                        : custom == 1 ? "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"
                                      : "[\\s\\S]+";
        struct llm_tokenizer *t = fast_train(pat, NULL, 0, docs, 3, 256 + 60, 1);
        struct llm_tok_encoder *e;
        assert_int_equal(llm_tok_encoder_new(t, &e), 0);
        struct llm_rng r;
        llm_rng_seed(&r, 5);
        int cuts = 0;
        for (int k = 0; k < 300; k++) {
            size_t n = 20 + llm_rng_below(&r, 200);
            char *s = random_text(&r, n, "ab c\n\n\n\r  \t'sd.,1");
            struct llm_ids whole = {0}, parts = {0};
            assert_int_equal(llm_tok_encode(e, s, n, 1, &whole), 0);
            size_t cut = llm_tok_cut(t, s, n / 2 + 1);
            cuts += cut > 0;
            assert_int_equal(llm_tok_encode(e, s, cut, 1, &parts), 0);
            assert_int_equal(llm_tok_encode(e, s + cut, n - cut, 1, &parts), 0);
            if (whole.n != parts.n || memcmp(whole.v, parts.v, whole.n * sizeof(uint32_t)))
                fail_msg("pattern %d: cutting at %zu of %zu changes the ids", custom, cut, n);
            llm_ids_release(&whole), llm_ids_release(&parts);
            free(s);
        }
        if (custom < 2)
            assert_true(cuts > 100); /* the test did cut */
        else
            assert_int_equal(cuts, 0); /* a pattern that never ends a token mid-text */
        llm_tok_encoder_free(e);
        llm_tok_free(t);
    }
    /* The rules on GPT-2's pattern: after \n between printable characters only. */
    struct llm_tokenizer *t = fast_train(NULL, NULL, 0, docs, 3, 256 + 10, 1);
    assert_int_equal(llm_tok_cut(t, "abc", 3), 0);
    assert_int_equal(llm_tok_cut(t, "a\nb", 3), 2);
    assert_int_equal(llm_tok_cut(t, "a\n b", 4), 0);
    assert_int_equal(llm_tok_cut(t, "a\n\nb", 4), 0); /* GPT-2 splits "\n\n" before b */
    assert_int_equal(llm_tok_cut(t, "a\r\nb", 4), 2); /* between \r and \n */
    llm_tok_free(t);
}

static void test_save_load_roundtrip(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "tokenizer.json");
    const char *specials[] = {"<|endoftext|>", "<|im_start|>"};
    const char *docs[] = {english[0], english[1], english[2]};
    for (int custom = 0; custom < 2; custom++) {
        const char *pat = custom ? "\\p{L}+|\\p{N}{1,3}|\\s+|[^\\s\\p{L}\\p{N}]+" : NULL;
        struct llm_tokenizer *t = fast_train(pat, specials, 2, docs, 3, 2 + 256 + 100, 1), *u;
        assert_int_equal(llm_tok_save(t, path), 0);
        assert_int_equal(llm_tok_load(&u, path), 0);
        assert_int_equal(llm_tok_vocab_size(u), llm_tok_vocab_size(t));
        assert_int_equal(llm_tok_n_merges(u), llm_tok_n_merges(t));
        struct llm_tok_encoder *e1, *e2;
        llm_tok_encoder_new(t, &e1);
        llm_tok_encoder_new(u, &e2);
        const char *s = "The lazy fox<|im_start|> said 12345 \xff things.<|endoftext|>";
        struct llm_ids a = {0}, b = {0};
        assert_int_equal(llm_tok_encode(e1, s, strlen(s), 1, &a), 0);
        assert_int_equal(llm_tok_encode(e2, s, strlen(s), 1, &b), 0);
        assert_int_equal(a.n, b.n);
        assert_memory_equal(a.v, b.v, a.n * sizeof(uint32_t));
        llm_ids_release(&a), llm_ids_release(&b);
        llm_tok_encoder_free(e1), llm_tok_encoder_free(e2);
        llm_tok_free(t), llm_tok_free(u);
    }
    free(path);
    test_rmdir(dir);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_nfc_normalizer(void **state)
{
    (void)state;
    /* Qwen2's tokenizer.json has "normalizer": {"type": "NFC"}: decomposed and
     * composed spellings of a text must give the same ids. */
    char *dir = test_mkdtemp(), *path = test_path(dir, "t.json");
    const char *docs[] = {"caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9\n", english[0]};
    struct llm_tokenizer *t = fast_train(NULL, NULL, 0, docs, 2, 256 + 40, 1), *u;
    assert_int_equal(llm_tok_save(t, path), 0);
    char *json;
    size_t len;
    assert_int_equal(llm_read_file(path, 1 << 24, &json, &len), 0);
    const char *nul = "\"normalizer\":\tnull"; /* as cJSON_Print writes it */
    char *at = strstr(json, nul);
    assert_non_null(at);
    FILE *f = fopen(path, "w");
    fprintf(f, "%.*s\"normalizer\": {\"type\": \"NFC\"}%s", (int)(at - json), json,
            at + strlen(nul));
    fclose(f);
    free(json);
    assert_int_equal(llm_tok_load(&u, path), 0);
    struct llm_tok_encoder *e;
    assert_int_equal(llm_tok_encoder_new(u, &e), 0);
    const char *composed = "caf\xc3\xa9 \xff", *decomposed = "cafe\xcc\x81 \xff";
    struct llm_ids a = {0}, b = {0}, c = {0};
    assert_int_equal(llm_tok_encode(e, composed, strlen(composed), 1, &a), 0);
    assert_int_equal(llm_tok_encode(e, decomposed, strlen(decomposed), 1, &b), 0);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.v, b.v, a.n * sizeof(uint32_t));
    struct llm_bytes back = {0};
    assert_int_equal(llm_tok_decode(u, b.v, b.n, &back), 0);
    assert_string_equal(back.v, composed); /* NFC, and the invalid byte kept */
    /* without the normalizer the two spellings differ */
    struct llm_tok_encoder *e0;
    assert_int_equal(llm_tok_encoder_new(t, &e0), 0);
    assert_int_equal(llm_tok_encode(e0, decomposed, strlen(decomposed), 1, &c), 0);
    assert_true(c.n != a.n || memcmp(c.v, a.v, a.n * sizeof(uint32_t)));
    /* it is written back when saved */
    assert_int_equal(llm_tok_save(u, path), 0);
    assert_int_equal(llm_read_file(path, 1 << 24, &json, &len), 0);
    assert_non_null(strstr(json, "\"NFC\""));
    free(json);
    llm_ids_release(&a), llm_ids_release(&b), llm_ids_release(&c), llm_bytes_release(&back);
    llm_tok_encoder_free(e), llm_tok_encoder_free(e0);
    llm_tok_free(t), llm_tok_free(u);
    free(path);
    test_rmdir(dir);
}

static void test_bad_tokenizer_files(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "t.json");
    struct { const char *json, *msg; } cases[] = {
        {"{not json", "not valid JSON"},
        {"[]", "no \"model\" object"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "model type 'WordPiece' is not supported"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model type 'Unigram' is not supported"},
        {"{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{}}}", "byte_fallback is not supported"},
        {"{\"normalizer\":{\"type\":\"NFKC\"},\"model\":{\"type\":\"BPE\",\"vocab\":{}}}", "normalizer 'NFKC' is not supported"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}", "no token for byte"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"\xe4\xb8\xad\":0}}}", "not in the byte-level alphabet"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}}", "id 0 is used twice"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", "has no valid id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}", "merges[0]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(path, cases[i].json);
        struct llm_tokenizer *t = NULL;
        assert_true(llm_tok_load(&t, path) < 0);
        if (!strstr(llm_errmsg(), cases[i].msg))
            fail_msg("case %zu: got '%s', wanted '%s'", i, llm_errmsg(), cases[i].msg);
        assert_non_null(strstr(llm_errmsg(), "t.json"));
    }
    struct llm_tokenizer *t;
    char *missing = test_path(dir, "missing.json");
    assert_int_equal(llm_tok_load(&t, missing), LLM_EIO);
    free(missing);
    /* vocab too small for the bytes and the specials */
    const char *specials[] = {"<|endoftext|>"};
    struct llm_tok_train_opts o = {256, specials, 1, NULL, 1};
    struct llm_tok_trainer *tr;
    assert_int_equal(llm_tok_trainer_new(&o, &tr), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "smaller than 256 bytes + 1 special"));
    o.pattern = "(unclosed";
    o.vocab_size = 300;
    assert_int_equal(llm_tok_trainer_new(&o, &tr), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "bad pre-tokenizer pattern"));
    free(path);
    test_rmdir(dir);
}

static void test_shards(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "a.bin");
    for (int wide = 0; wide < 2; wide++) {
        uint32_t vocab = wide ? 100000 : 50257;
        struct llm_shard_writer w;
        assert_int_equal(llm_shard_writer_open(&w, path, vocab), 0);
        uint32_t ids[1000];
        for (uint32_t i = 0; i < 1000; i++)
            ids[i] = (i * 7919u) % vocab;
        for (int k = 0; k < 300; k++) /* 300k tokens: crosses the staging buffer */
            assert_int_equal(llm_shard_write(&w, ids, 1000), 0);
        uint32_t bad = vocab;
        assert_int_equal(llm_shard_write(&w, &bad, 1), LLM_EINVAL);
        assert_int_equal(llm_shard_writer_commit(&w), 0);
        struct llm_shard s;
        assert_int_equal(llm_shard_open(&s, path), 0);
        assert_int_equal(s.n_tokens, 300000);
        assert_int_equal(s.token_bytes, wide ? 4 : 2);
        assert_int_equal(s.vocab_size, vocab);
        for (uint64_t i = 0; i < s.n_tokens; i += 997)
            assert_int_equal(llm_shard_token(&s, i), ids[i % 1000]);
        llm_shard_close(&s);
    }
    /* truncated and foreign files are refused */
    assert_int_equal(truncate(path, 32 + 4 * 1000 + 2), 0);
    struct llm_shard s;
    assert_int_equal(llm_shard_open(&s, path), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "truncated"));
    write_file(path, "this is not a shard, just some text....");
    assert_int_equal(llm_shard_open(&s, path), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "bad magic"));
    /* an aborted writer leaves nothing */
    char *p2 = test_path(dir, "b.bin");
    struct llm_shard_writer w;
    assert_int_equal(llm_shard_writer_open(&w, p2, 10), 0);
    llm_shard_writer_abort(&w);
    assert_int_not_equal(access(p2, F_OK), 0);
    free(p2);
    free(path);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_matches_oracle_english),
        cmocka_unit_test(test_train_matches_oracle_ties),
        cmocka_unit_test(test_train_specials_never_merge),
        cmocka_unit_test(test_train_threads_agree),
        cmocka_unit_test(test_encode_matches_oracle),
        cmocka_unit_test(test_roundtrip_random_bytes),
        cmocka_unit_test(test_special_matching),
        cmocka_unit_test(test_cuts_keep_ids),
        cmocka_unit_test(test_save_load_roundtrip),
        cmocka_unit_test(test_bad_tokenizer_files),
        cmocka_unit_test(test_nfc_normalizer),
        cmocka_unit_test(test_shards),
    };
    return cmocka_run_group_tests_name("tok", tests, NULL, NULL);
}
