// rbm.cu: conditional RBMs sharing W (SPEC 1). Shapes: W [V,H], v and bv_t [N,V], bh_t [N,H].
//
// hidden_probs: out[n, j] = sigma(bh_t[n, j] + sum_i v[n, i] W[i, j]); one thread per (n, j)
//               (hidden_probs_v2_r{R}, below: one warp per row, nonzero v only, same bits).
//               Reference: Cpu::hidden_probs (src/backend/cpu.rs).
// cd_stats:     the CD statistics of a training update (Backend::cd_stats): phneg[n, j] =
//               sigma(bh_t[n, j] + sum_i vneg[n, i] W[i, j]), dbh_t[n, j] = wmask[n] (phneg[n, j] -
//               sigma(bh_t[n, j] + sum_i v[n, i] W[i, j])), dbv_t[n, i] = wmask[n] (vneg[n, i] -
//               v[n, i]); hidden_probs' expressions and w (a - b), one thread per output
//               (cd_stats_v2_r{R}, below: one warp per row, nonzero visibles only, same bits).
//               Reference: Cpu::cd_stats.
// gibbs_chain:  K block-Gibbs steps in ONE launch. One warp per chain, blockDim = (32, CPB)
//               (CPB chains per block), W staged in shared memory when it fits (else read from
//               global memory), v and h of each chain in shared memory. Step k: h_j = [u < sigma(
//               v W + bh)] with uniforms (counter + 2k, n*H + j); v_i = [u < sigma(W h + bv)] with
//               (counter + 2k + 1, n*V + i), or v_i = W h + bv + N(0,1) (Gaussian; normal from
//               uniforms 2(n*V+i), +1). Reference: Cpu::gibbs / Cpu::gibbs_step.
// free_energy:  out[n] = -v.bv - sum_j softplus(a_j) (binary) or |v - bv|^2/2 - sum_j softplus(a_j)
//               (Gaussian), a = v W + bh_t; one warp per RBM. Reference: Cpu::free_energy.
// gibbs_marginals: one warp per RBM n: for c in 0..chains (chain n*chains + c), v = 0, burn_in +
//               samples Gibbs steps, averaging P(v = 1 | h) over the kept steps into out [N,V].
//               Reference: Cpu::gibbs_marginals.
// gibbs_chain_v2_r{1..8}, gibbs_marginals_v2_r{1..8}: the same chains and uniforms for BINARY
//               visibles with V, H <= 32 R and W staged in shared memory (the host falls back
//               to gibbs_chain / gibbs_marginals otherwise, or when RTRBM_KERNELS=v1). Lane l
//               owns units l + 32 r; v and h are ballot words in registers; v W + bh and W h + bv
//               add only the ON rows/columns in increasing order (acc_active), so every
//               pre-activation, probability and sample is BIT-IDENTICAL to gibbs_chain's; uniforms
//               come 4 per Philox block (warp_uniforms). gibbs_chain_v2 accepts a non-binary
//               starting v (its first product weights the rows by v, from shared memory).
//               Shared memory: W (V*ldw floats), then max(V,H) + 8 + V floats per warp.
// test_uniforms: out[i] = uniform01(seed, stream, counter, first + i) (bit-identity test).
//
// Packed models (Backend::models() = P; reference src/backend/packed.rs): every buffer is P
// slabs, model-major; the model index p is blockIdx.y (the host launches P rows of blocks) and
// the trailing `*_ps` arguments are the slab strides (elements) of the buffer arguments, in
// order. Each pointer moves by p * stride at the top of the kernel; chain and unit indices (and
// so the Philox indices) stay per model, so model p draws exactly what it draws alone.
// gibbs_chain*: `mask` [N] (slab stride mask_ps) is null or holds the frame mask: chains with
// mask 0 (padded frames) return without touching v or drawing, and a block whose chains are all
// padding returns before staging W (Backend::gibbs; reference Cpu::gibbs).
// gibbs_chain*: `keys` is null (lone model: seed, stream as given) or holds, as 2P u64, each
// model's seed and the offset of its stream from the `stream` argument (added, wrapping): a pack
// in lockstep has offsets 0, so its `keys` does not change from update to update. gibbs_marginals*: every model uses the same key (Backend::gibbs_marginals).

