/* q8_bench.c: one decode step's matmuls of the llama2.c 110M shape at N = 1
 * (or --rows N), fp32 linear_rows against int8 linear_rows_q8 (G = 32), as
 * tokens/s and against the machine's large-buffer read bandwidth (the
 * roofline of a memory-bound step).
 *
 *   make CUDA=0 build/cpu/bench/q8_bench && build/cpu/bench/q8_bench [--threads T] [--rows N]
 *       [--group G] [--seconds S]
 *
 * The shape: dim 768, hidden 2048, 12 layers, vocab 32000. Per layer wq, wk,
 * wv, wo (768 x 768), w1, w3 (2048 x 768), w2 (768 x 2048); then the
 * classifier (32000 x 768): 109.6 M weights in 85 matrices, each in its own
 * buffer (438 MB fp32, 123 MB int8 + scales: far beyond the caches, so every
 * step streams them from memory as a real decode does). Attention, norms and
 * the rest of a step are not timed: this is the matmul part, ~all of the
 * bytes.
 *
 * Counted per step: 2 N P FLOPs (P weights); bytes = the weights once: 4 P
 * fp32, (1 + 4/G) P int8 (x, out: a few KB, not counted).
 * Read bandwidth: the best of 5 passes summing (integer or) a 512 MB buffer
 * with AVX2 loads on the same threads, static halves: what streaming can
 * reach here. "% roofline" = (bytes / step time) / that bandwidth.
 *
 * Method: wall clock; each figure is the best of 5 samples of back-to-back
 * steps lasting >= --seconds / 5 each (default 5 s in all per figure), after
 * one warm-up step. The machine may be shared: the load average before and
 * after and the other processes' CPU share (/proc/stat) are printed. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "infer/quant.h"
#include "nn/backend.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "q8_bench: %s failed (%d): %s\n", what, rc, llm_errmsg());
    exit(1);
}

static void *xalloc(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "q8_bench: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* Uniform in [-a, a), a fixed LCG per buffer (the values do not matter). */
static float *frand(size_t n, float a, uint64_t seed)
{
    float *p = xalloc(n * sizeof(float));
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = a * ((float)(s >> 40) * 0x1p-23f - 1.0f);
    }
    return p;
}

/* All CPUs' busy seconds (user nice system irq softirq steal) and ours. */
static void cpu_busy(double *all, double *self)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    *all = 0;
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8)
            *all = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / sysconf(_SC_CLK_TCK);
        fclose(f);
    }
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    *self = ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* ---- the model's matrices ---- */

enum { DIM = 768, HID = 2048, LAYERS = 12, VOCAB = 32000, PER_LAYER = 7 };
#define NMAT (LAYERS * PER_LAYER + 1)

struct mat {
    int OC, C;
    float *w;      /* (OC, C) fp32 */
    int8_t *wq;    /* (OC, C) int8 */
    float *scales; /* (OC, C / G) */
};

static struct mat g_mat[NMAT];
static struct llm_backend g_be;
static float *g_x, *g_out; /* (N, HID) and (N, VOCAB): inputs and outputs of every call */
static int g_N, g_G;

static void step_fp32(void)
{
    for (int m = 0; m < NMAT; m++) {
        const struct mat *a = &g_mat[m];
        int rc = g_be.ops->linear_rows(g_be.ctx, g_out, g_x, a->w, NULL, g_N, a->C, a->OC);
        if (rc)
            die("linear_rows", rc);
    }
}

static void step_q8(void)
{
    for (int m = 0; m < NMAT; m++) {
        const struct mat *a = &g_mat[m];
        int rc = g_be.ops->linear_rows_q8(g_be.ctx, g_out, g_x, a->wq, a->scales, NULL, g_N,
                                          a->C, a->OC, g_G);
        if (rc)
            die("linear_rows_q8", rc);
    }
}

/* ---- read bandwidth ---- */

static uint64_t *g_buf;
static size_t g_buf_words; /* 64-bit words */
static int g_threads;
static volatile uint64_t g_sink;

__attribute__((target("avx2"))) static uint64_t read_avx2(const uint64_t *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        a0 = _mm256_or_si256(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_or_si256(a1, _mm256_load_si256((const __m256i *)(p + i + 4)));
        a2 = _mm256_or_si256(a2, _mm256_load_si256((const __m256i *)(p + i + 8)));
        a3 = _mm256_or_si256(a3, _mm256_load_si256((const __m256i *)(p + i + 12)));
    }
    __m256i a = _mm256_or_si256(_mm256_or_si256(a0, a1), _mm256_or_si256(a2, a3));
    uint64_t r[4];
    _mm256_storeu_si256((__m256i *)r, a);
    return r[0] | r[1] | r[2] | r[3];
}

static void read_pass(void)
{
    uint64_t acc = 0;
    size_t chunk = g_buf_words / g_threads & ~(size_t)15;
#pragma omp parallel for num_threads(g_threads) schedule(static) reduction(| : acc)
    for (int t = 0; t < g_threads; t++)
        acc |= read_avx2(g_buf + (size_t)t * chunk, chunk);
    g_sink = acc;
}

/* ---- timing ---- */

struct timing {
    double s;      /* best seconds per call */
    double others; /* % of the CPUs busy with other processes meanwhile */
};

static double g_seconds = 5.0;

