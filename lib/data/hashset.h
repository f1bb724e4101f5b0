/* hashset.h: a compact set of 64-bit hashes that also knows whether each was
 * added more than once: exact dedup (is this text new?) and line dedup (does
 * this line occur twice in the corpus?). 8 bytes a slot, at most 3/4 full
 * (so 8-16 bytes per distinct hash), plus 8 more with values. */
#ifndef LLM_DATA_HASHSET_H
#define LLM_DATA_HASHSET_H

#include <stddef.h>
#include <stdint.h>

/* Embedded: init/release. A slot holds the hash with its lowest bit replaced
 * by "added more than once" (63 bits of the hash tell hashes apart: two
 * distinct texts collide with probability 2^-63 per pair). */
struct llm_hashset {
    uint64_t *slot; /* (cap) 0 = free */
    uint64_t *val;  /* (cap) the value given with each hash's first add, or NULL */
    size_t cap, n;  /* n distinct hashes */
};

/* with_values: keep one 64-bit value per hash (the first one given). */
int llm_hashset_init(struct llm_hashset *s, int with_values);
void llm_hashset_release(struct llm_hashset *s);

/* Adds h: 1 if it was there (it is now marked as added more than once; *first,
 * when not NULL, gets its first value), 0 if it is new (v is kept when the set
 * has values), or LLM_ENOMEM. */
int llm_hashset_add(struct llm_hashset *s, uint64_t h, uint64_t v, uint64_t *first);
/* How often h was added: 0, 1, or 2 for "more than once". */
int llm_hashset_count(const struct llm_hashset *s, uint64_t h);
size_t llm_hashset_bytes(const struct llm_hashset *s);

#endif
