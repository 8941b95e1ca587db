// Internal interface between the C ABI layer (api.cpp: argument checks, ISA table, status codes),
// the GEMM driver (gemm_driver.cpp: blocking, tasks, threads) and the row jobs (row_jobs.cpp: the
// per-row work the thread pool runs: packing / quantizing A, the fused prologue and epilogue
// passes, the VNNI peak loop). Nothing here checks its arguments: api.cpp has checked them all
// before any of these functions runs.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>
#include "internal.h"

namespace adatsq {

constexpr int64_t MC = 128;      // rows per task (multiple of every MR)
constexpr int64_t NC_PANELS = 8; // 48-column panels per task (before balancing, gemm_driver.cpp)

// One GEMM call. A is packed once per call, before the tile tasks, into
// [blocks of mr rows][steps][mr][4] (zero-padded, +128 for the VNNI paths) in a buffer owned by
// the calling thread, so that every column task reads the same packed rows.
struct GemmJob {
  const adatsq_gemm_args* p;
  const IsaKernels* kern;
  int64_t steps;        // k4 steps (padded)
  int64_t mblocks, nblocks, nc_panels, panels;
  uint8_t* ap;          // packed A
  const float* sa;      // activation scales (p->sa, or the ones the fused quantizer wrote)
  int64_t a_group;      // 0: per-row activation scales; else columns per activation scale group (p->a_group)
  int64_t ldsa;         // row stride of sa when a_group > 0 (p->ldsa, or K / a_group for the fused quantizer's)
  // fused activation quantization (adatsq_linear): x [m, ldx] float32 -> codes straight into ap
  const float* x;
  int64_t ldx;
  int32_t qmax;
  float clip;
  float* sa_out;
  const adatsq_linear_ops* ops;  // fused prologue / epilogue, or null
  bool post;                     // ops has epilogue work (activation, residual)
  int64_t rank;                  // ops->rank (the low-rank branch), or 0
  float* lr_t;                   // [m, rank]: each row's down-projection, written by its pack task
  const float* up_t;             // [panels][rank][NR]: the up factor transposed per panel (run_gemm)
  std::atomic<int32_t>* packed;  // [mblocks]: 1 once that row block of A is packed
  mutable std::atomic<int32_t> failed{0};  // a pack task could not allocate its row buffer
};

// Bytes of one packed block of mr rows of A.
inline int64_t block_bytes(const GemmJob& job) { return job.steps * job.kern->mr * 4; }

// True when ops has work on the input rows (LayerNorm + modulate, the input scale, the rotation).
inline bool has_prologue(const adatsq_linear_ops* ops) { return ops && (ops->layer_norm || ops->input_scale || ops->rot_block > 0); }

// The prologue of ops on row i of x into out (k floats): LayerNorm + modulate (when ops->layer_norm), then the input
// scale, then the rotation (each when set); tmp: k floats of scratch for the rotation's dense factor. ops has a
// prologue (has_prologue).
inline void prologue_row(const IsaKernels* kern, const adatsq_linear_ops* ops, const float* x, int64_t i, int64_t k, float* out,
                         float* tmp) {
  const float* src = x;
  if (ops->layer_norm) {
    const int64_t sample = i / ops->rows_per_sample;
    kern->ln_mod_row(x, k, ops->eps, ops->shift ? ops->shift + sample * ops->ld_mod : nullptr,
                     ops->scale ? ops->scale + sample * ops->ld_mod : nullptr, out);
    src = out;
  }
  if (ops->input_scale) {
    kern->scale_row(src, k, ops->input_scale, out);
    src = out;
  }
  if (ops->rot_block > 0) {
    if (src != out) std::memcpy(out, src, sizeof(float) * (size_t)k);
    kern->rotate_row(out, k, ops, tmp);
  }
}

inline bool has_epilogue(const adatsq_linear_ops* ops) { return ops && (ops->activation != ADATSQ_ACT_NONE || ops->residual); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// api.cpp: records why the current call fails (read back by adatsq_last_error) and returns status.
int32_t fail(int32_t status, const char* format, ...) __attribute__((format(printf, 2, 3)));

// gemm_driver.cpp: packs (or quantizes and packs) A, then runs the tile tasks of job.
int32_t run_gemm(GemmJob& job);

// row_jobs.cpp
// Pack task `task` of a GEMM: rows [task * MC, +MC) of A (codes given, or quantized from x).
void pack_rows(const GemmJob& job, int64_t task);
// group = k: one scale per row (scale[m]); else k / group scales per row (scale[m * ld_scale + g]).
void run_quantize_rows(const IsaKernels* kern, const float* x, int64_t m, int64_t k, int64_t ldx, int32_t qmax, float clip,
                       int64_t group, int8_t* q, int64_t ldq, float* scale, int64_t ld_scale, int32_t threads);
// One row of k floats quantized per group of `group` columns (group = k: per row), scales at scale[0 .. k / group).
inline void quantize_row_groups(const IsaKernels* kern, const float* x, int64_t k, int32_t qmax, float clip, int64_t group,
                                int8_t* q, float* scale) {
  for (int64_t g = 0; g * group < k; g++) kern->quant_row(x + g * group, group, qmax, clip, q + g * group, scale + g);
}
int32_t run_layernorm_modulate(const IsaKernels* kern, const float* x, int64_t m, int64_t k, int64_t ldx,
                            const adatsq_linear_ops* ops, float* out, int64_t ldo, int32_t threads);
void run_apply_epilogue(const IsaKernels* kern, float* c, int64_t m, int64_t n, int64_t ldc, const adatsq_linear_ops* ops,
                        int32_t threads);
// iterations >= 1 (the peak loops count down with dec / jnz).
void run_vnni_peak(int32_t isa, int64_t iterations, int32_t threads, double* seconds, double* ops);

}  // namespace adatsq
