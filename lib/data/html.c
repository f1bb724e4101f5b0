/* html.c: the HTML-to-text converter of html.h: a single forward scan that
 * tokenizes markup the way the WHATWG HTML tokenizer recovers from errors
 * (stray '<' is text, an unterminated comment runs to the end, a tag cut by
 * the end of input is dropped) and writes text with pending line breaks, so
 * each byte is looked at about once and nothing is allocated per element. */
#include "html.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/str.h"
#include "html_entities.h"

/* ---- the elements we treat specially ---- */

enum {
    T_LINE = 1 << 0,      /* block: a line break before and after */
    T_PARA = 1 << 1,      /* paragraph-like: a blank line before and after */
    T_BR = 1 << 2,        /* <br>: one more line break */
    T_LI = 1 << 3,        /* list item: a line break and a "- " bullet */
    T_CELL = 1 << 4,      /* table cell: a tab between cells of a row */
    T_PRE = 1 << 5,       /* whitespace kept as is */
    T_VOID = 1 << 6,      /* has no content and no end tag */
    T_RAW = 1 << 7,       /* raw text / RCDATA: content up to </name> is dropped unparsed */
    T_DROP = 1 << 8,      /* subtree dropped (media, form controls, templates) */
    T_BOILER = 1 << 9,    /* subtree dropped unless keep_boilerplate (nav, footer, ...) */
    T_HEAD_OK = 1 << 10,  /* may appear inside <head> */
    T_HEAD = 1 << 11,     /* <head>: dropped up to </head> or the first body element */
    T_AUTOCLOSE = 1 << 12 /* often left unclosed: never the root of a dropped subtree */
};

struct tag {
    const char *name;
    unsigned flags;
};

/* Sorted by name (strcmp) for bsearch. Elements not listed are inline. Forms
 * keep their text (ASP.NET pages wrap the whole body in one <form>); only
 * their controls are dropped. */
static const struct tag tags[] = {
    {"address", T_LINE}, {"area", T_VOID}, {"article", T_LINE}, {"aside", T_BOILER | T_LINE},
    {"audio", T_DROP}, {"base", T_VOID | T_HEAD_OK}, {"blockquote", T_PARA},
    {"body", T_AUTOCLOSE}, {"br", T_BR | T_VOID}, {"button", T_DROP}, {"canvas", T_DROP},
    {"caption", T_LINE}, {"center", T_LINE}, {"col", T_VOID}, {"datalist", T_DROP},
    {"dd", T_LINE | T_AUTOCLOSE}, {"details", T_LINE}, {"dialog", T_LINE}, {"dir", T_LINE},
    {"div", T_LINE}, {"dl", T_PARA}, {"dt", T_LINE | T_AUTOCLOSE}, {"embed", T_VOID},
    {"fieldset", T_LINE}, {"figcaption", T_LINE}, {"figure", T_LINE},
    {"footer", T_BOILER | T_LINE}, {"form", T_LINE}, {"frameset", T_DROP}, {"h1", T_PARA},
    {"h2", T_PARA}, {"h3", T_PARA}, {"h4", T_PARA}, {"h5", T_PARA}, {"h6", T_PARA},
    {"head", T_HEAD}, {"header", T_LINE}, {"hgroup", T_LINE}, {"hr", T_LINE | T_VOID},
    {"html", T_AUTOCLOSE}, {"iframe", T_RAW}, {"img", T_VOID}, {"input", T_VOID},
    {"keygen", T_VOID}, {"legend", T_LINE}, {"li", T_LI | T_AUTOCLOSE},
    {"link", T_VOID | T_HEAD_OK}, {"main", T_LINE}, {"map", T_DROP},
    {"menu", T_BOILER | T_LINE}, {"meta", T_VOID | T_HEAD_OK}, {"nav", T_BOILER | T_LINE},
    {"noembed", T_RAW}, {"noframes", T_RAW}, {"noscript", T_RAW | T_HEAD_OK},
    {"object", T_DROP}, {"ol", T_LINE}, {"option", T_AUTOCLOSE}, {"p", T_PARA | T_AUTOCLOSE},
    {"param", T_VOID}, {"pre", T_PARA | T_PRE}, {"script", T_RAW | T_HEAD_OK},
    {"section", T_LINE}, {"select", T_DROP}, {"source", T_VOID}, {"style", T_RAW | T_HEAD_OK},
    {"summary", T_LINE}, {"svg", T_DROP}, {"table", T_PARA}, {"tbody", T_LINE | T_AUTOCLOSE},
    {"td", T_CELL | T_AUTOCLOSE}, {"template", T_DROP | T_HEAD_OK}, {"textarea", T_RAW},
    {"tfoot", T_LINE | T_AUTOCLOSE}, {"th", T_CELL | T_AUTOCLOSE},
    {"thead", T_LINE | T_AUTOCLOSE}, {"title", T_RAW | T_HEAD_OK},
    {"tr", T_LINE | T_AUTOCLOSE}, {"track", T_VOID}, {"ul", T_LINE}, {"video", T_DROP},
    {"wbr", T_VOID}, {"xmp", T_RAW},
};

