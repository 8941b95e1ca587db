// AVX-512 VNNI path: 8 x 48 micro-tile, 24 zmm int32 accumulators, 512-bit vpdpbusd
// (u8 activations + 128 times s8 weights; the epilogue subtracts 128 * column sums).
#include <cmath>
#include <cstring>
#include "internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>

namespace adatsq {
namespace {

#include "fused_ops.inc"

constexpr int MR = 8;

inline __m512i bcast(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

inline __mmask16 col_mask(int cols, int j) {
  int n = cols - 16 * j;
  return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

// The k loops of one 8 x 48 tile are inline assembly (the macros of kernel_avx512vnni_asm.inc):
// GCC compiles the same loop written with intrinsics with a register copy and a stack store of every
// accumulator on each k step.
// dot_w8 / dot_w4: one group (per-channel weights), the int32 sums stored to c [8][48].
// *_group: one of several scale groups; folds the group into p [8][48] floats in registers:
// p += sb * float(acc - 128 * colsum), colsum and sb at the panel's columns of this group.
// Each needs steps >= 1 (even for 4-bit weights): see the loop counts in kernel_avx512vnni_asm.inc.
#include "kernel_avx512vnni_asm.inc"

void dot_w8(const uint8_t* a, const uint8_t* b, int64_t steps, int32_t* c) {
  __asm__ volatile(
      ADATSQ_ZERO_ACC ADATSQ_K_LOOP_W8 ADATSQ_STORE_INT32
      : [a] "+r"(a), [b] "+r"(b), [n] "+r"(steps)
      : [c] "r"(c)
      : ADATSQ_ALL_ZMM, "cc", "memory");
}

void dot_w8_group(const uint8_t* a, const uint8_t* b, int64_t steps, const int32_t* cs, const float* sc, float* p) {
  __asm__ volatile(
      ADATSQ_ZERO_ACC ADATSQ_K_LOOP_W8 ADATSQ_FOLD_GROUP
      : [a] "+r"(a), [b] "+r"(b), [n] "+r"(steps)
      : [cs] "r"(cs), [sc] "r"(sc), [p] "r"(p)
      : ADATSQ_ALL_ZMM, "cc", "memory");
}

// W4: each 64-byte load of B holds two k4 steps, step 2t in the low and 2t+1 in the high nibbles;
// both are used as 16 * w (low: shifted up 4 bits, high: masked in place). steps is even.
void dot_w4(const uint8_t* a, const uint8_t* b, int64_t steps, int32_t* c) {
  const int32_t high = (int32_t)0xF0F0F0F0;
  __asm__ volatile(
      ADATSQ_ZERO_ACC "vpbroadcastd %[high], %%zmm31\n\t" ADATSQ_K_LOOP_W4 ADATSQ_STORE_INT32
      : [a] "+r"(a), [b] "+r"(b), [n] "+r"(steps)
      : [c] "r"(c), [high] "m"(high)
      : ADATSQ_ALL_ZMM, "cc", "memory");
}

void dot_w4_group(const uint8_t* a, const uint8_t* b, int64_t steps, const int32_t* cs, const float* sc, float* p) {
  const int32_t high = (int32_t)0xF0F0F0F0;
  __asm__ volatile(
      ADATSQ_ZERO_ACC "vpbroadcastd %[high], %%zmm31\n\t" ADATSQ_K_LOOP_W4 ADATSQ_FOLD_GROUP
      : [a] "+r"(a), [b] "+r"(b), [n] "+r"(steps)
      : [cs] "r"(cs), [sc] "r"(sc), [p] "r"(p), [high] "m"(high)
      : ADATSQ_ALL_ZMM, "cc", "memory");
}

// Per-group 4-bit weights, half a tile at a time (4 rows x 48 columns), so that the running fp32
// sums stay in registers instead of being folded through memory after every group. Per group: zero
// the accumulators, run the group's k4 steps, then p += sb * float(acc - 128 * colsum) (one fma: the
// same operation and rounding as the fold through memory). a points at the half's first row inside
// the 8-row packed block (+16 bytes for rows 4-7). Both halves read the whole weight panel, so this
// pays only while the panel stays in L1: 4-bit panels up to kHalvesMaxPanelBytes take it; larger
// ones and all 8-bit weights fold through memory in tile() (measurements in
// docs/kernels.md, "Design history").
constexpr int64_t kHalvesMaxPanelBytes = 32 * 1024;

// p [4][48] floats = the half tile's sums over all groups. gstride = np * 4 bytes (one group of
// column sums or scales).
void groups_w4(const uint8_t* a, const uint8_t* b, int64_t steps, int64_t groups, const int32_t* cs, const float* sc,
               int64_t gstride, float* p) {
  const int32_t high = (int32_t)0xF0F0F0F0;
  int64_t n;
  __asm__ volatile(
      ADATSQ_G_ZERO_P "vpbroadcastd %[high], %%zmm31\n\t"
      "2:\n\t" ADATSQ_G_ZERO_ACC "mov %[steps], %[n]\n\t" ADATSQ_G_K_LOOP_W4 ADATSQ_G_FOLD
      "dec %[g]\n\tjnz 2b\n\t" ADATSQ_G_STORE_P
      : [a] "+r"(a), [b] "+r"(b), [n] "=&r"(n), [g] "+r"(groups), [cs] "+r"(cs), [sc] "+r"(sc)
      : [steps] "r"(steps), [gstride] "r"(gstride), [p] "r"(p), [high] "m"(high)
      : ADATSQ_ALL_ZMM, "cc", "memory");
}

// Epilogue of a full 8 x 48 tile with one group, in registers: ADATSQ_EPILOGUE_F32 after the k loop.
alignas(64) const float kZeroBias[NR] = {};

void dot_w8_f32(const uint8_t* a, const uint8_t* b, int64_t steps, const int32_t* cs, const float* sc,
                const float* sa, const float* bias, float* c, int64_t ldcb) {
  __asm__ volatile(
      ADATSQ_ZERO_ACC ADATSQ_K_LOOP_W8 ADATSQ_EPILOGUE_F32
      : [a] "+r"(a), [b] "+r"(b), [n] "+r"(steps), [c] "+r"(c)
      : [cs] "r"(cs), [sc] "r"(sc), [sa] "r"(sa), [bias] "r"(bias), [ldcb] "r"(ldcb)
      : ADATSQ_ALL_ZMM, "cc", "memory");
}

void dot_w4_f32(const uint8_t* a, const uint8_t* b, int64_t steps, const int32_t* cs, const float* sc,
                const float* sa, const float* bias, float* c, int64_t ldcb) {
  const int32_t high = (int32_t)0xF0F0F0F0;
  __asm__ volatile(
      ADATSQ_ZERO_ACC "vpbroadcastd %[high], %%zmm31\n\t" ADATSQ_K_LOOP_W4 ADATSQ_EPILOGUE_F32
      : [a] "+r"(a), [b] "+r"(b), [n] "+r"(steps), [c] "+r"(c)
      : [cs] "r"(cs), [sc] "r"(sc), [sa] "r"(sa), [bias] "r"(bias), [ldcb] "r"(ldcb), [high] "m"(high)
      : ADATSQ_ALL_ZMM, "cc", "memory");
}

// One MR x NR tile with per-row x per-group activation scales (TileArgs::sa_ld > 0): per kernel group,
// the assembly k loop (dot_w8 / dot_w4) stores the int32 sums, then the fold
// p = fma(sb * float(acc - 128 * colsum), sa[r, g], p) applies both scales of the group; the epilogue adds
// the bias only (sa is already in p). The int32 sums go through memory (1.5 KiB per group, in L1)
// because the register-only folds (ADATSQ_FOLD_GROUP, groups_w4) share one scale vector by all rows.
template <bool W4>
void tile_activation_groups(const TileArgs* t) {
  alignas(64) int32_t acc[MR][NR];
  alignas(64) float part[MR][NR];
  const int rows = t->rows;
  const int64_t groups = t->groups, gs = t->group_steps, np = t->np;
  const int64_t step_bytes_b = W4 ? NR * 2 : NR * 4;
  for (int64_t g = 0; g < groups; g++) {
    const uint8_t* a = t->ap + g * gs * MR * 4;
    const uint8_t* b = t->bp + g * gs * step_bytes_b;
    if (W4) dot_w4(a, b, gs, &acc[0][0]); else dot_w8(a, b, gs, &acc[0][0]);
    const int64_t sa_col = g / t->sa_div;
    for (int j = 0; j < 3; j++) {
      const __m512i cs = _mm512_slli_epi32(_mm512_loadu_si512(t->colsum + g * np + 16 * j), 7);
      const __m512 sc = _mm512_loadu_ps(t->sb + g * np + 16 * j);
      for (int r = 0; r < rows; r++) {
        const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(&acc[r][16 * j]), cs)), sc);
        const __m512 sa = _mm512_set1_ps(t->sa[r * t->sa_ld + sa_col]);
        _mm512_store_ps(&part[r][16 * j], g == 0 ? _mm512_mul_ps(v, sa) : _mm512_fmadd_ps(v, sa, _mm512_load_ps(&part[r][16 * j])));
      }
    }
  }
  for (int j = 0; j < 3; j++) {
    const __mmask16 m = col_mask(t->cols, j);
    if (!m) break;
    const __m512 bias = t->bias ? _mm512_maskz_loadu_ps(m, t->bias + 16 * j) : _mm512_setzero_ps();
    for (int r = 0; r < rows; r++)
      _mm512_mask_storeu_ps((float*)t->c + r * t->ldc + 16 * j, m, _mm512_add_ps(_mm512_load_ps(&part[r][16 * j]), bias));
  }
}

// One MR x NR tile: for each scale group, the integer dot products over its k4 steps (A packed
// [steps][MR][4] as u8 = a + 128, B [steps][NR][4] s8, or nibbles for W4), the +128 correction
// (minus 128 * the group's column sums) and, with several groups, a running fp32 sum; then the
// epilogue (sa, sb, bias) or the exact int32 store.
template <bool W4>
void tile(const TileArgs* t) {
  alignas(64) int32_t acc[MR][NR];
  alignas(64) float part[MR][NR];  // running fp32 sum over groups (only when groups > 1)
  const int rows = t->rows;
  const int64_t groups = t->groups, gs = t->group_steps, np = t->np;
  const int64_t step_bytes_b = W4 ? NR * 2 : NR * 4;  // bytes of packed B per k4 step
  if (t->sa_ld > 0) {  // per-group activation scales
    tile_activation_groups<W4>(t);
    return;
  }
  if (groups == 1 && !t->out_int32 && rows == MR && t->cols == NR) {  // a full tile: epilogue in registers
    const float* bias = t->bias ? t->bias : kZeroBias;
    const int64_t ldcb = t->ldc * (int64_t)sizeof(float);
    if (W4) dot_w4_f32(t->ap, t->bp, gs, t->colsum, t->sb, t->sa, bias, (float*)t->c, ldcb);
    else dot_w8_f32(t->ap, t->bp, gs, t->colsum, t->sb, t->sa, bias, (float*)t->c, ldcb);
    return;
  }
  if (groups == 1) {
    if (W4) dot_w4(t->ap, t->bp, gs, &acc[0][0]); else dot_w8(t->ap, t->bp, gs, &acc[0][0]);
  } else {
    if (W4 && gs * groups * NR * 2 <= kHalvesMaxPanelBytes) {
      // W4 whose weight panel stays in L1 while both halves read it: sums in registers
      for (int h = 0; h * 4 < rows; h++)  // rows past the matrix: that half is not computed
        groups_w4(t->ap + 16 * h, t->bp, gs, groups, t->colsum, t->sb, np * 4, &part[4 * h][0]);
    } else {
      for (int i = 0; i < MR * NR; i += 16) _mm512_store_ps(&part[0][0] + i, _mm512_setzero_ps());
      for (int64_t g = 0; g < groups; g++) {
        const uint8_t* a = t->ap + g * gs * MR * 4;
        const uint8_t* b = t->bp + g * gs * step_bytes_b;
        if (W4) dot_w4_group(a, b, gs, t->colsum + g * np, t->sb + g * np, &part[0][0]);
        else dot_w8_group(a, b, gs, t->colsum + g * np, t->sb + g * np, &part[0][0]);
      }
    }
  }
  for (int j = 0; j < 3; j++) {
    const __mmask16 m = col_mask(t->cols, j);
    if (!m) break;
    if (t->out_int32) {  // groups == 1
      const __m512i cs = _mm512_slli_epi32(_mm512_loadu_si512(t->colsum + 16 * j), 7);
      for (int r = 0; r < rows; r++) {
        __m512i v = _mm512_sub_epi32(_mm512_load_si512(&acc[r][16 * j]), cs);
        _mm512_mask_storeu_epi32((int32_t*)t->c + r * t->ldc + 16 * j, m, W4 ? _mm512_srai_epi32(v, 4) : v);
      }
      continue;
    }
    const __m512 bias = t->bias ? _mm512_maskz_loadu_ps(m, t->bias + 16 * j) : _mm512_setzero_ps();
    const __m512i cs = _mm512_slli_epi32(_mm512_loadu_si512(t->colsum + 16 * j), 7);
    const __m512 sc = _mm512_loadu_ps(t->sb + 16 * j);
    for (int r = 0; r < rows; r++) {
      const __m512 f = groups > 1 ? _mm512_load_ps(&part[r][16 * j])
                                  : _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(&acc[r][16 * j]), cs)), sc);
      _mm512_mask_storeu_ps((float*)t->c + r * t->ldc + 16 * j, m, _mm512_fmadd_ps(f, _mm512_set1_ps(t->sa[r]), bias));
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

// Packs 8 rows of codes into [steps][8][4] (one 32-byte group per k4 step): per 16 codes of each row
// (four k4 steps), the 8 x 4 dword transpose of two zmm registers gives steps 4c, 4c+1 and 4c+2, 4c+3
// as two 64-byte stores; the remaining steps (k not a multiple of 16, zero padding) byte by byte.
void pack_block_avx512(const int8_t* const* rows, int64_t k, int64_t steps, uint8_t flip, uint8_t* blk) {
  static_assert(MR == 8, "the transpose below is for 8 rows");
  // Result lane t (t < 8) of step j is dword j of row t: rows 0-3 sit in a's four 128-bit lanes, rows 4-7 in b's.
  alignas(64) static const int32_t idx01[16] = {0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29};
  alignas(64) static const int32_t idx23[16] = {2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31};
  const __m512i i01 = _mm512_load_si512(idx01), i23 = _mm512_load_si512(idx23);
  const __m512i fl = _mm512_set1_epi8((char)flip);
  const int64_t chunks = k / 16;
  for (int64_t c = 0; c < chunks; c++) {
    __m512i a = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i*)(rows[0] + 16 * c)));
    a = _mm512_inserti32x4(a, _mm_loadu_si128((const __m128i*)(rows[1] + 16 * c)), 1);
    a = _mm512_inserti32x4(a, _mm_loadu_si128((const __m128i*)(rows[2] + 16 * c)), 2);
    a = _mm512_inserti32x4(a, _mm_loadu_si128((const __m128i*)(rows[3] + 16 * c)), 3);
    __m512i b = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i*)(rows[4] + 16 * c)));
    b = _mm512_inserti32x4(b, _mm_loadu_si128((const __m128i*)(rows[5] + 16 * c)), 1);
    b = _mm512_inserti32x4(b, _mm_loadu_si128((const __m128i*)(rows[6] + 16 * c)), 2);
    b = _mm512_inserti32x4(b, _mm_loadu_si128((const __m128i*)(rows[7] + 16 * c)), 3);
    _mm512_storeu_si512(blk + (4 * c) * 32, _mm512_xor_si512(_mm512_permutex2var_epi32(a, i01, b), fl));
    _mm512_storeu_si512(blk + (4 * c + 2) * 32, _mm512_xor_si512(_mm512_permutex2var_epi32(a, i23, b), fl));
  }
  for (int64_t s = 4 * chunks; s < steps; s++)
    for (int r = 0; r < MR; r++)
      for (int kk = 0; kk < 4; kk++) {
        const int64_t kidx = 4 * s + kk;
        blk[(s * MR + r) * 4 + kk] = (uint8_t)((kidx < k ? (uint8_t)rows[r][kidx] : 0) ^ flip);
      }
}

}  // namespace

bool kernels_avx512vnni(IsaKernels* out) {
  out->mr = MR;
  out->offset_a = true;
  out->tile = tile_any;
  out->quant_row = quant_row_avx512;
  out->ln_mod_row = ln_mod_row_impl;
  out->post_rows = post_rows_impl;
  out->scale_row = scale_row_impl;
  out->lowrank_down = lowrank_down_impl;
  out->lowrank_up = lowrank_up_impl;
  out->rotate_row = rotate_row_impl;
  out->pack_block = pack_block_avx512;
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
