//! Drives one overlay WebSocket: registers it with the broadcaster, writes
//! queued frames, keeps it alive with pings, and closes it with the reason the
//! broadcaster gives (shutdown, eviction) or when the client goes silent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use tokio::sync::{mpsc, oneshot};

use super::{Broadcaster, ClientRegistration, CloseReason};
use crate::domain::OverlayId;
use crate::metrics::Metrics;

/// How long to wait for a client's reply to our close frame.
const CLOSE_REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

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
) {
    let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
    let (frames_tx, mut frames) = mpsc::channel(settings.queue);
    let (close_tx, mut close) = oneshot::channel();
    let registration = ClientRegistration { id, overlay, frames: frames_tx, close: close_tx };
    if broadcaster.register(registration).await.is_err() {
        let _ = socket.send(close_message(CloseReason::GoingAway)).await;
        return;
    }
    metrics.ws_clients.inc();

    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + settings.ping_interval, settings.ping_interval);
    let mut last_heard = Instant::now();
    let reason = loop {
        tokio::select! {
            biased;
            reason = &mut close => break reason.ok(),
            frame = frames.recv() => {
                let Some(frame) = frame else { break Some(CloseReason::GoingAway) };
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
                // Overlays send nothing but pongs (answered pings); anything
                // else is ignored, but it all counts as a sign of life.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                Some(Ok(_)) => last_heard = Instant::now(),
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
