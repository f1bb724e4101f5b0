/* ifeval_text.c: the text primitives IFEval's checks are defined on, written
 * to behave like the Python of the reference implementation: str.isspace,
 * str.strip, str.isupper/islower, `\w+` word counts, and approximations of
 * nltk's Punkt sentence splitter and word_tokenize (docs/ifeval.md). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/err.h"
#include "eval/ifeval_impl.h"

int32_t ifeval_cp(const char *s, size_t n, size_t i, size_t *len)
{
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
    if (k <= 0) { /* cannot happen on well-formed input; read one byte as U+FFFD */
        *len = 1;
        return 0xFFFD;
    }
    *len = (size_t)k;
    return c;
}

/* Python's str.isspace(): bidirectional class WS, B or S, or category Zs. */
int ifeval_isspace(int32_t c)
{
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Python's `\w` is str.isalnum() or '_': categories L* and N*. Unlike PCRE2's
 * UCP \w (10.43+), combining marks (Mn, Mc) are not word characters, so a
 * Devanagari word with vowel signs counts as several words, as in Python. */
int ifeval_isword(int32_t c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

/* Python's Lowercase property: category Ll plus Other_Lowercase (ordinal
 * indicators, modifier letters, small roman numerals, circled small letters). */
int ifeval_islower(int32_t c)
{
    if (c < 0x80)
        return c >= 'a' && c <= 'z';
    if (utf8proc_category(c) == UTF8PROC_CATEGORY_LL)
        return 1;
    return c == 0xAA || c == 0xBA || (c >= 0x2B0 && c <= 0x2B8) || (c >= 0x2C0 && c <= 0x2C1) ||
           (c >= 0x2E0 && c <= 0x2E4) || c == 0x345 || c == 0x37A || (c >= 0x1D2C && c <= 0x1D6A) ||
           c == 0x2071 || c == 0x207F || (c >= 0x2090 && c <= 0x209C) || (c >= 0x2170 && c <= 0x217F) ||
           (c >= 0x24D0 && c <= 0x24E9);
}

/* Python's Uppercase property: Lu plus Other_Uppercase (capital roman
 * numerals, circled and squared capital letters). */
int ifeval_isupper(int32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z';
    if (utf8proc_category(c) == UTF8PROC_CATEGORY_LU)
        return 1;
    return (c >= 0x2160 && c <= 0x216F) || (c >= 0x24B6 && c <= 0x24CF) || (c >= 0x1F130 && c <= 0x1F149) ||
           (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189);
}

static int istitle(int32_t c)
{
    return c >= 0x80 && utf8proc_category(c) == UTF8PROC_CATEGORY_LT;
}

void ifeval_strip(const char *s, size_t n, size_t *b, size_t *e)
{
    size_t i = 0, len;
    while (i < n) {
        int32_t c = ifeval_cp(s, n, i, &len);
        if (!ifeval_isspace(c))
            break;
        i += len;
    }
    size_t j = n;
    while (j > i) {
        size_t k = j - 1;
        while (k > i && ((unsigned char)s[k] & 0xC0) == 0x80) /* back to the lead byte */
            k--;
        if (!ifeval_isspace(ifeval_cp(s, n, k, &len)))
            break;
        j = k;
    }
    *b = i;
    *e = j;
}

int ifeval_blank(const char *s, size_t n)
{
    size_t b, e;
    ifeval_strip(s, n, &b, &e);
    return b == e;
}

/* Python's unicode_isupper/islower: a lower (upper) or titlecase character
 * rules it out; at least one cased character of the wanted case is needed. */
static int str_is_case(const char *s, size_t n, int upper)
{
    int cased = 0;
    size_t len;
    for (size_t i = 0; i < n; i += len) {
        int32_t c = ifeval_cp(s, n, i, &len);
        if (istitle(c) || (upper ? ifeval_islower(c) : ifeval_isupper(c)))
            return 0;
        if (upper ? ifeval_isupper(c) : ifeval_islower(c))
            cased = 1;
    }
    return cased;
}

int ifeval_str_isupper(const char *s, size_t n) { return str_is_case(s, n, 1); }
int ifeval_str_islower(const char *s, size_t n) { return str_is_case(s, n, 0); }

char *ifeval_lower_dup(const char *s, size_t n, size_t *out_n)
{
    /* A simple lower-case mapping grows a character by at most half (2 -> 3
     * bytes, e.g. U+023A -> U+2C65), so 2n + 1 bytes always suffice. */
    char *out = llm_malloc(2 * n + 1, "lower-cased text");
    if (!out)
        return NULL;
    size_t o = 0, len;
    for (size_t i = 0; i < n; i += len) {
        int32_t c = ifeval_cp(s, n, i, &len);
        o += (size_t)utf8proc_encode_char(utf8proc_tolower(c), (utf8proc_uint8_t *)out + o);
    }
    out[o] = '\0';
    *out_n = o;
    return out;
}

size_t ifeval_count_words(const char *s, size_t n)
{
    size_t count = 0, len;
    int in_word = 0;
    for (size_t i = 0; i < n; i += len) {
        int w = ifeval_isword(ifeval_cp(s, n, i, &len));
        count += w && !in_word;
        in_word = w;
    }
    return count;
}

/* ---- sentences: an approximation of Punkt (Kiss & Strunk 2006) ----
 * nltk's English Punkt model breaks after '.', '?' or '!' when followed by
 * white space (or by closing punctuation), unless the word before a period
 * is a known abbreviation, an initial, or a number / ellipsis followed by a
 * word its orthographic statistics say does not start sentences. We keep
 * its rules and replace the learned statistics with a fixed abbreviation
 * list and "the next word starts with a capital letter". */

/* Characters Punkt reads as punctuation right after a sentence end. */
static int closer(int32_t c)
{
    return c == ')' || c == '"' || c == '\'' || c == ']' || c == '}' || c == '*' || c == ';' || c == ':';
}

static int opener(int32_t c)
{
    return c == '(' || c == '"' || c == '\'' || c == '[' || c == '{' || c == '*' || c == '`' || c == 0x201C ||
           c == 0x2018 || c == 0xAB;
}

/* Abbreviations that never end a sentence ("Dr. Smith") and ones that end
 * one when a capitalised word follows ("... Acme Inc. The"). */
static const char *const ABBR_MID[] = {
    "mr", "mrs", "ms", "dr", "prof", "st", "mt", "vs", "fig", "figs", "vol", "approx", "dept", "gen",
    "gov", "sen", "rep", "col", "lt", "capt", "sgt", "rev", "hon", "ave", "blvd", "rd", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "cf", "ca", "pp"};
static const char *const ABBR_END[] = {"etc", "inc", "ltd", "co", "corp", "jr", "sr", "al"};

static int in_list(const char *w, size_t n, const char *const *list, size_t k)
{
    if (n == 0 || n > 8)
        return 0;
    char low[9];
    for (size_t i = 0; i < n; i++)
        low[i] = (char)((w[i] >= 'A' && w[i] <= 'Z') ? w[i] + 32 : w[i]);
    low[n] = '\0';
    for (size_t i = 0; i < k; i++)
        if (strcmp(low, list[i]) == 0)
            return 1;
    return 0;
}

/* Punkt's number type: -?[.,]?\d[\d,.-]* (the final period already cut). */
static int is_number(const char *w, size_t n)
{
    size_t i = 0;
    if (i < n && w[i] == '-')
        i++;
    if (i < n && (w[i] == '.' || w[i] == ','))
        i++;
    if (i >= n || w[i] < '0' || w[i] > '9')
        return 0;
    for (i++; i < n; i++)
        if (!((w[i] >= '0' && w[i] <= '9') || w[i] == ',' || w[i] == '.' || w[i] == '-'))
            return 0;
    return 1;
}

/* "e.g", "U.S", "a.m", "Ph.D": letter groups of one or two, joined by '.'. */
static int is_dotted_abbr(const char *w, size_t n)
{
    if (!memchr(w, '.', n))
        return 0;
    size_t run = 0, len;
    for (size_t i = 0; i < n; i += len) {
        int32_t c = ifeval_cp(w, n, i, &len);
        if (c == '.') {
            if (run == 0)
                return 0;
            run = 0;
        } else if (ifeval_isword(c) && !(c >= '0' && c <= '9')) {
            if (++run > 2)
                return 0;
        } else {
            return 0;
        }
    }
    return run > 0;
}

/* The case of the first letter of the token starting after s[from]: +1
 * upper, -1 lower, 0 none (end of text or no letter first). */
static int next_case(const char *s, size_t n, size_t from)
{
    size_t i = from, len;
    while (i < n) {
        int32_t c = ifeval_cp(s, n, i, &len);
        if (!ifeval_isspace(c) && !opener(c)) {
            if (ifeval_isupper(c) || istitle(c))
                return 1;
            return ifeval_islower(c) ? -1 : 0;
        }
        i += len;
    }
    return 0;
}

/* Does the white-space-delimited token s[b..e) end a sentence? */
static int ends_sentence(const char *s, size_t n, size_t b, size_t e)
{
    while (e > b && closer((unsigned char)s[e - 1]))
        e--;
    size_t trail = 0;
    int qx = 0;
    while (e - trail > b && (s[e - trail - 1] == '.' || s[e - trail - 1] == '?' || s[e - trail - 1] == '!')) {
        qx |= s[e - trail - 1] != '.';
        trail++;
    }
    if (trail == 0)
        return 0;
    if (qx) /* '?' and '!' always end a sentence */
        return 1;
    size_t we = e - trail, wb = b, len;
    while (wb < we && opener(ifeval_cp(s, we, wb, &len)))
        wb += len;
    const char *w = s + wb;
    size_t wn = we - wb;
    int next = next_case(s, n, e);
    if (trail >= 2) /* an ellipsis ends a sentence before a capital */
        return next > 0;
    if (wn == 0)
        return 1;
    if (in_list(w, wn, ABBR_MID, sizeof(ABBR_MID) / sizeof(*ABBR_MID)) || is_dotted_abbr(w, wn))
        return 0;
    if (in_list(w, wn, ABBR_END, sizeof(ABBR_END) / sizeof(*ABBR_END)))
        return next > 0;
    int32_t c0 = ifeval_cp(w, wn, 0, &len);
    if (len == wn && ifeval_isword(c0) && !(c0 >= '0' && c0 <= '9')) /* an initial: "J. Smith" */
        return 0;
    if (is_number(w, wn)) /* "1. First", but "about 3. million" */
        return next >= 0;
    return 1;
}

size_t ifeval_count_sentences(const char *s, size_t n)
{
    size_t count = 0, i = 0, len;
    int open = 0;
    while (i < n) {
        if (ifeval_isspace(ifeval_cp(s, n, i, &len))) {
            i += len;
            continue;
        }
        size_t b = i;
        while (i < n && !ifeval_isspace(ifeval_cp(s, n, i, &len)))
            i += len;
        if (!open) {
            count++;
            open = 1;
        }
        if (ends_sentence(s, n, b, i))
            open = 0;
    }
    return count;
}

/* ---- capital words: an approximation of nltk.word_tokenize ----
 * Tokens are runs of word characters joined by '-', '.', '/' or an
 * apostrophe (so "WELL-KNOWN", "U.S.A" and "A/B" are one token, as in the
 * Treebank tokenizer), then split like Treebank's contractions: "DON'T" ->
 * "DO" + "N'T", "IT'S" -> "IT" + "'S", "CANNOT" -> "CAN" + "NOT". */

static int joiner(int32_t c)
{
    return c == '-' || c == '.' || c == '/' || c == '\'' || c == 0x2019;
}

static int ends_with_ci(const char *w, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    if (n <= k)
        return 0;
    for (size_t i = 0; i < k; i++) {
        char c = w[n - k + i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != suf[i])
            return 0;
    }
    return 1;
}

/* Where Treebank splits a token (0: not at all). */
static size_t treebank_split(const char *w, size_t n)
{
    static const struct { const char *word; size_t at; } whole[] = {
        {"cannot", 3}, {"gimme", 3}, {"gonna", 3}, {"gotta", 3}, {"lemme", 3}, {"wanna", 3}};
    for (size_t i = 0; i < sizeof(whole) / sizeof(*whole); i++)
        if (n == strlen(whole[i].word) && strncasecmp(w, whole[i].word, n) == 0)
            return whole[i].at;
    static const char *const clitic[] = {"n't", "'ll", "'re", "'ve", "'s", "'m", "'d"};
    for (size_t i = 0; i < sizeof(clitic) / sizeof(*clitic); i++)
        if (ends_with_ci(w, n, clitic[i]))
            return n - strlen(clitic[i]);
    return 0;
}

size_t ifeval_count_capital_words(const char *s, size_t n)
{
    size_t count = 0, i = 0, len, len2;
    while (i < n) {
        if (!ifeval_isword(ifeval_cp(s, n, i, &len))) {
            i += len;
            continue;
        }
        size_t b = i;
        i += len;
        while (i < n) {
            int32_t c = ifeval_cp(s, n, i, &len);
            if (ifeval_isword(c))
                i += len;
            else if (joiner(c) && i + len < n && ifeval_isword(ifeval_cp(s, n, i + len, &len2)))
                i += len + len2;
            else
                break;
        }
        size_t at = treebank_split(s + b, i - b);
        if (at) {
            count += (size_t)ifeval_str_isupper(s + b, at);
            count += (size_t)ifeval_str_isupper(s + b + at, i - b - at);
        } else {
            count += (size_t)ifeval_str_isupper(s + b, i - b);
        }
    }
    return count;
}
