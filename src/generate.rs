//! Generation (SPEC 6): sample a piece frame by frame from a trained model.
//!
//! At each frame the biases bv_t, bh_t come from the history; a Gibbs chain of K steps under
//! RBM_t, started from zeros or from the previous frame, gives v_t; the recurrent states are
//! then updated with the sampled frame. Optional priming with the frames of a given piece, and
//! optional side-slipping (the paper's future work): with probability `p` per frame a span of
//! `span` frames is transposed by one semitone up or down, out of key, and fed back as history.

use crate::backend::Backend;
use crate::data::{Sequence, KEYS};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::model::{Model, ModelKind, Workspace};
use crate::rng::{HostRng, RngKey};

/// Where each frame's Gibbs chain starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ChainStart {
    Zeros,
    Previous,
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub frames: usize,
    pub gibbs_k: usize,
    pub start: ChainStart,
    pub seed: u64,
    /// Frames of a piece to condition on (they are part of the output).
    pub prime: Option<Sequence>,
    /// Probability per frame of starting a side-slip, and its length in frames.
    pub side_slip: f64,
    pub side_slip_span: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            frames: 128,
            gibbs_k: 25,
            start: ChainStart::Zeros,
            seed: 1,
            prime: None,
            side_slip: 0.0,
            side_slip_span: 2,
        }
    }
}

/// Copies the state after the frame (row 1) into the initial-state row (row 0).
fn advance_states<B: Backend>(be: &B, model: &Model<B>, ws: &mut Workspace<B>) -> Result<()> {
    let (h, u) = (model.spec.hidden, model.spec.u());
    // through a scratch buffer of the workspace that only the backward pass uses
    let shift = |be: &B, buf: &mut B::Buf, tmp: &mut B::Buf, width: usize| -> Result<()> {
        be.copy(buf, width, tmp, 0, width)?;
        be.copy(tmp, 0, buf, 0, width)
    };
    let ws = &mut *ws;
    match model.spec.kind {
        ModelKind::Rbm => Ok(()),
        ModelKind::Rtrbm => shift(be, &mut ws.r, &mut ws.tmp_h, h),
        ModelKind::LstmRtrbm => {
            shift(be, &mut ws.r, &mut ws.tmp_h, h)?;
            shift(be, &mut ws.l, &mut ws.e, u)?;
            shift(be, &mut ws.c, &mut ws.e, u)
        }
        ModelKind::RnnRbm => shift(be, &mut ws.u, &mut ws.e, u),
    }
}

/// Transposes a binary frame by `shift` semitones, dropping keys that leave the piano.
fn transpose_frame<F: Float>(frame: &[F], shift: i32) -> Vec<F> {
    let mut out = vec![F::ZERO; frame.len()];
    for (i, &x) in frame.iter().enumerate() {
        let j = i as i32 + shift;
        if x > F::from_f64(0.5) && j >= 0 && (j as usize) < frame.len() {
            out[j as usize] = F::ONE;
        }
    }
    out
}

