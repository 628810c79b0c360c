//! Where idle TCP connections wait without a task: the [`Parking`] lot.
//!
//! An MQTT connection spends nearly all its life idle, and on tokio an idle connection still
//! costs its task (384 bytes) and its socket's registration with the runtime (256 bytes),
//! together most of what it costs at all. A connection that has been quiet for a while (see
//! [`crate::connection`]) therefore ends its task and parks here: its socket is taken off
//! tokio's reactor and watched by the lot's own epoll set, and what the connection needs to go
//! on is kept in one allocation beside it. Whatever happens next to it unparks it: bytes or the
//! end of the stream on the socket (the lot's epoll set says which), or the broker queuing a
//! packet for it or closing it (its link wakes the [`Waker`] that [`Parking::park`] returns).
//! Unparking hands the socket back to the connection, which registers it with tokio again and
//! runs in a new task, exactly where it stopped.
//!
//! One thread owns the epoll set and resumes connections into the runtime; parking and
//! resuming take one lock and a few system calls, so a connection that is quiet for seconds
//! pays nothing noticeable for them. (A thread rather than a task: tokio can watch an epoll set
//! only through `AsyncFd`, whose safe constructors it has deprecated as unsound in general.)
//!
//! Invariants: a socket is in the epoll set exactly while its entry holds it; an entry is
//! resumed at most once (a stale wake-up, for an entry since resumed and its slot reused, is
//! told apart by the slot's generation); once [`Parking::close`] is called nothing more parks,
//! and the thread ends when the lot is empty.

use crate::counters::TransportCounters;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Wake, Waker};
use std::time::Duration;
use tracing::{debug, warn};

/// What brings a parked connection back: called with its socket, once, in the lot's thread.
pub(crate) type Resume = Box<dyn FnOnce(std::net::TcpStream) + Send>;

/// Readiness events taken from the epoll set at once.
const EVENTS: usize = 256;

/// The token of the lot's own wake-ups; a [`Key`]'s slot never reaches `u32::MAX`.
const WAKE: Token = Token(usize::MAX);

/// A handle to the lot; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct Parking {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Adds and removes sockets from the epoll set that the lot's thread polls.
    registry: Registry,
    lot: Mutex<Lot>,
    /// Entries whose link woke them, for the thread to resume.
    woken: Mutex<Vec<Key>>,
    /// Wakes the thread: entries woken, or the lot closed.
    wake: mio::Waker,
    /// Where the lot counts the connections it holds and those it resumed, for `/metrics`.
    counters: Arc<TransportCounters>,
    /// Set once the lot has logged a failure: a system that refuses one socket or one poll
    /// refuses the next thousands too, and the log gets one warning, not thousands.
    warned: AtomicBool,
}

/// The parked connections: a slab whose slots are reused, each with a generation.
#[derive(Default)]
struct Lot {
    entries: Vec<Entry>,
    free: Vec<u32>,
    closed: bool,
}

impl std::fmt::Debug for Lot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lot")
            .field("slots", &self.entries.len())
            .field("free", &self.free.len())
            .field("closed", &self.closed)
            .finish()
    }
}

#[derive(Default)]
struct Entry {
    generation: u32,
    parked: Option<(std::net::TcpStream, Resume)>,
}

/// A slot and its generation, as the epoll set's token and in wake-ups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    slot: u32,
    generation: u32,
}

impl Key {
    fn token(self) -> Token {
        Token(((self.generation as usize) << 32) | self.slot as usize)
    }

    fn from_token(token: Token) -> Key {
        Key {
            slot: token.0 as u32,
            generation: (token.0 >> 32) as u32,
        }
    }
}

/// The waker a parked connection's link holds: it queues the entry for resuming.
struct KeyWaker {
    key: Key,
    /// Weak: a parked connection must not keep a lot nobody else has alive.
    shared: Weak<Shared>,
}

impl Wake for KeyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shared) = self.shared.upgrade() {
            shared
                .woken
                .lock()
                .expect("parking lock poisoned")
                .push(self.key);
            shared.notify();
        }
    }
}

