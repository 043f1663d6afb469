// recurrent.cu: the sequential recurrences of RTRBM and RNN-RBM (SPEC 2), one thread block per
// sequence b (blockIdx.x) of model p (blockIdx.y) walking all T frames in ONE launch,
// one thread per unit j (strided when the unit count exceeds blockDim.x). The square recurrent
// matrix (WR [H,H] or Wuu [U,U]) is staged in shared memory with odd stride ldw when it fits, the
// current state vector lives in shared memory (double-buffered: one __syncthreads per frame).
// Layouts: [T,B,X] time-major; states [T+1,B,X] with row 0 the initial state.
//
// rtrbm_forward:  bh_t[s] = pre[s] + r[s] WR; r[s+1] = sigma(vw[s] + bh_t[s]).  Ref: Cpu::rtrbm_forward
// rtrbm_backward: g[T-1] = dbh[T-1]; g[s] = dbh[s] + (g[s+1] WR^T) * r[s+1] (1 - r[s+1]).
//                                                                              Ref: Cpu::rtrbm_backward
// rnn_forward:    u[s+1] = tanh(pre[s] + u[s] Wuu).                             Ref: Cpu::rnn_forward
// rnn_backward:   dz[s] = (e[s] + dz[s+1] Wuu^T) (1 - u[s+1]^2), dz[T] = 0.     Ref: Cpu::rnn_backward
//
// *_v2 (the default; RTRBM_KERNELS=v1 selects the kernels above): the same recurrences with
// each dot product split over S lanes (`S` argument, a power of two <= 32; blockDim.x a
// multiple of 32; outputs in passes of blockDim.x / S), lane q summing the terms k = q + S m
// and group_sum (common.cuh) adding the S partials. The frame's critical path is ~K/S terms
// instead of K; the sums round differently from the CPU's single sequential sum (within the
// tests' tolerances), identically for a model alone or packed. Each frame's inputs from global
// memory (pre, vw; st, outside) do not depend on the recurrence: with one pass (every model of
// configs/) they are loaded at the top of the previous frame, frames running in pairs so that no
// register copy waits for them (recurrent_forward_frame), else before the frame's dot product;
// either way their latency overlaps the recurrence's work (same arithmetic, same bits).
//
// Packed models (Backend::models() = P; reference src/backend/packed.rs): grid = (B, P); the
// trailing `*_ps` arguments are the slab strides (elements) of the buffer arguments, in order,
// and each pointer moves by p * stride at the top of the kernel (p = 0: the lone kernel).

extern "C" __global__ void rtrbm_forward(const float* __restrict__ WR, const float* __restrict__ pre,
                                         const float* __restrict__ vw, float* __restrict__ r,
                                         float* __restrict__ bh_t, int T, int B, int H, int w_shared, int ldw,
                                         long long wr_ps, long long pre_ps, long long vw_ps, long long r_ps,
                                         long long bh_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    WR += model * wr_ps;
    pre += model * pre_ps;
    vw += model * vw_ps;
    r += model * r_ps;
    bh_t += model * bh_ps;
    const float* Ws = stage_w(WR, H, H, w_shared, ldw, smem);
    float* cur = smem + (w_shared ? H * ldw : 0);
    float* nxt = cur + H;
    int b = blockIdx.x;
    for (int j = threadIdx.x; j < H; j += blockDim.x) cur[j] = r[(long long)b * H + j];
    __syncthreads();
    for (int s = 0; s < T; ++s) {
        long long row = ((long long)s * B + b) * H;
        long long out = ((long long)(s + 1) * B + b) * H;
        for (int j = threadIdx.x; j < H; j += blockDim.x) {
            float bh = col_dot(Ws, ldw, cur, H, j, pre[row + j]);
            bh_t[row + j] = bh;
            float rj = sigmoidf_(vw[row + j] + bh);
            r[out + j] = rj;
            nxt[j] = rj;
        }
        __syncthreads();
        float* t = cur; cur = nxt; nxt = t;
    }
}