static int tag_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct tag *)elem)->name);
}

static unsigned tag_flags(const char *name)
{
    const struct tag *t = bsearch(name, tags, sizeof(tags) / sizeof(*tags), sizeof(*tags), tag_cmp);
    return t ? t->flags : 0;
}

/* ---- output: text plus pending separators ---- */

struct out {
    char *p;
    size_t n, cap;
    int want;   /* line breaks wanted before the next text: 1 new line, 2 blank line */
    int space;  /* a space wanted before the next text */
    int tab;    /* a tab (the next table cell) wanted */
    int bullet; /* "- " wanted at the start of the next text */
    int trail;  /* '\n' at the end of p (0, 1, 2) */
    int oom;
};

static int reserve(struct out *o, size_t k)
{
    if (o->n + k + 1 <= o->cap)
        return 1;
    size_t nc = o->cap ? o->cap : 4096;
    while (nc < o->n + k + 1)
        nc *= 2;
    char *p = realloc(o->p, nc);
    if (!p) {
        o->oom = 1;
        return 0;
    }
    o->p = p, o->cap = nc;
    return 1;
}

/* Writes what is pending before text (never at the start of the output). */
static void flush(struct out *o)
{
    if (!reserve(o, 6))
        return;
    if (o->n) {
        if (o->want > o->trail) {
            for (int k = o->trail; k < o->want; k++)
                o->p[o->n++] = '\n';
        } else if (!o->trail && (o->tab || o->space)) {
            o->p[o->n++] = o->tab ? '\t' : ' ';
        }
    }
    if (o->bullet)
        o->p[o->n++] = '-', o->p[o->n++] = ' ';
    o->want = o->space = o->tab = o->bullet = o->trail = 0;
}

static void put_text(struct out *o, const char *s, size_t k)
{
    flush(o);
    if (!reserve(o, k))
        return;
    memcpy(o->p + o->n, s, k);
    o->n += k;
}

static void brk(struct out *o, int k)
{
    if (o->want < k)
        o->want = k;
}

static void put_br(struct out *o)
{
    int w = (o->want > o->trail ? o->want : o->trail) + 1;
    o->want = w > 2 ? 2 : w;
}

/* A newline inside <pre>: kept, after any pending breaks. */
static void pre_newline(struct out *o)
{
    if (!o->n || !reserve(o, 4))
        return;
    for (int k = o->trail; k < o->want; k++)
        o->p[o->n++] = '\n', o->trail++;
    o->p[o->n++] = '\n';
    o->trail++;
    o->want = o->space = o->tab = 0;
}

/* ---- the converter ---- */

