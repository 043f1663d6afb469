// linalg.cu: dense linear algebra and elementwise ops (SPEC letters in comments).
//
// gemm_f32:    C[m,n] (at c_off) = alpha op(A)[m,k] op(B)[k,n] + beta C, row-major, op = optional
//              transpose, A at a_off, B at b_off. 16x16 shared-memory tiles, one output per thread.
//              beta == 0 overwrites C without reading it (NaN in C does not propagate).
//              Reference: Cpu::gemm (src/backend/cpu.rs).
//              Summation order, the same in every gemm path: each output is the left fold, in
//              increasing z, of the slice sums s_z = fmaf chain from 0 over k in [z GEMM_KC,
//              (z+1) GEMM_KC). So gemm_f32, gemm_f32_rb with or without split-K, and any tiling
//              give the same bits, and zero rows appended to k (a packed model's padding past its
//              own chunk) change nothing: a model's products do not depend on its pack.
// gemm_f32_rb: the same product for large sizes: 64x64 block tiles, 256 threads, 4x4 outputs
//              per thread (rows ty + 16a, cols tx + 16b), BK = 16, next k-tile prefetched into
//              registers, tile loads along each operand's contiguous dimension. Split-K: slice
//              z covers k in [z kc, min(k, (z+1) kc)); with splits == 1 it writes C like
//              gemm_f32, otherwise the raw partial sums go to P[z][m][n] (C untouched).
// gemm_splitk_reduce: C = alpha (P[0] + P[1] + ... + P[splits-1]) + beta C, slices added in
//              order (deterministic); beta == 0 overwrites C.
// broadcast_rows: x[r, c] = bias[c], rows x cols.                    Reference: Cpu::broadcast_rows
// sum_rows:    out[c] = beta out[c] + alpha sum_r x[r, c] (rows summed in blocks of
//              SUM_ROWS_BLOCK, as the CPU does; beta == 0 overwrites).  Reference: Cpu::sum_rows
//              (sum_rows_blocks + sum_rows_finish: the same sums in two launches, for many rows)
// fill:        x[i] = value.                                          Reference: Cpu::fill
// scale:       x[i] *= alpha.                                         Reference: Cpu::scale
// sum_squares_partial: per-block partial sums of x^2 in f64 (the host adds the partials in
//              block order, so the result is deterministic).      Reference: Cpu::sum_squares
// clip_factors: per-model global-norm clipping factors from the partials of several tensors
//              (with scale_f32, Cuda::clip_grad_norm).  Reference: Backend::clip_grad_norm's default
// copy_f32:    dst[dst_off + i] = src[src_off + i], i < n, within each model's slab (packed copies;
//              a lone copy is one cudaMemcpy).                    Reference: Cpu::copy
// gather_frames: one training batch from the frame store resident on the device (store [S, V],
//              shared by every model; spans [P, B, 2] = (start, len) of each sequence):
//              v[s*B + b, :] = store[start + s, :] and mask = 1 for s < len, else 0;
//              wmask = mask * (float)(1.0 / max(1, sum_b len)) (SPEC 3's 1/frames).
//              v [T_max, B, V], mask and wmask [T_max, B] per model.  Reference: Cpu::gather_frames
//
// Packed models (Backend::models() = P, src/backend/packed.rs is the reference): every buffer is
// P slabs, model-major. The model index p is blockIdx.z for gemm_f32 (blockIdx.z / splits for
// gemm_f32_rb, whose z also carries the split-K slice) and blockIdx.y for every other kernel; the
// host multiplies that grid dimension by P. The trailing `*_ps` arguments are the slab strides
// (elements) of the buffer arguments, in order; each pointer is moved by p * stride at the top of
// the kernel and everything after is the lone kernel's arithmetic (p = 0 leaves the pointers as
// they are). fill_f32 fills the whole physical buffer (all slabs at once).

