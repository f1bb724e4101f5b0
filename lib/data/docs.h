/* docs.h: the document stream of the data tools (extract, filter, dedup): JSONL
 * documents {"id": ..., "text": ..., other fields} read from a list of inputs in
 * bounded memory, bad lines skipped with a counted warning (an error when strict),
 * and written back one compact line each: byte-for-byte when unchanged. */
#ifndef LLM_DATA_DOCS_H
#define LLM_DATA_DOCS_H

#include <stdint.h>
#include <stdio.h>
#include <cjson/cJSON.h>

#include "core/jsonl.h"

/* One document. Embedded; released with llm_doc_release.
 * Ownership: obj, tail and out are owned by the document; raw and path are
 * borrowed (raw from the reader or the batch that produced the document, valid
 * until its next read; path from the reader, valid until llm_docs_close). */
struct llm_doc {
    cJSON *obj;          /* the parsed object (owned) */
    const char *text;    /* the text field's string (borrowed from obj), NUL-terminated */
    size_t text_len;     /* strlen(text) (a "\u0000" in the JSON ends the text there) */
    const char *id;      /* "id" as text: a string as is, a number printed (1, 2.5);
                          * NULL when absent or of another type. Borrowed (obj or idbuf) */
    const char *raw;     /* the input line, NUL-terminated, without its newline; NULL for
                          * documents made by llm_doc_new (borrowed) */
    size_t raw_len;
    const char *field;   /* the text field's name (borrowed: reader options or llm_doc_new) */
    const char *path;    /* source, "<stdin>" for "-" (borrowed); NULL for new documents */
    uint64_t line;       /* 1-based line number in path */
    int dirty;           /* an existing field was replaced: the writer re-prints obj */
    char *tail;          /* fields added to a clean document, as ',"k":v' text: the writer
                          * puts them before the raw line's closing '}' (owned, or NULL) */
    size_t tail_len, tail_cap;
    char *out;           /* a pre-rendered output line (llm_doc_render), or NULL (owned) */
    size_t out_len;
    char idbuf[32];
};

/* A new document {"id": id, field: text} (id may be NULL: no "id" key).
 * text need not be NUL-terminated; field is borrowed (a literal, or a string
 * that outlives d). Release with llm_doc_release. */
int llm_doc_new(struct llm_doc *d, const char *id, const char *field, const char *text, size_t n);
void llm_doc_release(struct llm_doc *d);

/* Sets field key to the string s[0..n) (need not be NUL-terminated) or to the
 * number v (written with up to 6 significant digits, "0.93"; non-finite values
 * are LLM_EINVAL), adding it when absent. Setting d->field updates d->text and
 * d->text_len. Other fields pass through untouched. */
int llm_doc_set_str(struct llm_doc *d, const char *key, const char *s, size_t n);
int llm_doc_set_num(struct llm_doc *d, const char *key, double v);

/* Removes field key if present (the document becomes dirty); removing d->field
 * leaves d->text NULL. */
void llm_doc_remove(struct llm_doc *d, const char *key);

/* Renders the output line into d->out now (thread-safe for distinct documents,
 * so a parallel loop can do the printing); llm_doc_write then only copies it. */
int llm_doc_render(struct llm_doc *d);

/* Writes d as one line to f (path names f in errors): d->out when rendered; else
 * the raw line when unchanged (plus any added fields); else obj re-printed with
 * cJSON_PrintUnformatted. */
int llm_doc_write(FILE *f, const struct llm_doc *d, const char *path);

/* ---- reading ---- */

struct llm_docs_opts {
    const char *field;  /* the text field: "text" when NULL (extract reads "html") */
    int strict;         /* a bad document is an error "path:LINE: problem", not a skip */
    int max_warnings;   /* warnings logged one by one before only counting; 0 = 5 */
    size_t max_line;    /* longest line; 0 = LLM_JSONL_DEFAULT_MAX_LINE (256 MiB) */
};

/* Reads the JSONL documents of a list of inputs in turn. Embedded; open/close. */
struct llm_docs_reader {
    struct llm_docs_opts o;
    const char *const *paths; /* borrowed; "-" is stdin */
    int npaths, next_path;
    int open;                 /* jr holds an open input */
    struct llm_jsonl_reader jr;
    uint64_t read;            /* documents (non-blank lines) seen */
    uint64_t skipped;         /* of those, bad ones skipped */
    uint64_t bytes;           /* input bytes consumed (lines plus newlines) */
    uint64_t size;            /* total size of the regular-file inputs (0 = unknown), for progress */
};

/* Opens the reader over paths[0..npaths) (borrowed for the reader's life);
 * npaths 0 reads stdin. The first input is opened now (a missing file is an
 * LLM_EIO error here), the others when reached. o may be NULL (defaults). */
int llm_docs_open(struct llm_docs_reader *r, const char *const *paths, int npaths,
                  const struct llm_docs_opts *o);
/* Logs "skipped N bad documents" when some were, then releases r. */
void llm_docs_close(struct llm_docs_reader *r);

/* The next good document into d (which the caller releases with
 * llm_doc_release; d->raw is valid until the next read). Blank lines are
 * ignored. Bad documents (not JSON, not an object, invalid UTF-8, no string
 * text field) are skipped and counted, the first max_warnings with a warning
 * each; with strict they are an LLM_EINVAL error "path:LINE: problem".
 * Returns 1, 0 at the end of all inputs, or a negative code. */
int llm_docs_next(struct llm_docs_reader *r, struct llm_doc *d);

struct llm_docs_line;

/* A batch of documents in input order, for parallel work. Embedded; the batch
 * owns its documents and the raw lines they point into. */
struct llm_doc_batch {
    struct llm_doc *docs; /* n good documents, in input order */
    size_t n, cap;
    char *mem;            /* the raw lines, NUL-separated (owned) */
    size_t mem_n, mem_cap;
    struct llm_docs_line *lines; /* scratch: every line read, good or bad (private to docs.c) */
    size_t nl, nl_cap;
    uint64_t bytes;       /* input bytes of this batch's lines */
};

/* Clears b, then reads lines until about max_bytes of input (at least one
 * document unless the input ends) and parses them in parallel on `threads`
 * OpenMP threads (0 = default). Bad documents are dropped as by llm_docs_next,
 * the warnings and the strict error in input order, so results do not depend on
 * the thread count. Returns 1 when lines were read (b->n may still be 0 when
 * all were bad or blank), 0 at the end of all inputs, or a negative code. */
int llm_docs_read_batch(struct llm_docs_reader *r, struct llm_doc_batch *b, size_t max_bytes,
                        int threads);
void llm_doc_batch_release(struct llm_doc_batch *b);

/* Writes every document of b to f in order (path names f in errors). */
int llm_doc_batch_write(FILE *f, const struct llm_doc_batch *b, const char *path);

#endif
