//! Connection options in plain Rust, validated once by [`Options::validate`]. The JS layer
//! converts the `connect()` options object into this.

use crate::backoff::Backoff;
use crate::error::ClientError;
use alloc::string::String;
use bytes::Bytes;
use mqtt_codec::{Properties, ProtocolVersion, QoS, topic};

/// The will message registered with every CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WillOptions {
    /// Topic name of the will.
    pub topic: String,
    /// Payload of the will.
    pub payload: Bytes,
    /// QoS of the will.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// Will properties (MQTT 5.0).
    pub properties: Properties,
}

/// What the application's credentials function gave for one connection attempt: it replaces
/// the user name and password of the options (and the initial authentication data) in that
/// attempt's CONNECT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Authentication data for the CONNECT (5.0, with an authentication method): e.g. the
    /// first message of a SASL exchange, which must be fresh for every attempt.
    pub authentication_data: Option<Bytes>,
}

/// Everything that shapes the CONNECT packets and the client's behaviour between connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// MQTT 3.1.1 or 5.0.
    pub protocol: ProtocolVersion,
    /// The client identifier; empty asks the broker to assign one.
    pub client_id: String,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Clean session (3.1.1) / clean start of the first connection (5.0).
    pub clean: bool,
    /// Session Expiry Interval in seconds (5.0).
    pub session_expiry: Option<u32>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Will message.
    pub will: Option<WillOptions>,
    /// Reconnect policy; `None` closes the client when the connection is lost.
    pub reconnect: Option<Backoff>,
    /// Operations (publish, subscribe, unsubscribe) held while disconnected or while the
    /// in-flight window is full; more are refused with [`ClientError::QueueFull`].
    pub offline_queue_limit: usize,
    /// Time from opening the transport to the CONNACK, in milliseconds.
    pub connect_timeout_ms: u32,
    /// The largest packet the client accepts; announced to the broker in 5.0.
    pub maximum_packet_size: Option<u32>,
    /// Extra CONNECT properties (5.0), e.g. user properties or Request Problem Information,
    /// and the Authentication Method (with its initial Authentication Data) of enhanced
    /// authentication: the client then answers the broker's AUTH packets (see
    /// [`crate::Event::Auth`]) and may re-authenticate.
    pub properties: Properties,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            protocol: ProtocolVersion::V5,
            client_id: String::new(),
            keep_alive: 60,
            clean: true,
            session_expiry: None,
            username: None,
            password: None,
            will: None,
            reconnect: Some(Backoff::default()),
            offline_queue_limit: 1_000,
            connect_timeout_ms: 30_000,
            maximum_packet_size: None,
            properties: Properties::default(),
        }
    }
}

impl Options {
    /// Checks what the broker would otherwise refuse, so the error names the option.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.protocol == ProtocolVersion::V31 {
            return Err(ClientError::InvalidOptions(
                "protocolVersion must be 4 (MQTT 3.1.1) or 5 (MQTT 5.0)",
            ));
        }
        if self.client_id.len() > usize::from(u16::MAX) {
            return Err(ClientError::InvalidOptions(
                "clientId is longer than 65535 bytes",
            ));
        }
        if self.client_id.is_empty() && !self.clean && self.protocol == ProtocolVersion::V311 {
            return Err(ClientError::InvalidOptions(
                "an empty clientId needs clean: true in MQTT 3.1.1 [MQTT-3.1.3-7]",
            ));
        }
        if self.password.is_some() && self.username.is_none() && !self.protocol.is_v5() {
            return Err(ClientError::InvalidOptions(
                "a password needs a username in MQTT 3.1.1 [MQTT-3.1.2-22]",
            ));
        }
        let method = self.properties.authentication_method.is_some();
        if method && !self.protocol.is_v5()
            || self.properties.authentication_data.is_some() && !method
        {
            return Err(ClientError::InvalidOptions(
                "enhanced authentication needs MQTT 5.0, and authenticationData an authenticationMethod",
            ));
        }
        if let Some(will) = &self.will {
            topic::validate_topic_name(&will.topic).map_err(ClientError::InvalidTopic)?;
        }
        if self.maximum_packet_size == Some(0) {
            return Err(ClientError::InvalidOptions(
                "maximumPacketSize must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_option() {
        let method = Properties {
            authentication_method: Some("SCRAM-SHA-256".into()),
            ..Properties::default()
        };
        let data = Properties {
            authentication_data: Some(Bytes::from_static(b"n,,n=user,r=1")),
            ..Properties::default()
        };
        let table: [(Options, Option<&str>); 8] = [
            (Options::default(), None),
            (
                Options {
                    protocol: ProtocolVersion::V31,
                    ..Options::default()
                },
                Some("INVALID_OPTIONS"),
            ),
            (
                Options {
                    protocol: ProtocolVersion::V311,
                    clean: false,
                    ..Options::default()
                },
                Some("INVALID_OPTIONS"),
            ),
            (
                Options {
                    will: Some(WillOptions {
                        topic: "a/#".into(),
                        payload: Bytes::new(),
                        qos: QoS::AtMostOnce,
                        retain: false,
                        properties: Properties::default(),
                    }),
                    ..Options::default()
                },
                Some("INVALID_TOPIC"),
            ),
            (
                Options {
                    protocol: ProtocolVersion::V311,
                    password: Some(Bytes::from_static(b"secret")),
                    ..Options::default()
                },
                Some("INVALID_OPTIONS"),
            ),
            (
                Options {
                    properties: method.clone(),
                    ..Options::default()
                },
                None,
            ),
            (
                Options {
                    protocol: ProtocolVersion::V311,
                    properties: method,
                    ..Options::default()
                },
                Some("INVALID_OPTIONS"),
            ),
            (
                Options {
                    properties: data,
                    ..Options::default()
                },
                Some("INVALID_OPTIONS"),
            ),
        ];
        for (options, expected) in table {
            let code = options.validate().err().map(|error| error.code());
            assert_eq!(code, expected, "{options:?}");
        }
    }
}
