/* filter.c: the Gopher quality, Gopher repetition and C4 rules of filter.h.
 * One pass splits the text into words (whitespace-separated, with a 64-bit
 * hash each) and lines; the rules then work on those arrays, n-grams being
 * hashes of word hashes counted in open-addressing tables that live in the
 * per-thread scratch, so a document costs no allocation once warm.
 *
 * Measures, where the papers leave room (docs/filter.md has the table):
 *   words      maximal runs of non-whitespace bytes;
 *   lines      split on '\n', trimmed, blank ones ignored; paragraphs are
 *              runs of lines separated by blank lines;
 *   characters in the line and paragraph rules: bytes of the text; in the
 *              n-gram rules: bytes of the words (whitespace excluded), each
 *              word counted once however many duplicate n-grams cover it
 *              (the RedPajama-v2 reading of Gopher's "fraction of characters
 *              contained within all duplicate n-grams");
 *   top n-gram the most frequent n-gram when it occurs at least twice (ties:
 *              the longest), its characters times its count;
 *   equality   by 64-bit hashes (a collision is ~2^-64 per pair). */
#include "filter.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/err.h"
#include "shingle.h"

struct word {
    uint32_t off, len;
    uint64_t h;
};

struct span {
    uint32_t off, len;
    uint64_t h; /* hash of the line (set by the repetition rules) */
};

struct slot {
    uint64_t key;
    uint32_t count;
    uint32_t gen;   /* the slot is in use when gen is the table's current one */
};

struct llm_filter_scratch {
    struct word *w;
    size_t nw, w_cap;
    struct span *lines;
    size_t nl, l_cap;
    uint64_t *gh;        /* n-gram hashes by start position */
    uint32_t *gchars;    /* their characters */
    uint32_t *cand;      /* positions whose (n-1)-gram repeats, ascending */
    uint32_t *cslot;     /* the table slot of each candidate's n-gram */
    size_t g_cap;
    struct slot *tab;
    size_t tab_alloc;    /* slots allocated */
    size_t tab_cap;      /* slots in use: a power of two */
    uint32_t gen;        /* current generation: resets cost no clearing */
    char *out;           /* C4 output text */
    size_t out_cap;
};

static const char *const reason_names[LLM_FR_COUNT] = {
    "kept",
    "gopher_dup_line_frac", "gopher_dup_para_frac", "gopher_dup_line_chars",
    "gopher_dup_para_chars", "gopher_top_2gram", "gopher_top_3gram", "gopher_top_4gram",
    "gopher_dup_5gram", "gopher_dup_6gram", "gopher_dup_7gram", "gopher_dup_8gram",
    "gopher_dup_9gram", "gopher_dup_10gram",
    "gopher_word_count", "gopher_mean_word_length", "gopher_hash_ratio",
    "gopher_ellipsis_ratio", "gopher_bullet_lines", "gopher_ellipsis_lines",
    "gopher_alpha_words", "gopher_stop_words",
    "c4_lorem_ipsum", "c4_curly_bracket", "c4_too_few_sentences",
    "quality_below_threshold",
};

const char *llm_filter_reason_name(int reason)
{
    return reason >= 0 && reason < LLM_FR_COUNT ? reason_names[reason] : "unknown";
}

void llm_filter_defaults(struct llm_filter_opts *o)
{
    static const struct llm_filter_opts d = {
        .rules = LLM_RULES_GOPHER | LLM_RULES_GOPHER_REP | LLM_RULES_C4,
        .min_words = 50, .max_words = 100000,
        .min_mean_word_len = 3, .max_mean_word_len = 10,
        .max_hash_ratio = 0.1, .max_ellipsis_ratio = 0.1,
        .max_bullet_lines = 0.9, .max_ellipsis_lines = 0.3,
        .min_alpha_words = 0.8, .min_stop_words = 2,
        .max_dup_line_frac = 0.30, .max_dup_para_frac = 0.30,
        .max_dup_line_chars = 0.20, .max_dup_para_chars = 0.20,
        .max_top_ngram = {0.20, 0.18, 0.16},
        .max_dup_ngram = {0.15, 0.14, 0.13, 0.12, 0.11, 0.10},
        .c4_min_words = 5, .c4_min_sentences = 3,
    };
    *o = d;
}

