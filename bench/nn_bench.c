/* nn_bench.c: forward and backward time of the CPU backend's ops at the sizes
 * of our reference models, and of whole training steps, against the
 * machine's sgemm peak measured here (OpenBLAS's own cblas_sgemm).
 *
 *   build/cpu/bench/nn_bench [--threads N] [--sections LIST] [--quick] [--no-large-model]
 *
 * LIST: comma-separated among sgemm (the peak), shapes (one cblas_sgemm call
 * at each matmul shape), ops, models; default all. The % of peak and MFU
 * columns always use the peak measured by this process (sgemm is always run).
 * --no-large-model skips the gpt2-d768 steps; --quick takes 2 samples of 5 ms
 * (a smoke test: its numbers are not worth keeping).
 *
 * Run by bench/nn_bench.sh (which builds it with `make CUDA=0 bench`). Prints
 * markdown tables (headings and rows) on stdout, and for every result one
 * machine-readable line "RESULT key=value ..." (no spaces inside values).
 *
 * Method: wall clock (clock_gettime CLOCK_MONOTONIC); each measurement is one
 * warm-up call, then up to 5 samples (3 for calls over 0.5 s) of `inner`
 * back-to-back calls (inner is chosen so a sample lasts >= 20 ms), reporting
 * the best sample / inner. The same buffers are reused, so whatever fits in
 * the caches stays there (as it partly does in the model, where an op reads
 * what the previous one wrote). The machine may be shared: each result
 * carries "others' CPU %" (how busy other processes kept the CPUs meanwhile)
 * and is measured again when that exceeds 10% (time_best; 45 s of retries at
 * most per run).
 *
 * What is counted:
 *  - matmul: 2 N C OC FLOPs forward, 4 N C OC backward (dx and dw; dbias is
 *    not counted). Percent of peak is against the best threaded
 *    cblas_sgemm GFLOP/s measured at the start of the run.
 *  - softmax attention (causal): only the key/query pairs a query sees,
 *    P = B NH T (T + 1) / 2; forward 4 HS P (QK^T and PV, 2 each), backward
 *    10 HS P (S = QK^T recomputed, dP = dO V^T, dV += P^T dO, dQ += dS K,
 *    dK += dS^T Q): 2.5x forward. lib/model/info.h counts all T keys (not
 *    the causal half) for MFU; this table does not.
 *  - elementwise and row ops: GB/s = the bytes each input is read once and
 *    each output written once (no write-allocate traffic), / time.
 *  - whole model: llm_model_train_flops_per_token (lib/model/info.h) x tokens
 *    / time = achieved FLOP/s; MFU = that / measured sgemm peak. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/err.h"
#include "model/info.h"
#include "model/model.h"
#include "nn/backend.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "nn_bench: %s failed (%d): %s\n", what, rc, llm_errmsg());
    exit(1);
}
#define CHECK(what, call)                                                                          \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_)                                                                                   \
            die(what, rc_);                                                                        \
    } while (0)

static float *falloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, "nn_bench: out of memory (%zu floats)\n", n);
        exit(1);
    }
    return p;
}

/* Uniform in [-a, a), a fixed LCG per buffer (contents do not matter much). */
static void fill(float *p, size_t n, float a, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = a * ((float)(s >> 40) * 0x1p-23f - 1.0f);
    }
}

static float *frand(size_t n, float a, uint64_t seed)
{
    float *p = falloc(n);
    fill(p, n, a, seed);
    return p;
}

/* ---- timing ---- */

/* The machine is shared: every measurement also reports how busy the CPUs
 * were with other work while it ran, from /proc/stat (all CPUs' busy time,
 * including steal) less this process's CPU time, as a share of
 * ncpu x wall time. Jiffy resolution (10 ms): meaningful over >= 100 ms. */
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

/* Percent of all CPUs busy with other work between a and b. */
static double others_pct(struct cpuclock a, struct cpuclock b)
{
    double ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN), dt = b.wall - a.wall;
    double o = (b.busy - a.busy) - (b.self - a.self);
    return dt > 0 && o > 0 ? 100.0 * o / (ncpu * dt) : 0.0;
}

typedef void (*bench_fn)(void *arg);

struct timing {
    double s;      /* best seconds per call */
    int inner;     /* calls per sample */
    int reps;      /* samples */
    double others; /* % of the CPUs busy with other processes meanwhile */
};

static int g_quick;

/* A measurement during which other processes kept more than BUSY_PCT % of the
 * CPUs busy is taken again, up to RETRIES times after a 1 s pause, while the
 * run's retries have taken less than RETRY_BUDGET seconds in all (so a busy
 * machine cannot stretch the run much); the best time over the attempts is
 * reported (interference only slows a run down), with the others' share of
 * the attempt that gave it. */
#define BUSY_PCT 10.0
#define RETRIES 3
#define RETRY_BUDGET 45.0
static int g_noisy;        /* results still above BUSY_PCT after the retries */
static double g_retry_s;   /* seconds spent on retries so far */

static int may_retry(double others, int attempt)
{
    return others > BUSY_PCT && attempt < RETRIES && g_retry_s < RETRY_BUDGET;
}