extern "C" __global__ void rtrbm_backward(const float* __restrict__ WR, const float* __restrict__ r,
                                          const float* __restrict__ dbh, float* __restrict__ g, int T, int B, int H,
                                          int w_shared, int ldw, long long wr_ps, long long r_ps, long long dbh_ps,
                                          long long g_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    WR += model * wr_ps;
    r += model * r_ps;
    dbh += model * dbh_ps;
    g += model * g_ps;
    const float* Ws = stage_w(WR, H, H, w_shared, ldw, smem);
    float* gn = smem + (w_shared ? H * ldw : 0);  // g[s+1]
    float* gc = gn + H;                           // g[s]
    int b = blockIdx.x;
    for (int s = T - 1; s >= 0; --s) {
        long long row = ((long long)s * B + b) * H;
        for (int j = threadIdx.x; j < H; j += blockDim.x) {
            float gj = dbh[row + j];
            if (s + 1 < T) {
                const float* wrow = Ws + (long long)j * ldw;
                float dr = 0.0f;
                for (int k = 0; k < H; ++k) dr += wrow[k] * gn[k];
                float rj = r[((long long)(s + 1) * B + b) * H + j];
                gj += dr * rj * (1.0f - rj);
            }
            g[row + j] = gj;
            gc[j] = gj;
        }
        __syncthreads();
        float* t = gn; gn = gc; gc = t;
    }
}

extern "C" __global__ void rnn_forward(const float* __restrict__ Wuu, const float* __restrict__ pre,
                                       float* __restrict__ u, int T, int B, int U, int w_shared, int ldw,
                                       long long w_ps, long long pre_ps, long long u_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    Wuu += model * w_ps;
    pre += model * pre_ps;
    u += model * u_ps;
    const float* Ws = stage_w(Wuu, U, U, w_shared, ldw, smem);
    float* cur = smem + (w_shared ? U * ldw : 0);
    float* nxt = cur + U;
    int b = blockIdx.x;
    for (int j = threadIdx.x; j < U; j += blockDim.x) cur[j] = u[(long long)b * U + j];
    __syncthreads();
    for (int s = 0; s < T; ++s) {
        long long row = ((long long)s * B + b) * U;
        long long out = ((long long)(s + 1) * B + b) * U;
        for (int j = threadIdx.x; j < U; j += blockDim.x) {
            float uj = tanhf(col_dot(Ws, ldw, cur, U, j, pre[row + j]));
            u[out + j] = uj;
            nxt[j] = uj;
        }
        __syncthreads();
        float* t = cur; cur = nxt; nxt = t;
    }
}

extern "C" __global__ void rnn_backward(const float* __restrict__ Wuu, const float* __restrict__ u,
                                        const float* __restrict__ e, float* __restrict__ dz, int T, int B, int U,
                                        int w_shared, int ldw, long long w_ps, long long u_ps, long long e_ps,
                                        long long dz_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    Wuu += model * w_ps;
    u += model * u_ps;
    e += model * e_ps;
    dz += model * dz_ps;
    const float* Ws = stage_w(Wuu, U, U, w_shared, ldw, smem);
    float* dn = smem + (w_shared ? U * ldw : 0);  // dz[s+1]
    float* dc = dn + U;                           // dz[s]
    int b = blockIdx.x;
    for (int s = T - 1; s >= 0; --s) {
        long long row = ((long long)s * B + b) * U;
        for (int j = threadIdx.x; j < U; j += blockDim.x) {
            float du = e[row + j];
            if (s + 1 < T) {
                const float* wrow = Ws + (long long)j * ldw;
                for (int k = 0; k < U; ++k) du += wrow[k] * dn[k];
            }
            float uj = u[((long long)(s + 1) * B + b) * U + j];
            float d = du * (1.0f - uj * uj);
            dz[row + j] = d;
            dc[j] = d;
        }
        __syncthreads();
        float* t = dn; dn = dc; dc = t;
    }
}

// ---- split-K (v2) ------------------------------------------------------------------------------

