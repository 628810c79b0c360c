//! The per-connection task, shared by every transport: it reads bytes, decodes packets, hands
//! them to the broker task, and writes what the broker queues in the connection's outbox (its
//! [`ConnectionLink`], which also carries the flow control of its reads).
//!
//! Transports are thin adapters implementing [`Transport`] (see [`crate::transport`]); this
//! module holds all the MQTT connection rules that do not need the broker's state: CONNECT must
//! come first [MQTT-3.1.0-1] and the handshake end (CONNACK, after any AUTH exchange) within the
//! connect timeout, a decode error stops reading and lets the broker answer, a write is bounded
//! by the write timeout, and the connection ends when the broker closes the outbox or the peer
//! goes away. A peer that goes away in the middle of a packet, or breaks its transport's
//! framing, is bad input and logged once, here.
//!
//! Invariant: `Open` is the first command a connection sends the broker task and, unless the
//! broker closed its link (then it knows already), `Lost` is the last.
//!
//! Memory: the task's future is most of what an idle connection costs, and a future is as large
//! as its largest state, however rarely that state is entered. So the states every connection
//! passes through stay small (the idle wait is a few references and poll functions), and what
//! is rare or short-lived lives in a box only while it is needed: the connect timer until
//! CONNECT, a write that has to wait for the peer, a pause the broker asked for, a command that
//! finds the broker's queue full, the final flush and close. Helpers that the future stores are
//! plain functions returning an `async move` block rather than `async fn`s, whose arguments
//! would be stored twice.

use crate::broker_task::{BrokerHandle, Command};
use crate::cluster::sessions::{ClaimError, Claims};
use crate::counters::TransportCounters;
use crate::link::{ConnectionLink, OutboxLimits, Throttle};
use crate::listeners::ConnectionPermit;
use crate::parking::{Parking, Resume};
use crate::security::{Presented, Security};
use crate::transport::Transport;
use crate::transport::tcp::TcpTransport;
use broker_core::{Authentication, ConnectionId, ConnectionInfo, StoredSession};
use bytes::BytesMut;
use mqtt_codec::{ConnectPacket, DecodeError, Packet, ProtocolVersion, ReasonCode, decode};
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, Sleep};
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};
use tracing::{debug, warn};

/// Commands a connection may have waiting in the broker task. Reading waits for a free credit,
/// so a fast publisher's backlog is a couple of reads, and a pause the broker asks for (see
/// `ConnectionLink::throttle`) takes effect at once rather than after a queue of earlier reads.
const COMMAND_CREDITS: u32 = 2;

/// Settings of the connection task.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionSettings {
    /// Time allowed between accepting the connection and receiving CONNECT.
    pub(crate) connect_timeout: Duration,
    /// Largest packet accepted, as announced in CONNACK.
    pub(crate) max_packet_size: usize,
    /// The limits of every connection's outbox, which the broker task reads from the outbox.
    pub(crate) outbox_limits: Arc<OutboxLimits>,
    /// Time allowed for flushing after the broker closed the connection.
    pub(crate) close_timeout: Duration,
    /// Time a write may wait for a peer that does not read before the connection is dropped.
    pub(crate) write_timeout: Duration,
    /// Bytes per second read from the connection at most (see [`InboundRate`]); `None`: no
    /// bound.
    pub(crate) max_inbound_rate: Option<u64>,
}

/// Everything a connection task needs from the gateway.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionContext {
    /// The broker task.
    pub(crate) broker: BrokerHandle,
    /// Byte counters.
    pub(crate) counters: Arc<TransportCounters>,
    /// Settings.
    pub(crate) settings: ConnectionSettings,
    /// Authentication and authorization, when configured.
    pub(crate) security: Option<Arc<Security>>,
    /// How a cluster node claims a client's session from the other nodes.
    pub(crate) claims: Option<Arc<Claims>>,
    /// Where quiet TCP connections park; `None`: they keep their tasks.
    pub(crate) parking: Option<IdleParking>,
}

/// Why the read side stopped.
enum ReadEnd {
    /// The peer closed or the socket failed: tell the broker the connection is lost.
    Lost,
    /// The broker has been told about a protocol error and will close the connection.
    AwaitingClose,
}

