// C ABI: argument checks, ISA table, the blocked GEMM driver and the row quantizer driver.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
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

// A is packed once per call, before the GEMM tasks, into [blocks of mr rows][steps][mr][4]
// (zero-padded, +128 for the VNNI paths) in a buffer owned by the calling thread; the first
// version packed each 128-row block again in every column task (12 times at N = 4608).
struct GemmJob {
  const adatsq_gemm_args* p;
  const IsaKernels* kern;
  int64_t steps;        // k4 steps (padded)
  int64_t mblocks, nblocks, nc_panels, panels;
  uint8_t* ap;          // packed A
  const float* sa;      // activation scales (p->sa, or the ones the fused quantizer wrote)
  // fused activation quantization (adatsq_linear): x [m, ldx] float32 -> codes straight into ap
  const float* x;
  int64_t ldx;
  int32_t qmax;
  float clip;
  float* sa_out;
  const adatsq_linear_ops* ops;  // fused prologue / epilogue, or null
  bool post;                     // ops has epilogue work
  std::atomic<int32_t>* packed;  // [mblocks]: 1 once that row block of A is packed
  mutable std::atomic<int32_t> failed{0};  // a pack task could not allocate its row buffer
};

struct CallScratch {
  std::vector<uint8_t> a;
  std::vector<float> sa;
  std::unique_ptr<std::atomic<int32_t>[]> flags;
  int64_t flag_count = 0;
};

CallScratch& call_scratch() {
  static thread_local CallScratch s;
  return s;
}

std::vector<int8_t>& row_scratch() {
  static thread_local std::vector<int8_t> buf;
  return buf;
}

std::vector<float>& float_row_scratch() {
  static thread_local std::vector<float> buf;
  return buf;
}

// The prologue of ops on row i of x into out (k floats).
inline void prologue_row(const IsaKernels* kern, const adatsq_linear_ops* ops, const float* x, int64_t i, int64_t k, float* out) {
  const int64_t sample = i / ops->rows_per_sample;
  kern->ln_mod_row(x, k, ops->eps, ops->shift ? ops->shift + sample * ops->ld_mod : nullptr,
                   ops->scale ? ops->scale + sample * ops->ld_mod : nullptr, out);
}