static struct timing time_best1(bench_fn f, void *arg, int reps)
{
    struct cpuclock c0 = cpuclock();
    double t0 = now();
    f(arg); /* warm-up: page faults, caches, thread pool */
    double t1 = now() - t0;
    const double target = g_quick ? 0.005 : 0.020;
    int inner = t1 >= target ? 1 : (int)ceil(target / (t1 > 1e-7 ? t1 : 1e-7));
    if (inner > 100000)
        inner = 100000;
    if (t1 > 0.5 && reps > 3)
        reps = 3; /* long calls: the spread is small, the budget is not */
    if (g_quick)
        reps = reps > 2 ? 2 : reps;
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        double a = now();
        for (int i = 0; i < inner; i++)
            f(arg);
        double dt = (now() - a) / inner;
        if (dt < best)
            best = dt;
    }
    return (struct timing){best, inner, reps, others_pct(c0, cpuclock())};
}

static struct timing time_best(bench_fn f, void *arg, int reps)
{
    struct timing best = time_best1(f, arg, reps);
    for (int a = 0; may_retry(best.others, a); a++) {
        double t0 = now();
        sleep(1);
        struct timing t = time_best1(f, arg, reps);
        if (t.s < best.s)
            best = t;
        g_retry_s += now() - t0;
    }
    if (best.others > BUSY_PCT)
        g_noisy++;
    return best;
}

/* ---- the sgemm peak ---- */

struct sgemm_arg {
    int M, N, K, ta, tb;
    const float *A, *B;
    float *C;
};

static void run_sgemm(void *p)
{
    struct sgemm_arg *a = p;
    /* row-major C (M, N) = op(A) op(B); A (M, K) or (K, M), B (K, N) or (N, K) */
    cblas_sgemm(CblasRowMajor, a->ta ? CblasTrans : CblasNoTrans, a->tb ? CblasTrans : CblasNoTrans,
                a->M, a->N, a->K, 1.0f, a->A, a->ta ? a->M : a->K, a->B, a->tb ? a->K : a->N, 0.0f,
                a->C, a->N);
}

static double sgemm_gflops(int M, int N, int K, int ta, int tb, int reps, struct timing *out)
{
    float *A = frand((size_t)M * K, 1.0f, 1), *B = frand((size_t)K * N, 1.0f, 2);
    float *C = falloc((size_t)M * N);
    struct sgemm_arg a = {M, N, K, ta, tb, A, B, C};
    struct timing t = time_best(run_sgemm, &a, reps);
    free(A), free(B), free(C);
    *out = t;
    return 2.0 * M * N * K / t.s * 1e-9;
}

/* ---- the op rows ---- */

static double g_peak;      /* GFLOP/s: best threaded cblas_sgemm */
static double g_peak1;     /* GFLOP/s: best one-thread cblas_sgemm */

