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

// 1 / x to 1 ulp (MUFU.RCP), for probabilities: a draw moves only where |p - u| is at the 1e-7
// level, as with any change of rounding.
__device__ __forceinline__ float rcp_approx(float x) {
#ifdef RTRBM_CUDA_EMU  // the CPU emulator of tests/cuda-emu (g++ has no PTX)
    return emu::rcp_approx_ftz(x);
#else
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
#endif
}

// ----- the AIS weight increment (ais.cu, ais_tc.cu; twin of ais_hidden in src/backend/cpu.rs) ---
// e^z - 1 for |z| < 1/8: the degree-6 Taylor polynomial (relative error below 1e-9).
__device__ __forceinline__ float expm1_small(float z) {
    float p = fmaf(z, 1.0f / 720.0f, 1.0f / 120.0f);
    p = fmaf(z, p, 1.0f / 24.0f);
    p = fmaf(z, p, 1.0f / 6.0f);
    p = fmaf(z, p, 0.5f);
    return fmaf(z * z, p, z);
}

// softplus(a) - softplus(b) and sigma(a) for a unit outside ais_unit's range, z = a - b: for
// a, b > 0 as z + log1p(e^-a) - log1p(e^-b), which keeps the relative accuracy of a small z (the
// plain difference of two values near 10..80 would not). Out of line (and by value, so that the
// caller's sums stay in registers): inlined once per unit it would double a kernel's code.
static __device__ __noinline__ float2 ais_rare(float a, float b, float z) {
    float d = (a > 0.0f && b > 0.0f) ? z + (log1pf(expf(-a)) - log1pf(expf(-b))) : softplusf_(a) - softplusf_(b);
    return make_float2(d, sigmoidf_(a));
}

// One hidden unit of an AIS step. With b = bp x + bh and z = dl x (bp = beta_{k-1}, dl = beta_k -
// beta_{k-1}, bk = beta_k, all three optionally divided by a power-of-two scale of x), a = b + z,
// the unit's factor of the weight increment is
//   (1 + e^a) / (1 + e^b) = 1 + y,  y = sigma(b) (e^z - 1),
// and the factors of a lane multiply as 1 + Y, kept as Y (Y <- Y + y + Y y): no 1 + y is ever
// rounded, so the caller's log1pf(Y) keeps the relative accuracy of the small y. (Rounding each
// ratio near 1 to a float, as the first kernels did, biases the tiny increments of a long
// schedule: -6e-7 nats per step on the JSB model, docs/EVALUATION.md.) Every factor lies in
// (e^-1/8, e^1/8), so 600 units per lane stay inside the float range. sigma(b) = 1 / (1 + e^-b)
// holds for any b (e^-b = inf gives 0). Returns sigma(a) = 1 / (1 + e^-b / (1 + (e^z - 1))).
// Units with |z| >= 1/8 (a few in the first steps; NaN too) add their exact difference to d.
__device__ __forceinline__ float ais_unit(float x, float bh, float bp, float dl, float bk, float& Y, float& d) {
    float b = fmaf(bp, x, bh), z = dl * x;
    if (fabsf(z) < 0.125f) {
        float em = expm1_small(z);
        float enb = expf(-b);
        float y = em * rcp_approx(1.0f + enb);
        Y = fmaf(Y, y, Y + y);
        return rcp_approx(fmaf(enb, rcp_approx(1.0f + em), 1.0f));
    }
    float2 r = ais_rare(fmaf(bk, x, bh), b, z);
    d += r.x;
    return r.y;
}

