//! Session lifecycle on one instance.
//!
//! The first overlay client of a session activates it (config into the live
//! store, broadcaster → session mapping). When its last client leaves, the
//! session is deactivated after a grace period, so a reloading OBS scene does
//! not reset the bar. A periodic reconciler applies configuration changes made
//! elsewhere (CLI, another instance), closes overlays whose streamer is gone,
//! and renews this instance's leases on its sessions.
//!
//! Sessions repair themselves: when the live store has lost a session that
//! still has overlays here (a Redis restart without persistence, a failover),
//! the broadcaster or the lease renewal notices and the session is activated
//! again from the durable store, without anyone reloading anything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::eventsub::EventSub;
use crate::broadcast::{Broadcaster, CloseReason};
use crate::domain::{Appearance, BroadcasterId, OverlayId, StreamerId};
use crate::metrics::Metrics;
use crate::store::signals::{Signal, SignalBus};
use crate::store::{Lease, LiveStore, OverlaySetup, Repository, SessionActivation};

/// Sessions named in one `Voted` signal at most (a bigger batch is split):
/// a message of some 50 KB.
const VOTED_PER_SIGNAL: usize = 1_000;

/// How sessions are held on this instance.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// This instance's id in session leases (random per process).
    pub instance_id: String,
    /// How long a lease lasts without renewal; renewed every third of it.
    pub lease_ttl: Duration,
    /// How long this instance counts as alive after a heartbeat; beaten
    /// every third of it.
    pub heartbeat_ttl: Duration,
    /// How long a session stays after its last overlay here disconnected.
    pub grace: Duration,
    /// Overlay connections per session on this instance.
    pub max_clients: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("unknown overlay")]
    NotFound,
    #[error("this overlay already has the maximum number of connections")]
    Full,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

/// What the session manager works with.
pub struct SessionPorts {
    pub repo: Arc<dyn Repository>,
    pub live: Arc<dyn LiveStore>,
    pub broadcaster: Broadcaster,
    /// Tells other instances that a session changed.
    pub signals: Arc<SignalBus>,
    /// Subscribes channels to chat on activation (absent without Twitch).
    pub eventsub: Option<Arc<EventSub>>,
}

struct Inner {
    repo: Arc<dyn Repository>,
    live: Arc<dyn LiveStore>,
    broadcaster: Broadcaster,
    signals: Arc<SignalBus>,
    metrics: Metrics,
    settings: SessionSettings,
    eventsub: Option<Arc<EventSub>>,
    local: Mutex<HashMap<OverlayId, Local>>,
    /// Sessions that took votes here since the last `Voted` signal
    /// (distributed mode only).
    voted: Mutex<HashSet<OverlayId>>,
    shutdown: CancellationToken,
}

struct Local {
    /// Connections here, dashboard previews included.
    clients: usize,
    /// Of which dashboard previews (the streamer's own page, not OBS).
    previews: usize,
    streamer: StreamerId,
    broadcaster: BroadcasterId,
    config_version: i64,
    /// The labels and look of that config version.
    appearance: Arc<Appearance>,
    /// Bumped on every acquire and release; a pending deactivation only
    /// proceeds if nothing happened since it was scheduled.
    generation: u64,
    /// A deactivation is in flight; if a client arrives meanwhile the
    /// deactivating task re-activates the session when it is done.
    deactivating: bool,
    /// The overlay URL is dead (rotated or removed): nobody may join.
    retired: bool,
}

/// Held by one overlay connection; dropping it releases the session.
pub struct SessionLease {
    manager: SessionManager,
    overlay: OverlayId,
    preview: bool,
}

impl SessionLease {
    /// The session's labels and look, as this instance knows them now.
    pub fn appearance(&self) -> Option<Arc<Appearance>> {
        self.manager.local().get(&self.overlay).map(|e| Arc::clone(&e.appearance))
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        self.manager.release(self.overlay, self.preview);
    }
}

