//! The CUDA backend: every [`Backend`] op runs a kernel of `kernels/` (compiled at run time with
//! NVRTC for the device's compute capability), on one stream of one device, in f32.
//!
//! CUDA is loaded dynamically (cudarc `dynamic-loading`): a machine without libcuda or libnvrtc
//! builds and runs the CPU backend, and [`Cuda::new`] says what is missing instead of panicking.
//! `kernels/common.cuh` (Philox, sigmoid, softplus, shared-memory helpers) is prepended to each
//! `.cu` file; each file becomes one module, and the loaded functions are cached by name.
//! Kernels are compiled with `--fmad=false` so elementwise arithmetic rounds like the CPU
//! reference (the gemm kernels use explicit `fmaf`).
//!
//! **Packed models.** [`Cuda::packed`] gives a backend holding P models of the same shapes in
//! every buffer (P slabs, model-major; see the `backend` module comment). Every kernel takes the
//! model index p from a grid dimension (blockIdx.y, or blockIdx.z for the gemm kernels, whose y
//! indexes output rows) and the slab stride of each buffer argument; it moves each pointer by
//! p * stride and then runs the lone arithmetic, so a model computes in a pack exactly what it
//! computes alone (same kernels, same split-K plan, same Philox indices). Lengths checked by the
//! operations are per slab. Per-model values (Gibbs keys, SGD hyper-parameters, scale factors)
//! go to the kernels as small device arrays (null for a lone model, which passes them as
//! scalars), cached while the host values do not change.
//!
//! **Recorded updates.** [`Backend::begin_recording`] captures the stream's work into a CUDA graph
//! (thread-local capture mode) and [`Backend::replay`] launches it: a training update of a given
//! shape is then one graph launch instead of ~45 kernel launches and copies. Launch arguments are
//! frozen in a graph, so the one value that changes between updates of the same shape, the Gibbs
//! keys (they hold the update number), is read from a device array written before each replay
//! ([`Backend::stage_gibbs_keys`]). While recording, nothing may allocate, upload or synchronise:
//! the backend's own scratch and argument copies refuse to grow (an error, not a graph that holds
//! a freed buffer), and every replacement of such a buffer starts a new
//! [`Backend::recording_generation`], after which older graphs are not replayed. Each `Cuda` has
//! a stream of its own (created, not the legacy default stream, which cannot be captured).

use super::{check_models, check_tensor_lists, Backend, Dims, Mat, SgdHyper};
use crate::error::{Error, Result};
use crate::rng::RngKey;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The common header, prepended to every kernel file.
const COMMON: &str = include_str!("../../kernels/common.cuh");

/// Kernel files: (file name, source, entry points).
const KERNEL_FILES: &[(&str, &str, &[&str])] = &[
    (
        "linalg.cu",
        include_str!("../../kernels/linalg.cu"),
        &[
            "gemm_f32",
            "gemm_f32_rb",
            "gemm_splitk_reduce",
            "broadcast_rows",
            "sum_rows",
            "sum_rows_blocks",
            "sum_rows_finish",
            "fill_f32",
            "scale_f32",
            "copy_f32",
            "sum_squares_partial",
            "gather_frames",
            "clip_factors",
        ],
    ),
    (
        "rbm.cu",
        include_str!("../../kernels/rbm.cu"),
        &[
            "hidden_probs",
            "cd_stats",
            "gibbs_chain",
            "gibbs_marginals",
            "free_energy",
            "test_uniforms",
            "gibbs_chain_v2_r1",
            "gibbs_chain_v2_r2",
            "gibbs_chain_v2_r3",
            "gibbs_chain_v2_r4",
            "gibbs_chain_v2_r5",
            "gibbs_chain_v2_r6",
            "gibbs_chain_v2_r7",
            "gibbs_chain_v2_r8",
            "gibbs_marginals_v2_r1",
            "gibbs_marginals_v2_r2",
            "gibbs_marginals_v2_r3",
            "gibbs_marginals_v2_r4",
            "gibbs_marginals_v2_r5",
            "gibbs_marginals_v2_r6",
            "gibbs_marginals_v2_r7",
            "gibbs_marginals_v2_r8",
            "hidden_probs_v2_r1",
            "hidden_probs_v2_r2",
            "hidden_probs_v2_r3",
            "hidden_probs_v2_r4",
            "hidden_probs_v2_r5",
            "hidden_probs_v2_r6",
            "hidden_probs_v2_r7",
            "hidden_probs_v2_r8",
            "cd_stats_v2_r1",
            "cd_stats_v2_r2",
            "cd_stats_v2_r3",
            "cd_stats_v2_r4",
            "cd_stats_v2_r5",
            "cd_stats_v2_r6",
            "cd_stats_v2_r7",
            "cd_stats_v2_r8",
        ],
    ),
    (
        "recurrent.cu",
        include_str!("../../kernels/recurrent.cu"),
        &[
            "rtrbm_forward",
            "rtrbm_backward",
            "rnn_forward",
            "rnn_backward",
            "rtrbm_forward_v2",
            "rtrbm_backward_v2",
            "rnn_forward_v2",
            "rnn_backward_v2",
        ],
    ),
    (
        "lstm.cu",
        include_str!("../../kernels/lstm.cu"),
        &[
            "lstm_forward",
            "lstm_backward",
            "lstm_dpeep_reduce",
            "lstm_forward_v2",
            "lstm_backward_v2",
            "lstm_forward_rw_k8",
            "lstm_forward_rw_k12",
            "lstm_backward_rw_k44",
            "lstm_rtrbm_forward_k0",
            "lstm_rtrbm_forward_k8",
            "lstm_rtrbm_forward_k12",
            "lstm_rtrbm_backward_k0",
            "lstm_rtrbm_backward_k44",
        ],
    ),
    ("optim.cu", include_str!("../../kernels/optim.cu"), &["sgd_momentum", "sgd_momentum_multi"]),
    (
        "ais.cu",
        include_str!("../../kernels/ais.cu"),
        &[
            "ais_chains",
            "ais_chains_v2_r1",
            "ais_chains_v2_r2",
            "ais_chains_v2_r3",
            "ais_chains_v2_r4",
            "ais_chains_v2_r5",
            "ais_chains_v2_r6",
            "ais_chains_v2_r7",
            "ais_chains_v2_r8",
        ],
    ),
    (
        "ais_tc.cu",
        include_str!("../../kernels/ais_tc.cu"),
        &[
            "ais_chains_tc_n2",
            "ais_chains_tc_n4",
            "ais_chains_tc_n6",
            "ais_chains_tc_n8",
            "ais_chains_tc_n10",
            "ais_chains_tc_n11",
            "ais_chains_tc_n12",
            "ais_chains_tc_n14",
            "ais_chains_tc_n16",
            "gibbs_chain_tc_n2",
            "gibbs_chain_tc_n4",
            "gibbs_chain_tc_n6",
            "gibbs_chain_tc_n8",
            "gibbs_chain_tc_n10",
            "gibbs_chain_tc_n11",
            "gibbs_chain_tc_n12",
            "gibbs_chain_tc_n14",
            "gibbs_chain_tc_n16",
        ],
    ),
];

/// Kernel files compiled on first use rather than when the backend opens: the tensor-core AIS
/// kernels are large unrolled code (about 10 s of NVRTC on a 2-core CI machine) that
/// only an AIS needs.
const LAZY_FILES: &[&str] = &["ais_tc.cu"];

/// Kernels that use dynamic shared memory (their limit is raised to the device's opt-in maximum).
const DYN_SMEM_KERNELS: &[&str] = &[
    "gibbs_chain",
    "gibbs_marginals",
    "ais_chains",
    "rtrbm_forward",
    "rtrbm_backward",
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "rtrbm_forward_v2",
    "rtrbm_backward_v2",
    "rnn_forward_v2",
    "rnn_backward_v2",
    "lstm_forward_v2",
    "lstm_backward_v2",
    "lstm_rtrbm_forward_k0",
    "lstm_rtrbm_forward_k8",
    "lstm_rtrbm_forward_k12",
    "lstm_rtrbm_backward_k0",
    "lstm_rtrbm_backward_k44",
];

/// Chains (warps) per block of the v1 chain kernels (gibbs_chain, gibbs_marginals, ais_chains).
const CHAINS_PER_BLOCK: usize = 4;
/// Chains (warps) per block of the v2 chain kernels (`*_v2_r{R}`), which share one staged W.
const CHAINS_PER_BLOCK_V2: usize = 8;
/// The largest R (units per lane: V, H <= 32 R) with a v2 chain kernel.
const V2_MAX_R: usize = 8;
/// Warps per block of `ais_chains_tc_n{NT}` (16 chains each; the kernels' launch bounds say 256
/// threads).
const TC_WARPS: usize = 8;
/// The tile counts (8 units each) with an `ais_chains_tc_n{NT}` kernel.
const TC_TILES: &[usize] = &[2, 4, 6, 8, 10, 11, 12, 14, 16];
/// What the device name says when AIS runs on tensor cores.
const TC_TAG: &str = ", AIS on tensor cores";
/// Threads of the elementwise kernels, and the most blocks of a grid-stride launch.
const THREADS: u32 = 256;
const MAX_BLOCKS: usize = 4096;
/// Blocks of the sum-of-squares reduction.
const SSQ_BLOCKS: usize = 256;
/// `GemmPath::Auto` uses the register-blocked gemm from this many multiply-adds (m n k) on.
const GEMM_RB_MIN_MACS: usize = 1 << 24;
/// The k-slice of every gemm's summation order (`GEMM_KC` in kernels/linalg.cu; a multiple of
/// both kernels' k-tiles).
const GEMM_KC: usize = 128;

/// Rows (warps) per block of `hidden_probs_v2_r{R}` and `cd_stats_v2_r{R}`.
const HIDDEN_ROWS_PER_BLOCK: usize = 8;

/// The row blocks of `sum_rows`' summation order (`SUM_ROWS_BLOCK` in kernels/linalg.cu), the
/// CPU's [`super::cpu::SUM_ROWS_BLOCK`] (a literal here: tests/cuda-emu/build.py reads it).
const SUM_ROWS_BLOCK: usize = 64;
const _: () = assert!(SUM_ROWS_BLOCK == super::cpu::SUM_ROWS_BLOCK);
/// Warps of a `sum_rows` block (`SR_WARPS` in kernels/linalg.cu): each adds one row block a
/// round; with more row blocks than this, `sum_rows` takes the two-launch path.
const SUM_ROWS_WARPS: usize = 16;
/// Most SGD tensor tables a backend keeps (one per trainer sharing it).
const SGD_TABLES: usize = 16;

/// Most floats of split-K scratch a gemm may use (64 MB); beyond, its slices run in one block.
const SPLITK_MAX_FLOATS: usize = 1 << 24;
/// Block tile of `gemm_f32_rb` (rows = cols) and its k-tile.
const GEMM_RB_TILE: usize = 64;
const GEMM_RB_BK: usize = 16;
const _: () =
    assert!(GEMM_KC.is_multiple_of(GEMM_RB_BK) && GEMM_KC.is_multiple_of(16), "a k-slice must be whole k-tiles");
/// Most models of one pack: the model index is a grid dimension (y or z), at most 65535 blocks.
const MAX_GRID_YZ: usize = 65535;
/// A null device pointer, pushed for an absent optional buffer argument.
static NULL_PTR: u64 = 0;

/// Which AIS kernel [`Backend::ais`] runs on CUDA (`RTRBM_KERNELS`; [`Cuda::with_ais_kernel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AisKernel {
    /// `ais_chains`: one warp per chain, plain dot products (`RTRBM_KERNELS=v1` or `chain-v1`).
    V1,
    /// `ais_chains_v2_r{R}`: one warp per chain, ballot words, sums over the ON units only
    /// (`RTRBM_KERNELS=ais-v2`; where the tensor-core kernel does not apply).
    V2,
    /// `ais_chains_tc_n{NT}` (kernels/ais_tc.cu): 16 chains per warp, both products on tensor
    /// cores, the default (`RTRBM_KERNELS=ais-v2` opts out). Needs compute capability 8.0, V and H
    /// multiples of 4 and at most 128, and bias slabs of even length (packed buffers); otherwise
    /// V2 runs, as it does for the whole process when the kernels fail to compile (compiled by
    /// the first AIS that uses them, or when the backend opens under `RTRBM_KERNELS=ais-tc`).
    /// Measured on an H100 (docs/GPU.md, sixth run): 1.6e9 chain-steps/s, 1.9x v2.
    TensorCore,
}

/// The device time of one kernel over the launches a [`Cuda::with_kernel_profile`] backend made.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    pub kernel: String,
    pub launches: usize,
    /// Sum over the launches of the time between an event recorded just before the launch and
    /// one just after it, on the launch's stream: the kernel's run time, plus the launch latency
    /// when the GPU sat idle waiting for the host to issue it.
    pub total_ms: f64,
}

/// Event pairs of profiled launches (folded into totals in batches, since reading an event
/// waits for it) and the totals by kernel.
#[derive(Default)]
struct KernelProfile {
    pending: Vec<(String, CudaEvent, CudaEvent)>,
    totals: HashMap<String, (usize, f64)>,
}

impl KernelProfile {
    /// Reads and folds the pending event pairs (waits for them).
    fn fold(&mut self) -> Result<()> {
        for (name, start, end) in self.pending.drain(..) {
            let ms = drv("reading a profiling event", start.elapsed_ms(&end))?;
            let t = self.totals.entry(name).or_default();
            t.0 += 1;
            t.1 += ms as f64;
        }
        Ok(())
    }
}

/// The AIS kernel a launch runs, with its layout ([`Cuda::ais_plan`]).
enum AisPlan {
    /// `ais_chains_tc_n{nt}`, `smem` bytes of staged operands.
    TensorCore { nt: usize, smem: u32 },
    /// `ais_chains_v2_r{r}`, W staged with row stride `ldw`.
    V2 { r: usize, ldw: i32, smem: u32 },
    /// `ais_chains` (layout from `Cuda::w_layout`).
    V1,
}

impl AisPlan {
    fn name(&self) -> String {
        match self {
            AisPlan::TensorCore { nt, .. } => format!("ais_chains_tc_n{nt}"),
            AisPlan::V2 { r, .. } => format!("ais_chains_v2_r{r}"),
            AisPlan::V1 => "ais_chains".into(),
        }
    }
}

/// Which gemm kernel [`Cuda::gemm_with`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    /// `gemm_f32_rb` from `GEMM_RB_MIN_MACS` multiply-adds on, `gemm_f32` below (what
    /// [`Backend::gemm`] does).
    Auto,
    /// `gemm_f32`: 16x16 tiles, one output per thread.
    Simple,
    /// `gemm_f32_rb`: 64x64 tiles, 4x4 outputs per thread, split-K when the output has fewer
    /// tiles than the device has SMs.
    Blocked,
    /// `gemm_f32_rb` with one block per output tile walking all of k (never split-K).
    BlockedUnsplit,
}

fn nvrtc_options(arch: &str) -> cudarc::nvrtc::CompileOptions {
    cudarc::nvrtc::CompileOptions {
        fmad: Some(false),
        use_fast_math: None,
        options: vec![
            format!("--gpu-architecture={arch}"),
            "-lineinfo".to_string(),
            "--std=c++14".to_string(),
            // the gemm summation order's k-slice, from its one definition
            format!("-DGEMM_KC={GEMM_KC}"),
            format!("-DSUM_ROWS_BLOCK={SUM_ROWS_BLOCK}"),
        ],
        ..Default::default()
    }
}

/// Whether libnvrtc can be loaded (without it no kernel compiles, on a GPU or on the emulator
/// of tests/cuda-emu).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library; no symbol is called.
    std::panic::catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library; no symbol is called.
    std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false)
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Compiles one kernel file (common header prepended) to PTX; the error names the file and
/// carries the whole NVRTC log.
fn compile_file(file: &str, src: &str, arch: &str) -> Result<cudarc::nvrtc::Ptx> {
    let full = format!("{COMMON}\n// ---- {file} ----\n{src}");
    let mut opts = nvrtc_options(arch);
    opts.name = Some(file.to_string());
    let res = std::panic::catch_unwind(|| cudarc::nvrtc::compile_ptx_with_opts(&full, opts))
        .map_err(|p| Error::Cuda(format!("NVRTC panicked compiling {file}: {}", panic_text(p))))?;
    res.map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { nvrtc, options, log } => Error::Cuda(format!(
            "NVRTC failed to compile kernels/{file} ({nvrtc:?}, options {options:?}):\n{}",
            log.to_string_lossy()
        )),
        other => Error::Cuda(format!("NVRTC failed on kernels/{file}: {other:?}")),
    })
}

/// Compiles every kernel file with NVRTC only (no driver, no GPU) for `arch` (e.g.
/// `compute_90`) and checks that its PTX defines every entry point the backend loads from it
/// (a misspelt or missing kernel fails here, not first on a GPU): returns (file, PTX bytes).
/// Used by the `nvrtc_compile` test.
pub fn compile_all_ptx(arch: &str) -> Result<Vec<(String, usize)>> {
    Ok(all_ptx(arch)?.into_iter().map(|(file, ptx)| (file, ptx.len())).collect())
}

