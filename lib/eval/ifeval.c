/* ifeval.c: IFEval's 25 instruction checks (Zhou et al. 2023, Table 1) with
 * the reference implementation's rules (google-research/
 * instruction_following_eval), their kwargs, and the strict / loose scoring
 * of a response (docs/ifeval.md). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/err.h"
#include "core/str.h"
#include "eval/ifeval.h"
#include "eval/ifeval_impl.h"
#include "infer/utf8stream.h"

/* An instruction's kwargs, validated. */
struct args {
    long num, num2;      /* its integers (struct instr names their keys) */
    int at_least;        /* relation: 1 "at least" (count >= num), 0 "less than" (count < num) */
    const char *str;     /* its string, stripped: borrowed from kwargs or the prompt */
    size_t str_n;
    const cJSON *list;   /* keywords / forbidden_words: non-empty strings */
    int32_t letter;      /* keywords:letter_frequency, lower-cased */
};

typedef int (*check_fn)(const struct args *a, const char *s, size_t n); /* 1, 0 or < 0 (error) */

struct instr {
    const char *id;
    check_fn check;
    const char *num_key, *num2_key, *rel_key, *str_key, *list_key;
};

static int relation(const struct args *a, long count)
{
    return a->at_least ? count >= a->num : count < a->num;
}

/* ---- PCRE2: the reference's regexes, with Python's `re` conventions
 * (Unicode \s and \d, '.' and '$' stop at '\n' only). Subjects are checked
 * well-formed once, so matches skip PCRE2's per-call UTF check. Python's \s
 * for str is str.isspace(), which also holds U+001C..U+001F (PCRE2's \s,
 * even with UCP, does not): PY_S. ---- */
#define PY_S "[\\s\\x{1c}-\\x{1f}]"

struct rx {
    pcre2_code *code;
    pcre2_match_data *md;
};

static int rx_init(struct rx *r, const char *pat, size_t len, uint32_t opts)
{
    int ec = 0;
    PCRE2_SIZE off;
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc)
        return llm_err(LLM_ENOMEM, "out of memory (regex)");
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    if (!(opts & PCRE2_LITERAL)) /* UCP: Unicode \s, \d, \w (not allowed with LITERAL, nor needed) */
        opts |= PCRE2_UCP;
    r->code = pcre2_compile((PCRE2_SPTR)pat, len, opts | PCRE2_UTF, &ec, &off, cc);
    pcre2_compile_context_free(cc);
    if (!r->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        return llm_err(LLM_EINVAL, "regex '%.*s': %s", (int)len, pat, (const char *)msg);
    }
    r->md = pcre2_match_data_create_from_pattern(r->code, NULL);
    if (!r->md) {
        pcre2_code_free(r->code);
        return llm_err(LLM_ENOMEM, "out of memory (regex)");
    }
    return 0;
}

static void rx_release(struct rx *r)
{
    pcre2_match_data_free(r->md);
    pcre2_code_free(r->code);
}

/* The first match at or after byte `from`: 1 with [*b, *e), 0 for none. */
static int rx_find(struct rx *r, const char *s, size_t n, size_t from, size_t *b, size_t *e)
{
    int rc = pcre2_match(r->code, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, r->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0)
        return llm_err(LLM_EINVAL, "regex match failed (PCRE2 error %d)", rc);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    *b = ov[0];
    *e = ov[1];
    return 1;
}

/* Where re.findall looks next after the match [b, e). */
static size_t rx_next(const char *s, size_t n, size_t b, size_t e)
{
    size_t len = 1;
    if (e == b && e < n)
        ifeval_cp(s, n, e, &len);
    return e > b ? e : e + len;
}

/* len(re.findall(pat, s)) into *count; 0 or an error. */
static int rx_count(const char *pat, size_t len, uint32_t opts, const char *s, size_t n, long *count)
{
    struct rx r;
    int rc = rx_init(&r, pat, len, opts);
    if (rc)
        return rc;
    size_t at = 0, b, e;
    *count = 0;
    while (at <= n && (rc = rx_find(&r, s, n, at, &b, &e)) == 1) {
        ++*count;
        at = rx_next(s, n, b, e);
    }
    rx_release(&r);
    return rc < 0 ? rc : 0;
}

/* s[0..n) as a regex matching it literally: ASCII punctuation escaped
 * (PCRE2 reads '\' + non-alphanumeric as that character). Caller frees. */
