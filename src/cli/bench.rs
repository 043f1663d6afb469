//! `rtrbm bench`: times the three standard workloads on a device and prints a table.
//!
//! - `train`: the paper protocol (one JSB chunk of <= 100 frames per update, CD-25, whole update);
//! - `train --batch 64`: 64 chunks per update, reported in frames per second too (the real
//!   frames of the timed updates, padding not counted; `--bucket`: batches of similar length);
//! - `ais --chains 472500`: AIS chain-steps per second at V = H = 88.
//!
//! FLOP counts are dense-equivalent (every matrix-vector product counted in full, 2 FLOPs per
//! multiply-add, even where the kernels skip the zeros of binary vectors), so "achieved FLOP/s"
//! compares across implementations; the fraction of peak uses the card's FP32 (non-tensor) peak.

use super::device::{default_threads, Device, DeviceChoice};
use crate::backend::Backend;
use crate::bench::{ais_workload, paper_spec, train_workload, BenchResult};
use crate::model::ModelKind;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(after_help = "Environment: RTRBM_KERNELS selects kernel versions for A/B timing (v1, chain-v1, rec-v1; \
ais-v2: AIS without tensor cores; gibbs-tc: Gibbs chains on tensor cores, opt-in; rec-regs: the LSTM's weights \
in registers, opt-in; fused-fwd / fused-bwd: LSTM-RTRBM's forward / backward recurrences in one launch, opt-in); on CUDA each shape of training update is recorded as a CUDA graph and replayed \
(train and sweep rows say \"recorded updates\"), RTRBM_GRAPHS=0 turns that off; RTRBM_PROFILE=1 adds the device time \
of every CUDA kernel (events around each launch; no graphs then).")]
pub struct BenchArgs {
    /// train | ais | sweep | phases | all (all = paper protocol, batch 64 and AIS; phases = where
    /// the time of one training update goes).
    #[arg(default_value = "all")]
    pub workload: String,
    #[arg(long, value_enum, default_value = "lstm_rtrbm")]
    pub model: ModelKind,
    /// Chunks per update for `train`.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// `train` and `phases`: batches of chunks of similar length, as `train.bucket: true` makes
    /// them (reported as its own workload: the targets are set for batches of random chunks).
    #[arg(long)]
    pub bucket: bool,
    /// Gibbs steps (CD-K) for `train`.
    #[arg(long, default_value_t = 25)]
    pub k: usize,
    /// Updates per timed repetition (default: 200 for batch 1, 20 otherwise).
    #[arg(long)]
    pub updates: Option<usize>,
    /// Models trained at once by `sweep`.
    #[arg(long, default_value_t = 8)]
    pub models: usize,
    /// `sweep`: models per pack (one set of kernel launches per pack on a GPU; 1 = each model
    /// alone, overlapping on streams).
    #[arg(long, default_value_t = 1)]
    pub pack: usize,
    /// AIS chains (472,500 = the JSB test set x 100 runs).
    #[arg(long, default_value_t = 472_500)]
    pub chains: usize,
    /// AIS betas per timed repetition.
    #[arg(long, default_value_t = 200)]
    pub betas: usize,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write the table as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Row {
    workload: String,
    device: String,
    result: BenchResult,
    frames_per_s: Option<f64>,
    flops_per_item: f64,
    achieved_flops: f64,
    fraction_of_fp32_peak: Option<f64>,
}

/// Dense-equivalent FLOPs of one update of `kind` on a chunk of `t` frames, CD-`k`.
fn update_flops(kind: ModelKind, t: f64, k: f64) -> f64 {
    let s = paper_spec(kind);
    let (v, h, u) = (s.visible as f64, s.hidden as f64, s.recurrent as f64);
    // Gibbs: 2 matrix-vector products of V x H per step; CD statistics and free energies: ~6 more
    let rbm = t * (k * 4.0 * v * h + 6.0 * 2.0 * v * h);
    let rec = match kind {
        ModelKind::Rbm => 0.0,
        ModelKind::Rtrbm => t * 3.0 * 2.0 * h * h,
        ModelKind::RnnRbm => t * 3.0 * 2.0 * (u * u + v * u + u * v + u * h),
        ModelKind::LstmRtrbm => t * (3.0 * 2.0 * (h * h + u * h) + 3.0 * 2.0 * (v + u) * 4.0 * u),
    };
    rbm + rec
}

/// FP32 (non-tensor) peak of known cards, in FLOP/s.
fn fp32_peak(device: &str) -> Option<f64> {
    let d = device.to_ascii_lowercase();
    if d.contains("h100") || d.contains("h200") || d.contains("gh200") {
        Some(if d.contains("pcie") { 51.2e12 } else { 66.9e12 })
    } else if d.contains("a100") {
        Some(19.5e12)
    } else {
        None
    }
}

fn row(workload: &str, be_name: &str, r: BenchResult, flops_per_item: f64, frames_per_item: Option<f64>) -> Row {
    let achieved = r.throughput * flops_per_item;
    Row {
        workload: workload.into(),
        device: be_name.into(),
        frames_per_s: frames_per_item.map(|f| f * r.throughput),
        flops_per_item,
        achieved_flops: achieved,
        fraction_of_fp32_peak: fp32_peak(be_name).map(|p| achieved / p),
        result: r,
    }
}

/// Runs the workloads of `args` on `be`, handing each row to `emit` as soon as it is measured (so
/// that a run cut short by a time limit still prints what it finished).
fn run_on<B: Backend>(be: &B, args: &BenchArgs, emit: &mut dyn FnMut(Row) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let name = be.name();
    let train = |batch: usize| -> anyhow::Result<Row> {
        let updates = args.updates.unwrap_or(if batch == 1 { 200 } else { 20 });
        let bucket = args.bucket && batch > 1;
        let r = train_workload(be, args.model, batch, args.k, updates, bucket)?;
        // the real frames of the timed updates (JSB: 13,807 training frames in 243 chunks of
        // <= 100 frames, 56.8 on average; the padding is not counted)
        let frames = r.frames_per_update.unwrap_or(0.0);
        let flops = update_flops(args.model, frames, args.k as f64);
        let tags = crate::bench::workload_tags(bucket, r.recorded);
        let label = format!("train {} batch {batch} CD-{}{tags}", args.model.name(), args.k);
        Ok(row(&label, &name, r, flops, Some(frames)))
    };
    let ais = || -> anyhow::Result<Row> {
        let r = ais_workload(be, args.chains, args.betas)?;
        Ok(row(&format!("ais {} chains V=H=88", args.chains), &name, r, 4.0 * 88.0 * 88.0, None))
    };
    match args.workload.as_str() {
        "train" => emit(train(args.batch)?),
        "ais" => emit(ais()?),
        "sweep" => anyhow::bail!("internal: sweep is dispatched before the device is opened"),
        "all" => {
            emit(train(1)?)?;
            emit(train(64)?)?;
            emit(ais()?)
        }
        other => anyhow::bail!("unknown workload `{other}` (expected train, ais, sweep, phases or all)"),
    }
}

/// `bench sweep`: N models at once, in packs of `--pack` models, the packs spread over
/// `--threads` host threads: on the CPU one backend per pack ([`crate::backend::Packed`] when
/// packing, its models on the threads the packs leave), on a GPU one CUDA stream per pack
/// (`Cuda::fork`), packed natively.
fn run_sweep(args: &BenchArgs) -> anyhow::Result<Vec<Row>> {
    let threads = args.threads.unwrap_or_else(default_threads);
    let updates = args.updates.unwrap_or(20);
    let device = Device::open(args.device, threads)?;
    let (models, pack, k) = (args.models, args.pack.max(1), args.k);
    let (r, dev) = match device {
        Device::Cpu(_) => {
            let cpu = || crate::backend::Cpu::<f32>::new(1);
            let r = if pack == 1 {
                crate::bench::sweep_workload(|_, _| Ok(cpu()), threads, models, 1, k, updates)?
            } else {
                // the packs on host threads, each pack's models on the threads left
                let groups = models.div_ceil(pack).min(threads);
                let per_pack = (threads / groups).max(1);
                crate::bench::sweep_workload(
                    |_, p| crate::backend::Packed::with_threads(cpu(), p, per_pack),
                    groups,
                    models,
                    pack,
                    k,
                    updates,
                )?
            };
            (r, format!("cpu ({threads} threads, f32)"))
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(c) => {
            let dev = format!("{} ({threads} threads)", c.name());
            (crate::bench::sweep_workload(|_, p| c.fork()?.packed(p), threads, models, pack, k, updates)?, dev)
        }
    };
    // each model-update is one JSB chunk, drawn evenly over the chunks: their mean length
    let frames = crate::bench::jsb_mean_chunk_frames();
    let flops = update_flops(ModelKind::LstmRtrbm, frames, args.k as f64);
    let name = format!("sweep {models} models (packs of {pack}) CD-{k}");
    Ok(vec![row(&name, &dev, r, flops, Some(frames))])
}

/// With `RTRBM_PROFILE=1` on a GPU: the device time of each kernel over everything the command
/// launched (warm-up included), the longest first.
fn print_kernel_profile(device: &Device) -> anyhow::Result<()> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(c) = device {
        if let Some(times) = c.kernel_profile()? {
            let total: f64 = times.iter().map(|t| t.total_ms).sum();
            println!("\nkernel profile (RTRBM_PROFILE=1): device time per kernel, every launch of this command");
            println!("{:<34} {:>9} {:>12} {:>10} {:>7}", "kernel", "launches", "total ms", "mean us", "share");
            for t in &times {
                println!(
                    "{:<34} {:>9} {:>12.3} {:>10.2} {:>6.1}%",
                    t.kernel,
                    t.launches,
                    t.total_ms,
                    1e3 * t.total_ms / t.launches.max(1) as f64,
                    100.0 * t.total_ms / total.max(1e-12)
                );
            }
        }
    }
    #[cfg(not(feature = "cuda"))]
    let _ = device;
    Ok(())
}

/// `bench phases`: the time of one update, unsynchronised and phase by phase.
fn run_phases(args: &BenchArgs) -> anyhow::Result<()> {
    let device = Device::open(args.device, args.threads.unwrap_or_else(default_threads))?;
    let updates = args.updates.unwrap_or(if args.batch == 1 { 200 } else { 20 });
    let p = crate::with_device!(device, |be| crate::bench::phase_workload(
        be,
        args.model,
        args.batch,
        args.k,
        updates,
        args.bucket
    ))?;
    println!("{} on {} ({} updates)", p.workload, p.device, p.updates);
    println!("{:<44} {:>10}", "per update", "us");
    println!("{:<44} {:>10.1}", "whole update (synchronised once at the end)", 1e6 * p.update_s);
    println!("{:<44} {:>10.1}", "host time of one step call (unsynchronised)", 1e6 * p.host_issue_s);
    let total: f64 = p.phases.iter().map(|x| x.1).sum();
    for (name, s) in &p.phases {
        println!("{:<44} {:>10.1} {:>5.1}%", format!("phase {name} (synchronised)"), 1e6 * s, 100.0 * s / total);
    }
    println!("{:<44} {:>10.1}", "sum of the phases", 1e6 * total);
    print_kernel_profile(&device)?;
    if let Some(path) = &args.json {
        crate::error::write_atomic(path, serde_json::to_string_pretty(&p)?.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn print_header() {
    println!(
        "{:<34} {:<30} {:>10} {:>8} {:>14} {:>14} {:>11} {:>7}",
        "workload", "device", "median s", "spread", "items/s", "frames/s", "GFLOP/s", "% peak"
    );
}

fn print_row(r: &Row) {
    println!(
        "{:<34} {:<30} {:>10.4} {:>7.1}% {:>14.4e} {:>14} {:>11.1} {:>7}",
        r.workload,
        r.device.chars().take(30).collect::<String>(),
        r.result.median_s,
        100.0 * (r.result.max_s - r.result.min_s) / r.result.median_s.max(1e-12),
        r.result.throughput,
        r.frames_per_s.map(|f| format!("{f:.4e}")).unwrap_or_else(|| "-".into()),
        r.achieved_flops / 1e9,
        r.fraction_of_fp32_peak.map(|f| format!("{:.2}%", 100.0 * f)).unwrap_or_else(|| "-".into()),
    );
    println!("{:<34} ({} per second)", "", r.result.unit);
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.workload == "phases" {
        return run_phases(&args);
    }
    let mut rows: Vec<Row> = vec![];
    // each row is printed, and the JSON rewritten, as soon as it is measured
    let mut emit = |r: Row| -> anyhow::Result<()> {
        if rows.is_empty() {
            print_header();
        }
        print_row(&r);
        rows.push(r);
        if let Some(p) = &args.json {
            crate::error::write_atomic(p, serde_json::to_string_pretty(&rows)?.as_bytes())?;
        }
        Ok(())
    };
    let mut device = None;
    if args.workload == "sweep" {
        for r in run_sweep(&args)? {
            emit(r)?;
        }
    } else {
        let dev = device.insert(Device::open(args.device, args.threads.unwrap_or_else(default_threads))?);
        crate::with_device!(dev, |be| run_on(be, &args, &mut emit))?;
    }
    if rows.iter().any(|r| r.device.contains("emulator")) {
        println!("note: the CUDA emulator (tests/cuda-emu) runs on the CPU; these are not GPU figures");
    }
    if let Some(d) = &device {
        print_kernel_profile(d)?;
    }
    if let Some(p) = &args.json {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
