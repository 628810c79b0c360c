//! The writer: applies the broker's change records to the store on a thread of its own, so that
//! the broker's task never waits for the disk.
//!
//! The broker task pushes records into a [`ChangeSink`] (a short mutex, never a wait for I/O);
//! the writer takes everything pending, commits it in one transaction and reports, through a
//! `watch` channel, how many changes are durable. With [`Durability::Full`] it commits as soon
//! as there is something to commit, so what arrives during one commit goes into the next one
//! together (group commit: the fsync cost is shared, and the load decides the batch size).
//! With [`Durability::Relaxed`] it commits at most once per interval.
//!
//! A failed commit keeps its batch: it is retried, with what arrived since appended, with a
//! growing pause; meanwhile the status says the store cannot write, so that the broker refuses
//! what it would have to store rather than acknowledge it. Closing the sink makes the writer
//! write what is left and return: once its task is joined, everything is on disk.
//!
//! Invariant: the records are applied in the order they were pushed, each exactly once in
//! effect (a retried batch starts with the records of the failed one).

use super::{Clock, Store};
use crate::config::Durability;
use broker_core::Change;
use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

/// The first pause after a failed commit; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Attempts left for what is pending once the sink is closed and the disk keeps failing: the
/// gateway must exit within its shutdown grace.
const ATTEMPTS_AFTER_CLOSE: u32 = 3;

/// What the store reports to the broker task after each commit or failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoreStatus {
    /// How many changes are on disk: the `total` pushed with the last record committed.
    pub(crate) durable: u64,
    /// Whether the last attempt to write succeeded.
    pub(crate) writable: bool,
}

/// The store's counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct StoreCounters {
    /// Transactions committed.
    pub(crate) commits: AtomicU64,
    /// Change records committed.
    pub(crate) changes_written: AtomicU64,
    /// Commits that failed (each retry counts).
    pub(crate) write_errors: AtomicU64,
    /// Duration of the last commit that succeeded, microseconds.
    pub(crate) last_commit_micros: AtomicU64,
}

