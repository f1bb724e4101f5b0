/* shard.c: token shard writer (atomic, streaming) and reader (mmap). */
#include "shard.h"
#include "core/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MAGIC[8] = {'L', 'L', 'M', 'S', 'H', 'A', 'R', 'D'};
#define STAGE (1u << 20)

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static void header(unsigned char h[LLM_SHARD_HEADER], uint32_t vocab, uint32_t width, uint64_t n)
{
    memset(h, 0, LLM_SHARD_HEADER);
    memcpy(h, MAGIC, 8);
    put32(h + 8, 1);
    put32(h + 12, vocab);
    put32(h + 16, width);
    put64(h + 24, n);
}

int llm_shard_writer_open(struct llm_shard_writer *w, const char *path, uint32_t vocab_size)
{
    memset(w, 0, sizeof(*w));
    if (!strcmp(path, "-"))
        return llm_err(LLM_EUSAGE, "a token shard cannot be written to stdout (give -o FILE)");
    if (vocab_size == 0)
        return llm_err(LLM_EINVAL, "a token shard needs a vocabulary size > 0");
    w->vocab_size = vocab_size;
    w->token_bytes = vocab_size <= 65536 ? 2 : 4;
    if (!(w->buf = llm_malloc(STAGE, "the shard buffer")))
        return LLM_ENOMEM;
    int rc = llm_atomic_open(&w->out, path);
    if (rc) {
        free(w->buf);
        w->buf = NULL;
        return rc;
    }
    unsigned char h[LLM_SHARD_HEADER];
    header(h, vocab_size, w->token_bytes, 0);
    if ((rc = llm_fwrite(w->out.f, h, sizeof(h), path)))
        llm_shard_writer_abort(w);
    return rc;
}

static int flush_stage(struct llm_shard_writer *w)
{
    int rc = llm_fwrite(w->out.f, w->buf, w->buf_n, w->out.path);
    w->buf_n = 0;
    return rc;
}

int llm_shard_write(struct llm_shard_writer *w, const uint32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= w->vocab_size)
            return llm_err(LLM_EINVAL, "token id %u is outside the vocabulary (size %u)", ids[i],
                           w->vocab_size);
        if (w->buf_n + 4 > STAGE) {
            int rc = flush_stage(w);
            if (rc)
                return rc;
        }
        unsigned char *p = w->buf + w->buf_n;
        p[0] = (unsigned char)ids[i];
        p[1] = (unsigned char)(ids[i] >> 8);
        if (w->token_bytes == 4) {
            p[2] = (unsigned char)(ids[i] >> 16);
            p[3] = (unsigned char)(ids[i] >> 24);
        }
        w->buf_n += w->token_bytes;
    }
    w->n_tokens += n;
    return 0;
}

int llm_shard_writer_commit(struct llm_shard_writer *w)
{
    int rc = flush_stage(w);
    unsigned char h[LLM_SHARD_HEADER];
    header(h, w->vocab_size, w->token_bytes, w->n_tokens);
    if (!rc && (fflush(w->out.f) != 0 || fseeko(w->out.f, 0, SEEK_SET) != 0))
        rc = llm_err(LLM_EIO, "cannot write '%s': %s", w->out.path, strerror(errno));
    if (!rc)
        rc = llm_fwrite(w->out.f, h, sizeof(h), w->out.path);
    if (rc) {
        llm_shard_writer_abort(w);
        return rc;
    }
    rc = llm_atomic_commit(&w->out);
    free(w->buf);
    w->buf = NULL;
    return rc;
}

void llm_shard_writer_abort(struct llm_shard_writer *w)
{
    llm_atomic_abort(&w->out);
    free(w->buf);
    w->buf = NULL;
}

int llm_shard_sniff(const void *head, size_t n) { return n >= 8 && !memcmp(head, MAGIC, 8); }

int llm_shard_open(struct llm_shard *s, const char *path)
{
    memset(s, 0, sizeof(*s));
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return llm_err(LLM_EIO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return llm_err(LLM_EIO, "'%s' is not a regular file", path);
    }
    if ((size_t)st.st_size < LLM_SHARD_HEADER) {
        close(fd);
        return llm_err(LLM_EFORMAT, "'%s' is too short to be a token shard", path);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return llm_err(LLM_EIO, "cannot map '%s': %s", path, strerror(errno));
    const unsigned char *h = m;
    int rc = 0;
    uint32_t version = get32(h + 8), width = get32(h + 16);
    uint64_t n = get64(h + 24);
    if (memcmp(h, MAGIC, 8))
        rc = llm_err(LLM_EFORMAT, "'%s' is not a token shard (bad magic)", path);
    else if (version != 1)
        rc = llm_err(LLM_EFORMAT, "'%s': shard version %u is not supported (this build reads 1)", path, version);
    else if (width != 2 && width != 4)
        rc = llm_err(LLM_EFORMAT, "'%s': token width %u is not 2 or 4", path, width);
    else if (get32(h + 12) == 0 || (width == 2 && get32(h + 12) > 65536))
        rc = llm_err(LLM_EFORMAT, "'%s': vocabulary size %u does not fit the token width", path, get32(h + 12));
    else if (n > ((uint64_t)st.st_size - LLM_SHARD_HEADER) / width ||
             LLM_SHARD_HEADER + n * width != (uint64_t)st.st_size)
        rc = llm_err(LLM_EFORMAT, "'%s': header says %llu tokens but the file holds %llu bytes of tokens (truncated?)",
                     path, (unsigned long long)n, (unsigned long long)st.st_size - LLM_SHARD_HEADER);
    if (rc) {
        munmap(m, (size_t)st.st_size);
        return rc;
    }
    s->map = m;
    s->map_len = (size_t)st.st_size;
    s->vocab_size = get32(h + 12);
    s->token_bytes = width;
    s->n_tokens = n;
    return 0;
}

void llm_shard_close(struct llm_shard *s)
{
    if (s->map)
        munmap((void *)s->map, s->map_len);
    memset(s, 0, sizeof(*s));
}