int llm_filter_parse_rules(const char *s, unsigned *rules)
{
    *rules = 0;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t k = e ? (size_t)(e - s) : strlen(s);
        if (k == 6 && !strncmp(s, "gopher", 6))
            *rules |= LLM_RULES_GOPHER;
        else if (k == 10 && !strncmp(s, "gopher-rep", 10))
            *rules |= LLM_RULES_GOPHER_REP;
        else if (k == 2 && !strncmp(s, "c4", 2))
            *rules |= LLM_RULES_C4;
        else if (k == 3 && !strncmp(s, "all", 3))
            *rules |= LLM_RULES_GOPHER | LLM_RULES_GOPHER_REP | LLM_RULES_C4;
        else if (!(k == 4 && !strncmp(s, "none", 4)))
            return llm_err(LLM_EUSAGE, "--rules: unknown rule '%.*s' (expected gopher, "
                           "gopher-rep, c4, all or none)", (int)k, s);
        s += k + (e ? 1 : 0);
    }
    return 0;
}

int llm_filter_scratch_new(struct llm_filter_scratch **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : llm_err(LLM_ENOMEM, "out of memory for the filter");
}

void llm_filter_scratch_free(struct llm_filter_scratch *s)
{
    if (!s)
        return;
    free(s->w), free(s->lines), free(s->gh), free(s->gchars), free(s->cand), free(s->cslot);
    free(s->tab), free(s->out);
    free(s);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return llm_err(LLM_ENOMEM, "out of memory filtering a document");
    *p = q, *cap = nc;
    return 0;
}

/* ---- hashing (llm_hash64 and llm_hash_mix64 of shingle.h, shared with dedup) ---- */

/* A word's key: its bytes themselves when it has 8 or fewer (a masked load:
 * distinct words get distinct keys), else the bytes folded by multiplication.
 * Not mixed: every table key is an n-gram, which hash_push mixes. t[0..n) is
 * the whole text, so a full 8-byte load is safe where it fits. */
static inline uint64_t word_key(const char *t, size_t n, size_t a, size_t k)
{
    uint64_t v = 0;
    if (k <= 8) {
        if (a + 8 <= n) {
            memcpy(&v, t + a, 8);
            v &= k == 8 ? ~0ull : (1ull << (8 * k)) - 1;
        } else {
            memcpy(&v, t + a, k);
        }
        return v;
    }
    return llm_hash64(t + a, k, 0); /* equal to a short word's key with odds 2^-64 */
}

/* An n-gram's hash extended by one more word (order matters). */
static inline uint64_t hash_push(uint64_t g, uint64_t w)
{
    return llm_hash_mix64(g * 0x9e3779b97f4a7c15ull + w);
}

/* ---- splitting ---- */

static const unsigned char ws_table[256] = {
    [' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, ['\f'] = 1, ['\v'] = 1,
};

static inline int is_ws(unsigned char c)
{
    return ws_table[c];
}

static int split(struct llm_filter_scratch *s, const char *t, size_t n)
{
    s->nw = s->nl = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && is_ws((unsigned char)t[i]))
            i++;
        if (i == n)
            break;
        size_t a = i;
        while (i < n && !is_ws((unsigned char)t[i]))
            i++;
        if (s->nw == s->w_cap && grow((void **)&s->w, &s->w_cap, s->nw + 1, sizeof(*s->w)))
            return LLM_ENOMEM;
        s->w[s->nw++] = (struct word){(uint32_t)a, (uint32_t)(i - a), word_key(t, n, a, i - a)};
    }
    for (i = 0; i <= n;) {
        const char *nl = i < n ? memchr(t + i, '\n', n - i) : NULL;
        size_t e = nl ? (size_t)(nl - t) : n, a = i, b = e;
        while (a < b && is_ws((unsigned char)t[a]))
            a++;
        while (b > a && is_ws((unsigned char)t[b - 1]))
            b--;
        if (s->nl == s->l_cap && grow((void **)&s->lines, &s->l_cap, s->nl + 1, sizeof(*s->lines)))
            return LLM_ENOMEM;
        s->lines[s->nl++] = (struct span){(uint32_t)a, (uint32_t)(b - a), 0}; /* blank: len 0 */
        i = e + 1;
    }
    return 0;
}

/* ---- counting tables ---- */

/* Makes an empty table for `entries` keys (at most half full). Slots of
 * older generations count as empty, so nothing is cleared between uses. */