static char *rx_quote(const char *s, size_t n, size_t *out_n)
{
    char *q = llm_malloc(2 * n + 1, "regex");
    if (!q)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            q[o++] = '\\';
        q[o++] = (char)c;
    }
    q[o] = '\0';
    *out_n = o;
    return q;
}

/* The code point that ends at byte `at` (> 0) of s. */
static int32_t cp_before(const char *s, size_t n, size_t at)
{
    size_t i = at - 1, len;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    return ifeval_cp(s, n, i, &len);
}

/* Counts case-insensitive occurrences of needle in s: non-overlapping
 * (re.findall) when `bounded` is 0; with `bounded` 1 stops at the first one
 * that has a word boundary (Python's \b) on both sides. */
static int find_ci(const char *needle, size_t nn, const char *s, size_t n, int bounded, long *count)
{
    struct rx r;
    int rc = rx_init(&r, needle, nn, PCRE2_LITERAL | PCRE2_CASELESS);
    if (rc)
        return rc;
    size_t at = 0, b, e, len;
    *count = 0;
    while (at <= n && (rc = rx_find(&r, s, n, at, &b, &e)) == 1) {
        if (!bounded) {
            ++*count;
            at = rx_next(s, n, b, e);
            continue;
        }
        /* a boundary (Python's \b): a word character on exactly one side */
        int before = b > 0 && ifeval_isword(cp_before(s, n, b));
        int first = ifeval_isword(ifeval_cp(s, n, b, &len));
        int last = ifeval_isword(cp_before(s, n, e));
        int after = e < n && ifeval_isword(ifeval_cp(s, n, e, &len));
        if (before != first && last != after) {
            *count = 1;
            break;
        }
        ifeval_cp(s, n, b, &len);
        at = b + len;
    }
    rx_release(&r);
    return rc < 0 ? rc : 0;
}

/* ---- the checks ---- */

/* Each keyword of the list, ignoring case (bounded: as a whole word): 1 if
 * every one is found (want 1) or none is (want 0), else 0. */
static int keyword_list(const struct args *a, const char *s, size_t n, int bounded, int want)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, a->list) {
        long c;
        int rc = find_ci(k->valuestring, strlen(k->valuestring), s, n, bounded, &c);
        if (rc)
            return rc;
        if ((c > 0) != want)
            return 0;
    }
    return 1;
}

/* keywords:existence: every keyword occurs (as a substring), ignoring case. */
static int check_keywords(const struct args *a, const char *s, size_t n)
{
    return keyword_list(a, s, n, 0, 1);
}

/* keywords:frequency: occurrences of the keyword (substrings, ignoring case). */
static int check_frequency(const struct args *a, const char *s, size_t n)
{
    long c;
    int rc = find_ci(a->str, a->str_n, s, n, 0, &c);
    return rc ? rc : relation(a, c);
}

/* keywords:forbidden_words: none occurs as a whole word, ignoring case. */
static int check_forbidden(const struct args *a, const char *s, size_t n)
{
    return keyword_list(a, s, n, 1, 0);
}

/* keywords:letter_frequency: occurrences of the letter in the lower-cased text. */
static int check_letter(const struct args *a, const char *s, size_t n)
{
    long c = 0;
    size_t len;
    for (size_t i = 0; i < n; i += len)
        c += utf8proc_tolower(ifeval_cp(s, n, i, &len)) == a->letter;
    return relation(a, c);
}

/* Codes compare without their region: "zh-cn" is "zh". Undetectable text
 * counts as followed, like the reference's LangDetectException branch. */
static int language_is(const char *s, size_t n, const char *want, size_t want_n)
{
    const char *got = ifeval_language(s, n);
    if (!got)
        return 1;
    size_t gn = strcspn(got, "-_"), wn = 0;
    while (wn < want_n && want[wn] != '-' && want[wn] != '_')
        wn++;
    return gn == wn && strncasecmp(got, want, gn) == 0;
}

static int check_language(const struct args *a, const char *s, size_t n)
{
    return language_is(s, n, a->str, a->str_n);
}

static int check_sentences(const struct args *a, const char *s, size_t n)
{
    return relation(a, (long)ifeval_count_sentences(s, n));
}

static int check_words(const struct args *a, const char *s, size_t n)
{
    return relation(a, (long)ifeval_count_words(s, n));
}

/* length_constraints:number_paragraphs: exactly num paragraphs between
 * "***" dividers (re.split(r"\s?\*\*\*\s?")); an empty piece is allowed
 * only first or last. */
