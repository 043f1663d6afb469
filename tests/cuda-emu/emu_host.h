// emu_host.h: the CUDA emulator's host side: the table of kernels (filled by the generated
// translation units, one per kernel file) and the launch that driver.cpp's cuLaunchKernel calls.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace emu {

struct Kernel {
    const char* name;
    // Calls the kernel with the arguments of a cuLaunchKernel parameter array.
    void (*invoke)(void** params);
    // Copies the argument values a parameter array points at, as the driver does for a launch
    // recorded into a graph: returns the copy and fills `params` with pointers into it.
    std::shared_ptr<void> (*copy_args)(void** params, std::vector<void*>* copy);
};

using CopyArgs = std::shared_ptr<void> (*)(void**, std::vector<void*>*);

struct Registrar {
    Registrar(const char* name, void (*invoke)(void**), CopyArgs copy_args);
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

template <class... A, size_t... I>
std::shared_ptr<void> copy_args_with(void (*)(A...), void** params, std::vector<void*>* copy,
                                     std::index_sequence<I...>) {
    auto vals = std::make_shared<std::tuple<std::remove_cv_t<std::remove_reference_t<A>>...>>(
        *static_cast<std::remove_reference_t<A>*>(params[I])...);
    *copy = std::vector<void*>{static_cast<void*>(&std::get<I>(*vals))...};
    return vals;
}

template <class... A>
std::shared_ptr<void> copy_args(void (*kernel)(A...), void** params, std::vector<void*>* copy) {
    return copy_args_with(kernel, params, copy, std::index_sequence_for<A...>{});
}

}  // namespace emu

// One line per entry point, appended by build.py to each generated translation unit.
#define EMU_KERNEL(name)                                                                            \
    static emu::Registrar emu_registrar_##name(                                                     \
        #name, [](void** p) { emu::invoke(&name, p); },                                              \
        [](void** p, std::vector<void*>* c) { return emu::copy_args(&name, p, c); });
