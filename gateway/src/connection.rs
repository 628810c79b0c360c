//! The per-connection task, shared by every transport: it reads bytes, decodes packets, hands
//! them to the broker task, and writes what the broker queues in the connection's outbox.
//!
//! Transports are thin adapters implementing [`Transport`]; this module holds all the MQTT
//! connection rules that do not need the broker's state: CONNECT must come first and within the
//! connect timeout [MQTT-3.1.0-1], a decode error stops reading and lets the broker answer, and
//! the connection ends when the broker closes the outbox or the peer goes away.

use crate::broker_task::{Command, TransportCounters};
use crate::outbox::{Outbox, Throttle};
use broker_core::{ConnectionId, ConnectionInfo};
use bytes::{Bytes, BytesMut};
use mqtt_codec::{DecodeError, Packet, ProtocolVersion, decode};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tracing::{debug, warn};

/// Commands a connection may have waiting in the broker task. Reading waits for a free credit,
/// so a fast publisher's backlog is a couple of reads, and a pause the broker asks for (see
/// `Outbox::throttle`) takes effect at once rather than after a queue of earlier reads.
const COMMAND_CREDITS: usize = 2;

/// A byte stream carrying MQTT packets (TCP, TLS, WebSocket...).
pub trait Transport: Send {
    /// Waits until bytes arrive and appends them to `buf`, returning how many; `Ok(0)` at the
    /// end of the stream. Must be cancel safe: dropping the future loses no data.
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;

    /// Writes every frame, in order, as one batch (one WebSocket message, one TCP write where
    /// possible), returning the number of bytes written.
    fn write(&mut self, frames: VecDeque<Bytes>) -> impl Future<Output = io::Result<usize>> + Send;