static int check_paragraphs(const struct args *a, const char *s, size_t n)
{
    static const char pat[] = PY_S "?\\*\\*\\*" PY_S "?";
    struct rx r;
    int rc = rx_init(&r, pat, sizeof(pat) - 1, 0);
    if (rc)
        return rc;
    long count = 0;
    size_t at = 0, b, e, index = 0;
    int ok = 1;
    for (;;) {
        rc = rx_find(&r, s, n, at, &b, &e);
        if (rc < 0)
            break;
        size_t end = rc ? b : n;
        if (!ifeval_blank(s + at, end - at))
            count++;
        else if (index != 0 && rc) /* an empty piece in the middle */
            ok = 0;
        if (!rc)
            break;
        index++;
        at = e;
    }
    rx_release(&r);
    return rc < 0 ? rc : ok && count == a->num;
}

/* Strips the piece s[*b..*e) (offsets into s) of white space at both ends. */
static void strip_range(const char *s, size_t *b, size_t *e)
{
    size_t sb, se;
    ifeval_strip(s + *b, *e - *b, &sb, &se);
    *e = *b + se;
    *b += sb;
}

/* Python's text.split(sep) piece by piece: the piece starting at *at ends
 * at the returned offset; *at moves past the separator; 0 when it was the
 * last piece. */
static int split_next(const char *s, size_t n, const char *sep, size_t *at, size_t *end)
{
    size_t k = strlen(sep);
    const char *f = memmem(s + *at, n - *at, sep, k);
    if (!f) {
        *end = n;
        return 0;
    }
    *end = (size_t)(f - s);
    *at = *end + k;
    return 1;
}

/* length_constraints:nth_paragraph_first_word: num paragraphs separated by
 * "\n\n" (blank pieces not counted), and the nth (counted in the raw split)
 * starts with first_word (leading quotes dropped, cut at . , ? ! ' "). */
static int check_first_word(const struct args *a, const char *s, size_t n)
{
    long count = 0;
    size_t at = 0, end, pb = 0, pe = 0;
    int more = 1;
    for (long index = 1; more; index++) {
        size_t start = at;
        more = split_next(s, n, "\n\n", &at, &end);
        count += !ifeval_blank(s + start, end - start);
        if (index == a->num2) {
            pb = start, pe = end;
            strip_range(s, &pb, &pe);
        }
    }
    if (a->num2 > count || pb == pe)
        return 0;
    /* paragraph.split()[0], lstrip("'"), lstrip('"') */
    size_t i = pb, len;
    while (i < pe && !ifeval_isspace(ifeval_cp(s, pe, i, &len)))
        i += len;
    size_t wb = pb, we = i;
    while (wb < we && s[wb] == '\'')
        wb++;
    while (wb < we && s[wb] == '"')
        wb++;
    for (i = wb; i < we && !strchr(".,?!'\"", s[i]); i++)
        ;
    size_t gn, wn;
    char *got = ifeval_lower_dup(s + wb, i - wb, &gn);
    char *want = ifeval_lower_dup(a->str, a->str_n, &wn);
    int rc = got && want ? count == a->num && gn == wn && memcmp(got, want, gn) == 0 : LLM_ENOMEM;
    free(got);
    free(want);
    return rc;
}

/* detectable_content:number_placeholders: at least num of re.findall(r"\[.*?\]"):
 * a '[' and the first ']' after it on the same line. */
static int check_placeholders(const struct args *a, const char *s, size_t n)
{
    long count = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '[')
            continue;
        size_t j = i + 1;
        while (j < n && s[j] != ']' && s[j] != '\n')
            j++;
        if (j < n && s[j] == ']') {
            count++;
            i = j;
        }
    }
    return count >= a->num;
}

/* detectable_content:postscript: the marker somewhere, ignoring case; the
 * two usual markers tolerate a space after each period. */
static int check_postscript(const struct args *a, const char *s, size_t n)
{
    char *quoted = NULL;
    const char *pat;
    if (a->str_n == 5 && memcmp(a->str, "P.P.S", 5) == 0) {
        pat = PY_S "*p\\." PY_S "?p\\." PY_S "?s.*$";
    } else if (a->str_n == 4 && memcmp(a->str, "P.S.", 4) == 0) {
        pat = PY_S "*p\\." PY_S "?s\\..*$";
    } else {
        size_t qn;
        char *q = rx_quote(a->str, a->str_n, &qn);
        quoted = q ? llm_malloc(qn + 32, "regex") : NULL;
        if (!quoted) {
            free(q);
            return LLM_ENOMEM;
        }
        snprintf(quoted, qn + 32, PY_S "*%s.*$", q);
        free(q);
        pat = quoted;
    }
    long count;
    int rc = rx_count(pat, strlen(pat), PCRE2_MULTILINE | PCRE2_CASELESS, s, n, &count);
    free(quoted);
    return rc ? rc : count > 0;
}

