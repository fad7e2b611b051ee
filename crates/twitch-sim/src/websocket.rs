//! The EventSub WebSocket transport (§6): `GET /ws` welcomes with a fresh
//! session, sends keepalives and Pings, closes unused sessions (4003),
//! inbound data (4001), silent clients (4002), and runs the reconnect flow
//! (4004 / 4007). A session is put to use either as a conduit shard (Update
//! Conduit Shards, app token) or by plain WebSocket subscriptions (Create
//! EventSub Subscription with its `session_id`, user token). When it ends,
//! its shard and its subscriptions get the matching `websocket_*` status; a
//! reconnect carries both over to the new session.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::state::{ShardTransport, State as SimState, SubTransport};
use super::util::{Params, random_mixed, random_token};
use super::{SimError, Simulator, delivery};

/// How long a session may stay unbound before 4003 (Twitch: 10 s).
const UNUSED_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the old socket lives after `session_reconnect` (Twitch: 30 s).
const RECONNECT_GRACE: Duration = Duration::from_secs(30);
/// Ping period; a Ping still unanswered at the next one closes with 4002.
const PING_EVERY: Duration = Duration::from_secs(30);

/// What the rest of the simulator tells a socket task.
#[derive(Debug)]
pub(crate) enum WsOut {
    /// A data frame to send (welcome excluded: the task sends that itself).
    Text(String),
    /// A `session_reconnect` was sent: start the grace period.
    Reconnecting,
    /// A new connection took over this session's bindings.
    Superseded,
}

#[derive(Debug)]
pub(crate) struct WsSession {
    pub connected_at: String,
    pub keepalive_seconds: u64,
    pub tx: mpsc::UnboundedSender<WsOut>,
    /// Bound to a conduit shard or given a subscription at least once (else 4003).
    pub used: bool,
    /// Bound to a conduit shard: then it takes no plain subscriptions.
    pub shard_bound: bool,
    /// The challenge a reconnecting client must present, once reconnect was requested.
    pub reconnect_challenge: Option<String>,
    pub superseded: bool,
}

/// Why a socket ended, and the shard status that follows.
#[derive(Debug, Clone, Copy)]
enum Exit {
    Closed,
    Shutdown,
    Close { code: u16, reason: &'static str, status: &'static str },
}

fn metadata(message_type: &str, timestamp: String) -> Value {
    json!({
        "message_id": uuid::Uuid::new_v4().to_string(),
        "message_type": message_type,
        "message_timestamp": timestamp,
    })
}

/// What a notification or revocation frame says about itself.
pub(crate) struct FrameHeader<'a> {
    pub message_id: &'a str,
    pub message_type: &'a str,
    pub timestamp: String,
    pub kind: &'a str,
    pub version: &'a str,
}

/// `{"metadata", "payload"}` for a notification or revocation: the payload is
/// exactly the webhook body.
pub(crate) fn frame(header: FrameHeader<'_>, body: &[u8]) -> String {
    let FrameHeader { message_id, message_type, timestamp, kind, version } = header;
    let metadata = json!({
        "message_id": message_id,
        "message_type": message_type,
        "message_timestamp": timestamp,
        "subscription_type": kind,
        "subscription_version": version,
    });
    format!("{{\"metadata\":{metadata},\"payload\":{}}}", String::from_utf8_lossy(body))
}

fn websocket_base(public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    }
}

/// A session's timings: Twitch's, or shortened by a test.
#[derive(Debug, Clone, Copy)]
struct Timings {
    keepalive: u64,
    /// Until 4003 if the session is not put to use.
    unused: Duration,
    /// From `session_reconnect` until 4004 if the old socket is still open.
    reconnect_grace: Duration,
}

/// `GET /ws[?keepalive_timeout_seconds=10..600]`. `challenge` + `id` come
/// from a reconnect URL. `sim_unused_timeout_ms` shortens the 10 s unused
/// window and `sim_reconnect_grace_ms` the 30 s reconnect grace (tests).
pub(crate) async fn upgrade(State(sim): State<Simulator>, RawQuery(query): RawQuery, ws: WebSocketUpgrade) -> Response {
    let params = Params::parse(query.as_deref());
    let keepalive = params
        .get("keepalive_timeout_seconds")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map_or(10, |v| v.clamp(10, 600));
    let millis = |key: &str, default: Duration| {
        params.get(key).and_then(|v| v.parse::<u64>().ok()).map_or(default, Duration::from_millis)
    };
    let timings = Timings {
        keepalive: u64::try_from(keepalive).unwrap_or(10),
        unused: millis("sim_unused_timeout_ms", UNUSED_TIMEOUT),
        reconnect_grace: millis("sim_reconnect_grace_ms", RECONNECT_GRACE),
    };
    let reconnect = match (params.get("challenge"), params.get("id")) {
        (Some(challenge), Some(id)) => Some((challenge.to_owned(), id.to_owned())),
        (None, None) => None,
        _ => Some((String::new(), String::new())),
    };
    ws.on_upgrade(move |socket| run(sim, socket, timings, reconnect))
}