static struct timing time_best(void (*f)(void))
{
    double all0, self0, all1, self1, t0 = now();
    cpu_busy(&all0, &self0);
    double w = now();
    f(); /* warm-up: page faults, thread pool */
    double t1 = now() - w, sample = g_seconds / 5;
    int inner = t1 >= sample ? 1 : (int)ceil(sample / (t1 > 1e-6 ? t1 : 1e-6));
    double best = INFINITY;
    for (int r = 0; r < 5; r++) {
        double a = now();
        for (int i = 0; i < inner; i++)
            f();
        double dt = (now() - a) / inner;
        best = dt < best ? dt : best;
    }
    cpu_busy(&all1, &self1);
    double ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN), dt = now() - t0;
    double o = (all1 - all0) - (self1 - self0);
    return (struct timing){best, dt > 0 && o > 0 ? 100.0 * o / (ncpu * dt) : 0.0};
}

int main(int argc, char **argv)
{
    int threads = 0, rows = 1, G = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--group") && i + 1 < argc)
            G = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            g_seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: q8_bench [--threads T] [--rows N] [--group 32|64] "
                            "[--seconds S]\n");
            return 2;
        }
    }
    if (threads < 1)
        threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (rows < 1 || rows > 64 || (G != 32 && G != 64) || !(g_seconds > 0)) {
        fprintf(stderr, "q8_bench: --rows 1..64, --group 32 or 64, --seconds > 0\n");
        return 2;
    }
    g_N = rows, g_G = G, g_threads = threads;
    double load0 = loadavg(), t_start = now();
    time_t wall = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&wall));

    /* weights: fp32, then quantized from them */
    double P = 0;
    for (int m = 0; m < NMAT; m++) {
        struct mat *a = &g_mat[m];
        int k = m % PER_LAYER;
        if (m == NMAT - 1)
            a->OC = VOCAB, a->C = DIM;
        else if (k < 4)
            a->OC = DIM, a->C = DIM;
        else if (k < 6)
            a->OC = HID, a->C = DIM;
        else
            a->OC = DIM, a->C = HID;
        size_t n = (size_t)a->OC * a->C;
        a->w = frand(n, 0.05f, 100 + m);
        a->wq = xalloc(n);
        a->scales = xalloc(n / G * sizeof(float));
        int rc = llm_quant_q8(a->w, a->OC, a->C, G, a->wq, a->scales);
        if (rc)
            die("llm_quant_q8", rc);
        P += (double)n;
    }
    g_x = frand((size_t)rows * HID, 1.0f, 1);
    g_out = xalloc((size_t)rows * VOCAB * sizeof(float));
    int rc = llm_backend_cpu_init(&g_be, threads, 0);
    if (rc)
        die("llm_backend_cpu_init", rc);

    g_buf_words = ((size_t)512 << 20) / 8;
    g_buf = xalloc(g_buf_words * 8);
    memset(g_buf, 1, g_buf_words * 8);

    printf("q8_bench: %s, %d thread(s), N = %d, G = %d, %.1f M weights in %d matrices, load "
           "average %.2f\n",
           date, threads, rows, G, P * 1e-6, NMAT, load0);
    struct timing tb = time_best(read_pass);
    double bw = (double)g_buf_words * 8 / tb.s;
    double bytes32 = 4 * P, bytes8 = (1 + 4.0 / G) * P, flop = 2.0 * rows * P;
    struct timing t32 = time_best(step_fp32), t8 = time_best(step_q8);

    printf("\n| kernel | MB per step | ms per step | tokens/s | GFLOP/s | GB/s | %% roofline | "
           "others' CPU %% |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    printf("| read (512 MB) | %.1f | %.2f | | | %.1f | 100 | %.0f |\n",
           g_buf_words * 8 * 1e-6, tb.s * 1e3, bw * 1e-9, tb.others);
    const char *names[2] = {"fp32 linear_rows", "int8 linear_rows_q8"};
    const double by[2] = {bytes32, bytes8};
    const struct timing *ts[2] = {&t32, &t8};
    for (int k = 0; k < 2; k++) {
        double s = ts[k]->s;
        printf("| %s | %.1f | %.2f | %.1f | %.2f | %.1f | %.0f | %.0f |\n", names[k], by[k] * 1e-6,
               s * 1e3, rows / s, flop / s * 1e-9, by[k] / s * 1e-9, 100 * by[k] / s / bw,
               ts[k]->others);
        printf("RESULT kernel=%s threads=%d rows=%d G=%d ms=%.4f tok_s=%.3f gbs=%.3f "
               "roofline_pct=%.2f read_gbs=%.3f others_pct=%.1f\n",
               k ? "q8" : "fp32", threads, rows, G, s * 1e3, rows / s, by[k] / s * 1e-9,
               100 * by[k] / s / bw, bw * 1e-9, ts[k]->others);
    }
    printf("\nint8 / fp32: %.2fx tokens/s (bytes ratio %.2fx); load average %.2f -> %.2f; "
           "%.0f s\n",
           t32.s / t8.s, bytes32 / bytes8, load0, loadavg(), now() - t_start);

    llm_backend_release(&g_be);
    for (int m = 0; m < NMAT; m++)
        free(g_mat[m].w), free(g_mat[m].wq), free(g_mat[m].scales);
    free(g_x), free(g_out), free(g_buf);
    return 0;
}
