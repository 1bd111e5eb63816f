//! Random streams: Xoshiro256++ (our own 20-line implementation, so that the state can be
//! carried between chunked calls), seeded by hashing (root key, stream index) with SplitMix64.
//! Every parallel unit of work (a chunk of samples, a replicate) owns one stream, so results
//! do not depend on the number of threads.

use core::convert::Infallible;
use rand::TryRng;

/// SplitMix64 finaliser: a bijective 64-bit mixer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Xoshiro256++ (Blackman & Vigna), the explicitly named portable generator of
/// docs: design-architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    s: [u64; 4],
}

impl Stream {
    /// The stream for (root key, index): four words from SplitMix64 over the hashed pair.
    pub fn new(key: [u64; 2], index: u64) -> Self {
        let mut h = mix64(key[0] ^ mix64(key[1] ^ mix64(index)));
        let mut s = [0u64; 4];
        for word in s.iter_mut() {
            h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *word = mix64(h);
        }
        if s.iter().all(|&w| w == 0) {
            s[0] = 1; // the all-zero state is the generator's only fixed point
        }
        Stream { s }
    }

    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform on [0, 1) with 53 random bits.
    #[inline(always)]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl TryRng for Stream {
    type Error = Infallible;
    #[inline(always)]
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next_u64() >> 32) as u32)
    }
    #[inline(always)]
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// A standard normal draw (rand_distr's Ziggurat).
#[inline(always)]
pub fn normal(rng: &mut Stream) -> f64 {
    use rand::RngExt;
    rng.sample(rand_distr::StandardNormal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_sequence_of_xoshiro256plusplus() {
        // State (1, 2, 3, 4): first outputs from the authors' reference implementation.
        let mut rng = Stream { s: [1, 2, 3, 4] };
        assert_eq!(rng.next_u64(), 41943041);
        assert_eq!(rng.next_u64(), 58720359);
        assert_eq!(rng.next_u64(), 3588806011781223);
    }

    #[test]
    fn streams_differ_by_index_and_key() {
        let a = Stream::new([1, 2], 0).next_u64();
        assert_ne!(a, Stream::new([1, 2], 1).next_u64());
        assert_ne!(a, Stream::new([1, 3], 0).next_u64());
        assert_eq!(a, Stream::new([1, 2], 0).next_u64());
    }

    #[test]
    fn uniform_and_normal_moments() {
        let mut rng = Stream::new([7, 7], 0);
        let n = 200_000;
        let (mut s1, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let z = normal(&mut rng);
            s1 += z;
            s2 += z * z;
        }
        let mean = s1 / n as f64;
        assert!(mean.abs() < 5.0 / (n as f64).sqrt());
        assert!((s2 / n as f64 - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt());
        let u: f64 = (0..n).map(|_| rng.uniform()).sum::<f64>() / n as f64;
        assert!((u - 0.5).abs() < 5.0 * (1.0 / 12.0 / n as f64).sqrt());
    }
}