#define TILE 16
// GEMM_KC, the k-slice of the summation order (a multiple of TILE and RB_BK), is defined by the
// host when it compiles this file (GEMM_KC in src/backend/cuda.rs: 128).
#ifndef GEMM_KC
#error "GEMM_KC must be defined (-DGEMM_KC=..., as src/backend/cuda.rs compiles the kernels)"
#endif

// grid = (ceil(n/16), ceil(m/16), P); model p = blockIdx.z.
extern "C" __global__ void gemm_f32(int m, int n, int k, float alpha,
                                    const float* __restrict__ A, long long a_off, int a_trans,
                                    const float* __restrict__ B, long long b_off, int b_trans,
                                    float beta, float* __restrict__ C, long long c_off, long long a_ps,
                                    long long b_ps, long long c_ps) {
    __shared__ float As[TILE][TILE + 1];
    __shared__ float Bs[TILE][TILE + 1];
    const long long model = blockIdx.z;
    const float* a = A + model * a_ps + a_off;
    const float* b = B + model * b_ps + b_off;
    C += model * c_ps;
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * TILE + ty;  // i of C
    int col = blockIdx.x * TILE + tx;  // j of C
    float acc = 0.0f, total = 0.0f;  // acc: the current k-slice's sum; total: the fold of the earlier ones
    // this thread's element of the A tile (A(blockrow + ty, p0 + tx)) and of the B tile
    // (B(p0 + ty, blockcol + tx)) of the k-tile at p0, zero outside the matrices
    auto a_elem = [&](int p0) {
        int i = blockIdx.y * TILE + ty, p = p0 + tx;
        return i < m && p < k ? (a_trans ? a[(long long)p * m + i] : a[(long long)i * k + p]) : 0.0f;
    };
    auto b_elem = [&](int p0) {
        int p = p0 + ty, j = blockIdx.x * TILE + tx;
        return p < k && j < n ? (b_trans ? b[(long long)j * k + p] : b[(long long)p * n + j]) : 0.0f;
    };
    // the next k-tile's elements are loaded while this one's products run (registers), so a
    // tile's global-load latency overlaps the previous tile's arithmetic; same products, same order
    float a_next = a_elem(0), b_next = b_elem(0);
    for (int p0 = 0; p0 < k; p0 += TILE) {
        As[ty][tx] = a_next;
        Bs[ty][tx] = b_next;
        __syncthreads();
        if (p0 + TILE < k) {
            a_next = a_elem(p0 + TILE);
            b_next = b_elem(p0 + TILE);
        }
#pragma unroll
        for (int q = 0; q < TILE; ++q) acc = fmaf(As[ty][q], Bs[q][tx], acc);
        __syncthreads();
        if ((p0 + TILE) % GEMM_KC == 0 || p0 + TILE >= k) {  // a slice ends: fold it
            total = p0 < GEMM_KC ? acc : total + acc;
            acc = 0.0f;
        }
    }
    if (row < m && col < n) {
        float* c = C + c_off + (long long)row * n + col;
        *c = (beta == 0.0f) ? alpha * total : alpha * total + beta * *c;
    }
}

#define RB_BM 64
#define RB_BN 64
#define RB_BK 16

// A(i, p) for the 4 A-tile elements of thread `tid`: rows i0.., k-columns p0.. (zero outside
// m x [.., kend)). Not transposed: 16 consecutive p per row; transposed: 64 consecutive i.
__device__ __forceinline__ void rb_load_a(const float* __restrict__ a, int m, int k, int trans, int i0, int p0, int kend,
                                          int tid, float r[4]) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        int i = trans ? i0 + (tid & 63) : i0 + (tid >> 4) + 16 * q;
        int p = trans ? p0 + (tid >> 6) + 4 * q : p0 + (tid & 15);
        float v = 0.0f;
        if (i < m && p < kend) v = trans ? a[(long long)p * m + i] : a[(long long)i * k + p];
        r[q] = v;
    }
}

__device__ __forceinline__ void rb_store_a(float (*As)[RB_BM + 1], int trans, int tid, const float r[4]) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        if (trans) As[(tid >> 6) + 4 * q][tid & 63] = r[q];
        else As[tid & 15][(tid >> 4) + 16 * q] = r[q];
    }
}

