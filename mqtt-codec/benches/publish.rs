//! Decode and encode of the broker's hot packet, PUBLISH: QoS 0 and 1, 64 B and 16 KiB
//! payloads, in 3.1.1 and 5.0 (with the topic alias and user property a 5.0 broker forwards).

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_main};
use mqtt_codec::{Packet, Properties, ProtocolVersion, PublishPacket, QoS, decode, encode};
use std::hint::black_box;

fn publish(version: ProtocolVersion, qos: QoS, payload_len: usize) -> Packet {
    let properties = if version.is_v5() {
        Properties {
            topic_alias: Some(1),
            user_properties: vec![("trace".into(), "4bf92f3577b34da6".into())],
            ..Properties::default()
        }
    } else {
        Properties::default()
    };
    Packet::Publish(PublishPacket {
        dup: false,
        qos,
        retain: false,
        topic: "sensors/building-1/floor-3/temperature".into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(42),
        properties,
        payload: Bytes::from(vec![0x5A; payload_len]),
    })
}

fn cases() -> Vec<(String, ProtocolVersion, Packet)> {
    let mut cases = Vec::new();
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            for payload_len in [64, 16 * 1024] {
                let name = format!("{version:?}/qos{}/{payload_len}B", qos as u8);
                cases.push((name, version, publish(version, qos, payload_len)));
            }
        }
    }
    cases
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_publish");
    for (name, version, packet) in cases() {
        let mut wire = BytesMut::new();
        encode(&packet, version, &mut wire).expect("encodable");
        let wire = wire.freeze();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            // Copying the input into a fresh buffer is setup, not measured. The packet is
            // dropped inside the measurement (freeing the frame is part of the cost) and only
            // a length leaves it, since criterion stores every output of a batch.
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| match decode(&mut buf, version, usize::MAX) {
                    Ok(Some(Packet::Publish(publish))) => black_box(publish.payload.len()),
                    other => panic!("{other:?}"),
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_publish");
    for (name, version, packet) in cases() {
        let len = mqtt_codec::encoded_len(&packet, version).expect("encodable");
        group.throughput(Throughput::Bytes(len as u64));
        // A connection reuses its write buffer, so steady state allocates nothing.
        let mut buf = BytesMut::with_capacity(len);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                buf.clear();
                encode(black_box(&packet), version, &mut buf).expect("encodable");
                black_box(&buf);
            })
        });
    }
    group.finish();
}

/// `criterion_group!` expands to a `pub fn`; a private module keeps it out of the docs lint.
mod group {
    use super::{bench_decode, bench_encode};
    criterion::criterion_group!(benches, bench_decode, bench_encode);
}
criterion_main!(group::benches);
