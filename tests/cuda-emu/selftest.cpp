// selftest.cpp: the emulator's own tests, run by build.py after every build (a failure fails the
// build, and so the GPU tests that need the emulator). Small kernels written here pin down what
// the project's kernels rely on: shuffles (with width), ballots, votes, barriers with a predicate,
// the error reports (deadlock, a returned lane in a collective, __trap), dynamic shared memory
// starting as NaN, both thread orders, and mma.sync against a plain matrix product whose fragment
// layout is written a second time here, inverted (element -> lane, register, half) from the PTX
// ISA's formulas, so that a mistake in emu.cpp's layout does not check itself.
#include "emu_device.h"
#include "emu_host.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        ++failures;
        fprintf(stderr, "cuda-emu selftest FAILED: %s\n", what.c_str());
    }
}

template <class... A>
bool run(void (*k)(A...), const char* name, emu::Dim3 grid, emu::Dim3 block, size_t smem, std::string* err,
         A... args) {
    static thread_local void (*kernel)(A...) = nullptr;
    kernel = k;
    emu::Kernel entry{name, [](void** p) { emu::invoke(kernel, p); }};
    void* params[] = {static_cast<void*>(&args)...};
    return emu::launch(entry, grid, block, smem, params, err);
}

// ---- kernels -------------------------------------------------------------------------------------

__global__ void k_shuffles(int* out) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int* o = out + w * 32 * 4;
    o[lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 5);
    o[32 + lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 8, 8);  // later group: keeps its own
    unsigned b = __ballot_sync(0xffffffffu, lane % 3 == 0);
    o[64 + lane] = (int)b;
    o[96 + lane] = __all_sync(0xffffffffu, lane < 32) + 2 * __all_sync(0xffffffffu, lane < 31);
}

__global__ void k_barrier_or(int* out) {
    int t = threadIdx.x;
    out[t] = __syncthreads_or(t == 37) + 2 * __syncthreads_or(0);
}

// Thread t writes smem[t]; then reads its neighbour's, with or without a barrier between.
__global__ void k_neighbour(float* out, int with_barrier) {
    float* smem = static_cast<float*>(emu::dyn_smem());  // `extern __shared__`, as build.py rewrites it
    int t = threadIdx.x, n = blockDim.x;
    smem[t] = (float)(blockIdx.x * 1000 + t);
    if (with_barrier) __syncthreads();
    out[blockIdx.x * n + t] = smem[(t + 1) % n];
}

