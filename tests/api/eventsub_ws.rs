//! The EventSub WebSocket transport (`chatpulse::twitch::eventsub_ws`,
//! twitch-protocol.md §6) over real sockets: against the simulator, bound to
//! a conduit shard with the project's own `TwitchClient`; and against a
//! scripted server for what the simulator never does (a reconnect that keeps
//! the session id, a silent socket, an invalid reconnect URL).

use std::collections::BTreeSet;
use std::time::Duration;

use chatpulse::twitch::client::Subscription;
use chatpulse::twitch::eventsub::{ChatMessageEvent, Event, Inbound, InboundKind, Subscription as Delivered};
use chatpulse::twitch::eventsub_ws::{self, WsEvent, WsSettings};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use twitch_sim::{ChatInput, Simulator};

use crate::helpers::{self, eventually};

const WAIT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------- the socket

/// A running `eventsub_ws::run` and what it reports.
struct Transport {
    events: mpsc::Receiver<WsEvent>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn transport(url: String, keepalive_timeout: Option<u32>) -> Transport {
    let settings = WsSettings {
        url,
        keepalive_timeout,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    };
    let (tx, events) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(eventsub_ws::run(settings, tx, shutdown.clone()));
    Transport { events, shutdown, task }
}

/// A `WsEvent::Message`: the typed message, as a webhook delivery's.
#[derive(Debug)]
struct Received {
    message_id: String,
    message_type: &'static str,
    subscription: Delivered,
    /// The chat event of a `channel.chat.message` notification.
    chat: Option<ChatMessageEvent>,
}

impl Transport {
    async fn next(&mut self) -> WsEvent {
        tokio::time::timeout(WAIT, self.events.recv()).await.expect("an event in time").expect("the transport runs")
    }

    async fn session(&mut self) -> String {
        match self.next().await {
            WsEvent::Session { session_id } => session_id,
            other => panic!("expected a Session, got {other:?}"),
        }
    }

    async fn message(&mut self) -> Received {
        let WsEvent::Message(message) = self.next().await else { panic!("expected a Message") };
        let Inbound { message_id, kind } = *message;
        match kind {
            InboundKind::Notification { subscription, event } => {
                let chat = match event {
                    Event::ChatMessage(chat) => Some(chat),
                    _ => None,
                };
                Received { message_id, message_type: "notification", subscription, chat }
            }
            InboundKind::Revocation { subscription } => {
                Received { message_id, message_type: "revocation", subscription, chat: None }
            }
        }
    }

    /// Nothing more is reported for a while (a window: absence has no signal).
    async fn quiet(&mut self) {
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(150), self.events.recv()).await {
            panic!("unexpected event {event:?}");
        }
    }

    /// Cancels, waits for `run` to return, and gives back whatever it
    /// reported meanwhile.
    async fn stop(mut self) -> Vec<WsEvent> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task).await.expect("run returns after shutdown").unwrap();
        let mut rest = Vec::new();
        while let Some(event) = self.events.recv().await {
            rest.push(event);
        }
        rest
    }
}

fn chat_text(received: &Received) -> String {
    received.chat.as_ref().expect("a chat message").message.text.clone()
}

// ---------------------------------------------------------- the simulator

/// A simulator with a conduit of one shard, a streamer who granted
/// `channel:bot`, and the bot account.
struct Twitch {
    sim: Simulator,
    base: String,
    conduit: String,
    streamer: String,
    bot: String,
    /// The simulator (running while this lives) and our Helix client.
    running: helpers::Twitch,
}

async fn twitch() -> Twitch {
    let running = helpers::Twitch::start().await;
    let conduit = running.client.create_conduit(1).await.unwrap().id;
    let (sim, base, streamer, bot) =
        (running.sim.clone(), running.base.clone(), running.streamer().id, running.bot.id.clone());
    Twitch { sim, base, conduit, streamer, bot, running }
}

impl Twitch {
    fn ws_url(&self, query: &str) -> String {
        format!("{}/ws{query}", self.base.replace("http://", "ws://"))
    }

    /// What the owner does with a `Session`: Update Conduit Shards, errors checked.
    async fn bind(&self, session_id: &str) {
        let update = self.running.client.update_websocket_shard(&self.conduit, "0", session_id).await.unwrap();
        assert!(update.errors.is_empty(), "bind errors: {:?}", update.errors);
        assert_eq!(update.data[0].status, "enabled");
        assert_eq!(update.data[0].transport.method, "websocket");
        assert_eq!(update.data[0].transport.session_id.as_deref(), Some(session_id));
    }

    async fn subscribe_chat(&self) -> Subscription {
        let condition = json!({"broadcaster_user_id": self.streamer, "user_id": self.bot});
        self.running
            .client
            .create_conduit_subscription("channel.chat.message", condition, &self.conduit)
            .await
            .unwrap()
            .subscription
    }

