// emu.cpp: the CUDA emulator's execution model (see emu_device.h for what it is for).
//
// A launch runs its blocks one after another on the calling OS thread. Each CUDA thread of a
// block is a fiber with its own stack; the scheduler runs every runnable fiber until it blocks
// (at a block barrier or a warp collective) or returns, then resolves what can be resolved:
//   - a warp collective, once every lane its mask names waits at the same collective with the
//     same mask (shuffles, ballots, votes, __syncwarp and mma.sync compute all lanes' results at
//     once, from the values every lane brought);
//   - the block barrier, once every thread that has not returned waits at it (a returned thread
//     no longer counts, as on Volta and newer).
// What a GPU would leave undefined is an error here, reported by the launch (and so by the
// Rust backend's launch call): a collective whose mask names a lane that has returned or that
// waits at another collective (a deadlock), a collective with lanes outside the block, a block
// barrier that some threads never reach while others wait in a warp collective, __trap().
// Blocks run their threads in increasing order of thread index, odd-numbered blocks in decreasing
// order, so that a missing __syncthreads shows whether the reader comes before or after the writer.
// Dynamic shared memory is filled with 0xFF bytes (NaN as f32) before each block, so a kernel
// that reads shared memory it did not write sees NaN rather than the previous block's values.
#include "emu_device.h"
#include "emu_host.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

// ----- fiber switch (x86-64 System V) -----------------------------------------------------------
// emu_swap(save, load): pushes the callee-saved registers and the SSE/x87 control words, stores
// the stack pointer to *save, switches to the stack `load` and pops the same from it.
extern "C" void emu_swap(void** save, void* load) __attribute__((visibility("hidden")));
extern "C" void emu_fiber_trampoline() __attribute__((visibility("hidden")));
extern "C" void emu_fiber_entry() __attribute__((visibility("hidden")));
asm(R"(
    .text
    .globl emu_swap
    .hidden emu_swap
    .type emu_swap,@function
emu_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_swap, .-emu_swap

    .globl emu_fiber_trampoline
    .hidden emu_fiber_trampoline
    .type emu_fiber_trampoline,@function
emu_fiber_trampoline:
    call emu_fiber_entry
    ud2
    .size emu_fiber_trampoline, .-emu_fiber_trampoline
)");

namespace emu {

thread_local const ThreadCoords* cur = nullptr;

namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kPage = 4096;

enum class State { Runnable, WaitBlock, WaitWarp, Done };
enum class Op { SyncWarp, Ballot, All, ShflXor, Mma };

const char* op_name(Op op) {
    switch (op) {
        case Op::SyncWarp: return "__syncwarp";
        case Op::Ballot: return "__ballot_sync";
        case Op::All: return "__all_sync";
        case Op::ShflXor: return "__shfl_xor_sync";
        case Op::Mma: return "mma.sync";
    }
    return "?";
}

struct Fiber {
    void* sp = nullptr;
    char* stack = nullptr;  // lowest address; the first page is a guard page
    ThreadCoords coords{};
    unsigned lane = 0;
    State state = State::Done;
    // the collective this fiber waits at, and its result
    Op op = Op::SyncWarp;
    unsigned mask = 0;
    uint32_t in[10] = {};
    uint32_t out[4] = {};
    int barrier_pred = 0;
};

struct Worker {
    std::vector<Fiber> fibers;  // stacks kept across launches
    void* sched_sp = nullptr;
    Fiber* running = nullptr;
    const Kernel* kernel = nullptr;
    void** params = nullptr;
    std::vector<unsigned char> smem;
    unsigned char* smem_aligned = nullptr;
    bool failed = false;
    std::string error;

    ~Worker() {
        for (auto& f : fibers)
            if (f.stack) munmap(f.stack, kStackBytes);
    }
};

thread_local Worker worker;

void fail(Worker& w, const std::string& msg) {
    if (!w.failed) {
        w.failed = true;
        w.error = msg;
    }
}

std::string where(const Fiber& f) {
    char buf[160];
    snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", f.coords.block_idx.x, f.coords.block_idx.y,
             f.coords.block_idx.z, f.coords.thread_idx.x, f.coords.thread_idx.y, f.coords.thread_idx.z);
    return buf;
}

// Switches from the running fiber back to the scheduler.
void yield_to_scheduler() {
    Worker& w = worker;
    Fiber* f = w.running;
    emu_swap(&f->sp, w.sched_sp);
}

