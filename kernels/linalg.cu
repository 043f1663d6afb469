// linalg.cu: dense linear algebra and elementwise ops (SPEC letters in comments).
//
// gemm_f32:    C[m,n] (at c_off) = alpha op(A)[m,k] op(B)[k,n] + beta C, row-major, op = optional
//              transpose, A at a_off, B at b_off. 16x16 shared-memory tiles, one output per thread.
//              beta == 0 overwrites C without reading it (NaN in C does not propagate).
//              Reference: Cpu::gemm (src/backend/cpu.rs).
// add_bias:    x[r, c] += bias[c], rows x cols.                       Reference: Cpu::add_bias
// sum_rows:    out[c] = beta out[c] + alpha sum_r x[r, c] (rows summed in order; beta == 0
//              overwrites).                                           Reference: Cpu::sum_rows
// axpy:        y += alpha x.                                          Reference: Cpu::axpy
// masked_diff: out[r, c] = (scale mask[r]) (a[r, c] - b[r, c]).       Reference: Cpu::masked_diff
// mask_rows:   x[r, c] *= mask[r].                                    Reference: Cpu::mask_rows
// fill:        x[i] = value.                                          Reference: Cpu::fill
// scale:       x[i] *= alpha.                                         Reference: Cpu::scale
// sum_squares_partial: per-block partial sums of x^2 in f64 (the host adds the partials in
//              block order, so the result is deterministic).      Reference: Cpu::sum_squares

#define TILE 16

extern "C" __global__ void gemm_f32(int m, int n, int k, float alpha,
                                    const float* __restrict__ A, long long a_off, int a_trans,
                                    const float* __restrict__ B, long long b_off, int b_trans,
                                    float beta, float* __restrict__ C, long long c_off) {
    __shared__ float As[TILE][TILE + 1];
    __shared__ float Bs[TILE][TILE + 1];
    const float* a = A + a_off;
    const float* b = B + b_off;
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * TILE + ty;  // i of C
    int col = blockIdx.x * TILE + tx;  // j of C
    float acc = 0.0f;
    for (int p0 = 0; p0 < k; p0 += TILE) {
        // As[ty][tx] = A(blockrow + ty, p0 + tx)
        {
            int i = blockIdx.y * TILE + ty, p = p0 + tx;
            float val = 0.0f;
            if (i < m && p < k) val = a_trans ? a[(long long)p * m + i] : a[(long long)i * k + p];
            As[ty][tx] = val;
        }
        // Bs[ty][tx] = B(p0 + ty, blockcol + tx)
        {
            int p = p0 + ty, j = blockIdx.x * TILE + tx;
            float val = 0.0f;
            if (p < k && j < n) val = b_trans ? b[(long long)j * k + p] : b[(long long)p * n + j];
            Bs[ty][tx] = val;
        }
        __syncthreads();
#pragma unroll
        for (int q = 0; q < TILE; ++q) acc = fmaf(As[ty][q], Bs[q][tx], acc);
        __syncthreads();
    }
    if (row < m && col < n) {
        float* c = C + c_off + (long long)row * n + col;
        *c = (beta == 0.0f) ? alpha * acc : alpha * acc + beta * *c;
    }
}

extern "C" __global__ void add_bias(float* __restrict__ x, const float* __restrict__ bias, int rows, int cols) {
    GRID_STRIDE(e, (long long)rows * cols) { x[e] += bias[e % cols]; }
}

// One thread per column; rows summed sequentially in order, like the CPU.
extern "C" __global__ void sum_rows(const float* __restrict__ x, int rows, int cols, float alpha, float beta,
                                    float* __restrict__ out) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float acc = 0.0f;
    for (int r = 0; r < rows; ++r) acc += x[(long long)r * cols + c];
    out[c] = (beta == 0.0f) ? alpha * acc : beta * out[c] + alpha * acc;
}

extern "C" __global__ void axpy(long long n, float alpha, const float* __restrict__ x, float* __restrict__ y) {
    GRID_STRIDE(i, n) { y[i] += alpha * x[i]; }
}

extern "C" __global__ void masked_diff(const float* __restrict__ a, const float* __restrict__ b,
                                       const float* __restrict__ mask, float scale, int rows, int cols,
                                       float* __restrict__ out) {
    GRID_STRIDE(e, (long long)rows * cols) {
        float s = scale * mask[e / cols];
        out[e] = s * (a[e] - b[e]);
    }
}

extern "C" __global__ void mask_rows(float* __restrict__ x, const float* __restrict__ mask, int rows, int cols) {
    GRID_STRIDE(e, (long long)rows * cols) { x[e] *= mask[e / cols]; }
}

extern "C" __global__ void fill_f32(float* __restrict__ x, long long n, float value) {
    GRID_STRIDE(i, n) { x[i] = value; }
}

extern "C" __global__ void scale_f32(float* __restrict__ x, long long n, float alpha) {
    GRID_STRIDE(i, n) { x[i] *= alpha; }
}

// blockDim.x must be 256. partial[blockIdx.x] = sum of x[i]^2 over this block's grid-stride share.
extern "C" __global__ void sum_squares_partial(const float* __restrict__ x, long long n, double* __restrict__ partial) {
    __shared__ double s[256];
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
