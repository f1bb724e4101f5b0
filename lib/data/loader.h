/* loader.h: the training data loader: (B, T) batches of inputs and targets
 * cut from memory-mapped token shards, in random or sequential order, packed
 * across documents or aligned to them; its position saves into checkpoints.
 * The window rules are in docs/data.md. */
#ifndef LLM_DATA_LOADER_H
#define LLM_DATA_LOADER_H

#include <stdint.h>
#include <cjson/cJSON.h>

#include "config/config.h"

struct llm_loader_opts {
    int B, T;                            /* windows per batch, tokens per window */
    enum llm_data_order order;           /* LLM_DATA_RANDOM or LLM_DATA_SEQUENTIAL */
    int eot;                             /* end-of-text id; -1 = none */
    enum llm_data_boundaries boundaries; /* AUTO = ALIGN when eot >= 0, else CROSS */
    uint64_t seed;                       /* of the random order */
    uint32_t vocab_size;                 /* model vocab: every shard's header vocab_size must be <= it */
};

struct llm_loader; /* opaque */

/* Opens the data of spec: a shard path, a comma-separated list of paths, or
 * glob(3) patterns (each pattern's matches sorted bytewise; a pattern that
 * matches nothing is an error naming it). Every file is opened with
 * llm_shard_open (mmap) and stays mapped until llm_loader_free. Data with no
 * complete window is an error. With ALIGN the chunk index is built here by
 * one scan of every token (4 bytes a chunk, 8 past 2^32 tokens in all).
 * On success *out is owned by the caller (llm_loader_free). */
int llm_loader_new(struct llm_loader **out, const char *spec, const struct llm_loader_opts *o);
void llm_loader_free(struct llm_loader *l); /* NULL ok */

/* The next batch: tokens and targets (B, T) each, host memory; a target of
 * -1 means no loss there. A token id >= vocab_size is LLM_EFORMAT naming the
 * shard and position; on any error the position does not move. */
int llm_loader_next(struct llm_loader *l, int32_t *tokens, int32_t *targets);

uint64_t llm_loader_n_tokens(const struct llm_loader *l);  /* all shards */
uint64_t llm_loader_n_windows(const struct llm_loader *l); /* windows of one sequential epoch */
int64_t llm_loader_epoch(const struct llm_loader *l);      /* sequential: completed passes; random: 0 */

/* Entropy (nats/token) of the token frequencies of all shards: the loss of
 * the best model that ignores context, a baseline for training. One pass
 * over every token and a count per header vocabulary id (8 bytes each);
 * NAN with llm_err when that count array cannot be allocated. Ids outside
 * the model vocabulary are left out (next() refuses them). */
double llm_loader_unigram_entropy(const struct llm_loader *l);

/* The position as a JSON object, u64s as decimal strings:
 *   {"epoch": "2", "window": "17", "rng": ["<u64>", "<u64>", "<u64>", "<u64>"]}
 * window: sequential, the next window of the epoch; random, windows drawn.
 * The caller owns the result (cJSON_Delete); NULL + llm_err on ENOMEM. */
cJSON *llm_loader_state(const struct llm_loader *l);
/* Restores a position from llm_loader_state: the following batches equal
 * those of an uninterrupted loader with the same spec and opts. A missing,
 * unknown or malformed key, or a value out of range for this data, is
 * LLM_EFORMAT naming the key; l is then unchanged. */
int llm_loader_restore(struct llm_loader *l, const cJSON *state);
/* Back to the state right after new (evaluation reads the same batches every time). */
void llm_loader_rewind(struct llm_loader *l);

#endif
