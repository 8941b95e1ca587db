/*
 * AdaTSQ.NET integer GEMM kernels: C ABI called by P/Invoke from AdaTSQ.Kernels.
 *
 * Convention (a linear layer): C[m, n] = sa[m] * sum_g sb[g, n] * sum_{k in g} A[m, k] * B[n, k] + bias[n]
 * with per-row activation scales (a_group = 0), or, with per-row x per-group activation scales
 * (a_group > 0, ABI version 4): C[m, n] = sum_g sa[m, g * group / a_group] * sb[g, n] * acc_g[m, n] + bias[n],
 * acc_g = sum_{k in g} A[m, k] * B[n, k] (g runs over the kernel groups of `group` columns of K).
 * A = int8 activation codes [M, K] row-major (lda >= K); B = weight codes packed once by the managed
 * side into the layout described in docs/kernels.md (panels of ADATSQ_NR columns, K in steps of 4).
 *
 * No function throws or aborts: every one returns an adatsq_status; the managed side turns a
 * non-zero status into an exception right after the call. Each entry point checks every argument it
 * can (sizes, leading dimensions, the group shape, null pointers, 64-bit overflow of offsets) before
 * any work, and adatsq_last_error() then says which check failed.
 */
#ifndef ADATSQ_KERNELS_H
#define ADATSQ_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ADATSQ_ABI_VERSION 5
#define ADATSQ_NR 48 /* columns per packed weight panel */

#if defined(_WIN32)
#define ADATSQ_API __declspec(dllexport)
#else
#define ADATSQ_API __attribute__((visibility("default")))
#endif

typedef enum adatsq_isa {
  ADATSQ_ISA_SCALAR = 1,      /* portable C */
  ADATSQ_ISA_AVX2 = 2,        /* 256-bit vpmaddubsw/vpmaddwd (sign trick, exact) */
  ADATSQ_ISA_AVXVNNI = 3,     /* 256-bit VEX vpdpbusd */
  ADATSQ_ISA_AVX512VNNI = 4   /* 512-bit EVEX vpdpbusd */
} adatsq_isa;

typedef enum adatsq_status {
  ADATSQ_OK = 0,
  ADATSQ_BAD_ARGUMENT = 1,
  ADATSQ_ISA_UNAVAILABLE = 2,
  ADATSQ_OUT_OF_MEMORY = 3,
  ADATSQ_INTERNAL = 4
} adatsq_status;

/* Arguments of one GEMM; blittable, mirrored by GemmArgs in C#. */
typedef struct adatsq_gemm_args {
  const int8_t* a;        /* [M, lda] int8 activation codes */
  int64_t lda;
  const uint8_t* b;       /* packed weights: int8 (wbits 8) or two 4-bit codes per byte (wbits 4) */
  const int32_t* colsum;  /* [groups, np]: sum over each group of the packed (kernel-unit) codes */
  const float* sb;        /* [groups, np]: weight scale per group and column (already / 16 for wbits 4) */
  const float* sa;        /* [M] activation scales (a_group 0), or [M, ldsa] (a_group > 0); ignored when out_int32 */
  const float* bias;      /* [N] or NULL */
  void* c;                /* [M, ldc] float32, or int32 when out_int32 */
  int64_t ldc;
  int64_t m, n, k;
  int64_t np;             /* N rounded up to ADATSQ_NR */
  int64_t group;          /* K per group (multiple of 4, of 8 for wbits 4); == padded K for per-channel */
  int64_t groups;         /* ceil(K / group): the last group may be partial (zero-padded), none is empty */
  int32_t wbits;          /* 8 or 4 */
  int32_t out_int32;      /* 1: C = exact int32 A*B^T (groups must be 1), no scales, no bias */
  int32_t threads;        /* >= 1 */
  int32_t isa;            /* adatsq_isa */
  /* ABI version 4: per-row x per-group activation scales. 0: one scale per row (sa [M]). > 0: one scale
   * per row and per a_group consecutive columns of K (sa [M, ldsa], K / a_group of them per row); a_group
   * must divide k, be a multiple of group (the kernel group the weights were packed with: pack the
   * weights at a_group, or at a smaller group dividing it) and out_int32 must be 0. */
  int64_t a_group;
  int64_t ldsa;           /* row stride of sa when a_group > 0 (>= k / a_group); ignored by adatsq_linear(_ex) */
} adatsq_gemm_args;

ADATSQ_API int32_t adatsq_abi_version(void);