/* detectable_format:number_bullet_lists: exactly num lines starting with
 * "* " (a '*' not followed by '*') or "-". */
static int check_bullets(const struct args *a, const char *s, size_t n)
{
    static const char star[] = "^" PY_S "*\\*[^\\*].*$", dash[] = "^" PY_S "*-.*$";
    long c1, c2;
    int rc = rx_count(star, sizeof(star) - 1, PCRE2_MULTILINE, s, n, &c1);
    if (!rc)
        rc = rx_count(dash, sizeof(dash) - 1, PCRE2_MULTILINE, s, n, &c2);
    return rc ? rc : c1 + c2 == a->num;
}

/* detectable_format:constrained_response: contains one of the options. */
static int check_constrained(const struct args *a, const char *s, size_t n)
{
    static const char *const opt[] = {"My answer is yes.", "My answer is no.", "My answer is maybe."};
    for (size_t i = 0; i < 3; i++)
        if (memmem(s, n, opt[i], strlen(opt[i])))
            return 1;
    return 0;
}

/* Counts the matches of pat whose inside (cut `cut` bytes each side, or
 * for `title` all '<' / '>' at the ends) is not blank. */
static int count_nonblank(const char *pat, size_t pn, size_t cut, int title, const char *s, size_t n,
                          long *count)
{
    struct rx r;
    int rc = rx_init(&r, pat, pn, 0);
    if (rc)
        return rc;
    size_t at = 0, b, e;
    *count = 0;
    while (at <= n && (rc = rx_find(&r, s, n, at, &b, &e)) == 1) {
        size_t ib = b + cut, ie = e - cut;
        if (title) {
            for (ib = b; ib < e && s[ib] == '<'; ib++)
                ;
            for (ie = e; ie > ib && s[ie - 1] == '>'; ie--)
                ;
        }
        *count += !ifeval_blank(s + ib, ie - ib);
        at = rx_next(s, n, b, e);
    }
    rx_release(&r);
    return rc < 0 ? rc : 0;
}

/* detectable_format:number_highlighted_sections: at least num non-blank
 * *single* plus **double** highlights on one line (as the reference counts:
 * a **bold** run is one double highlight, its "**" halves are blank singles). */
static int check_highlights(const struct args *a, const char *s, size_t n)
{
    static const char one[] = "\\*[^\\n\\*]*\\*", two[] = "\\*\\*[^\\n\\*]*\\*\\*";
    long c1, c2;
    int rc = count_nonblank(one, sizeof(one) - 1, 1, 0, s, n, &c1);
    if (!rc)
        rc = count_nonblank(two, sizeof(two) - 1, 2, 0, s, n, &c2);
    return rc ? rc : c1 + c2 >= a->num;
}

/* detectable_format:multiple_sections: at least num "<splitter> <digits>"
 * headers (re.split(r"\s?" + splitter + r"\s?\d+\s?") pieces minus one). */
static int check_sections(const struct args *a, const char *s, size_t n)
{
    size_t qn;
    char *q = rx_quote(a->str, a->str_n, &qn);
    char *pat = q ? llm_malloc(qn + 64, "regex") : NULL;
    if (!pat) {
        free(q);
        return LLM_ENOMEM;
    }
    snprintf(pat, qn + 64, PY_S "?%s" PY_S "?\\d+" PY_S "?", q);
    long count;
    int rc = rx_count(pat, strlen(pat), 0, s, n, &count);
    free(q);
    free(pat);
    return rc ? rc : count >= a->num;
}

/* Brings cJSON to Python's json.loads: rejects what cJSON accepts but RFC
 * 8259 does not (raw control characters inside strings; numbers such as
 * "01", "1." or "-.5"), and accepts Python's NaN, Infinity and -Infinity by
 * blanking them to 0 in s. 1 if s may then go to cJSON, 0 if invalid. */
