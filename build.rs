//! Build script: the CUDA kernels are embedded with `include_str!` and compiled at run time by
//! NVRTC, so nothing here needs nvcc or a GPU; it only asks cargo to rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=build.rs");
}