// One frame s of recurrent_forward_v2 for output j (lane q of its group of S): the dot product
// of st[s] (`cur`, shared) with column j of W, then the epilogue from the frame's inputs
// (in_pre, in_vw, already in registers) into st[s+1] (global and `nxt`) and bh_t[s]. When `ld` is
// set, frame s+1's inputs are first loaded into ld_pre, ld_vw: they have the whole frame to
// arrive (Step 9 of docs/PERFORMANCE.md).
__device__ __forceinline__ void recurrent_forward_frame(const float* Ws, int ldw, const float* __restrict__ pre,
                                                        const float* __restrict__ vw, float* __restrict__ st,
                                                        float* __restrict__ bh_t, int B, int n, int S, int b, int s,
                                                        int j, int q, const float* cur, float* nxt, float in_pre,
                                                        float in_vw, bool ld, float& ld_pre, float& ld_vw) {
    const long long row = ((long long)s * B + b) * n;
    if (ld) {
        const long long next = row + (long long)B * n;
        ld_pre = pre[next + j];
        if (bh_t) ld_vw = vw[next + j];
    }
    float acc = j < n ? lane_dot(cur, Ws + j, ldw, q, n, S) : 0.0f;
    acc = group_sum(acc, S);
    if (j < n && q == 0) {
        float x;
        if (bh_t) {
            float bh = in_pre + acc;
            bh_t[row + j] = bh;
            x = sigmoidf_(in_vw + bh);
        } else {
            x = tanhf(in_pre + acc);
        }
        st[row + (long long)B * n + j] = x;
        nxt[j] = x;
    }
}

// Shared by rtrbm_forward_v2 (bh_t[s] = pre[s] + sum, st[s+1] = sigma(vw[s] + bh_t[s])) and
// rnn_forward_v2 (st[s+1] = tanh(pre[s] + sum); vw and bh_t null), sum = st[s] W over S lanes.
// With one pass (n <= blockDim / S: every model of configs/), group j owns output j in every
// frame and frames run in pairs, so that frame s+1's inputs, loaded at the top of frame s into the
// other register pair, are waited for only in frame s+1's epilogue (a loop of single frames would
// copy the loaded registers at the end of each frame, waiting there). Otherwise outputs go in
// passes and each frame loads its inputs before its dot products. Same arithmetic either way.
__device__ __forceinline__ void recurrent_forward_v2(const float* __restrict__ W, const float* __restrict__ pre,
                                                     const float* __restrict__ vw, float* __restrict__ st,
                                                     float* __restrict__ bh_t, int T, int B, int n, int w_shared,
                                                     int ldw, int S) {
    extern __shared__ float smem[];
    const float* Ws = stage_w(W, n, n, w_shared, ldw, smem);
    float* cur = smem + (w_shared ? n * ldw : 0);
    float* nxt = cur + n;
    const int b = blockIdx.x, q = threadIdx.x & (S - 1), per_pass = blockDim.x / S;
    for (int j = threadIdx.x; j < n; j += blockDim.x) cur[j] = st[(long long)b * n + j];
    if (n <= per_pass) {
        const int j = threadIdx.x / S;
        const bool loads = j < n && q == 0;
        float a_pre = 0.0f, a_vw = 0.0f, b_pre = 0.0f, b_vw = 0.0f;  // frames s (a) and s+1 (b)
        if (loads && T > 0) {
            a_pre = pre[(long long)b * n + j];
            if (bh_t) a_vw = vw[(long long)b * n + j];
        }
        __syncthreads();
        for (int s = 0; s < T; s += 2) {
            recurrent_forward_frame(Ws, ldw, pre, vw, st, bh_t, B, n, S, b, s, j, q, cur, nxt, a_pre, a_vw,
                                    loads && s + 1 < T, b_pre, b_vw);
            __syncthreads();
            float* t = cur; cur = nxt; nxt = t;
            if (s + 1 < T) {
                recurrent_forward_frame(Ws, ldw, pre, vw, st, bh_t, B, n, S, b, s + 1, j, q, cur, nxt, b_pre,
                                        b_vw, loads && s + 2 < T, a_pre, a_vw);
                __syncthreads();
                t = cur; cur = nxt; nxt = t;
            }
        }
        return;
    }
    __syncthreads();
    for (int s = 0; s < T; ++s) {
        long long row = ((long long)s * B + b) * n;
        for (int j0 = 0; j0 < n; j0 += per_pass) {
            const int j = j0 + threadIdx.x / S;
            // the frame's inputs do not depend on the recurrence: loaded before the dot product,
            // their latency overlaps it instead of following it on the frame's critical path
            float in_pre = 0.0f, in_vw = 0.0f, unused0 = 0.0f, unused1 = 0.0f;
            if (j < n && q == 0) {
                in_pre = pre[row + j];
                if (bh_t) in_vw = vw[row + j];
            }
            recurrent_forward_frame(Ws, ldw, pre, vw, st, bh_t, B, n, S, b, s, j, q, cur, nxt, in_pre, in_vw, false,
                                    unused0, unused1);
        }
        __syncthreads();
        float* t = cur; cur = nxt; nxt = t;
    }
}

