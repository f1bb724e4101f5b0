/* safetensors.h: the Hugging Face safetensors file format, read and written
 * strictly: an 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
 * {string: string}}, then the tensors' raw little-endian bytes, every byte of
 * the data covered by exactly one tensor, in offset order, with no gap.
 *
 * The reader trusts nothing: header length bounds, JSON syntax, duplicate
 * names, unknown entry keys, dtype names, shape products against the byte
 * ranges (no overflow), ranges contiguous from 0 to the end of the file. It
 * reads with pread only inside the ranges it checked (never past the file).
 * Errors: LLM_EFORMAT (malformed, naming the file and the tensor), LLM_EIO,
 * LLM_EUNSUPPORTED (a dtype this build cannot convert), LLM_EINVAL (bad
 * argument), LLM_ENOMEM. Not thread-safe: one reader or writer per thread. */
#ifndef LLM_MODEL_SAFETENSORS_H
#define LLM_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#define LLM_ST_MAX_DIMS 8                /* most dimensions we accept */
#define LLM_ST_MAX_HEADER 100000000ull   /* as the reference implementation: 100 MB */
#define LLM_ST_MAX_NAME 1024             /* longest tensor name, in bytes */

enum llm_st_dtype {
    LLM_ST_BOOL, LLM_ST_U8, LLM_ST_I8, LLM_ST_I16, LLM_ST_U16, LLM_ST_F16, LLM_ST_BF16,
    LLM_ST_I32, LLM_ST_U32, LLM_ST_F32, LLM_ST_I64, LLM_ST_U64, LLM_ST_F64,
    LLM_ST_F8_E4M3, LLM_ST_F8_E5M2,
    LLM_ST_NDTYPES
};

/* "F32", ... ("?" out of range); bytes per element (0 out of range). */
const char *llm_st_dtype_name(enum llm_st_dtype dt);
size_t llm_st_dtype_size(enum llm_st_dtype dt);

/* One tensor of a file: for the writer, name/dtype/ndim/shape are given and
 * begin/end are filled in; for the reader all are read and checked. */
struct llm_st_tensor {
    const char *name;              /* borrowed (writer) / owned by the file (reader) */
    enum llm_st_dtype dtype;
    int ndim;                      /* 0 = scalar */
    int64_t shape[LLM_ST_MAX_DIMS];
    uint64_t begin, end;           /* byte range, relative to the data section */
};

/* ---- writing ----
 * The header is made from the full list first, then the data is appended in
 * list order (in any pieces). The file appears at path only on commit
 * (temp file, fsync, rename: core/file.h). */
struct llm_st_writer;

/* tensors[0..n) (borrowed during the call; names unique, printable); their
 * offsets follow the list order. metadata is NULL or an object of strings
 * (copied into "__metadata__"). The header is padded with spaces to a
 * multiple of 8 bytes so the data is aligned. */
int llm_st_writer_open(struct llm_st_writer **out, const char *path, const struct llm_st_tensor *tensors,
                       size_t n, const cJSON *metadata);
/* The next n bytes of data (the tensors' bytes, concatenated in order). */
int llm_st_writer_append(struct llm_st_writer *w, const void *data, size_t n);
/* Checks that all bytes were given, then commits. Always frees w. */
int llm_st_writer_commit(struct llm_st_writer *w);
/* Removes the temp file and frees w; NULL is a no-op. */
void llm_st_writer_abort(struct llm_st_writer *w);

/* ---- reading ---- */
struct llm_st_file;

/* Opens and validates path. On success *out is the caller's (close). */
int llm_st_open(struct llm_st_file **out, const char *path);
void llm_st_close(struct llm_st_file *f); /* NULL is a no-op */

size_t llm_st_count(const struct llm_st_file *f);
/* Tensor i in header order (i < count), or NULL. Borrowed until close. */
const struct llm_st_tensor *llm_st_get(const struct llm_st_file *f, size_t i);
/* Index of the tensor called name, or -1 (no error set). */
long llm_st_find(const struct llm_st_file *f, const char *name);
/* The "__metadata__" object, or NULL if absent. Borrowed until close. */
const cJSON *llm_st_metadata(const struct llm_st_file *f);
/* The path given to open (borrowed). */
const char *llm_st_path(const struct llm_st_file *f);

/* Reads tensor i converted to f32 into dst, which holds exactly n = its
 * element count. F32 is copied, BF16 widened (it is the top half of an f32),
 * F16 and F64 converted (F16 exactly; F64 rounded to nearest); other dtypes
 * are LLM_EUNSUPPORTED. */
int llm_st_read_f32(struct llm_st_file *f, size_t i, float *dst, size_t n);

/* ---- a model in one file or in shards ----
 * DIR/model.safetensors, or else the files named by the "weight_map"
 * ({tensor: file}) of DIR/model.safetensors.index.json, as Hugging Face
 * saves large models. Shard names must be plain file names in DIR; every
 * tensor of the map must be in its file. */
struct llm_st_set {
    struct llm_st_file **f; /* (n) open files */
    size_t n;
};

/* Opens the files of dir into s (s need not be initialized; on error it is
 * closed). */
int llm_st_set_open(struct llm_st_set *s, const char *dir);
void llm_st_set_close(struct llm_st_set *s); /* zeroed struct: no-op */
/* Finds name: *file and *index, or *index = -1 if no file has it;
 * LLM_EFORMAT if two files have it. */
int llm_st_set_find(const struct llm_st_set *s, const char *name, size_t *file, long *index);

/* IEEE binary16 -> binary32, exact (subnormals, infinities, NaNs kept). */
float llm_st_f16_to_f32(uint16_t h);

#endif
