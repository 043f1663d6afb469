// lstm.cu: the LSTM of LSTM-RTRBM (SPEC 2) over a chunk, one thread block per sequence b
// (blockIdx.x) of model p (blockIdx.y) walking all T frames in ONE launch, one thread
// per unit j (strided). Gate order (i, f, o, g); optional peepholes p = (p_i, p_f, p_o) [3U]
// (i and f see c_{t-1}, o sees c_t). Wl [U,4U] is staged in shared memory (odd stride ldw) when
// it fits, else read from global memory. States l, c [T+1,B,U] (row 0 initial), pre/gates/dpre
// [T,B,4U], dl [T+1,B,U], dstate0 [2,B,U].
//
// lstm_forward:  z = pre[s] + l[s] Wl (+ peepholes); i, f, o = sigma, g = tanh;
//                c[s+1] = f c[s] + i g; l[s+1] = o tanh(c[s+1]); gates[s] = (i, f, o, g).
//                Reference: Cpu::lstm_forward (src/backend/cpu.rs).
// lstm_backward: BPTT through the cell, exactly the expressions of Cpu::lstm_backward; the
//                recurrent gradient d l[s] = dpre[s] Wl^T goes through shared memory. Peephole
//                gradients are summed over s per sequence into dpeep_part [B,3U] and then added
//                over b into dpeep by lstm_dpeep_reduce (deterministic order).
//
// lstm_forward_v2, lstm_backward_v2 (the default; RTRBM_KERNELS=v1 selects the kernels above):
// the same arithmetic with each recurrent dot product split over S lanes (`S` argument, a power
// of two <= 32, blockDim.x a multiple of 32; see group_sum in common.cuh): the forward's four
// gate sums over U terms and the backward's d l = dz Wl^T over 4U terms take ~U/S and ~4U/S
// steps per frame instead of U and 4U. Sums round differently from the CPU's (within the
// tests' tolerances), identically for a model alone or packed. Each frame's inputs from global
// memory (the forward's pre, the backward cell's gates, states and outside gradient) are loaded
// before a dot product they do not depend on, so that their latency overlaps it (same
// arithmetic, same bits); the backward (both versions) loads frame s-1's during frame s, and
// the v2 forward frame s+1's during frame s (frames in pairs, lstm_forward_frame).
//
// lstm_forward_rw_k{K}, lstm_backward_rw_k44 (RTRBM_KERNELS=rec-regs, opt-in): the v2 kernels
// with each lane's terms of Wl in registers instead of shared memory (below; the same bits).
//
// Packed models (Backend::models() = P; reference src/backend/packed.rs): grid = (B, P) (the
// reduce: (blocks, P)); the trailing `*_ps` arguments are the slab strides (elements) of the
// buffer arguments, in order, and each pointer moves by p * stride at the top of the kernel
// (p = 0: the lone kernel). dpeep_part holds [P][B,3U].

// The cell of frame s, forward (lstm_forward, lstm_forward_v2), for unit j: from the gate
// pre-activations z (b + v Wx + l Wl, without peepholes) and c[s], writes the gates (i, f, o, g),
// c[s+1] and l[s+1] (global) and their shared copies cn, ln. Exactly the expressions of
// Cpu::lstm_forward.
__device__ __forceinline__ void lstm_cell_forward(int j, int U, float zi, float zf, float zo, float zg, float c_prev,
                                                  const float* __restrict__ peep, int has_peep, float* __restrict__ c,
                                                  float* __restrict__ l, float* __restrict__ gates, long long next,
                                                  long long grow, float* ln, float* cn) {
    if (has_peep) {
        zi += peep[j] * c_prev;
        zf += peep[U + j] * c_prev;
    }
    float gi = sigmoidf_(zi), gf = sigmoidf_(zf), gg = tanhf(zg);
    float ct = gf * c_prev + gi * gg;
    if (has_peep) zo += peep[2 * U + j] * ct;
    float go = sigmoidf_(zo);
    float lt = go * tanhf(ct);
    c[next + j] = ct;
    l[next + j] = lt;
    gates[grow + j] = gi;
    gates[grow + U + j] = gf;
    gates[grow + 2 * U + j] = go;
    gates[grow + 3 * U + j] = gg;
    ln[j] = lt;
    cn[j] = ct;
}

// What the backward cell of frame s reads from global memory for unit j (none of it depends on
// the recurrence, so it can be loaded ahead): the gates of s, c[s], c[s+1] and the gradient
// arriving at l[s+1] from outside.
struct LstmCellIn {
    float gi, gf, go, gg, c_prev, ct, dl;
};

// (L2: dl is read through L2, as lstm_rtrbm_backward's LSTM blocks do, where another block
// writes it during the launch.)
template <bool L2 = false>
__device__ __forceinline__ LstmCellIn lstm_cell_backward_in(int j, int U, const float* __restrict__ gates,
                                                           const float* __restrict__ c, const float* __restrict__ dl,
                                                           int s, int B, int b) {
    const long long prev = ((long long)s * B + b) * U, next = ((long long)(s + 1) * B + b) * U;
    const long long grow = ((long long)s * B + b) * 4 * U;
    LstmCellIn in;
    in.gi = gates[grow + j];
    in.gf = gates[grow + U + j];
    in.go = gates[grow + 2 * U + j];
    in.gg = gates[grow + 3 * U + j];
    in.c_prev = c[prev + j];
    in.ct = c[next + j];
    in.dl = L2 ? __ldcg(dl + next + j) : dl[next + j];
    return in;
}

