// emu_device.h: what a kernel file needs to compile as C++ for the CUDA emulator (tests/cuda-emu).
//
// build.py prepends this header to kernels/common.cuh + kernels/<file>.cu, exactly the text that
// src/backend/cuda.rs hands to NVRTC (with the same -D options), and g++ compiles it. Every CUDA
// thread of a launch then runs the kernel's C++ body as a fiber (emu.cpp): threads of a block
// interleave only at __syncthreads and at warp collectives (__shfl_xor_sync, __ballot_sync,
// __all_sync, __syncwarp, mma.sync), which the scheduler resolves for the whole warp or block at
// once. So the emulator checks what the kernels compute (indexing, barriers, shuffles, the
// tensor-core fragment layouts), not how fast: no timing, no caches, and libm's expf/logf instead of
// CUDA's (both within a few ulps).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
// emu_host.h's standard headers, before the keyword macros below: libstdc++ spells an attribute
// __noinline__, which the macro would rewrite.
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace emu {

struct Dim3 {
    unsigned x, y, z;
};

// The running fiber's coordinates (set by the scheduler before it switches to a fiber).
struct ThreadCoords {
    Dim3 thread_idx, block_idx, block_dim, grid_dim;
};
extern thread_local const ThreadCoords* cur;

void syncthreads();
int syncthreads_or(int pred);
void syncwarp(unsigned mask);
unsigned ballot(unsigned mask, int pred);
int all(unsigned mask, int pred);
uint32_t shfl_xor32(unsigned mask, uint32_t v, int lane_mask, int width);
// One warp's mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 (this lane's fragments).
void mma_m16n8k16(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1);
[[noreturn]] void trap(const char* why);
void* dyn_smem();

uint16_t f32_to_f16_rn(float x);
float f16_to_f32(uint16_t h);
float rcp_approx_ftz(float x);

template <class T>
T shfl_xor(unsigned mask, T v, int lane_mask, int width) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "shuffles move 4 or 8 bytes");
    if constexpr (sizeof(T) == 4) {
        uint32_t w;
        std::memcpy(&w, &v, 4);
        w = shfl_xor32(mask, w, lane_mask, width);
        std::memcpy(&v, &w, 4);
    } else {
        uint32_t w[2];
        std::memcpy(w, &v, 8);
        w[0] = shfl_xor32(mask, w[0], lane_mask, width);
        w[1] = shfl_xor32(mask, w[1], lane_mask, width);
        std::memcpy(&v, w, 8);
    }
    return v;
}

}  // namespace emu

// ----- CUDA's keywords and built-ins ----------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __maxnreg__(...)
// Static shared memory: one copy per OS thread, and an OS thread runs one block at a time.
#define __shared__ thread_local
#define __CUDA_ARCH__ 900
#define RTRBM_CUDA_EMU 1

#define threadIdx (emu::cur->thread_idx)
#define blockIdx (emu::cur->block_idx)
#define blockDim (emu::cur->block_dim)
#define gridDim (emu::cur->grid_dim)
#define warpSize 32

struct float2 {
    float x, y;
};
struct uint4 {
    unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

inline void __syncthreads() { emu::syncthreads(); }
inline int __syncthreads_or(int p) { return emu::syncthreads_or(p); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::syncwarp(mask); }
inline unsigned __ballot_sync(unsigned mask, int p) { return emu::ballot(mask, p); }
inline int __all_sync(unsigned mask, int p) { return emu::all(mask, p); }
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return emu::shfl_xor(mask, v, lane_mask, width);
}
[[noreturn]] inline void __trap() { emu::trap("__trap()"); }
// The blocks of a grid run one after another and device memory is host memory: a fence has
// nothing to order, and a load through L2 is a load.
inline void __threadfence() {}
template <class T>
inline T __ldcg(const T* p) { return *p; }

inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}
using std::max;
using std::min;
