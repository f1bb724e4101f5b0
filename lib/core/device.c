/* device.c: the CPU half of the device report; the CUDA half is in
 * kernels/probe.cu and is linked only into CUDA builds. */
#include "device.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

/* OpenBLAS exports its build configuration ("OpenBLAS 0.3.21 DYNAMIC_ARCH ..."). */
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);

void llm_device_probe(struct llm_device_report *r)
{
    memset(r, 0, sizeof(*r));
    r->cpu_threads = omp_get_max_threads();
    snprintf(r->blas, sizeof(r->blas), "%s (%s kernels)", openblas_get_config(),
             openblas_get_corename());
#ifdef LLM_CUDA
    r->cuda_built = 1;
    llm_cuda_probe(r);
#else
    snprintf(r->cuda_status, sizeof(r->cuda_status), "not built (make CUDA=1 with nvcc)");
#endif
}
