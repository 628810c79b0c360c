//! The link between one connection's task and the broker task ([`ConnectionLink`]), in both
//! directions:
//! - outbound, the connection's outbox: the encoded packets waiting to be written to it. The
//!   broker task pushes frames without ever waiting; the connection task takes everything queued
//!   at once and writes it in one go (one syscall on TCP, one message on WebSocket). The outbox
//!   counts its bytes against the [`OutboxLimits`], so the broker task can drop QoS 0 messages
//!   for, or close, a client whose socket does not keep up instead of stalling everyone else, and
//!   can tell when a connection is congested.
//! - inbound, the flow control of what the connection reads: its command credits (see
//!   [`Credit`]), which bound how many of its reads wait in the broker task, and the pause
//!   ([`Throttle`]) the broker task asks of a publisher whose messages land somewhere congested.
//!
//! Why one struct for both rather than an `Outbox` and a separate inbound gate: the connection
//! task waits for either (frames to write, or a credit to read again) in the same `select!`, and
//! every connection pays for each waker, lock and allocation it holds. One allocation, one lock
//! and one [`AtomicWaker`] serve both directions here; split, the inbound half would need its own
//! waker and the pause its own lock. The name says that it is more than an outbox.
//!
//! Invariants: `bytes` is the sum of the queued frames' lengths; once `closed`, nothing more is
//! queued and the connection task flushes what is there and ends. The queue allocates only while
//! it holds frames, so an idle connection costs almost nothing here. Only the connection's own
//! task waits through `waker` (frames, close, credits); other tasks wait through `drained`.

use broker_core::{ConnectionId, ConnectionInfo};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The connection is closing or closed.
    Closed,
    /// Queuing the frame would pass the hard byte limit: the consumer is too slow.
    Full,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    closed: bool,
    /// Set by the broker task when this connection's messages landed in a congested queue:
    /// its connection task pauses reading (backpressure on the publisher) until the congested
    /// outbox named here drains, or briefly when the congestion is in a session queue. Boxed:
    /// only a publisher meeting congestion has one, and the pointer keeps every idle
    /// connection's link 24 bytes smaller.
    throttle: Option<Box<(Throttle, Instant)>>,
}

/// The byte limits of a gateway's outboxes, shared by all of them through one `Arc` and read
/// from the outbox by whoever needs them: the broker task (shedding, congestion) and the
/// connection tasks that wait for a congested outbox to drain. Stored here once, rather than
/// copied into the broker task's and the connections' settings.
#[derive(Debug)]
pub(crate) struct OutboxLimits {
    /// Queuing a frame that would pass this many bytes fails with [`PushError::Full`] (unless
    /// nothing is queued): the consumer is too slow.
    pub(crate) hard_bytes: usize,
    /// Above this many queued bytes the connection counts as congested, and the publishers
    /// sending to it pause reading until it drains below (for a while at most).
    pub(crate) soft_bytes: usize,
}

/// One connection's outbox (a bounded, non-blocking queue of encoded packets) and the flow
/// control of its reads (command credits, the pause), shared by its task and the broker task.
///
/// One exists per open connection, so its size counts: the connection task, the only one that
/// waits for frames or credits, waits through one [`AtomicWaker`] and flags rather than a
/// `Notify` and a semaphore (whose waiters would live in the connection's future).
#[derive(Debug)]
pub(crate) struct ConnectionLink {
    /// The connection, here rather than in its task's future: tokio sizes a task by 128-byte
    /// steps, and these 32 bytes there would take every connection's task from 384 to 512.
    connection: ConnectionId,
    /// Transport facts about it, for the broker's CONNECT and the connection's log lines.
    info: ConnectionInfo,
    state: Mutex<State>,
    /// Mirrors the queued byte count so the broker can check it without taking the lock.
    bytes: AtomicUsize,
    /// A pointer rather than the two numbers: this struct exists once per connection.
    limits: Arc<OutboxLimits>,
    /// Commands the connection may still send before the broker task handles earlier ones.
    credits: AtomicU32,
    /// A push or the close that the connection task has not seen yet. Kept when nobody waits,
    /// so a wake-up is never lost (as with `Notify::notify_one`).
    signalled: AtomicBool,
    /// The connection task waits in [`ConnectionLink::ready`]: a signal must wake it.
    wants_signal: AtomicBool,
    /// The connection task waits in [`ConnectionLink::credit_available`]: a returned credit must
    /// wake it. Without these flags every push and every returned credit would wake the task,
    /// whatever it was doing.
    wants_credit: AtomicBool,
    /// The connection task, waiting for a signal or a credit.
    waker: AtomicWaker,
    /// Wakes writers' connection tasks waiting for this outbox to drain, and tasks waiting for
    /// it to close.
    drained: Notify,
}