extern "C" __global__ void __launch_bounds__(1024)
rtrbm_forward_v2(const float* __restrict__ WR, const float* __restrict__ pre, const float* __restrict__ vw,
                 float* __restrict__ r, float* __restrict__ bh_t, int T, int B, int H, int w_shared, int ldw, int S,
                 long long wr_ps, long long pre_ps, long long vw_ps, long long r_ps, long long bh_ps) {
    const long long model = blockIdx.y;
    recurrent_forward_v2(WR + model * wr_ps, pre + model * pre_ps, vw + model * vw_ps, r + model * r_ps,
                         bh_t + model * bh_ps, T, B, H, w_shared, ldw, S);
}

// One frame s of recurrent_backward_v2 for output j: the dot product of the result at s+1 (`dn`,
// shared; none at the last frame) with row j of W, then the epilogue from the frame's inputs x =
// st[s+1][j] and in_out = outside[s][j] (in registers) into out[s] and `dc`. When `ld` is set,
// frame s-1's inputs are first loaded into ld_x, ld_out (as in recurrent_forward_frame).
__device__ __forceinline__ void recurrent_backward_frame(const float* Ws, int ldw, const float* __restrict__ st,
                                                         const float* __restrict__ outside, float* __restrict__ out,
                                                         int T, int B, int n, int S, int b, int s, int j, int q,
                                                         const float* dn, float* dc, float x, float in_out, bool ld,
                                                         float& ld_x, float& ld_out, bool rtrbm) {
    const long long row = ((long long)s * B + b) * n;
    const bool more = s + 1 < T;
    if (ld) {
        ld_x = st[row + j];
        ld_out = outside[row - (long long)B * n + j];
    }
    // wrow[k] * dn[k], as dn[k] * wrow[k] (the same product)
    float acc = j < n && more ? lane_dot(dn, Ws + (long long)j * ldw, 1, q, n, S) : 0.0f;
    acc = group_sum(acc, S);
    if (j < n && q == 0) {
        float d;
        if (rtrbm) {
            d = in_out;
            if (more) d += acc * x * (1.0f - x);
        } else {
            d = (in_out + acc) * (1.0f - x * x);
        }
        out[row + j] = d;
        dc[j] = d;
    }
}

