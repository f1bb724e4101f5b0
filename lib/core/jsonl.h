/* jsonl.h: streaming JSON Lines: one object per line, read with a buffer
 * that grows only to the longest line (capped), so multi-GB files are read
 * in bounded memory. Errors name the file and line: "docs.jsonl:17: ...". */
#ifndef LLM_CORE_JSONL_H
#define LLM_CORE_JSONL_H

#include <stdint.h>
#include <stdio.h>
#include <cjson/cJSON.h>

#define LLM_JSONL_DEFAULT_MAX_LINE (256u << 20) /* 256 MiB: one document */

struct llm_jsonl_reader {
    FILE *f;            /* owned unless it is stdin */
    char *path;         /* for messages (owned) */
    char *buf;          /* holds buffered input (owned) */
    size_t cap, start, end;
    size_t max_line;    /* longer lines are an error */
    uint64_t line;      /* number of the line last returned (1-based) */
    int eof;
};

/* Opens path ("-" = stdin). max_line 0 means LLM_JSONL_DEFAULT_MAX_LINE. */
int llm_jsonl_open(struct llm_jsonl_reader *r, const char *path, size_t max_line);
void llm_jsonl_close(struct llm_jsonl_reader *r);

/* The next line without its "\n" (or "\r\n"): *line points into the reader's
 * buffer, valid until the next call, NUL-terminated. Returns 1, 0 at end of
 * input, or a negative code (I/O error, line too long). */
int llm_jsonl_next_line(struct llm_jsonl_reader *r, char **line, size_t *len);

/* The next JSON object, skipping blank lines. The line must be valid UTF-8
 * and one JSON object. Returns 1 with *obj (caller frees with cJSON_Delete),
 * 0 at end of input, or a negative code with "path:LINE: problem". */
int llm_jsonl_next(struct llm_jsonl_reader *r, cJSON **obj);

/* Every object of a small JSONL file (evaluation sets, alignment data),
 * parsed, with its line number. limit > 0 keeps the first limit. */
struct llm_jsonl_records {
    cJSON **v;
    uint64_t *line;
    int n, cap;
};
int llm_jsonl_read_all(struct llm_jsonl_records *r, const char *path, int limit);
void llm_jsonl_records_release(struct llm_jsonl_records *r);

/* Writes obj as one compact line to f (path names f in errors). */
int llm_jsonl_write(FILE *f, const cJSON *obj, const char *path);

#endif