void prepare_stack(Fiber& f) {
    if (!f.stack) {
        void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            fprintf(stderr, "cuda-emu: cannot map a fiber stack\n");
            abort();
        }
        mprotect(p, kPage, PROT_NONE);
        f.stack = static_cast<char*>(p);
    }
    uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + kStackBytes - 64) & ~uintptr_t(15);
    uint64_t* s = reinterpret_cast<uint64_t*>(top);
    s[-1] = reinterpret_cast<uint64_t>(&emu_fiber_trampoline);  // return address of emu_swap
    for (int i = 2; i <= 7; ++i) s[-i] = 0;                      // rbp rbx r12 r13 r14 r15
    uint32_t csr[2];
    asm volatile("stmxcsr %0" : "=m"(csr[0]));
    asm volatile("fnstcw %0" : "=m"(csr[1]));
    std::memcpy(&s[-8], csr, 8);
    f.sp = &s[-8];
}

// Waits at a warp collective: records the op, yields, returns when the scheduler resolved it.
Fiber& collective(Op op, unsigned mask) {
    Worker& w = worker;
    Fiber& f = *w.running;
    f.op = op;
    f.mask = mask;
    f.state = State::WaitWarp;
    return f;
}

// One m16n8k16 product for the whole warp (PTX ISA fragment layouts, .row.col, f16 in, f32
// accumulate): the f16 products are exact in f64, the 16-term sums plus c are rounded once.
void resolve_mma(Fiber* lanes[32]) {
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
        const uint32_t* in = lanes[l]->in;
        int g = l >> 2, t = l & 3;
        for (int r = 0; r < 4; ++r) {
            int row = g + ((r & 1) ? 8 : 0), col = 2 * t + ((r & 2) ? 8 : 0);
            A[row][col] = f16_to_f32(uint16_t(in[r] & 0xffff));
            A[row][col + 1] = f16_to_f32(uint16_t(in[r] >> 16));
        }
        for (int r = 0; r < 2; ++r) {
            int k = 2 * t + (r ? 8 : 0);
            B[k][g] = f16_to_f32(uint16_t(in[4 + r] & 0xffff));
            B[k + 1][g] = f16_to_f32(uint16_t(in[4 + r] >> 16));
        }
        for (int i = 0; i < 4; ++i) {
            float c;
            std::memcpy(&c, &in[6 + i], 4);
            C[g + ((i & 2) ? 8 : 0)][2 * t + (i & 1)] = c;
        }
    }
    for (int l = 0; l < 32; ++l) {
        int g = l >> 2, t = l & 3;
        for (int i = 0; i < 4; ++i) {
            int row = g + ((i & 2) ? 8 : 0), col = 2 * t + (i & 1);
            double acc = C[row][col];
            for (int k = 0; k < 16; ++k) acc += double(A[row][k]) * double(B[k][col]);
            float d = float(acc);
            std::memcpy(&lanes[l]->out[i], &d, 4);
        }
    }
}

// Resolves every warp collective whose lanes have all arrived; returns whether any was.
bool resolve_warps(Worker& w, unsigned nthreads) {
    bool any = false;
    for (unsigned i = 0; i < nthreads; ++i) {
        Fiber& f = w.fibers[i];
        if (f.state != State::WaitWarp) continue;
        unsigned base = i - f.lane;
        if (!(f.mask >> f.lane & 1u)) {
            fail(w, where(f) + ": " + op_name(f.op) + " with a mask that leaves out the calling lane");
            return false;
        }
        Fiber* lanes[32] = {};
        bool ready = true;
        for (unsigned l = 0; l < 32; ++l) {
            if (!(f.mask >> l & 1u)) continue;
            if (base + l >= nthreads) {
                fail(w, where(f) + ": " + op_name(f.op) + " names lane " + std::to_string(l) +
                            ", which is outside the block");
                return false;
            }
            Fiber& g = w.fibers[base + l];
            if (g.state == State::Done) {
                fail(w, where(f) + ": " + op_name(f.op) + " names lane " + std::to_string(l) +
                            ", which has returned");
                return false;
            }
            if (g.state != State::WaitWarp || g.mask != f.mask || g.op != f.op) {
                ready = false;
                break;
            }
            lanes[l] = &g;
        }
        if (!ready) continue;
        switch (f.op) {
            case Op::SyncWarp: break;
            case Op::Ballot:
            case Op::All: {
                uint32_t ballot = 0;
                for (unsigned l = 0; l < 32; ++l)
                    if (lanes[l] && lanes[l]->in[0]) ballot |= 1u << l;
                uint32_t res = f.op == Op::Ballot ? ballot : uint32_t(ballot == f.mask);
                for (unsigned l = 0; l < 32; ++l)
                    if (lanes[l]) lanes[l]->out[0] = res;
                break;
            }
            case Op::ShflXor:
                for (unsigned l = 0; l < 32; ++l) {
                    if (!lanes[l]) continue;
                    unsigned width = lanes[l]->in[2], src = l ^ lanes[l]->in[1];
                    // a lane of a later width-group would be read: the lane keeps its own value
                    if (src >= (l / width + 1) * width || src >= 32) src = l;
                    if (!lanes[src]) {
                        fail(w, where(*lanes[l]) + ": __shfl_xor_sync reads lane " + std::to_string(src) +
                                    ", which is not in its mask");
                        return false;
                    }
                    lanes[l]->out[0] = lanes[src]->in[0];
                }
                break;
            case Op::Mma:
                if (f.mask != 0xffffffffu) {
                    fail(w, where(f) + ": mma.sync needs the whole warp");
                    return false;
                }
                resolve_mma(lanes);
                break;
        }
        for (unsigned l = 0; l < 32; ++l)
            if (lanes[l]) lanes[l]->state = State::Runnable;
        any = true;
    }
    return any;
}

