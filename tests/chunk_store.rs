//! The device-resident training data: a [`ChunkStore`] uploaded once and
//! [`Workspace::gather`] (one `gather_frames` operation per update) must write exactly what
//! [`Workspace::load`] writes from host arrays, for lone and packed backends, with chunks of
//! different lengths, short batches and padding sequences; and an update from the store must
//! equal an update from host chunks bit for bit. Bad spans are errors, not panics. (The CUDA
//! kernel is held to the same standard in `gpu_kernels.rs`.)

use rtrbm::backend::{Backend, Cpu, Packed};
use rtrbm::config::Config;
use rtrbm::data::jsb_embedded;
use rtrbm::model::{ChunkStore, ModelKind, Workspace};
use rtrbm::train::{make_chunks, Trainer};
use std::path::Path;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tiny.yaml");
const NV: usize = 88;

fn chunks() -> Vec<Vec<f32>> {
    let mut d = jsb_embedded();
    d.train.truncate(4);
    // chunks of 1..=16 frames: the last chunk of each sequence is shorter
    make_chunks(&d.train, 16)
}

/// Every buffer `load` and `gather` write, downloaded.
fn loaded<B: Backend>(be: &B, ws: &Workspace<B>) -> [Vec<B::F>; 3] {
    [be.download(&ws.v).unwrap(), be.download(&ws.mask).unwrap(), be.download(&ws.wmask).unwrap()]
}

/// `ids` through the store and the same chunks through host arrays give the same workspace,
/// also when the workspace held a different, longer batch before.
fn gather_equals_load<B: Backend<F = f32>>(be: &B, b: usize, ids: &[Option<usize>]) {
    let chunks = chunks();
    let spec = Config::load(Path::new(TINY)).unwrap().model;
    let store = ChunkStore::new(be, &chunks, NV).unwrap();
    let mut via_store = Workspace::new(be, &spec, 16, b).unwrap();
    let mut via_host = Workspace::new(be, &spec, 16, b).unwrap();
    // dirty both workspaces first: every position must be rewritten
    let longest: Vec<Option<usize>> = vec![Some(0); ids.len()];
    via_store.gather(be, &store, &longest).unwrap();
    let refs: Vec<&[f32]> = ids.iter().map(|id| id.map_or(&[][..], |i| chunks[i].as_slice())).collect();
    let got = via_store.gather(be, &store, ids).unwrap();
    let want = via_host.load(be, &refs, NV).unwrap();
    assert_eq!(got, want, "T and frames per model");
    let (g, w) = (loaded(be, &via_store), loaded(be, &via_host));
    for (name, (g, w)) in ["v", "mask", "wmask"].iter().zip(g.iter().zip(&w)) {
        assert_eq!(g.len(), w.len(), "{name}");
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(g), bits(w), "{name} differs for ids {ids:?}");
    }
}

#[test]
fn gather_writes_what_load_writes_lone_and_packed() {
    let n = chunks().len();
    assert!(n > 8, "{n} chunks");
    // frame counts differ: some chunks are shorter than 16 frames
    let lens: Vec<usize> = chunks().iter().map(|c| c.len() / NV).collect();
    assert!(lens.iter().any(|&l| l < 16) && lens.contains(&16), "{lens:?}");
    let short = lens.iter().position(|&l| l < 16).unwrap();
    let cpu = Cpu::<f32>::new(1);
    gather_equals_load(&cpu, 1, &[Some(3)]);
    gather_equals_load(&cpu, 1, &[Some(short)]);
    gather_equals_load(&cpu, 3, &[Some(short), Some(n - 1), None]);
    for threads in [1, 2] {
        let packed = Packed::with_threads(Cpu::<f32>::new(1), 3, threads).unwrap();
        // model 1 is a finished run (all padding), model 2 has a short batch
        let ids = [Some(0), Some(short), None, None, Some(n - 1), None];
        gather_equals_load(&packed, 2, &ids);
    }
}