// The cell of frame s, backward (lstm_backward, lstm_backward_v2), for unit j: from the gradient
// arriving at l[s+1] (dl from outside plus dl_rec through the gates of s+1) and dc_next (into
// c[s+1]), writes dpre[s] and dz (shared, [4U]), moves dc_next to c[s] and adds the peephole
// partials. Exactly the expressions of Cpu::lstm_backward.
__device__ __forceinline__ void lstm_cell_backward(int j, int U, const LstmCellIn& in, const float* __restrict__ peep,
                                                   int has_peep, float* __restrict__ part, float* __restrict__ dpre,
                                                   const float* dl_rec, float* dc_next, float* dz, long long grow) {
    const float gi = in.gi, gf = in.gf, go = in.go, gg = in.gg, c_prev = in.c_prev, ct = in.ct;
    float tc = tanhf(ct);
    // l_t = o tanh(c_t)
    float dlt = in.dl + dl_rec[j];
    float dzo = dlt * tc * go * (1.0f - go);
    // c_t feeds l_t, c_{t+1} and (peephole) o_t
    float dcv = dc_next[j] + dlt * go * (1.0f - tc * tc);
    if (has_peep) dcv += dzo * peep[2 * U + j];
    // c_t = f c_{t-1} + i g
    float dzi = dcv * gg * gi * (1.0f - gi);
    float dzf = dcv * c_prev * gf * (1.0f - gf);
    float dzg = dcv * gi * (1.0f - gg * gg);
    float dc_prev = dcv * gf;
    if (has_peep) dc_prev += dzi * peep[j] + dzf * peep[U + j];
    if (part) {
        part[j] += dzi * c_prev;
        part[U + j] += dzf * c_prev;
        part[2 * U + j] += dzo * ct;
    }
    dc_next[j] = dc_prev;
    dpre[grow + j] = dzi;
    dpre[grow + U + j] = dzf;
    dpre[grow + 2 * U + j] = dzo;
    dpre[grow + 3 * U + j] = dzg;
    dz[j] = dzi;
    dz[U + j] = dzf;
    dz[2 * U + j] = dzo;
    dz[3 * U + j] = dzg;
}

extern "C" __global__ void lstm_forward(const float* __restrict__ Wl, const float* __restrict__ peep, int has_peep,
                                        const float* __restrict__ pre, float* __restrict__ l, float* __restrict__ c,
                                        float* __restrict__ gates, int T, int B, int U, int w_shared, int ldw,
                                        long long wl_ps, long long peep_ps, long long pre_ps, long long l_ps,
                                        long long c_ps, long long gates_ps) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    Wl += model * wl_ps;
    peep += model * peep_ps;
    pre += model * pre_ps;
    l += model * l_ps;
    c += model * c_ps;
    gates += model * gates_ps;
    const int G = 4 * U;
    const float* Ws = stage_w(Wl, U, G, w_shared, ldw, smem);
    float* lc = smem + (w_shared ? U * ldw : 0);  // l[s]
    float* cc = lc + U;                           // c[s]
    float* ln = cc + U;                           // l[s+1]
    float* cn = ln + U;                           // c[s+1]
    int b = blockIdx.x;
    for (int j = threadIdx.x; j < U; j += blockDim.x) {
        lc[j] = l[(long long)b * U + j];
        cc[j] = c[(long long)b * U + j];
    }
    __syncthreads();
    for (int s = 0; s < T; ++s) {
        long long next = ((long long)(s + 1) * B + b) * U;
        long long grow = ((long long)s * B + b) * G;
        for (int j = threadIdx.x; j < U; j += blockDim.x) {
            // z = pre + l_{t-1} Wl, in the CPU's order (i ascending, zero l skipped)
            float zi = pre[grow + j], zf = pre[grow + U + j], zo = pre[grow + 2 * U + j], zg = pre[grow + 3 * U + j];
            for (int i = 0; i < U; ++i) {
                float x = lc[i];
                if (x != 0.0f) {
                    const float* wr = Ws + (long long)i * ldw;
                    zi += x * wr[j];
                    zf += x * wr[U + j];
                    zo += x * wr[2 * U + j];
                    zg += x * wr[3 * U + j];
                }
            }
            lstm_cell_forward(j, U, zi, zf, zo, zg, cc[j], peep, has_peep, c, l, gates, next, grow, ln, cn);
        }
        __syncthreads();
        float* t = lc; lc = ln; ln = t;
        t = cc; cc = cn; cn = t;
    }
}

// Frames done by a producer block of lstm_rtrbm_forward / lstm_rtrbm_backward, for its consumer
// block. The frame's writes (by every thread of the block) precede the barrier before this call;
// one thread then fences and stores the count (the pattern of a grid-wide barrier): whoever sees
// the count after its own fence sees the frame's outputs.
__device__ __forceinline__ void publish_frames(int* flag, int frames) {
    __threadfence();
    *(volatile int*)flag = frames;
}

// Waits until the producer has published at least `need` frames, then fences (before the
// barrier that lets the block read them). In the emulator blocks run one after another, the
// producer first, so a count short of `need` there is a bug: it traps instead of spinning. There
// the consumer also keeps the count it has waited for (emu_waited, reset by the waiting thread
// with emu_wait_reset) and every load of a produced row checks it (emu_check_waited): a load
// that no earlier wait covers, which on a GPU would race with the producer, traps.
#ifdef RTRBM_CUDA_EMU
__shared__ int emu_waited;
__device__ __forceinline__ void emu_wait_reset() { emu_waited = 0; }
__device__ __forceinline__ void emu_check_waited(int need) {
    if (need > emu_waited) __trap();
}
#else
__device__ __forceinline__ void emu_wait_reset() {}
__device__ __forceinline__ void emu_check_waited(int) {}
#endif

__device__ __forceinline__ void wait_frames(const int* flag, int need) {
    const volatile int* f = flag;
#ifdef RTRBM_CUDA_EMU
    if (*f < need) __trap();
    if (need > emu_waited) emu_waited = need;
#endif
    while (*f < need) {
    }
    __threadfence();
}

