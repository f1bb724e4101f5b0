/* warc.c: the WARC record reader and HTTP response decoder of warc.h. A record
 * is "WARC/1.x" CRLF, header fields "Name: value" CRLF, an empty line, then
 * Content-Length bytes of block and CRLF CRLF (ISO 28500:2017, section 4). */
#include "warc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"

#define MAX_HEADER (1u << 20) /* a record header longer than this is garbage */

int llm_warc_open(struct llm_warc_reader *r, struct llm_zsrc *z)
{
    memset(r, 0, sizeof(*r));
    r->z = *z;
    memset(z, 0, sizeof(*z));
    int rc = llm_zsrc_fill(&r->z, 5);
    if (!rc && (llm_zsrc_avail(&r->z) < 5 || memcmp(r->z.buf + r->z.start, "WARC/", 5)))
        rc = llm_err(LLM_EFORMAT, "'%s' is not a WARC file (it does not start with \"WARC/\")",
                     r->z.path);
    if (rc)
        llm_warc_close(r);
    return rc;
}

void llm_warc_close(struct llm_warc_reader *r)
{
    llm_zsrc_close(&r->z);
    free(r->hdr);
    memset(r, 0, sizeof(*r));
}

/* The next line (without CR LF) from the stream: 1 with *line/len (pointing
 * into the buffer, valid until the next fill), 0 at the end. */
static int next_line(struct llm_warc_reader *r, const char **line, size_t *len)
{
    struct llm_zsrc *z = &r->z;
    size_t want = 4096;
    for (;;) {
        int rc = llm_zsrc_fill(z, want);
        if (rc)
            return rc;
        size_t avail = llm_zsrc_avail(z);
        if (!avail)
            return 0;
        const char *s = z->buf + z->start, *nl = memchr(s, '\n', avail);
        if (nl || z->eof || avail >= MAX_HEADER) {
            size_t n = nl ? (size_t)(nl - s) : avail;
            llm_zsrc_consume(z, nl ? n + 1 : n);
            if (n && s[n - 1] == '\r')
                n--;
            *line = s, *len = n;
            return 1;
        }
        want = avail * 2;
    }
}

static const char *field(const char *hdr, size_t hdr_n, const char *name)
{
    size_t k = strlen(name);
    for (size_t i = 0; i < hdr_n; i += strlen(hdr + i) + 1)
        if (!strncasecmp(hdr + i, name, k) && hdr[i + k] == ':') {
            const char *v = hdr + i + k + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            return v;
        }
    return "";
}

static int put_hdr(struct llm_warc_reader *r, size_t *n, const char *s, size_t k)
{
    if (*n + k + 1 > r->hdr_cap) {
        size_t nc = (*n + k + 1) * 2;
        char *p = realloc(r->hdr, nc);
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory reading a WARC header");
        r->hdr = p, r->hdr_cap = nc;
    }
    memcpy(r->hdr + *n, s, k);
    r->hdr[*n + k] = '\0';
    *n += k + 1;
    return 0;
}