// B(p, j) for the 4 B-tile elements of thread `tid`. Not transposed: 64 consecutive j per
// k-row; transposed: 16 consecutive p per column.
__device__ __forceinline__ void rb_load_b(const float* __restrict__ b, int n, int k, int trans, int j0, int p0, int kend,
                                          int tid, float r[4]) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        int j = trans ? j0 + (tid >> 4) + 16 * q : j0 + (tid & 63);
        int p = trans ? p0 + (tid & 15) : p0 + (tid >> 6) + 4 * q;
        float v = 0.0f;
        if (j < n && p < kend) v = trans ? b[(long long)j * k + p] : b[(long long)p * n + j];
        r[q] = v;
    }
}

__device__ __forceinline__ void rb_store_b(float (*Bs)[RB_BN + 1], int trans, int tid, const float r[4]) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        if (trans) Bs[tid & 15][(tid >> 4) + 16 * q] = r[q];
        else Bs[(tid >> 6) + 4 * q][tid & 63] = r[q];
    }
}

// blockDim = (16, 16); grid = (ceil(n/64), ceil(m/64), splits x models): blockIdx.z = model *
// splits + slice. splits == 1: one block walks all of k (kc = k), folding at every GEMM_KC;
// splits > 1: kc == GEMM_KC and block z computes slice z's sum alone, into the scratch P
// (models x splits slices of m x n floats, slice z of model p at (p * splits + z) m n =
// blockIdx.z m n), which gemm_splitk_reduce folds in slice order: the same bits either way.
extern "C" __global__ void __launch_bounds__(256) gemm_f32_rb(int m, int n, int k, int kc, int splits, float alpha,
                                                              const float* __restrict__ A, long long a_off, int a_trans,
                                                              const float* __restrict__ B, long long b_off, int b_trans,
                                                              float beta, float* __restrict__ C, long long c_off,
                                                              float* __restrict__ P, long long a_ps, long long b_ps,
                                                              long long c_ps) {
    __shared__ float As[RB_BK][RB_BM + 1];
    __shared__ float Bs[RB_BK][RB_BN + 1];
    const int model = blockIdx.z / splits;
    const int slice = blockIdx.z - model * splits;
    const float* a = A + (long long)model * a_ps + a_off;
    const float* b = B + (long long)model * b_ps + b_off;
    C += (long long)model * c_ps;
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    const int i0 = blockIdx.y * RB_BM, j0 = blockIdx.x * RB_BN;
    const int kbeg = slice * kc;
    const int kend = min(k, kbeg + kc);
    float acc[4][4], total[4][4];  // the current k-slice's sums; the fold of the earlier slices
#pragma unroll
    for (int x = 0; x < 4; ++x)
#pragma unroll
        for (int y = 0; y < 4; ++y) acc[x][y] = total[x][y] = 0.0f;
    float ra[4], rb[4];
    rb_load_a(a, m, k, a_trans, i0, kbeg, kend, tid, ra);
    rb_load_b(b, n, k, b_trans, j0, kbeg, kend, tid, rb);
    for (int p0 = kbeg; p0 < kend; p0 += RB_BK) {
        rb_store_a(As, a_trans, tid, ra);
        rb_store_b(Bs, b_trans, tid, rb);
        __syncthreads();
        if (p0 + RB_BK < kend) {
            rb_load_a(a, m, k, a_trans, i0, p0 + RB_BK, kend, tid, ra);
            rb_load_b(b, n, k, b_trans, j0, p0 + RB_BK, kend, tid, rb);
        }
#pragma unroll
        for (int q = 0; q < RB_BK; ++q) {
            float av[4], bv[4];
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                av[x] = As[q][ty + 16 * x];
                bv[x] = Bs[q][tx + 16 * x];
            }
#pragma unroll
            for (int x = 0; x < 4; ++x)
#pragma unroll
                for (int y = 0; y < 4; ++y) acc[x][y] = fmaf(av[x], bv[y], acc[x][y]);
        }
        __syncthreads();
        if ((p0 + RB_BK) % GEMM_KC == 0 || p0 + RB_BK >= kend) {  // a slice ends: fold it
            const bool first = p0 - kbeg < GEMM_KC;
#pragma unroll
            for (int x = 0; x < 4; ++x)
#pragma unroll
                for (int y = 0; y < 4; ++y) {
                    total[x][y] = first ? acc[x][y] : total[x][y] + acc[x][y];
                    acc[x][y] = 0.0f;
                }
        }
    }
    const bool split = splits > 1;
