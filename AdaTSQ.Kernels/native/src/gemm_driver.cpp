// The blocked GEMM driver: splits a call into pack tasks (one per MC-row block of A) and tile
// tasks (MC rows x a block of 48-column panels), sizes the column blocks so that every thread gets
// work, and runs them all as one task set on the thread pool.
#include <algorithm>
#include <memory>
#include <new>
#include <vector>
#include "driver.h"
#include "thread_pool.h"

namespace adatsq {
namespace {

struct CallScratch {
  std::vector<uint8_t> a;
  std::vector<float> sa;
  std::vector<float> lr_t;  // [m, rank]: the low-rank down-projections
  std::vector<float> up_t;  // [panels][rank][NR]: the up factor transposed per panel (zero past n)
  std::unique_ptr<std::atomic<int32_t>[]> flags;
  int64_t flag_count = 0;
};

CallScratch& call_scratch() {
  static thread_local CallScratch s;
  return s;
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
  t.sa_ld = job.a_group > 0 ? job.ldsa : 0;
  t.sa_div = job.a_group > 0 ? job.a_group / p->group : 1;
  for (int64_t pn = p0; pn < p1; pn++) {
    const int64_t col0 = pn * NR;
    const float* up_t = job.rank > 0 ? job.up_t + pn * job.rank * NR : nullptr;
    t.bp = p->b + pn * panel_bytes;
    t.colsum = p->colsum + col0;
    t.sb = p->sb + col0;
    t.bias = p->bias ? p->bias + col0 : nullptr;
    t.cols = (int)std::min<int64_t>(NR, p->n - col0);
    for (int64_t b = 0; b < blocks; b++) {
      const int64_t row0 = i0 + b * mr;
      t.ap = ap + b * block_bytes(job);
      t.rows = (int)std::min<int64_t>(mr, p->m - row0);
      t.sa = job.sa ? job.sa + row0 * (t.sa_ld > 0 ? t.sa_ld : 1) : nullptr;
      t.c = (char*)p->c + (row0 * p->ldc + col0) * out_size;
      job.kern->tile(&t);
      // y = GEMM + bias + branch, then the activation and the residual (the unfused order).
      if (up_t) job.kern->lowrank_up((float*)t.c, p->ldc, t.rows, t.cols, job.lr_t + row0 * job.rank, job.rank, up_t, job.rank);
      if (job.post) job.kern->post_rows((float*)t.c, p->ldc, t.rows, t.cols, row0, col0, job.ops);
    }
  }
}

}  // namespace

int32_t run_gemm(GemmJob& job) {
  const adatsq_gemm_args* p = job.p;
  // The tiles' k loops (assembly on the VNNI paths) count TileArgs::group_steps = group / 4 down
  // to zero with dec / jnz, two at a time (sub $2 / jnz) for 4-bit weights: a count of 0, or an odd
  // one for 4-bit weights, would never reach zero (about 2^64 trips). check_gemm (api.cpp) refuses
  // such a group; this guard keeps the driver from ever starting a tile with one.
  const int64_t group_steps = p->group / 4;
  if (group_steps < 1 || (p->wbits == 4 && group_steps % 2 != 0) || p->groups < 1)
    return fail(ADATSQ_INTERNAL, "GEMM driver: %lld k4 steps per group x %lld groups at %d-bit weights would start an endless k loop",
                (long long)group_steps, (long long)p->groups, (int)p->wbits);
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
  job.a_group = p->a_group;
  if (job.x) {
    // The fused quantizer's scales: one per row, or k / a_group per row (row stride ldsa).
    job.ldsa = job.a_group > 0 ? p->k / job.a_group : 1;
    const size_t sa_need = (size_t)p->m * (size_t)job.ldsa;
    if (scratch.sa.size() < sa_need) scratch.sa.resize(sa_need);
    job.sa_out = scratch.sa.data();
    job.sa = job.sa_out;
    if (job.rank > 0) {
      const size_t lr_need = (size_t)p->m * (size_t)job.rank;
      if (scratch.lr_t.size() < lr_need) scratch.lr_t.resize(lr_need);
      job.lr_t = scratch.lr_t.data();
      // The up factor [N, ld_up] transposed once per call into [panels][rank][NR] (O(N r), before the tasks: every
      // tile task of a panel then reads 48 contiguous columns per rank).
      const size_t up_need = (size_t)job.panels * (size_t)job.rank * NR;
      if (scratch.up_t.size() < up_need) scratch.up_t.resize(up_need);
      float* up_t = scratch.up_t.data();
      const adatsq_linear_ops* o = job.ops;
      for (int64_t pn = 0; pn < job.panels; pn++) {
        float* dst = up_t + pn * job.rank * NR;
        for (int c = 0; c < NR; c++) {
          const int64_t col = pn * NR + c;
          if (col < p->n) {
            const float* src = o->lr_up + col * o->ld_up;
            for (int64_t j = 0; j < job.rank; j++) dst[j * NR + c] = src[j];
          } else {
            for (int64_t j = 0; j < job.rank; j++) dst[j * NR + c] = 0.f;
          }
        }
      }
      job.up_t = up_t;
    }
  } else {
    job.ldsa = job.a_group > 0 ? p->ldsa : 1;
    job.sa = p->sa;
  }
  if (scratch.flag_count < job.mblocks) {
    scratch.flags.reset(new std::atomic<int32_t>[job.mblocks]);
    scratch.flag_count = job.mblocks;
  }
  job.packed = scratch.flags.get();
  for (int64_t i = 0; i < job.mblocks; i++) job.packed[i].store(0, std::memory_order_relaxed);
  ThreadPool::instance().run(p->threads, job.mblocks + job.mblocks * job.nblocks, gemm_task, &job);
  return job.failed.load() ? fail(ADATSQ_OUT_OF_MEMORY, "GEMM: a pack task could not allocate its row buffer") : ADATSQ_OK;
}

}  // namespace adatsq
