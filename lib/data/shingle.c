/* shingle.c: the 64-bit hash, the normalized word stream and the word n-gram
 * shingles of shingle.h. ASCII takes a fast path; other characters go
 * through utf8proc (decomposition, case folding, categories). */
#include "shingle.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/err.h"

/* The two multipliers of MurmurHash3_x64_128's block mix (Appleby 2011). */
#define C1 0x87c37b91114253d5ULL
#define C2 0x4cf5ad432745937fULL

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* One 8-byte block into the state, as one lane of MurmurHash3_x64_128:
 * k = rotl(k * C1, 31) * C2; h = rotl(h ^ k, 27) * 5 + 0x52dce729. */
static inline uint64_t absorb(uint64_t h, uint64_t k)
{
    k *= C1;
    k = rotl64(k, 31);
    k *= C2;
    h ^= k;
    return rotl64(h, 27) * 5 + 0x52dce729;
}

uint64_t llm_hash64(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = seed, k;
    size_t len = n;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&k, s, 8);
        h = absorb(h, k);
    }
    if (n) { /* the tail, zero-padded; the length below tells "a" from "a\0" */
        k = 0;
        memcpy(&k, s, n);
        h = absorb(h, k);
    }
    return llm_hash_mix64(h ^ (uint64_t)len);
}

/* The state of llm_hash64 before its final mix, for a word followed by at
 * least 7 zero bytes (the word buffer keeps them): whole 8-byte loads, no
 * tail copy. Words of up to 8 bytes (most) map one to one to values; the
 * callers mix what they build from them. */
static inline uint64_t word_state(const char *s, size_t n, uint64_t seed)
{
    uint64_t h = seed, k;
    for (size_t i = 0; i < n; i += 8) {
        memcpy(&k, s + i, 8);
        h = absorb(h, k);
    }
    return h ^ (uint64_t)n;
}

/* ---- normalized words ---- */

void llm_words_init(struct llm_words *w)
{
    memset(w, 0, sizeof(*w));
}

void llm_words_release(struct llm_words *w)
{
    free(w->word);
    memset(w, 0, sizeof(*w));
}

void llm_words_reset(struct llm_words *w, const char *text, size_t n)
{
    w->text = text, w->n = n, w->pos = 0, w->len = 0;
}

/* Room for `more` bytes plus 8 zero bytes after the word. */
static int reserve(struct llm_words *w, size_t more)
{
    if (w->len + more + 8 <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < w->len + more + 8)
        cap *= 2;
    char *p = realloc(w->word, cap);
    if (!p)
        return llm_err(LLM_ENOMEM, "out of memory normalizing text");
    w->word = p, w->cap = cap;
    return 0;
}

/* Scripts written without spaces between words (Han, kana, Thai, Lao,
 * Khmer, Myanmar): each character is a word of its own, so their shingles
 * are character n-grams instead of whole sentences. They are kept as they
 * are (decomposing で would strip its voicing mark); a separate combining
 * mark after one (Thai vowel signs, decomposed kana) is dropped. */
static int unspaced(int32_t c)
{
    return (c >= 0x0E00 && c <= 0x0EFF) || (c >= 0x1000 && c <= 0x109F) || (c >= 0x1780 && c <= 0x17FF) ||
           (c >= 0x3040 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x3134F);
}

/* Appends code point c decomposed (NFKD), case folded and without its marks. */
static int append_folded(struct llm_words *w, int32_t c)
{
    utf8proc_int32_t d[32];
    int last = 0;
    utf8proc_ssize_t k = utf8proc_decompose_char(c, d, 32, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT |
                                                 UTF8PROC_CASEFOLD | UTF8PROC_STRIPMARK, &last);
    if (k < 0 || k > 32) /* cannot happen for a valid code point; keep c as it is */
        d[0] = c, k = 1;
    if (reserve(w, 4 * (size_t)k))
        return LLM_ENOMEM;
    for (utf8proc_ssize_t i = 0; i < k; i++)
        w->len += (size_t)utf8proc_encode_char(d[i], (utf8proc_uint8_t *)w->word + w->len);
    return 0;
}

/* One character beyond ASCII at w->pos: 1 when it ends the current word
 * (w->pos then stays or moves past it as the rule says), 0 when it was
 * taken in or skipped, LLM_ENOMEM. */
static int other_char(struct llm_words *w)
{
    const unsigned char *t = (const unsigned char *)w->text;
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate(t + w->pos, (utf8proc_ssize_t)(w->n - w->pos), &cp);
    if (k <= 0) { /* invalid UTF-8 (the reader refuses it; never here): a separator */
        w->pos++;
        return w->len > 0;
    }
    if (cp == 0x2019 || cp == 0x02BC) { /* apostrophes vanish */
        w->pos += (size_t)k;
        return 0;
    }
    if (unspaced(cp)) {
        if (w->len) /* ends the word before it; the character comes next call */
            return 1;
        w->pos += (size_t)k;
        if (reserve(w, 4))
            return LLM_ENOMEM;
        w->len += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)w->word + w->len);
        return 1;
    }
    w->pos += (size_t)k;
    utf8proc_category_t cat = utf8proc_category(cp);
    int mark = cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME;
    if (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_NO && !mark)
        return append_folded(w, cp) ? LLM_ENOMEM : 0;
    /* a combining mark (an accent in decomposed text) or a format character
     * (soft hyphen, zero-width joiner) belongs to its word; the rest separates */
    if (mark || cat == UTF8PROC_CATEGORY_CF)
        return 0;
    return w->len > 0;
}