/// The PTX text of every kernel file for `arch`, checked as [`compile_all_ptx`] does: (file,
/// PTX). The `nvrtc_compile` test hands it to `ptxas` (where one is installed), which assembles
/// the inline PTX (`mma.sync`) that NVRTC passes through unchecked.
pub fn all_ptx(arch: &str) -> Result<Vec<(String, String)>> {
    if !nvrtc_present() {
        return Err(Error::Cuda("libnvrtc not found (install the CUDA toolkit or `pip install nvidia-cuda-nvrtc`, and put its lib folder on LD_LIBRARY_PATH)".into()));
    }
    let mut out = vec![];
    for (file, src, names) in KERNEL_FILES {
        let ptx = compile_file(file, src, arch)?.to_src();
        let missing: Vec<&str> = names.iter().copied().filter(|n| !ptx.contains(&format!(".entry {n}("))).collect();
        if !missing.is_empty() {
            return Err(Error::Cuda(format!("kernels/{file}: no entry point {missing:?} in its PTX")));
        }
        out.push((file.to_string(), ptx));
    }
    Ok(out)
}

fn nvrtc_version() -> Option<(i32, i32)> {
    if !nvrtc_present() {
        return None;
    }
    let (mut a, mut b) = (0i32, 0i32);
    // SAFETY: the library is present; nvrtcVersion writes two ints through valid pointers.
    let r = std::panic::catch_unwind(move || {
        let rc = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut a, &mut b) };
        (rc, a, b)
    })
    .ok()?;
    (r.0 == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS).then_some((r.1, r.2))
}

/// Device name, compute capability, driver and NVRTC versions and SM count of device 0, for
/// `rtrbm info`.
pub fn device_info() -> Result<String> {
    let nvrtc = match nvrtc_version() {
        Some((a, b)) => format!("{a}.{b}"),
        None => "not found".into(),
    };
    if !driver_present() {
        return Err(Error::Cuda(format!("libcuda not found (no NVIDIA driver); NVRTC {nvrtc}")));
    }
    let info = std::panic::catch_unwind(|| -> Result<String> {
        let ctx = CudaContext::new(0).map_err(|e| Error::Cuda(format!("cannot open device 0: {e:?}")))?;
        let name = ctx.name().map_err(|e| Error::Cuda(format!("{e:?}")))?;
        let (ma, mi) = ctx.compute_capability().map_err(|e| Error::Cuda(format!("{e:?}")))?;
        let sms = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| Error::Cuda(format!("{e:?}")))?;
        let mut drv = 0i32;
        // SAFETY: the driver library is loaded (a context exists); writes one int.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut drv) };
        let mem = ctx.total_mem().unwrap_or(0);
        Ok(format!(
            "{name}: compute capability {ma}.{mi}, {sms} SMs, {:.1} GiB, driver CUDA {}.{}, NVRTC {nvrtc}",
            mem as f64 / (1u64 << 30) as f64,
            drv / 1000,
            (drv % 1000) / 10
        ))
    })
    .map_err(|p| Error::Cuda(format!("CUDA initialisation panicked: {}", panic_text(p))))?;
    info
}

/// The CUDA backend (f32). See the module comment.
pub struct Cuda {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// The loaded kernels by name (shared by forks and packings).
    funcs: Arc<HashMap<&'static str, CudaFunction>>,
    /// The kernels of LAZY_FILES, compiled by the first launch that needs one (shared by forks
    /// and packings); the error of a failed compile is kept and returned to every caller.
    lazy: Arc<OnceLock<std::result::Result<HashMap<&'static str, CudaFunction>, String>>>,
    name: String,
    /// Most dynamic shared memory a block of the chain/recurrent kernels may use, in bytes.
    smem_limit: usize,
    /// `RTRBM_KERNELS=v1` or `chain-v1`: use the first chain kernels (gibbs_chain,
    /// gibbs_marginals, ais_chains) even where a v2 kernel applies (for A/B timing).
    kernels_v1: bool,
    /// `RTRBM_KERNELS=v1` or `rec-v1`: use the sequential recurrent kernels (rtrbm_forward, ...,
    /// lstm_backward) instead of the split-K `*_v2` ones (for A/B timing).
    rec_v1: bool,
    /// The AIS kernel (the tensor-core one unless `RTRBM_KERNELS=ais-v2`, `v1` or `chain-v1`).
    ais_kernel: AisKernel,
    /// `RTRBM_KERNELS=gibbs-tc`: binary Gibbs chains on tensor cores (`gibbs_chain_tc_n{NT}`,
    /// opt-in until measured on a GPU) where they apply, else v2.
    gibbs_tc: bool,
    /// `RTRBM_KERNELS=rec-regs`: the LSTM forward and backward with each lane's terms of Wl in
    /// registers (`lstm_forward_rw_k{K}`, `lstm_backward_rw_k{K}`, opt-in until measured on a
    /// GPU) where they apply, else v2.
    rec_regs: bool,
    /// `RTRBM_KERNELS=fused-fwd`: LSTM-RTRBM's forward recurrences in one launch, the RTRBM
    /// following the LSTM frame by frame (`lstm_rtrbm_forward_k{K}`, opt-in until measured on a
    /// GPU) where it applies, else the LSTM, a gemm and the RTRBM one after another.
    fused_fwd: bool,
    /// `RTRBM_KERNELS=fused-bwd`: LSTM-RTRBM's backward recurrences in one launch, the LSTM
    /// following the RTRBM frame by frame (`lstm_rtrbm_backward_k{K}`, opt-in until measured on
    /// a GPU) where it applies, else the RTRBM, a gemm and the LSTM one after another.
    fused_bwd: bool,
    /// Compute capability (major, minor).
    cc: (i32, i32),
    /// Per-kernel timing (`RTRBM_PROFILE=1`, [`Cuda::with_kernel_profile`]), shared by forks and
    /// packings; None: launches record no events.
    profile: Option<Arc<Mutex<KernelProfile>>>,
    /// Streaming multiprocessors (sizes the split-K of `gemm_f32_rb`).
    sm_count: usize,
    /// Split-K partial sums of `gemm_f32_rb`, grown on demand and reused (stream-ordered, so
    /// one buffer serves every launch).
    splitk: Mutex<Option<CudaSlice<f32>>>,
    /// Scratch buffers grown on demand as `splitk` (boxed: keeps `Cuda` small).
    scratch: Box<Scratch>,
    /// Models packed into every buffer and launch (1 for a lone model; see [`Cuda::packed`]).
    models: usize,
    /// Device copies of the per-model arguments of packed launches (boxed: keeps `Cuda` small).
    args: Box<Mutex<ArgCache>>,
    /// Most blocks a launch may have in grid z (the device's 65535; lowered by tests to make
    /// the blocked gemm launch a pack's models in groups).
    grid_z: usize,
    /// Whether the stream is being recorded, and the generation of the backend's own buffers.
    rec: RecState,
}

/// The recording state of a [`Cuda`] (see the module comment, "Recorded updates").
#[derive(Default)]
struct RecState {
    /// Between `begin_recording` and `end_recording`.
    active: AtomicBool,
    /// Bumped whenever a buffer of the backend's own (scratch, per-model argument copies) is
    /// allocated or replaced: a graph recorded before may hold the old one.
    generation: AtomicU64,
}

impl RecState {
    /// An error while recording: `what` would allocate or upload inside the graph.
    fn not_recording(&self, what: &str) -> Result<()> {
        if self.active.load(Ordering::Relaxed) {
            return Err(Error::Cuda(format!(
                "{what} would allocate or upload while an update is being recorded as a CUDA graph \
                 (run the update of this shape once without recording first)"
            )));
        }
        Ok(())
    }

    /// Called before (re)allocating one of the backend's own buffers: an error while recording
    /// (the allocation would happen inside the graph, and graphs recorded earlier may still hold
    /// the buffer it replaces), otherwise a new generation.
    fn replacing(&self, what: &str) -> Result<()> {
        self.not_recording(what)?;
        self.generation.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A recorded sequence of a [`Cuda`]'s operations: a CUDA graph and its executable instance.
pub struct CudaRecording(cudarc::driver::CudaGraph);

// SAFETY: a CUDA graph may be used from any thread, but not from two at once (it is not
// internally synchronised). A `CudaRecording` is only replayed through `&self` of the trainer
// that owns it, which is itself used by one thread at a time (`Trainer` is not `Sync`-shared).
unsafe impl Send for CudaRecording {}

/// The per-model arguments of the last packed launches, as (host values bit for bit, device
/// copy): reused while the host values do not change. Replacing a copy frees the old one
/// stream-ordered, after the launches that read it.
#[derive(Default)]
struct ArgCache {
    /// Gibbs keys: (seed, stream) of each model, 2P u64.
    keys: Option<(Vec<u64>, CudaSlice<u64>)>,
    /// AIS keys, the same layout (a slot of their own, so that AIS validation does not evict the
    /// training's Gibbs keys; cost validation's Gibbs keys share the Gibbs slot).
    ais_keys: Option<(Vec<u64>, CudaSlice<u64>)>,
    /// SGD hyper-parameters: (lr, momentum, weight_decay) of each model, 3P f32.
    hyper: Option<(Vec<u64>, CudaSlice<f32>)>,
    /// The tensor tables of `sgd_momentum_multi`, one per set of buffers (trainers sharing this
    /// backend each keep theirs; at most SGD_TABLES, the oldest dropped first): per tensor the
    /// param, grad and vel addresses, the slab length and the three slab strides (7 u64).
    sgd_tables: Vec<(Vec<u64>, CudaSlice<u64>)>,
    /// The Gibbs keys a recorded `gibbs` reads ([`Backend::stage_gibbs_keys`]): each model's seed
    /// and stream, 2P u64, rewritten in place before every replay.
    staged_keys: Option<(Vec<u64>, CudaSlice<u64>)>,
    /// Scale factors, P f32.
    scale: Option<(Vec<u64>, CudaSlice<f32>)>,
    /// Clipping thresholds, P f64 (also for a lone model: `clip_factors` reads them).
    clip: Option<(Vec<u64>, CudaSlice<f64>)>,
    /// `clip_grad_norm` scratch: the partial sums of every gradient tensor and the factors,
    /// reused while the sizes stay.
    clip_partials: Option<CudaSlice<f64>>,
    clip_factors: Option<CudaSlice<f32>>,
    /// The spans of the last `gather_frames`, 2PB u32 (rewritten by every call, reused while
    /// the size stays).
    spans: Option<CudaSlice<u32>>,
}

/// The device copy of `vals` in `slot`, uploaded again only when `sig` (the values' bits)
/// differs from the cached one. `recordable`: a recording may hold the copy (SGD and clipping
/// arguments), so replacing it starts a new recording generation; the Gibbs and AIS keys of
/// direct launches are never recorded (a recorded `gibbs` reads the staged keys).
fn cached<'a, T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    rec: &RecState,
    recordable: bool,
    slot: &'a mut Option<(Vec<u64>, CudaSlice<T>)>,
    sig: Vec<u64>,
    vals: &[T],
) -> Result<&'a CudaSlice<T>> {
    if slot.as_ref().is_none_or(|(s, _)| *s != sig) {
        let what = "uploading per-model launch arguments";
        if recordable {
            rec.replacing(what)?;
        } else {
            rec.not_recording(what)?;
        }
        let dev = drv("upload per-model launch arguments", stream.clone_htod(vals))?;
        *slot = Some((sig, dev));
    }
    slot.as_ref().map(|(_, d)| d).ok_or_else(|| Error::Cuda("per-model argument cache is empty".into()))
}

/// The Philox keys of a launch (`gibbs_chain*`, `ais_chains*`): model 0's seed and stream as the
/// scalar arguments, and for the `keys` array every model's seed and the offset of its stream from
/// model 0's (`model_key` in `common.cuh` adds it, wrapping). A lone model passes the scalars
/// only; the models of a pack in lockstep differ only in their seeds, so the array stays the same
/// from update to update and is uploaded once.
fn key_args(rng: &[RngKey]) -> (u64, u32, Vec<u64>) {
    let (seed, stream) = (rng[0].seed, rng[0].stream);
    (seed, stream, rng.iter().flat_map(|k| [k.seed, k.stream.wrapping_sub(stream) as u64]).collect())
}

/// The SGD hyper-parameters of `sgd_momentum*` for a pack: (lr, momentum, weight_decay) of each
/// model as 3P floats, and their bits (the argument cache's signature).
fn hyper_vals(hyper: &[SgdHyper<f32>]) -> (Vec<f32>, Vec<u64>) {
    let vals: Vec<f32> = hyper.iter().flat_map(|h| [h.lr, h.momentum, h.weight_decay]).collect();
    let sig = vals.iter().map(|x| x.to_bits() as u64).collect();
    (vals, sig)
}

/// Every model's seed and stream, 2P u64: the staged keys of a recorded `gibbs` (the `keys`
/// array with a stream argument of 0).
fn absolute_keys(rng: &[RngKey]) -> Vec<u64> {
    rng.iter().flat_map(|k| [k.seed, k.stream as u64]).collect()
}

/// Pushes `buf`, or a null pointer when it is absent.
fn arg_opt<'a, T>(lb: &mut cudarc::driver::LaunchArgs<'a>, buf: Option<&'a CudaSlice<T>>) {
    match buf {
        Some(b) => {
            lb.arg(b);
        }
        None => {
            lb.arg(&NULL_PTR);
        }
    }
}

fn drv<T>(what: &str, r: std::result::Result<T, cudarc::driver::DriverError>) -> Result<T> {
    r.map_err(|e| Error::Cuda(format!("{what}: {e:?}")))
}

