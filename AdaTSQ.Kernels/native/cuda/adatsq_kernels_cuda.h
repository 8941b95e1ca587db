/* AdaTSQ.NET CUDA integer kernels: C API of libadatsq_kernels_cuda (opt-in, built by build.sh).
 *
 * Conventions follow native/include/adatsq_kernels.h:
 *  - every pointer is a DEVICE pointer to contiguous row-major memory;
 *  - weights W are [N, K]: int8 codes (bits 5-8, leading dimension ldw bytes) or packed int4
 *    (bits 2-4): row n holds ceil(K/2) bytes, two signed 4-bit codes per byte, low nibble = even column;
 *  - weight scales are float32 [N, groups], groups = ceil(K / group) (group = 0: one per channel);
 *  - C[m, n] = act_scale[m] * sum_g w_scale[n, g] * (sum_{k in g} A[m, k] * W[n, k]) + bias[n];
 *  - functions return a status (0 = ok) and never abort; they run on CUDA device `device` (the calling
 *    thread's current device is restored afterwards) and on `stream` (NULL = the legacy default stream).
 * The kernels are asynchronous on `stream`; a launch error is reported, an execution error surfaces
 * at the caller's next synchronisation. */
#ifndef ADATSQ_KERNELS_CUDA_H
#define ADATSQ_KERNELS_CUDA_H
#include <stdint.h>

#if defined(_WIN32)
#define ADATSQ_CUDA_API __declspec(dllexport)
#else
#define ADATSQ_CUDA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define ADATSQ_CUDA_ABI_VERSION 1

typedef enum adatsq_cuda_status {
  ADATSQ_CUDA_OK = 0,
  ADATSQ_CUDA_BAD_ARGUMENT = 1,
  ADATSQ_CUDA_NO_DEVICE = 2,
  ADATSQ_CUDA_LAUNCH_FAILED = 3
} adatsq_cuda_status;

/* ABI version of this library (ADATSQ_CUDA_ABI_VERSION). */
ADATSQ_CUDA_API int adatsq_cuda_abi_version(void);

/* Number of CUDA devices; 0 (not an error) when there is no driver or no device. */
ADATSQ_CUDA_API int adatsq_cuda_device_count(void);

/* Last CUDA runtime error text of this thread's most recent failed call ("" if none). */
ADATSQ_CUDA_API const char* adatsq_cuda_last_error(void);

/* Per-token (per-row) dynamic quantization of x [m, k] (row stride ldx floats) to bits-bit signed
 * codes stored as int8 q [m, k] (row stride ldq), scale[m] = max|x_row| * clip / (2^(bits-1) - 1)
 * (at least 1e-12), q = clamp(round_half_even(x / scale), -qmax, qmax). bits 2-8, 0 < clip <= 1. */
ADATSQ_CUDA_API int adatsq_cuda_quantize_rows(const float* x, int64_t m, int64_t k, int64_t ldx, int bits, float clip,
                              int8_t* q, int64_t ldq, float* scale, int device, void* stream);

/* Integer GEMM with the fused epilogue described above; fp32 C [m, n] (row stride ldc).
 * weight_bits 5-8: W int8 [n, ldw >= k]; weight_bits 2-4: W packed int4 [n, ldw >= ceil(k/2)].
 * bias may be NULL. group 0 = per-channel scales. */
ADATSQ_CUDA_API int adatsq_cuda_gemm(const int8_t* a, int64_t lda, const float* act_scale,
                     const void* w, int64_t ldw, int weight_bits, const float* w_scale, int64_t group,
                     const float* bias, float* c, int64_t ldc, int64_t m, int64_t n, int64_t k,
                                     int device, void* stream);

#ifdef __cplusplus
}
#endif
#endif
