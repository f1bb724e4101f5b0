/* dedup.c: the modes of dedup.h over batches of documents: hashes and
 * signatures computed in parallel (OpenMP), every decision taken in input
 * order on one thread, so the output never depends on the thread count. */
#include "dedup.h"

#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bloom.h"
#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "core/str.h"
#include "hashset.h"
#include "lsh.h"
#include "minhash.h"
#include "shingle.h"

#define DEFAULT_BATCH (8u << 20)
#define DEFAULT_EXPECTED 10000000ULL
#define DEFAULT_FP_RATE 1e-3
/* LSH false-positive and false-negative weights: every candidate pair is
 * checked against its estimated Jaccard, so a false positive costs one
 * signature comparison while a false negative loses a duplicate for good.
 * With 0.1 / 0.9 the 0.8 threshold at 128 permutations gets 14 bands of 9
 * rows: a pair at J = 0.85 becomes a candidate with probability 0.975
 * (datasketch's 0.5 / 0.5 gives 9 x 13 and 0.69). */
#define LSH_FP_WEIGHT 0.1
#define LSH_FN_WEIGHT 0.9

int llm_dedup_check(struct llm_dedup_opts *o)
{
    if (!o->batch_bytes)
        o->batch_bytes = DEFAULT_BATCH;
    if (o->bloom && o->mode != LLM_DEDUP_EXACT)
        return llm_err(LLM_EUSAGE, "--bloom is a kind of exact dedup: it goes with --mode exact");
    if (!o->expected)
        o->expected = DEFAULT_EXPECTED;
    if (o->fp_rate == 0)
        o->fp_rate = DEFAULT_FP_RATE;
    if (!(o->fp_rate > 0 && o->fp_rate <= 0.5))
        return llm_err(LLM_EUSAGE, "--fp-rate: expected a probability in (0, 0.5], got %g", o->fp_rate);
    if (o->threshold == 0)
        o->threshold = 0.8;
    if (!(o->threshold > 0 && o->threshold <= 1))
        return llm_err(LLM_EUSAGE, "--threshold: expected a Jaccard similarity in (0, 1], got %g", o->threshold);
    if (!o->num_perm)
        o->num_perm = 128;
    if (o->num_perm < 1 || o->num_perm > LLM_MINHASH_MAX_PERM)
        return llm_err(LLM_EUSAGE, "--num-perm: expected 1..%d, got %d", LLM_MINHASH_MAX_PERM, o->num_perm);
    if (!o->ngram)
        o->ngram = 5;
    if (o->ngram < 1 || o->ngram > LLM_SHINGLE_MAX_NGRAM)
        return llm_err(LLM_EUSAGE, "--ngram: expected 1..%d words, got %d", LLM_SHINGLE_MAX_NGRAM, o->ngram);
    if ((o->bands > 0) != (o->rows > 0) || o->bands < 0 || o->rows < 0)
        return llm_err(LLM_EUSAGE, "--bands and --rows go together, both >= 1");
    if (o->bands && (long)o->bands * o->rows > o->num_perm)
        return llm_err(LLM_EUSAGE, "--bands %d x --rows %d = %ld: more than --num-perm %d", o->bands, o->rows,
                       (long)o->bands * o->rows, o->num_perm);
    if (o->mode == LLM_DEDUP_MINHASH && !o->bands)
        llm_lsh_params(o->threshold, o->num_perm, LSH_FP_WEIGHT, LSH_FN_WEIGHT, &o->bands, &o->rows);
    if (o->threads < 0)
        return llm_err(LLM_EUSAGE, "-j: expected a thread count >= 0, got %d", o->threads);
    return 0;
}

/* ---- what every mode shares ---- */

/* A growable run of bytes: document ids as JSON text (what the report
 * prints) kept back to back, NUL-separated; or a thread's scratch text. */
struct chars {
    char *buf;
    size_t n, cap;
};