std::string describe_states(Worker& w, unsigned nthreads) {
    std::string s;
    int shown = 0;
    for (unsigned i = 0; i < nthreads && shown < 6; ++i) {
        Fiber& f = w.fibers[i];
        if (f.state == State::WaitWarp) {
            char buf[64];
            snprintf(buf, sizeof buf, " (mask %08x)", f.mask);
            s += "\n  " + where(f) + " waits at " + op_name(f.op) + buf;
            ++shown;
        }
    }
    unsigned at_barrier = 0, done = 0;
    for (unsigned i = 0; i < nthreads; ++i) {
        at_barrier += w.fibers[i].state == State::WaitBlock;
        done += w.fibers[i].state == State::Done;
    }
    s += "\n  " + std::to_string(at_barrier) + " threads wait at __syncthreads, " + std::to_string(done) +
         " have returned";
    return s;
}

bool run_block(Worker& w, Dim3 grid, Dim3 block, Dim3 bidx, size_t smem_bytes) {
    unsigned nthreads = block.x * block.y * block.z;
    if (w.fibers.size() < nthreads) w.fibers.resize(nthreads);
    std::memset(w.smem_aligned, 0xff, smem_bytes);
    for (unsigned i = 0; i < nthreads; ++i) {
        Fiber& f = w.fibers[i];
        f.coords.thread_idx = Dim3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
        f.coords.block_idx = bidx;
        f.coords.block_dim = block;
        f.coords.grid_dim = grid;
        f.lane = i % 32;
        f.state = State::Runnable;
        prepare_stack(f);
    }
    // Odd blocks run their threads in reverse order, so that a missing barrier shows whichever
    // side of it the reading thread is on.
    const bool reverse = ((bidx.z * grid.y + bidx.y) * grid.x + bidx.x) & 1u;
    for (;;) {
        bool ran = false;
        for (unsigned n = 0; n < nthreads; ++n) {
            Fiber& f = w.fibers[reverse ? nthreads - 1 - n : n];
            if (f.state != State::Runnable) continue;
            w.running = &f;
            cur = &f.coords;
            emu_swap(&w.sched_sp, f.sp);
            w.running = nullptr;
            ran = true;
            if (w.failed) return false;
        }
        if (ran) continue;
        if (resolve_warps(w, nthreads)) continue;
        if (w.failed) return false;
        unsigned waiting = 0, live = 0;
        int any_pred = 0;
        for (unsigned i = 0; i < nthreads; ++i) {
            Fiber& f = w.fibers[i];
            if (f.state == State::Done) continue;
            ++live;
            if (f.state == State::WaitBlock) {
                ++waiting;
                any_pred |= f.barrier_pred != 0;
            }
        }
        if (live == 0) return true;
        if (waiting == live) {
            for (unsigned i = 0; i < nthreads; ++i) {
                Fiber& f = w.fibers[i];
                if (f.state != State::WaitBlock) continue;
                f.state = State::Runnable;
                f.out[0] = uint32_t(any_pred);
            }
            continue;
        }
        fail(w, "deadlock in block (" + std::to_string(bidx.x) + "," + std::to_string(bidx.y) + "," +
                    std::to_string(bidx.z) + "):" + describe_states(w, nthreads));
        return false;
    }
}

