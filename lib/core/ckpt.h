/* ckpt.h: the checkpoint container (DESIGN.md §4, byte layout in
 * docs/formats.md): a JSON header and named tensors in one zstd-compressed,
 * checksummed file, written atomically and read with bounded memory.
 *
 * The module owns the container, not its meaning: the caller supplies the
 * header object (config, tokenizer, training state...) and the tensors.
 *
 * Failure: every function returns 0 or a negative LLM_E* code with a message
 * (llm_errmsg) naming the file and, where it applies, the tensor:
 *   LLM_EFORMAT       corrupt, truncated or not a checkpoint;
 *   LLM_EUNSUPPORTED  a valid checkpoint of another format version;
 *   LLM_EIO           the file cannot be opened, read or written;
 *   LLM_EINVAL        a bad argument (unknown dtype, duplicate name, ...);
 *   LLM_ENOMEM        out of memory.
 * A reader trusts nothing before checking it: sizes and offsets are checked
 * against the file and fixed limits before anything is allocated, and every
 * byte of the file is covered by a CRC-32. Neither the writer nor the reader
 * is thread-safe; use one per thread. */
#ifndef LLM_CORE_CKPT_H
#define LLM_CORE_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#define LLM_CKPT_VERSION 1           /* the format version this build writes and reads */
#define LLM_CKPT_MAX_DIMS 8          /* most dimensions a tensor may have */
#define LLM_CKPT_MAX_NAME 255        /* longest tensor name, in bytes */
#define LLM_CKPT_MAX_JSON (256u << 20) /* largest header or index, compressed or not */
#define LLM_CKPT_DEFAULT_LEVEL 3     /* zstd level when opts.level is 0 */

/* Element types. The names ("f32", ...) are what the index stores. */
enum llm_ckpt_dtype {
    LLM_CKPT_F32,  /* "f32"  IEEE binary32 */
    LLM_CKPT_F16,  /* "f16"  IEEE binary16 */
    LLM_CKPT_BF16, /* "bf16" bfloat16 (top half of a binary32) */
    LLM_CKPT_I8,   /* "i8" */
    LLM_CKPT_U8,   /* "u8" */
    LLM_CKPT_I32,  /* "i32" */
    LLM_CKPT_I64,  /* "i64" */
    LLM_CKPT_NDTYPES
};

/* Bytes per element (0 for an out-of-range value). */
size_t llm_ckpt_dtype_size(enum llm_ckpt_dtype dt);
/* "f32", ... ("?" for an out-of-range value). Static string. */
const char *llm_ckpt_dtype_name(enum llm_ckpt_dtype dt);
/* Parses a dtype name; LLM_EINVAL for an unknown one. */
int llm_ckpt_dtype_parse(const char *name, enum llm_ckpt_dtype *out);

/* CRC-32 as in zlib, gzip and PNG (reflected polynomial 0xEDB88320, initial
 * and final xor 0xFFFFFFFF): llm_ckpt_crc32(0, p, n) for a buffer, and
 * chained as crc = llm_ckpt_crc32(crc, next, m). */
uint32_t llm_ckpt_crc32(uint32_t crc, const void *p, size_t n);

/* ---- writing ----
 * A writer holds the temp file of llm_atomic (".NAME.tmp.XXXXXX" next to
 * the path), a zstd context (a few MiB, plus about 10 MiB per compression
 * thread) and one 1 MiB output buffer: memory does not grow with tensor
 * size, only with the number of tensors (their index entries).
 * path appears only at commit, complete; until then, after any error, and
 * after a crash an existing file at path is untouched (a kill -9 can leave
 * the temp file behind; it is never read and may be deleted). */
struct llm_ckpt_writer;

struct llm_ckpt_opts {
    int level;   /* zstd level (1..19, or up to 22); 0 = LLM_CKPT_DEFAULT_LEVEL */
    int threads; /* compression threads: 0 = one per CPU (at most 8), 1 = the caller's only */
};

/* Starts a checkpoint at path. header must be a JSON object (NULL = {}); it
 * is serialized now and not kept (borrowed). opts may be NULL (defaults).
 * On success *out owns the temp file: end with commit or abort. */
int llm_ckpt_writer_open(struct llm_ckpt_writer **out, const char *path, const cJSON *header,
                         const struct llm_ckpt_opts *opts);
