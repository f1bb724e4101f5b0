/* hashset.c: open addressing with linear probing over 63-bit keys; the
 * slot index comes from a mix of the key, so hashes with structure (line
 * hashes, text hashes) spread like random ones. */
#include "hashset.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "shingle.h"

#define TWICE 1ULL

/* The stored key of h: its top 63 bits, never 0 (0 marks a free slot). */
static inline uint64_t key_of(uint64_t h)
{
    h &= ~TWICE;
    return h ? h : 2;
}

static inline size_t home(const struct llm_hashset *s, uint64_t key)
{
    return (size_t)llm_hash_mix64(key) & (s->cap - 1);
}

int llm_hashset_init(struct llm_hashset *s, int with_values)
{
    memset(s, 0, sizeof(*s));
    s->cap = 1024;
    s->slot = calloc(s->cap, sizeof(*s->slot));
    if (with_values)
        s->val = malloc(s->cap * sizeof(*s->val));
    if (!s->slot || (with_values && !s->val)) {
        llm_hashset_release(s);
        return llm_err(LLM_ENOMEM, "out of memory for a hash set");
    }
    return 0;
}

void llm_hashset_release(struct llm_hashset *s)
{
    free(s->slot), free(s->val);
    memset(s, 0, sizeof(*s));
}

static int grow(struct llm_hashset *s)
{
    struct llm_hashset t = {.cap = 2 * s->cap, .n = s->n};
    t.slot = calloc(t.cap, sizeof(*t.slot));
    if (s->val)
        t.val = malloc(t.cap * sizeof(*t.val));
    if (!t.slot || (s->val && !t.val)) {
        free(t.slot), free(t.val);
        return llm_err(LLM_ENOMEM, "out of memory growing a hash set to %zu MiB",
                       t.cap * (s->val ? 16 : 8) >> 20);
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slot[i])
            continue;
        size_t mask = t.cap - 1, j = home(&t, s->slot[i] & ~TWICE);
        while (t.slot[j])
            j = (j + 1) & mask;
        t.slot[j] = s->slot[i];
        if (t.val)
            t.val[j] = s->val[i];
    }
    llm_hashset_release(s);
    *s = t;
    return 0;
}

/* The slot of key, or the free slot where it would go. */
static size_t find(const struct llm_hashset *s, uint64_t key)
{
    size_t mask = s->cap - 1, i = home(s, key);
    while (s->slot[i] && (s->slot[i] & ~TWICE) != key)
        i = (i + 1) & mask;
    return i;
}

int llm_hashset_add(struct llm_hashset *s, uint64_t h, uint64_t v, uint64_t *first)
{
    if ((s->n + 1) * 4 > s->cap * 3) {
        int rc = grow(s);
        if (rc)
            return rc;
    }
    uint64_t key = key_of(h);
    size_t i = find(s, key);
    if (s->slot[i]) {
        s->slot[i] |= TWICE;
        if (first)
            *first = s->val ? s->val[i] : 0;
        return 1;
    }
    s->slot[i] = key;
    if (s->val)
        s->val[i] = v;
    s->n++;
    return 0;
}

int llm_hashset_count(const struct llm_hashset *s, uint64_t h)
{
    size_t i = find(s, key_of(h));
    return !s->slot[i] ? 0 : s->slot[i] & TWICE ? 2 : 1;
}

size_t llm_hashset_bytes(const struct llm_hashset *s)
{
    return s->cap * (s->val ? 16 : 8);
}
