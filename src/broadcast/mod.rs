//! The broadcaster: one actor task per instance owns the map of sessions to
//! overlay clients. Every tick it reads the values of all sessions that have
//! clients here in one batch and sends a frame to the clients of each session
//! whose shown value or status changed.
//!
//! The actor never waits for a client: frames go into each connection's
//! bounded queue with `try_send`, and a client whose queue is full is evicted.

pub mod connection;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::domain::sentiment::display_value;
use crate::domain::{OverlayId, SessionStatus};
use crate::metrics::Metrics;
use crate::store::{LiveStore, Snapshot};

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

enum Command {
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
        let BroadcastTiming { tick, resting_read } = timing;
        let rest_every = (resting_read.as_millis() / tick.as_millis().max(1)).max(1) as u64;
        let actor = Actor {
            live,
            metrics,
            sessions: HashMap::new(),
            rx,
            missing,
            reported: HashSet::new(),
            touched: Arc::clone(&touched),
            ticks: 0,
            rest_every,
            resting: (0..rest_every).map(|_| HashSet::new()).collect(),
            moving: HashSet::new(),
        };
        let task = tokio::spawn(actor.run(tick, shutdown));
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

struct Client {
    id: u64,
    frames: mpsc::Sender<Utf8Bytes>,
    close: oneshot::Sender<CloseReason>,
}

#[derive(Default)]
struct SessionClients {
    clients: Vec<Client>,
    /// The last frame sent to this session's clients, as (shown value, status).
    last: Option<(f64, SessionStatus)>,
    /// Consecutive reads that found the bar resting at the centre, unchanged.
    quiet: u32,
}

struct Actor {
    live: Arc<dyn LiveStore>,
    metrics: Metrics,
    sessions: HashMap<OverlayId, SessionClients>,
    rx: mpsc::Receiver<Command>,
    missing: mpsc::Sender<OverlayId>,
    /// Sessions already reported missing, so each is reported once.
    reported: HashSet<OverlayId>,
    /// Sessions changed on this instance since the last tick.
    touched: Arc<Mutex<HashSet<OverlayId>>>,
    ticks: u64,
    /// A resting session is read every this many ticks.
    rest_every: u64,
    /// Sessions at rest, by the tick (modulo `rest_every`) they are read on:
    /// a tick visits only its own bucket, never every session.
    resting: Vec<HashSet<OverlayId>>,
    /// The other sessions: read every tick. Every session with clients is in
    /// exactly one of `moving` and `resting`.
    moving: HashSet<OverlayId>,
}

/// How often the broadcaster reads.
#[derive(Debug, Clone, Copy)]
pub struct BroadcastTiming {
    /// Every tick: moving sessions and sessions touched since the last one.
    pub tick: Duration,
    /// A session whose bar rests at the centre. A change made on another
    /// instance reaches it sooner through the `Moved` signal that instance
    /// sends; this read is the safety net if that signal is lost.
    pub resting_read: Duration,
}

/// Unchanged reads at the centre before a session counts as resting.
const QUIET_READS: u32 = 3;

/// The JSON text frame an overlay receives.
pub fn encode_frame(value: f64, status: SessionStatus) -> Utf8Bytes {
    Utf8Bytes::from(format!(r#"{{"value":{},"status":"{}"}}"#, value, status.as_str()))
}

impl Actor {
    async fn run(mut self, tick: Duration, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                command = self.rx.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                _ = interval.tick() => self.tick().await,
            }
        }
        for (_, session) in self.sessions.drain() {
            for client in session.clients {
                let _ = client.close.send(CloseReason::GoingAway);
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Register(reg) => {
                // A (re)connecting client gets the current state at once.
                let state = self.read_one(reg.overlay).await;
                if !self.sessions.contains_key(&reg.overlay) {
                    self.moving.insert(reg.overlay);
                }
                let session = self.sessions.entry(reg.overlay).or_default();
                let client = Client { id: reg.id, frames: reg.frames, close: reg.close };
                let shown = state.map(|s| (display_value(s.value), s.status));
                let frame = match (shown, session.last) {
                    (Some(shown), _) | (None, Some(shown)) => shown,
                    (None, None) => (0.0, SessionStatus::Reconnecting),
                };
                // A new session's clients have now seen this state; the next tick
                // only sends changes. (Existing clients keep their own `last`
                // and catch up on the next tick.)
                if session.clients.is_empty() {
                    session.last = Some(frame);
                }
                if client.frames.try_send(encode_frame(frame.0, frame.1)).is_ok() {
                    session.clients.push(client);
                }
            }
            Command::Unregister { overlay, id } => {
                if let Some(session) = self.sessions.get_mut(&overlay) {
                    session.clients.retain(|c| c.id != id);
                    if session.clients.is_empty() {
                        self.sessions.remove(&overlay);
                        self.forget(&overlay);
                    }
                }
            }
            Command::Labels { overlay, left, right } => {
                if let Some(session) = self.sessions.get_mut(&overlay) {
                    let (value, status) = session.last.unwrap_or((0.0, SessionStatus::Active));
                    let frame = serde_json::json!({
                        "value": value, "status": status.as_str(), "left_label": left, "right_label": right,
                    });
                    let frame = Utf8Bytes::from(frame.to_string());
                    // Best effort: a client too far behind gets the labels on reload.
                    for client in &session.clients {
                        let _ = client.frames.try_send(frame.clone());
                    }
                }
            }
            Command::CloseSession { overlay, reason } => {
                if let Some(session) = self.sessions.remove(&overlay) {
                    for client in session.clients {
                        let _ = client.close.send(reason);
                    }
                }
                self.forget(&overlay);
            }
        }
    }

    /// The resting bucket a session is read in.
    fn bucket(&self, overlay: &OverlayId) -> usize {
        // `rest_every` buckets: the remainder fits.
        ((overlay.as_uuid().as_u128() as u64) % self.rest_every) as usize
    }

    /// A session left the map (or stopped resting): it rests nowhere.
    fn forget(&mut self, overlay: &OverlayId) {
        let bucket = self.bucket(overlay);
        if self.resting[bucket].remove(overlay) {
            self.metrics.sessions_resting.dec();
        }
        self.moving.remove(overlay);
    }

    async fn read_one(&self, overlay: OverlayId) -> Option<Snapshot> {
        match self.live.read_many(&[overlay], crate::now_ms()).await {
            Ok(mut v) => v.pop().flatten().or(Some(Snapshot { value: 0.0, status: SessionStatus::Active })),
            Err(e) => {
                self.metrics.live_error("read_many");
                tracing::warn!(error = %e, "live store read failed");
                None
            }
        }
    }

    async fn tick(&mut self) {
        if self.sessions.is_empty() {
            return;
        }
        let started = Instant::now();
        self.ticks = self.ticks.wrapping_add(1);
        let touched = std::mem::take(&mut *self.touched.lock().unwrap_or_else(|p| p.into_inner()));
        // Moving sessions every tick; resting ones spread over the ticks of a
        // period (their bucket's turn), so their reads do not come in bursts;
        // touched ones at once, wherever they are.
        let turn = (self.ticks % self.rest_every) as usize;
        let mut overlays: Vec<OverlayId> = self.moving.iter().chain(self.resting[turn].iter()).copied().collect();
        for o in touched {
            let bucket = self.bucket(&o);
            if bucket != turn && self.resting[bucket].contains(&o) {
                overlays.push(o);
            }
        }
        if overlays.is_empty() {
            return;
        }
        let snapshots = match self.live.read_many(&overlays, crate::now_ms()).await {
            Ok(s) => s,
            Err(e) => {
                self.metrics.live_error("read_many");
                tracing::warn!(error = %e, "live store read failed; overlays show reconnecting");
                // NaN marks "keep the last value" below.
                let unknown = Snapshot { value: f64::NAN, status: SessionStatus::Reconnecting };
                std::iter::repeat_n(Some(unknown), overlays.len()).collect()
            }
        };
        let mut emptied = false;
        let (mut to_rest, mut woken) = (Vec::new(), Vec::new());
        for (overlay, snapshot) in overlays.iter().zip(snapshots) {
            let Some(session) = self.sessions.get_mut(overlay) else { continue };
            // A session missing from the live store (lost with a Redis
            // restart, say) shows the centre until it is re-activated; a
            // failed read keeps the last value.
            let snapshot = match snapshot {
                Some(snapshot) => {
                    self.reported.remove(overlay);
                    snapshot
                }
                None => {
                    if self.reported.insert(*overlay) && self.missing.try_send(*overlay).is_err() {
                        self.reported.remove(overlay);
                    }
                    Snapshot { value: 0.0, status: SessionStatus::Active }
                }
            };
            let value = if snapshot.value.is_nan() {
                session.last.map_or(0.0, |(v, _)| v)
            } else {
                display_value(snapshot.value)
            };
            let shown = (value, snapshot.status);
            if session.last == Some(shown) {
                if shown.0 == 0.0 && !snapshot.value.is_nan() && session.quiet < QUIET_READS {
                    session.quiet += 1;
                    if session.quiet == QUIET_READS {
                        to_rest.push(*overlay);
                    }
                }
                continue;
            }
            if session.quiet >= QUIET_READS {
                woken.push(*overlay);
            }
            session.quiet = 0;
            session.last = Some(shown);
            let frame = encode_frame(shown.0, shown.1);
            let metrics = &self.metrics;
            session.clients = std::mem::take(&mut session.clients)
                .into_iter()
                .filter_map(|client| match client.frames.try_send(frame.clone()) {
                    Ok(()) => Some(client),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        metrics.ws_evictions.inc();
                        let _ = client.close.send(CloseReason::Evicted);
                        None
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => None,
                })
                .collect();
            emptied |= session.clients.is_empty();
        }
        for o in to_rest {
            let bucket = self.bucket(&o);
            self.moving.remove(&o);
            if self.resting[bucket].insert(o) {
                self.metrics.sessions_resting.inc();
            }
        }
        for o in woken {
            self.forget(&o);
            self.moving.insert(o);
        }
        // Only evictions empty a session here (unregistering removes its own).
        if emptied {
            let gone: Vec<OverlayId> =
                self.sessions.iter().filter(|(_, s)| s.clients.is_empty()).map(|(o, _)| *o).collect();
            for o in gone {
                self.sessions.remove(&o);
                self.forget(&o);
            }
        }
        if !self.reported.is_empty() {
            let sessions = &self.sessions;
            self.reported.retain(|o| sessions.contains_key(o));
        }
        self.metrics.tick_duration.observe(started.elapsed().as_secs_f64());
    }
}
