// AVX-VNNI path: 256-bit VEX vpdpbusd (u8 activations + 128 times s8 weights).
#include <cmath>
#include <cstring>
#include "internal.h"

#if defined(__AVX2__) && defined(__AVXVNNI__)
#include <immintrin.h>
#define ADATSQ_ASM_K_LOOP 1
#define ADATSQ_OFFSET_A 1
namespace adatsq_avxvnni {
#include "kernel_avx256.inc"
}
namespace adatsq {
bool kernels_avxvnni(IsaKernels* out) {
  out->mr = adatsq_avxvnni::MR;
  out->offset_a = true;
  out->tile = adatsq_avxvnni::tile_any;
  out->quant_row = adatsq_avxvnni::quant_row_impl;
  out->ln_mod_row = adatsq_avxvnni::ln_mod_row_impl;
  out->post_rows = adatsq_avxvnni::post_rows_impl;
  out->scale_row = adatsq_avxvnni::scale_row_impl;
  out->lowrank_down = adatsq_avxvnni::lowrank_down_impl;
  out->lowrank_up = adatsq_avxvnni::lowrank_up_impl;
  out->rotate_row = adatsq_avxvnni::rotate_row_impl;
  return true;
}

// Register-only throughput loop: 12 independent ymm accumulators, no memory operands.
int64_t vnni_peak_avxvnni(int64_t iterations) {
  int64_t n = iterations;
  __asm__ volatile(
      "vpcmpeqd %%ymm14, %%ymm14, %%ymm14\n\t"
      "vpcmpeqd %%ymm15, %%ymm15, %%ymm15\n\t"
      "1:\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm0\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm1\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm2\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm3\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm4\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm5\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm6\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm7\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm8\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm9\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm10\n\t"
      "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm11\n\t"
      "dec %0\n\t"
      "jnz 1b\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm14", "xmm15", "cc");
  return iterations * 12 * 32;
}
}  // namespace adatsq
#else
namespace adatsq {
bool kernels_avxvnni(IsaKernels*) { return false; }
int64_t vnni_peak_avxvnni(int64_t) { return 0; }
}  // namespace adatsq
#endif
