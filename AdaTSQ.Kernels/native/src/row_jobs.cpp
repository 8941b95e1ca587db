// The row jobs: per-row work that the thread pool runs in tasks of rows. The GEMM's pack tasks
// (codes, or floats through the fused prologue and the row quantizer, into the packed A layout),
// the row quantizer alone, the fused prologue and epilogue passes alone, and the VNNI peak loop.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>
#include "driver.h"
#include "thread_pool.h"

namespace adatsq {
namespace {

std::vector<int8_t>& row_scratch() {
  static thread_local std::vector<int8_t> buf;
  return buf;
}

std::vector<float>& float_row_scratch() {
  static thread_local std::vector<float> buf;
  return buf;
}

// k floats of the prologue's rotation scratch (rot_order > 1), or null when the rotation needs none.
float* rotation_scratch(const adatsq_linear_ops* ops, int64_t k) {
  if (!ops || ops->rot_block <= 0 || ops->rot_order <= 1) return nullptr;
  static thread_local std::vector<float> buf;
  if ((int64_t)buf.size() < k) buf.resize(k);
  return buf.data();
}

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

struct RowsJob {
  const IsaKernels* kern;
  const adatsq_linear_ops* ops;
  const float* x;
  float* out;
  int64_t m, k, ldx, ldo, rows_per_task;
  mutable std::atomic<int32_t> failed{0};  // a task could not allocate its scratch
};

void layernorm_task(void* ctx, int64_t task) {
  const RowsJob& j = *(const RowsJob*)ctx;
  const int64_t r0 = task * j.rows_per_task, r1 = std::min(j.m, r0 + j.rows_per_task);
  float* tmp = nullptr;
  try {
    tmp = rotation_scratch(j.ops, j.k);
  } catch (...) {  // never unwind through the thread pool or OpenMP
    j.failed.store(1);
    return;
  }
  for (int64_t r = r0; r < r1; r++) prologue_row(j.kern, j.ops, j.x + r * j.ldx, r, j.k, j.out + r * j.ldo, tmp);
}

// x is c here: k = columns, ldx = ldc.
void epilogue_task(void* ctx, int64_t task) {
  const RowsJob& j = *(const RowsJob*)ctx;
  const int64_t r0 = task * j.rows_per_task, r1 = std::min(j.m, r0 + j.rows_per_task);
  for (int64_t c0 = 0; c0 < j.k; c0 += NR)
    j.kern->post_rows(j.out + r0 * j.ldo + c0, j.ldo, (int)(r1 - r0), (int)std::min<int64_t>(NR, j.k - c0), r0, c0, j.ops);
}

// About four tasks per thread, at most 64 rows each.
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
  const IsaKernels* kern;
  int64_t group, ld_scale;  // group = k: one scale per row (scale + r)
};

void quant_task(void* ctx, int64_t task) {
  const QuantJob& j = *(const QuantJob*)ctx;
  const int64_t r0 = task * j.rows_per_task, r1 = std::min(j.m, r0 + j.rows_per_task);
  if (j.group == j.k) {
    for (int64_t r = r0; r < r1; r++) j.kern->quant_row(j.x + r * j.ldx, j.k, j.qmax, j.clip, j.q + r * j.ldq, j.scale + r);
    return;
  }
  for (int64_t r = r0; r < r1; r++)
    quantize_row_groups(j.kern, j.x + r * j.ldx, j.k, j.qmax, j.clip, j.group, j.q + r * j.ldq, j.scale + r * j.ld_scale);
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

void pack_rows(const GemmJob& job, int64_t task) {
  const adatsq_gemm_args* p = job.p;
  const int mr = job.kern->mr;
  const int64_t i0 = task * MC, i1 = std::min<int64_t>(p->m, i0 + MC);
  const int64_t b0 = i0 / mr, b1 = (i1 + mr - 1) / mr;
  const bool prologue = job.x && has_prologue(job.ops);
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
  float* rot_tmp = nullptr;
  if (prologue) {
    std::vector<float>& buf = float_row_scratch();
    if ((int64_t)buf.size() < p->k) buf.resize(p->k);
    normed = buf.data();
    rot_tmp = rotation_scratch(job.ops, p->k);
  }
  // The codes of row i: quantized from x (after the prologue) into dst, or the given codes.
  auto row_codes = [&](int64_t i, int8_t* dst) -> const int8_t* {
    if (!job.x) return p->a + i * p->lda;
    const float* src = job.x + i * job.ldx;
    if (prologue) {
      prologue_row(job.kern, job.ops, src, i, p->k, normed, rot_tmp);
      src = normed;
    }
    // The low-rank down-projection of the transformed row, while it is in cache.
    if (job.rank > 0) job.kern->lowrank_down(src, p->k, job.ops->lr_down, job.ops->ld_down, job.rank, job.lr_t + i * job.rank);
    if (job.a_group > 0) quantize_row_groups(job.kern, src, p->k, job.qmax, job.clip, job.a_group, dst, job.sa_out + i * job.ldsa);
    else job.kern->quant_row(src, p->k, job.qmax, job.clip, dst, job.sa_out + i);
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

void run_quantize_rows(const IsaKernels* kern, const float* x, int64_t m, int64_t k, int64_t ldx, int32_t qmax, float clip,
                       int64_t group, int8_t* q, int64_t ldq, float* scale, int64_t ld_scale, int32_t threads) {
  QuantJob job{x, m, k, ldx, ldq, rows_per_task(m, threads), qmax, clip, q, scale, kern, group, ld_scale};
  const int64_t tasks = (m + job.rows_per_task - 1) / job.rows_per_task;
  ThreadPool::instance().run(threads, tasks, quant_task, &job);
}

int32_t run_layernorm_modulate(const IsaKernels* kern, const float* x, int64_t m, int64_t k, int64_t ldx,
                               const adatsq_linear_ops* ops, float* out, int64_t ldo, int32_t threads) {
  RowsJob job{kern, ops, x, out, m, k, ldx, ldo, rows_per_task(m, threads), {}};
  ThreadPool::instance().run(threads, (m + job.rows_per_task - 1) / job.rows_per_task, layernorm_task, &job);
  return job.failed.load() ? fail(ADATSQ_OUT_OF_MEMORY, "prologue: a task could not allocate its rotation scratch") : ADATSQ_OK;
}

void run_apply_epilogue(const IsaKernels* kern, float* c, int64_t m, int64_t n, int64_t ldc, const adatsq_linear_ops* ops,
                        int32_t threads) {
  RowsJob job{kern, ops, nullptr, c, m, n, ldc, ldc, rows_per_task(m, threads), {}};
  ThreadPool::instance().run(threads, (m + job.rows_per_task - 1) / job.rows_per_task, epilogue_task, &job);
}

void run_vnni_peak(int32_t isa, int64_t iterations, int32_t threads, double* seconds, double* ops) {
  PeakJob job;
  job.isa = isa;
  job.iterations = iterations;
  job.threads = threads;
  ThreadPool::instance().run(threads, threads, peak_task, &job);
  *seconds = (double)job.longest_ns.load() * 1e-9;
  *ops = 2.0 * (double)job.macs.load();
}

}  // namespace adatsq