extern "C" __global__ void hidden_probs(const float* __restrict__ W, const float* __restrict__ v,
                                        const float* __restrict__ bh_t, int N, int V, int H,
                                        float* __restrict__ out, long long w_ps, long long v_ps, long long bh_ps,
                                        long long out_ps) {
    const long long model = blockIdx.y;
    W += model * w_ps;
    v += model * v_ps;
    bh_t += model * bh_ps;
    out += model * out_ps;
    GRID_STRIDE(e, (long long)N * H) {
        long long n = e / H;
        int j = (int)(e % H);
        out[e] = sigmoidf_(col_dot(W, H, v + n * V, V, j, bh_t[e]));
    }
}

extern "C" __global__ void cd_stats(const float* __restrict__ W, const float* __restrict__ v,
                                    const float* __restrict__ vneg, const float* __restrict__ bh_t,
                                    const float* __restrict__ wmask, int N, int V, int H, float* __restrict__ phneg,
                                    float* __restrict__ dbh_t, float* __restrict__ dbv_t, long long w_ps,
                                    long long v_ps, long long vneg_ps, long long bh_ps, long long wmask_ps,
                                    long long phneg_ps, long long dbh_ps, long long dbv_ps) {
    const long long model = blockIdx.y;
    W += model * w_ps;
    v += model * v_ps;
    vneg += model * vneg_ps;
    bh_t += model * bh_ps;
    wmask += model * wmask_ps;
    phneg += model * phneg_ps;
    dbh_t += model * dbh_ps;
    dbv_t += model * dbv_ps;
    GRID_STRIDE(e, (long long)N * H) {
        long long n = e / H;
        int j = (int)(e % H);
        float pn = sigmoidf_(col_dot(W, H, vneg + n * V, V, j, bh_t[e]));
        phneg[e] = pn;
        dbh_t[e] = wmask[n] * (pn - sigmoidf_(col_dot(W, H, v + n * V, V, j, bh_t[e])));
    }
    GRID_STRIDE(e, (long long)N * V) { dbv_t[e] = wmask[e / V] * (vneg[e] - v[e]); }
}

// One Gibbs step of the chain held by this warp (sv [V], sh [H] in shared memory). When pv is
// not null, P(v = 1 | h) is returned there (binary units only).
__device__ __forceinline__ void gibbs_step_warp(const float* Ws, int ldw, const float* bv, const float* bh, float* sv,
                                                float* sh, float* pv, int V, int H, int gaussian, u64 seed, u32 stream,
                                                u32 ctr, long long chain) {
    int lane = threadIdx.x;
    for (int j = lane; j < H; j += 32) {
        float p = sigmoidf_(col_dot(Ws, ldw, sv, V, j, bh[j]));
        sh[j] = bernoullif_(uniform01(seed, stream, ctr, (u32)(chain * H + j)), p);
    }
    __syncwarp();
    for (int i = lane; i < V; i += 32) {
        float mean = row_dot(Ws, ldw, sh, H, i, bv[i]);
        if (gaussian) {
            sv[i] = mean + normal01(seed, stream, ctr + 1u, (u32)(chain * V + i));
        } else {
            float p = sigmoidf_(mean);
            if (pv) pv[i] = p;
            sv[i] = bernoullif_(uniform01(seed, stream, ctr + 1u, (u32)(chain * V + i)), p);
        }
    }
    __syncwarp();
}

extern "C" __global__ void gibbs_chain(const float* __restrict__ W, const float* __restrict__ bv_t,
                                       const float* __restrict__ bh_t, float* __restrict__ v, int N, int V, int H,
                                       int K, int gaussian, u64 seed, u32 stream, u32 counter, int w_shared,
                                       int ldw, const u64* __restrict__ keys, const float* __restrict__ mask,
                                       long long w_ps, long long bv_ps, long long bh_ps, long long v_ps,
                                       long long mask_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    v += model * v_ps;
    chain_model(model, W, bv_t, bh_t, w_ps, bv_ps, bh_ps, keys, seed, stream);
    long long chain = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    const bool active = chain_active(chain, N, mask, model * mask_ps);
    if (!__syncthreads_or(active)) return;  // every chain of the block is padding: no staging
    const float* Ws = stage_w(W, V, H, w_shared, ldw, smem);
    if (!active) return;
    float* sv = smem + (w_shared ? V * ldw : 0) + threadIdx.y * (V + H);
    float* sh = sv + V;
    int lane = threadIdx.x;
    for (int i = lane; i < V; i += 32) sv[i] = v[chain * V + i];
    __syncwarp();
    const float* bv = bv_t + chain * V;
    const float* bh = bh_t + chain * H;
    for (int k = 0; k < K; ++k) {
        gibbs_step_warp(Ws, ldw, bv, bh, sv, sh, (float*)0, V, H, gaussian, seed, stream, counter + 2u * (u32)k, chain);
    }
    for (int i = lane; i < V; i += 32) v[chain * V + i] = sv[i];
}

