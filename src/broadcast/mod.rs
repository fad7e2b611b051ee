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
mod trajectory;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::meter::BALANCE_PRIOR;
use crate::domain::{Appearance, MeterModel, OverlayId, SessionStatus};
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
    /// The overlay URL was replaced by a new one (rotated).
    OverlayGone,
    /// The streamer was removed: the overlay no longer exists at all.
    OverlayRemoved,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            CloseReason::GoingAway => 1001,
            CloseReason::Evicted => 1013,
            CloseReason::Idle => 1000,
            CloseReason::OverlayGone | CloseReason::OverlayRemoved => 4404,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            CloseReason::GoingAway => "server shutting down",
            CloseReason::Evicted => "client too slow",
            CloseReason::Idle => "idle timeout",
            CloseReason::OverlayGone => "overlay URL replaced",
            CloseReason::OverlayRemoved => "overlay no longer exists",
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
    /// The session's labels and look as the connection knew them: sent with
    /// the client's first frame (unless the broadcaster knows a newer one).
    pub appearance: Option<Arc<Appearance>>,
}

pub(crate) enum Command {
    Register(ClientRegistration),
    Appearance { overlay: OverlayId, appearance: Arc<Appearance> },
    Reload { overlay: OverlayId },
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

    /// Sends new labels and look to every client of a session on this
    /// instance (an older config version than the one shown is ignored).
    pub async fn update_appearance(&self, overlay: OverlayId, appearance: Arc<Appearance>) {
        let _ = self.tx.send(Command::Appearance { overlay, appearance }).await;
    }

    /// Tells every client of a session on this instance to reload its page.
    pub async fn reload(&self, overlay: OverlayId) {
        let _ = self.tx.send(Command::Reload { overlay }).await;
    }

    /// Closes every client of a session on this instance.
    pub async fn close_session(&self, overlay: OverlayId, reason: CloseReason) {
        let _ = self.tx.send(Command::CloseSession { overlay, reason }).await;
    }
}

/// How often the broadcaster reads, and by which clock.
#[derive(Debug, Clone, Copy)]
pub struct BroadcastTiming {
    /// Every tick: sessions touched since the last one, and a share of the
    /// gliding and resting ones.
    pub tick: Duration,
    /// A session whose bar rests at the centre. A change made on another
    /// instance reaches it sooner through the `Moved` signal that instance
    /// sends; this read is the safety net if that signal is lost.
    pub resting_read: Duration,
    /// A session whose bar glides: its clients draw the decay, so this read
    /// is a keyframe (sent unless the last frame is under half a `KEYFRAME_MS` old) and the safety
    /// net for a lost `Voted` signal.
    pub glide_read: Duration,
    /// What "now" is for the reads (decay is computed at that time).
    pub clock: Clock,
}

/// What one frame tells an overlay about its session (docs/architecture.md,
/// "Overlay frames"): the bar's trajectory until the next frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// The value to show at `at`, rounded to hundredths.
    pub value: f64,
    pub status: SessionStatus,
    pub model: MeterModel,
    /// The balance model's counts `[F, A]` at `at`, rounded to thousandths
    /// (zero for the classic model, whose frames do not carry them).
    pub weights: [f64; 2],
    pub voters: u32,
    /// The server time (ms since the epoch) `value` and `weights` are for.
    pub at: i64,
    /// The decay speed (per second) they follow from `at`: the value (or
    /// each count) times `e^(−decay·Δt)`.
    pub decay: f64,
}

impl Frame {
    /// The centre, before anything was read.
    pub fn centre() -> Self {
        Self {
            value: 0.0,
            status: SessionStatus::Active,
            model: MeterModel::Classic,
            weights: [0.0; 2],
            voters: 0,
            at: 0,
            decay: 0.0,
        }
    }

    /// The value this frame's trajectory gives at `now_ms` (what an overlay
    /// that got it shows then).
    pub fn value_at(&self, now_ms: i64) -> f64 {
        let elapsed = (now_ms - self.at).max(0) as f64;
        let f = (-self.decay * elapsed / 1000.0).exp();
        match self.model {
            MeterModel::Classic => self.value * f,
            MeterModel::Balance => crate::domain::meter::balance_value(self.weights[0] * f, self.weights[1] * f),
        }
    }
}

/// The JSON text frame an overlay receives: `value`, `status`, `model`,
/// `voters`, `at` and `decay`, for the balance model `weights` and `prior`;
/// with the session's labels and `look` when given, and `"reload": true` to
/// make the page reload.
pub fn encode_frame(shown: &Frame, appearance: Option<&Appearance>, reload: bool) -> Utf8Bytes {
    let mut frame = serde_json::json!({
        "value": shown.value, "status": shown.status.as_str(), "model": shown.model.as_str(), "voters": shown.voters,
        "at": shown.at, "decay": shown.decay,
    });
    if shown.model == MeterModel::Balance {
        frame["weights"] = serde_json::json!(shown.weights);
        frame["prior"] = serde_json::json!(BALANCE_PRIOR);
    }
    if let Some(a) = appearance {
        frame["left_label"] = serde_json::json!(a.left_label);
        frame["right_label"] = serde_json::json!(a.right_label);
        frame["look"] = serde_json::json!(a.look);
    }
    if reload {
        frame["reload"] = serde_json::json!(true);
    }
    Utf8Bytes::from(frame.to_string())
}
