#!/usr/bin/env bash
# Opt-in build of libadatsq_kernels_cuda.so (NOT part of `dotnet build`: CI machines have no nvcc).
# Needs nvcc (Debian 12: apt-get install --no-install-recommends nvidia-cuda-toolkit, 11.8) and a
# host compiler nvcc accepts: nvcc 11.8 rejects gcc 12, so clang-14 is used (override with CCBIN=...).
# Usage: AdaTSQ.Kernels/native/cuda/build.sh [output-dir]   (default: AdaTSQ.Kernels/native/cuda/build)
# Put the .so next to the application (or on LD_LIBRARY_PATH) for CudaIntegerGemm to find it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/build}"
nvcc="${NVCC:-nvcc}"
ccbin="${CCBIN:-clang-14}"
command -v "$nvcc" >/dev/null || { echo "build.sh: nvcc not found (install the CUDA toolkit or set NVCC)." >&2; exit 1; }
command -v "$ccbin" >/dev/null || { echo "build.sh: host compiler $ccbin not found (set CCBIN)." >&2; exit 1; }
mkdir -p "$out"
"$nvcc" --version | tail -n 2
set -x
"$nvcc" -ccbin "$ccbin" -O3 -std=c++17 -shared -Xcompiler -fPIC -Xcompiler -fvisibility=hidden \
  -cudart static -Werror all-warnings \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
  -I"$here" -o "$out/libadatsq_kernels_cuda.so" "$here/adatsq_kernels_cuda.cu" -lstdc++ -Xlinker --no-undefined
