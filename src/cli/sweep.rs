//! `rtrbm sweep`: plan, run (threads, GPUs, Slurm workers), Slurm scripts and reports of
//! training sweeps (see [`crate::sweep`] and docs/SWEEPS.md).

use crate::sweep::queue::{self, Devices, QueueOptions};
use crate::sweep::report::{self, SlurmOptions};
use crate::sweep::Sweep;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum SweepCmd {
    /// Print the runs a sweep file expands to (nothing is written).
    Plan {
        /// The sweep file (YAML).
        file: PathBuf,
    },
    /// Train every pending run of a sweep; safe to start several times (on several machines)
    /// against the same folder, and to restart after a crash.
    Run(RunArgs),
    /// Write an sbatch array script whose tasks each run `rtrbm sweep run FILE --worker`.
    Slurm(SlurmArgs),
    /// Collect the figures of every run: report.md, report.csv, best.yaml and pictures.
    Report {
        /// The sweep file (YAML).
        file: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The sweep file (YAML).
    pub file: PathBuf,
    /// all (one worker per GPU, the CPU when there is none), cpu, or GPU numbers such as 0,1.
    #[arg(long, default_value = "all")]
    pub devices: Devices,
    /// Runs trained at once: on the CPU (default: the number of cores), or on each GPU, each on
    /// its own CUDA stream (default 1 per GPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Run one worker loop only (what each Slurm array task runs).
    #[arg(long)]
    pub worker: bool,
    /// CPU threads per run (default: cores / workers).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Train up to N fresh runs that share model, data, chunking, batch and CD schedule as one
    /// pack of models: on a GPU in the same kernel launches (the model index is a grid
    /// dimension), on the CPU together on the worker's threads. 1 = each run alone. Default: on
    /// a GPU the pending runs shared among the GPU workers, at most 64 per pack; on the CPU 1.
    #[arg(long)]
    pub pack: Option<usize>,
    /// A claim whose heartbeat is older than this many seconds is taken over.
    #[arg(long, default_value_t = 120)]
    pub stale_after: u64,
    /// Also compute the validation proxy on the test split with each run's best model.
    #[arg(long)]
    pub test: bool,
    /// Only one line at the end.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct SlurmArgs {
    /// The sweep file (YAML).
    pub file: PathBuf,
    #[arg(long)]
    pub partition: Option<String>,
    /// GPUs per array task (none: CPU tasks).
    #[arg(long)]
    pub gpus_per_task: Option<usize>,
    /// CPUs per array task (passed on as --threads).
    #[arg(long)]
    pub cpus_per_task: Option<usize>,
    /// Time limit of each task, e.g. 04:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// At most this many array tasks at once.
    #[arg(long)]
    pub array_parallel: Option<usize>,
    /// Array tasks (default: one per run not yet done).
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Extra #SBATCH option, e.g. --sbatch=--account=abc (repeatable).
    #[arg(long = "sbatch")]
    pub extra: Vec<String>,
    /// Runs per pack in each task (passed on as `sweep run --pack`; default: the worker's
    /// automatic choice, up to 64 on a GPU, 1 on the CPU). The array has one task per pack.
    #[arg(long)]
    pub pack: Option<usize>,
    /// Where to write the script (default: <sweep folder>/sweep.sbatch).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(cmd: SweepCmd) -> anyhow::Result<()> {
    match cmd {
        SweepCmd::Plan { file } => {
            let sweep = Sweep::load(&file)?;
            println!("sweep {}: {} runs -> {}\n", sweep.name, sweep.runs.len(), sweep.out.display());
            print!("{}", sweep.plan_table());
        }
        SweepCmd::Run(a) => {
            let sweep = Sweep::load(&a.file)?;
            let beat = (a.stale_after / 6).clamp(1, 10);
            let opts = QueueOptions {
                devices: a.devices,
                workers: a.workers,
                threads: a.threads,
                pack: a.pack.map_or(0, |p| p.max(1)),
                single_worker: a.worker,
                stale_after: Duration::from_secs(a.stale_after.max(2)),
                heartbeat_every: Duration::from_secs(beat),
                test_figure: a.test,
                verbose: !a.quiet,
            };
            let s = queue::run_sweep(&sweep, &opts)?;
            eprintln!(
                "sweep {}: trained {} run{} now, {} failed, {} of {} done{}",
                sweep.name,
                s.trained.len(),
                if s.trained.len() == 1 { "" } else { "s" },
                s.failed.len(),
                s.done_now,
                s.total,
                if s.done_now < s.total {
                    " (others may be running elsewhere; run again to pick up stale ones)"
                } else {
                    ""
                }
            );
            if !s.failed.is_empty() {
                anyhow::bail!(
                    "{} run(s) failed: {}",
                    s.failed.len(),
                    s.failed.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join("; ")
                );
            }
        }
        SweepCmd::Slurm(a) => {
            let sweep = Sweep::load(&a.file)?;
            queue::prepare(&sweep)?;
            let opts = SlurmOptions {
                partition: a.partition,
                gpus_per_task: a.gpus_per_task,
                cpus_per_task: a.cpus_per_task,
                time: a.time,
                array_parallel: a.array_parallel,
                tasks: a.tasks,
                binary: None,
                extra: a.extra,
                pack: a.pack,
            };
            let text = report::slurm_script(&sweep, &opts)?;
            let out = a.out.unwrap_or_else(|| sweep.out.join("sweep.sbatch"));
            report::write_script(&out, &text)?;
            println!("{}", out.display());
            eprintln!("wrote {}; submit it with `sbatch {}`", out.display(), out.display());
        }
        SweepCmd::Report { file } => {
            let sweep = Sweep::load(&file)?;
            let r = report::report(&sweep)?;
            print!("{}", r.markdown);
            for f in &r.files {
                eprintln!("wrote {}", f.display());
            }
        }
    }
    Ok(())
}