// lstm_backward (S = 1: d l = dz Wl^T summed in the CPU's order, as before the split-K kernels),
// lstm_backward_v2 (S lanes per unit) and, with K > 0, lstm_backward_rw_k{K}: lane q of unit j
// holds its K terms of row j of Wl (k = q + S m < 4U) in registers for the whole chunk instead of
// reading them from shared memory in every frame (the host passes w_shared = 0 and launches it
// only with one pass, K >= 4U / S and at most 768 threads); the same terms in the same order as
// v2, so the same bits.
//
// With WAIT (lstm_rtrbm_backward's LSTM blocks; one pass only), `dl` rows 0..T-1 are written by
// another block during the launch: the block has one warp more, whose first thread waits
// (wait_frames) for `flags[p B + b]` to count the rows a load needs (rows s..T-1: T - s) one
// frame ahead, during the dot product of the frame before the barrier after which they are
// loaded (through L2), so that its round trip is off the frames' path.
template <int K, bool WAIT = false>
__device__ __forceinline__ void lstm_backward_body(const float* __restrict__ Wl, const float* __restrict__ peep,
                                                   int has_peep, const float* __restrict__ c,
                                                   const float* __restrict__ gates, const float* __restrict__ dl,
                                                   float* __restrict__ dpre, float* __restrict__ dstate0,
                                                   float* __restrict__ dpeep_part, int T, int B, int U, int w_shared,
                                                   int ldw, int S, long long wl_ps, long long peep_ps, long long c_ps,
                                                   long long gates_ps, long long dl_ps, long long dpre_ps,
                                                   long long dstate0_ps, long long part_ps,
                                                   const int* flags = nullptr) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    Wl += model * wl_ps;
    peep += model * peep_ps;
    c += model * c_ps;
    gates += model * gates_ps;
    dl += model * dl_ps;
    dpre += model * dpre_ps;
    dstate0 += model * dstate0_ps;
    if (dpeep_part) dpeep_part += model * part_ps;
    const int G = 4 * U;
    const float* Ws = stage_w(Wl, U, G, w_shared, ldw, smem);
    float* dl_rec = smem + (w_shared ? U * ldw : 0);  // gradient into l[s] through the gates of s
    float* dc_next = dl_rec + U;                      // gradient into c[s] from frame s
    float* dz = dc_next + U;                          // dpre of the current frame [4U]
    // (the LSTM blocks of lstm_rtrbm_backward follow the B producer blocks)
    const int b = blockIdx.x - (WAIT ? B : 0), q = threadIdx.x & (S - 1), per_pass = blockDim.x / S;
    float* part = dpeep_part ? dpeep_part + (long long)b * 3 * U : (float*)0;
    float w[K > 0 ? K : 1];
    if (K > 0) {
        const int j = threadIdx.x / S;
#pragma unroll
        for (int m = 0; m < K; ++m) {
            const int k = q + S * m;
            w[m] = j < U && k < G ? Wl[(long long)j * G + k] : 0.0f;
        }
    }
    for (int j = threadIdx.x; j < U; j += blockDim.x) {
        dl_rec[j] = 0.0f;
        dc_next[j] = 0.0f;
        if (part) {
            part[j] = 0.0f;
            part[U + j] = 0.0f;
            part[2 * U + j] = 0.0f;
        }
    }
    __syncthreads();
    // With at most one unit per thread, thread j owns unit j in every frame and loads the cell
    // inputs of frame s-1 while the dot product of frame s runs: their latency overlaps it
    // instead of opening the next frame's critical path.
    const bool own = U <= (int)blockDim.x;
    const int jo = threadIdx.x;
    LstmCellIn in{};
    // (row T of dl: written before the launch)
    if (WAIT && threadIdx.x == blockDim.x - 32) emu_wait_reset();
    if (own && jo < U && T > 0) in = lstm_cell_backward_in<WAIT>(jo, U, gates, c, dl, T - 1, B, b);
    for (int s = T - 1; s >= 0; --s) {
        long long grow = ((long long)s * B + b) * G;
        if (own) {
            if (jo < U) lstm_cell_backward(jo, U, in, peep, has_peep, part, dpre, dl_rec, dc_next, dz, grow);
        } else {
            for (int j = threadIdx.x; j < U; j += blockDim.x)
                lstm_cell_backward(j, U, lstm_cell_backward_in(j, U, gates, c, dl, s, B, b), peep, has_peep, part,
                                   dpre, dl_rec, dc_next, dz, grow);
        }
        // the first frame loads row T-1 of dl below
        if (WAIT && threadIdx.x == blockDim.x - 32 && s == T - 1 && s > 0) wait_frames(flags + blockIdx.y * B + b, 1);
        __syncthreads();
        if (own && jo < U && s > 0) {
            if (WAIT) emu_check_waited(T - s);  // row s: rows s..T-1 published
            in = lstm_cell_backward_in<WAIT>(jo, U, gates, c, dl, s - 1, B, b);
        }
        // frame s-1 loads row s-1 after its first barrier (row 0: dstate0 after the last frame):
        // waited for here, while this frame's dot product runs, off the frames' path
        if (WAIT && threadIdx.x == blockDim.x - 32 && s > 0) wait_frames(flags + blockIdx.y * B + b, T - s + 1);
        // d l_{t-1} (through the gates) = dz Wl^T: row j of Wl against dz, terms k = q + S m
        for (int j0 = 0; j0 < U; j0 += per_pass) {
            const int j = j0 + threadIdx.x / S;
            // wrow[k] * dz[k], as dz[k] * wrow[k] (the same product)
            float acc = 0.0f;
            if (K > 0) {
#pragma unroll
                for (int m = 0; m < (K > 0 ? K : 1); ++m) {
                    const int k = q + S * m;
                    if (j < U && k < G) acc += dz[k] * w[m];
                }
            } else if (j < U) {
                acc = lane_dot(dz, Ws + (long long)j * ldw, 1, q, G, S);
            }
            acc = group_sum(acc, S);
            if (j < U && q == 0) dl_rec[j] = acc;
        }
        __syncthreads();
    }
    if (WAIT && T == 1) {
        // row 0 of dl (T > 1: waited for in frame 1)
        if (threadIdx.x == blockDim.x - 32) wait_frames(flags + blockIdx.y * B + b, T);
        __syncthreads();
    }
    if (WAIT && threadIdx.x < U) emu_check_waited(T);  // row 0
    for (int j = threadIdx.x; j < U; j += blockDim.x) {
        dstate0[(long long)b * U + j] = (WAIT ? __ldcg(dl + (long long)b * U + j) : dl[(long long)b * U + j]) + dl_rec[j];
        dstate0[((long long)B + b) * U + j] = dc_next[j];
    }
}

