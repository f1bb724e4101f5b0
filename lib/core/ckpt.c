/* ckpt.c: the checkpoint container of ckpt.h: the pieces the writer and the
 * reader share (byte order, CRC-32, dtypes, names, zstd frame headers), then
 * the writer, then the reader. docs/formats.md is the byte layout they agree
 * on; keep the two in step. */
#include "ckpt.h"
#include "err.h"
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

/* The layout (docs/formats.md): preamble, header frame, tensor frames,
 * index frame, trailer. Integers are little-endian, written byte by byte. */
#define PREAMBLE_SIZE 32
#define TRAILER_SIZE 40
static const uint8_t MAGIC[8] = {'L', 'L', 'M', 'C', 'K', 'P', 'T', 0};
static const uint8_t END_MAGIC[8] = {'L', 'L', 'M', 'C', 'K', 'E', 'N', 'D'};

#define CKPT_ZSTD_MAGIC 0xFD2FB528u
/* The smallest zstd frame we accept: magic 4, descriptor 1, content size 1,
 * one empty block 3, checksum 4. Bounds the tensor count by the file size. */
#define MIN_FRAME 13
/* Integers in the index are JSON numbers, exact up to 2^53 in any reader. */
#define CKPT_MAX_INT ((uint64_t)1 << 53)
/* Read and write buffers: fixed, so memory never grows with tensor size. */
#define BUF_SIZE ((size_t)1 << 20)

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* ---- CRC-32 ----
 * Slicing-by-8: table k maps a byte to its CRC contribution k bytes further
 * on, so eight bytes cost eight lookups and no bit loop (~2 GB/s measured,
 * several times zstd's speed). Tables are built once, on first use. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
        crc_table[0][b] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int b = 0; b < 256; b++)
            crc_table[t][b] = (crc_table[t - 1][b] >> 8) ^ crc_table[0][crc_table[t - 1][b] & 0xff];
}

uint32_t llm_ckpt_crc32(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *s = p;
    uint32_t c = ~crc;
    while (n >= 8) {
        uint32_t lo = c ^ get_u32(s), hi = get_u32(s + 4);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
            crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
            crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
        s += 8, n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ crc_table[0][(c ^ *s++) & 0xff];
    return ~c;
}

/* ---- dtypes and names ---- */
static const struct {
    const char *name;
    size_t size;
} dtypes[LLM_CKPT_NDTYPES] = {
    [LLM_CKPT_F32] = {"f32", 4}, [LLM_CKPT_F16] = {"f16", 2}, [LLM_CKPT_BF16] = {"bf16", 2},
    [LLM_CKPT_I8] = {"i8", 1},   [LLM_CKPT_U8] = {"u8", 1},   [LLM_CKPT_I32] = {"i32", 4},
    [LLM_CKPT_I64] = {"i64", 8},
};

size_t llm_ckpt_dtype_size(enum llm_ckpt_dtype dt)
{
    return (unsigned)dt < LLM_CKPT_NDTYPES ? dtypes[dt].size : 0;
}

const char *llm_ckpt_dtype_name(enum llm_ckpt_dtype dt)
{
    return (unsigned)dt < LLM_CKPT_NDTYPES ? dtypes[dt].name : "?";
}

int llm_ckpt_dtype_parse(const char *name, enum llm_ckpt_dtype *out)
{
    for (int i = 0; i < LLM_CKPT_NDTYPES; i++)
        if (name && !strcmp(name, dtypes[i].name)) {
            *out = (enum llm_ckpt_dtype)i;
            return 0;
        }
    return llm_err(LLM_EINVAL, "unknown dtype '%s' (known: f32 f16 bf16 i8 u8 i32 i64)",
                   name ? name : "(null)");
}

/* Printable ASCII only: names go into error messages and JSON read by other
 * programs, where control bytes or invalid UTF-8 would cause trouble. */
static const char *name_problem(const char *name)
{
    size_t n = strlen(name);
    if (n == 0)
        return "is empty";
    if (n > LLM_CKPT_MAX_NAME)
        return "is longer than 255 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] > 0x7e)
            return "has a byte that is not printable ASCII";
    return NULL;
}

static const char *shape_bytes(enum llm_ckpt_dtype dt, int ndim, const int64_t *shape, uint64_t *nbytes)
{
    if ((unsigned)dt >= LLM_CKPT_NDTYPES)
        return "has an unknown dtype";
    if (ndim < 0 || ndim > LLM_CKPT_MAX_DIMS)
        return "has more than 8 dimensions";
    uint64_t n = dtypes[dt].size;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > CKPT_MAX_INT)
            return "has a dimension below 0 or above 2^53";
        /* A zero dimension makes the product 0 whatever follows. */
        if (shape[i] && n > CKPT_MAX_INT / (uint64_t)shape[i])
            return "is larger than 2^53 bytes";
        n *= (uint64_t)shape[i];
    }
    *nbytes = n;
    return NULL;
}

/* ---- zstd frame headers (RFC 8878, section 3.1.1) ----
 * Parsed here rather than with ZSTD_getFrameHeader, which is only in zstd's
 * experimental API. */
struct frame {
    uint64_t content_size; /* from the frame header */
    size_t header_size;
};

static const char *frame_header(const uint8_t *p, size_t n, struct frame *f)
{
    memset(f, 0, sizeof(*f));
    if (n < 5 || get_u32(p) != CKPT_ZSTD_MAGIC)
        return "not a zstd frame";
    uint8_t fhd = p[4];
    unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, did_flag = fhd & 3;
    if (fhd & 0x08)
        return "zstd frame header has its reserved bit set";
    static const size_t did_sizes[4] = {0, 1, 2, 4};
    size_t fcs_size = fcs_flag ? (size_t)1 << fcs_flag : single;
    size_t pos = 5 + !single, need = pos + did_sizes[did_flag] + fcs_size;
    if (n < need)
        return "zstd frame header is cut short";
    uint64_t did = 0, fcs = 0;
    for (size_t i = 0; i < did_sizes[did_flag]; i++)
        did |= (uint64_t)p[pos + i] << (8 * i);
    pos += did_sizes[did_flag];
    for (size_t i = 0; i < fcs_size; i++)
        fcs |= (uint64_t)p[pos + i] << (8 * i);
    if (fcs_size == 2)
        fcs += 256;
    if (!fcs_size)
        return "zstd frame does not record its content size";
    if (!(fhd & 0x04))
        return "zstd frame has no content checksum";
    if (did)
        return "zstd frame needs a dictionary";
    f->content_size = fcs;
    f->header_size = need;
    return NULL;
}