static void op_header(void)
{
    printf("\n| config | op | pass | shape | ms | GFLOP | GFLOP/s | %% of sgemm peak | MB moved | GB/s | "
           "others' CPU %% |\n"
           "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
}

/* One measured row: flop and bytes per call (0 = not counted). */
static void op_row(const char *cfg, const char *op, const char *pass, const char *shape,
                   struct timing t, double flop, double bytes)
{
    double ms = t.s * 1e3;
    char gf[32] = "", gfs[32] = "", pct[32] = "", mb[32] = "", gbs[32] = "";
    if (flop > 0) {
        snprintf(gf, sizeof gf, "%.3f", flop * 1e-9);
        snprintf(gfs, sizeof gfs, "%.1f", flop / t.s * 1e-9);
        snprintf(pct, sizeof pct, "%.1f%%", 100.0 * flop / t.s * 1e-9 / g_peak);
    }
    if (bytes > 0) {
        snprintf(mb, sizeof mb, "%.1f", bytes * 1e-6);
        snprintf(gbs, sizeof gbs, "%.1f", bytes / t.s * 1e-9);
    }
    printf("| %s | %s | %s | %s | %.3f | %s | %s | %s | %s | %s | %.0f |\n", cfg, op, pass, shape,
           ms, gf, gfs, pct, mb, gbs, t.others);
    printf("RESULT section=op config=%s op=%s pass=%s shape=%s ms=%.4f inner=%d reps=%d gflop=%.6g "
           "gflops=%.4g pct_peak=%.4g bytes=%.6g gbs=%.4g others_pct=%.1f\n",
           cfg, op, pass, shape, ms, t.inner, t.reps, flop * 1e-9, flop > 0 ? flop / t.s * 1e-9 : 0,
           flop > 0 ? 100.0 * flop / t.s * 1e-9 / g_peak : 0, bytes,
           bytes > 0 ? bytes / t.s * 1e-9 : 0, t.others);
    fflush(stdout);
}

/* ---- op closures ---- */

static struct llm_backend g_be;
#define OPS (g_be.ops)
#define CTX (g_be.ctx)

struct mm_arg {
    int N, C, OC;
    float *x, *w, *bias, *out, *dout, *dx, *dw, *dbias;
};
static void mm_fwd(void *p)
{
    struct mm_arg *a = p;
    CHECK("matmul_forward", OPS->matmul_forward(CTX, a->out, a->x, a->w, a->bias, a->N, a->C, a->OC));
}
static void mm_bwd(void *p)
{
    struct mm_arg *a = p;
    CHECK("matmul_backward", OPS->matmul_backward(CTX, a->dx, a->dw, a->dbias, a->dout, a->x, a->w,
                                                  a->N, a->C, a->OC));
}

static void mm_bwd_dx(void *p)
{
    struct mm_arg *a = p;
    CHECK("matmul_backward", OPS->matmul_backward(CTX, a->dx, NULL, NULL, a->dout, a->x, a->w,
                                                  a->N, a->C, a->OC));
}
static void mm_bwd_dw(void *p)
{
    struct mm_arg *a = p;
    CHECK("matmul_backward", OPS->matmul_backward(CTX, NULL, a->dw, NULL, a->dout, a->x, a->w,
                                                  a->N, a->C, a->OC));
}

/* split: also time the backward's two products alone (dx; dw without dbias). */
static void bench_matmul(const char *cfg, const char *name, int N, int C, int OC, int bias,
                         int split)
{
    struct mm_arg a = {.N = N, .C = C, .OC = OC};
    a.x = frand((size_t)N * C, 1.0f, 11);
    a.w = frand((size_t)OC * C, 0.05f, 12);
    a.bias = bias ? frand(OC, 0.1f, 13) : NULL;
    a.out = falloc((size_t)N * OC);
    a.dout = frand((size_t)N * OC, 1e-3f, 14);
    a.dx = falloc((size_t)N * C);
    a.dw = frand((size_t)OC * C, 0.0f, 0);
    a.dbias = bias ? frand(OC, 0.0f, 0) : NULL;
    char shape[64];
    snprintf(shape, sizeof shape, "N%d_C%d_OC%d%s", N, C, OC, bias ? "+bias" : "");
    double f = 2.0 * N * C * OC;
    op_row(cfg, name, "fwd", shape, time_best(mm_fwd, &a, 5), f, 0);
    op_row(cfg, name, "bwd", shape, time_best(mm_bwd, &a, 5), 2 * f, 0);
    if (split) {
        op_row(cfg, name, "bwd(dx_only)", shape, time_best(mm_bwd_dx, &a, 5), f, 0);
        op_row(cfg, name, "bwd(dw_only)", shape, time_best(mm_bwd_dw, &a, 5), f, 0);
    }
    free(a.x), free(a.w), free(a.bias), free(a.out), free(a.dout), free(a.dx), free(a.dw),
        free(a.dbias);
}

struct norm_arg {
    int N, C, layer; /* layer: layernorm, else rmsnorm */
    float *x, *w, *b, *out, *mean, *rstd, *dout, *dx, *dw, *db;
};
static void norm_fwd(void *p)
{
    struct norm_arg *a = p;
    if (a->layer)
        CHECK("layernorm_forward", OPS->layernorm_forward(CTX, a->out, a->mean, a->rstd, a->x, a->w,
                                                          a->b, a->N, a->C, 1e-5f));
    else
        CHECK("rmsnorm_forward",
              OPS->rmsnorm_forward(CTX, a->out, a->rstd, a->x, a->w, a->N, a->C, 1e-5f));
}
static void norm_bwd(void *p)
{
    struct norm_arg *a = p;
    if (a->layer)
        CHECK("layernorm_backward", OPS->layernorm_backward(CTX, a->dx, a->dw, a->db, a->dout, a->x,
                                                            a->w, a->mean, a->rstd, a->N, a->C));
    else
        CHECK("rmsnorm_backward", OPS->rmsnorm_backward(CTX, a->dx, a->dw, a->dout, a->x, a->w,
                                                        a->rstd, a->N, a->C));
}

static void bench_norm(const char *cfg, int layer, int N, int C)
{
    struct norm_arg a = {.N = N, .C = C, .layer = layer};
    size_t n = (size_t)N * C;
    a.x = frand(n, 1.0f, 21), a.w = frand(C, 1.0f, 22), a.b = layer ? frand(C, 0.1f, 23) : NULL;
    a.out = falloc(n), a.mean = falloc(N), a.rstd = falloc(N);
    a.dout = frand(n, 1e-3f, 24), a.dx = falloc(n);
    a.dw = frand(C, 0.0f, 0), a.db = layer ? frand(C, 0.0f, 0) : NULL;
    char shape[64];
    snprintf(shape, sizeof shape, "N%d_C%d", N, C);
    /* fwd: read x, write out (+ N stats); bwd: read dout and x, write dx (+ stats, w: small) */
    int ns = layer ? 2 : 1;
    op_row(cfg, layer ? "layernorm" : "rmsnorm", "fwd", shape, time_best(norm_fwd, &a, 5), 0,
           4.0 * (2 * n + (size_t)ns * N));
    op_row(cfg, layer ? "layernorm" : "rmsnorm", "bwd", shape, time_best(norm_bwd, &a, 5), 0,
           4.0 * (3 * n + (size_t)ns * N));
    free(a.x), free(a.w), free(a.b), free(a.out), free(a.mean), free(a.rstd), free(a.dout),
        free(a.dx), free(a.dw), free(a.db);
}

struct ew_arg {
    size_t n;
    float *x, *u, *out, *dout, *dx, *du;
};
static void gelu_fwd(void *p)
{
    struct ew_arg *a = p;
    CHECK("gelu", OPS->activation_forward(CTX, LLM_ACT_GELU, a->out, a->x, a->n));
}
static void gelu_bwd(void *p)
{
    struct ew_arg *a = p;
    CHECK("gelu backward", OPS->activation_backward(CTX, LLM_ACT_GELU, a->dx, a->dout, a->x, a->n));
}
static void swiglu_fwd(void *p)
{
    struct ew_arg *a = p;
    CHECK("swiglu", OPS->swiglu_forward(CTX, a->out, a->x, a->u, a->n));
}
static void swiglu_bwd(void *p)
{
    struct ew_arg *a = p;
    CHECK("swiglu backward", OPS->swiglu_backward(CTX, a->dx, a->du, a->dout, a->x, a->u, a->n));
}
static void add_fwd(void *p)
{
    struct ew_arg *a = p;
    CHECK("add", OPS->add(CTX, a->out, a->x, a->u, a->n));
}

static struct ew_arg ew_new(size_t n)
{
    struct ew_arg a = {.n = n};
    a.x = frand(n, 3.0f, 31), a.u = frand(n, 1.0f, 32), a.out = falloc(n);
    a.dout = frand(n, 1e-3f, 33), a.dx = falloc(n), a.du = falloc(n);
    return a;
}
static void ew_free(struct ew_arg *a)
{
    free(a->x), free(a->u), free(a->out), free(a->dout), free(a->dx), free(a->du);
}

static void bench_elementwise(const char *cfg, int N, int F, int Fs, int C)
{
    char shape[64];
    struct ew_arg a = ew_new((size_t)N * C);
    snprintf(shape, sizeof shape, "n%zu(N%d_C%d)", a.n, N, C);
    op_row(cfg, "add(baseline)", "fwd", shape, time_best(add_fwd, &a, 5), 0, 12.0 * a.n);
    ew_free(&a);
    a = ew_new((size_t)N * F);
    snprintf(shape, sizeof shape, "n%zu(N%d_F%d)", a.n, N, F);
    op_row(cfg, "gelu", "fwd", shape, time_best(gelu_fwd, &a, 5), 0, 8.0 * a.n);
    op_row(cfg, "gelu", "bwd", shape, time_best(gelu_bwd, &a, 5), 0, 12.0 * a.n);
    ew_free(&a);
    a = ew_new((size_t)N * Fs);
    snprintf(shape, sizeof shape, "n%zu(N%d_F%d)", a.n, N, Fs);
    op_row(cfg, "swiglu", "fwd", shape, time_best(swiglu_fwd, &a, 5), 0, 12.0 * a.n);
    op_row(cfg, "swiglu", "bwd", shape, time_best(swiglu_bwd, &a, 5), 0, 20.0 * a.n);
    ew_free(&a);
}

struct attn_arg {
    int B, T, NH, HS;
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
};
static void attn_fwd(void *p)
{
    struct attn_arg *a = p;
    CHECK("attention_forward",
          OPS->attention_forward(CTX, a->out, a->lse, a->q, a->k, a->v, NULL, a->B, a->T, a->NH, a->NH,
                                 a->HS, 0, 1.0f / sqrtf((float)a->HS)));
}
static void attn_bwd(void *p)
{
    struct attn_arg *a = p;
    CHECK("attention_backward",
          OPS->attention_backward(CTX, a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->out,
                                  a->lse, NULL, a->B, a->T, a->NH, a->NH, a->HS, 0,
                                  1.0f / sqrtf((float)a->HS)));
}
static void rope_fwd(void *p)
{
    struct attn_arg *a = p;
    CHECK("rope_forward", OPS->rope_forward(CTX, a->q, NULL, a->B, a->T, a->NH, a->HS, a->HS, 10000.0f, 0));
}
static void rope_bwd(void *p)
{
    struct attn_arg *a = p;
    CHECK("rope_backward", OPS->rope_backward(CTX, a->q, NULL, a->B, a->T, a->NH, a->HS, a->HS, 10000.0f, 0));
}

static void bench_attention(const char *cfg, int B, int T, int NH, int HS)
{
    struct attn_arg a = {.B = B, .T = T, .NH = NH, .HS = HS};
    size_t n = (size_t)B * T * NH * HS;
    a.q = frand(n, 1.0f, 41), a.k = frand(n, 1.0f, 42), a.v = frand(n, 1.0f, 43);
    a.out = falloc(n), a.lse = falloc((size_t)B * NH * T), a.dout = frand(n, 1e-3f, 44);
    a.dq = falloc(n), a.dk = falloc(n), a.dv = falloc(n);
    char shape[64];
    snprintf(shape, sizeof shape, "B%d_T%d_NH%d_HS%d", B, T, NH, HS);
    double pairs = (double)B * NH * T * (T + 1) / 2.0;
    op_row(cfg, "attention(causal)", "fwd", shape, time_best(attn_fwd, &a, 5), 4.0 * HS * pairs, 0);
    op_row(cfg, "attention(causal)", "bwd", shape, time_best(attn_bwd, &a, 5), 10.0 * HS * pairs, 0);
    /* rope on q (B, T, NH, HS), all HS dims rotated, in place: read + write */
    op_row(cfg, "rope(q)", "fwd", shape, time_best(rope_fwd, &a, 5), 0, 8.0 * n);
    op_row(cfg, "rope(q)", "bwd", shape, time_best(rope_bwd, &a, 5), 0, 8.0 * n);
    free(a.q), free(a.k), free(a.v), free(a.out), free(a.lse), free(a.dout), free(a.dq),
        free(a.dk), free(a.dv);
}

struct ce_arg {
    int N, V;
    float *logits, *losses;
    int32_t *targets;
};
static void ce_fwd(void *p)
{
    struct ce_arg *a = p;
    CHECK("cross_entropy", OPS->cross_entropy(CTX, a->losses, NULL, a->logits, a->targets, a->N,
                                              a->V, 0.0f));
}
static void ce_bwd(void *p)
{
    struct ce_arg *a = p;
    /* as the model's backward: losses and dlogits written over the logits */
    CHECK("cross_entropy", OPS->cross_entropy(CTX, a->losses, a->logits, a->logits, a->targets,
                                              a->N, a->V, 1.0f / a->N));
}

static void bench_ce(const char *cfg, int N, int V)
{
    struct ce_arg a = {.N = N, .V = V};
    a.logits = frand((size_t)N * V, 2.0f, 51), a.losses = falloc(N);
    a.targets = malloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++)
        a.targets[i] = (int32_t)(((uint64_t)i * 2654435761u) % (uint64_t)V);
    char shape[64];
    snprintf(shape, sizeof shape, "N%d_V%d", N, V);
    op_row(cfg, "cross_entropy", "fwd(loss)", shape, time_best(ce_fwd, &a, 5), 0, 4.0 * N * V);
    op_row(cfg, "cross_entropy", "fwd+bwd(dlogits_in_place)", shape, time_best(ce_bwd, &a, 5), 0,
           8.0 * N * V);
    free(a.logits), free(a.losses), free(a.targets);
}

