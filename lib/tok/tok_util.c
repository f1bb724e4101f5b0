/* tok_util.c: hash maps, GPT-2's byte-level alphabet and the PCRE2
 * pre-tokenizer shared by the tokenizer's encoder, loader and trainer. */
#include "tok_impl.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- pair map ---- */
int tok_pairmap_init(struct tok_pairmap *m, size_t expect)
{
    memset(m, 0, sizeof(*m));
    size_t cap = 16;
    while (cap < expect * 2)
        cap *= 2;
    m->keys = malloc(cap * sizeof(*m->keys));
    m->v1 = malloc(cap * sizeof(*m->v1));
    m->v2 = malloc(cap * sizeof(*m->v2));
    if (!m->keys || !m->v1 || !m->v2) {
        tok_pairmap_release(m);
        return llm_err(LLM_ENOMEM, "out of memory for a merge table of %zu entries", expect);
    }
    memset(m->keys, 0xff, cap * sizeof(*m->keys));
    m->cap = cap;
    return 0;
}

void tok_pairmap_release(struct tok_pairmap *m)
{
    free(m->keys), free(m->v1), free(m->v2);
    memset(m, 0, sizeof(*m));
}

static int pairmap_grow(struct tok_pairmap *m)
{
    struct tok_pairmap n;
    int rc = tok_pairmap_init(&n, m->cap);
    if (rc)
        return rc;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] != UINT64_MAX)
            tok_pairmap_put(&n, m->keys[i], m->v1[i], m->v2[i]);
    tok_pairmap_release(m);
    *m = n;
    return 0;
}

int tok_pairmap_put(struct tok_pairmap *m, uint64_t key, uint32_t v1, uint32_t v2)
{
    if ((m->n + 1) * 2 > m->cap) {
        int rc = pairmap_grow(m);
        if (rc)
            return rc;
    }
    size_t mask = m->cap - 1, i = tok_mix(key) & mask;
    while (m->keys[i] != UINT64_MAX && m->keys[i] != key)
        i = (i + 1) & mask;
    if (m->keys[i] == UINT64_MAX)
        m->n++;
    m->keys[i] = key, m->v1[i] = v1, m->v2[i] = v2;
    return 0;
}

/* ---- string map ---- */
int tok_strmap_init(struct tok_strmap *m)
{
    memset(m, 0, sizeof(*m));
    m->cap = 1024;
    m->slot = calloc(m->cap, sizeof(*m->slot));
    if (!m->slot)
        return llm_err(LLM_ENOMEM, "out of memory for a vocabulary table");
    return 0;
}

void tok_strmap_release(struct tok_strmap *m)
{
    free(m->slot), free(m->ent), free(m->blob);
    memset(m, 0, sizeof(*m));
}

void tok_strmap_clear(struct tok_strmap *m)
{
    memset(m->slot, 0, m->cap * sizeof(*m->slot));
    m->n = 0;
    m->blob_n = 0;
}