inline bool has_epilogue(const adatsq_linear_ops* ops) { return ops && (ops->activation != ADATSQ_ACT_NONE || ops->residual); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline int64_t block_bytes(const GemmJob& job) { return job.steps * job.kern->mr * 4; }

// Writes one row of int8 codes (k of them, zero-padded to steps * 4) as row r of a packed block.
inline void scatter_row(const GemmJob& job, const int8_t* src, int r, uint8_t* blk) {
  const int mr = job.kern->mr;
  const uint32_t flip = job.kern->offset_a ? 0x80808080u : 0u;
  const int64_t k = job.p->k, full = k / 4;
  for (int64_t s = 0; s < full; s++) {
    uint32_t v;
    std::memcpy(&v, src + 4 * s, 4);
    v ^= flip;
    std::memcpy(blk + (s * mr + r) * 4, &v, 4);
  }
  for (int64_t s = full; s < job.steps; s++)
    for (int kk = 0; kk < 4; kk++) {
      const int64_t kidx = 4 * s + kk;
      blk[(s * mr + r) * 4 + kk] = (uint8_t)((kidx < k ? (uint8_t)src[kidx] : 0) ^ (flip & 0xFF));
    }
}

inline void pad_row(const GemmJob& job, int r, uint8_t* blk) {
  const int mr = job.kern->mr;
  const uint8_t flip = job.kern->offset_a ? 0x80 : 0x00;
  for (int64_t s = 0; s < job.steps; s++) std::memset(blk + (s * mr + r) * 4, flip, 4);
}

// Pack task: rows [task * MC, +MC) of A (codes given, or quantized from x on the fly).
void pack_rows(const GemmJob& job, int64_t task) {
  const adatsq_gemm_args* p = job.p;
  const int mr = job.kern->mr;
  const int64_t i0 = task * MC, i1 = std::min<int64_t>(p->m, i0 + MC);
  const int64_t b0 = i0 / mr, b1 = (i1 + mr - 1) / mr;
  const bool prologue = job.x && job.ops && job.ops->layer_norm;
  const bool blockwise = job.kern->pack_block != nullptr;
  // Codes of the rows being packed: one row at a time, or a whole mr-row block for pack_block
  // (then one more row of zeros for the rows past the matrix).
  int8_t* codes = nullptr;
  float* normed = nullptr;
  if (job.x || blockwise) {
    std::vector<int8_t>& buf = row_scratch();
    const size_t need = (size_t)p->k * (blockwise ? mr + 1 : 1);
    if (buf.size() < need) buf.resize(need);
    codes = buf.data();
    if (blockwise) std::memset(codes + (size_t)mr * p->k, 0, (size_t)p->k);
  }
  if (prologue) {
    std::vector<float>& buf = float_row_scratch();
    if ((int64_t)buf.size() < p->k) buf.resize(p->k);
    normed = buf.data();
  }
  // The codes of row i: quantized from x (after the prologue) into dst, or the given codes.
  auto row_codes = [&](int64_t i, int8_t* dst) -> const int8_t* {
    if (!job.x) return p->a + i * p->lda;
    const float* src = job.x + i * job.ldx;
    if (prologue) {
      prologue_row(job.kern, job.ops, src, i, p->k, normed);
      src = normed;
    }
    job.kern->quant_row(src, p->k, job.qmax, job.clip, dst, job.sa_out + i);
    return dst;
  };
  const uint8_t flip = job.kern->offset_a ? 0x80 : 0x00;
  for (int64_t b = b0; b < b1; b++) {
    uint8_t* blk = job.ap + b * block_bytes(job);
    if (blockwise) {
      const int8_t* rows[16];
      for (int r = 0; r < mr; r++) {
        const int64_t i = b * mr + r;
        rows[r] = i < p->m ? row_codes(i, codes + (size_t)r * p->k) : codes + (size_t)mr * p->k;
      }
      job.kern->pack_block(rows, p->k, job.steps, flip, blk);
      continue;
    }
    for (int r = 0; r < mr; r++) {
      const int64_t i = b * mr + r;
      if (i >= p->m) { pad_row(job, r, blk); continue; }
      scatter_row(job, row_codes(i, codes), r, blk);
    }
  }
}

// Tasks [0, mblocks) pack the row blocks of A; the tile tasks after them wait (spinning) until
// their row block is packed. Tasks are handed out in order, so a pack task has always been
// started by some thread before a tile task that needs it: one pool wake-up per call.
void gemm_task(void* ctx, int64_t task) {
  const GemmJob& job = *(const GemmJob*)ctx;
  if (task < job.mblocks) {
    try {
      pack_rows(job, task);
    } catch (...) {  // never unwind through the thread pool or OpenMP
      job.failed.store(1);
    }
    job.packed[task].store(1, std::memory_order_release);
    return;
  }
  if (job.failed.load(std::memory_order_relaxed)) return;
  task -= job.mblocks;
  const adatsq_gemm_args* p = job.p;
  const int mr = job.kern->mr;
  const int64_t ib = task / job.nblocks, jb = task % job.nblocks;
  const int64_t i0 = ib * MC, rows = std::min<int64_t>(MC, p->m - i0);
  const int64_t p0 = jb * job.nc_panels, p1 = std::min<int64_t>(job.panels, p0 + job.nc_panels);
  const int64_t blocks = (rows + mr - 1) / mr;
  while (!job.packed[ib].load(std::memory_order_acquire)) cpu_relax();
  const uint8_t* ap = job.ap + (i0 / mr) * block_bytes(job);
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
      t.ap = ap + b * block_bytes(job);
      t.rows = (int)std::min<int64_t>(mr, p->m - row0);
      t.sa = job.sa ? job.sa + row0 : nullptr;
      t.c = (char*)p->c + (row0 * p->ldc + col0) * out_size;
      job.kern->tile(&t);
      if (job.post) job.kern->post_rows((float*)t.c, p->ldc, t.rows, t.cols, row0, col0, job.ops);
    }
  }
}

// Packs (or quantizes and packs) A, then runs the tile tasks.
int32_t run_gemm(GemmJob& job) {
  const adatsq_gemm_args* p = job.p;
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
  job.nc_panels = (job.panels + job.nblocks - 1) / job.nblocks;  // even blocks: 12 panels as 6 + 6, not 8 + 4
  CallScratch& scratch = call_scratch();
  const int mr = job.kern->mr;
  const size_t need = (size_t)(((p->m + mr - 1) / mr) * block_bytes(job));
  if (scratch.a.size() < need) scratch.a.resize(need);
  job.ap = scratch.a.data();
  if (job.x) {
    if (scratch.sa.size() < (size_t)p->m) scratch.sa.resize(p->m);
    job.sa_out = scratch.sa.data();
    job.sa = job.sa_out;
  } else {
    job.sa = p->sa;
  }
  if (scratch.flag_count < job.mblocks) {
    scratch.flags.reset(new std::atomic<int32_t>[job.mblocks]);
    scratch.flag_count = job.mblocks;
  }
  job.packed = scratch.flags.get();
  for (int64_t i = 0; i < job.mblocks; i++) job.packed[i].store(0, std::memory_order_relaxed);
  ThreadPool::instance().run(p->threads, job.mblocks + job.mblocks * job.nblocks, gemm_task, &job);
  return job.failed.load() ? ADATSQ_OUT_OF_MEMORY : ADATSQ_OK;
}