std::mutex registry_mutex;
std::map<std::string, Kernel>& registry() {
    static std::map<std::string, Kernel> r;
    return r;
}

}  // namespace

// ----- device-side entry points -------------------------------------------------------------------

void syncthreads() { syncthreads_or(0); }

int syncthreads_or(int pred) {
    Fiber& f = *worker.running;
    f.barrier_pred = pred;
    f.state = State::WaitBlock;
    yield_to_scheduler();
    return int(f.out[0]);
}

void syncwarp(unsigned mask) {
    collective(Op::SyncWarp, mask);
    yield_to_scheduler();
}

unsigned ballot(unsigned mask, int pred) {
    Fiber& f = collective(Op::Ballot, mask);
    f.in[0] = pred != 0;
    yield_to_scheduler();
    return f.out[0];
}

int all(unsigned mask, int pred) {
    Fiber& f = collective(Op::All, mask);
    f.in[0] = pred != 0;
    yield_to_scheduler();
    return int(f.out[0]);
}

uint32_t shfl_xor32(unsigned mask, uint32_t v, int lane_mask, int width) {
    Fiber& f = collective(Op::ShflXor, mask);
    f.in[0] = v;
    f.in[1] = uint32_t(lane_mask) & 31u;
    f.in[2] = uint32_t(width);
    yield_to_scheduler();
    return f.out[0];
}

void mma_m16n8k16(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    Fiber& f = collective(Op::Mma, 0xffffffffu);
    uint32_t in[10] = {a0, a1, a2, a3, b0, b1};
    std::memcpy(&in[6], c, 16);
    std::memcpy(f.in, in, sizeof in);
    yield_to_scheduler();
    std::memcpy(c, f.out, 16);
}

void trap(const char* why) {
    Worker& w = worker;
    fail(w, where(*w.running) + ": " + why);
    w.running->state = State::Done;
    yield_to_scheduler();
    abort();  // unreachable: a failed block is never resumed
}

void* dyn_smem() { return worker.smem_aligned; }

uint16_t f32_to_f16_rn(float x) {
    _Float16 h = static_cast<_Float16>(x);
    uint16_t u;
    std::memcpy(&u, &h, 2);
    return u;
}

float f16_to_f32(uint16_t u) {
    _Float16 h;
    std::memcpy(&h, &u, 2);
    return static_cast<float>(h);
}

float rcp_approx_ftz(float x) {
    if (std::fpclassify(x) == FP_SUBNORMAL) x = std::copysign(0.0f, x);
    float r = 1.0f / x;
    if (std::fpclassify(r) == FP_SUBNORMAL) r = std::copysign(0.0f, r);
    return r;
}

// ----- host side (emu_host.h) --------------------------------------------------------------------

Registrar::Registrar(const char* name, void (*invoke)(void**), CopyArgs copy_args) {
    std::lock_guard<std::mutex> g(registry_mutex);
    registry()[name] = Kernel{name, invoke, copy_args};
}

const Kernel* find_kernel(const char* name) {
    std::lock_guard<std::mutex> g(registry_mutex);
    auto it = registry().find(name);
    return it == registry().end() ? nullptr : &it->second;
}

bool launch(const Kernel& k, Dim3 grid, Dim3 block, size_t smem_bytes, void** params, std::string* error) {
    Worker& w = worker;
    unsigned nthreads = block.x * block.y * block.z;
    if (nthreads == 0 || nthreads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
        *error = "invalid launch configuration";
        return false;
    }
    if (w.smem.size() < smem_bytes + 128) w.smem.resize(smem_bytes + 128);
    w.smem_aligned = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(w.smem.data()) + 127) & ~uintptr_t(127));
    w.kernel = &k;
    w.params = params;
    w.failed = false;
    w.error.clear();
    const ThreadCoords* saved = cur;
    bool ok = true;
    for (unsigned z = 0; z < grid.z && ok; ++z)
        for (unsigned y = 0; y < grid.y && ok; ++y)
            for (unsigned x = 0; x < grid.x && ok; ++x) ok = run_block(w, grid, block, Dim3{x, y, z}, smem_bytes);
    cur = saved;
    if (!ok) *error = std::string(k.name) + ": " + w.error;
    return ok;
}

}  // namespace emu

// A fiber's first frame: runs the kernel body, then marks the fiber done and never returns.
extern "C" void emu_fiber_entry() {
    using namespace emu;
    Worker& w = worker;
    w.kernel->invoke(w.params);
    w.running->state = State::Done;
    yield_to_scheduler();
    abort();
}
