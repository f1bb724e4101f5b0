/* lsh.h: near-duplicate clusters from MinHash signatures: the signatures of
 * all documents, one hash table per LSH band, candidate pairs checked with
 * the estimated Jaccard, and clusters kept by union-find whose root is always
 * the cluster's first document. Memory: per document 4 x num_perm bytes of
 * signature, 4 of union-find, and at most one 8-byte slot (at load <= 1/2)
 * per band; never the text. */
#ifndef LLM_DATA_LSH_H
#define LLM_DATA_LSH_H

#include <stddef.h>
#include <stdint.h>

#define LLM_LSH_MAX_DOCS 0xfffffffeu /* document numbers are 32-bit */

struct llm_lsh_table;

/* Embedded: init/release. Documents are numbered 0, 1, ... in the order added. */
struct llm_lsh {
    int num_perm, bands, rows;
    double threshold;          /* candidates at or above it are joined */
    uint32_t n;                /* documents added */
    uint32_t **chunks;         /* signatures: chunk c holds documents c*LLM_LSH_CHUNK.. (num_perm each) */
    size_t nchunks, chunks_cap;
    uint32_t *parent;          /* (n) union-find; parent[d] <= d and roots are first documents */
    size_t parent_cap;
    struct llm_lsh_table *tab; /* (bands) */
    uint64_t candidates;       /* candidate pairs whose Jaccard was estimated */
    uint64_t joined;           /* of those, at or above the threshold */
};

#define LLM_LSH_CHUNK 4096

/* bands * rows <= num_perm; threshold in (0, 1]. Returns 0, LLM_EINVAL, LLM_ENOMEM. */
int llm_lsh_init(struct llm_lsh *l, int num_perm, int bands, int rows, double threshold);
void llm_lsh_release(struct llm_lsh *l);

/* Adds document l->n with signature sig (copied). Every earlier document
 * that shares a band key with it and is not yet in its cluster is a
 * candidate; the two clusters are joined when the estimated Jaccard of the
 * pair is >= threshold. Each band's bucket keeps one document per cluster,
 * so a flood of copies costs one comparison each. sig NULL: a document with
 * no shingles, a cluster of its own, never a candidate.
 * Returns 0, LLM_ENOMEM, or LLM_EINVAL past LLM_LSH_MAX_DOCS documents. */
int llm_lsh_add(struct llm_lsh *l, const uint32_t *sig);
/* The same with the band keys already computed by llm_lsh_keys (which is
 * thread-safe: callers compute keys in parallel, then add in order). */
int llm_lsh_add_keyed(struct llm_lsh *l, const uint32_t *sig, const uint64_t *keys);
/* keys[0..bands) = llm_lsh_band_key of each band of sig. */
void llm_lsh_keys(const struct llm_lsh *l, const uint32_t *sig, uint64_t *keys);

/* The first document of d's cluster (d itself when d is kept). */
uint32_t llm_lsh_find(struct llm_lsh *l, uint32_t d);
/* The stored signature of d (all UINT32_MAX for a document added with NULL). */
const uint32_t *llm_lsh_sig(const struct llm_lsh *l, uint32_t d);
/* Bytes held now: signatures, union-find and the band tables. */
size_t llm_lsh_bytes(const struct llm_lsh *l);

#endif
