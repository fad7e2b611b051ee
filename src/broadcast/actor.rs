//! The broadcaster's task: the session → clients map, the tick, the diff.
//!
//! A tick reads only what may have changed: sessions touched since the last
//! tick (a vote, a reset, a status here, or a `Moved` signal from another
//! instance), gliding sessions once a glide period (about a [`KEYFRAME_MS`]; their clients
//! draw the decay themselves; the read corrects drift and notices what
//! changes with time alone, like participation running out), and resting
//! ones once a resting period. Both periodic kinds are spread over the ticks
//! by bucket, so no tick reads every session.
//!
//! Its loop only ever does in-memory work. A tick picks the sessions due for
//! a read and starts the read in a task of its own; the snapshots come back
//! on a channel and are turned into frames then. While a read is on its way,
//! commands (new clients, labels, closes) are still handled at once, and a
//! tick that comes meanwhile is skipped rather than queued: a slow store
//! makes frames later, not the broadcaster busier.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::trajectory::{KEYFRAME_MS, follows, shown_of};
use super::{BroadcastTiming, ClientRegistration, CloseReason, Command, Frame, encode_frame};
use crate::clock::Clock;
use crate::domain::{Appearance, MeterModel, OverlayId, SessionStatus};
use crate::metrics::Metrics;
use crate::store::{LiveStore, Snapshot};

/// Unchanged reads at the centre before a session counts as resting.
const QUIET_READS: u32 = 3;

struct Client {
    id: u64,
    frames: mpsc::Sender<Utf8Bytes>,
    close: oneshot::Sender<CloseReason>,
    /// Whether the client got the session's labels and look yet.
    greeted: bool,
}

#[derive(Default)]
struct SessionClients {
    clients: Vec<Client>,
    /// The last frame sent to this session's clients; `None` until the first
    /// read after the session's first client came.
    last: Option<Frame>,
    /// The session's labels and look, the newest config version known here.
    appearance: Option<Arc<Appearance>>,
    /// Consecutive reads that found the bar resting at the centre, unchanged.
    quiet: u32,
}

/// One finished read: the sessions asked for and what the store said
/// (`None`: the read failed).
struct Read {
    overlays: Vec<OverlayId>,
    snapshots: Option<Vec<Option<Snapshot>>>,
    /// The time the values were read for (the frames' `at`).
    now: i64,
    started: Instant,
}

pub(super) struct Actor {
    live: Arc<dyn LiveStore>,
    metrics: Metrics,
    clock: Clock,
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
    /// A gliding session is read every this many ticks.
    glide_every: u64,
    /// The other sessions, gliding (or just shown), by the tick (modulo
    /// `glide_every`) they are read on. Every session with clients is in
    /// exactly one bucket of `moving` or `resting`.
    moving: Vec<HashSet<OverlayId>>,
    /// Sessions to read on the next tick whatever their bucket (a session's
    /// first client, one that just started to glide again).
    soon: Vec<OverlayId>,
    /// Where reads report back, and whether one is on its way.
    reads: (mpsc::Sender<Read>, mpsc::Receiver<Read>),
    reading: bool,
}

impl Actor {
    pub(super) fn new(
        live: Arc<dyn LiveStore>,
        metrics: Metrics,
        timing: BroadcastTiming,
        rx: mpsc::Receiver<Command>,
        missing: mpsc::Sender<OverlayId>,
        touched: Arc<Mutex<HashSet<OverlayId>>>,
    ) -> Self {
        let tick_ms = timing.tick.as_millis().max(1);
        let rest_every = (timing.resting_read.as_millis() / tick_ms).max(1) as u64;
        let glide_every = (timing.glide_read.as_millis() / tick_ms).max(1) as u64;
        Self {
            live,
            metrics,
            clock: timing.clock,
            sessions: HashMap::new(),
            rx,
            missing,
            reported: HashSet::new(),
            touched,
            ticks: 0,
            rest_every,
            resting: (0..rest_every).map(|_| HashSet::new()).collect(),
            glide_every,
            moving: (0..glide_every).map(|_| HashSet::new()).collect(),
            soon: Vec::new(),
            reads: mpsc::channel(4),
            reading: false,
        }
    }

