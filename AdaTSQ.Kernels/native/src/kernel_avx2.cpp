// AVX2 path (no VNNI): exact int8 dot products with the sign trick,
// |a| (u8) * sign(b, a) (s8) -> vpmaddubsw (pairs stay below 2^15 because weights are in
// [-127, 127]) -> vpmaddwd with ones -> int32.
#include <cmath>
#include <cstring>
#include "internal.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ADATSQ_DOT(acc, a, absA, b) \
  _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((absA), _mm256_sign_epi8((b), (a))), ones))
#define ADATSQ_ASM_K_LOOP 0
#define ADATSQ_OFFSET_A 0
namespace adatsq_avx2 {
#include "kernel_avx256.inc"
}
namespace adatsq {
bool kernels_avx2(IsaKernels* out) {
  out->mr = adatsq_avx2::MR;
  out->offset_a = false;
  out->tile = adatsq_avx2::tile_any;
  out->quant_row = adatsq_avx2::quant_row_impl;
  out->ln_mod_row = adatsq_avx2::ln_mod_row_impl;
  out->post_rows = adatsq_avx2::post_rows_impl;
  out->scale_row = adatsq_avx2::scale_row_impl;
  out->lowrank_down = adatsq_avx2::lowrank_down_impl;
  out->lowrank_up = adatsq_avx2::lowrank_up_impl;
  out->rotate_row = adatsq_avx2::rotate_row_impl;
  return true;
}
}  // namespace adatsq
#else
namespace adatsq {
bool kernels_avx2(IsaKernels*) { return false; }
}  // namespace adatsq
#endif
