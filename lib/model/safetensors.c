/* safetensors.c: strict reader and streaming writer of the safetensors
 * format (see safetensors.h; the format's own description is the reference
 * implementation's README: 8-byte LE header size, JSON header, byte buffer). */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/file.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[LLM_ST_NDTYPES] = {
    [LLM_ST_BOOL] = {"BOOL", 1}, [LLM_ST_U8] = {"U8", 1},     [LLM_ST_I8] = {"I8", 1},
    [LLM_ST_I16] = {"I16", 2},   [LLM_ST_U16] = {"U16", 2},   [LLM_ST_F16] = {"F16", 2},
    [LLM_ST_BF16] = {"BF16", 2}, [LLM_ST_I32] = {"I32", 4},   [LLM_ST_U32] = {"U32", 4},
    [LLM_ST_F32] = {"F32", 4},   [LLM_ST_I64] = {"I64", 8},   [LLM_ST_U64] = {"U64", 8},
    [LLM_ST_F64] = {"F64", 8},   [LLM_ST_F8_E4M3] = {"F8_E4M3", 1}, [LLM_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *llm_st_dtype_name(enum llm_st_dtype dt)
{
    return (unsigned)dt < LLM_ST_NDTYPES ? dtypes[dt].name : "?";
}

size_t llm_st_dtype_size(enum llm_st_dtype dt)
{
    return (unsigned)dt < LLM_ST_NDTYPES ? dtypes[dt].size : 0;
}

static int dtype_parse(const char *s, enum llm_st_dtype *out)
{
    for (int i = 0; i < LLM_ST_NDTYPES; i++)
        if (!strcmp(s, dtypes[i].name)) {
            *out = (enum llm_st_dtype)i;
            return 0;
        }
    return -1;
}

/* numel * dtype size of t, or -1 on overflow of 2^63. */
static int tensor_bytes(const struct llm_st_tensor *t, uint64_t *out)
{
    uint64_t n = llm_st_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0 || __builtin_mul_overflow(n, (uint64_t)t->shape[d], &n) || n > INT64_MAX)
            return -1;
    }
    *out = n;
    return 0;
}

float llm_st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in binary32 */
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13); /* inf, or NaN with its payload */
    else
        bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* ---- writer ---- */

struct llm_st_writer {
    struct llm_atomic out;
    uint64_t total, written; /* data bytes expected and given */
    int failed;
};

static int name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > LLM_ST_MAX_NAME || !strcmp(s, "__metadata__"))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static cJSON *json_u64(uint64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(num);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The header JSON for tensors (offsets assigned in order); *total = data bytes. */
static int build_header(cJSON **out, const char *path, const struct llm_st_tensor *ts, size_t n,
                        const cJSON *metadata, uint64_t *total)
{
    cJSON *root = cJSON_CreateObject();
    const char **names = llm_malloc((n ? n : 1) * sizeof(*names), "the safetensors names");
    int rc = 0;
    if (!root || !names) {
        cJSON_Delete(root);
        free(names);
        return llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
    }
    if (metadata) {
        if (!cJSON_IsObject(metadata))
            rc = llm_err(LLM_EINVAL, "%s: safetensors metadata must be an object of strings", path);
        for (const cJSON *m = metadata->child; !rc && m; m = m->next)
            if (!cJSON_IsString(m))
                rc = llm_err(LLM_EINVAL, "%s: safetensors metadata \"%s\" is not a string", path, m->string);
        cJSON *copy = rc ? NULL : cJSON_Duplicate(metadata, 1);
        if (!rc && !copy)
            rc = llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
        if (!rc)
            cJSON_AddItemToObject(root, "__metadata__", copy);
    }
    uint64_t off = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const struct llm_st_tensor *t = &ts[i];
        uint64_t nb = 0;
        names[i] = t->name;
        if (!name_ok(t->name))
            rc = llm_err(LLM_EINVAL, "%s: bad tensor name '%s'", path, t->name ? t->name : "(null)");
        else if ((unsigned)t->dtype >= LLM_ST_NDTYPES || t->ndim < 0 || t->ndim > LLM_ST_MAX_DIMS)
            rc = llm_err(LLM_EINVAL, "%s: tensor '%s': bad dtype or ndim", path, t->name);
        else if (tensor_bytes(t, &nb) || __builtin_add_overflow(off, nb, &off))
            rc = llm_err(LLM_EINVAL, "%s: tensor '%s': bad or too large shape", path, t->name);
        if (rc)
            break;
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        if (e)
            cJSON_AddItemToObject(root, t->name, e);
        if (!e || !shape || !offs || !cJSON_AddStringToObject(e, "dtype", llm_st_dtype_name(t->dtype))) {
            cJSON_Delete(shape);
            cJSON_Delete(offs);
            rc = llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
            break;
        }
        cJSON_AddItemToObject(e, "shape", shape);
        cJSON_AddItemToObject(e, "data_offsets", offs);
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, json_u64((uint64_t)t->shape[d]));
        cJSON_AddItemToArray(offs, json_u64(off - nb));
        cJSON_AddItemToArray(offs, json_u64(off));
    }
    if (!rc && n > 1) {
        qsort(names, n, sizeof(*names), cmp_str);
        for (size_t i = 1; !rc && i < n; i++)
            if (!strcmp(names[i - 1], names[i]))
                rc = llm_err(LLM_EINVAL, "%s: tensor name '%s' appears twice", path, names[i]);
    }
    free(names);
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }
    *out = root;
    *total = off;
    return 0;
}