/* ---- writer ---- */

/* What the index records of one tensor (the reader's struct, but owning its name). */
struct entry {
    char *name;
    enum llm_ckpt_dtype dtype;
    int ndim;
    int64_t shape[LLM_CKPT_MAX_DIMS];
    uint64_t nbytes, offset, csize;
    uint32_t crc32;
};

struct llm_ckpt_writer {
    struct llm_atomic out;      /* the temp file; renamed onto the path at commit */
    ZSTD_CCtx *cctx;
    uint8_t *buf;               /* (BUF_SIZE) compressed output on its way to the file */
    uint8_t preamble[PREAMBLE_SIZE]; /* kept: the trailer's CRC covers it */
    uint64_t pos;               /* bytes written to the file so far */
    struct entry *ents;         /* (n) tensors in file order */
    size_t n, cap;
    size_t *names;              /* (nslots) hash set of names: entry index + 1, 0 = free */
    size_t nslots;
    int open;                   /* ents[n-1] was begun and not yet ended */
    uint64_t fed;               /* bytes of the open tensor given so far */
    int failed;                 /* first error once the file may be inconsistent: sticky */
    char failmsg[1024];
};

/* Makes an error sticky: a tensor half-written or a short write leaves the
 * temp file unusable, so every later call, commit included, fails too. */
static int wfail(struct llm_ckpt_writer *w, int rc)
{
    if (!w->failed) {
        w->failed = rc;
        snprintf(w->failmsg, sizeof(w->failmsg), "%s", llm_errmsg());
    }
    return rc;
}

static int wcheck(struct llm_ckpt_writer *w)
{
    if (!w)
        return llm_err(LLM_EINVAL, "checkpoint writer is NULL");
    if (w->failed)
        return llm_err(w->failed, "%s", w->failmsg);
    return 0;
}

static int emit(struct llm_ckpt_writer *w, const void *p, size_t n)
{
    int rc = llm_fwrite(w->out.f, p, n, w->out.path);
    if (rc)
        return wfail(w, rc);
    w->pos += n;
    return 0;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* Slot of name in the set: its entry, or the free slot where it would go. */
static size_t *name_slot(struct llm_ckpt_writer *w, const char *name)
{
    size_t mask = w->nslots - 1, i = (size_t)hash_name(name) & mask;
    while (w->names[i] && strcmp(w->ents[w->names[i] - 1].name, name))
        i = (i + 1) & mask;
    return &w->names[i];
}

/* Room for one more entry and its name in the set (kept at most half full). */
static int grow(struct llm_ckpt_writer *w)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        struct entry *e = realloc(w->ents, cap * sizeof(*e));
        if (!e)
            return llm_err(LLM_ENOMEM, "out of memory for the checkpoint index");
        w->ents = e, w->cap = cap;
    }
    if (2 * (w->n + 1) > w->nslots) {
        size_t nslots = w->nslots ? 2 * w->nslots : 128;
        size_t *old = w->names, oldn = w->nslots;
        if (!(w->names = llm_calloc(nslots, sizeof(size_t), "the checkpoint index"))) {
            w->names = old;
            return LLM_ENOMEM;
        }
        w->nslots = nslots;
        for (size_t i = 0; i < oldn; i++)
            if (old[i])
                *name_slot(w, w->ents[old[i] - 1].name) = old[i];
        free(old);
    }
    return 0;
}

static int zfail(struct llm_ckpt_writer *w, size_t z, const char *what)
{
    return wfail(w, llm_err(ZSTD_getErrorCode(z) == ZSTD_error_memory_allocation ? LLM_ENOMEM
                                                                                  : LLM_EINVAL,
                            "'%s': compressing %s: %s", w->out.path, what, ZSTD_getErrorName(z)));
}

/* Compresses in through the fixed buffer into the file until zstd has taken
 * all of it (and, for ZSTD_e_end, closed the frame); CRCs what it writes. */
static int feed(struct llm_ckpt_writer *w, const void *data, size_t n, ZSTD_EndDirective mode)
{
    struct entry *e = &w->ents[w->n - 1];
    ZSTD_inBuffer in = {data, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->buf, BUF_SIZE, 0};
        size_t z = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(z))
            return zfail(w, z, "a tensor");
        e->crc32 = llm_ckpt_crc32(e->crc32, w->buf, out.pos);
        int rc = emit(w, w->buf, out.pos);
        if (rc)
            return rc;
        if (mode == ZSTD_e_end ? z == 0 : in.pos == in.size)
            return 0;
    }
}

static int set_threads(ZSTD_CCtx *cctx, int threads)
{
    if (threads == 0) {
        /* More workers barely help once the disk is the bottleneck: cap at 4. */
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        threads = ncpu > 4 ? 4 : ncpu < 1 ? 1 : (int)ncpu;
    }
    ZSTD_bounds b = ZSTD_cParam_getBounds(ZSTD_c_nbWorkers);
    int workers = threads > 1 ? threads : 0;
    if (ZSTD_isError(b.error) || b.upperBound < 1)
        workers = 0; /* libzstd built without threads */
    else if (workers > b.upperBound)
        workers = b.upperBound;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, workers)))
        return -1;
    /* zstd's default job (4 windows: 8 MiB at level 3) made 2 workers cost
     * 87 MiB of buffers; 2 MiB jobs measured 22 MiB, as fast, same ratio
     * (jobs overlap, so matches still reach across them). */
    if (workers)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_jobSize, 2 << 20);
    return 0;
}

