// ais.cu: annealed importance sampling (SPEC 4.1) for N conditional RBMs x M runs.
// Shapes: W [V,H], bv_t [N,V], bh_t [N,H], betas [S] (f32, ascending, 0 .. 1), logw [N*M] (f64).
//
// ais_chains: one warp per chain (n, m) = chain / M, chain % M; blockDim = (32, CPB); W staged in
// shared memory when it fits. Each chain walks the WHOLE schedule in one launch:
//   v ~ Bernoulli(sigma(bv)) with uniforms (counter, chain*V + i);
//   for k = 1..S-1: x = v W; logw += sum_j softplus(beta_k x_j + bh_j) - softplus(beta_{k-1} x_j + bh_j)
//   (summed in f32 per step, accumulated in f64); unless k is the last step, a transition at beta_k:
//   h_j ~ sigma(beta_k x_j + bh_j) (counter + 2k - 1, chain*H + j),
//   v_i ~ sigma(beta_k (W h)_i + bv_i) (counter + 2k, chain*V + i).
// Reference: Cpu::ais (src/backend/cpu.rs). blockIdx.y is free for a model index.

extern "C" __global__ void ais_chains(const float* __restrict__ W, const float* __restrict__ bv_t,
                                      const float* __restrict__ bh_t, int N, int V, int H, int M,
                                      const float* __restrict__ betas, int nbetas, u64 seed, u32 stream,
                                      u32 counter, int w_shared, int ldw, double* __restrict__ logw) {
    extern __shared__ float smem[];
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
        float d = 0.0f;
        for (int j = lane; j < H; j += 32) {
            float x = col_dot(Ws, ldw, sv, V, j, 0.0f);
            sx[j] = x;
            d += softplusf_(bk * x + bh[j]) - softplusf_(bp * x + bh[j]);
        }
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
