/* cpu.c: the CPU backend: host memory, and the ops table filled with the
 * functions of cpu_ops.c, cpu_attention.c and cpu_rows.c. */
#include "cpu_impl.h"
#include "core/err.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* OpenBLAS's own thread count (its pthreads build). */
extern void openblas_set_num_threads(int n);

static int cpu_alloc(void *ctx, void **p, size_t bytes)
{
    (void)ctx;
    /* 64-byte alignment: whole cache lines, and what AVX-512 loads like */
    size_t n = (bytes + 63) & ~(size_t)63;
    void *q = aligned_alloc(64, n ? n : 64);
    if (!q)
        return llm_err(LLM_ENOMEM, "out of memory allocating %zu bytes", bytes);
    memset(q, 0, n ? n : 64);
    *p = q;
    return 0;
}

static void cpu_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static int cpu_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    if (bytes)
        memmove(dst, src, bytes);
    return 0;
}

static int cpu_zero(void *ctx, void *dst, size_t bytes)
{
    (void)ctx;
    if (bytes)
        memset(dst, 0, bytes);
    return 0;
}

static int cpu_sync(void *ctx)
{
    (void)ctx;
    return 0;
}

static const struct llm_backend_ops cpu_ops = {
    .version = LLM_BACKEND_API_VERSION,
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .add_positions = cpu_add_positions,
    .add_positions_backward = cpu_add_positions_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .activation_forward = cpu_activation_forward,
    .activation_backward = cpu_activation_backward,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .linear_attention_forward = cpu_linear_attention_forward,
    .linear_attention_backward = cpu_linear_attention_backward,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .softmax_forward = cpu_softmax_forward,
    .softmax_backward = cpu_softmax_backward,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .rows_dot = cpu_rows_dot,
    .copy_cols = cpu_copy_cols,
    .add = cpu_add,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    .scale_rows = cpu_scale_rows,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .cross_entropy = cpu_cross_entropy,
    .sumsq = cpu_sumsq,
    .adamw = cpu_adamw,
    .gemm = cpu_gemm,
    .sgd = cpu_sgd,
    .momentum = cpu_momentum,
    .adam_direction = cpu_adam_direction,
    .scale_add = cpu_scale_add,
    .linear_rows = cpu_linear_rows,
    .linear_rows_multi = cpu_linear_rows_multi,
    .attention_cached = cpu_attention_cached,
    .linear_rows_q8 = cpu_linear_rows_q8,
    .linear_rows_q8_multi = cpu_linear_rows_q8_multi,
    .linear_rows_q8a8 = cpu_linear_rows_q8a8,
    .linear_rows_q4a8 = cpu_linear_rows_q4a8,
};

int llm_backend_cpu_init(struct llm_backend *b, int threads, int ref)
{
    memset(b, 0, sizeof(*b));
    struct cpu_ctx *c = llm_calloc(1, sizeof(*c), "the CPU backend");
    if (!c)
        return LLM_ENOMEM;
    c->threads = threads > 0 ? threads : omp_get_max_threads();
    c->ref = ref;
    openblas_set_num_threads(1); /* our matmul runs single-threaded sgemm tiles on OpenMP threads */
    b->ops = &cpu_ops;
    b->ctx = c;
    b->threads = c->threads;
    return 0;
}

void llm_backend_release(struct llm_backend *b)
{
    struct cpu_ctx *c = b->ctx;
    for (int i = 0; c && i < CPU_ROPE_TABLES; i++)
        free(c->rope[i].cs);
    free(b->ctx);
    memset(b, 0, sizeof(*b));
}