extern "C" __global__ void lstm_backward(const float* __restrict__ Wl, const float* __restrict__ peep, int has_peep,
                                         const float* __restrict__ c, const float* __restrict__ gates,
                                         const float* __restrict__ dl, float* __restrict__ dpre,
                                         float* __restrict__ dstate0, float* __restrict__ dpeep_part, int T, int B,
                                         int U, int w_shared, int ldw, long long wl_ps, long long peep_ps,
                                         long long c_ps, long long gates_ps, long long dl_ps, long long dpre_ps,
                                         long long dstate0_ps, long long part_ps) {
    lstm_backward_body<0>(Wl, peep, has_peep, c, gates, dl, dpre, dstate0, dpeep_part, T, B, U, w_shared, ldw, 1,
                          wl_ps, peep_ps, c_ps, gates_ps, dl_ps, dpre_ps, dstate0_ps, part_ps);
}

// The four gate inputs pre[s] of unit j (a frame's loads, independent of the recurrence).
struct LstmPre {
    float i, f, o, g;
};

__device__ __forceinline__ LstmPre lstm_pre(const float* __restrict__ pre, long long grow, int U, int j) {
    return LstmPre{pre[grow + j], pre[grow + U + j], pre[grow + 2 * U + j], pre[grow + 3 * U + j]};
}

// One frame s of the LSTM forward for unit j (lane q of its group of S): l[s] Wl for the four
// gates (`lc`, shared; Wl from `Ws` when K = 0, from the lane's registers `w` otherwise), then the
// cell from the gate inputs `in` (in registers) and c[s] (`cc`) into l, c[s+1] (global and ln,
// cn) and the gates. When `ld` is set, frame s+1's gate inputs are first loaded into `ld_in`
// (Step 9 of docs/PERFORMANCE.md, as recurrent_forward_frame). Both ways add the terms k = q + S m
// in increasing order: the same bits.
template <int K>
__device__ __forceinline__ void lstm_forward_frame(const float* Ws, int ldw, const float (&w)[4][K > 0 ? K : 1],
                                                   const float* __restrict__ peep, int has_peep,
                                                   const float* __restrict__ pre, float* __restrict__ l,
                                                   float* __restrict__ c, float* __restrict__ gates, int B, int U,
                                                   int S, int b, int s, int j, int q, const float* lc, const float* cc,
                                                   float* ln, float* cn, LstmPre in, bool ld, LstmPre& ld_in) {
    const int G = 4 * U;
    const long long next = ((long long)(s + 1) * B + b) * U;
    const long long grow = ((long long)s * B + b) * G;
    if (ld) ld_in = lstm_pre(pre, grow + (long long)B * G, U, j);
    // l_{t-1} Wl for the four gates of unit j, terms k = q + S m
    float ai = 0.0f, af = 0.0f, ao = 0.0f, ag = 0.0f;
    if (j < U) {
        if (K > 0) {
#pragma unroll
            for (int m = 0; m < (K > 0 ? K : 1); ++m) {
                const int k = q + S * m;
                if (k < U) {
                    float x = lc[k];
                    ai += x * w[0][m];
                    af += x * w[1][m];
                    ao += x * w[2][m];
                    ag += x * w[3][m];
                }
            }
        } else {
            // unrolled by four with a stepping pointer, as lane_dot in common.cuh
            const float* wr = Ws + (long long)q * ldw + j;
            const long long step = (long long)S * ldw;
#pragma unroll 4
            for (int k = q; k < U; k += S, wr += step) {
                float x = lc[k];
                ai += x * wr[0];
                af += x * wr[U];
                ao += x * wr[2 * U];
                ag += x * wr[3 * U];
            }
        }
    }
    ai = group_sum(ai, S);
    af = group_sum(af, S);
    ao = group_sum(ao, S);
    ag = group_sum(ag, S);
    if (j < U && q == 0) {
        float zi = in.i + ai, zf = in.f + af, zo = in.o + ao, zg = in.g + ag;
        lstm_cell_forward(j, U, zi, zf, zo, zg, cc[j], peep, has_peep, c, l, gates, next, grow, ln, cn);
    }
}

