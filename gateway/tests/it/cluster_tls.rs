//! A cluster whose NATS speaks TLS only: nodes given the CA (`--cluster-ca`) and a `tls://`
//! URL join it and messages cross; a node without the CA cannot, and says so on /healthz
//! while serving its own clients.

use crate::cluster::{Nats, await_interest, figure, next_message};
use crate::common::*;
use crate::pki::Pki;
use crate::web_support::get;
use gateway::config::ClusterConfig;
use mqtt_codec::QoS;
use std::path::PathBuf;
use std::time::{Duration, Instant};

async fn tls_node(url: &str, name: &str, ca: Option<PathBuf>) -> TestGateway {
    TestGateway::start_with(|config| {
        config.cluster = Some(ClusterConfig {
            servers: vec![url.to_owned()],
            node_name: name.to_owned(),
            credentials: None,
            ca,
        });
    })
    .await
}

#[tokio::test]
async fn nodes_join_a_nats_that_speaks_tls_with_the_ca_they_are_given() {
    let pki = Pki::new("nats");
    let server = pki.server("nats", "nats");
    let (certificate, key) = (
        server.certificate.display().to_string(),
        server.key.display().to_string(),
    );
    let nats = Nats::start_with(&["--tls", "--tlscert", &certificate, "--tlskey", &key]);
    let url = format!("tls://127.0.0.1:{}", nats.port);
    let a = tls_node(&url, "a", Some(pki.ca_file())).await;
    let b = tls_node(&url, "b", Some(pki.ca_file())).await;
    let mut subscriber = TestClient::v5(a.addr, "sub-on-a").await;
    subscriber.subscribe("tls/#", QoS::AtLeastOnce).await;
    let mut publisher = TestClient::v5(b.addr, "pub-on-b").await;
    await_interest(&mut subscriber, &mut publisher, "tls/probe").await;
    publisher
        .publish_packet(publish_packet("tls/x", "over tls", QoS::AtLeastOnce, false))
        .await;
    assert_eq!(
        next_message(&mut subscriber).await.payload.as_ref(),
        b"over tls"
    );
    assert_eq!(figure(&a, "mqtt_cluster_connected").await, 1.0);

    // Without the CA, the server's certificate is not trusted: the node stays out, and serves
    // its own clients.
    let outsider = tls_node(&url, "c", None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8(get(outsider.http, "/healthz").await.body).expect("text");
        assert!(
            text.starts_with("ok\ncluster disconnected: local delivery only\n"),
            "{text}"
        );
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut local = TestClient::v5(outsider.addr, "local-on-c").await;
    local.subscribe("tls/#", QoS::AtMostOnce).await;
    let mut on_c = TestClient::v5(outsider.addr, "pub-on-c").await;
    on_c.publish_packet(publish_packet("tls/y", "local", QoS::AtMostOnce, false))
        .await;
    assert_eq!(next_message(&mut local).await.payload.as_ref(), b"local");
}