int llm_st_writer_open(struct llm_st_writer **out, const char *path, const struct llm_st_tensor *tensors,
                       size_t n, const cJSON *metadata)
{
    *out = NULL;
    cJSON *root = NULL;
    uint64_t total = 0;
    int rc = build_header(&root, path, tensors, n, metadata, &total);
    if (rc)
        return rc;
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text)
        return llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    if (padded > LLM_ST_MAX_HEADER) {
        free(text);
        return llm_err(LLM_EINVAL, "%s: the safetensors header would be %zu bytes (limit %llu)", path,
                       padded, LLM_ST_MAX_HEADER);
    }
    struct llm_st_writer *w = llm_calloc(1, sizeof(*w), "a safetensors writer");
    if (!w) {
        free(text);
        return LLM_ENOMEM;
    }
    w->total = total;
    if ((rc = llm_atomic_open(&w->out, path))) {
        free(text);
        free(w);
        return rc;
    }
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    rc = llm_fwrite(w->out.f, le, 8, path);
    if (!rc)
        rc = llm_fwrite(w->out.f, text, len, path);
    for (size_t i = len; !rc && i < padded; i++)
        rc = llm_fwrite(w->out.f, " ", 1, path);
    free(text);
    if (rc) {
        llm_st_writer_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

int llm_st_writer_append(struct llm_st_writer *w, const void *data, size_t n)
{
    if (w->failed)
        return llm_err(LLM_EINVAL, "%s: the writer failed earlier", w->out.path);
    if (n > w->total - w->written) {
        w->failed = 1;
        return llm_err(LLM_EINVAL, "%s: %zu bytes more than the tensors hold", w->out.path,
                       n - (size_t)(w->total - w->written));
    }
    int rc = llm_fwrite(w->out.f, data, n, w->out.path);
    if (rc)
        w->failed = 1;
    else
        w->written += n;
    return rc;
}

int llm_st_writer_commit(struct llm_st_writer *w)
{
    int rc = 0;
    if (w->failed)
        rc = llm_err(LLM_EINVAL, "%s: not written: an earlier write failed", w->out.path);
    else if (w->written != w->total)
        rc = llm_err(LLM_EINVAL, "%s: %llu of %llu data bytes given", w->out.path,
                     (unsigned long long)w->written, (unsigned long long)w->total);
    if (rc) {
        llm_st_writer_abort(w);
        return rc;
    }
    rc = llm_atomic_commit(&w->out);
    free(w);
    return rc;
}

void llm_st_writer_abort(struct llm_st_writer *w)
{
    if (!w)
        return;
    llm_atomic_abort(&w->out);
    free(w);
}

/* ---- reader ---- */

struct llm_st_file {
    char *path;
    int fd;
    uint64_t data_start, data_size;   /* 8 + N, file size - 8 - N */
    cJSON *json;                      /* the parsed header (names point into it) */
    const cJSON *metadata;            /* borrowed from json, or NULL */
    struct llm_st_tensor *t;
    size_t n;
};

/* A JSON integer in [0, 2^53], or -1. */
static int64_t json_uint(const cJSON *v)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d))
        return -1;
    return (int64_t)d;
}