static int table_reset(struct llm_filter_scratch *s, size_t entries)
{
    size_t need = 16;
    while (need < 2 * entries)
        need *= 2;
    if (need > s->tab_alloc) {
        free(s->tab);
        s->tab_alloc = 0;
        if (!(s->tab = calloc(need, sizeof(*s->tab))))
            return llm_err(LLM_ENOMEM, "out of memory filtering a document");
        s->tab_alloc = need;
    }
    if (++s->gen == 0) { /* wrapped: clear once every 2^32 uses */
        memset(s->tab, 0, s->tab_alloc * sizeof(*s->tab));
        s->gen = 1;
    }
    s->tab_cap = need;
    return 0;
}

/* Counts key (linear probing); returns its slot. */
static inline uint32_t table_add(struct llm_filter_scratch *s, uint64_t key)
{
    size_t mask = s->tab_cap - 1, i = (size_t)key & mask;
    uint32_t gen = s->gen;
    while (s->tab[i].gen == gen && s->tab[i].key != key)
        i = (i + 1) & mask;
    if (s->tab[i].gen != gen)
        s->tab[i] = (struct slot){key, 0, gen};
    s->tab[i].count++;
    return (uint32_t)i;
}

/* Records the measured value and the threshold it failed; returns reason. */
static int fail(struct llm_filter_result *r, int reason, double value, double threshold)
{
    r->value = value, r->threshold = threshold;
    return reason;
}

/* ---- gopher repetition ---- */

/* Duplicate lines (para = 0) or paragraphs (1): the fraction of them that
 * repeat an earlier one, and the fraction of the text's bytes in those. Lines
 * are hashed from their bytes; a paragraph's hash chains its lines' hashes. */
static int dup_spans(struct llm_filter_scratch *s, const char *t, size_t n, int para,
                     double *frac, double *chars)
{
    *frac = *chars = 0;
    if (table_reset(s, s->nl))
        return LLM_ENOMEM;
    size_t total = 0, dups = 0, dup_bytes = 0;
    for (size_t i = 0; i < s->nl;) {
        struct span *l = &s->lines[i];
        if (!l->len) {
            i++;
            continue;
        }
        size_t a = l->off, b = a + l->len, j = i + 1;
        uint64_t h = para ? l->h : (l->h = llm_hash64(t + a, b - a, 0));
        if (para)
            for (; j < s->nl && s->lines[j].len; j++)
                b = s->lines[j].off + s->lines[j].len, h = hash_push(h, s->lines[j].h);
        uint32_t slot = table_add(s, h);
        total++;
        if (s->tab[slot].count > 1)
            dups++, dup_bytes += b - a;
        i = j;
    }
    if (total)
        *frac = (double)dups / (double)total;
    if (n)
        *chars = (double)dup_bytes / (double)n;
    return 0;
}

static int gram_arrays(struct llm_filter_scratch *s)
{
    size_t cap = s->g_cap;
    if (s->nw <= cap)
        return 0;
    if (grow((void **)&s->gh, &cap, s->nw, sizeof(*s->gh)))
        return LLM_ENOMEM;
    void *p1 = realloc(s->gchars, cap * sizeof(*s->gchars));
    if (p1)
        s->gchars = p1;
    void *p2 = realloc(s->cand, cap * sizeof(*s->cand));
    if (p2)
        s->cand = p2;
    void *p3 = realloc(s->cslot, cap * sizeof(*s->cslot));
    if (p3)
        s->cslot = p3;
    if (!p1 || !p2 || !p3)
        return llm_err(LLM_ENOMEM, "out of memory filtering a document");
    s->g_cap = cap;
    return 0;
}

/* The top n-gram rule for n = 2, 3, 4 in turn: gh[i] holds the (n-1)-gram at
 * i on entry and is extended in place. Returns the failing reason or 0. */
