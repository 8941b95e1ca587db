// The C ABI: argument checks, the ISA table, status codes and the last-error message. Every entry
// point checks all it can check (sizes, leading dimensions, group shape, null pointers, 64-bit
// overflow of the offsets the driver computes) before any work starts, then hands over to the GEMM
// driver (gemm_driver.cpp) or the row jobs (row_jobs.cpp). Arguments are checked before the ISA,
// so a bad call is refused the same way on every machine. No exception leaves this file.
#include <cstdarg>
#include <cstdio>
#include <new>
#include "driver.h"
#include "thread_pool.h"

namespace adatsq {
namespace {

struct IsaTable {
  IsaKernels k[5] = {};
  bool ok[5] = {};
  IsaTable() {
    ok[ADATSQ_ISA_SCALAR] = kernels_scalar(&k[ADATSQ_ISA_SCALAR]);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      ok[ADATSQ_ISA_AVX2] = kernels_avx2(&k[ADATSQ_ISA_AVX2]);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni"))
      ok[ADATSQ_ISA_AVXVNNI] = kernels_avxvnni(&k[ADATSQ_ISA_AVXVNNI]);
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni"))
      ok[ADATSQ_ISA_AVX512VNNI] = kernels_avx512vnni(&k[ADATSQ_ISA_AVX512VNNI]);
#endif
  }
};

const IsaTable& table() {
  static const IsaTable t;
  return t;
}

const IsaKernels* kernels(int32_t isa) {
  if (isa < ADATSQ_ISA_SCALAR || isa > ADATSQ_ISA_AVX512VNNI || !table().ok[isa]) return nullptr;
  return &table().k[isa];
}

// The message of the last failed call of this thread (adatsq_last_error).
thread_local char t_last_error[256];

inline void clear_error() { t_last_error[0] = '\0'; }

// The ISA's kernels, or null after recording why not.
const IsaKernels* kernels_or_fail(int32_t isa, int32_t* status) {
  const IsaKernels* k = kernels(isa);
  if (!k) *status = fail(ADATSQ_ISA_UNAVAILABLE, "isa %d is not compiled in or not supported by this CPU (supported mask 0x%x)",
                         (int)isa, (unsigned)adatsq_supported_isas());
  return k;
}

// True when a * b does not overflow int64.
inline bool product_fits(int64_t a, int64_t b) {
  int64_t r;
  return !__builtin_mul_overflow(a, b, &r);
}

// Returns ADATSQ_BAD_ARGUMENT with the printf-style message unless cond holds.
#define ADATSQ_REQUIRE(cond, ...) \
  do {                            \
    if (!(cond)) return fail(ADATSQ_BAD_ARGUMENT, __VA_ARGS__); \
  } while (0)

// The arguments of a GEMM common to adatsq_gemm and adatsq_linear(_ex) (not a / sa / x).
int32_t check_gemm(const adatsq_gemm_args* p) {
  ADATSQ_REQUIRE(p, "args is NULL");
  ADATSQ_REQUIRE(p->b, "args->b (packed weights) is NULL");
  ADATSQ_REQUIRE(p->colsum, "args->colsum is NULL");
  ADATSQ_REQUIRE(p->sb, "args->sb (weight scales) is NULL");
  ADATSQ_REQUIRE(p->c, "args->c (output) is NULL");
  ADATSQ_REQUIRE(p->m > 0 && p->n > 0 && p->k > 0, "m, n and k must be positive (m = %lld, n = %lld, k = %lld)",
                 (long long)p->m, (long long)p->n, (long long)p->k);
  ADATSQ_REQUIRE(p->lda >= p->k, "lda = %lld is less than k = %lld", (long long)p->lda, (long long)p->k);
  ADATSQ_REQUIRE(p->ldc >= p->n, "ldc = %lld is less than n = %lld", (long long)p->ldc, (long long)p->n);
  ADATSQ_REQUIRE(p->n <= INT64_MAX - NR && p->np == (p->n + NR - 1) / NR * NR,
                 "np = %lld is not n = %lld rounded up to %d", (long long)p->np, (long long)p->n, NR);
  ADATSQ_REQUIRE(p->wbits == 8 || p->wbits == 4, "wbits = %d: must be 8 or 4", (int)p->wbits);
  ADATSQ_REQUIRE(p->out_int32 == 0 || p->out_int32 == 1, "out_int32 = %d: must be 0 or 1", (int)p->out_int32);
  ADATSQ_REQUIRE(p->threads >= 1, "threads = %d: must be at least 1", (int)p->threads);
  // The k loops run group / 4 k4 steps per group, counting down to zero (two steps per trip for
  // 4-bit weights): the group must give at least one trip and a whole number of them.
  const int64_t unit = p->wbits == 4 ? 8 : 4;
  ADATSQ_REQUIRE(p->group > 0 && p->group % unit == 0,
                 "group = %lld: must be a positive multiple of %lld for %d-bit weights (the k loops run group / 4 steps, "
                 "%s per trip)", (long long)p->group, (long long)unit, (int)p->wbits, p->wbits == 4 ? "two" : "one");
  // Groups cover K with no empty group: groups = ceil(k / group) (the last group may be partial).
  ADATSQ_REQUIRE(p->groups > 0 && p->groups == (p->k - 1) / p->group + 1,
                 "groups = %lld: k = %lld in groups of %lld needs ceil(k / group) = %lld", (long long)p->groups,
                 (long long)p->k, (long long)p->group, (long long)((p->k - 1) / p->group + 1));
  ADATSQ_REQUIRE(!p->out_int32 || p->groups == 1, "out_int32 needs per-channel weights (groups = 1), not %lld groups",
                 (long long)p->groups);
  // The offsets the driver and the kernels compute: rows of A and C, scale groups, packed B and the
  // packed A scratch (rows rounded up to a 16-row block; padded k = groups * group).
  ADATSQ_REQUIRE(product_fits(p->groups, p->group) && product_fits(p->m, p->lda) && product_fits(p->m, p->ldc) &&
                     product_fits(p->groups, p->np) && product_fits(p->np, p->groups * p->group) &&
                     p->m <= INT64_MAX - 16 && product_fits(p->m + 16, p->groups * p->group),
                 "the sizes overflow 64-bit offsets (m = %lld, n = %lld, k = %lld, lda = %lld, ldc = %lld, group = %lld)",
                 (long long)p->m, (long long)p->n, (long long)p->k, (long long)p->lda, (long long)p->ldc, (long long)p->group);
  // Per-group activation scales (a_group > 0): whole activation groups, each a whole number of kernel
  // groups, so that the fold of kernel group g reads the scale of activation group g * group / a_group.
  ADATSQ_REQUIRE(p->a_group >= 0, "a_group = %lld: must be 0 (one activation scale per row) or positive", (long long)p->a_group);
  if (p->a_group > 0) {
    ADATSQ_REQUIRE(p->k % p->a_group == 0, "a_group = %lld does not divide k = %lld (activation groups must cover K exactly)",
                   (long long)p->a_group, (long long)p->k);
    ADATSQ_REQUIRE(p->a_group % p->group == 0,
                   "a_group = %lld is not a multiple of the weights' kernel group %lld: pack the weights at group %lld "
                   "(or at a smaller group that divides it)", (long long)p->a_group, (long long)p->group, (long long)p->a_group);
    ADATSQ_REQUIRE(!p->out_int32, "out_int32 takes no activation scales: a_group must be 0, not %lld", (long long)p->a_group);
  }
  return ADATSQ_OK;
}

// sa / ldsa of adatsq_gemm with per-group activation scales (adatsq_linear computes its own).
int32_t check_activation_scales(const adatsq_gemm_args* p) {
  if (p->a_group <= 0 || p->out_int32) return ADATSQ_OK;
  const int64_t groups = p->k / p->a_group;
  ADATSQ_REQUIRE(p->ldsa >= groups, "ldsa = %lld is less than k / a_group = %lld activation groups per row", (long long)p->ldsa,
                 (long long)groups);
  ADATSQ_REQUIRE(product_fits(p->m, p->ldsa), "ldsa = %lld overflows 64-bit offsets", (long long)p->ldsa);
  return ADATSQ_OK;
}

// The fused ops of adatsq_linear_ex / adatsq_layernorm_modulate / adatsq_apply_epilogue on m rows of k inputs and n
// outputs. extended_prologue: the ABI 5 input scale and rotation are allowed (the linear call and the prologue call);
// branch: the ABI 5 low-rank branch is allowed (the linear call).
int32_t check_ops(const adatsq_linear_ops* o, int64_t m, int64_t k, int64_t n, bool extended_prologue, bool branch) {
  if (!o) return ADATSQ_OK;
  if (!extended_prologue)
    ADATSQ_REQUIRE(!o->input_scale && o->rot_block == 0 && !o->rot_hm && !o->rot_signs,
                   "ops->input_scale and the rotation (rot_block, rot_hm, rot_signs) are prologue work: not taken by this call");
  if (!branch) {
    ADATSQ_REQUIRE(o->rank == 0 && !o->lr_down && !o->lr_up,
                   "the low-rank branch (rank, lr_down, lr_up) is taken by adatsq_linear_ex only");
  } else {
    ADATSQ_REQUIRE(o->rank >= 0 && o->rank <= ADATSQ_MAX_RANK, "ops->rank = %lld: must be 0 (no low-rank branch) to %d",
                   (long long)o->rank, ADATSQ_MAX_RANK);
    if (o->rank == 0) {
      ADATSQ_REQUIRE(!o->lr_down && !o->lr_up, "ops->lr_down / ops->lr_up are set but ops->rank is 0");
    } else {
      ADATSQ_REQUIRE(o->lr_down && o->lr_up, "ops->rank = %lld needs ops->lr_down [rank, K] and ops->lr_up [N, rank] (one is NULL)",
                     (long long)o->rank);
      ADATSQ_REQUIRE(o->ld_down >= k, "ops->ld_down = %lld is less than k = %lld", (long long)o->ld_down, (long long)k);
      ADATSQ_REQUIRE(o->ld_up >= o->rank, "ops->ld_up = %lld is less than rank = %lld", (long long)o->ld_up, (long long)o->rank);
      ADATSQ_REQUIRE(product_fits(o->rank, o->ld_down) && product_fits(n, o->ld_up) && product_fits(m, o->rank),
                     "the low-rank branch overflows 64-bit offsets (rank = %lld, ld_down = %lld, ld_up = %lld)", (long long)o->rank,
                     (long long)o->ld_down, (long long)o->ld_up);
    }
  }
  // The rotation: a power-of-two segment dividing K; a dense factor of order K / rot_block, or none.
  ADATSQ_REQUIRE(o->rot_block >= 0, "ops->rot_block = %lld: must be 0 (no rotation) or a power of two dividing k", (long long)o->rot_block);
  if (o->rot_block == 0) {
    ADATSQ_REQUIRE(!o->rot_hm && !o->rot_signs, "ops->rot_hm / ops->rot_signs are set but ops->rot_block is 0");
  } else {
    ADATSQ_REQUIRE((o->rot_block & (o->rot_block - 1)) == 0 && k % o->rot_block == 0,
                   "ops->rot_block = %lld: must be a power of two dividing k = %lld", (long long)o->rot_block, (long long)k);
    ADATSQ_REQUIRE(o->rot_order == 1 || o->rot_order == k / o->rot_block,
                   "ops->rot_order = %lld: must be 1 or k / rot_block = %lld", (long long)o->rot_order, (long long)(k / o->rot_block));
    ADATSQ_REQUIRE((o->rot_order > 1) == (o->rot_hm != nullptr), "ops->rot_hm must be set exactly when ops->rot_order > 1 (rot_order = %lld)",
                   (long long)o->rot_order);
    ADATSQ_REQUIRE(o->rot_divisor > 0.f && o->rot_divisor <= 3.4e38f, "ops->rot_divisor = %g: must be positive and finite",
                   (double)o->rot_divisor);
  }
  ADATSQ_REQUIRE(o->layer_norm == 0 || o->layer_norm == 1, "ops->layer_norm = %d: must be 0 or 1", (int)o->layer_norm);
  ADATSQ_REQUIRE(!o->layer_norm || o->eps > 0.f, "ops->eps = %g: must be positive", (double)o->eps);
  ADATSQ_REQUIRE(!(o->shift || o->scale) || o->layer_norm, "ops->shift / ops->scale need ops->layer_norm");
  ADATSQ_REQUIRE(!(o->shift || o->scale) || o->ld_mod >= k, "ops->ld_mod = %lld is less than k = %lld", (long long)o->ld_mod,
                 (long long)k);
  ADATSQ_REQUIRE(o->rows_per_sample >= 1, "ops->rows_per_sample = %lld: must be at least 1", (long long)o->rows_per_sample);
  ADATSQ_REQUIRE(o->activation == ADATSQ_ACT_NONE || o->activation == ADATSQ_ACT_GELU_TANH, "ops->activation = %d is unknown",
                 (int)o->activation);
  ADATSQ_REQUIRE(!o->residual || o->ld_residual >= n, "ops->ld_residual = %lld is less than n = %lld",
                 (long long)o->ld_residual, (long long)n);
  ADATSQ_REQUIRE(!o->gate || o->residual, "ops->gate needs ops->residual");
  ADATSQ_REQUIRE(!o->gate || o->ld_gate >= n, "ops->ld_gate = %lld is less than n = %lld", (long long)o->ld_gate, (long long)n);
  const int64_t samples = (m - 1) / o->rows_per_sample + 1;
  ADATSQ_REQUIRE(!(o->shift || o->scale) || product_fits(samples, o->ld_mod), "ops->ld_mod = %lld overflows 64-bit offsets",
                 (long long)o->ld_mod);
  ADATSQ_REQUIRE(!o->residual || product_fits(m, o->ld_residual), "ops->ld_residual = %lld overflows 64-bit offsets",
                 (long long)o->ld_residual);
  ADATSQ_REQUIRE(!o->gate || product_fits(samples, o->ld_gate), "ops->ld_gate = %lld overflows 64-bit offsets",
                 (long long)o->ld_gate);
  return ADATSQ_OK;
}

int32_t check_threads(int32_t threads) {
  ADATSQ_REQUIRE(threads >= 1, "threads = %d: must be at least 1", (int)threads);
  return ADATSQ_OK;
}

// Runs body (a lambda returning a status) with a fresh last-error message, and turns an exception
// that escapes it into a status: no exception crosses the C ABI.
template <class Body>
int32_t guarded(Body body) {
  clear_error();
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(ADATSQ_OUT_OF_MEMORY, "out of memory");
  } catch (...) {
    return fail(ADATSQ_INTERNAL, "internal error (an exception in the kernels)");
  }
}

}  // namespace