impl Parking {
    /// Starts the lot's thread, which resumes connections into the current runtime; the lot
    /// counts what it holds and resumes in `counters`.
    pub(crate) fn start(counters: Arc<TransportCounters>) -> io::Result<Parking> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let poll = Poll::new()?;
        let shared = Arc::new(Shared {
            registry: poll.registry().try_clone()?,
            lot: Mutex::new(Lot::default()),
            woken: Mutex::new(Vec::new()),
            wake: mio::Waker::new(poll.registry(), WAKE)?,
            counters,
            warned: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("mqtt-parking".into())
            .spawn(move || run(poll, &weak, &runtime))?;
        Ok(Parking { shared })
    }

    /// Parks `stream` until it is readable (or closed by the peer) or the waker handed to
    /// `watch` is woken, whichever comes first; then `resume` gets it back. `watch` runs before
    /// the socket is watched, so that nothing can resume the connection before whoever may wake
    /// it holds the waker. Fails, handing both back, once the lot is closed or if the socket
    /// cannot be watched.
    pub(crate) fn park(
        &self,
        stream: std::net::TcpStream,
        resume: Resume,
        watch: impl FnOnce(&Waker),
    ) -> Result<(), (std::net::TcpStream, Resume)> {
        let mut lot = self.shared.lot.lock().expect("parking lock poisoned");
        if lot.closed {
            return Err((stream, resume));
        }
        let slot = match lot.free.pop() {
            Some(slot) => slot,
            None => {
                lot.entries.push(Entry::default());
                (lot.entries.len() - 1) as u32
            }
        };
        let entry = &mut lot.entries[slot as usize];
        let key = Key {
            slot,
            generation: entry.generation,
        };
        let fd = stream.as_raw_fd();
        // In the lot before its waker exists: a wake-up at once (a signal already pending)
        // must find it. The lot's thread cannot look before this lock is released.
        entry.parked = Some((stream, resume));
        watch(&Waker::from(Arc::new(KeyWaker {
            key,
            shared: Arc::downgrade(&self.shared),
        })));
        // If bytes are waiting already, the epoll set reports them at once.
        let registered =
            self.shared
                .registry
                .register(&mut SourceFd(&fd), key.token(), Interest::READABLE);
        if let Err(error) = registered {
            let entry = &mut lot.entries[slot as usize];
            let parked = entry.parked.take().expect("parked above");
            // The waker handed out must not resume whoever takes the slot next.
            entry.generation = entry.generation.wrapping_add(1);
            lot.free.push(slot);
            drop(lot);
            self.shared.failed(&format_args!(
                "cannot park an idle connection, it keeps its task: {error}"
            ));
            return Err(parked);
        }
        // Still under the lock, so counted before the lot's thread can resume it.
        self.shared
            .counters
            .parked_connections
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Connections parked now.
    #[cfg(test)]
    fn parked(&self) -> usize {
        let lot = self.shared.lot.lock().expect("parking lock poisoned");
        lot.entries.len() - lot.free.len()
    }

    /// Parks nothing more; the lot's thread ends once every parked connection has been
    /// resumed.
    pub(crate) fn close(&self) {
        self.shared
            .lot
            .lock()
            .expect("parking lock poisoned")
            .closed = true;
        self.shared.notify();
    }
}

impl Shared {
    /// Logs a failure: a warning the first time, then at debug level.
    fn failed(&self, what: &dyn std::fmt::Display) {
        if self.warned.swap(true, Ordering::Relaxed) {
            debug!("{what}");
        } else {
            warn!("{what} (further failures of the parking lot are logged at debug level)");
        }
    }

    fn notify(&self) {
        if let Err(error) = self.wake.wake() {
            self.failed(&format_args!(
                "parked connections: cannot wake the lot: {error}"
            ));
        }
    }

    /// Takes `key`'s connection out of the lot and resumes it, unless it was resumed already.
    fn resume(&self, key: Key) {
        let mut lot = self.lot.lock().expect("parking lock poisoned");
        let Some(entry) = lot.entries.get_mut(key.slot as usize) else {
            return;
        };
        if entry.generation != key.generation {
            return;
        }
        let Some((stream, resume)) = entry.parked.take() else {
            return;
        };
        entry.generation = entry.generation.wrapping_add(1);
        lot.free.push(key.slot);
        drop(lot);
        // Failing to remove a socket we added means the descriptor is gone: the connection
        // finds out on its first read.
        let _ = self.registry.deregister(&mut SourceFd(&stream.as_raw_fd()));
        self.counters
            .parked_connections
            .fetch_sub(1, Ordering::Relaxed);
        self.counters
            .resumed_connections
            .fetch_add(1, Ordering::Relaxed);
        resume(stream);
    }

    /// Whether the lot is closed and empty: the thread's work is done.
    fn is_done(&self) -> bool {
        let lot = self.lot.lock().expect("parking lock poisoned");
        lot.closed && lot.free.len() == lot.entries.len()
    }
}

/// The lot's thread: resumes connections as their sockets become readable or their links
/// wake them, until the lot is closed and empty, or dropped.
fn run(mut poll: Poll, shared: &Weak<Shared>, runtime: &tokio::runtime::Handle) {
    // Resuming registers the socket with tokio again and spawns the connection's task.
    let _runtime = runtime.enter();
    let mut events = Events::with_capacity(EVENTS);
    let mut ready = Vec::new();
    loop {
        // Woken at least every second, so that a lot dropped without being closed (a gateway
        // dropped without shutdown) does not keep its thread.
        if let Err(error) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            if error.kind() != io::ErrorKind::Interrupted {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                shared.failed(&format_args!("parked connections: polling failed: {error}"));
                drop(shared);
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        ready.extend(
            events
                .iter()
                .filter(|event| event.token() != WAKE)
                .map(|event| Key::from_token(event.token())),
        );
        ready.append(&mut shared.woken.lock().expect("parking lock poisoned"));
        for key in ready.drain(..) {
            shared.resume(key);
        }
        if shared.is_done() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use tokio::sync::mpsc;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    /// A resume that sends the socket back, tagged.
    fn resume_to(sender: &mpsc::UnboundedSender<(u32, std::net::TcpStream)>, tag: u32) -> Resume {
        let sender = sender.clone();
        Box::new(move |stream| {
            let _ = sender.send((tag, stream));
        })
    }

    /// Parks `stream`, returning the waker that resumes it.
    fn park(parking: &Parking, stream: std::net::TcpStream, resume: Resume) -> Waker {
        let mut waker = None;
        parking
            .park(stream, resume, |given| waker = Some(given.clone()))
            .ok()
            .expect("parked");
        waker.expect("a waker handed out")
    }

    #[tokio::test]
    async fn a_wake_up_during_parking_resumes_at_once() {
        let parking = Parking::start(Arc::default()).unwrap();
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let (_client, server) = pair();
        parking
            .park(server, resume_to(&sender, 3), Waker::wake_by_ref)
            .ok()
            .expect("parked");
        assert_eq!(next(&mut receiver).await.0, 3);
    }

    async fn next(
        receiver: &mut mpsc::UnboundedReceiver<(u32, std::net::TcpStream)>,
    ) -> (u32, std::net::TcpStream) {
        tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .expect("resumed in time")
            .expect("the lot is alive")
    }

    #[tokio::test]
    async fn a_socket_that_becomes_readable_is_resumed_with_its_bytes() {
        let counters: Arc<TransportCounters> = Arc::default();
        let parking = Parking::start(counters.clone()).unwrap();
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let (mut client, server) = pair();
        park(&parking, server, resume_to(&sender, 1));
        assert_eq!(parking.parked(), 1);
        assert_eq!(counters.parked_connections.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(receiver.try_recv().is_err(), "nothing happened yet");
        client.write_all(b"hello").unwrap();
        let (tag, mut stream) = next(&mut receiver).await;
        assert_eq!(tag, 1);
        assert_eq!(parking.parked(), 0);
        assert_eq!(counters.parked_connections.load(Ordering::Relaxed), 0);
        assert_eq!(counters.resumed_connections.load(Ordering::Relaxed), 1);
        let mut buf = [0; 5];
        stream.set_nonblocking(false).unwrap();
        stream.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[tokio::test]
    async fn bytes_waiting_before_parking_resume_at_once() {
        let parking = Parking::start(Arc::default()).unwrap();
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let (mut client, server) = pair();
        client.write_all(b"x").unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        park(&parking, server, resume_to(&sender, 1));
        assert_eq!(next(&mut receiver).await.0, 1);
    }

    #[tokio::test]
    async fn a_peer_that_closes_resumes_its_connection() {
        let parking = Parking::start(Arc::default()).unwrap();
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let (client, server) = pair();
        park(&parking, server, resume_to(&sender, 7));
        drop(client);
        assert_eq!(next(&mut receiver).await.0, 7);
    }

    #[tokio::test]
    async fn the_waker_resumes_once_and_a_stale_one_touches_nobody() {
        let parking = Parking::start(Arc::default()).unwrap();
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let (_first_client, first) = pair();
        let waker = park(&parking, first, resume_to(&sender, 1));
        waker.wake_by_ref();
        let (tag, first) = next(&mut receiver).await;
        assert_eq!(tag, 1);
        // The slot is reused by the next connection, under a new generation: the first
        // connection's waker, still held somewhere, must not resume it.
        let (_second_client, second) = pair();
        park(&parking, second, resume_to(&sender, 2));
        waker.wake_by_ref();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            receiver.try_recv().is_err(),
            "a stale wake-up resumed a connection"
        );
        assert_eq!(parking.parked(), 1);
        drop(first);
    }

    #[tokio::test]
    async fn a_closed_lot_parks_nothing_but_resumes_what_it_holds() {
        let parking = Parking::start(Arc::default()).unwrap();
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let (_client, server) = pair();
        let waker = park(&parking, server, resume_to(&sender, 1));
        parking.close();
        assert!(!parking.shared.is_done(), "a connection is still parked");
        let (_other_client, other) = pair();
        assert!(parking.park(other, resume_to(&sender, 2), |_| {}).is_err());
        // Refused, so neither parked nor resumed.
        assert_eq!(parking.parked(), 1);
        assert_eq!(
            parking
                .shared
                .counters
                .parked_connections
                .load(Ordering::Relaxed),
            1
        );
        waker.wake();
        assert_eq!(next(&mut receiver).await.0, 1);
        assert!(parking.shared.is_done());
    }
}