int llm_warc_next(struct llm_warc_reader *r, struct llm_warc_record *rec)
{
    const char *line;
    size_t len;
    int rc;
    /* the version line, skipping the separator's blank lines and any garbage */
    int garbage = 0;
    for (;;) {
        if ((rc = next_line(r, &line, &len)) <= 0)
            return rc;
        if (len >= 5 && !memcmp(line, "WARC/", 5))
            break;
        if (len && !garbage) {
            garbage = 1;
            r->resyncs++;
        }
    }
    size_t hn = 0;
    for (;;) {
        if ((rc = next_line(r, &line, &len)) < 0)
            return rc;
        if (rc == 0)
            return llm_err(LLM_EFORMAT, "'%s': truncated WARC record %llu (the file ends in "
                           "its header)", r->z.path, (unsigned long long)r->number + 1);
        if (!len)
            break;
        if (hn + len > MAX_HEADER)
            return llm_err(LLM_EFORMAT, "'%s': WARC record %llu has a header over %u bytes",
                           r->z.path, (unsigned long long)r->number + 1, MAX_HEADER);
        if ((rc = put_hdr(r, &hn, line, len)))
            return rc;
    }
    r->number++;
    const char *cl = field(r->hdr, hn, "Content-Length");
    char *end;
    unsigned long long blen = strtoull(cl, &end, 10);
    if (!*cl || !isdigit((unsigned char)*cl) || (*end && !isspace((unsigned char)*end)))
        return llm_err(LLM_EFORMAT, "'%s': WARC record %llu has no valid Content-Length",
                       r->z.path, (unsigned long long)r->number);
    size_t lim = r->z.max_buf > 2 * MAX_HEADER ? r->z.max_buf - MAX_HEADER : MAX_HEADER;
    if (blen > lim) { /* skipped without holding it: read through in pieces */
        for (unsigned long long left = blen; left;) {
            if ((rc = llm_zsrc_fill(&r->z, 1u << 20)))
                return rc;
            size_t k = llm_zsrc_avail(&r->z) < left ? llm_zsrc_avail(&r->z) : (size_t)left;
            if (!k)
                return llm_err(LLM_EFORMAT, "'%s': truncated WARC record %llu",
                               r->z.path, (unsigned long long)r->number);
            llm_zsrc_consume(&r->z, k);
            left -= k;
        }
        return llm_err(LLM_EINVAL, "'%s': WARC record %llu is %llu bytes, over the %zu-byte "
                       "limit; skipped", r->z.path, (unsigned long long)r->number, blen, lim);
    }
    if ((rc = llm_zsrc_fill(&r->z, (size_t)blen)))
        return rc;
    if (llm_zsrc_avail(&r->z) < blen)
        return llm_err(LLM_EFORMAT, "'%s': truncated WARC record %llu (%zu of %llu bytes)",
                       r->z.path, (unsigned long long)r->number, llm_zsrc_avail(&r->z), blen);
    rec->type = field(r->hdr, hn, "WARC-Type");
    rec->target_uri = field(r->hdr, hn, "WARC-Target-URI");
    rec->record_id = field(r->hdr, hn, "WARC-Record-ID");
    rec->content_type = field(r->hdr, hn, "Content-Type");
    rec->block = r->z.buf + r->z.start;
    rec->block_len = (size_t)blen;
    rec->number = r->number;
    llm_zsrc_consume(&r->z, (size_t)blen); /* the bytes stay put until the next fill */
    return 1;
}

/* ---- HTTP responses ---- */

static int grow(char **buf, size_t *cap, size_t need, size_t max)
{
    if (need > max)
        return llm_err(LLM_EFORMAT, "HTTP body over the %zu-byte limit", max);
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 1u << 16;
    while (nc < need)
        nc *= 2;
    if (nc > max)
        nc = max;
    char *p = realloc(*buf, nc);
    if (!p)
        return llm_err(LLM_ENOMEM, "out of memory decoding an HTTP body");
    *buf = p, *cap = nc;
    return 0;
}

/* Transfer-Encoding: chunked (RFC 9112, section 7.1): hex size, CRLF, data,
 * CRLF, ..., a zero size ends it. Decodes in place (the output never outruns
 * the input). A body cut short keeps what arrived. */
static int dechunk(char *s, size_t n, size_t *out)
{
    size_t i = 0, w = 0;
    while (i < n) {
        size_t size = 0, digits = 0;
        while (i < n && isxdigit((unsigned char)s[i])) {
            int c = s[i] | 0x20;
            if (size > ((size_t)1 << 40))
                return llm_err(LLM_EFORMAT, "bad chunk size in a chunked HTTP body");
            size = size * 16 + (size_t)(c <= '9' ? c - '0' : c - 'a' + 10);
            i++, digits++;
        }
        if (!digits)
            return llm_err(LLM_EFORMAT, "bad chunk size in a chunked HTTP body");
        const char *nl = memchr(s + i, '\n', n - i); /* chunk extensions end at the line end */
        if (!nl)
            break;
        i = (size_t)(nl - s) + 1;
        if (!size)
            break;
        size_t k = size < n - i ? size : n - i;
        memmove(s + w, s + i, k);
        w += k, i += k;
        while (i < n && (s[i] == '\r' || s[i] == '\n'))
            i++;
    }
    *out = w;
    return 0;
}

/* Content-Encoding gzip or deflate (zlib-wrapped, or raw as some servers send). */
static int inflate_body(const char *s, size_t n, int gzip, char **buf, size_t *cap, size_t max,
                        size_t *out)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int wbits = gzip ? 16 + MAX_WBITS : attempt ? -MAX_WBITS : MAX_WBITS;
        z_stream zs;
        memset(&zs, 0, sizeof(zs));
        if (inflateInit2(&zs, wbits) != Z_OK)
            return llm_err(LLM_ENOMEM, "out of memory for inflate");
        zs.next_in = (unsigned char *)s;
        zs.avail_in = (uInt)(n > (1u << 30) ? 1u << 30 : n);
        size_t w = 0;
        int zr, rc = 0;
        do {
            if ((rc = grow(buf, cap, w + (1u << 16), max)))
                break;
            zs.next_out = (unsigned char *)*buf + w;
            zs.avail_out = (uInt)(*cap - w);
            zr = inflate(&zs, Z_NO_FLUSH);
            w = (size_t)((char *)zs.next_out - *buf);
        } while (zr == Z_OK && zs.avail_in);
        inflateEnd(&zs);
        if (rc)
            return rc;
        if (zr == Z_STREAM_END || ((zr == Z_OK || zr == Z_BUF_ERROR) && w)) {
            *out = w; /* a body cut short keeps what arrived */
            return 0;
        }
        if (gzip)
            break;
    }
    return llm_err(LLM_EFORMAT, "corrupt %s HTTP body", gzip ? "gzip" : "deflate");
}