/// Why a connection must pause reading.
#[derive(Debug, Clone)]
pub(crate) enum Throttle {
    /// Its messages went into this connection's outbox, which is above the soft limit.
    Outbox(Arc<ConnectionLink>),
    /// Its messages were queued in a session queue that is half full.
    Queue,
    /// Its messages made changes that the store has not caught up with.
    Store,
}

/// One of a connection's command credits, carried by a command waiting in the broker task.
/// Dropping it, once the broker task has handled the command, gives the credit back and wakes
/// the connection task if it waits for one.
#[derive(Debug)]
pub(crate) struct Credit(Arc<ConnectionLink>);

impl Drop for Credit {
    fn drop(&mut self) {
        // SeqCst with the waiter's flag-then-check: either it sees the credit, or we its flag.
        self.0.credits.fetch_add(1, Ordering::SeqCst);
        if self.0.wants_credit.swap(false, Ordering::SeqCst) {
            self.0.waker.wake();
        }
    }
}

/// The future of [`ConnectionLink::ready`].
#[derive(Debug)]
pub(crate) struct Ready<'a>(&'a ConnectionLink);

impl Future for Ready<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let link = self.0;
        if link.signalled.swap(false, Ordering::SeqCst) {
            return Poll::Ready(());
        }
        // Flag, then look again: a signal in between is seen here or wakes the task.
        link.waker.register(cx.waker());
        link.wants_signal.store(true, Ordering::SeqCst);
        if link.signalled.swap(false, Ordering::SeqCst) {
            link.wants_signal.store(false, Ordering::SeqCst);
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Ready<'_> {
    fn drop(&mut self) {
        // Nobody waits any more; a signal now is kept in `signalled` for the next call.
        self.0.wants_signal.store(false, Ordering::SeqCst);
    }
}

/// The future of [`ConnectionLink::credit_available`].
#[derive(Debug)]
pub(crate) struct CreditAvailable<'a>(&'a ConnectionLink);

impl Future for CreditAvailable<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let link = self.0;
        if link.credits.load(Ordering::SeqCst) > 0 {
            return Poll::Ready(());
        }
        link.waker.register(cx.waker());
        link.wants_credit.store(true, Ordering::SeqCst);
        if link.credits.load(Ordering::SeqCst) > 0 {
            link.wants_credit.store(false, Ordering::SeqCst);
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for CreditAvailable<'_> {
    fn drop(&mut self) {
        self.0.wants_credit.store(false, Ordering::SeqCst);
    }
}

impl ConnectionLink {
    /// The link of `connection`: an empty outbox bounded by `limits`, with `credits` command
    /// credits.
    pub(crate) fn new(
        connection: ConnectionId,
        info: ConnectionInfo,
        limits: Arc<OutboxLimits>,
        credits: u32,
    ) -> Self {
        ConnectionLink {
            connection,
            info,
            state: Mutex::new(State::default()),
            bytes: AtomicUsize::new(0),
            limits,
            credits: AtomicU32::new(credits),
            signalled: AtomicBool::new(false),
            wants_signal: AtomicBool::new(false),
            wants_credit: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            drained: Notify::new(),
        }
    }

    /// The connection this link serves.
    pub(crate) fn connection(&self) -> ConnectionId {
        self.connection
    }

