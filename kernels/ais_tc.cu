// ais_tc.cu: annealed importance sampling (SPEC 4.1) with the two products of every AIS step on
// tensor cores. The same chains, schedule and uniforms as ais_chains / ais_chains_v2_r* (ais.cu):
//   v ~ Bernoulli(sigma(bv)) with uniforms (counter, chain*V + i);
//   for k = 1..S-1: x = v W; logw += sum_j softplus(beta_k x_j + bh_j) - softplus(beta_{k-1} x_j + bh_j);
//   unless k is the last step: h_j ~ sigma(beta_k x_j + bh_j) (counter + 2k - 1, chain*H + j),
//   v_i ~ sigma(beta_k (W h)_i + bv_i) (counter + 2k, chain*V + i).
// Shapes: W [V,H], bv_t [N,V], bh_t [N,H], betas [S] (f32, ascending, 0 .. 1), logw [N*M] (f64).
// Reference: Cpu::ais (src/backend/cpu.rs); ais_chains_v2_r* is the f32 CUDA twin it is tested
// against (tests/gpu_kernels.rs).
//
// ais_chains_tc_n{NT} (NT = 8-unit tiles, max(V, H) <= 8 NT <= 128; V and H multiples of 4;
// sm_80 or newer; blocks of 8 warps; Cuda::ais launches it unless RTRBM_KERNELS=ais-v2):
// * One warp runs 16 chains, the 16 rows of mma.sync.m16n8k16 (f16 inputs, f32 accumulation).
//   Lane l (group g = l / 4, t = l % 4) owns chains base + g and base + g + 8 and, in every
//   8-unit tile nt of a layer, units 8 nt + 2t and 8 nt + 2t + 1: the accumulator layout of the
//   mma, which is also the layout of its A operand, so the samples of one product feed the next
//   with no shuffle.
// * Samples are 0 or 1, exact in f16. W is not: each block scales W by a power of two s (so that
//   max |W| s lies in [2^14, 2^15)) and splits W s = hi + lo into two f16 matrices; x = (v hi +
//   v lo) / s. The error of each weight is at most |W| 2^-22 + max|W| 2^-39 (lo's rounding and
//   the f16 subnormal floor); the products are summed by the tensor cores in f32, whose
//   accumulation truncates (a few ulps per mma, toward zero). So x and W h agree with the f32
//   kernels to a few ulps, not bit for bit: a Bernoulli draw can differ where |p - u| is at the
//   1e-6 level, and then that chain's path differs. A non-finite weight makes every chain of its
//   block NaN (0 * inf in the mma), where the f32 kernels spoil only chains with its unit on.
// * Shared memory holds both products' B operands in fragment order, hi and lo of one lane's
//   fragment in one 16-byte word (one conflict-free 128-bit load per tile): tiles (kt, nt) of
//   B = W (x = v W: k = visible, n = hidden), then of B = W^T (W h: k = hidden, n = visible),
//   both layers padded to NT tiles with zero weights: 2 KT NT 512 bytes, KT = ceil(NT / 2)
//   (67,584 at V = H = 88: 2 blocks, 16 warps per SM).
// * Uniforms: one Philox block per 4 units, as warp_uniforms: in tile nt, lane t computes the
//   block of units 8 nt + 4 (t / 2) .. + 3 of chain (t odd ? base + g + 8 : base + g), and one
//   pair of shuffles with lane t ^ 1 hands each lane the two words of its units for both of its
//   chains. Bit-identical to uniform01 (this is why V and H must be multiples of 4: a chain's
//   first unit then starts a Philox block).
// * The log-weight increment: ais_unit of common.cuh (as ais.cu), with beta_{k-1}, beta_k -
//   beta_{k-1} and beta_k divided by the scale s: each unit's factor (1 + e^a) / (1 + e^b) is kept
//   as y = sigma(b) (e^(a-b) - 1) and a lane's factors multiply as 1 + Y, so one log1pf per chain
//   and lane per step, with the relative accuracy of the small terms; units with |a - b| >= 1/8
//   take the exact softplus difference. Summed over the 4 lanes of a chain in f32, accumulated
//   in f64. Probabilities (sampling, and sigma(b) in y) use rcp.approx (1 ulp).
//
// The index arithmetic (fragments, staging, Philox words and shuffles) is emulated lane by lane
// by scripts/emulate_ais_tc.py against a plain chain; tests/gpu_kernels.rs checks the kernel on a
// GPU against ais_chains_v2, the CPU and enumerated partition functions.
//
// Packed models: the model index p is blockIdx.y, as in ais.cu (W, bv_t, bh_t move by p times
// their slab strides, logw by p N M, `keys` as there). Each block computes its model's scale.

