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
    match crate::backend::cuda::device_info() {
        Ok(s) => println!("{s}"),
        Err(e) => println!("cuda: not usable here: {e}"),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_info() {
    println!("cuda: not compiled in");
}