extern "C" __global__ void gibbs_marginals(const float* __restrict__ W, const float* __restrict__ bv_t,
                                           const float* __restrict__ bh_t, int N, int V, int H, int chains,
                                           int burn_in, int samples, u64 seed, u32 stream, u32 counter,
                                           float norm, int w_shared, int ldw, float* __restrict__ out,
                                           long long w_ps, long long bv_ps, long long bh_ps, long long out_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    W += model * w_ps;
    bv_t += model * bv_ps;
    bh_t += model * bh_ps;
    out += model * out_ps;
    const float* Ws = stage_w(W, V, H, w_shared, ldw, smem);
    long long frame = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (frame >= N) return;
    float* sv = smem + (w_shared ? V * ldw : 0) + threadIdx.y * (3 * V + H);
    float* sh = sv + V;
    float* pv = sh + H;
    float* acc = pv + V;
    int lane = threadIdx.x;
    const float* bv = bv_t + frame * V;
    const float* bh = bh_t + frame * H;
    for (int i = lane; i < V; i += 32) acc[i] = 0.0f;
    for (int c = 0; c < chains; ++c) {
        long long chain = frame * chains + c;
        for (int i = lane; i < V; i += 32) sv[i] = 0.0f;
        __syncwarp();
        for (int step = 0; step < burn_in + samples; ++step) {
            gibbs_step_warp(Ws, ldw, bv, bh, sv, sh, pv, V, H, 0, seed, stream, counter + 2u * (u32)step, chain);
            if (step >= burn_in) {
                for (int i = lane; i < V; i += 32) acc[i] += pv[i];
            }
        }
    }
    for (int i = lane; i < V; i += 32) out[frame * V + i] = acc[i] * norm;
}

extern "C" __global__ void free_energy(const float* __restrict__ W, const float* __restrict__ bv_t,
                                       const float* __restrict__ bh_t, const float* __restrict__ v, int N, int V,
                                       int H, int gaussian, float* __restrict__ out, long long w_ps, long long bv_ps,
                                       long long bh_ps, long long v_ps, long long out_ps) {
    const long long model = blockIdx.y;
    W += model * w_ps;
    bv_t += model * bv_ps;
    bh_t += model * bh_ps;
    v += model * v_ps;
    out += model * out_ps;
    long long n = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (n >= N) return;
    int lane = threadIdx.x;
    const float* vr = v + n * V;
    const float* bv = bv_t + n * V;
    float fv = 0.0f;
    for (int i = lane; i < V; i += 32) {
        float x = vr[i], b = bv[i];
        fv += gaussian ? (x - b) * (x - b) * 0.5f : -x * b;
    }
    float sp = 0.0f;
    for (int j = lane; j < H; j += 32) sp += softplusf_(col_dot(W, H, vr, V, j, bh_t[n * H + j]));
    fv = warp_sum(fv);
    sp = warp_sum(sp);
    if (lane == 0) out[n] = fv - sp;
}

extern "C" __global__ void test_uniforms(u64 seed, u32 stream, u32 counter, u32 first, int n, float* __restrict__ out) {
    GRID_STRIDE(i, n) { out[i] = uniform01(seed, stream, counter, first + (u32)i); }
}

