/* str.c: edit distance and closest-match hints (see str.h). */
#include "str.h"
#include "err.h"

#include <stdlib.h>
#include <string.h>

size_t llm_str_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 256 || m > 256) /* hints are for short names; avoid big tables */
        return n > m ? n : m;
    size_t row[257];
    for (size_t j = 0; j <= m; j++)
        row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[m];
}

const char *llm_str_closest(const char *s, const char *const *cands, size_t n)
{
    size_t limit = strlen(s) / 3;
    if (limit < 2)
        limit = 2;
    const char *best = NULL;
    size_t bestd = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (!cands[i])
            continue;
        size_t d = llm_str_distance(s, cands[i]);
        if (d < bestd)
            bestd = d, best = cands[i];
    }
    return bestd <= limit ? best : NULL;
}

char *llm_strdup(const char *s)
{
    char *p = llm_malloc(strlen(s) + 1, "a string");
    if (p)
        strcpy(p, s);
    return p;
}

int llm_utf8_valid(const char *str, size_t n, size_t *bad)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            if (c == 0xed)
                hi = 0x9f; /* surrogates U+D800..DFFF */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else
            goto fail;
        if (i + len > n || s[i + 1] < lo || s[i + 1] > hi)
            goto fail;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                goto fail;
        i += len;
    }
    return 1;
fail:
    if (bad)
        *bad = i;
    return 0;
}
