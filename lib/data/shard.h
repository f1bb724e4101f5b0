/* shard.h: token shards, the training data format. A 32-byte header then
 * the tokens, little-endian uint16 when the vocabulary fits, else uint32:
 *   0  char[8] "LLMSHARD"     8  u32 version (1)      12 u32 vocab_size
 *   16 u32 token_bytes (2|4) 20 u32 reserved (0)     24 u64 n_tokens
 * Written atomically (the count is filled in at commit); read by mmap. */
#ifndef LLM_DATA_SHARD_H
#define LLM_DATA_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/file.h"

#define LLM_SHARD_HEADER 32

struct llm_shard_writer {
    struct llm_atomic out;
    uint32_t vocab_size, token_bytes;
    uint64_t n_tokens;
    unsigned char *buf; /* staging for little-endian conversion */
    size_t buf_n;
};

/* Starts a shard at path (not "-": the header is rewritten at commit). */
int llm_shard_writer_open(struct llm_shard_writer *w, const char *path, uint32_t vocab_size);
/* Appends ids; an id >= vocab_size is an error. */
int llm_shard_write(struct llm_shard_writer *w, const uint32_t *ids, size_t n);
int llm_shard_writer_commit(struct llm_shard_writer *w);
void llm_shard_writer_abort(struct llm_shard_writer *w);

struct llm_shard {
    const unsigned char *map; /* the whole file, mapped read-only */
    size_t map_len;
    uint32_t vocab_size, token_bytes;
    uint64_t n_tokens;
};

/* Maps and validates a shard: magic, version, width, size = header + count * width. */
int llm_shard_open(struct llm_shard *s, const char *path);
void llm_shard_close(struct llm_shard *s);
static inline uint32_t llm_shard_token(const struct llm_shard *s, uint64_t i)
{
    const unsigned char *p = s->map + LLM_SHARD_HEADER + i * s->token_bytes;
    return s->token_bytes == 2 ? (uint32_t)(p[0] | p[1] << 8)
                               : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                     (uint32_t)p[3] << 24;
}
/* 1 if the first bytes of a file are a shard's magic. */
int llm_shard_sniff(const void *head, size_t n);

#endif
