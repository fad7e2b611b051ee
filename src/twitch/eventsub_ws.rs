//! The EventSub WebSocket transport of a conduit shard (twitch-protocol.md §6),
//! client side: holds one session open, reports it for binding (§3.7),
//! forwards notifications and revocations, watches keepalives, follows
//! `session_reconnect`, and starts over with backoff when the connection is
//! lost. It never sends a data frame (§6.4: that closes with 4001); Pings are
//! answered by tungstenite as long as the socket is read.
//!
//! Binding the session to the shard and handling the messages is the owner's
//! job: [`run`] reports [`WsEvent`]s on a channel.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::eventsub::{self, Inbound, Message as EventSubMessage};

/// Twitch's EventSub WebSocket endpoint (§6.1).
pub const TWITCH_EVENTSUB_WS_URL: &str = "wss://eventsub.wss.twitch.tv/ws";

/// Twitch's keepalive when none is asked for (§6.1).
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);
/// Connecting (TCP, TLS, upgrade) plus waiting for the welcome.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Our close handshake (1000), and flushing our answer to the server's.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the old socket is still read after a reconnect's welcome, for
/// messages already on their way.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A session that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// The smallest reconnect delay, whatever the settings say (no hot loop).
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// What the socket reports to its owner.
#[derive(Debug)]
pub enum WsEvent {
    /// A session is welcomed and needs binding to the shard (the first connect, or any
    /// reconnect from scratch, or a reconnect URL whose welcome carries a different id).
    /// The owner must bind it within the 10 s window (Update Conduit Shards).
    Session { session_id: String },
    /// A notification or revocation, parsed like a webhook delivery (its
    /// `payload` is exactly a webhook body).
    Message(Box<Inbound>),
    /// The connection was lost (close code if any, reason); a reconnect from scratch follows after backoff.
    Disconnected { code: Option<u16>, reason: String },
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Base URL, e.g. wss://eventsub.wss.twitch.tv/ws (tests: ws://127.0.0.1:PORT/ws).
    pub url: String,
    /// Asked for with ?keepalive_timeout_seconds= (10..600), None = Twitch default.
    pub keepalive_timeout: Option<u32>,
    /// Backoff for reconnects from scratch: starts at `backoff_min`, doubles to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for WsSettings {
    /// Twitch's endpoint and keepalive; reconnects after 1 s, 2 s, … up to 60 s.
    fn default() -> Self {
        Self {
            url: TWITCH_EVENTSUB_WS_URL.into(),
            keepalive_timeout: None,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

// ------------------------------------------------------------------ frames

/// The session object of a welcome or `session_reconnect` (§6.3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    #[serde(default)]
    pub status: String,
    /// Set in a welcome, null in a `session_reconnect`.
    #[serde(default)]
    pub keepalive_timeout_seconds: Option<u64>,
    /// Set in a `session_reconnect`, null in a welcome.
    #[serde(default)]
    pub reconnect_url: Option<String>,
}

/// One data frame from the server, by `metadata.message_type` (§6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Welcome {
        message_id: String,
        session: SessionInfo,
    },
    Keepalive {
        message_id: String,
    },
    /// `payload` is the raw JSON of `payload`: the webhook body.
    Notification {
        message_id: String,
        subscription_type: Option<String>,
        payload: String,
    },
    Reconnect {
        message_id: String,
        session: SessionInfo,
    },
    /// `payload` is the raw JSON of `payload` (`{"subscription": …}`).
    Revocation {
        message_id: String,
        subscription_type: Option<String>,
        payload: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON, or missing what its type requires. Carries serde's error,
    /// never the frame itself.
    #[error("malformed EventSub frame: {0}")]
    Malformed(String),
    /// A `message_type` this client does not know (ignored, but reported).
    #[error("unknown EventSub message type {0:?}")]
    UnknownType(String),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    metadata: Metadata,
    // `RawValue` keeps the payload byte for byte (serde_json's `raw_value`
    // feature, which axum's `json` feature turns on).
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Metadata {
    message_id: String,
    message_type: String,
    #[serde(default)]
    subscription_type: Option<String>,
}

#[derive(Deserialize)]
struct SessionPayload {
    session: SessionInfo,
}

impl Frame {
    /// Parses one text frame. Unknown fields are ignored.
    pub fn parse(text: &str) -> Result<Frame, FrameError> {
        let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
        let Metadata { message_id, message_type, subscription_type } = envelope.metadata;
        let session = |payload: Option<&RawValue>| -> Result<SessionInfo, FrameError> {
            let payload = payload.ok_or_else(|| FrameError::Malformed("payload is missing".into()))?;
            serde_json::from_str::<SessionPayload>(payload.get())
                .map(|p| p.session)
                .map_err(|e| FrameError::Malformed(format!("payload.session: {e}")))
        };
        let raw = |payload: Option<&RawValue>| -> Result<String, FrameError> {
            payload.map(|p| p.get().to_owned()).ok_or_else(|| FrameError::Malformed("payload is missing".into()))
        };
        match message_type.as_str() {
            "session_welcome" => Ok(Frame::Welcome { message_id, session: session(envelope.payload)? }),
            "session_keepalive" => Ok(Frame::Keepalive { message_id }),
            "notification" => {
                Ok(Frame::Notification { message_id, subscription_type, payload: raw(envelope.payload)? })
            }
            "session_reconnect" => Ok(Frame::Reconnect { message_id, session: session(envelope.payload)? }),
            "revocation" => Ok(Frame::Revocation { message_id, subscription_type, payload: raw(envelope.payload)? }),
            _ => Err(FrameError::UnknownType(message_type)),
        }
    }

    pub fn message_id(&self) -> &str {
        match self {
            Frame::Welcome { message_id, .. }
            | Frame::Keepalive { message_id }
            | Frame::Notification { message_id, .. }
            | Frame::Reconnect { message_id, .. }
            | Frame::Revocation { message_id, .. } => message_id,
        }
    }

    /// `metadata.message_type` of this frame.
    pub fn message_type(&self) -> &'static str {
        match self {
            Frame::Welcome { .. } => "session_welcome",
            Frame::Keepalive { .. } => "session_keepalive",
            Frame::Notification { .. } => "notification",
            Frame::Reconnect { .. } => "session_reconnect",
            Frame::Revocation { .. } => "revocation",
        }
    }
}

// ------------------------------------------------------------ small rules

/// Reconnect delays: `min`, doubling up to `max`, back to `min` on [`Backoff::reset`].
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(MIN_BACKOFF);
        let max = max.max(min);
        Self { min, max, next: min }
    }

    /// The delay to wait now; the following one is twice as long (capped).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The URL to connect to from scratch: `base` plus
