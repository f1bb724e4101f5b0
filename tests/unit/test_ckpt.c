/* test_ckpt.c: the checkpoint container (lib/core/ckpt.h): round trips,
 * every single-byte flip and every truncation refused, forged files with
 * absurd sizes refused without huge allocations, atomic replacement under
 * kill -9, bounded memory. `test_ckpt --write-fixture PATH` writes a small
 * valid checkpoint for tests/cli/ckpt.sh. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <zstd.h>

#include "core/ckpt.h"
#include "core/err.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifndef ASAN
#define ASAN 0
#endif

/* ---- helpers ---- */

static uint64_t rng_next(uint64_t *s) /* xorshift64* */
{
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void fill_random(void *p, size_t n, uint64_t seed)
{
    uint8_t *b = p;
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = rng_next(&s);
        memcpy(b + i, &v, n - i < 8 ? n - i : 8);
    }
}

/* Floats in [-1, 1): compressible exponents, random mantissas, like weights. */
static void fill_floats(float *f, size_t n, uint64_t seed)
{
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i++)
        f[i] = (float)((double)(rng_next(&s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Entries of dir other than . and ..; with prefix, only those starting with it. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            (!prefix || !strncmp(e->d_name, prefix, strlen(prefix))))
            n++;
    closedir(d);
    return n;
}

static void remove_temps(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            char *p = test_path(dir, e->d_name);
            unlink(p);
            free(p);
        }
    closedir(d);
}

static void *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(len ? (size_t)len : 1);
    assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

/* Overwrites path with p[0..n). Not by truncating to 0 first: ext4 then
 * flushes the file at close (auto_da_alloc), which made tests crawl. */
static void write_all(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, n, 0), (ssize_t)n);
    assert_int_equal(ftruncate(fd, (off_t)n), 0);
    assert_int_equal(close(fd), 0);
}

/* Opens, verifies and reads every tensor both ways; the first error or 0. */
static int chunk_sink(void *ctx, const void *data, size_t n, uint64_t offset)
{
    (void)ctx, (void)data, (void)n, (void)offset;
    return 0;
}

static int check_all(const char *path)
{
    struct llm_ckpt_reader *r;
    int rc = llm_ckpt_open(&r, path);
    if (rc)
        return rc;
    if (!(rc = llm_ckpt_verify(r))) {
        for (size_t i = 0; i < llm_ckpt_count(r) && !rc; i++) {
            const struct llm_ckpt_tensor *t = llm_ckpt_tensor(r, i);
            void *buf = malloc(t->nbytes ? t->nbytes : 1);
            rc = llm_ckpt_read(r, i, buf, t->nbytes);
            if (!rc)
                rc = llm_ckpt_read_chunks(r, i, chunk_sink, NULL);
            free(buf);
        }
    }
    llm_ckpt_close(r);
    return rc;
}

static void assert_err(int rc, int want, const char *needle)
{
    if (rc != want || (needle && !strstr(llm_errmsg(), needle)))
        fail_msg("got %d '%s', wanted %d with '%s'", rc, llm_errmsg(), want, needle ? needle : "");
}

/* ---- the small checkpoint: several dtypes, a scalar, an empty tensor ---- */

struct small {
    float emb[16 * 8];
    uint16_t wq[8 * 8];
    int8_t q[2 * 3 * 4];
    float scale;
    int64_t steps[3];
};

static void small_init(struct small *s)
{
    fill_floats(s->emb, 16 * 8, 1);
    fill_random(s->wq, sizeof(s->wq), 2);
    fill_random(s->q, sizeof(s->q), 3);
    s->scale = 0.125f;
    s->steps[0] = 1, s->steps[1] = -2, s->steps[2] = INT64_MAX;
}

static cJSON *small_header(void)
{
    cJSON *h = cJSON_Parse("{\"format\":\"llm\",\"step\":42,\"config\":{\"model\":{\"d_model\":8,"
                           "\"n_layers\":1}},\"note\":\"caf\\u00e9 \\\"quoted\\\"\"}");
    assert_non_null(h);
    return h;
}

static int write_small(const char *path, const struct small *s)
{
    static const int64_t emb[] = {16, 8}, wq[] = {8, 8}, q[] = {2, 3, 4}, empty[] = {4, 0},
                         steps[] = {3};
    struct llm_ckpt_writer *w;
    cJSON *h = small_header();
    int rc = llm_ckpt_writer_open(&w, path, h, NULL);
    cJSON_Delete(h);
    if (rc)
        return rc;
    if ((rc = llm_ckpt_write_tensor(w, "tok_emb.weight", LLM_CKPT_F32, 2, emb, s->emb)) ||
        (rc = llm_ckpt_write_tensor(w, "layers.0.attn.wq.weight", LLM_CKPT_BF16, 2, wq, s->wq)) ||
        (rc = llm_ckpt_write_tensor(w, "quant", LLM_CKPT_I8, 3, q, s->q)) ||
        (rc = llm_ckpt_write_tensor(w, "scale", LLM_CKPT_F32, 0, NULL, &s->scale)) ||
        (rc = llm_ckpt_write_tensor(w, "empty", LLM_CKPT_F16, 2, empty, NULL)) ||
        (rc = llm_ckpt_write_tensor(w, "train.steps", LLM_CKPT_I64, 1, steps, s->steps))) {
        llm_ckpt_writer_abort(w);
        return rc;
    }
    return llm_ckpt_writer_commit(w);
}

/* ---- tests ---- */

static void test_crc32(void **state)
{
    (void)state;
    assert_int_equal(llm_ckpt_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(llm_ckpt_crc32(0, "", 0), 0);
    assert_int_equal(llm_ckpt_crc32(0, "a", 1), 0xE8B7BE43u);
    uint8_t buf[300];
    fill_random(buf, sizeof(buf), 7);
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; n + off <= sizeof(buf); n += 7) {
            uint32_t c = 0xFFFFFFFFu; /* bit by bit, the definition */
            for (size_t i = 0; i < n; i++) {
                c ^= buf[off + i];
                for (int k = 0; k < 8; k++)
                    c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
            }
            assert_int_equal(llm_ckpt_crc32(0, buf + off, n), ~c);
            size_t h = n / 3;
            assert_int_equal(llm_ckpt_crc32(llm_ckpt_crc32(0, buf + off, h), buf + off + h, n - h), ~c);
        }
}

