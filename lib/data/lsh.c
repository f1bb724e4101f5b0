/* lsh.c: the band tables, candidate checks and union-find of lsh.h. */
#include "lsh.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "minhash.h"

/* One band: open addressing with linear probing. A slot holds the top 32
 * bits of a band key (a fingerprint) and a document number; the key's low
 * bits pick the slot. Growing recomputes keys from the stored signatures,
 * so 8 bytes a slot suffice. Several slots may hold the same key (documents
 * of different clusters whose band is equal). */
struct llm_lsh_table {
    uint64_t *slot; /* (cap) fingerprint << 32 | document; EMPTY when free */
    size_t cap, n;
};

#define EMPTY UINT64_MAX

int llm_lsh_init(struct llm_lsh *l, int num_perm, int bands, int rows, double threshold)
{
    memset(l, 0, sizeof(*l));
    if (num_perm < 1 || bands < 1 || rows < 1 || (long)bands * rows > num_perm)
        return llm_err(LLM_EINVAL, "%d bands x %d rows: expected bands, rows >= 1 and bands x rows <= %d",
                       bands, rows, num_perm);
    if (!(threshold > 0 && threshold <= 1))
        return llm_err(LLM_EINVAL, "threshold %g: expected a Jaccard similarity in (0, 1]", threshold);
    l->num_perm = num_perm, l->bands = bands, l->rows = rows, l->threshold = threshold;
    if (!(l->tab = calloc((size_t)bands, sizeof(*l->tab))))
        return llm_err(LLM_ENOMEM, "out of memory for %d LSH bands", bands);
    return 0;
}

void llm_lsh_release(struct llm_lsh *l)
{
    for (size_t c = 0; c < l->nchunks; c++)
        free(l->chunks[c]);
    free(l->chunks);
    free(l->parent);
    for (int b = 0; l->tab && b < l->bands; b++)
        free(l->tab[b].slot);
    free(l->tab);
    memset(l, 0, sizeof(*l));
}

const uint32_t *llm_lsh_sig(const struct llm_lsh *l, uint32_t d)
{
    return l->chunks[d / LLM_LSH_CHUNK] + (size_t)(d % LLM_LSH_CHUNK) * (size_t)l->num_perm;
}

/* Path halving (Tarjan & van Leeuwen 1984): every other node on the way up
 * is re-pointed at its grandparent. */
uint32_t llm_lsh_find(struct llm_lsh *l, uint32_t d)
{
    uint32_t *p = l->parent;
    while (p[d] != d) {
        p[d] = p[p[d]];
        d = p[d];
    }
    return d;
}

/* Links the later root under the earlier one, so a root is always the first
 * document of its cluster (the one dedup keeps). */
static void join(struct llm_lsh *l, uint32_t x, uint32_t y)
{
    x = llm_lsh_find(l, x), y = llm_lsh_find(l, y);
    if (x < y)
        l->parent[y] = x;
    else if (y < x)
        l->parent[x] = y;
}

static void table_put(struct llm_lsh_table *t, uint64_t key, uint32_t d)
{
    size_t mask = t->cap - 1, i = (size_t)key & mask;
    while (t->slot[i] != EMPTY)
        i = (i + 1) & mask;
    t->slot[i] = (key >> 32) << 32 | d;
    t->n++;
}

/* Doubles the table, re-inserting every document from its signature. */
static int table_grow(struct llm_lsh *l, struct llm_lsh_table *t, int band)
{
    size_t cap = t->cap ? 2 * t->cap : 1024;
    uint64_t *old = t->slot;
    size_t ocap = t->cap;
    if (!(t->slot = malloc(cap * sizeof(*t->slot)))) {
        t->slot = old;
        return llm_err(LLM_ENOMEM, "out of memory for an LSH table of %zu slots", cap);
    }
    memset(t->slot, 0xff, cap * sizeof(*t->slot));
    t->cap = cap, t->n = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i] != EMPTY) {
            uint32_t d = (uint32_t)old[i];
            table_put(t, llm_lsh_band_key(llm_lsh_sig(l, d), band, l->rows), d);
        }
    free(old);
    return 0;
}