/// Registers a session; with a reconnect, takes over the old session's shard
/// bindings, its subscriptions and its keepalive setting (§6.5: the
/// reconnect URL is used unchanged, and the session carries over). Returns
/// whether the session is already in use and its keepalive; `Err` for an
/// invalid or expired reconnect URL.
fn register(
    state: &mut SimState,
    id: &str,
    session: WsSession,
    reconnect: Option<(String, String)>,
) -> Result<(bool, u64), ()> {
    let mut used = false;
    let mut shard_bound = false;
    let mut keepalive = session.keepalive_seconds;
    if let Some((challenge, old_id)) = reconnect {
        let old = state
            .sessions
            .get_mut(&old_id)
            .filter(|s| !s.superseded && !challenge.is_empty() && s.reconnect_challenge.as_deref() == Some(&challenge))
            .ok_or(())?;
        old.superseded = true;
        used = old.used;
        shard_bound = old.shard_bound;
        keepalive = old.keepalive_seconds;
        let _ = old.tx.send(WsOut::Superseded);
        for shard in state.conduits.iter_mut().flat_map(|c| c.shards.iter_mut()) {
            if let ShardTransport::WebSocket { session_id, connected_at, .. } = &mut shard.transport
                && *session_id == old_id
            {
                *session_id = id.to_owned();
                connected_at.clone_from(&session.connected_at);
            }
        }
        for sub in &mut state.subscriptions {
            if let SubTransport::WebSocket { session_id, connected_at, .. } = &mut sub.transport
                && *session_id == old_id
            {
                *session_id = id.to_owned();
                connected_at.clone_from(&session.connected_at);
            }
        }
    }
    state.sessions.insert(id.to_owned(), WsSession { used, shard_bound, keepalive_seconds: keepalive, ..session });
    Ok((used, keepalive))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

async fn run(sim: Simulator, mut socket: WebSocket, timings: Timings, reconnect: Option<(String, String)>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = format!("AgoQ{}", random_mixed(32));
    let connected_at = sim.now_nanos();
    let session = WsSession {
        connected_at: connected_at.clone(),
        keepalive_seconds: timings.keepalive,
        tx,
        used: false,
        shard_bound: false,
        reconnect_challenge: None,
        superseded: false,
    };
    let registered = register(&mut sim.state(), &id, session, reconnect);
    let Ok((used, keepalive)) = registered else {
        close(&mut socket, 4007, "invalid reconnect url").await;
        return;
    };
    let welcome = json!({
        "metadata": metadata("session_welcome", sim.now_nanos()),
        "payload": {"session": {
            "id": id, "status": "connected", "connected_at": connected_at, "keepalive_timeout_seconds": keepalive,
            "reconnect_url": null, "recovery_url": null,
        }},
    });
    let exit = if socket.send(Message::Text(welcome.to_string().into())).await.is_err() {
        Exit::Closed
    } else {
        let timings = Timings { keepalive, ..timings };
        let unused_deadline = (!used).then(|| Instant::now() + timings.unused);
        serve_session(&sim, &mut socket, &id, &mut rx, timings, unused_deadline).await
    };
    if let Exit::Close { code, reason, .. } = exit {
        close(&mut socket, code, reason).await;
    } else if matches!(exit, Exit::Shutdown) {
        close(&mut socket, 1001, "server shutting down").await;
    }
    disconnected(&sim, &id, exit);
}

async fn serve_session(
    sim: &Simulator,
    socket: &mut WebSocket,
    id: &str,
    rx: &mut mpsc::UnboundedReceiver<WsOut>,
    timings: Timings,
    mut unused_deadline: Option<Instant>,
) -> Exit {
    let keepalive = timings.keepalive;
    let closing = sim.closing();
    let mut last_sent = Instant::now();
    let mut next_ping = Instant::now() + PING_EVERY;
    let mut awaiting_pong = false;
    let mut grace_deadline: Option<Instant> = None;
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
    loop {
        let keepalive_at = tokio::time::Instant::from_std(last_sent + Duration::from_secs(keepalive));
        let unused_at = unused_deadline.map_or_else(far, tokio::time::Instant::from_std);
        let grace_at = grace_deadline.map_or_else(far, tokio::time::Instant::from_std);
        tokio::select! {
            () = closing.cancelled() => return Exit::Shutdown,
            command = rx.recv() => match command {
                Some(WsOut::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return Exit::Closed;
                    }
                    last_sent = Instant::now();
                }
                Some(WsOut::Reconnecting | WsOut::Superseded) => {
                    grace_deadline.get_or_insert_with(|| Instant::now() + timings.reconnect_grace);
                }
                None => return Exit::Shutdown,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_) | Ok(Message::Close(_))) => return Exit::Closed,
                Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                    return Exit::Close {
                        code: 4001, reason: "client sent inbound traffic", status: "websocket_received_inbound_traffic",
                    };
                }
            },
            () = tokio::time::sleep_until(keepalive_at) => {
                let keepalive = json!({"metadata": metadata("session_keepalive", sim.now_nanos()), "payload": {}});
                if socket.send(Message::Text(keepalive.to_string().into())).await.is_err() {
                    return Exit::Closed;
                }
                last_sent = Instant::now();
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(next_ping)) => {
                if awaiting_pong {
                    return Exit::Close { code: 4002, reason: "client failed ping-pong", status: "websocket_failed_ping_pong" };
                }
                if socket.send(Message::Ping(random_token(8).into_bytes().into())).await.is_err() {
                    return Exit::Closed;
                }
                awaiting_pong = true;
                next_ping += PING_EVERY;
            }
            () = tokio::time::sleep_until(unused_at), if unused_deadline.is_some() => {
                if sim.state().sessions.get(id).is_some_and(|s| s.used) {
                    unused_deadline = None;
                } else {
                    return Exit::Close { code: 4003, reason: "connection unused", status: "websocket_disconnected" };
                }
            }
            () = tokio::time::sleep_until(grace_at), if grace_deadline.is_some() => {
                return Exit::Close {
                    code: 4004, reason: "reconnect grace time expired", status: "websocket_failed_to_reconnect",
                };
            }
        }
    }
}