#[test]
fn bad_spans_are_errors() {
    let chunks = chunks();
    let cpu = Cpu::<f32>::new(1);
    let spec = Config::load(Path::new(TINY)).unwrap().model;
    let store = ChunkStore::new(&cpu, &chunks, NV).unwrap();
    let mut ws = Workspace::new(&cpu, &spec, 16, 2).unwrap();
    let err = ws.gather(&cpu, &store, &[Some(chunks.len()), None]).unwrap_err().to_string();
    assert!(err.contains("store"), "{err}");
    assert!(ws.gather(&cpu, &store, &[Some(0)]).is_err(), "one id for a batch of two");
    assert!(ws.gather(&cpu, &store, &[None, None]).is_err(), "a batch of padding only");
    let mut small = Workspace::new(&cpu, &spec, 4, 1).unwrap();
    let err = small.gather(&cpu, &store, &[Some(0)]).unwrap_err().to_string();
    assert!(err.contains("16 frames"), "{err}");
    // the operation itself checks spans against the store and T_max
    let (mut v, mut m, mut w) = (cpu.zeros(16 * NV).unwrap(), cpu.zeros(16).unwrap(), cpu.zeros(16).unwrap());
    let rows = chunks.iter().map(|c| c.len() / NV).sum::<usize>() as u32;
    assert!(cpu.gather_frames(&store_of(&cpu, &chunks), &[[rows - 2, 3]], 16, 1, NV, &mut v, &mut m, &mut w).is_err());
    assert!(cpu.gather_frames(&store_of(&cpu, &chunks), &[[0, 17]], 16, 1, NV, &mut v, &mut m, &mut w).is_err());
    assert!(cpu.gather_frames(&store_of(&cpu, &chunks), &[[rows - 3, 3]], 16, 1, NV, &mut v, &mut m, &mut w).is_ok());
    // chunks must be whole frames
    assert!(ChunkStore::new(&cpu, &[vec![0.0; NV + 1]], NV).is_err());
}

fn store_of(cpu: &Cpu<f32>, chunks: &[Vec<f32>]) -> Vec<f32> {
    cpu.upload_store(&chunks.concat()).unwrap()
}

/// ... and with recorded updates asked for (`Trainer::record_updates`), which the CPU does not do:
/// the same updates, nothing recorded.
#[test]
fn updates_from_the_store_equal_updates_from_host_chunks() {
    let chunks = chunks();
    let mut cfg = Config::load(Path::new(TINY)).unwrap();
    cfg.model.kind = ModelKind::LstmRtrbm;
    cfg.train.batch = 2;
    cfg.train.chunk_frames = 16;
    let cpu = Cpu::<f32>::new(1);
    let store = ChunkStore::new(&cpu, &chunks, NV).unwrap();
    let mut a = Trainer::new(&cpu, cfg.clone()).unwrap();
    a.record_updates(false);
    let mut b = Trainer::new(&cpu, cfg.clone()).unwrap();
    let mut c = Trainer::new(&cpu, cfg).unwrap();
    c.record_updates(true);
    for u in 0..5u64 {
        let ids = [Some(u as usize), Some(chunks.len() - 1 - u as usize)];
        let refs: Vec<&[f32]> = ids.iter().map(|i| chunks[i.unwrap()].as_slice()).collect();
        let got = a.step_store(&store, &ids, &[u]).unwrap();
        assert_eq!(got, b.step(&refs, u).map(|(t, f)| (t, vec![f])).unwrap());
        assert_eq!(got, c.step_store(&store, &ids, &[u]).unwrap());
        assert_eq!(a.last_costs(16).unwrap(), b.last_costs(16).unwrap());
        assert_eq!(a.last_costs(16).unwrap(), c.last_costs(16).unwrap());
    }
    assert_eq!(a.host_params(0).unwrap(), b.host_params(0).unwrap());
    assert_eq!(a.host_params(0).unwrap(), c.host_params(0).unwrap());
    assert!(!c.records_updates() && c.recorded_shapes() == 0, "the CPU records nothing");
}