/// Samples a piece (binary piano-roll models only).
pub fn generate<B: Backend>(be: &B, model: &Model<B>, opts: &GenerateOptions) -> Result<Sequence> {
    if model.spec.gaussian || model.spec.visible != KEYS {
        return Err(Error::msg("generation needs a binary 88-key piano-roll model"));
    }
    let nv = KEYS;
    let (nh, w) = (model.spec.hidden, model.params.get("W")?);
    let mut ws = Workspace::new(be, &model.spec, 1, 1)?;
    let key = RngKey::new(opts.seed, 0x6E4);
    let mut host = HostRng::new(opts.seed, 0x511D);
    let mut frames: Vec<Vec<B::F>> = vec![];
    let mut first = true;
    // Priming: feed the given frames as history.
    if let Some(p) = &opts.prime {
        for f in p.to_dense().chunks(nv) {
            let v: Vec<B::F> = f.iter().map(|&x| B::F::from_f64(x as f64)).collect();
            be.write(&mut ws.v, &v)?;
            model.forward(be, &mut ws, 1, !first)?;
            advance_states(be, model, &mut ws)?;
            frames.push(v);
            first = false;
        }
    }
    let mut slip: (usize, i32) = (0, 0);
    let mut prev = frames.last().cloned().unwrap_or_else(|| vec![B::F::ZERO; nv]);
    for step in 0..opts.frames {
        // biases of RBM_t from the history (row 0 of the states)
        model.forward(be, &mut ws, 1, !first)?;
        first = false;
        // K Gibbs steps from the chosen start
        let start = match opts.start {
            ChainStart::Zeros => vec![B::F::ZERO; nv],
            ChainStart::Previous => prev.clone(),
        };
        be.write(&mut ws.vneg, &start)?;
        let counter = (2 * opts.gibbs_k * step) as u32;
        be.gibbs(w, &ws.bv_t, &ws.bh_t, &mut ws.vneg, None, 1, nv, nh, opts.gibbs_k, false, &[key], counter)?;
        let mut v = be.download(&ws.vneg)?;
        v.truncate(nv);
        // side-slipping: transpose a short span out of key
        if slip.0 == 0 && opts.side_slip > 0.0 && host.next_f64() < opts.side_slip {
            slip = (opts.side_slip_span.max(1), if host.next_f64() < 0.5 { 1 } else { -1 });
        }
        if slip.0 > 0 {
            v = transpose_frame(&v, slip.1);
            slip.0 -= 1;
        }
        // update the states with the sampled frame
        be.write(&mut ws.v, &v)?;
        model.forward(be, &mut ws, 1, true)?;
        advance_states(be, model, &mut ws)?;
        prev = v.clone();
        frames.push(v);
    }
    let dense: Vec<f32> = frames.iter().flatten().map(|x| x.to_f64() as f32).collect();
    Ok(Sequence::from_dense(&dense))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::model::ModelSpec;

    /// Frame by frame with carried states equals recomputing every frame's biases from the whole
    /// history (no carried state), for every temporal model: the state update after each sampled
    /// frame (`advance_states`) is right.
    #[test]
    fn carried_states_equal_recomputing_from_the_whole_history() {
        let be = Cpu::<f64>::new(1);
        for kind in [ModelKind::Rtrbm, ModelKind::LstmRtrbm, ModelKind::RnnRbm] {
            let spec = ModelSpec::new(kind, KEYS, 12, 6);
            // large weights and negative visible biases: the history matters, pieces stay sparse
            let mut model = Model::init(&be, spec.clone(), 0.5, 3).unwrap();
            let bv = model.params.get_mut("bv").unwrap();
            be.write(bv, &vec![-2.0; KEYS]).unwrap();
            let opts = GenerateOptions { frames: 12, gibbs_k: 5, seed: 9, ..Default::default() };
            let piece = generate(&be, &model, &opts).unwrap().to_dense();
            let (nh, w) = (spec.hidden, model.params.get("W").unwrap());
            let key = RngKey::new(opts.seed, 0x6E4);
            let mut history: Vec<f64> = vec![];
            for step in 0..opts.frames {
                let t = step + 1;
                let mut ws = Workspace::new(&be, &spec, t, 1).unwrap();
                let mut frames = history.clone();
                frames.extend(vec![0.0; KEYS]); // the frame to draw; its own value is not used
                ws.load(&be, &[&frames], KEYS).unwrap();
                model.forward(&be, &mut ws, t, false).unwrap();
                let bv_t = be.download(&ws.bv_t).unwrap()[step * KEYS..t * KEYS].to_vec();
                let bh_t = be.download(&ws.bh_t).unwrap()[step * nh..t * nh].to_vec();
                let mut v = vec![0.0; KEYS];
                let counter = (2 * opts.gibbs_k * step) as u32;
                be.gibbs(w, &bv_t, &bh_t, &mut v, None, 1, KEYS, nh, opts.gibbs_k, false, &[key], counter).unwrap();
                let got: Vec<f64> = piece[step * KEYS..t * KEYS].iter().map(|&x| x as f64).collect();
                assert_eq!(got, v, "{kind:?}: frame {step}");
                history.extend(v);
            }
            assert!(history.iter().any(|&x| x > 0.0), "{kind:?}: an all-silent piece tests little");
        }
    }
}