/* Room for the signature of document l->n and its union-find entry. */
static int reserve_doc(struct llm_lsh *l)
{
    if (l->n >= LLM_LSH_MAX_DOCS)
        return llm_err(LLM_EINVAL, "more than %u documents: MinHash dedup numbers them in 32 bits",
                       LLM_LSH_MAX_DOCS);
    if (l->n == l->parent_cap) {
        size_t cap = l->parent_cap ? 2 * l->parent_cap : LLM_LSH_CHUNK;
        uint32_t *p = realloc(l->parent, cap * sizeof(*p));
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory for %zu documents", cap);
        l->parent = p, l->parent_cap = cap;
    }
    size_t c = l->n / LLM_LSH_CHUNK;
    if (c == l->nchunks) {
        if (l->nchunks == l->chunks_cap) {
            size_t cap = l->chunks_cap ? 2 * l->chunks_cap : 16;
            uint32_t **p = realloc(l->chunks, cap * sizeof(*p));
            if (!p)
                return llm_err(LLM_ENOMEM, "out of memory for signatures");
            l->chunks = p, l->chunks_cap = cap;
        }
        size_t bytes = (size_t)LLM_LSH_CHUNK * (size_t)l->num_perm * sizeof(uint32_t);
        if (!(l->chunks[c] = malloc(bytes)))
            return llm_err(LLM_ENOMEM, "out of memory for signatures (%zu MiB more)", bytes >> 20);
        l->nchunks++;
    }
    return 0;
}

void llm_lsh_keys(const struct llm_lsh *l, const uint32_t *sig, uint64_t *keys)
{
    for (int b = 0; b < l->bands; b++)
        keys[b] = llm_lsh_band_key(sig, b, l->rows);
}

int llm_lsh_add(struct llm_lsh *l, const uint32_t *sig)
{
    uint64_t keys[LLM_MINHASH_MAX_PERM];
    if (sig)
        llm_lsh_keys(l, sig, keys);
    return llm_lsh_add_keyed(l, sig, keys);
}

int llm_lsh_add_keyed(struct llm_lsh *l, const uint32_t *sig, const uint64_t *keys)
{
    int rc = reserve_doc(l);
    if (rc)
        return rc;
    uint32_t d = l->n;
    uint32_t *mine = l->chunks[d / LLM_LSH_CHUNK] + (size_t)(d % LLM_LSH_CHUNK) * (size_t)l->num_perm;
    l->parent[d] = d;
    l->n++;
    if (!sig) {
        memset(mine, 0xff, (size_t)l->num_perm * sizeof(*mine));
        return 0;
    }
    memcpy(mine, sig, (size_t)l->num_perm * sizeof(*mine));
    for (int b = 0; b < l->bands; b++) /* the bands' slots are far apart: fetch them all at once */
        if (l->tab[b].cap)
            __builtin_prefetch(&l->tab[b].slot[(size_t)keys[b] & (l->tab[b].cap - 1)]);
    for (int b = 0; b < l->bands; b++) {
        struct llm_lsh_table *t = &l->tab[b];
        uint64_t key = keys[b], fp = key >> 32;
        int present = 0; /* the bucket holds a document of d's cluster */
        if (t->cap) {
            size_t mask = t->cap - 1;
            for (size_t i = (size_t)key & mask; t->slot[i] != EMPTY; i = (i + 1) & mask) {
                if (t->slot[i] >> 32 != fp)
                    continue;
                uint32_t c = (uint32_t)t->slot[i];
                if (llm_lsh_find(l, c) == llm_lsh_find(l, d)) {
                    present = 1;
                    continue;
                }
                l->candidates++;
                if (llm_minhash_jaccard(mine, llm_lsh_sig(l, c), l->num_perm) >= l->threshold) {
                    join(l, c, d);
                    l->joined++;
                    present = 1;
                }
            }
        }
        if (present)
            continue;
        if ((t->n + 1) * 2 > t->cap && (rc = table_grow(l, t, b)))
            return rc;
        table_put(t, key, d);
    }
    return 0;
}

size_t llm_lsh_bytes(const struct llm_lsh *l)
{
    size_t n = l->nchunks * (size_t)LLM_LSH_CHUNK * (size_t)l->num_perm * sizeof(uint32_t) +
               l->chunks_cap * sizeof(*l->chunks) + l->parent_cap * sizeof(*l->parent);
    for (int b = 0; b < l->bands; b++)
        n += l->tab[b].cap * sizeof(uint64_t);
    return n;
}