/// The session is gone: shards still bound to it are disabled (no replay)
/// and `conduit.shard.disabled` is emitted for each; its plain
/// subscriptions get the same status and are deleted a minute later
/// (`clock::sweep`). No revocation is sent: there is no socket left to send
/// it on.
fn disconnected(sim: &Simulator, id: &str, exit: Exit) {
    let status = match exit {
        Exit::Close { status, .. } => status,
        Exit::Closed | Exit::Shutdown => "websocket_disconnected",
    };
    let now = sim.now();
    let disconnected_at = super::util::rfc3339_nanos(now);
    let mut events = Vec::new();
    {
        let mut state = sim.state();
        state.sessions.remove(id);
        for sub in &mut state.subscriptions {
            let SubTransport::WebSocket { session_id, disconnected_at: gone, .. } = &mut sub.transport else {
                continue;
            };
            if session_id != id || sub.status != "enabled" {
                continue;
            }
            *gone = Some(disconnected_at.clone());
            sub.status = status.into();
            sub.disabled_at = Some(now);
        }
        for conduit in &mut state.conduits {
            for (index, shard) in conduit.shards.iter_mut().enumerate() {
                let ShardTransport::WebSocket { session_id, disconnected_at: gone, .. } = &mut shard.transport else {
                    continue;
                };
                if session_id != id {
                    continue;
                }
                *gone = Some(disconnected_at.clone());
                let was_enabled = shard.status == "enabled";
                shard.status = status.into();
                if was_enabled {
                    let event = json!({
                        "conduit_id": conduit.id, "shard_id": index.to_string(), "status": status,
                        "transport": shard.transport_json(),
                    });
                    events.push((conduit.client_id.clone(), conduit.id.clone(), event));
                }
            }
        }
    }
    sim.sweep();
    for (client_id, conduit_id, event) in events {
        delivery::emit_shard_disabled(sim, &client_id, &conduit_id, &event);
    }
}

impl Simulator {
    /// Starts the reconnect flow for a WebSocket session: sends
    /// `session_reconnect`; the client must connect to the returned URL
    /// within 30 s (else 4004). Also `POST /sim/websocket/{id}/reconnect`.
    pub fn reconnect_websocket(&self, session_id: &str) -> Result<String, SimError> {
        let base = websocket_base(&self.config().public_url);
        let mut state = self.state();
        let session = state
            .sessions
            .get_mut(session_id)
            .filter(|s| !s.superseded)
            .ok_or_else(|| SimError::NotFound(format!("websocket session {session_id}")))?;
        let challenge = random_token(24);
        session.reconnect_challenge = Some(challenge.clone());
        let url = format!("{base}/ws?challenge={challenge}&id={session_id}");
        let message = json!({
            "metadata": metadata("session_reconnect", super::util::rfc3339_nanos(self.now())),
            "payload": {"session": {
                "id": session_id, "status": "reconnecting", "keepalive_timeout_seconds": null,
                "reconnect_url": url, "connected_at": session.connected_at,
            }},
        });
        let _ = session.tx.send(WsOut::Text(message.to_string()));
        let _ = session.tx.send(WsOut::Reconnecting);
        Ok(url)
    }

    /// Connected EventSub WebSocket sessions.
    pub fn websocket_sessions(&self) -> Vec<Value> {
        let state = self.state();
        let mut sessions: Vec<Value> = state
            .sessions
            .iter()
            .map(|(id, s)| {
                json!({"id": id, "connected_at": s.connected_at, "keepalive_timeout_seconds": s.keepalive_seconds,
                    "bound": s.used, "shard_bound": s.shard_bound, "superseded": s.superseded})
            })
            .collect();
        sessions.sort_by(|a, b| a["connected_at"].as_str().cmp(&b["connected_at"].as_str()));
        sessions
    }
}
