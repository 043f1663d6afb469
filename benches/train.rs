//! Throughput of the CPU backend's hot paths.
//!
//! `cargo bench --no-default-features --bench train` runs the criterion benchmarks:
//! one paper-protocol update (one JSB chunk of <= 100 frames, CD-25) for each model kind on 1 and
//! 2 threads, and AIS chain-steps (V = H = 88, 2000 chains x 200 betas).
//!
//! `RTRBM_BENCH_QUICK=1 cargo bench --no-default-features --bench train` instead prints the
//! median / min / max of the `rtrbm::bench` workloads (updates/s and chain-steps/s), the figures
//! of `docs/PERFORMANCE.md`. An optional filter argument selects workloads by name.

use criterion::{Criterion, Throughput};
use rtrbm::backend::Cpu;
use rtrbm::bench::{ais_workload, train_workload};
use rtrbm::config::{CdStep, Config};
use rtrbm::model::{ChunkStore, ModelKind};
use rtrbm::train::{make_chunks, Trainer};
use std::time::Duration;

const KINDS: [ModelKind; 4] = [ModelKind::Rbm, ModelKind::Rtrbm, ModelKind::RnnRbm, ModelKind::LstmRtrbm];

fn quick(filter: &str) {
    for threads in [1usize, 2] {
        let be = Cpu::<f32>::new(threads);
        for kind in KINDS {
            let name = format!("train/{}/{}t", kind.name(), threads);
            if name.contains(filter) {
                println!("{}", train_workload(&be, kind, 1, 25, 200, false).expect("train workload"));
            }
        }
        if format!("ais/{threads}t").contains(filter) {
            println!("{}", ais_workload(&be, 2000, 200).expect("ais workload"));
        }
    }
}

fn criterion_benches(c: &mut Criterion) {
    let data = rtrbm::data::jsb_embedded();
    let chunks: Vec<Vec<f32>> = make_chunks(&data.train, 100);
    for threads in [1usize, 2] {
        let be = Cpu::<f32>::new(threads);
        let mut group = c.benchmark_group(format!("train_cd25_{threads}t"));
        group.sample_size(20).measurement_time(Duration::from_secs(4)).throughput(Throughput::Elements(1));
        for kind in KINDS {
            let mut cfg = Config { model: rtrbm::bench::paper_spec(kind), ..Config::default() };
            cfg.train.cd_schedule = vec![CdStep { from: 0, k: 25 }];
            let store = ChunkStore::new(&be, &chunks, cfg.model.visible).expect("chunk store");
            let mut trainer = Trainer::new(&be, cfg).expect("trainer");
            let mut update = 0u64;
            group.bench_function(kind.name(), |b| {
                b.iter(|| {
                    let id = update as usize % chunks.len();
                    trainer.step_store(&store, &[Some(id)], &[update]).expect("step");
                    update += 1;
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("ais_{threads}t"));
        let (chains, betas) = (2000usize, 200usize);
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(6))
            .throughput(Throughput::Elements((chains * (betas - 1)) as u64));
        let (w, bv, bh) = rtrbm::bench::ais_params::<f32>(88, 88, 17);
        let schedule: Vec<f64> = (0..betas).map(|i| i as f64 / (betas - 1) as f64).collect();
        let key = rtrbm::rng::RngKey::new(99, 3);
        group.bench_function("v88_h88_2000x200", |b| {
            b.iter(|| {
                rtrbm::backend::Backend::ais(&be, &w, &bv, &bh, 1, 88, 88, chains, &schedule, &[key], 0).expect("ais")
            })
        });
        group.finish();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let filter = args.first().cloned().unwrap_or_default();
    if std::env::var_os("RTRBM_BENCH_QUICK").is_some() {
        quick(&filter);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