    pub(super) async fn run(mut self, tick: Duration, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(read) = self.reads.1.recv() => self.apply(read),
                command = self.rx.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                _ = interval.tick() => self.tick(),
            }
        }
        for (_, session) in self.sessions.drain() {
            for client in session.clients {
                let _ = client.close.send(CloseReason::GoingAway);
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Register(reg) => self.register(reg),
            Command::Unregister { overlay, id } => {
                if let Some(session) = self.sessions.get_mut(&overlay) {
                    session.clients.retain(|c| c.id != id);
                    if session.clients.is_empty() {
                        self.sessions.remove(&overlay);
                        self.forget(&overlay);
                    }
                }
            }
            Command::Appearance { overlay, appearance } => {
                if let Some(session) = self.sessions.get_mut(&overlay)
                    && session.adopt(appearance)
                {
                    let shown = session.last.unwrap_or_else(Frame::centre);
                    let frame = encode_frame(&shown, session.appearance.as_deref(), false);
                    // Best effort: a client too far behind gets the look on reload.
                    for client in &mut session.clients {
                        client.greeted |= client.frames.try_send(frame.clone()).is_ok();
                    }
                }
            }
            Command::Reload { overlay } => {
                if let Some(session) = self.sessions.get(&overlay) {
                    let shown = session.last.unwrap_or_else(Frame::centre);
                    let frame = encode_frame(&shown, None, true);
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

    /// A new client of a session known here gets its last frame at once; the
    /// first client of a session makes it glide and be read on the next
    /// tick, so every client gets the first frame with the next read.
    fn register(&mut self, reg: ClientRegistration) {
        if !self.sessions.contains_key(&reg.overlay) {
            let bucket = self.bucket(&reg.overlay, self.glide_every);
            self.moving[bucket].insert(reg.overlay);
            self.soon.push(reg.overlay);
        }
        let session = self.sessions.entry(reg.overlay).or_default();
        if let Some(appearance) = reg.appearance {
            session.adopt(appearance);
        }
        let mut client = Client { id: reg.id, frames: reg.frames, close: reg.close, greeted: false };
        if let Some(shown) = session.last {
            if client.frames.try_send(encode_frame(&shown, session.appearance.as_deref(), false)).is_err() {
                return;
            }
            client.greeted = true;
        }
        session.clients.push(client);
    }

    /// The bucket (of `every`) a session is read in.
    fn bucket(&self, overlay: &OverlayId, every: u64) -> usize {
        // `every` buckets: the remainder fits.
        ((overlay.as_uuid().as_u128() as u64) % every) as usize
    }

    /// A session left the map (or changed kind): it is read nowhere.
    fn forget(&mut self, overlay: &OverlayId) {
        let bucket = self.bucket(overlay, self.rest_every);
        if self.resting[bucket].remove(overlay) {
            self.metrics.sessions_resting.dec();
        }
        let bucket = self.bucket(overlay, self.glide_every);
        self.moving[bucket].remove(overlay);
    }

    /// The sessions this tick reads: gliding and resting ones spread over
    /// the ticks of their period (their bucket's turn), so their reads do not
    /// come in bursts; touched ones and new ones at once, wherever they are.
    fn due(&mut self) -> Vec<OverlayId> {
        self.ticks = self.ticks.wrapping_add(1);
        let touched = std::mem::take(&mut *self.touched.lock().unwrap_or_else(|p| p.into_inner()));
        let (glide_turn, rest_turn) =
            ((self.ticks % self.glide_every) as usize, (self.ticks % self.rest_every) as usize);
        let mut overlays: Vec<OverlayId> =
            self.moving[glide_turn].iter().chain(self.resting[rest_turn].iter()).copied().collect();
        let mut extra = touched;
        extra.extend(self.soon.drain(..));
        for o in extra {
            let (glide, rest) = (self.bucket(&o, self.glide_every), self.bucket(&o, self.rest_every));
            // Not in this tick's buckets already (nor gone from the map).
            if (glide != glide_turn && self.moving[glide].contains(&o))
                || (rest != rest_turn && self.resting[rest].contains(&o))
            {
                overlays.push(o);
            }
        }
        overlays
    }

    /// Starts this tick's read, unless the last one is still on its way.
    fn tick(&mut self) {
        if self.sessions.is_empty() || self.reading {
            return;
        }
        let overlays = self.due();
        if overlays.is_empty() {
            return;
        }
        self.reading = true;
        let (live, done, now) = (Arc::clone(&self.live), self.reads.0.clone(), self.clock.now_ms());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            let snapshots = match live.read_many(&overlays, now).await {
                Ok(snapshots) => Some(snapshots),
                Err(e) => {
                    metrics.live_error("read_many");
                    tracing::warn!(error = %e, "live store read failed; overlays show reconnecting");
                    None
                }
            };
            // The actor is gone only at shutdown.
            let _ = done.send(Read { overlays, snapshots, now, started }).await;
        });
    }

    /// A session missing from the live store (lost with a Redis restart, say)
    /// shows the centre until it is re-activated, and is reported once.
    fn present(&mut self, overlay: OverlayId, snapshot: Option<Snapshot>) -> Snapshot {
        if let Some(snapshot) = snapshot {
            self.reported.remove(&overlay);
            return snapshot;
        }
        if self.reported.insert(overlay) && self.missing.try_send(overlay).is_err() {
            self.reported.remove(&overlay);
        }
        Snapshot {
            value: 0.0,
            status: SessionStatus::Active,
            model: MeterModel::Classic,
            weights: [0.0; 2],
            voters: 0,
            decay: 0.0,
        }
    }

    /// Turns a finished read into frames for the sessions whose trajectory
    /// or status changed (and keyframes for gliding ones).
    fn apply(&mut self, read: Read) {
        self.reading = false;
        let Read { overlays, snapshots, now, started } = read;
        // A failed read keeps each session's last value (NaN marks it below).
        let unknown = Snapshot {
            value: f64::NAN,
            status: SessionStatus::Reconnecting,
            model: MeterModel::Classic,
            weights: [0.0; 2],
            voters: 0,
            decay: 0.0,
        };
        let snapshots = snapshots.unwrap_or_else(|| vec![Some(unknown); overlays.len()]);
        let (mut to_rest, mut woken, mut emptied) = (Vec::new(), Vec::new(), false);
        for (overlay, snapshot) in overlays.into_iter().zip(snapshots) {
            if !self.sessions.contains_key(&overlay) {
                continue;
            }
            let snapshot = self.present(overlay, snapshot);
            let Some(session) = self.sessions.get_mut(&overlay) else { continue };
            match show(session, snapshot, now, &self.metrics) {
                Shown::Unchanged { now_resting: true } => to_rest.push(overlay),
                Shown::Unchanged { .. } => {}
                Shown::Sent { woke } => {
                    if woke {
                        woken.push(overlay);
                    }
                    emptied |= session.clients.is_empty();
                }
            }
        }
        self.settle(to_rest, woken, emptied);
        self.metrics.tick_duration.observe(started.elapsed().as_secs_f64());
    }

    /// Moves sessions between resting and moving, and drops sessions whose
    /// last client was evicted.
    fn settle(&mut self, to_rest: Vec<OverlayId>, woken: Vec<OverlayId>, emptied: bool) {
        for o in to_rest {
            self.forget(&o);
            let bucket = self.bucket(&o, self.rest_every);
            if self.resting[bucket].insert(o) {
                self.metrics.sessions_resting.inc();
            }
        }
        for o in woken {
            self.forget(&o);
            let bucket = self.bucket(&o, self.glide_every);
            self.moving[bucket].insert(o);
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
    }
}

enum Shown {
    /// Nothing new to show; `now_resting` when this read made the session rest.
    Unchanged { now_resting: bool },
    /// A frame went out; `woke` when the session had been resting.
    Sent { woke: bool },
}

impl SessionClients {
    /// Keeps `appearance` unless a newer config version is known; whether
    /// it was kept.
    fn adopt(&mut self, appearance: Arc<Appearance>) -> bool {
        if self.appearance.as_ref().is_some_and(|known| known.version > appearance.version) {
            return false;
        }
        self.appearance = Some(appearance);
        true
    }
}

/// Shows one read to a session's clients: a frame when the trajectory they
/// follow changed, or a keyframe with a glide read (about every
/// [`KEYFRAME_MS`], none within half of that of the last frame) while the bar
/// glides (and when it reaches the centre); the first frame a client gets
/// carries the labels and look. Evicts clients whose queue is full.
fn show(session: &mut SessionClients, snapshot: Snapshot, now: i64, metrics: &Metrics) -> Shown {
    let failed = snapshot.value.is_nan();
    let shown = shown_of(&snapshot, session.last.as_ref(), now);
    let send = match &session.last {
        None => true,
        Some(last) if !follows(last, &shown, now) => true,
        Some(last) => shown.value != last.value && (now - last.at >= KEYFRAME_MS / 2 || shown.value == 0.0),
    };
    if !send {
        let mut now_resting = false;
        if shown.value == 0.0 && !failed && session.quiet < QUIET_READS {
            session.quiet += 1;
            now_resting = session.quiet == QUIET_READS;
        }
        return Shown::Unchanged { now_resting };
    }
    let woke = session.quiet >= QUIET_READS;
    session.quiet = 0;
    session.last = Some(shown);
    let frame = encode_frame(&shown, None, false);
    // The frame with the appearance only for clients that have not had it
    // (usually none): each frame is encoded once.
    let first = match session.appearance.as_deref() {
        Some(a) if session.clients.iter().any(|c| !c.greeted) => Some(encode_frame(&shown, Some(a), false)),
        _ => None,
    };
    session.clients = std::mem::take(&mut session.clients)
        .into_iter()
        .filter_map(|mut client| {
            let (payload, greets) = match (&first, client.greeted) {
                (Some(first), false) => (first.clone(), true),
                _ => (frame.clone(), false),
            };
            match client.frames.try_send(payload) {
                Ok(()) => {
                    client.greeted |= greets;
                    Some(client)
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics.ws_evictions.inc();
                    // The connection may be gone already; then nobody listens.
                    let _ = client.close.send(CloseReason::Evicted);
                    None
                }
                Err(mpsc::error::TrySendError::Closed(_)) => None,
            }
        })
        .collect();
    Shown::Sent { woke }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::broadcast::Broadcaster;
    use crate::domain::{BroadcasterId, ChatterId, Direction, OverlayConfig};
    use crate::store::memory::MemoryLiveStore;
    use crate::store::{
        ActiveSession, ActivityReport, Lease, LiveStoreError, SessionActivation, VoteLimits, VoteOutcome, VoteRequest,
    };

    const TICK: Duration = Duration::from_millis(50);
    const ORIGIN_MS: i64 = 1_800_000_000_000;

    /// The in-process store, with every read counted and, when asked,
    /// slowed down (as a struggling Redis would be).
    struct Watched {
        store: MemoryLiveStore,
        reads: AtomicUsize,
        /// Sessions asked for, over all reads.
        sessions_read: AtomicUsize,
        read_delay: Mutex<Duration>,
    }

    #[async_trait]
    impl LiveStore for Watched {
        async fn activate(&self, s: &SessionActivation, l: Lease<'_>, now: i64) -> Result<(), LiveStoreError> {
            self.store.activate(s, l, now).await
        }
        async fn renew(
            &self,
            s: &[(OverlayId, BroadcasterId)],
            l: Lease<'_>,
            now: i64,
        ) -> Result<Vec<OverlayId>, LiveStoreError> {
            self.store.renew(s, l, now).await
        }
        async fn release(&self, o: OverlayId, b: &BroadcasterId, i: &str, now: i64) -> Result<bool, LiveStoreError> {
            self.store.release(o, b, i, now).await
        }
        async fn heartbeat(&self, i: &str, ttl: i64, now: i64) -> Result<(), LiveStoreError> {
            self.store.heartbeat(i, ttl, now).await
        }
        async fn expired_instances(&self, now: i64) -> Result<Vec<String>, LiveStoreError> {
            self.store.expired_instances(now).await
        }
        async fn drop_instance(&self, i: &str, now: i64) -> Result<Vec<BroadcasterId>, LiveStoreError> {
            self.store.drop_instance(i, now).await
        }
        async fn reset(&self, o: OverlayId, now: i64) -> Result<bool, LiveStoreError> {
            self.store.reset(o, now).await
        }
        async fn set_status(&self, o: OverlayId, s: SessionStatus, now: i64) -> Result<bool, LiveStoreError> {
            self.store.set_status(o, s, now).await
        }
        async fn session_for(&self, b: &BroadcasterId) -> Result<Option<ActiveSession>, LiveStoreError> {
            self.store.session_for(b).await
        }
        async fn claim_message(&self, id: &str, now: i64) -> Result<bool, LiveStoreError> {
            self.store.claim_message(id, now).await
        }
        async fn unclaim_message(&self, id: &str) -> Result<(), LiveStoreError> {
            self.store.unclaim_message(id).await
        }
        async fn vote(&self, v: &VoteRequest<'_>, now: i64) -> Result<VoteOutcome, LiveStoreError> {
            self.store.vote(v, now).await
        }
        async fn take_buckets(
            &self,
            o: &[OverlayId],
            i: &str,
            claim: i64,
            now: i64,
        ) -> Result<Vec<(OverlayId, Vec<crate::domain::history::BucketCounters>)>, LiveStoreError> {
            self.store.take_buckets(o, i, claim, now).await
        }
        async fn read_many(&self, o: &[OverlayId], now: i64) -> Result<Vec<Option<Snapshot>>, LiveStoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.sessions_read.fetch_add(o.len(), Ordering::SeqCst);
            let delay = *self.read_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            self.store.read_many(o, now).await
        }
        async fn lead(&self, k: &str, i: &str, ttl: i64, now: i64) -> Result<bool, LiveStoreError> {
            self.store.lead(k, i, ttl, now).await
        }
        async fn resign(&self, k: &str, i: &str) -> Result<(), LiveStoreError> {
            self.store.resign(k, i).await
        }
        async fn report_activity(&self, b: &BroadcasterId, r: &ActivityReport) -> Result<(), LiveStoreError> {
            self.store.report_activity(b, r).await
        }
        async fn activity_reports(&self, b: &BroadcasterId, now: i64) -> Result<Vec<ActivityReport>, LiveStoreError> {
            self.store.activity_reports(b, now).await
        }
        async fn ping(&self) -> Result<(), LiveStoreError> {
            self.store.ping().await
        }
    }

    struct Bench {
        live: Arc<Watched>,
        broadcaster: Broadcaster,
        clock: Clock,
        missing: mpsc::Receiver<OverlayId>,
        stop: CancellationToken,
        next_id: u64,
    }

    struct TestClient {
        frames: mpsc::Receiver<Utf8Bytes>,
        close: oneshot::Receiver<CloseReason>,
    }

    impl TestClient {
        fn values(&mut self) -> Vec<serde_json::Value> {
            std::iter::from_fn(|| self.frames.try_recv().ok())
                .map(|f| serde_json::from_str(f.as_str()).unwrap())
                .collect()
        }
    }

    fn start() -> Bench {
        let live = Arc::new(Watched {
            store: MemoryLiveStore::new(VoteLimits::default()),
            reads: AtomicUsize::new(0),
            sessions_read: AtomicUsize::new(0),
            read_delay: Mutex::new(Duration::ZERO),
        });
        let metrics = Metrics::register(&mut prometheus_client::registry::Registry::default());
        let clock = Clock::following_tokio(ORIGIN_MS);
        let timing = BroadcastTiming {
            tick: TICK,
            resting_read: Duration::from_secs(2),
            glide_read: Duration::from_millis(KEYFRAME_MS as u64),
            clock,
        };
        let (missing_tx, missing) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let store: Arc<dyn LiveStore> = live.clone();
        let (broadcaster, _task) = Broadcaster::spawn(store, metrics, timing, missing_tx, stop.clone());
        Bench { live, broadcaster, clock, missing, stop, next_id: 1 }
    }

    impl Bench {
        async fn session(&self) -> OverlayId {
            let overlay = OverlayId::random();
            let activation = SessionActivation {
                overlay,
                broadcaster: BroadcasterId::parse(&format!("{}", overlay.as_uuid().as_u128() % 1_000_000)).unwrap(),
                config: OverlayConfig::classic(),
                config_version: 1,
            };
            let lease = Lease { instance: "here", ttl_ms: 30_000 };
            self.live.activate(&activation, lease, self.clock.now_ms()).await.unwrap();
            overlay
        }

        async fn vote(&self, overlay: OverlayId, chatter: &str) {
            let chatter = ChatterId::parse(chatter).unwrap();
            let id = uuid::Uuid::new_v4().to_string();
            let vote =
                VoteRequest { overlay, message_id: &id, chatter: &chatter, direction: Direction::For, record: true };
            assert!(matches!(self.live.vote(&vote, self.clock.now_ms()).await, Ok(VoteOutcome::Applied(_))));
            self.broadcaster.touch(overlay);
        }

        async fn client(&mut self, overlay: OverlayId, queue: usize) -> TestClient {
            let (frames_tx, frames) = mpsc::channel(queue);
            let (close_tx, close) = oneshot::channel();
            let id = self.next_id;
            self.next_id += 1;
            let reg = ClientRegistration { id, overlay, frames: frames_tx, close: close_tx, appearance: None };
            self.broadcaster.register(reg).await.unwrap();
            TestClient { frames, close }
        }
    }

    async fn ticks(n: u32) {
        tokio::time::sleep(TICK * n).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_session_is_shown_to_its_clients_with_the_next_read() {
        let mut bench = start();
        let overlay = bench.session().await;
        bench.vote(overlay, "1").await;
        let mut client = bench.client(overlay, 16).await;
        assert!(client.values().is_empty(), "nothing before a read");
        ticks(1).await;
        let frames = client.values();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["value"], 10.0);
        assert_eq!(frames[0]["status"], "active");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_joining_a_shown_session_gets_the_last_frame_at_once_and_unchanged_reads_send_nothing() {
        let mut bench = start();
        let overlay = bench.session().await;
        let mut first = bench.client(overlay, 16).await;
        ticks(1).await;
        assert_eq!(first.values().len(), 1);
        let mut second = bench.client(overlay, 16).await;
        tokio::task::yield_now().await;
        let frames = second.values();
        assert_eq!(frames.len(), 1, "the last frame, before any read: {frames:?}");
        ticks(5).await;
        assert!(first.values().is_empty() && second.values().is_empty(), "the bar did not move");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_vote_is_shown_on_the_next_tick_and_the_decay_after_it() {
        let mut bench = start();
        let overlay = bench.session().await;
        let mut client = bench.client(overlay, 64).await;
        ticks(1).await;
        client.values();
        bench.vote(overlay, "7").await;
        ticks(1).await;
        let after_vote = client.values();
        assert_eq!(after_vote.len(), 1);
        let v1 = after_vote[0]["value"].as_f64().unwrap();
        assert!(v1 > 9.9 && v1 <= 10.0, "{v1}");
        assert_eq!(after_vote[0]["decay"], 0.5, "the frame says how the value decays");
        tokio::time::sleep(Duration::from_secs(1)).await;
        // What a client shows now, from the last frame it got.
        let last = client.values().pop().unwrap_or_else(|| after_vote[0].clone());
        let now = bench.clock.now_ms();
        let shown =
            last["value"].as_f64().unwrap() * (-0.5 * (now - last["at"].as_i64().unwrap()) as f64 / 1000.0).exp();
        let expected = read_value(&bench, overlay).await;
        assert!((shown - expected).abs() < 0.05, "decay 0.5/s after 1 s: {shown} vs {expected}");
        bench.stop.cancel();
    }

    async fn read_value(bench: &Bench, overlay: OverlayId) -> f64 {
        let read = bench.live.store.read_many(&[overlay], bench.clock.now_ms()).await.unwrap();
        read[0].unwrap().value
    }

    /// The trajectory a frame gives, at `now`.
    fn trajectory(frame: &serde_json::Value, now: i64) -> f64 {
        let (value, at, k) =
            (frame["value"].as_f64().unwrap(), frame["at"].as_i64().unwrap(), frame["decay"].as_f64().unwrap());
        value * (-k * (now - at).max(0) as f64 / 1000.0).exp()
    }

    #[tokio::test(start_paused = true)]
    async fn a_decaying_bar_gets_a_few_trajectory_frames_that_clients_follow_to_the_centre() {
        let mut bench = start();
        let overlay = bench.session().await;
        let mut client = bench.client(overlay, 64).await;
        ticks(1).await;
        client.values();
        let mut frames = Vec::new();
        for chatter in ["1", "2", "3"] {
            bench.vote(overlay, chatter).await;
            ticks(1).await;
            frames.extend(client.values());
        }
        // Six seconds of decay, checked every tick: what the client draws
        // from its last frame is what the store says.
        for _ in 0..120 {
            ticks(1).await;
            frames.extend(client.values());
            let now = bench.clock.now_ms();
            let drawn = trajectory(frames.last().unwrap(), now);
            let truth = read_value(&bench, overlay).await;
            assert!((drawn - truth).abs() < 0.05, "{drawn} drawn, {truth} true, {frames:?}");
        }
        assert!(frames.len() <= 15, "{} frames in 6 s (was one per tick: 120)", frames.len());
        assert!(frames.len() >= 6, "keyframes now and then: {}", frames.len());
        let ats: Vec<i64> = frames.iter().map(|f| f["at"].as_i64().unwrap()).collect();
        // After the votes' frames: the first keyframe half a second or more
        // after the last vote's, then one a glide period (a second).
        assert!(ats[3] - ats[2] >= KEYFRAME_MS / 2, "{ats:?}");
        let keyframes = ats.windows(2).skip(3).filter(|w| w[1] - w[0] < KEYFRAME_MS).count();
        assert_eq!(keyframes, 0, "at most one keyframe a second after the votes: {ats:?}");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn gliding_bars_are_read_once_a_glide_period_spread_over_the_ticks_and_a_vote_at_once() {
        let mut bench = start();
        let mut sessions = Vec::new();
        for n in 0..40 {
            let overlay = bench.session().await;
            let client = bench.client(overlay, 64).await;
            bench.vote(overlay, &format!("{}", 100 + n)).await;
            sessions.push((overlay, client));
        }
        ticks(2).await;
        for (_, client) in &mut sessions {
            assert_eq!(client.values().len(), 1, "each bar shown once, after its vote");
        }
        // Two seconds of decay: each bar is read about twice (once a glide
        // period), not 40 times; no tick reads all 40.
        let (reads, sessions_read) =
            (bench.live.reads.load(Ordering::SeqCst), bench.live.sessions_read.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let reads = bench.live.reads.load(Ordering::SeqCst) - reads;
        let per_session = (bench.live.sessions_read.load(Ordering::SeqCst) - sessions_read) as f64 / 40.0;
        assert!((1.5..=2.5).contains(&per_session), "{per_session} reads per gliding bar in 2 s (was 40)");
        assert!(reads >= 20, "spread over the 40 ticks, not one burst: {reads} reads");
        for (_, client) in &mut sessions {
            let frames = client.values();
            assert!((1..=3).contains(&frames.len()), "a keyframe a second: {frames:?}");
        }
        // A vote on a gliding bar is read and shown on the very next tick.
        let (overlay, client) = &mut sessions[7];
        let before = bench.live.sessions_read.load(Ordering::SeqCst);
        bench.vote(*overlay, "99").await;
        ticks(1).await;
        let frames = client.values();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert!(frames[0]["value"].as_f64().unwrap() > 10.0, "the second vote shows: {frames:?}");
        let read = bench.live.sessions_read.load(Ordering::SeqCst) - before;
        assert!(read <= 10, "that bar and its tick's share of the others, not all 40: {read}");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_bar_back_at_the_centre_gets_its_last_frame_and_then_rests() {
        let mut bench = start();
        let overlay = bench.session().await;
        let mut client = bench.client(overlay, 64).await;
        ticks(1).await;
        bench.vote(overlay, "1").await;
        // 10 at k = 0.5 shows 0.00 after about 14 s.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let frames = client.values();
        assert_eq!(frames.last().unwrap()["value"], 0.0, "the centre is sent: {frames:?}");
        let before = bench.live.reads.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(client.values().is_empty(), "nothing more");
        let reads = bench.live.reads.load(Ordering::SeqCst) - before;
        assert!(reads <= 3, "resting: {reads} reads in 4 s");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_cannot_keep_up_is_evicted_and_the_others_keep_their_frames() {
        let mut bench = start();
        let overlay = bench.session().await;
        let mut slow = bench.client(overlay, 1).await;
        let mut fast = bench.client(overlay, 64).await;
        // `slow` never reads: its queue of one fills, the next frame evicts it.
        for chatter in ["3", "4", "5"] {
            bench.vote(overlay, chatter).await;
            ticks(1).await;
        }
        assert_eq!(slow.close.try_recv(), Ok(CloseReason::Evicted));
        assert_eq!(fast.values().len(), 3, "a frame for each vote for the others");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_store_delays_frames_but_not_new_clients_and_reads_never_pile_up() {
        let mut bench = start();
        let overlay = bench.session().await;
        let mut first = bench.client(overlay, 16).await;
        ticks(1).await;
        assert_eq!(first.values().len(), 1);
        *bench.live.read_delay.lock().unwrap() = Duration::from_secs(5);
        let reads_before = bench.live.reads.load(Ordering::SeqCst);
        ticks(2).await;
        // A read is now stuck for 5 s; a new client still gets the last frame.
        let mut second = bench.client(overlay, 16).await;
        tokio::task::yield_now().await;
        assert_eq!(second.values().len(), 1, "served without waiting for the store");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let reads = bench.live.reads.load(Ordering::SeqCst) - reads_before;
        assert_eq!(reads, 1, "ticks during a read are skipped, not queued");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_bar_at_rest_is_read_once_per_resting_period_until_touched() {
        let mut bench = start();
        let overlay = bench.session().await;
        let mut client = bench.client(overlay, 16).await;
        // Three unchanged reads at the centre, a glide period apart, make it rest.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let before = bench.live.reads.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(4)).await;
        let resting_reads = bench.live.reads.load(Ordering::SeqCst) - before;
        assert!((1..=3).contains(&resting_reads), "about one read per 2 s, not 80: {resting_reads}");
        client.values();
        bench.vote(overlay, "9").await;
        ticks(1).await;
        assert_eq!(client.values().len(), 1, "a touched resting bar is read at once");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_missing_from_the_store_is_reported_once_and_closing_it_says_why() {
        let mut bench = start();
        let overlay = OverlayId::random();
        let mut client = bench.client(overlay, 16).await;
        ticks(3).await;
        assert_eq!(bench.missing.try_recv(), Ok(overlay));
        assert!(bench.missing.try_recv().is_err(), "reported once");
        assert_eq!(client.values()[0]["value"], 0.0, "the centre until it is back");
        bench.broadcaster.close_session(overlay, CloseReason::OverlayGone).await;
        tokio::task::yield_now().await;
        assert_eq!(client.close.await, Ok(CloseReason::OverlayGone));
        bench.stop.cancel();
    }
}
