/* tok_impl.h: what the files of lib/tok share and nobody else sees: the
 * tokenizer struct, GPT-2's byte<->unicode alphabet, hashing, and the
 * pre-tokenizer (PCRE2 regex + added-token splitting). */
#ifndef LLM_TOK_IMPL_H
#define LLM_TOK_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <string.h>

#include "tok.h"

/* ---- hashing ---- */
static inline uint64_t tok_mix(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h;
}

/* A fast hash of a short byte string (pre-tokens average ~5 bytes). */
static inline uint64_t tok_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        h = (h ^ k) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
        s += 8, n -= 8;
    }
    if (n) {
        uint64_t k = 0;
        memcpy(&k, s, n);
        h = (h ^ k) * 0x94d049bb133111ebULL;
    }
    return tok_mix(h);
}

/* ---- a map of u64 keys (merge pairs a<<32|b) to two u32 values ---- */
struct tok_pairmap {
    uint64_t *keys; /* UINT64_MAX = empty */
    uint32_t *v1, *v2;
    size_t cap, n; /* cap is a power of two */
};
int tok_pairmap_init(struct tok_pairmap *m, size_t expect);
void tok_pairmap_release(struct tok_pairmap *m);
/* Inserts or overwrites. */
int tok_pairmap_put(struct tok_pairmap *m, uint64_t key, uint32_t v1, uint32_t v2);
static inline int tok_pairmap_get(const struct tok_pairmap *m, uint64_t key, uint32_t *v1,
                                  uint32_t *v2)
{
    size_t mask = m->cap - 1, i = tok_mix(key) & mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) {
            *v1 = m->v1[i];
            if (v2)
                *v2 = m->v2[i];
            return 1;
        }
        if (k == UINT64_MAX)
            return 0;
        i = (i + 1) & mask;
    }
}

/* ---- a map of byte strings to u32 (vocabulary lookups) ---- */
struct tok_strmap {
    struct tok_slot { uint32_t idx, h32; } *slot; /* idx: entry+1, 0 = empty; h32: hash bits */
    size_t cap;      /* power of two */
    struct tok_strent { uint64_t off; uint32_t len, val; uint64_t hash; } *ent;
    size_t n, ecap;
    char *blob;
    size_t blob_n, blob_cap;
};
int tok_strmap_init(struct tok_strmap *m);
void tok_strmap_release(struct tok_strmap *m);
/* Sets s -> val (overwrites). */
int tok_strmap_put(struct tok_strmap *m, const char *s, size_t n, uint32_t val);
/* 1 and *val if present. */
int tok_strmap_get(const struct tok_strmap *m, const char *s, size_t n, uint32_t *val);
/* Adds delta to the value of s, inserting it with value delta if new. */
int tok_strmap_add(struct tok_strmap *m, const char *s, size_t n, uint32_t delta);
/* The value of s, inserting it with value = its entry number (0, 1, ...)
 * if new; *added says which. */
int tok_strmap_intern(struct tok_strmap *m, const char *s, size_t n, uint32_t *val, int *added);
/* Empties the map, keeping its memory. */
void tok_strmap_clear(struct tok_strmap *m);

/* ---- GPT-2's byte-level alphabet ----
 * Bytes that are printable (33..126, 161..172, 174..255) stand for themselves;
 * the other 68 map to U+0100.. in byte order, so every token is a printable
 * string in vocab files. */
void tok_bytelevel_tables(uint16_t byte2cp[256], int16_t cp2byte[512]);
/* Token bytes -> its UTF-8 vocabulary spelling (out needs 2*n+1 bytes). */
size_t tok_bytes_to_vocab(const char *s, size_t n, char *out);
/* A vocabulary spelling -> bytes; -1 if it has a character outside the alphabet. */
long tok_vocab_to_bytes(const char *s, size_t n, char *out);

/* ---- pre-tokenizer ---- */
struct tok_regex {
    pcre2_code *code;
    int jit; /* JIT compiled: use pcre2_jit_match */
};
int tok_regex_compile(struct tok_regex *re, const char *pattern);
void tok_regex_release(struct tok_regex *re);

/* Per-thread match scratch. */
struct tok_matcher {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *stack;
};
int tok_matcher_init(struct tok_matcher *m, const struct tok_regex *re);
void tok_matcher_release(struct tok_matcher *m);

/* Calls fn for each pre-token of s[0..n), in order, covering every byte:
 * regex matches, and the bytes between matches (invalid UTF-8, or text the
 * pattern does not match) as pieces of their own. re NULL: one piece. */
typedef int (*tok_piece_fn)(void *ctx, const char *s, size_t n);
int tok_pretokenize(const struct tok_regex *re, struct tok_matcher *m, const char *s, size_t n,
                    tok_piece_fn fn, void *ctx);

/* Where a long text may be cut into pieces that pre-tokenize on their own
 * exactly as the whole does. Each rule is kept only if the pattern passes a
 * probe of it (tok_cuts_probe), so custom patterns stay exact too. With X and
 * Y printable ASCII other than space:
 *   lf     cut X\n|Y
 *   crlf   cut X\r\n|Y
 *   cr_lf  cut X\r|\nY (GPT-2's pattern splits \r\n before a letter there) */
struct tok_cuts {
    uint8_t lf, crlf, cr_lf;
};
int tok_cuts_probe(const struct tok_regex *re, struct tok_cuts *c);
size_t tok_cut(const struct tok_cuts *c, const char *s, size_t n);

/* Added tokens, matched in the text before pre-tokenization (longest first). */
struct tok_added {
    char *content;
    uint32_t len, id;
    int special;
};

/* ---- the tokenizer ---- */
struct llm_tokenizer {
    uint32_t n_vocab;      /* max id + 1 */
    char *blob;            /* token bytes, back to back */
    uint64_t *tok_off;     /* (n_vocab) offset into blob */
    uint32_t *tok_len;     /* (n_vocab) UINT32_MAX for an id not in the vocabulary */
    uint32_t byte_id[256]; /* the id of each single byte */
    struct tok_strmap vocab;     /* token bytes -> id (ordinary tokens) */
    uint32_t n_merges;
    uint32_t (*merges)[3];       /* (n_merges) a, b, result: rank = index */
    struct tok_pairmap merge_map; /* a<<32|b -> rank, result */
    struct tok_added *added;     /* sorted longest first */
    uint32_t n_added;
    uint8_t added_first[256];    /* bytes that can start an added token */
    int ignore_merges;           /* a pre-token in the vocabulary is one token */
    int add_prefix_space;
    int nfc;                     /* normalizer NFC (Qwen2): text is NFC-normalized first */
    char *pattern;               /* NULL: no regex (the whole text is one piece) */
    int pattern_is_bytelevel;    /* came from ByteLevel use_regex (GPT-2 form) */
    struct tok_regex re;
    struct tok_cuts cuts;
};

/* Builds the lookup tables of t from blob/tok_off/tok_len/merges/added/pattern. */
int tok_finalize(struct llm_tokenizer *t);

#endif
