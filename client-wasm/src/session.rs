//! The client's protocol state machine: no sockets, no timers, no clock reads.
//!
//! Inputs are transport events ([`Session::handle_open`], [`Session::handle_data`],
//! [`Session::handle_transport_closed`]), what the application gives for an attempt or an
//! AUTH of the broker ([`Session::set_credentials`], [`Session::authenticate`],
//! [`Session::handle_credentials_failed`]), the clock ([`Session::handle_timeout`], with the
//! time passed in) and user operations ([`Session::publish`], [`Session::subscribe`],
//! [`Session::unsubscribe`], [`Session::reauthenticate`], [`Session::end`]). Outputs are
//! polled: bytes to write ([`Session::transmit`]), events ([`Session::poll_event`]) and the
//! next deadline ([`Session::poll_timeout`]). The browser layer is a thin driver around it;
//! the tests below drive it with a fake clock and a scripted broker.
//!
//! Invariants:
//! - Every operation the caller starts with a [`RequestId`] ends in exactly one
//!   [`Event::Completed`] for that id (or an immediate `Err` from the call that started it).
//! - Operations wait in one bounded FIFO queue while there is no connection or no room in the
//!   broker's Receive Maximum window, so they reach the broker in the order they were made.
//! - A QoS 1/2 PUBLISH keeps its packet identifier until acknowledged, across reconnects, and is
//!   sent again with DUP set on every new connection [MQTT-4.4.0-1].
//! - The filters the broker granted are remembered, and subscribed again when a new connection
//!   finds no session on the broker (Session Present 0).
//! - Enhanced authentication (5.0, with an Authentication Method in CONNECT): each AUTH
//!   (continue authentication) from the broker, while the CONNECT or a re-authentication
//!   waits for its outcome, becomes an [`Event::Auth`] that exactly one answer
//!   ([`Session::authenticate`]) or failure ([`Session::handle_credentials_failed`]) of the
//!   application follows; an answer that comes after its connection ended is dropped. Any
//!   other AUTH is a protocol error.

use crate::backoff::Random;
use crate::error::ClientError;
use crate::keepalive::{KeepAlive, KeepAliveAction};
use crate::options::{Credentials, Options};
use alloc::{boxed::Box, collections::VecDeque, string::String, vec, vec::Vec};
use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    AuthPacket, ByteStr, ConnectPacket, DecodeError, DisconnectPacket, MAX_REMAINING_LENGTH,
    Packet, Properties, ProtocolVersion, PubAckPacket, PublishPacket, QoS, ReasonCode,
    SubscribePacket, Subscription, SubscriptionOptions, UnsubscribePacket, Will,
    decode_from_server, encode_from_client, encoded_len_from_client, topic,
};

/// The caller's handle for one operation, echoed in its [`Event::Completed`].
pub type RequestId = u32;

/// The largest packet MQTT can express: a 4-byte remaining length plus its fixed header.
const MQTT_MAXIMUM_PACKET_SIZE: usize = MAX_REMAINING_LENGTH + 5;

/// The client's state as users see it. The JS API names them in `STATES` in support.js, in
/// this order (the web layer hands over the discriminant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The first connection is being made.
    Connecting,
    /// CONNACK accepted; operations flow.
    Connected,
    /// The connection was lost; a new one is scheduled or being made.
    Reconnecting,
    /// Ended by `end()` or for good after a failure.
    Closed,
}

/// An application message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// PUBLISH properties (5.0).
    pub properties: Properties,
}

/// What a finished operation reports.
// Not boxed: a completion travels in an `Event`, as large as `Event::Connected` anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// QoS 0: written; QoS 1: PUBACK; QoS 2: PUBCOMP.
    Published,
    /// SUBACK granted the subscription.
    Subscribed {
        /// The QoS the broker granted.
        qos: QoS,
        /// The SUBACK reason code (0x00-0x02).
        reason_code: ReasonCode,
    },
    /// UNSUBACK received.
    Unsubscribed {
        /// Success, or 0x11 No subscription existed (5.0).
        reason_code: ReasonCode,
    },
    /// The broker's AUTH (success) ended a re-authentication.
    Reauthenticated {
        /// Its properties (e.g. the final Authentication Data).
        properties: Properties,
    },
}

/// An output of the state machine, in the order things happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Open a transport (WebSocket) connection and call [`Session::handle_open`] when it is.
    OpenTransport,
    /// Close the current transport, after writing what [`Session::transmit`] still holds.
    /// No more events are expected from it.
    CloseTransport,
    /// The broker accepted the connection.
    Connected {
        /// Whether the broker resumed a stored session.
        session_present: bool,
        /// CONNACK properties (5.0).
        properties: Properties,
    },
    /// A connection (or an attempt) ended.
    ConnectionLost {
        /// Why.
        error: ClientError,
        /// Whether a reconnect follows ([`Event::Reconnecting`]); otherwise [`Event::Closed`].
        reconnect: bool,
    },
    /// A reconnect attempt is scheduled.
    Reconnecting {
        /// 1 for the first retry after a loss.
        attempt: u32,
        /// Delay before the attempt, in milliseconds.
        delay_ms: u32,
    },
    /// The client is closed for good; `error` is `None` after `end()`.
    Closed {
        /// The failure that closed it, if any.
        error: Option<ClientError>,
    },
    /// An application message arrived.
    Message(PublishPacket),
    /// An operation started with a [`RequestId`] finished.
    Completed {
        /// The operation.
        request: RequestId,
        /// Its outcome.
        result: Result<Completion, ClientError>,
    },
    /// A problem that closes nothing, e.g. a refused resubscription.
    Error(ClientError),
    /// The broker's AUTH (continue authentication) in the enhanced authentication of the
    /// CONNECT or of a re-authentication: answer with [`Session::authenticate`], or
    /// [`Session::handle_credentials_failed`] when the application has no answer.
    Auth {
        /// The AUTH's reason code (0x18).
        reason_code: ReasonCode,
        /// Its properties: the Authentication Data, and maybe a Reason String or User
        /// Properties.
        properties: Properties,
    },
}

