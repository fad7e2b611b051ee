//! The broadcaster: one actor task per instance owns the map of sessions to
//! overlay clients. Every tick it reads the values of all sessions that have
//! clients here in one batch and sends a frame to the clients of each session
//! whose shown value or status changed.
//!
//! The actor never waits: not for a client (frames go into each connection's
//! bounded queue with `try_send`, and a client whose queue is full is
//! evicted), and not for the live store (a tick's read runs in a task of its
//! own and its result comes back as a message; a new client's first frame
//! comes with the next read), so a slow Redis delays frames, never the
//! actor's other work.

mod actor;
pub mod connection;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::{OverlayId, SessionStatus};
use crate::metrics::Metrics;
use crate::store::LiveStore;

/// Why the server closes an overlay connection; each maps to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The server is shutting down: reconnect (to another instance).
    GoingAway,
    /// The client could not keep up with its frames.
    Evicted,
    /// Nothing was received from the client (not even a pong) for too long.
    Idle,
    /// The overlay no longer exists (streamer removed).
    OverlayGone,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            CloseReason::GoingAway => 1001,
            CloseReason::Evicted => 1013,
            CloseReason::Idle => 1000,
            CloseReason::OverlayGone => 4404,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            CloseReason::GoingAway => "server shutting down",
            CloseReason::Evicted => "client too slow",
            CloseReason::Idle => "idle timeout",
            CloseReason::OverlayGone => "overlay no longer exists",
        }
    }
}

/// One overlay connection as the actor sees it.
pub struct ClientRegistration {
    pub id: u64,
    pub overlay: OverlayId,
    /// Bounded queue of encoded frames to the connection's writer.
    pub frames: mpsc::Sender<Utf8Bytes>,
    /// Tells the connection to close, even when its frame queue is full.
    pub close: oneshot::Sender<CloseReason>,
}

pub(crate) enum Command {
    Register(ClientRegistration),
    Labels { overlay: OverlayId, left: String, right: String },
    Unregister { overlay: OverlayId, id: u64 },
    CloseSession { overlay: OverlayId, reason: CloseReason },
}

/// Cloneable handle to the actor.
#[derive(Clone)]
pub struct Broadcaster {
    tx: mpsc::Sender<Command>,
    touched: Arc<Mutex<HashSet<OverlayId>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the broadcaster has stopped")]
pub struct Stopped;

impl Broadcaster {
    /// Starts the actor. It stops when `shutdown` is cancelled, after closing
    /// every client with 1001.
    ///
    /// Sessions that have clients here but are missing from the live store
    /// are reported once on `missing` (until they reappear).
    pub fn spawn(
        live: Arc<dyn LiveStore>,
        metrics: Metrics,
        timing: BroadcastTiming,
        missing: mpsc::Sender<OverlayId>,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(1024);
        let touched = Arc::new(Mutex::new(HashSet::new()));
        let actor = actor::Actor::new(live, metrics, timing, rx, missing, Arc::clone(&touched));
        let task = tokio::spawn(actor.run(timing.tick, shutdown));
        (Self { tx, touched }, task)
    }

    /// This session's value or status just changed here (a vote, a reset, a
    /// stream going live): its overlays get the change on the next tick even
    /// if the session was resting. Cheap; called on the vote path.
    pub fn touch(&self, overlay: OverlayId) {
        self.touched.lock().unwrap_or_else(|p| p.into_inner()).insert(overlay);
    }

    pub async fn register(&self, client: ClientRegistration) -> Result<(), Stopped> {
        self.tx.send(Command::Register(client)).await.map_err(|_| Stopped)
    }

    pub async fn unregister(&self, overlay: OverlayId, id: u64) {
        // If the actor is gone there is nothing left to unregister from.
        let _ = self.tx.send(Command::Unregister { overlay, id }).await;
    }

    /// Sends new labels to every client of a session on this instance.
    pub async fn update_labels(&self, overlay: OverlayId, left: &str, right: &str) {
        let command = Command::Labels { overlay, left: left.to_owned(), right: right.to_owned() };
        let _ = self.tx.send(command).await;
    }

    /// Closes every client of a session on this instance.
    pub async fn close_session(&self, overlay: OverlayId, reason: CloseReason) {
        let _ = self.tx.send(Command::CloseSession { overlay, reason }).await;
    }
}

/// How often the broadcaster reads, and by which clock.
#[derive(Debug, Clone, Copy)]
pub struct BroadcastTiming {
    /// Every tick: moving sessions and sessions touched since the last one.
    pub tick: Duration,
    /// A session whose bar rests at the centre. A change made on another
    /// instance reaches it sooner through the `Moved` signal that instance
    /// sends; this read is the safety net if that signal is lost.
    pub resting_read: Duration,
    /// What "now" is for the reads (decay is computed at that time).
    pub clock: Clock,
}

/// The JSON text frame an overlay receives.
pub fn encode_frame(value: f64, status: SessionStatus) -> Utf8Bytes {
    Utf8Bytes::from(format!(r#"{{"value":{},"status":"{}"}}"#, value, status.as_str()))
}