#define TC_ONE_LO 0x3C00u      // f16 1.0 in the low half of a .f16x2 register
#define TC_ONE_HI 0x3C000000u  // ... in the high half

__device__ __forceinline__ unsigned short tc_f2h(float x) {
#ifdef RTRBM_CUDA_EMU  // the CPU emulator of tests/cuda-emu (g++ has no PTX)
    return emu::f32_to_f16_rn(x);
#else
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
#endif
}

__device__ __forceinline__ float tc_h2f(unsigned short h) {
#ifdef RTRBM_CUDA_EMU
    return emu::f16_to_f32(h);
#else
    float x;
    asm("cvt.f32.f16 %0, %1;" : "=f"(x) : "h"(h));
    return x;
#endif
}

// c += A B for one m16n8k16 tile: A = a[0..4) (.f16x2, row-major 16 x 16), B = (b0, b1)
// (.f16x2, column-major 16 x 8), c 4 f32 (rows g and g + 8, columns 2t and 2t + 1).
__device__ __forceinline__ void tc_mma(float* c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
#if defined(RTRBM_CUDA_EMU)
    emu::mma_m16n8k16(c, a0, a1, a2, a3, b0, b1);
#elif __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
    __trap();  // the host launches these kernels on compute capability 8.0 or newer only
#endif
}

// Splits w (already scaled) into f16 hi + lo: lo = f16(w - hi), where w - hi is exact in f32.
__device__ __forceinline__ void tc_split(float w, u32& hi, u32& lo) {
    unsigned short h = tc_f2h(w);
    hi = h;
    lo = tc_f2h(w - tc_h2f(h));
}

// One B tile in fragment order: lane l of tile (kt, nt) holds B[k][n] for n = 8 nt + l / 4 and
// k = 16 kt + 2 (l % 4) + {0, 1, 8, 9}, as {hi(k0) | hi(k1) << 16, hi(k8) | hi(k9) << 16, lo..., lo...};
// B[k][n] = W[k * ks + n * ns] * s inside rows x cols, else 0.
__device__ __forceinline__ uint4 tc_b_fragment(const float* __restrict__ W, int rows, int cols, int ks, int ns,
                                               float s, int kt, int nt, int l) {
    int n = 8 * nt + (l >> 2), k0 = 16 * kt + 2 * (l & 3);
    u32 hi[4], lo[4];
    const int dk[4] = {0, 1, 8, 9};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        int k = k0 + dk[q];
        float w = (k < rows && n < cols) ? W[(long long)k * ks + (long long)n * ns] * s : 0.0f;
        tc_split(w, hi[q], lo[q]);
    }
    return make_uint4(hi[0] | (hi[1] << 16), hi[2] | (hi[3] << 16), lo[0] | (lo[1] << 16), lo[2] | (lo[3] << 16));
}

// The block's scale: s = 2^sh with max |W| s in [2^14, 2^15) (sh at most 100, for tiny W; s = 1
// when W is all zeros or holds an inf). Every thread of the block must call it (one barrier).
__device__ __forceinline__ float tc_scale(const float* __restrict__ W, int n, float* red) {
    int tid = threadIdx.y * blockDim.x + threadIdx.x, nthreads = blockDim.x * blockDim.y;
    float m = 0.0f;
    for (int e = tid; e < n; e += nthreads) m = fmaxf(m, fabsf(W[e]));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (threadIdx.x == 0) red[threadIdx.y] = m;
    __syncthreads();
    m = 0.0f;
    for (int w = 0; w < (int)blockDim.y; ++w) m = fmaxf(m, red[w]);
    u32 bits = __float_as_uint(m);
    if (!(m > 0.0f) || (bits >> 23) == 255u) return 1.0f;  // zero, or inf (fmaxf drops NaN)
    int e = (int)(bits >> 23) - 127;  // m in [2^e, 2^(e+1)) (subnormal: e = -127)
    int sh = 14 - e;                  // >= -113: s stays a normal float
    sh = sh > 100 ? 100 : sh;         // and 1/s too (beta / s must keep its precision)
    return __uint_as_float((u32)(127 + sh) << 23);
}

