// Portable path: plain C++ loops over the packed layouts. Ground truth for the SIMD paths' layout.
#include <cmath>
#include <cstring>
#include "internal.h"

namespace adatsq {
namespace {

#include "quant_row.inc"
#include "fused_ops.inc"

constexpr int MR = 4;

inline int32_t b_code(const uint8_t* bp, int wbits, int64_t step, int c, int kk) {
  if (wbits == 8) return (int8_t)bp[(step * NR + c) * 4 + kk];
  uint8_t byte = bp[((step >> 1) * NR + c) * 4 + kk];
  // kernel units: 16 * w (low nibble = even step, high nibble = odd step)
  return (step & 1) ? (int32_t)(int8_t)(byte & 0xF0) : (int32_t)(int8_t)(uint8_t)(byte << 4);
}

void tile_scalar(const TileArgs* t) {
  float f[MR][NR];
  int32_t last[MR][NR];
  for (int64_t g = 0; g < t->groups; g++) {
    for (int r = 0; r < t->rows; r++)
      for (int c = 0; c < t->cols; c++) {
        int32_t acc = 0;
        for (int64_t s = g * t->group_steps; s < (g + 1) * t->group_steps; s++)
          for (int kk = 0; kk < 4; kk++)
            acc += (int32_t)(int8_t)t->ap[(s * MR + r) * 4 + kk] * b_code(t->bp, t->wbits, s, c, kk);
        last[r][c] = acc;
        float v = (float)acc * t->sb[g * t->np + c];
        if (t->sa_ld > 0) {  // per-group activation scales: fold sa[r, g] with the group
          const float sa = t->sa[r * t->sa_ld + g / t->sa_div];
          f[r][c] = g == 0 ? v * sa : f[r][c] + v * sa;
        } else {
          f[r][c] = g == 0 ? v : f[r][c] + v;
        }
      }
  }
  for (int r = 0; r < t->rows; r++) {
    if (t->out_int32) {
      int32_t* out = (int32_t*)t->c + r * t->ldc;
      for (int c = 0; c < t->cols; c++) out[c] = t->wbits == 4 ? (last[r][c] >> 4) : last[r][c];
    } else {
      float* out = (float*)t->c + r * t->ldc;
      if (t->sa_ld > 0)
        for (int c = 0; c < t->cols; c++) out[c] = f[r][c] + (t->bias ? t->bias[c] : 0.f);
      else
        for (int c = 0; c < t->cols; c++) out[c] = f[r][c] * t->sa[r] + (t->bias ? t->bias[c] : 0.f);
    }
  }
}

}  // namespace

bool kernels_scalar(IsaKernels* out) {
  out->mr = MR;
  out->offset_a = false;
  out->tile = tile_scalar;
  out->quant_row = quant_row_impl;
  out->ln_mod_row = ln_mod_row_impl;
  out->post_rows = post_rows_impl;
  out->scale_row = scale_row_impl;
  out->lowrank_down = lowrank_down_impl;
  out->lowrank_up = lowrank_up_impl;
  out->rotate_row = rotate_row_impl;
  return true;
}

}  // namespace adatsq
