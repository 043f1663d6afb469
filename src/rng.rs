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
    /// computing each Philox block once. Blocks are computed [`LANES`] at a time in
    /// structure-of-arrays form so that the 32x32->64-bit multiplies vectorise (AVX2 when the CPU
    /// has it, chosen at run time); the result is bit-identical to [`RngKey::uniform`].
    pub fn fill_uniform(&self, counter: u32, first: u32, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::float::has_avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
                unsafe { fill_uniform_avx2(*self, counter, first, out) };
                return;
            }
        }
        fill_uniform_soa(*self, counter, first, out)
    }

    /// The plain one-block-at-a-time version of [`RngKey::fill_uniform`] (the reference).
    pub fn fill_uniform_scalar(&self, counter: u32, first: u32, out: &mut [f32]) {
        let key = self.key();
        let mut i = 0usize;
        while i < out.len() {
            let index = first.wrapping_add(i as u32);
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

/// Philox blocks computed together by [`RngKey::fill_uniform`].
pub const LANES: usize = 8;

/// `LANES` consecutive Philox blocks `(block0 + b, counter, stream, 0)` (block numbers wrap at
/// 2^30, as `index >> 2` does), as uniforms in index order.
#[inline(always)]
fn philox_lanes(block0: u32, counter: u32, stream: u32, key: [u32; 2]) -> [f32; 4 * LANES] {
    let mut c0 = [0u32; LANES];
    let mut c1 = [counter; LANES];
    let mut c2 = [stream; LANES];
    let mut c3 = [0u32; LANES];
    for (b, c) in c0.iter_mut().enumerate() {
        *c = block0.wrapping_add(b as u32) & 0x3FFF_FFFF;
    }
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        for b in 0..LANES {
            let p0 = (PHILOX_M0 as u64) * (c0[b] as u64);
            let p1 = (PHILOX_M1 as u64) * (c2[b] as u64);
            let (hi0, lo0, hi1, lo1) = ((p0 >> 32) as u32, p0 as u32, (p1 >> 32) as u32, p1 as u32);
            let n0 = hi1 ^ c1[b] ^ k[0];
            let n2 = hi0 ^ c3[b] ^ k[1];
            c0[b] = n0;
            c1[b] = lo1;
            c2[b] = n2;
            c3[b] = lo0;
        }
    }
    let mut out = [0f32; 4 * LANES];
    for b in 0..LANES {
        out[4 * b] = word_to_uniform(c0[b]);
        out[4 * b + 1] = word_to_uniform(c1[b]);
        out[4 * b + 2] = word_to_uniform(c2[b]);
        out[4 * b + 3] = word_to_uniform(c3[b]);
    }
    out
}

#[inline(always)]
fn fill_uniform_soa(rng: RngKey, counter: u32, first: u32, out: &mut [f32]) {
    let key = rng.key();
    let mut i = 0usize;
    while i < out.len() {
        let index = first.wrapping_add(i as u32);
        let lanes = philox_lanes(index >> 2, counter, rng.stream, key);
        let skip = (index & 3) as usize;
        let take = (4 * LANES - skip).min(out.len() - i);
        out[i..i + take].copy_from_slice(&lanes[skip..skip + take]);
        i += take;
    }
}

/// [`philox_lanes`] with AVX2 intrinsics: 8 blocks in the 8 32-bit lanes of four registers,
/// the 32x32->64 products by `vpmuludq` on the even and odd lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn philox_lanes_avx2(block0: u32, counter: u32, stream: u32, key: [u32; 2]) -> [f32; 32] {
    use std::arch::x86_64::*;
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mut c0 =
        _mm256_and_si256(_mm256_add_epi32(_mm256_set1_epi32(block0 as i32), lane), _mm256_set1_epi32(0x3FFF_FFFF));
    let mut c1 = _mm256_set1_epi32(counter as i32);
    let mut c2 = _mm256_set1_epi32(stream as i32);
    let mut c3 = _mm256_setzero_si256();
    let m0 = _mm256_set1_epi64x(PHILOX_M0 as i64);
    let m1 = _mm256_set1_epi64x(PHILOX_M1 as i64);
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        // (hi, lo) of M * c for the even lanes (pe) and the odd lanes (po)
        let pe0 = _mm256_mul_epu32(c0, m0);
        let po0 = _mm256_mul_epu32(_mm256_srli_epi64::<32>(c0), m0);
        let pe1 = _mm256_mul_epu32(c2, m1);
        let po1 = _mm256_mul_epu32(_mm256_srli_epi64::<32>(c2), m1);
        let lo0 = _mm256_blend_epi32::<0b1010_1010>(pe0, _mm256_slli_epi64::<32>(po0));
        let hi0 = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(pe0), po0);
        let lo1 = _mm256_blend_epi32::<0b1010_1010>(pe1, _mm256_slli_epi64::<32>(po1));
        let hi1 = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(pe1), po1);
        let n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(k[0] as i32));
        let n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(k[1] as i32));
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    // uniform = ((w >> 8) + 0.5) * 2^-24, exact in f32 (w >> 8 < 2^24)
    let half = _mm256_set1_ps(0.5);
    let scale = _mm256_set1_ps(1.0 / 16_777_216.0);
    let conv = |w: __m256i| _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32::<8>(w)), half), scale);
    let (f0, f1, f2, f3) = (conv(c0), conv(c1), conv(c2), conv(c3));
    // 4 x 8 -> 8 x 4 transpose: out[4b + word] = f_word[b]
    let t0 = _mm256_unpacklo_ps(f0, f1); // b0w0 b0w1 b1w0 b1w1 | b4w0 b4w1 b5w0 b5w1
    let t1 = _mm256_unpackhi_ps(f0, f1); // b2w0 b2w1 b3w0 b3w1 | b6 .. b7 ..
    let t2 = _mm256_unpacklo_ps(f2, f3); // b0w2 b0w3 b1w2 b1w3 | b4 .. b5 ..
    let t3 = _mm256_unpackhi_ps(f2, f3);
    let s0 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2))); // b0 | b4
    let s1 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2))); // b1 | b5
    let s2 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3))); // b2 | b6
    let s3 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3))); // b3 | b7
    let mut out = [0f32; 32];
    let o = out.as_mut_ptr();
    _mm256_storeu_ps(o, _mm256_permute2f128_ps::<0x20>(s0, s1)); // b0 b1
    _mm256_storeu_ps(o.add(8), _mm256_permute2f128_ps::<0x20>(s2, s3)); // b2 b3
    _mm256_storeu_ps(o.add(16), _mm256_permute2f128_ps::<0x31>(s0, s1)); // b4 b5
    _mm256_storeu_ps(o.add(24), _mm256_permute2f128_ps::<0x31>(s2, s3)); // b6 b7
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_uniform_avx2(rng: RngKey, counter: u32, first: u32, out: &mut [f32]) {
    let key = rng.key();
    let mut i = 0usize;
    while i < out.len() {
        let index = first.wrapping_add(i as u32);
        let lanes = philox_lanes_avx2(index >> 2, counter, rng.stream, key);
        let skip = (index & 3) as usize;
        let take = (32 - skip).min(out.len() - i);
        out[i..i + take].copy_from_slice(&lanes[skip..skip + take]);
        i += take;
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
        assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
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
    fn batched_fill_is_bit_identical() {
        for (seed, stream) in [(0u64, 0u32), (0x1234_5678_9abc_def0, 7), (u64::MAX, u32::MAX)] {
            let k = RngKey::new(seed, stream);
            for first in [0u32, 1, 2, 3, 5, 31, 32, 33, 1000, u32::MAX - 40] {
                for len in [0usize, 1, 3, 4, 7, 31, 32, 33, 88, 150, 177] {
                    let mut a = vec![0.0f32; len];
                    let mut b = vec![0.0f32; len];
                    k.fill_uniform(11, first, &mut a);
                    k.fill_uniform_scalar(11, first, &mut b);
                    assert_eq!(a, b, "seed {seed} first {first} len {len}");
                    let mut c = vec![0.0f32; len];
                    fill_uniform_soa(k, 11, first, &mut c);
                    assert_eq!(c, b, "portable path: seed {seed} first {first} len {len}");
                    for (i, u) in a.iter().enumerate() {
                        assert_eq!(u.to_bits(), k.uniform(11, first.wrapping_add(i as u32)).to_bits());
                    }
                }
            }
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
