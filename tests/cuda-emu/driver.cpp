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
// - Stream capture (thread-local mode) records the kernel launches, device-to-device copies and
//   memsets issued to the capturing stream, with copies of the kernels' argument values; a graph
//   launch replays them in order. Like the driver, it refuses to capture the legacy default
//   stream, and a capture fails (and is invalidated) when the capturing thread synchronises,
//   allocates or frees, or copies to or from the host. (The driver can record host copies from
//   page-locked memory and stream-ordered allocations as graph nodes; this project records
//   neither, so the emulator treats them as errors.)
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
constexpr CUresult CAPTURE_UNSUPPORTED = 900;
constexpr CUresult CAPTURE_INVALIDATED = 901;

constexpr int kSms = 132;
constexpr int kSmemOptin = 232448;  // 227 KB, an H100's opt-in maximum per block
constexpr int kSmemDefault = 49152;
constexpr size_t kTotalMem = size_t(80) << 30;

struct Context {
    int device;
};
struct Graph;
struct Stream {
    int id;
    Graph* capture = nullptr;  // the graph being recorded, while a capture is active
    bool invalidated = false;  // an operation failed during the capture
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

// One recorded operation of a graph.
struct Node {
    enum Kind { Kernel, Copy, Memset8, Memset32 } kind;
    const emu::Kernel* kernel = nullptr;
    emu::Dim3 grid{1, 1, 1}, block{1, 1, 1};
    unsigned smem = 0;
    std::shared_ptr<void> args;  // the copied argument values
    std::vector<void*> params;   // pointers into `args`, a cuLaunchKernel parameter array
    CUdeviceptr dst = 0, src = 0;
    size_t n = 0;  // bytes of a copy, elements of a memset
    unsigned value = 0;
};
struct Graph {
    std::vector<Node> nodes;
};
struct GraphExec {
    std::vector<Node> nodes;
};

// What the calling OS thread asked of the driver (a test thread's own work, whatever other
// tests run beside it): read by rtrbm_emu_counters.
struct Counters {
    unsigned long long launches, htod, htod_bytes, dtoh, dtoh_bytes, dtod, memsets, syncs, allocs, frees, events,
        waits, graph_launches;
};
thread_local Counters counters{};
// The stream this thread is capturing (thread-local capture mode), if any.
thread_local Stream* capturing = nullptr;

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
        {CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
         "operation not permitted when stream is capturing (cuda-emu: see its message on stderr)"},
        {CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
         "operation failed due to a previous error during capture"},
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

// An operation the capturing thread may not issue during a capture (thread-local mode): fails the
// capture, as the driver does.
CUresult refuse_in_capture(const char* what) {
    fprintf(stderr, "cuda-emu: %s while this thread captures stream %d: not permitted (capture invalidated)\n", what,
            capturing->id);
    capturing->invalidated = true;
    return CAPTURE_UNSUPPORTED;
}

// A host synchronisation (stream, context or event): counted; refused while this thread captures.
CUresult host_sync(const char* what) {
    if (capturing) return refuse_in_capture(what);
    ++counters.syncs;
    return OK;
}

// Stream operations: recorded when `s` is capturing, otherwise none of this function's business.
bool recording(Stream* s) { return s && s->capture; }

CUresult run_node(const Node& node) {
    switch (node.kind) {
        case Node::Kernel: {
            std::string err;
            void** params = const_cast<void**>(node.params.data());
            if (!emu::launch(*node.kernel, node.grid, node.block, node.smem, params, &err)) {
                fprintf(stderr, "cuda-emu: graph launch failed in %s: %s\n", node.kernel->name, err.c_str());
                return LAUNCH_FAILED;
            }
            return OK;
        }
        case Node::Copy:
            return copy("device-to-device copy (graph node)", reinterpret_cast<void*>(node.dst), true,
                        reinterpret_cast<const void*>(node.src), true, node.n);
        case Node::Memset8:
            if (!check_range("memset (graph node)", uintptr_t(node.dst), node.n)) return INVALID_VALUE;
            std::memset(reinterpret_cast<void*>(node.dst), int(node.value), node.n);
            return OK;
        case Node::Memset32: {
            if (!check_range("memset (graph node)", uintptr_t(node.dst), node.n * 4)) return INVALID_VALUE;
            unsigned* q = reinterpret_cast<unsigned*>(node.dst);
            for (size_t i = 0; i < node.n; ++i) q[i] = node.value;
            return OK;
        }
    }
    return INVALID_VALUE;
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
CUresult cuCtxSynchronize() { return host_sync("cuCtxSynchronize"); }
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
    if (s && s->capture) return INVALID_VALUE;
    delete s;
    return OK;
}
CUresult cuStreamSynchronize(Stream*) { return host_sync("cuStreamSynchronize"); }
CUresult cuStreamQuery(Stream*) { return OK; }
CUresult cuStreamWaitEvent(Stream* s, Event*, unsigned) {
    if (recording(s)) return refuse_in_capture("cuStreamWaitEvent (the emulator records no event nodes)");
    ++counters.waits;
    return OK;
}

CUresult cuEventCreate(Event** e, unsigned) {
    *e = new Event();
    return OK;
}
CUresult cuEventRecord(Event* e, Stream* s) {
    if (recording(s)) return refuse_in_capture("cuEventRecord (the emulator records no event nodes)");
    ++counters.events;
    e->t = std::chrono::steady_clock::now();
    e->recorded = true;
    return OK;
}
CUresult cuEventSynchronize(Event*) { return host_sync("cuEventSynchronize"); }
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

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) {
    if (capturing) return refuse_in_capture("cuMemAlloc");
    return alloc(p, n);
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t n, Stream*) {
    if (capturing) return refuse_in_capture("cuMemAllocAsync");
    return alloc(p, n);
}
CUresult cuMemFree_v2(CUdeviceptr p) {
    if (capturing) return refuse_in_capture("cuMemFree");
    return release(p);
}
CUresult cuMemFreeAsync(CUdeviceptr p, Stream*) {
    if (capturing) return refuse_in_capture("cuMemFreeAsync");
    return release(p);
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* s, size_t n) {
    if (capturing) return refuse_in_capture("a host-to-device copy");
    ++counters.htod;
    counters.htod_bytes += n;
    return copy("host-to-device copy", reinterpret_cast<void*>(d), true, s, false, n);
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, Stream*) { return cuMemcpyHtoD_v2(d, s, n); }
CUresult cuMemcpyDtoH_v2(void* d, CUdeviceptr s, size_t n) {
    if (capturing) return refuse_in_capture("a device-to-host copy");
    ++counters.dtoh;
    counters.dtoh_bytes += n;
    return copy("device-to-host copy", d, false, reinterpret_cast<const void*>(s), true, n);
}
CUresult cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, Stream*) { return cuMemcpyDtoH_v2(d, s, n); }
CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n) {
    if (capturing) return refuse_in_capture("a synchronous device-to-device copy");
    ++counters.dtod;
    return copy("device-to-device copy", reinterpret_cast<void*>(d), true, reinterpret_cast<const void*>(s), true, n);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, Stream* st) {
    if (!recording(st)) {
        ++counters.dtod;
        return copy("device-to-device copy", reinterpret_cast<void*>(d), true, reinterpret_cast<const void*>(s), true,
                    n);
    }
    if (!check_range("device-to-device copy (captured)", uintptr_t(d), n) ||
        !check_range("device-to-device copy (captured)", uintptr_t(s), n)) {
        st->invalidated = true;
        return INVALID_VALUE;
    }
    Node node{Node::Copy};
    node.dst = d;
    node.src = s;
    node.n = n;
    st->capture->nodes.push_back(std::move(node));
    return OK;
}
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) {
    if (capturing) return refuse_in_capture("a synchronous memset");
    return set_bytes(p, v, n);
}
CUresult cuMemsetD32_v2(CUdeviceptr p, unsigned v, size_t n) {
    if (capturing) return refuse_in_capture("a synchronous memset");
    return set_words(p, v, n);
}
static CUresult record_memset(Stream* st, Node::Kind kind, CUdeviceptr p, unsigned v, size_t n, size_t bytes) {
    if (!check_range("memset (captured)", uintptr_t(p), bytes)) {
        st->invalidated = true;
        return INVALID_VALUE;
    }
    Node node{kind};
    node.dst = p;
    node.value = v;
    node.n = n;
    st->capture->nodes.push_back(std::move(node));
    return OK;
}
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, Stream* st) {
    return recording(st) ? record_memset(st, Node::Memset8, p, v, n, n) : set_bytes(p, v, n);
}
CUresult cuMemsetD32Async(CUdeviceptr p, unsigned v, size_t n, Stream* st) {
    return recording(st) ? record_memset(st, Node::Memset32, p, v, n, n * 4) : set_words(p, v, n);
}

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
                        unsigned smem, Stream* st, void** params, void** extra) {
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
    if (recording(st)) {
        Node node{Node::Kernel};
        node.kernel = f->kernel;
        node.grid = emu::Dim3{gx, gy, gz};
        node.block = emu::Dim3{bx, by, bz};
        node.smem = smem;
        node.args = f->kernel->copy_args(params, &node.params);
        st->capture->nodes.push_back(std::move(node));
        return OK;
    }
    ++counters.launches;
    std::string err;
    if (!emu::launch(*f->kernel, emu::Dim3{gx, gy, gz}, emu::Dim3{bx, by, bz}, smem, params, &err)) {
        fprintf(stderr, "cuda-emu: launch failed: %s\n", err.c_str());
        return LAUNCH_FAILED;
    }
    return OK;
}