int32_t check_gemm(const adatsq_gemm_args* p) {
  if (!p || !p->b || !p->colsum || !p->sb || !p->c) return ADATSQ_BAD_ARGUMENT;
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

int32_t check_ops(const adatsq_linear_ops* o, int64_t k, int64_t n) {
  if (!o) return ADATSQ_OK;
  if (o->layer_norm != 0 && o->layer_norm != 1) return ADATSQ_BAD_ARGUMENT;
  if (o->layer_norm && !(o->eps > 0.f)) return ADATSQ_BAD_ARGUMENT;
  if ((o->shift || o->scale) && (!o->layer_norm || o->ld_mod < k)) return ADATSQ_BAD_ARGUMENT;
  if (o->rows_per_sample < 1) return ADATSQ_BAD_ARGUMENT;
  if (o->activation != ADATSQ_ACT_NONE && o->activation != ADATSQ_ACT_GELU_TANH) return ADATSQ_BAD_ARGUMENT;
  if (o->residual && o->ld_residual < n) return ADATSQ_BAD_ARGUMENT;
  if (o->gate && (!o->residual || o->ld_gate < n)) return ADATSQ_BAD_ARGUMENT;
  return ADATSQ_OK;
}

struct RowsJob {
  const IsaKernels* kern;
  const adatsq_linear_ops* ops;
  const float* x;
  float* out;
  int64_t m, k, ldx, ldo, rows_per_task;
};

void layernorm_task(void* ctx, int64_t task) {
  const RowsJob& j = *(const RowsJob*)ctx;
  const int64_t r0 = task * j.rows_per_task, r1 = std::min(j.m, r0 + j.rows_per_task);
  for (int64_t r = r0; r < r1; r++) prologue_row(j.kern, j.ops, j.x + r * j.ldx, r, j.k, j.out + r * j.ldo);
}

// x is c here: k = columns, ldx = ldc.
void epilogue_task(void* ctx, int64_t task) {
  const RowsJob& j = *(const RowsJob*)ctx;
  const int64_t r0 = task * j.rows_per_task, r1 = std::min(j.m, r0 + j.rows_per_task);
  for (int64_t c0 = 0; c0 < j.k; c0 += NR)
    j.kern->post_rows(j.out + r0 * j.ldo + c0, j.ldo, (int)(r1 - r0), (int)std::min<int64_t>(NR, j.k - c0), r0, c0, j.ops);
}

int64_t rows_per_task(int64_t m, int32_t threads) {
  return std::max<int64_t>(1, std::min<int64_t>(64, (m + 4 * threads - 1) / (4 * threads)));
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
  int32_t threads;
  std::atomic<int64_t> macs{0};
  std::atomic<int32_t> arrived{0};
  std::atomic<int64_t> longest_ns{0};
};

// One loop per thread, all at once: tasks are handed out dynamically, so without the start barrier
// one thread could run two loops back to back while the other was still waking up (which halves
// the apparent peak). The barrier gives up after 1 s rather than hang; each loop times itself after
// it, and the peak is the ops over the longest loop.
void peak_task(void* ctx, int64_t) {
  PeakJob& j = *(PeakJob*)ctx;
  j.arrived.fetch_add(1);
  const auto wait0 = std::chrono::steady_clock::now();
  while (j.arrived.load() < j.threads && std::chrono::steady_clock::now() - wait0 < std::chrono::seconds(1)) cpu_relax();
  const auto t0 = std::chrono::steady_clock::now();
  int64_t done = j.isa == ADATSQ_ISA_AVX512VNNI ? vnni_peak_avx512(j.iterations) : vnni_peak_avxvnni(j.iterations);
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  j.macs.fetch_add(done);
  int64_t prev = j.longest_ns.load();
  while (ns > prev && !j.longest_ns.compare_exchange_weak(prev, ns)) {
  }
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
    if (!p->a || (!p->out_int32 && !p->sa)) return ADATSQ_BAD_ARGUMENT;
    const IsaKernels* kern = kernels(p->isa);
    if (!kern) return ADATSQ_ISA_UNAVAILABLE;
    GemmJob job{};
    job.p = p;
    job.kern = kern;
    return run_gemm(job);
  } catch (const std::bad_alloc&) {
    return ADATSQ_OUT_OF_MEMORY;
  } catch (...) {
    return ADATSQ_INTERNAL;
  }
}

ADATSQ_API int32_t adatsq_linear(const adatsq_gemm_args* p, const float* x, int64_t ldx, int32_t abits, float clip) {
  return adatsq_linear_ex(p, x, ldx, abits, clip, nullptr);
}

