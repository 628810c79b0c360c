//! Helpers shared by the test modules.

use bytes::BytesMut;
use mqtt_codec::{DecodeError, Packet, ProtocolVersion, decode};

/// Bytes written as space-separated hex pairs, with `'text'` tokens standing for ASCII text
/// (no spaces inside), so packets read like the specification's figures.
pub fn hex(text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for token in text.split_whitespace() {
        if let Some(ascii) = token.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
            bytes.extend_from_slice(ascii.as_bytes());
        } else {
            bytes.push(u8::from_str_radix(token, 16).unwrap_or_else(|_| panic!("bad hex {token}")));
        }
    }
    bytes
}

/// Decodes exactly one packet that must span all of `bytes`.
pub fn decode_one(bytes: &[u8], version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, version, usize::MAX)?.expect("a complete packet");
    assert!(buf.is_empty(), "{} bytes left after the packet", buf.len());
    Ok(packet)
}

/// All three protocol versions.
pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];