/// Why a write did not complete.
enum WriteFailure {
    Io(io::Error),
    /// The peer read nothing for the write timeout.
    TimedOut,
}

/// How long a connection may stay quiet after its CONNACK, or after it was resumed from the
/// parking lot, before it parks (see [`crate::parking`]). A client silent right after
/// connecting is likely to stay so for a while (a sensor between readings, a subscriber waiting
/// for rare messages), and one resumed for a keep-alive ping will be silent until the next;
/// parked this soon, a crowd connecting at once (every device reconnecting after a restart)
/// holds at most a twentieth of a second's worth of tasks, and a client that speaks a moment
/// later pays one resumption, some microseconds.
const FIRST_QUIET: Duration = Duration::from_millis(50);

/// How long a connection that has had traffic (anything but keep-alive pings) since then must
/// stay quiet before it parks: long enough that a client exchanging a message every second or
/// two keeps its task, rather than paying for parking and resuming each time.
const QUIET: Duration = Duration::from_secs(5);

/// Where quiet TCP connections park, and the tracker that their resumed tasks join, so that
/// shutdown waits for parked connections as for running ones.
#[derive(Clone, Debug)]
pub(crate) struct IdleParking {
    pub(crate) lot: Parking,
    pub(crate) tracker: TaskTracker,
}

/// What a connection carries from one task to the next when it parks, besides its link and
/// context.
struct Carried {
    /// The protocol of its CONNECT, once received.
    version: Option<ProtocolVersion>,
    /// Boxed, and only with a bound: most gateways have none, and every connection pays for
    /// what its future holds.
    inbound_rate: Option<Box<InboundRate>>,
    /// Its place under the connection limits, held until the connection ends.
    _permit: ConnectionPermit,
}

/// A parked connection, in the one allocation the lot keeps for it beside its socket.
struct Parked {
    link: Arc<ConnectionLink>,
    context: Arc<ConnectionContext>,
    carried: Carried,
    /// Keeps shutdown waiting for the connection while it has no task.
    tracked: TaskTrackerToken,
}

/// How the serving loop ended.
enum Exit {
    /// The peer went away or failed: tell the broker the connection is lost.
    Lost,
    /// The broker closed the outbox: flush what it queued last, then close.
    Closed,
    /// Quiet long enough: park (TCP only).
    Park,
}

/// Serves one connection until it ends.
///
/// `context` is shared by a listener's connections when passed as an `Arc`.
pub(crate) fn run<T: Transport>(
    transport: T,
    connection: ConnectionId,
    info: ConnectionInfo,
    context: impl Into<Arc<ConnectionContext>>,
    permit: ConnectionPermit,
) -> impl Future<Output = ()> + Send {
    let context: Arc<ConnectionContext> = context.into();
    // Made here rather than in the `async` block, which keeps whatever it captures for the
    // connection's whole life: the link holds the connection's id and facts, the future only
    // the link.
    let link = Arc::new(ConnectionLink::new(
        connection,
        info,
        context.settings.outbox_limits.clone(),
        COMMAND_CREDITS,
    ));
    let carried = Carried {
        version: None,
        inbound_rate: context
            .settings
            .max_inbound_rate
            .map(|rate| Box::new(InboundRate::new(rate, Instant::now()))),
        _permit: permit,
    };
    serve(transport, link, context, carried)
}

/// Brings a parked connection back, in the lot's task: its socket registered with tokio again,
/// served by a new task from where it stopped.
fn resume(stream: std::net::TcpStream, parked: Parked) {
    let Parked {
        link,
        context,
        carried,
        tracked,
    } = parked;
    match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => {
            let serve = serve(TcpTransport::new(stream), link, context, carried);
            tracked.task_tracker().spawn(serve);
        }
        Err(error) => {
            warn!(
                connection = %link.connection(),
                peer = %link.info().remote_address,
                "closing connection: its socket cannot be watched again: {error}"
            );
            tracked.task_tracker().spawn(async move {
                let open = context
                    .counters
                    .open_connections
                    .resumed(link.info().transport);
                lost(&link, &context).await;
                drop((open, carried));
            });
        }
    }
}