/// Overlay connections open on this instance for one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOverlays {
    /// In OBS (or anywhere but the dashboard).
    pub overlays: u32,
    /// The dashboard's previews.
    pub previews: u32,
}

fn activation(setup: &OverlaySetup) -> SessionActivation {
    SessionActivation {
        overlay: setup.streamer.overlay_id,
        broadcaster: setup.streamer.twitch_user_id.clone(),
        config: setup.config.config.clone(),
        config_version: setup.config.version,
    }
}

impl SessionManager {
    pub fn new(ports: SessionPorts, metrics: Metrics, settings: SessionSettings, shutdown: CancellationToken) -> Self {
        let SessionPorts { repo, live, broadcaster, signals, eventsub } = ports;
        let local = Mutex::new(HashMap::new());
        let voted = Mutex::new(HashSet::new());
        let inner = Inner { repo, live, broadcaster, signals, metrics, settings, eventsub, local, voted, shutdown };
        Self { inner: Arc::new(inner) }
    }

    fn lease(&self) -> Lease<'_> {
        let ttl_ms = i64::try_from(self.inner.settings.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        Lease { instance: &self.inner.settings.instance_id, ttl_ms }
    }

    fn local(&self) -> MutexGuard<'_, HashMap<OverlayId, Local>> {
        self.inner.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins a session for one overlay connection, activating it if this is
    /// the first connection on this instance.
    pub async fn acquire(&self, overlay: OverlayId) -> Result<SessionLease, AcquireError> {
        self.acquire_as(overlay, false).await
    }

    /// [`Self::acquire`] for a connection that is the dashboard's preview
    /// (`preview`): counted apart from overlays in OBS.
    pub async fn acquire_as(&self, overlay: OverlayId, preview: bool) -> Result<SessionLease, AcquireError> {
        if self.try_join(overlay, preview)? {
            return Ok(SessionLease { manager: self.clone(), overlay, preview });
        }
        let setup = self
            .inner
            .repo
            .overlay_setup(overlay)
            .await
            .map_err(|e| AcquireError::Unavailable(e.to_string()))?
            .ok_or(AcquireError::NotFound)?;
        self.inner
            .live
            .activate(&activation(&setup), self.lease(), crate::now_ms())
            .await
            .map_err(|e| AcquireError::Unavailable(e.to_string()))?;
        if setup.streamer.needs_relogin {
            // Their Twitch authorization is gone: the overlay says so, and
            // there is nothing to subscribe with until they log in again.
            let status = crate::domain::SessionStatus::Disconnected;
            if let Err(e) = self.inner.live.set_status(overlay, status, crate::now_ms()).await {
                tracing::warn!(overlay = %overlay.fingerprint(), error = %e, "cannot mark the session disconnected");
            }
        } else {
            self.ensure_subscriptions(setup.streamer.id, &setup.streamer.twitch_user_id);
        }
        let mut local = self.local();
        let entry = local.entry(overlay).or_insert_with(|| Local {
            clients: 0,
            previews: 0,
            streamer: setup.streamer.id,
            broadcaster: setup.streamer.twitch_user_id.clone(),
            config_version: setup.config.version,
            appearance: Arc::new(setup.config.config.appearance(setup.config.version)),
            generation: 0,
            deactivating: false,
            retired: false,
        });
        if entry.clients >= self.inner.settings.max_clients {
            return Err(AcquireError::Full);
        }
        entry.clients += 1;
        entry.previews += usize::from(preview);
        entry.generation += 1;
        self.inner.metrics.sessions_active.set(local.len() as i64);
        Ok(SessionLease { manager: self.clone(), overlay, preview })
    }

    /// The overlay connections open here for a channel.
    pub fn open_overlays(&self, broadcaster: &BroadcasterId) -> OpenOverlays {
        let local = self.local();
        let mut open = OpenOverlays::default();
        for entry in local.values().filter(|e| &e.broadcaster == broadcaster && !e.retired) {
            let previews = u32::try_from(entry.previews).unwrap_or(u32::MAX);
            open.previews = open.previews.saturating_add(previews);
            let overlays = u32::try_from(entry.clients - entry.previews.min(entry.clients)).unwrap_or(u32::MAX);
            open.overlays = open.overlays.saturating_add(overlays);
        }
        open
    }

