//! Counter-based random numbers: Philox4x32-10 (Salmon et al., SC 2011).
//!
//! Every random number in the project is a pure function of `(seed, stream, counter, index)`, so a
//! result is reproducible from its seed, work can be split across threads in any order, and a CUDA
//! kernel (`kernels/common.cuh`, `philox4x32_10`) draws the very same bits as this file.
//!
//! Layout of one draw: the 128-bit Philox counter is `(index / 4, counter, stream, 0)` and the key is
//! the seed's two 32-bit halves; the draw is word `index % 4` of the output block. A uniform in
//! (0, 1) is `((word >> 8) + 0.5) * 2^-24`, exact in f32, never 0 or 1.

/// Philox multipliers and Weyl key increments (Random123).
const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// One Philox4x32 block with 10 rounds: the CUDA twin is `philox4x32_10` in `kernels/common.cuh`.
#[inline(always)]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let (hi0, lo0) = mulhilo(PHILOX_M0, c[0]);
        let (hi1, lo1) = mulhilo(PHILOX_M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Converts a 32-bit word to a uniform in (0, 1): 24 random bits, centred in their cell.
#[inline(always)]
pub fn word_to_uniform(w: u32) -> f32 {
    ((w >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
}

/// Identifies one family of random numbers: a seed and a stream (e.g. one model of a sweep, or
/// one purpose such as "AIS" or "shuffle"). The counter and the index pick a number inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RngKey {
    pub seed: u64,
    pub stream: u32,
}

impl RngKey {
    pub fn new(seed: u64, stream: u32) -> Self {
        Self { seed, stream }
    }

    #[inline(always)]
    fn key(&self) -> [u32; 2] {
        [self.seed as u32, (self.seed >> 32) as u32]
    }

    /// The 32-bit word number `index` of counter `counter`.
    #[inline(always)]
    pub fn word(&self, counter: u32, index: u32) -> u32 {
        let block = philox4x32_10([index >> 2, counter, self.stream, 0], self.key());
        block[(index & 3) as usize]
    }

    /// A uniform in (0, 1), bit-identical to `uniform01(key, stream, counter, index)` on the GPU.
    #[inline(always)]
    pub fn uniform(&self, counter: u32, index: u32) -> f32 {
        word_to_uniform(self.word(counter, index))
    }

    /// Fills `out` with the uniforms of `counter` at indices `first .. first + out.len()`,
    /// computing each Philox block once.
    pub fn fill_uniform(&self, counter: u32, first: u32, out: &mut [f32]) {
        let key = self.key();
        let mut i = 0usize;
        while i < out.len() {
            let index = first + i as u32;
            let block = philox4x32_10([index >> 2, counter, self.stream, 0], key);
            let mut lane = (index & 3) as usize;
            while lane < 4 && i < out.len() {
                out[i] = word_to_uniform(block[lane]);
                lane += 1;
                i += 1;
            }
        }
    }

    /// A standard normal from the uniforms at indices `2 index` and `2 index + 1` (Box-Muller,
    /// computed in f64 on the CPU; the GPU twin uses f32 so the two agree to rounding, not bits).
    pub fn normal(&self, counter: u32, index: u32) -> f64 {
        let u1 = self.uniform(counter, 2 * index) as f64;
        let u2 = self.uniform(counter, 2 * index + 1) as f64;
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A small sequential generator on top of Philox for host-side decisions (shuffling, initial
/// weights, data splits): reproducible and serialisable as `(key, counter, position)`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostRng {
    pub key: RngKey,
    pub counter: u32,
    pub position: u32,
}

impl HostRng {
    pub fn new(seed: u64, stream: u32) -> Self {
        Self { key: RngKey::new(seed, stream), counter: 0, position: 0 }
    }

    pub fn next_u32(&mut self) -> u32 {
        let w = self.key.word(self.counter, self.position);
        self.position = self.position.wrapping_add(1);
        if self.position == 0 {
            self.counter = self.counter.wrapping_add(1);
        }
        w
    }

    pub fn next_u64(&mut self) -> u64 {
        ((self.next_u32() as u64) << 32) | self.next_u32() as u64
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in 0..n (n > 0), without modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "HostRng::below(0)");
        let n = n as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (`kat_vectors`, philox4x32 with 10 rounds).
    #[test]
    fn philox_known_answers() {
        assert_eq!(philox4x32_10([0, 0, 0, 0], [0, 0]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn fill_matches_single_draws() {
        let k = RngKey::new(0x1234_5678_9abc_def0, 7);
        let mut out = vec![0.0f32; 37];
        k.fill_uniform(3, 5, &mut out);
        for (i, u) in out.iter().enumerate() {
            assert_eq!(*u, k.uniform(3, 5 + i as u32));
            assert!(*u > 0.0 && *u < 1.0);
        }
    }

    #[test]
    fn uniforms_have_the_right_mean_and_variance() {
        let k = RngKey::new(42, 0);
        let n = 200_000u32;
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        for i in 0..n {
            let u = k.uniform(0, i) as f64;
            s += u;
            s2 += u * u;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        // Standard error of the mean is sqrt(1/12/n) = 6.5e-4; allow 5 of them.
        assert!((mean - 0.5).abs() < 3.3e-3, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 2e-3, "var {var}");
    }

    #[test]
    fn shuffle_is_a_permutation_and_reproducible() {
        let mut a: Vec<usize> = (0..100).collect();
        let mut b = a.clone();
        HostRng::new(9, 1).shuffle(&mut a);
        HostRng::new(9, 1).shuffle(&mut b);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(a, (0..100).collect::<Vec<_>>());
    }
}
