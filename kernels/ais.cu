// ais.cu: annealed importance sampling (SPEC 4.1) for N conditional RBMs x M runs.
// Shapes: W [V,H], bv_t [N,V], bh_t [N,H], betas [S] (f32, ascending, 0 .. 1), logw [N*M] (f64).
//
// ais_chains: one warp per chain (n, m) = chain / M, chain % M; blockDim = (32, CPB); W staged in
// shared memory when it fits. Each chain walks the WHOLE schedule in one launch:
//   v ~ Bernoulli(sigma(bv)) with uniforms (counter, chain*V + i);
//   for k = 1..S-1: x = v W; logw += sum_j softplus(beta_k x_j + bh_j) - softplus(beta_{k-1} x_j + bh_j)
//   (each unit's term by ais_unit of common.cuh, whose factors 1 + y multiply per lane as 1 + Y
//   with one log1pf per lane and step, so that the tiny increments of a long schedule stay
//   unbiased; summed over the warp in f32, accumulated in f64); unless k is the last step, a
//   transition at beta_k:
//   h_j ~ sigma(beta_k x_j + bh_j) (counter + 2k - 1, chain*H + j),
//   v_i ~ sigma(beta_k (W h)_i + bv_i) (counter + 2k, chain*V + i).
// Reference: Cpu::ais (src/backend/cpu.rs).
//
// Packed models (Backend::models() = P): the model index p is blockIdx.y (P rows of blocks);
// W, bv_t, bh_t move by p times their slab strides (trailing `*_ps` arguments, in elements) and
// logw by p N M (logw holds [P, N*M]). `keys` is null (lone model: seed, stream as given) or
// holds, as 2P u64, each model's seed and the offset of its stream from the `stream` argument
// (added, wrapping), as for gibbs_chain (Backend::ais: one key per model).
//
// ais_chains_v2_r{1..8}: the same chains, the same uniforms (same counters and indices), for
// V, H <= 32 R with W staged in shared memory (the host falls back to ais_chains otherwise, or
// when RTRBM_KERNELS=v1). One warp per chain, blockDim = (32, CPB); lane l owns units l + 32 r.
// v and h are ballot words in registers; x = v W and W h sum only the ON rows/columns (in
// increasing order, so x and W h are bit-identical to ais_chains'); uniforms come 4 per Philox
// block (warp_uniforms); the increment is ais_chains' (ais_unit, one log1pf per lane), and
// h_j ~ sigma(a_j) as ais_unit returns it. Shared memory: W (V*ldw floats) then max(V,H) + 8
// floats per warp.

extern "C" __global__ void ais_chains(const float* __restrict__ W, const float* __restrict__ bv_t,
                                      const float* __restrict__ bh_t, int N, int V, int H, int M,
                                      const float* __restrict__ betas, int nbetas, u64 seed, u32 stream,
                                      u32 counter, int w_shared, int ldw, double* __restrict__ logw,
                                      const u64* __restrict__ keys, long long w_ps, long long bv_ps,
                                      long long bh_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    logw += model * N * M;
    chain_model(model, W, bv_t, bh_t, w_ps, bv_ps, bh_ps, keys, seed, stream);
    const float* Ws = stage_w(W, V, H, w_shared, ldw, smem);
    long long chain = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (chain >= (long long)N * M) return;
    long long frame = chain / M;
    float* sv = smem + (w_shared ? V * ldw : 0) + threadIdx.y * (V + 2 * H);
    float* sx = sv + V;
    float* sh = sx + H;
    int lane = threadIdx.x;
    const float* bv = bv_t + frame * V;
    const float* bh = bh_t + frame * H;
    // v_0 from the base distribution (W = 0)
    for (int i = lane; i < V; i += 32) sv[i] = bernoullif_(uniform01(seed, stream, counter, (u32)(chain * V + i)), sigmoidf_(bv[i]));
    __syncwarp();
    double acc = 0.0;
    for (int k = 1; k < nbetas; ++k) {
        float bp = betas[k - 1], bk = betas[k];
        float d = 0.0f, Y = 0.0f;
        for (int j = lane; j < H; j += 32) {
            float x = col_dot(Ws, ldw, sv, V, j, 0.0f);
            sx[j] = x;
            ais_unit(x, bh[j], bp, bk - bp, bk, Y, d);
        }
        d += log1pf(Y);
        d = warp_sum(d);
        acc += (double)d;
        if (k + 1 == nbetas) break;  // the last transition would not change the weight
        u32 ctr = counter + 2u * (u32)k - 1u;
        for (int j = lane; j < H; j += 32) {
            sh[j] = bernoullif_(uniform01(seed, stream, ctr, (u32)(chain * H + j)), sigmoidf_(bk * sx[j] + bh[j]));
        }
        __syncwarp();
        for (int i = lane; i < V; i += 32) {
            float pv = row_dot(Ws, ldw, sh, H, i, 0.0f);
            sv[i] = bernoullif_(uniform01(seed, stream, ctr + 1u, (u32)(chain * V + i)), sigmoidf_(bk * pv + bv[i]));
        }
        __syncwarp();
    }
    if (lane == 0) logw[chain] = acc;
}