int llm_ckpt_writer_open(struct llm_ckpt_writer **out, const char *path, const cJSON *header,
                         const struct llm_ckpt_opts *opts)
{
    struct llm_ckpt_opts o = opts ? *opts : (struct llm_ckpt_opts){0};
    char *text = NULL;
    uint8_t *frame = NULL;
    int rc;
    *out = NULL;
    if (!path || !path[0] || !strcmp(path, "-"))
        return llm_err(LLM_EINVAL, "a checkpoint needs a file path (not '%s')", path ? path : "");
    if (header && !cJSON_IsObject(header))
        return llm_err(LLM_EINVAL, "'%s': the checkpoint header must be a JSON object", path);
    if (o.level == 0)
        o.level = LLM_CKPT_DEFAULT_LEVEL;
    if (o.level < 1 || o.level > ZSTD_maxCLevel())
        return llm_err(LLM_EINVAL, "compression level %d is not in 1..%d", o.level, ZSTD_maxCLevel());
    if (o.threads < 0)
        return llm_err(LLM_EINVAL, "compression threads must be >= 0 (got %d)", o.threads);

    struct llm_ckpt_writer *w = llm_calloc(1, sizeof(*w), "a checkpoint writer");
    if (!w)
        return LLM_ENOMEM;
    w->buf = llm_malloc(BUF_SIZE, "a checkpoint buffer");
    w->cctx = ZSTD_createCCtx();
    if (!w->buf || !w->cctx) {
        rc = llm_err(LLM_ENOMEM, "out of memory for a checkpoint writer");
        goto fail;
    }
    if (ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, o.level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1)))
        LLM_BUG("zstd refused a stable parameter");
    set_threads(w->cctx, o.threads); /* on failure: single-threaded, still correct */

    text = header ? cJSON_PrintUnformatted(header) : strdup("{}");
    if (!text) {
        rc = llm_err(LLM_ENOMEM, "out of memory serializing the checkpoint header");
        goto fail;
    }
    size_t len = strlen(text), bound = ZSTD_compressBound(len);
    if (len > LLM_CKPT_MAX_JSON) {
        rc = llm_err(LLM_EINVAL, "'%s': the header is %zu bytes of JSON (the limit is 256 MiB)", path, len);
        goto fail;
    }
    if (!(frame = llm_malloc(bound, "the checkpoint header"))) {
        rc = LLM_ENOMEM;
        goto fail;
    }
    size_t hc = ZSTD_compress2(w->cctx, frame, bound, text, len);
    if (ZSTD_isError(hc)) {
        rc = llm_err(LLM_ENOMEM, "'%s': compressing the header: %s", path, ZSTD_getErrorName(hc));
        goto fail;
    }
    if (hc > LLM_CKPT_MAX_JSON) {
        rc = llm_err(LLM_EINVAL, "'%s': the compressed header is over 256 MiB", path);
        goto fail;
    }

    uint8_t *p = w->preamble;
    memcpy(p, MAGIC, 8);
    put_u32(p + 8, LLM_CKPT_VERSION);
    put_u32(p + 12, 0); /* flags: none defined */
    put_u64(p + 16, hc);
    put_u32(p + 24, llm_ckpt_crc32(0, frame, hc));
    put_u32(p + 28, llm_ckpt_crc32(0, p, 28));
    if ((rc = llm_atomic_open(&w->out, path)))
        goto fail;
    if ((rc = emit(w, p, PREAMBLE_SIZE)) || (rc = emit(w, frame, hc)))
        goto fail;
    free(text);
    free(frame);
    *out = w;
    return 0;
fail:
    free(text);
    free(frame);
    llm_ckpt_writer_abort(w);
    return rc;
}

int llm_ckpt_writer_begin(struct llm_ckpt_writer *w, const char *name, enum llm_ckpt_dtype dtype,
                          int ndim, const int64_t *shape)
{
    int rc = wcheck(w);
    if (rc)
        return rc;
    if (w->open)
        return llm_err(LLM_EINVAL, "'%s': tensor '%s' is still being written (end it first)",
                       w->out.path, w->ents[w->n - 1].name);
    /* Bad arguments are refused before anything is written: not sticky. */
    const char *why = name ? name_problem(name) : "is NULL";
    if (why)
        return llm_err(LLM_EINVAL, "'%s': tensor name '%s' %s", w->out.path, name ? name : "", why);
    uint64_t nbytes;
    if (ndim > 0 && !shape)
        why = "has no shape";
    else
        why = shape_bytes(dtype, ndim, shape, &nbytes);
    if (why)
        return llm_err(LLM_EINVAL, "'%s': tensor '%s' %s", w->out.path, name, why);
    if ((rc = grow(w)))
        return rc;
    size_t *slot = name_slot(w, name);
    if (*slot)
        return llm_err(LLM_EINVAL, "'%s': tensor '%s' is written twice", w->out.path, name);

    struct entry *e = &w->ents[w->n];
    memset(e, 0, sizeof(*e));
    if (!(e->name = strdup(name)))
        return llm_err(LLM_ENOMEM, "out of memory for a tensor name");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->nbytes = nbytes;
    e->offset = w->pos;
    *slot = ++w->n;
    w->open = 1;
    w->fed = 0;
    /* Each tensor is its own frame; pledging its size puts the size in the
     * frame header, which the reader checks against the index. */
    size_t z = ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only);
    if (ZSTD_isError(z) || ZSTD_isError(z = ZSTD_CCtx_setPledgedSrcSize(w->cctx, nbytes)))
        return zfail(w, z, "a tensor");
    return 0;
}

int llm_ckpt_writer_append(struct llm_ckpt_writer *w, const void *data, size_t n)
{
    int rc = wcheck(w);
    if (rc)
        return rc;
    if (!w->open)
        return llm_err(LLM_EINVAL, "'%s': append without a tensor begun", w->out.path);
    struct entry *e = &w->ents[w->n - 1];
    if (n > e->nbytes - w->fed)
        return wfail(w, llm_err(LLM_EINVAL, "'%s': tensor '%s' is given more than its %llu bytes",
                                w->out.path, e->name, (unsigned long long)e->nbytes));
    if (n == 0)
        return 0;
    if (!data)
        return wfail(w, llm_err(LLM_EINVAL, "'%s': tensor '%s': data is NULL", w->out.path, e->name));
    w->fed += n;
    return feed(w, data, n, ZSTD_e_continue);
}

