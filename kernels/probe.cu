// probe.cu: finds CUDA devices and the versions of the CUDA runtime, driver,
// cuBLAS, cuBLASLt and NCCL linked into this binary. Works with no GPU and
// no driver: it then says why in r->cuda_status and reports zero devices.
#include <cstdio>
#include <cstring>
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include <nccl.h>

#include "core/device.h"

extern "C" void llm_cuda_probe(struct llm_device_report *r)
{
    cudaRuntimeGetVersion(&r->cuda_runtime);
    if (cudaDriverGetVersion(&r->cuda_driver) != cudaSuccess)
        r->cuda_driver = 0;
    int major = 0, minor = 0, patch = 0;
    cublasGetProperty(MAJOR_VERSION, &major);
    cublasGetProperty(MINOR_VERSION, &minor);
    cublasGetProperty(PATCH_LEVEL, &patch);
    r->cublas_version = major * 10000 + minor * 100 + patch;
    r->cublaslt_version = (int)cublasLtGetVersion();
    if (ncclGetVersion(&r->nccl_version) != ncclSuccess)
        r->nccl_version = 0;

    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (r->cuda_driver == 0)
            snprintf(r->cuda_status, sizeof(r->cuda_status), "no NVIDIA driver found");
        else
            snprintf(r->cuda_status, sizeof(r->cuda_status), "%s", cudaGetErrorString(e));
        cudaGetLastError(); // clear the sticky error so later calls start clean
        r->n_gpus = 0;
        return;
    }
    if (n == 0) {
        snprintf(r->cuda_status, sizeof(r->cuda_status), "no CUDA device found");
        return;
    }
    if (n > LLM_MAX_GPUS)
        n = LLM_MAX_GPUS;
    for (int i = 0; i < n; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess)
            continue;
        struct llm_gpu_info *g = &r->gpu[r->n_gpus++];
        snprintf(g->name, sizeof(g->name), "%s", p.name);
        g->cc_major = p.major;
        g->cc_minor = p.minor;
        g->mem_bytes = p.totalGlobalMem;
        g->sm_count = p.multiProcessorCount;
    }
}