static int top_ngrams(const struct llm_filter_opts *o, struct llm_filter_scratch *s,
                      uint64_t word_bytes, struct llm_filter_result *r)
{
    for (size_t i = 0; i < s->nw; i++)
        s->gh[i] = s->w[i].h, s->gchars[i] = s->w[i].len;
    for (int n = 2; n <= 4; n++) {
        if (s->nw < (size_t)n)
            return 0;
        size_t m = s->nw - (size_t)n + 1;
        if (table_reset(s, m))
            return LLM_ENOMEM;
        uint32_t best = 1, best_chars = 0;
        for (size_t i = 0; i < m; i++) {
            s->gh[i] = hash_push(s->gh[i], s->w[i + n - 1].h);
            s->gchars[i] += s->w[i + n - 1].len;
            uint32_t c = s->tab[table_add(s, s->gh[i])].count;
            if (c > best || (c == best && best > 1 && s->gchars[i] > best_chars))
                best = c, best_chars = s->gchars[i];
        }
        double frac = best > 1 && word_bytes ? (double)best * best_chars / (double)word_bytes : 0;
        if (frac > o->max_top_ngram[n - 2])
            return fail(r, LLM_FR_TOP_2GRAM + n - 2, frac, o->max_top_ngram[n - 2]);
    }
    return 0;
}

/* Characters covered by duplicate n-grams for n = 5..10. Two equal n-grams
 * have equal leading (n-1)-grams, so past n = 5 only the positions whose
 * (n-1)-gram repeated are hashed (the candidate list, which only shrinks): the
 * counts stay exact and the work shrinks to the repeated parts of the text. */
static int dup_ngrams(const struct llm_filter_opts *o, struct llm_filter_scratch *s,
                      uint64_t word_bytes, struct llm_filter_result *r)
{
    if (s->nw < 5)
        return 0;
    size_t nc = s->nw - 4; /* n = 5: every position is a candidate */
    for (size_t i = 0; i < nc; i++)
        s->cand[i] = (uint32_t)i;
    for (int n = 5; n <= 10 && nc; n++) {
        size_t m = s->nw >= (size_t)n ? s->nw - (size_t)n + 1 : 0;
        while (nc && s->cand[nc - 1] >= m) /* no n-gram starts there */
            nc--;
        if (table_reset(s, nc))
            return LLM_ENOMEM;
        for (size_t j = 0; j < nc; j++) {
            uint32_t i = s->cand[j];
            /* gh[i] holds the (n-1)-gram at i: the 4-gram from top_ngrams, then this loop's */
            s->gh[i] = hash_push(s->gh[i], s->w[i + n - 1].h);
            s->cslot[j] = table_add(s, s->gh[i]);
        }
        size_t last = 0, keep = 0; /* words before `last` are counted already */
        uint64_t covered = 0;
        for (size_t j = 0; j < nc; j++) {
            uint32_t i = s->cand[j];
            if (s->tab[s->cslot[j]].count < 2)
                continue;
            s->cand[keep++] = i;
            for (size_t k = i > last ? i : last; k < i + (size_t)n; k++)
                covered += s->w[k].len;
            last = i + (size_t)n;
        }
        nc = keep;
        double frac = word_bytes ? (double)covered / (double)word_bytes : 0;
        if (frac > o->max_dup_ngram[n - 5])
            return fail(r, LLM_FR_DUP_5GRAM + n - 5, frac, o->max_dup_ngram[n - 5]);
    }
    return 0;
}

static int gopher_rep(const struct llm_filter_opts *o, struct llm_filter_scratch *s,
                      const char *t, size_t n, struct llm_filter_result *r)
{
    double frac, chars;
    if (dup_spans(s, t, n, 0, &frac, &chars))
        return LLM_ENOMEM;
    if (frac > o->max_dup_line_frac)
        return fail(r, LLM_FR_DUP_LINE_FRAC, frac, o->max_dup_line_frac);
    double lchars = chars;
    if (dup_spans(s, t, n, 1, &frac, &chars))
        return LLM_ENOMEM;
    if (frac > o->max_dup_para_frac)
        return fail(r, LLM_FR_DUP_PARA_FRAC, frac, o->max_dup_para_frac);
    if (lchars > o->max_dup_line_chars)
        return fail(r, LLM_FR_DUP_LINE_CHARS, lchars, o->max_dup_line_chars);
    if (chars > o->max_dup_para_chars)
        return fail(r, LLM_FR_DUP_PARA_CHARS, chars, o->max_dup_para_chars);
    if (gram_arrays(s))
        return LLM_ENOMEM;
    uint64_t word_bytes = 0;
    for (size_t i = 0; i < s->nw; i++)
        word_bytes += s->w[i].len;
    int rc = top_ngrams(o, s, word_bytes, r);
    return rc ? rc : dup_ngrams(o, s, word_bytes, r);
}

/* ---- gopher quality ---- */

/* 1 if w[0..n) has a letter of any script (Unicode category L*); for words
 * with no ASCII letter but other bytes, by decoding them. */