/// `keepalive_timeout_seconds` (clamped to 10..600) when one is asked for.
pub fn connect_url(base: &str, keepalive_timeout: Option<u32>) -> String {
    let Some(seconds) = keepalive_timeout else {
        return base.to_owned();
    };
    let seconds = seconds.clamp(10, 600);
    let separator = match base.rfind('?') {
        None => "?",
        Some(i) if i + 1 == base.len() || base.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{base}{separator}keepalive_timeout_seconds={seconds}")
}

/// How long the socket may stay silent before it counts as dead: the
/// session's keepalive plus a margin (half of it, within 1..5 s).
pub fn watchdog_period(keepalive_seconds: Option<u64>) -> Duration {
    let keepalive = keepalive_seconds.filter(|s| *s > 0).map_or(DEFAULT_KEEPALIVE, Duration::from_secs);
    keepalive + (keepalive / 2).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

// ----------------------------------------------------------------- socket

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Opening = Pin<Box<dyn Future<Output = Result<(Socket, SessionInfo), Lost>> + Send>>;

/// Why a connection ended (or never started).
#[derive(Debug)]
struct Lost {
    code: Option<u16>,
    reason: String,
}

impl Lost {
    fn new(reason: impl Into<String>) -> Self {
        Self { code: None, reason: reason.into() }
    }

    fn closed(frame: Option<CloseFrame>) -> Self {
        match frame {
            Some(f) => Self { code: Some(u16::from(f.code)), reason: f.reason.as_str().to_owned() },
            None => Self::new("closed by the server without a code"),
        }
    }
}

/// How [`Link::hold`] ended.
enum Held {
    /// Shutdown, or the owner is gone: stop for good.
    Stopped,
    /// Start over from scratch.
    Lost(Lost),
}

/// Connects to `url` and reads up to the welcome, which must come first.
async fn open(url: String) -> Result<(Socket, SessionInfo), Lost> {
    let attempt = async move {
        let (mut socket, _) =
            tokio_tungstenite::connect_async(url.as_str()).await.map_err(|e| Lost::new(format!("connect: {e}")))?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return match Frame::parse(text.as_str()) {
                        Ok(Frame::Welcome { session, .. }) => Ok((socket, session)),
                        Ok(other) => Err(Lost::new(format!("{} before the welcome", other.message_type()))),
                        Err(e) => Err(Lost::new(e.to_string())),
                    };
                }
                Some(Ok(Message::Close(frame))) => return Err(Lost::closed(frame)),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Lost::new(e.to_string())),
                None => return Err(Lost::new("closed before the welcome")),
            }
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, attempt).await.unwrap_or_else(|_| Err(Lost::new("no welcome in time")))
}

