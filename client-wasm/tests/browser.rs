//! `MqttClient` in headless Chromium against a real gateway.
//!
//! `cargo xtask test` starts `target/debug/gateway` on free ports (with `--max-packet-size 65536`)
//! and builds these tests with `CLIENT_WASM_TEST_WS_URL=ws://127.0.0.1:PORT/mqtt`; run by hand,
//! they fail with a message saying so. Forced reconnects use a client-id takeover: a second
//! client connecting with the same identifier makes the gateway drop the first one, which is
//! what a real network loss looks like to the client (the HTTP API's DELETE, used by the
//! Playwright test, is cross-origin from this test page).

#![cfg(target_arch = "wasm32")]

use client_wasm::error::EncodeProblem;
use client_wasm::{ClientError, MqttClient, error_to_js};
use js_sys::{Array, Function, JSON, Promise, Reflect, Uint8Array};
use mqtt_codec::topic::TopicError;
use mqtt_codec::{ProtocolVersion, ReasonCode};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, delay_ms: i32) -> JsValue;

    /// An `MqttClient`, whose methods are called as an application calls them.
    type Client;

    #[wasm_bindgen(method)]
    fn subscribe(this: &Client, filter: String, options: Option<JsValue>) -> Promise;
    #[wasm_bindgen(method)]
    fn unsubscribe(this: &Client, filter: String, options: Option<JsValue>) -> Promise;
    #[wasm_bindgen(method)]
    fn publish(this: &Client, topic: String, payload: JsValue, options: Option<JsValue>)
    -> Promise;
    #[wasm_bindgen(method, js_name = onMessage)]
    fn on_message(this: &Client, callback: Function);
    #[wasm_bindgen(method, js_name = onMessages)]
    fn on_messages(this: &Client, callback: Function);
    #[wasm_bindgen(method, js_name = addEventListener)]
    fn add_event_listener(this: &Client, kind: JsValue, listener: JsValue, options: JsValue);
    #[wasm_bindgen(method, getter)]
    fn state(this: &Client) -> String;
    #[wasm_bindgen(method, getter, js_name = clientId)]
    fn client_id(this: &Client) -> String;
    #[wasm_bindgen(method, getter)]
    fn queued(this: &Client) -> u32;
    #[wasm_bindgen(method)]
    fn end(this: &Client) -> Promise;
    #[wasm_bindgen(method)]
    fn free(this: &Client);
}

fn url() -> String {
    match option_env!("CLIENT_WASM_TEST_WS_URL") {
        Some(url) => url.to_string(),
        None => panic!(
            "CLIENT_WASM_TEST_WS_URL is not set: run these tests through `cargo xtask test`, \
             which starts a gateway and sets it"
        ),
    }
}

fn json(text: &str) -> JsValue {
    JSON::parse(text).unwrap_or_else(|_| panic!("bad JSON in test: {text}"))
}

/// An options argument (of whichever options type the method takes).
fn opts<T: JsCast>(text: &str) -> Option<T> {
    Some(json(text).unchecked_into())
}

fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(key)).expect("object")
}

async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    JsFuture::from(promise).await.expect("timer");
}

/// Waits up to `ms` for `condition`.
async fn wait_for(ms: i32, what: &str, mut condition: impl FnMut() -> bool) {
    let mut waited = 0;
    while !condition() {
        assert!(waited < ms, "timed out after {ms} ms waiting for {what}");
        sleep(20).await;
        waited += 20;
    }
}

async fn connect(options: &str) -> Result<Client, JsValue> {
    connect_with(json(options)).await
}

/// `connect()` with an options object, which may hold functions.
async fn connect_with(options: JsValue) -> Result<Client, JsValue> {
    // The test runner does not run the module's start function, which does this.
    client_wasm::hand_over_entry();
    let promise: Promise = MqttClient::connect(&url(), &options).unchecked_into();
    let client = JsFuture::from(promise).await?;
    assert!(
        client.is_instance_of::<MqttClient>(),
        "connect resolves with an MqttClient"
    );
    Ok(client.unchecked_into())
}

