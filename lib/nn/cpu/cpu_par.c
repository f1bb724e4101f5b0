/* cpu_par.c: cpu_parfor_steal, the thread split of the decode matmuls: each
 * thread streams its own contiguous range and, when done, takes the far end
 * of the ranges of threads that are behind.
 *
 * Why not a static split: the two halves of a matmul rarely finish together
 * on a VM (one vCPU is often slower: perf of a 110M decode step at 2 threads
 * showed the main thread 28% longer in linear_rows than the worker, which
 * then waited), and the step waits for the slower one. Why not OpenMP's
 * dynamic schedule: it hands out chunks round-robin, so no thread reads one
 * long sequential run of weights and the hardware prefetchers restart at
 * every chunk (the 10.9M decode step measured 0.78 -> 1.04 ms with
 * schedule(dynamic, 8 blocks)). Here a thread's own range is read front to
 * back as one stream; stealing takes chunks from a range's back, so the owner
 * and the thief meet somewhere in the middle and the owner never jumps.
 *
 * Each range is one 64-bit word, front in the low half and back in the high
 * half, claimed by compare-and-swap: the owner moves the front up, thieves
 * move the back down, so every index is done exactly once. Which thread does
 * which index never changes the results of the callers (they compute each
 * output the same way wherever it runs).
 *
 * Also cpu_seg_plan_init: the numbering of the output blocks of several
 * matrices as one index range for cpu_parfor_steal (the multi ops). */
#include "cpu_impl.h"

#include <limits.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>

struct steal_range {
    _Alignas(64) _Atomic uint64_t fb; /* front | back << 32; empty when front >= back */
};

static inline uint64_t pack(uint32_t f, uint32_t b) { return f | (uint64_t)b << 32; }

/* Claims [i0, i1) of at most chunk indices from the front (back = 0) or the
 * back of r; 0 when r is empty. */
static int take(struct steal_range *r, int chunk, int back, int *i0, int *i1)
{
    uint64_t v = atomic_load_explicit(&r->fb, memory_order_relaxed);
    for (;;) {
        uint32_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
        if (f >= b)
            return 0;
        uint32_t n = b - f < (uint32_t)chunk ? b - f : (uint32_t)chunk;
        uint64_t nv = back ? pack(f, b - n) : pack(f + n, b);
        if (atomic_compare_exchange_weak_explicit(&r->fb, &v, nv, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *i0 = (int)(back ? b - n : f);
            *i1 = (int)(back ? b : f + n);
            return 1;
        }
    }
}

void cpu_parfor_steal(int nt, int n, int chunk, void (*fn)(void *arg, int i0, int i1), void *arg)
{
    if (chunk < 1)
        chunk = 1;
    /* a thread gets a chunk or more: below ~64 KB of weights the region's
     * cost (3 us for two threads, bench/omp_region.c) outweighs the split
     * (an int8 15M decode step runs 1.1x faster than when splitting those) */
    if (nt > n / chunk)
        nt = n / chunk;
    if (nt <= 1) {
        if (n > 0)
            fn(arg, 0, n);
        return;
    }
    struct steal_range r[nt];
    for (int t = 0; t < nt; t++)
        atomic_init(&r[t].fb, pack((uint32_t)((long)n * t / nt), (uint32_t)((long)n * (t + 1) / nt)));
#pragma omp parallel num_threads(nt)
    {
        /* a smaller team than asked for leaves ranges without an owner: the
         * thieves' loop below takes them whole */
        int t = omp_get_thread_num(), i0, i1;
        while (take(&r[t], chunk, 0, &i0, &i1))
            fn(arg, i0, i1);
        for (;;) {
            int v = -1;
            uint32_t most = 0;
            for (int s = 0; s < nt; s++) {
                uint64_t fb = atomic_load_explicit(&r[s].fb, memory_order_relaxed);
                uint32_t f = (uint32_t)fb, b = (uint32_t)(fb >> 32);
                if (b > f && b - f > most)
                    most = b - f, v = s;
            }
            if (v < 0)
                break;
            if (take(&r[v], chunk, 1, &i0, &i1))
                fn(arg, i0, i1);
        }
    }
}

int cpu_seg_plan_init(struct cpu_seg_plan *p, const char *op, const struct llm_rows_seg *seg, int nseg,
                      int N, int C, int oblk, size_t *touched)
{
    if (nseg < 1 || nseg > LLM_ROWS_MAX_SEGS)
        return llm_err(LLM_EINVAL, "%s: %d matrices (1..%d)", op, nseg, LLM_ROWS_MAX_SEGS);
    int rc = cpu_check_dims(op, N, C);
    if (rc)
        return rc;
    *p = (struct cpu_seg_plan){seg, nseg, oblk, {0}};
    *touched = 0;
    for (int m = 0; m < nseg; m++) {
        if ((rc = cpu_check_dims(op, N, seg[m].OC)))
            return rc;
        long nb = ((long)seg[m].OC + oblk - 1) / oblk;
        if (p->first[m] + nb > INT_MAX)
            return llm_err(LLM_EINVAL, "%s: more than %d output blocks", op, INT_MAX);
        p->first[m + 1] = p->first[m] + (int)nb;
        *touched += (size_t)seg[m].OC * C;
    }
    return 0;
}