/// Tells the broker that the connection is gone (unless it closed it itself).
async fn lost(link: &ConnectionLink, context: &ConnectionContext) {
    link.close();
    // The broker may be shutting down; then nobody needs to know.
    let _ = send_command(
        &context.broker,
        Command::Lost {
            connection: link.connection(),
        },
    )
    .await;
}

/// Serves the connection, new (`carried.version` is `None`: nothing received yet) or back
/// from the parking lot, until it ends or parks again.
// Not an `async fn`, which would store its arguments twice (see the module's notes on memory).
#[allow(clippy::manual_async_fn)]
fn serve<T: Transport>(
    mut transport: T,
    link: Arc<ConnectionLink>,
    context: Arc<ConnectionContext>,
    mut carried: Carried,
) -> impl Future<Output = ()> + Send {
    async move {
        let fresh = carried.version.is_none();
        let kind = link.info().transport;
        let open = if fresh {
            context.counters.open_connections.open(kind)
        } else {
            context.counters.open_connections.resumed(kind)
        };
        // Until CONNACK, the connect timer: the whole handshake is bounded, not only the wait
        // for CONNECT, as a 5.0 CONNECT may start an authentication exchange (AUTH) that the
        // client then never continues, and until CONNACK the broker holds it waiting
        // [MQTT-4.12.0-1]. Past the handshake, on a connection that can park, the quiet timer;
        // on others none, so that idle connections keep no timer.
        let mut timer: Option<Pin<Box<Sleep>>> = Some(Box::pin(tokio::time::sleep(if fresh {
            context.settings.connect_timeout
        } else {
            FIRST_QUIET
        })));
        let mut handshake_done = !fresh;
        if fresh {
            let announce = Command::Open {
                connection: link.connection(),
                link: link.clone(),
            };
            if send_command(&context.broker, announce).await.is_err() {
                return;
            }
        }
        // Whether anything was read or written since the quiet timer last fired.
        let mut active = false;
        let mut read_buf = BytesMut::new();
        let mut reading = true;

        let exit = loop {
            tokio::select! {
                biased;
                () = link.ready() => {
                    let (frames, closed) = link.take();
                    if !handshake_done && frames.iter().any(|frame| is_connack(frame)) {
                        handshake_done = true;
                        // The handshake's own traffic is not a sign of a busy client.
                        active = false;
                        timer = (T::PARKABLE && context.parking.is_some())
                            .then(|| Box::pin(tokio::time::sleep(FIRST_QUIET)));
                    } else if !frames.iter().all(|frame| is_pingresp(frame)) {
                        active = true;
                    }
                    if !frames.is_empty() {
                        // Boxed: the write and its timers would otherwise be part of every
                        // connection's future, idle or not.
                        let write = transport.write(frames);
                        let written =
                            Box::pin(write_with_timeouts(write, &link, &context.settings)).await;
                        match written {
                            Ok(written) => {
                                context.counters.bytes_sent.fetch_add(written as u64, Ordering::Relaxed);
                            }
                            Err(WriteFailure::Io(error)) => {
                                debug!(connection = %link.connection(), "write failed: {error}");
                                break Exit::Lost;
                            }
                            Err(WriteFailure::TimedOut) => {
                                warn!(
                                    connection = %link.connection(),
                                    peer = %link.info().remote_address,
                                    "closing connection: the peer has not read anything for {:?}",
                                    context.settings.write_timeout
                                );
                                break Exit::Lost;
                            }
                        }
                    }
                    if closed {
                        break Exit::Closed;
                    }
                }
                result = async {
                    // Wait for the broker to take our earlier packets, then for any pause it
                    // asked for. The pause is kept in the outbox, not in this future, so that a
                    // write that wins the `select!` does not cancel it.
                    link.credit_available().await;
                    if let Some(throttle) = link.current_throttle() {
                        Box::pin(pause(throttle)).await;
                    }
                    // A client above the byte rate waits here, its bytes left in the socket
                    // (TCP then slows the sender); other connections are not affected. Worked
                    // out here, not kept beside the `select!`: every byte of this future is
                    // paid by every idle connection.
                    if let Some(at) = carried.inbound_rate.as_deref().and_then(InboundRate::resume_at) {
                        Box::pin(tokio::time::sleep_until(at)).await;
                    }
                    transport.read(&mut read_buf).await
                }, if reading => {
                    link.clear_throttle();
                    let end = match result {
                        Ok(0) => {
                            warn_if_inside_packet(&read_buf, link.connection(), link.info(), &"the peer closed it");
                            Some(ReadEnd::Lost)
                        }
                        Ok(count) => {
                            context.counters.bytes_received.fetch_add(count as u64, Ordering::Relaxed);
                            if let Some(rate) = carried.inbound_rate.as_deref_mut() {
                                rate.consume(count, Instant::now());
                            }
                            let decoded = decode_packets(&mut read_buf, &mut carried.version, link.connection(), link.info(), &context.settings);
                            active |= !decoded.is_only_pings();
                            let certificate_name = decoded
                                .connect
                                .is_some()
                                .then(|| transport.certificate_name())
                                .flatten();
                            // Boxed, as the broker's queue may be full and credentials take
                            // time to check: a wait here would otherwise be part of every
                            // connection's future.
                            Box::pin(forward(decoded, link.connection(), link.info(), certificate_name, &context, &link)).await
                        }
                        Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                            // The transport's framing was broken (a WebSocket protocol error or
                            // text message, a corrupt TLS record): bad input like any other.
                            warn!(connection = %link.connection(), peer = %link.info().remote_address, "closing connection: {error}");
                            Some(ReadEnd::Lost)
                        }
                        Err(error) => {
                            debug!(connection = %link.connection(), "read failed: {error}");
                            warn_if_inside_packet(&read_buf, link.connection(), link.info(), &error);
                            Some(ReadEnd::Lost)
                        }
                    };
                    match end {
                        None => {}
                        Some(ReadEnd::Lost) => break Exit::Lost,
                        Some(ReadEnd::AwaitingClose) => reading = false,
                    }
                    // Free the read buffer between bursts so an idle connection holds no buffer.
                    if read_buf.is_empty() && read_buf.capacity() > 0 {
                        read_buf = BytesMut::new();
                    }
                }
                () = std::future::poll_fn(|cx| match &mut timer {
                    Some(timer) => timer.as_mut().poll(cx),
                    None => Poll::Pending,
                }), if reading => {
                    if handshake_done {
                        let quiet = !active
                            && read_buf.is_empty()
                            && carried.inbound_rate.as_deref().and_then(InboundRate::resume_at).is_none()
                            && link.is_quiet(COMMAND_CREDITS);
                        if quiet {
                            break Exit::Park;
                        }
                        active = false;
                        if let Some(timer) = &mut timer {
                            timer.as_mut().reset(Instant::now() + QUIET);
                        }
                        continue;
                    }
                    // A warning like every other connection closed for the peer's misbehaviour
                    // (garbage, protocol errors): one line per bad connection, at one level.
                    let missing = if carried.version.is_some() {
                        "CONNACK (the client did not finish its authentication exchange)"
                    } else {
                        "CONNECT"
                    };
                    warn!(
                        connection = %link.connection(),
                        peer = %link.info().remote_address,
                        "closing connection: no {missing} within {:?}",
                        context.settings.connect_timeout
                    );
                    break Exit::Lost;
                }
            }
        };

        match exit {
            Exit::Park => {
                let parking = context
                    .parking
                    .clone()
                    .expect("only a connection that can park has a quiet timer");
                match transport.into_std() {
                    Ok(stream) => {
                        open.park();
                        park(&parking, stream, link, context, carried);
                        return;
                    }
                    Err(error) => {
                        warn!(
                            connection = %link.connection(),
                            peer = %link.info().remote_address,
                            "closing connection: its socket cannot be parked: {error}"
                        );
                        Box::pin(lost(&link, &context)).await;
                        return;
                    }
                }
            }
            Exit::Lost => Box::pin(lost(&link, &context)).await,
            Exit::Closed => {
                // Whatever the broker queued before closing (a DISCONNECT, a CONNACK) goes out
                // first.
                let (frames, _) = link.take();
                if !frames.is_empty() {
                    let flush = tokio::time::timeout(
                        context.settings.close_timeout,
                        transport.write(frames),
                    );
                    if let Ok(Ok(written)) = Box::pin(flush).await {
                        context
                            .counters
                            .bytes_sent
                            .fetch_add(written as u64, Ordering::Relaxed);
                    }
                }
            }
        }
        let close = tokio::time::timeout(context.settings.close_timeout, transport.close());
        let _ = Box::pin(close).await;
        drop(open);
    }
}

