//! The gateway's integration tests, in one test binary (one link, one process): each runs a
//! gateway on loopback port 0 with a throwaway data directory and talks to it as clients do.
//!
//! One module per concern. `common` (a raw MQTT client over TCP or TLS), `web_support` (a client
//! over TCP or WebSocket, and a minimal HTTP client), `binary` (the gateway binary as a process,
//! for SIGTERM, kill -9 and its log) and `pki` (certificates for the TLS tests) are the shared
//! helpers; every wait in them is bounded, so a misbehaving gateway fails a test
//! instead of hanging it.

mod binary;
mod common;
mod pki;
mod web_support;

mod bad_input;
mod chaos;
mod cluster;
mod cluster_sessions;
mod cluster_tls;
mod connect;
mod crowds;
mod dashboard;
mod http_api;
mod http_auth;
mod limits;
mod messages;
mod metrics;
mod parking;
mod persistence;
mod scram;
mod security;
mod shutdown;
mod slow_consumer;
mod tls;
mod websocket;
mod wills;
