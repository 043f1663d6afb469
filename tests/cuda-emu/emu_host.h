// emu_host.h: the CUDA emulator's host side: the table of kernels (filled by the generated
// translation units, one per kernel file) and the launch that driver.cpp's cuLaunchKernel calls.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace emu {

struct Kernel {
    const char* name;
    // Calls the kernel with the arguments of a cuLaunchKernel parameter array.
    void (*invoke)(void** params);
};

struct Registrar {
    Registrar(const char* name, void (*invoke)(void**));
};

const Kernel* find_kernel(const char* name);

// Runs every block of the launch on the calling thread; false (and the reason) when a block
// failed: a deadlock, a collective the GPU would leave undefined, __trap().
bool launch(const Kernel& k, Dim3 grid, Dim3 block, size_t smem_bytes, void** params, std::string* error);

// kernel(*(A0*)params[0], *(A1*)params[1], ...): each cuLaunchKernel parameter points at the value
// of the argument, as cudarc pushes them (a device pointer is the 8 bytes of its address).
template <class... A, size_t... I>
void invoke_with(void (*kernel)(A...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<A>*>(params[I])...);
}

template <class... A>
void invoke(void (*kernel)(A...), void** params) {
    invoke_with(kernel, params, std::index_sequence_for<A...>{});
}

}  // namespace emu

// One line per entry point, appended by build.py to each generated translation unit.
#define EMU_KERNEL(name) \
    static emu::Registrar emu_registrar_##name(#name, [](void** p) { emu::invoke(&name, p); });