static void test_dtypes(void **state)
{
    (void)state;
    static const char *names[] = {"f32", "f16", "bf16", "i8", "u8", "i32", "i64"};
    static const size_t sizes[] = {4, 2, 2, 1, 1, 4, 8};
    for (int i = 0; i < LLM_CKPT_NDTYPES; i++) {
        enum llm_ckpt_dtype dt;
        assert_int_equal(llm_ckpt_dtype_parse(names[i], &dt), 0);
        assert_int_equal(dt, i);
        assert_string_equal(llm_ckpt_dtype_name(dt), names[i]);
        assert_int_equal(llm_ckpt_dtype_size(dt), sizes[i]);
    }
    enum llm_ckpt_dtype dt;
    assert_err(llm_ckpt_dtype_parse("f64", &dt), LLM_EINVAL, "unknown dtype 'f64'");
    assert_int_equal(llm_ckpt_dtype_size(LLM_CKPT_NDTYPES), 0);
}

struct collect {
    uint8_t *buf;
    size_t cap;
    uint64_t next; /* offset the next chunk must have */
    int calls, stop_at;
};

static int collect_fn(void *ctx, const void *data, size_t n, uint64_t offset)
{
    struct collect *c = ctx;
    if (offset != c->next || n == 0 || n > (1u << 20) || offset + n > c->cap)
        return llm_err(LLM_EINVAL, "bad chunk %zu at %llu", n, (unsigned long long)offset);
    memcpy(c->buf + offset, data, n);
    c->next += n;
    if (++c->calls == c->stop_at)
        return llm_err(LLM_EINVAL, "stopped by the callback");
    return 0;
}

static void roundtrip(const struct llm_ckpt_opts *opts)
{
    char *dir = test_mkdtemp(), *path = test_path(dir, "rt.llm");
    struct small s;
    small_init(&s);
    /* A big tensor (crosses the 1 MiB buffers) written in odd pieces. */
    size_t nbig = 700001;
    float *big = malloc(nbig * sizeof(float));
    fill_floats(big, nbig, 9);
    for (size_t i = 0; i < nbig / 2; i++)
        big[i] = (float)(i % 17); /* a compressible half */
    const int64_t bigshape[] = {(int64_t)nbig};

    struct llm_ckpt_writer *w;
    cJSON *h = small_header();
    assert_int_equal(llm_ckpt_writer_open(&w, path, h, opts), 0);
    assert_int_equal(llm_ckpt_write_tensor(w, "scale", LLM_CKPT_F32, 0, NULL, &s.scale), 0);
    assert_int_equal(llm_ckpt_writer_begin(w, "big", LLM_CKPT_F32, 1, bigshape), 0);
    size_t done = 0, step = 1;
    while (done < nbig * sizeof(float)) {
        size_t n = step < nbig * sizeof(float) - done ? step : nbig * sizeof(float) - done;
        assert_int_equal(llm_ckpt_writer_append(w, (uint8_t *)big + done, n), 0);
        done += n;
        step = step * 7 + 3;
    }
    assert_int_equal(llm_ckpt_writer_append(w, big, 0), 0);
    assert_int_equal(llm_ckpt_writer_end(w), 0);
    static const int64_t emb[] = {16, 8}, wq[] = {8, 8}, q[] = {2, 3, 4}, empty[] = {0};
    assert_int_equal(llm_ckpt_write_tensor(w, "tok_emb.weight", LLM_CKPT_F32, 2, emb, s.emb), 0);
    assert_int_equal(llm_ckpt_write_tensor(w, "wq", LLM_CKPT_BF16, 2, wq, s.wq), 0);
    assert_int_equal(llm_ckpt_write_tensor(w, "q", LLM_CKPT_I8, 3, q, s.q), 0);
    assert_int_equal(llm_ckpt_write_tensor(w, "empty", LLM_CKPT_U8, 1, empty, NULL), 0);
    /* Empty through the streaming calls too. */
    assert_int_equal(llm_ckpt_writer_begin(w, "empty2", LLM_CKPT_I32, 1, empty), 0);
    assert_int_equal(llm_ckpt_writer_end(w), 0);
    assert_int_equal(llm_ckpt_writer_commit(w), 0);
    assert_int_equal(count_entries(dir, NULL), 1);

    struct llm_ckpt_reader *r;
    assert_int_equal(llm_ckpt_open(&r, path), 0);
    assert_true(cJSON_Compare(llm_ckpt_header(r), h, 1));
    cJSON_Delete(h);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(llm_ckpt_file_size(r), (uint64_t)st.st_size);
    assert_int_equal(llm_ckpt_count(r), 7);
    static const char *order[] = {"scale", "big", "tok_emb.weight", "wq", "q", "empty", "empty2"};
    const void *want[] = {&s.scale, big, s.emb, s.wq, s.q, NULL, NULL};
    static const int ndims[] = {0, 1, 2, 2, 3, 1, 1};
    for (size_t i = 0; i < 7; i++) {
        const struct llm_ckpt_tensor *t = llm_ckpt_tensor(r, i);
        assert_string_equal(t->name, order[i]);
        assert_int_equal(t->ndim, ndims[i]);
        assert_int_equal(llm_ckpt_find(r, order[i]), (long)i);
        void *buf = malloc(t->nbytes + 1);
        assert_int_equal(llm_ckpt_read(r, i, buf, t->nbytes), 0);
        if (t->nbytes)
            assert_memory_equal(buf, want[i], t->nbytes);
        struct collect c = {buf, t->nbytes, 0, 0, 0};
        memset(buf, 0xAB, t->nbytes);
        assert_int_equal(llm_ckpt_read_chunks(r, i, collect_fn, &c), 0);
        assert_int_equal(c.next, t->nbytes);
        if (t->nbytes)
            assert_memory_equal(buf, want[i], t->nbytes);
        free(buf);
    }
    const struct llm_ckpt_tensor *t = llm_ckpt_tensor(r, 1);
    assert_int_equal(t->dtype, LLM_CKPT_F32);
    assert_int_equal(t->shape[0], (int64_t)nbig);
    assert_int_equal(t->shape[1], 0);
    assert_int_equal(t->nbytes, nbig * 4);
    t = llm_ckpt_tensor(r, 4);
    assert_int_equal(t->dtype, LLM_CKPT_I8);
    assert_int_equal(t->shape[0] * t->shape[1] * t->shape[2], 24);
    assert_null(llm_ckpt_tensor(r, 7));
    assert_int_equal(llm_ckpt_find(r, "nope"), -1);
    assert_int_equal(llm_ckpt_find(r, ""), -1);
    assert_int_equal(llm_ckpt_verify(r), 0);

    /* The callback can stop a read, and its code comes back. */
    uint8_t *buf = malloc(nbig * 4);
    struct collect c = {buf, nbig * 4, 0, 0, 1};
    assert_err(llm_ckpt_read_chunks(r, 1, collect_fn, &c), LLM_EINVAL, "stopped by the callback");
    assert_int_equal(c.calls, 1);
    /* Wrong sizes and indexes are argument errors. */
    assert_err(llm_ckpt_read(r, 1, buf, nbig * 4 - 1), LLM_EINVAL, "not");
    assert_err(llm_ckpt_read(r, 7, buf, 4), LLM_EINVAL, "no tensor 7");
    assert_err(llm_ckpt_verify_tensor(r, 99), LLM_EINVAL, "no tensor 99");
    assert_err(llm_ckpt_read_chunks(r, 0, NULL, NULL), LLM_EINVAL, "callback");
    /* And reads still work after them, in any order. */
    assert_int_equal(llm_ckpt_read(r, 1, buf, nbig * 4), 0);
    assert_memory_equal(buf, big, nbig * 4);
    assert_int_equal(llm_ckpt_read(r, 0, buf, 4), 0);
    free(buf);
    llm_ckpt_close(r);
    free(big);
    free(path);
    test_rmdir(dir);
}