struct run {
    const struct llm_dedup_opts *o;
    int nt;                      /* threads */
    struct llm_docs_reader r;
    int have_r;
    struct llm_doc_batch b;
    FILE *out;
    const char *out_name;
    struct llm_atomic rep;       /* the report, when asked for */
    int have_rep;
    struct llm_progress prog;
    struct llm_dedup_stats *st;
    struct chars ids;
};

/* The "id" of document d as JSON text ("null" when absent). Caller frees. */
static char *id_json(const cJSON *obj)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    char *s = id ? cJSON_PrintUnformatted(id) : NULL;
    if (!s && !id)
        s = llm_strdup("null");
    return s;
}

/* Appends the id of obj to the store; its offset is the store's length before. */
static int ids_put(struct chars *s, const cJSON *obj)
{
    char *j = id_json(obj);
    if (!j)
        return llm_err(LLM_ENOMEM, "out of memory keeping ids for the report");
    size_t n = strlen(j) + 1;
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? s->cap : 1 << 16;
        while (cap < s->n + n)
            cap *= 2;
        char *p = realloc(s->buf, cap);
        if (!p) {
            free(j);
            return llm_err(LLM_ENOMEM, "out of memory keeping ids for the report");
        }
        s->buf = p, s->cap = cap;
    }
    memcpy(s->buf + s->n, j, n);
    s->n += n;
    free(j);
    return 0;
}

/* {"id": ID, "duplicate_of": DUP, "jaccard": J} with ID and DUP JSON texts. */
static int report_dup(struct run *u, const char *id, const char *dup, double jaccard)
{
    char num[48];
    snprintf(num, sizeof(num), ",\"jaccard\":%.4g}\n", jaccard);
    FILE *f = u->rep.f;
    const char *p = u->o->report;
    int rc;
    if ((rc = llm_fwrite(f, "{\"id\":", 6, p)) || (rc = llm_fwrite(f, id, strlen(id), p)) ||
        (rc = llm_fwrite(f, ",\"duplicate_of\":", 16, p)) || (rc = llm_fwrite(f, dup, strlen(dup), p)))
        return rc;
    return llm_fwrite(f, num, strlen(num), p);
}

/* Same, parsing the id out of a raw input line (documents written back raw
 * are never parsed again except for the report). */
static int report_raw(struct run *u, const char *line, size_t len, const char *dup, double jaccard)
{
    cJSON *o = cJSON_ParseWithLength(line, len);
    char *id = o ? id_json(o) : NULL;
    cJSON_Delete(o);
    if (!id)
        return llm_err(LLM_ENOMEM, "out of memory writing the report");
    int rc = report_dup(u, id, dup, jaccard);
    free(id);
    return rc;
}

/* {"id": ID, "lines_removed": K, "emptied": true|false} (lines mode). */
static int report_lines(struct run *u, const cJSON *obj, uint64_t k, int emptied)
{
    char *id = id_json(obj), tail[96];
    if (!id)
        return llm_err(LLM_ENOMEM, "out of memory writing the report");
    snprintf(tail, sizeof(tail), ",\"lines_removed\":%llu,\"emptied\":%s}\n", (unsigned long long)k,
             emptied ? "true" : "false");
    const char *p = u->o->report;
    int rc = llm_fwrite(u->rep.f, "{\"id\":", 6, p);
    if (!rc && !(rc = llm_fwrite(u->rep.f, id, strlen(id), p)))
        rc = llm_fwrite(u->rep.f, tail, strlen(tail), p);
    free(id);
    return rc;
}

/* The bar's fields: documents read and one more count (what, k). */
static void progress_batch(struct run *u, uint64_t done, const char *what, uint64_t k)
{
    llm_progress_fields(&u->prog, "docs %llu  %s %llu", (unsigned long long)u->st->docs_in, what,
                        (unsigned long long)k);
    llm_progress_set(&u->prog, done);
}

/* Per-batch scratch: one value per document. */
static int reserve_u64(uint64_t **p, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    uint64_t *q = realloc(*p, n * sizeof(*q));
    if (!q)
        return llm_err(LLM_ENOMEM, "out of memory for a batch of %zu documents", n);
    *p = q, *cap = n;
    return 0;
}

