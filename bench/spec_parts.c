/* spec_parts.c: the parts of a speculative decoding round, timed apart
 * (bench/spec_bench.sh): the target's decode step (c_t), its pass over K + 1
 * rows that verifies K drafted tokens (c_v), and the draft's decode step
 * (c_d), each at a position past a 32-token prefix.
 *
 *   build/cpu/bench/spec_parts TARGET.llm DRAFT.llm K... [--threads N] [--draft-threads N]
 *                              [--draft-int8 | --draft-w8a8 | --draft-q4]
 *
 * --draft-int8 decodes the draft with int8 weights (groups of 32), as
 * `llm generate --draft-quantize int8`; --draft-w8a8 also quantizes its
 * activations (`--draft-quantize w8a8`), --draft-q4 uses 4-bit weights
 * (`--draft-quantize q4`); an int8 checkpoint is always decoded in int8.
 *
 * A greedy round emits E = (1 - a^(K+1)) / (1 - a) tokens on average when
 * each drafted token is accepted with probability a (Leviathan et al. 2023,
 * eq. 1) and costs about K c_d + c_v (the draft's first step is a prefill
 * of 1-2 tokens, counted as one step); plain decoding costs c_t a token. So
 *   speed-up(a, K) = E c_t / (K c_d + c_v).
 * For each K the program prints the costs, the speed-up at a = 1 (the most
 * any draft could give) and the acceptance rates that reach 1x and 1.5x
 * (bisection on a; "-" when even a = 1 does not). Host-side sampling and
 * cache truncation are not counted (small at these vocabularies).
 * Timing: wall clock, the best of 40 samples of 10 repetitions each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "infer/infer.h"
#include "infer/load.h"
#include "nn/backend.h"

enum { PREFIX = 32, REPS = 10, SAMPLES = 40, MAXK = 15 };

struct timed {
    struct llm_loaded l;
    struct llm_infer *x;
    float *logits;
    int32_t tok[MAXK + 1 + PREFIX];
};

static void die(const char *what)
{
    fprintf(stderr, "spec_parts: %s: %s\n", what, llm_errmsg());
    exit(1);
}

static void open_model(struct timed *t, const char *path, struct llm_backend *be,
                       enum llm_load_weights weights, int a8)
{
    if (llm_loaded_open(&t->l, path, be, weights, 32, LLM_TOK_NONE, NULL))
        die(path);
    if (llm_infer_new(&t->x, &t->l.m, 1, t->l.m.cfg.context_length))
        die("caches");
    if (llm_loaded_q8(&t->l)) {
        llm_infer_use_q8(t->x, llm_loaded_q8(&t->l));
        llm_infer_use_a8(t->x, a8);
    }
    int V = t->l.m.cfg.vocab_size;
    t->logits = malloc((size_t)(MAXK + 1) * V * sizeof(float));
    if (!t->logits)
        die("out of memory");
    for (int i = 0; i < MAXK + 1 + PREFIX; i++)
        t->tok[i] = (int32_t)((i * 37 + 5) % V);
}

/* Seconds of one pass over n rows past the prefix (n = 0: one decode step). */
static double time_pass(struct timed *t, int n)
{
    double best = 1e30;
    for (int s = 0; s < SAMPLES; s++) {
        if (llm_infer_truncate(t->x, 0, 0) || llm_infer_prefill(t->x, 0, t->tok, PREFIX, t->logits, 0))
            die("prefill");
        double t0 = llm_now();
        for (int r = 0; r < REPS; r++) {
            int slot = 0, rc = n ? llm_infer_prefill(t->x, 0, t->tok + PREFIX, n, t->logits, 1)
                                 : llm_infer_decode(t->x, &slot, t->tok + PREFIX, 1, t->logits);
            if (rc || llm_infer_truncate(t->x, 0, PREFIX))
                die("pass");
        }
        double dt = (llm_now() - t0) / REPS;
        best = dt < best ? dt : best;
    }
    return best;
}

static double speedup(double a, int K, double ct, double cd, double cv)
{
    double E = 0, p = 1;
    for (int i = 0; i <= K; i++) /* 1 + a + ... + a^K */
        E += p, p *= a;
    return E * ct / (K * cd + cv);
}

/* The smallest a in [0, 1] with speedup >= goal, or -1. */
static double needed(double goal, int K, double ct, double cd, double cv)
{
    if (speedup(1.0, K, ct, cd, cv) < goal)
        return -1;
    double lo = 0, hi = 1;
    for (int i = 0; i < 40; i++) {
        double mid = (lo + hi) / 2;
        if (speedup(mid, K, ct, cd, cv) >= goal)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

int main(int argc, char **argv)
{
    int threads = 0, dthreads = 0, da8 = 0, ks[MAXK], nk = 0;
    enum llm_load_weights dweights = LLM_LOAD_STORED;
    const char *paths[2] = {NULL, NULL};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--draft-threads") && i + 1 < argc)
            dthreads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--draft-int8"))
            dweights = LLM_LOAD_INT8;
        else if (!strcmp(argv[i], "--draft-w8a8"))
            dweights = LLM_LOAD_INT8, da8 = 1;
        else if (!strcmp(argv[i], "--draft-q4"))
            dweights = LLM_LOAD_Q4;
        else if (!paths[0] || !paths[1])
            paths[paths[0] ? 1 : 0] = argv[i];
        else if (nk < MAXK && atoi(argv[i]) >= 1 && atoi(argv[i]) <= MAXK)
            ks[nk++] = atoi(argv[i]);
    }
    if (!paths[1] || !nk) {
        fprintf(stderr, "usage: spec_parts TARGET.llm DRAFT.llm K... [--threads N] [--draft-threads N] "
                        "[--draft-int8 | --draft-w8a8 | --draft-q4]\n");
        return 2;
    }
    struct llm_backend be, dbe;
    if (llm_backend_cpu_init(&be, threads, 0) || llm_backend_cpu_init(&dbe, dthreads ? dthreads : threads, 0))
        die("backend");
    struct timed tg, dr;
    open_model(&tg, paths[0], &be, LLM_LOAD_STORED, 0);
    open_model(&dr, paths[1], &dbe, dweights, da8);
    double ct = time_pass(&tg, 0), cd = time_pass(&dr, 0);
    printf("target step %.3f ms, draft step %.3f ms (%.2f of the target's)\n", ct * 1e3, cd * 1e3, cd / ct);
    for (int i = 0; i < nk; i++) {
        int K = ks[i];
        double cv = time_pass(&tg, K + 1), a1 = needed(1.0, K, ct, cd, cv), a15 = needed(1.5, K, ct, cd, cv);
        char s1[16] = "-", s15[16] = "-";
        if (a1 >= 0)
            snprintf(s1, sizeof(s1), "%.2f", a1);
        if (a15 >= 0)
            snprintf(s15, sizeof(s15), "%.2f", a15);
        printf("RESULT K=%d target_ms=%.3f verify_ms=%.3f verify_over_step=%.2f draft_ms=%.3f "
               "max_speedup=%.2f accept_for_1x=%s accept_for_1.5x=%s\n",
               K, ct * 1e3, cv * 1e3, cv / ct, cd * 1e3, speedup(1.0, K, ct, cd, cv), s1, s15);
    }
    llm_infer_free(tg.x), llm_infer_free(dr.x);
    llm_loaded_release(&tg.l), llm_loaded_release(&dr.l);
    free(tg.logits), free(dr.logits);
    llm_backend_release(&dbe);
    llm_backend_release(&be);
    return 0;
}
