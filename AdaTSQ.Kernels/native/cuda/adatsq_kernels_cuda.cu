// AdaTSQ.NET CUDA integer kernels (opt-in; see build.sh and docs/kernels.md, "CUDA").
//
//  - quantize_rows_kernel: per-token dynamic quantization fp32 -> int8 codes, one block per row.
//  - gemm_dp4a_kernel<W4>: int8 activations x int8 (W4 = false) or packed int4 (W4 = true) weights,
//    64x64 output tile per 256-thread block, 4x4 outputs per thread, K in 32-byte steps through
//    shared memory, int32 accumulation with __dp4a, group-wise conversion to fp32 and the fused
//    epilogue (per-token x per-channel/per-group scales, bias). Int4 weights are read packed from
//    global memory and unpacked (sign-extended nibbles) in registers while the tile is staged, so
//    shared memory and the dp4a loop see int8 lanes.
//
// Status: compiled with nvcc 11.8 for sm_80 / sm_90; NOT yet run on a GPU (none on the build machine).
#include "adatsq_kernels_cuda.h"

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

namespace {

constexpr int kBM = 64;          // output rows per block
constexpr int kBN = 64;          // output columns per block
constexpr int kBK = 32;          // K bytes per shared-memory stage (8 dp4a words)
constexpr int kWords = kBK / 4;  // int32 words per row per stage
constexpr int kThreadsX = 16, kThreadsY = 16;
constexpr int kPerThread = 4;    // 4 x 4 outputs per thread
constexpr int kQuantThreads = 256;

thread_local char g_last_error[256] = "";

void set_error(const char* what, cudaError_t e) {
  snprintf(g_last_error, sizeof g_last_error, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

__device__ __forceinline__ int pack4(int b0, int b1, int b2, int b3) {
  return (b0 & 0xFF) | ((b1 & 0xFF) << 8) | ((b2 & 0xFF) << 16) | ((b3 & 0xFF) << 24);
}

// Sign-extends the 4-bit value v (0..15) to -8..7.
__device__ __forceinline__ int sext4(int v) { return (v ^ 8) - 8; }

// Four int8 lanes of A (or int8 W) starting at column kk of row `row`; zero outside [.., kend) / rows.
__device__ __forceinline__ int load_word_i8(const int8_t* base, int64_t ld, int64_t row, int64_t rows, int64_t kk, int64_t kend) {
  if (row >= rows || kk >= kend) return 0;
  const int8_t* p = base + row * ld + kk;
  if (kk + 4 <= kend && ((uintptr_t)p & 3) == 0) return *reinterpret_cast<const int*>(p);
  int b[4];
#pragma unroll
  for (int i = 0; i < 4; i++) b[i] = kk + i < kend ? (int)p[i] : 0;
  return pack4(b[0], b[1], b[2], b[3]);
}

// Four int8 lanes of packed int4 W (low nibble = even column) starting at column kk of row `row`.
__device__ __forceinline__ int load_word_i4(const uint8_t* base, int64_t ld, int64_t row, int64_t rows, int64_t kk, int64_t kend) {
  if (row >= rows || kk >= kend) return 0;
  const uint8_t* r = base + row * ld;
  if ((kk & 1) == 0 && kk + 4 <= kend) {
    // two packed bytes -> four nibbles, unpacked in registers
    const unsigned x = (unsigned)r[kk >> 1] | ((unsigned)r[(kk >> 1) + 1] << 8);
    return pack4(sext4(x & 0xF), sext4((x >> 4) & 0xF), sext4((x >> 8) & 0xF), sext4((x >> 12) & 0xF));
  }
  int b[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int64_t c = kk + i;
    b[i] = c < kend ? sext4((c & 1) ? (r[c >> 1] >> 4) : (r[c >> 1] & 0xF)) : 0;
  }
  return pack4(b[0], b[1], b[2], b[3]);
}

template <bool W4>
__global__ void __launch_bounds__(kThreadsX * kThreadsY)
gemm_dp4a_kernel(const int8_t* __restrict__ a, int64_t lda, const float* __restrict__ act_scale,
                 const void* __restrict__ wv, int64_t ldw, const float* __restrict__ w_scale,
                 int64_t group_size, int64_t groups, const float* __restrict__ bias,
                 float* __restrict__ c, int64_t ldc, int64_t m, int64_t n, int64_t k) {
  __shared__ int as[kBM][kWords + 1];
  __shared__ int ws[kBN][kWords + 1];

  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * kThreadsX + tx;
  const int64_t m0 = (int64_t)blockIdx.y * kBM, n0 = (int64_t)blockIdx.x * kBN;

  float facc[kPerThread][kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; i++)
#pragma unroll
    for (int j = 0; j < kPerThread; j++) facc[i][j] = 0.f;

  for (int64_t g = 0; g < groups; g++) {
    const int64_t g0 = g * group_size;
    const int64_t g1 = g0 + group_size < k ? g0 + group_size : k;
    int iacc[kPerThread][kPerThread];
#pragma unroll
    for (int i = 0; i < kPerThread; i++)
#pragma unroll
      for (int j = 0; j < kPerThread; j++) iacc[i][j] = 0;

    for (int64_t k0 = g0; k0 < g1; k0 += kBK) {
      // Stage: kBM x kWords words of A and kBN x kWords words of W; 256 threads, 2 words each.
#pragma unroll
      for (int t = tid; t < kBM * kWords; t += kThreadsX * kThreadsY) {
        const int r = t / kWords, w = t % kWords;
        as[r][w] = load_word_i8(a, lda, m0 + r, m, k0 + 4 * w, g1);
      }
#pragma unroll
      for (int t = tid; t < kBN * kWords; t += kThreadsX * kThreadsY) {
        const int r = t / kWords, w = t % kWords;
        ws[r][w] = W4 ? load_word_i4(static_cast<const uint8_t*>(wv), ldw, n0 + r, n, k0 + 4 * w, g1)
                      : load_word_i8(static_cast<const int8_t*>(wv), ldw, n0 + r, n, k0 + 4 * w, g1);
      }
      __syncthreads();
#pragma unroll
      for (int w = 0; w < kWords; w++) {
        int av[kPerThread], wv4[kPerThread];
#pragma unroll
        for (int i = 0; i < kPerThread; i++) av[i] = as[ty + kThreadsY * i][w];
#pragma unroll
        for (int j = 0; j < kPerThread; j++) wv4[j] = ws[tx + kThreadsX * j][w];
#pragma unroll
        for (int i = 0; i < kPerThread; i++)
#pragma unroll
          for (int j = 0; j < kPerThread; j++) iacc[i][j] = __dp4a(av[i], wv4[j], iacc[i][j]);
      }
      __syncthreads();
    }
    // Group epilogue: int32 -> fp32 times the weight scale of (column, group).
#pragma unroll
    for (int j = 0; j < kPerThread; j++) {
      const int64_t col = n0 + tx + kThreadsX * j;
      const float s = col < n ? w_scale[col * groups + g] : 0.f;
#pragma unroll
      for (int i = 0; i < kPerThread; i++) facc[i][j] += (float)iacc[i][j] * s;
    }
  }

  // Final epilogue: per-token scale and bias.
#pragma unroll
  for (int i = 0; i < kPerThread; i++) {
    const int64_t row = m0 + ty + kThreadsY * i;
    if (row >= m) continue;
    const float sa = act_scale[row];
#pragma unroll
    for (int j = 0; j < kPerThread; j++) {
      const int64_t col = n0 + tx + kThreadsX * j;
      if (col < n) c[row * ldc + col] = facc[i][j] * sa + (bias ? bias[col] : 0.f);
    }
  }
}

__global__ void __launch_bounds__(kQuantThreads)
quantize_rows_kernel(const float* __restrict__ x, int64_t k, int64_t ldx, int qmax, float clip,
                     int8_t* __restrict__ q, int64_t ldq, float* __restrict__ scale) {
  const int64_t row = blockIdx.x;
  const float* xr = x + row * ldx;
  float amax = 0.f;
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) amax = fmaxf(amax, fabsf(xr[i]));
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, off));
  __shared__ float warp_max[kQuantThreads / 32];
  __shared__ float s_scale;
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = amax;
  __syncthreads();
  if (threadIdx.x == 0) {
    float v = warp_max[0];
    for (int w = 1; w < kQuantThreads / 32; w++) v = fmaxf(v, warp_max[w]);
    float s = __fdiv_rn(__fmul_rn(v, clip), (float)qmax);
    if (!(s >= 1e-12f)) s = 1e-12f;
    s_scale = s;
    scale[row] = s;
  }
  __syncthreads();
  const float s = s_scale, lo = (float)-qmax, hi = (float)qmax;
  int8_t* qr = q + row * ldq;
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    const float v = fminf(fmaxf(rintf(__fdiv_rn(xr[i], s)), lo), hi);
    qr[i] = (int8_t)(int)v;
  }
}