static inline int key_equal(const char *a, const char *b, size_t n)
{
    /* keys are short: a byte loop beats a memcmp call */
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* The slot of s: the one holding it, or the empty one where it would go. */
static size_t strmap_find(const struct tok_strmap *m, const char *s, size_t n, uint64_t h)
{
    size_t mask = m->cap - 1, i = h & mask;
    uint32_t h32 = (uint32_t)(h >> 32);
    for (;;) {
        const struct tok_slot *sl = &m->slot[i];
        if (!sl->idx)
            return i;
        if (sl->h32 == h32) {
            const struct tok_strent *x = &m->ent[sl->idx - 1];
            if (x->len == n && key_equal(m->blob + x->off, s, n))
                return i;
        }
        i = (i + 1) & mask;
    }
}

int tok_strmap_get(const struct tok_strmap *m, const char *s, size_t n, uint32_t *val)
{
    uint32_t e = m->slot[strmap_find(m, s, n, tok_hash(s, n))].idx;
    if (!e)
        return 0;
    *val = m->ent[e - 1].val;
    return 1;
}

static int strmap_insert(struct tok_strmap *m, size_t i, const char *s, size_t n, uint64_t h,
                         uint32_t val)
{
    if (m->n == m->ecap) {
        size_t ncap = m->ecap ? m->ecap * 2 : 1024;
        void *p = realloc(m->ent, ncap * sizeof(*m->ent));
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory for a vocabulary table");
        m->ent = p, m->ecap = ncap;
    }
    if (m->blob_n + n > m->blob_cap) {
        size_t ncap = m->blob_cap ? m->blob_cap * 2 : 65536;
        while (ncap < m->blob_n + n)
            ncap *= 2;
        void *p = realloc(m->blob, ncap);
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory for a vocabulary table");
        m->blob = p, m->blob_cap = ncap;
    }
    memcpy(m->blob + m->blob_n, s, n);
    m->ent[m->n] = (struct tok_strent){m->blob_n, (uint32_t)n, val, h};
    m->blob_n += n;
    m->slot[i] = (struct tok_slot){(uint32_t)++m->n, (uint32_t)(h >> 32)};
    if (m->n * 2 > m->cap) { /* rehash into twice the slots */
        size_t ncap = m->cap * 2;
        struct tok_slot *ns = calloc(ncap, sizeof(*ns));
        if (!ns)
            return llm_err(LLM_ENOMEM, "out of memory for a vocabulary table");
        free(m->slot);
        m->slot = ns, m->cap = ncap;
        for (size_t e = 0; e < m->n; e++) {
            size_t j = m->ent[e].hash & (ncap - 1);
            while (ns[j].idx)
                j = (j + 1) & (ncap - 1);
            ns[j] = (struct tok_slot){(uint32_t)e + 1, (uint32_t)(m->ent[e].hash >> 32)};
        }
    }
    return 0;
}

int tok_strmap_put(struct tok_strmap *m, const char *s, size_t n, uint32_t val)
{
    uint64_t h = tok_hash(s, n);
    size_t i = strmap_find(m, s, n, h);
    if (m->slot[i].idx) {
        m->ent[m->slot[i].idx - 1].val = val;
        return 0;
    }
    return strmap_insert(m, i, s, n, h, val);
}

int tok_strmap_add(struct tok_strmap *m, const char *s, size_t n, uint32_t delta)
{
    uint64_t h = tok_hash(s, n);
    size_t i = strmap_find(m, s, n, h);
    if (m->slot[i].idx) {
        m->ent[m->slot[i].idx - 1].val += delta;
        return 0;
    }
    return strmap_insert(m, i, s, n, h, delta);
}

int tok_strmap_intern(struct tok_strmap *m, const char *s, size_t n, uint32_t *val, int *added)
{
    uint64_t h = tok_hash(s, n);
    size_t i = strmap_find(m, s, n, h);
    if (m->slot[i].idx) {
        *val = m->ent[m->slot[i].idx - 1].val;
        *added = 0;
        return 0;
    }
    if (m->n >= UINT32_MAX - 1)
        return llm_err(LLM_EINVAL, "more than 4 billion distinct strings");
    *val = (uint32_t)m->n;
    *added = 1;
    return strmap_insert(m, i, s, n, h, *val);
}

/* ---- byte-level alphabet ---- */
void tok_bytelevel_tables(uint16_t byte2cp[256], int16_t cp2byte[512])
{
    int extra = 0;
    for (int i = 0; i < 512; i++)
        cp2byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        byte2cp[b] = (uint16_t)(printable ? b : 256 + extra++);
        cp2byte[byte2cp[b]] = (int16_t)b;
    }
}

static uint16_t b2c[256];
static int16_t c2b[512];
static int tables_ready;