/// Where the current connection stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// The transport is being opened; fail at `deadline`.
    Opening { deadline: f64 },
    /// CONNECT sent; fail at `deadline` without CONNACK.
    AwaitingConnAck { deadline: f64 },
    /// CONNACK accepted.
    Connected,
    /// No connection; try again at `until`.
    Waiting { until: f64 },
    /// For good.
    Closed,
}

/// An operation: its packet (PUBLISH, SUBSCRIBE or UNSUBSCRIBE), complete but for the packet
/// identifier it gets when sent, and what it waits for. Kept as the packet itself, so that
/// sizing, sending and sending again never rebuild or copy it.
#[derive(Debug)]
struct Operation {
    /// `None` for the client's own resubscriptions.
    request: Option<RequestId>,
    packet: Packet,
    /// In the queue: `Queued`; a QoS 1/2 PUBLISH in flight: the acknowledgement it waits for.
    stage: Stage,
}

impl Operation {
    /// What an entry of `in_flight` or `awaiting` that finished behind an older one becomes:
    /// no request to complete (again), no packet identifier to match or free, nothing to send
    /// again.
    const FINISHED: Operation = Operation {
        request: None,
        packet: Packet::PingReq,
        stage: Stage::Finished,
    };
}

/// Which acknowledgement an outgoing QoS 1/2 PUBLISH waits for, if it was sent.
// Named after the packets the specification names.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Queued,
    PubAck,
    PubRec,
    PubComp,
    /// Acknowledged in full, waiting for the entries before it to finish.
    Finished,
}

/// The packet identifier of an operation's packet, once it has one.
fn packet_id(packet: &Packet) -> Option<u16> {
    match packet {
        Packet::Publish(publish) => publish.packet_id,
        Packet::Subscribe(subscribe) => Some(subscribe.packet_id),
        Packet::Unsubscribe(unsubscribe) => Some(unsubscribe.packet_id),
        _ => None,
    }
}

/// The limits the broker announced in CONNACK (5.0), or MQTT's own.
#[derive(Clone, Copy, Debug)]
struct BrokerLimits {
    receive_maximum: usize,
    maximum_packet_size: usize,
    maximum_qos: QoS,
    retain_available: bool,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        BrokerLimits {
            receive_maximum: usize::from(u16::MAX),
            maximum_packet_size: MQTT_MAXIMUM_PACKET_SIZE,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
        }
    }
}

/// A set of packet identifiers, one bit each: small code and constant time, which matters more
/// in a wasm package than the 8 KiB it occupies.
struct PacketIdSet(Box<[u64; 1024]>);

impl PacketIdSet {
    fn new() -> Self {
        PacketIdSet(Box::new([0; 1024]))
    }

    fn contains(&self, id: u16) -> bool {
        self.0[usize::from(id / 64)] & (1 << (id % 64)) != 0
    }

    /// Adds `id`; false if it was already there.
    fn insert(&mut self, id: u16) -> bool {
        let fresh = !self.contains(id);
        self.0[usize::from(id / 64)] |= 1 << (id % 64);
        fresh
    }

    /// Removes `id`; false if it was not there.
    fn remove(&mut self, id: u16) -> bool {
        let present = self.contains(id);
        self.0[usize::from(id / 64)] &= !(1 << (id % 64));
        present
    }

    fn clear(&mut self) {
        self.0.fill(0);
    }
}

/// Packet identifiers in use (1..=65535).
struct PacketIds {
    used: PacketIdSet,
    next: u16,
}

impl PacketIds {
    fn new() -> Self {
        PacketIds {
            used: PacketIdSet::new(),
            next: 1,
        }
    }

    /// The next free identifier after the last one handed out, or `None` when all are in use.
    fn allocate(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let id = self.next;
            self.next = if id == u16::MAX { 1 } else { id + 1 };
            if self.used.insert(id) {
                return Some(id);
            }
        }
        None
    }

    fn free(&mut self, id: u16) {
        self.used.remove(id);
    }
}

/// The protocol state of one client, across all its connections.
pub struct Session {
    /// The options the session was made with, but for the CONNECT properties and the will's
    /// properties, which moved into `connect`.
    options: Options,
    /// The CONNECT of every attempt, always a `Packet::Connect`: made once, so that no attempt
    /// copies the properties, and kept as a `Packet`, ready to write (boxed: in the wasm
    /// package, moving the whole packet into the session costs more code than the box).
    connect: Box<Packet>,
    phase: Phase,
    ever_connected: bool,
    /// Reconnect attempts since the last successful CONNACK.
    attempt: u32,
    random: Random,
    read_buffer: BytesMut,
    transmit: BytesMut,
    keepalive: KeepAlive,
    limits: BrokerLimits,
    packet_ids: PacketIds,
    /// QoS 1/2 PUBLISHes between their first write and their last acknowledgement, in the
    /// order sent. An entry finished behind an older one becomes [`Operation::FINISHED`] (its
    /// packet dropped) and leaves when it reaches the front, so that finishing one is O(1) in
    /// the common case (the oldest finishes first) without `VecDeque::remove`, which shifts
    /// entries and, in the wasm package, costs over a kilobyte of code.
    in_flight: VecDeque<Operation>,
    /// The unfinished entries of `in_flight`: the PUBLISHes the broker's Receive Maximum
    /// counts, those without PUBACK, PUBCOMP or a failed PUBREC [MQTT-3.3.4-9]. The finished
    /// entries waiting to leave are not counted: they would only shrink the window.
    unacknowledged: usize,
    /// QoS 2 packet identifiers received, PUBREC sent, PUBREL not yet received.
    incoming_qos2: PacketIdSet,
    queue: VecDeque<Operation>,
    /// SUBSCRIBE and UNSUBSCRIBE written, in the order sent, waiting for SUBACK/UNSUBACK. Few
    /// at a time, so a list beats a map (in code size too). One answered behind an older one
    /// becomes [`Operation::FINISHED`] and leaves from the front, as in `in_flight`.
    awaiting: VecDeque<Operation>,
    /// The filters the broker granted, in the SUBSCRIBE packets that it granted them in (less
    /// the filters it refused, or that were unsubscribed or subscribed again since), to be sent
    /// again when a new connection finds no session on the broker. A resubscription takes its
    /// packets out of the list, and its SUBACK puts back what it granted: so their properties
    /// move and are never copied, and a filter is either here or in one resubscription waiting
    /// in `queue` or `awaiting` (which a connection loss does not drop).
    subscriptions: Vec<SubscribePacket>,
    /// Whether the broker's AUTH (continue authentication) waits for the application's answer.
    auth_waiting: bool,
    /// The request of the re-authentication under way, from the client's AUTH
    /// (re-authenticate) to the broker's AUTH (success) or the end of the connection.
    reauthentication: Option<RequestId>,
    /// Events not yet polled: `events[polled..]`. A plain list, emptied whenever all its
    /// events were polled (at least once per turn of the driver); in code size a ring buffer
    /// (`VecDeque`) costs more.
    events: Vec<Event>,
    polled: usize,
}

