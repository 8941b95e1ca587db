// C ABI: argument checks, ISA table, the blocked GEMM driver and the row quantizer driver.
#include <chrono>
#include <cstring>
#include <new>
#include <vector>
#include "internal.h"
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

constexpr int64_t MC = 128;      // rows per task (multiple of every MR)
constexpr int64_t NC_PANELS = 8; // 48-column panels per task

struct GemmJob {
  const adatsq_gemm_args* p;
  const IsaKernels* kern;
  int64_t steps;        // k4 steps (padded)
  int64_t mblocks, nblocks, nc_panels, panels;
};

std::vector<uint8_t>& scratch() {
  static thread_local std::vector<uint8_t> buf;
  return buf;
}

// Packs rows [i0, i0 + rows) of A into [rows/mr][steps][mr][4], zero-padded, +128 for VNNI.
void pack_a(const GemmJob& job, int64_t i0, int64_t rows, uint8_t* dst) {
  const adatsq_gemm_args* p = job.p;
  const int mr = job.kern->mr;
  const uint8_t flip = job.kern->offset_a ? 0x80 : 0x00;
  const int64_t blocks = (rows + mr - 1) / mr;
  for (int64_t b = 0; b < blocks; b++) {
    uint8_t* blk = dst + b * job.steps * mr * 4;
    for (int r = 0; r < mr; r++) {
      const int64_t i = i0 + b * mr + r;
      if (i >= p->m || b * mr + r >= rows) {
        for (int64_t s = 0; s < job.steps; s++) std::memset(blk + (s * mr + r) * 4, flip, 4);
        continue;
      }
      const uint8_t* src = (const uint8_t*)(p->a + i * p->lda);
      const int64_t full = p->k / 4;
      for (int64_t s = 0; s < full; s++) {
        uint32_t v;
        std::memcpy(&v, src + 4 * s, 4);
        v ^= flip * 0x01010101u;
        std::memcpy(blk + (s * mr + r) * 4, &v, 4);
      }
      for (int64_t s = full; s < job.steps; s++)
        for (int kk = 0; kk < 4; kk++) {
          const int64_t kidx = 4 * s + kk;
          blk[(s * mr + r) * 4 + kk] = (uint8_t)((kidx < p->k ? src[kidx] : 0) ^ flip);
        }
    }
  }
}

void gemm_task(void* ctx, int64_t task) {
  const GemmJob& job = *(const GemmJob*)ctx;
  const adatsq_gemm_args* p = job.p;
  const int mr = job.kern->mr;
  const int64_t ib = task / job.nblocks, jb = task % job.nblocks;
  const int64_t i0 = ib * MC, rows = std::min<int64_t>(MC, p->m - i0);
  const int64_t p0 = jb * job.nc_panels, p1 = std::min<int64_t>(job.panels, p0 + job.nc_panels);
  const int64_t blocks = (rows + mr - 1) / mr;
  std::vector<uint8_t>& buf = scratch();
  const size_t need = (size_t)(blocks * mr * job.steps * 4);
  if (buf.size() < need) buf.resize(need);
  pack_a(job, i0, rows, buf.data());
  const int64_t panel_bytes = job.steps * NR * (p->wbits == 4 ? 2 : 4);
  const size_t out_size = p->out_int32 ? sizeof(int32_t) : sizeof(float);
  TileArgs t;
  t.group_steps = p->group / 4;
  t.groups = p->groups;
  t.np = p->np;
  t.ldc = p->ldc;
  t.wbits = p->wbits;
  t.out_int32 = p->out_int32;
  for (int64_t pn = p0; pn < p1; pn++) {
    const int64_t col0 = pn * NR;
    t.bp = p->b + pn * panel_bytes;
    t.colsum = p->colsum + col0;
    t.sb = p->sb + col0;
    t.bias = p->bias ? p->bias + col0 : nullptr;
    t.cols = (int)std::min<int64_t>(NR, p->n - col0);
    for (int64_t b = 0; b < blocks; b++) {
      const int64_t row0 = i0 + b * mr;
      t.ap = buf.data() + b * job.steps * mr * 4;
      t.rows = (int)std::min<int64_t>(mr, p->m - row0);
      t.sa = p->sa ? p->sa + row0 : nullptr;
      t.c = (char*)p->c + (row0 * p->ldc + col0) * out_size;
      job.kern->tile(&t);
    }
  }
}

int32_t check_gemm(const adatsq_gemm_args* p) {
  if (!p || !p->a || !p->b || !p->colsum || !p->sb || !p->c) return ADATSQ_BAD_ARGUMENT;
  if (!p->out_int32 && !p->sa) return ADATSQ_BAD_ARGUMENT;
  if (p->m <= 0 || p->n <= 0 || p->k <= 0 || p->lda < p->k || p->ldc < p->n) return ADATSQ_BAD_ARGUMENT;
  if (p->np != (p->n + NR - 1) / NR * NR) return ADATSQ_BAD_ARGUMENT;
  if (p->wbits != 8 && p->wbits != 4) return ADATSQ_BAD_ARGUMENT;
  const int64_t unit = p->wbits == 4 ? 8 : 4;
  if (p->group <= 0 || p->group % unit != 0 || p->groups <= 0) return ADATSQ_BAD_ARGUMENT;
  if (p->groups * p->group < p->k || (p->groups - 1) * p->group >= p->k) return ADATSQ_BAD_ARGUMENT;
  if (p->out_int32 && p->groups != 1) return ADATSQ_BAD_ARGUMENT;
  if (p->threads < 1) return ADATSQ_BAD_ARGUMENT;
  return ADATSQ_OK;
}

