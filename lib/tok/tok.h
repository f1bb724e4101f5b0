/* tok.h: byte-level BPE tokenizers (GPT-2, Llama 3, Qwen2, cl100k style):
 * loading and saving Hugging Face tokenizer.json, encoding text to ids,
 * decoding ids to the exact original bytes, and training (tok_train.c).
 *
 * Ids: a tokenizer maps every byte string to ids with no unknown token;
 * raw bytes are the base alphabet, so any input, including invalid UTF-8,
 * round-trips exactly. Added (special) tokens are matched in the text first
 * and never merge with their neighbours; no BOS/EOS is added implicitly. */
#ifndef LLM_TOK_H
#define LLM_TOK_H

#include <stddef.h>
#include <stdint.h>

struct llm_tokenizer; /* opaque; read-only after loading, so shareable across threads */

/* A growable array of ids (embedded: llm_ids_release frees it). */
struct llm_ids {
    uint32_t *v;
    size_t n, cap;
};
int llm_ids_push(struct llm_ids *ids, uint32_t id);
void llm_ids_release(struct llm_ids *ids);

/* A growable byte buffer (embedded). */
struct llm_bytes {
    char *v;
    size_t n, cap;
};
int llm_bytes_append(struct llm_bytes *b, const void *p, size_t n);
void llm_bytes_release(struct llm_bytes *b);

/* The GPT-2 pre-tokenizer pattern (used when a tokenizer.json's ByteLevel
 * pre-tokenizer has use_regex true, and by `tokenize train` by default). */
extern const char *const LLM_TOK_GPT2_PATTERN;

/* Loads a tokenizer.json. Refuses what it cannot reproduce exactly
 * (WordPiece, Unigram, byte_fallback, normalizers, ...) with a message. */
int llm_tok_load(struct llm_tokenizer **out, const char *path);
/* The same from a parsed tokenizer.json object (a checkpoint header's
 * "tokenizer"); name is used in error messages. */
struct cJSON;
int llm_tok_load_json(struct llm_tokenizer **out, const struct cJSON *root, const char *name);
/* Writes a tokenizer.json (atomically) that HF tokenizers loads. */
int llm_tok_save(const struct llm_tokenizer *t, const char *path);
void llm_tok_free(struct llm_tokenizer *t);

uint32_t llm_tok_vocab_size(const struct llm_tokenizer *t); /* max id + 1 */
/* The id of an added token ("<|endoftext|>"), or -1. */
int64_t llm_tok_special_id(const struct llm_tokenizer *t, const char *content);
/* The bytes of a token (borrowed), or NULL for an id not in the vocabulary. */
const char *llm_tok_token_bytes(const struct llm_tokenizer *t, uint32_t id, size_t *len);

/* Merges in rank order: n, and the ids (a, b) -> result of merge `rank`. */
uint32_t llm_tok_n_merges(const struct llm_tokenizer *t);
int llm_tok_merge(const struct llm_tokenizer *t, uint32_t rank, uint32_t *a, uint32_t *b,
                  uint32_t *result);

/* Per-thread encoding state: a cache of pre-token -> ids and regex scratch. */
struct llm_tok_encoder;
int llm_tok_encoder_new(const struct llm_tokenizer *t, struct llm_tok_encoder **out);
void llm_tok_encoder_free(struct llm_tok_encoder *e);

/* Appends the ids of text[0..n) to out. With allow_special 0, added tokens
 * are not matched (their text is encoded as ordinary bytes). */
int llm_tok_encode(struct llm_tok_encoder *e, const char *text, size_t n, int allow_special,
                   struct llm_ids *out);
/* Appends the bytes of ids to out; an id outside the vocabulary is an error. */
int llm_tok_decode(const struct llm_tokenizer *t, const uint32_t *ids, size_t n,
                   struct llm_bytes *out);

/* The largest k < n at which text[0..k) and text[k..) pre-tokenize (and so
 * encode) exactly as the whole text does, or 0 if there is none: a big text
 * can then be encoded in parallel pieces. Only places that the tokenizer's
 * own pattern passes a probe for are used (tok_util.c: after "\n" or "\r\n"
 * between printable characters, ...). */
size_t llm_tok_cut(const struct llm_tokenizer *t, const char *text, size_t n);

/* Training (tok_train.c). Input is fed in pieces; a piece never spans two
 * documents; within a document, pieces must be cut where
 * llm_tok_trainer_cut says. */
struct llm_tok_trainer;
struct llm_tok_train_opts {
    uint32_t vocab_size;        /* specials + 256 + merges */
    const char *const *specials; /* added tokens, ids 0..n_specials-1 */
    int n_specials;
    const char *pattern;        /* NULL = GPT-2 */
    int threads;                /* 0 = all cores */
};
int llm_tok_trainer_new(const struct llm_tok_train_opts *o, struct llm_tok_trainer **out);
/* Counts the pre-tokens of docs[i][0..lens[i]) (in parallel over docs). */
int llm_tok_trainer_feed(struct llm_tok_trainer *tr, const char *const *docs, const size_t *lens,
                         size_t n_docs);
/* Distinct pre-tokens and total pre-tokens counted so far. */
void llm_tok_trainer_stats(const struct llm_tok_trainer *tr, uint64_t *distinct, uint64_t *total);
/* Learns the merges; progress(ctx, merges_done, merges_total) is called now and then. */
int llm_tok_trainer_finish(struct llm_tok_trainer *tr, struct llm_tokenizer **out,
                           void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx);
void llm_tok_trainer_free(struct llm_tok_trainer *tr);

/* llm_tok_cut for the trainer's pattern. */
size_t llm_tok_trainer_cut(const struct llm_tok_trainer *tr, const char *text, size_t n);

#endif
