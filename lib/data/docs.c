/* docs.c: the JSONL document stream of docs.h: lines split by the jsonl reader,
 * parsed (in parallel for batches), bad ones skipped and counted, and written
 * back raw when unchanged. */
#include "docs.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "core/str.h"

/* Why a line is not a good document (formatted only when reported, so the
 * parallel parse stores two integers per line and no text). */
enum line_status {
    LINE_OK,
    LINE_BLANK,
    LINE_UTF8,     /* detail: offset of the first bad byte */
    LINE_JSON,     /* detail: column of the parse error (0 = unknown) */
    LINE_TRAILING, /* detail: column of the text after the value */
    LINE_NOT_OBJ,
    LINE_NO_FIELD, /* the text field is absent */
    LINE_NOT_STR,  /* the text field is not a string */
};

struct llm_docs_line {
    size_t off;        /* in batch mem */
    size_t len;
    uint64_t lineno;
    const char *path;
    int status;
    size_t detail;
};

static const char *display_path(const char *p)
{
    return strcmp(p, "-") ? p : "<stdin>";
}

/* ---- documents ---- */

static void set_id(struct llm_doc *d)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(d->obj, "id");
    d->id = NULL;
    if (cJSON_IsString(id)) {
        d->id = id->valuestring;
    } else if (cJSON_IsNumber(id)) {
        double v = id->valuedouble;
        if (v == floor(v) && fabs(v) < 9007199254740992.0) /* 2^53: exact integers */
            snprintf(d->idbuf, sizeof(d->idbuf), "%lld", (long long)v);
        else
            snprintf(d->idbuf, sizeof(d->idbuf), "%.17g", v);
        d->id = d->idbuf;
    }
}

/* Parses line s[0..n) (NUL-terminated at n) into d. Thread-safe except that
 * cJSON records its last error in a global on failure (benign: we never read it). */
static int parse_line(const char *s, size_t n, const char *field, struct llm_doc *d, size_t *detail)
{
    memset(d, 0, sizeof(*d));
    *detail = 0;
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i == n)
        return LINE_BLANK;
    size_t bad;
    if (!llm_utf8_valid(s, n, &bad)) {
        *detail = bad + 1;
        return LINE_UTF8;
    }
    const char *endp = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(s, n, &endp, 0);
    if (!o) {
        *detail = endp && endp >= s && endp <= s + n ? (size_t)(endp - s) + 1 : 0;
        return LINE_JSON;
    }
    while (endp && endp < s + n && (*endp == ' ' || *endp == '\t'))
        endp++;
    int st = LINE_OK;
    const cJSON *t = NULL;
    if (endp && endp < s + n) {
        *detail = (size_t)(endp - s) + 1;
        st = LINE_TRAILING;
    } else if (!cJSON_IsObject(o)) {
        st = LINE_NOT_OBJ;
    } else if (!(t = cJSON_GetObjectItemCaseSensitive(o, field))) {
        st = LINE_NO_FIELD;
    } else if (!cJSON_IsString(t)) {
        st = LINE_NOT_STR;
    }
    if (st != LINE_OK) {
        cJSON_Delete(o);
        return st;
    }
    d->obj = o;
    d->field = field;
    d->text = t->valuestring;
    d->text_len = strlen(t->valuestring);
    d->raw = s;
    d->raw_len = n;
    set_id(d);
    return LINE_OK;
}

static void describe(char *buf, size_t cap, int st, size_t detail, const char *field)
{
    switch (st) {
    case LINE_UTF8: snprintf(buf, cap, "invalid UTF-8 at byte %zu", detail); break;
    case LINE_JSON: snprintf(buf, cap, "invalid JSON near column %zu", detail); break;
    case LINE_TRAILING: snprintf(buf, cap, "text after the JSON value at column %zu", detail); break;
    case LINE_NOT_OBJ: snprintf(buf, cap, "expected a JSON object"); break;
    case LINE_NO_FIELD: snprintf(buf, cap, "no \"%s\" field", field); break;
    case LINE_NOT_STR: snprintf(buf, cap, "the \"%s\" field is not a string", field); break;
    default: snprintf(buf, cap, "bad document"); break;
    }
}

