/* train_step.c: whole training steps of a config on the CPU backend, for the
 * side-by-side with PyTorch (bench/train_bench.sh, bench/torch_train.py;
 * README.md "Training step vs PyTorch").
 *
 *   build/cpu/bench/train_step CONFIG.json [--set KEY=VALUE]... [--steps N]
 *                              [--warmup N] [--threads N]
 *   build/cpu/bench/train_step --peak [--threads N]
 *
 * A step is what `llm pretrain` does once per batch, and what torch_train.py
 * does in the same order:
 *   1. forward with the loss (llm_model_forward, targets = the next tokens),
 *   2. backward (llm_model_backward, into zeroed gradients),
 *   3. the global gradient norm: the backend's sumsq over the whole gradient
 *      buffer, clipped to train.clip_grad (a scale passed to AdamW),
 *   4. AdamW (the backend's adamw op, one call per tensor): optim.lr, betas,
 *      eps, with optim.weight_decay on 2-D weight matrices only (lm_head
 *      included, tok_emb / pos_emb, norms and biases without), as torch_train.py
 *      groups them. The learning rate is constant (no schedule: it costs
 *      nothing and PyTorch's side has none).
 * Tokens are uniform random in [0, V) from a fixed LCG, new every step. The
 * batch is train.batch_size x model.context_length.
 *
 * Output: one "RESULT key=value ..." line with the mean and the best step
 * time over the timed steps (after the warm-up ones), tokens/s of the mean,
 * the parameter count, the train FLOPs per token (lib/model/info.h, as for
 * MFU in training logs) and the peak RSS of this process
 * (getrusage ru_maxrss, the figure torch_train.py reads for itself).
 * --peak measures instead the threaded cblas_sgemm peak (square NN products,
 * 2048 and 4096, best of 3; OpenBLAS's own threading) and prints it: a
 * separate process, so its 200 MB of matrices stay out of the step's RSS. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
    fprintf(stderr, "train_step: %s failed (%d): %s\n", what, rc, llm_errmsg());
    exit(1);
}
#define CHECK(what, call)                                                                          \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_)                                                                                   \
            die(what, rc_);                                                                        \
    } while (0)

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

/* The threaded sgemm peak, GFLOP/s: 2 n^3 / t, best of 3 per size. */
static double sgemm_peak(int threads)
{
    openblas_set_num_threads(threads);
    double best = 0;
    static const int sizes[] = {2048, 4096};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float)),
              *c = malloc((size_t)n * n * sizeof(float));
        if (!a || !b || !c)
            die("sgemm buffers", LLM_ENOMEM);
        for (size_t i = 0; i < (size_t)n * n; i++)
            a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f, c[i] = 0;
        for (int r = 0; r < 4; r++) { /* r 0: warm-up */
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                        c, n);
            double gf = 2.0 * n * n * (double)n / (now() - t0) * 1e-9;
            if (r && gf > best)
                best = gf;
        }
        free(a), free(b), free(c);
    }
    return best;
}

/* Weight decay of a tensor: 2-D weights of linear layers (and the router);
 * not embeddings, norms or biases (the optim.decay_* keys widen it). */
static float decay_of(const struct llm_param_spec *p, const struct llm_optim_config *o)
{
    int decayed = p->kind == LLM_PARAM_MATRIX || p->kind == LLM_PARAM_ROUTER ||
                  ((p->kind == LLM_PARAM_EMBEDDING || p->kind == LLM_PARAM_POSITION) &&
                   o->decay_embeddings) ||
                  ((p->kind == LLM_PARAM_NORM || p->kind == LLM_PARAM_BIAS) && o->decay_norms_biases);
    return decayed ? (float)o->weight_decay : 0.0f;
}