/* Parses one tensor entry into t (name is the entry's key). */
static int parse_entry(struct llm_st_file *f, const cJSON *e, struct llm_st_tensor *t)
{
    const char *p = f->path, *name = e->string;
    const cJSON *dt = NULL, *shape = NULL, *offs = NULL;
    t->name = name;
    if (strlen(name) == 0 || strlen(name) > LLM_ST_MAX_NAME)
        return llm_err(LLM_EFORMAT, "%s: a tensor name of %zu bytes (1..%d allowed)", p, strlen(name),
                       LLM_ST_MAX_NAME);
    if (!cJSON_IsObject(e))
        return llm_err(LLM_EFORMAT, "%s: tensor '%s': the entry is not an object", p, name);
    for (const cJSON *k = e->child; k; k = k->next) {
        const cJSON **slot = !strcmp(k->string, "dtype") ? &dt
                             : !strcmp(k->string, "shape") ? &shape
                             : !strcmp(k->string, "data_offsets") ? &offs : NULL;
        if (!slot)
            return llm_err(LLM_EFORMAT, "%s: tensor '%s': unknown key \"%s\"", p, name, k->string);
        if (*slot)
            return llm_err(LLM_EFORMAT, "%s: tensor '%s': key \"%s\" appears twice", p, name, k->string);
        *slot = k;
    }
    if (!cJSON_IsString(dt) || dtype_parse(dt->valuestring, &t->dtype))
        return llm_err(LLM_EFORMAT, "%s: tensor '%s': bad or missing dtype%s%s", p, name,
                       cJSON_IsString(dt) ? " " : "", cJSON_IsString(dt) ? dt->valuestring : "");
    int nd = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : -1;
    if (nd < 0 || nd > LLM_ST_MAX_DIMS)
        return llm_err(LLM_EFORMAT, "%s: tensor '%s': shape must be an array of at most %d sizes", p,
                       name, LLM_ST_MAX_DIMS);
    t->ndim = nd;
    int d = 0;
    for (const cJSON *s = shape->child; s; s = s->next, d++)
        if ((t->shape[d] = json_uint(s)) < 0)
            return llm_err(LLM_EFORMAT, "%s: tensor '%s': shape[%d] is not a size", p, name, d);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return llm_err(LLM_EFORMAT, "%s: tensor '%s': data_offsets must be [begin, end]", p, name);
    int64_t b = json_uint(offs->child), en = json_uint(offs->child->next);
    if (b < 0 || en < 0 || b > en)
        return llm_err(LLM_EFORMAT, "%s: tensor '%s': bad data_offsets", p, name);
    t->begin = (uint64_t)b, t->end = (uint64_t)en;
    uint64_t nb;
    if (tensor_bytes(t, &nb))
        return llm_err(LLM_EFORMAT, "%s: tensor '%s': the shape's size overflows", p, name);
    if (nb != t->end - t->begin)
        return llm_err(LLM_EFORMAT, "%s: tensor '%s': shape and dtype %s give %llu bytes, data_offsets "
                       "%llu", p, name, llm_st_dtype_name(t->dtype), (unsigned long long)nb,
                       (unsigned long long)(t->end - t->begin));
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const struct llm_st_tensor *x = *(struct llm_st_tensor *const *)a, *y = *(struct llm_st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(struct llm_st_tensor *const *)a)->name, (*(struct llm_st_tensor *const *)b)->name);
}

