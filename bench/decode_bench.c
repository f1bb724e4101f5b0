/* decode_bench.c: the decode matmul (the backend op linear_rows, lib/nn/cpu/
 * cpu_gemv.c) against the memory-bandwidth roofline, at the shapes of
 * llama2.c's stories15M and stories110M models (fp32).
 *
 *   build/cpu/bench/decode_bench [--threads N] [--quick]
 *   build/cpu/bench/decode_bench --bandwidth [--sustained SEC] [--threads N]
 *
 * Run by bench/decode_bench.sh. --bandwidth (generate_bench.sh) prints only
 * the large buffer's best read rate; with --sustained SEC, the mean rate of
 * back-to-back reads for SEC seconds instead. Prints markdown tables on stdout and, for
 * every result, one line "RESULT key=value ..." (no spaces inside values).
 *
 * 1. Read bandwidth: a 1 GiB buffer (first touched by the threads that read
 *    it), summed with AVX2 (8 independent accumulators per thread, so the
 *    adds never limit; the better of a plain kernel and one that also
 *    prefetches 8 KB ahead in software, see big_bw), split in equal
 *    contiguous parts over all threads;
 *    also with one thread, and for a buffer of each model's weight size (read
 *    over and over, as the decode loop does: shows whether any of it stays in
 *    the caches). The 1 GiB read is measured at the start, again just before
 *    every decode row and at the end; the roofline is the best of these (the
 *    memory bandwidth of this VM drifts by 10-20% over minutes, and the best
 *    reading makes the percentages the least flattering). Tables are printed
 *    at the end (progress on stderr).
 * 2. A decode step: every weight matrix of the model in its own buffer, laid
 *    out as in llama2.c (per layer wq, wk, wv, wo (C, C), w1, w3 (F, C),
 *    w2 (C, F); then the classifier (V, C)), and one linear_rows call per
 *    matrix, in that order, for N = 1, 4, 16, 64 rows. tokens/s = N / step
 *    time; weight GB/s = weight bytes / step time; % of roofline = that / the
 *    roofline (one-thread rows: the one-thread roofline); GFLOP/s = 2 N
 *    (weights) / step time.
 *
 * What the roofline counts: the weights only (4 bytes each, read once per
 * step whatever N). A real decode step also reads the KV cache (per layer
 * 2 T C floats at context T: at T = 256 and the 15M shape 3.5 MB against
 * 61 MB of weights, 6%; at the 110M shape 2 x 12 x 256 x 768 x 4 = 19 MB
 * against 438 MB, 4%) and the embedding row, and runs norms, RoPE and the
 * attention itself: none of that is here. This measures the matmul kernel
 * against the bound the weights alone set.
 *
 * Timing: wall clock (CLOCK_MONOTONIC); a warm-up step, then samples of
 * back-to-back steps lasting >= 50 ms each (15 samples; 3 of >= 20 ms with
 * --quick), best sample reported (many short samples: on a shared 2-core
 * machine a thread descheduled in the middle of an OpenMP loop stalls the
 * other at the barrier, and the best sample is the one nobody disturbed).
 * Each row also gives "others' CPU %": how busy other processes kept the CPUs
 * meanwhile (/proc/stat busy time less
 * this process's CPU time, over ncpu x wall); a row above 10% is measured
 * again (up to 3 times, best kept). */
#include <math.h>
#include <omp.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "nn/backend.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *falloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 4095) & ~(size_t)4095;
    float *p = aligned_alloc(4096, bytes);
    if (!p) {
        fprintf(stderr, "decode_bench: out of memory (%zu floats)\n", n);
        exit(1);
    }
    return p;
}

/* Small values with no denormals, written by the threads in the same static
 * split the readers use (first touch places the pages). */
static void fill(float *p, size_t n, int nt, uint32_t seed)
{
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint32_t h = (uint32_t)i * 2654435761u + seed;
        h ^= h >> 15;
        p[i] = (float)(int)(h % 2001u - 1000) * 1e-4f;
    }
}

/* ---- others' CPU share (as nn_bench.c) ---- */

struct cpuclock {
    double wall, busy, self;
};

static struct cpuclock cpuclock(void)
{
    struct cpuclock c = {now(), 0, 0};
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8)
            /* user nice system [idle iowait] irq softirq steal */
            c.busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / sysconf(_SC_CLK_TCK);
        fclose(f);
    }
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    c.self = ts.tv_sec + ts.tv_nsec * 1e-9;
    return c;
}