#pragma unroll
    for (int x = 0; x < 4; ++x) {
        int i = i0 + ty + 16 * x;
        if (i >= m) continue;
#pragma unroll
        for (int y = 0; y < 4; ++y) {
            int j = j0 + tx + 16 * y;
            if (j >= n) continue;
            long long e = (long long)i * n + j;
            if (split) {
                P[(long long)blockIdx.z * m * n + e] = total[x][y];
            } else {
                float* c = C + c_off + e;
                *c = (beta == 0.0f) ? alpha * total[x][y] : alpha * total[x][y] + beta * *c;
            }
        }
    }
}

// grid = (blocks, models): model p = blockIdx.y adds its slices P[p * splits + z], z < splits.
extern "C" __global__ void gemm_splitk_reduce(int m, int n, int splits, const float* __restrict__ P, float alpha,
                                              float beta, float* __restrict__ C, long long c_off, long long c_ps) {
    long long mn = (long long)m * n;
    const long long model = blockIdx.y;
    P += model * splits * mn;
    C += model * c_ps;
    GRID_STRIDE(e, mn) {
        float s = P[e];
        for (int z = 1; z < splits; ++z) s += P[(long long)z * mn + e];
        float* c = C + c_off + e;
        *c = (beta == 0.0f) ? alpha * s : alpha * s + beta * *c;
    }
}

extern "C" __global__ void broadcast_rows(float* __restrict__ x, const float* __restrict__ bias, int rows, int cols,
                                          long long x_ps, long long bias_ps) {
    const long long model = blockIdx.y;
    x += model * x_ps;
    bias += model * bias_ps;
    GRID_STRIDE(e, (long long)rows * cols) { x[e] = bias[e % cols]; }
}

// sum_rows: the rows are added in blocks of SUM_ROWS_BLOCK rows (defined by the host: 64), in
// order within a block, and the block sums in order: Cpu::sum_rows' order, so the same bits. One
// block of (32, 16) threads per 32 columns (a lane per column): in each round warp w sums row block
// (16 round + w) straight from global memory (a lane's SUM_ROWS_BLOCK loads all issued before its
// additions), and warp 0 adds the round's 16 block sums from shared memory in order. A batch-64
// update's 6,400 rows take 7 rounds. (Adding row after row, the order until 2026-11-26, left one
// warp per 32 columns adding 6,400 rows in a chain: 56 us on an H100.) grid = (ceil(cols / 32), P).
#ifndef SUM_ROWS_BLOCK
#error "SUM_ROWS_BLOCK must be defined (-DSUM_ROWS_BLOCK=..., as src/backend/cuda.rs compiles the kernels)"
#endif
#define SR_COLS 32
#define SR_WARPS 16

// Row block b of column c (rows b*SUM_ROWS_BLOCK ... of x, `cols` wide, xc = &x[r0][c]): its n
// rows added in order, all loads issued before the additions.
__device__ __forceinline__ float sum_rows_block(const float* __restrict__ xc, int n, int cols) {
    float t[SUM_ROWS_BLOCK];
#pragma unroll
    for (int i = 0; i < SUM_ROWS_BLOCK; ++i) t[i] = i < n ? xc[(long long)i * cols] : 0.0f;
    float p = 0.0f;
#pragma unroll
    for (int i = 0; i < SUM_ROWS_BLOCK; ++i) {
        if (i < n) p += t[i];
    }
    return p;
}

