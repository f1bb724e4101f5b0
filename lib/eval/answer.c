/* answer.c: answer extraction, normalization and majority voting for the
 * generative (exact-match) evaluation. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/str.h"
#include "eval/answer.h"

int llm_extractor_init(struct llm_extractor *x, const char *mode, const char *pattern)
{
    memset(x, 0, sizeof(*x));
    if (!strcmp(mode, "last-number"))
        x->mode = LLM_EXTRACT_LAST_NUMBER;
    else if (!strcmp(mode, "hash"))
        x->mode = LLM_EXTRACT_HASH;
    else if (!strcmp(mode, "full"))
        x->mode = LLM_EXTRACT_FULL;
    else if (!strcmp(mode, "regex"))
        x->mode = LLM_EXTRACT_REGEX;
    else
        return llm_err(LLM_EUSAGE, "--extract: expected last-number, hash, full or regex, got '%s'", mode);
    if (x->mode == LLM_EXTRACT_REGEX) {
        if (!pattern)
            return llm_err(LLM_EUSAGE, "--extract regex needs --regex PATTERN");
        int code;
        PCRE2_SIZE off;
        x->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &off, NULL);
        if (!x->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(code, msg, sizeof(msg));
            return llm_err(LLM_EUSAGE, "--regex: %s at offset %zu", (char *)msg, (size_t)off);
        }
    }
    return 0;
}

void llm_extractor_release(struct llm_extractor *x)
{
    pcre2_code_free(x->re);
    x->re = NULL;
}

static char *dup_n(const char *s, size_t n, int *err)
{
    char *d = malloc(n + 1);
    if (!d) {
        *err = llm_err(LLM_ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = 0;
    llm_answer_normalize(d);
    return d;
}

static int num_char(char c) { return isdigit((unsigned char)c) || c == '.' || c == ',' || c == '$'; }

/* The spans of -?[$0-9.,]+ holding a digit: lm-evaluation-harness's
 * "(-?[$0-9.,]{2,})|(-?[0-9]+)" keeps the same numbers (a lone "." or ","
 * has no digit; a lone digit is matched by its second branch). */
static char *last_number(const char *s, int *err)
{
    const char *best = NULL;
    size_t best_n = 0;
    for (const char *p = s; *p;) {
        if (!num_char(*p) && !(*p == '-' && num_char(p[1]))) {
            p++;
            continue;
        }
        const char *q = p + (*p == '-');
        int digit = 0;
        while (num_char(*q))
            digit |= isdigit((unsigned char)*q), q++;
        if (digit)
            best = p, best_n = (size_t)(q - p);
        p = q;
    }
    return best ? dup_n(best, best_n, err) : NULL;
}

char *llm_extract(const struct llm_extractor *x, const char *text, int *err)
{
    *err = 0;
    if (x->mode == LLM_EXTRACT_LAST_NUMBER)
        return last_number(text, err);
    if (x->mode == LLM_EXTRACT_FULL)
        return dup_n(text, strlen(text), err);
    if (x->mode == LLM_EXTRACT_HASH) {
        /* "#### (\-?[0-9\.\,]+)" */
        const char *h = strstr(text, "####");
        if (!h)
            return NULL;
        const char *p = h + 4;
        while (*p == ' ')
            p++;
        const char *q = p + (*p == '-');
        while (isdigit((unsigned char)*q) || *q == '.' || *q == ',')
            q++;
        return q > p + (*p == '-') ? dup_n(p, (size_t)(q - p), err) : NULL;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(x->re, NULL);
    if (!md) {
        *err = llm_err(LLM_ENOMEM, "out of memory");
        return NULL;
    }
    char *out = NULL;
    int n = pcre2_match(x->re, (PCRE2_SPTR)text, strlen(text), 0, 0, md, NULL);
    if (n > 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        int g = n > 1 && ov[2] != PCRE2_UNSET ? 1 : 0;
        out = dup_n(text + ov[2 * g], ov[2 * g + 1] - ov[2 * g], err);
    }
    pcre2_match_data_free(md);
    return out;
}

void llm_answer_normalize(char *s)
{
    size_t w = 0;
    for (size_t i = 0; s[i]; i++)
        if (s[i] != ',' && s[i] != '$')
            s[w++] = (char)tolower((unsigned char)s[i]);
    s[w] = 0;
    while (w && isspace((unsigned char)s[w - 1]))
        s[--w] = 0;
    if (w && s[w - 1] == '.')
        s[--w] = 0;
    size_t lead = 0;
    while (isspace((unsigned char)s[lead]))
        lead++;
    memmove(s, s + lead, w - lead + 1);
}

static int as_number(const char *s, double *v)
{
    char *end;
    if (!*s)
        return 0;
    *v = strtod(s, &end);
    return !*end && isfinite(*v);
}

int llm_answer_equal(const char *a, const char *b)
{
    double x, y;
    if (as_number(a, &x) && as_number(b, &y))
        return x == y;
    return !strcmp(a, b);
}

int llm_vote_majority(const char *const *answers, int k)
{
    int best = -1, best_votes = 0;
    for (int i = 0; i < k; i++) {
        if (!answers[i])
            continue;
        int seen = 0, votes = 0;
        for (int j = 0; j < k; j++)
            if (answers[j] && llm_answer_equal(answers[i], answers[j])) {
                seen |= j < i;
                votes++;
            }
        if (!seen && votes > best_votes)
            best = i, best_votes = votes;
    }
    return best;
}
