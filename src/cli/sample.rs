//! `rtrbm sample`: generate a piece from a checkpoint (SPEC 6) as MIDI and a piano-roll picture.

use super::device::{default_threads, Device, DeviceChoice};
use crate::generate::{generate, ChainStart, GenerateOptions};
use crate::model::Model;
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// A checkpoint written by `rtrbm train` (e.g. runs/jsb_lstm_rtrbm/best.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Frames to generate (after the primer).
    #[arg(long, default_value_t = 128)]
    pub frames: usize,
    /// Output MIDI file.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a piano-roll picture.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Prime with a piece: DATA:SPLIT:INDEX (e.g. jsb:test:0) or a .mid file.
    #[arg(long)]
    pub prime: Option<String>,
    /// Use at most this many frames of the primer.
    #[arg(long, default_value_t = 16)]
    pub prime_frames: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Gibbs steps per frame.
    #[arg(long, default_value_t = 25)]
    pub gibbs: usize,
    /// Start of each frame's chain.
    #[arg(long, value_enum, default_value = "zeros")]
    pub start: ChainStart,
    /// Side-slipping: probability per frame of transposing a short span out of key (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub side_slip: f64,
    /// Length of a side-slip in frames.
    #[arg(long, default_value_t = 2)]
    pub side_slip_span: usize,
    /// Length of a frame in beats, for the MIDI file (JSB: 1 = quarter note; others 0.5).
    #[arg(long, default_value_t = 1.0)]
    pub frame_beats: f64,
    /// Tempo of the MIDI file.
    #[arg(long, default_value_t = 100.0)]
    pub bpm: f64,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    #[arg(long)]
    pub threads: Option<usize>,
}

fn load_primer(spec: &str, max_frames: usize) -> anyhow::Result<crate::data::Sequence> {
    let mut seq = if spec.ends_with(".mid") || spec.ends_with(".midi") {
        crate::midi::read_midi(std::path::Path::new(spec), &Default::default())?
    } else {
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        anyhow::ensure!(parts.len() == 3, "--prime: expected DATA:SPLIT:INDEX or a .mid file, got `{spec}`");
        let (index, split, data) = (parts[0], parts[1], parts[2]);
        let ds = crate::data::open(data)?;
        let split = match split {
            "train" => crate::data::Split::Train,
            "valid" => crate::data::Split::Valid,
            "test" => crate::data::Split::Test,
            other => anyhow::bail!("--prime: unknown split `{other}`"),
        };
        let i: usize = index.parse().with_context(|| format!("--prime: bad index `{index}`"))?;
        ds.split(split).get(i).cloned().with_context(|| format!("--prime: {data} {} has no piece {i}", split.name()))?
    };
    seq.frames.truncate(max_frames);
    Ok(seq)
}

pub fn run(args: SampleArgs) -> anyhow::Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&args.side_slip), "--side-slip must be a probability in [0, 1]");
    anyhow::ensure!(args.gibbs > 0, "--gibbs must be at least 1");
    let ck = crate::checkpoint::load(&args.checkpoint)?;
    let prime = args.prime.as_deref().map(|p| load_primer(p, args.prime_frames)).transpose()?;
    let opts = GenerateOptions {
        frames: args.frames,
        gibbs_k: args.gibbs,
        start: args.start,
        seed: args.seed,
        prime,
        side_slip: args.side_slip,
        side_slip_span: args.side_slip_span,
    };
    let device = Device::open(args.device, args.threads.unwrap_or_else(default_threads))?;
    let piece = crate::with_device!(device, |be| {
        let model = Model::from_checkpoint(be, &ck)?;
        generate(be, &model, &opts)?
    });
    crate::midi::write_midi(&args.out, &piece, args.frame_beats, args.bpm)?;
    let notes: usize = piece.frames.iter().map(|f| f.len()).sum();
    eprintln!("wrote {} ({} frames, {} notes)", args.out.display(), piece.len(), notes);
    if let Some(png) = &args.png {
        let title = format!("{} sample, seed {}", ck.spec.kind.name(), args.seed);
        crate::plot::piano_roll_png(png, &piece, &title)?;
        eprintln!("wrote {}", png.display());
    }
    Ok(())
}
