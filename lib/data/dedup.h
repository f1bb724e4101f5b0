/* dedup.h: deduplication of a JSONL document stream (lib/data/docs.h), the
 * engine of `llm dedup`: exact (hash set or Bloom filter, one pass), line
 * level (two passes: count every line of the corpus, then drop the repeated
 * ones) and near-duplicate (MinHash signatures, LSH, union-find clusters,
 * then a second pass that writes the first document of each cluster).
 * Two-pass modes copy the good input lines to an unlinked temporary file
 * (in $TMPDIR, else /tmp) so stdin works: disk, not memory, holds the text. */
#ifndef LLM_DATA_DEDUP_H
#define LLM_DATA_DEDUP_H

#include <stdint.h>
#include <stdio.h>

#include "core/progress.h"
#include "docs.h"

enum llm_dedup_mode {
    LLM_DEDUP_EXACT,   /* documents whose normalized text hashes equal: keep the first */
    LLM_DEDUP_LINES,   /* lines that occur more than once in the corpus leave every document */
    LLM_DEDUP_MINHASH, /* near duplicates: keep the first document of each cluster */
};

struct llm_dedup_opts {
    enum llm_dedup_mode mode;
    /* exact */
    int bloom;               /* one pass through a Bloom filter instead of an exact hash set */
    uint64_t expected;       /* Bloom: documents it is sized for (0 = 10^7) */
    double fp_rate;          /* Bloom: false-positive rate at `expected` (0 = 10^-3) */
    /* minhash */
    double threshold;        /* Jaccard similarity that makes a near duplicate (0 = 0.8) */
    int num_perm;            /* MinHash hash functions (0 = 128) */
    int ngram;               /* words per shingle (0 = 5) */
    int bands, rows;         /* LSH banding; 0, 0 = chosen from the threshold */
    uint64_t seed;           /* of the MinHash functions */
    /* all */
    const char *report;      /* JSONL, one line per removed (lines: changed) document; NULL = none */
    int threads;             /* OpenMP threads; 0 = all */
    size_t batch_bytes;      /* input read and processed at once (0 = 8 MiB) */
    struct llm_docs_opts docs;        /* text field, strict */
    enum llm_progress_mode progress;  /* on stderr */
};

struct llm_dedup_stats {
    uint64_t docs_in, docs_out;  /* good documents read, documents written */
    uint64_t removed;            /* documents dropped (lines: left with no text) */
    uint64_t skipped;            /* bad input lines skipped */
    uint64_t input_bytes;        /* JSONL bytes read */
    uint64_t text_bytes;         /* bytes of the text fields of the good documents */
    uint64_t lines_in, lines_removed, docs_changed; /* lines mode (non-blank lines) */
    uint64_t candidates, joined; /* minhash: candidate pairs checked, and joined */
    uint64_t clusters;           /* minhash: clusters with more than one document */
    int bands, rows;             /* minhash: the banding used */
    size_t mem_bytes;            /* the hash set, Bloom filter or signatures + LSH tables */
    double bloom_fp;             /* Bloom: false-positive rate at the end */
    double seconds;
};

/* Fills the defaults above into o's zero fields and checks the values:
 * LLM_EUSAGE naming the bad one (--threshold, --num-perm, ...). The banding
 * is chosen here when not given (llm_lsh_params, weights 0.1 / 0.9). */
int llm_dedup_check(struct llm_dedup_opts *o);

/* Reads the documents of paths[0..npaths) (npaths 0 = stdin; "-" = stdin),
 * writes the kept ones to out in input order (out_name names out in errors),
 * and the report (atomically) when o->report is set. Bad lines are skipped
 * with counted warnings, or fail with o->docs.strict. st may be NULL.
 * Returns 0 or a negative code with a message. */
int llm_dedup_run(const struct llm_dedup_opts *o, const char *const *paths, int npaths, FILE *out,
                  const char *out_name, struct llm_dedup_stats *st);

#endif