// lstm_forward_v2 (K = 0) and lstm_forward_rw_k{K}. With one pass (U <= blockDim / S: every
// model of configs/), group j owns unit j in every frame and frames run in pairs, so that frame
// s+1's gate inputs, loaded at the top of frame s, are waited for only in frame s+1's cell (as
// recurrent_forward_v2); otherwise (K = 0 only) units go in passes and each frame loads its
// inputs before its dot products. Same arithmetic either way.
//
// lstm_forward_rw_k{K} (RTRBM_KERNELS=rec-regs, opt-in until measured on a GPU): the one-pass
// path with each lane's K terms of Wl for its unit's four gates (rows k = q + S m, m < K, of
// columns j, U + j, 2U + j, 3U + j) held in registers for the whole chunk, read once from global
// memory, instead of read from shared memory in every frame (at U = 88 a frame of v2 streams the
// 124 KB of Wl through shared memory: ~1,000 of its cycles). The host passes w_shared = 0 and
// launches it only with one pass, K >= ceil(U / S) and at most 768 threads (registers, ptxas
// sm_90: 68 at K = 8, 80 at K = 12, no spills).
//
// With PUB (lstm_rtrbm_forward's LSTM blocks; one pass only), the block has one warp more than
// the units need, and after each frame's barrier that warp's first thread publishes the frames
// done to `flags[p B + b]` (publish_frames).
template <int K, bool PUB = false>
__device__ __forceinline__ void lstm_forward_body(const float* __restrict__ Wl, const float* __restrict__ peep,
                                                  int has_peep, const float* __restrict__ pre,
                                                  float* __restrict__ l, float* __restrict__ c,
                                                  float* __restrict__ gates, int T, int B, int U, int w_shared,
                                                  int ldw, int S, long long wl_ps, long long peep_ps,
                                                  long long pre_ps, long long l_ps, long long c_ps,
                                                  long long gates_ps, int* flags = nullptr) {
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    Wl += model * wl_ps;
    peep += model * peep_ps;
    pre += model * pre_ps;
    l += model * l_ps;
    c += model * c_ps;
    gates += model * gates_ps;
    const int G = 4 * U;
    const float* Ws = stage_w(Wl, U, G, w_shared, ldw, smem);
    float* lc = smem + (w_shared ? U * ldw : 0);  // l[s]
    float* cc = lc + U;                           // c[s]
    float* ln = cc + U;                           // l[s+1]
    float* cn = ln + U;                           // c[s+1]
    const int b = blockIdx.x, q = threadIdx.x & (S - 1), per_pass = blockDim.x / S;
    float w[4][K > 0 ? K : 1];
    if (K > 0) {
        const int j = threadIdx.x / S;
#pragma unroll
        for (int m = 0; m < (K > 0 ? K : 1); ++m) {
            const int k = q + S * m;
            const bool ok = j < U && k < U;
#pragma unroll
            for (int g = 0; g < 4; ++g) w[g][m] = ok ? Wl[(long long)k * G + g * U + j] : 0.0f;
        }
    }
    for (int j = threadIdx.x; j < U; j += blockDim.x) {
        lc[j] = l[(long long)b * U + j];
        cc[j] = c[(long long)b * U + j];
    }
    if (K > 0 || U <= per_pass) {
        const int j = threadIdx.x / S;
        const bool loads = j < U && q == 0;
        LstmPre a{0.0f, 0.0f, 0.0f, 0.0f}, bb{0.0f, 0.0f, 0.0f, 0.0f};  // frames s (a) and s+1 (bb)
        if (loads && T > 0) a = lstm_pre(pre, (long long)b * G, U, j);
        __syncthreads();
        for (int s = 0; s < T; s += 2) {
            lstm_forward_frame<K>(Ws, ldw, w, peep, has_peep, pre, l, c, gates, B, U, S, b, s, j, q, lc, cc, ln, cn,
                                  a, loads && s + 1 < T, bb);
            __syncthreads();
            if (PUB && threadIdx.x == blockDim.x - 32) publish_frames(flags + blockIdx.y * B + b, s + 1);
            float* t = lc; lc = ln; ln = t;
            t = cc; cc = cn; cn = t;
            if (s + 1 < T) {
                lstm_forward_frame<K>(Ws, ldw, w, peep, has_peep, pre, l, c, gates, B, U, S, b, s + 1, j, q, lc, cc,
                                      ln, cn, bb, loads && s + 2 < T, a);
                __syncthreads();
                if (PUB && threadIdx.x == blockDim.x - 32) publish_frames(flags + blockIdx.y * B + b, s + 2);
                t = lc; lc = ln; ln = t;
                t = cc; cc = cn; cn = t;
            }
        }
        return;
    }
    __syncthreads();
    for (int s = 0; s < T; ++s) {
        long long grow = ((long long)s * B + b) * G;
        for (int j0 = 0; j0 < U; j0 += per_pass) {
            const int j = j0 + threadIdx.x / S;
            // the gates' inputs do not depend on the recurrence: loaded before the dot products,
            // their latency overlaps them instead of following them on the frame's critical path
            LstmPre in{0.0f, 0.0f, 0.0f, 0.0f}, unused{0.0f, 0.0f, 0.0f, 0.0f};
            if (j < U && q == 0) in = lstm_pre(pre, grow, U, j);
            lstm_forward_frame<K>(Ws, ldw, w, peep, has_peep, pre, l, c, gates, B, U, S, b, s, j, q, lc, cc, ln, cn,
                                  in, false, unused);
        }
        __syncthreads();
        float* t = lc; lc = ln; ln = t;
        t = cc; cc = cn; cn = t;
    }
}

extern "C" __global__ void __launch_bounds__(1024)
lstm_forward_v2(const float* __restrict__ Wl, const float* __restrict__ peep, int has_peep,
                const float* __restrict__ pre, float* __restrict__ l, float* __restrict__ c, float* __restrict__ gates,
                int T, int B, int U, int w_shared, int ldw, int S, long long wl_ps, long long peep_ps, long long pre_ps,
                long long l_ps, long long c_ps, long long gates_ps) {
    lstm_forward_body<0>(Wl, peep, has_peep, pre, l, c, gates, T, B, U, w_shared, ldw, S, wl_ps, peep_ps, pre_ps, l_ps,
                         c_ps, gates_ps);
}

#define LSTM_FORWARD_RW(K)                                                                                        \
    extern "C" __global__ void __launch_bounds__(768) lstm_forward_rw_k##K(                                      \
        const float* __restrict__ Wl, const float* __restrict__ peep, int has_peep, const float* __restrict__ pre, \
        float* __restrict__ l, float* __restrict__ c, float* __restrict__ gates, int T, int B, int U, int w_shared, \
        int ldw, int S, long long wl_ps, long long peep_ps, long long pre_ps, long long l_ps, long long c_ps,      \
        long long gates_ps) {                                                                                     \
        lstm_forward_body<K>(Wl, peep, has_peep, pre, l, c, gates, T, B, U, 0, ldw, S, wl_ps, peep_ps, pre_ps,    \
                             l_ps, c_ps, gates_ps);                                                               \
    }
LSTM_FORWARD_RW(8)
LSTM_FORWARD_RW(12)

