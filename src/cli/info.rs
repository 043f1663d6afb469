//! `rtrbm info`: version, backends compiled in, CUDA libraries and devices.

pub fn run() -> anyhow::Result<()> {
    println!("rtrbm {}", env!("CARGO_PKG_VERSION"));
    println!("backends: cpu{}", if cfg!(feature = "cuda") { ", cuda (NVRTC, loaded at run time)" } else { "" });
    println!("cpu threads available: {}", super::device::default_threads());
    cuda_info();
    Ok(())
}

#[cfg(feature = "cuda")]
fn cuda_info() {
    use crate::backend::cuda;
    match cuda::device_info() {
        Ok(s) => println!("gpu 0: {s}"),
        Err(e) => println!("cuda: not usable here: {e}"),
    }
    // Compile every kernel for the device's architecture (or compute_90 without a GPU) to show
    // that NVRTC works here.
    let compiled = match cuda::Cuda::new(0) {
        Ok(_) => Ok("compiled and loaded on gpu 0".to_string()),
        Err(_) => cuda::compile_all_ptx("compute_90")
            .map(|_| "compiled by NVRTC for compute_90 (no GPU to load them)".to_string()),
    };
    match compiled {
        Ok(how) => {
            println!("kernels ({how}):");
            for (file, names) in cuda::kernel_inventory() {
                println!("  kernels/{file}: {}", names.join(", "));
            }
        }
        Err(e) => println!("kernels: not compiled here: {e}"),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_info() {
    println!("cuda: not compiled in");
}