struct adam_arg {
    size_t n;
    float *p, *g, *m, *v;
    int t;
};
static void adam_step(void *q)
{
    struct adam_arg *a = q;
    a->t++;
    CHECK("adamw", OPS->adamw(CTX, a->p, a->g, a->m, a->v, a->n, 3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f,
                              a->t, 1.0f));
}

static void bench_adamw(const char *cfg, size_t n)
{
    struct adam_arg a = {.n = n};
    a.p = frand(n, 0.02f, 61), a.g = frand(n, 1e-3f, 62), a.m = frand(n, 0.0f, 0),
    a.v = frand(n, 0.0f, 0);
    char shape[64];
    snprintf(shape, sizeof shape, "params%zu", n);
    /* read p, g, m, v; write p, m, v: 28 bytes per parameter */
    op_row(cfg, "adamw", "step", shape, time_best(adam_step, &a, 5), 0, 28.0 * n);
    free(a.p), free(a.g), free(a.m), free(a.v);
}

/* ---- configs ---- */

static struct llm_model_config base_config(void)
{
    struct llm_config c;
    CHECK("config defaults", llm_config_defaults(&c));
    struct llm_model_config m = c.model;
    llm_config_release(&c);
    m.n_kv_heads = 0;
    m.dropout = 0.0;
    return m;
}