// lstm_rtrbm_forward_k{K} (RTRBM_KERNELS=fused-fwd, opt-in until measured on a GPU): the
// forward recurrences of LSTM-RTRBM in ONE launch, the RTRBM's running beside the LSTM's instead
// of after it (and after the product pre += l WL between them). grid = (2B, P); the block is the
// one-pass LSTM block (U S lanes, rounded to warps: W threads) plus one warp, at most 736 threads
// (88 registers each: U = H = 88 is 704 + 32).
//  - Blocks x < B: the LSTM of sequence x, exactly lstm_forward_v2 (K = 0) or
//    lstm_forward_rw_k{K} (the same bits), publishing each frame (publish_frames).
//  - Blocks x >= B: the RTRBM of sequence b = x - B, with `pre` = bh broadcast over the rows:
//        bh_t[s] = (pre[s] + l[s] WL) + r[s] WR;  r[s+1] = sigma(vw[s] + bh_t[s]),
//    what the gemm pre += l WL and rtrbm_forward compute (the composition of
//    Backend::lstm_rtrbm_forward), each sum split over SR lanes per output (lane q of output j:
//    terms k = q + SR m of column j of WL and of WR, both staged in shared memory with row
//    stride ldr) and added by group_sum. Row s of l comes from the LSTM block through L2
//    (__ldcg): thread k < U loads l[s][k] in frame s-2 and stores it to shared memory in frame
//    s-1, so neither the load nor the flag is waited for on the frame's path; the block's extra
//    warp waits (wait_frames) in frame s-3 for the LSTM to have published frame s-1.
// A consumer waits only on the producer of its own model, a block of lower index (x - B), which
// the GPU dispatches first (the same assumption as a grid-wide barrier or a decoupled look-back
// scan), so it cannot wait on a block that is not running. flags [P, B] must be zero at launch
// (the host clears them before each launch).

// Frame s of an RTRBM block of lstm_rtrbm_forward: ls holds l[s] (shared), lnext receives l[s+1]
// (stored from `held`, which then loads l[s+2]).
__device__ __forceinline__ void rtrbm_overlap_frame(const float* __restrict__ pre, const float* __restrict__ vw,
                                                    const float* __restrict__ l, float* __restrict__ r,
                                                    float* __restrict__ bh_t, const int* flag, int T, int B, int H,
                                                    int U, int SR, int W, int b, int s, const float* Ws, int ldr,
                                                    const float* ls, float* lnext, float& held, const float* rc,
                                                    float* rn) {
    const int tid = threadIdx.x, j = tid / SR, q = tid & (SR - 1);
    const long long row = ((long long)s * B + b) * H;
    if (tid < U) {
        if (s + 1 < T) lnext[tid] = held;
        if (s + 2 < T) {
            emu_check_waited(s + 2);  // row s+2: the LSTM's frames 0..s+1
            held = __ldcg(l + ((long long)(s + 2) * B + b) * U + tid);
        }
    }
    if (tid < W) {
        float p = 0.0f, v = 0.0f;
        if (j < H && q == 0) {
            p = pre[row + j];
            v = vw[row + j];
        }
        float al = 0.0f, ar = 0.0f;
        if (j < H) {
            const float* wl = Ws + j;
            const float* wr = Ws + (long long)U * ldr + j;
            for (int k = q; k < U; k += SR) al += ls[k] * wl[k * ldr];
            for (int k = q; k < H; k += SR) ar += rc[k] * wr[k * ldr];
        }
        al = group_sum(al, SR);
        ar = group_sum(ar, SR);
        if (j < H && q == 0) {
            const float bh = (p + al) + ar;
            bh_t[row + j] = bh;
            const float rj = sigmoidf_(v + bh);
            r[((long long)(s + 1) * B + b) * H + j] = rj;
            rn[j] = rj;
        }
    }
    // frame s+1 loads row s+3: the LSTM must have done frames 0..s+2
    if (tid == W && s + 3 < T) wait_frames(flag, s + 3);
}

template <int K>
__device__ __forceinline__ void lstm_rtrbm_forward_body(
    const float* __restrict__ Wl, const float* __restrict__ peep, int has_peep, const float* __restrict__ preg,
    float* __restrict__ l, float* __restrict__ c, float* __restrict__ gates, const float* __restrict__ WL,
    const float* __restrict__ WR, const float* __restrict__ pre, const float* __restrict__ vw, float* __restrict__ r,
    float* __restrict__ bh_t, int* __restrict__ flags, int T, int B, int U, int H, int w_shared, int ldw, int S,
    int SR, int ldr, long long wl_ps, long long peep_ps, long long preg_ps, long long l_ps, long long c_ps,
    long long gates_ps, long long wlr_ps, long long wr_ps, long long pre_ps, long long vw_ps, long long r_ps,
    long long bh_ps) {
    if ((int)blockIdx.x < B) {
        lstm_forward_body<K, true>(Wl, peep, has_peep, preg, l, c, gates, T, B, U, w_shared, ldw, S, wl_ps, peep_ps,
                                   preg_ps, l_ps, c_ps, gates_ps, flags);
        return;
    }
    extern __shared__ float smem[];
    const long long model = blockIdx.y;
    WL += model * wlr_ps;
    WR += model * wr_ps;
    pre += model * pre_ps;
    vw += model * vw_ps;
    r += model * r_ps;
    bh_t += model * bh_ps;
    l += model * l_ps;
    const int b = blockIdx.x - B, W = blockDim.x - 32, tid = threadIdx.x;
    const int* flag = flags + model * B + b;
    float* Ws = smem;                      // [WL; WR] [U + H, ldr]
    float* la = smem + (U + H) * ldr;      // l[s], s even
    float* lb = la + U;                    // l[s], s odd
    float* rc = lb + U;                    // r[s]
    float* rn = rc + H;                    // r[s+1]
    stage_w_smem(WL, U, H, ldr, Ws);
    stage_w_smem(WR, H, H, ldr, Ws + U * ldr);
    for (int i = tid; i < H; i += blockDim.x) rc[i] = r[(long long)b * H + i];
    // row 0 of l: the initial state, written before the launch; row 1 (the LSTM's frame 0) is
    // stored by frame 0 and row 2 loaded there, so the LSTM must have done frames 0 and 1
    float held = 0.0f;
    if (tid == W) emu_wait_reset();
    if (tid == W && T > 1) wait_frames(flag, T > 2 ? 2 : 1);
    __syncthreads();
    if (tid < U) {
        la[tid] = __ldcg(l + (long long)b * U + tid);
        if (T > 1) {
            emu_check_waited(1);
            held = __ldcg(l + ((long long)B + b) * U + tid);
        }
    }
    __syncthreads();
    for (int s = 0; s < T; s += 2) {
        rtrbm_overlap_frame(pre, vw, l, r, bh_t, flag, T, B, H, U, SR, W, b, s, Ws, ldr, la, lb, held, rc, rn);
        __syncthreads();
        float* t = rc; rc = rn; rn = t;
        if (s + 1 < T) {
            rtrbm_overlap_frame(pre, vw, l, r, bh_t, flag, T, B, H, U, SR, W, b, s + 1, Ws, ldr, lb, la, held, rc,
                                rn);
            __syncthreads();
            t = rc; rc = rn; rn = t;
        }
    }
}