__global__ void k_deadlock(int* out) {
    if (threadIdx.x == 0) {
        __syncwarp(0xffffffffu);  // waits for lanes that wait at __syncthreads
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

__global__ void k_returned_lane(int* out) {
    if (threadIdx.x == 3) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

__global__ void k_trap(int* out) {
    if (threadIdx.x == 7) __trap();
    out[threadIdx.x] = 1;
}

__global__ void k_order(int* out, int* counter) {
    out[blockIdx.x * blockDim.x + threadIdx.x] = (*counter)++;
}

__global__ void k_mma(const uint32_t* a, const uint32_t* b, const float* c, float* d) {
    int lane = threadIdx.x;
    float acc[4];
    for (int i = 0; i < 4; ++i) acc[i] = c[lane * 4 + i];
    emu::mma_m16n8k16(acc, a[lane * 4], a[lane * 4 + 1], a[lane * 4 + 2], a[lane * 4 + 3], b[lane * 2], b[lane * 2 + 1]);
    for (int i = 0; i < 4; ++i) d[lane * 4 + i] = acc[i];
}

// ---- tests ---------------------------------------------------------------------------------------

void test_collectives() {
    std::vector<int> out(64 * 4, -1);
    std::string err;
    check(run(k_shuffles, "k_shuffles", {1, 1, 1}, {64, 1, 1}, 0, &err, out.data()), "shuffles launch: " + err);
    for (int w = 0; w < 2; ++w) {
        const int* o = out.data() + w * 128;
        for (int l = 0; l < 32; ++l) {
            check(o[l] == (l ^ 5) * 10, "shfl_xor lane " + std::to_string(l));
            int src = (l ^ 8) >= (l / 8 + 1) * 8 ? l : (l ^ 8);
            check(o[32 + l] == src * 10, "shfl_xor width 8, lane " + std::to_string(l));
            unsigned want = 0;
            for (int k = 0; k < 32; k += 3) want |= 1u << k;
            check((unsigned)o[64 + l] == want, "ballot");
            check(o[96 + l] == 1, "all_sync");
        }
    }
    std::vector<int> bo(96, -1);
    check(run(k_barrier_or, "k_barrier_or", {1, 1, 1}, {96, 1, 1}, 0, &err, bo.data()), "barrier_or: " + err);
    for (int t = 0; t < 96; ++t) check(bo[t] == 1, "__syncthreads_or at thread " + std::to_string(t));
}

void test_barriers_and_orders() {
    const int n = 64, blocks = 2;
    std::vector<float> out(n * blocks);
    std::string err;
    check(run(k_neighbour, "k_neighbour", {blocks, 1, 1}, {n, 1, 1}, n * 4, &err, out.data(), 1), err);
    for (int b = 0; b < blocks; ++b)
        for (int t = 0; t < n; ++t)
            check(out[b * n + t] == (float)(b * 1000 + (t + 1) % n), "neighbour read after the barrier");
    // without the barrier: block 0 runs threads upwards (thread t reads t + 1 before it is
    // written: NaN), block 1 downwards (t + 1 already written, except the wrap-around)
    check(run(k_neighbour, "k_neighbour", {blocks, 1, 1}, {n, 1, 1}, n * 4, &err, out.data(), 0), err);
    int nan0 = 0, nan1 = 0;
    for (int t = 0; t < n; ++t) {
        nan0 += std::isnan(out[t]);
        nan1 += std::isnan(out[n + t]);
    }
    check(nan0 == n - 1 && nan1 == 1, "a missing barrier shows in both orders (NaN " + std::to_string(nan0) + ", " +
                                          std::to_string(nan1) + ")");
    std::vector<int> order(2 * 32);
    int counter = 0;
    check(run(k_order, "k_order", {2, 1, 1}, {32, 1, 1}, 0, &err, order.data(), &counter), err);
    check(order[0] == 0 && order[31] == 31 && order[32 + 31] == 32 && order[32] == 63, "thread orders");
}

void test_errors() {
    std::vector<int> out(64, 0);
    std::string err;
    check(!run(k_deadlock, "k_deadlock", {1, 1, 1}, {64, 1, 1}, 0, &err, out.data()), "deadlock must fail");
    check(err.find("deadlock") != std::string::npos, "deadlock report: " + err);
    err.clear();
    check(!run(k_returned_lane, "k_returned_lane", {1, 1, 1}, {32, 1, 1}, 0, &err, out.data()),
          "a shuffle with a returned lane must fail");
    check(err.find("has returned") != std::string::npos, "returned-lane report: " + err);
    err.clear();
    check(!run(k_trap, "k_trap", {1, 1, 1}, {32, 1, 1}, 0, &err, out.data()), "__trap must fail");
    check(err.find("__trap") != std::string::npos && err.find("thread (7,0,0)") != std::string::npos,
          "trap report: " + err);
    // a failed launch leaves the emulator usable
    std::vector<int> bo(32, -1);
    check(run(k_barrier_or, "k_barrier_or", {1, 1, 1}, {32, 1, 1}, 0, &err, bo.data()), "launch after failures");
}

void test_mma() {
    std::mt19937 gen(7);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    float A[16][16], B[16][8], C[16][8];
    for (auto& r : A)
        for (float& x : r) x = emu::f16_to_f32(emu::f32_to_f16_rn(u(gen)));
    for (auto& r : B)
        for (float& x : r) x = emu::f16_to_f32(emu::f32_to_f16_rn(u(gen)));
    for (auto& r : C)
        for (float& x : r) x = u(gen);
    // fragments from the matrices, through the inverse of the ISA's formulas
    std::vector<uint32_t> a(32 * 4, 0), b(32 * 2, 0);
    std::vector<float> c(32 * 4), d(32 * 4);
    for (int row = 0; row < 16; ++row)
        for (int col = 0; col < 16; ++col) {
            int lane = (row % 8) * 4 + (col % 8) / 2, reg = (row >= 8) + 2 * (col >= 8), half = col % 2;
            a[lane * 4 + reg] |= uint32_t(emu::f32_to_f16_rn(A[row][col])) << (16 * half);
        }
    for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 8; ++n) {
            int lane = n * 4 + (k % 8) / 2, reg = k >= 8, half = k % 2;
            b[lane * 2 + reg] |= uint32_t(emu::f32_to_f16_rn(B[k][n])) << (16 * half);
        }
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 8; ++n) c[((m % 8) * 4 + n / 2) * 4 + 2 * (m >= 8) + n % 2] = C[m][n];
    std::string err;
    check(run(k_mma, "k_mma", {1, 1, 1}, {32, 1, 1}, 0, &err, (const uint32_t*)a.data(), (const uint32_t*)b.data(),
              (const float*)c.data(), d.data()),
          "mma launch: " + err);
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 8; ++n) {
            double want = C[m][n];
            for (int k = 0; k < 16; ++k) want += double(A[m][k]) * B[k][n];
            float got = d[((m % 8) * 4 + n / 2) * 4 + 2 * (m >= 8) + n % 2];
            check(std::fabs(got - want) <= 1e-6 * (1.0 + std::fabs(want)),
                  "mma D[" + std::to_string(m) + "][" + std::to_string(n) + "] = " + std::to_string(got) + ", want " +
                      std::to_string(want));
        }
}

}  // namespace

int main() {
    test_collectives();
    test_barriers_and_orders();
    test_errors();
    test_mma();
    if (failures) {
        fprintf(stderr, "cuda-emu selftest: %d failure(s)\n", failures);
        return 1;
    }
    printf("cuda-emu selftest: ok\n");
    return 0;
}
