//! The authentication and authorization hook. The broker asks it about every CONNECT, AUTH,
//! SUBSCRIBE and PUBLISH; the gateway plugs in password files and ACLs, tests plug in rules.

use mqtt_codec::{ByteStr, ConnectPacket, Properties, ReasonCode};

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