#define LSTM_RTRBM_FORWARD(K)                                                                                      \
    extern "C" __global__ void __maxnreg__(88) lstm_rtrbm_forward_k##K(                                          \
        const float* __restrict__ Wl, const float* __restrict__ peep, int has_peep, const float* __restrict__ preg, \
        float* __restrict__ l, float* __restrict__ c, float* __restrict__ gates, const float* __restrict__ WL,     \
        const float* __restrict__ WR, const float* __restrict__ pre, const float* __restrict__ vw,                 \
        float* __restrict__ r, float* __restrict__ bh_t, int* __restrict__ flags, int T, int B, int U, int H,      \
        int w_shared, int ldw, int S, int SR, int ldr, long long wl_ps, long long peep_ps, long long preg_ps,      \
        long long l_ps, long long c_ps, long long gates_ps, long long wlr_ps, long long wr_ps, long long pre_ps,   \
        long long vw_ps, long long r_ps, long long bh_ps) {                                                        \
        lstm_rtrbm_forward_body<K>(Wl, peep, has_peep, preg, l, c, gates, WL, WR, pre, vw, r, bh_t, flags, T, B, U, \
                                   H, w_shared, ldw, S, SR, ldr, wl_ps, peep_ps, preg_ps, l_ps, c_ps, gates_ps,     \
                                   wlr_ps, wr_ps, pre_ps, vw_ps, r_ps, bh_ps);                                     \
    }
LSTM_RTRBM_FORWARD(0)
LSTM_RTRBM_FORWARD(8)
LSTM_RTRBM_FORWARD(12)

// lstm_rtrbm_backward_k{K} (RTRBM_KERNELS=fused-bwd, opt-in until measured on a GPU): the
// backward recurrences of LSTM-RTRBM in ONE launch, the LSTM's running behind the RTRBM's
// instead of after it (and after the product du = g WL^T between them). grid = (2B, P); the
// block is the one-pass LSTM backward block (W threads) plus one warp, at most 736 threads.
//  - Blocks x < B: for sequence x, from the last frame down, the RTRBM's
//        g[s] = dbh[s] + (WR g[s+1]) r[s+1] (1 - r[s+1])   (g[T] = 0: no term at s = T-1)
//    and, from the same g[s+1], the gradient at l[s+1] from the RTRBM, du[s+1] = WL g[s+1] (i.e.
//    g[s+1] WL^T), one frame later than g (du[0] after the last frame); outputs j < H (g) and
//    H + i (du) with SR lanes each over [WR; WL] staged in shared memory (row stride ldr). After
//    each frame's barrier the extra warp publishes the rows of du done (T - s - 1, then T).
//    The same expressions as Cpu::rtrbm_backward and the gemm, summed in another order.
//  - Blocks x >= B: the LSTM backward of sequence x - B, exactly lstm_backward_v2 (K = 0) or
//    lstm_backward_rw_k44 (K = 44), reading du (row T: zero, written before the launch) through
//    L2 once the count covers the row (lstm_backward_body with WAIT).
// Consumers wait only on the producer of their own sequence, a block of lower index (see
// lstm_rtrbm_forward). flags [P, B] must be zero at launch.
__device__ __forceinline__ void rtrbm_lstm_backward_role(const float* __restrict__ WR, const float* __restrict__ r,
                                                         const float* __restrict__ dbh, float* __restrict__ g,
                                                         const float* __restrict__ WL, float* __restrict__ du,
                                                         int* flags, int T, int B, int H, int U, int SR, int ldr) {
    extern __shared__ float smem[];
    const int b = blockIdx.x, W = blockDim.x - 32, tid = threadIdx.x, o = tid / SR, q = tid & (SR - 1);
    int* flag = flags + blockIdx.y * B + b;
    float* Ws = smem;                    // [WR; WL] [H + U, ldr]
    float* gn = smem + (H + U) * ldr;    // g[s+1]
    float* gc = gn + H;                  // g[s]
    stage_w_smem(WR, H, H, ldr, Ws);
    stage_w_smem(WL, U, H, ldr, Ws + H * ldr);
    for (int i = tid; i < H; i += blockDim.x) gn[i] = 0.0f;
    __syncthreads();
    for (int s = T - 1; s >= -1; --s) {
        if (tid < W) {
            // g[s] (o < H) or du[s+1] (o = H + i), both from g[s+1] in gn
            const bool gout = o < H && s >= 0, duout = o >= H && o < H + U && s + 1 < T;
            float x = 0.0f, rj = 0.0f;
            if (gout && q == 0) {
                x = dbh[((long long)s * B + b) * H + o];
                if (s + 1 < T) rj = r[((long long)(s + 1) * B + b) * H + o];
            }
            float acc = 0.0f;
            if ((gout && s + 1 < T) || duout) {
                const float* wrow = Ws + (long long)o * ldr;
                for (int k = q; k < H; k += SR) acc += wrow[k] * gn[k];
            }
            acc = group_sum(acc, SR);
            if (q == 0 && gout) {
                if (s + 1 < T) x += acc * rj * (1.0f - rj);
                g[((long long)s * B + b) * H + o] = x;
                gc[o] = x;
            } else if (q == 0 && duout) {
                du[((long long)(s + 1) * B + b) * U + (o - H)] = acc;
            }
        }
        __syncthreads();
        if (tid == W && s + 1 < T) publish_frames(flag, T - s - 1);
        float* t = gn; gn = gc; gc = t;
    }
}