/* Names unique; byte ranges cover [0, data_size) exactly, in order. */
static int check_layout(struct llm_st_file *f)
{
    if (f->n == 0)
        return f->data_size ? llm_err(LLM_EFORMAT, "%s: %llu data bytes but no tensors", f->path,
                                      (unsigned long long)f->data_size) : 0;
    struct llm_st_tensor **v = llm_malloc(f->n * sizeof(*v), "the safetensors index");
    if (!v)
        return LLM_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < f->n; i++)
        v[i] = &f->t[i];
    qsort(v, f->n, sizeof(*v), cmp_name);
    for (size_t i = 1; !rc && i < f->n; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name))
            rc = llm_err(LLM_EFORMAT, "%s: tensor '%s' appears twice", f->path, v[i]->name);
    qsort(v, f->n, sizeof(*v), cmp_range);
    uint64_t at = 0;
    for (size_t i = 0; !rc && i < f->n; i++) {
        if (v[i]->begin < at)
            rc = llm_err(LLM_EFORMAT, "%s: tensor '%s' (bytes %llu..%llu) overlaps the tensor before it",
                         f->path, v[i]->name, (unsigned long long)v[i]->begin, (unsigned long long)v[i]->end);
        else if (v[i]->begin > at)
            rc = llm_err(LLM_EFORMAT, "%s: a gap of %llu bytes before tensor '%s'", f->path,
                         (unsigned long long)(v[i]->begin - at), v[i]->name);
        at = v[i]->end;
    }
    if (!rc && at > f->data_size)
        rc = llm_err(LLM_EFORMAT, "%s: truncated: the tensors need %llu data bytes, the file has %llu",
                     f->path, (unsigned long long)at, (unsigned long long)f->data_size);
    else if (!rc && at < f->data_size)
        rc = llm_err(LLM_EFORMAT, "%s: %llu bytes after the last tensor", f->path,
                     (unsigned long long)(f->data_size - at));
    free(v);
    return rc;
}

static int read_at(struct llm_st_file *f, void *dst, size_t n, uint64_t off)
{
    char *p = dst;
    while (n) {
        ssize_t k = pread(f->fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return llm_err(LLM_EIO, "cannot read '%s': %s", f->path, k < 0 ? strerror(errno) : "the file shrank");
        p += k, n -= (size_t)k, off += (uint64_t)k;
    }
    return 0;
}

static int parse_header(struct llm_st_file *f, uint64_t size)
{
    uint8_t le[8];
    if (size < 8)
        return llm_err(LLM_EFORMAT, "%s: not a safetensors file (%llu bytes, less than the 8-byte header "
                       "length)", f->path, (unsigned long long)size);
    int rc = read_at(f, le, 8, 0);
    if (rc)
        return rc;
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++)
        hn |= (uint64_t)le[i] << (8 * i);
    if (hn < 2 || hn > LLM_ST_MAX_HEADER)
        return llm_err(LLM_EFORMAT, "%s: not a safetensors file (header length %llu, expected 2..%llu)",
                       f->path, (unsigned long long)hn, LLM_ST_MAX_HEADER);
    if (hn > size - 8)
        return llm_err(LLM_EFORMAT, "%s: truncated: header length %llu but only %llu bytes follow", f->path,
                       (unsigned long long)hn, (unsigned long long)(size - 8));
    f->data_start = 8 + hn;
    f->data_size = size - 8 - hn;
    char *text = llm_malloc((size_t)hn + 1, "the safetensors header");
    if (!text)
        return LLM_ENOMEM;
    if ((rc = read_at(f, text, (size_t)hn, 8))) {
        free(text);
        return rc;
    }
    text[hn] = 0;
    const char *end = NULL;
    if (text[0] == '{')
        f->json = cJSON_ParseWithLengthOpts(text, (size_t)hn, &end, 0);
    int bad = !f->json || !cJSON_IsObject(f->json) || memchr(text, 0, (size_t)hn);
    for (const char *q = end; !bad && q < text + hn; q++)
        bad = *q != ' ' && *q != '\t' && *q != '\n' && *q != '\r';
    free(text);
    if (bad)
        return llm_err(LLM_EFORMAT, "%s: the safetensors header is not one JSON object", f->path);
    size_t n = 0;
    for (const cJSON *e = f->json->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__"))
            n++;
        else if (f->metadata)
            return llm_err(LLM_EFORMAT, "%s: \"__metadata__\" appears twice", f->path);
        else
            f->metadata = e;
    }
    if (f->metadata) {
        if (!cJSON_IsObject(f->metadata))
            return llm_err(LLM_EFORMAT, "%s: \"__metadata__\" is not an object", f->path);
        for (const cJSON *m = f->metadata->child; m; m = m->next)
            if (!cJSON_IsString(m))
                return llm_err(LLM_EFORMAT, "%s: \"__metadata__\" value \"%s\" is not a string", f->path,
                               m->string);
    }
    if (n && !(f->t = llm_calloc(n, sizeof(*f->t), "the safetensors index")))
        return LLM_ENOMEM;
    for (const cJSON *e = f->json->child; e; e = e->next)
        if (e != f->metadata && (rc = parse_entry(f, e, &f->t[f->n++])))
            return rc;
    return check_layout(f);
}