int llm_ckpt_writer_end(struct llm_ckpt_writer *w)
{
    int rc = wcheck(w);
    if (rc)
        return rc;
    if (!w->open)
        return llm_err(LLM_EINVAL, "'%s': end without a tensor begun", w->out.path);
    struct entry *e = &w->ents[w->n - 1];
    if (w->fed != e->nbytes)
        return wfail(w, llm_err(LLM_EINVAL, "'%s': tensor '%s' ended after %llu of its %llu bytes",
                                w->out.path, e->name, (unsigned long long)w->fed,
                                (unsigned long long)e->nbytes));
    if ((rc = feed(w, NULL, 0, ZSTD_e_end)))
        return rc;
    e->csize = w->pos - e->offset;
    w->open = 0;
    return 0;
}

int llm_ckpt_write_tensor(struct llm_ckpt_writer *w, const char *name, enum llm_ckpt_dtype dtype,
                          int ndim, const int64_t *shape, const void *data)
{
    uint64_t nbytes;
    if (w && !w->failed && !data && ndim >= 0 && (ndim == 0 || shape) &&
        !shape_bytes(dtype, ndim, shape, &nbytes) && nbytes)
        return llm_err(LLM_EINVAL, "'%s': tensor '%s': data is NULL", w->out.path, name ? name : "");
    int rc = llm_ckpt_writer_begin(w, name, dtype, ndim, shape);
    if (rc)
        return rc;
    struct entry *e = &w->ents[w->n - 1];
    /* All of it at once with ZSTD_e_end: zstd's threads then block rather
     * than spin, and a small tensor takes the one-shot path. */
    w->fed = e->nbytes;
    if ((rc = feed(w, data, e->nbytes, ZSTD_e_end)))
        return rc;
    e->csize = w->pos - e->offset;
    w->open = 0;
    return 0;
}

/* Integers go in as raw JSON text: exact, never "1e+15" as cJSON prints some doubles. */
static int add_uint(cJSON *obj, const char *key, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    cJSON *item = cJSON_CreateRaw(num);
    return item && cJSON_AddItemToObject(obj, key, item) ? 0 : -1;
}

static char *index_json(const struct llm_ckpt_writer *w)
{
    cJSON *arr = cJSON_CreateArray();
    char *text = NULL;
    if (!arr)
        return NULL;
    for (size_t i = 0; i < w->n; i++) {
        const struct entry *e = &w->ents[i];
        cJSON *o = cJSON_CreateObject(), *shape = cJSON_CreateArray();
        if (!o || !shape || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            cJSON_Delete(shape);
            goto done;
        }
        if (!cJSON_AddStringToObject(o, "name", e->name) ||
            !cJSON_AddStringToObject(o, "dtype", llm_ckpt_dtype_name(e->dtype)) ||
            !cJSON_AddItemToObject(o, "shape", shape)) {
            cJSON_Delete(shape);
            goto done;
        }
        for (int d = 0; d < e->ndim; d++) {
            char num[24];
            snprintf(num, sizeof(num), "%lld", (long long)e->shape[d]);
            cJSON *dim = cJSON_CreateRaw(num);
            if (!dim || !cJSON_AddItemToArray(shape, dim)) {
                cJSON_Delete(dim);
                goto done;
            }
        }
        if (add_uint(o, "offset", e->offset) || add_uint(o, "csize", e->csize) ||
            add_uint(o, "nbytes", e->nbytes) || add_uint(o, "crc32", e->crc32))
            goto done;
    }
    text = cJSON_PrintUnformatted(arr);
done:
    cJSON_Delete(arr);
    return text;
}

int llm_ckpt_writer_commit(struct llm_ckpt_writer *w)
{
    char *text = NULL;
    uint8_t *frame = NULL;
    int rc = wcheck(w);
    if (rc)
        goto done;
    if (w->open) {
        rc = llm_err(LLM_EINVAL, "'%s': tensor '%s' was begun but never ended", w->out.path,
                     w->ents[w->n - 1].name);
        goto done;
    }
    if (!(text = index_json(w))) {
        rc = llm_err(LLM_ENOMEM, "out of memory building the checkpoint index");
        goto done;
    }
    size_t len = strlen(text), bound = ZSTD_compressBound(len);
    if (len > LLM_CKPT_MAX_JSON) {
        rc = llm_err(LLM_EINVAL, "'%s': the index is over 256 MiB (%zu tensors)", w->out.path, w->n);
        goto done;
    }
    if (!(frame = llm_malloc(bound, "the checkpoint index"))) {
        rc = LLM_ENOMEM;
        goto done;
    }
    size_t z = ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only), ic = 0;
    if (!ZSTD_isError(z))
        z = ic = ZSTD_compress2(w->cctx, frame, bound, text, len);
    if (ZSTD_isError(z)) {
        rc = zfail(w, z, "the index");
        goto done;
    }
    uint8_t tr[TRAILER_SIZE];
    put_u64(tr, w->pos);
    put_u64(tr + 8, ic);
    put_u64(tr + 16, w->n);
    put_u32(tr + 24, llm_ckpt_crc32(0, frame, ic));
    put_u32(tr + 28, llm_ckpt_crc32(llm_ckpt_crc32(0, w->preamble, PREAMBLE_SIZE), tr, 28));
    memcpy(tr + 32, END_MAGIC, 8);
    if ((rc = emit(w, frame, ic)) || (rc = emit(w, tr, TRAILER_SIZE)))
        goto done;
    rc = llm_atomic_commit(&w->out); /* releases w->out, success or not */
done:
    free(text);
    free(frame);
    llm_ckpt_writer_abort(w);
    return rc;
}

void llm_ckpt_writer_abort(struct llm_ckpt_writer *w)
{
    if (!w)
        return;
    if (w->out.f)
        llm_atomic_abort(&w->out);
    ZSTD_freeCCtx(w->cctx);
    for (size_t i = 0; i < w->n; i++)
        free(w->ents[i].name);
    free(w->ents);
    free(w->names);
    free(w->buf);
    free(w);
}

/* ---- reader ---- */

