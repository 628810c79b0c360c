//! Enhanced authentication (MQTT 5.0 AUTH): the exchange that may follow a CONNECT before it is
//! accepted, and re-authentication of an accepted connection.
//!
//! A CONNECT whose exchange is under way waits in `Broker::pending_authentications` as a
//! [`ConnectRequest`]; the connection has no session until the hook accepts.

use super::connect::{ConnectRequest, with_method};
use super::termination::Termination;
use super::{Broker, ConnectionId};
use crate::auth::{AuthDecision, Authentication, ClientIdentity};
use mqtt_codec::{AuthPacket, Packet, ReasonCode};
use std::time::Instant;

impl Broker {
    /// A packet on a connection whose CONNECT is waiting for its authentication exchange.
    pub(super) fn handle_pending_authentication(
        &mut self,
        connection: ConnectionId,
        pending: ConnectRequest,
        packet: Packet,
        now: Instant,
    ) {
        let protocol = pending.connect.protocol;
        let auth = match packet {
            Packet::Auth(auth) => auth,
            // The client gives up: nothing to answer, no will (it was never accepted).
            Packet::Disconnect(_) => {
                self.outputs.close(connection);
                return;
            }
            _ => {
                // Only AUTH or DISCONNECT may follow a CONNECT that started an exchange
                // [MQTT-3.1.2-30].
                self.pending_authentications.insert(connection, pending);
                self.terminate(connection, Termination::AuthExpected, now);
                return;
            }
        };
        let method = pending
            .connect
            .properties
            .authentication_method
            .clone()
            .unwrap_or_default();
        if auth.reason_code != ReasonCode::ContinueAuthentication
            || auth.properties.authentication_method.as_ref() != Some(&method)
        {
            self.stats.auth_failures += 1;
            let termination = Termination::AuthenticationNotContinued;
            self.refuse_connect(connection, &pending.connect, &pending.info, &termination);
            return;
        }
        // The user name the connection will have once accepted: the one the gateway verified
        // before the CONNECT came in, else the CONNECT's. A hook that binds an exchange to a user
        // (SCRAM's `n=` name) can then tell which user this connection is being accepted as,
        // as it can on re-authentication.
        let verified = match &pending.authentication {
            Authentication::Verified(grant) => grant.username.as_deref(),
            _ => None,
        };
        let identity = ClientIdentity {
            client_id: &pending.client_id,
            username: verified.or(pending.connect.username.as_deref()),
        };
        match self
            .auth
            .continue_authentication(&identity, &method, &auth.properties)
        {
            AuthDecision::Accept(properties) => {
                let properties = with_method(properties, &pending.connect);
                self.accept_connect(connection, pending, properties, now);
            }
            AuthDecision::Continue(properties) => {
                let auth = Packet::Auth(AuthPacket {
                    reason_code: ReasonCode::ContinueAuthentication,
                    properties: with_method(properties, &pending.connect),
                });
                let maximum = pending.connect.properties.maximum_packet_size;
                self.outputs.send(connection, protocol, maximum, &auth);
                self.pending_authentications.insert(connection, pending);
            }
            AuthDecision::Refuse(reason) => {
                self.stats.auth_failures += 1;
                let termination = Termination::AuthenticationRefused(reason);
                self.refuse_connect(connection, &pending.connect, &pending.info, &termination);
            }
        }
    }

    /// AUTH on an accepted connection: re-authentication [MQTT-4.12.1-1].
    pub(super) fn handle_reauthentication(
        &mut self,
        connection: ConnectionId,
        auth: AuthPacket,
    ) -> Result<(), Termination> {
        let conn = &self.connections[&connection];
        let Some(method) = conn.authentication_method.as_deref().cloned() else {
            return Err(Termination::AuthWithoutMethod);
        };
        if auth.properties.authentication_method.as_ref() != Some(&method) {
            return Err(Termination::AuthMethodChanged);
        }
        let client_id = self.sessions.get(conn.session).client_id.clone();
        let identity = ClientIdentity {
            client_id: &client_id,
            username: conn.username.as_deref(),
        };
        let (reason_code, mut properties) =
            match self
                .auth
                .continue_authentication(&identity, &method, &auth.properties)
            {
                AuthDecision::Accept(properties) => (ReasonCode::Success, properties),
                AuthDecision::Continue(properties) => {
                    (ReasonCode::ContinueAuthentication, properties)
                }
                AuthDecision::Refuse(reason) => {
                    self.stats.auth_failures += 1;
                    return Err(Termination::ReauthenticationRefused(reason));
                }
            };
        properties.authentication_method = Some(method);
        self.emit(
            connection,
            &Packet::Auth(AuthPacket {
                reason_code,
                properties,
            }),
        );
        Ok(())
    }
}