// One binary Gibbs step of the v2 kernels: h from vm (ON visibles; when vx is not null, the
// visible values are vx[0 .. V) in shared memory instead of ones), then vm from h. pv, when not
// null, receives P(v = 1 | h) of the lane's units.
template <int R>
__device__ __forceinline__ void gibbs_step_v2(const float* Ws, int ldw, int V, int H, const float* bvr, const float* bhr,
                                              u32* vm, const float* vx, float* su, u64 seed, u32 stream, u32 ctr,
                                              long long chain, float* pv) {
    int lane = threadIdx.x;
    const int RV = (V + 31) >> 5, RH = (H + 31) >> 5;
    float x[R];
    u32 hm[R];
#pragma unroll
    for (int r = 0; r < R; ++r) x[r] = bhr[r];
    if (vx)
        acc_active<R, false>(Ws, ldw, 1, vm, RV, vx, H, x);
    else
        acc_active<R, true>(Ws, ldw, 1, vm, RV, (const float*)0, H, x);
    {
        const float* u = warp_uniforms(seed, stream, ctr, (u32)(chain * H), H, su);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            int j = lane + 32 * r;
            hm[r] = __ballot_sync(0xffffffffu, j < H && bernoullif_(u[j], sigmoidf_(x[r])) != 0.0f);
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) x[r] = bvr[r];
    acc_active<R, true>(Ws, 1, ldw, hm, RH, (const float*)0, V, x);
    {
        const float* u = warp_uniforms(seed, stream, ctr + 1u, (u32)(chain * V), V, su);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            int i = lane + 32 * r;
            float p = sigmoidf_(x[r]);
            if (pv) pv[r] = p;
            vm[r] = __ballot_sync(0xffffffffu, i < V && bernoullif_(u[i], p) != 0.0f);
        }
    }
}

template <int R>
__device__ __forceinline__ void gibbs_chain_v2_impl(const float* __restrict__ W, const float* __restrict__ bv_t,
                                                    const float* __restrict__ bh_t, float* __restrict__ v, int N, int V,
                                                    int H, int K, u64 seed, u32 stream, u32 counter, int ldw,
                                                    const u64* __restrict__ keys, const float* __restrict__ mask,
                                                    long long w_ps, long long bv_ps, long long bh_ps, long long v_ps,
                                                    long long mask_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    v += model * v_ps;
    chain_model(model, W, bv_t, bh_t, w_ps, bv_ps, bh_ps, keys, seed, stream);
    long long chain = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    const bool active = chain_active(chain, N, mask, model * mask_ps);
    if (!__syncthreads_or(active)) return;  // every chain of the block is padding: no staging
    stage_w_smem(W, V, H, ldw, smem);
    if (!active) return;
    int per_warp = (V > H ? V : H) + 8 + V;
    float* su = smem + V * ldw + threadIdx.y * per_warp;
    float* sv = su + (V > H ? V : H) + 8;
    int lane = threadIdx.x;
    float bvr[R], bhr[R];
    u32 vm[R];
    bool binary = true;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int u = lane + 32 * r;
        bvr[r] = u < V ? bv_t[chain * V + u] : 0.0f;
        bhr[r] = u < H ? bh_t[chain * H + u] : 0.0f;
        float x = u < V ? v[chain * V + u] : 0.0f;
        if (u < V) sv[u] = x;
        binary = binary && (x == 0.0f || x == 1.0f);
        vm[r] = __ballot_sync(0xffffffffu, x != 0.0f);
    }
    binary = __all_sync(0xffffffffu, binary);
    __syncwarp();
    for (int k = 0; k < K; ++k) {
        gibbs_step_v2<R>(smem, ldw, V, H, bvr, bhr, vm, (k == 0 && !binary) ? sv : (const float*)0, su, seed, stream,
                         counter + 2u * (u32)k, chain, (float*)0);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int i = lane + 32 * r;
        if (i < V) v[chain * V + i] = ((vm[r] >> lane) & 1u) ? 1.0f : 0.0f;
    }
}