struct llm_ckpt_reader {
    char *path;
    int fd;
    uint64_t size;                 /* of the file, at open */
    cJSON *header;
    struct llm_ckpt_tensor *t;     /* (n) in file order */
    size_t n;
    const struct llm_ckpt_tensor **by_name; /* (n) sorted by name, for find */
    char *names;                   /* every tensor name, NUL-separated */
    ZSTD_DCtx *dctx;
    /* Both allocated on first use, at most BUF_SIZE, less for small files. */
    uint8_t *in;                   /* (in_cap) compressed bytes from the file */
    uint8_t *chunk;                /* (chunk_cap) decompressed pieces */
    size_t in_cap, chunk_cap;
};

/* Every complaint about the file's contents: LLM_EFORMAT, naming the file. */
static int corrupt(const struct llm_ckpt_reader *r, const char *fmt, ...) LLM_PRINTF(2, 3);
static int corrupt(const struct llm_ckpt_reader *r, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return llm_err(LLM_EFORMAT, "'%s': %s", r->path, msg);
}

/* Reads exactly n bytes at off. The file shrinking under us reads as truncation. */
static int read_at(struct llm_ckpt_reader *r, uint64_t off, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t got = pread(r->fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return llm_err(LLM_EIO, "cannot read '%s': %s", r->path, strerror(errno));
        if (got == 0)
            return llm_err(LLM_EFORMAT, "'%s' is truncated (it ended at byte %llu while being read)",
                           r->path, (unsigned long long)off);
        p += got, off += (uint64_t)got, n -= (size_t)got;
    }
    return 0;
}

/* Reads the header or index frame: CRC first, then the zstd frame header,
 * then one-shot decompression into a buffer of the declared size (at most
 * LLM_CKPT_MAX_JSON; csize was bounded by the caller), then the JSON. */
static int read_json(struct llm_ckpt_reader *r, uint64_t off, uint64_t csize, uint32_t crc,
                     const char *what, cJSON **out)
{
    uint8_t *frame = NULL;
    char *text = NULL;
    struct frame f;
    const char *why, *end;
    int rc;
    *out = NULL;
    if (!(frame = llm_malloc((size_t)csize, what)))
        return LLM_ENOMEM;
    if ((rc = read_at(r, off, frame, (size_t)csize)))
        goto done;
    if (llm_ckpt_crc32(0, frame, (size_t)csize) != crc) {
        rc = corrupt(r, "the %s is corrupt (checksum mismatch)", what);
        goto done;
    }
    if ((why = frame_header(frame, (size_t)csize, &f))) {
        rc = corrupt(r, "the %s is corrupt (%s)", what, why);
        goto done;
    }
    if (f.content_size > LLM_CKPT_MAX_JSON) {
        rc = corrupt(r, "the %s claims %llu bytes (the limit is 256 MiB)", what,
                     (unsigned long long)f.content_size);
        goto done;
    }
    /* One frame and nothing after it: ZSTD_decompressDCtx would otherwise
     * decode frames concatenated behind it. */
    if (ZSTD_findFrameCompressedSize(frame, (size_t)csize) != csize) {
        rc = corrupt(r, "the %s is corrupt (its zstd frame is not %llu bytes long)", what,
                     (unsigned long long)csize);
        goto done;
    }
    if (!(text = llm_malloc((size_t)f.content_size + 1, what))) {
        rc = LLM_ENOMEM;
        goto done;
    }
    size_t z = ZSTD_decompressDCtx(r->dctx, text, (size_t)f.content_size, frame, (size_t)csize);
    if (ZSTD_isError(z) || z != f.content_size) {
        rc = corrupt(r, "the %s is corrupt (zstd: %s)", what,
                     ZSTD_isError(z) ? ZSTD_getErrorName(z) : "wrong size");
        goto done;
    }
    text[z] = '\0';
    *out = cJSON_ParseWithLengthOpts(text, z, &end, 0);
    while (*out && end < text + z && strchr(" \t\r\n", *end))
        end++;
    if (!*out || end != text + z) {
        cJSON_Delete(*out);
        *out = NULL;
        rc = corrupt(r, "the %s is not valid JSON", what);
    }
done:
    free(frame);
    free(text);
    return rc;
}

/* A JSON number that is a whole number in 0..max (max <= 2^53, where
 * doubles stop being exact). The range test comes first: NaN fails it and
 * the cast is then defined. */
static int json_uint(const cJSON *v, uint64_t max, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= (double)max) || (double)(uint64_t)d != d)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    const struct llm_ckpt_tensor *x = *(const struct llm_ckpt_tensor *const *)a;
    const struct llm_ckpt_tensor *y = *(const struct llm_ckpt_tensor *const *)b;
    return strcmp(x->name, y->name);
}

enum { K_NAME, K_DTYPE, K_SHAPE, K_OFFSET, K_CSIZE, K_NBYTES, K_CRC, NKEYS };
static const char *const index_keys[NKEYS] = {"name", "dtype", "shape", "offset", "csize",
                                              "nbytes", "crc32"};