/* Why this thread's last call of a function that returns an adatsq_status failed: a NUL-terminated
 * message in thread-local storage, overwritten by this thread's next such call; "" when that call
 * returned ADATSQ_OK. Added within ABI version 3 (additive): older version-3 libraries lack only this export. */
ADATSQ_API const char* adatsq_last_error(void);

/* Bit i set when ISA i (adatsq_isa) is compiled in and supported by this CPU and OS. */
ADATSQ_API int32_t adatsq_supported_isas(void);

/* The best ISA of adatsq_supported_isas(). */
ADATSQ_API int32_t adatsq_best_isa(void);

/* Dynamic per-row symmetric quantization: scale[m] = max(clip * max_k |x[m,k]| / qmax, 1e-12),
 * q[m,k] = clamp(round_half_even(x[m,k] / scale[m]), -qmax, qmax), qmax = 2^(bits-1) - 1.
 * Rows are split over `threads` threads. */
ADATSQ_API int32_t adatsq_quantize_rows(int32_t isa, const float* x, int64_t m, int64_t k, int64_t ldx,
                                        int32_t bits, float clip, int8_t* q, int64_t ldq, float* scale,
                                        int32_t threads);

/* Dynamic per-row x per-group symmetric quantization (ABI version 4): each row of x is cut into
 * k / group groups of `group` columns, each quantized as adatsq_quantize_rows quantizes a row:
 * scale[m, g] (row stride ld_scale >= k / group) = max(clip * max_{k in g} |x[m,k]| / qmax, 1e-12).
 * group must divide k; group = k gives adatsq_quantize_rows' result. */
ADATSQ_API int32_t adatsq_quantize_groups(int32_t isa, const float* x, int64_t m, int64_t k, int64_t ldx,
                                          int32_t bits, float clip, int64_t group, int8_t* q, int64_t ldq,
                                          float* scale, int64_t ld_scale, int32_t threads);

ADATSQ_API int32_t adatsq_gemm(const adatsq_gemm_args* args);

/* A quantized linear layer on floats: quantizes each row of x [M, ldx] float32 per token to abits
 * (as adatsq_quantize_rows; per row and per group of args->a_group columns when a_group > 0, as
 * adatsq_quantize_groups) straight into the kernel's packed A layout, then runs the dequantizing
 * GEMM of args (args->a and args->sa are ignored; out_int32 must be 0). No intermediate code
 * tensor: the codes and scales live in a buffer of the calling thread that is reused across calls. */
ADATSQ_API int32_t adatsq_linear(const adatsq_gemm_args* args, const float* x, int64_t ldx, int32_t abits, float clip);

/* Element-wise work fused around a linear layer (adatsq_linear_ex); every field 0 / NULL = none.
 * Prologue, on each row of x before it is quantized, in this order: LayerNorm without affine parameters
 * (biased variance, eps inside the square root, as torch.nn.LayerNorm), then x * (1 + scale) + shift with
 * the row's sample (row i belongs to sample i / rows_per_sample): DiT's adaLN "modulate"; then (ABI 5)
 * x[k] *= input_scale[k] (SmoothQuant: input_scale = 1 / s). The row so transformed (x~) is quantized and,
 * with a low-rank branch (ABI 5, rank > 0), multiplied by the branch's down-projection: t[m, :] = x~ . down^T
 * (float32, in a per-call buffer of rank floats per row).
 * Epilogue, on each output element after scales and bias: (ABI 5) the branch's up-projection
 * c[m, n] += sum_j t[m, j] * up[n, j]; then the activation, then c = residual + gate * c
 * (residual [M, ld_residual], may be c itself; gate per sample, NULL = 1). So the call is
 * y = Q(x~) Q(W)^T + bias + x~ down^T up^T, then the activation, then residual + gate * y. */
#define ADATSQ_ACT_NONE 0
#define ADATSQ_ACT_GELU_TANH 1 /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */

typedef struct adatsq_linear_ops {
  int32_t layer_norm;       /* 1: the LayerNorm prologue */
  float eps;                /* LayerNorm epsilon (> 0) */
  const float* shift;       /* [samples, ld_mod] or NULL; needs layer_norm */
  const float* scale;       /* [samples, ld_mod] or NULL; needs layer_norm */
  int64_t ld_mod;           /* >= K when shift or scale is set */
  int64_t rows_per_sample;  /* >= 1; rows of x and c per sample (tokens) */
  int32_t activation;       /* ADATSQ_ACT_* */
  const float* residual;    /* [M, ld_residual] or NULL */
  int64_t ld_residual;      /* >= N when residual is set */
  const float* gate;        /* [samples, ld_gate] or NULL; needs residual */
  int64_t ld_gate;          /* >= N when gate is set */
  /* ABI version 5: input_scale is prologue work (adatsq_linear_ex and adatsq_layernorm_modulate; adatsq_apply_epilogue
   * refuses it), the branch is taken by adatsq_linear_ex only: */
  const float* input_scale; /* [K] or NULL: multiplies each prologue row per channel, before quantization */
  int64_t rank;             /* 0 (no low-rank branch) .. ADATSQ_MAX_RANK */
  const float* lr_down;     /* [rank, ld_down] float32 (SVDQuant's L2) when rank > 0, else NULL */
  int64_t ld_down;          /* >= K when rank > 0 */
  const float* lr_up;       /* [N, ld_up] float32 (SVDQuant's L1) when rank > 0, else NULL */
  int64_t ld_up;            /* >= rank when rank > 0 */
  /* ABI version 5: QuaRot's online rotation of each prologue row, after the input scale, before quantization and
   * the low-rank down-projection: x <- x * rot_signs (when set); the row, cut into K / rot_block segments of
   * rot_block, gets the unnormalized fast Walsh-Hadamard transform (Sylvester order, butterflies h = 1, 2, 4, ...)
   * on each segment; with rot_order m > 1 (then K = m * rot_block) segment i becomes sum_j rot_hm[i, j] * segment j
   * (H_m (x) H_rot_block); then every element is divided by rot_divisor (sqrt(K) Kronecker, sqrt(rot_block)
   * block-diagonal). rot_block 0 = no rotation. adatsq_layernorm_modulate runs it too (it is prologue work). */
  int64_t rot_block;        /* 0, or a power of two dividing K */
  int64_t rot_order;        /* 1, or m = K / rot_block with rot_hm [m, m] */
  const float* rot_hm;      /* [rot_order, rot_order] row-major when rot_order > 1, else NULL */
  const float* rot_signs;   /* [K] or NULL */
  float rot_divisor;        /* > 0 and finite when rot_block > 0 */
} adatsq_linear_ops;

#define ADATSQ_MAX_RANK 1024 /* largest low-rank branch rank adatsq_linear_ex takes */

/* adatsq_linear with the prologue / epilogue of ops (NULL: none, the same as adatsq_linear). */
ADATSQ_API int32_t adatsq_linear_ex(const adatsq_gemm_args* args, const float* x, int64_t ldx, int32_t abits, float clip,
                                    const adatsq_linear_ops* ops);

/* The prologue of ops alone: out[m, ldo] = rotate(modulate(LayerNorm(x[m, ldx])) * input_scale), each step when set
 * (ops must have one: layer_norm, input_scale or rot_block; no low-rank branch). */
ADATSQ_API int32_t adatsq_layernorm_modulate(int32_t isa, const float* x, int64_t m, int64_t k, int64_t ldx,
                                             const adatsq_linear_ops* ops, float* out, int64_t ldo, int32_t threads);

/* The epilogue of ops alone, in place on c [m, ldc] floats (n columns); ops must have no prologue and no branch. */
ADATSQ_API int32_t adatsq_apply_epilogue(int32_t isa, float* c, int64_t m, int64_t n, int64_t ldc,
                                         const adatsq_linear_ops* ops, int32_t threads);

/* Where multi-threaded calls run: 0 (default) on the thread team of a GNU OpenMP runtime the
 * process has already loaded (libtorch's libgomp), else on the library's own threads; 1: always on
 * the library's own threads. */
ADATSQ_API int32_t adatsq_set_thread_backend(int32_t backend);

/* 1 when the last multi-threaded call ran on the host's OpenMP team (for tests and reports). */
ADATSQ_API int32_t adatsq_last_run_used_openmp(void);

/* Register-only vpdpbusd throughput loop (no memory traffic): runs `iterations` x 24 dependency-free
 * vpdpbusd on each of `threads` threads, started together behind a barrier; writes the longest
 * thread's loop time and the int8 ops done by all (2 per multiply-add). Needs ADATSQ_ISA_AVX512VNNI
 * or ADATSQ_ISA_AVXVNNI. */
ADATSQ_API int32_t adatsq_vnni_peak(int32_t isa, int64_t iterations, int32_t threads, double* seconds, double* ops);

#ifdef __cplusplus
}
#endif
#endif
