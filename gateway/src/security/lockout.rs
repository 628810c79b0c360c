//! Brute-force back-off: failed authentications are counted per source address, and an address
//! past the threshold is refused for a while without its password being checked at all (which
//! also spares the CPU that hashing would cost).
//!
//! The count is a fixed window: the first failure opens a window of `window`, and the
//! `threshold`-th failure inside it locks the address out for `backoff`. A success does not
//! clear the count, or one valid account would let its holder guess the others' passwords.
//! The table is bounded: past `MAX_ADDRESSES` entries, those whose window and lock-out have
//! passed are dropped, and if none has, the new address is not tracked (refusing it would let
//! a crowd of addresses lock everyone out).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most.
const MAX_ADDRESSES: usize = 65_536;

/// The back-off policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within `window` that lock an address out.
    pub threshold: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// How long a locked-out address is refused.
    pub backoff: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            threshold: 10,
            window: Duration::from_secs(60),
            backoff: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

impl Entry {
    fn stale(&self, policy: &LockoutPolicy, now: Instant) -> bool {
        now >= self.window_start + policy.window && self.locked_until.is_none_or(|at| now >= at)
    }
}

/// Failed authentications by source address. Shared by every connection; the lock is held
/// for a map operation only.
#[derive(Debug)]
pub struct Lockout {
    policy: LockoutPolicy,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl Lockout {
    /// An empty table with `policy`.
    pub fn new(policy: LockoutPolicy) -> Self {
        Lockout {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `address` is locked out at `now`.
    pub fn is_locked(&self, address: IpAddr, now: Instant) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&address)
            .and_then(|entry| entry.locked_until)
            .is_some_and(|until| now < until)
    }

    /// Counts a failed authentication from `address`; returns whether this one locked it out.
    pub fn record_failure(&self, address: IpAddr, now: Instant) -> bool {
        let policy = self.policy;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ADDRESSES && !entries.contains_key(&address) {
            entries.retain(|_, entry| !entry.stale(&policy, now));
            if entries.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let entry = entries.entry(address).or_insert(Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
        });
        if entry.stale(&policy, now) {
            *entry = Entry {
                window_start: now,
                failures: 0,
                locked_until: None,
            };
        }
        entry.failures += 1;
        if entry.failures >= policy.threshold && entry.locked_until.is_none_or(|at| now >= at) {
            entry.locked_until = Some(now + policy.backoff);
            return true;
        }
        false
    }

    /// The number of addresses locked out at `now`, for the metrics.
    pub fn locked_addresses(&self, now: Instant) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .values()
            .filter(|entry| entry.locked_until.is_some_and(|until| now < until))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            threshold: 3,
            window: Duration::from_secs(60),
            backoff: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_threshold_within_the_window_locks_out_for_the_backoff() {
        let lockout = Lockout::new(policy());
        let start = Instant::now();
        assert!(!lockout.record_failure(address(1), start));
        assert!(!lockout.record_failure(address(1), start + Duration::from_secs(10)));
        assert!(!lockout.is_locked(address(1), start + Duration::from_secs(10)));
        assert!(lockout.record_failure(address(1), start + Duration::from_secs(20)));
        assert!(lockout.is_locked(address(1), start + Duration::from_secs(21)));
        assert!(
            !lockout.is_locked(address(2), start + Duration::from_secs(21)),
            "per address"
        );
        assert_eq!(lockout.locked_addresses(start + Duration::from_secs(21)), 1);
        assert!(!lockout.is_locked(address(1), start + Duration::from_secs(50)));
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_lock_out() {
        let lockout = Lockout::new(policy());
        let start = Instant::now();
        for minute in 0..10 {
            let at = start + Duration::from_secs(61 * minute);
            assert!(!lockout.record_failure(address(1), at));
            assert!(!lockout.is_locked(address(1), at));
        }
    }

    #[test]
    fn failing_again_after_the_backoff_locks_out_again() {
        let lockout = Lockout::new(policy());
        let start = Instant::now();
        for _ in 0..3 {
            lockout.record_failure(address(1), start);
        }
        let later = start + Duration::from_secs(120);
        assert!(!lockout.is_locked(address(1), later));
        for _ in 0..2 {
            assert!(!lockout.record_failure(address(1), later));
        }
        assert!(lockout.record_failure(address(1), later));
    }
}