static double others_pct(struct cpuclock a, struct cpuclock b)
{
    double ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN), dt = b.wall - a.wall;
    double o = (b.busy - a.busy) - (b.self - a.self);
    return dt > 0 && o > 0 ? 100.0 * o / (ncpu * dt) : 0.0;
}

/* ---- timing ---- */

typedef void (*bench_fn)(void *arg);

struct timing {
    double s;      /* best seconds per call */
    int inner;     /* calls per sample */
    double others; /* % of the CPUs busy with other processes meanwhile */
};

static int g_quick;

static struct timing time_once(bench_fn f, void *arg)
{
    struct cpuclock c0 = cpuclock();
    double t0 = now();
    f(arg); /* warm-up */
    double t1 = now() - t0;
    double target = g_quick ? 0.02 : 0.05;
    int samples = g_quick ? 3 : 15;
    int inner = t1 >= target ? 1 : (int)ceil(target / (t1 > 1e-7 ? t1 : 1e-7));
    double best = INFINITY;
    for (int r = 0; r < samples; r++) {
        double a = now();
        for (int i = 0; i < inner; i++)
            f(arg);
        double dt = (now() - a) / inner;
        if (dt < best)
            best = dt;
    }
    return (struct timing){best, inner, others_pct(c0, cpuclock())};
}

#define BUSY_PCT 10.0
static struct timing time_best(bench_fn f, void *arg)
{
    struct timing best = time_once(f, arg);
    for (int a = 0; a < 3 && best.others > BUSY_PCT && !g_quick; a++) {
        sleep(1);
        struct timing t = time_once(f, arg);
        if (t.s < best.s)
            best = t;
    }
    return best;
}

/* ---- read bandwidth ---- */

static volatile double g_sink;

/* Floats ahead that the prefetching read kernel asks for (8 KB, as
 * linear_rows's streaming pass: lib/nn/cpu/cpu_gemv.c). */
#define READ_PF 2048

/* pf: also a software prefetch READ_PF floats ahead, one per cache line. */
__attribute__((target("avx2,fma"), always_inline)) static inline double sum_avx2_(const float *p, size_t n,
                                                                                  int pf)
{
    __m256 a[8];
    for (int k = 0; k < 8; k++)
        a[k] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        if (pf)
            for (int k = 0; k < 64; k += 16)
                _mm_prefetch((const char *)(p + i + READ_PF + k), _MM_HINT_T0);
        for (int k = 0; k < 8; k++)
            a[k] = _mm256_add_ps(a[k], _mm256_load_ps(p + i + 8 * k));
    }
    float l[8];
    _mm256_storeu_ps(l, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[1]),
                                                    _mm256_add_ps(a[2], a[3])),
                                      _mm256_add_ps(_mm256_add_ps(a[4], a[5]),
                                                    _mm256_add_ps(a[6], a[7]))));
    double s = 0;
    for (int k = 0; k < 8; k++)
        s += l[k];
    for (; i < n; i++)
        s += p[i];
    return s;
}
__attribute__((target("avx2,fma"))) static double sum_avx2(const float *p, size_t n) { return sum_avx2_(p, n, 0); }
__attribute__((target("avx2,fma"))) static double sum_avx2_pf(const float *p, size_t n) { return sum_avx2_(p, n, 1); }

static double sum_plain(const float *p, size_t n)
{
    float a[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++)
            a[k] += p[i + k];
    double s = 0;
    for (int k = 0; k < 16; k++)
        s += a[k];
    for (; i < n; i++)
        s += p[i];
    return s;
}

struct read_arg {
    const float *p;
    size_t n; /* a multiple of 64 floats */
    int nt;
    int avx2;
    int pf; /* with avx2: the prefetching kernel */
};

static void read_pass(void *arg)
{
    struct read_arg *a = arg;
    double tot = 0;
#pragma omp parallel for num_threads(a->nt) schedule(static) reduction(+ : tot)
    for (int t = 0; t < a->nt; t++) {
        size_t lo = a->n / 64 * t / a->nt * 64, hi = a->n / 64 * (t + 1) / a->nt * 64;
        tot += !a->avx2 ? sum_plain(a->p + lo, hi - lo)
               : a->pf  ? sum_avx2_pf(a->p + lo, hi - lo)
                        : sum_avx2(a->p + lo, hi - lo);
    }
    g_sink = tot;
}

/* The large buffer, kept for the whole run: its bandwidth is measured again
 * just before every decode row (the machine's memory bandwidth drifts by
 * 10-20% over minutes: other tenants of the host), and the roofline of a
 * thread count is the best of all its measurements in the run. */
