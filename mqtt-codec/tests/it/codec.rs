//! The `tokio-util` adapter: version tracking through CONNECT, bounded reservation while a
//! packet is incomplete, and error conversion.
#![cfg(feature = "tokio-util")]

use bytes::BytesMut;
use mqtt_codec::{
    CodecError, ConnectPacket, DecodeError, MqttCodec, Packet, Properties, ProtocolVersion,
    PubAckPacket, ReasonCode,
};
use tokio_util::codec::{Decoder, Encoder};

fn connect(protocol: ProtocolVersion) -> Packet {
    Packet::Connect(ConnectPacket {
        protocol,
        clean_start: true,
        keep_alive: 30,
        client_id: "codec".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    })
}

#[test]
fn decoding_connect_sets_the_version() {
    let mut client = MqttCodec::new(ProtocolVersion::V311, 1 << 20);
    let mut server = MqttCodec::new(ProtocolVersion::V311, 1 << 20);
    let mut wire = BytesMut::new();
    client
        .encode(connect(ProtocolVersion::V5), &mut wire)
        .unwrap();
    assert_eq!(client.version, ProtocolVersion::V5);
    let ack = Packet::PubAck(PubAckPacket {
        packet_id: 7,
        reason_code: ReasonCode::NoMatchingSubscribers,
        properties: Properties::default(),
    });
    client.encode(&ack, &mut wire).unwrap();

    assert_eq!(
        server.decode(&mut wire).unwrap(),
        Some(connect(ProtocolVersion::V5))
    );
    assert_eq!(server.version, ProtocolVersion::V5);
    // A 5.0 reason code survives only because the server switched to 5.0.
    assert_eq!(server.decode(&mut wire).unwrap(), Some(ack));
    assert_eq!(server.decode(&mut wire).unwrap(), None);
}

#[test]
fn incomplete_packet_reserves_only_what_is_missing() {
    let mut codec = MqttCodec::new(ProtocolVersion::V311, 1 << 20);
    // PUBLISH announcing 100,000 bytes of remaining length: a 4-byte header and 1 body byte.
    let mut buf = BytesMut::from(&[0x30, 0xA0, 0x8D, 0x06, 0x00][..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    let total = 4 + 100_000;
    assert!(buf.capacity() >= total, "capacity {}", buf.capacity());
    assert!(buf.capacity() < 2 * total, "capacity {}", buf.capacity());
    assert_eq!(buf.len(), 5);

    // A header alone reserves nothing: the size is not known yet.
    let mut buf = BytesMut::from(&[0x30, 0xA0][..]);
    let capacity = buf.capacity();
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert_eq!(buf.capacity(), capacity);
}

#[test]
fn oversized_packet_is_an_error_without_reservation() {
    let mut codec = MqttCodec::new(ProtocolVersion::V311, 1024);
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let capacity = buf.capacity();
    match codec.decode(&mut buf) {
        Err(CodecError::Decode(DecodeError::PacketTooLarge { size, maximum })) => {
            assert_eq!((size, maximum), (268_435_460, 1024));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(buf.capacity(), capacity);
}

#[test]
fn encoding_auth_before_5_is_an_error() {
    let mut codec = MqttCodec::new(ProtocolVersion::V311, 1024);
    let mut buf = BytesMut::new();
    let result = codec.encode(Packet::Auth(Default::default()), &mut buf);
    assert!(matches!(result, Err(CodecError::Encode(_))), "{result:?}");
    let io: CodecError = std::io::Error::other("closed").into();
    assert!(io.to_string().contains("closed"));
}