int llm_words_next(struct llm_words *w)
{
    const unsigned char *t = (const unsigned char *)w->text;
    size_t pos = w->pos, n = w->n, len = 0;
    w->len = 0;
    while (pos < n) {
        unsigned char c = t[pos];
        if (c >= 0x80) {
            w->pos = pos, w->len = len;
            int rc = other_char(w);
            if (rc < 0)
                return rc;
            pos = w->pos, len = w->len;
            if (rc)
                break;
            continue;
        }
        pos++;
        /* c | 0x20 lowercases A-Z and leaves a-z and 0-9 as they are */
        unsigned char l = c | 0x20;
        if ((l >= 'a' && l <= 'z') || (c >= '0' && c <= '9')) {
            if (len + 9 > w->cap) {
                w->len = len;
                if (reserve(w, 1))
                    return LLM_ENOMEM;
            }
            w->word[len++] = (char)l;
        } else if (c != '\'' && len) {
            break;
        }
    }
    w->pos = pos, w->len = len;
    if (len)
        memset(w->word + len, 0, 8); /* NUL-terminated, and padded for word_state */
    return len > 0;
}

/* Folds word hashes in order: the result depends on every word and on their
 * order (rotate-xor-multiply, the shape of absorb()). */
static inline uint64_t fold(uint64_t h, uint64_t x)
{
    return (rotl64(h, 23) ^ x) * C1;
}

#define WORD_SEED 0x6c6c6d2d64656475ULL /* "llm-dedu" */

int llm_text_hash(struct llm_words *w, const char *text, size_t n, uint64_t *out)
{
    uint64_t h = 0, count = 0;
    int rc;
    llm_words_reset(w, text, n);
    while ((rc = llm_words_next(w)) == 1) {
        h = fold(h, llm_hash_mix64(word_state(w->word, w->len, WORD_SEED)));
        count++;
    }
    *out = llm_hash_mix64(h ^ count);
    return rc < 0 ? rc : 0;
}

/* ---- shingles ---- */

int llm_shingler_init(struct llm_shingler *s, int ngram, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    if (ngram < 1 || ngram > LLM_SHINGLE_MAX_NGRAM)
        return llm_err(LLM_EINVAL, "shingles of %d words: expected 1..%d", ngram, LLM_SHINGLE_MAX_NGRAM);
    s->ngram = ngram, s->seed = seed;
    llm_words_init(&s->w);
    if (!(s->ring = malloc((size_t)ngram * sizeof(*s->ring))))
        return llm_err(LLM_ENOMEM, "out of memory for shingles");
    return 0;
}

void llm_shingler_release(struct llm_shingler *s)
{
    llm_words_release(&s->w);
    free(s->ring), free(s->hash);
    memset(s, 0, sizeof(*s));
}

static int push(struct llm_shingler *s, uint32_t h)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        uint32_t *p = realloc(s->hash, cap * sizeof(*p));
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory for shingles");
        s->hash = p, s->cap = cap;
    }
    s->hash[s->n++] = h;
    return 0;
}

/* Shingle hashes roll: the window of the last k word hashes w_0..w_{k-1}
 * is H = sum_j w_j B^(k-1-j) mod 2^64 (Karp & Rabin 1987, over word hashes
 * instead of characters), so sliding one word costs
 * H' = (H - w_out B^(n-1)) B + w_in, not n folds. The shingle is the top 32
 * bits of a mix of H, the window length and the seed. */
#define ROLL_B C2

static inline uint32_t shingle_of(const struct llm_shingler *s, uint64_t H, uint64_t k)
{
    return (uint32_t)(llm_hash_mix64(H ^ s->seed ^ (k * C1)) >> 32);
}

int llm_shingler_run(struct llm_shingler *s, const char *text, size_t n)
{
    const uint64_t N = (uint64_t)s->ngram;
    uint64_t count = 0, H = 0, top = 1; /* top = B^(n-1) */
    for (uint64_t i = 1; i < N; i++)
        top *= ROLL_B;
    size_t at = 0; /* ring slot of the oldest word once the window is full */
    int rc;
    s->n = 0;
    llm_words_reset(&s->w, text, n);
    while ((rc = llm_words_next(&s->w)) == 1) {
        uint64_t h = word_state(s->w.word, s->w.len, s->seed ^ WORD_SEED);
        if (count >= N) /* the oldest word leaves the window */
            H -= s->ring[at] * top;
        H = H * ROLL_B + h;
        s->ring[at] = h;
        at = at + 1 == N ? 0 : at + 1;
        if (++count >= N && (rc = push(s, shingle_of(s, H, N))))
            return rc;
    }
    if (rc < 0)
        return rc;
    if (count > 0 && count < N) /* a short text: one shingle of all its words */
        return push(s, shingle_of(s, H, count));
    return 0;
}