    /// Flushes and closes the stream.
    fn close(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Settings of the connection task.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionSettings {
    /// Time allowed between accepting the connection and receiving CONNECT.
    pub connect_timeout: Duration,
    /// Largest packet accepted, as announced in CONNACK.
    pub max_packet_size: usize,
    /// Hard limit of an outbox, in bytes.
    pub outbox_limit: usize,
    /// Time allowed for flushing after the broker closed the connection.
    pub close_timeout: Duration,
    /// Time a write may wait for a peer that does not read before the connection is dropped.
    pub write_timeout: Duration,
    /// Outbox bytes above which a connection counts as congested.
    pub outbox_soft_limit: usize,
}

/// Everything a connection task needs from the gateway.
#[derive(Clone, Debug)]
pub struct ConnectionContext {
    /// Commands to the broker task.
    pub commands: mpsc::Sender<Command>,
    /// Byte counters.
    pub counters: Arc<TransportCounters>,
    /// Settings.
    pub settings: ConnectionSettings,
}

/// Why the read side stopped.
enum ReadEnd {
    /// The peer closed or the socket failed: tell the broker the connection is lost.
    Lost,
    /// The broker has been told about a protocol error and will close the connection.
    AwaitingClose,
}

/// Serves one connection until it ends.
pub async fn run<T: Transport>(
    mut transport: T,
    connection: ConnectionId,
    info: ConnectionInfo,
    context: ConnectionContext,
) {
    let _open = context.counters.open_connections.open(info.transport);
    let outbox = Arc::new(Outbox::new(context.settings.outbox_limit));
    let announce = Command::Open {
        connection,
        outbox: outbox.clone(),
    };
    if context.commands.send(announce).await.is_err() {
        return;
    }
    let connect_deadline = Instant::now() + context.settings.connect_timeout;
    let mut connected: Option<ProtocolVersion> = None;
    let mut read_buf = BytesMut::new();
    let mut reading = true;
    let mut tell_lost = true;
    // When the broker asks for backpressure, reading resumes at this time. Kept outside the
    // read future so that a write that wins the `select!` does not cancel the pause.
    let credits = Arc::new(Semaphore::new(COMMAND_CREDITS));

    loop {
        let soft_limit = context.settings.outbox_soft_limit;
        let read = async {
            if !reading {
                return std::future::pending().await;
            }
            // Wait for the broker to take our earlier packets, then for any pause it asked for.
            drop(credits.acquire().await);
            match outbox.current_throttle() {
                Some((Throttle::Outbox(congested), until)) => {
                    let _ = tokio::time::timeout_at(until, congested.wait_below(soft_limit)).await;
                }
                Some((Throttle::Queue, until)) => tokio::time::sleep_until(until).await,
                None => {}
            }
            transport.read(&mut read_buf).await
        };
        tokio::select! {
            biased;
            () = outbox.ready() => {
                let (frames, closed) = outbox.take();
                if !frames.is_empty() {
                    let write = transport.write(frames);
                    let mut write = std::pin::pin!(write);
                    let settings = &context.settings;
                    // A peer that does not read holds the write; once the broker closes the
                    // connection (shutdown, takeover) it gets only the close grace period.
                    let written = tokio::select! {
                        result = tokio::time::timeout(settings.write_timeout, &mut write) => result,
                        () = outbox.wait_closed() => {
                            tokio::time::timeout(settings.close_timeout, &mut write).await
                        }
                    };
                    match written {
                        Ok(Ok(written)) => {
                            context.counters.bytes_sent.fetch_add(written as u64, Ordering::Relaxed);
                        }
                        Ok(Err(error)) => {
                            debug!(connection = %connection, "write failed: {error}");
                            break;
                        }
                        Err(_) => {
                            warn!(
                                connection = %connection,
                                peer = %info.remote_address,
                                "closing connection: the peer has not read anything for {:?}",
                                context.settings.write_timeout
                            );
                            break;
                        }
                    }
                }
                if closed {
                    tell_lost = false;
                    break;
                }
            }
            result = read => {
                outbox.clear_throttle();
                let end = match result {
                    Ok(0) => Some(ReadEnd::Lost),
                    Ok(count) => {
                        context.counters.bytes_received.fetch_add(count as u64, Ordering::Relaxed);
                        decode_and_forward(&mut read_buf, &mut connected, connection, &info, &context, &credits).await
                    }
                    Err(error) => {
                        debug!(connection = %connection, "read failed: {error}");
                        Some(ReadEnd::Lost)
                    }
                };
                match end {
                    None => {}
                    Some(ReadEnd::Lost) => break,
                    Some(ReadEnd::AwaitingClose) => reading = false,
                }
                // Free the read buffer between bursts so an idle connection holds no buffer.
                if read_buf.is_empty() && read_buf.capacity() > 0 {
                    read_buf = BytesMut::new();
                }
            }
            () = tokio::time::sleep_until(connect_deadline), if connected.is_none() && reading => {
                // A warning like every other connection closed for the peer's misbehaviour
                // (garbage, protocol errors): one line per bad connection, at one level.
                warn!(
                    connection = %connection,
                    peer = %info.remote_address,
                    "closing connection: no CONNECT within {:?}",
                    context.settings.connect_timeout
                );
                break;
            }
        }
    }

    if tell_lost {
        outbox.close();
        // The broker may be shutting down; then nobody needs to know.
        let _ = context.commands.send(Command::Lost { connection }).await;
    } else {
        // Whatever the broker queued before closing (a DISCONNECT, a CONNACK) goes out first.
        let (frames, _) = outbox.take();
        if !frames.is_empty() {
            let flush = transport.write(frames);
            if let Ok(Ok(written)) =
                tokio::time::timeout(context.settings.close_timeout, flush).await
            {
                context
                    .counters
                    .bytes_sent
                    .fetch_add(written as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = tokio::time::timeout(context.settings.close_timeout, transport.close()).await;
}

/// Decodes every complete packet in `buf` and sends them to the broker as one batch.
async fn decode_and_forward(
    buf: &mut BytesMut,
    connected: &mut Option<ProtocolVersion>,
    connection: ConnectionId,
    info: &ConnectionInfo,
    context: &ConnectionContext,
    credits: &Arc<Semaphore>,
) -> Option<ReadEnd> {
    let mut packets = Vec::new();
    let mut end = None;
    loop {
        // Before CONNECT the version is unknown; CONNECT is decoded by its own protocol level.
        let version = connected.unwrap_or(ProtocolVersion::V5);
        match decode(buf, version, context.settings.max_packet_size) {
            Ok(None) => break,
            Ok(Some(Packet::Connect(connect))) if connected.is_none() => {
                *connected = Some(connect.protocol);
                let command = Command::Connect {
                    connection,
                    packet: Box::new(connect),
                    info: info.clone(),
                };
                if context.commands.send(command).await.is_err() {
                    return Some(ReadEnd::Lost);
                }
            }
            Ok(Some(packet)) if connected.is_none() => {
                // A warning, as for garbage bytes before CONNECT (which the broker logs).
                warn!(
                    connection = %connection,
                    peer = %info.remote_address,
                    "closing connection: first packet was {} instead of CONNECT [MQTT-3.1.0-1]",
                    packet.name()
                );
                end = Some(ReadEnd::Lost);
                break;
            }
            Ok(Some(packet)) => packets.push(packet),
            Err(error) => {
                let reported =
                    report_decode_error(error, connection, info, context, credits, &mut packets);
                end = Some(reported.await);
                break;
            }
        }
    }
    if !packets.is_empty()
        && send_packets(connection, packets, context, credits)
            .await
            .is_err()
    {
        return Some(ReadEnd::Lost);
    }
    end
}

/// Sends a batch of packets with one of the connection's credits; the broker task returns the
/// credit by dropping the command once it has handled it.
async fn send_packets(
    connection: ConnectionId,
    packets: Vec<Packet>,
    context: &ConnectionContext,
    credits: &Arc<Semaphore>,
) -> Result<(), ()> {
    let credit = credits.clone().acquire_owned().await.map_err(drop)?;
    let command = Command::Packets {
        connection,
        packets,
        credit,
    };
    context.commands.send(command).await.map_err(drop)
}

async fn report_decode_error(
    error: DecodeError,
    connection: ConnectionId,
    info: &ConnectionInfo,
    context: &ConnectionContext,
    credits: &Arc<Semaphore>,
    packets: &mut Vec<Packet>,
) -> ReadEnd {
    // The packets before the bad one are valid and go first, in order.
    if !packets.is_empty()
        && send_packets(connection, std::mem::take(packets), context, credits)
            .await
            .is_err()
    {
        return ReadEnd::Lost;
    }
    let command = Command::DecodeError {
        connection,
        error,
        info: info.clone(),
    };
    if context.commands.send(command).await.is_err() {
        return ReadEnd::Lost;
    }
    ReadEnd::AwaitingClose
}
