//! `/metrics`: parsed by a strict Prometheus text-format parser, and checked for the counters
//! and gauges moving with traffic over both transports.

use crate::web_support::{Client, Harness, connect_packet, get, publish_packet, ws_refusal};
use bytes::Bytes;
use mqtt_codec::{ByteStr, Packet, ProtocolVersion, QoS};
use std::collections::{BTreeMap, HashMap};

use ProtocolVersion::{V5, V311};

/// One series: metric name and its labels.
type Series = (String, BTreeMap<String, String>);

/// A parsed exposition: every sample, and every family's declared type.
#[derive(Debug, Default)]
struct Exposition {
    samples: HashMap<Series, f64>,
    types: HashMap<String, String>,
}

impl Exposition {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let series = (
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        *self
            .samples
            .get(&series)
            .unwrap_or_else(|| panic!("no sample {series:?}"))
    }
}

fn is_name(text: &str, colons: bool) -> bool {
    let mut chars = text.chars();
    let valid_start = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    chars.next().is_some_and(valid_start)
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("bad value {text:?}")),
    }
}

/// Parses `{name="value",...}` at the start of `text`, returning the labels and the rest.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("expected '{'")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once('=').ok_or("expected '='")?;
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = after
            .strip_prefix('"')
            .ok_or("expected '\"'")?
            .char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (index, '"') => break index,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => return Err(format!("bad escape \\{other}")),
                },
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        rest = &after[1 + end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}'".into());
        }
    }
}

/// The family a sample belongs to: its name, or the name without a histogram/summary suffix
/// when that family was declared.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.contains_key(base)
        {
            return base;
        }
    }
    name
}