static struct read_arg g_big;
static double g_roof[2]; /* [0] all threads, [1] one thread: best GB/s so far */

/* The large buffer's best read rate with nt threads: with AVX2 the better
 * of two kernels, the plain sum (the hardware prefetchers alone) and the
 * one that also prefetches in software as linear_rows does. On a quiet
 * host they read alike (the plain one a few % faster); while other tenants
 * load the memory, the prefetching kernel gets a larger share, and a
 * roofline read without it was beaten by the decode it bounds
 * (generate_bench.sh at 03:22 UTC 2026-11-30: 110M decode at 106-115% of
 * the plain kernel's sustained rate, which had fallen to 25.7-34.3 GB/s). */
static double big_bw(int nt, int one)
{
    g_big.nt = nt;
    g_big.pf = 0;
    struct timing t = time_best(read_pass, &g_big);
    if (g_big.avx2) {
        g_big.pf = 1;
        struct timing t2 = time_best(read_pass, &g_big);
        t = t2.s < t.s ? t2 : t;
    }
    double gbs = g_big.n * 4.0 / t.s * 1e-9;
    if (gbs > g_roof[one])
        g_roof[one] = gbs;
    return gbs;
}

/* ---- the decode step ---- */

struct shape {
    const char *name;
    int C, F, L, NH, V, T; /* dim, hidden, layers, heads, vocab, seq */
};

static const struct shape SHAPES[] = {
    {"stories15M", 288, 768, 6, 6, 32000, 256},
    {"stories110M", 768, 2048, 12, 12, 32000, 1024},
};

#define NMAT_LAYER 7
struct model {
    int nmat;
    float **w; /* (nmat): wq wk wv wo w1 w3 w2 per layer, then the classifier */
    int *rows; /* (nmat) OC */
    int *cols; /* (nmat) C */
    size_t bytes;
};

static void model_init(struct model *m, const struct shape *s, int nt)
{
    m->nmat = NMAT_LAYER * s->L + 1;
    m->w = calloc(m->nmat, sizeof(*m->w));
    m->rows = calloc(m->nmat, sizeof(int));
    m->cols = calloc(m->nmat, sizeof(int));
    if (!m->w || !m->rows || !m->cols) {
        fprintf(stderr, "decode_bench: out of memory\n");
        exit(1);
    }
    const int r[NMAT_LAYER] = {s->C, s->C, s->C, s->C, s->F, s->F, s->C};
    const int c[NMAT_LAYER] = {s->C, s->C, s->C, s->C, s->C, s->C, s->F};
    m->bytes = 0;
    for (int i = 0; i < m->nmat; i++) {
        int last = i == m->nmat - 1;
        m->rows[i] = last ? s->V : r[i % NMAT_LAYER];
        m->cols[i] = last ? s->C : c[i % NMAT_LAYER];
        size_t n = (size_t)m->rows[i] * m->cols[i];
        m->w[i] = falloc(n);
        fill(m->w[i], n, nt, (uint32_t)i + 7);
        m->bytes += n * sizeof(float);
    }
}

static void model_release(struct model *m)
{
    for (int i = 0; i < m->nmat; i++)
        free(m->w[i]);
    free(m->w);
    free(m->rows);
    free(m->cols);
}

struct step_arg {
    struct llm_backend *b;
    const struct model *m;
    int N;
    float *x;   /* (N, max C) inputs */
    float *out; /* (N, max OC) */
};

static void decode_step(void *arg)
{
    struct step_arg *a = arg;
    const struct model *m = a->m;
    for (int i = 0; i < m->nmat; i++) {
        int rc = a->b->ops->linear_rows(a->b->ctx, a->out, a->x, m->w[i], NULL, a->N, m->cols[i],
                                        m->rows[i]);
        if (rc) {
            fprintf(stderr, "decode_bench: linear_rows failed (%d): %s\n", rc, llm_errmsg());
            exit(1);
        }
    }
}

/* One decode row, printed after the run (against the run's best bandwidth). */
struct row {
    const char *model;
    int N, threads, one;
    double s, bw_before, others;
    size_t bytes, params;
};
#define MAX_ROWS 16
static struct row g_rows[MAX_ROWS];
static int g_nrows;