/// Sends our Close (1000) without waiting for the answer.
async fn send_close(socket: &mut Socket) {
    let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(Some(frame))).await;
}

/// Closes with 1000 and waits (bounded) for the server's answer.
async fn close(socket: &mut Socket) {
    send_close(socket).await;
    drain(socket).await;
}

/// Reads (bounded) until the socket ends, which also flushes our answer to
/// a Close from the server.
async fn drain(socket: &mut Socket) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async { while let Some(Ok(_)) = socket.next().await {} }).await;
}

async fn next_opening(opening: &mut Option<Opening>) -> Result<(Socket, SessionInfo), Lost> {
    match opening {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

async fn next_retiring(
    retiring: &mut Option<(Socket, Instant)>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match retiring {
        Some((socket, _)) => socket.next().await,
        None => std::future::pending().await,
    }
}

/// The owner's side: where events go and when to stop.
struct Link<'a> {
    events: &'a mpsc::Sender<WsEvent>,
    shutdown: &'a CancellationToken,
    /// The keepalive asked for, used if a welcome does not say.
    keepalive: Option<u64>,
}

impl Link<'_> {
    /// Reports one event; `false` when it is time to stop (shutdown, or the
    /// receiver was dropped).
    async fn emit(&self, event: WsEvent) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            sent = self.events.send(event) => sent.is_ok(),
        }
    }

    /// Forwards a notification or revocation (other frames are no news for
    /// the owner); `false` when it is time to stop.
    async fn forward(&self, frame: Frame) -> bool {
        let (message_id, message_type, subscription_type, payload) = match frame {
            Frame::Notification { message_id, subscription_type, payload } => {
                (message_id, "notification", subscription_type, payload)
            }
            Frame::Revocation { message_id, subscription_type, payload } => {
                (message_id, "revocation", subscription_type, payload)
            }
            Frame::Welcome { .. } => {
                tracing::warn!("eventsub websocket: unexpected welcome on an open session; ignored");
                return true;
            }
            Frame::Keepalive { .. } | Frame::Reconnect { .. } => return true,
        };
        tracing::debug!(%message_id, message_type, ?subscription_type, "eventsub websocket: message");
        match eventsub::parse_message(&message_id, message_type, subscription_type.as_deref(), payload.as_bytes()) {
            Ok(EventSubMessage::Inbound(inbound)) => self.emit(WsEvent::Message(Box::new(inbound))).await,
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(%message_id, error = %e, "eventsub websocket: message refused");
                true
            }
        }
    }

    fn watchdog(&self, session: &SessionInfo) -> Duration {
        watchdog_period(session.keepalive_timeout_seconds.or(self.keepalive))
    }

    /// Holds a welcomed session (and its successors through
    /// `session_reconnect`) until it is lost or it is time to stop.
    async fn hold(&self, socket: Socket, session: SessionInfo) -> Held {
        let mut current = socket;
        let mut session_id = session.id.clone();
        let mut period = self.watchdog(&session);
        let mut deadline = Instant::now() + period;
        // The connection to a reconnect URL, until its welcome.
        let mut opening: Option<Opening> = None;
        // The socket replaced by a reconnect: closed (1000), still read for
        // messages already on their way.
        let mut retiring: Option<(Socket, Instant)> = None;

        if !self.emit(WsEvent::Session { session_id: session_id.clone() }).await {
            close(&mut current).await;
            return Held::Stopped;
        }
        loop {
            let retire_at = retiring.as_ref().map(|(_, at)| *at);
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = self.events.closed() => break,
                incoming = current.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        deadline = Instant::now() + period;
                        match Frame::parse(text.as_str()) {
                            Ok(Frame::Reconnect { session, .. }) => match session.reconnect_url {
                                Some(url) if opening.is_none() => {
                                    tracing::info!(%session_id, "eventsub websocket: session_reconnect received");
                                    opening = Some(Box::pin(open(url)));
                                }
                                Some(_) => tracing::debug!("eventsub websocket: already reconnecting"),
                                None => tracing::warn!("eventsub websocket: session_reconnect without a reconnect_url"),
                            },
                            Ok(frame) => {
                                if !self.forward(frame).await {
                                    break;
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "eventsub websocket: frame ignored"),
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        drain(&mut current).await;
                        return Held::Lost(Lost::closed(frame));
                    }
                    // Pings are answered by tungstenite while we read; they
                    // do not count as traffic (§6.4).
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Held::Lost(Lost::new(e.to_string())),
                    None => return Held::Lost(Lost::new("connection ended without a close frame")),
                },
                opened = next_opening(&mut opening) => {
                    opening = None;
                    match opened {
                        Ok((socket, session)) => {
                            let mut old = std::mem::replace(&mut current, socket);
                            send_close(&mut old).await;
                            retiring = Some((old, Instant::now() + RETIRE_TIMEOUT));
                            period = self.watchdog(&session);
                            deadline = Instant::now() + period;
                            let same = session.id == session_id;
                            tracing::info!(old_session_id = %session_id, session_id = %session.id, same,
                                "eventsub websocket: reconnected");
                            if !same {
                                session_id = session.id;
                                if !self.emit(WsEvent::Session { session_id: session_id.clone() }).await {
                                    break;
                                }
                            }
                        }
                        Err(lost) => {
                            close(&mut current).await;
                            let reason = format!("reconnect failed: {}", lost.reason);
                            return Held::Lost(Lost { code: lost.code, reason });
                        }
                    }
                }
                incoming = next_retiring(&mut retiring) => match incoming {
                    Some(Ok(Message::Text(text))) => match Frame::parse(text.as_str()) {
                        Ok(frame) => {
                            if !self.forward(frame).await {
                                break;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "eventsub websocket: frame ignored"),
                    },
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => retiring = None,
                },
                () = tokio::time::sleep_until(retire_at.unwrap_or(deadline)), if retire_at.is_some() => {
                    retiring = None;
                }
                () = tokio::time::sleep_until(deadline) => {
                    // The server is presumably gone: no waiting for its answer.
                    send_close(&mut current).await;
                    return Held::Lost(Lost::new(format!("no message for {} ms (keepalive)", period.as_millis())));
                }
            }
        }
        // A retiring socket already has our Close; it is simply dropped.
        close(&mut current).await;
        Held::Stopped
    }
}