    /// Makes sure Twitch delivers this channel's chat to us, in the
    /// background: an overlay works at once, votes flow once subscribed.
    pub fn ensure_subscriptions(&self, streamer: StreamerId, broadcaster: &BroadcasterId) {
        let Some(eventsub) = self.inner.eventsub.clone() else { return };
        let broadcaster = broadcaster.clone();
        tokio::spawn(async move {
            if let Err(e) = eventsub.ensure_channel(Some(streamer), &broadcaster).await {
                tracing::warn!(%broadcaster, error = %e, "cannot subscribe to the channel's chat");
            }
        });
    }

    /// A session's value or status changed here (a status, a reset, a vote
    /// that moved a bar from the centre): its overlays on this instance see
    /// it on the next tick, and so do those on every other instance, where
    /// the bar may be resting and read only once a second.
    pub fn touch(&self, overlay: OverlayId) {
        self.inner.broadcaster.touch(overlay);
        if self.inner.signals.is_shared() {
            let signals = Arc::clone(&self.inner.signals);
            // Off the caller's path (the vote path among them).
            tokio::spawn(async move {
                if let Err(e) = signals.publish(Signal::Moved { overlay }).await {
                    tracing::debug!(overlay = %overlay.fingerprint(), error = %e, "other instances see the change on their resting read");
                }
            });
        }
    }

    /// A vote on a bar that was already off the centre: this instance's
    /// overlays see it on the next tick, other instances' with the next
    /// `Voted` signal (one per tick for all such votes, see [`Self::run_voted`]).
    pub fn touch_voted(&self, overlay: OverlayId) {
        self.inner.broadcaster.touch(overlay);
        if self.inner.signals.is_shared() {
            self.inner.voted.lock().unwrap_or_else(|p| p.into_inner()).insert(overlay);
        }
    }