int llm_warc_parse_http(const char *block, size_t n, struct llm_warc_http *resp,
                        char **scratch, size_t *scratch_cap, size_t max_body)
{
    memset(resp, 0, sizeof(*resp));
    size_t i = 0;
    int chunked = 0, coding = 0; /* 1 gzip, 2 deflate, 3 other */
    for (int first = 1; i < n; first = 0) {
        const char *nl = memchr(block + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - block) : n, k = e;
        if (k > i && block[k - 1] == '\r')
            k--;
        const char *l = block + i;
        size_t len = k - i;
        i = nl ? e + 1 : n;
        if (first) {
            if (len > 9 && !strncmp(l, "HTTP/", 5)) {
                const char *sp = memchr(l, ' ', len);
                if (sp)
                    resp->status = atoi(sp + 1);
            }
            continue;
        }
        if (!len)
            break; /* end of the headers */
        if (len > 13 && !strncasecmp(l, "Content-Type:", 13)) {
            size_t a = 13;
            while (a < len && (l[a] == ' ' || l[a] == '\t'))
                a++;
            size_t b = a, m = 0;
            while (b < len && l[b] != ';' && l[b] != ' ' && m + 1 < sizeof(resp->mime))
                resp->mime[m++] = (char)tolower((unsigned char)l[b++]);
            resp->mime[m] = '\0';
            resp->charset = llm_charset_from_content_type(l + 13, len - 13);
        } else if (len > 18 && !strncasecmp(l, "Transfer-Encoding:", 18)) {
            for (size_t a = 18; a + 7 <= len; a++)
                if (!strncasecmp(l + a, "chunked", 7))
                    chunked = 1;
        } else if (len > 17 && !strncasecmp(l, "Content-Encoding:", 17)) {
            size_t a = 17;
            while (a < len && (l[a] == ' ' || l[a] == '\t'))
                a++;
            if ((len - a == 4 && !strncasecmp(l + a, "gzip", 4)) ||
                (len - a == 6 && !strncasecmp(l + a, "x-gzip", 6)))
                coding = 1;
            else if (len - a == 7 && !strncasecmp(l + a, "deflate", 7))
                coding = 2;
            else if (len - a && strncasecmp(l + a, "identity", 8))
                coding = 3;
        }
    }
    resp->body = block + i;
    resp->body_len = n - i;
    if (!chunked && !coding)
        return 0;
    if (coding == 3)
        return llm_err(LLM_EFORMAT, "unsupported HTTP content coding");
    int rc;
    const char *b = resp->body;
    size_t bl = resp->body_len;
    if (chunked) {
        if ((rc = grow(scratch, scratch_cap, bl + 1, max_body + 1)))
            return rc;
        memcpy(*scratch, b, bl);
        if ((rc = dechunk(*scratch, bl, &bl)))
            return rc;
        b = *scratch;
    }
    if (coding) {
        char *tmp = NULL;
        if (chunked) { /* inflate from the dechunked copy into a fresh buffer */
            tmp = malloc(bl ? bl : 1);
            if (!tmp)
                return llm_err(LLM_ENOMEM, "out of memory decoding an HTTP body");
            memcpy(tmp, b, bl);
            b = tmp;
        }
        rc = inflate_body(b, bl, coding == 1, scratch, scratch_cap, max_body, &bl);
        free(tmp);
        if (rc)
            return rc;
    }
    resp->body = *scratch;
    resp->body_len = bl;
    return 0;
}

int llm_warc_is_html(const char *mime, const char *body, size_t n)
{
    if (mime && *mime)
        return !strcmp(mime, "text/html") || !strcmp(mime, "application/xhtml+xml");
    size_t lim = n < 1024 ? n : 1024;
    for (size_t i = 0; i + 5 <= lim; i++)
        if (body[i] == '<' && (!strncasecmp(body + i, "<html", 5) ||
                               (i + 14 <= lim && !strncasecmp(body + i, "<!doctype html", 14))))
            return 1;
    return 0;
}