struct llm_html {
    char *in;          /* the page as valid UTF-8, when it had to be converted */
    size_t in_cap;
    struct out o;
    int keep_boiler;
    int pre;           /* <pre> depth */
    char skip[16];     /* the element whose subtree is being dropped ("" = none) */
    int skip_depth;    /* its nesting depth */
    int skip_head;     /* the subtree is <head> */
};

int llm_html_new(struct llm_html **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : llm_err(LLM_ENOMEM, "out of memory for the HTML converter");
}

void llm_html_free(struct llm_html *h)
{
    if (!h)
        return;
    free(h->in);
    free(h->o.p);
    free(h);
}

/* Byte classes of the text scan. */
enum { C_TEXT, C_LT, C_AMP, C_WS, C_CTRL, C_C2 };
static unsigned char cls[256];

static void init_classes(void)
{
    for (int c = 0; c < 256; c++) {
        unsigned char k = C_TEXT;
        if (c == '<')
            k = C_LT;
        else if (c == '&')
            k = C_AMP;
        else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f')
            k = C_WS;
        else if (c < 0x20 || c == 0x7F)
            k = C_CTRL;
        else if (c == 0xC2) /* U+0080..U+00BF: C1 controls and no-break space inside */
            k = C_C2;
        cls[c] = k;
    }
}

static int is_alpha(unsigned char c)
{
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static int is_alnum(unsigned char c)
{
    return is_alpha(c) || (c >= '0' && c <= '9');
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* Where the next '>' at or after i ends (one past it), or n. */
static size_t past_gt(const char *s, size_t n, size_t i)
{
    const char *p = i < n ? memchr(s + i, '>', n - i) : NULL;
    return p ? (size_t)(p - s) + 1 : n;
}

/* Reads a tag name at s[i..): lowercased into name (empty when longer than 15
 * bytes, so it matches nothing); returns where the name ends. */
static size_t tag_name(const char *s, size_t n, size_t i, char name[16])
{
    size_t j = i, k = 0;
    while (j < n && !is_space((unsigned char)s[j]) && s[j] != '/' && s[j] != '>') {
        if (k < 15)
            name[k] = (char)(s[j] >= 'A' && s[j] <= 'Z' ? s[j] | 0x20 : s[j]);
        k++, j++;
    }
    name[k < 16 ? k : 0] = '\0';
    return j;
}

static int value_has(const char *v, size_t n, const char *needle)
{
    /* case-insensitive, spaces ignored: "Display : None" has "display:none" */
    size_t m = strlen(needle);
    for (size_t i = 0; i < n; i++) {
        size_t a = i, b = 0;
        while (a < n && b < m) {
            unsigned char c = (unsigned char)v[a];
            if (c == ' ' || c == '\t') {
                a++;
                continue;
            }
            if ((c >= 'A' && c <= 'Z' ? c | 0x20 : c) != (unsigned char)needle[b])
                break;
            a++, b++;
        }
        if (b == m)
            return 1;
    }
    return 0;
}

/* Attributes that mark an element as hidden or as boilerplate. */
enum { A_HIDDEN = 1, A_BOILER = 2 };

static int attr_kind(const char *an, size_t anl, const char *v, size_t vl)
{
    if (anl == 6 && !strncasecmp(an, "hidden", 6))
        return A_HIDDEN;
    if (anl == 11 && !strncasecmp(an, "aria-hidden", 11) && vl == 4 && !strncasecmp(v, "true", 4))
        return A_HIDDEN;
    if (anl == 5 && !strncasecmp(an, "style", 5) &&
        (value_has(v, vl, "display:none") || value_has(v, vl, "visibility:hidden")))
        return A_HIDDEN;
    if (anl == 4 && !strncasecmp(an, "role", 4)) {
        static const char *const roles[] = {"navigation", "contentinfo", "complementary", "menu",
                                            "menubar"};
        for (size_t r = 0; r < sizeof(roles) / sizeof(*roles); r++)
            if (vl == strlen(roles[r]) && !strncasecmp(v, roles[r], vl))
                return A_BOILER;
    }
    return 0;
}

/* Scans the attributes of a start tag from i to its '>': returns one past
 * it, or n when the input ends inside the tag (the tag is then dropped, as
 * the HTML tokenizer does). *kinds gets A_* bits, *selfclose a final "/>". */
static size_t tag_attrs(const char *s, size_t n, size_t i, int *kinds, int *selfclose)
{
    *kinds = 0, *selfclose = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '>')
            return i + 1;
        if (is_space(c)) {
            i++;
            continue;
        }
        if (c == '/') {
            *selfclose = i + 1 < n && s[i + 1] == '>';
            i++;
            continue;
        }
        *selfclose = 0;
        size_t a = i;
        i++; /* an attribute name may start with '=' */
        while (i < n && !is_space((unsigned char)s[i]) && s[i] != '/' && s[i] != '>' && s[i] != '=')
            i++;
        size_t anl = i - a;
        while (i < n && is_space((unsigned char)s[i]))
            i++;
        const char *v = NULL;
        size_t vl = 0;
        if (i < n && s[i] == '=') {
            i++;
            while (i < n && is_space((unsigned char)s[i]))
                i++;
            if (i < n && (s[i] == '"' || s[i] == '\'')) {
                const char *q = memchr(s + i + 1, s[i], n - i - 1);
                if (!q)
                    return n;
                v = s + i + 1, vl = (size_t)(q - v);
                i = (size_t)(q - s) + 1;
            } else {
                v = s + i;
                while (i < n && !is_space((unsigned char)s[i]) && s[i] != '>')
                    i++;
                vl = (size_t)(s + i - v);
            }
        }
        *kinds |= attr_kind(s + a, anl, v, vl);
    }
    return n;
}

