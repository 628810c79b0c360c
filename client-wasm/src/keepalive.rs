//! The client side of MQTT keep alive, written so that late timers cannot kill a live connection.
//!
//! Browsers throttle timers in background tabs (to once a second, then once a minute) and
//! suspend them altogether in frozen pages, while socket events are still delivered. So this
//! module never counts timer firings: it compares clock readings (`performance.now()` in the
//! browser, a fake clock in tests) with the times packets were last sent and received.
//!
//! - A PINGREQ is due when nothing was sent for the keep alive interval (the broker must hear
//!   from us [MQTT-3.1.2-23]) or nothing was received for it (to find out whether the broker is
//!   still there).
//! - The connection is declared dead only when a PINGREQ is outstanding, nothing at all was
//!   received since it was sent, and nothing was received for 1.5 times the keep alive. The
//!   PINGREQ gets at least half an interval to be answered, counted from when it was actually
//!   sent, so a ping that went out late because its timer was throttled is not blamed on the
//!   broker.
//! - A deadline noticed late (the timer fired more than [`LATE_TIMER_MS`] after it) may mean
//!   the event loop was suspended and the answer is queued behind this very timer. Such a
//!   verdict is postponed once by [`RECHECK_MS`]: the recheck runs in a later task, after the
//!   queued socket events.

/// How late a timer may fire before the event loop counts as having been suspended.
pub const LATE_TIMER_MS: f64 = 250.0;

/// How long a late verdict is postponed to let queued socket events through.
pub const RECHECK_MS: f64 = 500.0;

/// What the keep alive logic asks for at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Nothing to do.
    Idle,
    /// Send a PINGREQ now.
    SendPing,
    /// Nothing was received for too long after a PINGREQ: close the connection.
    Dead,
}

/// An outstanding PINGREQ.
#[derive(Clone, Copy, Debug)]
struct Ping {
    /// When the verdict is due.
    deadline: f64,
    /// Whether a late verdict was already postponed once.
    rechecked: bool,
}

/// Keep alive state of one connection. Times are milliseconds on a monotonic clock.
#[derive(Clone, Debug)]
pub struct KeepAlive {
    /// The keep alive interval in milliseconds; 0 disables the mechanism.
    interval: f64,
    last_sent: f64,
    last_received: f64,
    ping: Option<Ping>,
}

impl KeepAlive {
    /// Keep alive of `interval_seconds` (0: disabled) for a connection that starts at `now`.
    pub fn new(interval_seconds: u16, now: f64) -> Self {
        KeepAlive {
            interval: f64::from(interval_seconds) * 1000.0,
            last_sent: now,
            last_received: now,
            ping: None,
        }
    }

    /// Records that bytes were written at `now`.
    pub fn handle_sent(&mut self, now: f64) {
        self.last_sent = self.last_sent.max(now);
    }

    /// Records that bytes arrived at `now`: any packet proves the broker alive, not only PINGRESP.
    pub fn handle_received(&mut self, now: f64) {
        self.last_received = self.last_received.max(now);
        self.ping = None;
    }

    /// When [`KeepAlive::handle_timeout`] next has something to do, if ever.
    pub fn poll_timeout(&self) -> Option<f64> {
        if self.interval == 0.0 {
            return None;
        }
        Some(match self.ping {
            Some(ping) => ping.deadline,
            None => self.last_sent.min(self.last_received) + self.interval,
        })
    }