static void count_batch(struct run *u)
{
    for (size_t i = 0; i < u->b.n; i++)
        u->st->text_bytes += u->b.docs[i].text_len;
    u->st->docs_in += u->b.n;
}

/* ---- the temporary copy of the input (two-pass modes) ---- */

/* Created with mkstemp and unlinked at once where /proc/self/fd lets us read
 * it back under another name, so nothing is left behind even on a kill. */
struct spill {
    FILE *f;
    char path[4096];  /* its name while it has one */
    char via[64];     /* the name to read it back by */
    int named;        /* path still exists (no /proc): removed at close */
    int err;          /* errno of a failed write */
    uint64_t bytes;
};

static int spill_open(struct spill *s)
{
    memset(s, 0, sizeof(*s));
    const char *dir = getenv("TMPDIR");
    if (!dir || !dir[0])
        dir = "/tmp";
    snprintf(s->path, sizeof(s->path), "%s/llm-dedup-XXXXXX", dir);
    int fd = mkstemp(s->path);
    if (fd < 0)
        return llm_err(LLM_EIO, "cannot create a temporary file in '%s' (set TMPDIR): %s", dir, strerror(errno));
    if (!(s->f = fdopen(fd, "w+b"))) {
        close(fd);
        unlink(s->path);
        return llm_err(LLM_EIO, "cannot open the temporary file '%s'", s->path);
    }
    snprintf(s->via, sizeof(s->via), "/proc/self/fd/%d", fd);
    if (access(s->via, R_OK) == 0) {
        unlink(s->path);
    } else {
        s->named = 1;
        snprintf(s->via, sizeof(s->via), "%.63s", s->path);
        if (strlen(s->path) >= sizeof(s->via)) { /* a long $TMPDIR: read back through the path */
            fclose(s->f), unlink(s->path);
            return llm_err(LLM_EIO, "temporary folder path too long: '%s'", dir);
        }
    }
    return 0;
}

/* Appends the raw lines of b. It runs on one thread while the others work
 * on the batch, so a failure only records errno (messages are per thread);
 * spill_check reports it from the calling thread. */
static void spill_batch(struct spill *s, const struct llm_doc_batch *b)
{
    for (size_t i = 0; i < b->n && !s->err; i++) {
        if (fwrite(b->docs[i].raw, 1, b->docs[i].raw_len, s->f) != b->docs[i].raw_len || putc('\n', s->f) == EOF)
            s->err = errno ? errno : EIO;
        s->bytes += b->docs[i].raw_len + 1;
    }
}

static int spill_check(const struct spill *s)
{
    if (!s->err)
        return 0;
    return llm_err(LLM_EIO, "cannot write the temporary copy of the input in '%s': %s",
                   s->named ? s->path : "$TMPDIR", strerror(s->err));
}

static int spill_done(struct spill *s)
{
    if (fflush(s->f) != 0 || ferror(s->f))
        return llm_err(LLM_EIO, "cannot write the temporary copy of the input: %s", strerror(errno));
    return 0;
}

static void spill_close(struct spill *s)
{
    if (s->f)
        fclose(s->f);
    if (s->named)
        unlink(s->path);
    memset(s, 0, sizeof(*s));
}

/* ---- exact: hash set or Bloom filter ---- */