/// What the broker task has pushed and the writer not yet taken.
#[derive(Debug, Default)]
struct Pending {
    records: Vec<Change>,
    /// The payload bytes the records hold (a retained message's, a stored message's).
    bytes: usize,
    /// The count of changes recorded up to the last record pushed.
    total: u64,
    /// The sink is gone: write what is left and stop.
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock leaves plain data behind, still consistent.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Where the broker task puts change records. Dropping it closes it: the writer writes what is
/// left and stops.
#[derive(Debug)]
pub(crate) struct ChangeSink {
    shared: Arc<Shared>,
}

impl ChangeSink {
    /// Moves `changes` to the writer; `total` is what [`broker_core::Broker::take_changes`]
    /// returned with them. Takes a short lock, never waits for the disk. Returns whether the
    /// writer has fallen behind: more records or payload bytes wait than it should take in one
    /// commit, so whoever is producing them should slow down.
    pub(crate) fn push(&self, changes: &mut Vec<Change>, total: u64) -> bool {
        let bytes: usize = changes.iter().map(payload_bytes).sum();
        let mut pending = self.shared.lock();
        pending.bytes += bytes;
        let behind =
            pending.records.len() + changes.len() > BEHIND_RECORDS || pending.bytes > BEHIND_BYTES;
        if pending.records.is_empty() {
            // Hand the vector over whole, and give the caller back the empty one.
            mem::swap(&mut pending.records, changes);
        } else {
            pending.records.append(changes);
        }
        pending.total = pending.total.max(total);
        drop(pending);
        self.shared.wake.notify_one();
        behind
    }
}

/// Records waiting for the writer beyond which it counts as behind.
const BEHIND_RECORDS: usize = 100_000;
/// Payload bytes waiting for the writer beyond which it counts as behind.
const BEHIND_BYTES: usize = 32 * 1024 * 1024;

fn payload_bytes(change: &Change) -> usize {
    match change {
        Change::Retained {
            message: Some((publish, _)),
            ..
        }
        | Change::Message { publish, .. } => publish.payload.len(),
        _ => 0,
    }
}

impl Drop for ChangeSink {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// Starts the writer on a blocking thread. `interval` is the time between commits with
/// [`Durability::Relaxed`]. The task ends once the sink is closed and what was pushed is
/// written (or, if the disk keeps failing, given up on with an error logged).
pub(crate) fn start(
    store: Store,
    mode: Durability,
    interval: Duration,
    counters: Arc<StoreCounters>,
) -> (ChangeSink, watch::Receiver<StoreStatus>, JoinHandle<()>) {
    let shared = Arc::new(Shared::default());
    let (status, status_receiver) = watch::channel(StoreStatus {
        durable: 0,
        writable: true,
    });
    let writer = Writer {
        store,
        clock: Clock::now(),
        shared: shared.clone(),
        status,
        counters,
        pause: match mode {
            Durability::Full => Duration::ZERO,
            Durability::Relaxed => interval,
        },
    };
    let task = tokio::task::spawn_blocking(move || writer.run());
    (ChangeSink { shared }, status_receiver, task)
}

struct Writer {
    store: Store,
    clock: Clock,
    shared: Arc<Shared>,
    status: watch::Sender<StoreStatus>,
    counters: Arc<StoreCounters>,
    /// The least time between the starts of two commits.
    pause: Duration,
}

/// Records a batch vector keeps room for between commits.
const KEPT_CAPACITY: usize = 16 * 1024;

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<Change> = Vec::new();
        let mut batch_total = 0;
        let mut failures = 0u32;
        let mut attempts_after_close = 0;
        let mut next_commit = Instant::now();
        loop {
            let closed = {
                let mut pending = self.shared.lock();
                loop {
                    let ready = !batch.is_empty() || !pending.records.is_empty();
                    if pending.closed || (ready && Instant::now() >= next_commit) {
                        break;
                    }
                    pending = if ready {
                        let wait = next_commit.saturating_duration_since(Instant::now());
                        self.shared
                            .wake
                            .wait_timeout(pending, wait)
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .0
                    } else {
                        self.shared
                            .wake
                            .wait(pending)
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                    };
                }
                if batch.is_empty() {
                    mem::swap(&mut batch, &mut pending.records);
                } else {
                    batch.append(&mut pending.records);
                }
                pending.bytes = 0;
                batch_total = batch_total.max(pending.total);
                pending.closed
            };
            if batch.is_empty() {
                // Closed with nothing left to write.
                return;
            }
            let started = Instant::now();
            match self.store.apply(&batch, &self.clock) {
                Ok(()) => {
                    self.committed(batch.len(), started.elapsed());
                    if failures > 0 {
                        info!("store: writing again after {failures} failed attempts");
                        failures = 0;
                    }
                    batch.clear();
                    // A burst (a million retained messages loaded at once) should not leave
                    // its vector behind, circulating between here and the broker task.
                    if batch.capacity() > KEPT_CAPACITY {
                        batch = Vec::new();
                    }
                    self.status.send_replace(StoreStatus {
                        durable: batch_total,
                        writable: true,
                    });
                    next_commit = started + self.pause;
                }
                Err(failure) => {
                    self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    if failures == 1 {
                        // Once per outage: the recovery line says how long it lasted.
                        error!(
                            "store: cannot write ({failure}); retrying, and refusing messages \
                             that would have to be stored until it can"
                        );
                        self.status.send_modify(|status| status.writable = false);
                    }
                    if closed {
                        attempts_after_close += 1;
                        if attempts_after_close > ATTEMPTS_AFTER_CLOSE {
                            error!(
                                "store: giving up at shutdown: {} changes not written to {}",
                                batch.len(),
                                self.store.path().display()
                            );
                            return;
                        }
                    }
                    let backoff = MIN_BACKOFF
                        .saturating_mul(1 << (failures - 1).min(4))
                        .min(MAX_BACKOFF);
                    next_commit = Instant::now() + backoff;
                    if closed {
                        // Nobody will push again: sleep out the pause instead of waiting for
                        // a wake-up that will not come.
                        std::thread::sleep(backoff);
                    }
                }
            }
        }
    }

    fn committed(&self, records: usize, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let counters = &self.counters;
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters
            .changes_written
            .fetch_add(records as u64, Ordering::Relaxed);
        counters.last_commit_micros.store(micros, Ordering::Relaxed);
    }
}