int have_device() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    set_error("cudaGetDeviceCount", e);
    cudaGetLastError();  // reset the runtime's last-error state for this thread
    return 0;
  }
  return count;
}

// Makes `device` current for the calling thread and restores the previous device on exit.
struct DeviceScope {
  int previous = -1;
  int enter(int device) {
    const int count = have_device();
    if (count == 0 || device < 0 || device >= count) {
      if (count != 0) snprintf(g_last_error, sizeof g_last_error, "device %d does not exist (%d devices)", device, count);
      return ADATSQ_CUDA_NO_DEVICE;
    }
    cudaError_t e = cudaGetDevice(&previous);
    if (e == cudaSuccess && previous != device) e = cudaSetDevice(device);
    if (e != cudaSuccess) {
      set_error("cudaSetDevice", e);
      previous = -1;
      return ADATSQ_CUDA_LAUNCH_FAILED;
    }
    return ADATSQ_CUDA_OK;
  }
  ~DeviceScope() {
    int current = -1;
    if (previous >= 0 && cudaGetDevice(&current) == cudaSuccess && current != previous) cudaSetDevice(previous);
  }
};

int launched(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return ADATSQ_CUDA_OK;
  set_error(what, e);
  return ADATSQ_CUDA_LAUNCH_FAILED;
}

}  // namespace