static int run_exact(struct run *u)
{
    const struct llm_dedup_opts *o = u->o;
    struct llm_hashset set = {0};
    struct llm_bloom bf = {0};
    struct llm_words *w = calloc((size_t)u->nt, sizeof(*w));
    uint64_t *h = NULL;
    size_t hcap = 0;
    int rc = w ? 0 : llm_err(LLM_ENOMEM, "out of memory");
    if (!rc && o->bloom && !(rc = llm_bloom_init(&bf, o->expected, o->fp_rate)))
        llm_info("bloom filter: %llu bits (%.1f MiB), %d hashes, for %llu documents at false-positive rate %g",
                 (unsigned long long)bf.m, (double)llm_bloom_bytes(&bf) / (1 << 20), bf.k,
                 (unsigned long long)bf.expected, bf.fp_rate);
    if (!rc && !o->bloom)
        rc = llm_hashset_init(&set, o->report != NULL);
    int warned = 0;
    while (!rc && (rc = llm_docs_read_batch(&u->r, &u->b, o->batch_bytes, u->nt)) == 1) {
        long n = (long)u->b.n;
        if ((rc = reserve_u64(&h, &hcap, (size_t)n)))
            break;
        int bad = 0;
        #pragma omp parallel for num_threads(u->nt) schedule(dynamic, 16) reduction(| : bad)
        for (long i = 0; i < n; i++)
            bad |= llm_text_hash(&w[omp_get_thread_num()], u->b.docs[i].text, u->b.docs[i].text_len, &h[i]) != 0;
        if (bad) {
            rc = llm_err(LLM_ENOMEM, "out of memory normalizing text");
            break;
        }
        count_batch(u);
        for (long i = 0; !rc && i < n; i++) {
            const struct llm_doc *d = &u->b.docs[i];
            uint64_t first = 0, at = u->ids.n;
            int dup = o->bloom ? llm_bloom_add(&bf, h[i]) : llm_hashset_add(&set, h[i], at, &first);
            if (dup < 0) {
                rc = dup;
            } else if (!dup) {
                u->st->docs_out++;
                if (!(rc = llm_doc_write(u->out, d, u->out_name)) && o->report && !o->bloom)
                    rc = ids_put(&u->ids, d->obj);
            } else {
                u->st->removed++;
                if (o->report) {
                    char *id = id_json(d->obj);
                    rc = id ? report_dup(u, id, o->bloom ? "null" : u->ids.buf + first, 1.0)
                            : llm_err(LLM_ENOMEM, "out of memory writing the report");
                    free(id);
                }
            }
        }
        if (o->bloom && !warned && bf.added > bf.expected) {
            warned = 1;
            llm_warn("the Bloom filter now holds more than the %llu documents it was sized for (--expected): "
                     "its false-positive rate grows past %g", (unsigned long long)bf.expected, bf.fp_rate);
        }
        progress_batch(u, u->r.bytes, "removed", u->st->removed);
    }
    u->st->mem_bytes = o->bloom ? llm_bloom_bytes(&bf) : llm_hashset_bytes(&set);
    if (o->bloom)
        u->st->bloom_fp = llm_bloom_fp_now(&bf);
    for (int t = 0; w && t < u->nt; t++)
        llm_words_release(&w[t]);
    free(w), free(h);
    llm_hashset_release(&set);
    llm_bloom_release(&bf);
    return rc < 0 ? rc : 0;
}

/* ---- lines: count, then drop the repeated ones ---- */

static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* The length of the line at t (up to '\n' or end). */
static size_t line_len(const char *t, const char *end)
{
    const char *nl = memchr(t, '\n', (size_t)(end - t));
    return nl ? (size_t)(nl - t) : (size_t)(end - t);
}

/* The hash of line s[0..n) without its leading and trailing white space;
 * 0 for a blank line (never counted, never removed). */
static int line_hash(const char *s, size_t n, uint64_t *h)
{
    while (n && blank(*s))
        s++, n--;
    while (n && blank(s[n - 1]))
        n--;
    if (!n)
        return 0;
    *h = llm_hash64(s, n, 0x6c696e6573ULL);
    return 1;
}

/* A growable list of hashes, one per thread. */
struct u64s {
    uint64_t *v;
    size_t n, cap;
};

static int u64s_push(struct u64s *a, uint64_t x)
{
    if (a->n == a->cap && reserve_u64(&a->v, &a->cap, a->cap ? 2 * a->cap : 4096))
        return LLM_ENOMEM;
    a->v[a->n++] = x;
    return 0;
}