impl Session {
    /// A session that starts connecting at `now`: the first event is [`Event::OpenTransport`].
    /// `seed` feeds the reconnect jitter.
    pub fn new(mut options: Options, seed: u64, now: f64) -> Result<Session, ClientError> {
        options.validate()?;
        let connect = Box::new(Packet::Connect(connect_packet(&mut options)));
        let mut session = Session {
            connect,
            phase: Phase::Closed,
            ever_connected: false,
            attempt: 0,
            random: Random::new(seed),
            read_buffer: BytesMut::new(),
            transmit: BytesMut::new(),
            keepalive: KeepAlive::new(0, now),
            limits: BrokerLimits::default(),
            packet_ids: PacketIds::new(),
            in_flight: VecDeque::new(),
            unacknowledged: 0,
            incoming_qos2: PacketIdSet::new(),
            queue: VecDeque::new(),
            awaiting: VecDeque::new(),
            subscriptions: Vec::new(),
            auth_waiting: false,
            reauthentication: None,
            events: Vec::new(),
            polled: 0,
            options,
        };
        session.start_attempt(now);
        Ok(session)
    }

    /// The state as users see it.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Connected => State::Connected,
            Phase::Closed => State::Closed,
            Phase::Waiting { .. } => State::Reconnecting,
            Phase::Opening { .. } | Phase::AwaitingConnAck { .. } if self.ever_connected => {
                State::Reconnecting
            }
            Phase::Opening { .. } | Phase::AwaitingConnAck { .. } => State::Connecting,
        }
    }

    /// The protocol version in use.
    pub fn protocol(&self) -> ProtocolVersion {
        self.options.protocol
    }

    /// The client identifier sent in CONNECT.
    pub fn client_id(&self) -> &str {
        &self.options.client_id
    }

    /// Operations waiting for the connection or for room in the in-flight window.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Outgoing QoS 1/2 messages not yet fully acknowledged.
    pub fn in_flight(&self) -> usize {
        self.unacknowledged
    }

    /// Hands the bytes to write to `send`, as one transport message, if there are any; they
    /// are then gone from the session. Lent rather than returned: the driver copies them into
    /// JS anyway, and handing out an owned buffer costs code (and a copy or an allocation).
    pub fn transmit(&mut self, send: impl FnOnce(&[u8])) {
        if !self.transmit.is_empty() {
            send(&self.transmit);
            self.transmit.clear();
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.get_mut(self.polled)?;
        // A placeholder takes the polled event's place until the list is emptied.
        let event = core::mem::replace(event, Event::OpenTransport);
        self.polled += 1;
        if self.polled == self.events.len() {
            self.events.clear();
            self.polled = 0;
        }
        Some(event)
    }

    /// When [`Session::handle_timeout`] must be called next (same clock as `now`).
    pub fn poll_timeout(&self) -> Option<f64> {
        match self.phase {
            Phase::Opening { deadline } | Phase::AwaitingConnAck { deadline } => Some(deadline),
            Phase::Connected => self.keepalive.poll_timeout(),
            Phase::Waiting { until } => Some(until),
            Phase::Closed => None,
        }
    }

    /// The credentials of the attempt under way, from the application's credentials function:
    /// they replace the user name and password in its CONNECT (and in the attempts after it,
    /// unless they get their own). Given before [`Session::handle_open`].
    pub fn set_credentials(&mut self, credentials: Credentials) {
        if let Packet::Connect(connect) = &mut *self.connect {
            connect.username = credentials.username.map(ByteStr::from);
            connect.password = credentials.password;
            connect.properties.authentication_data = credentials.authentication_data;
        }
    }

    /// The application could not give the credentials of the attempt under way, or an answer
    /// to the broker's AUTH ([`Event::Auth`]): the attempt, or the connection whose
    /// re-authentication it was (after a DISCONNECT), fails with
    /// [`ClientError::CredentialsFailed`], and the client tries again as after any failure.
    /// Ignored once that attempt or exchange is over.
    pub fn handle_credentials_failed(&mut self, now: f64) {
        if let Phase::Opening { .. } = self.phase {
            self.lose_connection(ClientError::CredentialsFailed, true, true, now);
        } else if core::mem::take(&mut self.auth_waiting) {
            let error = ClientError::CredentialsFailed;
            self.fail(error, Some(ReasonCode::UnspecifiedError), now);
        }
    }

    /// The application's answer to the broker's AUTH of the last [`Event::Auth`], sent in an
    /// AUTH (continue authentication); empty `data` sends no Authentication Data. Ignored
    /// when no AUTH waits for one (its connection ended).
    pub fn authenticate(&mut self, data: Bytes, now: f64) {
        if core::mem::take(&mut self.auth_waiting) {
            self.send_auth(ReasonCode::ContinueAuthentication, data, now);
        }
    }

    /// Re-authenticates (5.0, with an authentication method): sends AUTH (re-authenticate)
    /// with `data` (none when empty); each AUTH (continue) of the broker becomes an
    /// [`Event::Auth`], and [`Event::Completed`] for `request` follows on the broker's AUTH
    /// (success), or with the error that ends the connection (a DISCONNECT of the broker, for
    /// one). One at a time.
    pub fn reauthenticate(
        &mut self,
        request: RequestId,
        data: Bytes,
        now: f64,
    ) -> Result<(), ClientError> {
        match self.phase {
            Phase::Connected => {}
            Phase::Closed => return Err(ClientError::Closed),
            _ => return Err(ClientError::ConnectionLost),
        }
        if self.authentication_method().is_none() || self.reauthentication.is_some() {
            return Err(ClientError::InvalidOptions(
                "reauthenticate() needs an authenticationMethod (MQTT 5.0), and no other re-authentication under way",
            ));
        }
        self.reauthentication = Some(request);
        self.send_auth(ReasonCode::ReAuthenticate, data, now);
        Ok(())
    }

    /// The Authentication Method of the CONNECT, if the client uses enhanced authentication.
    fn authentication_method(&self) -> Option<&ByteStr> {
        match &*self.connect {
            Packet::Connect(connect) => connect.properties.authentication_method.as_ref(),
            _ => None,
        }
    }

    /// Writes an AUTH with the client's Authentication Method and `data` (if not empty).
    fn send_auth(&mut self, reason_code: ReasonCode, data: Bytes, now: f64) {
        let properties = Properties {
            authentication_method: self.authentication_method().cloned(),
            authentication_data: (!data.is_empty()).then_some(data),
            ..Properties::default()
        };
        let auth = AuthPacket {
            reason_code,
            properties,
        };
        self.write(&Packet::Auth(auth), now);
    }

    /// The broker's AUTH: a step of the CONNECT's or of a re-authentication's exchange (see
    /// the module's invariants), or the success that ends a re-authentication.
    fn handle_auth(&mut self, auth: AuthPacket, now: f64) {
        let expected = match (auth.reason_code, self.phase) {
            (ReasonCode::ContinueAuthentication, Phase::AwaitingConnAck { .. }) => true,
            (ReasonCode::ContinueAuthentication | ReasonCode::Success, Phase::Connected) => {
                self.reauthentication.is_some()
            }
            _ => false,
        };
        let method = self.authentication_method();
        // Same method [MQTT-4.12.0-5]; leniently, an AUTH (success) abbreviated to its reason
        // code (section 3.15.2.1) may have none.
        let same_method = method.is_some()
            && auth
                .properties
                .authentication_method
                .as_ref()
                .is_none_or(|named| Some(named) == method);
        if !expected || !same_method || self.auth_waiting {
            return self.fail(
                ClientError::Protocol(
                    "an AUTH that no authentication exchange of the client expects",
                ),
                Some(ReasonCode::ProtocolError),
                now,
            );
        }
        let properties = auth.properties;
        if auth.reason_code == ReasonCode::Success {
            let request = self.reauthentication.take();
            self.complete(request, Ok(Completion::Reauthenticated { properties }));
        } else {
            self.auth_waiting = true;
            self.events.push(Event::Auth {
                reason_code: auth.reason_code,
                properties,
            });
        }
    }

    /// The transport asked for by [`Event::OpenTransport`] is open: send CONNECT.
    pub fn handle_open(&mut self, now: f64) {
        let Phase::Opening { deadline } = self.phase else {
            return;
        };
        self.phase = Phase::AwaitingConnAck { deadline };
        self.transmit.clear();
        self.read_buffer.clear();
        self.keepalive = KeepAlive::new(0, now);
        write(
            &mut self.transmit,
            &mut self.keepalive,
            self.options.protocol,
            &self.connect,
            now,
        );
    }

    /// Bytes arrived from the transport.
    pub fn handle_data(&mut self, data: &[u8], now: f64) {
        self.receive_buffer(data.len()).copy_from_slice(data);
        self.handle_received(now);
    }

    /// Space for `len` more received bytes, to be filled by the caller before
    /// [`Session::handle_received`]; saves a copy when the bytes come from JS.
    pub fn receive_buffer(&mut self, len: usize) -> &mut [u8] {
        let start = self.read_buffer.len();
        self.read_buffer.resize(start + len, 0);
        // `get_mut` rather than indexing: no panic path (the range is always in bounds).
        self.read_buffer.get_mut(start..).unwrap_or_default()
    }

    /// Decodes and handles every complete packet in the receive buffer.
    pub fn handle_received(&mut self, now: f64) {
        if !matches!(self.phase, Phase::AwaitingConnAck { .. } | Phase::Connected) {
            self.read_buffer.clear();
            return;
        }
        self.keepalive.handle_received(now);
        let maximum = self
            .options
            .maximum_packet_size
            .map_or(MQTT_MAXIMUM_PACKET_SIZE, |size| size as usize);
        while matches!(self.phase, Phase::AwaitingConnAck { .. } | Phase::Connected) {
            match decode_from_server(&mut self.read_buffer, self.options.protocol, maximum) {
                Ok(Some(packet)) => self.handle_packet(packet, now),
                Ok(None) => break,
                Err(DecodeError::UnexpectedPacket { .. }) => self.fail(
                    ClientError::Protocol("the broker sent a packet that only clients send"),
                    Some(ReasonCode::ProtocolError),
                    now,
                ),
                Err(error) => {
                    let reason = error.reason_code();
                    self.fail(ClientError::Malformed(reason), Some(reason), now);
                }
            }
        }
    }

    /// The transport closed (or failed to open) without being asked to.
    pub fn handle_transport_closed(&mut self, now: f64) {
        match self.phase {
            Phase::Opening { .. } | Phase::AwaitingConnAck { .. } => {
                self.lose_connection(ClientError::ConnectFailed, true, false, now);
            }
            Phase::Connected => self.lose_connection(ClientError::ConnectionLost, true, false, now),
            Phase::Waiting { .. } | Phase::Closed => {}
        }
    }

    /// The deadline from [`Session::poll_timeout`] may have passed; `now` is the clock now.
    pub fn handle_timeout(&mut self, now: f64) {
        match self.phase {
            Phase::Opening { deadline } | Phase::AwaitingConnAck { deadline }
                if now >= deadline =>
            {
                self.lose_connection(ClientError::ConnectTimeout, true, true, now);
            }
            Phase::Connected => match self.keepalive.handle_timeout(now) {
                KeepAliveAction::Idle => {}
                KeepAliveAction::SendPing => self.write(&Packet::PingReq, now),
                KeepAliveAction::Dead => self.fail(
                    ClientError::KeepAliveTimeout,
                    Some(ReasonCode::KeepAliveTimeout),
                    now,
                ),
            },
            Phase::Waiting { until } if now >= until => self.start_attempt(now),
            _ => {}
        }
    }

    /// Publishes `message`; [`Event::Completed`] for `request` follows on PUBACK (QoS 1),
    /// PUBCOMP (QoS 2) or once written (QoS 0). Errors that are known at once are returned.
    pub fn publish(
        &mut self,
        request: RequestId,
        message: OutgoingMessage,
        now: f64,
    ) -> Result<(), ClientError> {
        if let Phase::Closed = self.phase {
            return Err(ClientError::Closed);
        }
        topic::validate_topic_name(&message.topic).map_err(ClientError::InvalidTopic)?;
        let mut packet = Packet::Publish(PublishPacket {
            dup: false,
            qos: message.qos,
            retain: message.retain,
            topic: ByteStr::from(message.topic),
            // A placeholder identifier, so that the size check counts its two bytes.
            packet_id: (message.qos != QoS::AtMostOnce).then_some(1),
            properties: message.properties,
            payload: message.payload,
        });
        self.check_size(&packet)?;
        if let Packet::Publish(publish) = &mut packet {
            publish.packet_id = None;
        }
        self.enqueue(request, packet, now)
    }

    /// Subscribes to `filter`; [`Event::Completed`] for `request` follows on SUBACK.
    pub fn subscribe(
        &mut self,
        request: RequestId,
        filter: &str,
        options: SubscriptionOptions,
        properties: Properties,
        now: f64,
    ) -> Result<(), ClientError> {
        if let Phase::Closed = self.phase {
            return Err(ClientError::Closed);
        }
        topic::validate_topic_filter(filter).map_err(ClientError::InvalidTopic)?;
        let packet = Packet::Subscribe(SubscribePacket {
            // A placeholder until it is sent, of the same size as the real one.
            packet_id: 1,
            properties,
            subscriptions: vec![Subscription {
                filter: ByteStr::from(filter),
                options,
            }],
        });
        self.check_size(&packet)?;
        self.enqueue(request, packet, now)
    }

    /// Unsubscribes from `filter`; [`Event::Completed`] for `request` follows on UNSUBACK.
    pub fn unsubscribe(
        &mut self,
        request: RequestId,
        filter: &str,
        properties: Properties,
        now: f64,
    ) -> Result<(), ClientError> {
        if let Phase::Closed = self.phase {
            return Err(ClientError::Closed);
        }
        topic::validate_topic_filter(filter).map_err(ClientError::InvalidTopic)?;
        let packet = Packet::Unsubscribe(UnsubscribePacket {
            packet_id: 1,
            properties,
            filters: vec![ByteStr::from(filter)],
        });
        self.check_size(&packet)?;
        self.enqueue(request, packet, now)
    }

    /// Ends the client: DISCONNECT when connected (so the broker discards the will), close the
    /// transport, fail whatever is still pending with [`ClientError::Closed`].
    pub fn end(&mut self, now: f64) {
        match self.phase {
            Phase::Closed => return,
            Phase::Connected => {
                self.write(&Packet::Disconnect(DisconnectPacket::default()), now);
                self.events.push(Event::CloseTransport);
            }
            Phase::Opening { .. } | Phase::AwaitingConnAck { .. } => {
                self.events.push(Event::CloseTransport);
            }
            Phase::Waiting { .. } => {}
        }
        self.close_for_good(None);
    }

    fn start_attempt(&mut self, now: f64) {
        self.phase = Phase::Opening {
            deadline: now + f64::from(self.options.connect_timeout_ms),
        };
        self.events.push(Event::OpenTransport);
    }

    fn write(&mut self, packet: &Packet, now: f64) {
        write(
            &mut self.transmit,
            &mut self.keepalive,
            self.options.protocol,
            packet,
            now,
        );
    }

    /// Whether `packet` may be sent now: the broker's Maximum QoS and Retain Available for a
    /// PUBLISH, and the Maximum Packet Size for every packet.
    fn check_size(&self, packet: &Packet) -> Result<(), ClientError> {
        if let (Packet::Publish(publish), Phase::Connected) = (packet, self.phase) {
            if publish.qos > self.limits.maximum_qos {
                return Err(ClientError::QoSNotSupported {
                    requested: publish.qos as u8,
                    maximum: self.limits.maximum_qos as u8,
                });
            }
            if publish.retain && !self.limits.retain_available {
                return Err(ClientError::PublishRefused(ReasonCode::RetainNotSupported));
            }
        }
        let size =
            encoded_len_from_client(packet, self.options.protocol).map_err(
                |error| match error {
                    mqtt_codec::EncodeError::PacketTooLarge(size) => ClientError::PacketTooLarge {
                        size,
                        maximum: MQTT_MAXIMUM_PACKET_SIZE,
                    },
                    other => ClientError::InvalidArgument(other.into()),
                },
            )?;
        if size > self.limits.maximum_packet_size {
            return Err(ClientError::PacketTooLarge {
                size,
                maximum: self.limits.maximum_packet_size,
            });
        }
        Ok(())
    }

    /// Appends `operation` to the queue and sends what can be sent; refuses it when it would
    /// have to wait and the queue is full.
    fn enqueue(&mut self, request: RequestId, packet: Packet, now: f64) -> Result<(), ClientError> {
        self.queue.push_back(Operation {
            request: Some(request),
            packet,
            stage: Stage::Queued,
        });
        self.flush_queue(now);
        if self.queue.len() > self.options.offline_queue_limit {
            // Still queued, so it is the last one: everything before it was sent first.
            self.queue.pop_back();
            return Err(ClientError::QueueFull(self.options.offline_queue_limit));
        }
        Ok(())
    }

    /// Sends queued operations in order while connected and the window has room.
    fn flush_queue(&mut self, now: f64) {
        while let Phase::Connected = self.phase {
            let Some(front) = self.queue.front() else {
                break;
            };
            let qos = match &front.packet {
                Packet::Publish(publish) => Some(publish.qos),
                _ => None,
            };
            if qos > Some(QoS::AtMostOnce) && self.unacknowledged >= self.limits.receive_maximum {
                break;
            }
            let packet_id = if qos == Some(QoS::AtMostOnce) {
                None
            } else {
                match self.packet_ids.allocate() {
                    Some(id) => Some(id),
                    None => break,
                }
            };
            let Some(operation) = self.queue.pop_front() else {
                break;
            };
            self.send_operation(operation, packet_id, now);
        }
    }

    fn send_operation(&mut self, mut operation: Operation, packet_id: Option<u16>, now: f64) {
        let id = packet_id.unwrap_or(1);
        match &mut operation.packet {
            Packet::Publish(publish) => publish.packet_id = packet_id,
            Packet::Subscribe(subscribe) => subscribe.packet_id = id,
            Packet::Unsubscribe(unsubscribe) => unsubscribe.packet_id = id,
            _ => {}
        }
        // Limits may have changed since the operation was queued (a new CONNACK).
        if let Err(error) = self.check_size(&operation.packet) {
            if let Some(id) = packet_id {
                self.packet_ids.free(id);
            }
            self.complete(operation.request, Err(error));
            return;
        }
        self.write(&operation.packet, now);
        match &operation.packet {
            Packet::Publish(publish) => match publish.qos {
                QoS::AtMostOnce => self.complete(operation.request, Ok(Completion::Published)),
                qos => {
                    operation.stage = if qos == QoS::AtLeastOnce {
                        Stage::PubAck
                    } else {
                        Stage::PubRec
                    };
                    self.in_flight.push_back(operation);
                    self.unacknowledged += 1;
                }
            },
            _ => self.awaiting.push_back(operation),
        }
    }

    fn complete(&mut self, request: Option<RequestId>, result: Result<Completion, ClientError>) {
        match request {
            Some(request) => self.events.push(Event::Completed { request, result }),
            None => {
                if let Err(error) = result {
                    self.events.push(Event::Error(error));
                }
            }
        }
    }

    fn handle_packet(&mut self, packet: Packet, now: f64) {
        // CONNACK and PUBLISH move on (their properties become events); the other packets are
        // read in place, and dropped once at the end.
        let packet = match (packet, self.phase) {
            (Packet::ConnAck(connack), Phase::AwaitingConnAck { .. }) => {
                return self.handle_connack(connack, now);
            }
            (Packet::Publish(publish), Phase::Connected) => {
                return self.handle_publish(publish, now);
            }
            // Only these two phases read packets.
            (Packet::Auth(auth), _) => return self.handle_auth(auth, now),
            (packet, _) => packet,
        };
        if let Phase::AwaitingConnAck { .. } = self.phase {
            match &packet {
                Packet::Disconnect(disconnect) => self.handle_disconnect(disconnect, now),
                _ => self.fail(
                    ClientError::Protocol("the first packet from the broker must be CONNACK"),
                    Some(ReasonCode::ProtocolError),
                    now,
                ),
            }
            return;
        }
        match &packet {
            Packet::PubAck(ack) => self.handle_ack(ack, Stage::PubAck, now),
            Packet::PubRec(ack) => self.handle_ack(ack, Stage::PubRec, now),
            Packet::PubComp(ack) => self.handle_ack(ack, Stage::PubComp, now),
            Packet::PubRel(release) => {
                let known = self.incoming_qos2.remove(release.packet_id);
                let mut complete = PubAckPacket::new(release.packet_id);
                if !known {
                    complete.reason_code = ReasonCode::PacketIdentifierNotFound;
                }
                self.write(&Packet::PubComp(complete), now);
            }
            Packet::SubAck(suback) => {
                let Some(operation) = self.take_awaiting(suback.packet_id) else {
                    return self.unknown_packet_id(now);
                };
                if let Packet::Subscribe(subscribe) = operation.packet {
                    self.handle_suback(operation.request, subscribe, &suback.reason_codes);
                }
                self.flush_queue(now);
            }
            Packet::UnsubAck(unsuback) => {
                let Some(operation) = self.take_awaiting(unsuback.packet_id) else {
                    return self.unknown_packet_id(now);
                };
                if let Packet::Unsubscribe(unsubscribe) = operation.packet {
                    let reason_code = unsuback
                        .reason_codes
                        .first()
                        .copied()
                        .unwrap_or(ReasonCode::Success);
                    let result = if reason_code.is_error() {
                        Err(ClientError::UnsubscribeRefused(reason_code))
                    } else {
                        for filter in &unsubscribe.filters {
                            self.forget_subscription(filter);
                        }
                        Ok(Completion::Unsubscribed { reason_code })
                    };
                    self.complete(operation.request, result);
                }
                self.flush_queue(now);
            }
            // A PUBLISH and an AUTH went to their handlers above.
            Packet::Publish(_) | Packet::Auth(_) | Packet::PingResp => {}
            Packet::Disconnect(disconnect) => self.handle_disconnect(disconnect, now),
            Packet::ConnAck(_) => self.fail(
                ClientError::Protocol("a second CONNACK on one connection"),
                Some(ReasonCode::ProtocolError),
                now,
            ),
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq => self.fail(
                ClientError::Protocol("the broker sent a packet that only clients send"),
                Some(ReasonCode::ProtocolError),
                now,
            ),
        }
    }

    fn handle_connack(&mut self, connack: mqtt_codec::ConnAckPacket, now: f64) {
        if connack.reason_code.is_error() {
            let retry = is_transient(connack.reason_code);
            self.lose_connection(
                ClientError::refused(connack.reason_code, self.options.protocol),
                retry,
                true,
                now,
            );
            return;
        }
        let properties = connack.properties;
        self.phase = Phase::Connected;
        // An answer to an AUTH that the broker did not wait for must not follow the CONNACK.
        self.auth_waiting = false;
        self.ever_connected = true;
        // 5.0: a reconnect resumes whatever session the broker kept (its expiry decides);
        // 3.1.1 ties clean session to the session's lifetime, so it stays as configured.
        if let (true, Packet::Connect(connect)) =
            (self.options.protocol.is_v5(), &mut *self.connect)
        {
            connect.clean_start = false;
        }
        self.attempt = 0;
        self.limits = BrokerLimits {
            receive_maximum: properties
                .receive_maximum
                .map_or(usize::from(u16::MAX), usize::from),
            maximum_packet_size: properties
                .maximum_packet_size
                .map_or(MQTT_MAXIMUM_PACKET_SIZE, |size| size as usize),
            maximum_qos: properties
                .maximum_qos
                .and_then(QoS::from_bits)
                .unwrap_or(QoS::ExactlyOnce),
            retain_available: properties.retain_available != Some(0),
        };
        let keep_alive = properties
            .server_keep_alive
            .unwrap_or(self.options.keep_alive);
        let mut keepalive = KeepAlive::new(keep_alive, now);
        keepalive.handle_sent(now);
        self.keepalive = keepalive;
        if !connack.session_present {
            self.forget_broker_session();
        }
        self.events.push(Event::Connected {
            session_present: connack.session_present,
            properties,
        });
        // Redelivery first, in the original order, then whatever waited [MQTT-4.4.0-1].
        let version = self.options.protocol;
        for entry in &mut self.in_flight {
            let Packet::Publish(publish) = &mut entry.packet else {
                continue;
            };
            let release;
            let packet = if entry.stage == Stage::PubComp {
                release = Packet::PubRel(PubAckPacket::new(publish.packet_id.unwrap_or(1)));
                &release
            } else {
                publish.dup = true;
                &entry.packet
            };
            write(
                &mut self.transmit,
                &mut self.keepalive,
                version,
                packet,
                now,
            );
        }
        self.flush_queue(now);
    }

    /// The broker has no session for us: its half of the QoS 2 exchanges and the
    /// subscriptions are gone.
    fn forget_broker_session(&mut self) {
        self.incoming_qos2.clear();
        // A PUBREC already made the broker the owner of the message; there is nothing left to
        // resend, so those publishes are complete.
        let mut index = 0;
        while let Some(entry) = self.in_flight.get_mut(index) {
            index += 1;
            if entry.stage == Stage::PubComp {
                let entry = core::mem::replace(entry, Operation::FINISHED);
                self.finish_in_flight(entry, Ok(Completion::Published));
            }
        }
        drop_finished(&mut self.in_flight);
        // Resubscribe ahead of queued operations, in the order granted, grouping the filters
        // that share no properties into one SUBSCRIBE, which goes last.
        let mut plain = Vec::new();
        for subscribe in &mut self.subscriptions {
            if subscribe.properties.is_empty() {
                plain.append(&mut subscribe.subscriptions);
            }
        }
        if !plain.is_empty() {
            self.queue.push_front(resubscribe(SubscribePacket {
                packet_id: 1,
                properties: Properties::default(),
                subscriptions: plain,
            }));
        }
        // From the last, so that each goes in front of those after it.
        while let Some(subscribe) = self.subscriptions.pop() {
            if !subscribe.subscriptions.is_empty() {
                self.queue.push_front(resubscribe(subscribe));
            }
        }
    }

    fn handle_suback(
        &mut self,
        request: Option<RequestId>,
        mut subscribe: SubscribePacket,
        reason_codes: &[ReasonCode],
    ) {
        let mut reason_codes = reason_codes.iter().copied();
        let mut first = None;
        // One pass: each filter is reported, and kept only when granted.
        subscribe.subscriptions.retain(|subscription| {
            self.forget_subscription(&subscription.filter);
            let reason_code = reason_codes.next().unwrap_or(ReasonCode::UnspecifiedError);
            let result = match reason_code {
                ReasonCode::Success => Ok(QoS::AtMostOnce),
                ReasonCode::GrantedQoS1 => Ok(QoS::AtLeastOnce),
                ReasonCode::GrantedQoS2 => Ok(QoS::ExactlyOnce),
                refused => Err(ClientError::SubscribeRefused(refused)),
            };
            let granted = result.is_ok();
            let result = result.map(|qos| Completion::Subscribed { qos, reason_code });
            if request.is_some() {
                first.get_or_insert(result);
            } else {
                self.complete(None, result);
            }
            granted
        });
        if !subscribe.subscriptions.is_empty() {
            self.subscriptions.push(subscribe);
        }
        if let Some(result) = first {
            self.complete(request, result);
        }
    }

    fn handle_publish(&mut self, publish: PublishPacket, now: f64) {
        if publish.topic.is_empty() {
            return self.fail(
                ClientError::Protocol("PUBLISH with a topic alias, which the client never allowed"),
                Some(ReasonCode::TopicAliasInvalid),
                now,
            );
        }
        let new = match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                self.write(&Packet::PubAck(PubAckPacket::new(id)), now);
                true
            }
            (QoS::ExactlyOnce, Some(id)) => {
                self.write(&Packet::PubRec(PubAckPacket::new(id)), now);
                // A repeated PUBLISH before PUBREL is the same message [MQTT-4.3.3-10].
                self.incoming_qos2.insert(id)
            }
            _ => true,
        };
        if new {
            self.events.push(Event::Message(publish));
        }
    }

    fn handle_ack(&mut self, ack: &PubAckPacket, received: Stage, now: f64) {
        let entry = self.in_flight.iter_mut().find(|entry| {
            packet_id(&entry.packet) == Some(ack.packet_id)
                && (entry.stage == received
                    // A PUBREC repeated after our PUBREL (e.g. across a reconnect).
                    || (received == Stage::PubRec && entry.stage == Stage::PubComp))
        });
        let Some(entry) = entry else {
            if received == Stage::PubRec {
                // Complete the broker's half anyway so it can free the identifier.
                let mut release = PubAckPacket::new(ack.packet_id);
                release.reason_code = ReasonCode::PacketIdentifierNotFound;
                self.write(&Packet::PubRel(release), now);
            }
            return;
        };
        if received == Stage::PubRec && !ack.reason_code.is_error() {
            entry.stage = Stage::PubComp;
            self.write(&Packet::PubRel(PubAckPacket::new(ack.packet_id)), now);
            return;
        }
        // PUBCOMP's only failure, 0x92, means the broker already finished the exchange.
        let result = if ack.reason_code.is_error() && received != Stage::PubComp {
            Err(ClientError::PublishRefused(ack.reason_code))
        } else {
            Ok(Completion::Published)
        };
        let entry = core::mem::replace(entry, Operation::FINISHED);
        self.finish_in_flight(entry, result);
        drop_finished(&mut self.in_flight);
        self.flush_queue(now);
    }

    /// Completes an in-flight PUBLISH taken out of its slot, and frees its identifier.
    fn finish_in_flight(&mut self, entry: Operation, result: Result<Completion, ClientError>) {
        self.unacknowledged -= 1;
        if let Some(id) = packet_id(&entry.packet) {
            self.packet_ids.free(id);
        }
        self.complete(entry.request, result);
    }

    fn handle_disconnect(&mut self, disconnect: &DisconnectPacket, now: f64) {
        let error = ClientError::ServerDisconnected(disconnect.reason_code);
        self.lose_connection(error, true, true, now);
    }

    fn take_awaiting(&mut self, packet_id: u16) -> Option<Operation> {
        let operation = self
            .awaiting
            .iter_mut()
            .find(|operation| self::packet_id(&operation.packet) == Some(packet_id))?;
        let operation = core::mem::replace(operation, Operation::FINISHED);
        drop_finished(&mut self.awaiting);
        self.packet_ids.free(packet_id);
        Some(operation)
    }

    fn forget_subscription(&mut self, filter: &str) {
        self.subscriptions.retain_mut(|subscribe| {
            subscribe
                .subscriptions
                .retain(|subscription| subscription.filter.as_str() != filter);
            !subscribe.subscriptions.is_empty()
        });
    }

    fn unknown_packet_id(&mut self, now: f64) {
        self.fail(
            ClientError::Protocol("an acknowledgement for an unknown packet identifier"),
            Some(ReasonCode::ProtocolError),
            now,
        );
    }

    /// A protocol failure on our side of the connection: tell a 5.0 broker why, then close.
    fn fail(&mut self, error: ClientError, reason: Option<ReasonCode>, now: f64) {
        if let (true, Some(reason_code)) = (self.options.protocol.is_v5(), reason) {
            let disconnect = DisconnectPacket {
                reason_code,
                properties: Properties::default(),
            };
            self.write(&Packet::Disconnect(disconnect), now);
        }
        self.lose_connection(error, true, true, now);
    }

    /// Ends the current connection; reconnects when `retry` allows and the policy has one.
    fn lose_connection(&mut self, error: ClientError, retry: bool, close: bool, now: f64) {
        if close {
            self.events.push(Event::CloseTransport);
        }
        if !close {
            self.transmit.clear();
        }
        self.read_buffer.clear();
        // Unanswered SUBSCRIBE/UNSUBSCRIBE go out again first, on the next connection.
        while let Some(operation) = self.awaiting.pop_back() {
            if operation.stage == Stage::Finished {
                continue;
            }
            if let Some(id) = packet_id(&operation.packet) {
                self.packet_ids.free(id);
            }
            self.queue.push_front(operation);
        }
        self.auth_waiting = false;
        if let Some(request) = self.reauthentication.take() {
            self.complete(Some(request), Err(error));
        }
        let reconnect = retry && self.ever_connected && self.options.reconnect.is_some();
        self.events.push(Event::ConnectionLost { error, reconnect });
        match self.options.reconnect {
            Some(backoff) if reconnect => {
                self.attempt = self.attempt.saturating_add(1);
                let delay_ms = backoff.delay_ms(self.attempt, self.random.next_f64());
                self.phase = Phase::Waiting {
                    until: now + f64::from(delay_ms),
                };
                self.events.push(Event::Reconnecting {
                    attempt: self.attempt,
                    delay_ms,
                });
            }
            _ => self.close_for_good(Some(error)),
        }
    }

    fn close_for_good(&mut self, error: Option<ClientError>) {
        self.phase = Phase::Closed;
        self.read_buffer.clear();
        self.unacknowledged = 0;
        if let Some(request) = self.reauthentication.take() {
            self.complete(Some(request), Err(ClientError::Closed));
        }
        // In the order they were sent or queued. Popping rather than iterating: the one loop
        // is less code in the wasm package than chained iterators over the three.
        for operations in [&mut self.in_flight, &mut self.awaiting, &mut self.queue] {
            while let Some(operation) = operations.pop_front() {
                if let Some(request) = operation.request {
                    self.events.push(Event::Completed {
                        request,
                        result: Err(ClientError::Closed),
                    });
                }
            }
        }
        self.events.push(Event::Closed { error });
    }
}