static int has_letter_unicode(const char *w, size_t n)
{
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)w + i,
                                              (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0)
            return 0;
        utf8proc_category_t cat = utf8proc_category(cp);
        if (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO)
            return 1;
        i += (size_t)k;
    }
    return 0;
}

static int is_stop_word(const char *w, size_t n)
{
    /* surrounding punctuation does not count: "the," and "(to" are stop words */
    while (n && !((w[0] | 0x20) >= 'a' && (w[0] | 0x20) <= 'z'))
        w++, n--;
    while (n && !((w[n - 1] | 0x20) >= 'a' && (w[n - 1] | 0x20) <= 'z'))
        n--;
    if (n < 2 || n > 4)
        return 0;
    char l[4];
    for (size_t i = 0; i < n; i++)
        l[i] = (char)(w[i] | 0x20);
    switch (n) {
    case 2: return !memcmp(l, "be", 2) || !memcmp(l, "to", 2) || !memcmp(l, "of", 2);
    case 3: return !memcmp(l, "the", 3) || !memcmp(l, "and", 3);
    default: return !memcmp(l, "that", 4) || !memcmp(l, "have", 4) || !memcmp(l, "with", 4);
    }
}

/* Occurrences of sub (k bytes, non-overlapping), found by memchr on its first byte. */
static size_t count_sub(const char *s, size_t n, const char *sub, size_t k)
{
    size_t c = 0;
    for (const char *p = s, *e = s + n; (p = memchr(p, sub[0], (size_t)(e - p)));) {
        if ((size_t)(e - p) >= k && !memcmp(p, sub, k))
            c++, p += k;
        else
            p++;
    }
    return c;
}

static int starts_bullet(const char *l, size_t n)
{
    static const char *const bullets[] = {"\xe2\x80\xa2" /* • */, "\xe2\x80\xa3" /* ‣ */,
                                          "\xe2\x97\xa6" /* ◦ */, "\xe2\x96\xaa" /* ▪ */,
                                          "\xe2\x97\x8f" /* ● */, "\xc2\xb7" /* · */};
    if (n && (l[0] == '-' || l[0] == '*'))
        return 1;
    for (size_t k = 0; k < sizeof(bullets) / sizeof(*bullets); k++) {
        size_t m = strlen(bullets[k]);
        if (n >= m && !memcmp(l, bullets[k], m))
            return 1;
    }
    return 0;
}

static int ends_ellipsis(const char *l, size_t n)
{
    return (n >= 3 && !memcmp(l + n - 3, "...", 3)) ||
           (n >= 3 && !memcmp(l + n - 3, "\xe2\x80\xa6", 3));
}