/* Rewrites d without its repeated lines (lines joined by "\n" as they were).
 * *removed gets the lines dropped; *empty is set when no text is left. buf is
 * per-thread scratch. */
static int drop_lines(struct llm_doc *d, const struct llm_hashset *count, struct chars *buf, uint64_t *removed,
                      int *empty)
{
    const char *t = d->text, *end = t + d->text_len;
    *removed = 0, *empty = 1;
    if (buf->cap < d->text_len + 1) {
        char *p = realloc(buf->buf, d->text_len + 1);
        if (!p)
            return LLM_ENOMEM;
        buf->buf = p, buf->cap = d->text_len + 1;
    }
    buf->n = 0;
    int first = 1;
    while (t <= end) {
        size_t len = line_len(t, end);
        uint64_t h;
        int real = line_hash(t, len, &h);
        if (real && llm_hashset_count(count, h) > 1) {
            (*removed)++;
        } else {
            if (!first)
                buf->buf[buf->n++] = '\n';
            memcpy(buf->buf + buf->n, t, len);
            buf->n += len, first = 0;
            *empty &= !real;
        }
        t += len + 1;
    }
    if (!*removed || *empty)
        return 0;
    int rc = llm_doc_set_str(d, d->field, buf->buf, buf->n);
    return rc ? rc : llm_doc_render(d); /* rendered here, in parallel */
}

static int run_lines(struct run *u)
{
    const struct llm_dedup_opts *o = u->o;
    struct llm_hashset count = {0};
    struct spill sp;
    struct u64s *th = calloc((size_t)u->nt, sizeof(*th));
    struct chars *scratch = calloc((size_t)u->nt, sizeof(*scratch));
    uint64_t *removed = NULL;
    size_t rcap = 0;
    int rc = th && scratch ? 0 : llm_err(LLM_ENOMEM, "out of memory");
    if (!rc)
        rc = llm_hashset_init(&count, 0);
    if (!rc)
        rc = spill_open(&sp);
    else
        memset(&sp, 0, sizeof(sp));
    /* pass 1: every non-blank line of the corpus into the counting set */
    while (!rc && (rc = llm_docs_read_batch(&u->r, &u->b, o->batch_bytes, u->nt)) == 1) {
        long n = (long)u->b.n;
        int bad = 0;
        #pragma omp parallel num_threads(u->nt)
        {
            #pragma omp single nowait
            spill_batch(&sp, &u->b); /* one thread copies while the others hash */
            #pragma omp for schedule(dynamic, 16) reduction(| : bad) nowait
            for (long i = 0; i < n; i++) {
                struct u64s *a = &th[omp_get_thread_num()];
                const char *t = u->b.docs[i].text, *end = t + u->b.docs[i].text_len;
                while (t <= end) {
                    size_t len = line_len(t, end);
                    uint64_t h;
                    if (line_hash(t, len, &h))
                        bad |= u64s_push(a, h) != 0;
                    t += len + 1;
                }
            }
        }
        if ((rc = spill_check(&sp)))
            break;
        if (bad) {
            rc = llm_err(LLM_ENOMEM, "out of memory hashing lines");
            break;
        }
        count_batch(u);
        for (int t = 0; !rc && t < u->nt; t++) {
            for (size_t i = 0; !rc && i < th[t].n; i++)
                rc = llm_hashset_add(&count, th[t].v[i], 0, NULL) < 0 ? LLM_ENOMEM : 0;
            u->st->lines_in += th[t].n;
            th[t].n = 0;
        }
        progress_batch(u, u->r.bytes, "lines", u->st->lines_in);
    }
    if (!rc)
        rc = spill_done(&sp);
    llm_progress_finish(&u->prog);
    /* pass 2: the copy again, each document without its repeated lines */
    struct llm_docs_reader r2;
    const char *via = sp.via;
    int have_r2 = 0;
    if (!rc) {
        struct llm_docs_opts d2 = o->docs;
        d2.strict = 1; /* the copy holds only good documents */
        if (!(rc = llm_docs_open(&r2, &via, 1, &d2)))
            have_r2 = 1;
        llm_progress_init(&u->prog, NULL, "dedup: write", "B", sp.bytes, o->progress);
    }
    while (!rc && (rc = llm_docs_read_batch(&r2, &u->b, o->batch_bytes, u->nt)) == 1) {
        long n = (long)u->b.n;
        if ((rc = reserve_u64(&removed, &rcap, (size_t)n)))
            break;
        int bad = 0;
        #pragma omp parallel for num_threads(u->nt) schedule(dynamic, 16) reduction(| : bad)
        for (long i = 0; i < n; i++) {
            int empty;
            bad |= drop_lines(&u->b.docs[i], &count, &scratch[omp_get_thread_num()], &removed[i], &empty) != 0;
            if (!bad && removed[i] && empty)
                removed[i] |= 1ULL << 63; /* nothing left: the document goes */
        }
        if (bad) {
            rc = llm_err(LLM_ENOMEM, "out of memory rewriting documents");
            break;
        }
        for (long i = 0; !rc && i < n; i++) {
            uint64_t k = removed[i] & ~(1ULL << 63);
            int gone = removed[i] >> 63;
            u->st->lines_removed += k;
            u->st->docs_changed += k && !gone;
            u->st->removed += gone;
            if (!gone) {
                u->st->docs_out++;
                rc = llm_doc_write(u->out, &u->b.docs[i], u->out_name);
            }
            if (!rc && k && o->report)
                rc = report_lines(u, u->b.docs[i].obj, k, gone);
        }
        llm_progress_set(&u->prog, r2.bytes);
    }
    if (have_r2)
        llm_docs_close(&r2);
    u->st->mem_bytes = llm_hashset_bytes(&count);
    for (int t = 0; t < u->nt; t++) {
        if (th)
            free(th[t].v);
        if (scratch)
            free(scratch[t].buf);
    }
    free(th), free(scratch), free(removed);
    spill_close(&sp);
    llm_hashset_release(&count);
    return rc < 0 ? rc : 0;
}

