//! Sweep results and Slurm scripts.
//!
//! [`report`] collects every run's `done.json` into a table sorted by the validation figure
//! (Markdown `report.md` and `report.csv` in the sweep folder), writes the best run's config as
//! `best.yaml`, and draws the figure against each swept numeric field (`valid_vs_<field>.png`).
//! [`slurm_script`] writes an sbatch array whose tasks each run one worker of the queue.

use super::queue::{self, DoneRecord};
use super::{value_str, Sweep};
use crate::error::{Error, Result};
use crate::plot::{line_chart_png, Series};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One row of the report.
#[derive(Clone, Debug)]
pub struct ReportRow {
    pub index: usize,
    pub name: String,
    pub status: &'static str,
    pub params: Vec<String>,
    pub done: Option<DoneRecord>,
}

/// What [`report`] wrote.
#[derive(Clone, Debug)]
pub struct Report {
    /// Sorted: best figure first, runs without one last.
    pub rows: Vec<ReportRow>,
    pub markdown: String,
    pub files: Vec<PathBuf>,
    pub best: Option<String>,
}

/// A Markdown table.
pub fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.5}")).unwrap_or_default()
}

/// `rtrbm sweep report`: writes `report.md`, `report.csv`, `best.yaml` and the pictures.
pub fn report(sweep: &Sweep) -> Result<Report> {
    let stale_after = Duration::from_secs(120);
    let mut rows: Vec<ReportRow> = sweep
        .runs
        .iter()
        .map(|r| {
            let dir = sweep.run_dir(r);
            ReportRow {
                index: r.index,
                name: r.name.clone(),
                status: queue::run_status(&dir, stale_after),
                params: r.params.iter().map(|(_, v)| value_str(v)).collect(),
                done: queue::read_done(&dir),
            }
        })
        .collect();
    let fig = |r: &ReportRow| r.done.as_ref().and_then(|d| d.figure).filter(|f| f.is_finite());
    rows.sort_by(|a, b| match (fig(a), fig(b)) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(a.index.cmp(&b.index)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.index.cmp(&b.index),
    });
    let metric = sweep.runs.first().map(|r| format!("{:?}", r.config.train.valid_metric)).unwrap_or_default();
    let mut header: Vec<String> =
        ["rank", "run", "status", "valid figure", "test figure", "updates", "epochs", "wall s", "pack"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    header.extend(sweep.fields.iter().cloned());
    let table: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(rank, r)| {
            let d = r.done.as_ref();
            let mut row = vec![
                (rank + 1).to_string(),
                r.name.clone(),
                r.status.to_string(),
                fmt_opt(fig(r)),
                fmt_opt(d.and_then(|d| d.test_figure)),
                d.map(|d| d.updates.to_string()).unwrap_or_default(),
                d.map(|d| d.epochs_done.to_string()).unwrap_or_default(),
                d.map(|d| format!("{:.3}", d.wall_s)).unwrap_or_default(),
                d.map(|d| d.pack_size.to_string()).unwrap_or_default(),
            ];
            row.extend(r.params.iter().cloned());
            row
        })
        .collect();
    std::fs::create_dir_all(&sweep.out).map_err(|e| Error::io(&sweep.out, e))?;
    let done = rows.iter().filter(|r| r.status == "done").count();
    let markdown = format!(
        "# sweep {}: {done} of {} runs done\n\nValidation figure: {metric} (higher is better; `valid figure` is the best \
         validation seen in training, else the final model's).\n\n{}",
        sweep.name,
        rows.len(),
        markdown_table(&header, &table)
    );
    let mut files = vec![];
    let md = sweep.out.join("report.md");
    crate::error::write_atomic(&md, markdown.as_bytes())?;
    files.push(md);
    let mut csv = header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",") + "\n";
    for r in &table {
        csv += &(r.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",") + "\n");
    }
    let csv_path = sweep.out.join("report.csv");
    crate::error::write_atomic(&csv_path, csv.as_bytes())?;
    files.push(csv_path);
    let best = rows.first().filter(|r| fig(r).is_some()).map(|r| r.name.clone());
    if let Some(b) = &best {
        let run = &sweep.runs[rows[0].index];
        let text = format!(
            "# best run of sweep {} ({}): {} {:.5}\n{}",
            sweep.name,
            sweep.file.display(),
            b,
            fig(&rows[0]).unwrap_or(f64::NAN),
            run.config.to_yaml()
        );
        let p = sweep.out.join("best.yaml");
        crate::error::write_atomic(&p, text.as_bytes())?;
        files.push(p);
    }
    // the figure against each numeric swept field
    for (fi, field) in sweep.fields.iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = vec![];
        let mut numeric = true;
        for r in &rows {
            let Some(y) = fig(r) else { continue };
            match r.params.get(fi).and_then(|s| s.parse::<f64>().ok()).filter(|x| x.is_finite()) {
                Some(x) => pts.push((x, y)),
                None => numeric = false,
            }
        }
        if !numeric || pts.is_empty() {
            continue;
        }
        let (lo, hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let log = lo > 0.0 && hi / lo >= 20.0;
        if log {
            pts.iter_mut().for_each(|p| p.0 = p.0.log10());
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        // per distinct value: the best and the mean over the runs that share it
        let mut best_pts: Vec<(f64, f64)> = vec![];
        let mut mean_pts: Vec<(f64, f64, usize)> = vec![];
        for &(x, y) in &pts {
            match best_pts.last_mut() {
                Some(b) if b.0 == x => {
                    b.1 = b.1.max(y);
                    let m = mean_pts.last_mut().expect("parallel to best_pts");
                    m.1 += y;
                    m.2 += 1;
                }
                _ => {
                    best_pts.push((x, y));
                    mean_pts.push((x, y, 1));
                }
            }
        }
        let series = vec![
            Series { label: "best run at this value".into(), points: best_pts },
            Series {
                label: "mean over runs".into(),
                points: mean_pts.iter().map(|m| (m.0, m.1 / m.2 as f64)).collect(),
            },
        ];
        let p = sweep.out.join(format!("valid_vs_{}.png", super::sanitize(field)));
        let x_label = if log { format!("log10({field})") } else { field.clone() };
        line_chart_png(&p, &format!("{}: validation figure against {field}", sweep.name), &x_label, &series)?;
        files.push(p);
    }
    Ok(Report { rows, markdown, files, best })
}