template <int R>
__device__ __forceinline__ void gibbs_marginals_v2_impl(const float* __restrict__ W, const float* __restrict__ bv_t,
                                                        const float* __restrict__ bh_t, int N, int V, int H, int chains,
                                                        int burn_in, int samples, u64 seed, u32 stream, u32 counter,
                                                        float norm, int ldw, float* __restrict__ out, long long w_ps,
                                                        long long bv_ps, long long bh_ps, long long out_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    W += model * w_ps;
    bv_t += model * bv_ps;
    bh_t += model * bh_ps;
    out += model * out_ps;
    stage_w_smem(W, V, H, ldw, smem);
    long long frame = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (frame >= N) return;
    int per_warp = (V > H ? V : H) + 8 + V;
    float* su = smem + V * ldw + threadIdx.y * per_warp;
    int lane = threadIdx.x;
    float bvr[R], bhr[R], acc[R], pv[R];
    u32 vm[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int u = lane + 32 * r;
        bvr[r] = u < V ? bv_t[frame * V + u] : 0.0f;
        bhr[r] = u < H ? bh_t[frame * H + u] : 0.0f;
        acc[r] = 0.0f;
    }
    for (int c = 0; c < chains; ++c) {
        long long chain = frame * chains + c;
#pragma unroll
        for (int r = 0; r < R; ++r) vm[r] = 0u;
        for (int step = 0; step < burn_in + samples; ++step) {
            gibbs_step_v2<R>(smem, ldw, V, H, bvr, bhr, vm, (const float*)0, su, seed, stream, counter + 2u * (u32)step,
                             chain, pv);
            if (step >= burn_in) {
#pragma unroll
                for (int r = 0; r < R; ++r) acc[r] += pv[r];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        int i = lane + 32 * r;
        if (i < V) out[frame * V + i] = acc[r] * norm;
    }
}

#define GIBBS_V2(R)                                                                                                   \
    extern "C" __global__ void gibbs_chain_v2_r##R(                                                                   \
        const float* __restrict__ W, const float* __restrict__ bv_t, const float* __restrict__ bh_t,                   \
        float* __restrict__ v, int N, int V, int H, int K, u64 seed, u32 stream, u32 counter, int ldw,                \
        const u64* __restrict__ keys, const float* __restrict__ mask, long long w_ps, long long bv_ps, long long bh_ps, \
        long long v_ps, long long mask_ps) {                                                                           \
        gibbs_chain_v2_impl<R>(W, bv_t, bh_t, v, N, V, H, K, seed, stream, counter, ldw, keys, mask, w_ps, bv_ps,     \
                               bh_ps, v_ps, mask_ps);                                                                  \
    }                                                                                                                  \
    extern "C" __global__ void gibbs_marginals_v2_r##R(                                                               \
        const float* __restrict__ W, const float* __restrict__ bv_t, const float* __restrict__ bh_t, int N, int V,    \
        int H, int chains, int burn_in, int samples, u64 seed, u32 stream, u32 counter, float norm, int ldw,          \
        float* __restrict__ out, long long w_ps, long long bv_ps, long long bh_ps, long long out_ps) {                \
        gibbs_marginals_v2_impl<R>(W, bv_t, bh_t, N, V, H, chains, burn_in, samples, seed, stream, counter, norm, ldw, \
                                   out, w_ps, bv_ps, bh_ps, out_ps);                                                   \
    }
// hidden_probs_v2_r{R}: hidden_probs for V, H <= 32 R, one warp per row n (blockDim = (32, 8)):
// lane l owns units l + 32 r; the row's nonzero visibles are found by ballots and only their rows
// of W are added (acc_active, reading W from global memory), in increasing order with col_dot's
// expression, so every output is BIT-IDENTICAL to hidden_probs'. A row of 0/1 samples has a few
// nonzeros (JSB: ~4 of 88), where hidden_probs' thread per output walked all V.
template <int R>
__device__ __forceinline__ void hidden_probs_v2_impl(const float* __restrict__ W, const float* __restrict__ v,
                                                     const float* __restrict__ bh_t, int N, int V, int H,
                                                     float* __restrict__ out, long long w_ps, long long v_ps,
                                                     long long bh_ps, long long out_ps) {
    const long long model = blockIdx.y;
    W += model * w_ps;
    v += model * v_ps;
    bh_t += model * bh_ps;
    out += model * out_ps;
    const long long n = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (n >= N) return;  // the whole warp: n is the warp's row
    const int lane = threadIdx.x;
    const float* vr = v + n * V;
    u32 m[R];
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = lane + 32 * r, j = lane + 32 * r;
        m[r] = __ballot_sync(0xffffffffu, i < V && vr[i] != 0.0f);
        acc[r] = j < H ? bh_t[n * H + j] : 0.0f;
    }
    acc_active<R, false>(W, H, 1, m, (V + 31) >> 5, vr, H, acc);
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int j = lane + 32 * r;
        if (j < H) out[n * H + j] = sigmoidf_(acc[r]);
    }
}

#define HIDDEN_V2(R)                                                                                           \
    extern "C" __global__ void hidden_probs_v2_r##R(const float* __restrict__ W, const float* __restrict__ v, \
                                                    const float* __restrict__ bh_t, int N, int V, int H,      \
                                                    float* __restrict__ out, long long w_ps, long long v_ps,   \
                                                    long long bh_ps, long long out_ps) {                       \
        hidden_probs_v2_impl<R>(W, v, bh_t, N, V, H, out, w_ps, v_ps, bh_ps, out_ps);                          \
    }