struct QuantJob {
  const float* x;
  int64_t m, k, ldx, ldq, rows_per_task;
  int32_t qmax;
  float clip;
  int8_t* q;
  float* scale;
  QuantRowsFn fn;
};

void quant_task(void* ctx, int64_t task) {
  const QuantJob& j = *(const QuantJob*)ctx;
  const int64_t r0 = task * j.rows_per_task, r1 = std::min(j.m, r0 + j.rows_per_task);
  for (int64_t r = r0; r < r1; r++) j.fn(j.x + r * j.ldx, j.k, j.qmax, j.clip, j.q + r * j.ldq, j.scale + r);
}

struct PeakJob {
  int32_t isa;
  int64_t iterations;
  std::atomic<int64_t> macs{0};
};

void peak_task(void* ctx, int64_t) {
  PeakJob& j = *(PeakJob*)ctx;
  int64_t done = j.isa == ADATSQ_ISA_AVX512VNNI ? vnni_peak_avx512(j.iterations) : vnni_peak_avxvnni(j.iterations);
  j.macs.fetch_add(done);
}

}  // namespace
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

ADATSQ_API int32_t adatsq_quantize_rows(int32_t isa, const float* x, int64_t m, int64_t k, int64_t ldx, int32_t bits,
                                        float clip, int8_t* q, int64_t ldq, float* scale, int32_t threads) {
  try {
    const IsaKernels* kern = kernels(isa);
    if (!kern) return ADATSQ_ISA_UNAVAILABLE;
    if (!x || !q || !scale || m <= 0 || k <= 0 || ldx < k || ldq < k || bits < 2 || bits > 8 || threads < 1 ||
        !(clip > 0.f && clip <= 1.f))
      return ADATSQ_BAD_ARGUMENT;
    QuantJob job{x, m, k, ldx, ldq, 0, (1 << (bits - 1)) - 1, clip, q, scale, kern->quant_row};
    job.rows_per_task = std::max<int64_t>(1, std::min<int64_t>(64, (m + 4 * threads - 1) / (4 * threads)));
    const int64_t tasks = (m + job.rows_per_task - 1) / job.rows_per_task;
    ThreadPool::instance().run(threads, tasks, quant_task, &job);
    return ADATSQ_OK;
  } catch (const std::bad_alloc&) {
    return ADATSQ_OUT_OF_MEMORY;
  } catch (...) {
    return ADATSQ_INTERNAL;
  }
}

ADATSQ_API int32_t adatsq_gemm(const adatsq_gemm_args* p) {
  try {
    int32_t status = check_gemm(p);
    if (status != ADATSQ_OK) return status;
    const IsaKernels* kern = kernels(p->isa);
    if (!kern) return ADATSQ_ISA_UNAVAILABLE;
    GemmJob job;
    job.p = p;
    job.kern = kern;
    job.steps = p->groups * p->group / 4;
    job.panels = p->np / NR;
    job.mblocks = (p->m + MC - 1) / MC;
    job.nc_panels = NC_PANELS;
    // Enough tasks to balance the threads: shrink the column blocks when there are few row blocks.
    const int64_t want = 4 * (int64_t)p->threads;
    if (job.mblocks * ((job.panels + job.nc_panels - 1) / job.nc_panels) < want) {
      const int64_t per_row_block = (want + job.mblocks - 1) / job.mblocks;
      job.nc_panels = std::max<int64_t>(1, (job.panels + per_row_block - 1) / per_row_block);
    }
    job.nblocks = (job.panels + job.nc_panels - 1) / job.nc_panels;
    ThreadPool::instance().run(p->threads, job.mblocks * job.nblocks, gemm_task, &job);
    return ADATSQ_OK;
  } catch (const std::bad_alloc&) {
    return ADATSQ_OUT_OF_MEMORY;
  } catch (...) {
    return ADATSQ_INTERNAL;
  }
}

ADATSQ_API int32_t adatsq_vnni_peak(int32_t isa, int64_t iterations, int32_t threads, double* seconds, double* ops) {
  if ((isa != ADATSQ_ISA_AVX512VNNI && isa != ADATSQ_ISA_AVXVNNI) || !kernels(isa)) return ADATSQ_ISA_UNAVAILABLE;
  if (iterations <= 0 || threads < 1 || !seconds || !ops) return ADATSQ_BAD_ARGUMENT;
  try {
    PeakJob job;
    job.isa = isa;
    job.iterations = iterations;
    auto t0 = std::chrono::steady_clock::now();
    ThreadPool::instance().run(threads, threads, peak_task, &job);
    auto t1 = std::chrono::steady_clock::now();
    *seconds = std::chrono::duration<double>(t1 - t0).count();
    *ops = 2.0 * (double)job.macs.load();
    return ADATSQ_OK;
  } catch (...) {
    return ADATSQ_INTERNAL;
  }
}

}  // extern "C"
