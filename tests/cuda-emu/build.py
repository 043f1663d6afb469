#!/usr/bin/env python3
"""Builds the CUDA emulator: a libcuda.so.1 for the CPU that runs this project's kernels.

    python3 tests/cuda-emu/build.py [--out target/cuda-emu] [--jobs N]

then, with NVRTC on LD_LIBRARY_PATH as usual:

    LD_LIBRARY_PATH=target/cuda-emu:$LD_LIBRARY_PATH REQUIRE_CUDA=1 cargo test --release --test gpu_kernels

The kernel files, their entry points and the NVRTC -D options are read from
src/backend/cuda.rs (KERNEL_FILES, nvrtc_options), so the emulator compiles exactly the text the
backend hands to NVRTC: kernels/common.cuh + kernels/<file>.cu, behind emu_device.h. The only
rewrite is `extern __shared__ T name[];` -> `T* name = (T*)emu::dyn_smem();` (C++ has no
dynamic shared memory). The PTX that NVRTC produces is still what cuModuleLoadData receives; the
emulator checks that each requested entry point is in it and runs its g++ build.
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def kernel_table(cuda_rs):
    """[(file, [entry points])] from KERNEL_FILES in src/backend/cuda.rs."""
    m = re.search(r"const KERNEL_FILES[^=]*=\s*&\[(.*?)\n\];", cuda_rs, re.S)
    if not m:
        sys.exit("build.py: KERNEL_FILES not found in src/backend/cuda.rs")
    table = []
    for s in re.findall(r'"([^"]+)"', m.group(1)):
        if "/" in s:  # the include_str! path
            continue
        if s.endswith(".cu"):
            table.append((s, []))
        else:
            table[-1][1].append(s)
    return table


def defines(cuda_rs):
    """The -D options of nvrtc_options, with their values resolved from the file's constants."""
    out = []
    for name, const in re.findall(r'format!\("-D(\w+)=\{(\w+)\}"\)', cuda_rs):
        v = re.search(r"const %s\s*:\s*\w+\s*=\s*([0-9_]+)\s*;" % const, cuda_rs)
        if not v:
            sys.exit("build.py: cannot find the value of %s in src/backend/cuda.rs" % const)
        out.append((name, v.group(1).replace("_", "")))
    return out


def translation_unit(file, names, defs, common):
    src = open(os.path.join(ROOT, "kernels", file)).read()
    text = common + "\n// ---- " + file + " ----\n#line 1 \"kernels/" + file + "\"\n" + src
    text, n = re.subn(
        r"extern\s+__shared__\s+([\w\s]+?)\s+(\w+)\s*\[\s*\]\s*;",
        r"\1* \2 = reinterpret_cast<\1*>(emu::dyn_smem());",
        text,
    )
    head = ['#include "emu_device.h"', '#include "emu_host.h"']
    head += ["#define %s %s" % d for d in defs]
    tail = ["EMU_KERNEL(%s)" % name for name in names]
    return "\n".join(head) + "\n#line 1 \"kernels/common.cuh\"\n" + text + "\n" + "\n".join(tail) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "cuda-emu"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    args = ap.parse_args()

    cuda_rs = open(os.path.join(ROOT, "src", "backend", "cuda.rs")).read()
    table, defs = kernel_table(cuda_rs), defines(cuda_rs)
    common = open(os.path.join(ROOT, "kernels", "common.cuh")).read()
    gen = os.path.join(args.out, "gen")
    os.makedirs(gen, exist_ok=True)

    flags = [
        "-std=c++17", "-O2", "-g", "-fPIC", "-fno-strict-aliasing",
        # --fmad=false, as NVRTC is told: a * b + c rounds twice, like the CPU reference
        "-ffp-contract=off", "-fno-fast-math",
        "-Wall", "-Wno-unknown-pragmas", "-Wno-sign-compare", "-Wno-unused-function", "-Wno-unused-variable",
        "-I", HERE,
    ]
    units = []
    for file, names in table:
        path = os.path.join(gen, file.replace(".cu", ".cpp"))
        text = translation_unit(file, names, defs, common)
        if not os.path.exists(path) or open(path).read() != text:
            with open(path, "w") as f:
                f.write(text)
        units.append(path)
    units += [os.path.join(HERE, "emu.cpp"), os.path.join(HERE, "driver.cpp")]

    def compile_one(src):
        obj = os.path.join(gen, os.path.basename(src) + ".o")
        deps = [src, os.path.join(HERE, "emu_device.h"), os.path.join(HERE, "emu_host.h")]
        if os.path.exists(obj) and os.path.getmtime(obj) >= max(os.path.getmtime(d) for d in deps):
            return obj
        r = subprocess.run([args.cxx] + flags + ["-c", src, "-o", obj], capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            raise SystemExit("build.py: %s failed to compile" % src)
        if r.stderr.strip():
            sys.stderr.write(r.stderr)
        return obj

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        objs = list(ex.map(compile_one, units))
    lib = os.path.join(args.out, "libcuda.so.1")
    subprocess.run([args.cxx, "-shared", "-o", lib] + objs + ["-lpthread"], check=True)
    # the emulator's own tests (selftest.cpp), on every build
    selftest = os.path.join(args.out, "selftest")
    test_objs = [compile_one(os.path.join(HERE, f)) for f in ("selftest.cpp", "emu.cpp")]  # emu.cpp: already built
    subprocess.run([args.cxx, "-o", selftest] + test_objs + ["-lpthread"], check=True)
    r = subprocess.run([selftest], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit("build.py: the emulator's selftest failed")
    link = os.path.join(args.out, "libcuda.so")
    if not os.path.islink(link):
        if os.path.exists(link):
            os.remove(link)
        os.symlink("libcuda.so.1", link)
    print("cuda-emu: built %s (%d kernel files, %d entry points; selftest passed)" % (lib, len(table), sum(len(n) for _, n in table)))


if __name__ == "__main__":
    main()