/// Settings of [`slurm_script`].
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// GPUs per array task (0 or none: CPU tasks).
    pub gpus_per_task: Option<usize>,
    pub cpus_per_task: Option<usize>,
    /// `--time` (e.g. `02:00:00`).
    pub time: Option<String>,
    /// At most this many tasks at once (`%K` of `--array`).
    pub array_parallel: Option<usize>,
    /// Array tasks (default: one per pack of the runs not yet done, see `pack`).
    pub tasks: Option<usize>,
    /// The `rtrbm` binary (default: this executable).
    pub binary: Option<PathBuf>,
    /// Extra `#SBATCH` lines (without the prefix), e.g. `--account=abc`.
    pub extra: Vec<String>,
    /// Runs per pack in each task (`sweep run --pack`; none: the worker's automatic choice, which
    /// packs up to [`super::queue::GPU_AUTO_PACK`] runs on a GPU task and none on a CPU task).
    pub pack: Option<usize>,
}

fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:=,+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The sbatch array script: each task runs `rtrbm sweep run FILE --worker` on the shared folder.
pub fn slurm_script(sweep: &Sweep, opts: &SlurmOptions) -> Result<String> {
    let pending: Vec<&super::RunSpec> =
        sweep.runs.iter().filter(|r| !sweep.run_dir(r).join("done.json").exists()).collect();
    let gpus = opts.gpus_per_task.unwrap_or(0);
    // one task per pack: a task's worker claims a pack at a time and loops until none is left
    let per_pack = opts.pack.unwrap_or(if gpus > 0 { super::queue::GPU_AUTO_PACK } else { 1 }).max(1);
    let tasks = opts.tasks.unwrap_or_else(|| super::queue::packs_needed(pending.iter().copied(), per_pack)).max(1);
    let pending = pending.len();
    let binary = match &opts.binary {
        Some(b) => super::absolute(b)?,
        None => std::env::current_exe().map_err(|e| Error::msg(format!("cannot find the rtrbm binary: {e}")))?,
    };
    let logs = sweep.out.join("slurm");
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "# Slurm array for sweep `{}` ({} runs, {pending} pending), written by `rtrbm sweep slurm`.\n",
        sweep.name,
        sweep.runs.len()
    );
    s += "# Every task runs one worker of the run queue in the shared sweep folder; submit with `sbatch`.\n";
    s += &format!("#SBATCH --job-name={}\n", sh_quote(&super::sanitize(&sweep.name)));
    let array = match opts.array_parallel {
        Some(k) if k > 0 => format!("0-{}%{k}", tasks - 1),
        _ => format!("0-{}", tasks - 1),
    };
    s += &format!("#SBATCH --array={array}\n#SBATCH --ntasks=1\n");
    s += &format!("#SBATCH --output={}/%A_%a.out\n", logs.display());
    if let Some(p) = &opts.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if gpus > 0 {
        s += &format!("#SBATCH --gpus-per-task={gpus}\n");
    }
    if let Some(c) = opts.cpus_per_task {
        s += &format!("#SBATCH --cpus-per-task={c}\n");
    }
    if let Some(t) = &opts.time {
        s += &format!("#SBATCH --time={t}\n");
    }
    for e in &opts.extra {
        s += &format!("#SBATCH {e}\n");
    }
    // Slurm makes only the task's GPUs visible (as 0..N-1): `all` keeps each of them busy
    let devices = if gpus > 0 { "all" } else { "cpu" };
    let threads = match opts.cpus_per_task {
        Some(c) => format!(" --threads {c}"),
        None => String::new(),
    };
    let pack = match opts.pack {
        Some(p) if p > 1 => format!(" --pack {p}"),
        _ => String::new(),
    };
    s += "set -euo pipefail\n";
    s += &format!(
        "exec {} sweep run {} --worker --devices {devices}{threads}{pack}\n",
        sh_quote(&binary.display().to_string()),
        sh_quote(&sweep.file.display().to_string())
    );
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    Ok(s)
}

/// Writes `text` to `path` as an executable script.
pub fn write_script(path: &Path, text: &str) -> Result<()> {
    crate::error::write_atomic(path, text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
    }
    Ok(())
}