/* The reference GPT-2-style config (configs/tiny.json's model section). */
static struct llm_model_config gpt2_config(int V, int T, int C, int L, int NH, int F)
{
    struct llm_model_config m = base_config();
    m.vocab_size = V, m.context_length = T, m.d_model = C, m.n_layers = L, m.n_heads = NH;
    m.d_ff = F;
    m.activation = LLM_ACTIVATION_GELU, m.norm = LLM_NORM_LAYERNORM;
    m.position = LLM_POSITION_LEARNED, m.bias = true, m.tie_embeddings = true;
    return m;
}

static struct llm_model_config llama_config(int V, int T, int C, int L, int NH, int F)
{
    struct llm_model_config m = gpt2_config(V, T, C, L, NH, F);
    m.activation = LLM_ACTIVATION_SWIGLU, m.norm = LLM_NORM_RMSNORM;
    m.position = LLM_POSITION_ROPE, m.bias = false, m.tie_embeddings = false;
    return m;
}

struct opcfg {
    const char *name;
    int V, T, C, L, NH, F, Fs, B; /* Fs: the swiglu (Llama-style) d_ff at this width */
};

static void bench_ops(const struct opcfg *o)
{
    int N = o->B * o->T, HS = o->C / o->NH;
    const char *n = o->name;
    bench_matmul(n, "attn.wq/wk/wv(each)", N, o->C, o->C, 1, 1);
    bench_matmul(n, "attn.wo", N, o->C, o->C, 1, 0);
    bench_matmul(n, "mlp.fc1(w1)", N, o->C, o->F, 1, 0);
    bench_matmul(n, "mlp.fc2(w2)", N, o->F, o->C, 1, 0);
    bench_matmul(n, "swiglu.w1/w3(each)", N, o->C, o->Fs, 0, 0);
    bench_matmul(n, "swiglu.w2", N, o->Fs, o->C, 0, 0);
    bench_matmul(n, "lm_head", N, o->C, o->V, 0, 1);
    bench_norm(n, 1, N, o->C);
    bench_norm(n, 0, N, o->C);
    bench_elementwise(n, N, o->F, o->Fs, o->C);
    bench_attention(n, o->B, o->T, o->NH, HS);
    bench_ce(n, N, o->V);
    struct llm_model_config g = gpt2_config(o->V, o->T, o->C, o->L, o->NH, o->F);
    struct llm_model_info info;
    CHECK("model info", llm_model_info_compute(&info, &g, o->T, o->B));
    bench_adamw(n, (size_t)info.params);
}

