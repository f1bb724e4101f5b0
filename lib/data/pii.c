/* pii.c: the PII scanners of pii.h. Matches are found left to right; the
 * text between them is copied once, so a document without PII costs one scan
 * and one copy. */
#include "pii.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

static const char *const masks[LLM_PII_COUNT] = {
    "|||EMAIL_ADDRESS|||", "|||PHONE_NUMBER|||", "|||IP_ADDRESS|||",
};

static inline int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline int is_alpha(unsigned char c)
{
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static inline int is_alnum(unsigned char c)
{
    return is_digit(c) || is_alpha(c);
}

static inline int is_local(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

/* An email around the '@' at s[at]; the local part starts no earlier than
 * lo. Sets [*a, *b) and returns 1 on a match. */
static int email(const char *s, size_t n, size_t lo, size_t at, size_t *a, size_t *b)
{
    size_t i = at;
    while (i > lo && is_local((unsigned char)s[i - 1]))
        i--;
    while (i < at && s[i] == '.') /* a local part does not start with a dot */
        i++;
    if (i == at)
        return 0;
    size_t j = at + 1, end = at + 1, dots = 0, label = 0, last_alpha = 1;
    while (j < n) {
        unsigned char c = (unsigned char)s[j];
        if (is_alnum(c) || c == '-') {
            label++;
            last_alpha &= is_alpha(c);
            j++;
            if (dots && label >= 2 && last_alpha)
                end = j; /* a valid address ends here at the latest so far */
        } else if (c == '.' && label && j + 1 < n && is_alnum((unsigned char)s[j + 1])) {
            dots++, label = 0, last_alpha = 1;
            j++;
        } else {
            break;
        }
    }
    if (end == at + 1)
        return 0;
    *a = i, *b = end;
    return 1;
}

/* Up to `max` digits at s[i]: their count and value. */
static size_t digits(const char *s, size_t n, size_t i, size_t max, unsigned *v)
{
    size_t k = 0;
    *v = 0;
    while (i + k < n && k < max && is_digit((unsigned char)s[i + k]))
        *v = *v * 10 + (unsigned)(s[i + k] - '0'), k++;
    return k;
}

/* Where a match ending at e is allowed to end: not glued to a letter or digit. */
static int clean_end(const char *s, size_t n, size_t e)
{
    return e == n || (!is_alnum((unsigned char)s[e]) && s[e] != '@');
}

static int ipv4(const char *s, size_t n, size_t i, size_t *e)
{
    for (int k = 0; k < 4; k++) {
        if (k) {
            if (i >= n || s[i] != '.')
                return 0;
            i++;
        }
        unsigned v;
        size_t d = digits(s, n, i, 3, &v);
        if (!d || v > 255 || (i + d < n && is_digit((unsigned char)s[i + d])))
            return 0;
        i += d;
    }
    if (!clean_end(s, n, i) || (i + 1 < n && s[i] == '.' && is_digit((unsigned char)s[i + 1])))
        return 0;
    *e = i;
    return 1;
}

static size_t sep(const char *s, size_t n, size_t i)
{
    return i < n && (s[i] == ' ' || s[i] == '-' || s[i] == '.') ? i + 1 : i;
}

/* A group of k digits at s[i]: where it ends, or 0. (Groups may run together,
 * "2831823829"; the end of the last one is checked by the caller.) */
static size_t group(const char *s, size_t n, size_t i, size_t k)
{
    unsigned v;
    return digits(s, n, i, k, &v) == k ? i + k : 0;
}

static int phone(const char *s, size_t n, size_t i, size_t *e)
{
    if (s[i] == '+') { /* country code */
        unsigned v;
        size_t d = digits(s, n, i + 1, 3, &v);
        if (!d)
            return 0;
        i = sep(s, n, i + 1 + d);
    }
    if (i < n && s[i] == '(') {
        size_t j = group(s, n, i + 1, 3);
        if (!j || j >= n || s[j] != ')')
            return 0;
        i = j + 1;
        if (i < n && s[i] == ' ')
            i++;
        else
            i = sep(s, n, i);
    } else {
        size_t j = group(s, n, i, 3);
        if (!j)
            return 0;
        i = sep(s, n, j);
    }
    size_t j = group(s, n, i, 3);
    if (!j)
        return 0;
    j = group(s, n, sep(s, n, j), 4);
    if (!j || !clean_end(s, n, j))
        return 0;
    *e = j;
    return 1;
}

static int put(char **out, size_t *cap, size_t *len, const char *p, size_t k)
{
    if (*len + k + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + k + 1)
            nc *= 2;
        char *q = realloc(*out, nc);
        if (!q)
            return llm_err(LLM_ENOMEM, "out of memory masking PII");
        *out = q, *cap = nc;
    }
    memcpy(*out + *len, p, k);
    *len += k;
    (*out)[*len] = '\0';
    return 0;
}

long llm_pii_mask(const char *s, size_t n, char **out, size_t *out_cap, size_t *out_len,
                  uint32_t counts[LLM_PII_COUNT])
{
    memset(counts, 0, LLM_PII_COUNT * sizeof(*counts));
    *out_len = 0;
    size_t copied = 0; /* s[0..copied) is in out */
    long total = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t a = i, b = 0;
        int kind = -1;
        if (c == '@') {
            if (email(s, n, copied, i, &a, &b))
                kind = LLM_PII_EMAIL;
        } else if ((is_digit(c) || c == '(' || c == '+') &&
                   (i == copied || (!is_alnum((unsigned char)s[i - 1]) && s[i - 1] != '.'))) {
            if (is_digit(c) && ipv4(s, n, i, &b))
                kind = LLM_PII_IP;
            else if (phone(s, n, i, &b))
                kind = LLM_PII_PHONE;
        }
        if (kind < 0) {
            i++;
            continue;
        }
        if (put(out, out_cap, out_len, s + copied, a - copied) ||
            put(out, out_cap, out_len, masks[kind], strlen(masks[kind])))
            return LLM_ENOMEM;
        counts[kind]++, total++;
        copied = i = b;
    }
    if (put(out, out_cap, out_len, s + copied, n - copied))
        return LLM_ENOMEM;
    return total;
}