int32_t fail(int32_t status, const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vsnprintf(t_last_error, sizeof t_last_error, format, args);
  va_end(args);
  return status;
}

}  // namespace adatsq

using namespace adatsq;

extern "C" {

ADATSQ_API int32_t adatsq_abi_version(void) { return ADATSQ_ABI_VERSION; }

ADATSQ_API int32_t adatsq_supported_isas(void) {
  int32_t mask = 0;
  for (int i = ADATSQ_ISA_SCALAR; i <= ADATSQ_ISA_AVX512VNNI; i++)
    if (table().ok[i]) mask |= 1 << i;
  return mask;
}

ADATSQ_API int32_t adatsq_best_isa(void) {
  for (int i = ADATSQ_ISA_AVX512VNNI; i >= ADATSQ_ISA_SCALAR; i--)
    if (table().ok[i]) return i;
  return ADATSQ_ISA_SCALAR;
}

ADATSQ_API const char* adatsq_last_error(void) { return t_last_error; }

ADATSQ_API int32_t adatsq_quantize_rows(int32_t isa, const float* x, int64_t m, int64_t k, int64_t ldx, int32_t bits,
                                        float clip, int8_t* q, int64_t ldq, float* scale, int32_t threads) {
  return guarded([&]() -> int32_t {
    ADATSQ_REQUIRE(x && q && scale, "x, q and scale must not be NULL");
    ADATSQ_REQUIRE(m > 0 && k > 0, "m and k must be positive (m = %lld, k = %lld)", (long long)m, (long long)k);
    ADATSQ_REQUIRE(ldx >= k && ldq >= k, "ldx = %lld and ldq = %lld must be at least k = %lld", (long long)ldx, (long long)ldq,
                   (long long)k);
    ADATSQ_REQUIRE(product_fits(m, ldx) && product_fits(m, ldq), "the sizes overflow 64-bit offsets (m = %lld, ldx = %lld, ldq = %lld)",
                   (long long)m, (long long)ldx, (long long)ldq);
    ADATSQ_REQUIRE(bits >= 2 && bits <= 8, "bits = %d: must be 2 to 8", (int)bits);
    ADATSQ_REQUIRE(clip > 0.f && clip <= 1.f, "clip = %g: must be in (0, 1]", (double)clip);
    int32_t status = check_threads(threads);
    if (status != ADATSQ_OK) return status;
    const IsaKernels* kern = kernels_or_fail(isa, &status);
    if (!kern) return status;
    run_quantize_rows(kern, x, m, k, ldx, (1 << (bits - 1)) - 1, clip, k, q, ldq, scale, 1, threads);
    return ADATSQ_OK;
  });
}

ADATSQ_API int32_t adatsq_quantize_groups(int32_t isa, const float* x, int64_t m, int64_t k, int64_t ldx, int32_t bits, float clip,
                                          int64_t group, int8_t* q, int64_t ldq, float* scale, int64_t ld_scale, int32_t threads) {
  return guarded([&]() -> int32_t {
    ADATSQ_REQUIRE(x && q && scale, "x, q and scale must not be NULL");
    ADATSQ_REQUIRE(m > 0 && k > 0, "m and k must be positive (m = %lld, k = %lld)", (long long)m, (long long)k);
    ADATSQ_REQUIRE(ldx >= k && ldq >= k, "ldx = %lld and ldq = %lld must be at least k = %lld", (long long)ldx, (long long)ldq,
                   (long long)k);
    ADATSQ_REQUIRE(group >= 1 && k % group == 0, "group = %lld: must be positive and divide k = %lld", (long long)group, (long long)k);
    ADATSQ_REQUIRE(ld_scale >= k / group, "ld_scale = %lld is less than k / group = %lld scales per row", (long long)ld_scale,
                   (long long)(k / group));
    ADATSQ_REQUIRE(product_fits(m, ldx) && product_fits(m, ldq) && product_fits(m, ld_scale),
                   "the sizes overflow 64-bit offsets (m = %lld, ldx = %lld, ldq = %lld, ld_scale = %lld)", (long long)m, (long long)ldx,
                   (long long)ldq, (long long)ld_scale);
    ADATSQ_REQUIRE(bits >= 2 && bits <= 8, "bits = %d: must be 2 to 8", (int)bits);
    ADATSQ_REQUIRE(clip > 0.f && clip <= 1.f, "clip = %g: must be in (0, 1]", (double)clip);
    int32_t status = check_threads(threads);
    if (status != ADATSQ_OK) return status;
    const IsaKernels* kern = kernels_or_fail(isa, &status);
    if (!kern) return status;
    run_quantize_rows(kern, x, m, k, ldx, (1 << (bits - 1)) - 1, clip, group, q, ldq, scale, ld_scale, threads);
    return ADATSQ_OK;
  });
}

ADATSQ_API int32_t adatsq_gemm(const adatsq_gemm_args* p) {
  return guarded([&]() -> int32_t {
    int32_t status = check_gemm(p);
    if (status != ADATSQ_OK) return status;
    if ((status = check_activation_scales(p)) != ADATSQ_OK) return status;
    ADATSQ_REQUIRE(p->a, "args->a (activation codes) is NULL");
    ADATSQ_REQUIRE(p->out_int32 || p->sa, "args->sa (activation scales) is NULL");
    const IsaKernels* kern = kernels_or_fail(p->isa, &status);
    if (!kern) return status;
    GemmJob job{};
    job.p = p;
    job.kern = kern;
    return run_gemm(job);
  });
}

ADATSQ_API int32_t adatsq_linear(const adatsq_gemm_args* p, const float* x, int64_t ldx, int32_t abits, float clip) {
  return adatsq_linear_ex(p, x, ldx, abits, clip, nullptr);
}

ADATSQ_API int32_t adatsq_linear_ex(const adatsq_gemm_args* p, const float* x, int64_t ldx, int32_t abits, float clip,
                                    const adatsq_linear_ops* ops) {
  return guarded([&]() -> int32_t {
    int32_t status = check_gemm(p);
    if (status != ADATSQ_OK) return status;
    if ((status = check_ops(ops, p->m, p->k, p->n, true, true)) != ADATSQ_OK) return status;
    ADATSQ_REQUIRE(x, "x is NULL");
    ADATSQ_REQUIRE(ldx >= p->k, "ldx = %lld is less than k = %lld", (long long)ldx, (long long)p->k);
    ADATSQ_REQUIRE(product_fits(p->m, ldx), "ldx = %lld overflows 64-bit offsets", (long long)ldx);
    ADATSQ_REQUIRE(!p->out_int32, "out_int32 is not available on the float linear call");
    ADATSQ_REQUIRE(abits >= 2 && abits <= 8, "abits = %d: must be 2 to 8", (int)abits);
    ADATSQ_REQUIRE(clip > 0.f && clip <= 1.f, "clip = %g: must be in (0, 1]", (double)clip);
    const IsaKernels* kern = kernels_or_fail(p->isa, &status);
    if (!kern) return status;
    GemmJob job{};
    job.p = p;
    job.kern = kern;
    job.x = x;
    job.ldx = ldx;
    job.qmax = (1 << (abits - 1)) - 1;
    job.clip = clip;
    job.ops = ops;
    job.post = has_epilogue(ops);
    job.rank = ops ? ops->rank : 0;
    return run_gemm(job);
  });
}

ADATSQ_API int32_t adatsq_layernorm_modulate(int32_t isa, const float* x, int64_t m, int64_t k, int64_t ldx,
                                             const adatsq_linear_ops* ops, float* out, int64_t ldo, int32_t threads) {
  return guarded([&]() -> int32_t {
    ADATSQ_REQUIRE(x && out && ops, "x, ops and out must not be NULL");
    ADATSQ_REQUIRE(m > 0 && k > 0, "m and k must be positive (m = %lld, k = %lld)", (long long)m, (long long)k);
    ADATSQ_REQUIRE(ldx >= k && ldo >= k, "ldx = %lld and ldo = %lld must be at least k = %lld", (long long)ldx, (long long)ldo,
                   (long long)k);
    ADATSQ_REQUIRE(product_fits(m, ldx) && product_fits(m, ldo), "the sizes overflow 64-bit offsets (m = %lld, ldx = %lld, ldo = %lld)",
                   (long long)m, (long long)ldx, (long long)ldo);
    ADATSQ_REQUIRE(has_prologue(ops), "ops has no prologue: ops->layer_norm must be 1, or an input scale or a rotation set");
    int32_t status = check_threads(threads);
    if (status != ADATSQ_OK) return status;
    if ((status = check_ops(ops, m, k, 1, true, false)) != ADATSQ_OK) return status;
    const IsaKernels* kern = kernels_or_fail(isa, &status);
    if (!kern) return status;
    return run_layernorm_modulate(kern, x, m, k, ldx, ops, out, ldo, threads);
  });
}

ADATSQ_API int32_t adatsq_apply_epilogue(int32_t isa, float* c, int64_t m, int64_t n, int64_t ldc,
                                         const adatsq_linear_ops* ops, int32_t threads) {
  return guarded([&]() -> int32_t {
    ADATSQ_REQUIRE(c && ops, "c and ops must not be NULL");
    ADATSQ_REQUIRE(m > 0 && n > 0, "m and n must be positive (m = %lld, n = %lld)", (long long)m, (long long)n);
    ADATSQ_REQUIRE(ldc >= n, "ldc = %lld is less than n = %lld", (long long)ldc, (long long)n);
    ADATSQ_REQUIRE(product_fits(m, ldc), "the sizes overflow 64-bit offsets (m = %lld, ldc = %lld)", (long long)m, (long long)ldc);
    int32_t status = check_threads(threads);
    if (status != ADATSQ_OK) return status;
    if ((status = check_ops(ops, m, 1, n, false, false)) != ADATSQ_OK) return status;
    const IsaKernels* kern = kernels_or_fail(isa, &status);
    if (!kern) return status;
    run_apply_epilogue(kern, c, m, n, ldc, ops, threads);
    return ADATSQ_OK;
  });
}

ADATSQ_API int32_t adatsq_set_thread_backend(int32_t backend) {
  clear_error();
  ADATSQ_REQUIRE(backend == 0 || backend == 1, "backend = %d: must be 0 or 1", (int)backend);
  ThreadPool::backend().store(backend);
  return ADATSQ_OK;
}

ADATSQ_API int32_t adatsq_last_run_used_openmp(void) { return ThreadPool::instance().last_run_used_openmp() ? 1 : 0; }

ADATSQ_API int32_t adatsq_vnni_peak(int32_t isa, int64_t iterations, int32_t threads, double* seconds, double* ops) {
  return guarded([&]() -> int32_t {
    if (isa != ADATSQ_ISA_AVX512VNNI && isa != ADATSQ_ISA_AVXVNNI)
      return fail(ADATSQ_ISA_UNAVAILABLE, "isa %d: the peak loop exists for the VNNI paths only", (int)isa);
    // The peak loops count iterations down to zero with dec / jnz: 0 would run about 2^64 trips.
    ADATSQ_REQUIRE(iterations >= 1, "iterations = %lld: must be at least 1", (long long)iterations);
    ADATSQ_REQUIRE(seconds && ops, "seconds and ops must not be NULL");
    int32_t status = check_threads(threads);
    if (status != ADATSQ_OK) return status;
    if (!kernels_or_fail(isa, &status)) return status;
    run_vnni_peak(isa, iterations, threads, seconds, ops);
    return ADATSQ_OK;
  });
}

}  // extern "C"