/* After the start tag of a raw-text element (script, style, title, ...):
 * one past its end tag "</name" + space, '/' or '>', or n. */
static size_t skip_raw(const char *s, size_t n, size_t i, const char *name)
{
    size_t k = strlen(name);
    while (i < n) {
        const char *p = memchr(s + i, '<', n - i);
        if (!p)
            return n;
        size_t j = (size_t)(p - s);
        if (j + 2 + k <= n && s[j + 1] == '/' && !strncasecmp(s + j + 2, name, k) &&
            (j + 2 + k == n || is_space((unsigned char)s[j + 2 + k]) || s[j + 2 + k] == '/' ||
             s[j + 2 + k] == '>'))
            return past_gt(s, n, j + 2 + k);
        i = j + 1;
    }
    return n;
}

static void start_skip(struct llm_html *h, const char *name, int head)
{
    strcpy(h->skip, name);
    h->skip_depth = 1;
    h->skip_head = head;
}

static void end_skip(struct llm_html *h)
{
    h->skip[0] = '\0';
    h->skip_depth = 0;
    h->skip_head = 0;
    brk(&h->o, 1); /* text on both sides of a dropped block stays apart */
}

/* A start tag named name whose attributes end at end; returns where to go on. */
static size_t start_tag(struct llm_html *h, const char *s, size_t n, const char *name,
                        int kinds, int selfclose, size_t end)
{
    unsigned f = tag_flags(name);
    if (h->skip_depth) {
        if (h->skip_head && !(f & T_HEAD_OK) && strcmp(name, "head") && strcmp(name, "html")) {
            end_skip(h); /* a body element: <head> is over, as browsers decide */
        } else {
            if (!strcmp(name, h->skip) && !selfclose && !(f & T_VOID))
                h->skip_depth++;
            return f & T_RAW ? skip_raw(s, n, end, name) : end;
        }
    }
    if (f & T_HEAD) {
        start_skip(h, name, 1);
        return end;
    }
    if (f & T_RAW) {
        brk(&h->o, f & T_HEAD_OK ? 0 : 1);
        return skip_raw(s, n, end, name);
    }
    int drop = (f & T_DROP) || ((f & T_BOILER) && !h->keep_boiler) ||
               (kinds && !h->keep_boiler && !(f & (T_AUTOCLOSE | T_VOID)));
    if (drop && name[0] && !selfclose && !(f & T_VOID)) {
        brk(&h->o, 1);
        start_skip(h, name, 0);
        return end;
    }
    struct out *o = &h->o;
    if (f & T_PARA)
        brk(o, 2);
    else if (f & (T_LINE | T_LI))
        brk(o, 1);
    if (f & T_LI)
        o->bullet = 1;
    if (f & T_BR)
        put_br(o);
    if ((f & T_CELL) && o->n && !o->trail)
        o->tab = 1;
    if (f & T_PRE) {
        h->pre++;
        if (end < n && s[end] == '\n') /* a newline right after <pre> is not content */
            end++;
        else if (end + 1 < n && s[end] == '\r' && s[end + 1] == '\n')
            end += 2;
    }
    return end;
}

