/* file.h: atomic file output (temp file in the same folder, fsync, rename,
 * fsync the folder) and small whole-file helpers. Every writer of lib/ goes
 * through llm_atomic so a crash or an error never leaves a partial output. */
#ifndef LLM_CORE_FILE_H
#define LLM_CORE_FILE_H

#include <stdio.h>
#include <stddef.h>

/* An output file being written. Embedded; owns its FILE and paths.
 * path "-" means stdout: written directly, commit only flushes. */
struct llm_atomic {
    FILE *f;     /* write here */
    char *path;  /* final path (owned) */
    char *tmp;   /* temp path in the same folder, NULL for stdout (owned) */
};

/* Creates ".<name>.tmp.XXXXXX" next to path, opened for writing. */
int llm_atomic_open(struct llm_atomic *a, const char *path);
/* Flushes, fsyncs, closes, renames onto path, fsyncs the folder; releases a.
 * On failure the temp file is removed and path is untouched. */
int llm_atomic_commit(struct llm_atomic *a);
/* Closes and removes the temp file; path is untouched. Safe after commit. */
void llm_atomic_abort(struct llm_atomic *a);

/* Writes text (and a final "\n" with newline) to path atomically: the whole
 * file or, on error, nothing (path untouched). */
int llm_write_text(const char *path, const char *text, int newline);

/* Writes n bytes to f, or sets an error naming path. */
int llm_fwrite(FILE *f, const void *p, size_t n, const char *path);

/* Reads a whole file ("-" = stdin) into a NUL-terminated malloc'd buffer;
 * refuses files larger than max_bytes. Caller frees *out. */
int llm_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

/* mkdir -p: creates path and its missing parents; an existing folder is fine,
 * an existing non-folder is LLM_EIO. */
int llm_mkdir_p(const char *path);

/* Opens path for reading ("-" = stdin), with an error naming it. */
int llm_fopen_read(const char *path, FILE **out);

#endif