// Shared by rtrbm_backward_v2 (sigmoid states: d = (outside + sum) r (1 - r), the outside term
// added after) and rnn_backward_v2 (tanh states: d = (outside + sum) (1 - u^2)). Frames in pairs
// on the one-pass path, as recurrent_forward_v2.
__device__ __forceinline__ void recurrent_backward_v2(const float* __restrict__ W, const float* __restrict__ st,
                                                      const float* __restrict__ outside, float* __restrict__ out,
                                                      int T, int B, int n, int w_shared, int ldw, int S,
                                                      bool rtrbm) {
    extern __shared__ float smem[];
    const float* Ws = stage_w(W, n, n, w_shared, ldw, smem);
    float* dn = smem + (w_shared ? n * ldw : 0);  // result at s+1
    float* dc = dn + n;                           // result at s
    const int b = blockIdx.x, q = threadIdx.x & (S - 1), per_pass = blockDim.x / S;
    if (n <= per_pass) {
        const int j = threadIdx.x / S;
        const bool loads = j < n && q == 0;
        float a_x = 0.0f, a_out = 0.0f, b_x = 0.0f, b_out = 0.0f;  // frames s (a) and s-1 (b)
        if (loads && T > 0) {
            a_x = st[((long long)T * B + b) * n + j];
            a_out = outside[((long long)(T - 1) * B + b) * n + j];
        }
        for (int s = T - 1; s >= 0; s -= 2) {
            recurrent_backward_frame(Ws, ldw, st, outside, out, T, B, n, S, b, s, j, q, dn, dc, a_x, a_out,
                                     loads && s > 0, b_x, b_out, rtrbm);
            __syncthreads();
            float* t = dn; dn = dc; dc = t;
            if (s > 0) {
                recurrent_backward_frame(Ws, ldw, st, outside, out, T, B, n, S, b, s - 1, j, q, dn, dc, b_x, b_out,
                                         loads && s > 1, a_x, a_out, rtrbm);
                __syncthreads();
                t = dn; dn = dc; dc = t;
            }
        }
        return;
    }
    for (int s = T - 1; s >= 0; --s) {
        long long row = ((long long)s * B + b) * n;
        for (int j0 = 0; j0 < n; j0 += per_pass) {
            const int j = j0 + threadIdx.x / S;
            // the frame's inputs, loaded before the dot product (see recurrent_forward_v2)
            float x = 0.0f, in_out = 0.0f, unused0 = 0.0f, unused1 = 0.0f;
            if (j < n && q == 0) {
                x = st[((long long)(s + 1) * B + b) * n + j];
                in_out = outside[row + j];
            }
            recurrent_backward_frame(Ws, ldw, st, outside, out, T, B, n, S, b, s, j, q, dn, dc, x, in_out, false,
                                     unused0, unused1, rtrbm);
        }
        __syncthreads();
        float* t = dn; dn = dc; dc = t;
    }
}

extern "C" __global__ void __launch_bounds__(1024)
rtrbm_backward_v2(const float* __restrict__ WR, const float* __restrict__ r, const float* __restrict__ dbh,
                  float* __restrict__ g, int T, int B, int H, int w_shared, int ldw, int S, long long wr_ps,
                  long long r_ps, long long dbh_ps, long long g_ps) {
    const long long model = blockIdx.y;
    recurrent_backward_v2(WR + model * wr_ps, r + model * r_ps, dbh + model * dbh_ps, g + model * g_ps, T, B, H,
                          w_shared, ldw, S, true);
}

extern "C" __global__ void __launch_bounds__(1024)
rnn_backward_v2(const float* __restrict__ Wuu, const float* __restrict__ u, const float* __restrict__ e,
                float* __restrict__ dz, int T, int B, int U, int w_shared, int ldw, int S, long long w_ps,
                long long u_ps, long long e_ps, long long dz_ps) {
    const long long model = blockIdx.y;
    recurrent_backward_v2(Wuu + model * w_ps, u + model * u_ps, e + model * e_ps, dz + model * dz_ps, T, B, U,
                          w_shared, ldw, S, false);
}

extern "C" __global__ void __launch_bounds__(1024)
rnn_forward_v2(const float* __restrict__ Wuu, const float* __restrict__ pre, float* __restrict__ u, int T, int B, int U,
               int w_shared, int ldw, int S, long long w_ps, long long pre_ps, long long u_ps) {
    const long long model = blockIdx.y;
    recurrent_forward_v2(Wuu + model * w_ps, pre + model * pre_ps, (const float*)0, u + model * u_ps, (float*)0, T, B,
                         U, w_shared, ldw, S);
}