extern "C" {

int adatsq_cuda_abi_version(void) { return ADATSQ_CUDA_ABI_VERSION; }

int adatsq_cuda_device_count(void) { return have_device(); }

const char* adatsq_cuda_last_error(void) { return g_last_error; }

int adatsq_cuda_quantize_rows(const float* x, int64_t m, int64_t k, int64_t ldx, int bits, float clip,
                              int8_t* q, int64_t ldq, float* scale, int device, void* stream) {
  g_last_error[0] = '\0';
  if (!x || !q || !scale || m <= 0 || k <= 0 || ldx < k || ldq < k || bits < 2 || bits > 8 ||
      !(clip > 0.f && clip <= 1.f) || m > 0x7FFFFFFF)
    return ADATSQ_CUDA_BAD_ARGUMENT;
  DeviceScope scope;
  if (const int st = scope.enter(device)) return st;
  quantize_rows_kernel<<<(unsigned)m, kQuantThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, k, ldx, (1 << (bits - 1)) - 1, clip, q, ldq, scale);
  return launched("quantize_rows_kernel launch");
}

int adatsq_cuda_gemm(const int8_t* a, int64_t lda, const float* act_scale,
                     const void* w, int64_t ldw, int weight_bits, const float* w_scale, int64_t group,
                     const float* bias, float* c, int64_t ldc, int64_t m, int64_t n, int64_t k,
                     int device, void* stream) {
  g_last_error[0] = '\0';
  if (!a || !act_scale || !w || !w_scale || !c || m <= 0 || n <= 0 || k <= 0 || lda < k || ldc < n ||
      weight_bits < 2 || weight_bits > 8 || group < 0)
    return ADATSQ_CUDA_BAD_ARGUMENT;
  const bool w4 = weight_bits <= 4;
  if (ldw < (w4 ? (k + 1) / 2 : k)) return ADATSQ_CUDA_BAD_ARGUMENT;
  const int64_t group_size = group == 0 || group >= k ? k : group;
  const int64_t groups = (k + group_size - 1) / group_size;
  const int64_t grid_x = (n + kBN - 1) / kBN, grid_y = (m + kBM - 1) / kBM;
  if (grid_x > 0x7FFFFFFF || grid_y > 65535) return ADATSQ_CUDA_BAD_ARGUMENT;
  DeviceScope scope;
  if (const int st = scope.enter(device)) return st;
  const dim3 grid((unsigned)grid_x, (unsigned)grid_y), block(kThreadsX, kThreadsY);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (w4)
    gemm_dp4a_kernel<true><<<grid, block, 0, s>>>(a, lda, act_scale, w, ldw, w_scale, group_size, groups, bias, c, ldc, m, n, k);
  else
    gemm_dp4a_kernel<false><<<grid, block, 0, s>>>(a, lda, act_scale, w, ldw, w_scale, group_size, groups, bias, c, ldc, m, n, k);
  return launched(w4 ? "gemm_dp4a_kernel<int4> launch" : "gemm_dp4a_kernel<int8> launch");
}

}  // extern "C"