    /// Types a chat message; returns its chat message id.
    async fn chat(&self, text: &str) -> String {
        let input = ChatInput {
            broadcaster_user_id: self.streamer.clone(),
            chatter_user_id: self.bot.clone(),
            chatter_login: None,
            text: text.into(),
        };
        self.sim.post_chat(input).await.unwrap()
    }

    async fn shard(&self) -> chatpulse::twitch::client::Shard {
        self.running.client.shards(&self.conduit).await.unwrap().remove(0)
    }
}

#[tokio::test]
async fn a_welcomed_session_is_bound_and_gets_chat_and_revocations_then_closes_cleanly() {
    let t = twitch().await;
    let mut ws = transport(t.ws_url(""), Some(30));
    let session_id = ws.session().await;
    let sessions = t.sim.websocket_sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], session_id.as_str());
    assert_eq!(sessions[0]["keepalive_timeout_seconds"], 30, "asked for with ?keepalive_timeout_seconds=");
    t.bind(&session_id).await;
    let sub = t.subscribe_chat().await;

    let chat_id = t.chat("YES pizza").await;
    let got = ws.message().await;
    assert_eq!(got.message_type, "notification");
    assert_eq!(got.subscription.kind, "channel.chat.message");
    let delivered = t.sim.deliveries();
    assert!(
        delivered.iter().any(|d| d.message_id == got.message_id && d.callback == format!("websocket:{session_id}")),
        "metadata.message_id of the frame the simulator wrote: {delivered:?}"
    );
    // Parsed exactly as a webhook body is: the same subscription and event.
    assert_eq!(got.subscription.id, sub.id);
    assert_eq!(got.subscription.status, "enabled");
    assert_eq!(got.subscription.condition["broadcaster_user_id"], t.streamer.as_str());
    let event = got.chat.as_ref().expect("a chat event");
    assert_eq!(event.message_id, chat_id);
    assert_eq!(event.broadcaster_user_id.as_str(), t.streamer);
    assert_eq!(event.chatter_user_id.as_str(), t.bot);
    assert_eq!(chat_text(&got), "YES pizza");

    t.sim.revoke_subscription(&sub.id, "authorization_revoked").await.unwrap();
    let revoked = ws.message().await;
    assert_eq!(revoked.message_type, "revocation");
    assert_eq!(revoked.subscription.kind, "channel.chat.message");
    assert_eq!(revoked.subscription.id, sub.id);
    assert_eq!(revoked.subscription.status, "authorization_revoked");
    assert!(revoked.chat.is_none());
    ws.quiet().await;

    let rest = ws.stop().await;
    assert!(rest.is_empty(), "a shutdown is not a loss: {rest:?}");
    assert!(eventually(WAIT, || async { t.sim.websocket_sessions().is_empty() }).await, "the socket is closed");
    assert_eq!(t.shard().await.status, "websocket_disconnected");
}

