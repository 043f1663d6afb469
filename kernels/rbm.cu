// rbm.cu: conditional RBMs sharing W (SPEC 1). Shapes: W [V,H], v and bv_t [N,V], bh_t [N,H].
//
// hidden_probs: out[n, j] = sigma(bh_t[n, j] + sum_i v[n, i] W[i, j]); one thread per (n, j).
//               Reference: Cpu::hidden_probs (src/backend/cpu.rs).
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
// test_uniforms: out[i] = uniform01(seed, stream, counter, first + i) (bit-identity test).
// Launch grids use blockIdx.x only, leaving blockIdx.y free for a model index.

extern "C" __global__ void hidden_probs(const float* __restrict__ W, const float* __restrict__ v,
                                        const float* __restrict__ bh_t, int N, int V, int H,
                                        float* __restrict__ out) {
    GRID_STRIDE(e, (long long)N * H) {
        long long n = e / H;
        int j = (int)(e % H);
        out[e] = sigmoidf_(col_dot(W, H, v + n * V, V, j, bh_t[e]));
    }
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
                                       int ldw) {
    extern __shared__ float smem[];
    const float* Ws = stage_w(W, V, H, w_shared, ldw, smem);
    long long chain = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (chain >= N) return;
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
                                           float norm, int w_shared, int ldw, float* __restrict__ out) {
    extern __shared__ float smem[];
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
                                       int H, int gaussian, float* __restrict__ out) {
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
