// common.cuh: shared device helpers, prepended (as a string, by src/backend/cuda.rs) to every
// kernel file. NVRTC has no include path, so this file uses no system headers.
//
// Philox4x32-10 and the uniform conversion are BIT-IDENTICAL twins of src/rng.rs:
//   counter block = (index >> 2, counter, stream, 0), key = (seed lo, seed hi), word = index & 3,
//   uniform = ((w >> 8) + 0.5) * 2^-24 in f32 (never 0 or 1).
// Kernels are compiled with --fmad=false so that a*b+c rounds like the Rust CPU reference
// (which never contracts); kernels that want speed over bit-tracking call fmaf explicitly.

typedef unsigned int u32;
typedef unsigned long long u64;

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// One Philox4x32 block with 10 rounds, in place on c[4]; twin of rng.rs `philox4x32_10`.
__device__ __forceinline__ void philox4x32_10(u32 c[4], u32 k0, u32 k1) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        u32 hi0 = __umulhi(PHILOX_M0, c[0]);
        u32 lo0 = PHILOX_M0 * c[0];
        u32 hi1 = __umulhi(PHILOX_M1, c[2]);
        u32 lo1 = PHILOX_M1 * c[2];
        u32 n0 = hi1 ^ c[1] ^ k0;
        u32 n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
}

// The 32-bit word number `index` of `counter`; twin of RngKey::word.
__device__ __forceinline__ u32 philox_word(u64 seed, u32 stream, u32 counter, u32 index) {
    u32 c[4] = {index >> 2, counter, stream, 0u};
    philox4x32_10(c, (u32)(seed & 0xffffffffull), (u32)(seed >> 32));
    u32 lane = index & 3u;
    return lane == 0 ? c[0] : lane == 1 ? c[1] : lane == 2 ? c[2] : c[3];
}

// A uniform in (0, 1); twin of rng.rs `word_to_uniform` / RngKey::uniform.
__device__ __forceinline__ float uniform01(u64 seed, u32 stream, u32 counter, u32 index) {
    u32 w = philox_word(seed, stream, counter, index);
    return ((float)(w >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

// Standard normal from the uniforms at indices 2*index, 2*index+1 (Box-Muller in f32; the CPU
// computes it in f64, so the two agree to rounding).
__device__ __forceinline__ float normal01(u64 seed, u32 stream, u32 counter, u32 index) {
    float u1 = uniform01(seed, stream, counter, 2u * index);
    float u2 = uniform01(seed, stream, counter, 2u * index + 1u);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

// sigma(x) = 1 / (1 + e^-x), accurate expf (no fast math); twin of Float::sigmoid.
__device__ __forceinline__ float sigmoidf_(float x) {
    return 1.0f / (1.0f + expf(-x));
}

// softplus(x) = log(1 + e^x) without overflow; twin of Float::softplus.
__device__ __forceinline__ float softplusf_(float x) {
    return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

// Bernoulli draw: 1 when u < p (twin of cpu.rs `bernoulli`).
__device__ __forceinline__ float bernoullif_(float u, float p) {
    return u < p ? 1.0f : 0.0f;
}

// Sum over the 32 lanes of a warp (all lanes get the result).
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Grid-stride loop over n elements.
#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
         i += (long long)blockDim.x * gridDim.x)

// ----- helpers of the chain kernels (rbm.cu, ais.cu, recurrent.cu, lstm.cu) ---------------------
// A weight matrix [rows, cols] is either read from global memory (w_shared == 0, ldw == cols) or
// staged once per block into dynamic shared memory with an odd row stride ldw (conflict-free for
// both row and column walks). Every thread of the block must call stage_w before any return.
__device__ __forceinline__ const float* stage_w(const float* __restrict__ W, int rows, int cols, int w_shared,
                                                int ldw, float* smem) {
    if (!w_shared) return W;
    int tid = threadIdx.y * blockDim.x + threadIdx.x, nt = blockDim.x * blockDim.y;
    for (int e = tid; e < rows * cols; e += nt) smem[(e / cols) * ldw + (e % cols)] = W[e];
    __syncthreads();
    return smem;
}

// init + sum_i x[i] W[i, j] in order i = 0.., skipping x[i] == 0: bit-identical to cpu.rs
// `affine_rows` (no FMA: kernels are compiled with --fmad=false).
__device__ __forceinline__ float col_dot(const float* Ws, int ldw, const float* x, int rows, int j, float init) {
    float a = init;
    for (int i = 0; i < rows; ++i) {
        float xi = x[i];
        if (xi != 0.0f) a += xi * Ws[(long long)i * ldw + j];
    }
    return a;
}

// init + sum_j h[j] W[i, j] in order j = 0.., skipping h[j] == 0 (cpu.rs `affine_rows` with W^T).
__device__ __forceinline__ float row_dot(const float* Ws, int ldw, const float* h, int cols, int i, float init) {
    float a = init;
    const float* row = Ws + (long long)i * ldw;
    for (int j = 0; j < cols; ++j) {
        float hj = h[j];
        if (hj != 0.0f) a += hj * row[j];
    }
    return a;
}