static int json_python(char *s)
{
    static const char *const nonfinite[] = {"-Infinity", "Infinity", "NaN"};
    for (char *p = s; *p; p++) {
        for (size_t i = 0; i < 3 && (p == s || strchr(" \t\n\r[,:", p[-1])); i++) {
            size_t k = strlen(nonfinite[i]);
            if (strncmp(p, nonfinite[i], k) == 0) {
                memset(p, ' ', k);
                *p = '0';
                p += k - 1;
                break;
            }
        }
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if ((unsigned char)*p < 0x20)
                    return 0;
                if (*p == '\\' && p[1])
                    p++;
            }
            if (!*p)
                return 1; /* unterminated: cJSON rejects it */
        } else if ((unsigned char)*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r') {
            return 0; /* JSON's white space is only these four */
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
            char *q = p + (*p == '-');
            if (*q == '0')
                q++;
            else if (*q >= '1' && *q <= '9')
                while (*q >= '0' && *q <= '9')
                    q++;
            else
                return 0;
            if (*q == '.') {
                if (!(*++q >= '0' && *q <= '9'))
                    return 0;
                while (*q >= '0' && *q <= '9')
                    q++;
            }
            if (*q == 'e' || *q == 'E') {
                q += q[1] == '+' || q[1] == '-';
                if (!(*++q >= '0' && *q <= '9'))
                    return 0;
                while (*q >= '0' && *q <= '9')
                    q++;
            }
            if ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-')
                return 0;
            p = q - 1;
        }
    }
    return 1;
}

/* detectable_format:json_format: the stripped text, less a leading ```json
 * (or ```Json, ```JSON, ```) and a trailing ```, parses as JSON. */
static int check_json(const struct args *a, const char *s, size_t n)
{
    size_t b, e;
    ifeval_strip(s, n, &b, &e);
    const char *p = s + b;
    size_t m = e - b;
    static const char *const fence[] = {"```json", "```Json", "```JSON", "```"};
    for (size_t i = 0; i < 4; i++) { /* chained removeprefix, as the reference does */
        size_t k = strlen(fence[i]);
        if (m >= k && memcmp(p, fence[i], k) == 0)
            p += k, m -= k;
    }
    if (m >= 3 && memcmp(p + m - 3, "```", 3) == 0)
        m -= 3;
    ifeval_strip(p, m, &b, &e);
    char *buf = llm_malloc(e - b + 1, "json text");
    if (!buf)
        return LLM_ENOMEM;
    memcpy(buf, p + b, e - b);
    buf[e - b] = '\0';
    cJSON *j = json_python(buf) ? cJSON_ParseWithOpts(buf, NULL, 1) : NULL;
    free(buf);
    cJSON_Delete(j);
    return j != NULL;
}

/* detectable_format:title: a non-blank <<title>> on one line. */
static int check_title(const struct args *a, const char *s, size_t n)
{
    static const char pat[] = "<<[^\\n]+>>";
    long count;
    int rc = count_nonblank(pat, sizeof(pat) - 1, 0, 1, s, n, &count);
    return rc ? rc : count > 0;
}

/* combination:two_responses: split on "******", exactly two non-blank
 * pieces that differ (stripped), blank pieces only first or last. */
static int check_two(const struct args *a, const char *s, size_t n)
{
    size_t at = 0, end, vb[2] = {0}, ve[2] = {0};
    int valid = 0, more = 1;
    for (int index = 0; more; index++) {
        size_t start = at;
        more = split_next(s, n, "******", &at, &end);
        if (ifeval_blank(s + start, end - start)) {
            if (index != 0 && more)
                return 0;
            continue;
        }
        if (valid < 2) {
            vb[valid] = start, ve[valid] = end;
            strip_range(s, &vb[valid], &ve[valid]);
        }
        valid++;
    }
    return valid == 2 && !(ve[0] - vb[0] == ve[1] - vb[1] && memcmp(s + vb[0], s + vb[1], ve[0] - vb[0]) == 0);
}

/* Does s[b..e), lower-cased, start (at_end 0) or end (at_end 1) with the
 * kwarg string, lower-cased? */
static int lower_affix(const struct args *a, const char *s, size_t b, size_t e, int at_end)
{
    size_t gn, wn;
    char *got = ifeval_lower_dup(s + b, e - b, &gn);
    char *want = ifeval_lower_dup(a->str, a->str_n, &wn);
    int rc = got && want ? gn >= wn && memcmp(got + (at_end ? gn - wn : 0), want, wn) == 0 : LLM_ENOMEM;
    free(got);
    free(want);
    return rc;
}

/* combination:repeat_prompt: the stripped, lower-cased text starts with the
 * stripped, lower-cased prompt. */