async fn settle(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

fn error_code(error: &JsValue) -> String {
    get(error, "code").as_string().unwrap_or_default()
}

/// Received messages, kept as JS objects.
#[derive(Clone, Default)]
struct Inbox(Rc<RefCell<Vec<JsValue>>>);

impl Inbox {
    /// Registers with `onMessage`; the closure must outlive the client's use of it.
    fn listen(&self, client: &Client) -> Closure<dyn FnMut(JsValue)> {
        let messages = self.0.clone();
        let closure = Closure::<dyn FnMut(JsValue)>::new(move |message| {
            messages.borrow_mut().push(message);
        });
        client.on_message(closure.as_ref().unchecked_ref::<Function>().clone());
        closure
    }

    fn len(&self) -> usize {
        self.0.borrow().len()
    }

    fn texts(&self) -> Vec<String> {
        self.0
            .borrow()
            .iter()
            .map(|message| {
                let text: Function = get(message, "text").unchecked_into();
                text.call0(message).unwrap().as_string().unwrap()
            })
            .collect()
    }

    fn get(&self, index: usize) -> JsValue {
        self.0.borrow()[index].clone()
    }
}

/// Events of one client, as `type` strings in order, with their details.
#[derive(Clone, Default)]
struct Events(Rc<RefCell<Vec<(String, JsValue)>>>);

impl Events {
    fn listen(&self, client: &Client) -> Vec<Closure<dyn FnMut(JsValue)>> {
        ["connect", "close", "reconnect", "error"]
            .into_iter()
            .map(|kind| {
                let events = self.0.clone();
                let closure = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                    events
                        .borrow_mut()
                        .push((kind.to_string(), get(&event, "detail")));
                });
                client.add_event_listener(
                    kind.into(),
                    closure.as_ref().clone(),
                    JsValue::UNDEFINED,
                );
                closure
            })
            .collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.0.borrow().iter().filter(|(k, _)| k == kind).count()
    }

    fn details(&self, kind: &str) -> Vec<JsValue> {
        self.0
            .borrow()
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, detail)| detail.clone())
            .collect()
    }
}

