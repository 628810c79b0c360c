//! The broker's deadlines: keep alive, delayed wills, session expiry and `$SYS` publication.
//!
//! [`Timers`] is a min-heap of (deadline, what). Nothing is ever removed early: a timer that
//! lost its meaning (a connection that closed, a session that reconnected) is recognised when it
//! comes due, by its connection being gone or its session's generation having changed, and is
//! ignored. That keeps setting a timer O(log n) and cancelling it free.

use super::ConnectionId;
use crate::session::SessionKey;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    /// Publish the `$SYS` statistics.
    Sys,
    /// Check whether the connection has been silent for too long.
    KeepAlive(ConnectionId),
    /// Close the connection: its credentials expire.
    CredentialsExpiry(ConnectionId),
    /// Publish the session's pending will, if the session is still in `generation`.
    WillDelay {
        session: SessionKey,
        generation: u64,
    },
    /// End the session, if it is still offline in `generation`.
    SessionExpiry {
        session: SessionKey,
        generation: u64,
    },
}

#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerKind)>>,
}

impl Timers {
    pub fn schedule(&mut self, at: Instant, kind: TimerKind) {
        self.heap.push(Reverse((at, kind)));
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKind)> {
        let Reverse((at, _)) = self.heap.peek()?;
        if *at > now {
            return None;
        }
        self.heap.pop().map(|Reverse(timer)| timer)
    }

    /// Time left at `now` on the first timer that `wanted` picks; for snapshots, which store
    /// durations. A linear scan: snapshots are rare.
    pub fn time_left(&self, now: Instant, wanted: impl Fn(&TimerKind) -> bool) -> Option<Duration> {
        self.heap
            .iter()
            .find(|Reverse((_, kind))| wanted(kind))
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
    }
}

/// Seconds, rounded up, until `deadline`.
pub(super) fn seconds_until(now: Instant, deadline: Instant) -> u32 {
    let remaining = deadline.saturating_duration_since(now);
    let seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

/// The next time a periodic timer due at `at` runs, `interval` later but after `now`: after a
/// stall (a suspended machine) it runs once and keeps its cadence, rather than replay every
/// interval missed. A zero interval would spin, so it counts as a millisecond.
pub(super) fn next_period(at: Instant, interval: Duration, now: Instant) -> Instant {
    let interval = interval.max(Duration::from_millis(1));
    let mut next = at + interval;
    while next <= now {
        next += interval;
    }
    next
}
