//! Authentication and authorization.
//!
//! Two parts, both consulted where they apply (each may refuse):
//!
//! - [`Authentication`]: what was established about a client before its CONNECT reached the
//!   broker. Checking a password is slow on purpose, so the gateway does it on another task and
//!   passes the outcome with the CONNECT: refused, or a [`Grant`] with the verified user name,
//!   the client's [`Permissions`] (an ACL, a token's claims) and when its credentials expire.
//! - [`AuthHook`]: decisions made on the broker's task: enhanced authentication (AUTH), and
//!   rules that tests and embedders plug in.

use mqtt_codec::{ByteStr, ConnectPacket, Properties, ReasonCode};
use std::fmt;
use std::time::Instant;

/// What one client may do, asked on the broker's task for every PUBLISH, SUBSCRIBE and
/// delivery to it: implementations answer from memory (and may cache, hence `&mut`).
pub trait Permissions: Send + fmt::Debug {
    /// Whether the client may publish to `topic` (its will too).
    fn may_publish(&mut self, topic: &str) -> bool;
    /// Whether the client may subscribe to `filter` (`$share/...` included).
    fn may_subscribe(&mut self, filter: &str) -> bool;
    /// Whether a message on `topic` may be delivered to the client.
    fn may_receive(&mut self, topic: &str) -> bool;
}

/// Verified credentials.
#[derive(Debug, Default)]
pub struct Grant {
    /// The user name the credentials establish (a token's subject, a certificate's CN), which
    /// replaces the CONNECT's; `None` keeps the CONNECT's.
    pub username: Option<ByteStr>,
    /// What the client may do; `None`: everything.
    pub permissions: Option<Box<dyn Permissions>>,
    /// When the credentials expire: the connection is closed then (5.0: DISCONNECT 0xA0).
    pub valid_until: Option<Instant>,
}

/// What was established about a client before its CONNECT reached the broker.
#[derive(Debug, Default)]
pub enum Authentication {
    /// Nothing was checked; the [`AuthHook`] alone decides.
    #[default]
    Unchecked,
    /// Credentials verified. Boxed: most connections carry none, and a command carrying a
    /// CONNECT to the broker's task should stay small.
    Verified(Box<Grant>),
    /// Credentials refused, with the CONNACK reason (0x86 bad user name or password, 0x87 not
    /// authorized; 3.1.1 clients read 0x04 and 0x05).
    Refused(ReasonCode),
}

/// Who is asking: the facts about a client that rules may depend on.
#[derive(Clone, Debug)]
pub struct ClientIdentity<'a> {
    /// The client identifier (assigned one if the client sent none).
    pub client_id: &'a str,
    /// User name from CONNECT, if any.
    pub username: Option<&'a str>,
}

/// The answer to an authentication step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// Accept the client. The properties (e.g. final authentication data) go into the CONNACK
    /// or AUTH success answer.
    Accept(Properties),
    /// Continue an enhanced authentication exchange: send AUTH 0x18 with these properties.
    Continue(Properties),
    /// Refuse with this reason (CONNACK for a new connection, DISCONNECT otherwise).
    Refuse(ReasonCode),
}

/// Authentication and authorization decisions. Implementations must be fast and never block:
/// they run on the task that owns the broker.
pub trait AuthHook: Send {
    /// Decides on a CONNECT. `client_id` is the identifier the session will use.
    fn authenticate(&mut self, connect: &ConnectPacket, client_id: &str) -> AuthDecision {
        if connect.properties.authentication_method.is_some() {
            // 5.0 enhanced authentication needs a method this hook knows; the default knows none.
            AuthDecision::Refuse(ReasonCode::BadAuthenticationMethod)
        } else {
            let _ = client_id;
            AuthDecision::Accept(Properties::default())
        }
    }

    /// Decides on an AUTH packet (continuing an exchange or re-authenticating).
    /// `method` is the authentication method of the CONNECT that started the exchange.
    fn continue_authentication(
        &mut self,
        client: &ClientIdentity<'_>,
        method: &ByteStr,
        properties: &Properties,
    ) -> AuthDecision {
        let _ = (client, method, properties);
        AuthDecision::Refuse(ReasonCode::BadAuthenticationMethod)
    }

    /// Whether `client` may subscribe to `filter` (the filter as sent, `$share/...` included).
    fn authorize_subscribe(&mut self, client: &ClientIdentity<'_>, filter: &str) -> bool {
        let _ = (client, filter);
        true
    }

    /// Whether `client` may publish to `topic`.
    fn authorize_publish(&mut self, client: &ClientIdentity<'_>, topic: &str) -> bool {
        let _ = (client, topic);
        true
    }
}

/// Allows every client and every topic; refuses 5.0 enhanced authentication (no method known).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl AuthHook for AllowAll {}
