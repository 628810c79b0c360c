//! Reconnect delays: exponential backoff with full jitter, and the small random generator that
//! draws the jitter (seeded by the caller, so that tests are deterministic).
//!
//! Full jitter spreads the reconnects of many clients that lost the same broker at the same
//! moment over the whole window instead of letting them arrive in synchronized waves.

/// The reconnect policy: delays grow from `min_delay_ms` and never exceed `max_delay_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The smallest delay before a reconnect attempt, in milliseconds.
    pub min_delay_ms: u32,
    /// The largest delay before a reconnect attempt, in milliseconds.
    pub max_delay_ms: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min_delay_ms: 1_000,
            max_delay_ms: 30_000,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (1 for the first retry): uniform in
    /// `[min, min(max, min * 2^attempt))`, `random` being uniform in `[0, 1)`.
    pub fn delay_ms(&self, attempt: u32, random: f64) -> u32 {
        let min = u64::from(self.min_delay_ms.min(self.max_delay_ms));
        let ceiling = min
            .saturating_mul(1u64 << attempt.min(32))
            .min(u64::from(self.max_delay_ms));
        let spread = ceiling.saturating_sub(min) as f64;
        // `as` saturates, and `random < 1` keeps the result below the ceiling.
        (min + (spread * random.clamp(0.0, 1.0)) as u64) as u32
    }
}

/// xorshift64*: a few instructions per number, plenty for jitter, and no dependency.
#[derive(Clone, Debug)]
pub struct Random(u64);

impl Random {
    /// A generator from `seed` (any value; zero is remapped since xorshift would stay at zero).
    pub fn new(seed: u64) -> Self {
        Random(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next number, uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_bounds() {
        let backoff = Backoff {
            min_delay_ms: 100,
            max_delay_ms: 1_000,
        };
        // (attempt, random, expected)
        let table = [
            (1, 0.0, 100),
            (1, 0.999_999, 199),
            (2, 0.5, 250),
            (3, 0.999_999, 799),
            (4, 0.999_999, 999),
            (30, 0.5, 550),
            (60, 0.0, 100),
        ];
        for (attempt, random, expected) in table {
            assert_eq!(
                backoff.delay_ms(attempt, random),
                expected,
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn min_above_max_is_clamped() {
        let backoff = Backoff {
            min_delay_ms: 5_000,
            max_delay_ms: 1_000,
        };
        assert_eq!(backoff.delay_ms(1, 0.7), 1_000);
    }

    #[test]
    fn jitter_is_uniform_enough_and_deterministic() {
        let mut random = Random::new(42);
        let draws: Vec<f64> = (0..10_000).map(|_| random.next_f64()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        let mut again = Random::new(42);
        assert_eq!(again.next_f64(), draws[0]);
        assert!(Random::new(0).next_f64() > 0.0);
    }
}