async fn publish_and_receive_every_qos(protocol: u8) {
    let id = format!("wbt-qos-v{protocol}");
    let client = connect(&format!(
        r#"{{"clientId": "{id}", "protocolVersion": {protocol}, "keepalive": 30}}"#
    ))
    .await
    .expect("connects");
    assert_eq!(client.state(), "connected");
    assert_eq!(client.client_id(), id);
    let inbox = Inbox::default();
    let _listener = inbox.listen(&client);
    let filter = format!("wbt/{id}/#");
    let granted = settle(client.subscribe(filter.clone(), opts(r#"{"qos": 2}"#)))
        .await
        .expect("subscribed");
    assert_eq!(get(&granted, "qos").as_f64(), Some(2.0));
    assert_eq!(get(&granted, "reasonCode").as_f64(), Some(2.0));
    for qos in 0..3 {
        let topic = format!("wbt/{id}/q{qos}");
        let options = json(&format!(r#"{{"qos": {qos}}}"#));
        let done = settle(client.publish(
            topic,
            JsValue::from_str(&format!("m{qos}")),
            Some(options.unchecked_into()),
        ))
        .await
        .expect("published");
        assert!(done.is_undefined());
    }
    // Binary payloads arrive byte for byte.
    let bytes = Uint8Array::from(&[0u8, 255, 1, 254][..]);
    settle(client.publish(format!("wbt/{id}/bin"), bytes.into(), opts(r#"{"qos": 1}"#)))
        .await
        .expect("published");
    wait_for(5_000, "4 messages", || inbox.len() == 4).await;
    assert_eq!(inbox.texts()[..3], ["m0", "m1", "m2"]);
    for qos in 0..3 {
        let message = inbox.get(qos);
        assert_eq!(get(&message, "qos").as_f64(), Some(qos as f64));
        assert_eq!(
            get(&message, "topic").as_string().unwrap(),
            format!("wbt/{id}/q{qos}")
        );
        assert_eq!(get(&message, "retain").as_bool(), Some(false));
    }
    let binary: Uint8Array = get(&inbox.get(3), "payload").unchecked_into();
    assert_eq!(binary.to_vec(), [0, 255, 1, 254]);

    let unsubscribed = settle(client.unsubscribe(filter, None))
        .await
        .expect("unsubscribed");
    assert_eq!(get(&unsubscribed, "reasonCode").as_f64(), Some(0.0));
    settle(client.publish(format!("wbt/{id}/after"), "x".into(), opts(r#"{"qos": 1}"#)))
        .await
        .expect("published");
    sleep(200).await;
    assert_eq!(inbox.len(), 4, "nothing arrives after unsubscribe");
    settle(client.end()).await.expect("ended");
    assert_eq!(client.state(), "closed");
}

#[wasm_bindgen_test]
async fn every_qos_both_ways_mqtt_5() {
    publish_and_receive_every_qos(5).await;
}

#[wasm_bindgen_test]
async fn every_qos_both_ways_mqtt_311() {
    publish_and_receive_every_qos(4).await;
}

#[wasm_bindgen_test]
async fn retained_messages_and_v5_properties_arrive() {
    let client = connect(r#"{"clientId": "wbt-props", "protocolVersion": 5}"#)
        .await
        .expect("connects");
    let inbox = Inbox::default();
    let _listener = inbox.listen(&client);
    let properties = json(
        r#"{"qos": 1, "retain": true, "properties": {
            "contentType": "application/json",
            "responseTopic": "wbt/props/reply",
            "messageExpiryInterval": 600,
            "payloadFormatIndicator": 1,
            "userProperties": {"source": "browser", "tag": ["a", "b"]}
        }}"#,
    );
    let correlation = Uint8Array::from(&[7u8, 8, 9][..]);
    Reflect::set(
        &get(&properties, "properties"),
        &"correlationData".into(),
        &correlation,
    )
    .unwrap();
    settle(client.publish(
        "wbt/props/one".into(),
        r#"{"t": 21.5}"#.into(),
        Some(properties.unchecked_into()),
    ))
    .await
    .expect("published");
    settle(client.subscribe(
        "wbt/props/+".into(),
        opts(r#"{"qos": 1, "properties": {"subscriptionIdentifier": 42}}"#),
    ))
    .await
    .expect("subscribed");
    wait_for(5_000, "the retained message", || inbox.len() == 1).await;
    let message = inbox.get(0);
    assert_eq!(get(&message, "retain").as_bool(), Some(true));
    let parsed = {
        let json_method: Function = get(&message, "json").unchecked_into();
        json_method.call0(&message).unwrap()
    };
    assert_eq!(get(&parsed, "t").as_f64(), Some(21.5));
    let received = get(&message, "properties");
    assert_eq!(
        get(&received, "contentType").as_string().as_deref(),
        Some("application/json")
    );
    assert_eq!(
        get(&received, "responseTopic").as_string().as_deref(),
        Some("wbt/props/reply")
    );
    assert_eq!(get(&received, "payloadFormatIndicator").as_f64(), Some(1.0));
    let correlation: Uint8Array = get(&received, "correlationData").unchecked_into();
    assert_eq!(correlation.to_vec(), [7, 8, 9]);
    let identifiers: Array = get(&received, "subscriptionIdentifiers").unchecked_into();
    assert_eq!(identifiers.get(0).as_f64(), Some(42.0));
    let user = get(&received, "userProperties");
    assert_eq!(get(&user, "source").as_string().as_deref(), Some("browser"));
    let tags: Array = get(&user, "tag").unchecked_into();
    assert_eq!(tags.length(), 2);
    // Clear the retained message for later runs against the same store.
    settle(client.publish(
        "wbt/props/one".into(),
        JsValue::UNDEFINED,
        opts(r#"{"qos": 1, "retain": true}"#),
    ))
    .await
    .expect("cleared");
    settle(client.end()).await.unwrap();
}

/// Makes the gateway drop `client_id`'s connection by connecting a second client with the same
/// identifier (clean start, so the broker session is gone too), then leaving.
async fn take_over(client_id: &str) {
    let intruder = connect(&format!(
        r#"{{"clientId": "{client_id}", "reconnect": false, "clean": true}}"#
    ))
    .await
    .expect("the intruder connects");
    settle(intruder.end()).await.unwrap();
}

/// The options of `json` with `name` set to a function of `body` (JS, no arguments).
fn with_function(json_text: &str, name: &str, body: &str) -> JsValue {
    let options = json(json_text);
    let function = Function::new_no_args(body);
    Reflect::set(&options, &name.into(), &function).unwrap();
    options
}

#[wasm_bindgen_test]
async fn the_credentials_function_is_called_for_every_attempt() {
    let id = "wbt-credentials";
    let options = with_function(
        &format!(r#"{{"clientId": "{id}", "reconnect": {{"minDelayMs": 50, "maxDelayMs": 100}}}}"#),
        "credentials",
        "globalThis.credentialCalls = (globalThis.credentialCalls ?? 0) + 1; \
         return Promise.resolve({ username: 'user', password: 'token-' + globalThis.credentialCalls });",
    );
    let client = connect_with(options).await.expect("connects");
    let events = Events::default();
    let _event_listeners = events.listen(&client);
    let calls = || get(&js_sys::global(), "credentialCalls").as_f64();
    assert_eq!(calls(), Some(1.0));
    take_over(id).await;
    wait_for(3_000, "the reconnect", || events.count("connect") == 1).await;
    assert_eq!(calls(), Some(2.0));
    settle(client.end()).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_failing_credentials_function_fails_the_attempt_with_its_cause() {
    for (body, cause) in [
        ("throw new Error('no token')", "no token"),
        ("return Promise.reject(new Error('later'))", "later"),
        ("return { username: 5 }", "username must be a string"),
    ] {
        let options = with_function(r#"{"reconnect": false}"#, "credentials", body);
        let error = connect_with(options).await.err().expect("refused");
        assert_eq!(error_code(&error), "CREDENTIALS_FAILED", "{body}");
        let message = get(&get(&error, "cause"), "message").as_string();
        assert_eq!(message.as_deref(), Some(cause), "{body}");
    }
    let both = with_function(r#"{"username": "u"}"#, "credentials", "return {}");
    let error = connect_with(both).await.err().expect("refused");
    assert_eq!(error_code(&error), "INVALID_ARGUMENT");
}

#[wasm_bindgen_test]
async fn the_will_is_published_when_the_connection_is_taken_over() {
    let watcher = connect(r#"{"clientId": "wbt-will-watcher"}"#)
        .await
        .expect("connects");
    let inbox = Inbox::default();
    let _listener = inbox.listen(&watcher);
    settle(watcher.subscribe("wbt/will/#".into(), opts(r#"{"qos": 1}"#)))
        .await
        .expect("subscribed");
    let id = "wbt-will";
    let client = connect(&format!(
        r#"{{"clientId": "{id}", "reconnect": false, "will": {{"topic": "wbt/will/{id}",
            "payload": "gone", "qos": 1, "properties": {{"contentType": "text/plain"}}}}}}"#
    ))
    .await
    .expect("connects with a will");
    take_over(id).await;
    wait_for(5_000, "the will", || inbox.len() == 1).await;
    let will = inbox.get(0);
    assert_eq!(inbox.texts(), ["gone"]);
    assert_eq!(
        get(&will, "topic").as_string().unwrap(),
        format!("wbt/will/{id}")
    );
    assert_eq!(get(&will, "qos").as_f64(), Some(1.0));
    let properties = get(&will, "properties");
    assert_eq!(
        get(&properties, "contentType").as_string().as_deref(),
        Some("text/plain")
    );
    wait_for(3_000, "the client to close", || client.state() == "closed").await;
    let no_topic = connect(r#"{"will": {"payload": "x"}}"#)
        .await
        .err()
        .unwrap();
    assert_eq!(error_code(&no_topic), "INVALID_ARGUMENT");
    settle(watcher.end()).await.unwrap();
}

/// `free()` drops the connection at once, without DISCONNECT (so the will is published); the
/// flush of a publish made just before finds no client and does nothing.
#[wasm_bindgen_test]
async fn free_drops_the_connection_at_once() {
    let watcher = connect(r#"{"clientId": "wbt-free-watcher"}"#)
        .await
        .expect("connects");
    let inbox = Inbox::default();
    let _listener = inbox.listen(&watcher);
    settle(watcher.subscribe("wbt/free/#".into(), None))
        .await
        .expect("subscribed");
    let client = connect(
        r#"{"clientId": "wbt-free", "will": {"topic": "wbt/free/will", "payload": "freed"}}"#,
    )
    .await
    .expect("connects");
    let _never_settled = client.publish("wbt/free/last".into(), "x".into(), None);
    client.free();
    wait_for(5_000, "the will", || inbox.len() == 1).await;
    assert_eq!(inbox.texts(), ["freed"]);
    settle(watcher.end()).await.unwrap();
}

#[wasm_bindgen_test]
async fn reconnects_resubscribes_and_delivers_what_was_queued_offline() {
    let id = "wbt-reconnect";
    let client = connect(&format!(
        r#"{{"clientId": "{id}", "reconnect": {{"minDelayMs": 400, "maxDelayMs": 800}}}}"#
    ))
    .await
    .expect("connects");
    let inbox = Inbox::default();
    let _listener = inbox.listen(&client);
    let events = Events::default();
    let _event_listeners = events.listen(&client);
    settle(client.subscribe("wbt/reconnect/#".into(), opts(r#"{"qos": 1}"#)))
        .await
        .expect("subscribed");

    take_over(id).await;
    wait_for(3_000, "the close event", || events.count("close") == 1).await;
    assert_eq!(client.state(), "reconnecting");
    let close = &events.details("close")[0];
    assert_eq!(get(close, "reconnect").as_bool(), Some(true));
    assert_eq!(error_code(&get(close, "error")), "SERVER_DISCONNECTED");
    let reconnect = &events.details("reconnect")[0];
    assert_eq!(get(reconnect, "attempt").as_f64(), Some(1.0));
    let delay = get(reconnect, "delayMs").as_f64().unwrap();
    assert!((400.0..800.0).contains(&delay), "delay {delay}");

    // Made while disconnected: they wait in the offline queue.
    let pending: Vec<Promise> = (0..3)
        .map(|index| {
            let options = json(&format!(r#"{{"qos": {}}}"#, index % 3));
            client.publish(
                format!("wbt/reconnect/{index}"),
                format!("queued {index}").into(),
                Some(options.unchecked_into()),
            )
        })
        .collect();
    assert_eq!(client.queued(), 3);
    for promise in pending {
        settle(promise).await.expect("delivered after reconnect");
    }
    assert_eq!(client.state(), "connected");
    assert_eq!(events.count("connect"), 1);
    let connected = &events.details("connect")[0];
    assert_eq!(
        get(connected, "sessionPresent").as_bool(),
        Some(false),
        "the intruder's clean start removed the session"
    );
    // The CONNACK properties: the gateway announces its 64 KiB Maximum Packet Size.
    let properties = get(connected, "properties");
    assert_eq!(
        get(&properties, "maximumPacketSize").as_f64(),
        Some(65536.0)
    );
    // Received only because the client subscribed again by itself.
    wait_for(5_000, "the queued messages", || inbox.len() == 3).await;
    assert_eq!(inbox.texts(), ["queued 0", "queued 1", "queued 2"]);
    settle(client.end()).await.unwrap();
}

#[wasm_bindgen_test]
async fn the_offline_queue_is_bounded() {
    let id = "wbt-queue";
    let client = connect(&format!(
        r#"{{"clientId": "{id}", "offlineQueueLimit": 2,
            "reconnect": {{"minDelayMs": 400, "maxDelayMs": 400}}}}"#
    ))
    .await
    .expect("connects");
    let events = Events::default();
    let _event_listeners = events.listen(&client);
    take_over(id).await;
    wait_for(3_000, "the close event", || events.count("close") == 1).await;
    let first = client.publish("wbt/queue/a".into(), "1".into(), opts(r#"{"qos": 1}"#));
    let second = client.publish("wbt/queue/b".into(), "2".into(), None);
    let overflow = client.publish("wbt/queue/c".into(), "3".into(), None);
    let error = settle(overflow)
        .await
        .expect_err("the third one does not fit");
    assert_eq!(error_code(&error), "QUEUE_FULL");
    assert!(error.is_instance_of::<js_sys::Error>());
    let message = get(&error, "message").as_string().unwrap();
    assert!(message.contains("offline queue full"), "{message}");
    settle(first).await.expect("the first is delivered");
    settle(second).await.expect("the second is delivered");
    settle(client.end()).await.unwrap();
}

#[wasm_bindgen_test]
async fn errors_are_js_errors_with_codes() {
    // A client identifier longer than the gateway's 256 bytes: CONNACK 0x85.
    let long_id = "x".repeat(300);
    let refused = connect(&format!(
        r#"{{"clientId": "{long_id}", "reconnect": false}}"#
    ))
    .await
    .err()
    .expect("refused");
    assert!(refused.is_instance_of::<js_sys::Error>());
    assert_eq!(error_code(&refused), "CONNECTION_REFUSED");
    assert_eq!(get(&refused, "reasonCode").as_f64(), Some(0x85 as f64));
    assert_eq!(
        get(&refused, "name").as_string().as_deref(),
        Some("MqttError")
    );

    let options_error = connect(r#"{"protocolVersion": 3}"#).await.err().unwrap();
    assert_eq!(error_code(&options_error), "INVALID_ARGUMENT");

    // The WebSocket constructor throws for a malformed URL: a failed connection.
    let malformed: Promise = MqttClient::connect("ws://[", &JsValue::UNDEFINED).unchecked_into();
    let malformed = settle(malformed).await.unwrap_err();
    assert_eq!(error_code(&malformed), "CONNECT_FAILED");

    let client = connect(r#"{"clientId": "wbt-errors"}"#)
        .await
        .expect("connects");
    let bad_filter = settle(client.subscribe("a/#/b".into(), None))
        .await
        .unwrap_err();
    assert_eq!(error_code(&bad_filter), "INVALID_TOPIC");
    let bad_topic = settle(client.publish("a/+".into(), "x".into(), None))
        .await
        .unwrap_err();
    assert_eq!(error_code(&bad_topic), "INVALID_TOPIC");
    let bad_qos = settle(client.publish("a".into(), "x".into(), opts(r#"{"qos": 3}"#)))
        .await
        .unwrap_err();
    assert_eq!(error_code(&bad_qos), "INVALID_ARGUMENT");
    // The gateway announces a 64 KiB Maximum Packet Size in its CONNACK.
    let big = Uint8Array::new_with_length(100_000);
    let too_large = settle(client.publish("wbt/big".into(), big.into(), None))
        .await
        .unwrap_err();
    assert_eq!(error_code(&too_large), "PACKET_TOO_LARGE");

    settle(client.end()).await.unwrap();
    let closed = settle(client.publish("a".into(), "x".into(), None))
        .await
        .unwrap_err();
    assert_eq!(error_code(&closed), "CLOSED");
}

#[wasm_bindgen_test]
async fn a_frame_of_many_messages_is_one_batch() {
    let client = connect(r#"{"clientId": "wbt-batch"}"#)
        .await
        .expect("connects");
    let batches: Rc<RefCell<Vec<u32>>> = Rc::default();
    let seen = batches.clone();
    let on_batch = Closure::<dyn FnMut(Array)>::new(move |messages: Array| {
        seen.borrow_mut().push(messages.length());
    });
    client.on_messages(on_batch.as_ref().unchecked_ref::<Function>().clone());
    settle(client.subscribe("wbt/batch/#".into(), None))
        .await
        .unwrap();
    // 500 publishes in one task leave as one WebSocket message and come back coalesced.
    let promises: Vec<Promise> = (0..500)
        .map(|index| client.publish(format!("wbt/batch/{}", index % 4), "p".into(), None))
        .collect();
    for promise in promises {
        settle(promise).await.unwrap();
    }
    wait_for(5_000, "500 messages", || {
        batches.borrow().iter().sum::<u32>() == 500
    })
    .await;
    let frames = batches.borrow().len();
    assert!(frames < 500, "500 messages came in {frames} batches");
    settle(client.end()).await.unwrap();
}

/// The messages are built in support.js from tables; they must read as `ClientError`'s own
/// `Display` says, for every error, every detail it can carry and every reason code.
#[wasm_bindgen_test]
fn js_errors_read_as_the_rust_ones() {
    let mut errors = vec![
        ClientError::InvalidOptions("maximumPacketSize must be at least 1"),
        ClientError::CredentialsFailed,
        ClientError::ConnectFailed,
        ClientError::ConnectTimeout,
        ClientError::KeepAliveTimeout,
        ClientError::ConnectionLost,
        ClientError::Protocol("a second CONNACK on one connection"),
        ClientError::Malformed(ReasonCode::MalformedPacket),
        ClientError::InvalidArgument(EncodeProblem::FieldTooLong),
        ClientError::InvalidArgument(EncodeProblem::SubscriptionIdentifierTooLarge),
        ClientError::InvalidArgument(EncodeProblem::Other),
        ClientError::PacketTooLarge {
            size: 1_048_586,
            maximum: 65_536,
        },
        ClientError::QoSNotSupported {
            requested: 2,
            maximum: 1,
        },
        ClientError::QueueFull(1_000),
        ClientError::Closed,
    ];
    for error in [
        TopicError::Empty,
        TopicError::WildcardInName,
        TopicError::NullCharacter,
        TopicError::MultiLevelWildcardMisplaced,
        TopicError::SingleLevelWildcardMisplaced,
        TopicError::TooLong,
        TopicError::InvalidSharedSubscription,
    ] {
        errors.push(ClientError::InvalidTopic(error));
    }
    for code in ReasonCode::ALL {
        errors.extend([
            ClientError::refused(code, ProtocolVersion::V5),
            ClientError::ServerDisconnected(code),
            ClientError::SubscribeRefused(code),
            ClientError::UnsubscribeRefused(code),
            ClientError::PublishRefused(code),
            ClientError::Malformed(code),
        ]);
    }
    // A 3.1.1 CONNACK's return codes, shown as sent.
    for code in 1..=5 {
        let reason = ReasonCode::from_connect_return_code(code).unwrap();
        errors.push(ClientError::refused(reason, ProtocolVersion::V311));
    }
    for error in errors {
        let value = error_to_js(&error);
        assert!(value.is_instance_of::<js_sys::Error>());
        assert_eq!(
            get(&value, "name").as_string().as_deref(),
            Some("MqttError")
        );
        assert_eq!(error_code(&value), error.code(), "{error:?}");
        assert_eq!(
            get(&value, "message").as_string(),
            Some(error.to_string()),
            "{error:?}"
        );
        assert_eq!(
            get(&value, "reasonCode").as_f64(),
            error.reason_code().map(f64::from),
            "{error:?}"
        );
    }
}