static void test_roundtrip(void **state)
{
    (void)state;
    roundtrip(NULL);
    struct llm_ckpt_opts one = {.level = 1, .threads = 1}, many = {.level = 9, .threads = 3};
    roundtrip(&one);
    roundtrip(&many);
}

/* A writer refuses bad arguments; a refused begin leaves the writer usable,
 * a failure mid-tensor poisons it, and nothing is left behind either way. */
static void test_writer_errors(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "w.llm"), *missing = test_path(dir, "no/w.llm");
    struct llm_ckpt_writer *w;
    float x[4] = {1, 2, 3, 4};
    const int64_t four[] = {4}, neg[] = {-1}, huge[] = {1ll << 40, 1ll << 40},
                  nine[] = {1, 1, 1, 1, 1, 1, 1, 1, 1};

    assert_err(llm_ckpt_writer_open(&w, missing, NULL, NULL), LLM_EIO, "cannot create");
    assert_null(w);
    assert_err(llm_ckpt_writer_open(&w, "-", NULL, NULL), LLM_EINVAL, "file path");
    cJSON *arr = cJSON_CreateArray();
    assert_err(llm_ckpt_writer_open(&w, path, arr, NULL), LLM_EINVAL, "JSON object");
    cJSON_Delete(arr);
    struct llm_ckpt_opts bad = {.level = 99};
    assert_err(llm_ckpt_writer_open(&w, path, NULL, &bad), LLM_EINVAL, "level 99");
    assert_int_equal(count_entries(dir, NULL), 0);

    assert_int_equal(llm_ckpt_writer_open(&w, path, NULL, NULL), 0);
    assert_int_equal(count_entries(dir, ".w.llm.tmp."), 1);
    assert_err(llm_ckpt_write_tensor(w, "", LLM_CKPT_F32, 1, four, x), LLM_EINVAL, "is empty");
    assert_err(llm_ckpt_write_tensor(w, "a\nb", LLM_CKPT_F32, 1, four, x), LLM_EINVAL, "printable");
    assert_err(llm_ckpt_write_tensor(w, "caf\xc3\xa9", LLM_CKPT_F32, 1, four, x), LLM_EINVAL, "printable");
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[299] = 0;
    assert_err(llm_ckpt_write_tensor(w, longname, LLM_CKPT_F32, 1, four, x), LLM_EINVAL, "longer");
    assert_err(llm_ckpt_write_tensor(w, "x", (enum llm_ckpt_dtype)42, 1, four, x), LLM_EINVAL, "dtype");
    assert_err(llm_ckpt_write_tensor(w, "x", LLM_CKPT_F32, 9, nine, x), LLM_EINVAL, "8 dimensions");
    assert_err(llm_ckpt_write_tensor(w, "x", LLM_CKPT_F32, 1, neg, x), LLM_EINVAL, "below 0");
    assert_err(llm_ckpt_write_tensor(w, "x", LLM_CKPT_F32, 2, huge, x), LLM_EINVAL, "2^53");
    assert_err(llm_ckpt_write_tensor(w, "x", LLM_CKPT_F32, 1, four, NULL), LLM_EINVAL, "NULL");
    assert_int_equal(llm_ckpt_write_tensor(w, "x", LLM_CKPT_F32, 1, four, x), 0);
    assert_err(llm_ckpt_write_tensor(w, "x", LLM_CKPT_F32, 1, four, x), LLM_EINVAL, "twice");
    assert_err(llm_ckpt_writer_append(w, x, 4), LLM_EINVAL, "without a tensor");
    assert_err(llm_ckpt_writer_end(w), LLM_EINVAL, "without a tensor");
    assert_int_equal(llm_ckpt_writer_begin(w, "y", LLM_CKPT_F32, 1, four), 0);
    assert_err(llm_ckpt_writer_begin(w, "z", LLM_CKPT_F32, 1, four), LLM_EINVAL, "still being written");
    assert_int_equal(llm_ckpt_writer_append(w, x, 8), 0);
    assert_err(llm_ckpt_writer_append(w, x, 9), LLM_EINVAL, "more than its 16 bytes");
    /* Sticky from here on: the same message, and commit fails and cleans up. */
    assert_err(llm_ckpt_write_tensor(w, "z", LLM_CKPT_F32, 1, four, x), LLM_EINVAL, "more than its");
    assert_err(llm_ckpt_writer_commit(w), LLM_EINVAL, "more than its");
    assert_int_equal(count_entries(dir, NULL), 0);

    /* Ending short, and committing with a tensor open, fail too. */
    assert_int_equal(llm_ckpt_writer_open(&w, path, NULL, NULL), 0);
    assert_int_equal(llm_ckpt_writer_begin(w, "y", LLM_CKPT_F32, 1, four), 0);
    assert_int_equal(llm_ckpt_writer_append(w, x, 12), 0);
    assert_err(llm_ckpt_writer_end(w), LLM_EINVAL, "after 12 of its 16 bytes");
    llm_ckpt_writer_abort(w);
    assert_int_equal(llm_ckpt_writer_open(&w, path, NULL, NULL), 0);
    assert_int_equal(llm_ckpt_writer_begin(w, "y", LLM_CKPT_F32, 1, four), 0);
    assert_err(llm_ckpt_writer_commit(w), LLM_EINVAL, "never ended");
    assert_int_equal(count_entries(dir, NULL), 0);

    /* Abort leaves nothing, and an existing file is untouched by it. */
    struct small s;
    small_init(&s);
    assert_int_equal(write_small(path, &s), 0);
    size_t n0, n1;
    void *before = read_all(path, &n0);
    assert_int_equal(llm_ckpt_writer_open(&w, path, NULL, NULL), 0);
    assert_int_equal(llm_ckpt_write_tensor(w, "x", LLM_CKPT_F32, 1, four, x), 0);
    llm_ckpt_writer_abort(w);
    llm_ckpt_writer_abort(NULL);
    void *after = read_all(path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    assert_int_equal(count_entries(dir, NULL), 1);
    free(before);
    free(after);

    /* A checkpoint with no tensors is valid. */
    assert_int_equal(llm_ckpt_writer_open(&w, path, NULL, NULL), 0);
    assert_int_equal(llm_ckpt_writer_commit(w), 0);
    struct llm_ckpt_reader *r;
    assert_int_equal(llm_ckpt_open(&r, path), 0);
    assert_int_equal(llm_ckpt_count(r), 0);
    assert_non_null(llm_ckpt_header(r));
    assert_null(llm_ckpt_header(r)->child);
    assert_int_equal(llm_ckpt_verify(r), 0);
    llm_ckpt_close(r);
    llm_ckpt_close(NULL);
    free(path);
    free(missing);
    test_rmdir(dir);
}