// Sum over the 32 lanes of a warp (all lanes get the result).
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Grid-stride loop over n elements along grid x only (grid y or z carries the model index of
// packed launches; see the "Packed models" note of each kernel file).
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

// ----- helpers of the v2 chain kernels (ais_chains_v2_r*, gibbs_chain_v2_r*, gibbs_marginals_v2_r*) ---
// Lane l of a warp owns units l, l + 32, ..., l + 32 (R - 1) of a layer (so V, H <= 32 R); a
// binary layer lives in registers as R ballot words (bit b of word r = unit 32 r + b is on), and
// matrix-vector products walk only the ON inputs, in increasing index order (warp-uniform loop).

// The uniforms uniform01(seed, stream, counter, base + e) for e in 0 .. n (index arithmetic mod
// 2^32, like every kernel's (u32)(chain * n + e)), computed with ONE Philox block per 4 units:
// the warp's lanes fill su (n + 8 floats of this warp's shared memory) and the return value r
// satisfies r[e] = that uniform. Bit-identical to uniform01 (word (index & 3) of block index >> 2).
// Every lane of the warp must call it; it synchronises the warp before and after writing su.
__device__ __forceinline__ const float* warp_uniforms(u64 seed, u32 stream, u32 counter, u32 base, int n, float* su) {
    __syncwarp();  // earlier readers of su are done
    u32 off = base & 3u;
    int nblk = (int)((off + (u32)n + 3u) >> 2);
    for (int g = threadIdx.x; g < nblk; g += 32) {
        u32 c[4] = {((base >> 2) + (u32)g) & 0x3fffffffu, counter, stream, 0u};
        philox4x32_10(c, (u32)(seed & 0xffffffffull), (u32)(seed >> 32));
#pragma unroll
        for (int w = 0; w < 4; ++w) su[4 * g + w] = ((float)(c[w] >> 8) + 0.5f) * (1.0f / 16777216.0f);
    }
    __syncwarp();
    return su + off;
}

// acc[r] (output unit o = lane + 32 r < nout) += sum over ON inputs k (bits of mask[0 .. RK), in
// increasing k) of x_k * Ws[k * ks + o * os]; x_k = 1 when BIN (binary input, 1 * w == w
// exactly), else xs[k]. With acc initialised to the bias this is bit-identical to col_dot
// (ks = ldw, os = 1) and row_dot (ks = 1, os = ldw): same terms, same order, no FMA.
template <int R, bool BIN>
__device__ __forceinline__ void acc_active(const float* Ws, int ks, int os, const u32* mask, int RK, const float* xs,
                                           int nout, float* acc) {
    int lane = threadIdx.x;
#pragma unroll
    for (int rk = 0; rk < R; ++rk) {
        if (rk < RK) {
            u32 m = mask[rk];
            while (m) {
                int k = 32 * rk + __ffs(m) - 1;
                m &= m - 1u;
                const float* p = Ws + k * ks + lane * os;
                float xk = BIN ? 1.0f : xs[k];
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    if (lane + 32 * r < nout) {
                        float w = p[32 * r * os];
                        acc[r] += BIN ? w : xk * w;
                    }
                }
            }
        }
    }
}

// Split-K recurrences (the *_v2 kernels of recurrent.cu and lstm.cu): S consecutive lanes (S a
// power of two <= 32) share one output; lane q sums the terms k = q, q + S, q + 2S, ... in
// increasing order, and group_sum adds the S partials by an xor butterfly. Floating-point
// addition is commutative, so every lane of the group ends with the same total, and the order
// depends only on S and the sizes: deterministic, and the same for a model alone or packed.
__device__ __forceinline__ float group_sum(float v, int S) {
    for (int off = S >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Lane q's partial sum of a split-K dot product: the terms x[k] * w[k * w_stride] for k = q, q + S,
// ... < n, added one at a time in increasing k. Unrolled by four, so that four terms' loads are
// in flight together instead of one load's latency per term, with the pointer stepping instead of
// a 64-bit index computed per term; the additions keep their order (same bits).
__device__ __forceinline__ float lane_dot(const float* x, const float* w, long long w_stride, int q, int n, int S) {
    float acc = 0.0f;
    const float* wp = w + (long long)q * w_stride;
    const long long step = (long long)S * w_stride;
#pragma unroll 4
    for (int k = q; k < n; k += S, wp += step) acc += x[k] * *wp;
    return acc;
}

// The Philox key of packed model `model`: `keys` is null (a lone model: seed and stream as
// passed) or holds, as 2P u64, each model's seed and the offset of its stream from the `stream`
// argument, added wrapping (Cuda::gibbs and Cuda::ais upload it; a pack in lockstep keeps it).
__device__ __forceinline__ void model_key(const u64* __restrict__ keys, long long model, u64& seed, u32& stream) {
    if (keys) {
        seed = keys[2 * model];
        stream += (u32)keys[2 * model + 1];
    }
}

// The start of a packed chain kernel (gibbs_chain*, ais_chains*): moves W, bv_t and bh_t to the
// slabs of model `model` (blockIdx.y) and takes that model's Philox key (model_key).
__device__ __forceinline__ void chain_model(long long model, const float* __restrict__& W,
                                            const float* __restrict__& bv_t, const float* __restrict__& bh_t,
                                            long long w_ps, long long bv_ps, long long bh_ps,
                                            const u64* __restrict__ keys, u64& seed, u32& stream) {
    W += model * w_ps;
    bv_t += model * bv_ps;
    bh_t += model * bh_ps;
    model_key(keys, model, seed, stream);
}

// Whether Gibbs chain `chain` (< N) runs: no mask, or its frame's mask entry is not 0.
__device__ __forceinline__ bool chain_active(long long chain, int N, const float* mask, long long mask_off) {
    return chain < N && (!mask || mask[mask_off + chain] != 0.0f);
}

// Stages W [rows, cols] into smem with row stride ldw (all threads of the block; ends with a barrier).
__device__ __forceinline__ void stage_w_smem(const float* __restrict__ W, int rows, int cols, int ldw, float* smem) {
    int tid = threadIdx.y * blockDim.x + threadIdx.x, nt = blockDim.x * blockDim.y;
    for (int e = tid; e < rows * cols; e += nt) smem[(e / cols) * ldw + (e % cols)] = W[e];
    __syncthreads();
}