    /// Transport facts about the connection.
    pub(crate) fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether more than the soft limit is queued: the connection is not keeping up.
    pub(crate) fn is_congested(&self) -> bool {
        self.queued_bytes() > self.limits.soft_bytes
    }

    /// Queues a frame and wakes the connection task; refuses it beyond the hard byte limit.
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), PushError> {
        self.push_with_limit(frame, self.limits.hard_bytes)
    }

    /// Queues a frame whatever the byte limit: for the rare packet that must not be lost
    /// even when the connection is slow.
    pub(crate) fn push_unbounded(&self, frame: Bytes) -> Result<(), PushError> {
        self.push_with_limit(frame, usize::MAX)
    }

    fn push_with_limit(&self, frame: Bytes, limit: usize) -> Result<(), PushError> {
        let mut state = self.state.lock().expect("link lock poisoned");
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
        self.signal();
        Ok(())
    }

    fn signal(&self) {
        // SeqCst with the waiter's flag-then-check in `Ready::poll`.
        self.signalled.store(true, Ordering::SeqCst);
        if self.wants_signal.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    /// Asks the connection task to pause reading, at most until `until`, before its next read.
    pub(crate) fn throttle(&self, reason: Throttle, until: Instant) {
        self.state.lock().expect("link lock poisoned").throttle = Some(Box::new((reason, until)));
    }

    /// The pause in force, if any. It stays until [`ConnectionLink::clear_throttle`], so a wait
    /// that is cancelled resumes where it was.
    pub(crate) fn current_throttle(&self) -> Option<(Throttle, Instant)> {
        self.state
            .lock()
            .expect("link lock poisoned")
            .throttle
            .as_deref()
            .cloned()
    }

    /// Ends the pause: the connection read again.
    pub(crate) fn clear_throttle(&self) {
        self.state.lock().expect("link lock poisoned").throttle = None;
    }

    /// Waits until the outbox is no longer congested (at most the soft limit is queued) or is
    /// closed.
    pub(crate) async fn wait_uncongested(&self) {
        loop {
            // Registered before the check, so a drain between check and wait is not missed.
            let notified = self.drained.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if !self.is_congested() || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Waits until the outbox is closed.
    pub(crate) async fn wait_closed(&self) {
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
        self.state.lock().expect("link lock poisoned").closed
    }

    /// Marks the outbox closed: what is queued is still written, then the connection ends.
    pub(crate) fn close(&self) {
        self.state.lock().expect("link lock poisoned").closed = true;
        self.signal();
        self.drained.notify_waiters();
    }

    /// Waits until frames are queued or the outbox is closed. Only the connection task waits
    /// here. Cancel safe: a wake-up that arrives while nobody waits is kept for the next call.
    pub(crate) fn ready(&self) -> Ready<'_> {
        Ready(self)
    }

    /// Waits until a command credit is free (without taking it). Only the connection task
    /// waits here.
    pub(crate) fn credit_available(&self) -> CreditAvailable<'_> {
        CreditAvailable(self)
    }

    /// Takes a command credit if one is free.
    pub(crate) fn try_take_credit(self: &Arc<Self>) -> Option<Credit> {
        self.credits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(1)
            })
            .ok()
            .map(|_| Credit(self.clone()))
    }

    /// Whether nothing is under way between the connection and the broker: no frame queued, not
    /// closed, no signal unseen, no pause, and all `credits` back. Only then may the connection
    /// park (see [`crate::parking`]).
    pub(crate) fn is_quiet(&self, credits: u32) -> bool {
        let state = self.state.lock().expect("link lock poisoned");
        state.frames.is_empty()
            && !state.closed
            && state.throttle.is_none()
            && !self.signalled.load(Ordering::SeqCst)
            && self.credits.load(Ordering::SeqCst) == credits
    }

    /// Hands the wait for frames or the close to `waker` while the connection is parked: a
    /// push or the close wakes it, and so does a signal already pending, at once. The signal
    /// itself is kept for the connection's [`ConnectionLink::ready`] once it runs again.
    pub(crate) fn park(&self, waker: &Waker) {
        self.waker.register(waker);
        // Flag, then look again, as in `Ready::poll`.
        self.wants_signal.store(true, Ordering::SeqCst);
        if self.signalled.load(Ordering::SeqCst) && self.wants_signal.swap(false, Ordering::SeqCst)
        {
            waker.wake_by_ref();
        }
    }

    /// Takes every queued frame, and whether the outbox is closed.
    pub(crate) fn take(&self) -> (VecDeque<Bytes>, bool) {
        let mut state = self.state.lock().expect("link lock poisoned");
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
    use broker_core::Transport;
    use futures_util::FutureExt;

    fn limits(hard_bytes: usize) -> Arc<OutboxLimits> {
        Arc::new(OutboxLimits {
            hard_bytes,
            soft_bytes: hard_bytes / 2,
        })
    }

    fn link(hard_bytes: usize, credits: u32) -> ConnectionLink {
        let info = ConnectionInfo {
            transport: Transport::Tcp,
            remote_address: "127.0.0.1:1".into(),
        };
        ConnectionLink::new(ConnectionId(1), info, limits(hard_bytes), credits)
    }

    /// One exists per open connection, idle or not: a field that makes it grow should be
    /// boxed, as the pause is, or have a reason (see the README's Performance section).
    #[test]
    fn an_idle_connection_link_stays_small() {
        assert!(
            std::mem::size_of::<ConnectionLink>() <= 168,
            "ConnectionLink is {} bytes",
            std::mem::size_of::<ConnectionLink>()
        );
    }

    #[test]
    fn push_take_and_limits() {
        let link = link(10, 2);
        link.push(Bytes::from_static(b"12345")).unwrap();
        link.push(Bytes::from_static(b"12345")).unwrap();
        assert_eq!(link.queued_bytes(), 10);
        assert_eq!(link.push(Bytes::from_static(b"1")), Err(PushError::Full));
        let (frames, closed) = link.take();
        assert_eq!(frames.len(), 2);
        assert!(!closed);
        assert_eq!(link.queued_bytes(), 0);
        // A single frame larger than the limit still goes out when nothing else is queued.
        link.push(Bytes::from(vec![0; 100])).unwrap();
        link.close();
        assert_eq!(link.push(Bytes::from_static(b"x")), Err(PushError::Closed));
        let (frames, closed) = link.take();
        assert_eq!(frames.len(), 1);
        assert!(closed);
    }

    #[test]
    fn ready_keeps_a_signal_for_the_next_wait() {
        let link = link(10, 2);
        assert_eq!(link.ready().now_or_never(), None);
        link.push(Bytes::from_static(b"1")).unwrap();
        link.push(Bytes::from_static(b"2")).unwrap();
        // Two pushes before anyone looks make one wake-up, as with `Notify::notify_one`.
        assert_eq!(link.ready().now_or_never(), Some(()));
        assert_eq!(link.ready().now_or_never(), None);
        link.close();
        assert_eq!(link.ready().now_or_never(), Some(()));
    }

    #[test]
    fn credits_are_returned_when_dropped() {
        let link = Arc::new(link(10, 2));
        let first = link.try_take_credit().expect("a first credit");
        let second = link.try_take_credit().expect("a second credit");
        assert!(link.try_take_credit().is_none());
        assert_eq!(link.credit_available().now_or_never(), None);
        drop(first);
        assert_eq!(link.credit_available().now_or_never(), Some(()));
        assert!(link.try_take_credit().is_some());
        drop(second);
    }

    #[tokio::test]
    async fn waiting_task_is_woken_by_a_push_and_by_a_returned_credit() {
        let link = Arc::new(link(10, 1));
        let waiter = tokio::spawn({
            let link = link.clone();
            async move { link.ready().await }
        });
        tokio::task::yield_now().await;
        link.push(Bytes::from_static(b"1")).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken by the push")
            .unwrap();

        let credit = link.try_take_credit().expect("the credit");
        let waiter = tokio::spawn({
            let link = link.clone();
            async move { link.credit_available().await }
        });
        tokio::task::yield_now().await;
        drop(credit);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken by the returned credit")
            .unwrap();
    }
}
