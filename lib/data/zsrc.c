/* zsrc.c: the plain-or-gzip buffered input of zsrc.h (zlib inflate with the
 * gzip wrapper, reset at the end of each member so concatenated members read
 * as one stream). */
#include "zsrc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/str.h"

#define RAW_CHUNK (1u << 20)

int llm_zsrc_open(struct llm_zsrc *z, FILE *f, const char *path, size_t max_buf)
{
    memset(z, 0, sizeof(*z));
    z->f = f;
    z->max_buf = max_buf ? max_buf : (size_t)1 << 30;
    z->path = llm_strdup(strcmp(path, "-") ? path : "<stdin>");
    z->raw = llm_malloc(RAW_CHUNK, "the input buffer");
    z->zs = llm_calloc(1, sizeof(*z->zs), "the input buffer");
    if (!z->path || !z->raw || !z->zs) {
        llm_zsrc_close(z);
        return LLM_ENOMEM;
    }
    /* the first two bytes decide; they stay in raw as the first input */
    while (z->zs->avail_in < 2) {
        size_t got = fread(z->raw + z->zs->avail_in, 1, 2 - z->zs->avail_in, f);
        if (!got)
            break;
        z->zs->avail_in += (uInt)got;
    }
    if (ferror(f)) {
        int rc = llm_err(LLM_EIO, "cannot read '%s': %s", z->path, strerror(errno));
        llm_zsrc_close(z);
        return rc;
    }
    z->zs->next_in = z->raw;
    z->gz = z->zs->avail_in == 2 && z->raw[0] == 0x1f && z->raw[1] == 0x8b;
    if (z->gz) {
        if (inflateInit2(z->zs, 16 + MAX_WBITS) != Z_OK) {
            llm_zsrc_close(z);
            return llm_err(LLM_ENOMEM, "out of memory for gzip");
        }
        z->zs_live = 1;
    }
    return 0;
}

void llm_zsrc_close(struct llm_zsrc *z)
{
    if (z->zs_live)
        inflateEnd(z->zs);
    free(z->zs);
    if (z->f && z->f != stdin)
        fclose(z->f);
    free(z->raw);
    free(z->buf);
    free(z->path);
    memset(z, 0, sizeof(*z));
}

/* More compressed (or plain) bytes into raw; 0 at the end of the file. */
static int read_raw(struct llm_zsrc *z, size_t *got)
{
    if (z->zs->avail_in && z->zs->next_in != z->raw)
        memmove(z->raw, z->zs->next_in, z->zs->avail_in);
    z->zs->next_in = z->raw;
    *got = fread(z->raw + z->zs->avail_in, 1, RAW_CHUNK - z->zs->avail_in, z->f);
    if (!*got && ferror(z->f))
        return llm_err(LLM_EIO, "cannot read '%s': %s", z->path, strerror(errno));
    z->zs->avail_in += (uInt)*got;
    return 0;
}

/* Decodes into buf[end..cap): at least one byte, unless the input ended. */
static int produce(struct llm_zsrc *z)
{
    size_t room = z->cap - z->end, got;
    int rc;
    if (!z->gz) {
        size_t n = z->zs->avail_in < room ? z->zs->avail_in : room;
        if (n) { /* the sniffed first bytes */
            memcpy(z->buf + z->end, z->zs->next_in, n);
            z->zs->next_in += n, z->zs->avail_in -= (uInt)n, z->end += n;
            return 0;
        }
        got = fread(z->buf + z->end, 1, room, z->f);
        if (!got && ferror(z->f))
            return llm_err(LLM_EIO, "cannot read '%s': %s", z->path, strerror(errno));
        z->end += got;
        if (!got)
            z->eof = 1;
        return 0;
    }
    for (;;) {
        if (!z->zs->avail_in) {
            if ((rc = read_raw(z, &got)))
                return rc;
            if (!got) {
                if (!z->member_done)
                    return llm_err(LLM_EFORMAT, "'%s': truncated gzip data (the file ends "
                                   "inside a compressed member)", z->path);
                z->eof = 1;
                return 0;
            }
        }
        if (z->member_done) { /* another member follows */
            if (inflateReset(z->zs) != Z_OK)
                return llm_err(LLM_EFORMAT, "'%s': corrupt gzip data", z->path);
            z->member_done = 0;
        }
        z->zs->next_out = (unsigned char *)z->buf + z->end;
        z->zs->avail_out = (uInt)(room > (1u << 30) ? 1u << 30 : room);
        int zr = inflate(z->zs, Z_NO_FLUSH);
        size_t made = (size_t)((char *)z->zs->next_out - (z->buf + z->end));
        z->end += made;
        if (zr == Z_STREAM_END)
            z->member_done = 1;
        else if (zr != Z_OK && zr != Z_BUF_ERROR)
            return llm_err(LLM_EFORMAT, "'%s': corrupt gzip data at byte %llu of the "
                           "decompressed stream (%s)", z->path,
                           (unsigned long long)(z->consumed + (z->end - z->start)),
                           z->zs->msg ? z->zs->msg : "inflate failed");
        if (made)
            return 0;
    }
}

int llm_zsrc_fill(struct llm_zsrc *z, size_t want)
{
    if (want > z->max_buf)
        return llm_err(LLM_EINVAL, "'%s': a record of %zu bytes is larger than the %zu-byte limit",
                       z->path, want, z->max_buf);
    while (z->end - z->start < want && !z->eof) {
        if (z->start && (z->end == z->start || z->cap - z->end < RAW_CHUNK)) {
            memmove(z->buf, z->buf + z->start, z->end - z->start);
            z->end -= z->start, z->start = 0;
        }
        size_t need = want > RAW_CHUNK ? want : RAW_CHUNK;
        if (z->cap - z->start < need || z->cap == z->end) {
            size_t nc = z->cap ? z->cap : RAW_CHUNK;
            while (nc - z->start < need || nc == z->end)
                nc *= 2;
            char *p = realloc(z->buf, nc + 1);
            if (!p)
                return llm_err(LLM_ENOMEM, "out of memory reading '%s'", z->path);
            z->buf = p, z->cap = nc;
        }
        int rc = produce(z);
        if (rc)
            return rc;
    }
    return 0;
}

void llm_zsrc_consume(struct llm_zsrc *z, size_t n)
{
    z->start += n;
    z->consumed += n;
}