static int gopher(const struct llm_filter_opts *o, struct llm_filter_scratch *s, const char *t,
                  size_t n, struct llm_filter_result *r)
{
    double nw = (double)s->nw;
    if ((long)s->nw < o->min_words || (long)s->nw > o->max_words)
        return fail(r, LLM_FR_WORD_COUNT, nw,
                    (double)((long)s->nw < o->min_words ? o->min_words : o->max_words));
    uint64_t chars = 0;
    size_t alpha = 0, stops = 0;
    for (size_t i = 0; i < s->nw; i++) {
        const unsigned char *w = (const unsigned char *)t + s->w[i].off;
        size_t k = s->w[i].len;
        int letter = 0, high = 0;
        for (size_t j = 0; j < k; j++) {
            unsigned char c = w[j];
            chars += (c & 0xC0) != 0x80; /* code points, not bytes */
            letter |= (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
            high |= c >= 0x80;
        }
        if (!letter && high)
            letter = has_letter_unicode((const char *)w, k);
        alpha += (size_t)letter;
        stops += (size_t)is_stop_word((const char *)w, k);
    }
    double mean = chars / nw;
    if (mean < o->min_mean_word_len || mean > o->max_mean_word_len)
        return fail(r, LLM_FR_MEAN_WORD_LEN, mean,
                    mean < o->min_mean_word_len ? o->min_mean_word_len : o->max_mean_word_len);
    double hash = (double)count_sub(t, n, "#", 1) / nw;
    if (hash > o->max_hash_ratio)
        return fail(r, LLM_FR_HASH_RATIO, hash, o->max_hash_ratio);
    double ell = (double)(count_sub(t, n, "...", 3) + count_sub(t, n, "\xe2\x80\xa6", 3)) / nw;
    if (ell > o->max_ellipsis_ratio)
        return fail(r, LLM_FR_ELLIPSIS_RATIO, ell, o->max_ellipsis_ratio);
    size_t lines = 0, bullet = 0, ell_lines = 0;
    for (size_t i = 0; i < s->nl; i++) {
        const char *l = t + s->lines[i].off;
        size_t k = s->lines[i].len;
        if (!k)
            continue;
        lines++;
        bullet += (size_t)starts_bullet(l, k);
        ell_lines += (size_t)ends_ellipsis(l, k);
    }
    double fb = lines ? (double)bullet / lines : 0, fe = lines ? (double)ell_lines / lines : 0;
    if (fb > o->max_bullet_lines)
        return fail(r, LLM_FR_BULLET_LINES, fb, o->max_bullet_lines);
    if (fe > o->max_ellipsis_lines)
        return fail(r, LLM_FR_ELLIPSIS_LINES, fe, o->max_ellipsis_lines);
    double fa = alpha / nw;
    if (fa < o->min_alpha_words)
        return fail(r, LLM_FR_ALPHA_WORDS, fa, o->min_alpha_words);
    if ((long)stops < o->min_stop_words)
        return fail(r, LLM_FR_STOP_WORDS, (double)stops, (double)o->min_stop_words);
    return 0;
}

/* ---- c4 ---- */

/* Removes Wikipedia-style citation markers "[12]", "[]", "[edit]" and
 * "[citation needed]" from l[0..n) in place (the C4 reference's regex
 * \[\d*\]|\[edit\]|\[citation needed\]); returns the new length. */
static size_t strip_citations(char *l, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        if (l[i] == '[') {
            size_t j = i + 1;
            while (j < n && l[j] >= '0' && l[j] <= '9')
                j++;
            size_t skip = 0;
            if (j < n && l[j] == ']')
                skip = j + 1 - i;
            else if (n - i >= 6 && !memcmp(l + i, "[edit]", 6))
                skip = 6;
            else if (n - i >= 17 && !memcmp(l + i, "[citation needed]", 17))
                skip = 17;
            if (skip) {
                i += skip;
                continue;
            }
        }
        l[w++] = l[i++];
    }
    return w;
}

/* Sentences in a line: terminal punctuation (then any closing quotes or
 * brackets) followed by whitespace or the end, after a non-space byte. */
static size_t count_sentences(const char *l, size_t n)
{
    size_t c = 0;
    for (size_t i = 1; i < n; i++) {
        if (l[i] != '.' && l[i] != '!' && l[i] != '?')
            continue;
        if (l[i - 1] == '.' || l[i - 1] == '!' || l[i - 1] == '?' || is_ws((unsigned char)l[i - 1]))
            continue; /* "?!" and "..." end one sentence */
        size_t j = i + 1;
        while (j < n && (l[j] == '"' || l[j] == '\'' || l[j] == ')' || l[j] == ']' ||
                         l[j] == '.' || l[j] == '!' || l[j] == '?'))
            j++;
        if (j + 3 <= n && !memcmp(l + j, "\xe2\x80\x9d", 3)) /* ” */
            j += 3;
        if (j == n || is_ws((unsigned char)l[j]))
            c++;
    }
    return c;
}

static int ends_terminal(const char *l, size_t n)
{
    if (!n || (n >= 3 && !memcmp(l + n - 3, "...", 3)))
        return 0;
    char c = l[n - 1];
    return c == '.' || c == '!' || c == '?' || c == '"' ||
           (n >= 3 && !memcmp(l + n - 3, "\xe2\x80\x9d", 3)); /* ” */
}

static size_t count_words(const char *l, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += !is_ws((unsigned char)l[i]) && (i == 0 || is_ws((unsigned char)l[i - 1]));
    return c;
}

/* Case-insensitive (ASCII): does l[0..n) start with the lowercase phrase p? */
static int starts_ci(const char *l, size_t n, const char *p)
{
    size_t i = 0;
    for (; p[i]; i++)
        if (i == n || (char)(l[i] >= 'A' && l[i] <= 'Z' ? l[i] | 0x20 : l[i]) != p[i])
            return 0;
    return 1;
}

enum { C4_LOREM = 1, C4_JAVASCRIPT = 2, C4_POLICY = 4 };