    /// Every `every` (a broadcaster tick), tells the other instances which
    /// sessions took votes here since the last time: one signal, however
    /// many votes. Does nothing in embedded mode (nobody else to tell).
    pub async fn run_voted(self, every: Duration, shutdown: CancellationToken) {
        if !self.inner.signals.is_shared() {
            return shutdown.cancelled().await;
        }
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let voted = std::mem::take(&mut *self.inner.voted.lock().unwrap_or_else(|p| p.into_inner()));
            if voted.is_empty() {
                continue;
            }
            let overlays: Vec<OverlayId> = voted.into_iter().collect();
            for chunk in overlays.chunks(VOTED_PER_SIGNAL) {
                if let Err(e) = self.inner.signals.publish(Signal::Voted { overlays: chunk.to_vec() }).await {
                    tracing::debug!(sessions = chunk.len(), error = %e, "other instances see these votes on their next glide read");
                }
            }
        }
    }

    /// Deletes a cleaned-up channel's subscriptions, in the background.
    fn forget_subscriptions(&self, broadcaster: &BroadcasterId) {
        let Some(eventsub) = self.inner.eventsub.clone() else { return };
        let broadcaster = broadcaster.clone();
        tokio::spawn(async move { eventsub.forget_channel(None, &broadcaster).await });
    }

    /// Joins an already active local session. `Ok(false)` means there is none.
    fn try_join(&self, overlay: OverlayId, preview: bool) -> Result<bool, AcquireError> {
        let mut local = self.local();
        let Some(entry) = local.get_mut(&overlay) else { return Ok(false) };
        if entry.retired {
            return Err(AcquireError::NotFound);
        }
        if entry.clients >= self.inner.settings.max_clients {
            return Err(AcquireError::Full);
        }
        entry.clients += 1;
        entry.previews += usize::from(preview);
        entry.generation += 1;
        Ok(true)
    }

    fn release(&self, overlay: OverlayId, preview: bool) {
        let generation = {
            let mut local = self.local();
            let Some(entry) = local.get_mut(&overlay) else { return };
            entry.clients = entry.clients.saturating_sub(1);
            entry.previews = entry.previews.saturating_sub(usize::from(preview));
            entry.generation += 1;
            if entry.clients > 0 {
                return;
            }
            entry.generation
        };
        let manager = self.clone();
        // Without a runtime (process teardown) there is nothing left to clean.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // A process that is shutting down leaves its sessions to
                // their leases (and the leader's reconciliation): overlays
                // are about to reconnect to another instance.
                tokio::select! {
                    _ = manager.inner.shutdown.cancelled() => {}
                    _ = tokio::time::sleep(manager.inner.settings.grace) => {
                        manager.deactivate_if_idle(overlay, generation).await;
                    }
                }
            });
        }
    }

    async fn deactivate_if_idle(&self, overlay: OverlayId, generation: u64) {
        let broadcaster = {
            let mut local = self.local();
            match local.get_mut(&overlay) {
                Some(e) if e.clients == 0 && e.generation == generation && !e.deactivating => {
                    e.deactivating = true;
                    e.broadcaster.clone()
                }
                _ => return,
            }
        };
        let instance = &self.inner.settings.instance_id;
        match self.inner.live.release(overlay, &broadcaster, instance, crate::now_ms()).await {
            // The last lease anywhere: the channel's subscriptions go too.
            Ok(true) => self.forget_subscriptions(&broadcaster),
            Ok(false) => {}
            Err(e) => {
                self.inner.metrics.live_error("release");
                tracing::warn!(overlay = %overlay.fingerprint(), error = %e, "session release failed; its lease will expire");
            }
        }
        let rejoined = {
            let mut local = self.local();
            let rejoined = local.get(&overlay).is_some_and(|e| e.clients > 0);
            if let Some(e) = local.get_mut(&overlay) {
                e.deactivating = false;
            }
            if !rejoined {
                local.remove(&overlay);
            }
            self.inner.metrics.sessions_active.set(local.len() as i64);
            rejoined
        };
        if rejoined {
            // A client arrived while we were deactivating: bring the session back.
            self.refresh(overlay).await;
        }
    }

    /// Sessions with overlays on this instance: id, channel, known config version.
    /// Every session this instance holds (also within the grace period after
    /// its last overlay left), with its streamer: whose history it flushes.
    pub fn hosted(&self) -> Vec<(OverlayId, StreamerId, BroadcasterId)> {
        self.local().iter().map(|(o, e)| (*o, e.streamer, e.broadcaster.clone())).collect()
    }

    fn active(&self) -> Vec<(OverlayId, BroadcasterId, i64)> {
        self.local()
            .iter()
            .filter(|(_, e)| e.clients > 0 && !e.retired)
            .map(|(o, e)| (*o, e.broadcaster.clone(), e.config_version))
            .collect()
    }

    /// Re-reads one session's configuration from the durable store: applies a
    /// newer version to the live store, or closes the overlays of a removed
    /// streamer.
    async fn refresh(&self, overlay: OverlayId) {
        let setup = match self.inner.repo.overlay_setup(overlay).await {
            Ok(setup) => setup,
            Err(e) => {
                self.inner.metrics.durable_error("overlay_setup");
                tracing::warn!(overlay = %overlay.fingerprint(), error = %e, "cannot reconcile session config");
                return;
            }
        };
        let Some(setup) = setup else {
            tracing::info!(overlay = %overlay.fingerprint(), "overlay removed; closing its connections");
            self.retire(overlay, CloseReason::OverlayRemoved).await;
            return;
        };
        if let Err(e) = self.inner.live.activate(&activation(&setup), self.lease(), crate::now_ms()).await {
            self.inner.metrics.live_error("activate");
            tracing::warn!(overlay = %overlay.fingerprint(), error = %e, "cannot apply session config");
            return;
        }
        let appearance = Arc::new(setup.config.config.appearance(setup.config.version));
        if let Some(e) = self.local().get_mut(&overlay) {
            e.config_version = setup.config.version;
            e.appearance = Arc::clone(&appearance);
        }
        self.inner.broadcaster.update_appearance(overlay, appearance).await;
        // The meter model or decay may have changed what the bar shows: read
        // it on the next tick, even if it was resting.
        self.inner.broadcaster.touch(overlay);
    }

    /// Makes an overlay URL dead on this instance: no new client may join,
    /// and the open ones are closed (4404, saying why).
    async fn retire(&self, overlay: OverlayId, reason: CloseReason) {
        if let Some(entry) = self.local().get_mut(&overlay) {
            entry.retired = true;
        }
        self.inner.broadcaster.close_session(overlay, reason).await;
    }

    /// Applies a signal from any instance to the sessions held here.
    pub async fn apply(&self, signal: Signal) {
        match signal {
            Signal::ConfigChanged { overlay } => {
                // Every instance may take this channel's webhooks: none may
                // keep matching the old trigger words.
                self.inner.live.forget_cached(overlay);
                if self.local().get(&overlay).is_some_and(|e| e.clients > 0) {
                    self.refresh(overlay).await;
                }
            }
            Signal::Moved { overlay } => {
                if self.local().contains_key(&overlay) {
                    self.inner.broadcaster.touch(overlay);
                }
            }
            Signal::Voted { overlays } => {
                let local = self.local();
                for overlay in overlays.into_iter().filter(|o| local.contains_key(o)) {
                    self.inner.broadcaster.touch(overlay);
                }
            }
            Signal::OverlayRotated { old } => {
                self.inner.live.forget_cached(old);
                self.retire(old, CloseReason::OverlayGone).await;
            }
            Signal::OverlayRemoved { overlay } => {
                self.inner.live.forget_cached(overlay);
                self.retire(overlay, CloseReason::OverlayRemoved).await;
            }
            Signal::ReloadOverlays { overlay } => {
                if self.local().contains_key(&overlay) {
                    self.inner.broadcaster.reload(overlay).await;
                }
            }
            // The status watch is the activity reporter's (`app::activity`).
            Signal::WatchActivity { .. } => {}
        }
    }

    /// Applies every signal from the bus until shutdown.
    pub async fn run_signals(self, mut signals: tokio::sync::broadcast::Receiver<Signal>, shutdown: CancellationToken) {
        loop {
            let signal = tokio::select! {
                _ = shutdown.cancelled() => return,
                signal = signals.recv() => signal,
            };
            match signal {
                Ok(signal) => self.apply(signal).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "instance signals were dropped; the reconciler catches up");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Every `config_every` (on a tick of `interval`), brings active
    /// sessions in line with the durable store; every third of a heartbeat,
    /// beats this instance's heartbeat; every third of a lease (at most that
    /// often), renews its leases.
    pub async fn run_reconciler(self, interval: Duration, config_every: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Leases are renewed three times per lease, not on every check: a
        // missed renewal still leaves two more chances before expiry.
        let renew_every = (self.inner.settings.lease_ttl / 3).max(interval);
        let beat_every = (self.inner.settings.heartbeat_ttl / 3).max(interval);
        let mut renewed: Option<tokio::time::Instant> = None;
        let mut beaten: Option<tokio::time::Instant> = None;
        let mut checked: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let active = self.active();
            if beaten.is_none_or(|at| at.elapsed() + interval / 2 >= beat_every) {
                self.beat().await;
                beaten = Some(tokio::time::Instant::now());
            }
            if !active.is_empty() && renewed.is_none_or(|at| at.elapsed() + interval / 2 >= renew_every) {
                self.renew(&active).await;
                renewed = Some(tokio::time::Instant::now());
            }
            if active.is_empty() {
                continue;
            }
            if checked.is_some_and(|at| at.elapsed() + interval / 2 < config_every) {
                continue;
            }
            checked = Some(tokio::time::Instant::now());
            let overlays: Vec<OverlayId> = active.iter().map(|(o, _, _)| *o).collect();
            let current = match self.inner.repo.config_versions(&overlays).await {
                Ok(current) => current,
                Err(e) => {
                    self.inner.metrics.durable_error("config_versions");
                    tracing::warn!(error = %e, "config reconciliation skipped");
                    continue;
                }
            };
            for (overlay, _, known_version) in active {
                if current.get(&overlay) != Some(&known_version) {
                    self.refresh(overlay).await;
                }
            }
        }
    }

    /// This instance is alive for another lease (the leader releases the
    /// leases of an instance whose heartbeat ended: a crashed one).
    async fn beat(&self) {
        let ttl_ms = i64::try_from(self.inner.settings.heartbeat_ttl.as_millis()).unwrap_or(i64::MAX);
        let instance = &self.inner.settings.instance_id;
        if let Err(e) = self.inner.live.heartbeat(instance, ttl_ms, crate::now_ms()).await {
            self.inner.metrics.live_error("heartbeat");
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }

    async fn renew(&self, active: &[(OverlayId, BroadcasterId, i64)]) {
        let sessions: Vec<(OverlayId, BroadcasterId)> = active.iter().map(|(o, b, _)| (*o, b.clone())).collect();
        match self.inner.live.renew(&sessions, self.lease(), crate::now_ms()).await {
            Ok(missing) => {
                for overlay in missing {
                    tracing::info!(overlay = %overlay.fingerprint(), "session missing from the live store; re-activating");
                    self.refresh(overlay).await;
                }
            }
            Err(e) => {
                self.inner.metrics.live_error("renew");
                tracing::warn!(error = %e, "lease renewal failed");
            }
        }
    }

    /// Re-activates sessions the broadcaster found missing from the live store.
    pub async fn run_repair(&self, missing: &mut tokio::sync::mpsc::Receiver<OverlayId>, shutdown: CancellationToken) {
        loop {
            let overlay = tokio::select! {
                _ = shutdown.cancelled() => return,
                overlay = missing.recv() => match overlay {
                    Some(overlay) => overlay,
                    None => return,
                },
            };
            let held_here = self.local().get(&overlay).is_some_and(|e| e.clients > 0 && !e.deactivating);
            if held_here {
                tracing::info!(overlay = %overlay.fingerprint(), "session missing from the live store; re-activating");
                self.refresh(overlay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::BroadcastTiming;
    use crate::clock::Clock;
    use crate::store::NewStreamer;
    use crate::store::memory::MemoryLiveStore;
    use crate::store::sqlite::SqliteRepository;

    const GRACE: Duration = Duration::from_secs(30);

    struct Bench {
        manager: SessionManager,
        live: Arc<MemoryLiveStore>,
        overlay: OverlayId,
        broadcaster: BroadcasterId,
        stop: CancellationToken,
        _data: tempfile::TempDir,
    }

    async fn bench(max_clients: usize) -> Bench {
        let data = tempfile::tempdir().unwrap();
        let repo: Arc<dyn Repository> = Arc::new(SqliteRepository::open(data.path()).unwrap());
        let broadcaster = BroadcasterId::parse("41245007").unwrap();
        let new =
            NewStreamer { twitch_user_id: broadcaster.clone(), login: "pixel".into(), display_name: "Pixel".into() };
        let overlay = repo.create_streamer(&new).await.unwrap().streamer.overlay_id;
        let live = Arc::new(MemoryLiveStore::new(crate::store::VoteLimits::default()));
        let metrics = Metrics::register(&mut prometheus_client::registry::Registry::default());
        let stop = CancellationToken::new();
        let timing = BroadcastTiming {
            tick: Duration::from_millis(50),
            resting_read: Duration::from_secs(2),
            glide_read: Duration::from_secs(1),
            clock: Clock::following_tokio(crate::now_ms()),
        };
        let (missing, _) = tokio::sync::mpsc::channel(16);
        let store: Arc<dyn LiveStore> = live.clone();
        let (broadcast, _) = Broadcaster::spawn(Arc::clone(&store), metrics.clone(), timing, missing, stop.clone());
        let ports = SessionPorts {
            repo,
            live: store,
            broadcaster: broadcast,
            signals: Arc::new(SignalBus::local()),
            eventsub: None,
        };
        let settings = SessionSettings {
            instance_id: "here".into(),
            lease_ttl: Duration::from_secs(30),
            heartbeat_ttl: Duration::from_secs(30),
            grace: GRACE,
            max_clients,
        };
        let manager = SessionManager::new(ports, metrics, settings, stop.clone());
        Bench { manager, live, overlay, broadcaster, stop, _data: data }
    }

    impl Bench {
        async fn active(&self) -> bool {
            self.live.session_for(&self.broadcaster).await.unwrap().is_some()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_overlay_activates_the_session_and_the_last_one_gone_releases_it_after_the_grace_period() {
        let bench = bench(50).await;
        assert!(!bench.active().await);
        let lease = bench.manager.acquire(bench.overlay).await.unwrap();
        assert!(bench.active().await, "activated with its first overlay");
        drop(lease);
        tokio::time::sleep(GRACE - Duration::from_millis(10)).await;
        assert!(bench.active().await, "kept through the grace period");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!bench.active().await, "released once the grace period is over");
        assert_eq!(bench.manager.active(), vec![], "nothing held here any more");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_overlay_back_within_the_grace_period_keeps_the_session() {
        let bench = bench(50).await;
        let lease = bench.manager.acquire(bench.overlay).await.unwrap();
        drop(lease);
        tokio::time::sleep(GRACE / 2).await;
        let back = bench.manager.acquire(bench.overlay).await.unwrap();
        tokio::time::sleep(GRACE * 2).await;
        assert!(bench.active().await, "an OBS scene reload does not end the session");
        drop(back);
        tokio::time::sleep(GRACE + Duration::from_millis(10)).await;
        assert!(!bench.active().await);
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_session_and_an_unknown_overlay_are_refused_and_change_nothing() {
        let bench = bench(2).await;
        let _one = bench.manager.acquire(bench.overlay).await.unwrap();
        let _two = bench.manager.acquire(bench.overlay).await.unwrap();
        assert!(matches!(bench.manager.acquire(bench.overlay).await, Err(AcquireError::Full)));
        assert!(matches!(bench.manager.acquire(OverlayId::random()).await, Err(AcquireError::NotFound)));
        assert_eq!(bench.manager.active().len(), 1, "the refusals held nothing");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn the_reconciler_beats_the_instances_heartbeat_even_without_sessions() {
        let bench = bench(50).await;
        let manager = bench.manager.clone();
        let stop = bench.stop.child_token();
        tokio::spawn(manager.run_reconciler(Duration::from_secs(5), Duration::from_secs(15), stop));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = crate::now_ms();
        assert_eq!(bench.live.expired_instances(now).await.unwrap(), Vec::<String>::new(), "alive");
        let after_lease = now + 30_001;
        assert_eq!(bench.live.expired_instances(after_lease).await.unwrap(), vec!["here".to_owned()], "for a lease");
        bench.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_the_live_store_lost_is_activated_again_by_the_lease_renewal() {
        let bench = bench(50).await;
        let _lease = bench.manager.acquire(bench.overlay).await.unwrap();
        let manager = bench.manager.clone();
        let stop = bench.stop.child_token();
        tokio::spawn(manager.run_reconciler(Duration::from_secs(5), Duration::from_secs(15), stop));
        tokio::time::sleep(Duration::from_millis(1)).await;
        // The live store forgets everything, as a restarted Redis would.
        bench.live.release(bench.overlay, &bench.broadcaster, "here", crate::now_ms()).await.unwrap();
        assert!(!bench.active().await);
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(bench.active().await, "re-activated from the durable store within a renewal period");
        bench.stop.cancel();
    }
}