/* Every byte of the file is covered by a CRC: each flip must be refused. */
static void test_flip_every_byte(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "f.llm");
    struct small s;
    small_init(&s);
    assert_int_equal(write_small(path, &s), 0);
    assert_int_equal(check_all(path), 0);
    size_t n;
    uint8_t *orig = read_all(path, &n);
    assert_true(n > 200 && n < 8192);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    static const uint8_t flips[] = {0xFF, 0x01, 0x10, 0x80};
    for (size_t off = 0; off < n; off++)
        for (size_t k = 0; k < sizeof(flips); k++) {
            uint8_t b = orig[off] ^ flips[k];
            assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
            int rc = check_all(path);
            if (rc != LLM_EFORMAT || !strstr(llm_errmsg(), path))
                fail_msg("flip 0x%02x at %zu of %zu: rc %d '%s'", flips[k], off, n, rc, llm_errmsg());
            assert_int_equal(pwrite(fd, &orig[off], 1, (off_t)off), 1);
        }
    close(fd);
    assert_int_equal(check_all(path), 0);
    free(orig);
    free(path);
    test_rmdir(dir);
}

static void test_truncate_every_offset(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "t.llm"), *cut = test_path(dir, "cut.llm");
    struct small s;
    small_init(&s);
    assert_int_equal(write_small(path, &s), 0);
    size_t n;
    uint8_t *orig = read_all(path, &n);
    write_all(cut, orig, n);
    for (size_t k = n; k-- > 0;) { /* shorter and shorter */
        assert_int_equal(truncate(cut, (off_t)k), 0);
        int rc = check_all(cut);
        if (rc != LLM_EFORMAT || !strstr(llm_errmsg(), k ? "truncated" : "empty"))
            fail_msg("cut at %zu of %zu: rc %d '%s'", k, n, rc, llm_errmsg());
    }
    /* Bytes appended after a complete file are refused too. */
    uint8_t *longer = malloc(n + 3);
    memcpy(longer, orig, n);
    memcpy(longer + n, "xyz", 3);
    write_all(cut, longer, n + 3);
    assert_err(check_all(cut), LLM_EFORMAT, "truncated or incomplete");
    /* Two checkpoints back to back: the trailer's offsets do not fit. */
    uint8_t *twice = malloc(2 * n);
    memcpy(twice, orig, n);
    memcpy(twice + n, orig, n);
    write_all(cut, twice, 2 * n);
    assert_err(check_all(cut), LLM_EFORMAT, "corrupt trailer");
    free(twice);
    free(longer);
    free(orig);
    free(path);
    free(cut);
    test_rmdir(dir);
}

/* Patches a field of a valid file and fixes the CRCs that cover it, so that
 * the reader's check of the field itself is what fires. */
static void patch_preamble(uint8_t *f, size_t n, size_t off, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        f[off + i] = (uint8_t)(v >> (8 * i));
    uint32_t pc = llm_ckpt_crc32(0, f, 28);
    for (int i = 0; i < 4; i++)
        f[28 + i] = (uint8_t)(pc >> (8 * i));
    uint32_t tc = llm_ckpt_crc32(llm_ckpt_crc32(0, f, 32), f + n - 40, 28);
    for (int i = 0; i < 4; i++)
        f[n - 12 + i] = (uint8_t)(tc >> (8 * i));
}

static void test_magic_and_version(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "v.llm"), *other = test_path(dir, "o.llm");
    struct small s;
    small_init(&s);
    assert_int_equal(write_small(path, &s), 0);
    size_t n;
    uint8_t *f = read_all(path, &n);

    write_all(other, "hello, world: this is not a checkpoint at all\n", 46);
    assert_err(check_all(other), LLM_EFORMAT, "is not an llm checkpoint (bad magic)");
    write_all(other, "LLM", 3);
    assert_err(check_all(other), LLM_EFORMAT, "truncated");
    write_all(other, "LLX", 3);
    assert_err(check_all(other), LLM_EFORMAT, "bad magic");
    /* A zstd frame is not a checkpoint either. */
    char z[64];
    size_t zn = ZSTD_compress(z, sizeof(z), "{}", 2, 3);
    write_all(other, z, zn);
    assert_err(check_all(other), LLM_EFORMAT, "bad magic");
    assert_err(check_all(dir), LLM_EIO, "directory");
    char *none = test_path(dir, "none.llm");
    assert_err(check_all(none), LLM_EIO, "cannot open");
    assert_true(strstr(llm_errmsg(), none) != NULL);
    free(none);

    uint8_t *g = malloc(n);
    memcpy(g, f, n);
    patch_preamble(g, n, 8, 7);
    write_all(other, g, n);
    assert_err(check_all(other), LLM_EUNSUPPORTED,
               "checkpoint version 7 is not supported (this build reads version 1)");
    memcpy(g, f, n);
    patch_preamble(g, n, 12, 4);
    write_all(other, g, n);
    assert_err(check_all(other), LLM_EUNSUPPORTED, "flags 0x4");
    /* A version flipped without the CRC fixed is damage, not a version. */
    memcpy(g, f, n);
    g[8] = 2;
    write_all(other, g, n);
    assert_err(check_all(other), LLM_EFORMAT, "corrupt preamble (checksum mismatch)");
    free(g);
    free(f);
    free(path);
    free(other);
    test_rmdir(dir);
}