static void bench_model(const struct shape *s, struct llm_backend *ball, struct llm_backend *b1)
{
    struct model m;
    model_init(&m, s, ball->threads);
    static const int NS[] = {1, 4, 16, 64};
    int maxn = 64, maxd = s->V > s->F ? s->V : s->F;
    float *x = falloc((size_t)maxn * maxd), *out = falloc((size_t)maxn * maxd);
    fill(x, (size_t)maxn * maxd, 1, 3);
    memset(out, 0, (size_t)maxn * maxd * sizeof(float));
    for (int k = -1; k < (int)(sizeof(NS) / sizeof(NS[0])); k++) {
        /* k = -1: one thread at N = 1, against the one-thread bandwidth */
        struct llm_backend *b = k < 0 ? b1 : ball;
        int N = k < 0 ? 1 : NS[k];
        double bw = big_bw(b->threads, k < 0);
        struct step_arg a = {b, &m, N, x, out};
        struct timing t = time_best(decode_step, &a);
        if (g_nrows < MAX_ROWS)
            g_rows[g_nrows++] = (struct row){s->name, N, b->threads, k < 0, t.s, bw, t.others,
                                             m.bytes, m.bytes / sizeof(float)};
        fprintf(stderr, "%s N=%d threads=%d: %.3f ms\n", s->name, N, b->threads, t.s * 1e3);
    }
    free(x);
    free(out);
    model_release(&m);
}

static void print_model(const struct shape *s)
{
    size_t params = 0;
    for (int i = 0; i < g_nrows; i++)
        if (g_rows[i].model == s->name)
            params = g_rows[i].params;
    printf("\n### %s: dim %d, hidden %d, %d layers, %d heads, vocab %d, seq %d: %zu weights "
           "in %d matrices, %.1f MB fp32 per step\n\n",
           s->name, s->C, s->F, s->L, s->NH, s->V, s->T, params, NMAT_LAYER * s->L + 1,
           params * 4e-6);
    printf("| model | N | threads | step ms | tokens/s | roofline tokens/s | weight GB/s | "
           "%% of roofline | GFLOP/s | bandwidth just before, GB/s | others' CPU %% |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < g_nrows; i++) {
        const struct row *r = &g_rows[i];
        if (r->model != s->name)
            continue;
        double bw = g_roof[r->one];
        double tps = r->N / r->s, gbs = r->bytes / r->s * 1e-9, roof = bw * 1e9 / r->bytes;
        double gf = 2.0 * r->N * r->params / r->s * 1e-9;
        printf("| %s | %d | %d | %.3f | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.0f |\n",
               r->model, r->N, r->threads, r->s * 1e3, tps, roof, gbs, 100.0 * gbs / bw, gf,
               r->bw_before, r->others);
        printf("RESULT kind=decode model=%s N=%d threads=%d step_ms=%.4f tokens_s=%.2f "
               "roof_tokens_s=%.2f weight_gbs=%.4f pct_roof=%.2f gflops=%.3f bytes=%zu "
               "bw_before_gbs=%.4f roof_gbs=%.4f others_pct=%.1f\n",
               r->model, r->N, r->threads, r->s * 1e3, tps, roof, gbs, 100.0 * gbs / bw, gf,
               r->bytes, r->bw_before, bw, r->others);
    }
}