int llm_doc_new(struct llm_doc *d, const char *id, const char *field, const char *text, size_t n)
{
    memset(d, 0, sizeof(*d));
    d->field = field;
    d->obj = cJSON_CreateObject();
    if (!d->obj)
        return llm_err(LLM_ENOMEM, "out of memory making a document");
    if (id && !cJSON_AddStringToObject(d->obj, "id", id)) {
        llm_doc_release(d);
        return llm_err(LLM_ENOMEM, "out of memory making a document");
    }
    int rc = llm_doc_set_str(d, field, text, n);
    if (rc) {
        llm_doc_release(d);
        return rc;
    }
    set_id(d);
    d->dirty = 1;
    return 0;
}

void llm_doc_release(struct llm_doc *d)
{
    cJSON_Delete(d->obj);
    free(d->tail);
    cJSON_free(d->out);
    memset(d, 0, sizeof(*d));
}

/* Appends s[0..n) as a JSON string literal (quotes and escapes: what cJSON
 * escapes, so a raw line plus tail reads like a re-print). */
static int put_json_string(struct llm_doc *d, const char *s, size_t n)
{
    size_t need = d->tail_len + n * 6 + 3;
    if (need > d->tail_cap) {
        size_t nc = need * 2;
        char *p = realloc(d->tail, nc);
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory setting a field");
        d->tail = p, d->tail_cap = nc;
    }
    char *w = d->tail + d->tail_len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *w++ = '\\', *w++ = (char)c;
        } else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            switch (c) {
            case '\n': *w++ = '\\', *w++ = 'n'; break;
            case '\t': *w++ = '\\', *w++ = 't'; break;
            case '\r': *w++ = '\\', *w++ = 'r'; break;
            case '\b': *w++ = '\\', *w++ = 'b'; break;
            case '\f': *w++ = '\\', *w++ = 'f'; break;
            default:
                memcpy(w, "\\u00", 4), w += 4;
                *w++ = hex[c >> 4], *w++ = hex[c & 15];
            }
        } else {
            *w++ = (char)c;
        }
    }
    *w++ = '"';
    *w = '\0';
    d->tail_len = (size_t)(w - d->tail);
    return 0;
}

/* ',"key":' onto the tail. */
static int put_key(struct llm_doc *d, const char *key)
{
    size_t need = d->tail_len + 2;
    if (need > d->tail_cap) {
        char *p = realloc(d->tail, need * 2 + 64);
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory setting a field");
        d->tail = p, d->tail_cap = need * 2 + 64;
    }
    d->tail[d->tail_len++] = ',';
    int rc = put_json_string(d, key, strlen(key));
    if (rc)
        return rc;
    if (d->tail_len + 2 > d->tail_cap) {
        char *p = realloc(d->tail, d->tail_cap * 2);
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory setting a field");
        d->tail = p, d->tail_cap *= 2;
    }
    d->tail[d->tail_len++] = ':';
    d->tail[d->tail_len] = '\0';
    return 0;
}

/* Puts item under key: replaces an existing field (the document becomes dirty)
 * or adds one (kept in the tail while the document is clean). */
static int set_item(struct llm_doc *d, const char *key, cJSON *item, int *added)
{
    cJSON_free(d->out);
    d->out = NULL, d->out_len = 0;
    *added = 0;
    if (cJSON_GetObjectItemCaseSensitive(d->obj, key)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(d->obj, key, item)) {
            cJSON_Delete(item);
            return llm_err(LLM_ENOMEM, "out of memory setting \"%s\"", key);
        }
        d->dirty = 1;
        return 0;
    }
    if (!cJSON_AddItemToObject(d->obj, key, item)) {
        cJSON_Delete(item);
        return llm_err(LLM_ENOMEM, "out of memory setting \"%s\"", key);
    }
    *added = 1;
    return 0;
}

