//! The outbox: encoded packets waiting to be written to one connection.
//!
//! The broker task pushes frames without ever waiting; the connection task takes everything
//! queued at once and writes it in one go (one syscall on TCP, one frame on WebSocket). The
//! outbox counts its bytes so the broker task can drop QoS 0 messages for, or close, a client
//! whose socket does not keep up, instead of stalling everyone else.
//!
//! Invariants: `bytes` is the sum of the queued frames' lengths; once `closed`, nothing more is
//! queued and the connection task flushes what is there and ends. The queue allocates only while
//! it holds frames, so an idle connection costs almost nothing here.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The connection is closing or closed.
    Closed,
    /// Queuing the frame would pass the hard byte limit: the consumer is too slow.
    Full,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    closed: bool,
}

/// A bounded, non-blocking queue of encoded packets for one connection.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Mirrors the queued byte count so the broker can check it without taking the lock.
    bytes: AtomicUsize,
    limit: usize,
    notify: Notify,
    /// Wakes writers' connection tasks waiting for this outbox to drain, and tasks waiting for
    /// it to close.
    drained: Notify,
    /// Set by the broker task when this connection's messages landed in a congested queue:
    /// its connection task pauses reading (backpressure on the publisher) until the congested
    /// outbox named here drains, or briefly when the congestion is in a session queue (`None`).
    throttle: Mutex<Option<(Throttle, Instant)>>,
}

/// Why a connection must pause reading.
#[derive(Debug, Clone)]
pub enum Throttle {
    /// Its messages went into this outbox, which is above the soft limit.
    Outbox(Arc<Outbox>),
    /// Its messages were queued in a session queue that is half full.
    Queue,
}

impl Outbox {
    /// An empty outbox that refuses frames beyond `limit` queued bytes.
    pub fn new(limit: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            bytes: AtomicUsize::new(0),
            limit,
            notify: Notify::new(),
            drained: Notify::new(),
            throttle: Mutex::new(None),
        }
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Queues a frame and wakes the connection task; refuses it beyond the byte limit.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        self.push_with_limit(frame, self.limit)
    }

    /// Queues a frame whatever the byte limit: for the rare packet that must not be lost
    /// even when the connection is slow.
    pub fn push_unbounded(&self, frame: Bytes) -> Result<(), PushError> {
        self.push_with_limit(frame, usize::MAX)
    }

    fn push_with_limit(&self, frame: Bytes, limit: usize) -> Result<(), PushError> {
        let mut state = self.state.lock().expect("outbox lock poisoned");
        if state.closed {
            return Err(PushError::Closed);
        }
        let queued = self.bytes.load(Ordering::Relaxed);
        if queued > 0 && queued.saturating_add(frame.len()) > limit {
            return Err(PushError::Full);
        }
        self.bytes.fetch_add(frame.len(), Ordering::Relaxed);
        state.frames.push_back(frame);
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    /// Asks the connection task to pause reading, at most until `until`, before its next read.
    pub fn throttle(&self, reason: Throttle, until: Instant) {
        *self.throttle.lock().expect("outbox lock poisoned") = Some((reason, until));
    }

    /// The pause in force, if any. It stays until [`Outbox::clear_throttle`], so a wait that
    /// is cancelled resumes where it was.
    pub fn current_throttle(&self) -> Option<(Throttle, Instant)> {
        self.throttle.lock().expect("outbox lock poisoned").clone()
    }

    /// Ends the pause: the connection read again.
    pub fn clear_throttle(&self) {
        *self.throttle.lock().expect("outbox lock poisoned") = None;
    }

    /// Waits until at most `bytes` are queued or the outbox is closed.
    pub async fn wait_below(&self, bytes: usize) {
        loop {
            // Registered before the check, so a drain between check and wait is not missed.
            let notified = self.drained.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.queued_bytes() <= bytes || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Waits until the outbox is closed.
    pub async fn wait_closed(&self) {
        loop {
            let notified = self.drained.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    fn is_closed(&self) -> bool {
        self.state.lock().expect("outbox lock poisoned").closed
    }

    /// Marks the outbox closed: what is queued is still written, then the connection ends.
    pub fn close(&self) {
        self.state.lock().expect("outbox lock poisoned").closed = true;
        self.notify.notify_one();
        self.drained.notify_waiters();
    }

    /// Waits until frames are queued or the outbox is closed. Cancel safe: a wake-up that
    /// arrives while nobody waits is kept for the next call.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Takes every queued frame, and whether the outbox is closed.
    pub fn take(&self) -> (VecDeque<Bytes>, bool) {
        let mut state = self.state.lock().expect("outbox lock poisoned");
        let frames = std::mem::take(&mut state.frames);
        let taken: usize = frames.iter().map(Bytes::len).sum();
        self.bytes.fetch_sub(taken, Ordering::Relaxed);
        let closed = state.closed;
        drop(state);
        if taken > 0 {
            self.drained.notify_waiters();
        }
        (frames, closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_take_and_limits() {
        let outbox = Outbox::new(10);
        outbox.push(Bytes::from_static(b"12345")).unwrap();
        outbox.push(Bytes::from_static(b"12345")).unwrap();
        assert_eq!(outbox.queued_bytes(), 10);
        assert_eq!(outbox.push(Bytes::from_static(b"1")), Err(PushError::Full));
        let (frames, closed) = outbox.take();
        assert_eq!(frames.len(), 2);
        assert!(!closed);
        assert_eq!(outbox.queued_bytes(), 0);
        // A single frame larger than the limit still goes out when nothing else is queued.
        outbox.push(Bytes::from(vec![0; 100])).unwrap();
        outbox.close();
        assert_eq!(
            outbox.push(Bytes::from_static(b"x")),
            Err(PushError::Closed)
        );
        let (frames, closed) = outbox.take();
        assert_eq!(frames.len(), 1);
        assert!(closed);
    }
}