static int check_repeat(const struct args *a, const char *s, size_t n)
{
    size_t b, e;
    ifeval_strip(s, n, &b, &e);
    return lower_affix(a, s, b, e, 0);
}

/* startend:end_checker: the stripped text, less '"' at its ends, ends with
 * the phrase, ignoring case. */
static int check_end(const struct args *a, const char *s, size_t n)
{
    size_t b, e;
    ifeval_strip(s, n, &b, &e);
    while (b < e && s[b] == '"')
        b++;
    while (e > b && s[e - 1] == '"')
        e--;
    return lower_affix(a, s, b, e, 1);
}

static int check_capital_words(const struct args *a, const char *s, size_t n)
{
    return relation(a, (long)ifeval_count_capital_words(s, n));
}

/* change_case:english_capital / english_lowercase: str.isupper() (islower())
 * and the text is English (or its language cannot be told). */
static int check_english_capital(const struct args *a, const char *s, size_t n)
{
    return ifeval_str_isupper(s, n) && language_is(s, n, "en", 2);
}

static int check_english_lowercase(const struct args *a, const char *s, size_t n)
{
    return ifeval_str_islower(s, n) && language_is(s, n, "en", 2);
}

static int check_no_comma(const struct args *a, const char *s, size_t n)
{
    return memchr(s, ',', n) == NULL;
}

/* startend:quotation: the stripped text is at least two characters wrapped
 * in '"'. */
static int check_quotation(const struct args *a, const char *s, size_t n)
{
    size_t b, e;
    ifeval_strip(s, n, &b, &e);
    return e - b > 1 && s[b] == '"' && s[e - 1] == '"';
}

/* The published set's 25 instructions and the kwargs each one reads. */
static const struct instr INSTR[] = {
    /* id                                          check                num_key              num2_key         rel_key           str_key              list_key */
    {"keywords:existence",                         check_keywords,      NULL,                NULL,            NULL,             NULL,                "keywords"},
    {"keywords:frequency",                         check_frequency,     "frequency",         NULL,            "relation",       "keyword",           NULL},
    {"keywords:forbidden_words",                   check_forbidden,     NULL,                NULL,            NULL,             NULL,                "forbidden_words"},
    {"keywords:letter_frequency",                  check_letter,        "let_frequency",     NULL,            "let_relation",   "letter",            NULL},
    {"language:response_language",                 check_language,      NULL,                NULL,            NULL,             "language",          NULL},
    {"length_constraints:number_sentences",        check_sentences,     "num_sentences",     NULL,            "relation",       NULL,                NULL},
    {"length_constraints:number_paragraphs",       check_paragraphs,    "num_paragraphs",    NULL,            NULL,             NULL,                NULL},
    {"length_constraints:number_words",            check_words,         "num_words",         NULL,            "relation",       NULL,                NULL},
    {"length_constraints:nth_paragraph_first_word", check_first_word,   "num_paragraphs",    "nth_paragraph", NULL,             "first_word",        NULL},
    {"detectable_content:number_placeholders",     check_placeholders,  "num_placeholders",  NULL,            NULL,             NULL,                NULL},
    {"detectable_content:postscript",              check_postscript,    NULL,                NULL,            NULL,             "postscript_marker", NULL},
    {"detectable_format:number_bullet_lists",      check_bullets,       "num_bullets",       NULL,            NULL,             NULL,                NULL},
    {"detectable_format:constrained_response",     check_constrained,   NULL,                NULL,            NULL,             NULL,                NULL},
    {"detectable_format:number_highlighted_sections", check_highlights, "num_highlights",    NULL,            NULL,             NULL,                NULL},
    {"detectable_format:multiple_sections",        check_sections,      "num_sections",      NULL,            NULL,             "section_spliter",   NULL},
    {"detectable_format:json_format",              check_json,          NULL,                NULL,            NULL,             NULL,                NULL},
    {"detectable_format:title",                    check_title,         NULL,                NULL,            NULL,             NULL,                NULL},
    {"combination:two_responses",                  check_two,           NULL,                NULL,            NULL,             NULL,                NULL},
    {"combination:repeat_prompt",                  check_repeat,        NULL,                NULL,            NULL,             "prompt_to_repeat",  NULL},
    {"startend:end_checker",                       check_end,           NULL,                NULL,            NULL,             "end_phrase",        NULL},
    {"change_case:capital_word_frequency",         check_capital_words, "capital_frequency", NULL,            "capital_relation", NULL,              NULL},
    {"change_case:english_capital",                check_english_capital, NULL,              NULL,            NULL,             NULL,                NULL},
    {"change_case:english_lowercase",              check_english_lowercase, NULL,            NULL,            NULL,             NULL,                NULL},
    {"punctuation:no_comma",                       check_no_comma,      NULL,                NULL,            NULL,             NULL,                NULL},
    {"startend:quotation",                         check_quotation,     NULL,                NULL,            NULL,             NULL,                NULL},
};

