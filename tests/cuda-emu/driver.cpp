// driver.cpp: the part of the CUDA driver API (libcuda.so.1) that cudarc calls for this project,
// implemented on the CPU, so that the CUDA backend (src/backend/cuda.rs) and its GPU tests run
// unchanged on a machine without a GPU. See emu_device.h for what is and is not checked.
//
// - One emulated device (RTRBM_EMU_DEVICES=n for n), compute capability 9.0 with an H100's SM count
//   and shared-memory limits, so the backend chooses the same kernels and plans as on the card.
// - Device memory is host memory; every copy and memset is checked against the allocation it
//   falls in (a copy past the end of a buffer fails with CUDA_ERROR_INVALID_VALUE and a message).
// - cuModuleLoadData keeps the PTX's entry names; cuModuleGetFunction finds the entry in the PTX
//   (as the driver would) and its g++ build in the kernel table.
// - Everything runs synchronously on the calling thread: launches, copies and events complete
//   before the call returns; streams and events only keep their order and times.
// - cuLaunchKernel checks the grid, the block and the dynamic shared memory against the
//   device's limits and the function's attribute, as the driver does.
#include "emu_device.h"
#include "emu_host.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>

namespace {

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

constexpr CUresult OK = 0;
constexpr CUresult INVALID_VALUE = 1;
constexpr CUresult OUT_OF_MEMORY = 2;
constexpr CUresult INVALID_DEVICE = 101;
constexpr CUresult INVALID_HANDLE = 400;
constexpr CUresult NOT_FOUND = 500;
constexpr CUresult LAUNCH_OUT_OF_RESOURCES = 701;
constexpr CUresult LAUNCH_FAILED = 719;
constexpr CUresult NOT_SUPPORTED = 801;

constexpr int kSms = 132;
constexpr int kSmemOptin = 232448;  // 227 KB, an H100's opt-in maximum per block
constexpr int kSmemDefault = 49152;
constexpr size_t kTotalMem = size_t(80) << 30;

struct Context {
    int device;
};
struct Stream {
    int id;
};
struct Event {
    std::chrono::steady_clock::time_point t{};
    bool recorded = false;
};
struct Module {
    std::set<std::string> entries;
};
struct Function {
    const emu::Kernel* kernel;
    int max_dyn_smem = kSmemDefault;
};

// What the calling OS thread asked of the driver (a test thread's own work, whatever other
// tests run beside it): read by rtrbm_emu_counters.
struct Counters {
    unsigned long long launches, htod, htod_bytes, dtoh, dtoh_bytes, dtod, memsets, syncs, allocs, frees, events,
        waits;
};
thread_local Counters counters{};

std::mutex mem_mutex;
std::map<uintptr_t, size_t> allocations;  // start -> bytes
Context contexts[16];
thread_local Context* current = nullptr;

int device_count() {
    const char* e = getenv("RTRBM_EMU_DEVICES");
    int n = e ? atoi(e) : 1;
    return n < 1 ? 1 : n > 16 ? 16 : n;
}

// The allocation that holds [p, p + n), or a message.
bool check_range(const char* what, uintptr_t p, size_t n) {
    if (n == 0) return true;
    std::lock_guard<std::mutex> g(mem_mutex);
    auto it = allocations.upper_bound(p);
    if (it != allocations.begin()) {
        --it;
        if (p >= it->first && p + n <= it->first + it->second) return true;
        fprintf(stderr, "cuda-emu: %s of %zu bytes at %#lx leaves the allocation %#lx of %zu bytes\n", what, n,
                (unsigned long)p, (unsigned long)it->first, it->second);
        return false;
    }
    fprintf(stderr, "cuda-emu: %s of %zu bytes at %#lx is not in device memory\n", what, n, (unsigned long)p);
    return false;
}

CUresult alloc(CUdeviceptr* out, size_t bytes) {
    if (!out) return INVALID_VALUE;
    ++counters.allocs;
    void* p = nullptr;
    if (posix_memalign(&p, 256, bytes ? bytes : 1) != 0) return OUT_OF_MEMORY;
    std::memset(p, 0xff, bytes);  // like fresh device memory, not zero: NaN as f32
    std::lock_guard<std::mutex> g(mem_mutex);
    allocations[reinterpret_cast<uintptr_t>(p)] = bytes;
    *out = reinterpret_cast<CUdeviceptr>(p);
    return OK;
}

CUresult release(CUdeviceptr p) {
    if (!p) return OK;
    ++counters.frees;
    std::lock_guard<std::mutex> g(mem_mutex);
    auto it = allocations.find(uintptr_t(p));
    if (it == allocations.end()) {
        fprintf(stderr, "cuda-emu: free of %#llx, which is not an allocation\n", p);
        return INVALID_VALUE;
    }
    allocations.erase(it);
    free(reinterpret_cast<void*>(p));
    return OK;
}

struct ErrorText {
    CUresult code;
    const char* name;
    const char* text;
};

// The codes this driver returns, with the driver's names and descriptions.
ErrorText error_text(CUresult r) {
    static const ErrorText table[] = {
        {OK, "CUDA_SUCCESS", "no error"},
        {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
        {OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
        {INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
        {INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
        {NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
        {LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
        {LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure (cuda-emu: see its message on stderr)"},
        {NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    };
    for (const ErrorText& e : table)
        if (e.code == r) return e;
    return ErrorText{r, "CUDA_ERROR_UNKNOWN", "unknown error"};
}

CUresult copy(const char* what, void* dst, bool dst_dev, const void* src, bool src_dev, size_t n) {
    if (dst_dev && !check_range(what, uintptr_t(dst), n)) return INVALID_VALUE;
    if (src_dev && !check_range(what, uintptr_t(src), n)) return INVALID_VALUE;
    if (n) std::memmove(dst, src, n);
    return OK;
}

CUresult set_bytes(CUdeviceptr p, unsigned char v, size_t n) {
    ++counters.memsets;
    if (!check_range("memset", uintptr_t(p), n)) return INVALID_VALUE;
    std::memset(reinterpret_cast<void*>(p), v, n);
    return OK;
}

CUresult set_words(CUdeviceptr p, unsigned v, size_t n) {
    ++counters.memsets;
    if (!check_range("memset", uintptr_t(p), n * 4)) return INVALID_VALUE;
    unsigned* q = reinterpret_cast<unsigned*>(p);
    for (size_t i = 0; i < n; ++i) q[i] = v;
    return OK;
}

}  // namespace

extern "C" {

CUresult cuInit(unsigned) { return OK; }
CUresult cuDriverGetVersion(int* v) {
    *v = 13000;
    return OK;
}
CUresult cuDeviceGetCount(int* n) {
    *n = device_count();
    return OK;
}
CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (ordinal < 0 || ordinal >= device_count()) return INVALID_DEVICE;
    *d = ordinal;
    return OK;
}
CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
    snprintf(name, size_t(len), "CUDA emulator %d on the CPU (tests/cuda-emu)", d);
    return OK;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) {
    *bytes = kTotalMem;
    return OK;
}
CUresult cuDeviceGetUuid(unsigned char* uuid, CUdevice d) {
    std::memset(uuid, 0, 16);
    uuid[0] = (unsigned char)d;
    return OK;
}
CUresult cuDeviceGetUuid_v2(unsigned char* uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }
CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice) {
    switch (attr) {
        case 1: *v = 1024; break;            // max threads per block
        case 2: *v = 1024; break;            // max block x
        case 3: *v = 1024; break;            // max block y
        case 4: *v = 64; break;              // max block z
        case 5: *v = 2147483647; break;      // max grid x
        case 6: case 7: *v = 65535; break;   // max grid y, z
        case 8: *v = kSmemDefault; break;    // shared memory per block
        case 10: *v = 32; break;             // warp size
        case 12: *v = 65536; break;          // registers per block
        case 13: *v = 1980000; break;        // clock rate, kHz
        case 16: *v = kSms; break;           // multiprocessors
        case 39: *v = 2048; break;           // max threads per multiprocessor
        case 75: *v = 9; break;              // compute capability
        case 76: *v = 0; break;
        case 81: *v = 233472; break;         // shared memory per multiprocessor
        case 97: *v = kSmemOptin; break;     // opt-in shared memory per block
        case 115: *v = 0; break;             // memory pools: no (cuMemAlloc, not cuMemAllocAsync)
        default: *v = 0; break;
    }
    return OK;
}
CUresult cuDevicePrimaryCtxRetain(Context** ctx, CUdevice d) {
    if (d < 0 || d >= device_count()) return INVALID_DEVICE;
    contexts[d].device = d;
    *ctx = &contexts[d];
    return OK;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return OK; }
CUresult cuCtxSetCurrent(Context* c) {
    current = c;
    return OK;
}
CUresult cuCtxGetCurrent(Context** c) {
    *c = current;
    return OK;
}
CUresult cuCtxPushCurrent_v2(Context* c) { return cuCtxSetCurrent(c); }
CUresult cuCtxPopCurrent_v2(Context** c) {
    if (c) *c = current;
    return OK;
}
CUresult cuCtxGetDevice(CUdevice* d) {
    *d = current ? current->device : 0;
    return OK;
}
CUresult cuCtxSynchronize() {
    ++counters.syncs;
    return OK;
}
CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    *free_bytes = kTotalMem / 2;
    *total = kTotalMem;
    return OK;
}

CUresult cuStreamCreate(Stream** s, unsigned) {
    static int next = 1;
    *s = new Stream{next++};
    return OK;
}
CUresult cuStreamCreateWithPriority(Stream** s, unsigned f, int) { return cuStreamCreate(s, f); }
CUresult cuStreamDestroy_v2(Stream* s) {
    delete s;
    return OK;
}
CUresult cuStreamSynchronize(Stream*) {
    ++counters.syncs;
    return OK;
}
CUresult cuStreamQuery(Stream*) { return OK; }
CUresult cuStreamWaitEvent(Stream*, Event*, unsigned) {
    ++counters.waits;
    return OK;
}

CUresult cuEventCreate(Event** e, unsigned) {
    *e = new Event();
    return OK;
}
CUresult cuEventRecord(Event* e, Stream*) {
    ++counters.events;
    e->t = std::chrono::steady_clock::now();
    e->recorded = true;
    return OK;
}
CUresult cuEventSynchronize(Event*) {
    ++counters.syncs;
    return OK;
}
CUresult cuEventQuery(Event*) { return OK; }
CUresult cuEventElapsedTime(float* ms, Event* a, Event* b) {
    if (!a->recorded || !b->recorded) return INVALID_HANDLE;
    *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
    return OK;
}
CUresult cuEventElapsedTime_v2(float* ms, Event* a, Event* b) { return cuEventElapsedTime(ms, a, b); }
CUresult cuEventDestroy_v2(Event* e) {
    delete e;
    return OK;
}

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) { return alloc(p, n); }
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t n, Stream*) { return alloc(p, n); }
CUresult cuMemFree_v2(CUdeviceptr p) { return release(p); }
CUresult cuMemFreeAsync(CUdeviceptr p, Stream*) { return release(p); }
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* s, size_t n) {
    ++counters.htod;
    counters.htod_bytes += n;
    return copy("host-to-device copy", reinterpret_cast<void*>(d), true, s, false, n);
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, Stream*) { return cuMemcpyHtoD_v2(d, s, n); }
CUresult cuMemcpyDtoH_v2(void* d, CUdeviceptr s, size_t n) {
    ++counters.dtoh;
    counters.dtoh_bytes += n;
    return copy("device-to-host copy", d, false, reinterpret_cast<const void*>(s), true, n);
}
CUresult cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, Stream*) { return cuMemcpyDtoH_v2(d, s, n); }
CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n) {
    ++counters.dtod;
    return copy("device-to-device copy", reinterpret_cast<void*>(d), true, reinterpret_cast<const void*>(s), true, n);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, Stream*) { return cuMemcpyDtoD_v2(d, s, n); }
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { return set_bytes(p, v, n); }
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, Stream*) { return set_bytes(p, v, n); }
CUresult cuMemsetD32_v2(CUdeviceptr p, unsigned v, size_t n) { return set_words(p, v, n); }
CUresult cuMemsetD32Async(CUdeviceptr p, unsigned v, size_t n, Stream*) { return set_words(p, v, n); }

