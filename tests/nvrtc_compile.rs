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

/// `ptxas`: $PTXAS, else `ptxas` on PATH; None when neither runs.
fn find_ptxas() -> Option<std::path::PathBuf> {
    let candidates: Vec<std::path::PathBuf> =
        std::env::var_os("PTXAS").map(Into::into).into_iter().chain(std::iter::once("ptxas".into())).collect();
    candidates
        .into_iter()
        .find(|p| std::process::Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// Assembles every kernel file's PTX for sm_90 (H100/H200) with `ptxas`, where one is installed
/// (`.ci/run` installs it). NVRTC passes inline PTX (`mma.sync`, `cvt.rn.f16.f32`, `rcp.approx`
/// in kernels/ais_tc.cu) through unchecked; ptxas rejects what the GPU's JIT would reject. Prints
/// each kernel's registers and spills. Skips without ptxas unless REQUIRE_PTXAS=1.
/// `RTRBM_KEEP_PTX=DIR` keeps the PTX and the cubins in DIR.
#[test]
fn ptx_assembles_for_sm_90() {
    let required = std::env::var("REQUIRE_PTXAS").as_deref() == Ok("1");
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        assert!(!required, "REQUIRE_PTXAS=1 needs NVRTC too (LD_LIBRARY_PATH?)");
        eprintln!("SKIPPED: libnvrtc not found");
        return;
    }
    let Some(ptxas) = find_ptxas() else {
        assert!(!required, "REQUIRE_PTXAS=1 but no ptxas (set PTXAS or put it on PATH)");
        eprintln!("SKIPPED: no ptxas (set PTXAS or put it on PATH; REQUIRE_PTXAS=1 makes this fail)");
        return;
    };
    // RTRBM_KEEP_PTX=DIR keeps the PTX and cubins there (for reading the SASS: `cuobjdump -sass`)
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("RTRBM_KEEP_PTX").map(std::path::PathBuf::from);
    let dir = dir.as_deref().unwrap_or(tmp.path());
    std::fs::create_dir_all(dir).unwrap();
    for (file, ptx) in rtrbm::backend::cuda::all_ptx("compute_90").unwrap() {
        let path = dir.join(format!("{file}.ptx"));
        std::fs::write(&path, &ptx).unwrap();
        let out = std::process::Command::new(&ptxas)
            .args(["-arch=sm_90", "-v", "-o"])
            .arg(dir.join(format!("{file}.cubin")))
            .arg(&path)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ptxas rejected the PTX of kernels/{file}:\n{log}");
        let mut kernel = String::new();
        for line in log.lines() {
            if let Some(rest) = line.split("Compiling entry function '").nth(1) {
                kernel = rest.split('\'').next().unwrap_or("").to_string();
            } else if line.contains("spill stores") && !line.contains(" 0 bytes spill stores") {
                eprintln!("{file}: {kernel}: {}", line.trim());
            } else if let Some(rest) = line.split("Used ").nth(1) {
                eprintln!("{file}: {kernel}: {}", rest.trim());
            }
        }
    }
}