ADATSQ_API int32_t adatsq_linear_ex(const adatsq_gemm_args* p, const float* x, int64_t ldx, int32_t abits, float clip,
                                    const adatsq_linear_ops* ops) {
  try {
    int32_t status = check_gemm(p);
    if (status != ADATSQ_OK) return status;
    if ((status = check_ops(ops, p->k, p->n)) != ADATSQ_OK) return status;
    if (!x || ldx < p->k || p->out_int32 || abits < 2 || abits > 8 || !(clip > 0.f && clip <= 1.f)) return ADATSQ_BAD_ARGUMENT;
    const IsaKernels* kern = kernels(p->isa);
    if (!kern) return ADATSQ_ISA_UNAVAILABLE;
    GemmJob job{};
    job.p = p;
    job.kern = kern;
    job.x = x;
    job.ldx = ldx;
    job.qmax = (1 << (abits - 1)) - 1;
    job.clip = clip;
    job.ops = ops;
    job.post = has_epilogue(ops);
    return run_gemm(job);
  } catch (const std::bad_alloc&) {
    return ADATSQ_OUT_OF_MEMORY;
  } catch (...) {
    return ADATSQ_INTERNAL;
  }
}

ADATSQ_API int32_t adatsq_layernorm_modulate(int32_t isa, const float* x, int64_t m, int64_t k, int64_t ldx,
                                             const adatsq_linear_ops* ops, float* out, int64_t ldo, int32_t threads) {
  try {
    const IsaKernels* kern = kernels(isa);
    if (!kern) return ADATSQ_ISA_UNAVAILABLE;
    if (!x || !out || !ops || m <= 0 || k <= 0 || ldx < k || ldo < k || threads < 1 || !ops->layer_norm) return ADATSQ_BAD_ARGUMENT;
    int32_t status = check_ops(ops, k, 1);
    if (status != ADATSQ_OK) return status;
    RowsJob job{kern, ops, x, out, m, k, ldx, ldo, rows_per_task(m, threads)};
    ThreadPool::instance().run(threads, (m + job.rows_per_task - 1) / job.rows_per_task, layernorm_task, &job);
    return ADATSQ_OK;
  } catch (const std::bad_alloc&) {
    return ADATSQ_OUT_OF_MEMORY;
  } catch (...) {
    return ADATSQ_INTERNAL;
  }
}

ADATSQ_API int32_t adatsq_apply_epilogue(int32_t isa, float* c, int64_t m, int64_t n, int64_t ldc,
                                         const adatsq_linear_ops* ops, int32_t threads) {
  try {
    const IsaKernels* kern = kernels(isa);
    if (!kern) return ADATSQ_ISA_UNAVAILABLE;
    if (!c || !ops || m <= 0 || n <= 0 || ldc < n || threads < 1) return ADATSQ_BAD_ARGUMENT;
    int32_t status = check_ops(ops, 1, n);
    if (status != ADATSQ_OK) return status;
    RowsJob job{kern, ops, nullptr, c, m, n, ldc, ldc, rows_per_task(m, threads)};
    ThreadPool::instance().run(threads, (m + job.rows_per_task - 1) / job.rows_per_task, epilogue_task, &job);
    return ADATSQ_OK;
  } catch (const std::bad_alloc&) {
    return ADATSQ_OUT_OF_MEMORY;
  } catch (...) {
    return ADATSQ_INTERNAL;
  }
}

ADATSQ_API int32_t adatsq_set_thread_backend(int32_t backend) {
  if (backend != 0 && backend != 1) return ADATSQ_BAD_ARGUMENT;
  ThreadPool::backend().store(backend);
  return ADATSQ_OK;
}

ADATSQ_API int32_t adatsq_last_run_used_openmp(void) { return ThreadPool::instance().last_run_used_openmp() ? 1 : 0; }

ADATSQ_API int32_t adatsq_vnni_peak(int32_t isa, int64_t iterations, int32_t threads, double* seconds, double* ops) {
  if ((isa != ADATSQ_ISA_AVX512VNNI && isa != ADATSQ_ISA_AVXVNNI) || !kernels(isa)) return ADATSQ_ISA_UNAVAILABLE;
  if (iterations <= 0 || threads < 1 || !seconds || !ops) return ADATSQ_BAD_ARGUMENT;
  try {
    PeakJob job;
    job.isa = isa;
    job.iterations = iterations;
    job.threads = threads;
    ThreadPool::instance().run(threads, threads, peak_task, &job);
    *seconds = (double)job.longest_ns.load() * 1e-9;
    *ops = 2.0 * (double)job.macs.load();
    return ADATSQ_OK;
  } catch (...) {
    return ADATSQ_INTERNAL;
  }
}

}  // extern "C"