static void ensure_tables(void)
{
    /* Idempotent and deterministic, so a benign race between threads is harmless;
     * callers reach this first from the single-threaded loader anyway. */
    if (!tables_ready) {
        tok_bytelevel_tables(b2c, c2b);
        tables_ready = 1;
    }
}

size_t tok_bytes_to_vocab(const char *s, size_t n, char *out)
{
    ensure_tables();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned cp = b2c[(unsigned char)s[i]];
        if (cp < 0x80)
            out[k++] = (char)cp;
        else {
            out[k++] = (char)(0xc0 | (cp >> 6));
            out[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    out[k] = '\0';
    return k;
}

long tok_vocab_to_bytes(const char *s, size_t n, char *out)
{
    ensure_tables();
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = (unsigned char)s[i], cp;
        if (c < 0x80)
            cp = c, i++;
        else if ((c & 0xe0) == 0xc0 && i + 1 < n && ((unsigned char)s[i + 1] & 0xc0) == 0x80)
            cp = ((c & 0x1f) << 6) | ((unsigned char)s[i + 1] & 0x3f), i += 2;
        else
            return -1;
        if (cp >= 512 || c2b[cp] < 0)
            return -1;
        out[k++] = (char)c2b[cp];
    }
    return (long)k;
}

/* ---- regex pre-tokenizer ---- */
int tok_regex_compile(struct tok_regex *re, const char *pattern)
{
    memset(re, 0, sizeof(*re));
    int errcode;
    PCRE2_SIZE erroff;
    /* UCP: \s, \d, \w follow Unicode. MATCH_INVALID_UTF: invalid UTF-8 in the
     * text is never matched (it becomes a piece of its own) instead of being
     * undefined behaviour. */
    re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &errcode, &erroff,
                             NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        return llm_err(LLM_EINVAL, "bad pre-tokenizer pattern at offset %zu: %s", (size_t)erroff,
                       (char *)msg);
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

void tok_regex_release(struct tok_regex *re)
{
    pcre2_code_free(re->code);
    memset(re, 0, sizeof(*re));
}

int tok_matcher_init(struct tok_matcher *m, const struct tok_regex *re)
{
    memset(m, 0, sizeof(*m));
    if (!re || !re->code)
        return 0;
    m->md = pcre2_match_data_create_from_pattern(re->code, NULL);
    m->mctx = pcre2_match_context_create(NULL);
    /* Long whitespace runs with (?!\S) backtrack deeply: give JIT room. */
    m->stack = re->jit ? pcre2_jit_stack_create(32 << 10, 64 << 20, NULL) : NULL;
    if (!m->md || !m->mctx || (re->jit && !m->stack)) {
        tok_matcher_release(m);
        return llm_err(LLM_ENOMEM, "out of memory for regex scratch");
    }
    if (m->stack)
        pcre2_jit_stack_assign(m->mctx, NULL, m->stack);
    return 0;
}

void tok_matcher_release(struct tok_matcher *m)
{
    pcre2_match_data_free(m->md);
    pcre2_match_context_free(m->mctx);
    pcre2_jit_stack_free(m->stack);
    memset(m, 0, sizeof(*m));
}

int tok_pretokenize(const struct tok_regex *re, struct tok_matcher *m, const char *s, size_t n,
                    tok_piece_fn fn, void *ctx)
{
    if (!n)
        return 0;
    if (!re || !re->code)
        return fn(ctx, s, n);
    size_t pos = 0;
    int rc;
    while (pos < n) {
        int r = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)s, n, pos, 0, m->md, m->mctx)
                        : pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, 0, m->md, m->mctx);
        if (r == PCRE2_ERROR_NOMATCH)
            break;
        if (r < 0 && re->jit) /* JIT stack exhausted on a pathological run: interpret */
            r = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, 0, m->md, m->mctx);
        if (r == PCRE2_ERROR_NOMATCH)
            break;
        if (r < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(r, msg, sizeof(msg));
            return llm_err(LLM_EINVAL, "pre-tokenizer regex failed at byte %zu: %s", pos,
                           (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
        size_t a = ov[0], b = ov[1];
        if (a > pos && (rc = fn(ctx, s + pos, a - pos)))
            return rc; /* bytes the pattern skipped */
        if (b == a) { /* empty match: step over one byte so we always advance */
            if (b >= n)
                break;
            b = a + 1;
            while (b < n && ((unsigned char)s[b] & 0xc0) == 0x80)
                b++;
        }
        if ((rc = fn(ctx, s + a, b - a)))
            return rc;
        pos = b;
    }
    if (pos < n && (rc = fn(ctx, s + pos, n - pos)))
        return rc;
    return 0;
}

/* ---- safe cut points ---- */
static int printable(unsigned char c) { return c > 0x20 && c < 0x7f; }

size_t tok_cut(const struct tok_cuts *c, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t k = n; k-- > 2;) {
        if (c->lf && s[k - 1] == '\n' && printable(s[k - 2]) && printable(s[k]))
            return k;
        if (c->crlf && k >= 3 && s[k - 1] == '\n' && s[k - 2] == '\r' && printable(s[k - 3]) &&
            printable(s[k]))
            return k;
        if (c->cr_lf && k + 1 < n && s[k - 1] == '\r' && s[k] == '\n' && printable(s[k - 2]) &&
            printable(s[k + 1]))
            return k;
    }
    return 0;
}