/// Parks a quiet connection's socket in the lot, the rest of it beside; if the lot takes
/// nothing (it is closing), the connection goes on in a new task at once.
fn park(
    parking: &IdleParking,
    stream: std::net::TcpStream,
    link: Arc<ConnectionLink>,
    context: Arc<ConnectionContext>,
    carried: Carried,
) {
    let watched = link.clone();
    let parked = Parked {
        link,
        context,
        carried,
        tracked: parking.tracker.token(),
    };
    let resume: Resume = Box::new(move |stream| resume(stream, parked));
    if let Err((stream, resume)) = parking
        .lot
        .park(stream, resume, |waker| watched.park(waker))
    {
        resume(stream);
    }
}

/// A token bucket bounding the bytes read from one connection per second (`--max-inbound-rate`).
///
/// It fills at `rate` bytes per second up to one second's worth (the burst a quiet client may
/// send at once). Each read takes what it read, possibly more than is there: the debt is then
/// waited out before the next read, so over any stretch longer than a second the connection
/// is read at `rate` (plus at most a read's worth at either end). The client is slowed, never disconnected:
/// its bytes wait in the socket, and TCP's flow control slows its writes.
#[derive(Debug)]
pub(crate) struct InboundRate {
    /// Bytes per second.
    rate: f64,
    /// Tokens at `updated`; negative while the last reads are not paid for.
    tokens: f64,
    updated: Instant,
}