/* ---- whole model ---- */

struct step_times {
    double fwd, bwd, step; /* best of each, seconds; step = best fwd + bwd of one iteration */
    float loss;
    double others;         /* % of the CPUs busy with other processes meanwhile */
};

static struct step_times time_model(const struct llm_model_config *cfg, int B, int reps)
{
    struct llm_model m;
    CHECK("llm_model_init", llm_model_init(&m, cfg, &g_be, 1234));
    int T = cfg->context_length;
    size_t n = (size_t)B * T;
    int32_t *tok = malloc(n * sizeof(int32_t)), *tgt = malloc(n * sizeof(int32_t));
    uint64_t s = 99;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)cfg->vocab_size);
    }
    for (size_t i = 0; i < n; i++)
        tgt[i] = tok[(i + 1) % n];
    struct step_times r = {INFINITY, INFINITY, INFINITY, 0, 0};
    struct cpuclock c0 = cpuclock();
    for (int it = 0; it <= reps; it++) { /* it 0: warm-up (allocates activations, gradients) */
        double t0 = now();
        CHECK("llm_model_forward", llm_model_forward(&m, tok, tgt, B, T, 1, &r.loss));
        double t1 = now();
        CHECK("llm_model_backward", llm_model_backward(&m));
        double t2 = now();
        if (it == 0)
            continue;
        if (t1 - t0 < r.fwd)
            r.fwd = t1 - t0;
        if (t2 - t1 < r.bwd)
            r.bwd = t2 - t1;
        if (t2 - t0 < r.step)
            r.step = t2 - t0;
    }
    r.others = others_pct(c0, cpuclock());
    free(tok), free(tgt);
    llm_model_release(&m);
    return r;
}

/* Per-layer time from two depths (bench_model). */
struct split {
    const char *name;
    int L, L2;
    double layer, layer_fwd, layer_bwd, rest, step; /* seconds */
};
static struct split g_split[8];
static int g_nsplit;