struct probe {
    size_t ends[64];
    int n;
    size_t base;
};

static int probe_piece(void *ctx, const char *s, size_t n)
{
    struct probe *p = ctx;
    (void)s;
    if (p->n < 64)
        p->ends[p->n++] = p->base + n;
    p->base += n;
    return 0;
}

/* Does cutting "X + left | right + Y" give the pieces of the whole, for a
 * spread of X and Y (letters, digits, punctuation, contractions)? */
static int rule_holds(const struct tok_regex *re, struct tok_matcher *m, const char *left,
                      const char *right)
{
    static const char *const pre[] = {"a", "Z", ".", "1", ")", "ab", "a.", "1a", "$", "x:"};
    static const char *const post[] = {"b", "B", ".", "1", "(", "'", "'s", "bc", "#x", "\"", "12"};
    for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++)
        for (size_t j = 0; j < sizeof(post) / sizeof(post[0]); j++) {
            char a[32], b[32], whole[64];
            snprintf(a, sizeof(a), "%s%s", pre[i], left);
            snprintf(b, sizeof(b), "%s%s", right, post[j]);
            snprintf(whole, sizeof(whole), "%s%s", a, b);
            struct probe pw = {{0}, 0, 0}, pc = {{0}, 0, 0};
            if (tok_pretokenize(re, m, whole, strlen(whole), probe_piece, &pw) ||
                tok_pretokenize(re, m, a, strlen(a), probe_piece, &pc))
                return 0;
            pc.base = strlen(a);
            if (tok_pretokenize(re, m, b, strlen(b), probe_piece, &pc))
                return 0;
            if (pw.n != pc.n || memcmp(pw.ends, pc.ends, (size_t)pw.n * sizeof(size_t)))
                return 0;
        }
    return 1;
}

int tok_cuts_probe(const struct tok_regex *re, struct tok_cuts *c)
{
    memset(c, 0, sizeof(*c));
    if (!re || !re->code)
        return 0; /* no pre-tokenizer: the text is one piece and cannot be cut */
    struct tok_matcher m;
    int rc = tok_matcher_init(&m, re);
    if (rc)
        return rc;
    c->lf = (uint8_t)rule_holds(re, &m, "\n", "");
    c->crlf = (uint8_t)rule_holds(re, &m, "\r\n", "");
    c->cr_lf = (uint8_t)rule_holds(re, &m, "\r", "\n");
    tok_matcher_release(&m);
    return 0;
}