impl InboundRate {
    /// A full bucket for `rate` bytes per second (at least 1).
    pub(crate) fn new(rate: u64, now: Instant) -> InboundRate {
        let rate = rate.max(1) as f64;
        InboundRate {
            rate,
            tokens: rate,
            updated: now,
        }
    }

    /// Counts `bytes` read at `now`.
    pub(crate) fn consume(&mut self, bytes: usize, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate) - bytes as f64;
        self.updated = now;
    }

    /// When the next read may start, if not at once: when the debt is paid.
    pub(crate) fn resume_at(&self) -> Option<Instant> {
        (self.tokens < 0.0)
            .then(|| self.updated + Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// Logs a connection that ended (`cause`) with part of a packet unread: its peer stopped in the
/// middle of sending it, a truncated packet, which is bad input and gets its one warning. A
/// connection that ends between packets has only gone away (the network can do that to anyone)
/// and is not logged. Not `async`, so that nothing of it is kept in the connection's future.
#[cold]
fn warn_if_inside_packet(
    read_buf: &BytesMut,
    connection: ConnectionId,
    info: &ConnectionInfo,
    cause: &dyn std::fmt::Display,
) {
    if !read_buf.is_empty() {
        warn!(
            connection = %connection,
            peer = %info.remote_address,
            "closing connection: it ended inside a packet ({} bytes of it received): {cause}",
            read_buf.len()
        );
    }
}

/// Completes a write. A peer that does not read holds it for at most the write timeout; once
/// the broker closes the connection (shutdown, takeover) it gets only the close grace period.
async fn write_with_timeouts<F: Future<Output = io::Result<usize>>>(
    write: F,
    link: &ConnectionLink,
    settings: &ConnectionSettings,
) -> Result<usize, WriteFailure> {
    let mut write = pin!(write);
    // Biased, the write first: it nearly always completes at once, and then the close watch
    // is never polled (polling it first would register with the link's `Notify` and take its
    // lock twice on every write, for nothing).
    let written = tokio::select! {
        biased;
        result = tokio::time::timeout(settings.write_timeout, &mut write) => result,
        () = link.wait_closed() => {
            tokio::time::timeout(settings.close_timeout, &mut write).await
        }
    };
    match written {
        Ok(result) => result.map_err(WriteFailure::Io),
        Err(_) => Err(WriteFailure::TimedOut),
    }
}

/// Waits out a pause the broker asked for.
async fn pause((throttle, until): (Throttle, Instant)) {
    match throttle {
        Throttle::Outbox(congested) => {
            let _ = tokio::time::timeout_at(until, congested.wait_uncongested()).await;
        }
        Throttle::Queue | Throttle::Store => tokio::time::sleep_until(until).await,
    }
}

/// Whether an outgoing frame is a PINGRESP: keep-alive traffic, which does not keep a
/// connection from parking.
fn is_pingresp(frame: &[u8]) -> bool {
    frame.first() == Some(&0xD0)
}

/// Whether an outgoing frame is a CONNACK (packet type 2, the high nibble of its first byte):
/// the end of the connection's handshake, whether it accepts or refuses.
fn is_connack(frame: &[u8]) -> bool {
    frame.first().is_some_and(|byte| byte >> 4 == 2)
}

/// What one read decoded, to be handed to the broker task in this order.
struct Decoded {
    /// The connection's first packet.
    connect: Option<Box<ConnectPacket>>,
    /// The packets after CONNECT.
    packets: Vec<Packet>,
    /// Why decoding stopped before the end of the buffer, if it did.
    end: Option<DecodeEnd>,
}

impl Decoded {
    /// Whether the read brought keep-alive pings and nothing else (not even part of a packet:
    /// then the buffer is not empty, and the connection does not park anyway).
    fn is_only_pings(&self) -> bool {
        self.connect.is_none()
            && self.end.is_none()
            && !self.packets.is_empty()
            && self
                .packets
                .iter()
                .all(|packet| matches!(packet, Packet::PingReq))
    }
}

enum DecodeEnd {
    /// The first packet was not CONNECT (already logged): drop the connection.
    NotConnect,
    /// Bytes that are not a valid packet, for the broker to answer.
    Invalid(DecodeError),
}

/// The most packets [`decode_packets`] makes room for at once: a packet is about a kilobyte
/// in memory, so a guess from a buffer of tiny packets must not reserve megabytes.
const MAX_BATCH_RESERVE: usize = 256;

/// Decodes every complete packet in `buf`. Synchronous, so that no packet is kept in the
/// connection's future.
fn decode_packets(
    buf: &mut BytesMut,
    connected: &mut Option<ProtocolVersion>,
    connection: ConnectionId,
    info: &ConnectionInfo,
    settings: &ConnectionSettings,
) -> Decoded {
    let mut decoded = Decoded {
        connect: None,
        packets: Vec::new(),
        end: None,
    };
    loop {
        // Before CONNECT the version is unknown; CONNECT is decoded by its own protocol level.
        let version = connected.unwrap_or(ProtocolVersion::V5);
        let before = buf.len();
        match decode(buf, version, settings.max_packet_size) {
            Ok(None) => break,
            Ok(Some(Packet::Connect(connect))) if connected.is_none() => {
                *connected = Some(connect.protocol);
                decoded.connect = Some(Box::new(connect));
            }
            Ok(Some(packet)) if connected.is_none() => {
                // A warning, as for garbage bytes before CONNECT (which the broker logs).
                warn!(
                    connection = %connection,
                    peer = %info.remote_address,
                    "closing connection: first packet was {} instead of CONNECT [MQTT-3.1.0-1]",
                    packet.name()
                );
                decoded.end = Some(DecodeEnd::NotConnect);
                break;
            }
            Ok(Some(packet)) => {
                if decoded.packets.is_empty() {
                    // Room for as many more of this size as the buffer holds, so that a read
                    // of many small packets does not grow (and copy) the vector step by step.
                    let size = before - buf.len();
                    decoded
                        .packets
                        .reserve((buf.len() / size + 1).min(MAX_BATCH_RESERVE));
                }
                decoded.packets.push(packet);
            }
            Err(error) => {
                decoded.end = Some(DecodeEnd::Invalid(error));
                break;
            }
        }
    }
    decoded
}

/// In a cluster, takes the client's session from whichever node holds it, before the broker
/// handles the CONNECT: the session to adopt, if there is one. Clients refused already, and
/// those without a client id (the broker assigns one), claim nothing. While the cluster is
/// unreachable the client is served from this node alone; a node that does not let go of the
/// session in time gets the client refused (0x88 Server unavailable), rather than two nodes
/// serving one session.
async fn claim(
    claims: &Claims,
    connect: &ConnectPacket,
    authentication: &mut Authentication,
) -> Option<Box<StoredSession>> {
    if connect.client_id.is_empty() || matches!(authentication, Authentication::Refused(_)) {
        return None;
    }
    match claims.claim(&connect.client_id, connect.clean_start).await {
        Ok(session) => session.map(Box::new),
        Err(error @ ClaimError::Unreachable(_)) => {
            debug!(client_id = %connect.client_id, "serving the client from this node: {error}");
            None
        }
        Err(error @ ClaimError::Held(_)) => {
            warn!(client_id = %connect.client_id, "refusing CONNECT: {error}");
            *authentication = Authentication::Refused(ReasonCode::ServerUnavailable);
            None
        }
    }
}

/// Sends what one read decoded to the broker: CONNECT (with its credentials checked, when
/// security is configured), then the packets as one batch (the valid packets before a bad one
/// go first, in order), then the decode error.
async fn forward(
    decoded: Decoded,
    connection: ConnectionId,
    info: &ConnectionInfo,
    certificate_name: Option<String>,
    context: &ConnectionContext,
    link: &Arc<ConnectionLink>,
) -> Option<ReadEnd> {
    let broker = &context.broker;
    if let Some(packet) = decoded.connect {
        let authentication = match &context.security {
            None => Authentication::Unchecked,
            Some(security) => {
                let presented = Presented {
                    connect: &packet,
                    address: info
                        .remote_address
                        .parse::<std::net::SocketAddr>()
                        .ok()
                        .map(|address| address.ip()),
                    certificate_name: certificate_name.as_deref(),
                };
                let decision = security.authenticate(presented).await;
                context.counters.record_authentication(decision.outcome);
                decision.authentication
            }
        };
        let mut authentication = authentication;
        let adopt = match &context.claims {
            Some(claims) => claim(claims, &packet, &mut authentication).await,
            None => None,
        };
        let command = Command::Connect {
            connection,
            packet,
            info: info.clone(),
            authentication,
            adopt,
        };
        if broker.send(command).await.is_err() {
            return Some(ReadEnd::Lost);
        }
    }
    if !decoded.packets.is_empty() {
        // One of the connection's credits goes with the batch; the broker task returns it
        // by dropping the command once it has handled it.
        let credit = loop {
            if let Some(credit) = link.try_take_credit() {
                break credit;
            }
            link.credit_available().await;
        };
        let command = Command::Packets {
            connection,
            packets: decoded.packets,
            credit,
        };
        if broker.send(command).await.is_err() {
            return Some(ReadEnd::Lost);
        }
    }
    match decoded.end? {
        DecodeEnd::NotConnect => Some(ReadEnd::Lost),
        DecodeEnd::Invalid(error) => {
            let command = Command::DecodeError {
                connection,
                error,
                info: info.clone(),
            };
            if broker.send(command).await.is_err() {
                return Some(ReadEnd::Lost);
            }
            Some(ReadEnd::AwaitingClose)
        }
    }
}

/// Sends `command` to the broker task. The queue nearly always has room, and then nothing
/// waits; a wait for room is boxed, so that it does not enlarge every connection's future.
fn send_command(
    broker: &BrokerHandle,
    command: Command,
) -> impl Future<Output = Result<(), ()>> + Send + '_ {
    let queued = match broker.try_send(command) {
        Ok(()) => Ok(None),
        Err(TrySendError::Full(command)) => Ok(Some(Box::pin(broker.send(command)))),
        Err(TrySendError::Closed(_)) => Err(()),
    };
    async move {
        match queued {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => wait.await.map_err(drop),
            Err(()) => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::OutboxLimits;

    /// What every connection pays for its task until it parks (and over TLS or WebSocket,
    /// which do not park, for its whole life): tokio puts the future in a cell aligned to 128
    /// bytes with 96 bytes of its own, so a future of up to 288 bytes takes 384, one a byte
    /// larger 512. The future measured is the one the TCP listener spawns (tracked, and holding
    /// the connection's permit), unoptimized, which is no smaller than the release build's.
    #[tokio::test]
    async fn the_connection_future_fits_a_384_byte_task() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_client, (stream, _)) = (client.unwrap(), accepted.unwrap());
        let context = ConnectionContext {
            broker: BrokerHandle::new(tokio::sync::mpsc::channel(1).0),
            counters: Arc::default(),
            settings: ConnectionSettings {
                connect_timeout: Duration::from_secs(1),
                max_packet_size: 1024,
                outbox_limits: Arc::new(OutboxLimits {
                    hard_bytes: 1024,
                    soft_bytes: 512,
                }),
                close_timeout: Duration::from_secs(1),
                write_timeout: Duration::from_secs(1),
                max_inbound_rate: None,
            },
            security: None,
            claims: None,
            parking: Some(IdleParking {
                lot: Parking::start(Arc::default()).unwrap(),
                tracker: TaskTracker::new(),
            }),
        };
        let info = ConnectionInfo {
            transport: broker_core::Transport::Tcp,
            remote_address: "127.0.0.1:1".into(),
        };
        let counters: Arc<TransportCounters> = Arc::default();
        let limiter = crate::listeners::ConnectionLimiter::new(10, 10, counters);
        let permit = limiter
            .try_acquire("127.0.0.1:1".parse().unwrap())
            .expect("a permit");
        let serve = run(
            TcpTransport::new(stream),
            ConnectionId(1),
            info,
            context,
            permit,
        );
        let future = TaskTracker::new().track_future(serve);
        let size = std::mem::size_of_val(&future);
        eprintln!("connection future: {size} bytes");
        assert!(size <= 288, "the connection future is {size} bytes");
    }

    #[test]
    fn a_quiet_connection_reads_a_second_worth_at_once() {
        let start = Instant::now();
        let mut rate = InboundRate::new(1000, start);
        assert_eq!(rate.resume_at(), None);
        rate.consume(600, start);
        rate.consume(400, start);
        assert_eq!(rate.resume_at(), None, "exactly the burst");
        rate.consume(1, start);
        assert!(rate.resume_at().is_some());
    }

    #[test]
    fn a_debt_is_waited_out_at_the_rate() {
        let start = Instant::now();
        let mut rate = InboundRate::new(1000, start);
        // One second's burst, then 500 bytes beyond: half a second to wait.
        rate.consume(1500, start);
        assert_eq!(rate.resume_at(), Some(start + Duration::from_millis(500)));
        // Reading at the resume time repays nothing more than elapsed.
        let later = start + Duration::from_millis(500);
        rate.consume(250, later);
        assert_eq!(rate.resume_at(), Some(later + Duration::from_millis(250)));
    }

    #[test]
    fn a_long_quiet_spell_refills_only_one_second() {
        let start = Instant::now();
        let mut rate = InboundRate::new(1000, start);
        rate.consume(1000, start);
        let later = start + Duration::from_secs(60);
        rate.consume(1000, later);
        assert_eq!(rate.resume_at(), None);
        rate.consume(100, later);
        assert_eq!(rate.resume_at(), Some(later + Duration::from_millis(100)));
    }

    #[test]
    fn a_flood_reads_at_the_rate_over_time() {
        // A client that always has bytes waiting, read in 8 KiB chunks whenever allowed.
        let start = Instant::now();
        let mut rate = InboundRate::new(100_000, start);
        let mut now = start;
        let mut read = 0;
        while now < start + Duration::from_secs(10) {
            if let Some(at) = rate.resume_at() {
                now = at;
            }
            rate.consume(8192, now);
            read += 8192;
        }
        // The burst (one second) plus ten at the rate, within a read at either end.
        let expected = 100_000 * 11;
        assert!(
            (read as i64 - expected).abs() <= 2 * 8192,
            "{read} bytes in 10 s"
        );
    }
}
