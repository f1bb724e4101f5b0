/* device.h: what this build can compute on and what it finds at run time:
 * the backends compiled in, the CPU's threads and BLAS, and CUDA devices
 * (probed by kernels/probe.cu when built with CUDA). */
#ifndef LLM_CORE_DEVICE_H
#define LLM_CORE_DEVICE_H

#ifdef __cplusplus
extern "C" {
#endif

#define LLM_MAX_GPUS 16

struct llm_gpu_info {
    char name[256];
    int cc_major, cc_minor;      /* compute capability */
    unsigned long long mem_bytes;
    int sm_count;
};

struct llm_device_report {
    int cuda_built;              /* 1 if this binary has the CUDA backend */
    int cuda_runtime;            /* e.g. 13000; 0 if not built */
    int cuda_driver;             /* 0 when no driver is installed */
    int cublas_version;          /* e.g. 130100 */
    int cublaslt_version;
    int nccl_version;            /* e.g. 22803 */
    int n_gpus;                  /* devices found at run time */
    struct llm_gpu_info gpu[LLM_MAX_GPUS];
    char cuda_status[256];       /* why n_gpus is 0, in words ("" when > 0) */
    int cpu_threads;             /* OpenMP threads available */
    char blas[128];              /* OpenBLAS config string */
};

/* Fills r. Never fails: a missing GPU or driver is reported in cuda_status. */
void llm_device_probe(struct llm_device_report *r);

#ifdef LLM_CUDA
/* kernels/probe.cu: fills the CUDA fields of r. */
void llm_cuda_probe(struct llm_device_report *r);
#endif

#ifdef __cplusplus
}
#endif
#endif