CUresult cuModuleLoadData(Module** m, const void* image) {
    // the PTX's entry points: ".entry NAME(" (".visible .entry" for extern "C" kernels)
    std::string ptx(static_cast<const char*>(image));
    Module* mod = new Module();
    for (size_t at = ptx.find(".entry "); at != std::string::npos; at = ptx.find(".entry ", at + 1)) {
        size_t b = at + 7, e = ptx.find('(', b);
        if (e == std::string::npos) break;
        std::string name = ptx.substr(b, e - b);
        while (!name.empty() && name.back() == ' ') name.pop_back();
        mod->entries.insert(name);
    }
    *m = mod;
    return OK;
}
CUresult cuModuleUnload(Module* m) {
    delete m;
    return OK;
}
CUresult cuModuleGetFunction(Function** f, Module* m, const char* name) {
    if (!m || !m->entries.count(name)) return NOT_FOUND;
    const emu::Kernel* k = emu::find_kernel(name);
    if (!k) {
        fprintf(stderr, "cuda-emu: the PTX defines %s but the emulator has no build of it (rerun build.py)\n", name);
        return NOT_FOUND;
    }
    *f = new Function{k};
    return OK;
}
CUresult cuFuncSetAttribute(Function* f, int attr, int value) {
    if (attr == 8) {  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        if (value < 0 || value > kSmemOptin) return INVALID_VALUE;
        f->max_dyn_smem = value;
    }
    return OK;
}
CUresult cuFuncGetAttribute(int* v, int attr, Function* f) {
    *v = attr == 8 ? f->max_dyn_smem : 0;
    return OK;
}