/* ---- forged files: valid CRCs around invalid contents ---- */

static uint8_t *zframe(const void *src, size_t n, int checksum, int with_size, size_t *len)
{
    size_t cap = ZSTD_compressBound(n);
    uint8_t *p = malloc(cap);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, checksum);
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size);
    *len = ZSTD_compress2(c, p, cap, src, n);
    assert_false(ZSTD_isError(*len));
    ZSTD_freeCCtx(c);
    return p;
}

struct forge {
    const char *header;              /* JSON text */
    const uint8_t *body;             /* tensor frames */
    size_t body_len;
    const char *index;               /* JSON text with %llu for data_start where needed */
    uint64_t hcsize, ioff, icsize, count; /* UINT64_MAX: the true value */
};

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* Where the tensor frames start for a header text. */
static uint64_t data_start(const char *header)
{
    size_t hl;
    free(zframe(header, strlen(header), 1, 1, &hl));
    return 32 + hl;
}

static void forge_file(const char *path, const struct forge *fg, uint64_t count)
{
    size_t hl, il;
    uint8_t *hf = zframe(fg->header, strlen(fg->header), 1, 1, &hl);
    uint8_t *xf = zframe(fg->index, strlen(fg->index), 1, 1, &il);
    size_t n = 32 + hl + fg->body_len + il + 40;
    uint8_t *f = calloc(1, n), *t = f + n - 40;
    memcpy(f, "LLMCKPT", 8);
    put32(f + 8, 1);
    put64(f + 16, fg->hcsize != UINT64_MAX ? fg->hcsize : hl);
    put32(f + 24, llm_ckpt_crc32(0, hf, hl));
    put32(f + 28, llm_ckpt_crc32(0, f, 28));
    memcpy(f + 32, hf, hl);
    if (fg->body_len)
        memcpy(f + 32 + hl, fg->body, fg->body_len);
    memcpy(f + 32 + hl + fg->body_len, xf, il);
    put64(t, fg->ioff != UINT64_MAX ? fg->ioff : 32 + hl + fg->body_len);
    put64(t + 8, fg->icsize != UINT64_MAX ? fg->icsize : il);
    put64(t + 16, fg->count != UINT64_MAX ? fg->count : count);
    put32(t + 24, llm_ckpt_crc32(0, xf, il));
    put32(t + 28, llm_ckpt_crc32(llm_ckpt_crc32(0, f, 32), t, 28));
    memcpy(t + 32, "LLMCKEND", 8);
    write_all(path, f, n);
    free(f);
    free(hf);
    free(xf);
}

/* A file with one tensor frame and an index made from entry_fmt, a printf
 * format given (in this order) the frame's offset, csize and CRC-32; over
 * overrides trailer or preamble fields. Returns check_all of the file. */
static int forge_one(const char *path, const uint8_t *frame, size_t fl, const char *entry_fmt,
                     const char *header, struct forge over)
{
    char index[2048];
    uint64_t ds = data_start(header);
    snprintf(index, sizeof(index), entry_fmt, (unsigned long long)ds, (unsigned long long)fl,
             (unsigned long long)llm_ckpt_crc32(0, frame, fl));
    over.header = header;
    over.body = frame;
    over.body_len = fl;
    over.index = index;
    forge_file(path, &over, 1);
    return check_all(path);
}

#define GOOD "[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]"
#define KEEP {NULL, NULL, 0, NULL, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX}

