// AVX-512 VNNI path: 8 x 48 micro-tile, 24 zmm int32 accumulators, 512-bit vpdpbusd
// (u8 activations + 128 times s8 weights; the epilogue subtracts 128 * column sums).
#include <cmath>
#include <cstring>
#include "internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>

namespace adatsq {
namespace {

constexpr int MR = 8;

inline __m512i bcast(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Integer dot products of one group: acc[r][j] = sum over `steps` k4 steps.
template <bool W4>
__attribute__((always_inline)) inline void group_dot(const uint8_t* a, const uint8_t* b, int64_t steps, __m512i (&acc)[MR][3]) {
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 3
    for (int j = 0; j < 3; j++) acc[r][j] = _mm512_setzero_si512();
  if constexpr (!W4) {
    for (int64_t s = 0; s < steps; s++, a += MR * 4, b += NR * 4) {
      const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64), b2 = _mm512_loadu_si512(b + 128);
#pragma GCC unroll 8
      for (int r = 0; r < MR; r++) {
        const __m512i va = bcast(a + r * 4);
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], va, b0);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], va, b1);
        acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], va, b2);
      }
    }
  } else {
    const __m512i high = _mm512_set1_epi8((char)0xF0);
    for (int64_t s = 0; s < steps; s += 2, a += 2 * MR * 4, b += NR * 4) {
      // Even step: low nibbles moved up (16 * w); odd step: high nibbles in place (16 * w).
      __m512i b0 = _mm512_and_si512(_mm512_slli_epi16(_mm512_loadu_si512(b), 4), high);
      __m512i b1 = _mm512_and_si512(_mm512_slli_epi16(_mm512_loadu_si512(b + 64), 4), high);
      __m512i b2 = _mm512_and_si512(_mm512_slli_epi16(_mm512_loadu_si512(b + 128), 4), high);
#pragma GCC unroll 8
      for (int r = 0; r < MR; r++) {
        const __m512i va = bcast(a + r * 4);
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], va, b0);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], va, b1);
        acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], va, b2);
      }
      b0 = _mm512_and_si512(_mm512_loadu_si512(b), high);
      b1 = _mm512_and_si512(_mm512_loadu_si512(b + 64), high);
      b2 = _mm512_and_si512(_mm512_loadu_si512(b + 128), high);
#pragma GCC unroll 8
      for (int r = 0; r < MR; r++) {
        const __m512i va = bcast(a + MR * 4 + r * 4);
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], va, b0);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], va, b1);
        acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], va, b2);
      }
    }
  }
}

inline __mmask16 col_mask(int cols, int j) {
  int n = cols - 16 * j;
  return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

template <bool W4>
void tile(const TileArgs* t) {
  __m512i acc[MR][3];
  __m512 f[MR][3];
  const int64_t step_bytes_b = W4 ? NR * 2 : NR * 4;  // bytes of packed B per k4 step
  for (int64_t g = 0; g < t->groups; g++) {
    group_dot<W4>(t->ap + g * t->group_steps * MR * 4, t->bp + g * t->group_steps * step_bytes_b, t->group_steps, acc);
#pragma GCC unroll 3
    for (int j = 0; j < 3; j++) {
      const __m512i cs = _mm512_slli_epi32(_mm512_loadu_si512(t->colsum + g * t->np + 16 * j), 7);
      const __m512 sc = _mm512_loadu_ps(t->sb + g * t->np + 16 * j);
#pragma GCC unroll 8
      for (int r = 0; r < MR; r++) {
        acc[r][j] = _mm512_sub_epi32(acc[r][j], cs);
        const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][j]), sc);
        f[r][j] = g == 0 ? v : _mm512_add_ps(f[r][j], v);
      }
    }
  }
  for (int r = 0; r < t->rows; r++) {
    if (t->out_int32) {
      int32_t* out = (int32_t*)t->c + r * t->ldc;
      for (int j = 0; j < 3; j++) {
        __m512i v = W4 ? _mm512_srai_epi32(acc[r][j], 4) : acc[r][j];
        _mm512_mask_storeu_epi32(out + 16 * j, col_mask(t->cols, j), v);
      }
    } else {
      float* out = (float*)t->c + r * t->ldc;
      const __m512 sa = _mm512_set1_ps(t->sa[r]);
      for (int j = 0; j < 3; j++) {
        const __mmask16 m = col_mask(t->cols, j);
        if (!m) break;
        const __m512 bias = t->bias ? _mm512_maskz_loadu_ps(m, t->bias + 16 * j) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(out + 16 * j, m, _mm512_fmadd_ps(f[r][j], sa, bias));
      }
    }
  }
}

void tile_any(const TileArgs* t) {
  if (t->wbits == 4) tile<true>(t); else tile<false>(t);
}

void quant_row_avx512(const float* x, int64_t k, int32_t qmax, float clip, int8_t* q, float* scale) {
  __m512 m = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  if (i < k) {
    const __mmask16 tail = (__mmask16)((1u << (k - i)) - 1);
    m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, x + i)));
  }
  const float amax = _mm512_reduce_max_ps(m);
  float s = (amax * clip) / (float)qmax;
  if (!(s >= 1e-12f)) s = 1e-12f;
  *scale = s;
  const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps((float)-qmax), hi = _mm512_set1_ps((float)qmax);
  for (i = 0; i < k; i += 16) {
    const __mmask16 mk = k - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - i)) - 1);
    __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(mk, x + i), vs);
    v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);  // NaN -> lo/hi handled by max/min operand order
    _mm512_mask_cvtsepi32_storeu_epi8(q + i, mk, _mm512_cvtps_epi32(v));
  }
}

}  // namespace

bool kernels_avx512vnni(IsaKernels* out) {
  out->mr = MR;
  out->offset_a = true;
  out->tile = tile_any;
  out->quant_row = quant_row_avx512;
  return true;
}

// Register-only throughput loop: 24 independent accumulators (zmm0-zmm23), both sources in
// registers, no loads or stores. Written in assembly so that the compiler cannot spill them.
int64_t vnni_peak_avx512(int64_t iterations) {
  int64_t n = iterations;
  __asm__ volatile(
      "vpternlogd $0xff, %%zmm30, %%zmm30, %%zmm30\n\t"
      "vpternlogd $0xff, %%zmm31, %%zmm31, %%zmm31\n\t"
      "1:\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm0\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm1\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm2\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm3\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm4\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm5\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm6\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm7\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm8\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm9\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm10\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm11\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm12\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm13\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm14\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm15\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm16\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm17\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm18\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm19\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm20\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm21\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm22\n\t"
      "vpdpbusd %%zmm31, %%zmm30, %%zmm23\n\t"
      "dec %0\n\t"
      "jnz 1b\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm30", "xmm31", "cc");
  return iterations * 24 * 64;  // multiply-adds: 64 per instruction (16 lanes x 4 bytes)
}

}  // namespace adatsq
#else
namespace adatsq {
bool kernels_avx512vnni(IsaKernels*) { return false; }
int64_t vnni_peak_avx512(int64_t) { return 0; }
}  // namespace adatsq
#endif
