//! Decodes arbitrary bytes as a stream of packets under every protocol version, with a small
//! and an unlimited maximum packet size. Decoding must never panic, and whatever decodes must
//! encode again and decode to the same value.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_codec::{ProtocolVersion, decode, encode};

fuzz_target!(|data: &[u8]| {
    for version in [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5] {
        for max_packet_size in [32, usize::MAX] {
            let mut buf = BytesMut::from(data);
            // Stops at the first error or incomplete packet, as a connection would.
            while let Ok(Some(packet)) = decode(&mut buf, version, max_packet_size) {
                let mut again = BytesMut::new();
                encode(&packet, version, &mut again).expect("a decoded packet encodes");
                let decoded = decode(&mut again, version, usize::MAX);
                assert_eq!(decoded, Ok(Some(packet)), "re-decoding changed the packet");
                assert!(again.is_empty(), "re-encoding left extra bytes");
            }
        }
    }
});