/// A strict parser of the Prometheus text format 0.0.4: every sample needs its family's TYPE
/// first, a TYPE comes at most once and before its samples, series are unique, counters are
/// named `*_total` and not negative.
fn parse(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let mut helped = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: String| format!("line {}: {why}: {line:?}", number + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match words.next() {
                Some("TYPE") => {
                    let name = words
                        .next()
                        .ok_or_else(|| fail("TYPE without name".into()))?;
                    let kind = words
                        .next()
                        .ok_or_else(|| fail("TYPE without type".into()))?;
                    if !is_name(name, true) {
                        return Err(fail("bad metric name".into()));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(fail(format!("unknown type {kind}")));
                    }
                    if exposition
                        .samples
                        .keys()
                        .any(|(n, _)| family_of(n, &exposition.types) == name)
                    {
                        return Err(fail("TYPE after samples".into()));
                    }
                    if exposition.types.insert(name.into(), kind.into()).is_some() {
                        return Err(fail("TYPE repeated".into()));
                    }
                }
                Some("HELP") => {
                    let name = words
                        .next()
                        .ok_or_else(|| fail("HELP without name".into()))?;
                    if helped.insert(name.to_owned(), ()).is_some() {
                        return Err(fail("HELP repeated".into()));
                    }
                }
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| fail("sample without value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(fail("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(fail)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| fail("expected a space before the value".into()))?
            .split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(fail)?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| fail("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(fail("trailing fields".into()));
        }
        let family = family_of(name, &exposition.types);
        let kind = exposition
            .types
            .get(family)
            .ok_or_else(|| fail(format!("no TYPE for {family}")))?;
        if kind == "counter" && (!name.ends_with("_total") || value < 0.0) {
            return Err(fail("counters are *_total and never negative".into()));
        }
        if exposition
            .samples
            .insert((name.to_owned(), labels), value)
            .is_some()
        {
            return Err(fail("series repeated".into()));
        }
    }
    Ok(exposition)
}

async fn scrape(gateway: &Harness) -> Exposition {
    let response = get(gateway.http, "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{response:?}"
    );
    parse(&response.text()).unwrap_or_else(|error| panic!("{error}\n{}", response.text()))
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n\
                # TYPE g gauge\ng -1.5 1700000000\n";
    let parsed = parse(good).expect("valid");
    assert_eq!(parsed.value("a_total", &[("x", "1"), ("y", "q\"")]), 3.0);
    assert_eq!(parsed.value("g", &[]), -1.5);
    for bad in [
        "a_total 1\n",                            // no TYPE
        "# TYPE a counter\na 1\n",                // counter not *_total
        "# TYPE g gauge\ng{x=\"1\" 1\n",          // unterminated labels
        "# TYPE g gauge\ng{x=1} 1\n",             // unquoted value
        "# TYPE g gauge\ng one\n",                // bad value
        "# TYPE g gauge\ng 1\ng 2\n",             // repeated series
        "# TYPE g gauge\n# TYPE g gauge\n",       // repeated TYPE
        "# TYPE g gauge\ng{x=\"1\",x=\"2\"} 1\n", // repeated label
        "# TYPE 1g gauge\n",                      // bad name
        "# TYPE g gauge\ng  1\n",                 // double space
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

#[tokio::test]
async fn every_family_is_exported_from_the_start() {
    let gateway = Harness::start().await;
    let metrics = scrape(&gateway).await;
    for transport in ["tcp", "tls", "ws", "wss"] {
        assert_eq!(
            metrics.value("mqtt_connections", &[("transport", transport)]),
            0.0
        );
    }
    for qos in ["0", "1", "2"] {
        assert_eq!(
            metrics.value("mqtt_messages_received_total", &[("qos", qos)]),
            0.0
        );
        assert_eq!(
            metrics.value("mqtt_messages_sent_total", &[("qos", qos)]),
            0.0
        );
        for name in [
            "mqtt_payload_bytes_received_total",
            "mqtt_payload_bytes_sent_total",
        ] {
            assert_eq!(metrics.value(name, &[("qos", qos)]), 0.0, "{name}");
        }
    }
    for reason in [
        "queue_full",
        "expired",
        "packet_too_large",
        "offline_qos0",
        "slow_consumer",
    ] {
        assert_eq!(
            metrics.value("mqtt_messages_dropped_total", &[("reason", reason)]),
            0.0
        );
    }
    for name in [
        "mqtt_clients_connected",
        "mqtt_subscriptions",
        "mqtt_retained_messages",
        "mqtt_queued_messages",
        "mqtt_auth_failures_total",
        "mqtt_network_bytes_received_total",
        "mqtt_network_bytes_sent_total",
    ] {
        assert_eq!(metrics.value(name, &[]), 0.0, "{name}");
    }
    assert_eq!(metrics.types["mqtt_connections"], "gauge");
    assert_eq!(metrics.types["mqtt_messages_received_total"], "counter");
}

#[tokio::test]
async fn counters_and_gauges_move_with_traffic() {
    let gateway = Harness::start().await;
    let before = scrape(&gateway).await;

    let mut subscriber = Client::ws(&gateway.ws_url(), V5, "metrics-sub").await;
    subscriber.subscribe("m/#", QoS::ExactlyOnce).await;
    let mut publisher = Client::tcp(gateway.tcp, V311, "metrics-pub").await;
    for (qos, count) in [
        (QoS::AtMostOnce, 3),
        (QoS::AtLeastOnce, 2),
        (QoS::ExactlyOnce, 1),
    ] {
        for _ in 0..count {
            publisher
                .publish(publish_packet(
                    "m/x",
                    Bytes::from_static(b"12345"),
                    qos,
                    false,
                ))
                .await;
            subscriber.expect_message().await;
        }
    }
    publisher
        .publish(publish_packet(
            "m/retained",
            Bytes::from_static(b"kept"),
            QoS::AtMostOnce,
            true,
        ))
        .await;
    subscriber.expect_message().await;

    // A persistent session that goes offline: messages for its QoS 0 subscription are dropped,
    // and counted. (Published at QoS 1 below, so that the PUBACK orders it before the scrape.)
    let mut sleeper_connect = connect_packet(V5, "metrics-sleeper");
    sleeper_connect.clean_start = false;
    sleeper_connect.properties.session_expiry_interval = Some(600);
    let mut sleeper = Client::open_tcp(gateway.tcp, V5)
        .await
        .connect_with(sleeper_connect)
        .await;
    sleeper.subscribe("offline/#", QoS::AtMostOnce).await;
    sleeper.send(&Packet::Disconnect(Default::default())).await;
    sleeper.expect_closed().await;

    // An authentication failure: this gateway knows no authentication method.
    let mut refused_connect = connect_packet(V5, "metrics-refused");
    refused_connect.properties.authentication_method = Some(ByteStr::from("SCRAM-SHA-1"));
    let mut refused = Client::open_tcp(gateway.tcp, V5).await;
    refused.send(&Packet::Connect(refused_connect)).await;
    assert!(
        matches!(refused.expect_packet().await, Packet::ConnAck(c) if c.reason_code != mqtt_codec::ReasonCode::Success)
    );

    // A refused WebSocket upgrade.
    assert_eq!(
        ws_refusal(
            &gateway.ws_url(),
            Some("mqtt"),
            Some("https://evil.example")
        )
        .await,
        403
    );

    // Wait until the sleeper's connection is gone from the gauges.
    let deadline = tokio::time::Instant::now() + crate::web_support::WAIT;
    let after = loop {
        let metrics = scrape(&gateway).await;
        if metrics.value("mqtt_connections", &[("transport", "tcp")]) <= 2.0 {
            break metrics;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    publisher
        .publish(publish_packet(
            "offline/x",
            Bytes::from_static(b"lost"),
            QoS::AtLeastOnce,
            false,
        ))
        .await;
    let dropped = scrape(&gateway).await;

    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(after.value("mqtt_connections", &[("transport", "ws")]), 1.0);
    // The publisher and the refused client (which the gateway may still be closing).
    assert!(after.value("mqtt_connections", &[("transport", "tcp")]) >= 1.0);
    assert_eq!(after.value("mqtt_clients_connected", &[]), 2.0);
    assert_eq!(moved("mqtt_messages_received_total", &[("qos", "0")]), 4.0);
    assert_eq!(moved("mqtt_messages_received_total", &[("qos", "1")]), 2.0);
    assert_eq!(moved("mqtt_messages_received_total", &[("qos", "2")]), 1.0);
    assert_eq!(moved("mqtt_messages_sent_total", &[("qos", "0")]), 4.0);
    assert_eq!(moved("mqtt_messages_sent_total", &[("qos", "1")]), 2.0);
    assert_eq!(moved("mqtt_messages_sent_total", &[("qos", "2")]), 1.0);
    let by_qos = |name: &str| ["0", "1", "2"].map(|qos| moved(name, &[("qos", qos)]));
    let received = by_qos("mqtt_payload_bytes_received_total");
    assert_eq!(received.iter().sum::<f64>(), 34.0, "{received:?}");
    assert!(
        received.iter().all(|bytes| *bytes > 0.0),
        "every QoS carried bytes: {received:?}"
    );
    assert_eq!(by_qos("mqtt_payload_bytes_sent_total"), received);
    assert!(moved("mqtt_network_bytes_received_total", &[]) > 34.0);
    assert!(moved("mqtt_network_bytes_sent_total", &[]) > 34.0);
    assert!(moved("mqtt_packets_received_total", &[]) >= 7.0);
    assert_eq!(after.value("mqtt_subscriptions", &[]), 2.0);
    assert_eq!(after.value("mqtt_retained_messages", &[]), 1.0);
    assert_eq!(after.value("mqtt_sessions", &[]), 3.0);
    assert_eq!(moved("mqtt_auth_failures_total", &[]), 1.0);
    assert_eq!(moved("mqtt_connections_refused_total", &[]), 1.0);
    assert_eq!(
        moved(
            "mqtt_websocket_upgrades_refused_total",
            &[("reason", "origin")]
        ),
        1.0
    );
    assert_eq!(
        dropped.value("mqtt_messages_dropped_total", &[("reason", "offline_qos0")])
            - before.value("mqtt_messages_dropped_total", &[("reason", "offline_qos0")]),
        1.0
    );
}