int llm_doc_set_str(struct llm_doc *d, const char *key, const char *s, size_t n)
{
    /* A string item whose buffer we fill ourselves: one copy of s, not two
     * (cJSON frees valuestring with its hooks, which are malloc/free here). */
    cJSON *item = cJSON_CreateNull();
    char *v = cJSON_malloc(n + 1);
    if (!item || !v) {
        cJSON_Delete(item);
        cJSON_free(v);
        return llm_err(LLM_ENOMEM, "out of memory setting \"%s\"", key);
    }
    memcpy(v, s, n);
    v[n] = '\0';
    item->type = cJSON_String;
    item->valuestring = v;
    int added, rc = set_item(d, key, item, &added);
    if (rc)
        return rc;
    if (d->field && !strcmp(key, d->field)) {
        d->text = v;
        d->text_len = strlen(v);
    }
    if (!strcmp(key, "id"))
        set_id(d);
    if (added && !d->dirty && d->raw) {
        if ((rc = put_key(d, key)) || (rc = put_json_string(d, s, n)))
            return rc;
    }
    return 0;
}

int llm_doc_set_num(struct llm_doc *d, const char *key, double v)
{
    if (!isfinite(v))
        return llm_err(LLM_EINVAL, "\"%s\": %g is not a JSON number", key, v);
    char num[32];
    int k = snprintf(num, sizeof(num), "%.6g", v);
    v = strtod(num, NULL); /* the object holds what the text says */
    cJSON *item = cJSON_CreateNumber(v);
    if (!item)
        return llm_err(LLM_ENOMEM, "out of memory setting \"%s\"", key);
    int added, rc = set_item(d, key, item, &added);
    if (rc)
        return rc;
    if (!strcmp(key, "id"))
        set_id(d);
    if (added && !d->dirty && d->raw) {
        if ((rc = put_key(d, key)))
            return rc;
        if (d->tail_len + (size_t)k + 1 > d->tail_cap) {
            char *p = realloc(d->tail, d->tail_len + (size_t)k + 64);
            if (!p)
                return llm_err(LLM_ENOMEM, "out of memory setting \"%s\"", key);
            d->tail = p, d->tail_cap = d->tail_len + (size_t)k + 64;
        }
        memcpy(d->tail + d->tail_len, num, (size_t)k + 1);
        d->tail_len += (size_t)k;
    }
    return 0;
}

void llm_doc_remove(struct llm_doc *d, const char *key)
{
    cJSON *item = cJSON_DetachItemFromObjectCaseSensitive(d->obj, key);
    if (!item)
        return;
    cJSON_Delete(item);
    cJSON_free(d->out);
    d->out = NULL, d->out_len = 0;
    d->dirty = 1;
    if (d->field && !strcmp(key, d->field))
        d->text = NULL, d->text_len = 0;
    if (!strcmp(key, "id"))
        set_id(d);
}

/* A clean raw line with a tail: where the closing '}' is, and whether the
 * object was empty (then the tail's leading comma is dropped). */
static size_t raw_close(const struct llm_doc *d, int *empty)
{
    size_t e = d->raw_len;
    while (e > 0 && d->raw[e - 1] != '}')
        e--;
    size_t b = e > 0 ? e - 1 : 0;
    while (b > 0 && (d->raw[b - 1] == ' ' || d->raw[b - 1] == '\t' || d->raw[b - 1] == '\r' ||
                     d->raw[b - 1] == '\n'))
        b--;
    *empty = b > 0 && d->raw[b - 1] == '{';
    return e > 0 ? e - 1 : 0;
}

int llm_doc_render(struct llm_doc *d)
{
    if (d->out)
        return 0;
    if (d->dirty || !d->raw) {
        d->out = cJSON_PrintUnformatted(d->obj);
        if (!d->out)
            return llm_err(LLM_ENOMEM, "out of memory printing a document");
        d->out_len = strlen(d->out);
        return 0;
    }
    int empty = 0;
    size_t close = d->tail_len ? raw_close(d, &empty) : d->raw_len;
    size_t skip = empty ? 1 : 0, tl = d->tail_len ? d->tail_len - skip : 0;
    size_t n = d->raw_len + tl;
    if (!(d->out = cJSON_malloc(n + 1)))
        return llm_err(LLM_ENOMEM, "out of memory printing a document");
    memcpy(d->out, d->raw, close);
    if (tl)
        memcpy(d->out + close, d->tail + skip, tl);
    memcpy(d->out + close + tl, d->raw + close, d->raw_len - close);
    d->out[n] = '\0';
    d->out_len = n;
    return 0;
}