/* The C4 phrases in a line, found in one pass: each position is tried only
 * against the phrases that start with its letter. Policy phrases: "terms of
 * use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
 * "use cookies". */
static unsigned c4_phrases(const char *l, size_t n)
{
    unsigned f = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = l + i;
        size_t k = n - i;
        switch (l[i] | 0x20) {
        case 'l': f |= starts_ci(p, k, "lorem ipsum") ? C4_LOREM : 0; break;
        case 'j': f |= starts_ci(p, k, "javascript") ? C4_JAVASCRIPT : 0; break;
        case 't': f |= starts_ci(p, k, "terms of use") ? C4_POLICY : 0; break;
        case 'p': f |= starts_ci(p, k, "privacy policy") ? C4_POLICY : 0; break;
        case 'c': f |= starts_ci(p, k, "cookie policy") ? C4_POLICY : 0; break;
        case 'u':
            f |= starts_ci(p, k, "uses cookies") || starts_ci(p, k, "use of cookies") ||
                 starts_ci(p, k, "use cookies") ? C4_POLICY : 0;
            break;
        }
    }
    return f;
}

static int c4(const struct llm_filter_opts *o, struct llm_filter_scratch *s, const char *t,
              size_t n, struct llm_filter_result *r)
{
    if (grow((void **)&s->out, &s->out_cap, n + 1, 1))
        return LLM_ENOMEM;
    size_t w = 0, sentences = 0, cut = 0; /* cut: lines removed or shortened */
    int blank = 0; /* a blank line since the last kept line: the paragraph break is kept */
    for (size_t i = 0; i < s->nl; i++) {
        size_t k = s->lines[i].len;
        if (!k) {
            blank = w > 0;
            continue;
        }
        char *l = s->out + w + (size_t)blank; /* built in place; kept if the line survives */
        memcpy(l, t + s->lines[i].off, k);
        size_t k0 = k;
        k = strip_citations(l, k);
        while (k && is_ws((unsigned char)l[k - 1]))
            k--;
        cut += k != k0;
        if (!ends_terminal(l, k)) {
            r->c4_lines[LLM_C4L_NO_PUNCT]++, cut++;
            continue;
        }
        if (count_words(l, k) < (size_t)o->c4_min_words) {
            r->c4_lines[LLM_C4L_FEW_WORDS]++, cut++;
            continue;
        }
        unsigned found = c4_phrases(l, k);
        if (found & C4_LOREM)
            return fail(r, LLM_FR_C4_LOREM, 1, 0);
        if (found & C4_JAVASCRIPT) {
            r->c4_lines[LLM_C4L_JAVASCRIPT]++, cut++;
            continue;
        }
        if (memchr(l, '{', k))
            return fail(r, LLM_FR_C4_CURLY, 1, 0);
        if (found & C4_POLICY) {
            r->c4_lines[LLM_C4L_POLICY]++, cut++;
            continue;
        }
        sentences += count_sentences(l, k);
        if (blank)
            s->out[w++] = '\n';
        blank = 0;
        w += k;
        s->out[w++] = '\n';
    }
    if (w)
        w--; /* no newline after the last line */
    if ((long)sentences < o->c4_min_sentences)
        return fail(r, LLM_FR_C4_SENTENCES, (double)sentences, (double)o->c4_min_sentences);
    s->out[w] = '\0';
    if (cut) { /* only whitespace differs otherwise: the text stays as it was */
        r->text = s->out;
        r->len = w;
    }
    return 0;
}

int llm_filter_text(const struct llm_filter_opts *o, struct llm_filter_scratch *s,
                    const char *text, size_t n, struct llm_filter_result *r)
{
    memset(r, 0, sizeof(*r));
    if (n >= UINT32_MAX)
        return llm_err(LLM_EINVAL, "a document of %zu bytes is too large to filter", n);
    if (!o->rules)
        return 0;
    int rc = split(s, text, n);
    if (!rc && (o->rules & LLM_RULES_GOPHER_REP))
        rc = gopher_rep(o, s, text, n, r);
    if (!rc && (o->rules & LLM_RULES_GOPHER))
        rc = gopher(o, s, text, n, r);
    if (!rc && (o->rules & LLM_RULES_C4))
        rc = c4(o, s, text, n, r);
    if (rc < 0)
        return rc;
    r->reason = rc;
    if (rc)
        r->text = NULL, r->len = 0;
    return 0;
}