fn grid_for(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

fn i32_of(what: &str, x: usize) -> Result<i32> {
    i32::try_from(x).map_err(|_| Error::Shape(format!("{what} = {x} exceeds the kernels' 32-bit sizes")))
}

fn check(name: &str, len: usize, need: usize) -> Result<()> {
    if len < need {
        return Err(Error::Shape(format!("{name}: buffer has {len} elements, operation needs {need}")));
    }
    Ok(())
}

/// Odd row stride for a matrix staged in shared memory.
fn odd(cols: usize) -> usize {
    cols | 1
}

impl Cuda {
    /// Opens device `ordinal`, compiles every kernel for its compute capability and loads them.
    /// Returns `Error::Cuda` (never panics) when libcuda or libnvrtc is missing or anything fails.
    pub fn new(ordinal: usize) -> Result<Cuda> {
        if !driver_present() {
            return Err(Error::Cuda(
                "libcuda (the NVIDIA driver library) was not found: no GPU backend on this machine".into(),
            ));
        }
        if !nvrtc_present() {
            return Err(Error::Cuda(
                "libnvrtc was not found: install the CUDA toolkit's NVRTC (or `pip install nvidia-cuda-nvrtc`) and put its lib folder on LD_LIBRARY_PATH".into(),
            ));
        }
        std::panic::catch_unwind(|| Self::open(ordinal))
            .map_err(|p| Error::Cuda(format!("CUDA initialisation panicked: {}", panic_text(p))))?
    }

    fn open(ordinal: usize) -> Result<Cuda> {
        let ctx = drv(&format!("opening CUDA device {ordinal}"), CudaContext::new(ordinal))?;
        // SAFETY: a `Cuda` launches and copies on its one stream only, and its buffers are used
        // by that `Cuda` alone, so cross-stream event tracking is not needed; every launch and
        // copy is ordered on that stream and downloads synchronise it. A `fork` gets its own
        // stream (ordered after the parent's queued work) and its own buffers.
        unsafe { ctx.disable_event_tracking() };
        // a stream of its own: the legacy default stream cannot be recorded into a graph
        let stream = drv("creating a CUDA stream", ctx.new_stream())?;
        let (major, minor) = drv("compute capability", ctx.compute_capability())?;
        let arch = format!("compute_{major}{minor}");
        let optin = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .unwrap_or(48 * 1024)
            .max(48 * 1024) as usize;
        let mut funcs = HashMap::new();
        for (file, src, names) in KERNEL_FILES.iter().filter(|(f, _, _)| !LAZY_FILES.contains(f)) {
            let ptx = compile_file(file, src, &arch)?;
            let module = drv(&format!("loading module {file} ({arch})"), ctx.load_module(ptx))?;
            for &n in names.iter() {
                let f = drv(&format!("loading kernel {n} from {file}"), module.load_function(n))?;
                funcs.insert(n, f);
            }
        }
        // Raise the dynamic shared memory limit of the kernels that stage matrices; keep 48 KiB
        // (always allowed) if the device refuses.
        let mut smem_limit = optin - 1024; // headroom for static shared memory
        let v2_names: Vec<&'static str> = funcs.keys().copied().filter(|n| n.contains("_v2_r")).collect();
        for &n in DYN_SMEM_KERNELS.iter().chain(v2_names.iter()) {
            let ok = funcs[n]
                .set_attribute(
                    cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    smem_limit as i32,
                )
                .is_ok();
            if !ok {
                smem_limit = 48 * 1024;
            }
        }
        let name = drv("device name", ctx.name())?;
        let sm_count = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .unwrap_or(1)
            .max(1) as usize;
        let choice = std::env::var("RTRBM_KERNELS").unwrap_or_default();
        let choice: Vec<&str> = choice.split(',').map(str::trim).collect();
        let kernels_v1 = choice.iter().any(|&c| c == "v1" || c == "chain-v1");
        let rec_v1 = choice.iter().any(|&c| c == "v1" || c == "rec-v1");
        let ais_kernel = if kernels_v1 {
            AisKernel::V1
        } else if choice.contains(&"ais-v2") {
            AisKernel::V2
        } else {
            AisKernel::TensorCore
        };
        let tag = match (kernels_v1, rec_v1) {
            (true, true) => ", kernels v1",
            (true, false) => ", chain kernels v1",
            (false, true) => ", recurrent kernels v1",
            (false, false) => "",
        };
        let gibbs_tc = !kernels_v1 && choice.contains(&"gibbs-tc");
        let rec_regs = !rec_v1 && choice.contains(&"rec-regs");
        let tc = ais_kernel == AisKernel::TensorCore && major >= 8;
        let gtag = if gibbs_tc && major >= 8 { ", Gibbs on tensor cores" } else { "" };
        let rtag = if rec_regs { ", LSTM weights in registers" } else { "" };
        let fused_fwd = !rec_v1 && choice.contains(&"fused-fwd");
        let fused_bwd = !rec_v1 && choice.contains(&"fused-bwd");
        let ftag = match (fused_fwd, fused_bwd) {
            (true, true) => ", fused LSTM-RTRBM forward and backward",
            (true, false) => ", fused LSTM-RTRBM forward",
            (false, true) => ", fused LSTM-RTRBM backward",
            (false, false) => "",
        };
        let tag = format!("{tag}{}{gtag}{rtag}{ftag}", if tc { TC_TAG } else { "" });
        let mut cuda = Cuda {
            ctx,
            stream,
            funcs: Arc::new(funcs),
            lazy: Arc::default(),
            name: format!("{name} (sm_{major}{minor}, f32{tag})"),
            smem_limit,
            kernels_v1,
            rec_v1,
            ais_kernel,
            gibbs_tc,
            rec_regs,
            fused_fwd,
            fused_bwd,
            cc: (major, minor),
            profile: (std::env::var("RTRBM_PROFILE").as_deref() == Ok("1")).then(Arc::default),
            sm_count,
            splitk: Mutex::new(None),
            scratch: Box::default(),
            models: 1,
            args: Box::default(),
            grid_z: MAX_GRID_YZ,
            rec: RecState::default(),
        };
        if tc && choice.contains(&"ais-tc") && !cuda.tc_ready() {
            // asked for by name: compiled now (so that no timed AIS pays for it); without them
            // AIS runs v2 rather than the whole backend failing
            cuda = cuda.with_ais_kernel(AisKernel::V2);
        }
        Ok(cuda)
    }

    /// A second backend on the same device, context and compiled kernels, with its own
    /// non-blocking stream (ordered after the work already queued on this one): independent
    /// models driven from different threads then overlap on the GPU. Buffers must stay with the
    /// backend that made them (no cross-stream synchronisation is done). The fork packs as
    /// many models as this backend.
    pub fn fork(&self) -> Result<Cuda> {
        let stream = drv("creating a CUDA stream", self.stream.fork())?;
        Ok(self.with_stream(stream, self.models))
    }

    /// A backend that packs `models` models of the same shapes into every buffer and launch
    /// (the `backend` module comment describes the layout), on this backend's device, context,
    /// compiled kernels and STREAM, so its work is ordered with this backend's. `packed(1)` is a
    /// lone backend. Buffers must stay with the backend (the packing) that made them.
    pub fn packed(&self, models: usize) -> Result<Cuda> {
        if models == 0 || models > MAX_GRID_YZ {
            return Err(Error::msg(format!("cannot pack {models} models on CUDA (1..={MAX_GRID_YZ})")));
        }
        Ok(self.with_stream(self.stream.clone(), models))
    }

    fn with_stream(&self, stream: Arc<CudaStream>, models: usize) -> Cuda {
        Cuda {
            ctx: self.ctx.clone(),
            stream,
            funcs: self.funcs.clone(),
            lazy: self.lazy.clone(),
            name: self.name.clone(),
            smem_limit: self.smem_limit,
            kernels_v1: self.kernels_v1,
            rec_v1: self.rec_v1,
            ais_kernel: self.ais_kernel,
            gibbs_tc: self.gibbs_tc,
            rec_regs: self.rec_regs,
            fused_fwd: self.fused_fwd,
            fused_bwd: self.fused_bwd,
            cc: self.cc,
            profile: self.profile.clone(),
            sm_count: self.sm_count,
            splitk: Mutex::new(None),
            scratch: Box::default(),
            models,
            args: Box::default(),
            grid_z: self.grid_z,
            rec: RecState::default(),
        }
    }

    /// This backend with the first chain kernels (`gibbs_chain`, `gibbs_marginals`,
    /// `hidden_probs`) where a v2 one would apply, as `RTRBM_KERNELS=chain-v1` (tests and A/B;
    /// AIS follows [`Cuda::with_ais_kernel`]).
    pub fn with_chain_kernels_v1(mut self, on: bool) -> Cuda {
        self.kernels_v1 = on;
        self
    }

    /// This backend with binary Gibbs chains on tensor cores where they apply (as
    /// `RTRBM_KERNELS=gibbs-tc`; tests and A/B timing).
    pub fn with_gibbs_tc(mut self, on: bool) -> Cuda {
        self.gibbs_tc = on;
        self
    }

    /// This backend with the LSTM's weights in registers where that applies (as
    /// `RTRBM_KERNELS=rec-regs`; tests and A/B timing).
    pub fn with_rec_regs(mut self, on: bool) -> Cuda {
        self.rec_regs = on;
        self
    }

    /// This backend with LSTM-RTRBM's forward recurrences in one launch where that applies (as
    /// `RTRBM_KERNELS=fused-fwd`; tests and A/B timing).
    pub fn with_fused_forward(mut self, on: bool) -> Cuda {
        self.fused_fwd = on;
        self
    }

    /// This backend with LSTM-RTRBM's backward recurrences in one launch where that applies (as
    /// `RTRBM_KERNELS=fused-bwd`; tests and A/B timing).
    pub fn with_fused_backward(mut self, on: bool) -> Cuda {
        self.fused_bwd = on;
        self
    }

    /// This backend with the blocked gemm's launches limited to `z` blocks in grid z (at least 1;
    /// a launch still holds one model's split-K slices): it then launches a pack's models in
    /// smaller groups. For tests of that path; the default is the device limit.
    pub fn with_grid_z_limit(mut self, z: usize) -> Cuda {
        self.grid_z = z.clamp(1, MAX_GRID_YZ);
        self
    }

    /// This backend (and its forks and packings) with every launch timed by a pair of CUDA
    /// events, per kernel name ([`Cuda::kernel_profile`]); `RTRBM_PROFILE=1` turns it on for a
    /// whole process. The events cost a few microseconds per launch: for finding where the time
    /// goes, not for benchmark figures.
    pub fn with_kernel_profile(mut self) -> Cuda {
        self.profile = Some(Arc::default());
        self
    }

    /// The per-kernel device times so far, the longest first (waits for the recorded launches);
    /// None when profiling is off.
    pub fn kernel_profile(&self) -> Result<Option<Vec<KernelTime>>> {
        let Some(prof) = &self.profile else { return Ok(None) };
        let mut p = prof.lock().unwrap_or_else(|e| e.into_inner());
        p.fold()?;
        let mut out: Vec<KernelTime> = p
            .totals
            .iter()
            .map(|(k, &(launches, total_ms))| KernelTime { kernel: k.clone(), launches, total_ms })
            .collect();
        out.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then(a.kernel.cmp(&b.kernel)));
        Ok(Some(out))
    }

    /// Forgets the profile so far (after warm-up, say); waits for the recorded launches.
    pub fn reset_kernel_profile(&self) -> Result<()> {
        if let Some(prof) = &self.profile {
            let mut p = prof.lock().unwrap_or_else(|e| e.into_inner());
            p.fold()?;
            p.totals.clear();
        }
        Ok(())
    }

    /// [`launch`], between two timing events when profiling is on.
    fn launch(&self, lb: &mut cudarc::driver::LaunchArgs<'_>, cfg: LaunchConfig, name: &str) -> Result<()> {
        let Some(prof) = &self.profile else { return launch(lb, cfg, name) };
        let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = drv("recording a profiling event", self.stream.record_event(timing))?;
        launch(lb, cfg, name)?;
        let end = drv("recording a profiling event", self.stream.record_event(timing))?;
        let mut p = prof.lock().unwrap_or_else(|e| e.into_inner());
        p.pending.push((name.to_string(), start, end));
        if p.pending.len() >= 4096 {
            p.fold()?;
        }
        Ok(())
    }

    /// This backend with AIS run by `kernel` (tests and A/B timing; `RTRBM_KERNELS` sets the
    /// default). A kernel that does not apply to a launch's shapes or device falls back as
    /// [`AisKernel`] says.
    pub fn with_ais_kernel(mut self, kernel: AisKernel) -> Cuda {
        self.ais_kernel = kernel;
        self.name = self.name.replace(TC_TAG, "");
        if kernel == AisKernel::TensorCore {
            if let Some(i) = self.name.rfind(')') {
                self.name.insert_str(i, TC_TAG);
            }
        }
        self
    }

    /// The kernel [`Backend::ais`] launches for V = nv, H = nh on this backend (for tests and
    /// the benchmark table), for bias buffers whose slabs start 8-byte aligned (a packed bias
    /// buffer with an odd slab length makes `ais` fall back from the tensor-core kernel to v2).
    pub fn ais_kernel_name(&self, nv: usize, nh: usize) -> String {
        self.ais_plan(nv, nh, true).name()
    }

    /// The AIS kernel for V = nv, H = nh and its layout: the tensor-core one if chosen and it
    /// applies (`slabs_even`: the bias slabs start 8-byte aligned, as its float2 loads need),
    /// else v2 unless AIS runs v1, else v1.
    fn ais_plan(&self, nv: usize, nh: usize, slabs_even: bool) -> AisPlan {
        if let Some((nt, smem)) = self.tc_layout(nv, nh).filter(|_| slabs_even) {
            return AisPlan::TensorCore { nt, smem };
        }
        if self.ais_kernel != AisKernel::V1 {
            if let Some((r, ldw, smem)) = self.v2_shape(nv, nh, nv.max(nh) + 8) {
                return AisPlan::V2 { r, ldw, smem };
            }
        }
        AisPlan::V1
    }

    /// Whether the tensor-core kernels (ais_tc.cu: AIS and the opt-in Gibbs chains) are loaded:
    /// compiles them on the first call (large unrolled code, compiled only when a launch needs
    /// them); when that fails, warns once and every later call says no, so v2 runs instead.
    fn tc_ready(&self) -> bool {
        let first = self.lazy.get().is_none();
        match self.lazy_func(&format!("ais_chains_tc_n{}", TC_TILES[0])) {
            Ok(_) => true,
            Err(e) => {
                if first {
                    eprintln!("warning: the tensor-core kernels (kernels/ais_tc.cu) are unavailable ({e}); AIS and Gibbs run v2");
                }
                false
            }
        }
    }

    /// Whether per-model slabs with these strides (elements) start 8-byte aligned, as the
    /// tensor-core kernels' float2 loads of biases and samples need (a lone model always does).
    fn slabs_even(&self, strides: &[i64]) -> bool {
        self.models == 1 || strides.iter().all(|p| p % 2 == 0)
    }

    /// The launch of a tensor-core kernel over `chains` chains: 16 per warp, TC_WARPS warps per
    /// block, the models in grid y.
    fn tc_cfg(&self, chains: usize, smem: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (chains.div_ceil(16 * TC_WARPS) as u32, self.models as u32, 1),
            block_dim: (32, TC_WARPS as u32, 1),
            shared_mem_bytes: smem,
        }
    }

    /// `gibbs_chain_v2`'s layout for V = nv, H = nh (see [`Cuda::v2_layout`]).
    fn gibbs_v2_layout(&self, nv: usize, nh: usize) -> Option<(usize, i32, u32)> {
        self.v2_layout(nv, nh, nv.max(nh) + 8 + nv)
    }

    /// The tensor-core Gibbs kernel for V = nv, H = nh, if it is chosen and applies (`even`: the
    /// slabs of v and the biases start 8-byte aligned): (NT, shared-memory bytes).
    fn gibbs_tc_plan(&self, nv: usize, nh: usize, gaussian: bool, even: bool) -> Option<(usize, u32)> {
        (!gaussian && self.gibbs_tc && even).then(|| self.tc_tiles(nv, nh)).flatten()
    }

    /// The kernel [`Backend::gibbs`] launches for binary visibles, V = nv, H = nh, on this backend
    /// (tests; aligned slabs assumed, as [`Cuda::ais_kernel_name`] does).
    pub fn gibbs_kernel_name(&self, nv: usize, nh: usize) -> String {
        match self.gibbs_tc_plan(nv, nh, false, true) {
            Some((nt, _)) => format!("gibbs_chain_tc_n{nt}"),
            None => match self.gibbs_v2_layout(nv, nh) {
                Some((r, _, _)) => format!("gibbs_chain_v2_r{r}"),
                None => "gibbs_chain".into(),
            },
        }
    }

    /// The tensor-core AIS kernel for V = nv, H = nh, if it applies: (NT, shared-memory bytes).
    fn tc_layout(&self, nv: usize, nh: usize) -> Option<(usize, u32)> {
        if self.ais_kernel != AisKernel::TensorCore {
            return None;
        }
        self.tc_tiles(nv, nh)
    }

    /// The tensor-core kernels' layout for V = nv, H = nh (ais_tc.cu: compute capability 8.0, V
    /// and H multiples of 4, both operands in shared memory), compiling them on first use:
    /// (NT, shared-memory bytes), or None.
    fn tc_tiles(&self, nv: usize, nh: usize) -> Option<(usize, u32)> {
        if self.cc.0 < 8 || !nv.is_multiple_of(4) || !nh.is_multiple_of(4) || nv == 0 || nh == 0 {
            return None;
        }
        let need = nv.max(nh).div_ceil(8);
        let nt = *TC_TILES.iter().find(|&&t| t >= need)?;
        // both B operands, hi and lo: KT x NT tiles of 32 lanes x 16 bytes each
        let bytes = 2 * nt.div_ceil(2) * nt * 32 * 16;
        (bytes <= self.smem_limit && self.tc_ready()).then_some((nt, bytes as u32))
    }

    /// Elements of one model's slab of `buf` (its per-model length).
    fn slab(&self, buf: &CudaSlice<f32>) -> usize {
        buf.len() / self.models
    }

    /// The slab stride of `buf` in elements, as a kernel argument.
    fn ps(&self, buf: &CudaSlice<f32>) -> i64 {
        self.slab(buf) as i64
    }

    /// `grid_for(n)` with one row of blocks per model (model index = blockIdx.y).
    fn grid(&self, n: usize) -> LaunchConfig {
        let mut cfg = grid_for(n);
        cfg.grid_dim.1 = self.models as u32;
        cfg
    }

    /// The device copy of per-model values for a launch (held in `slot` while the caller holds
    /// the cache lock); None for a lone model, whose kernels take the scalars instead.
    /// Launches `rtrbm_backward` or `rnn_backward` (`kernels/recurrent.cu`), which share their
    /// arguments and grid: the recurrent weights `w` `[n,n]`, the states `[T+1,B,n]`, the
    /// gradient arriving from outside the recurrence `[T,B,n]` and the result `[T,B,n]`, one
    /// block per sequence. `labels` name the four buffers in length errors; `(letter, n)` is the
    /// state width and its letter (H or U).
    #[allow(clippy::too_many_arguments)]
    fn recurrent_backward(
        &self,
        name: &'static str,
        labels: [&str; 4],
        w: &CudaSlice<f32>,
        states: &CudaSlice<f32>,
        outside: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        d: Dims,
        (letter, n): (&str, usize),
    ) -> Result<()> {
        let (t, b) = (d.t, d.b);
        check(labels[0], self.slab(w), n * n)?;
        check(labels[1], self.slab(states), (t + 1) * b * n)?;
        check(labels[2], self.slab(outside), d.n() * n)?;
        check(labels[3], self.slab(out), d.n() * n)?;
        if d.n() * n == 0 {
            return Ok(());
        }
        let (kname, split, cfg, w_sh, ldw) = self.rec_launch(name, b, n, n, (n, n, 2 * n), Walk::Rows)?;
        let (ti, bi, ni) = (i32_of("T", t)?, i32_of("B", b)?, i32_of(letter, n)?);
        let (w_ps, s_ps, o_ps, out_ps) = (self.ps(w), self.ps(states), self.ps(outside), self.ps(out));
        let f = self.func(&kname)?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(w).arg(states).arg(outside).arg(out).arg(&ti).arg(&bi).arg(&ni).arg(&w_sh).arg(&ldw);
        if let Some(s) = &split {
            lb.arg(s);
        }
        lb.arg(&w_ps).arg(&s_ps).arg(&o_ps).arg(&out_ps);
        self.launch(&mut lb, cfg, &kname)
    }

    /// The device array of a packed launch's per-model values (None for a lone model, which
    /// passes them as scalars); `recordable` as in [`cached`].
    fn per_model<'a, T: DeviceRepr>(
        &self,
        recordable: bool,
        slot: &'a mut Option<(Vec<u64>, CudaSlice<T>)>,
        sig: Vec<u64>,
        vals: &[T],
    ) -> Result<Option<&'a CudaSlice<T>>> {
        if self.models == 1 {
            return Ok(None);
        }
        cached(&self.stream, &self.rec, recordable, slot, sig, vals).map(Some)
    }

    fn arg_cache(&self) -> Result<std::sync::MutexGuard<'_, ArgCache>> {
        self.args.lock().map_err(|_| Error::Cuda("per-model argument cache: lock poisoned".into()))
    }

    fn func(&self, name: &str) -> Result<&CudaFunction> {
        self.funcs.get(name).ok_or_else(|| Error::Cuda(format!("kernel {name} is not loaded")))
    }

    /// A kernel of LAZY_FILES: compiles and loads those files on the first call (with the
    /// dynamic shared-memory limit of the staging kernels raised to `smem_limit`).
    fn lazy_func(&self, name: &str) -> Result<&CudaFunction> {
        let loaded = self.lazy.get_or_init(|| {
            let load = || -> Result<HashMap<&'static str, CudaFunction>> {
                let arch = format!("compute_{}{}", self.cc.0, self.cc.1);
                let mut funcs = HashMap::new();
                for (file, src, names) in KERNEL_FILES.iter().filter(|(f, _, _)| LAZY_FILES.contains(f)) {
                    let ptx = compile_file(file, src, &arch)?;
                    let module = drv(&format!("loading module {file} ({arch})"), self.ctx.load_module(ptx))?;
                    for &n in names.iter() {
                        let f = drv(&format!("loading kernel {n} from {file}"), module.load_function(n))?;
                        drv(
                            &format!("raising the shared-memory limit of {n}"),
                            f.set_attribute(
                                cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                self.smem_limit as i32,
                            ),
                        )?;
                        funcs.insert(n, f);
                    }
                }
                Ok(funcs)
            };
            load().map_err(|e| e.to_string())
        });
        match loaded {
            Ok(funcs) => funcs.get(name).ok_or_else(|| Error::Cuda(format!("kernel {name} is not loaded"))),
            Err(e) => Err(Error::Cuda(e.clone())),
        }
    }

    /// Split-K of `gemm_f32_rb` for an m x n x k product: (splits, kc). Every gemm path sums an
    /// output as the fold of its k-slices of GEMM_KC (kernels/linalg.cu), so the plan changes no
    /// bits: it only decides whether the slices run as blocks of their own (kc = GEMM_KC, then
    /// reduced in slice order) or one after another in one block (splits = 1, kc = k). Split when
    /// the launch has fewer blocks (tiles x models) than the device has SMs and k spans at least
    /// 2 slices, unless the scratch would exceed SPLITK_MAX_FLOATS.
    fn splitk_plan(&self, m: usize, n: usize, k: usize) -> (usize, usize) {
        let tiles = m.div_ceil(GEMM_RB_TILE) * n.div_ceil(GEMM_RB_TILE);
        let slices = k.div_ceil(GEMM_KC);
        let group = (self.grid_z / slices.max(1)).clamp(1, self.models);
        if tiles * self.models < self.sm_count && slices > 1 && group * slices * m * n <= SPLITK_MAX_FLOATS {
            (slices, GEMM_KC)
        } else {
            (1, k.max(1))
        }
    }

    /// [`Backend::gemm`] with a chosen kernel (`GemmPath::Auto` is what `gemm` does); the
    /// other paths exist so that tests cover both kernels at every size.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_with(
        &self,
        path: GemmPath,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: Mat<'_, CudaSlice<f32>>,
        b: Mat<'_, CudaSlice<f32>>,
        beta: f32,
        c: &mut CudaSlice<f32>,
        c_off: usize,
    ) -> Result<()> {
        check("gemm A", self.slab(a.buf), a.offset + m * k)?;
        check("gemm B", self.slab(b.buf), b.offset + k * n)?;
        check("gemm C", self.slab(c), c_off + m * n)?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        let (mi, ni, ki) = (i32_of("gemm m", m)?, i32_of("gemm n", n)?, i32_of("gemm k", k)?);
        let (ao, bo, co) = (a.offset as i64, b.offset as i64, c_off as i64);
        let (at, bt) = (a.trans as i32, b.trans as i32);
        let (a_ps, b_ps, c_ps) = (self.ps(a.buf), self.ps(b.buf), self.ps(c));
        // grid y holds the row tiles (at most 65535): 16 rows each in gemm_f32, 64 in gemm_f32_rb
        if m.div_ceil(GEMM_RB_TILE) > MAX_GRID_YZ {
            return Err(Error::msg(format!(
                "gemm: {m} rows exceed the CUDA grid's limit of {} (fewer frames per update)",
                MAX_GRID_YZ * GEMM_RB_TILE
            )));
        }
        let blocked = match path {
            GemmPath::Simple => false,
            GemmPath::Blocked | GemmPath::BlockedUnsplit => true,
            GemmPath::Auto => m.saturating_mul(n).saturating_mul(k) >= GEMM_RB_MIN_MACS || m.div_ceil(16) > MAX_GRID_YZ,
        };
        if !blocked && m.div_ceil(16) > MAX_GRID_YZ {
            return Err(Error::msg(format!("gemm_f32: {m} rows exceed the grid's limit of {}", MAX_GRID_YZ * 16)));
        }
        if !blocked {
            // grid z = model
            let f = self.func("gemm_f32")?;
            let mut lb = self.stream.launch_builder(f);
            lb.arg(&mi).arg(&ni).arg(&ki).arg(&alpha);
            lb.arg(a.buf).arg(&ao).arg(&at).arg(b.buf).arg(&bo).arg(&bt);
            lb.arg(&beta).arg(c).arg(&co);
            lb.arg(&a_ps).arg(&b_ps).arg(&c_ps);
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(16) as u32, m.div_ceil(16) as u32, self.models as u32),
                block_dim: (16, 16, 1),
                shared_mem_bytes: 0,
            };
            return self.launch(&mut lb, cfg, "gemm_f32");
        }
        // No plan changes the bits (see splitk_plan), so a packed model sums as it sums alone.
        // Grid z = model * splits + slice; when a pack's models x splits exceed the grid's z
        // limit, the models go in groups (launches whose offsets start at the group's first
        // model), which changes no model's arithmetic either.
        let (splits, kc) = if path == GemmPath::BlockedUnsplit { (1, k.max(1)) } else { self.splitk_plan(m, n, k) };
        let kci = i32_of("gemm kc", kc)?;
        let si = splits as i32;
        let group = (self.grid_z / splits).clamp(1, self.models);
        let f = self.func("gemm_f32_rb")?;
        // scratch: one group's models x splits slices of m x n
        let mut scratch = if splits > 1 {
            Some(self.grown(&self.splitk, group * splits * m * n, "gemm split-K scratch")?)
        } else {
            None
        };
        for first in (0..self.models).step_by(group) {
            let g = group.min(self.models - first);
            let (ao, bo, co) = (ao + first as i64 * a_ps, bo + first as i64 * b_ps, co + first as i64 * c_ps);
            let grid = (n.div_ceil(GEMM_RB_TILE) as u32, m.div_ceil(GEMM_RB_TILE) as u32, (g * splits) as u32);
            let cfg = LaunchConfig { grid_dim: grid, block_dim: (16, 16, 1), shared_mem_bytes: 0 };
            let Some(guard) = scratch.as_mut() else {
                let mut lb = self.stream.launch_builder(f);
                lb.arg(&mi).arg(&ni).arg(&ki).arg(&kci).arg(&si).arg(&alpha);
                lb.arg(a.buf).arg(&ao).arg(&at).arg(b.buf).arg(&bo).arg(&bt);
                lb.arg(&beta).arg(&mut *c).arg(&co).arg(&NULL_PTR);
                lb.arg(&a_ps).arg(&b_ps).arg(&c_ps);
                self.launch(&mut lb, cfg, "gemm_f32_rb")?;
                continue;
            };
            let part = guard.as_mut().ok_or_else(|| Error::Cuda("gemm split-K scratch missing".into()))?;
            {
                let mut lb = self.stream.launch_builder(f);
                lb.arg(&mi).arg(&ni).arg(&ki).arg(&kci).arg(&si).arg(&alpha);
                lb.arg(a.buf).arg(&ao).arg(&at).arg(b.buf).arg(&bo).arg(&bt);
                lb.arg(&beta).arg(&mut *c).arg(&co).arg(&mut *part);
                lb.arg(&a_ps).arg(&b_ps).arg(&c_ps);
                self.launch(&mut lb, cfg, "gemm_f32_rb")?;
            }
            let fr = self.func("gemm_splitk_reduce")?;
            let mut lb = self.stream.launch_builder(fr);
            lb.arg(&mi).arg(&ni).arg(&si).arg(&*part).arg(&alpha).arg(&beta).arg(&mut *c).arg(&co).arg(&c_ps);
            let mut rcfg = self.grid(m * n);
            rcfg.grid_dim.1 = g as u32;
            self.launch(&mut lb, rcfg, "gemm_splitk_reduce")?;
        }
        Ok(())
    }

    /// The uniforms of `counter` at indices `first .. first + n`, drawn on the GPU by the same
    /// Philox code as every kernel (for bit-identity tests against `RngKey::fill_uniform`).
    pub fn uniforms(&self, rng: RngKey, counter: u32, first: u32, n: usize) -> Result<Vec<f32>> {
        let mut out = drv("alloc uniforms", self.stream.alloc_zeros::<f32>(n.max(1)))?;
        let n_i = i32_of("n", n)?;
        let f = self.func("test_uniforms")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(&rng.seed).arg(&rng.stream).arg(&counter).arg(&first).arg(&n_i).arg(&mut out);
        // SAFETY: argument types match the kernel signature; `out` holds n elements.
        self.launch(&mut lb, grid_for(n), "test_uniforms")?;
        let mut v = drv("download uniforms", self.stream.clone_dtoh(&out))?;
        drv("synchronize", self.stream.synchronize())?;
        v.truncate(n);
        Ok(v)
    }

    /// The compute capability's shared-memory budget for one block of a chain kernel: (use W in
    /// shared memory, ldw, bytes).
    fn w_layout(&self, rows: usize, cols: usize, per_block_extra: usize) -> (i32, i32, u32) {
        let ldw = odd(cols);
        let w_bytes = rows * ldw * 4;
        if w_bytes + per_block_extra <= self.smem_limit {
            (1, ldw as i32, (w_bytes + per_block_extra) as u32)
        } else {
            (0, cols as i32, per_block_extra as u32)
        }
    }

    /// The v2 chain kernel for V = nv, H = nh, if one applies: (R, ldw, shared-memory bytes per
    /// block of CHAINS_PER_BLOCK_V2 warps, with `per_warp` floats per warp besides the staged W).
    /// None under RTRBM_KERNELS=v1, when max(V, H) > 32 V2_MAX_R, or when W does not fit.
    fn v2_layout(&self, nv: usize, nh: usize, per_warp: usize) -> Option<(usize, i32, u32)> {
        if self.kernels_v1 {
            return None;
        }
        self.v2_shape(nv, nh, per_warp)
    }

    /// [`Cuda::v2_layout`] whatever RTRBM_KERNELS says (AIS follows `ais_kernel` instead).
    fn v2_shape(&self, nv: usize, nh: usize, per_warp: usize) -> Option<(usize, i32, u32)> {
        if nv == 0 || nh == 0 {
            return None;
        }
        let r = nv.max(nh).div_ceil(32);
        if r > V2_MAX_R {
            return None;
        }
        let ldw = odd(nh);
        let bytes = (nv * ldw + CHAINS_PER_BLOCK_V2 * per_warp) * 4;
        (bytes <= self.smem_limit).then_some((r, ldw as i32, bytes as u32))
    }

    fn check_smem(&self, what: &str, bytes: u32) -> Result<()> {
        if bytes as usize > self.smem_limit {
            return Err(Error::Cuda(format!(
                "{what}: needs {bytes} bytes of shared memory per block, the device allows {}",
                self.smem_limit
            )));
        }
        Ok(())
    }

    /// Threads per block for the per-sequence recurrent kernels: units rounded up to a warp,
    /// at most 256 (units beyond are strided).
    fn rec_threads(units: usize) -> u32 {
        (units.div_ceil(32) * 32).clamp(32, 256) as u32
    }

    /// A scratch buffer of the backend's own (`splitk`, `scratch.sumrows`, `scratch.flags`),
    /// locked and holding at least `need` floats: grown (a new allocation, so recordings that
    /// hold the old one are made again) when shorter, else reused as it is (stream-ordered: one
    /// buffer serves every launch).
    fn grown<'a>(
        &self,
        slot: &'a Mutex<Option<CudaSlice<f32>>>,
        need: usize,
        what: &str,
    ) -> Result<std::sync::MutexGuard<'a, Option<CudaSlice<f32>>>> {
        let mut guard = slot.lock().map_err(|_| Error::Cuda(format!("{what}: lock poisoned")))?;
        if guard.as_ref().is_none_or(|p| p.len() < need) {
            self.rec.replacing(&format!("growing the {what}"))?;
            *guard = Some(drv(&format!("alloc {what}"), self.stream.alloc_zeros::<f32>(need))?);
        }
        Ok(guard)
    }

    /// The kernel and launch of `hidden_probs` or `cd_stats` (`base`) for N rows of V visibles
    /// and H hiddens: `{base}_v2_r{R}` (kernels/rbm.cu: one warp per row, nonzero visibles only,
    /// the same bits), unless RTRBM_KERNELS=v1 or max(V, H) > 32 V2_MAX_R; then `{base}` with one
    /// thread per element of its `elems`-element grid-stride loop.
    fn row_kernel(&self, base: &str, n: usize, nv: usize, nh: usize, elems: usize) -> (String, LaunchConfig) {
        let r = nv.max(nh).div_ceil(32);
        if self.kernels_v1 || r > V2_MAX_R {
            return (base.to_string(), self.grid(elems));
        }
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(HIDDEN_ROWS_PER_BLOCK) as u32, self.models as u32, 1),
            block_dim: (32, HIDDEN_ROWS_PER_BLOCK as u32, 1),
            shared_mem_bytes: 0,
        };
        (format!("{base}_v2_r{r}"), cfg)
    }

    /// The register-weights LSTM forward (`lstm_forward_rw_k{K}`) for U units, when
    /// `RTRBM_KERNELS=rec-regs` asks for it and it applies: the split S and block of the v2
    /// forward ([`rec_split`]), one pass (U <= blockDim / S), at most 768 threads (its launch
    /// bound) and ceil(U / S) <= K for K in 8, 12 (4K registers of W per thread). Returns K.
    fn lstm_forward_rw_plan(&self, nu: usize) -> Option<usize> {
        if !self.rec_regs || self.rec_v1 {
            return None;
        }
        let (s, threads) = rec_split(nu, nu);
        let one_pass = nu <= threads as usize / s;
        let k = [8, 12].into_iter().find(|&k| nu.div_ceil(s) <= k)?;
        (one_pass && threads <= 768).then_some(k)
    }

    /// The register-weights LSTM backward (`lstm_backward_rw_k{K}`) for U units, as
    /// [`Cuda::lstm_forward_rw_plan`]: the v2 backward's split S and block (`rec_split(U, 4U)`),
    /// one pass, at most 704 threads (88 registers each) and ceil(4U / S) <= 44. Returns K = 44.
    fn lstm_backward_rw_plan(&self, nu: usize) -> Option<usize> {
        if !self.rec_regs || self.rec_v1 {
            return None;
        }
        let (s, threads) = rec_split(nu, 4 * nu);
        let one_pass = nu <= threads as usize / s;
        (one_pass && threads <= 704 && (4 * nu).div_ceil(s) <= 44).then_some(44)
    }

    /// The fused LSTM-RTRBM forward (`lstm_rtrbm_forward_k{K}`, kernels/lstm.cu) for U LSTM and
    /// H hidden units, where `RTRBM_KERNELS=fused-fwd` asks for it and it applies: at most one
    /// block per SM (2 B P blocks; batch 64, the paper protocol, 64 packed lone chunks), the LSTM's
    /// one-pass block of W threads (v2, or the register-weights plan under `rec-regs`) plus one
    /// warp, at most 736 threads (88 registers each), and an RTRBM split SR (the largest power of
    /// two <= 32 with H SR <= W; U <= W too, one thread per unit of l). Returns the launch (the
    /// LSTM's kernel K, S, block, w_shared and ldw, the stride of [WL; WR], the shared bytes of
    /// the larger role) and SR.
    fn lstm_rtrbm_plan(&self, b: usize, nu: usize, nh: usize) -> Result<Option<(FusedPlan, usize)>> {
        // every block resident at once (one per SM: each holds the LSTM's shared memory), else
        // the LSTM blocks run in waves where the separate kernels would not
        if !self.fused_fwd || self.rec_v1 || 2 * b * self.models > self.sm_count {
            return Ok(None);
        }
        let (_, split, cfg, w_sh, ldw) =
            self.rec_launch("lstm_forward", b, nu, nu, (nu, 4 * nu, 4 * nu), Walk::Columns)?;
        let (Some(s), w) = (split, cfg.block_dim.0 as usize) else { return Ok(None) };
        let (k, w_sh, smem) = match self.lstm_forward_rw_plan(nu) {
            Some(k) => (k, 0, 16 * nu),
            None => (0, w_sh, cfg.shared_mem_bytes as usize),
        };
        if nu > w / s as usize || w + 32 > 736 {
            return Ok(None);
        }
        // (U <= W / S above: one thread per unit of l too)
        let Some(sr) = (0..=5).rev().map(|e| 1usize << e).find(|&sr| nh * sr <= w) else { return Ok(None) };
        // [WL; WR] staged with a row stride = 32 / SR (mod 32): the lanes of a warp walking a
        // column hit 32 banks (as Cuda::rec_launch does for the v2 forward kernels); then l and r
        // double-buffered
        let ldr = nh + (32 / sr + 32 - nh % 32) % 32;
        let smem = smem.max(4 * ((nu + nh) * ldr + 2 * (nu + nh)));
        self.check_smem("lstm_rtrbm_forward", smem as u32)?;
        Ok(Some((FusedPlan { k, s, threads: w + 32, w_shared: w_sh, ldw, ldr: i32_of("ldr", ldr)?, smem }, sr)))
    }

    /// The fused LSTM-RTRBM backward (`lstm_rtrbm_backward_k{K}`, kernels/lstm.cu), as
    /// [`Cuda::lstm_rtrbm_plan`]: where `RTRBM_KERNELS=fused-bwd` asks for it, all 2 B P blocks
    /// fit the SMs, and the LSTM backward's one-pass block (v2, or `lstm_backward_rw_k44` under
    /// `rec-regs`) of W threads plus one warp is at most 736 threads; the RTRBM blocks' split SR
    /// is the largest power of two <= 32 with (H + U) SR <= W (outputs g and du).
    fn lstm_rtrbm_backward_plan(&self, b: usize, nu: usize, nh: usize) -> Result<Option<(FusedPlan, usize)>> {
        if !self.fused_bwd || self.rec_v1 || 2 * b * self.models > self.sm_count {
            return Ok(None);
        }
        let (_, split, cfg, w_sh, ldw) =
            self.rec_launch("lstm_backward", b, nu, 4 * nu, (nu, 4 * nu, 6 * nu), Walk::Rows)?;
        let (Some(s), w) = (split, cfg.block_dim.0 as usize) else { return Ok(None) };
        let (k, w_sh, smem) = match self.lstm_backward_rw_plan(nu) {
            Some(k) => (k, 0, 24 * nu),
            None => (0, w_sh, cfg.shared_mem_bytes as usize),
        };
        if nu > w || w + 32 > 736 {
            return Ok(None);
        }
        let Some(sr) = (0..=5).rev().map(|e| 1usize << e).find(|&sr| (nh + nu) * sr <= w) else { return Ok(None) };
        // [WR; WL] staged with a row stride = SR (mod 32): the lanes of a warp walking rows hit
        // 32 banks (as Cuda::rec_launch does for the v2 backward kernels); then g[s+1], g[s]
        let ldr = nh + (sr + 32 - nh % 32) % 32;
        let smem = smem.max(4 * ((nh + nu) * ldr + 2 * nh));
        self.check_smem("lstm_rtrbm_backward", smem as u32)?;
        Ok(Some((FusedPlan { k, s, threads: w + 32, w_shared: w_sh, ldw, ldr: i32_of("ldr", ldr)?, smem }, sr)))
    }

    /// The frame counters of a fused recurrence launch (one per sequence of each model, in the
    /// backend's scratch), grown if needed and cleared on the stream before the launch.
    fn fused_counters(&self, b: usize) -> Result<std::sync::MutexGuard<'_, Option<CudaSlice<f32>>>> {
        let mut guard = self.grown(&self.scratch.flags, self.models * b, "fused recurrence counters")?;
        if let Some(flags) = guard.as_mut() {
            drv("clear the fused recurrence counters", self.stream.memset_zeros(flags))?;
        }
        Ok(guard)
    }

    /// `dpeep += sum_b part[b]` (`lstm_dpeep_reduce`) after an LSTM backward with peepholes.
    fn dpeep_reduce(&self, part: &CudaSlice<f32>, dp: &mut CudaSlice<f32>, b: usize, nu: usize) -> Result<()> {
        let (bi, ui) = (i32_of("B", b)?, i32_of("U", nu)?);
        let (part_ps, dp_ps) = (self.ps(part), self.ps(dp));
        let f = self.func("lstm_dpeep_reduce")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(part).arg(&bi).arg(&ui).arg(dp).arg(&part_ps).arg(&dp_ps);
        let cfg = LaunchConfig {
            grid_dim: ((3 * nu).div_ceil(128) as u32, self.models as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(&mut lb, cfg, "lstm_dpeep_reduce")
    }

    /// How to launch a per-sequence recurrent kernel: `{name}_v2` (split-K; see
    /// `kernels/recurrent.cu`) with its split S for `units` outputs of `k`-term dot products, or
    /// under RTRBM_KERNELS=v1 or rec-v1 the kernel `name` (no S argument). `(rows, cols, extra)`:
    /// the recurrent matrix staged in shared memory when it fits, and the extra floats of state
    /// the kernel keeps there. Returns the kernel name, S (to push after `ldw`, v2 only), the
    /// launch configuration (B blocks per model), `w_shared` and `ldw`.
    ///
    /// The staged matrix's row stride avoids shared-memory bank conflicts: odd for v1 (one lane
    /// per output); for v2, where lane (o, q) of a warp reads term k = q + S m of output o,
    /// `ldw = 32/S (mod 32)` when the lanes walk a column of W (forward: W[k][o]) and
    /// `ldw = S (mod 32)` when they walk a row (backward: W[o][k]), so the 32 lanes hit 32 banks.
    fn rec_launch(
        &self,
        name: &str,
        b: usize,
        units: usize,
        k: usize,
        (rows, cols, extra): (usize, usize, usize),
        walk: Walk,
    ) -> Result<(String, Option<i32>, LaunchConfig, i32, i32)> {
        let (kname, split, threads, mut ldw) = if self.rec_v1 {
            (name.to_string(), None, Self::rec_threads(units), odd(cols))
        } else {
            let (s, threads) = rec_split(units, k);
            let target = match walk {
                Walk::Columns => 32 / s,
                Walk::Rows => s,
            } % 32;
            (format!("{name}_v2"), Some(s as i32), threads, cols + (target + 32 - cols % 32) % 32)
        };
        let mut w_shared = 1;
        let mut smem = (rows * ldw + extra) * 4;
        if smem > self.smem_limit && (rows * odd(cols) + extra) * 4 <= self.smem_limit {
            // the padded stride does not fit, the odd one does: bank conflicts beat global reads
            ldw = odd(cols);
            smem = (rows * ldw + extra) * 4;
        }
        if smem > self.smem_limit {
            // W stays in global memory, read with its own stride
            (w_shared, ldw, smem) = (0, cols, extra * 4);
        }
        self.check_smem(&kname, smem as u32)?;
        let cfg = LaunchConfig {
            grid_dim: (b as u32, self.models as u32, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        Ok((kname, split, cfg, w_shared, i32_of("ldw", ldw)?))
    }

    /// One warp per chain, `per_block` chains per block, one row of blocks per model.
    fn chain_cfg(&self, chains: usize, per_block: usize, smem: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (chains.div_ceil(per_block) as u32, self.models as u32, 1),
            block_dim: (32, per_block as u32, 1),
            shared_mem_bytes: smem,
        }
    }
}

/// Which way the lanes of a v2 recurrence walk the staged matrix (see [`Cuda::rec_launch`]).
#[derive(Clone, Copy)]
enum Walk {
    /// Output o reads W[k][o] for its terms k (forward: state times W).
    Columns,
    /// Output o reads W[o][k] (backward: gradient times W^T).
    Rows,
}

/// The backend's scratch buffers besides the split-K one.
#[derive(Default)]
struct Scratch {
    /// Row-block sums of the two-launch `sum_rows` (`sum_rows_blocks`).
    sumrows: Mutex<Option<CudaSlice<f32>>>,
    /// The frame counters of `lstm_rtrbm_forward_k{K}` (one int per sequence of each model, as
    /// f32 storage; cleared before every launch).
    flags: Mutex<Option<CudaSlice<f32>>>,
}

/// The LSTM side of `lstm_rtrbm_forward_k{K}` ([`Cuda::lstm_rtrbm_plan`]).
struct FusedPlan {
    /// Wl's terms per lane in registers (0: Wl in shared memory, as `lstm_forward_v2`).
    k: usize,
    /// The LSTM's split and the block (its W threads plus the publishing warp).
    s: i32,
    threads: usize,
    w_shared: i32,
    ldw: i32,
    /// The row stride of [WL; WR] in the RTRBM blocks' shared memory.
    ldr: i32,
    smem: usize,
}

impl FusedPlan {
    /// 2B blocks per model (producers, then consumers), the plan's block and shared memory.
    fn launch_config(&self, b: usize, models: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (2 * b as u32, models as u32, 1),
            block_dim: (self.threads as u32, 1, 1),
            shared_mem_bytes: self.smem as u32,
        }
    }
}

/// The split of a v2 recurrence (`kernels/recurrent.cu`): S lanes per output, a power of two
/// <= 32, as large as keeps `units * S` within one block of 1024 threads and at least 4 terms of
/// a `k`-term sum per lane; and the block size, `units * S` rounded up to a warp (at most 1024;
/// more outputs go in passes). V = H = U = 88: S = 8, 704 threads.
fn rec_split(units: usize, k: usize) -> (usize, u32) {
    let mut s = 1;
    while s < 32 && units * s * 2 <= 1024 && k / (s * 2) >= 4 {
        s *= 2;
    }
    (s, ((units * s).div_ceil(32) * 32).clamp(32, 1024) as u32)
}

/// Launches and names the kernel in any error.
fn launch(lb: &mut cudarc::driver::LaunchArgs<'_>, cfg: LaunchConfig, name: &str) -> Result<()> {
    // SAFETY: each caller pushes arguments in the order and with the types of the kernel's
    // signature, and checks the buffer lengths the kernel indexes.
    unsafe { lb.launch(cfg) }.map(|_| ()).map_err(|e| Error::Cuda(format!("kernel {name}: launch failed: {e:?}")))
}

impl Backend for Cuda {
    type F = f32;
    type Buf = CudaSlice<f32>;
    type Store = CudaSlice<f32>;
    type Recording = CudaRecording;

    fn records(&self) -> bool {
        self.profile.is_none()
    }

    /// Starts a stream capture (thread-local mode). Not while kernels are profiled (each launch
    /// then records events, which a graph would freeze): Ok(false).
    fn begin_recording(&self) -> Result<bool> {
        if self.profile.is_some() {
            return Ok(false);
        }
        if self.rec.active.swap(true, Ordering::Relaxed) {
            return Err(Error::Cuda("begin_recording: this backend is already recording".into()));
        }
        let mode = cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
        if let Err(e) = self.stream.begin_capture(mode) {
            self.rec.active.store(false, Ordering::Relaxed);
            return Err(Error::Cuda(format!("starting a CUDA graph capture: {e:?}")));
        }
        Ok(true)
    }

    fn end_recording(&self) -> Result<CudaRecording> {
        if !self.rec.active.load(Ordering::Relaxed) {
            return Err(Error::Cuda("end_recording without begin_recording".into()));
        }
        let graph = self.stream.end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0));
        self.rec.active.store(false, Ordering::Relaxed);
        match drv("ending a CUDA graph capture", graph)? {
            Some(g) => Ok(CudaRecording(g)),
            None => Err(Error::Cuda("the CUDA graph capture recorded nothing".into())),
        }
    }

    fn replay(&self, recording: &CudaRecording) -> Result<()> {
        drv("launching a recorded update (CUDA graph)", recording.0.launch())
    }

    fn stage_gibbs_keys(&self, keys: &[RngKey]) -> Result<()> {
        check_models("staged gibbs keys", keys.len(), self.models)?;
        let vals = absolute_keys(keys);
        let mut cache = self.arg_cache()?;
        match &mut cache.staged_keys {
            Some((host, dev)) if dev.len() == vals.len() => {
                self.rec.not_recording("staging the gibbs keys")?;
                drv("staging the gibbs keys", self.stream.memcpy_htod(&vals, dev))?;
                *host = vals;
            }
            slot => {
                self.rec.replacing("allocating the staged gibbs keys")?;
                let dev = drv("staging the gibbs keys", self.stream.clone_htod(&vals))?;
                *slot = Some((vals, dev));
            }
        }
        Ok(())
    }

    fn recording_generation(&self) -> u64 {
        self.rec.generation.load(Ordering::Relaxed)
    }

    fn name(&self) -> String {
        if self.models == 1 {
            self.name.clone()
        } else {
            format!("{}, {} models packed", self.name, self.models)
        }
    }

    fn models(&self) -> usize {
        self.models
    }

    /// A zero buffer of n elements per model; cudarc cannot allocate 0 bytes, so `n = 0` gives
    /// 1 element per model.
    fn zeros(&self, n: usize) -> Result<CudaSlice<f32>> {
        drv("alloc_zeros", self.stream.alloc_zeros::<f32>(self.models * n.max(1)))
    }

    fn upload(&self, host: &[f32]) -> Result<CudaSlice<f32>> {
        if host.is_empty() {
            return self.zeros(0);
        }
        if !host.len().is_multiple_of(self.models) {
            return Err(Error::Shape(format!("upload of {} values to {} packed models", host.len(), self.models)));
        }
        drv("upload", self.stream.clone_htod(host))
    }

    fn write(&self, dst: &mut CudaSlice<f32>, host: &[f32]) -> Result<()> {
        if dst.len() != host.len() {
            return Err(Error::Shape(format!("write: buffer {} vs host {}", dst.len(), host.len())));
        }
        drv("write", self.stream.memcpy_htod(host, dst))
    }

    fn download(&self, buf: &CudaSlice<f32>) -> Result<Vec<f32>> {
        let v = drv("download", self.stream.clone_dtoh(buf))?;
        drv("synchronize after download", self.stream.synchronize())?;
        Ok(v)
    }

    fn len(&self, buf: &CudaSlice<f32>) -> usize {
        self.slab(buf)
    }

    /// Within each slab: one memcpy for a lone model, the `copy_f32` kernel (grid y = model)
    /// for a pack.
    fn copy(
        &self,
        src: &CudaSlice<f32>,
        src_off: usize,
        dst: &mut CudaSlice<f32>,
        dst_off: usize,
        n: usize,
    ) -> Result<()> {
        check("copy src", self.slab(src), src_off + n)?;
        check("copy dst", self.slab(dst), dst_off + n)?;
        if n == 0 {
            return Ok(());
        }
        if self.models == 1 {
            let s = src.slice(src_off..src_off + n);
            let mut d = dst.slice_mut(dst_off..dst_off + n);
            return drv("copy", self.stream.memcpy_dtod(&s, &mut d));
        }
        let (so, dof, ni) = (src_off as i64, dst_off as i64, n as i64);
        let (s_ps, d_ps) = (self.ps(src), self.ps(dst));
        let f = self.func("copy_f32")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(src).arg(&so).arg(dst).arg(&dof).arg(&ni).arg(&s_ps).arg(&d_ps);
        self.launch(&mut lb, self.grid(n), "copy_f32")
    }

    /// Fills the whole physical buffer (every slab) in one launch.
    fn fill(&self, x: &mut CudaSlice<f32>, value: f32) -> Result<()> {
        let n = x.len() as i64;
        let f = self.func("fill_f32")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(x).arg(&n).arg(&value);
        self.launch(&mut lb, grid_for(n as usize), "fill_f32")
    }

    fn synchronize(&self) -> Result<()> {
        drv("synchronize", self.stream.synchronize())
    }

    fn upload_store(&self, frames: &[f32]) -> Result<CudaSlice<f32>> {
        if frames.is_empty() {
            return drv("alloc frame store", self.stream.alloc_zeros::<f32>(1));
        }
        drv("upload frame store", self.stream.clone_htod(frames))
    }

    fn gather_frames(
        &self,
        store: &CudaSlice<f32>,
        spans: &[[u32; 2]],
        t_max: usize,
        b: usize,
        nv: usize,
        v: &mut CudaSlice<f32>,
        mask: &mut CudaSlice<f32>,
        wmask: &mut CudaSlice<f32>,
    ) -> Result<()> {
        super::check_spans(spans, self.models, b, t_max, store.len() / nv.max(1))?;
        check("gather_frames v", self.slab(v), t_max * b * nv)?;
        check("gather_frames mask", self.slab(mask), t_max * b)?;
        check("gather_frames wmask", self.slab(wmask), t_max * b)?;
        if t_max * b * nv == 0 {
            return Ok(());
        }
        let (ti, bi, vi) = (i32_of("T_max", t_max)?, i32_of("B", b)?, i32_of("V", nv)?);
        i32_of("T_max*B*V", t_max * b * nv)?;
        let flat: Vec<u32> = spans.iter().flatten().copied().collect();
        let mut cache = self.arg_cache()?;
        let dev = match cache.spans.take() {
            Some(mut d) if d.len() == flat.len() => {
                drv("upload gather spans", self.stream.memcpy_htod(&flat, &mut d))?;
                d
            }
            _ => drv("upload gather spans", self.stream.clone_htod(&flat))?,
        };
        let dev = cache.spans.insert(dev);
        let (v_ps, m_ps, w_ps) = (self.ps(v), self.ps(mask), self.ps(wmask));
        let f = self.func("gather_frames")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(store).arg(&*dev).arg(&ti).arg(&bi).arg(&vi).arg(v).arg(mask).arg(wmask);
        lb.arg(&v_ps).arg(&m_ps).arg(&w_ps);
        self.launch(&mut lb, self.grid(t_max * b * nv), "gather_frames")
    }

    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: Mat<'_, CudaSlice<f32>>,
        b: Mat<'_, CudaSlice<f32>>,
        beta: f32,
        c: &mut CudaSlice<f32>,
        c_off: usize,
    ) -> Result<()> {
        self.gemm_with(GemmPath::Auto, m, n, k, alpha, a, b, beta, c, c_off)
    }

    fn broadcast_rows(&self, x: &mut CudaSlice<f32>, bias: &CudaSlice<f32>, rows: usize, cols: usize) -> Result<()> {
        check("broadcast_rows x", self.slab(x), rows * cols)?;
        check("broadcast_rows bias", self.slab(bias), cols)?;
        if rows * cols == 0 {
            return Ok(());
        }
        let (r, c) = (i32_of("rows", rows)?, i32_of("cols", cols)?);
        let (x_ps, b_ps) = (self.ps(x), self.ps(bias));
        let f = self.func("broadcast_rows")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(x).arg(bias).arg(&r).arg(&c).arg(&x_ps).arg(&b_ps);
        self.launch(&mut lb, self.grid(rows * cols), "broadcast_rows")
    }

    fn sum_rows(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        cols: usize,
        alpha: f32,
        beta: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("sum_rows x", self.slab(x), rows * cols)?;
        check("sum_rows out", self.slab(out), cols)?;
        if cols == 0 {
            return Ok(());
        }
        let (r, c) = (i32_of("rows", rows)?, i32_of("cols", cols)?);
        let (x_ps, o_ps) = (self.ps(x), self.ps(out));
        let blocks = rows.div_ceil(SUM_ROWS_BLOCK);
        if blocks > SUM_ROWS_WARPS {
            // every row block at once, then the block sums in order (kernels/linalg.cu)
            let mut guard = self.grown(&self.scratch.sumrows, self.models * blocks * cols, "sum_rows scratch")?;
            let part = guard.as_mut().ok_or_else(|| Error::Cuda("sum_rows scratch missing".into()))?;
            let (bi, p_ps) = (i32_of("row blocks", blocks)?, (blocks * cols) as i64);
            {
                let f = self.func("sum_rows_blocks")?;
                let mut lb = self.stream.launch_builder(f);
                lb.arg(x).arg(&r).arg(&c).arg(&mut *part).arg(&x_ps).arg(&p_ps);
                let cfg = LaunchConfig {
                    grid_dim: (cols.div_ceil(32) as u32, blocks.div_ceil(SUM_ROWS_WARPS) as u32, self.models as u32),
                    block_dim: (32, SUM_ROWS_WARPS as u32, 1),
                    shared_mem_bytes: 0,
                };
                self.launch(&mut lb, cfg, "sum_rows_blocks")?;
            }
            let f = self.func("sum_rows_finish")?;
            let mut lb = self.stream.launch_builder(f);
            lb.arg(&*part).arg(&bi).arg(&c).arg(&alpha).arg(&beta).arg(out).arg(&p_ps).arg(&o_ps);
            return self.launch(&mut lb, self.grid(cols), "sum_rows_finish");
        }
        let f = self.func("sum_rows")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(x).arg(&r).arg(&c).arg(&alpha).arg(&beta).arg(out).arg(&x_ps).arg(&o_ps);
        // 32 columns per block, 16 warps summing row blocks (kernels/linalg.cu, SR_COLS and SR_WARPS)
        let cfg = LaunchConfig {
            grid_dim: (cols.div_ceil(32) as u32, self.models as u32, 1),
            block_dim: (32, SUM_ROWS_WARPS as u32, 1),
            shared_mem_bytes: 0,
        };
        self.launch(&mut lb, cfg, "sum_rows")
    }

    fn hidden_probs(
        &self,
        w: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        bh_t: &CudaSlice<f32>,
        n: usize,
        nv: usize,
        nh: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("hidden_probs W", self.slab(w), nv * nh)?;
        check("hidden_probs v", self.slab(v), n * nv)?;
        check("hidden_probs bh_t", self.slab(bh_t), n * nh)?;
        check("hidden_probs out", self.slab(out), n * nh)?;
        if n * nh == 0 {
            return Ok(());
        }
        let (ni, vi, hi) = (i32_of("N", n)?, i32_of("V", nv)?, i32_of("H", nh)?);
        let (w_ps, v_ps, bh_ps, o_ps) = (self.ps(w), self.ps(v), self.ps(bh_t), self.ps(out));
        let (name, cfg) = self.row_kernel("hidden_probs", n, nv, nh, n * nh);
        let f = self.func(&name)?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(w).arg(v).arg(bh_t).arg(&ni).arg(&vi).arg(&hi).arg(out);
        lb.arg(&w_ps).arg(&v_ps).arg(&bh_ps).arg(&o_ps);
        self.launch(&mut lb, cfg, &name)
    }

    fn cd_stats(
        &self,
        w: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        vneg: &CudaSlice<f32>,
        bh_t: &CudaSlice<f32>,
        wmask: &CudaSlice<f32>,
        n: usize,
        nv: usize,
        nh: usize,
        phneg: &mut CudaSlice<f32>,
        dbh_t: &mut CudaSlice<f32>,
        dbv_t: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("cd_stats W", self.slab(w), nv * nh)?;
        check("cd_stats v", self.slab(v), n * nv)?;
        check("cd_stats vneg", self.slab(vneg), n * nv)?;
        check("cd_stats bh_t", self.slab(bh_t), n * nh)?;
        check("cd_stats wmask", self.slab(wmask), n)?;
        check("cd_stats phneg", self.slab(phneg), n * nh)?;
        check("cd_stats dbh_t", self.slab(dbh_t), n * nh)?;
        check("cd_stats dbv_t", self.slab(dbv_t), n * nv)?;
        if n * nv.max(nh) == 0 {
            return Ok(());
        }
        let (ni, vi, hi) = (i32_of("N", n)?, i32_of("V", nv)?, i32_of("H", nh)?);
        i32_of("N*max(V,H)", n * nv.max(nh))?;
        let (name, cfg) = self.row_kernel("cd_stats", n, nv, nh, n * nv.max(nh));
        let ps = [w, v, vneg, bh_t, wmask].map(|b| self.ps(b));
        let out_ps = [self.ps(phneg), self.ps(dbh_t), self.ps(dbv_t)];
        let f = self.func(&name)?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(w).arg(v).arg(vneg).arg(bh_t).arg(wmask).arg(&ni).arg(&vi).arg(&hi);
        lb.arg(phneg).arg(dbh_t).arg(dbv_t);
        for p in ps.iter().chain(&out_ps) {
            lb.arg(p);
        }
        self.launch(&mut lb, cfg, &name)
    }

    fn gibbs(
        &self,
        w: &CudaSlice<f32>,
        bv_t: &CudaSlice<f32>,
        bh_t: &CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        mask: Option<&CudaSlice<f32>>,
        n: usize,
        nv: usize,
        nh: usize,
        k: usize,
        gaussian: bool,
        rng: &[RngKey],
        counter: u32,
    ) -> Result<()> {
        check_models("gibbs keys", rng.len(), self.models)?;
        check("gibbs W", self.slab(w), nv * nh)?;
        check("gibbs bv_t", self.slab(bv_t), n * nv)?;
        check("gibbs bh_t", self.slab(bh_t), n * nh)?;
        check("gibbs v", self.slab(v), n * nv)?;
        if let Some(m) = mask {
            check("gibbs mask", self.slab(m), n)?;
        }
        let mask_ps = mask.map_or(0, |m| self.ps(m));
        if n == 0 || k == 0 {
            return Ok(());
        }
        let (seed, stream, key_vals) = key_args(rng);
        let mut cache = self.arg_cache()?;
        let (seed, stream, keys) = if self.rec.active.load(Ordering::Relaxed) {
            // recorded: the keys come from the staged array, so that each replay draws with the
            // keys staged before it; the scalars add nothing (seed 0, stream offset 0)
            match &cache.staged_keys {
                Some((vals, dev)) if *vals == absolute_keys(rng) => (0, 0, Some(dev)),
                _ => {
                    return Err(Error::Cuda(
                        "gibbs is being recorded with keys other than the staged ones (call \
                         stage_gibbs_keys with this update's keys before recording)"
                            .into(),
                    ))
                }
            }
        } else {
            (seed, stream, self.per_model(false, &mut cache.keys, key_vals.clone(), &key_vals)?)
        };
        let (w_ps, bv_ps, bh_ps, v_ps) = (self.ps(w), self.ps(bv_t), self.ps(bh_t), self.ps(v));
        // tensor cores (opt-in)
        if let Some((nt, smem)) = self.gibbs_tc_plan(nv, nh, gaussian, self.slabs_even(&[v_ps, bv_ps, bh_ps])) {
            let (ni, vi, hi, ki) = (i32_of("N", n)?, i32_of("V", nv)?, i32_of("H", nh)?, i32_of("K", k)?);
            let name = format!("gibbs_chain_tc_n{nt}");
            let mut lb = self.stream.launch_builder(self.lazy_func(&name)?);
            lb.arg(w).arg(bv_t).arg(bh_t).arg(v).arg(&ni).arg(&vi).arg(&hi).arg(&ki);
            lb.arg(&seed).arg(&stream).arg(&counter);
            arg_opt(&mut lb, keys);
            arg_opt(&mut lb, mask);
            lb.arg(&w_ps).arg(&bv_ps).arg(&bh_ps).arg(&v_ps).arg(&mask_ps);
            return self.launch(&mut lb, self.tc_cfg(n, smem), &name);
        }
        if !gaussian {
            if let Some((r, ldw, smem)) = self.gibbs_v2_layout(nv, nh) {
                let (ni, vi, hi, ki) = (i32_of("N", n)?, i32_of("V", nv)?, i32_of("H", nh)?, i32_of("K", k)?);
                let name = format!("gibbs_chain_v2_r{r}");
                let f = self.func(&name)?;
                let mut lb = self.stream.launch_builder(f);
                lb.arg(w).arg(bv_t).arg(bh_t).arg(v).arg(&ni).arg(&vi).arg(&hi).arg(&ki);
                lb.arg(&seed).arg(&stream).arg(&counter).arg(&ldw);
                arg_opt(&mut lb, keys);
                arg_opt(&mut lb, mask);
                lb.arg(&w_ps).arg(&bv_ps).arg(&bh_ps).arg(&v_ps).arg(&mask_ps);
                let cfg = self.chain_cfg(n, CHAINS_PER_BLOCK_V2, smem);
                return self.launch(&mut lb, cfg, &name);
            }
        }
        let (w_sh, ldw, smem) = self.w_layout(nv, nh, CHAINS_PER_BLOCK * (nv + nh) * 4);
        self.check_smem("gibbs_chain", smem)?;
        let (ni, vi, hi, ki) = (i32_of("N", n)?, i32_of("V", nv)?, i32_of("H", nh)?, i32_of("K", k)?);
        let g = gaussian as i32;
        let f = self.func("gibbs_chain")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(w).arg(bv_t).arg(bh_t).arg(v).arg(&ni).arg(&vi).arg(&hi).arg(&ki).arg(&g);
        lb.arg(&seed).arg(&stream).arg(&counter).arg(&w_sh).arg(&ldw);
        arg_opt(&mut lb, keys);
        arg_opt(&mut lb, mask);
        lb.arg(&w_ps).arg(&bv_ps).arg(&bh_ps).arg(&v_ps).arg(&mask_ps);
        let cfg = self.chain_cfg(n, CHAINS_PER_BLOCK, smem);
        self.launch(&mut lb, cfg, "gibbs_chain")
    }

    fn free_energy(
        &self,
        w: &CudaSlice<f32>,
        bv_t: &CudaSlice<f32>,
        bh_t: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        n: usize,
        nv: usize,
        nh: usize,
        gaussian: bool,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("free_energy W", self.slab(w), nv * nh)?;
        check("free_energy bv_t", self.slab(bv_t), n * nv)?;
        check("free_energy bh_t", self.slab(bh_t), n * nh)?;
        check("free_energy v", self.slab(v), n * nv)?;
        check("free_energy out", self.slab(out), n)?;
        if n == 0 {
            return Ok(());
        }
        let (ni, vi, hi) = (i32_of("N", n)?, i32_of("V", nv)?, i32_of("H", nh)?);
        let g = gaussian as i32;
        let (w_ps, bv_ps, bh_ps, v_ps, o_ps) = (self.ps(w), self.ps(bv_t), self.ps(bh_t), self.ps(v), self.ps(out));
        let f = self.func("free_energy")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(w).arg(bv_t).arg(bh_t).arg(v).arg(&ni).arg(&vi).arg(&hi).arg(&g).arg(out);
        lb.arg(&w_ps).arg(&bv_ps).arg(&bh_ps).arg(&v_ps).arg(&o_ps);
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(4) as u32, self.models as u32, 1),
            block_dim: (32, 4, 1),
            shared_mem_bytes: 0,
        };
        self.launch(&mut lb, cfg, "free_energy")
    }

    fn rtrbm_forward(
        &self,
        wr: &CudaSlice<f32>,
        pre: &CudaSlice<f32>,
        vw: &CudaSlice<f32>,
        r: &mut CudaSlice<f32>,
        bh_t: &mut CudaSlice<f32>,
        d: Dims,
    ) -> Result<()> {
        let (t, b, h) = (d.t, d.b, d.h);
        check("rtrbm_forward WR", self.slab(wr), h * h)?;
        check("rtrbm_forward pre", self.slab(pre), d.n() * h)?;
        check("rtrbm_forward vw", self.slab(vw), d.n() * h)?;
        check("rtrbm_forward r", self.slab(r), (t + 1) * b * h)?;
        check("rtrbm_forward bh_t", self.slab(bh_t), d.n() * h)?;
        if d.n() * h == 0 {
            return Ok(());
        }
        let (kname, split, cfg, w_sh, ldw) = self.rec_launch("rtrbm_forward", b, h, h, (h, h, 2 * h), Walk::Columns)?;
        let (ti, bi, hi) = (i32_of("T", t)?, i32_of("B", b)?, i32_of("H", h)?);
        let (wr_ps, pre_ps, vw_ps, r_ps, bh_ps) = (self.ps(wr), self.ps(pre), self.ps(vw), self.ps(r), self.ps(bh_t));
        let f = self.func(&kname)?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(wr).arg(pre).arg(vw).arg(r).arg(bh_t).arg(&ti).arg(&bi).arg(&hi).arg(&w_sh).arg(&ldw);
        if let Some(s) = &split {
            lb.arg(s);
        }
        lb.arg(&wr_ps).arg(&pre_ps).arg(&vw_ps).arg(&r_ps).arg(&bh_ps);
        self.launch(&mut lb, cfg, &kname)
    }

    fn rtrbm_backward(
        &self,
        wr: &CudaSlice<f32>,
        r: &CudaSlice<f32>,
        dbh: &CudaSlice<f32>,
        g: &mut CudaSlice<f32>,
        d: Dims,
    ) -> Result<()> {
        let labels = ["rtrbm_backward WR", "rtrbm_backward r", "rtrbm_backward dbh", "rtrbm_backward g"];
        self.recurrent_backward("rtrbm_backward", labels, wr, r, dbh, g, d, ("H", d.h))
    }

    fn rnn_forward(&self, wuu: &CudaSlice<f32>, pre: &CudaSlice<f32>, u: &mut CudaSlice<f32>, d: Dims) -> Result<()> {
        let (t, b, nu) = (d.t, d.b, d.u);
        check("rnn_forward Wuu", self.slab(wuu), nu * nu)?;
        check("rnn_forward pre", self.slab(pre), d.n() * nu)?;
        check("rnn_forward u", self.slab(u), (t + 1) * b * nu)?;
        if d.n() * nu == 0 {
            return Ok(());
        }
        let (kname, split, cfg, w_sh, ldw) =
            self.rec_launch("rnn_forward", b, nu, nu, (nu, nu, 2 * nu), Walk::Columns)?;
        let (ti, bi, ui) = (i32_of("T", t)?, i32_of("B", b)?, i32_of("U", nu)?);
        let (w_ps, pre_ps, u_ps) = (self.ps(wuu), self.ps(pre), self.ps(u));
        let f = self.func(&kname)?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(wuu).arg(pre).arg(u).arg(&ti).arg(&bi).arg(&ui).arg(&w_sh).arg(&ldw);
        if let Some(s) = &split {
            lb.arg(s);
        }
        lb.arg(&w_ps).arg(&pre_ps).arg(&u_ps);
        self.launch(&mut lb, cfg, &kname)
    }

    fn rnn_backward(
        &self,
        wuu: &CudaSlice<f32>,
        u: &CudaSlice<f32>,
        e: &CudaSlice<f32>,
        dz: &mut CudaSlice<f32>,
        d: Dims,
    ) -> Result<()> {
        let labels = ["rnn_backward Wuu", "rnn_backward u", "rnn_backward e", "rnn_backward dz"];
        self.recurrent_backward("rnn_backward", labels, wuu, u, e, dz, d, ("U", d.u))
    }

    fn lstm_forward(
        &self,
        wl: &CudaSlice<f32>,
        peep: Option<&CudaSlice<f32>>,
        pre: &CudaSlice<f32>,
        l: &mut CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
        gates: &mut CudaSlice<f32>,
        d: Dims,
    ) -> Result<()> {
        let (t, b, nu) = (d.t, d.b, d.u);
        let g4 = 4 * nu;
        check("lstm_forward Wl", self.slab(wl), nu * g4)?;
        check("lstm_forward pre", self.slab(pre), d.n() * g4)?;
        check("lstm_forward l", self.slab(l), (t + 1) * b * nu)?;
        check("lstm_forward c", self.slab(c), (t + 1) * b * nu)?;
        check("lstm_forward gates", self.slab(gates), d.n() * g4)?;
        if let Some(p) = peep {
            check("lstm_forward peep", self.slab(p), 3 * nu)?;
        }
        if d.n() * nu == 0 {
            return Ok(());
        }
        let (ti, bi, ui) = (i32_of("T", t)?, i32_of("B", b)?, i32_of("U", nu)?);
        let (mut kname, split, mut cfg, mut w_sh, ldw) =
            self.rec_launch("lstm_forward", b, nu, nu, (nu, g4, 4 * nu), Walk::Columns)?;
        if let Some(k) = self.lstm_forward_rw_plan(nu) {
            // Wl in registers (kernels/lstm.cu, lstm_forward_rw_k{K}): v2's split and block, only
            // the states in shared memory
            kname = format!("lstm_forward_rw_k{k}");
            (w_sh, cfg.shared_mem_bytes) = (0, (4 * nu * 4) as u32);
        }
        let has_peep = peep.is_some() as i32;
        // Without peepholes the kernel never reads `peep`; pass Wl as a valid stand-in pointer
        // (slab stride 0).
        let peep_buf = peep.unwrap_or(wl);
        let peep_ps = peep.map_or(0, |p| self.ps(p));
        let (wl_ps, pre_ps, l_ps, c_ps, g_ps) = (self.ps(wl), self.ps(pre), self.ps(l), self.ps(c), self.ps(gates));
        let f = self.func(&kname)?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(wl).arg(peep_buf).arg(&has_peep).arg(pre).arg(l).arg(c).arg(gates);
        lb.arg(&ti).arg(&bi).arg(&ui).arg(&w_sh).arg(&ldw);
        if let Some(s) = &split {
            lb.arg(s);
        }
        lb.arg(&wl_ps).arg(&peep_ps).arg(&pre_ps).arg(&l_ps).arg(&c_ps).arg(&g_ps);
        self.launch(&mut lb, cfg, &kname)
    }

    fn lstm_rtrbm_forward(
        &self,
        lstm_wl: &CudaSlice<f32>,
        peep: Option<&CudaSlice<f32>>,
        pre_g: &CudaSlice<f32>,
        l: &mut CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
        gates: &mut CudaSlice<f32>,
        wl: &CudaSlice<f32>,
        wr: &CudaSlice<f32>,
        pre: &mut CudaSlice<f32>,
        vw: &CudaSlice<f32>,
        r: &mut CudaSlice<f32>,
        bh_t: &mut CudaSlice<f32>,
        d: Dims,
    ) -> Result<()> {
        let (t, b, nu, nh) = (d.t, d.b, d.u, d.h);
        let plan = if d.n() * nu * nh == 0 { None } else { self.lstm_rtrbm_plan(b, nu, nh)? };
        let Some((plan, sr)) = plan else {
            return super::lstm_rtrbm_forward_separate(
                self, lstm_wl, peep, pre_g, l, c, gates, wl, wr, pre, vw, r, bh_t, d,
            );
        };
        let g4 = 4 * nu;
        check("lstm_rtrbm_forward Wl", self.slab(lstm_wl), nu * g4)?;
        check("lstm_rtrbm_forward pre_g", self.slab(pre_g), d.n() * g4)?;
        check("lstm_rtrbm_forward l", self.slab(l), (t + 1) * b * nu)?;
        check("lstm_rtrbm_forward c", self.slab(c), (t + 1) * b * nu)?;
        check("lstm_rtrbm_forward gates", self.slab(gates), d.n() * g4)?;
        if let Some(p) = peep {
            check("lstm_rtrbm_forward peep", self.slab(p), 3 * nu)?;
        }
        check("lstm_rtrbm_forward WL", self.slab(wl), nu * nh)?;
        check("lstm_rtrbm_forward WR", self.slab(wr), nh * nh)?;
        check("lstm_rtrbm_forward pre", self.slab(pre), d.n() * nh)?;
        check("lstm_rtrbm_forward vw", self.slab(vw), d.n() * nh)?;
        check("lstm_rtrbm_forward r", self.slab(r), (t + 1) * b * nh)?;
        check("lstm_rtrbm_forward bh_t", self.slab(bh_t), d.n() * nh)?;
        let (ti, bi, ui, hi) = (i32_of("T", t)?, i32_of("B", b)?, i32_of("U", nu)?, i32_of("H", nh)?);
        let (has_peep, sri) = (peep.is_some() as i32, sr as i32);
        // without peepholes the kernel never reads `peep` (slab stride 0 on a stand-in)
        let peep_buf = peep.unwrap_or(lstm_wl);
        let peep_ps = peep.map_or(0, |p| self.ps(p));
        let ps = [self.ps(lstm_wl), peep_ps, self.ps(pre_g), self.ps(l), self.ps(c), self.ps(gates)];
        let ps2 = [self.ps(wl), self.ps(wr), self.ps(pre), self.ps(vw), self.ps(r), self.ps(bh_t)];
        let kname = format!("lstm_rtrbm_forward_k{}", plan.k);
        let mut guard = self.fused_counters(b)?;
        let flags = guard.as_mut().ok_or_else(|| Error::Cuda("fused recurrence counters missing".into()))?;
        let cfg = plan.launch_config(b, self.models);
        let f = self.func(&kname)?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(lstm_wl).arg(peep_buf).arg(&has_peep).arg(pre_g).arg(l).arg(c).arg(gates);
        lb.arg(wl).arg(wr).arg(&*pre).arg(vw).arg(r).arg(bh_t).arg(&*flags);
        lb.arg(&ti).arg(&bi).arg(&ui).arg(&hi).arg(&plan.w_shared).arg(&plan.ldw).arg(&plan.s).arg(&sri).arg(&plan.ldr);
        for x in ps.iter().chain(&ps2) {
            lb.arg(x);
        }
        self.launch(&mut lb, cfg, &kname)
    }

    fn lstm_backward(
        &self,
        wl: &CudaSlice<f32>,
        peep: Option<&CudaSlice<f32>>,
        l: &CudaSlice<f32>,
        c: &CudaSlice<f32>,
        gates: &CudaSlice<f32>,
        dl: &CudaSlice<f32>,
        dpre: &mut CudaSlice<f32>,
        dstate0: &mut CudaSlice<f32>,
        dpeep: Option<&mut CudaSlice<f32>>,
        d: Dims,
    ) -> Result<()> {
        let _ = l;
        let (t, b, nu) = (d.t, d.b, d.u);
        let g4 = 4 * nu;
        check("lstm_backward Wl", self.slab(wl), nu * g4)?;
        check("lstm_backward c", self.slab(c), (t + 1) * b * nu)?;
        check("lstm_backward gates", self.slab(gates), d.n() * g4)?;
        check("lstm_backward dl", self.slab(dl), (t + 1) * b * nu)?;
        check("lstm_backward dpre", self.slab(dpre), t * b * g4)?;
        check("lstm_backward dstate0", self.slab(dstate0), 2 * b * nu)?;
        if let Some(p) = peep {
            check("lstm_backward peep", self.slab(p), 3 * nu)?;
        }
        if let Some(dp) = dpeep.as_ref() {
            check("lstm_backward dpeep", self.slab(dp), 3 * nu)?;
        }
        if b * nu == 0 {
            return Ok(());
        }
        let (mut kname, split, mut cfg, mut w_sh, ldw) =
            self.rec_launch("lstm_backward", b, nu, g4, (nu, g4, 6 * nu), Walk::Rows)?;
        if let Some(k) = self.lstm_backward_rw_plan(nu) {
            // Wl in registers (kernels/lstm.cu, lstm_backward_rw_k{K}): v2's split and block, only
            // the vectors in shared memory
            kname = format!("lstm_backward_rw_k{k}");
            (w_sh, cfg.shared_mem_bytes) = (0, (6 * nu * 4) as u32);
        }
        let (ti, bi, ui) = (i32_of("T", t)?, i32_of("B", b)?, i32_of("U", nu)?);
        let has_peep = peep.is_some() as i32;
        let peep_buf = peep.unwrap_or(wl);
        let peep_ps = peep.map_or(0, |p| self.ps(p));
        // Peephole gradients per sequence [B,3U] of each model, reduced over b afterwards
        // (deterministic).
        let mut part = if dpeep.is_some() { Some(self.zeros(b * 3 * nu)?) } else { None };
        let part_ps = part.as_ref().map_or(0, |p| self.ps(p));
        let (wl_ps, c_ps, gates_ps, dl_ps) = (self.ps(wl), self.ps(c), self.ps(gates), self.ps(dl));
        let (dpre_ps, ds_ps) = (self.ps(dpre), self.ps(dstate0));
        {
            let f = self.func(&kname)?;
            let mut lb = self.stream.launch_builder(f);
            lb.arg(wl).arg(peep_buf).arg(&has_peep).arg(c).arg(gates).arg(dl).arg(dpre).arg(dstate0);
            match part.as_mut() {
                Some(p) => {
                    lb.arg(p);
                }
                None => {
                    lb.arg(&NULL_PTR);
                }
            }
            lb.arg(&ti).arg(&bi).arg(&ui).arg(&w_sh).arg(&ldw);
            if let Some(s) = &split {
                lb.arg(s);
            }
            lb.arg(&wl_ps).arg(&peep_ps).arg(&c_ps).arg(&gates_ps).arg(&dl_ps).arg(&dpre_ps).arg(&ds_ps).arg(&part_ps);
            self.launch(&mut lb, cfg, &kname)?;
        }
        if let (Some(p), Some(dp)) = (part.as_ref(), dpeep) {
            self.dpeep_reduce(p, dp, b, nu)?;
        }
        Ok(())
    }

    fn lstm_rtrbm_backward(
        &self,
        wr: &CudaSlice<f32>,
        r: &CudaSlice<f32>,
        dbh: &CudaSlice<f32>,
        g: &mut CudaSlice<f32>,
        wl: &CudaSlice<f32>,
        du: &mut CudaSlice<f32>,
        lstm_wl: &CudaSlice<f32>,
        peep: Option<&CudaSlice<f32>>,
        l: &CudaSlice<f32>,
        c: &CudaSlice<f32>,
        gates: &CudaSlice<f32>,
        dpre: &mut CudaSlice<f32>,
        dstate0: &mut CudaSlice<f32>,
        dpeep: Option<&mut CudaSlice<f32>>,
        d: Dims,
    ) -> Result<()> {
        let (t, b, nu, nh) = (d.t, d.b, d.u, d.h);
        let plan = if d.n() * nu * nh == 0 { None } else { self.lstm_rtrbm_backward_plan(b, nu, nh)? };
        let Some((plan, sr)) = plan else {
            return super::lstm_rtrbm_backward_separate(
                self, wr, r, dbh, g, wl, du, lstm_wl, peep, l, c, gates, dpre, dstate0, dpeep, d,
            );
        };
        let g4 = 4 * nu;
        check("lstm_rtrbm_backward WR", self.slab(wr), nh * nh)?;
        check("lstm_rtrbm_backward r", self.slab(r), (t + 1) * b * nh)?;
        check("lstm_rtrbm_backward dbh", self.slab(dbh), d.n() * nh)?;
        check("lstm_rtrbm_backward g", self.slab(g), d.n() * nh)?;
        check("lstm_rtrbm_backward WL", self.slab(wl), nu * nh)?;
        check("lstm_rtrbm_backward du", self.slab(du), (t + 1) * b * nu)?;
        check("lstm_rtrbm_backward Wl", self.slab(lstm_wl), nu * g4)?;
        check("lstm_rtrbm_backward c", self.slab(c), (t + 1) * b * nu)?;
        check("lstm_rtrbm_backward gates", self.slab(gates), d.n() * g4)?;
        check("lstm_rtrbm_backward dpre", self.slab(dpre), d.n() * g4)?;
        check("lstm_rtrbm_backward dstate0", self.slab(dstate0), 2 * b * nu)?;
        if let Some(p) = peep {
            check("lstm_rtrbm_backward peep", self.slab(p), 3 * nu)?;
        }
        if let Some(dp) = dpeep.as_ref() {
            check("lstm_rtrbm_backward dpeep", self.slab(dp), 3 * nu)?;
        }
        let (ti, bi, hi, ui) = (i32_of("T", t)?, i32_of("B", b)?, i32_of("H", nh)?, i32_of("U", nu)?);
        let (has_peep, sri) = (peep.is_some() as i32, sr as i32);
        let peep_buf = peep.unwrap_or(lstm_wl);
        let peep_ps = peep.map_or(0, |p| self.ps(p));
        // peephole gradients per sequence [B,3U] of each model, reduced over b afterwards
        let mut part = if dpeep.is_some() { Some(self.zeros(b * 3 * nu)?) } else { None };
        let part_ps = part.as_ref().map_or(0, |p| self.ps(p));
        let ps = [self.ps(wr), self.ps(r), self.ps(dbh), self.ps(g), self.ps(wl), self.ps(du)];
        let ps2 = [self.ps(lstm_wl), peep_ps, self.ps(c), self.ps(gates), self.ps(dpre), self.ps(dstate0), part_ps];
        let kname = format!("lstm_rtrbm_backward_k{}", plan.k);
        {
            let mut guard = self.fused_counters(b)?;
            let flags = guard.as_mut().ok_or_else(|| Error::Cuda("fused recurrence counters missing".into()))?;
            let cfg = plan.launch_config(b, self.models);
            let f = self.func(&kname)?;
            let mut lb = self.stream.launch_builder(f);
            lb.arg(wr).arg(r).arg(dbh).arg(g).arg(wl).arg(du).arg(lstm_wl).arg(peep_buf).arg(&has_peep);
            lb.arg(c).arg(gates).arg(dpre).arg(dstate0);
            match part.as_mut() {
                Some(p) => {
                    lb.arg(p);
                }
                None => {
                    lb.arg(&NULL_PTR);
                }
            }
            lb.arg(&*flags).arg(&ti).arg(&bi).arg(&hi).arg(&ui).arg(&sri).arg(&plan.ldr);
            lb.arg(&plan.w_shared).arg(&plan.ldw).arg(&plan.s);
            for x in ps.iter().chain(&ps2) {
                lb.arg(x);
            }
            self.launch(&mut lb, cfg, &kname)?;
        }
        if let (Some(p), Some(dp)) = (part.as_ref(), dpeep) {
            self.dpeep_reduce(p, dp, b, nu)?;
        }
        Ok(())
    }

    fn sgd_momentum(
        &self,
        param: &mut CudaSlice<f32>,
        grad: &CudaSlice<f32>,
        vel: &mut CudaSlice<f32>,
        hyper: &[SgdHyper<f32>],
    ) -> Result<()> {
        check_models("sgd_momentum hyper-parameters", hyper.len(), self.models)?;
        let n = self.slab(param);
        check("sgd grad", self.slab(grad), n)?;
        check("sgd vel", self.slab(vel), n)?;
        // A lone model passes its hyper-parameters as scalars; a pack passes them all in `hyper`.
        let SgdHyper { lr, momentum, weight_decay } = hyper[0];
        let (vals, sig) = hyper_vals(hyper);
        let mut cache = self.arg_cache()?;
        let hyper_dev = self.per_model(true, &mut cache.hyper, sig, &vals)?;
        let ni = n as i64;
        let (p_ps, g_ps, v_ps) = (self.ps(param), self.ps(grad), self.ps(vel));
        let f = self.func("sgd_momentum")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(param).arg(grad).arg(vel).arg(&ni).arg(&lr).arg(&momentum).arg(&weight_decay);
        arg_opt(&mut lb, hyper_dev);
        lb.arg(&p_ps).arg(&g_ps).arg(&v_ps);
        self.launch(&mut lb, self.grid(n), "sgd_momentum")
    }

    /// One `sgd_momentum_multi` launch for every tensor (grid: blocks x tensors x models).
    fn sgd_momentum_all(
        &self,
        params: &mut [CudaSlice<f32>],
        grads: &[CudaSlice<f32>],
        vels: &mut [CudaSlice<f32>],
        hyper: &[SgdHyper<f32>],
    ) -> Result<()> {
        check_models("sgd_momentum hyper-parameters", hyper.len(), self.models)?;
        check_tensor_lists(params.len(), grads.len(), vels.len())?;
        if params.is_empty() {
            return Ok(());
        }
        let mut table = Vec::with_capacity(7 * params.len());
        let mut most = 0;
        for ((p, g), v) in params.iter().zip(grads).zip(vels.iter()) {
            let n = self.slab(p);
            check("sgd grad", self.slab(g), n)?;
            check("sgd vel", self.slab(v), n)?;
            most = most.max(n);
            let (pp, _p) = p.device_ptr(&self.stream);
            let (gp, _g) = g.device_ptr(&self.stream);
            let (vp, _v) = v.device_ptr(&self.stream);
            table.extend([pp, gp, vp, n as u64, self.ps(p) as u64, self.ps(g) as u64, self.ps(v) as u64]);
        }
        let tensors = u32::try_from(params.len()).ok().filter(|&t| t as usize <= MAX_GRID_YZ);
        let Some(tensors) = tensors else {
            return Err(Error::Shape(format!("sgd_momentum_all: {} tensors exceed the grid", params.len())));
        };
        let SgdHyper { lr, momentum, weight_decay } = hyper[0];
        let (vals, sig) = hyper_vals(hyper);
        let mut guard = self.arg_cache()?;
        let cache = &mut *guard;
        let at = match cache.sgd_tables.iter().position(|(t, _)| *t == table) {
            Some(i) => i,
            None => {
                if cache.sgd_tables.len() >= SGD_TABLES {
                    // a recording may hold the table dropped
                    self.rec.replacing("replacing an SGD tensor table")?;
                    cache.sgd_tables.remove(0);
                } else {
                    self.rec.not_recording("uploading an SGD tensor table")?;
                }
                let dev = drv("upload the SGD tensor table", self.stream.clone_htod(&table))?;
                cache.sgd_tables.push((table, dev));
                cache.sgd_tables.len() - 1
            }
        };
        let hyper_dev = self.per_model(true, &mut cache.hyper, sig, &vals)?;
        let table_d = &cache.sgd_tables[at].1;
        let f = self.func("sgd_momentum_multi")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(table_d).arg(&lr).arg(&momentum).arg(&weight_decay);
        arg_opt(&mut lb, hyper_dev);
        let mut cfg = grid_for(most);
        cfg.grid_dim.1 = tensors;
        cfg.grid_dim.2 = self.models as u32;
        self.launch(&mut lb, cfg, "sgd_momentum_multi")
    }

    fn scale(&self, x: &mut CudaSlice<f32>, alpha: &[f32]) -> Result<()> {
        check_models("scale factors", alpha.len(), self.models)?;
        let n = self.slab(x);
        let a0 = alpha[0];
        let sig = alpha.iter().map(|x| x.to_bits() as u64).collect();
        let mut cache = self.arg_cache()?;
        let alphas = self.per_model(true, &mut cache.scale, sig, alpha)?;
        let (ni, x_ps) = (n as i64, self.ps(x));
        let f = self.func("scale_f32")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(x).arg(&ni).arg(&a0);
        arg_opt(&mut lb, alphas);
        lb.arg(&x_ps);
        self.launch(&mut lb, self.grid(n), "scale_f32")
    }

    /// On the device, no synchronisation: `sum_squares_partial` for each tensor into one
    /// buffer, `clip_factors` (the default's sums in the default's order, and its factors), then
    /// `scale_f32` of every tensor by its model's factor (a factor of 1 leaves every bit as it
    /// is). The same result as the trait's default on this backend, bit for bit.
    fn clip_grad_norm(&self, xs: &mut [CudaSlice<f32>], clip: &[f64]) -> Result<()> {
        check_models("clipping norms", clip.len(), self.models)?;
        if xs.is_empty() {
            return Ok(());
        }
        let per = SSQ_BLOCKS * self.models;
        let mut cache = self.arg_cache()?;
        if cache.clip_partials.as_ref().is_none_or(|p| p.len() != per * xs.len()) {
            self.rec.replacing("allocating the clipping scratch")?;
            cache.clip_partials = Some(drv("alloc clip partials", self.stream.alloc_zeros::<f64>(per * xs.len()))?);
        }
        if cache.clip_factors.as_ref().is_none_or(|f| f.len() != self.models) {
            self.rec.replacing("allocating the clipping factors")?;
            cache.clip_factors = Some(drv("alloc clip factors", self.stream.alloc_zeros::<f32>(self.models))?);
        }
        let sig = clip.iter().map(|c| c.to_bits()).collect();
        cached(&self.stream, &self.rec, true, &mut cache.clip, sig, clip)?;
        let ArgCache { clip: Some((_, clip_d)), clip_partials: Some(partial), clip_factors: Some(factors), .. } =
            &mut *cache
        else {
            return Err(Error::Cuda("clip_grad_norm: scratch missing".into()));
        };
        let ssq_cfg = LaunchConfig {
            grid_dim: (SSQ_BLOCKS as u32, self.models as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        for (t, x) in xs.iter().enumerate() {
            let (n, x_ps, off) = (self.slab(x) as i64, self.ps(x), (t * per) as i64);
            let f = self.func("sum_squares_partial")?;
            let mut lb = self.stream.launch_builder(f);
            lb.arg(x).arg(&n).arg(&mut *partial).arg(&x_ps).arg(&off);
            self.launch(&mut lb, ssq_cfg, "sum_squares_partial")?;
        }
        {
            let (tensors, blocks) = (i32_of("tensors", xs.len())?, SSQ_BLOCKS as i32);
            let f = self.func("clip_factors")?;
            let mut lb = self.stream.launch_builder(f);
            lb.arg(&*partial).arg(&tensors).arg(&blocks).arg(&*clip_d).arg(&mut *factors);
            let cfg = LaunchConfig { grid_dim: (1, self.models as u32, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
            self.launch(&mut lb, cfg, "clip_factors")?;
        }
        for x in xs.iter_mut() {
            let (n, x_ps, one) = (self.slab(x), self.ps(x), 1.0f32);
            let ni = n as i64;
            let f = self.func("scale_f32")?;
            let mut lb = self.stream.launch_builder(f);
            lb.arg(&mut *x).arg(&ni).arg(&one).arg(&*factors).arg(&x_ps);
            self.launch(&mut lb, self.grid(n), "scale_f32")?;
        }
        Ok(())
    }

    /// Partial sums per block and model (grid (SSQ_BLOCKS, P)), added on the host in block
    /// order for each model.
    fn sum_squares(&self, x: &CudaSlice<f32>) -> Result<Vec<f64>> {
        let n = self.slab(x) as i64;
        let x_ps = self.ps(x);
        let mut partial = drv("alloc partial sums", self.stream.alloc_zeros::<f64>(SSQ_BLOCKS * self.models))?;
        {
            let f = self.func("sum_squares_partial")?;
            let mut lb = self.stream.launch_builder(f);
            lb.arg(x).arg(&n).arg(&mut partial).arg(&x_ps).arg(&0i64);
            let cfg = LaunchConfig {
                grid_dim: (SSQ_BLOCKS as u32, self.models as u32, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            self.launch(&mut lb, cfg, "sum_squares_partial")?;
        }
        let host = drv("download partial sums", self.stream.clone_dtoh(&partial))?;
        drv("synchronize", self.stream.synchronize())?;
        Ok(host.chunks(SSQ_BLOCKS).map(|p| p.iter().sum()).collect())
    }

    fn ais(
        &self,
        w: &CudaSlice<f32>,
        bv_t: &CudaSlice<f32>,
        bh_t: &CudaSlice<f32>,
        n: usize,
        nv: usize,
        nh: usize,
        runs: usize,
        betas: &[f64],
        rng: &[RngKey],
        counter: u32,
    ) -> Result<Vec<f64>> {
        check_models("ais keys", rng.len(), self.models)?;
        check("ais W", self.slab(w), nv * nh)?;
        check("ais bv_t", self.slab(bv_t), n * nv)?;
        check("ais bh_t", self.slab(bh_t), n * nh)?;
        if betas.len() < 2 || betas[0] != 0.0 || *betas.last().unwrap_or(&0.0) != 1.0 {
            return Err(Error::msg("ais: the schedule must start at beta = 0 and end at beta = 1"));
        }
        let chains = n * runs;
        if chains == 0 {
            return Ok(vec![]);
        }
        let betas_f: Vec<f32> = betas.iter().map(|&b| b as f32).collect();
        // not `self.upload`: the schedule is shared by the packed models, not P slabs
        let betas_d = drv("upload AIS schedule", self.stream.clone_htod(&betas_f))?;
        // log-weights [P, N*M]: model p's at p N M (the kernels' grid y)
        let mut logw = drv("alloc AIS log-weights", self.stream.alloc_zeros::<f64>(chains * self.models))?;
        let (w_ps, bv_ps, bh_ps) = (self.ps(w), self.ps(bv_t), self.ps(bh_t));
        let (seed, stream, key_vals) = key_args(rng);
        let mut cache = self.arg_cache()?;
        let keys = self.per_model(false, &mut cache.ais_keys, key_vals.clone(), &key_vals)?;
        let (ni, vi, hi, mi) = (i32_of("N", n)?, i32_of("V", nv)?, i32_of("H", nh)?, i32_of("M", runs)?);
        i32_of("N*M", chains)?;
        let nb = i32_of("betas", betas.len())?;
        // the kernel (tensor cores, v2 or v1), its launch shape, and the arguments by which the
        // three signatures differ (between `counter` and `logw`); the tensor-core kernel reads
        // bias pairs as float2, so each model's slab must be 8-byte aligned
        let plan = self.ais_plan(nv, nh, self.slabs_even(&[bv_ps, bh_ps]));
        let name = plan.name();
        let (func, cfg, extra) = match plan {
            AisPlan::TensorCore { smem, .. } => (self.lazy_func(&name)?, self.tc_cfg(chains, smem), vec![]),
            AisPlan::V2 { ldw, smem, .. } => {
                (self.func(&name)?, self.chain_cfg(chains, CHAINS_PER_BLOCK_V2, smem), vec![ldw])
            }
            AisPlan::V1 => {
                let (w_sh, ldw, smem) = self.w_layout(nv, nh, CHAINS_PER_BLOCK * (nv + 2 * nh) * 4);
                self.check_smem("ais_chains", smem)?;
                (self.func(&name)?, self.chain_cfg(chains, CHAINS_PER_BLOCK, smem), vec![w_sh, ldw])
            }
        };
        {
            let mut lb = self.stream.launch_builder(func);
            lb.arg(w).arg(bv_t).arg(bh_t).arg(&ni).arg(&vi).arg(&hi).arg(&mi).arg(&betas_d).arg(&nb);
            lb.arg(&seed).arg(&stream).arg(&counter);
            for x in &extra {
                lb.arg(x);
            }
            lb.arg(&mut logw);
            arg_opt(&mut lb, keys);
            lb.arg(&w_ps).arg(&bv_ps).arg(&bh_ps);
            // W, bv_t, bh_t checked above; logw holds P N M doubles; smem covers what each stages
            self.launch(&mut lb, cfg, &name)?;
        }
        let out = drv("download AIS log-weights", self.stream.clone_dtoh(&logw))?;
        drv("synchronize", self.stream.synchronize())?;
        Ok(out)
    }

    fn gibbs_marginals(
        &self,
        w: &CudaSlice<f32>,
        bv_t: &CudaSlice<f32>,
        bh_t: &CudaSlice<f32>,
        n: usize,
        nv: usize,
        nh: usize,
        chains: usize,
        burn_in: usize,
        samples: usize,
        rng: RngKey,
        counter: u32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check("gibbs_marginals W", self.slab(w), nv * nh)?;
        check("gibbs_marginals bv_t", self.slab(bv_t), n * nv)?;
        check("gibbs_marginals bh_t", self.slab(bh_t), n * nh)?;
        check("gibbs_marginals out", self.slab(out), n * nv)?;
        if chains == 0 || samples == 0 {
            return Err(Error::msg("gibbs_marginals: chains and samples must be positive"));
        }
        if n == 0 {
            return Ok(());
        }
        let norm = (1.0 / (chains * samples) as f64) as f32;
        let (w_ps, bv_ps, bh_ps, o_ps) = (self.ps(w), self.ps(bv_t), self.ps(bh_t), self.ps(out));
        if let Some((r, ldw, smem)) = self.v2_layout(nv, nh, nv.max(nh) + 8 + nv) {
            let (ni, vi, hi) = (i32_of("N", n)?, i32_of("V", nv)?, i32_of("H", nh)?);
            let (ci, bi, si) = (i32_of("chains", chains)?, i32_of("burn_in", burn_in)?, i32_of("samples", samples)?);
            i32_of("N*chains", n * chains)?;
            let name = format!("gibbs_marginals_v2_r{r}");
            let f = self.func(&name)?;
            let mut lb = self.stream.launch_builder(f);
            lb.arg(w).arg(bv_t).arg(bh_t).arg(&ni).arg(&vi).arg(&hi).arg(&ci).arg(&bi).arg(&si);
            lb.arg(&rng.seed).arg(&rng.stream).arg(&counter).arg(&norm).arg(&ldw).arg(out);
            lb.arg(&w_ps).arg(&bv_ps).arg(&bh_ps).arg(&o_ps);
            let cfg = self.chain_cfg(n, CHAINS_PER_BLOCK_V2, smem);
            return self.launch(&mut lb, cfg, &name);
        }
        let (w_sh, ldw, smem) = self.w_layout(nv, nh, CHAINS_PER_BLOCK * (3 * nv + nh) * 4);
        self.check_smem("gibbs_marginals", smem)?;
        let (ni, vi, hi) = (i32_of("N", n)?, i32_of("V", nv)?, i32_of("H", nh)?);
        let (ci, bi, si) = (i32_of("chains", chains)?, i32_of("burn_in", burn_in)?, i32_of("samples", samples)?);
        i32_of("N*chains", n * chains)?;
        let f = self.func("gibbs_marginals")?;
        let mut lb = self.stream.launch_builder(f);
        lb.arg(w).arg(bv_t).arg(bh_t).arg(&ni).arg(&vi).arg(&hi).arg(&ci).arg(&bi).arg(&si);
        lb.arg(&rng.seed).arg(&rng.stream).arg(&counter).arg(&norm).arg(&w_sh).arg(&ldw).arg(out);
        lb.arg(&w_ps).arg(&bv_ps).arg(&bh_ps).arg(&o_ps);
        let cfg = self.chain_cfg(n, CHAINS_PER_BLOCK, smem);
        self.launch(&mut lb, cfg, "gibbs_marginals")
    }
}

impl Drop for Cuda {
    fn drop(&mut self) {
        let _ = self.stream.synchronize();
        let _ = &self.ctx;
    }
}

/// The kernel files and their entry points, as (file, kernels), for `rtrbm info`.
pub fn kernel_inventory() -> Vec<(&'static str, Vec<&'static str>)> {
    KERNEL_FILES.iter().map(|(file, _, names)| (*file, names.to_vec())).collect()
}
