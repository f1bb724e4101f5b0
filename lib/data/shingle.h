/* shingle.h: what the deduplicator compares: a fast 64-bit hash, text
 * normalized for near-duplicate detection (words lowercased, accents and
 * punctuation stripped, whitespace collapsed) and the hashes of its word
 * n-grams ("shingles", Broder 1997). Used by lib/data/dedup.c. */
#ifndef LLM_DATA_SHINGLE_H
#define LLM_DATA_SHINGLE_H

#include <stddef.h>
#include <stdint.h>

/* The finalizer of MurmurHash3 (fmix64, Appleby 2011): a bijection of 64-bit
 * integers in which every input bit flips each output bit with probability
 * close to 1/2. */
static inline uint64_t llm_hash_mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

/* A 64-bit hash of p[0..n) under seed (not cryptographic). Values are the same
 * on every little-endian machine; they are never stored, only compared within
 * one run. */
uint64_t llm_hash64(const void *p, size_t n, uint64_t seed);

/* The normalized words of a text, one at a time. A word is a maximal run of
 * letters and digits (Unicode categories L and N) after NFKD decomposition,
 * case folding and removal of combining marks ("Éte" -> "ete", "ﬁ" -> "fi");
 * apostrophes (' and U+2019) vanish inside a word ("don't" -> "dont"); any
 * other character separates words. Embedded; the buffer is reused. */
struct llm_words {
    const char *text; /* borrowed */
    size_t n, pos;
    char *word;       /* the current word, NUL-terminated (owned) */
    size_t len, cap;
};

void llm_words_init(struct llm_words *w);
void llm_words_release(struct llm_words *w);
/* Starts over on text[0..n) (borrowed until the next reset). */
void llm_words_reset(struct llm_words *w, const char *text, size_t n);
/* The next word in w->word[0..w->len): 1, 0 at the end, LLM_ENOMEM. */
int llm_words_next(struct llm_words *w);

/* The hash of the normalized text: the words in order, as if joined by
 * single spaces (texts that differ only in case, accents, punctuation and
 * spacing hash equal). Uses w as scratch. Returns 0 or LLM_ENOMEM. */
int llm_text_hash(struct llm_words *w, const char *text, size_t n, uint64_t *out);

/* Word n-gram shingles of one text at a time. Embedded; reused per thread. */
struct llm_shingler {
    int ngram;         /* words per shingle (1..LLM_SHINGLE_MAX_NGRAM) */
    uint64_t seed;
    struct llm_words w;
    uint64_t *ring;    /* (ngram) hashes of the last words */
    uint32_t *hash;    /* (n) shingle hashes of the last text, in text order (owned) */
    size_t n, cap;
};

#define LLM_SHINGLE_MAX_NGRAM 64

int llm_shingler_init(struct llm_shingler *s, int ngram, uint64_t seed);
void llm_shingler_release(struct llm_shingler *s);
/* The 32-bit hashes of every run of `ngram` consecutive normalized words of
 * text into s->hash[0..s->n) (repeats included; MinHash ignores them). A text
 * of 1..ngram-1 words gives one shingle of all its words, a text without
 * words none. Returns 0 or LLM_ENOMEM. */
int llm_shingler_run(struct llm_shingler *s, const char *text, size_t n);

#endif
