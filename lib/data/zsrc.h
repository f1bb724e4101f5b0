/* zsrc.h: a buffered byte stream over a file or stdin that is gunzipped on the
 * fly when it starts with the gzip magic (any number of concatenated members,
 * as .warc.gz files are), with a truncated or corrupt stream reported as an
 * error rather than read as a short file. WARC and HTML inputs read through it. */
#ifndef LLM_DATA_ZSRC_H
#define LLM_DATA_ZSRC_H

#include <stdint.h>
#include <stdio.h>
#include <zlib.h>

struct llm_zsrc {
    FILE *f;             /* owned unless it is stdin */
    char *path;          /* for messages (owned) */
    int gz;              /* the input is gzip data */
    z_stream *zs;        /* next_in/avail_in: undecoded bytes in raw; the inflate
                          * state when gz. On the heap (owned) because zlib's state
                          * points back at it: the struct itself may be moved */
    int zs_live;         /* inflateInit was called */
    int member_done;     /* the last gzip member ended (more may follow) */
    unsigned char *raw;  /* compressed bytes read from f */
    size_t raw_cap;
    char *buf;           /* decoded bytes: buf[start..end) not consumed yet (owned) */
    size_t start, end, cap;
    size_t max_buf;      /* the buffer never grows beyond this */
    int eof;             /* no more decoded bytes will come */
    uint64_t consumed;   /* decoded bytes consumed so far */
};

/* Opens f (owned when it is not stdin; path names it in messages) and looks at
 * its first bytes for the gzip magic 1f 8b. max_buf: the most bytes llm_zsrc_fill
 * may be asked to hold (0 = 1 GiB). On failure f is closed. */
int llm_zsrc_open(struct llm_zsrc *z, FILE *f, const char *path, size_t max_buf);
void llm_zsrc_close(struct llm_zsrc *z);

/* Makes at least want bytes available at z->buf + z->start (fewer only at the
 * end of input: check z->end - z->start). Returns 0, or LLM_EFORMAT for a
 * truncated or corrupt gzip stream, LLM_EIO, LLM_ENOMEM, LLM_EINVAL when want
 * is above max_buf. */
int llm_zsrc_fill(struct llm_zsrc *z, size_t want);

/* Marks n available bytes as read. */
void llm_zsrc_consume(struct llm_zsrc *z, size_t n);

/* Bytes available now (after a fill). */
static inline size_t llm_zsrc_avail(const struct llm_zsrc *z)
{
    return z->end - z->start;
}

#endif