/* Writes one tensor from the caller's memory (borrowed, read only during the
 * call): nbytes = product of shape[0..ndim) * dtype size. ndim 0 is a scalar;
 * a zero dimension gives an empty tensor (data may be NULL). Names are
 * 1..LLM_CKPT_MAX_NAME printable ASCII characters, unique in the file. */
int llm_ckpt_write_tensor(struct llm_ckpt_writer *w, const char *name, enum llm_ckpt_dtype dtype,
                          int ndim, const int64_t *shape, const void *data);
/* The same in pieces, for data that arrives in parts (from a device, say):
 * begin, then append any number of times until exactly nbytes have been
 * given, then end. Another tensor cannot begin before this one ends. */
int llm_ckpt_writer_begin(struct llm_ckpt_writer *w, const char *name, enum llm_ckpt_dtype dtype,
                          int ndim, const int64_t *shape);
int llm_ckpt_writer_append(struct llm_ckpt_writer *w, const void *data, size_t n);
int llm_ckpt_writer_end(struct llm_ckpt_writer *w);
/* Writes the index and trailer, fsyncs and renames onto path (replacing any
 * file there), fsyncs the folder. Always frees w; on failure (including any
 * earlier failed call on w) the temp file is removed and path is untouched. */
int llm_ckpt_writer_commit(struct llm_ckpt_writer *w);
/* Removes the temp file and frees w. NULL is a no-op. */
void llm_ckpt_writer_abort(struct llm_ckpt_writer *w);

/* ---- reading ----
 * open checks the preamble and trailer, reads, checks and parses the header
 * and the index, and keeps them (bounded by LLM_CKPT_MAX_JSON each). Tensor
 * data is read only when asked for; every read checks that tensor's CRC and
 * zstd content checksum, so a corrupt tensor is never returned as good. */
struct llm_ckpt_reader;

/* One entry of the index. Owned by the reader, valid until close. */
struct llm_ckpt_tensor {
    const char *name;
    enum llm_ckpt_dtype dtype;
    int ndim;
    int64_t shape[LLM_CKPT_MAX_DIMS]; /* shape[ndim..] are 0 */
    uint64_t nbytes;                  /* uncompressed size */
    uint64_t offset, csize;           /* where its zstd frame lies in the file */
    uint32_t crc32;                   /* CRC-32 of the frame's csize bytes */
};

/* Opens and validates path. On success *out is owned by the caller (close). */
int llm_ckpt_open(struct llm_ckpt_reader **out, const char *path);
void llm_ckpt_close(struct llm_ckpt_reader *r); /* NULL is a no-op */

/* The header object (borrowed; valid until close; do not modify). */
const cJSON *llm_ckpt_header(const struct llm_ckpt_reader *r);
uint64_t llm_ckpt_file_size(const struct llm_ckpt_reader *r);
size_t llm_ckpt_count(const struct llm_ckpt_reader *r);
/* Entry i in file order (i < count), or NULL. */
const struct llm_ckpt_tensor *llm_ckpt_tensor(const struct llm_ckpt_reader *r, size_t i);
/* Index of the tensor called name, or -1 (no error is set). */
long llm_ckpt_find(const struct llm_ckpt_reader *r, const char *name);

/* Decompresses tensor i into dst, which holds exactly nbytes = its nbytes
 * (LLM_EINVAL otherwise). On failure dst's contents are unspecified. */
int llm_ckpt_read(struct llm_ckpt_reader *r, size_t i, void *dst, size_t nbytes);

/* Receives a tensor in pieces of at most 1 MiB, in order: data[0..n) is the
 * part at byte `offset` of the tensor, borrowed for the duration of the call
 * (copy what you keep). Returns 0 to go on; a negative LLM_E*
 * code (with its llm_err message) stops the read and is returned by it. */
typedef int (*llm_ckpt_chunk_fn)(void *ctx, const void *data, size_t n, uint64_t offset);
/* Streams tensor i through fn. The checksums can only be checked at the end,
 * after fn has seen every piece: if this returns an error, the caller must
 * discard what fn received. An empty tensor calls fn never. */
int llm_ckpt_read_chunks(struct llm_ckpt_reader *r, size_t i, llm_ckpt_chunk_fn fn, void *ctx);

/* Checks tensor i (CRC-32 of its frame, full decompression, zstd content
 * checksum and size) without keeping its data. */
int llm_ckpt_verify_tensor(struct llm_ckpt_reader *r, size_t i);
/* verify_tensor for every tensor, in file order; stops at the first failure. */
int llm_ckpt_verify(struct llm_ckpt_reader *r);

#endif