template <int R>
__device__ __forceinline__ void ais_chains_v2_impl(const float* __restrict__ W, const float* __restrict__ bv_t,
                                                   const float* __restrict__ bh_t, int N, int V, int H, int M,
                                                   const float* __restrict__ betas, int nbetas, u64 seed, u32 stream,
                                                   u32 counter, int ldw, double* __restrict__ logw,
                                                   const u64* __restrict__ keys, long long w_ps, long long bv_ps,
                                                   long long bh_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    logw += model * N * M;
    chain_model(model, W, bv_t, bh_t, w_ps, bv_ps, bh_ps, keys, seed, stream);
    stage_w_smem(W, V, H, ldw, smem);
    long long chain = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (chain >= (long long)N * M) return;
    long long frame = chain / M;
    int su_len = (V > H ? V : H) + 8;
    float* su = smem + V * ldw + threadIdx.y * su_len;
    int lane = threadIdx.x;
    const int RV = (V + 31) >> 5, RH = (H + 31) >> 5;
    const float* bv = bv_t + frame * V;
    const float* bh = bh_t + frame * H;
    float bvr[R], bhr[R];
    u32 vm[R], hm[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int u = lane + 32 * r;
        bvr[r] = u < V ? bv[u] : 0.0f;
        bhr[r] = u < H ? bh[u] : 0.0f;
    }
    const u32 vbase = (u32)(chain * V), hbase = (u32)(chain * H);
    // v_0 from the base distribution (W = 0)
    {
        const float* u = warp_uniforms(seed, stream, counter, vbase, V, su);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            int i = lane + 32 * r;
            vm[r] = __ballot_sync(0xffffffffu, i < V && u[i] < sigmoidf_(bvr[r]));
        }
    }
    double acc = 0.0;
    for (int k = 1; k < nbetas; ++k) {
        float bp = betas[k - 1], bk = betas[k];
        float x[R], ph[R];
#pragma unroll
        for (int r = 0; r < R; ++r) x[r] = 0.0f;
        acc_active<R, true>(smem, ldw, 1, vm, RV, (const float*)0, H, x);
        float d = 0.0f, Y = 0.0f;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            ph[r] = 0.0f;
            if (lane + 32 * r < H) ph[r] = ais_unit(x[r], bhr[r], bp, bk - bp, bk, Y, d);
        }
        d += log1pf(Y);
        d = warp_sum(d);
        acc += (double)d;
        if (k + 1 == nbetas) break;  // the last transition would not change the weight
        u32 ctr = counter + 2u * (u32)k - 1u;
        {
            const float* u = warp_uniforms(seed, stream, ctr, hbase, H, su);
#pragma unroll
            for (int r = 0; r < R; ++r) {
                int j = lane + 32 * r;
                hm[r] = __ballot_sync(0xffffffffu, j < H && u[j] < ph[r]);
            }
        }
        float pv[R];
#pragma unroll
        for (int r = 0; r < R; ++r) pv[r] = 0.0f;
        acc_active<R, true>(smem, 1, ldw, hm, RH, (const float*)0, V, pv);
        {
            const float* u = warp_uniforms(seed, stream, ctr + 1u, vbase, V, su);
#pragma unroll
            for (int r = 0; r < R; ++r) {
                int i = lane + 32 * r;
                vm[r] = __ballot_sync(0xffffffffu, i < V && u[i] < sigmoidf_(bk * pv[r] + bvr[r]));
            }
        }
    }
    if (lane == 0) logw[chain] = acc;
}

#define AIS_V2(R)                                                                                                \
    extern "C" __global__ void ais_chains_v2_r##R(                                                              \
        const float* __restrict__ W, const float* __restrict__ bv_t, const float* __restrict__ bh_t, int N, int V, \
        int H, int M, const float* __restrict__ betas, int nbetas, u64 seed, u32 stream, u32 counter, int ldw,    \
        double* __restrict__ logw, const u64* __restrict__ keys, long long w_ps, long long bv_ps,                \
        long long bh_ps) {                                                                                       \
        ais_chains_v2_impl<R>(W, bv_t, bh_t, N, V, H, M, betas, nbetas, seed, stream, counter, ldw, logw, keys,  \
                              w_ps, bv_ps, bh_ps);                                                                \
    }
AIS_V2(1)
AIS_V2(2)
AIS_V2(3)
AIS_V2(4)
AIS_V2(5)
AIS_V2(6)
AIS_V2(7)
AIS_V2(8)