int llm_st_open(struct llm_st_file **out, const char *path)
{
    *out = NULL;
    struct llm_st_file *f = llm_calloc(1, sizeof(*f), "a safetensors reader");
    if (!f)
        return LLM_ENOMEM;
    f->fd = -1;
    if (!(f->path = strdup(path))) {
        free(f);
        return llm_err(LLM_ENOMEM, "out of memory");
    }
    struct stat st;
    int rc = 0;
    if ((f->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        rc = llm_err(LLM_EIO, "cannot open '%s': %s", path, strerror(errno));
    else if (fstat(f->fd, &st) != 0)
        rc = llm_err(LLM_EIO, "cannot stat '%s': %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = llm_err(LLM_EIO, "'%s' is not a regular file", path);
    else
        rc = parse_header(f, (uint64_t)st.st_size);
    if (rc) {
        llm_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void llm_st_close(struct llm_st_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    cJSON_Delete(f->json);
    free(f->t);
    free(f->path);
    free(f);
}

size_t llm_st_count(const struct llm_st_file *f) { return f->n; }

const struct llm_st_tensor *llm_st_get(const struct llm_st_file *f, size_t i)
{
    return i < f->n ? &f->t[i] : NULL;
}

long llm_st_find(const struct llm_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return (long)i;
    return -1;
}

const cJSON *llm_st_metadata(const struct llm_st_file *f) { return f->metadata; }

const char *llm_st_path(const struct llm_st_file *f) { return f->path; }

int llm_st_read_f32(struct llm_st_file *f, size_t i, float *dst, size_t n)
{
    if (i >= f->n)
        return llm_err(LLM_EINVAL, "%s: no tensor %zu", f->path, i);
    const struct llm_st_tensor *t = &f->t[i];
    size_t es = llm_st_dtype_size(t->dtype);
    if ((t->end - t->begin) / es != n)
        return llm_err(LLM_EINVAL, "%s: tensor '%s' has %llu elements, not %zu", f->path, t->name,
                       (unsigned long long)((t->end - t->begin) / es), n);
    uint64_t off = f->data_start + t->begin;
    if (t->dtype == LLM_ST_F32)
        return read_at(f, dst, n * sizeof(float), off);
    if (t->dtype != LLM_ST_F16 && t->dtype != LLM_ST_BF16 && t->dtype != LLM_ST_F64)
        return llm_err(LLM_EUNSUPPORTED, "%s: tensor '%s' is %s; only F32, BF16, F16 and F64 convert "
                       "to f32", f->path, t->name, llm_st_dtype_name(t->dtype));
    enum { CHUNK = 1 << 16 }; /* elements per read */
    uint8_t *buf = llm_malloc(CHUNK * es, "a read buffer");
    if (!buf)
        return LLM_ENOMEM;
    int rc = 0;
    for (size_t at = 0; !rc && at < n; at += CHUNK) {
        size_t k = n - at < CHUNK ? n - at : CHUNK;
        if ((rc = read_at(f, buf, k * es, off + at * es)))
            break;
        for (size_t j = 0; j < k; j++) {
            if (t->dtype == LLM_ST_F64) {
                double d;
                memcpy(&d, buf + 8 * j, 8);
                dst[at + j] = (float)d;
                continue;
            }
            uint16_t h = (uint16_t)(buf[2 * j] | buf[2 * j + 1] << 8);
            if (t->dtype == LLM_ST_F16) {
                dst[at + j] = llm_st_f16_to_f32(h);
            } else {
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&dst[at + j], &bits, 4);
            }
        }
    }
    free(buf);
    return rc;
}

/* ---- sets of files ---- */

static int set_add(struct llm_st_set *s, const char *dir, const char *file)
{
    size_t n = strlen(dir) + strlen(file) + 2;
    char *path = llm_malloc(n, "a path");
    struct llm_st_file **f = realloc(s->f, (s->n + 1) * sizeof(*f));
    int rc = 0;
    if (f)
        s->f = f;
    if (!path || !f)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    else if (snprintf(path, n, "%s/%s", dir, file) > 0 && !(rc = llm_st_open(&s->f[s->n], path)))
        s->n++;
    free(path);
    return rc;
}

int llm_st_set_find(const struct llm_st_set *s, const char *name, size_t *file, long *index)
{
    *index = -1;
    for (size_t i = 0; i < s->n; i++) {
        long k = llm_st_find(s->f[i], name);
        if (k < 0)
            continue;
        if (*index >= 0)
            return llm_err(LLM_EFORMAT, "tensor '%s' is in both '%s' and '%s'", name, s->f[*file]->path,
                           s->f[i]->path);
        *file = i, *index = k;
    }
    return 0;
}

static int set_index(struct llm_st_set *s, const char *dir, const char *p)
{
    char *text = NULL;
    size_t len;
    int rc = llm_read_file(p, 64u << 20, &text, &len);
    if (rc)
        return rc;
    cJSON *idx = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(wm))
        rc = llm_err(LLM_EFORMAT, "%s: no \"weight_map\" object", p);
    for (const cJSON *e = cJSON_IsObject(wm) ? wm->child : NULL; !rc && e; e = e->next) {
        const char *file = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!file || !file[0] || file[0] == '.' || strchr(file, '/')) {
            rc = llm_err(LLM_EFORMAT, "%s: tensor '%s': bad shard file name", p, e->string);
            break;
        }
        int seen = 0; /* files appear in the map once per tensor: open each once */
        for (const cJSON *q = wm->child; !seen && q != e; q = q->next)
            seen = !strcmp(q->valuestring, file);
        if (!seen)
            rc = set_add(s, dir, file);
    }
    for (const cJSON *e = cJSON_IsObject(wm) ? wm->child : NULL; !rc && e; e = e->next) {
        size_t fi = 0;
        long ti;
        if (!(rc = llm_st_set_find(s, e->string, &fi, &ti)) && ti < 0)
            rc = llm_err(LLM_EFORMAT, "%s: tensor '%s' is not in its shard '%s'", p, e->string, e->valuestring);
    }
    cJSON_Delete(idx);
    return rc;
}

int llm_st_set_open(struct llm_st_set *s, const char *dir)
{
    struct stat st;
    size_t n = strlen(dir) + 64;
    char *p = llm_malloc(n, "a path");
    int rc = 0;
    memset(s, 0, sizeof(*s));
    if (!p)
        return LLM_ENOMEM;
    snprintf(p, n, "%s/model.safetensors", dir);
    if (stat(p, &st) == 0) {
        rc = set_add(s, dir, "model.safetensors");
    } else {
        snprintf(p, n, "%s/model.safetensors.index.json", dir);
        if (stat(p, &st) == 0)
            rc = set_index(s, dir, p);
        else
            rc = llm_err(LLM_EIO, "%s: no model.safetensors or model.safetensors.index.json (pytorch_model.bin "
                         "is not read: convert it to safetensors)", dir);
    }
    free(p);
    if (rc)
        llm_st_set_close(s);
    return rc;
}

void llm_st_set_close(struct llm_st_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        llm_st_close(s->f[i]);
    free(s->f);
    memset(s, 0, sizeof(*s));
}