/* ---- minhash: signatures, LSH, clusters; then the first of each ---- */

/* The documents that head a cluster of two or more, with their ids, in
 * increasing order (pass 2 meets them in that order): found by bisection. */
struct heads {
    uint32_t *doc;
    uint64_t *off; /* into run.ids */
    size_t n, cap;
};

static const char *head_id(const struct heads *h, const struct chars *ids, uint32_t d)
{
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (h->doc[mid] < d)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < h->n && h->doc[lo] == d ? ids->buf + h->off[lo] : "null";
}

static int heads_add(struct heads *h, struct chars *ids, uint32_t d, const char *line, size_t len)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1024;
        uint32_t *a = realloc(h->doc, cap * sizeof(*a));
        if (a)
            h->doc = a;
        uint64_t *b = a ? realloc(h->off, cap * sizeof(*b)) : NULL;
        if (!b)
            return llm_err(LLM_ENOMEM, "out of memory keeping ids for the report");
        h->off = b, h->cap = cap;
    }
    cJSON *o = cJSON_ParseWithLength(line, len);
    h->doc[h->n] = d, h->off[h->n] = ids->n;
    int rc = o ? ids_put(ids, o) : llm_err(LLM_ENOMEM, "out of memory keeping ids for the report");
    cJSON_Delete(o);
    if (!rc)
        h->n++;
    return rc;
}

/* Pass 2: the copy of the input line by line; document k is written when it
 * heads its cluster. */