static void model_header(void)
{
    printf("\n| model | L | B x T | params | fwd ms | bwd ms | step ms | tokens/s | train GFLOP/token | "
           "GFLOP/s | MFU (vs sgemm peak) | others' CPU %% |\n"
           "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
}

/* Times the model at its L and at L2 < L layers: per layer = the difference / (L - L2),
 * the rest (embedding, final norm, lm head, loss) = step(L) - L * per layer. */
static void bench_model(const char *name, struct llm_model_config cfg, int B, int L2, int reps)
{
    int L = cfg.n_layers, T = cfg.context_length;
    double tokens = (double)B * T;
    struct step_times tL = {0}, t2 = {0};
    for (int pass = 0; pass < 2; pass++) {
        struct llm_model_config c = cfg;
        c.n_layers = pass ? L2 : L;
        if (pass && L2 <= 0)
            break;
        struct llm_model_info info;
        CHECK("model info", llm_model_info_compute(&info, &c, T, B));
        double fpt = llm_model_train_flops_per_token(&c, T);
        struct step_times t = time_model(&c, B, reps);
        for (int a = 0; may_retry(t.others, a); a++) {
            double t0 = now();
            sleep(1);
            struct step_times u = time_model(&c, B, reps);
            if (u.step < t.step)
                t = u;
            g_retry_s += now() - t0;
        }
        if (t.others > BUSY_PCT)
            g_noisy++;
        double tps = tokens / t.step;
        double mfu = llm_model_mfu(tps, fpt, g_peak * 1e9);
        printf("| %s | %d | %d x %d | %lld | %.1f | %.1f | %.1f | %.0f | %.4f | %.1f | %.1f%% | %.0f |\n",
               name, c.n_layers, B, T, (long long)info.params, t.fwd * 1e3, t.bwd * 1e3,
               t.step * 1e3, tps, fpt * 1e-9, tps * fpt * 1e-9, 100.0 * mfu, t.others);
        printf("RESULT section=model config=%s L=%d B=%d T=%d params=%lld fwd_ms=%.3f bwd_ms=%.3f "
               "step_ms=%.3f tokens_per_s=%.1f train_flops_per_token=%.6g gflops=%.4g mfu=%.4g "
               "loss=%.4f reps=%d others_pct=%.1f\n",
               name, c.n_layers, B, T, (long long)info.params, t.fwd * 1e3, t.bwd * 1e3,
               t.step * 1e3, tps, fpt, tps * fpt * 1e-9, mfu, (double)t.loss, reps, t.others);
        fflush(stdout);
        if (pass)
            t2 = t;
        else
            tL = t;
    }
    if (L2 > 0 && L2 < L && g_nsplit < 8) {
        struct split *sp = &g_split[g_nsplit++];
        sp->name = name, sp->L = L, sp->L2 = L2;
        sp->layer = (tL.step - t2.step) / (L - L2);
        sp->layer_fwd = (tL.fwd - t2.fwd) / (L - L2);
        sp->layer_bwd = (tL.bwd - t2.bwd) / (L - L2);
        sp->rest = tL.step - L * sp->layer;
        sp->step = tL.step;
    }
}

static void print_splits(void)
{
    printf("\n| model | from L, L2 | per layer fwd+bwd ms | per layer fwd ms | per layer bwd ms | "
           "outside the layers ms (embedding, final norm, lm head, loss) | layers' share of the step |\n"
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < g_nsplit; i++) {
        const struct split *sp = &g_split[i];
        printf("| %s | %d, %d | %.1f | %.1f | %.1f | %.1f | %.0f%% |\n", sp->name, sp->L, sp->L2,
               sp->layer * 1e3, sp->layer_fwd * 1e3, sp->layer_bwd * 1e3, sp->rest * 1e3,
               100.0 * sp->L * sp->layer / sp->step);
        printf("RESULT section=split config=%s L=%d L2=%d layer_step_ms=%.3f layer_fwd_ms=%.3f "
               "layer_bwd_ms=%.3f outside_layers_ms=%.3f layers_share=%.4g\n",
               sp->name, sp->L, sp->L2, sp->layer * 1e3, sp->layer_fwd * 1e3, sp->layer_bwd * 1e3,
               sp->rest * 1e3, sp->L * sp->layer / sp->step);
    }
}

static const struct opcfg g_cfgs[] = {
    /* configs/tiny.json: V 4096, T 256, C 256, L 4, NH 4, F 1024, B 8 -> N 2048; Llama-style
     * swiglu width 688 */
    {"ref-small", 4096, 256, 256, 4, 4, 1024, 688, 8},
    /* GPT-2 small's block (C 768, NH 12, F 3072, L 12) at T 1024, B 4 -> N 4096; V kept at
     * 4096; the Llama-style swiglu width 8C/3 = 2048 */
    {"ref-d768", 4096, 1024, 768, 12, 12, 3072, 2048, 4},
};
#define NCFG (sizeof g_cfgs / sizeof *g_cfgs)

/* 1. The sgemm peak: OpenBLAS's own threading, then one thread. Run before
 * any OpenMP region, with a pause after the threaded runs so OpenBLAS's
 * spinning workers are asleep before anything else is timed. */
static void run_peak(int threads)
{
    printf("\n### sgemm peak (cblas_sgemm NN, OpenBLAS's own threading)\n");
    printf("\n| sgemm | threads | M = N = K | ms | GFLOP | GFLOP/s | others' CPU %% |\n"
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    static const int sizes[] = {1024, 2048, 4096};
    for (int pass = 0; pass < 2; pass++) {
        int nt = pass ? 1 : threads;
        openblas_set_num_threads(nt);
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            int n = sizes[i];
            if ((pass || g_quick) && n > 2048)
                continue; /* one thread: 4096^3 takes seconds and says nothing new */
            struct timing t;
            double gf = sgemm_gflops(n, n, n, 0, 0, 3, &t);
            double *peak = pass ? &g_peak1 : &g_peak;
            if (gf > *peak)
                *peak = gf;
            printf("| NN | %d | %d | %.2f | %.1f | %.1f | %.0f |\n", nt, n, t.s * 1e3,
                   2.0 * n * n * n * 1e-9, gf, t.others);
            printf("RESULT section=sgemm threads=%d M=%d N=%d K=%d ms=%.4f gflops=%.4g reps=%d "
                   "others_pct=%.1f\n",
                   nt, n, n, n, t.s * 1e3, gf, t.reps, t.others);
            fflush(stdout);
        }
        usleep(300000);
    }
    printf("\nsgemm peak: %.1f GFLOP/s on %d threads, %.1f GFLOP/s on 1 thread (the %% of peak "
           "and MFU columns use %.1f)\n",
           g_peak, threads, g_peak1, g_peak);
    printf("RESULT section=peak threads=%d gflops=%.4g gflops_1thread=%.4g\n", threads, g_peak,
           g_peak1);
}

/* The model's matmul shapes as one threaded cblas_sgemm call each: the
 * forward product x @ w^T (NT) and the weight gradient dout^T @ x (TN, OC x C,
 * K = N): what OpenBLAS's own threading gets there, against our fixed-tile
 * matmul in the ops table. */
static void run_shapes(int threads)
{
    printf("\n### One cblas_sgemm call at the model's matmul shapes (%d threads)\n", threads);
    printf("\n| config | product | M | N | K | ms | GFLOP/s | %% of sgemm peak | others' CPU %% |\n"
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    openblas_set_num_threads(threads);
    for (size_t c = 0; c < NCFG; c++) {
        const struct opcfg *o = &g_cfgs[c];
        int N = o->B * o->T;
        int shp[5][2] = {{o->C, o->C}, {o->C, o->F}, {o->F, o->C}, {o->C, o->Fs}, {o->C, o->V}};
        for (int s = 0; s < 5; s++) {
            for (int dw = 0; dw < 2; dw++) {
                int C = shp[s][0], OC = shp[s][1];
                int M = dw ? OC : N, Nn = dw ? C : OC, K = dw ? N : C;
                struct timing t;
                double gf = sgemm_gflops(M, Nn, K, dw, !dw, 5, &t);
                const char *what = dw ? "dw=dout^T@x(TN)" : "out=x@w^T(NT)";
                printf("| %s | %s | %d | %d | %d | %.3f | %.1f | %.1f%% | %.0f |\n", o->name, what, M,
                       Nn, K, t.s * 1e3, gf, 100.0 * gf / g_peak, t.others);
                printf("RESULT section=sgemm_shape config=%s product=%s M=%d N=%d K=%d threads=%d "
                       "ms=%.4f gflops=%.4g pct_peak=%.4g others_pct=%.1f\n",
                       o->name, what, M, Nn, K, threads, t.s * 1e3, gf, 100.0 * gf / g_peak,
                       t.others);
                fflush(stdout);
            }
        }
    }
    openblas_set_num_threads(1);
    usleep(300000);
}

/* 2. The backend's ops. */
static void run_ops(int threads)
{
    printf("\n### Ops (CPU backend, %d threads)\n", threads);
    op_header();
    /* DRAM reference: the backend's add over 3 x 128 MB */
    struct ew_arg a = {.n = (size_t)32 << 20};
    a.x = frand(a.n, 1.0f, 71), a.u = frand(a.n, 1.0f, 72), a.out = falloc(a.n);
    char shape[64];
    snprintf(shape, sizeof shape, "n%zu(3x128MB)", a.n);
    op_row("memory", "add(DRAM_reference)", "fwd", shape, time_best(add_fwd, &a, 5), 0,
           12.0 * a.n);
    free(a.x), free(a.u), free(a.out);
    for (size_t c = 0; c < NCFG; c++)
        bench_ops(&g_cfgs[c]);
}

/* 3. Whole models: forward with targets, then backward. */
static void run_models(int large_model)
{
    printf("\n### Whole model: llm_model_forward (with targets) + llm_model_backward\n");
    model_header();
    bench_model("gpt2-ref", gpt2_config(4096, 256, 256, 4, 4, 1024), 8, 2, g_quick ? 1 : 3);
    bench_model("llama-ref", llama_config(4096, 256, 256, 4, 4, 688), 8, 2, g_quick ? 1 : 3);
    if (large_model)
        bench_model("gpt2-d768", gpt2_config(4096, 1024, 768, 2, 12, 3072), 4, 1,
                    g_quick ? 1 : 2);
    printf("\n### Per layer: (step(L) - step(L2)) / (L - L2)\n");
    print_splits();
}

int main(int argc, char **argv)
{
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), large_model = 1;
    const char *sections = "sgemm,shapes,ops,models";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            g_quick = 1;
        else if (!strcmp(argv[i], "--no-large-model"))
            large_model = 0;
        else if (!strcmp(argv[i], "--sections") && i + 1 < argc)
            sections = argv[++i];
        else {
            fprintf(stderr, "usage: nn_bench [--threads N] [--sections sgemm,shapes,ops,models] "
                            "[--quick] [--no-large-model]\n");
            return 2;
        }
    }
    if (threads < 1)
        threads = 1;
    double t_start = now();
    const char *ct = getenv("OPENBLAS_CORETYPE");
    ct = ct && *ct ? ct : "unset";
    printf("nn_bench: %d threads; %s; OpenBLAS kernels %s (OPENBLAS_CORETYPE=%s)\n", threads,
           openblas_get_config(), openblas_get_corename(), ct);
    printf("RESULT section=setup threads=%d openblas_core=%s openblas_coretype_env=%s\n", threads,
           openblas_get_corename(), ct);

    run_peak(threads); /* always: the other sections are measured against it */
    if (strstr(sections, "shapes"))
        run_shapes(threads);
    CHECK("llm_backend_cpu_init", llm_backend_cpu_init(&g_be, threads, 0));
    if (strstr(sections, "ops"))
        run_ops(threads);
    if (strstr(sections, "models"))
        run_models(large_model);
    llm_backend_release(&g_be);
    printf("\nnn_bench: done in %.1f s (%.1f s of retries); %d result(s) measured while other "
           "processes kept more than %.0f%% of the CPUs busy\n",
           now() - t_start, g_retry_s, g_noisy, BUSY_PCT);
    printf("RESULT section=end seconds=%.1f retry_seconds=%.1f noisy=%d\n", now() - t_start,
           g_retry_s, g_noisy);
    return 0;
}