extern "C" __global__ void __launch_bounds__(SR_COLS * SR_WARPS)
sum_rows(const float* __restrict__ x, int rows, int cols, float alpha, float beta, float* __restrict__ out,
         long long x_ps, long long out_ps) {
    __shared__ float part[SR_WARPS][SR_COLS];
    const long long model = blockIdx.y;
    x += model * x_ps;
    out += model * out_ps;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int c = blockIdx.x * SR_COLS + tx;
    const bool col_ok = c < cols;
    const int blocks = (rows + SUM_ROWS_BLOCK - 1) / SUM_ROWS_BLOCK;
    float acc = 0.0f;
    for (int b0 = 0; b0 < blocks; b0 += SR_WARPS) {
        const int b = b0 + ty;
        float p = 0.0f;
        if (col_ok && b < blocks) {
            const int r0 = b * SUM_ROWS_BLOCK;
            const int n = rows - r0 < SUM_ROWS_BLOCK ? rows - r0 : SUM_ROWS_BLOCK;
            p = sum_rows_block(x + (long long)r0 * cols + c, n, cols);
        }
        part[ty][tx] = p;
        __syncthreads();
        if (ty == 0) {
            const int m = blocks - b0 < SR_WARPS ? blocks - b0 : SR_WARPS;
            for (int w = 0; w < m; ++w) acc += part[w][tx];
        }
        __syncthreads();
    }
    if (ty == 0 && col_ok) out[c] = (beta == 0.0f) ? alpha * acc : beta * out[c] + alpha * acc;
}

// sum_rows in two launches, for more than SR_WARPS row blocks (a batch-64 update's 6,400 rows: 100
// blocks, 7 rounds of the kernel above, one after another): sum_rows_blocks writes every block
// sum at once, part[b][c] (grid = (ceil(cols / 32), ceil(blocks / 16), P), blockDim (32, 16): warp
// w of grid row y sums block 16 y + w), then sum_rows_finish adds column c's block sums in order
// (a thread per column). The same additions in the same order as sum_rows: the same bits.
extern "C" __global__ void __launch_bounds__(SR_COLS * SR_WARPS)
sum_rows_blocks(const float* __restrict__ x, int rows, int cols, float* __restrict__ part, long long x_ps,
                long long part_ps) {
    const long long model = blockIdx.z;
    x += model * x_ps;
    part += model * part_ps;
    const int c = blockIdx.x * SR_COLS + threadIdx.x;
    const int b = blockIdx.y * SR_WARPS + threadIdx.y;
    const int blocks = (rows + SUM_ROWS_BLOCK - 1) / SUM_ROWS_BLOCK;
    if (c >= cols || b >= blocks) return;
    const int r0 = b * SUM_ROWS_BLOCK;
    const int n = rows - r0 < SUM_ROWS_BLOCK ? rows - r0 : SUM_ROWS_BLOCK;
    part[(long long)b * cols + c] = sum_rows_block(x + (long long)r0 * cols + c, n, cols);
}

extern "C" __global__ void sum_rows_finish(const float* __restrict__ part, int blocks, int cols, float alpha,
                                           float beta, float* __restrict__ out, long long part_ps,
                                           long long out_ps) {
    const long long model = blockIdx.y;
    part += model * part_ps;
    out += model * out_ps;
    GRID_STRIDE(c, cols) {
        float acc = 0.0f;
#pragma unroll 8
        for (int b = 0; b < blocks; ++b) acc += part[(long long)b * cols + c];
        out[c] = (beta == 0.0f) ? alpha * acc : beta * out[c] + alpha * acc;
    }
}

extern "C" __global__ void fill_f32(float* __restrict__ x, long long n, float value) {
    GRID_STRIDE(i, n) { x[i] = value; }
}

// alphas: one factor per model (P > 1), or null: every model scales by `alpha`.
extern "C" __global__ void scale_f32(float* __restrict__ x, long long n, float alpha,
                                     const float* __restrict__ alphas, long long x_ps) {
    const long long model = blockIdx.y;
    x += model * x_ps;
    if (alphas) alpha = alphas[model];
    GRID_STRIDE(i, n) { x[i] *= alpha; }
}