static int write_heads(struct run *u, struct llm_lsh *l, const struct spill *sp, const uint8_t *has_dup)
{
    struct llm_jsonl_reader jr;
    struct heads heads = {0};
    int rc = llm_jsonl_open(&jr, sp->via, 0);
    if (rc)
        return rc;
    llm_progress_init(&u->prog, NULL, "dedup: write", "B", sp->bytes, u->o->progress);
    char *line;
    size_t len;
    uint64_t bytes = 0;
    for (uint32_t k = 0; !rc && k < l->n; k++) {
        if ((rc = llm_jsonl_next_line(&jr, &line, &len)) != 1) {
            rc = rc < 0 ? rc : llm_err(LLM_EIO, "the temporary copy of the input ended early");
            break;
        }
        rc = 0;
        bytes += len + 1;
        uint32_t root = llm_lsh_find(l, k);
        if (root == k) {
            if (!(rc = llm_fwrite(u->out, line, len, u->out_name)))
                rc = llm_fwrite(u->out, "\n", 1, u->out_name);
            if (!rc && u->o->report && has_dup[k / 8] >> (k % 8) & 1)
                rc = heads_add(&heads, &u->ids, k, line, len);
        } else if (u->o->report) {
            double j = llm_minhash_jaccard(llm_lsh_sig(l, k), llm_lsh_sig(l, root), l->num_perm);
            rc = report_raw(u, line, len, head_id(&heads, &u->ids, root), j);
        }
        if ((k & 4095) == 0)
            llm_progress_set(&u->prog, bytes);
    }
    llm_progress_set(&u->prog, bytes);
    llm_jsonl_close(&jr);
    free(heads.doc), free(heads.off);
    return rc;
}

static int run_minhash(struct run *u)
{
    const struct llm_dedup_opts *o = u->o;
    const int K = o->num_perm;
    struct llm_minhash mh;
    struct llm_lsh lsh;
    struct spill sp;
    int have_mh = 0, have_lsh = 0, have_sp = 0;
    struct llm_shingler *sh = calloc((size_t)u->nt, sizeof(*sh));
    uint32_t *sig = NULL;  /* (batch docs, K) */
    uint64_t *keys = NULL; /* (batch docs, bands) */
    uint8_t *empty = NULL; /* (batch docs) no shingles */
    uint8_t *has_dup = NULL;
    size_t cap = 0;
    int rc = sh ? 0 : llm_err(LLM_ENOMEM, "out of memory");
    for (int t = 0; !rc && t < u->nt; t++)
        rc = llm_shingler_init(&sh[t], o->ngram, o->seed);
    if (!rc && !(rc = llm_minhash_init(&mh, K, o->seed)))
        have_mh = 1;
    if (!rc && !(rc = llm_lsh_init(&lsh, K, o->bands, o->rows, o->threshold)))
        have_lsh = 1;
    if (!rc && !(rc = spill_open(&sp)))
        have_sp = 1;
    u->st->bands = o->bands, u->st->rows = o->rows;
    if (!rc)
        llm_info("minhash: %d permutations, %d bands x %d rows, threshold %g, %d-word shingles%s", K, o->bands,
                 o->rows, o->threshold, o->ngram, mh.simd ? "" : " (no AVX2: plain C signatures)");
    /* pass 1: signatures in parallel, then into the LSH index in input order */
    while (!rc && (rc = llm_docs_read_batch(&u->r, &u->b, o->batch_bytes, u->nt)) == 1) {
        long n = (long)u->b.n;
        if ((size_t)n > cap) {
            free(sig), free(empty), free(keys);
            sig = malloc((size_t)n * (size_t)K * sizeof(*sig));
            keys = malloc((size_t)n * (size_t)o->bands * sizeof(*keys));
            empty = malloc((size_t)n);
            cap = (size_t)n;
            if (!sig || !empty || !keys) {
                rc = llm_err(LLM_ENOMEM, "out of memory for a batch of %ld signatures", n);
                break;
            }
        }
        int bad = 0;
        #pragma omp parallel num_threads(u->nt)
        {
            #pragma omp single nowait
            spill_batch(&sp, &u->b); /* one thread copies while the others sign */
            #pragma omp for schedule(dynamic, 4) reduction(| : bad) nowait
            for (long i = 0; i < n; i++) {
                struct llm_shingler *s = &sh[omp_get_thread_num()];
                bad |= llm_shingler_run(s, u->b.docs[i].text, u->b.docs[i].text_len) != 0;
                empty[i] = s->n == 0;
                llm_minhash_sign(&mh, s->hash, s->n, sig + (size_t)i * (size_t)K);
                llm_lsh_keys(&lsh, sig + (size_t)i * (size_t)K, keys + (size_t)i * (size_t)o->bands);
            }
        }
        if ((rc = spill_check(&sp)))
            break;
        if (bad) {
            rc = llm_err(LLM_ENOMEM, "out of memory for shingles");
            break;
        }
        count_batch(u);
        for (long i = 0; !rc && i < n; i++)
            rc = llm_lsh_add_keyed(&lsh, empty[i] ? NULL : sig + (size_t)i * (size_t)K,
                                   keys + (size_t)i * (size_t)o->bands);
        progress_batch(u, u->r.bytes, "removed", lsh.joined); /* each join removes one document */
    }
    if (!rc)
        rc = spill_done(&sp);
    llm_progress_finish(&u->prog);
    /* the clusters: every document whose root is another is removed */
    if (!rc && !(has_dup = calloc((size_t)lsh.n / 8 + 1, 1)))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    for (uint32_t d = 0; !rc && d < lsh.n; d++) {
        uint32_t root = llm_lsh_find(&lsh, d);
        if (root != d) {
            u->st->removed++;
            u->st->clusters += !(has_dup[root / 8] >> (root % 8) & 1);
            has_dup[root / 8] |= (uint8_t)(1u << (root % 8));
        }
    }
    u->st->docs_out = lsh.n - u->st->removed;
    u->st->candidates = lsh.candidates, u->st->joined = lsh.joined;
    u->st->mem_bytes = have_lsh ? llm_lsh_bytes(&lsh) : 0;
    if (!rc)
        rc = write_heads(u, &lsh, &sp, has_dup);
    for (int t = 0; sh && t < u->nt; t++)
        llm_shingler_release(&sh[t]);
    free(sh), free(sig), free(keys), free(empty), free(has_dup);
    if (have_sp)
        spill_close(&sp);
    if (have_lsh)
        llm_lsh_release(&lsh);
    if (have_mh)
        llm_minhash_release(&mh);
    return rc < 0 ? rc : 0;
}