int llm_doc_write(FILE *f, const struct llm_doc *d, const char *path)
{
    int rc;
    if (d->out) {
        rc = llm_fwrite(f, d->out, d->out_len, path);
    } else if (!d->dirty && d->raw && !d->tail_len) {
        rc = llm_fwrite(f, d->raw, d->raw_len, path);
    } else {
        struct llm_doc tmp = *d; /* renders into a copy: d is const */
        tmp.out = NULL;
        if ((rc = llm_doc_render(&tmp)))
            return rc;
        rc = llm_fwrite(f, tmp.out, tmp.out_len, path);
        cJSON_free(tmp.out);
    }
    return rc ? rc : llm_fwrite(f, "\n", 1, path);
}

/* ---- reading ---- */

static const char *const stdin_only[] = {"-"};

static int open_next(struct llm_docs_reader *r)
{
    if (r->open) {
        llm_jsonl_close(&r->jr);
        r->open = 0;
    }
    if (r->next_path >= r->npaths)
        return 0;
    int rc = llm_jsonl_open(&r->jr, r->paths[r->next_path], r->o.max_line);
    if (rc)
        return rc;
    r->next_path++;
    r->open = 1;
    return 1;
}

int llm_docs_open(struct llm_docs_reader *r, const char *const *paths, int npaths,
                  const struct llm_docs_opts *o)
{
    memset(r, 0, sizeof(*r));
    if (o)
        r->o = *o;
    if (!r->o.field)
        r->o.field = "text";
    if (r->o.max_warnings <= 0)
        r->o.max_warnings = 5;
    if (npaths <= 0)
        paths = stdin_only, npaths = 1;
    r->paths = paths, r->npaths = npaths;
    for (int i = 0; i < npaths; i++) {
        struct stat st;
        if (strcmp(paths[i], "-") && stat(paths[i], &st) == 0 && S_ISREG(st.st_mode))
            r->size += (uint64_t)st.st_size;
    }
    int rc = open_next(r);
    return rc < 0 ? rc : 0;
}

void llm_docs_close(struct llm_docs_reader *r)
{
    if (r->skipped)
        llm_warn("skipped %llu bad document%s of %llu", (unsigned long long)r->skipped,
                 r->skipped == 1 ? "" : "s", (unsigned long long)r->read);
    if (r->open)
        llm_jsonl_close(&r->jr);
    memset(r, 0, sizeof(*r));
}

/* The next line of any input: 1, 0 at the end of all, or an error. */
static int next_line(struct llm_docs_reader *r, char **s, size_t *n, const char **path)
{
    while (r->open) {
        int rc = llm_jsonl_next_line(&r->jr, s, n);
        if (rc == 1) {
            r->bytes += *n + 1;
            *path = display_path(r->paths[r->next_path - 1]);
            return 1;
        }
        if (rc < 0)
            return rc;
        if ((rc = open_next(r)) < 0)
            return rc;
    }
    return 0;
}

/* Counts a bad line: a warning for the first few, or the strict error. */
static int bad_line(struct llm_docs_reader *r, const char *path, uint64_t line, int st,
                    size_t detail)
{
    char why[128];
    describe(why, sizeof(why), st, detail, r->o.field);
    if (r->o.strict)
        return llm_err(LLM_EINVAL, "%s:%llu: %s", path, (unsigned long long)line, why);
    r->skipped++;
    if (r->skipped <= (uint64_t)r->o.max_warnings)
        llm_warn("%s:%llu: %s; document skipped", path, (unsigned long long)line, why);
    if (r->skipped == (uint64_t)r->o.max_warnings + 1)
        llm_warn("more bad documents: counting them without a warning each");
    return 0;
}

int llm_docs_next(struct llm_docs_reader *r, struct llm_doc *d)
{
    memset(d, 0, sizeof(*d));
    for (;;) {
        char *s;
        size_t n, detail;
        const char *path;
        int rc = next_line(r, &s, &n, &path);
        if (rc <= 0)
            return rc;
        int st = parse_line(s, n, r->o.field, d, &detail);
        if (st == LINE_BLANK)
            continue;
        r->read++;
        if (st == LINE_OK) {
            d->path = path;
            d->line = r->jr.line;
            return 1;
        }
        if ((rc = bad_line(r, path, r->jr.line, st, detail)))
            return rc;
    }
}