// The uniforms of one 8-unit tile nt of a layer for the lane's two chains: w0 (chain base + g)
// and w1 (chain base + g + 8) get the words of units 8 nt + 2t and 8 nt + 2t + 1. blk0 / blk1 are
// the chains' first Philox block, ((u32)(chain * n)) >> 2 (n a multiple of 4).
__device__ __forceinline__ void tc_uniform_words(u64 seed, u32 stream, u32 counter, u32 blk0, u32 blk1, int nt,
                                                 int t, u32 w0[2], u32 w1[2]) {
    int odd = t & 1;
    u32 c[4] = {((odd ? blk1 : blk0) + 2u * (u32)nt + (u32)(t >> 1)) & 0x3fffffffu, counter, stream, 0u};
    philox4x32_10(c, (u32)(seed & 0xffffffffull), (u32)(seed >> 32));
    u32 r0 = __shfl_xor_sync(0xffffffffu, odd ? c[0] : c[2], 1);
    u32 r1 = __shfl_xor_sync(0xffffffffu, odd ? c[1] : c[3], 1);
    w0[0] = odd ? r0 : c[0];
    w0[1] = odd ? r1 : c[1];
    w1[0] = odd ? c[2] : r0;
    w1[1] = odd ? c[3] : r1;
}

__device__ __forceinline__ float tc_u01(u32 w) {
    return ((float)(w >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

// Samples one tile of a layer: bits of the lane's 2 units of chain 0 / chain 1 as .f16x2 words
// (the A fragment halves), drawn with probabilities p[0..4) = (c0 u0, c0 u1, c1 u0, c1 u1).
__device__ __forceinline__ void tc_sample(u64 seed, u32 stream, u32 counter, u32 blk0, u32 blk1, int nt, int t,
                                          const float* p, u32& s0, u32& s1) {
    u32 w0[2], w1[2];
    tc_uniform_words(seed, stream, counter, blk0, blk1, nt, t, w0, w1);
    s0 = (tc_u01(w0[0]) < p[0] ? TC_ONE_LO : 0u) | (tc_u01(w0[1]) < p[1] ? TC_ONE_HI : 0u);
    s1 = (tc_u01(w1[0]) < p[2] ? TC_ONE_LO : 0u) | (tc_u01(w1[1]) < p[3] ? TC_ONE_HI : 0u);
}

// sigma(z) for sampling (accurate expf; rcp.approx). sigma(-inf..-88) = 0 (rcp(inf) = 0).
__device__ __forceinline__ float tc_sigmoid(float z) {
    return rcp_approx(1.0f + expf(-z));
}

// The sample word of tile nt (zero past the NT tiles: the upper half of an odd NT's last k-tile).
template <int NT>
__device__ __forceinline__ u32 tc_hi(const u32 (&s)[NT][2], int nt, int r) {
    return nt < NT ? s[nt][r] : 0u;
}

// acc (the lane's 4 accumulators of output tile nt) += S B: the samples S (.f16x2 words, the A
// fragments of the KT k-tiles) times the staged operand B ([KT][NT][32] fragments, hi then lo).
template <int NT>
__device__ __forceinline__ void tc_tile(float* acc, const u32 (&S)[NT][2], const uint4* B, int nt, int lane) {
    constexpr int KT = (NT + 1) / 2;
#pragma unroll
    for (int kt = 0; kt < KT; ++kt) {
        uint4 b = B[(kt * NT + nt) * 32 + lane];
        u32 a2 = tc_hi(S, 2 * kt + 1, 0), a3 = tc_hi(S, 2 * kt + 1, 1);
        tc_mma(acc, S[2 * kt][0], S[2 * kt][1], a2, a3, b.x, b.y);
        tc_mma(acc, S[2 * kt][0], S[2 * kt][1], a2, a3, b.z, b.w);
    }
}

// Samples one layer of the lane's two chains tile by tile: for the `ntiles` tiles of a layer of n
// units, y = S B (the other layer's samples S times the staged operand B, scaled by s), the
// probabilities sigma(c y + b) with c = beta / s and the chains' bias pairs b0p / b1p (offset by
// 2t), and the draws with the uniforms at `counter` (whole warp: shuffles and mma).
template <int NT>
__device__ __forceinline__ void tc_sample_layer(const u32 (&S)[NT][2], const uint4* B, int ntiles, int n, float c,
                                                const float* b0p, const float* b1p, u64 seed, u32 stream,
                                                u32 counter, u32 blk0, u32 blk1, int lane, int t, u32 (&out)[NT][2]) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
        if (nt < ntiles) {
            float y[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            tc_tile<NT>(y, S, B, nt, lane);
            float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (8 * nt + 2 * t < n) {
                float2 b0 = *(const float2*)(b0p + 8 * nt), b1 = *(const float2*)(b1p + 8 * nt);
                p[0] = tc_sigmoid(fmaf(c, y[0], b0.x));
                p[1] = tc_sigmoid(fmaf(c, y[1], b0.y));
                p[2] = tc_sigmoid(fmaf(c, y[2], b1.x));
                p[3] = tc_sigmoid(fmaf(c, y[3], b1.y));
            }
            tc_sample(seed, stream, counter, blk0, blk1, nt, t, p, out[nt][0], out[nt][1]);
        }
    }
}

// Stages both B operands (hi, lo) in fragment order, scaled by the block's s (returned): bx, x =
// v W, and bp, W h, each [KT][NT][32]. Both layers are padded to NT tiles (zero weights; units
// past V or H are never on). Every thread of the block calls it; it ends with a barrier.
template <int NT>
__device__ __forceinline__ float tc_stage(const float* __restrict__ W, int V, int H, uint4* bx, uint4* bp, float* red) {
    constexpr int KT = (NT + 1) / 2;
    const float s = tc_scale(W, V * H, red);
    int tid = threadIdx.y * blockDim.x + threadIdx.x, nthreads = blockDim.x * blockDim.y;
    for (int e = tid; e < KT * NT * 32; e += nthreads) {
        int tile = e >> 5;
        bx[e] = tc_b_fragment(W, V, H, H, 1, s, tile / NT, tile % NT, e & 31);
        bp[e] = tc_b_fragment(W, H, V, 1, H, s, tile / NT, tile % NT, e & 31);
    }
    __syncthreads();
    return s;
}

template <int NT>
__device__ __forceinline__ void ais_chains_tc_impl(const float* __restrict__ W, const float* __restrict__ bv_t,
                                                   const float* __restrict__ bh_t, int N, int V, int H, int M,
                                                   const float* __restrict__ betas, int nbetas, u64 seed, u32 stream,
                                                   u32 counter, double* __restrict__ logw,
                                                   const u64* __restrict__ keys, long long w_ps, long long bv_ps,
                                                   long long bh_ps) {
    constexpr int KT = (NT + 1) / 2;
    extern __shared__ uint4 tc_smem[];
    __shared__ float red[32];
    const long long model = blockIdx.y;
    logw += model * N * M;
    chain_model(model, W, bv_t, bh_t, w_ps, bv_ps, bh_ps, keys, seed, stream);

    const int ntv = (V + 7) >> 3, nth = (H + 7) >> 3;
    uint4* bx = tc_smem;                 // [KT][NT][32]: x = v W
    uint4* bp = tc_smem + KT * NT * 32;  // [KT][NT][32]: W h
    const float s = tc_stage<NT>(W, V, H, bx, bp, red), inv_s = 1.0f / s;  // powers of two: exact
    // no barrier after this: warps past the last chain may leave

    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    const long long total = (long long)N * M;
    const long long base = ((long long)blockIdx.x * blockDim.y + threadIdx.y) * 16;
    if (base >= total) return;
    const long long chain0 = base + g, chain1 = base + g + 8;
    const long long f0 = (chain0 < total ? chain0 : total - 1) / M, f1 = (chain1 < total ? chain1 : total - 1) / M;
    const float* bv0 = bv_t + f0 * V + 2 * t;
    const float* bv1 = bv_t + f1 * V + 2 * t;
    const float* bh0 = bh_t + f0 * H + 2 * t;
    const float* bh1 = bh_t + f1 * H + 2 * t;
    const u32 vblk0 = ((u32)(chain0 * V)) >> 2, vblk1 = ((u32)(chain1 * V)) >> 2;
    const u32 hblk0 = ((u32)(chain0 * H)) >> 2, hblk1 = ((u32)(chain1 * H)) >> 2;

    // vs[nt][r], hs[nt][r]: the lane's 2 units of tile nt for chain r, as .f16x2 samples; the
    // A fragment of k-tile kt is {s[2kt][0], s[2kt][1], s[2kt+1][0], s[2kt+1][1]}.
    u32 vs[NT][2], hs[NT][2];
    // v_0 from the base distribution (W = 0)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
        vs[nt][0] = vs[nt][1] = 0u;
        hs[nt][0] = hs[nt][1] = 0u;
        if (nt < ntv) {
            float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // units past V: never on
            if (8 * nt + 2 * t < V) {
                float2 b0 = *(const float2*)(bv0 + 8 * nt), b1 = *(const float2*)(bv1 + 8 * nt);
                p[0] = sigmoidf_(b0.x);
                p[1] = sigmoidf_(b0.y);
                p[2] = sigmoidf_(b1.x);
                p[3] = sigmoidf_(b1.y);
            }
            tc_sample(seed, stream, counter, vblk0, vblk1, nt, t, p, vs[nt][0], vs[nt][1]);  // whole warp: shuffles
        }
    }
    double acc0 = 0.0, acc1 = 0.0;
    float bp_ = betas[0];
    for (int k = 1; k < nbetas; ++k) {
        // beta / s (exact: s is a power of two); dls = (beta_k - beta_{k-1}) / s
        const float bk = betas[k], bks = bk * inv_s, bps = bp_ * inv_s, dls = (bk - bp_) * inv_s;
        // tile by tile: x = v W (scaled; the tile's 4 accumulators only, which keeps NT up to 12
        // free of spills at 168 registers), the increment and the hidden probabilities at beta_k
        // (ais_unit), and h
        float d0 = 0.0f, d1 = 0.0f, y0 = 0.0f, y1 = 0.0f;
        const bool sample = k + 1 < nbetas;  // the last transition would not change the weight
        const u32 hctr = counter + 2u * (u32)k - 1u;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            if (nt < nth) {
                float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                tc_tile<NT>(x, vs, bx, nt, lane);
                float ph[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                if (8 * nt + 2 * t < H) {
                    float2 b0 = *(const float2*)(bh0 + 8 * nt), b1 = *(const float2*)(bh1 + 8 * nt);
                    ph[0] = ais_unit(x[0], b0.x, bps, dls, bks, y0, d0);
                    ph[1] = ais_unit(x[1], b0.y, bps, dls, bks, y0, d0);
                    ph[2] = ais_unit(x[2], b1.x, bps, dls, bks, y1, d1);
                    ph[3] = ais_unit(x[3], b1.y, bps, dls, bks, y1, d1);
                }
                if (sample) tc_sample(seed, stream, hctr, hblk0, hblk1, nt, t, ph, hs[nt][0], hs[nt][1]);
            }
        }
        d0 += log1pf(y0);
        d1 += log1pf(y1);
        d0 += __shfl_xor_sync(0xffffffffu, d0, 1);
        d0 += __shfl_xor_sync(0xffffffffu, d0, 2);
        d1 += __shfl_xor_sync(0xffffffffu, d1, 1);
        d1 += __shfl_xor_sync(0xffffffffu, d1, 2);
        acc0 += (double)d0;
        acc1 += (double)d1;
        bp_ = bk;
        if (!sample) break;
        // W h (scaled), then v at beta_k
        tc_sample_layer<NT>(hs, bp, ntv, V, bks, bv0, bv1, seed, stream, hctr + 1u, vblk0, vblk1, lane, t, vs);
    }
    if (t == 0) {
        if (chain0 < total) logw[chain0] = acc0;
        if (chain1 < total) logw[chain1] = acc1;
    }
}

// gibbs_chain_tc_n{NT} (opt-in, RTRBM_KERNELS=gibbs-tc; docs/PERFORMANCE.md "Next steps"): K
// block-Gibbs steps of N chains with gibbs_chain_v2's uniforms (step k: h_j at counter + 2k, index
// n H + j; v_i at counter + 2k + 1, index n V + i) and both products on tensor cores, 16 chains per
// warp, with ais_chains_tc's staging, fragments, scale and Philox words. Binary visibles only
// (the host runs v2 for Gaussian ones); a starting v that is not 0/1 (any chain of the warp) has
// its first product v W summed in f32 from global memory instead. Chains with mask 0 (padding)
// are drawn but not written, and a block of padding only returns at once. Probabilities differ
// from v2's by a few ulps (the tensor cores' f32 accumulation, rcp.approx), so a draw can differ
// where |p - u| is at the 1e-6 level, and that chain's path with it.
// Shapes: W [V,H], bv_t and v [N,V], bh_t [N,H], mask [N] or null. Reference: Cpu::gibbs.
template <int NT>
__device__ __forceinline__ void gibbs_chain_tc_impl(const float* __restrict__ W, const float* __restrict__ bv_t,
                                                    const float* __restrict__ bh_t, float* __restrict__ v, int N, int V,
                                                    int H, int K, u64 seed, u32 stream, u32 counter,
                                                    const u64* __restrict__ keys, const float* __restrict__ mask,
                                                    long long w_ps, long long bv_ps, long long bh_ps, long long v_ps,
                                                    long long mask_ps) {
    constexpr int KT = (NT + 1) / 2;
    extern __shared__ uint4 tc_smem[];
    __shared__ float red[32];
    const long long model = blockIdx.y;
    v += model * v_ps;
    if (mask) mask += model * mask_ps;
    chain_model(model, W, bv_t, bh_t, w_ps, bv_ps, bh_ps, keys, seed, stream);
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    const long long base = ((long long)blockIdx.x * blockDim.y + threadIdx.y) * 16;
    const long long chain0 = base + g, chain1 = base + g + 8;
    const bool on0 = chain_active(chain0, N, mask, 0), on1 = chain_active(chain1, N, mask, 0);
    if (!__syncthreads_or(on0 || on1)) return;  // every chain of the block is padding
    const int ntv = (V + 7) >> 3, nth = (H + 7) >> 3;
    uint4* bx = tc_smem;
    uint4* bp = tc_smem + KT * NT * 32;
    const float inv_s = 1.0f / tc_stage<NT>(W, V, H, bx, bp, red);  // a power of two: exact
    if (base >= N) return;  // no barrier after this
    const long long c0 = chain0 < N ? chain0 : N - 1, c1 = chain1 < N ? chain1 : N - 1;
    const float* bv0 = bv_t + c0 * V + 2 * t;
    const float* bv1 = bv_t + c1 * V + 2 * t;
    const float* bh0 = bh_t + c0 * H + 2 * t;
    const float* bh1 = bh_t + c1 * H + 2 * t;
    const u32 vblk0 = ((u32)(chain0 * V)) >> 2, vblk1 = ((u32)(chain1 * V)) >> 2;
    const u32 hblk0 = ((u32)(chain0 * H)) >> 2, hblk1 = ((u32)(chain1 * H)) >> 2;
    // the starting v as .f16x2 samples (units past V: off); `binary`: every chain of the warp 0/1
    u32 vs[NT][2], hs[NT][2];
    bool binary = true;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
        vs[nt][0] = vs[nt][1] = 0u;
        hs[nt][0] = hs[nt][1] = 0u;
        if (nt < ntv && 8 * nt + 2 * t < V) {
            float2 a = *(const float2*)(v + c0 * V + 2 * t + 8 * nt), b = *(const float2*)(v + c1 * V + 2 * t + 8 * nt);
            binary = binary && (a.x == 0.0f || a.x == 1.0f) && (a.y == 0.0f || a.y == 1.0f) &&
                     (b.x == 0.0f || b.x == 1.0f) && (b.y == 0.0f || b.y == 1.0f);
            vs[nt][0] = (a.x != 0.0f ? TC_ONE_LO : 0u) | (a.y != 0.0f ? TC_ONE_HI : 0u);
            vs[nt][1] = (b.x != 0.0f ? TC_ONE_LO : 0u) | (b.y != 0.0f ? TC_ONE_HI : 0u);
        }
    }
    binary = __all_sync(0xffffffffu, binary);
    for (int k = 0; k < K; ++k) {
        const u32 hctr = counter + 2u * (u32)k;
        // h = [u < sigma(v W + bh)]
        if (k == 0 && !binary) {
            // the first product of a real-valued v: in f32, in increasing i, from global memory
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                if (nt < nth) {
                    const int j = 8 * nt + 2 * t;
                    float ph[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    if (j < H) {
                        float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                        for (int i = 0; i < V; ++i) {
                            const float w0 = W[(long long)i * H + j], w1 = W[(long long)i * H + j + 1];
                            const float v0 = v[c0 * V + i], v1 = v[c1 * V + i];
                            x[0] += v0 * w0;
                            x[1] += v0 * w1;
                            x[2] += v1 * w0;
                            x[3] += v1 * w1;
                        }
                        float2 b0 = *(const float2*)(bh0 + 8 * nt), b1 = *(const float2*)(bh1 + 8 * nt);
                        ph[0] = tc_sigmoid(x[0] + b0.x);
                        ph[1] = tc_sigmoid(x[1] + b0.y);
                        ph[2] = tc_sigmoid(x[2] + b1.x);
                        ph[3] = tc_sigmoid(x[3] + b1.y);
                    }
                    tc_sample(seed, stream, hctr, hblk0, hblk1, nt, t, ph, hs[nt][0], hs[nt][1]);
                }
            }
        } else {
            tc_sample_layer<NT>(vs, bx, nth, H, inv_s, bh0, bh1, seed, stream, hctr, hblk0, hblk1, lane, t, hs);
        }
        // v = [u < sigma(W h + bv)]
        tc_sample_layer<NT>(hs, bp, ntv, V, inv_s, bv0, bv1, seed, stream, hctr + 1u, vblk0, vblk1, lane, t, vs);
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
        if (nt < ntv && 8 * nt + 2 * t < V) {
            if (on0)
                *(float2*)(v + chain0 * V + 2 * t + 8 * nt) =
                    make_float2((vs[nt][0] & 0xffffu) ? 1.0f : 0.0f, (vs[nt][0] >> 16) ? 1.0f : 0.0f);
            if (on1)
                *(float2*)(v + chain1 * V + 2 * t + 8 * nt) =
                    make_float2((vs[nt][1] & 0xffffu) ? 1.0f : 0.0f, (vs[nt][1] >> 16) ? 1.0f : 0.0f);
        }
    }
}