template <int K>
__device__ __forceinline__ void lstm_rtrbm_backward_body(
    const float* __restrict__ WR, const float* __restrict__ r, const float* __restrict__ dbh, float* __restrict__ g,
    const float* __restrict__ WL, float* __restrict__ du, const float* __restrict__ Wl, const float* __restrict__ peep,
    int has_peep, const float* __restrict__ c, const float* __restrict__ gates, float* __restrict__ dpre,
    float* __restrict__ dstate0, float* __restrict__ dpeep_part, int* __restrict__ flags, int T, int B, int H, int U,
    int SR, int ldr, int w_shared, int ldw, int S, long long wr_ps, long long r_ps, long long dbh_ps, long long g_ps,
    long long wlr_ps, long long du_ps, long long wl_ps, long long peep_ps, long long c_ps, long long gates_ps,
    long long dpre_ps, long long dstate0_ps, long long part_ps) {
    if ((int)blockIdx.x < B) {
        const long long model = blockIdx.y;
        rtrbm_lstm_backward_role(WR + model * wr_ps, r + model * r_ps, dbh + model * dbh_ps, g + model * g_ps,
                                 WL + model * wlr_ps, du + model * du_ps, flags, T, B, H, U, SR, ldr);
        return;
    }
    lstm_backward_body<K, true>(Wl, peep, has_peep, c, gates, du, dpre, dstate0, dpeep_part, T, B, U, w_shared, ldw, S,
                                wl_ps, peep_ps, c_ps, gates_ps, du_ps, dpre_ps, dstate0_ps, part_ps, flags);
}

#define LSTM_RTRBM_BACKWARD(K)                                                                                    \
    extern "C" __global__ void __maxnreg__(88) lstm_rtrbm_backward_k##K(                                         \
        const float* __restrict__ WR, const float* __restrict__ r, const float* __restrict__ dbh,                 \
        float* __restrict__ g, const float* __restrict__ WL, float* __restrict__ du, const float* __restrict__ Wl, \
        const float* __restrict__ peep, int has_peep, const float* __restrict__ c, const float* __restrict__ gates, \
        float* __restrict__ dpre, float* __restrict__ dstate0, float* __restrict__ dpeep_part,                    \
        int* __restrict__ flags, int T, int B, int H, int U, int SR, int ldr, int w_shared, int ldw, int S,        \
        long long wr_ps, long long r_ps, long long dbh_ps, long long g_ps, long long wlr_ps, long long du_ps,     \
        long long wl_ps, long long peep_ps, long long c_ps, long long gates_ps, long long dpre_ps,                \
        long long dstate0_ps, long long part_ps) {                                                                \
        lstm_rtrbm_backward_body<K>(WR, r, dbh, g, WL, du, Wl, peep, has_peep, c, gates, dpre, dstate0,          \
                                    dpeep_part, flags, T, B, H, U, SR, ldr, w_shared, ldw, S, wr_ps, r_ps, dbh_ps, \
                                    g_ps, wlr_ps, du_ps, wl_ps, peep_ps, c_ps, gates_ps, dpre_ps, dstate0_ps,    \
                                    part_ps);                                                                     \
    }
LSTM_RTRBM_BACKWARD(0)
LSTM_RTRBM_BACKWARD(44)

extern "C" __global__ void __launch_bounds__(1024)
lstm_backward_v2(const float* __restrict__ Wl, const float* __restrict__ peep, int has_peep,
                 const float* __restrict__ c, const float* __restrict__ gates, const float* __restrict__ dl,
                 float* __restrict__ dpre, float* __restrict__ dstate0, float* __restrict__ dpeep_part, int T, int B,
                 int U, int w_shared, int ldw, int S, long long wl_ps, long long peep_ps, long long c_ps,
                 long long gates_ps, long long dl_ps, long long dpre_ps, long long dstate0_ps, long long part_ps) {
    lstm_backward_body<0>(Wl, peep, has_peep, c, gates, dl, dpre, dstate0, dpeep_part, T, B, U, w_shared, ldw, S,
                          wl_ps, peep_ps, c_ps, gates_ps, dl_ps, dpre_ps, dstate0_ps, part_ps);
}

// The register-weights backward (RTRBM_KERNELS=rec-regs, opt-in until measured on a GPU):
// lstm_backward_v2's arguments, w_shared = 0 (see lstm_backward_body). At most 88 registers
// (ptxas sm_90: 88, with 20 bytes of spills outside the 44 weights), so at most 704 threads (U =
// 88, S = 8: exactly 704).
#define LSTM_BACKWARD_RW(K)                                                                                       \
    extern "C" __global__ void __maxnreg__(88) lstm_backward_rw_k##K(                                            \
        const float* __restrict__ Wl, const float* __restrict__ peep, int has_peep, const float* __restrict__ c, \
        const float* __restrict__ gates, const float* __restrict__ dl, float* __restrict__ dpre,                 \
        float* __restrict__ dstate0, float* __restrict__ dpeep_part, int T, int B, int U, int w_shared, int ldw, \
        int S, long long wl_ps, long long peep_ps, long long c_ps, long long gates_ps, long long dl_ps,          \
        long long dpre_ps, long long dstate0_ps, long long part_ps) {                                            \
        lstm_backward_body<K>(Wl, peep, has_peep, c, gates, dl, dpre, dstate0, dpeep_part, T, B, U, 0, ldw, S,    \
                              wl_ps, peep_ps, c_ps, gates_ps, dl_ps, dpre_ps, dstate0_ps, part_ps);              \
    }
LSTM_BACKWARD_RW(44)

// dpeep[q] += sum_b part[b, q], q < 3U; grid = (blocks, P).
extern "C" __global__ void lstm_dpeep_reduce(const float* __restrict__ part, int B, int U, float* __restrict__ dpeep,
                                             long long part_ps, long long dpeep_ps) {
    const long long model = blockIdx.y;
    part += model * part_ps;
    dpeep += model * dpeep_ps;
    int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= 3 * U) return;
    float acc = 0.0f;
    for (int b = 0; b < B; ++b) acc += part[(long long)b * 3 * U + q];
    dpeep[q] += acc;
}