    /// Decides what to do at `now`. After [`KeepAliveAction::SendPing`] the caller sends a
    /// PINGREQ (and reports it with [`KeepAlive::handle_sent`]).
    pub fn handle_timeout(&mut self, now: f64) -> KeepAliveAction {
        if self.interval == 0.0 {
            return KeepAliveAction::Idle;
        }
        match &mut self.ping {
            None => {
                if now < self.last_sent.min(self.last_received) + self.interval {
                    return KeepAliveAction::Idle;
                }
                let deadline =
                    (now + self.interval / 2.0).max(self.last_received + self.interval * 1.5);
                self.ping = Some(Ping {
                    deadline,
                    rechecked: false,
                });
                KeepAliveAction::SendPing
            }
            Some(ping) => {
                if now < ping.deadline {
                    KeepAliveAction::Idle
                } else if now - ping.deadline > LATE_TIMER_MS && !ping.rechecked {
                    ping.rechecked = true;
                    ping.deadline = now + RECHECK_MS;
                    KeepAliveAction::Idle
                } else {
                    KeepAliveAction::Dead
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the timer the way a browser would if it fired exactly when asked.
    fn fire(keepalive: &mut KeepAlive) -> (f64, KeepAliveAction) {
        let at = keepalive.poll_timeout().expect("armed");
        (at, keepalive.handle_timeout(at))
    }

    #[test]
    fn disabled_keepalive_never_fires() {
        let mut keepalive = KeepAlive::new(0, 0.0);
        assert_eq!(keepalive.poll_timeout(), None);
        assert_eq!(keepalive.handle_timeout(1e9), KeepAliveAction::Idle);
    }

    #[test]
    fn pings_when_idle_and_dies_after_one_and_a_half_intervals() {
        let mut keepalive = KeepAlive::new(10, 0.0);
        assert_eq!(fire(&mut keepalive), (10_000.0, KeepAliveAction::SendPing));
        keepalive.handle_sent(10_000.0);
        assert_eq!(fire(&mut keepalive), (15_000.0, KeepAliveAction::Dead));
    }

    #[test]
    fn an_answer_cancels_the_verdict() {
        let mut keepalive = KeepAlive::new(10, 0.0);
        assert_eq!(fire(&mut keepalive).1, KeepAliveAction::SendPing);
        keepalive.handle_sent(10_000.0);
        keepalive.handle_received(10_003.0);
        assert_eq!(keepalive.poll_timeout(), Some(20_000.0));
        assert_eq!(keepalive.handle_timeout(15_000.0), KeepAliveAction::Idle);
    }

    #[test]
    fn busy_sender_still_pings_when_nothing_comes_back() {
        // QoS 0 publishes keep the send side busy; the broker answers none of them.
        let mut keepalive = KeepAlive::new(2, 0.0);
        let mut now = 0.0;
        while now < 1_900.0 {
            now += 100.0;
            keepalive.handle_sent(now);
            assert_eq!(
                keepalive.handle_timeout(now),
                KeepAliveAction::Idle,
                "{now}"
            );
        }
        assert_eq!(keepalive.poll_timeout(), Some(2_000.0));
        assert_eq!(keepalive.handle_timeout(2_000.0), KeepAliveAction::SendPing);
        assert_eq!(keepalive.poll_timeout(), Some(3_000.0));
    }

    #[test]
    fn receiving_keeps_the_connection_alive_whatever_the_timers_do() {
        // Messages arrive every 300 ms; the timer fires only every 5 s (background tab).
        let mut keepalive = KeepAlive::new(1, 0.0);
        let mut now = 0.0;
        for _ in 0..100 {
            for _ in 0..16 {
                now += 300.0;
                keepalive.handle_received(now);
                keepalive.handle_sent(now);
            }
            now += 200.0;
            assert_ne!(
                keepalive.handle_timeout(now),
                KeepAliveAction::Dead,
                "{now}"
            );
        }
    }

    #[test]
    fn a_late_ping_timer_does_not_count_against_the_broker() {
        // The ping was due at 1 s but the timer was suspended until 9 s: nothing was received
        // for 9 s, yet the broker only now gets asked.
        let mut keepalive = KeepAlive::new(1, 0.0);
        assert_eq!(keepalive.handle_timeout(9_000.0), KeepAliveAction::SendPing);
        keepalive.handle_sent(9_000.0);
        assert_eq!(keepalive.poll_timeout(), Some(9_500.0));
        assert_eq!(keepalive.handle_timeout(9_499.0), KeepAliveAction::Idle);
        keepalive.handle_received(9_010.0);
        assert_eq!(keepalive.handle_timeout(9_600.0), KeepAliveAction::Idle);
    }

    #[test]
    fn a_late_verdict_is_rechecked_once_after_queued_events() {
        let mut keepalive = KeepAlive::new(1, 0.0);
        assert_eq!(fire(&mut keepalive).1, KeepAliveAction::SendPing);
        keepalive.handle_sent(1_000.0);
        // The verdict was due at 1.5 s, the timer fires at 20 s: postpone.
        assert_eq!(keepalive.handle_timeout(20_000.0), KeepAliveAction::Idle);
        assert_eq!(keepalive.poll_timeout(), Some(20_500.0));
        // The PINGRESP was queued behind the timer and is delivered now.
        keepalive.handle_received(20_001.0);
        // Alive: no verdict. Nothing was sent since 1 s, so the next ping is due at once.
        assert_eq!(
            keepalive.handle_timeout(20_500.0),
            KeepAliveAction::SendPing
        );
    }

    #[test]
    fn a_dead_broker_is_still_detected_under_throttling() {
        let mut keepalive = KeepAlive::new(1, 0.0);
        assert_eq!(
            keepalive.handle_timeout(60_000.0),
            KeepAliveAction::SendPing
        );
        keepalive.handle_sent(60_000.0);
        // Every later firing is a minute late (intensive throttling), and nothing arrives.
        assert_eq!(keepalive.handle_timeout(120_000.0), KeepAliveAction::Idle);
        assert_eq!(keepalive.handle_timeout(180_000.0), KeepAliveAction::Dead);
    }

    #[test]
    fn ping_deadline_leaves_one_and_a_half_intervals_since_the_last_receipt() {
        let mut keepalive = KeepAlive::new(10, 0.0);
        keepalive.handle_received(9_000.0);
        // Send side idle since 0: ping at 10 s although data arrived at 9 s.
        assert_eq!(
            keepalive.handle_timeout(10_000.0),
            KeepAliveAction::SendPing
        );
        keepalive.handle_sent(10_000.0);
        assert_eq!(keepalive.poll_timeout(), Some(24_000.0));
    }
}