static void end_tag(struct llm_html *h, const char *name)
{
    unsigned f = tag_flags(name);
    if (h->skip_depth) {
        if (!strcmp(name, h->skip)) {
            if (--h->skip_depth == 0)
                end_skip(h);
        } else if (!h->skip_head && (!strcmp(name, "body") || !strcmp(name, "html"))) {
            end_skip(h); /* an unclosed boilerplate element ends with the page */
        }
        return;
    }
    struct out *o = &h->o;
    if (f & T_PARA)
        brk(o, 2);
    else if (f & (T_LINE | T_LI))
        brk(o, 1);
    if (f & T_BR)
        put_br(o); /* browsers read </br> as <br> */
    if ((f & T_PRE) && h->pre > 0)
        h->pre--;
}

/* Markup at s[i] == '<'; returns where to go on. */
static size_t markup(struct llm_html *h, const char *s, size_t n, size_t i)
{
    char name[16];
    unsigned char c1 = i + 1 < n ? (unsigned char)s[i + 1] : 0;
    if (c1 == '!') {
        if (i + 4 <= n && s[i + 2] == '-' && s[i + 3] == '-') {
            size_t j = i + 4;
            if (j < n && s[j] == '>')
                return j + 1; /* "<!-->" */
            if (j + 1 < n && s[j] == '-' && s[j + 1] == '>')
                return j + 2; /* "<!--->" */
            const char *e = memmem(s + j, n - j, "-->", 3);
            return e ? (size_t)(e - s) + 3 : n; /* unterminated: to the end, as browsers do */
        }
        return past_gt(s, n, i + 2); /* <!DOCTYPE ...>, <![CDATA[...]]>: a bogus comment */
    }
    if (c1 == '?')
        return past_gt(s, n, i + 2);
    if (c1 == '/') {
        if (i + 2 < n && is_alpha((unsigned char)s[i + 2])) {
            size_t j = tag_name(s, n, i + 2, name);
            end_tag(h, name);
            return past_gt(s, n, j);
        }
        return past_gt(s, n, i + 2); /* "</>" and "</ 3": dropped */
    }
    if (is_alpha(c1)) {
        size_t j = tag_name(s, n, i + 1, name);
        int kinds, selfclose;
        size_t end = tag_attrs(s, n, j, &kinds, &selfclose);
        return start_tag(h, s, n, name, kinds, selfclose, end);
    }
    if (!h->skip_depth)
        put_text(&h->o, "<", 1); /* a stray '<' is text */
    return i + 1;
}

static int ent_cmp(const char *name, size_t k, const char *ent)
{
    int c = strncmp(name, ent, k);
    return c ? c : (ent[k] ? -1 : 0);
}

static const struct llm_html_entity *ent_find(const char *name, size_t k)
{
    size_t lo = 0, hi = llm_html_n_entities;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = ent_cmp(name, k, llm_html_entities[mid].name);
        if (!c)
            return &llm_html_entities[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Writes one decoded character: whitespace (including U+00A0) as a pending
 * space, controls dropped, the rest as text. */
static void put_char(struct llm_html *h, uint32_t cp)
{
    char buf[4];
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' || cp == 0xA0) {
        if (h->pre && cp == '\n')
            pre_newline(&h->o);
        else if (h->pre)
            put_text(&h->o, " ", 1);
        else if (h->o.n)
            h->o.space = 1;
        return;
    }
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0))
        return;
    put_text(&h->o, buf, llm_charset_put_utf8(buf, cp));
}

