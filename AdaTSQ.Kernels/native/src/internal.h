// Internal interface between the ISA-independent code (api.cpp, gemm_driver.cpp, row_jobs.cpp) and the
// per-ISA translation units (kernel_*.cpp).
#pragma once
#include <cstdint>
#include <cstddef>
#include "adatsq_kernels.h"

namespace adatsq {

constexpr int NR = ADATSQ_NR;

// One micro-tile: rows x cols (<= mr x NR) of C from a packed A block and one packed B panel.
struct TileArgs {
  const uint8_t* ap;       // packed A: [k4][mr][4] bytes (+128 for VNNI paths)
  const uint8_t* bp;       // packed B panel: wbits 8: [k4][NR][4]; wbits 4: [k4/2][NR][4] nibbles
  int64_t group_steps;     // k4 steps per group: >= 1, even for wbits 4 (the asm k loops count it down to 0)
  int64_t groups;
  const int32_t* colsum;   // [groups][np], at the panel's first column
  const float* sb;         // [groups][np], at the panel's first column
  int64_t np;
  const float* sa;         // at the tile's first row
  // Per-group activation scales: 0 = one scale per row (sa[r]); else sa is [rows][sa_ld] and the
  // scale of row r in kernel group g is sa[r * sa_ld + g / sa_div] (sa_div = a_group / group kernel
  // groups per activation group), folded per group with sb: f += float(acc_g) * sb[g] * sa[r, g].
  int64_t sa_ld;
  int64_t sa_div;
  const float* bias;       // at the panel's first column, or null
  void* c;                 // at (row0, col0)
  int64_t ldc;
  int rows, cols;
  int wbits;
  int out_int32;
};

using TileFn = void (*)(const TileArgs*);
using QuantRowsFn = void (*)(const float* x, int64_t k, int32_t qmax, float clip, int8_t* q, float* scale);
using LnModRowFn = void (*)(const float* x, int64_t k, float eps, const float* shift, const float* scale, float* out);
// Packs one block of mr rows of int8 codes (rows[r] = k codes of row r; rows past the matrix point to
// zeros) into [steps][mr][4] bytes, each byte XOR flip (0x80 for the VNNI u8 operand), zero-padded
// from k to steps * 4. Null in a table: the driver packs row by row.
using PackBlockFn = void (*)(const int8_t* const* rows, int64_t k, int64_t steps, uint8_t flip, uint8_t* blk);
using PostRowsFn = void (*)(float* c, int64_t ldc, int rows, int cols, int64_t row0, int64_t col0, const adatsq_linear_ops* ops);
// out[i] = x[i] * s[i] (the input scale of the prologue).
using ScaleRowFn = void (*)(const float* x, int64_t k, const float* s, float* out);
// The low-rank down-projection of one row: t[j] = sum_i x[i] * down[j * ld_down + i], j < rank.
using LowRankDownFn = void (*)(const float* x, int64_t k, const float* down, int64_t ld_down, int64_t rank, float* t);
// The low-rank up-projection added to a finished tile: c[r, c] += sum_j t[r * ldt + j] * up_t[j * NR + c] for
// rows < rows, c < cols (up_t: the panel's up factor transposed to [rank][NR], zero past the matrix's columns).
// The rotation of ops (rot_block > 0) on one row of k floats, in place; tmp: k floats of scratch (rot_order > 1).
using RotateRowFn = void (*)(float* x, int64_t k, const adatsq_linear_ops* ops, float* tmp);
using LowRankUpFn = void (*)(float* c, int64_t ldc, int rows, int cols, const float* t, int64_t ldt, const float* up_t, int64_t rank);

struct IsaKernels {
  int mr;            // rows per micro-tile
  bool offset_a;     // A packed as a + 128 (u8 operand of vpdpbusd); epilogue subtracts 128 * colsum
  TileFn tile;
  QuantRowsFn quant_row;
  LnModRowFn ln_mod_row;   // fused_ops.inc
  PostRowsFn post_rows;    // fused_ops.inc
  PackBlockFn pack_block;  // optional (see PackBlockFn)
  ScaleRowFn scale_row;        // fused_ops.inc
  LowRankDownFn lowrank_down;  // fused_ops.inc
  LowRankUpFn lowrank_up;      // fused_ops.inc
  RotateRowFn rotate_row;      // fused_ops.inc
};

// Each returns false when the translation unit was not compiled with that ISA.
bool kernels_scalar(IsaKernels* out);
bool kernels_avx2(IsaKernels* out);
bool kernels_avxvnni(IsaKernels* out);
bool kernels_avx512vnni(IsaKernels* out);

int64_t vnni_peak_avx512(int64_t iterations);   // returns multiply-adds done (per thread)
int64_t vnni_peak_avxvnni(int64_t iterations);

}  // namespace adatsq
