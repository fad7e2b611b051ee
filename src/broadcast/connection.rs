//! Drives one overlay WebSocket: registers it with the broadcaster, writes
//! queued frames, keeps it alive with pings, and closes it with the reason the
//! broadcaster gives (shutdown, eviction) or when the client goes silent.
//!
//! An overlay asks "are you there?" now and then with a text message
//! [`STILL_THERE`]: a bar at rest gets no frames, and a browser cannot see
//! the server's pings, so this is how a page notices that its open socket
//! went stale. The answer is the last frame sent again (a frame like any
//! other: it shows what the client shows already).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use tokio::sync::{mpsc, oneshot};

use super::{Broadcaster, ClientRegistration, CloseReason};
use crate::domain::{Appearance, OverlayId};
use crate::metrics::Metrics;

/// How long to wait for a client's reply to our close frame.
const CLOSE_REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// The text an overlay sends to ask for the last frame again.
pub const STILL_THERE: &str = "ping";

/// How one overlay connection is kept.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// Frames queued for the connection; a client this far behind is evicted.
    pub queue: usize,
    /// How often the server pings.
    pub ping_interval: std::time::Duration,
    /// A connection that sends nothing (not even a pong) this long is closed.
    pub idle_timeout: std::time::Duration,
    /// A single frame write that takes longer than this closes the connection.
    pub write_timeout: std::time::Duration,
}

/// Serves one overlay connection until either side ends it.
pub async fn serve(
    mut socket: WebSocket,
    overlay: OverlayId,
    broadcaster: Broadcaster,
    settings: ConnectionSettings,
    metrics: Metrics,
    appearance: Option<Arc<Appearance>>,
) {
    let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
    let (frames_tx, mut frames) = mpsc::channel(settings.queue);
    let (close_tx, mut close) = oneshot::channel();
    let registration = ClientRegistration { id, overlay, frames: frames_tx, close: close_tx, appearance };
    if broadcaster.register(registration).await.is_err() {
        let _ = socket.send(close_message(CloseReason::GoingAway)).await;
        return;
    }
    metrics.ws_clients.inc();

    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + settings.ping_interval, settings.ping_interval);
    let mut last_heard = Instant::now();
    let mut last_frame: Option<Utf8Bytes> = None;
    let reason = loop {
        tokio::select! {
            biased;
            reason = &mut close => break reason.ok(),
            frame = frames.recv() => {
                let Some(frame) = frame else { break Some(CloseReason::GoingAway) };
                last_frame = Some(frame.clone());
                match tokio::time::timeout(settings.write_timeout, socket.send(Message::Text(frame))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => {
                        metrics.ws_evictions.inc();
                        break Some(CloseReason::Evicted);
                    }
                }
            }
            incoming = socket.recv() => match incoming {
                // Overlays send pongs (answered pings) and "are you there?";
                // anything else is ignored, but it all counts as a sign of life.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                Some(Ok(message)) => {
                    last_heard = Instant::now();
                    if let (Message::Text(text), Some(frame)) = (&message, &last_frame)
                        && text.as_str() == STILL_THERE
                        && tokio::time::timeout(settings.write_timeout, socket.send(Message::Text(frame.clone())))
                            .await
                            .is_err()
                    {
                        break Some(CloseReason::Evicted);
                    }
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() >= settings.idle_timeout {
                    break Some(CloseReason::Idle);
                }
                if tokio::time::timeout(settings.write_timeout, socket.send(Message::Ping(Default::default()))).await.is_err() {
                    break Some(CloseReason::Evicted);
                }
            }
        }
    };
    if let Some(reason) = reason {
        close_handshake(&mut socket, reason, &settings).await;
    }
    metrics.ws_clients.dec();
    broadcaster.unregister(overlay, id).await;
}

/// Sends a close frame and waits briefly for the client's answer, so the
/// client reads our close code before the TCP connection goes away. Best
/// effort: a client that stopped reading may never take the frame.
async fn close_handshake(socket: &mut WebSocket, reason: CloseReason, settings: &ConnectionSettings) {
    let sent = tokio::time::timeout(settings.write_timeout, async {
        socket.send(close_message(reason)).await?;
        socket.flush().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

fn close_message(reason: CloseReason) -> Message {
    Message::Close(Some(CloseFrame { code: reason.code(), reason: reason.text().into() }))
}