CUresult cuLaunchKernel(Function* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, Stream*, void** params, void** extra) {
    if (!f) return INVALID_HANDLE;
    if (extra) return INVALID_VALUE;
    if (bx * by * bz > 1024 || bz > 64 || gy > 65535 || gz > 65535 || !gx || !gy || !gz || !bx || !by || !bz) {
        fprintf(stderr, "cuda-emu: %s: invalid launch grid (%u,%u,%u) block (%u,%u,%u)\n", f->kernel->name, gx, gy, gz,
                bx, by, bz);
        return INVALID_VALUE;
    }
    if (int(smem) > f->max_dyn_smem) {
        fprintf(stderr, "cuda-emu: %s: %u bytes of dynamic shared memory, the function's limit is %d\n",
                f->kernel->name, smem, f->max_dyn_smem);
        return LAUNCH_OUT_OF_RESOURCES;
    }
    ++counters.launches;
    std::string err;
    if (!emu::launch(*f->kernel, emu::Dim3{gx, gy, gz}, emu::Dim3{bx, by, bz}, smem, params, &err)) {
        fprintf(stderr, "cuda-emu: launch failed: %s\n", err.c_str());
        return LAUNCH_FAILED;
    }
    return OK;
}

// NVRTC 13 asks a loaded libcuda for its private interfaces; the emulator has none, and NVRTC
// then compiles without them.
CUresult cuGetExportTable(const void** table, const void*) {
    if (table) *table = nullptr;
    return NOT_SUPPORTED;
}

CUresult cuGetErrorString(CUresult r, const char** s) {
    *s = error_text(r).text;
    return OK;
}
CUresult cuGetErrorName(CUresult r, const char** s) {
    *s = error_text(r).name;
    return OK;
}

// Not a driver function: the calling thread's counts since it started, in this order: kernel
// launches, host-to-device copies and bytes, device-to-host copies and bytes, device-to-device
// copies, memsets, host synchronisations (stream, context, event), allocations, frees, event
// records, stream waits on events. Tests find it with dlsym, so they can check what an update
// asks of the driver.
void rtrbm_emu_counters(unsigned long long out[12]) {
    const Counters& c = counters;
    unsigned long long v[12] = {c.launches, c.htod,  c.htod_bytes, c.dtoh,  c.dtoh_bytes, c.dtod,
                                c.memsets,  c.syncs, c.allocs,     c.frees, c.events,     c.waits};
    std::memcpy(out, v, sizeof v);
}

}  // extern "C"
