//! Compiles every CUDA kernel file with NVRTC for compute_90 (H100/H200), no GPU needed.
//! Skips (with a message) when libnvrtc is absent, unless REQUIRE_NVRTC=1.
#![cfg(feature = "cuda")]

#[test]
fn all_kernels_compile_for_compute_90() {
    let present = unsafe { cudarc::nvrtc::sys::is_culib_present() };
    if !present {
        if std::env::var("REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("REQUIRE_NVRTC=1 but libnvrtc was not found (LD_LIBRARY_PATH?)");
        }
        eprintln!(
            "SKIPPED: libnvrtc not found (set LD_LIBRARY_PATH to an NVRTC lib folder; REQUIRE_NVRTC=1 makes this fail)"
        );
        return;
    }
    match rtrbm::backend::cuda::compile_all_ptx("compute_90") {
        Ok(files) => {
            assert!(!files.is_empty());
            for (file, bytes) in &files {
                eprintln!("{file}: {bytes} bytes of PTX");
                assert!(*bytes > 0, "{file}: empty PTX");
            }
        }
        Err(e) => panic!("{e}"),
    }
}
