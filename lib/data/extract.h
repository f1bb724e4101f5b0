/* extract.h: the `llm extract` pipeline: HTML files, WARC archives (plain or
 * gzipped) and JSONL documents with an "html" field in; one JSONL document
 * {"id": ..., "text": ...} per page out, in input order, pages converted in
 * parallel batches (html.h does the conversion). */
#ifndef LLM_DATA_EXTRACT_H
#define LLM_DATA_EXTRACT_H

#include <stdint.h>
#include <stdio.h>

#include "core/progress.h"
#include "html.h"

enum llm_extract_format {
    LLM_EXTRACT_AUTO,  /* by content: '{' JSONL, "WARC/" WARC, else HTML (.jsonl/.json names: JSONL) */
    LLM_EXTRACT_HTML,  /* the whole input is one page (gzip allowed) */
    LLM_EXTRACT_WARC,
    LLM_EXTRACT_JSONL,
};

struct llm_extract_opts {
    enum llm_extract_format format;
    const char *field;       /* JSONL: the field holding the HTML (NULL = "html"); it is
                              * replaced by "text", other fields pass through */
    struct llm_html_opts html;
    int strict;              /* a bad page or record is an error, not a counted skip */
    int threads;             /* OpenMP threads (0 = all) */
    size_t min_chars;        /* pages whose text has fewer bytes are dropped (0 = keep empty pages) */
    size_t batch_bytes;      /* input bytes converted per parallel batch (0 = 32 MiB) */
    size_t max_page;         /* larger pages/records are skipped (0 = 256 MiB) */
};

struct llm_extract_stats {
    uint64_t pages;          /* HTML pages found */
    uint64_t written;        /* documents written */
    uint64_t empty;          /* pages dropped by min_chars */
    uint64_t not_html;       /* WARC records that hold no HTML page (requests, metadata,
                              * images, non-2xx responses), skipped silently */
    uint64_t bad;            /* skipped with a warning: bad JSONL lines, undecodable bodies,
                              * truncated or corrupt archives (the rest of that file) */
    uint64_t bytes_html;     /* HTML bytes converted */
    uint64_t bytes_text;     /* text bytes written */
    uint64_t replaced;       /* U+FFFD written for invalid UTF-8 */
    uint64_t unsupported;    /* pages in a charset we do not convert (read as UTF-8) */
};

/* Extracts every input (paths[0..npaths), "-" = stdin, none = stdin) to out
 * (path names it in errors). progress may be NULL (it is advanced by input
 * bytes). Stats are filled even on error. Returns 0 or a negative code: a
 * missing input, a write error, or with strict the first bad page. */
int llm_extract_run(const char *const *paths, int npaths, const struct llm_extract_opts *o,
                    FILE *out, const char *path, struct llm_progress *progress,
                    struct llm_extract_stats *st);

#endif
