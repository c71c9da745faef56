//! The seeded random numbers behind sampling: the same seed on the same device gives the same
//! tokens. Each stage draws from its own stream (seed mixed with a stage constant), so calling
//! the stages one by one reproduces `Bark::generate`.

/// xorshift64* (Vigna): small, fast, good enough for picking tokens.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A stream for `seed` and `stream` (a stage); never the all-zero state.
    pub fn new(seed: u64, stream: u64) -> Rng {
        // SplitMix64's finaliser spreads nearby seeds over the whole state.
        let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`: 24 random bits, exact in f32.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let a: Vec<f32> = (0..8)
            .map({
                let mut r = Rng::new(7, 1);
                move |_| r.uniform()
            })
            .collect();
        let mut r = Rng::new(7, 1);
        assert_eq!(a, (0..8).map(|_| r.uniform()).collect::<Vec<_>>());
        let mut other = Rng::new(7, 2);
        assert_ne!(a, (0..8).map(|_| other.uniform()).collect::<Vec<_>>());
        assert!(a.iter().all(|u| (0.0..1.0).contains(u)));
    }
}
