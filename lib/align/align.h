/* align.h: what the alignment tasks (sft.h, dpo.h, grpo.h) share: the model
 * and tokenizer they start from (train.init_from), examples tokenized with a
 * per-token loss mask (prompt/response pairs and chat messages rendered with
 * a template), and (B, T) batches of them. docs/align.md has the formats. */
#ifndef LLM_ALIGN_ALIGN_H
#define LLM_ALIGN_ALIGN_H

#include <stdint.h>
#include <cjson/cJSON.h>

#include "config/config.h"
#include "model/model.h"
#include "tok/tok.h"

struct llm_align_base {
    struct llm_tokenizer *tok;
    cJSON *tok_json;              /* the tokenizer.json object, for checkpoint headers (owned) */
    struct llm_tok_encoder *enc;
    int64_t eot;                  /* end-of-text id, -1 if none */
};

/* Loads cfg->train.init_from into m on be, with its tokenizer (the header's
 * "tokenizer"; a checkpoint without one is an error), and makes cfg's model
 * section the checkpoint's (so resumes and checkpoints agree). */
int llm_align_load(struct llm_config *cfg, struct llm_backend *be, struct llm_model *m, struct llm_align_base *b);
void llm_align_base_release(struct llm_align_base *b);
/* {"tokenizer": <the tokenizer>} for llm_train_opts.extra_header (caller deletes). */
cJSON *llm_align_header(const struct llm_align_base *b);

/* The special tokens of a chat template, added to the tokenizer when
 * missing (as new ids after the last one) and the model's vocabulary grown
 * to match (llm_model_resize_vocab). */
int llm_align_add_template_tokens(struct llm_align_base *b, struct llm_model *m, enum llm_chat_template t);
/* The same for any special tokens (names[n]). */
int llm_align_add_specials(struct llm_align_base *b, struct llm_model *m, const char *const *names, int n);

/* A tokenized example: ids (n) and learn[i] = 1 when ids[i] is a target the
 * loss sees (a response token), 0 for prompt tokens. */
struct llm_seq {
    int32_t *ids;
    uint8_t *learn;
    int n, n_learn;
    int truncated;                /* cut to the context */
};
void llm_seq_release(struct llm_seq *s);

/* prompt + response: the response's ids are those of encode(prompt +
 * response) past encode(prompt) (what the model sees after that prompt), then
 * end-of-text when add_eot; learned: the response (and the eot). Cut to
 * max_len ids keeping the start. A response that adds no tokens, or a prompt
 * that fills max_len, is LLM_EINVAL. */
int llm_align_encode_pair(struct llm_align_base *b, const char *prompt, const char *response, int add_eot,
                          int max_len, struct llm_seq *out);

/* {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}
 * rendered with template t (docs/align.md); learned: each assistant
 * message's content and its end token. Content is encoded with special
 * tokens off (text cannot inject them); the template's markup with them on. */
int llm_align_encode_chat(struct llm_align_base *b, enum llm_chat_template t, const cJSON *messages, int max_len,
                          struct llm_seq *out);

/* The text a generation prompt starts with for a user message under t (for
 * tests and docs): malloc'd. */
char *llm_align_chat_prompt(enum llm_chat_template t, const char *user);

/* Packs rows sequences into (rows, *Tb) inputs and targets (a sequence
 * without learn flags has none): x = ids[0 ..
 * n-1), y = ids[1 .. n) where learned, else -1; right padding (token 0,
 * target -1). Tb = the longest row (n - 1). */
void llm_align_batch(const struct llm_seq *const *seqs, int rows, int32_t *tok, int32_t *tgt, int *Tb);

/* The order examples are drawn in: a seeded permutation per epoch (the
 * same for every run with the same seed and count), and its position for
 * checkpoints. */
struct llm_align_order {
    int n;
    uint64_t seed;
    int64_t epoch;
    int pos;
    uint32_t *perm;
    int64_t perm_epoch;
};
int llm_align_order_init(struct llm_align_order *o, int n, uint64_t seed);
void llm_align_order_release(struct llm_align_order *o);
/* The index at (epoch, pos) without moving; the next index, moving on. */
int llm_align_order_at(struct llm_align_order *o, int64_t epoch, int pos);
int llm_align_order_next(struct llm_align_order *o);
/* {"epoch", "pos", "examples"} and back (a different example count is
 * accepted with a warning: the order then differs from an uninterrupted run). */
cJSON *llm_align_order_state(const struct llm_align_order *o);
int llm_align_order_restore(struct llm_align_order *o, const cJSON *st);

#endif