/* A character reference at s[i] == '&' (WHATWG "character reference state",
 * as in text content): returns where to go on. */
static size_t amp(struct llm_html *h, const char *s, size_t n, size_t i)
{
    size_t j = i + 1;
    if (j < n && s[j] == '#') {
        int hex = j + 1 < n && (s[j + 1] | 0x20) == 'x';
        size_t k = j + 1 + (size_t)hex, d0 = k;
        uint32_t v = 0;
        for (; k < n; k++) {
            unsigned char c = (unsigned char)s[k];
            int dig = c >= '0' && c <= '9' ? c - '0'
                    : hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
            if (dig < 0)
                break;
            v = v > 0x10FFFF ? v : v * (hex ? 16 : 10) + (uint32_t)dig;
        }
        if (k == d0) { /* "&#" with no digits: text */
            put_text(&h->o, "&", 1);
            return i + 1;
        }
        if (k < n && s[k] == ';')
            k++;
        if (v == 0 || v > 0x10FFFF)
            v = 0xFFFD;
        else if (v >= 0x80 && v < 0xA0)
            v = llm_charset_cp1252((unsigned char)v); /* the spec's numeric-reference fixups */
        put_char(h, v);
        return k;
    }
    size_t k = j;
    while (k < n && k - j < 32 && is_alnum((unsigned char)s[k]))
        k++;
    const struct llm_html_entity *e = NULL;
    size_t used = 0;
    if (k < n && s[k] == ';' && k > j && (e = ent_find(s + j, k - j)))
        used = k + 1 - i;
    for (size_t m = k - j; !e && m >= 2; m--) /* the longest legacy name without ';' */
        if ((e = ent_find(s + j, m)) && !e->legacy)
            e = NULL;
        else if (e)
            used = 1 + m;
    if (!e) {
        put_text(&h->o, "&", 1);
        return i + 1;
    }
    const unsigned char *u = (const unsigned char *)e->utf8;
    if (u[0] < 0x80 && !u[1])
        put_char(h, u[0]);
    else if (u[0] == 0xC2 && u[1] == 0xA0 && !u[2])
        put_char(h, 0xA0);
    else
        put_text(&h->o, e->utf8, strlen(e->utf8));
    return i + used;
}