static void batch_clear(struct llm_doc_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        llm_doc_release(&b->docs[i]);
    b->n = 0, b->mem_n = 0, b->nl = 0, b->bytes = 0;
}

void llm_doc_batch_release(struct llm_doc_batch *b)
{
    batch_clear(b);
    free(b->docs), free(b->mem), free(b->lines);
    memset(b, 0, sizeof(*b));
}

static int batch_add_line(struct llm_doc_batch *b, const char *s, size_t n, uint64_t lineno,
                          const char *path)
{
    if (b->mem_n + n + 1 > b->mem_cap) {
        size_t nc = b->mem_cap ? b->mem_cap : 1u << 20;
        while (nc < b->mem_n + n + 1)
            nc *= 2;
        char *p = realloc(b->mem, nc);
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory batching documents");
        b->mem = p, b->mem_cap = nc;
    }
    if (b->nl == b->nl_cap) {
        size_t nc = b->nl_cap ? b->nl_cap * 2 : 1024;
        struct llm_docs_line *l = realloc(b->lines, nc * sizeof(*l));
        if (!l)
            return llm_err(LLM_ENOMEM, "out of memory batching documents");
        b->lines = l, b->nl_cap = nc;
    }
    memcpy(b->mem + b->mem_n, s, n);
    b->mem[b->mem_n + n] = '\0';
    b->lines[b->nl++] = (struct llm_docs_line){.off = b->mem_n, .len = n, .lineno = lineno,
                                               .path = path};
    b->mem_n += n + 1;
    return 0;
}

int llm_docs_read_batch(struct llm_docs_reader *r, struct llm_doc_batch *b, size_t max_bytes,
                        int threads)
{
    batch_clear(b);
    int rc = 0;
    while (b->bytes < max_bytes || !b->nl) {
        char *s;
        size_t n;
        const char *path;
        if ((rc = next_line(r, &s, &n, &path)) <= 0)
            break;
        b->bytes += n + 1;
        if ((rc = batch_add_line(b, s, n, r->jr.line, path)))
            return rc;
    }
    if (rc < 0)
        return rc;
    if (!b->nl)
        return 0;
    if (b->nl > b->cap) {
        struct llm_doc *d = realloc(b->docs, b->nl * sizeof(*d));
        if (!d)
            return llm_err(LLM_ENOMEM, "out of memory batching documents");
        b->docs = d, b->cap = b->nl;
    }
    long nl = (long)b->nl;
    int nt = threads > 0 ? threads : omp_get_max_threads();
    #pragma omp parallel for schedule(dynamic, 16) num_threads(nt) if (nl > 1)
    for (long i = 0; i < nl; i++) {
        struct llm_docs_line *l = &b->lines[i];
        l->status = parse_line(b->mem + l->off, l->len, r->o.field, &b->docs[i], &l->detail);
    }
    /* In input order: count, warn or fail, and keep the good ones in place. */
    size_t k = 0, i;
    for (i = 0; i < b->nl; i++) {
        struct llm_docs_line *l = &b->lines[i];
        if (l->status == LINE_BLANK)
            continue;
        r->read++;
        if (l->status != LINE_OK) {
            if ((rc = bad_line(r, l->path, l->lineno, l->status, l->detail)))
                break;
            continue;
        }
        b->docs[i].path = l->path;
        b->docs[i].line = l->lineno;
        b->docs[k++] = b->docs[i];
    }
    b->n = k;
    if (rc) { /* strict: release the good documents parsed after the bad one (i) */
        for (size_t j = i + 1; j < b->nl; j++)
            if (b->lines[j].status == LINE_OK)
                cJSON_Delete(b->docs[j].obj);
        return rc;
    }
    return 1;
}

int llm_doc_batch_write(FILE *f, const struct llm_doc_batch *b, const char *path)
{
    for (size_t i = 0; i < b->n; i++) {
        int rc = llm_doc_write(f, &b->docs[i], path);
        if (rc)
            return rc;
    }
    return 0;
}