int main(int argc, char **argv)
{
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), steps = 10, warmup = 3, peak = 0;
    const char *path = NULL;
    const char *sets[32];
    int nsets = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && nsets < 32)
            sets[nsets++] = argv[++i];
        else if (!strcmp(argv[i], "--peak"))
            peak = 1;
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "usage: train_step CONFIG.json [--set KEY=VALUE]... [--steps N] "
                            "[--warmup N] [--threads N]\n       train_step --peak [--threads N]\n");
            return 2;
        }
    }
    if (threads < 1)
        threads = 1;
    if (peak) {
        double gf = sgemm_peak(threads);
        printf("RESULT section=peak threads=%d gflops=%.4g openblas_core=%s\n", threads, gf,
               openblas_get_corename());
        return 0;
    }
    if (!path || steps < 1 || warmup < 0) {
        fprintf(stderr, "train_step: a config file and --steps >= 1 are needed\n");
        return 2;
    }
    struct llm_config cfg;
    CHECK("config", llm_config_load(&cfg, path, sets, nsets));
    const struct llm_model_config *mc = &cfg.model;
    const struct llm_optim_config *oc = &cfg.optim;
    int B = cfg.train.batch_size, T = mc->context_length, V = mc->vocab_size;
    size_t N = (size_t)B * T;

    struct llm_backend be;
    CHECK("llm_backend_cpu_init", llm_backend_cpu_init(&be, threads, 0));
    struct llm_model m;
    CHECK("llm_model_init", llm_model_init(&m, mc, &be, (uint64_t)cfg.train.seed));
    struct llm_model_info info;
    CHECK("model info", llm_model_info_compute(&info, mc, T, B));
    double fpt = llm_model_train_flops_per_token(mc, T);

    /* AdamW moments: one buffer each, the parameters' layout */
    size_t total = m.layout.total;
    float *mom1, *mom2;
    CHECK("alloc", be.ops->alloc(be.ctx, (void **)&mom1, total * sizeof(float)));
    CHECK("alloc", be.ops->alloc(be.ctx, (void **)&mom2, total * sizeof(float)));

    int32_t *tok = malloc((N + 1) * sizeof(int32_t));
    if (!tok)
        die("tokens", LLM_ENOMEM);
    uint64_t s = 12345;
    double sum = 0, best = INFINITY;
    float loss = 0, first_loss = 0, gnorm = 0;
    for (int it = 0; it < warmup + steps; it++) {
        for (size_t i = 0; i <= N; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            tok[i] = (int32_t)((s >> 33) % (uint64_t)V);
        }
        double t0 = now();
        CHECK("zero_grad", llm_model_zero_grad(&m));
        CHECK("forward", llm_model_forward(&m, tok, tok + 1, B, T, 1, &loss));
        CHECK("backward", llm_model_backward(&m));
        double ss = 0;
        CHECK("sumsq", be.ops->sumsq(be.ctx, &ss, m.grads, total));
        CHECK("sync", be.ops->sync(be.ctx));
        gnorm = (float)sqrt(ss);
        float clip = (float)cfg.train.clip_grad;
        float scale = clip > 0 && gnorm > clip ? clip / gnorm : 1.0f;
        for (size_t i = 0; i < m.layout.n; i++) {
            const struct llm_param_spec *p = &m.layout.p[i];
            size_t o = p->offset;
            CHECK("adamw", be.ops->adamw(be.ctx, m.params + o, m.grads + o, mom1 + o, mom2 + o,
                                         p->numel, (float)oc->lr, (float)oc->betas[0],
                                         (float)oc->betas[1], (float)oc->eps, decay_of(p, oc),
                                         it + 1, scale));
        }
        CHECK("sync", be.ops->sync(be.ctx));
        double dt = now() - t0;
        if (it == 0)
            first_loss = loss;
        if (it >= warmup) {
            sum += dt;
            if (dt < best)
                best = dt;
        }
        fprintf(stderr, "train_step: step %d %.1f ms loss %.4f grad_norm %.4f\n", it + 1,
                dt * 1e3, (double)loss, (double)gnorm);
    }
    double mean = sum / steps;
    printf("RESULT section=train impl=llm config=%s threads=%d B=%d T=%d params=%lld "
           "train_flops_per_token=%.6g warmup=%d steps=%d step_ms=%.3f best_step_ms=%.3f "
           "tokens_per_s=%.1f first_loss=%.4f last_loss=%.4f grad_norm=%.4f peak_rss_mb=%.1f\n",
           path, threads, B, T, (long long)info.params, fpt, warmup, steps, mean * 1e3, best * 1e3,
           (double)N / mean, (double)first_loss, (double)loss, (double)gnorm, peak_rss_mb());
    free(tok);
    be.ops->free(be.ctx, mom1), be.ops->free(be.ctx, mom2);
    llm_model_release(&m);
    llm_backend_release(&be);
    llm_config_release(&cfg);
    return 0;
}