/// The CONNECT the options describe, for the first connection; its properties and the will's
/// are taken out of `options`.
fn connect_packet(options: &mut Options) -> ConnectPacket {
    let mut properties = core::mem::take(&mut options.properties);
    if options.protocol.is_v5() {
        properties.session_expiry_interval = options.session_expiry;
        properties.maximum_packet_size = options.maximum_packet_size;
    }
    ConnectPacket {
        protocol: options.protocol,
        clean_start: options.clean,
        keep_alive: options.keep_alive,
        client_id: ByteStr::from(options.client_id.as_str()),
        will: options.will.as_mut().map(|will| Will {
            topic: ByteStr::from(will.topic.as_str()),
            payload: will.payload.clone(),
            qos: will.qos,
            retain: will.retain,
            properties: core::mem::take(&mut will.properties),
        }),
        username: options.username.as_deref().map(ByteStr::from),
        password: options.password.clone(),
        properties,
    }
}

/// Lets the finished entries at the front of `operations` go.
fn drop_finished(operations: &mut VecDeque<Operation>) {
    while operations
        .front()
        .is_some_and(|operation| operation.stage == Stage::Finished)
    {
        operations.pop_front();
    }
}

/// Encodes `packet` into `transmit`, and tells the keep alive that something was sent.
fn write(
    transmit: &mut BytesMut,
    keepalive: &mut KeepAlive,
    version: ProtocolVersion,
    packet: &Packet,
    now: f64,
) {
    // Everything written was size-checked (or is a fixed-size control packet).
    if encode_from_client(packet, version, transmit).is_ok() {
        keepalive.handle_sent(now);
    }
}

/// The client's own SUBSCRIBE of filters the broker had granted (no request waits for it).
fn resubscribe(subscribe: SubscribePacket) -> Operation {
    Operation {
        request: None,
        packet: Packet::Subscribe(subscribe),
        stage: Stage::Queued,
    }
}

/// Whether a CONNACK refusal may go away by itself, so that reconnecting makes sense.
fn is_transient(reason: ReasonCode) -> bool {
    matches!(
        reason,
        ReasonCode::UnspecifiedError
            | ReasonCode::ImplementationSpecificError
            | ReasonCode::ServerUnavailable
            | ReasonCode::ServerBusy
            | ReasonCode::QuotaExceeded
            | ReasonCode::ConnectionRateExceeded
    )
}

#[cfg(test)]
mod tests;
