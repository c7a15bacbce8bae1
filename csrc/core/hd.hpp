// Marks formulas shared by the CPU kernels and the CUDA kernels.
#pragma once
#if defined(__CUDACC__)
#define DN_HD __host__ __device__ inline
#else
#define DN_HD inline
#endif