HIDDEN_V2(1)
HIDDEN_V2(2)
HIDDEN_V2(3)
HIDDEN_V2(4)
HIDDEN_V2(5)
HIDDEN_V2(6)
HIDDEN_V2(7)
HIDDEN_V2(8)

// cd_stats_v2_r{R}: cd_stats for V, H <= 32 R, one warp per row n (blockDim = (32, 8)), the two
// products as hidden_probs_v2's (acc_active over the row's nonzero visibles, in increasing order:
// the same bits as cd_stats and as hidden_probs followed by the weighted differences). Replaced
// two hidden_probs and four masking launches of a training update (Step 8 of
// docs/PERFORMANCE.md).
template <int R>
__device__ __forceinline__ void cd_stats_v2_impl(const float* __restrict__ W, const float* __restrict__ v,
                                                 const float* __restrict__ vneg, const float* __restrict__ bh_t,
                                                 const float* __restrict__ wmask, int N, int V, int H,
                                                 float* __restrict__ phneg, float* __restrict__ dbh_t,
                                                 float* __restrict__ dbv_t, long long w_ps, long long v_ps,
                                                 long long vneg_ps, long long bh_ps, long long wmask_ps,
                                                 long long phneg_ps, long long dbh_ps, long long dbv_ps) {
    const long long model = blockIdx.y;
    W += model * w_ps;
    v += model * v_ps;
    vneg += model * vneg_ps;
    bh_t += model * bh_ps;
    wmask += model * wmask_ps;
    phneg += model * phneg_ps;
    dbh_t += model * dbh_ps;
    dbv_t += model * dbv_ps;
    const long long n = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (n >= N) return;  // the whole warp: n is the warp's row
    const int lane = threadIdx.x;
    const float* vr = v + n * V;
    const float* nr = vneg + n * V;
    const float m = wmask[n];
    u32 mv[R], mn[R];
    float a[R], an[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = lane + 32 * r, j = lane + 32 * r;
        const float x = i < V ? vr[i] : 0.0f, xn = i < V ? nr[i] : 0.0f;
        mv[r] = __ballot_sync(0xffffffffu, x != 0.0f);
        mn[r] = __ballot_sync(0xffffffffu, xn != 0.0f);
        if (i < V) dbv_t[n * V + i] = m * (xn - x);
        a[r] = j < H ? bh_t[n * H + j] : 0.0f;
        an[r] = a[r];
    }
    acc_active<R, false>(W, H, 1, mv, (V + 31) >> 5, vr, H, a);
    acc_active<R, false>(W, H, 1, mn, (V + 31) >> 5, nr, H, an);
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int j = lane + 32 * r;
        if (j < H) {
            const float pn = sigmoidf_(an[r]);
            phneg[n * H + j] = pn;
            dbh_t[n * H + j] = m * (pn - sigmoidf_(a[r]));
        }
    }
}

#define CD_STATS_V2(R)                                                                                            \
    extern "C" __global__ void cd_stats_v2_r##R(                                                                \
        const float* __restrict__ W, const float* __restrict__ v, const float* __restrict__ vneg,                \
        const float* __restrict__ bh_t, const float* __restrict__ wmask, int N, int V, int H,                    \
        float* __restrict__ phneg, float* __restrict__ dbh_t, float* __restrict__ dbv_t, long long w_ps,         \
        long long v_ps, long long vneg_ps, long long bh_ps, long long wmask_ps, long long phneg_ps,              \
        long long dbh_ps, long long dbv_ps) {                                                                    \
        cd_stats_v2_impl<R>(W, v, vneg, bh_t, wmask, N, V, H, phneg, dbh_t, dbv_t, w_ps, v_ps, vneg_ps, bh_ps,   \
                            wmask_ps, phneg_ps, dbh_ps, dbv_ps);                                                 \
    }
CD_STATS_V2(1)
CD_STATS_V2(2)
CD_STATS_V2(3)
CD_STATS_V2(4)
CD_STATS_V2(5)
CD_STATS_V2(6)
CD_STATS_V2(7)
CD_STATS_V2(8)

GIBBS_V2(1)
GIBBS_V2(2)
GIBBS_V2(3)
GIBBS_V2(4)
GIBBS_V2(5)
GIBBS_V2(6)
GIBBS_V2(7)
GIBBS_V2(8)