int llm_dedup_run(const struct llm_dedup_opts *opts, const char *const *paths, int npaths, FILE *out,
                  const char *out_name, struct llm_dedup_stats *st)
{
    struct llm_dedup_opts o = *opts;
    struct llm_dedup_stats dummy;
    int rc = llm_dedup_check(&o);
    if (rc)
        return rc;
    struct run u = {.o = &o, .out = out, .out_name = out_name, .st = st ? st : &dummy};
    memset(u.st, 0, sizeof(*u.st));
    u.nt = o.threads > 0 ? o.threads : omp_get_max_threads();
    double t0 = llm_now();
    if (!(rc = llm_docs_open(&u.r, paths, npaths, &o.docs)))
        u.have_r = 1;
    if (!rc && o.report && !(rc = llm_atomic_open(&u.rep, o.report)))
        u.have_rep = 1;
    if (!rc) {
        llm_progress_init(&u.prog, NULL, "dedup", "B", u.r.size, o.progress);
        rc = o.mode == LLM_DEDUP_EXACT ? run_exact(&u) : o.mode == LLM_DEDUP_LINES ? run_lines(&u) : run_minhash(&u);
        llm_progress_finish(&u.prog);
    }
    if (u.have_r) {
        u.st->skipped = u.r.skipped;
        u.st->input_bytes = u.r.bytes;
        llm_docs_close(&u.r);
    }
    llm_doc_batch_release(&u.b);
    if (!rc && u.have_rep)
        rc = llm_atomic_commit(&u.rep);
    else if (u.have_rep)
        llm_atomic_abort(&u.rep);
    free(u.ids.buf);
    u.st->seconds = llm_now() - t0;
    return rc;
}