/* The text scan over valid UTF-8 s[0..n). */
static void scan(struct llm_html *h, const char *s, size_t n)
{
    struct out *o = &h->o;
    size_t i = 0;
    while (i < n && !o->oom) {
        if (h->skip_depth) {
            const char *lt = memchr(s + i, '<', n - i);
            if (!lt)
                break;
            i = markup(h, s, n, (size_t)(lt - s));
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        switch (cls[c]) {
        case C_TEXT: {
            size_t j = i + 1;
            while (j < n && cls[(unsigned char)s[j]] == C_TEXT)
                j++;
            put_text(o, s + i, j - i);
            i = j;
            break;
        }
        case C_LT:
            i = markup(h, s, n, i);
            break;
        case C_AMP:
            i = amp(h, s, n, i);
            break;
        case C_WS:
            if (h->pre) {
                if (c == '\n')
                    pre_newline(o);
                else if (c != '\r')
                    put_text(o, " ", 1);
            } else if (o->n) {
                o->space = 1;
            }
            i++;
            break;
        case C_CTRL:
            i++;
            break;
        default: { /* 0xC2: U+0080..U+00BF (the input is valid UTF-8: a second byte follows) */
            unsigned char c2 = (unsigned char)s[i + 1];
            if (c2 == 0xA0)
                put_char(h, 0xA0);
            else if (c2 >= 0xA0)
                put_text(o, s + i, 2);
            i += 2;
        }
        }
    }
}

enum llm_charset llm_html_declared_charset(const char *html, size_t n)
{
    const unsigned char *u = (const unsigned char *)html;
    if (n >= 3 && u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF)
        return LLM_CHARSET_UTF8;
    if (n >= 2 && ((u[0] == 0xFF && u[1] == 0xFE) || (u[0] == 0xFE && u[1] == 0xFF)))
        return LLM_CHARSET_UNSUPPORTED; /* UTF-16 */
    size_t lim = n < 4096 ? n : 4096;
    for (size_t i = 0; i + 5 < lim; i++) {
        const char *p = memchr(html + i, '<', lim - i);
        if (!p)
            break;
        i = (size_t)(p - html);
        if (i + 5 < lim && !strncasecmp(p + 1, "meta", 4) && is_space((unsigned char)p[5])) {
            size_t e = past_gt(html, lim, i + 5);
            enum llm_charset cs = llm_charset_from_content_type(p + 5, e - i - 5);
            if (cs != LLM_CHARSET_AUTO)
                return cs;
        }
    }
    return LLM_CHARSET_AUTO;
}

/* The page as valid UTF-8: html itself when it already is, else converted into h->in. */
static int to_utf8(struct llm_html *h, const char *html, size_t n, enum llm_charset cs,
                   const char **s, size_t *m, struct llm_html_info *info)
{
    size_t replaced = 0;
    if (cs != LLM_CHARSET_CP1252 && llm_utf8_valid(html, n, NULL)) {
        *s = html, *m = n;
        cs = cs == LLM_CHARSET_AUTO ? LLM_CHARSET_UTF8 : cs;
    } else {
        if (cs == LLM_CHARSET_AUTO)
            cs = LLM_CHARSET_CP1252; /* undeclared and not UTF-8: the web's default */
        if (n > (SIZE_MAX - 1) / 3)
            return llm_err(LLM_ENOMEM, "page too large");
        if (3 * n + 1 > h->in_cap) {
            char *p = realloc(h->in, 3 * n + 1);
            if (!p)
                return llm_err(LLM_ENOMEM, "out of memory converting a page to UTF-8");
            h->in = p, h->in_cap = 3 * n + 1;
        }
        *m = llm_charset_to_utf8(html, n, cs, h->in, &replaced);
        *s = h->in;
    }
    if (info)
        info->charset = cs, info->replaced = replaced;
    return 0;
}

int llm_html_to_text(struct llm_html *h, const char *html, size_t n,
                     const struct llm_html_opts *o, const char **text, size_t *len,
                     struct llm_html_info *info)
{
    static const struct llm_html_opts defaults = {0};
    if (!o)
        o = &defaults;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_classes);
    enum llm_charset cs = o->charset;
    if (cs == LLM_CHARSET_AUTO)
        cs = llm_html_declared_charset(html, n);
    const unsigned char *u = (const unsigned char *)html;
    if (n >= 3 && u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF)
        html += 3, n -= 3;
    const char *s = NULL;
    size_t m = 0;
    int rc = to_utf8(h, html, n, cs, &s, &m, info);
    if (rc)
        return rc;
    struct out *out = &h->o;
    out->n = 0, out->want = out->space = out->tab = out->bullet = out->trail = out->oom = 0;
    h->keep_boiler = o->keep_boilerplate;
    h->pre = 0, h->skip_depth = 0, h->skip_head = 0, h->skip[0] = '\0';
    if (!reserve(out, m / 2 + 64))
        return llm_err(LLM_ENOMEM, "out of memory extracting text");
    scan(h, s, m);
    if (out->oom)
        return llm_err(LLM_ENOMEM, "out of memory extracting text");
    while (out->n && out->p[out->n - 1] == '\n') /* pre's trailing newlines */
        out->n--;
    out->p[out->n] = '\0';
    *text = out->p, *len = out->n;
    return 0;
}