static const struct instr *find_instr(const char *id)
{
    for (size_t i = 0; id && i < sizeof(INSTR) / sizeof(*INSTR); i++)
        if (strcmp(INSTR[i].id, id) == 0)
            return &INSTR[i];
    return NULL;
}

int llm_ifeval_supported(const char *id)
{
    return find_instr(id) != NULL;
}

/* ---- kwargs ---- */

static int bad_kwarg(const char *id, const char *key, const char *what)
{
    return llm_err(LLM_EINVAL, "IFEval instruction '%s': kwarg '%s' %s", id, key, what);
}

/* A key whose value is null counts as absent (the published file has them). */
static const cJSON *kwarg(const cJSON *kw, const char *key)
{
    const cJSON *v = kw ? cJSON_GetObjectItemCaseSensitive(kw, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int kwarg_int(const char *id, const cJSON *kw, const char *key, long *out)
{
    const cJSON *v = kwarg(kw, key);
    if (!v)
        return bad_kwarg(id, key, "is missing");
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 0 && d <= 1e9) || d != (double)(long)d)
        return bad_kwarg(id, key, "must be a non-negative integer");
    *out = (long)d;
    return 0;
}

/* A non-empty, well-formed UTF-8 string. */
static int kwarg_text(const char *id, const char *key, const cJSON *v)
{
    size_t bad;
    if (!cJSON_IsString(v) || !v->valuestring)
        return bad_kwarg(id, key, "must be a string");
    if (!llm_utf8_valid(v->valuestring, strlen(v->valuestring), &bad))
        return bad_kwarg(id, key, "is not valid UTF-8");
    if (ifeval_blank(v->valuestring, strlen(v->valuestring)))
        return bad_kwarg(id, key, "must not be empty");
    return 0;
}

static int parse_args(const struct instr *in, const cJSON *kw, const char *prompt, struct args *a)
{
    const char *id = in->id;
    memset(a, 0, sizeof(*a));
    if (kw && !cJSON_IsObject(kw) && !cJSON_IsNull(kw))
        return llm_err(LLM_EINVAL, "IFEval instruction '%s': kwargs must be a JSON object", id);
    int rc;
    if (in->num_key && (rc = kwarg_int(id, kw, in->num_key, &a->num)))
        return rc;
    if (in->num2_key) {
        if ((rc = kwarg_int(id, kw, in->num2_key, &a->num2)))
            return rc;
        if (a->num2 < 1 || a->num2 > a->num)
            return bad_kwarg(id, in->num2_key, "must be between 1 and num_paragraphs");
    }
    if (in->rel_key) {
        const cJSON *v = kwarg(kw, in->rel_key);
        if (!v)
            return bad_kwarg(id, in->rel_key, "is missing");
        if (!cJSON_IsString(v) || (strcmp(v->valuestring, "less than") && strcmp(v->valuestring, "at least")))
            return bad_kwarg(id, in->rel_key, "must be \"less than\" or \"at least\"");
        a->at_least = strcmp(v->valuestring, "at least") == 0;
    }
    if (in->str_key) {
        const cJSON *v = kwarg(kw, in->str_key);
        const char *s = v && cJSON_IsString(v) ? v->valuestring : NULL;
        if (!v && in->check == check_repeat) { /* fall back on the prompt itself */
            if (!prompt || ifeval_blank(prompt, strlen(prompt)))
                return bad_kwarg(id, in->str_key, "is missing and there is no prompt");
            s = prompt;
        } else if (!v) {
            return bad_kwarg(id, in->str_key, "is missing");
        } else if ((rc = kwarg_text(id, in->str_key, v))) {
            return rc;
        }
        size_t b, e;
        ifeval_strip(s, strlen(s), &b, &e);
        a->str = s + b;
        a->str_n = e - b;
    }
    if (in->check == check_letter) {
        size_t len;
        int32_t c = ifeval_cp(a->str, a->str_n, 0, &len);
        if (len != a->str_n)
            return bad_kwarg(id, in->str_key, "must be a single character");
        a->letter = utf8proc_tolower(c);
    }
    if (in->list_key) {
        const cJSON *v = kwarg(kw, in->list_key), *k;
        if (!v)
            return bad_kwarg(id, in->list_key, "is missing");
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
            return bad_kwarg(id, in->list_key, "must be a non-empty array of strings");
        cJSON_ArrayForEach(k, v)
            if ((rc = kwarg_text(id, in->list_key, k)))
                return rc;
        a->list = v;
    }
    return 0;
}

