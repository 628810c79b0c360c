//! Sans-IO codec for MQTT 3.1 (MQIsdp), 3.1.1 and 5.0.
//!
//! Bytes in, packets out: [`decode`] reads one packet from the front of a `BytesMut` and returns
//! `Ok(None)` without consuming anything when the packet is not complete yet; [`encode`] appends a
//! packet to a `BytesMut`. The codec never touches sockets or clocks and builds for
//! `wasm32-unknown-unknown`. Topic names and payloads of decoded PUBLISH packets are zero-copy
//! slices of the received frame.
//!
//! Decoding never allocates ahead of the bytes it has: a fixed header announcing 256 MB is
//! checked against the maximum packet size and otherwise waits for the bytes to arrive.
//!
//! Without the default `std` feature the crate is `no_std` (it needs `alloc` only), so that a
//! `no_std` wasm build, such as the browser client's, links no part of `std`.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

mod decode;
mod encode;
mod error;
mod packet;
mod properties;
mod reason;
mod string;
pub mod topic;

#[cfg(feature = "tokio-util")]
mod codec;

#[cfg(feature = "tokio-util")]
pub use codec::{CodecError, MqttCodec};
pub use decode::{decode, decode_from_server, packet_length};
pub use encode::{encode, encode_from_client, encoded_len, encoded_len_from_client};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use properties::{Properties, id as property_id};
pub use reason::ReasonCode;
pub use string::ByteStr;

/// The largest remaining length the fixed header can express (spec 2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