int main(int argc, char **argv)
{
    int threads = 0, bw_only = 0;
    double sustained = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            g_quick = 1;
        else if (!strcmp(argv[i], "--bandwidth")) /* only the large-buffer read rate (generate_bench.sh) */
            bw_only = 1;
        else if (!strcmp(argv[i], "--sustained") && i + 1 < argc && atof(argv[i + 1]) > 0)
            sustained = atof(argv[++i]); /* with --bandwidth: the mean rate over this many seconds */
        else {
            fprintf(stderr, "usage: decode_bench [--threads N] [--quick] [--bandwidth [--sustained SEC]]\n");
            return 2;
        }
    }
    struct llm_backend ball, b1;
    if (llm_backend_cpu_init(&ball, threads, 0) || llm_backend_cpu_init(&b1, 1, 0)) {
        fprintf(stderr, "decode_bench: backend init failed: %s\n", llm_errmsg());
        return 1;
    }
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    printf("threads: %d (OpenMP), read kernel: %s\n\n", ball.threads,
           avx2 ? "AVX2, the better of without and with software prefetch" : "scalar");

    size_t big = (size_t)1 << (g_quick ? 26 : 28); /* floats: 1 GiB (256 MiB with --quick) */
    g_big = (struct read_arg){falloc(big), big, ball.threads, avx2, 0};
    fill((float *)g_big.p, big, ball.threads, 1);
    if (bw_only && sustained > 0) {
        /* back-to-back reads for the given time, all of them counted: the
         * rate a process streaming memory that long gets, the way a decode
         * run of as many seconds gets it (generate_bench.sh); half the time
         * with each kernel (big_bw), the better mean reported */
        double best = 0, sec = g_big.avx2 ? sustained / 2 : sustained;
        for (int pf = 0; pf <= g_big.avx2; pf++) {
            g_big.pf = pf;
            read_pass(&g_big);
            int reads = 0;
            double t0 = now(), t;
            do {
                read_pass(&g_big);
                reads++;
            } while ((t = now() - t0) < sec);
            double gbs = big * 4.0 * reads / t * 1e-9;
            printf("read kernel %s: %.4f GB/s over %.2f s (%d reads)\n", pf ? "AVX2 + prefetch" : g_big.avx2 ? "AVX2" : "scalar", gbs, t, reads);
            best = gbs > best ? gbs : best;
        }
        printf("RESULT kind=read what=large threads=%d sustained_gbs=%.4f seconds=%.2f\n", ball.threads,
               best, sustained);
        return 0;
    }
    double bw_all0 = big_bw(ball.threads, 0), bw_one0 = big_bw(1, 1);
    if (bw_only) {
        printf("RESULT kind=read what=large threads=%d gbs=%.4f\n", ball.threads, g_roof[0]);
        return 0;
    }
    /* buffers of each model's weight size, read over and over like the weights */
    double bw_sized[sizeof(SHAPES) / sizeof(SHAPES[0])];
    for (size_t k = 0; k < sizeof(SHAPES) / sizeof(SHAPES[0]); k++) {
        const struct shape *s = &SHAPES[k];
        size_t n = ((size_t)s->L * (4 * (size_t)s->C * s->C + 3 * (size_t)s->C * s->F) +
                    (size_t)s->V * s->C) & ~(size_t)63;
        struct read_arg a = {falloc(n), n, ball.threads, avx2, 0};
        fill((float *)a.p, n, ball.threads, 2);
        bw_sized[k] = n * 4.0 / time_best(read_pass, &a).s * 1e-9;
        free((void *)a.p);
    }

    for (size_t k = 0; k < sizeof(SHAPES) / sizeof(SHAPES[0]); k++)
        bench_model(&SHAPES[k], &ball, &b1);
    double bw_all1 = big_bw(ball.threads, 0), bw_one1 = big_bw(1, 1);

    printf("### Read bandwidth (sum of a buffer; GB = 1e9 bytes)\n\n");
    printf("| buffer | MiB | threads | GB/s at the start | GB/s at the end | best in the run "
           "(roofline) |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    printf("| large | %.0f | %d | %.2f | %.2f | %.2f |\n", big * 4.0 / 1048576, ball.threads,
           bw_all0, bw_all1, g_roof[0]);
    printf("| large | %.0f | 1 | %.2f | %.2f | %.2f |\n", big * 4.0 / 1048576, bw_one0, bw_one1,
           g_roof[1]);
    printf("RESULT kind=read what=large threads=%d start_gbs=%.4f end_gbs=%.4f roof_gbs=%.4f\n",
           ball.threads, bw_all0, bw_all1, g_roof[0]);
    printf("RESULT kind=read what=large threads=1 start_gbs=%.4f end_gbs=%.4f roof_gbs=%.4f\n",
           bw_one0, bw_one1, g_roof[1]);
    for (size_t k = 0; k < sizeof(SHAPES) / sizeof(SHAPES[0]); k++) {
        const struct shape *s = &SHAPES[k];
        size_t n = (size_t)s->L * (4 * (size_t)s->C * s->C + 3 * (size_t)s->C * s->F) +
                   (size_t)s->V * s->C;
        printf("| %s-sized | %.1f | %d | %.2f | | |\n", s->name, n * 4.0 / 1048576,
               ball.threads, bw_sized[k]);
        printf("RESULT kind=read what=%s-sized threads=%d gbs=%.4f\n", s->name, ball.threads,
               bw_sized[k]);
    }
    printf("\nroofline: %.2f GB/s with %d threads, %.2f GB/s with 1 (the best large-buffer "
           "read of the run, measured %d times: at the start, before every decode row, at the "
           "end)\n",
           g_roof[0], ball.threads, g_roof[1], g_nrows + 2);
    for (size_t k = 0; k < sizeof(SHAPES) / sizeof(SHAPES[0]); k++)
        print_model(&SHAPES[k]);
    free((void *)g_big.p);
    llm_backend_release(&ball);
    llm_backend_release(&b1);
    return 0;
}