#[tokio::test]
async fn session_reconnect_is_followed_without_losing_a_message() {
    let t = twitch().await;
    let mut ws = transport(t.ws_url(""), None);
    let old_id = ws.session().await;
    t.bind(&old_id).await;
    t.subscribe_chat().await;
    t.chat("before").await;
    assert_eq!(chat_text(&ws.message().await), "before");

    // Chat keeps flowing while the simulator moves the session.
    let chatter = {
        let sim = t.sim.clone();
        let (streamer, bot) = (t.streamer.clone(), t.bot.clone());
        tokio::spawn(async move {
            for i in 0..30 {
                let input = ChatInput {
                    broadcaster_user_id: streamer.clone(),
                    chatter_user_id: bot.clone(),
                    chatter_login: None,
                    text: format!("during {i}"),
                };
                sim.post_chat(input).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let notifications = || t.sim.deliveries().iter().filter(|d| d.message_type == "notification").count();
    assert!(eventually(WAIT, || async { notifications() >= 2 }).await, "chat is flowing");
    t.sim.reconnect_websocket(&old_id).unwrap();
    chatter.await.unwrap();

    let mut texts = Vec::new();
    let mut sessions = Vec::new();
    while texts.len() < 30 {
        match ws.next().await {
            WsEvent::Message(message) => match message.kind {
                InboundKind::Notification { event: Event::ChatMessage(chat), .. } => texts.push(chat.message.text),
                other => panic!("only chat was sent: {other:?}"),
            },
            WsEvent::Session { session_id } => sessions.push(session_id),
            other @ WsEvent::Disconnected { .. } => panic!("a reconnect is not a loss: {other:?}"),
        }
    }
    let expected: BTreeSet<String> = (0..30).map(|i| format!("during {i}")).collect();
    assert_eq!(texts.iter().cloned().collect::<BTreeSet<_>>(), expected, "every message, once");
    assert_eq!(texts.len(), 30);

    // The simulator's reconnect welcome carries a new id (Twitch's keeps
    // it): reported once, for the owner to compare; the binding carried over.
    let shard = t.shard().await;
    assert_eq!(shard.status, "enabled");
    let new_id = shard.transport.session_id.clone().unwrap();
    assert_ne!(new_id, old_id);
    assert_eq!(sessions, std::slice::from_ref(&new_id));
    t.bind(&new_id).await;
    assert!(
        eventually(WAIT, || async {
            let live = t.sim.websocket_sessions();
            live.len() == 1 && live[0]["id"] == new_id.as_str()
        })
        .await,
        "the old socket was closed: {:?}",
        t.sim.websocket_sessions()
    );

    t.chat("after").await;
    assert_eq!(chat_text(&ws.message().await), "after");
    ws.quiet().await;
    assert!(ws.stop().await.is_empty());
}

#[tokio::test]
async fn a_session_closed_by_the_server_is_reported_and_replaced() {
    let t = twitch().await;
    // The simulator's 10 s "connection unused" window, shortened.
    let mut ws = transport(t.ws_url("?sim_unused_timeout_ms=800"), None);
    let first = ws.session().await;
    match ws.next().await {
        WsEvent::Disconnected { code, reason } => {
            assert_eq!(code, Some(4003));
            assert_eq!(reason, "connection unused");
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    let second = ws.session().await;
    assert_ne!(first, second, "a new session from scratch");
    t.bind(&second).await;
    t.subscribe_chat().await;
    t.chat("hello again").await;
    assert_eq!(chat_text(&ws.message().await), "hello again");
    assert!(ws.stop().await.is_empty());
}

// ------------------------------------------------------- a scripted server

type ServerSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Accepts WebSocket connections on loopback and hands each (with the
/// request's path and query) to the test, which plays Twitch by hand.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback type
async fn scripted_server() -> (String, mpsc::UnboundedReceiver<(String, ServerSocket)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("ws://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut uri = String::new();
            let accepted = tokio_tungstenite::accept_hdr_async(
                stream,
                |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                 response: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    uri = request.uri().to_string();
                    Ok(response)
                },
            )
            .await;
            if let Ok(socket) = accepted
                && tx.send((uri, socket)).is_err()
            {
                return;
            }
        }
    });
    (base, rx)
}

async fn accepted(connections: &mut mpsc::UnboundedReceiver<(String, ServerSocket)>) -> (String, ServerSocket) {
    tokio::time::timeout(WAIT, connections.recv()).await.expect("a connection in time").unwrap()
}

fn frame(message_type: &str, extra: Value, payload: Value) -> Message {
    let mut metadata = json!({"message_id": uuid::Uuid::new_v4().to_string(), "message_type": message_type,
        "message_timestamp": "2026-03-14T18:00:01.221847306Z"});
    metadata.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    Message::Text(json!({"metadata": metadata, "payload": payload}).to_string().into())
}

fn welcome(id: &str, keepalive: u64) -> Message {
    frame(
        "session_welcome",
        json!({}),
        json!({"session": {"id": id, "status": "connected", "connected_at": "2026-03-14T18:00:01.204518733Z",
            "keepalive_timeout_seconds": keepalive, "reconnect_url": null, "recovery_url": null}}),
    )
}

fn reconnect(id: &str, url: &str) -> Message {
    frame(
        "session_reconnect",
        json!({}),
        json!({"session": {"id": id, "status": "reconnecting", "keepalive_timeout_seconds": null,
            "reconnect_url": url, "connected_at": "2026-03-14T18:00:01.204518733Z"}}),
    )
}

fn notification(text: &str) -> Message {
    frame(
        "notification",
        json!({"subscription_type": "channel.chat.message", "subscription_version": "1"}),
        json!({
            "subscription": {"id": "sub-1", "status": "enabled", "type": "channel.chat.message", "version": "1",
                "condition": {"broadcaster_user_id": "41245072", "user_id": "99887766"}},
            "event": {"broadcaster_user_id": "41245072", "chatter_user_id": "73310458", "message_id": text,
                "message": {"text": text}},
        }),
    )
}

/// After a loss: the next connection goes to the base URL, its welcome is
/// reported, and stopping closes it with 1000.
async fn starts_afresh_at_the_base_url(
    mut ws: Transport,
    connections: &mut mpsc::UnboundedReceiver<(String, ServerSocket)>,
) {
    let (uri, mut fresh) = accepted(connections).await;
    assert_eq!(uri, "/ws", "from scratch, at the base URL");
    fresh.send(welcome("B", 10)).await.unwrap();
    assert_eq!(ws.session().await, "B");
    let closing = tokio::spawn(async move { client_close_code(&mut fresh).await });
    assert!(ws.stop().await.is_empty());
    assert_eq!(closing.await.unwrap(), Some(1000));
}

/// Reads what the client sends until its Close; panics on a data frame.
async fn client_close_code(socket: &mut ServerSocket) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await.expect("the client closes in time") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(Message::Text(_) | Message::Binary(_))) => panic!("the client sent a data frame"),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn a_reconnect_that_keeps_the_session_id_is_followed_silently() {
    let (base, mut connections) = scripted_server().await;
    let mut ws = transport(format!("{base}/ws"), Some(30));
    let (uri, mut old) = accepted(&mut connections).await;
    assert_eq!(uri, "/ws?keepalive_timeout_seconds=30");
    old.send(welcome("S1", 30)).await.unwrap();
    assert_eq!(ws.session().await, "S1");
    old.send(notification("one")).await.unwrap();
    let one = ws.message().await;
    assert_eq!(chat_text(&one), "one");
    assert_eq!(one.subscription.kind, "channel.chat.message");
    assert!(!one.message_id.is_empty());

    let reconnect_url = format!("{base}/ws?challenge=c0ffee&id=S1");
    old.send(reconnect("S1", &reconnect_url)).await.unwrap();
    let (uri, mut new) = accepted(&mut connections).await;
    assert_eq!(uri, "/ws?challenge=c0ffee&id=S1", "the reconnect URL, unchanged");
    old.send(notification("two")).await.unwrap();
    new.send(welcome("S1", 30)).await.unwrap();
    new.send(notification("three")).await.unwrap();
    // Already in flight on the old socket when the client switched.
    old.send(notification("four")).await.unwrap();
    assert_eq!(client_close_code(&mut old).await, Some(1000), "the old socket is closed normally");

    let mut texts = BTreeSet::new();
    for _ in 0..3 {
        texts.insert(chat_text(&ws.message().await));
    }
    assert_eq!(texts, BTreeSet::from(["four", "three", "two"].map(String::from)), "nothing lost, no new Session");
    ws.quiet().await;
    let closing = tokio::spawn(async move { client_close_code(&mut new).await });
    assert!(ws.stop().await.is_empty());
    assert_eq!(closing.await.unwrap(), Some(1000), "shutdown closes with 1000");
}

#[tokio::test]
async fn a_silent_socket_is_declared_dead_and_replaced() {
    let (base, mut connections) = scripted_server().await;
    let mut ws = transport(format!("{base}/ws"), None);
    let (uri, mut silent) = accepted(&mut connections).await;
    assert_eq!(uri, "/ws");
    silent.send(welcome("A", 1)).await.unwrap();
    assert_eq!(ws.session().await, "A");
    // Pings keep the TCP connection busy but do not count as keepalives.
    silent.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    match ws.next().await {
        WsEvent::Disconnected { code, reason } => {
            assert_eq!(code, None);
            assert!(reason.contains("keepalive"), "{reason}");
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert_eq!(client_close_code(&mut silent).await, Some(1000));
    starts_afresh_at_the_base_url(ws, &mut connections).await;
}

#[tokio::test]
async fn an_invalid_reconnect_url_falls_back_to_the_base_url() {
    let (base, mut connections) = scripted_server().await;
    let mut ws = transport(format!("{base}/ws"), None);
    let (_, mut old) = accepted(&mut connections).await;
    old.send(welcome("A", 10)).await.unwrap();
    assert_eq!(ws.session().await, "A");
    old.send(reconnect("A", &format!("{base}/ws?challenge=stale&id=A"))).await.unwrap();
    let (uri, mut bad) = accepted(&mut connections).await;
    assert_eq!(uri, "/ws?challenge=stale&id=A");
    let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 4007.into(),
        reason: "invalid reconnect url".into(),
    };
    bad.close(Some(close)).await.unwrap();
    match ws.next().await {
        WsEvent::Disconnected { code, reason } => {
            assert_eq!(code, Some(4007));
            assert!(reason.contains("invalid reconnect url"), "{reason}");
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert_eq!(client_close_code(&mut old).await, Some(1000), "the old socket is given up");
    starts_afresh_at_the_base_url(ws, &mut connections).await;
}

#[tokio::test]
async fn a_wss_url_goes_through_rustls_and_failures_are_retried_not_fatal() {
    // Accepts TCP and hangs up: the TLS handshake fails after the client
    // config (and its crypto provider) is built.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = attempts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let mut ws = transport(format!("wss://{addr}/ws"), None);
    assert!(
        eventually(WAIT, || async { attempts.load(std::sync::atomic::Ordering::SeqCst) >= 2 }).await,
        "retried with backoff"
    );
    ws.quiet().await;
    assert!(ws.stop().await.is_empty(), "failed attempts are not Disconnected");
}