// Stream capture and graphs (see the file comment). Mode: the driver's thread-local and
// relaxed modes differ only in which calls of other threads they refuse; the emulator checks the
// capturing thread's own calls in either.
CUresult cuStreamBeginCapture_v2(Stream* s, int) {
    if (!s) {
        fprintf(stderr, "cuda-emu: the legacy default stream cannot be captured\n");
        return CAPTURE_UNSUPPORTED;
    }
    if (s->capture || capturing) {
        fprintf(stderr, "cuda-emu: stream %d: a capture is already active on this thread\n", s->id);
        return INVALID_VALUE;
    }
    s->capture = new Graph();
    s->invalidated = false;
    capturing = s;
    return OK;
}
CUresult cuStreamEndCapture(Stream* s, Graph** g) {
    if (!s || !s->capture || capturing != s) return INVALID_VALUE;
    Graph* graph = s->capture;
    s->capture = nullptr;
    capturing = nullptr;
    if (s->invalidated) {
        delete graph;
        *g = nullptr;
        return CAPTURE_INVALIDATED;
    }
    *g = graph;
    return OK;
}
CUresult cuStreamIsCapturing(Stream* s, int* status) {
    *status = !s || !s->capture ? 0 : s->invalidated ? 2 : 1;  // none, active, invalidated
    return OK;
}
CUresult cuGraphInstantiateWithFlags(GraphExec** e, Graph* g, unsigned long long) {
    if (!g) return INVALID_VALUE;
    *e = new GraphExec{g->nodes};
    return OK;
}
CUresult cuGraphUpload(GraphExec* e, Stream*) { return e ? OK : INVALID_VALUE; }
CUresult cuGraphLaunch(GraphExec* e, Stream* s) {
    if (!e) return INVALID_HANDLE;
    if (recording(s)) return refuse_in_capture("cuGraphLaunch (the emulator records no child graphs)");
    ++counters.graph_launches;
    for (const Node& node : e->nodes) {
        CUresult r = run_node(node);
        if (r != OK) return r;
    }
    return OK;
}
CUresult cuGraphExecDestroy(GraphExec* e) {
    delete e;
    return OK;
}
CUresult cuGraphDestroy(Graph* g) {
    delete g;
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
// records, stream waits on events, graph launches (the kernels a graph launch runs are not counted
// as launches: the host issued one operation). Tests find it with dlsym, so they can check what an
// update asks of the driver.
void rtrbm_emu_counters(unsigned long long out[13]) {
    const Counters& c = counters;
    unsigned long long v[13] = {c.launches, c.htod,   c.htod_bytes, c.dtoh,   c.dtoh_bytes,
                                c.dtod,     c.memsets, c.syncs,     c.allocs, c.frees,
                                c.events,   c.waits,   c.graph_launches};
    std::memcpy(out, v, sizeof v);
}

}  // extern "C"
