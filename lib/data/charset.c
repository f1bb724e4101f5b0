/* charset.c: charset labels and the UTF-8 / windows-1252 decoders of charset.h. */
#include "charset.h"

#include <ctype.h>
#include <string.h>

#include "core/str.h"

/* windows-1252 bytes 0x80..0x9F (WHATWG index-windows-1252); the five holes map
 * to the C1 control of the same value, as the standard says. */
static const uint16_t cp1252_high[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
    0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

static const char *const utf8_labels[] = {
    "utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8",
};
static const char *const cp1252_labels[] = {
    "ansi_x3.4-1968", "ascii", "cp1252", "cp819", "csisolatin1", "ibm819", "iso-8859-1",
    "iso-ir-100", "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "l1", "latin1",
    "latin-1", "us-ascii", "windows-1252", "x-cp1252",
};

static int label_in(const char *s, size_t n, const char *const *set, size_t k)
{
    for (size_t i = 0; i < k; i++)
        if (strlen(set[i]) == n && !strncasecmp(s, set[i], n))
            return 1;
    return 0;
}

enum llm_charset llm_charset_from_label(const char *s, size_t n)
{
    while (n && (isspace((unsigned char)*s) || *s == '"' || *s == '\''))
        s++, n--;
    while (n && (isspace((unsigned char)s[n - 1]) || s[n - 1] == '"' || s[n - 1] == '\''))
        n--;
    if (!n)
        return LLM_CHARSET_AUTO;
    if (label_in(s, n, utf8_labels, sizeof(utf8_labels) / sizeof(*utf8_labels)))
        return LLM_CHARSET_UTF8;
    if (label_in(s, n, cp1252_labels, sizeof(cp1252_labels) / sizeof(*cp1252_labels)))
        return LLM_CHARSET_CP1252;
    return LLM_CHARSET_UNSUPPORTED;
}

enum llm_charset llm_charset_from_content_type(const char *s, size_t n)
{
    for (size_t i = 0; i + 7 <= n; i++) {
        if (strncasecmp(s + i, "charset", 7))
            continue;
        size_t j = i + 7;
        while (j < n && isspace((unsigned char)s[j]))
            j++;
        if (j >= n || s[j] != '=')
            continue;
        j++;
        while (j < n && (isspace((unsigned char)s[j]) || s[j] == '"' || s[j] == '\''))
            j++;
        size_t k = j;
        while (k < n && s[k] != '"' && s[k] != '\'' && s[k] != ';' && s[k] != '>' &&
               !isspace((unsigned char)s[k]))
            k++;
        if (k > j)
            return llm_charset_from_label(s + j, k - j);
    }
    return LLM_CHARSET_AUTO;
}

uint32_t llm_charset_cp1252(unsigned char c)
{
    return c >= 0x80 && c < 0xA0 ? cp1252_high[c - 0x80] : c;
}

size_t llm_charset_put_utf8(char *p, uint32_t cp)
{
    unsigned char *u = (unsigned char *)p;
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        cp = 0xFFFD;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (unsigned char)(0xF0 | cp >> 18);
    u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The length of the maximal invalid subpart at s[0] (s[0] starts no valid
 * sequence): the lead byte alone when its second byte is out of range, else the
 * truncated valid prefix (Unicode 15, section 3.9, "U+FFFD Substitution of
 * Maximal Subparts", which the WHATWG UTF-8 decoder follows). */
static size_t bad_subpart(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF; /* the second byte's range */
    size_t len;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 1;
    if (n < 2 || s[1] < lo || s[1] > hi)
        return 1;
    size_t k = 2;
    while (k < len && k < n && (s[k] & 0xC0) == 0x80)
        k++;
    return k;
}

/* Copies the valid stretches (found by llm_utf8_valid) and writes one U+FFFD
 * per maximal invalid subpart between them. */
static size_t utf8_clean(const unsigned char *s, size_t n, char *dst, size_t *replaced)
{
    size_t i = 0, w = 0, bad = 0, at;
    while (i < n) {
        if (llm_utf8_valid((const char *)s + i, n - i, &at))
            at = n - i;
        memcpy(dst + w, s + i, at);
        w += at, i += at;
        if (i < n) {
            w += llm_charset_put_utf8(dst + w, 0xFFFD);
            i += bad_subpart(s + i, n - i);
            bad++;
        }
    }
    if (replaced)
        *replaced = bad;
    return w;
}

size_t llm_charset_to_utf8(const char *src, size_t n, enum llm_charset cs, char *dst,
                           size_t *replaced)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t w = 0;
    if (cs == LLM_CHARSET_CP1252) {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = s[i];
            if (c < 0x80)
                dst[w++] = (char)c;
            else
                w += llm_charset_put_utf8(dst + w, llm_charset_cp1252(c));
        }
        if (replaced)
            *replaced = 0;
    } else {
        w = utf8_clean(s, n, dst, replaced);
    }
    dst[w] = '\0';
    return w;
}