/* One index entry: exactly the keys above, each valid; fills t except name. */
static int parse_entry(struct llm_ckpt_reader *r, size_t i, const cJSON *o,
                       struct llm_ckpt_tensor *t, const char **name)
{
    const cJSON *v[NKEYS] = {0};
    if (!cJSON_IsObject(o))
        return corrupt(r, "corrupt index (entry %zu is not an object)", i);
    for (const cJSON *c = o->child; c; c = c->next) {
        int k = 0;
        while (k < NKEYS && strcmp(c->string, index_keys[k]))
            k++;
        if (k == NKEYS || v[k])
            return corrupt(r, "corrupt index (entry %zu has %s key '%.40s')", i,
                           k == NKEYS ? "an unknown" : "a repeated", c->string);
        v[k] = c;
    }
    for (int k = 0; k < NKEYS; k++)
        if (!v[k])
            return corrupt(r, "corrupt index (entry %zu has no '%s')", i, index_keys[k]);
    const char *why = NULL;
    if (!cJSON_IsString(v[K_NAME]) || (why = name_problem(v[K_NAME]->valuestring)))
        return corrupt(r, "corrupt index (the name of entry %zu %s)", i, why ? why : "is not a string");
    *name = v[K_NAME]->valuestring;
    if (!cJSON_IsString(v[K_DTYPE]) || llm_ckpt_dtype_parse(v[K_DTYPE]->valuestring, &t->dtype))
        return corrupt(r, "corrupt index (tensor '%s' has an unknown dtype)", *name);
    if (!cJSON_IsArray(v[K_SHAPE]))
        return corrupt(r, "corrupt index (the shape of tensor '%s' is not an array)", *name);
    for (const cJSON *d = v[K_SHAPE]->child; d; d = d->next) {
        uint64_t dim;
        if (t->ndim == LLM_CKPT_MAX_DIMS)
            return corrupt(r, "corrupt index (tensor '%s' has more than 8 dimensions)", *name);
        if (json_uint(d, CKPT_MAX_INT, &dim))
            return corrupt(r, "corrupt index (tensor '%s' has a dimension that is not a whole "
                              "number in 0..2^53)", *name);
        t->shape[t->ndim++] = (int64_t)dim;
    }
    uint64_t crc, want;
    if (json_uint(v[K_OFFSET], CKPT_MAX_INT, &t->offset) ||
        json_uint(v[K_CSIZE], CKPT_MAX_INT, &t->csize) ||
        json_uint(v[K_NBYTES], CKPT_MAX_INT, &t->nbytes) ||
        json_uint(v[K_CRC], UINT32_MAX, &crc))
        return corrupt(r, "corrupt index (tensor '%s' has a bad offset, csize, nbytes or crc32)", *name);
    t->crc32 = (uint32_t)crc;
    if ((why = shape_bytes(t->dtype, t->ndim, t->shape, &want)))
        return corrupt(r, "corrupt index (tensor '%s' %s)", *name, why);
    if (want != t->nbytes)
        return corrupt(r, "corrupt index (tensor '%s': its shape of %s holds %llu bytes, the "
                          "index says %llu)", *name, llm_ckpt_dtype_name(t->dtype),
                       (unsigned long long)want, (unsigned long long)t->nbytes);
    return 0;
}

/* The index must list, in file order, frames that tile [data_start, index_off)
 * exactly: no gaps, no overlaps, nothing outside. */
static int parse_index(struct llm_ckpt_reader *r, const cJSON *idx, uint64_t count,
                       uint64_t data_start, uint64_t index_off)
{
    if (!cJSON_IsArray(idx))
        return corrupt(r, "corrupt index (not a JSON array)");
    size_t n = 0, pool = 0;
    for (const cJSON *c = idx->child; c; c = c->next)
        n++;
    if (n != count)
        return corrupt(r, "corrupt index (%zu entries, the trailer says %llu)", n,
                       (unsigned long long)count);
    r->t = llm_calloc(n, sizeof(*r->t), "the checkpoint index");
    r->by_name = llm_calloc(n, sizeof(*r->by_name), "the checkpoint index");
    const char **names = llm_calloc(n, sizeof(*names), "the checkpoint index");
    int rc = 0;
    if (!r->t || !r->by_name || !names) {
        rc = LLM_ENOMEM;
        goto done;
    }
    uint64_t at = data_start;
    size_t i = 0;
    for (const cJSON *c = idx->child; c; c = c->next, i++) {
        struct llm_ckpt_tensor *t = &r->t[i];
        if ((rc = parse_entry(r, i, c, t, &names[i])))
            goto done;
        if (t->offset != at) {
            rc = corrupt(r, "corrupt index (tensor '%s' is at byte %llu, its frame should start "
                            "at %llu)", names[i], (unsigned long long)t->offset,
                         (unsigned long long)at);
            goto done;
        }
        if (t->csize < MIN_FRAME || t->csize > index_off - at) {
            rc = corrupt(r, "corrupt index (tensor '%s' has a frame of %llu bytes, which %s)",
                         names[i], (unsigned long long)t->csize,
                         t->csize < MIN_FRAME ? "is too small" : "runs into the index");
            goto done;
        }
        at += t->csize;
        pool += strlen(names[i]) + 1;
    }
    if (at != index_off) {
        rc = corrupt(r, "corrupt index (the tensors end at byte %llu, the index starts at %llu)",
                     (unsigned long long)at, (unsigned long long)index_off);
        goto done;
    }
    /* Names move to one block so the parsed JSON can go. */
    if (!(r->names = llm_malloc(pool, "tensor names"))) {
        rc = LLM_ENOMEM;
        goto done;
    }
    char *p = r->names;
    for (i = 0; i < n; i++) {
        size_t len = strlen(names[i]) + 1;
        memcpy(p, names[i], len);
        r->t[i].name = p;
        r->by_name[i] = &r->t[i];
        p += len;
    }
    qsort(r->by_name, n, sizeof(*r->by_name), cmp_name);
    for (i = 1; i < n; i++)
        if (!strcmp(r->by_name[i - 1]->name, r->by_name[i]->name)) {
            rc = corrupt(r, "corrupt index (tensor '%s' appears twice)", r->by_name[i]->name);
            goto done;
        }
    r->n = n;
    for (i = 0; i < n; i++) {
        if (r->t[i].csize > r->in_cap)
            r->in_cap = r->t[i].csize < BUF_SIZE ? (size_t)r->t[i].csize : BUF_SIZE;
        if (r->t[i].nbytes > r->chunk_cap)
            r->chunk_cap = r->t[i].nbytes < BUF_SIZE ? (size_t)r->t[i].nbytes : BUF_SIZE;
    }
done:
    free(names);
    return rc;
}

/* Everything up to the index: preamble, trailer and the layout they imply. */
struct layout {
    uint64_t hcsize, ioff, icsize, count; /* header frame size, index frame, tensor count */
    uint32_t hcrc, icrc;                  /* CRC-32 of the header and index frames */
};