/// Holds one EventSub WebSocket session open until `shutdown` is cancelled:
/// connects, reports `Session` on welcome, forwards messages, runs the keepalive
/// watchdog (no frame for keepalive_timeout + margin → treat as dead, reconnect
/// from scratch), follows session_reconnect (open the reconnect_url unchanged,
/// keep reading the old socket until the new welcome, then close the old one with
/// 1000; same session id → no new Session event; different → Session event),
/// never sends data frames (only Pongs — tungstenite answers Pings automatically
/// when you keep reading), and reconnects from scratch with backoff after a loss
/// or close (4000-4007 etc.; 4007 → back to the base URL). Returns when shutdown
/// is cancelled or the receiver is dropped (close the socket with 1000 first).
///
/// A reconnect URL that fails (4007, no welcome) counts as a loss: the old
/// socket is closed and the next session comes from the base URL.
/// `Disconnected` is reported only for a connection that had been welcomed;
/// failed attempts from scratch are logged and retried with backoff.
pub async fn run(settings: WsSettings, events: mpsc::Sender<WsEvent>, shutdown: CancellationToken) {
    // wss:// builds a rustls client config from the process-wide provider.
    crate::install_crypto_provider();
    let url = connect_url(&settings.url, settings.keepalive_timeout);
    let link = Link {
        events: &events,
        shutdown: &shutdown,
        keepalive: settings.keepalive_timeout.map(|s| u64::from(s.clamp(10, 600))),
    };
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    loop {
        tracing::info!(url = %settings.url, "eventsub websocket: connecting");
        let opened = tokio::select! {
            () = shutdown.cancelled() => return,
            () = events.closed() => return,
            opened = open(url.clone()) => opened,
        };
        match opened {
            Err(lost) => {
                tracing::warn!(code = ?lost.code, reason = %lost.reason, "eventsub websocket: connect failed");
            }
            Ok((socket, session)) => {
                let since = Instant::now();
                tracing::info!(session_id = %session.id, keepalive_timeout_seconds = ?session.keepalive_timeout_seconds,
                    "eventsub websocket: welcomed");
                match link.hold(socket, session).await {
                    Held::Stopped => return,
                    Held::Lost(Lost { code, reason }) => {
                        tracing::warn!(code = ?code, %reason, "eventsub websocket: connection lost");
                        if !link.emit(WsEvent::Disconnected { code, reason }).await {
                            return;
                        }
                        if since.elapsed() >= STABLE_AFTER {
                            backoff.reset();
                        }
                    }
                }
            }
        }
        let delay = backoff.next_delay();
        tracing::info!(
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "eventsub websocket: reconnecting from scratch after backoff"
        );
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = events.closed() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WELCOME: &str = r#"{
      "metadata": {
        "message_id": "e6c4a2b0-17f3-4d58-9c0e-3a8b5f1d7e29", "message_type": "session_welcome",
        "message_timestamp": "2026-03-14T18:00:01.221847306Z"
      },
      "payload": {
        "session": {
          "id": "AgoQk3v7uYxQTmCw2m8Jd1rT0xIGY2VsbC1h", "status": "connected",
          "connected_at": "2026-03-14T18:00:01.204518733Z", "keepalive_timeout_seconds": 10, "reconnect_url": null,
          "recovery_url": null
        }
      }
    }"#;

    const NOTIFICATION_PAYLOAD: &str = r#"{
        "subscription": {
          "id": "b2d74c10-95e3-4a8f-8c61-3f0e9a7d1b55", "status": "enabled", "type": "stream.offline",
          "version": "1", "condition": { "broadcaster_user_id": "41245072" },
          "transport": { "method": "conduit", "conduit_id": "e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa" },
          "created_at": "2026-03-01T12:00:00.000000000Z", "cost": 0
        },
        "event": {
          "broadcaster_user_id": "41245072", "broadcaster_user_login": "pixelpaws",
          "broadcaster_user_name": "PixelPaws"
        }
      }"#;

    fn notification() -> String {
        format!(
            r#"{{
      "metadata": {{
        "message_id": "c81f5e2a-0d97-4b3c-a6e4-f27b9d1c0853", "message_type": "notification",
        "message_timestamp": "2026-03-14T19:20:31.055381920Z", "subscription_type": "stream.offline",
        "subscription_version": "1"
      }},
      "payload": {NOTIFICATION_PAYLOAD}
    }}"#
        )
    }

    #[test]
    fn a_welcome_carries_the_session() {
        let frame = Frame::parse(WELCOME).unwrap();
        assert_eq!(frame.message_id(), "e6c4a2b0-17f3-4d58-9c0e-3a8b5f1d7e29");
        assert_eq!(frame.message_type(), "session_welcome");
        let Frame::Welcome { session, .. } = frame else { panic!("not a welcome: {frame:?}") };
        assert_eq!(
            session,
            SessionInfo {
                id: "AgoQk3v7uYxQTmCw2m8Jd1rT0xIGY2VsbC1h".into(),
                status: "connected".into(),
                keepalive_timeout_seconds: Some(10),
                reconnect_url: None,
            }
        );
    }

    #[test]
    fn a_keepalive_is_recognised() {
        let text = r#"{"metadata": {"message_id": "4b2f0d8e", "message_type": "session_keepalive",
            "message_timestamp": "2026-03-14T18:00:11.230114528Z"}, "payload": {}}"#;
        assert_eq!(Frame::parse(text).unwrap(), Frame::Keepalive { message_id: "4b2f0d8e".into() });
    }

    #[test]
    fn a_notification_keeps_its_payload_byte_for_byte() {
        let frame = Frame::parse(&notification()).unwrap();
        assert_eq!(
            frame,
            Frame::Notification {
                message_id: "c81f5e2a-0d97-4b3c-a6e4-f27b9d1c0853".into(),
                subscription_type: Some("stream.offline".into()),
                payload: NOTIFICATION_PAYLOAD.into(),
            }
        );
    }

    #[test]
    fn a_reconnect_carries_the_reconnect_url() {
        let text = r#"{
          "metadata": {"message_id": "91d0c6b3", "message_type": "session_reconnect",
            "message_timestamp": "2026-03-14T21:45:00.007731205Z"},
          "payload": {"session": {
            "id": "AgoQk3v7", "status": "reconnecting", "keepalive_timeout_seconds": null,
            "reconnect_url": "wss://cell-b.eventsub.wss.twitch.tv/ws?challenge=0b6e&id=AgoQk3v7",
            "connected_at": "2026-03-14T18:00:01.204518733Z"}}
        }"#;
        let Frame::Reconnect { message_id, session } = Frame::parse(text).unwrap() else { panic!("not a reconnect") };
        assert_eq!(message_id, "91d0c6b3");
        assert_eq!(session.status, "reconnecting");
        assert_eq!(session.keepalive_timeout_seconds, None);
        assert_eq!(
            session.reconnect_url.as_deref(),
            Some("wss://cell-b.eventsub.wss.twitch.tv/ws?challenge=0b6e&id=AgoQk3v7")
        );
    }

    #[test]
    fn a_revocation_keeps_its_payload_and_subscription_type() {
        let payload = r#"{"subscription": {"id": "0f3d9a52", "status": "chat_user_banned",
            "type": "channel.chat.message", "version": "1", "cost": 0}}"#;
        let text = format!(
            r#"{{"metadata": {{"message_id": "7f3e1b9c", "message_type": "revocation",
            "message_timestamp": "2026-03-14T22:10:14.500219874Z", "subscription_type": "channel.chat.message",
            "subscription_version": "1"}}, "payload": {payload}}}"#
        );
        assert_eq!(
            Frame::parse(&text).unwrap(),
            Frame::Revocation {
                message_id: "7f3e1b9c".into(),
                subscription_type: Some("channel.chat.message".into()),
                payload: payload.into(),
            }
        );
    }

    #[test]
    fn unknown_fields_are_ignored_but_unknown_types_and_garbage_are_errors() {
        let extra = WELCOME.replacen("\"metadata\": {", "\"metadata\": {\"sim_unknown\": [1, {\"a\": null}],", 1);
        assert!(matches!(Frame::parse(&extra), Ok(Frame::Welcome { .. })));
        let unknown = r#"{"metadata": {"message_id": "x", "message_type": "session_recovery"}, "payload": {}}"#;
        assert_eq!(Frame::parse(unknown), Err(FrameError::UnknownType("session_recovery".into())));
        assert!(matches!(Frame::parse("not json"), Err(FrameError::Malformed(_))));
        assert!(matches!(Frame::parse(r#"{"payload": {}}"#), Err(FrameError::Malformed(_))));
        let no_payload = r#"{"metadata": {"message_id": "x", "message_type": "notification"}}"#;
        assert!(matches!(Frame::parse(no_payload), Err(FrameError::Malformed(_))));
        let no_session = r#"{"metadata": {"message_id": "x", "message_type": "session_welcome"}, "payload": {}}"#;
        assert!(matches!(Frame::parse(no_session), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 700, 700]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn backoff_never_spins_and_max_is_at_least_min() {
        let mut zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.next_delay(), MIN_BACKOFF);
        assert_eq!(zero.next_delay(), MIN_BACKOFF);
        let mut inverted = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(inverted.next_delay(), Duration::from_secs(5));
        assert_eq!(inverted.next_delay(), Duration::from_secs(5));
    }

    #[test]
    fn the_connect_url_asks_for_a_clamped_keepalive() {
        assert_eq!(connect_url(TWITCH_EVENTSUB_WS_URL, None), TWITCH_EVENTSUB_WS_URL);
        assert_eq!(
            connect_url(TWITCH_EVENTSUB_WS_URL, Some(30)),
            "wss://eventsub.wss.twitch.tv/ws?keepalive_timeout_seconds=30"
        );
        assert_eq!(connect_url("ws://h/ws", Some(1)), "ws://h/ws?keepalive_timeout_seconds=10");
        assert_eq!(connect_url("ws://h/ws", Some(9999)), "ws://h/ws?keepalive_timeout_seconds=600");
        assert_eq!(connect_url("ws://h/ws?a=1", Some(20)), "ws://h/ws?a=1&keepalive_timeout_seconds=20");
        assert_eq!(connect_url("ws://h/ws?", Some(20)), "ws://h/ws?keepalive_timeout_seconds=20");
    }

    #[test]
    fn the_watchdog_allows_the_keepalive_plus_a_margin() {
        assert_eq!(watchdog_period(None), Duration::from_secs(15));
        assert_eq!(watchdog_period(Some(0)), Duration::from_secs(15));
        assert_eq!(watchdog_period(Some(10)), Duration::from_secs(15));
        assert_eq!(watchdog_period(Some(600)), Duration::from_secs(605));
        assert_eq!(watchdog_period(Some(1)), Duration::from_secs(2));
        assert_eq!(watchdog_period(Some(4)), Duration::from_secs(6));
    }
}
