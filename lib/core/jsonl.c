/* jsonl.c: the streaming JSON Lines reader and writer of jsonl.h. */
#include "jsonl.h"
#include "err.h"
#include "file.h"
#include "str.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1u << 20) /* bytes asked of fread at a time */

int llm_jsonl_open(struct llm_jsonl_reader *r, const char *path, size_t max_line)
{
    memset(r, 0, sizeof(*r));
    r->max_line = max_line ? max_line : LLM_JSONL_DEFAULT_MAX_LINE;
    int rc = llm_fopen_read(path, &r->f);
    if (rc)
        return rc;
    r->path = llm_strdup(strcmp(path, "-") ? path : "<stdin>");
    r->cap = CHUNK + 1;
    r->buf = llm_malloc(r->cap, "the JSONL buffer");
    if (!r->path || !r->buf) {
        llm_jsonl_close(r);
        return LLM_ENOMEM;
    }
    return 0;
}

void llm_jsonl_close(struct llm_jsonl_reader *r)
{
    if (r->f && r->f != stdin)
        fclose(r->f);
    free(r->buf);
    free(r->path);
    memset(r, 0, sizeof(*r));
}

/* Reads more input after r->end, moving the unread part to the front and
 * growing the buffer (up to max_line + 1) when it is full. */
static int fill(struct llm_jsonl_reader *r)
{
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end + 1 >= r->cap) {
        if (r->cap > r->max_line)
            return llm_err(LLM_EINVAL, "%s:%llu: line is longer than %zu bytes", r->path,
                           (unsigned long long)r->line + 1, r->max_line);
        size_t ncap = r->cap * 2 > r->max_line + 2 ? r->max_line + 2 : r->cap * 2;
        char *nb = realloc(r->buf, ncap);
        if (!nb)
            return llm_err(LLM_ENOMEM, "%s:%llu: out of memory for a %zu-byte line", r->path,
                           (unsigned long long)r->line + 1, ncap);
        r->buf = nb, r->cap = ncap;
    }
    size_t want = r->cap - 1 - r->end;
    if (want > CHUNK)
        want = CHUNK;
    size_t got = fread(r->buf + r->end, 1, want, r->f);
    r->end += got;
    if (got == 0) {
        if (ferror(r->f))
            return llm_err(LLM_EIO, "cannot read '%s': %s", r->path, strerror(errno));
        r->eof = 1;
    }
    return 0;
}

int llm_jsonl_next_line(struct llm_jsonl_reader *r, char **line, size_t *len)
{
    size_t scanned = r->start;
    for (;;) {
        char *nl = memchr(r->buf + scanned, '\n', r->end - scanned);
        if (nl || (r->eof && r->end > r->start)) {
            size_t a = r->start, b = nl ? (size_t)(nl - r->buf) : r->end;
            r->start = nl ? b + 1 : r->end;
            if (b - a > r->max_line)
                return llm_err(LLM_EINVAL, "%s:%llu: line is longer than %zu bytes", r->path,
                               (unsigned long long)r->line + 1, r->max_line);
            if (b > a && r->buf[b - 1] == '\r')
                b--;
            r->buf[b] = '\0';
            r->line++;
            *line = r->buf + a;
            *len = b - a;
            return 1;
        }
        if (r->eof)
            return 0;
        size_t off = r->end - r->start; /* bytes already scanned, kept after fill */
        int rc = fill(r);
        if (rc)
            return rc;
        scanned = r->start + off;
    }
}

int llm_jsonl_next(struct llm_jsonl_reader *r, cJSON **obj)
{
    char *s;
    size_t n;
    int rc;
    *obj = NULL;
    while ((rc = llm_jsonl_next_line(r, &s, &n)) == 1) {
        size_t i = 0;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == n)
            continue; /* blank line */
        size_t bad;
        if (!llm_utf8_valid(s, n, &bad))
            return llm_err(LLM_EINVAL, "%s:%llu: invalid UTF-8 at byte %zu", r->path,
                           (unsigned long long)r->line, bad + 1);
        const char *endp = NULL;
        cJSON *o = cJSON_ParseWithLengthOpts(s, n, &endp, 0);
        if (!o) {
            size_t col = endp ? (size_t)(endp - s) + 1 : 0;
            const char *err = cJSON_GetErrorPtr();
            if (err && err >= s && err <= s + n)
                col = (size_t)(err - s) + 1;
            return llm_err(LLM_EINVAL, "%s:%llu: invalid JSON near column %zu", r->path,
                           (unsigned long long)r->line, col);
        }
        /* cJSON stops at the end of the first value: anything after it is an error. */
        while (endp && endp < s + n && (*endp == ' ' || *endp == '\t'))
            endp++;
        if (endp && endp < s + n) {
            cJSON_Delete(o);
            return llm_err(LLM_EINVAL, "%s:%llu: text after the JSON value at column %zu",
                           r->path, (unsigned long long)r->line, (size_t)(endp - s) + 1);
        }
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return llm_err(LLM_EINVAL, "%s:%llu: expected a JSON object", r->path,
                           (unsigned long long)r->line);
        }
        *obj = o;
        return 1;
    }
    return rc;
}

int llm_jsonl_write(FILE *f, const cJSON *obj, const char *path)
{
    char *s = cJSON_PrintUnformatted(obj);
    if (!s)
        return llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
    size_t n = strlen(s);
    int rc = llm_fwrite(f, s, n, path);
    if (!rc)
        rc = llm_fwrite(f, "\n", 1, path);
    cJSON_free(s);
    return rc;
}

void llm_jsonl_records_release(struct llm_jsonl_records *r)
{
    for (int i = 0; i < r->n; i++)
        cJSON_Delete(r->v[i]);
    free(r->v), free(r->line);
    memset(r, 0, sizeof(*r));
}

int llm_jsonl_read_all(struct llm_jsonl_records *rs, const char *path, int limit)
{
    memset(rs, 0, sizeof(*rs));
    struct llm_jsonl_reader r;
    int rc = llm_jsonl_open(&r, path, 0);
    if (rc)
        return rc;
    cJSON *o;
    while ((limit <= 0 || rs->n < limit) && (rc = llm_jsonl_next(&r, &o)) == 1) {
        if (rs->n == rs->cap) {
            int cap = rs->cap ? 2 * rs->cap : 64;
            cJSON **v = realloc(rs->v, (size_t)cap * sizeof(*v));
            if (v)
                rs->v = v;
            uint64_t *l = v ? realloc(rs->line, (size_t)cap * sizeof(*l)) : NULL;
            if (!l) {
                cJSON_Delete(o);
                rc = llm_err(LLM_ENOMEM, "out of memory reading %s", path);
                break;
            }
            rs->line = l, rs->cap = cap;
        }
        rs->line[rs->n] = r.line;
        rs->v[rs->n++] = o;
    }
    llm_jsonl_close(&r);
    if (rc < 0)
        llm_jsonl_records_release(rs);
    return rc < 0 ? rc : 0;
}