static int open_layout(struct llm_ckpt_reader *r, struct layout *l)
{
    uint8_t pre[PREAMBLE_SIZE], tr[TRAILER_SIZE];
    int rc;
    size_t n = r->size < PREAMBLE_SIZE ? (size_t)r->size : PREAMBLE_SIZE;
    if (r->size == 0)
        return llm_err(LLM_EFORMAT, "'%s' is empty, not an llm checkpoint", r->path);
    if ((rc = read_at(r, 0, pre, n)))
        return rc;
    if (memcmp(pre, MAGIC, n < 8 ? n : 8))
        return llm_err(LLM_EFORMAT, "'%s' is not an llm checkpoint (bad magic)", r->path);
    if (n < PREAMBLE_SIZE)
        return llm_err(LLM_EFORMAT, "'%s' is truncated (%zu bytes, not even the %d-byte preamble)",
                       r->path, n, PREAMBLE_SIZE);
    /* The preamble keeps this layout in every version, so its CRC is checked
     * first: a damaged version field reads as damage, a real one as a version. */
    if (llm_ckpt_crc32(0, pre, 28) != get_u32(pre + 28))
        return corrupt(r, "corrupt preamble (checksum mismatch)");
    uint32_t version = get_u32(pre + 8), flags = get_u32(pre + 12);
    if (version != LLM_CKPT_VERSION)
        return llm_err(LLM_EUNSUPPORTED, "'%s': checkpoint version %u is not supported (this "
                       "build reads version %d)", r->path, version, LLM_CKPT_VERSION);
    if (flags)
        return llm_err(LLM_EUNSUPPORTED, "'%s': checkpoint flags 0x%x are not supported (this "
                       "build knows none)", r->path, flags);
    l->hcsize = get_u64(pre + 16);
    l->hcrc = get_u32(pre + 24);
    if (r->size < PREAMBLE_SIZE + TRAILER_SIZE + MIN_FRAME * 2)
        return llm_err(LLM_EFORMAT, "'%s' is truncated (%llu bytes, too short for a checkpoint)",
                       r->path, (unsigned long long)r->size);
    uint64_t tpos = r->size - TRAILER_SIZE;
    if ((rc = read_at(r, tpos, tr, TRAILER_SIZE)))
        return rc;
    if (memcmp(tr + 32, END_MAGIC, 8))
        return llm_err(LLM_EFORMAT, "'%s' is truncated or incomplete (no end marker; was its "
                       "save interrupted?)", r->path);
    uint32_t crc = llm_ckpt_crc32(llm_ckpt_crc32(0, pre, PREAMBLE_SIZE), tr, 28);
    if (crc != get_u32(tr + 28))
        return corrupt(r, "corrupt trailer (checksum mismatch)");
    l->ioff = get_u64(tr);
    l->icsize = get_u64(tr + 8);
    l->count = get_u64(tr + 16);
    l->icrc = get_u32(tr + 24);
    /* Bounds before arithmetic, so nothing below can overflow. */
    if (l->hcsize < MIN_FRAME || l->hcsize > LLM_CKPT_MAX_JSON)
        return corrupt(r, "corrupt preamble (a header of %llu bytes)", (unsigned long long)l->hcsize);
    if (l->icsize < MIN_FRAME || l->icsize > LLM_CKPT_MAX_JSON)
        return corrupt(r, "corrupt trailer (an index of %llu bytes)", (unsigned long long)l->icsize);
    uint64_t data_start = PREAMBLE_SIZE + l->hcsize;
    if (l->ioff < data_start || l->ioff > tpos || tpos - l->ioff != l->icsize)
        return corrupt(r, "corrupt trailer (an index at byte %llu of %llu bytes does not fit "
                          "between the header, ending at %llu, and the trailer at %llu)",
                       (unsigned long long)l->ioff, (unsigned long long)l->icsize,
                       (unsigned long long)data_start, (unsigned long long)tpos);
    if (l->count > (l->ioff - data_start) / MIN_FRAME)
        return corrupt(r, "corrupt trailer (%llu tensors cannot fit in %llu bytes)",
                       (unsigned long long)l->count, (unsigned long long)(l->ioff - data_start));
    return 0;
}