extern "C" __global__ void copy_f32(const float* __restrict__ src, long long src_off, float* __restrict__ dst,
                                    long long dst_off, long long n, long long src_ps, long long dst_ps) {
    const long long model = blockIdx.y;
    src += model * src_ps + src_off;
    dst += model * dst_ps + dst_off;
    GRID_STRIDE(i, n) { dst[i] = src[i]; }
}

// blockDim.x must be 256; grid = (blocks, P). partial[p * gridDim.x + blockIdx.x] = sum of x[i]^2
// over this block's grid-stride share of model p's slab.
// Partials of model p at partial + out_off + p * gridDim.x (out_off: where this tensor's [P,
// blocks] partials start in a buffer that holds several tensors', for clip_factors).
extern "C" __global__ void sum_squares_partial(const float* __restrict__ x, long long n, double* __restrict__ partial,
                                               long long x_ps, long long out_off) {
    __shared__ double s[256];
    const long long model = blockIdx.y;
    x += model * x_ps;
    partial += out_off + model * gridDim.x;
    double acc = 0.0;
    GRID_STRIDE(i, n) {
        double v = (double)x[i];
        acc += v * v;
    }
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int o = 128; o > 0; o >>= 1) {
        if (threadIdx.x < o) s[threadIdx.x] += s[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

// grid = (blocks over T_max * B * V, P); model p = blockIdx.y reads its B spans at spans + 2 p B.
extern "C" __global__ void gather_frames(const float* __restrict__ store, const unsigned int* __restrict__ spans,
                                         int t_max, int b, int nv, float* __restrict__ v, float* __restrict__ mask,
                                         float* __restrict__ wmask, long long v_ps, long long mask_ps,
                                         long long wmask_ps) {
    const long long model = blockIdx.y;
    v += model * v_ps;
    mask += model * mask_ps;
    wmask += model * wmask_ps;
    spans += model * 2 * (long long)b;
    unsigned long long frames = 0;
    for (int i = 0; i < b; ++i) frames += spans[2 * i + 1];
    // the host rounds 1/frames from f64 the same way (F::from_f64)
    const float w = (float)(1.0 / (double)(frames > 0 ? frames : 1));
    GRID_STRIDE(e, (long long)t_max * b * nv) {
        const long long row = e / nv;
        const int col = (int)(e - row * nv);
        const int s = (int)(row / b), bi = (int)(row - (long long)s * b);
        const unsigned int start = spans[2 * bi], len = spans[2 * bi + 1];
        const bool real = (unsigned int)s < len;
        v[e] = real ? store[((long long)start + s) * nv + col] : 0.0f;
        if (col == 0) {
            const float m = real ? 1.0f : 0.0f;
            mask[row] = m;
            wmask[row] = w * m;
        }
    }
}

// Global-norm clipping factors, on the device (Backend::clip_grad_norm): partials [tensors][P][blocks]
// from sum_squares_partial; model p's squared norm adds each tensor's partials in block order and
// then the tensors in order (the host's order in the trait's default); factors[p] =
// (float)(clip[p] / norm) when clip[p] > 0 and norm > clip[p], else 1. grid = (1, P), one thread.
extern "C" __global__ void clip_factors(const double* __restrict__ partials, int tensors, int blocks,
                                        const double* __restrict__ clip, float* __restrict__ factors) {
    const long long model = blockIdx.y;
    if (threadIdx.x != 0) return;
    double total = 0.0;
    for (int t = 0; t < tensors; ++t) {
        const double* p = partials + ((long long)t * gridDim.y + model) * blocks;
        double s = 0.0;
        for (int b = 0; b < blocks; ++b) s += p[b];
        total += s;
    }
    const double norm = sqrt(total), c = clip[model];
    factors[model] = (c > 0.0 && norm > c) ? (float)(c / norm) : 1.0f;
}