/* ---- strict and loose ---- */

static int follows(const struct instr *in, const struct args *a, const char *s, size_t n)
{
    return ifeval_blank(s, n) ? 0 : in->check(a, s, n);
}

/* The '*'-less copy of s[0..n) into buf. */
static size_t drop_stars(const char *s, size_t n, char *buf)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '*')
            buf[o++] = s[i];
    return o;
}

/* Loose accuracy (Zhou et al. 2023, section 3): the response as is, without
 * its first line, without its last line and without both (each stripped),
 * and each of the four with every '*' removed; followed if any one follows. */
static int check_loose(const struct instr *in, const struct args *a, const char *s, size_t n, int strict)
{
    if (strict)
        return 1;
    const char *nl1 = memchr(s, '\n', n), *nl2 = memrchr(s, '\n', n);
    size_t vb[4] = {0, 0, 0, 0}, ve[4] = {n, 0, 0, 0};
    if (nl1) {
        size_t f = (size_t)(nl1 - s), l = (size_t)(nl2 - s);
        vb[1] = f + 1, ve[1] = n;          /* "\n".join(r[1:]) */
        vb[2] = 0, ve[2] = l;              /* "\n".join(r[:-1]) */
        vb[3] = f + 1, ve[3] = l > f ? l : f + 1; /* "\n".join(r[1:-1]) */
    }
    char *buf = llm_malloc(n + 1, "loose variant");
    if (!buf)
        return LLM_ENOMEM;
    int rc = 0;
    for (int v = 0; v < 4 && rc == 0; v++) {
        if (v > 0) { /* the cut variants are stripped; the whole one is not */
            strip_range(s, &vb[v], &ve[v]);
            if (nl1 && (rc = follows(in, a, s + vb[v], ve[v] - vb[v])))
                break;
        }
        rc = follows(in, a, buf, drop_stars(s + vb[v], ve[v] - vb[v], buf));
    }
    free(buf);
    return rc;
}

/* s when it is well-formed UTF-8, else a copy (*own, caller frees) with
 * each ill-formed subpart read as U+FFFD, as a decoder would show it. */
static const char *as_utf8(const char *s, char **own)
{
    size_t n = strlen(s), bad;
    *own = NULL;
    if (llm_utf8_valid(s, n, &bad))
        return s;
    char *out = llm_malloc(LLM_UTF8_STREAM_OUT_MAX(n) + 1, "response text");
    if (!out)
        return NULL;
    struct llm_utf8_stream st = {0};
    size_t o = llm_utf8_stream_push(&st, s, n, out);
    o += llm_utf8_stream_flush(&st, out + o);
    out[o] = '\0';
    *own = out;
    return out;
}

int llm_ifeval_check(const char *id, const cJSON *kwargs, const char *prompt, const char *response,
                     int *strict, int *loose)
{
    LLM_ASSERT(strict && loose);
    *strict = *loose = 0;
    const struct instr *in = find_instr(id);
    if (!in)
        return llm_err(LLM_EINVAL, "unknown IFEval instruction id '%s'", id ? id : "(null)");
    if (!response)
        return llm_err(LLM_EINVAL, "IFEval instruction '%s': no response", id);
    char *own_prompt = NULL, *own_resp = NULL;
    const char *p = prompt ? as_utf8(prompt, &own_prompt) : NULL;
    const char *r = as_utf8(response, &own_resp);
    struct args a;
    int rc = (prompt && !p) || !r ? LLM_ENOMEM : parse_args(in, kwargs, p, &a);
    if (rc == 0) {
        size_t n = strlen(r);
        rc = follows(in, &a, r, n);
        if (rc >= 0) {
            *strict = rc;
            rc = check_loose(in, &a, r, n, *strict);
            if (rc >= 0)
                *loose = rc, rc = 0;
        }
        if (rc < 0)
            llm_err_wrap(rc, "IFEval instruction '%s'", id);
    }
    free(own_prompt);
    free(own_resp);
    return rc < 0 ? rc : 0;
}