#define GIBBS_TC(NT, MINB)                                                                                           \
    extern "C" __global__ void __launch_bounds__(256, MINB) gibbs_chain_tc_n##NT(                                  \
        const float* __restrict__ W, const float* __restrict__ bv_t, const float* __restrict__ bh_t,                \
        float* __restrict__ v, int N, int V, int H, int K, u64 seed, u32 stream, u32 counter,                       \
        const u64* __restrict__ keys, const float* __restrict__ mask, long long w_ps, long long bv_ps,              \
        long long bh_ps, long long v_ps, long long mask_ps) {                                                       \
        gibbs_chain_tc_impl<NT>(W, bv_t, bh_t, v, N, V, H, K, seed, stream, counter, keys, mask, w_ps, bv_ps, bh_ps, \
                                v_ps, mask_ps);                                                                     \
    }
GIBBS_TC(2, 2)
GIBBS_TC(4, 2)
GIBBS_TC(6, 2)
GIBBS_TC(8, 2)
GIBBS_TC(10, 2)
GIBBS_TC(11, 2)
GIBBS_TC(12, 2)
GIBBS_TC(14, 2)
GIBBS_TC(16, 1)

#define AIS_TC(NT, MINB)                                                                                           \
    extern "C" __global__ void __launch_bounds__(256, MINB) ais_chains_tc_n##NT(                                     \
        const float* __restrict__ W, const float* __restrict__ bv_t, const float* __restrict__ bh_t, int N, int V,   \
        int H, int M, const float* __restrict__ betas, int nbetas, u64 seed, u32 stream, u32 counter,               \
        double* __restrict__ logw, const u64* __restrict__ keys, long long w_ps, long long bv_ps, long long bh_ps) { \
        ais_chains_tc_impl<NT>(W, bv_t, bh_t, N, V, H, M, betas, nbetas, seed, stream, counter, logw, keys, w_ps,  \
                               bv_ps, bh_ps);                                                                       \
    }
// NT = tiles of 8 units; the host takes the smallest NT >= max(V, H) / 8 (11: the 88-key
// piano roll of every benchmark) and launches blocks of 8 warps. MINB = blocks per SM that the
// shared memory allows on an H100 (227 KB: 2 up to NT = 14, 1 at 16), which caps the registers
// at 128 (no spills up to NT = 12, ptxas 13.0) or 255: 16 warps per SM up to NT = 12.
AIS_TC(2, 2)
AIS_TC(4, 2)
AIS_TC(6, 2)
AIS_TC(8, 2)
AIS_TC(10, 2)
AIS_TC(11, 2)
AIS_TC(12, 2)
AIS_TC(14, 2)
AIS_TC(16, 1)