int llm_ckpt_open(struct llm_ckpt_reader **out, const char *path)
{
    struct llm_ckpt_reader *r;
    cJSON *idx = NULL;
    struct stat st;
    struct layout l = {0};
    int rc;
    *out = NULL;
    if (!path || !path[0])
        return llm_err(LLM_EINVAL, "empty checkpoint path");
    if (!(r = llm_calloc(1, sizeof(*r), "a checkpoint reader")))
        return LLM_ENOMEM;
    r->fd = -1;
    if (!(r->path = strdup(path))) {
        rc = llm_err(LLM_ENOMEM, "out of memory");
        goto fail;
    }
    /* O_NONBLOCK: opening a FIFO must not hang before fstat refuses it;
     * it changes nothing for the regular files we go on to read. */
    if ((r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
        rc = llm_err(LLM_EIO, "cannot open '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(r->fd, &st) != 0) {
        rc = llm_err(LLM_EIO, "cannot stat '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode) || !S_ISREG(st.st_mode)) {
        rc = llm_err(LLM_EIO, "'%s' is %s", path, S_ISDIR(st.st_mode)
                     ? "a directory, not a checkpoint file" : "not a regular file");
        goto fail;
    }
    r->size = (uint64_t)st.st_size;
    posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (!(r->dctx = ZSTD_createDCtx())) {
        rc = llm_err(LLM_ENOMEM, "out of memory for a checkpoint reader");
        goto fail;
    }
    if ((rc = open_layout(r, &l)))
        goto fail;
    if ((rc = read_json(r, PREAMBLE_SIZE, l.hcsize, l.hcrc, "header", &r->header)))
        goto fail;
    if (!cJSON_IsObject(r->header)) {
        rc = corrupt(r, "the header is not a JSON object");
        goto fail;
    }
    if ((rc = read_json(r, l.ioff, l.icsize, l.icrc, "index", &idx)))
        goto fail;
    if ((rc = parse_index(r, idx, l.count, PREAMBLE_SIZE + l.hcsize, l.ioff)))
        goto fail;
    cJSON_Delete(idx);
    *out = r;
    return 0;
fail:
    cJSON_Delete(idx);
    llm_ckpt_close(r);
    return rc;
}

void llm_ckpt_close(struct llm_ckpt_reader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    cJSON_Delete(r->header);
    ZSTD_freeDCtx(r->dctx);
    free(r->t);
    free(r->by_name);
    free(r->names);
    free(r->in);
    free(r->chunk);
    free(r->path);
    free(r);
}

const cJSON *llm_ckpt_header(const struct llm_ckpt_reader *r) { return r->header; }
uint64_t llm_ckpt_file_size(const struct llm_ckpt_reader *r) { return r->size; }
size_t llm_ckpt_count(const struct llm_ckpt_reader *r) { return r->n; }

const struct llm_ckpt_tensor *llm_ckpt_tensor(const struct llm_ckpt_reader *r, size_t i)
{
    return i < r->n ? &r->t[i] : NULL;
}

long llm_ckpt_find(const struct llm_ckpt_reader *r, const char *name)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->by_name[mid]->name, name);
        if (c == 0)
            return (long)(r->by_name[mid] - r->t);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Streams the frame of tensor i from the file through r->in and zstd into
 * dst (its nbytes), or, with dst NULL, through r->chunk to fn (or nowhere,
 * fn NULL: verify). Memory: the two fixed buffers and zstd's window (2 MiB
 * at level 3; zstd refuses frames asking for more than 128 MiB). */
static int read_frame(struct llm_ckpt_reader *r, size_t i, void *dst, llm_ckpt_chunk_fn fn, void *ctx)
{
    const struct llm_ckpt_tensor *t = &r->t[i];
    struct frame f;
    const char *why;
    size_t n = t->csize < r->in_cap ? (size_t)t->csize : r->in_cap;
    int rc;
    if (!r->in && !(r->in = llm_malloc(r->in_cap, "a checkpoint buffer")))
        return LLM_ENOMEM;
    if (!dst && !r->chunk && !(r->chunk = llm_malloc(r->chunk_cap, "a checkpoint buffer")))
        return LLM_ENOMEM;
    if ((rc = read_at(r, t->offset, r->in, n)))
        return rc;
    if ((why = frame_header(r->in, n, &f)))
        return corrupt(r, "tensor '%s' is corrupt (%s)", t->name, why);
    if (f.content_size != t->nbytes)
        return corrupt(r, "tensor '%s' is corrupt (its frame holds %llu bytes, the index says %llu)",
                       t->name, (unsigned long long)f.content_size, (unsigned long long)t->nbytes);
    size_t z = ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
    if (ZSTD_isError(z))
        return corrupt(r, "tensor '%s': zstd: %s", t->name, ZSTD_getErrorName(z));
    uint32_t crc = llm_ckpt_crc32(0, r->in, n);
    uint64_t left = t->csize - n, done = 0;
    ZSTD_inBuffer in = {r->in, n, 0};
    ZSTD_outBuffer out = dst ? (ZSTD_outBuffer){dst, (size_t)t->nbytes, 0}
                             : (ZSTD_outBuffer){r->chunk, r->chunk_cap, 0};
    for (;;) {
        size_t in0 = in.pos, out0 = out.pos;
        z = ZSTD_decompressStream(r->dctx, &out, &in);
        if (ZSTD_isError(z))
            return corrupt(r, "tensor '%s' is corrupt (%s)", t->name,
                           ZSTD_getErrorCode(z) == ZSTD_error_checksum_wrong
                               ? "checksum mismatch" : ZSTD_getErrorName(z));
        int moved = in.pos != in0 || out.pos != out0;
        if (!dst && out.pos && (out.pos == out.size || z == 0)) {
            if (fn && (rc = fn(ctx, r->chunk, out.pos, done)))
                return rc;
            done += out.pos;
            out.pos = 0;
        }
        if (z == 0)
            break; /* the frame is complete and zstd has checked its content checksum */
        if (in.pos == in.size && left) {
            n = left < r->in_cap ? (size_t)left : r->in_cap;
            if ((rc = read_at(r, t->offset + t->csize - left, r->in, n)))
                return rc;
            crc = llm_ckpt_crc32(crc, r->in, n);
            left -= n;
            in = (ZSTD_inBuffer){r->in, n, 0};
        } else if (!moved) {
            /* Out of input, or (into dst) out of room: the frame lies about its end. */
            return corrupt(r, "tensor '%s' is corrupt (its frame is %s)", t->name,
                           in.pos == in.size ? "cut short" : "longer than its declared size");
        }
    }
    if (dst)
        done = out.pos;
    if (left || in.pos != in.size)
        return corrupt(r, "tensor '%s' is corrupt (bytes after the end of its frame)", t->name);
    if (crc != t->crc32)
        return corrupt(r, "tensor '%s' is corrupt (checksum mismatch)", t->name);
    if (done != t->nbytes)
        return corrupt(r, "tensor '%s' is corrupt (%llu bytes instead of %llu)", t->name,
                       (unsigned long long)done, (unsigned long long)t->nbytes);
    return 0;
}

int llm_ckpt_read(struct llm_ckpt_reader *r, size_t i, void *dst, size_t nbytes)
{
    if (i >= r->n)
        return llm_err(LLM_EINVAL, "'%s': no tensor %zu (it has %zu)", r->path, i, r->n);
    if (nbytes != r->t[i].nbytes)
        return llm_err(LLM_EINVAL, "'%s': tensor '%s' is %llu bytes, not %zu", r->path,
                       r->t[i].name, (unsigned long long)r->t[i].nbytes, nbytes);
    if (nbytes && !dst)
        return llm_err(LLM_EINVAL, "'%s': tensor '%s': destination is NULL", r->path, r->t[i].name);
    /* An empty tensor still has its frame checked; it decodes into nothing. */
    static uint8_t none;
    return read_frame(r, i, nbytes ? dst : &none, NULL, NULL);
}

int llm_ckpt_read_chunks(struct llm_ckpt_reader *r, size_t i, llm_ckpt_chunk_fn fn, void *ctx)
{
    if (i >= r->n)
        return llm_err(LLM_EINVAL, "'%s': no tensor %zu (it has %zu)", r->path, i, r->n);
    if (!fn)
        return llm_err(LLM_EINVAL, "'%s': no chunk callback", r->path);
    return read_frame(r, i, NULL, fn, ctx);
}

int llm_ckpt_verify_tensor(struct llm_ckpt_reader *r, size_t i)
{
    if (i >= r->n)
        return llm_err(LLM_EINVAL, "'%s': no tensor %zu (it has %zu)", r->path, i, r->n);
    return read_frame(r, i, NULL, NULL, NULL);
}

int llm_ckpt_verify(struct llm_ckpt_reader *r)
{
    for (size_t i = 0; i < r->n; i++) {
        int rc = llm_ckpt_verify_tensor(r, i);
        if (rc)
            return rc;
    }
    return 0;
}