static void test_forged(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "x.llm");
    float w[2] = {1.5f, -2};
    size_t fl;
    uint8_t *frame = zframe(w, 8, 1, 1, &fl);
    struct forge keep = KEEP, o;

    /* The forge makes valid files: this one opens and reads. */
    assert_int_equal(forge_one(path, frame, fl, GOOD, "{}", keep), 0);

    /* Absurd sizes in the preamble and trailer: refused before allocating. */
    o = keep, o.icsize = 1ull << 60;
    assert_err(forge_one(path, frame, fl, GOOD, "{}", o), LLM_EFORMAT, "corrupt trailer (an index of");
    o = keep, o.hcsize = 1ull << 60;
    assert_err(forge_one(path, frame, fl, GOOD, "{}", o), LLM_EFORMAT, "corrupt preamble (a header of");
    o = keep, o.hcsize = 200 << 20;
    assert_err(forge_one(path, frame, fl, GOOD, "{}", o), LLM_EFORMAT, "does not fit");
    o = keep, o.ioff = UINT64_MAX - 5;
    assert_err(forge_one(path, frame, fl, GOOD, "{}", o), LLM_EFORMAT, "does not fit");
    o = keep, o.ioff = 0;
    assert_err(forge_one(path, frame, fl, GOOD, "{}", o), LLM_EFORMAT, "does not fit");
    o = keep, o.count = 1ull << 62;
    assert_err(forge_one(path, frame, fl, GOOD, "{}", o), LLM_EFORMAT, "cannot fit");
    o = keep, o.count = 0;
    assert_err(forge_one(path, frame, fl, GOOD, "{}", o), LLM_EFORMAT, "1 entries, the trailer says 0");

    /* The header. */
    assert_err(forge_one(path, frame, fl, GOOD, "[1,2]", keep), LLM_EFORMAT, "header is not a JSON object");
    assert_err(forge_one(path, frame, fl, GOOD, "{\"a\":", keep), LLM_EFORMAT, "header is not valid JSON");
    assert_err(forge_one(path, frame, fl, GOOD, "{} x", keep), LLM_EFORMAT, "header is not valid JSON");
    assert_int_equal(forge_one(path, frame, fl, GOOD, "{\"a\":1} \n", keep), 0);

    /* Index entries: every rule. */
    static const struct {
        const char *entry, *msg;
    } bad[] = {
        {"{}", "not a JSON array"},
        {"[1]", "entry 0 is not an object"},
        {"[{\"name\":\"w\",\"shape\":[2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "entry 0 has no 'dtype'"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc\":%llu}]", "unknown key 'crc'"},
        {"[{\"name\":\"w\",\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "repeated key 'name'"},
        {"[{\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu,\"x\":1}]", "unknown key 'x'"},
        {"[{\"name\":\"\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "is empty"},
        {"[{\"name\":\"a\\u0001\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "printable"},
        {"[{\"name\":7,\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "not a string"},
        {"[{\"name\":\"w\",\"dtype\":\"f64\",\"shape\":[2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "unknown dtype"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":2,\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "not an array"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[2.5],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "whole number"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[-2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "whole number"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[\"2\"],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "whole number"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[1e300],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "whole number"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "more than 8"},
        /* The product overflows 64 bits: caught, not wrapped around to 8. */
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[4294967296,4294967296,2],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "larger than 2^53"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[3],\"offset\":%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "holds 12 bytes, the index says 8"},
        {"[{\"offset\":%llu,\"csize\":%llu,\"name\":\"w%llu\",\"dtype\":\"f32\",\"shape\":[2],\"nbytes\":8,\"crc32\":4294967296}]", "bad offset"},
        {"[{\"offset\":%llu,\"csize\":%llu,\"name\":\"w%llu\",\"dtype\":\"f32\",\"shape\":[2],\"nbytes\":8,\"crc32\":-1}]", "bad offset"},
        {"[{\"offset\":%llu,\"csize\":%llu,\"name\":\"w%llu\",\"dtype\":\"f32\",\"shape\":[2],\"nbytes\":8.5,\"crc32\":0}]", "bad offset"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":1%llu,\"csize\":%llu,\"nbytes\":8,\"crc32\":%llu}]", "should start at"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":1%llu,\"nbytes\":8,\"crc32\":%llu}]", "runs into the index"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":%llu1,\"nbytes\":8,\"crc32\":%llu}]", "runs into the index"},
        {"[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":1e17,\"nbytes\":8,\"crc32\":%llu}]", "bad offset"},
        {"[{\"offset\":%llu,\"csize\":%llu,\"name\":\"w%llu\",\"dtype\":\"f32\",\"shape\":[2],\"nbytes\":8,\"crc32\":0}]", "is corrupt (checksum mismatch)"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = forge_one(path, frame, fl, bad[i].entry, "{}", keep);
        if (rc != LLM_EFORMAT || !strstr(llm_errmsg(), bad[i].msg))
            fail_msg("case %zu: rc %d '%s', wanted '%s'", i, rc, llm_errmsg(), bad[i].msg);
    }
    /* Two tensors: names must differ, frames must touch. */
    {
        char index[512];
        uint64_t ds = data_start("{}");
        uint32_t c = llm_ckpt_crc32(0, frame, fl);
        uint8_t body[256];
        memcpy(body, frame, fl);
        memcpy(body + fl, frame, fl);
        struct forge f2 = {"{}", body, 2 * fl, index, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
        static const char *const second[] = {"w", "v", "v"};
        for (int k = 0; k < 3; k++) {
            if (k == 2) { /* a gap between the two frames */
                memcpy(body + fl, "gap", 3);
                memcpy(body + fl + 3, frame, fl);
                f2.body_len = 2 * fl + 3;
            }
            snprintf(index, sizeof(index),
                     "[{\"name\":\"w\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":%zu,\"nbytes\":8,\"crc32\":%u},"
                     "{\"name\":\"%s\",\"dtype\":\"f32\",\"shape\":[2],\"offset\":%llu,\"csize\":%zu,\"nbytes\":8,\"crc32\":%u}]",
                     (unsigned long long)ds, fl, c, second[k], (unsigned long long)(ds + fl), fl, c);
            forge_file(path, &f2, 2);
            int rc = check_all(path);
            if (k == 0)
                assert_err(rc, LLM_EFORMAT, "tensor 'w' appears twice");
            else if (k == 1)
                assert_int_equal(rc, 0);
            else
                assert_err(rc, LLM_EFORMAT, "the tensors end at byte");
        }
    }

    /* Tensor frames that break the rules. */
    size_t l2;
    uint8_t *nock = zframe(w, 8, 0, 1, &l2);
    assert_err(forge_one(path, nock, l2, GOOD, "{}", keep), LLM_EFORMAT, "no content checksum");
    free(nock);
    uint8_t *nosize = zframe(w, 8, 1, 0, &l2);
    assert_err(forge_one(path, nosize, l2, GOOD, "{}", keep), LLM_EFORMAT, "does not record its content size");
    free(nosize);
    float w3[3] = {1, 2, 3};
    uint8_t *three = zframe(w3, 12, 1, 1, &l2);
    assert_err(forge_one(path, three, l2, GOOD, "{}", keep), LLM_EFORMAT, "its frame holds 12 bytes, the index says 8");
    free(three);
    uint8_t junk[32];
    memset(junk, 0x5A, sizeof(junk));
    assert_err(forge_one(path, junk, sizeof(junk), GOOD, "{}", keep), LLM_EFORMAT, "not a zstd frame");
    /* A frame followed by a second frame inside the same csize. */
    uint8_t two[128];
    memcpy(two, frame, fl);
    memcpy(two + fl, frame, fl);
    assert_err(forge_one(path, two, 2 * fl, GOOD, "{}", keep), LLM_EFORMAT, "bytes after the end of its frame");
    /* A hand-made frame claiming 2^50 bytes but holding none: reading it
     * must not allocate or write 2^50 bytes (ASan aborts on such a malloc). */
    {
        uint8_t fr[32];
        size_t k = 0;
        put32(fr, 0xFD2FB528u), k = 4;
        fr[k++] = 0xC4;       /* 8-byte content size, checksum, not single segment */
        fr[k++] = 0x50;       /* window 2^20 */
        put64(fr + k, 1ull << 50), k += 8;
        fr[k++] = 0x01, fr[k++] = 0, fr[k++] = 0; /* last block, raw, 0 bytes */
        put32(fr + k, 0), k += 4;                 /* (wrong) checksum */
        char entry[512];
        snprintf(entry, sizeof(entry),
                 "[{\"name\":\"w\",\"dtype\":\"u8\",\"shape\":[%llu],\"offset\":%%llu,\"csize\":%%llu,"
                 "\"nbytes\":%llu,\"crc32\":%%llu}]", 1ull << 50, 1ull << 50);
        struct llm_ckpt_reader *r;
        forge_one(path, fr, k, entry, "{}", keep);
        assert_int_equal(llm_ckpt_open(&r, path), 0);
        assert_int_equal(llm_ckpt_tensor(r, 0)->nbytes, 1ull << 50);
        assert_err(llm_ckpt_verify(r), LLM_EFORMAT, "tensor 'w' is corrupt");
        assert_err(llm_ckpt_read_chunks(r, 0, chunk_sink, NULL), LLM_EFORMAT, "tensor 'w' is corrupt");
        llm_ckpt_close(r);
    }
    /* A header frame that is two frames. */
    {
        size_t a;
        uint8_t *h = zframe("{}", 2, 1, 1, &a);
        uint8_t *f = calloc(1, 4096);
        /* Build by hand: preamble + (h,h) + index + trailer. */
        char index[] = "[]";
        size_t il;
        uint8_t *x = zframe(index, 2, 1, 1, &il);
        size_t hl = 2 * a, n = 32 + hl + il + 40;
        memcpy(f, "LLMCKPT", 8);
        put32(f + 8, 1);
        put64(f + 16, hl);
        memcpy(f + 32, h, a);
        memcpy(f + 32 + a, h, a);
        put32(f + 24, llm_ckpt_crc32(0, f + 32, hl));
        put32(f + 28, llm_ckpt_crc32(0, f, 28));
        memcpy(f + 32 + hl, x, il);
        uint8_t *t = f + n - 40;
        put64(t, 32 + hl);
        put64(t + 8, il);
        put64(t + 16, 0);
        put32(t + 24, llm_ckpt_crc32(0, x, il));
        put32(t + 28, llm_ckpt_crc32(llm_ckpt_crc32(0, f, 32), t, 28));
        memcpy(t + 32, "LLMCKEND", 8);
        write_all(path, f, n);
        assert_err(check_all(path), LLM_EFORMAT, "header is corrupt (its zstd frame is not");
        free(h);
        free(x);
        free(f);
    }
    free(frame);
    free(path);
    test_rmdir(dir);
}

/* Damage inside a tensor frame with the CRC fixed to match, so only zstd's
 * own checks (and our framing checks) stand in the way: never a crash or an
 * overread, and never wrong data returned as good. */
static void test_corrupt_frames(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "z.llm");
    const size_t n = 300000; /* several zstd blocks, across the reader's refills */
    uint8_t *data = malloc(n), *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)((i * 7) % 251 ^ (i >> 9));
    fill_random(data + n / 2, n / 8, 5);
    size_t fl;
    uint8_t *frame = zframe(data, n, 1, 1, &fl), *bad = malloc(fl);
    char entry[256];
    snprintf(entry, sizeof(entry), "[{\"name\":\"w\",\"dtype\":\"u8\",\"shape\":[%zu],"
             "\"offset\":%%llu,\"csize\":%%llu,\"nbytes\":%zu,\"crc32\":%%llu}]", n, n);
    struct forge keep = KEEP;
    uint64_t seed = 99;
    int refused = 0;
    for (int it = 0; it < (ASAN ? 150 : 400); it++) {
        memcpy(bad, frame, fl);
        int k = 1 + (int)(rng_next(&seed) % 4);
        for (int j = 0; j < k; j++) {
            /* Half the damage near the start, where the headers are. */
            size_t at = rng_next(&seed) % (j % 2 ? fl : 64);
            bad[at] ^= (uint8_t)(1 + rng_next(&seed) % 255);
        }
        forge_one(path, bad, fl, entry, "{}", keep);
        struct llm_ckpt_reader *r;
        assert_int_equal(llm_ckpt_open(&r, path), 0);
        int rc = llm_ckpt_read(r, 0, buf, n);
        int rc2 = llm_ckpt_verify(r);
        llm_ckpt_close(r);
        if (rc == 0)
            assert_memory_equal(buf, data, n);
        else if (rc != LLM_EFORMAT || !strstr(llm_errmsg(), "tensor 'w' is corrupt"))
            fail_msg("iteration %d: rc %d '%s'", it, rc, llm_errmsg());
        assert_int_equal(rc2, rc);
        refused += rc != 0;
    }
    assert_true(refused > 0);
    free(bad);
    free(frame);
    free(data);
    free(buf);
    free(path);
    test_rmdir(dir);
}

/* ---- atomic replacement under kill -9 ---- */

#define NBIG 4

struct big {
    float *t[NBIG];
    size_t n; /* floats per tensor */
};

static int write_big(const char *path, const struct big *b)
{
    struct llm_ckpt_writer *w;
    cJSON *h = cJSON_Parse("{\"which\":\"B\"}");
    int rc = llm_ckpt_writer_open(&w, path, h, NULL);
    cJSON_Delete(h);
    if (rc)
        return rc;
    const int64_t shape[] = {(int64_t)b->n};
    for (int i = 0; i < NBIG; i++) {
        char name[32];
        snprintf(name, sizeof(name), "layers.%d.w", i);
        if ((rc = llm_ckpt_write_tensor(w, name, LLM_CKPT_F32, 1, shape, b->t[i]))) {
            llm_ckpt_writer_abort(w);
            return rc;
        }
    }
    return llm_ckpt_writer_commit(w);
}

/* 'A' when path holds exactly the small checkpoint s, 'B' when exactly b. */
static int holds(const char *path, const struct small *s, const struct big *b)
{
    struct llm_ckpt_reader *r;
    int rc = llm_ckpt_open(&r, path);
    if (rc)
        fail_msg("after a kill: %s", llm_errmsg());
    assert_int_equal(llm_ckpt_verify(r), 0);
    const cJSON *which = cJSON_GetObjectItemCaseSensitive(llm_ckpt_header(r), "which");
    int kind = which ? 'B' : 'A';
    if (kind == 'A') {
        assert_int_equal(llm_ckpt_count(r), 6);
        long i = llm_ckpt_find(r, "tok_emb.weight");
        float emb[16 * 8];
        assert_int_equal(llm_ckpt_read(r, (size_t)i, emb, sizeof(emb)), 0);
        assert_memory_equal(emb, s->emb, sizeof(emb));
    } else {
        assert_int_equal(llm_ckpt_count(r), NBIG);
        float *buf = malloc(b->n * sizeof(float));
        for (int i = 0; i < NBIG; i++) {
            assert_int_equal(llm_ckpt_read(r, (size_t)i, buf, b->n * sizeof(float)), 0);
            assert_memory_equal(buf, b->t[i], b->n * sizeof(float));
        }
        free(buf);
    }
    llm_ckpt_close(r);
    return kind;
}

static void test_atomic_kill(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "ck.llm"), *calib = test_path(dir, "calib.llm");
    struct small s;
    small_init(&s);
    struct big b;
    b.n = (ASAN ? (8u << 20) : (48u << 20)) / sizeof(float) / NBIG;
    for (int i = 0; i < NBIG; i++) {
        b.t[i] = malloc(b.n * sizeof(float));
        fill_floats(b.t[i], b.n, 100 + (uint64_t)i);
    }
    /* How long a save of B takes here, to spread the kills over it. */
    double t0 = now_s();
    assert_int_equal(write_big(calib, &b), 0);
    double dur = now_s() - t0;
    unlink(calib);

    assert_int_equal(write_small(path, &s), 0);
    uint64_t seed = 12345;
    int kills = 0, intact = 0;
    for (int it = 0; it < 20; it++) {
        double frac = 0.02 + 0.83 * (double)(rng_next(&seed) >> 11) / 9007199254740992.0;
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(write_big(path, &b) ? 1 : 0);
        struct timespec ts = {0, (long)(frac * dur * 1e9)};
        while (ts.tv_nsec >= 1000000000L)
            ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        int killed = WIFSIGNALED(st);
        if (!killed)
            assert_int_equal(WEXITSTATUS(st), 0);
        kills += killed;
        /* Always a complete checkpoint: the old one, or (killed after the
         * rename, or finished first) the new one. Never a mix, never broken. */
        int kind = holds(path, &s, &b);
        if (kind == 'A')
            intact++;
        else
            assert_int_equal(write_small(path, &s), 0);
        /* kill -9 leaves at most the one temp file, which readers never see. */
        assert_true(count_entries(dir, ".ck.llm.tmp.") <= 1);
        remove_temps(dir, ".ck.llm.tmp.");
        assert_int_equal(count_entries(dir, NULL), 1);
    }
    print_message("# atomic: save of %.0f MB took %.2f s; %d kills, %d left A intact\n",
                  NBIG * b.n * 4 / 1e6, dur, kills, intact);
    /* Most kills must land mid-save, or the test proves little. */
    assert_true(intact >= 10);
    assert_int_equal(write_big(path, &b), 0);
    assert_int_equal(holds(path, &s, &b), 'B');
    assert_int_equal(count_entries(dir, NULL), 1);
    for (int i = 0; i < NBIG; i++)
        free(b.t[i]);
    free(path);
    free(calib);
    test_rmdir(dir);
}

/* ---- bounded memory ---- */

static long vm_hwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmHWM:", 6))
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

/* Generates the tensor in 256 KiB pieces, so its size never sits in memory. */
static void piece(uint8_t *p, size_t n, uint64_t at)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t s = (at + i) * 0x9E3779B97F4A7C15ull + 1, v = rng_next(&s) & 0x3F3F3F3F3F3F3F3Full;
        memcpy(p + i, &v, 8);
    }
}

struct cmp_ctx {
    uint8_t *want;
    int bad;
};

static int cmp_fn(void *ctx, const void *data, size_t n, uint64_t offset)
{
    struct cmp_ctx *c = ctx;
    for (size_t done = 0; done < n;) {
        uint64_t at = offset + done, base = at & ~(uint64_t)((256 << 10) - 1);
        piece(c->want, 256 << 10, base);
        size_t k = (size_t)(base + (256 << 10) - at);
        if (k > n - done)
            k = n - done;
        if (memcmp((const uint8_t *)data + done, c->want + (at - base), k))
            c->bad = 1;
        done += k;
    }
    return 0;
}

static void test_bounded_memory(void **state)
{
    (void)state;
    if (ASAN)
        SKIP_BECAUSE("peak RSS is not meaningful under AddressSanitizer");
    malloc_trim(0); /* freed heap from earlier tests would hide growth */
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f || fputs("5", f) < 0 || fclose(f) != 0)
        SKIP_BECAUSE("cannot reset the peak RSS (/proc/self/clear_refs)");
    char *dir = test_mkdtemp(), *path = test_path(dir, "m.llm");
    const uint64_t total = 128ull << 20;
    const int64_t shape[] = {(int64_t)total};
    uint8_t *buf = malloc(256 << 10);
    struct llm_ckpt_opts one = {.threads = 1};
    long base = vm_hwm_kb();
    struct llm_ckpt_writer *w;
    assert_int_equal(llm_ckpt_writer_open(&w, path, NULL, &one), 0);
    assert_int_equal(llm_ckpt_writer_begin(w, "huge", LLM_CKPT_U8, 1, shape), 0);
    for (uint64_t at = 0; at < total; at += 256 << 10) {
        piece(buf, 256 << 10, at);
        assert_int_equal(llm_ckpt_writer_append(w, buf, 256 << 10), 0);
    }
    assert_int_equal(llm_ckpt_writer_end(w), 0);
    assert_int_equal(llm_ckpt_writer_commit(w), 0);
    struct llm_ckpt_reader *r;
    assert_int_equal(llm_ckpt_open(&r, path), 0);
    struct cmp_ctx c = {buf, 0};
    assert_int_equal(llm_ckpt_read_chunks(r, 0, cmp_fn, &c), 0);
    assert_false(c.bad);
    assert_int_equal(llm_ckpt_verify(r), 0);
    llm_ckpt_close(r);
    long grew = vm_hwm_kb() - base;
    print_message("# bounded memory: a %llu MiB tensor written and read with %ld KiB more peak RSS\n",
                  (unsigned long long)(total >> 20), grew);
    assert_true(grew < 32 * 1024);
    free(buf);
    free(path);
    test_rmdir(dir);
}

/* ---- the CLI fixture ---- */

static int write_fixture(const char *path)
{
    struct small s;
    small_init(&s);
    if (write_small(path, &s)) {
        fprintf(stderr, "test_ckpt: %s\n", llm_errmsg());
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-fixture"))
        return write_fixture(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_flip_every_byte),
        cmocka_unit_test(test_truncate_every_offset),
        cmocka_unit_test(test_magic_and_version),
        cmocka_unit_test(test_forged),
        cmocka_unit_test(test_corrupt_frames),
        cmocka_unit_test(test_atomic_kill),
        cmocka_unit_test(test_bounded_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
