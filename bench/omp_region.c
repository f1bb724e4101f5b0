/* omp_region.c: what one OpenMP parallel region costs here, against the bare
 * loop it wraps (bench/README.md "OpenMP region cost"; the reason for
 * CPU_PARFOR in lib/nn/cpu/cpu_impl.h).
 *
 *   build/cpu/bench/omp_region [REGIONS]
 *
 * Times REGIONS (default 200000) back-to-back `parallel for` regions of 10
 * trivial iterations with num_threads(1) and with num_threads(all cores),
 * and the same loop with no region; prints microseconds per region and one
 * "RESULT ..." line. Best of 5 samples each (wall clock). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile double sink;

__attribute__((noinline)) static void body(int j) { sink += j; }

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Seconds per region of nt threads (nt = 0: no region, the bare loop). */
static double per_region(int nt, long n)
{
    double best = 1e30;
    for (int s = 0; s < 5; s++) {
        double t0 = now();
        for (long i = 0; i < n; i++) {
            if (nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
                for (int j = 0; j < 10; j++)
                    body(j);
            } else {
                for (int j = 0; j < 10; j++)
                    body(j);
            }
        }
        double dt = (now() - t0) / n;
        best = dt < best ? dt : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    if (n < 1) {
        fprintf(stderr, "usage: omp_region [REGIONS >= 1]\n");
        return 2;
    }
    int all = omp_get_max_threads();
    double bare = per_region(0, n), one = per_region(1, n), many = per_region(all, n);
    printf("bare loop %.3f us, region of 1 thread %.2f us, region of %d threads %.2f us\n", bare * 1e6,
           one * 1e6, all, many * 1e6);
    printf("RESULT bare_us=%.3f one_thread_us=%.3f threads=%d all_threads_us=%.3f\n", bare * 1e6, one * 1e6,
           all, many * 1e6);
    return 0;
}
