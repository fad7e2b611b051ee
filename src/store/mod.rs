//! Storage ports and their adapters.
//!
//! Two ports, each with one implementation per deployment shape:
//!
//! | port | embedded | distributed |
//! |---|---|---|
//! | [`Repository`] (accounts, configuration, subscriptions) | [`sqlite`] | PostgreSQL |
//! | [`LiveStore`] (votes, decaying values, session mapping) | [`memory`] | Redis Functions |
//!
//! Adapters never call each other; `app` composes them. The contract tests in
//! `tests/` run the same suite against every implementation.

pub mod api_tokens;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod signals;
pub mod sqlite;

use std::collections::HashMap;

use async_trait::async_trait;
use time::OffsetDateTime;

use serde::{Deserialize, Serialize};

use crate::domain::history::{
    ActionOutcome, BucketCounters, HistoryBucket, HistoryDeleted, Moment, MomentAction, MomentFilter, MomentId, Page,
    Paged, StreamEnd, StreamId, StreamOpened, StreamRecord,
};
use crate::domain::{
    BroadcasterId, ChatterId, Direction, MeterModel, OverlayConfig, OverlayId, SessionStatus, StreamerId,
};

// ---------------------------------------------------------------------------
// Live state
// ---------------------------------------------------------------------------

/// Limits the live store applies to every vote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoteLimits {
    /// Token bucket size per session. The bucket is an abuse guard: the
    /// per-chatter debounce already makes one person one vote per second, so
    /// the defaults are far above what an honest chat sends.
    pub bucket_capacity: u32,
    /// Tokens added per minute.
    pub bucket_refill_per_minute: f64,
    /// One counted vote per chatter per session within this window.
    pub debounce_ms: i64,
    /// A message id seen within this window is not applied again.
    pub dedup_ms: i64,
}

impl Default for VoteLimits {
    fn default() -> Self {
        Self {
            bucket_capacity: DEFAULT_BUCKET_CAPACITY,
            bucket_refill_per_minute: DEFAULT_BUCKET_REFILL_PER_MINUTE,
            debounce_ms: 1_000,
            dedup_ms: 600_000,
        }
    }
}

/// The token bucket's defaults (`VOTE_RATE_LIMIT_CAPACITY`,
/// `VOTE_RATE_LIMIT_RATE`): a burst of 1,000 votes, then 1,000 a second —
/// a thousand distinct chatters voting every second, more than any chat
/// sends, so only a flood of bots meets it.
pub const DEFAULT_BUCKET_CAPACITY: u32 = 1_000;
pub const DEFAULT_BUCKET_REFILL_PER_MINUTE: f64 = 60_000.0;

/// How long an idle token bucket is kept before it is forgotten (it would be
/// full again by then anyway at the default refill rate).
pub const BUCKET_IDLE_MS: i64 = 300_000;

/// What the live store needs to know to run a session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionActivation {
    pub overlay: OverlayId,
    pub broadcaster: BroadcasterId,
    pub config: OverlayConfig,
    pub config_version: i64,
}

/// An active session as the vote engine sees it. Cheap to clone: the
/// config is shared (every chat message of a channel takes one).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveSession {
    pub overlay: OverlayId,
    pub config: std::sync::Arc<OverlayConfig>,
    pub config_version: i64,
}

/// One vote, already matched to a direction.
#[derive(Debug, Clone, Copy)]
pub struct VoteRequest<'a> {
    pub overlay: OverlayId,
    /// `Twitch-Eventsub-Message-Id` of the delivery (identical on redelivery).
    pub message_id: &'a str,
    pub chatter: &'a ChatterId,
    pub direction: Direction,
    /// Whether a counted vote goes into the session's history bucket (test
    /// votes do not).
    pub record: bool,
}

/// The result of one atomic vote call. Expected outcomes are values, not errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VoteOutcome {
    /// Counted; the session's new value.
    Applied(f64),
    /// This message id was already seen within the de-duplication window.
    Duplicate,
    /// This chatter already voted in this session within the debounce window.
    Debounced,
    /// The session's token bucket is empty.
    RateLimited,
    /// No active session for this overlay.
    NoSession,
}

/// A session's current state as overlays see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// The value of the session's meter model at the time of the read.
    pub value: f64,
    pub status: SessionStatus,
    pub model: MeterModel,
    /// The balance model's decayed vote counts `[F, A]` at the time of the
    /// read (kept whatever the model).
    pub weights: [f64; 2],
    /// Distinct chatters with a counted vote in the minute before the last
    /// counted vote; 0 once that vote is a minute old
    /// (`domain::meter::recent_voters`).
    pub voters: u32,
    /// The decay speed (per second, sanitized) the value and counts follow
    /// from the time of the read until the next vote.
    pub decay: f64,
}

// ---------------------------------------------------------------------------
// "Is it working?": what each instance saw of a channel
// ---------------------------------------------------------------------------

/// How often each outcome happened in one time bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub applied: u32,
    pub duplicate: u32,
    pub debounced: u32,
    pub rate_limited: u32,
    pub no_session: u32,
    pub no_match: u32,
    pub error: u32,
}

impl OutcomeCounts {
    pub fn add(&mut self, other: &OutcomeCounts) {
        self.applied += other.applied;
        self.duplicate += other.duplicate;
        self.debounced += other.debounced;
        self.rate_limited += other.rate_limited;
        self.no_session += other.no_session;
        self.no_match += other.no_match;
        self.error += other.error;
    }
}

/// The counts of one time bucket, from `start_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeBucket {
    pub start_ms: i64,
    pub counts: OutcomeCounts,
}

/// One instance's account of a channel: its overlays open there now, the
/// chat it saw and what became of it. Each instance writes its own (only
/// while someone watches the channel's status); readers add them up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityReport {
    pub instance: String,
    /// When the instance wrote it (its clock).
    pub written_ms: i64,
    /// Overlay connections open on the instance (dashboard previews apart).
    pub overlays: u32,
    /// Dashboard previews open on the instance.
    pub previews: u32,
    /// The last chat message the instance saw for the channel (test votes
    /// apart), and the last one it counted.
    pub last_chat_ms: Option<i64>,
    pub last_vote_ms: Option<i64>,
    /// Outcomes of the chat it saw, in time buckets, oldest first.
    pub buckets: Vec<OutcomeBucket>,
}

/// How long a session's history state (its bucket in progress, closed
/// buckets, who takes them) is kept after its last vote or take.
pub const HISTORY_TTL_MS: i64 = 600_000;

/// How long a channel's reports are kept after the last one was written.
pub const ACTIVITY_REPORT_TTL_MS: i64 = 120_000;

#[derive(Debug, thiserror::Error)]
#[error("live store unavailable: {0}")]
pub struct LiveStoreError(pub String);

/// One instance's claim on a session: the session lives while any instance
/// holds an unexpired lease, so a crashed instance cannot keep it alive.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub instance: &'a str,
    pub ttl_ms: i64,
}

/// Live, fast-changing state shared by every instance.
///
/// Every method that takes `now_ms` uses it as the only clock, so behaviour is
/// reproducible and the same sequence of calls gives the same results in every
/// implementation.
#[async_trait]
pub trait LiveStore: Send + Sync + 'static {
    /// Creates the session (value 0) or updates the config of an existing one
    /// (keeping its value and last-vote time, so a new decay speed applies to
    /// the whole interval since the last vote; an older config version never
    /// replaces a newer one), records `lease` (removing leases that ended by
    /// `now_ms`), and maps the broadcaster to it.
    async fn activate(&self, session: &SessionActivation, lease: Lease<'_>, now_ms: i64) -> Result<(), LiveStoreError>;

    /// Extends this instance's lease on each session and maps its channel to
    /// it again (a release racing an activation elsewhere may have removed
    /// the mapping); leases that ended by `now_ms` are removed. Returns the sessions that no longer exist (e.g. the
    /// store lost its data), for re-activation.
    async fn renew(
        &self,
        sessions: &[(OverlayId, BroadcasterId)],
        lease: Lease<'_>,
        now_ms: i64,
    ) -> Result<Vec<OverlayId>, LiveStoreError>;

    /// Gives up `instance`'s lease (and removes leases that ended by
    /// `now_ms`). When no unexpired lease remains, removes
    /// the session, its token bucket and the broadcaster mapping (only if the
    /// mapping still points at this overlay), and returns true. De-duplication
    /// and debounce entries are left to expire: a redelivery after a quick
    /// re-activation is still recognised.
    async fn release(
        &self,
        overlay: OverlayId,
        broadcaster: &BroadcasterId,
        instance: &str,
        now_ms: i64,
    ) -> Result<bool, LiveStoreError>;

    /// Records that `instance` is alive until `now_ms + ttl_ms`. An instance
    /// beats as often as it renews its session leases, with the same TTL; the
    /// leader treats one whose heartbeat ended as crashed
    /// ([`expired_instances`](Self::expired_instances),
    /// [`drop_instance`](Self::drop_instance)).
    async fn heartbeat(&self, instance: &str, ttl_ms: i64, now_ms: i64) -> Result<(), LiveStoreError>;

    /// The instances whose heartbeat ended by `now_ms` (and that were not
    /// dropped yet).
    async fn expired_instances(&self, now_ms: i64) -> Result<Vec<String>, LiveStoreError>;

    /// Cleans up after a crashed instance: gives up its lease on every
    /// session it held (as [`release`](Self::release) would, expired leases of
    /// other instances going too) and forgets its heartbeat, unless it beat
    /// again by `now_ms`. Returns the channels whose session ended (no
    /// unexpired lease left), whose subscriptions should go.
    async fn drop_instance(&self, instance: &str, now_ms: i64) -> Result<Vec<BroadcasterId>, LiveStoreError>;

    /// Centres the bar: value 0 and no recent votes (both models) as of
    /// `now_ms`. False when the session is not active (nothing to reset).
    async fn reset(&self, overlay: OverlayId, now_ms: i64) -> Result<bool, LiveStoreError>;

    /// Records the session's status: whether the channel is streaming, or
    /// that its Twitch authorization is gone (`Disconnected`, which keeps the
    /// value; a later status replaces it). Going live centres the bar (each
    /// broadcast starts from the middle) unless the session was live already
    /// (a redelivered `stream.online`). Re-activation keeps the status.
    /// False when the session is not active.
    async fn set_status(&self, overlay: OverlayId, status: SessionStatus, now_ms: i64) -> Result<bool, LiveStoreError>;

    /// Drops whatever this process remembers of the overlay's session (its
    /// config, for [`session_for`](Self::session_for)): another instance
    /// changed it. A store that remembers nothing has nothing to drop.
    fn forget_cached(&self, _overlay: OverlayId) {}

    /// The active session of a channel, if any.
    async fn session_for(&self, broadcaster: &BroadcasterId) -> Result<Option<ActiveSession>, LiveStoreError>;

    /// One atomic step, in this order: de-duplication, debounce, token bucket,
    /// decay, apply. Each step that passes records itself before the next
    /// runs, so a vote refused by the bucket has still used its message id
    /// and its chatter's debounce slot (a redelivery of it is a `Duplicate`),
    /// while a duplicate or debounced vote spends no token. Applying updates
    /// both meter models (`domain::meter::MeterState::vote`) and the
    /// participation (the chatter's last counted vote; the count of distinct
    /// chatters within `VOTERS_WINDOW_MS` as of now). `Applied` carries the
    /// value of the session's model.
    async fn vote(&self, vote: &VoteRequest<'_>, now_ms: i64) -> Result<VoteOutcome, LiveStoreError>;

    /// Claims an EventSub message id for `VoteLimits::dedup_ms` as of
    /// `now_ms` (Redis: `eventsub:msgid:<id>`, one call), before the message
    /// has any effect: true the first time, false while an earlier claim is
    /// alive — a redelivery or a replay, through any instance. Chat messages
    /// are claimed inside [`vote`](Self::vote) instead (one call per vote).
    async fn claim_message(&self, message_id: &str, now_ms: i64) -> Result<bool, LiveStoreError>;

    /// Gives a claimed message id back, so that Twitch's redelivery of a
    /// message we failed to handle is handled then.
    async fn unclaim_message(&self, message_id: &str) -> Result<(), LiveStoreError>;

    /// Hands out the closed history buckets of these sessions, each once
    /// (`domain::history::bucket`: the buckets closed by a later vote, and
    /// the current one when it is over at `now_ms`), oldest first; sessions
    /// with none are left out. One instance takes a session's buckets at a
    /// time: the call claims each session for `instance` until `now_ms +
    /// claim_ms`, and a session another instance has claimed until later
    /// gives nothing. History outlives a released session for
    /// [`HISTORY_TTL_MS`] after its last vote or take.
    async fn take_buckets(
        &self,
        overlays: &[OverlayId],
        instance: &str,
        claim_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(OverlayId, Vec<BucketCounters>)>, LiveStoreError>;

    /// The decayed values of many sessions in one batch, in the order asked;
    /// `None` for sessions that are not active.
    async fn read_many(&self, overlays: &[OverlayId], now_ms: i64) -> Result<Vec<Option<Snapshot>>, LiveStoreError>;

    /// Leader election on the lease `key` (the deployment uses
    /// [`LEADER_KEY`]), in one atomic step: if nobody holds the key, or the
    /// holder's lease expired by `now_ms`, `instance` takes it until
    /// `now_ms + ttl_ms`; if `instance` already holds it, its lease is
    /// extended to that time. Returns whether `instance` leads after the call.
    async fn lead(&self, key: &str, instance: &str, ttl_ms: i64, now_ms: i64) -> Result<bool, LiveStoreError>;

    /// Releases the lease `key` if `instance` holds it (so another instance
    /// can lead at once); does nothing otherwise.
    async fn resign(&self, key: &str, instance: &str) -> Result<(), LiveStoreError>;

    /// Records this instance's report on a channel (replacing its previous
    /// one), kept for [`ACTIVITY_REPORT_TTL_MS`].
    async fn report_activity(&self, broadcaster: &BroadcasterId, report: &ActivityReport)
    -> Result<(), LiveStoreError>;

    /// Every instance's latest report on a channel written within
    /// [`ACTIVITY_REPORT_TTL_MS`] of `now_ms`.
    async fn activity_reports(
        &self,
        broadcaster: &BroadcasterId,
        now_ms: i64,
    ) -> Result<Vec<ActivityReport>, LiveStoreError>;

    /// Cheap reachability check for readiness.
    async fn ping(&self) -> Result<(), LiveStoreError>;
}

/// The lease key of the leader: the one instance that runs the deployment-wide
/// duties (ARCHITECTURE §5).
pub const LEADER_KEY: &str = "cleanup:leader";

// ---------------------------------------------------------------------------
// Durable data
// ---------------------------------------------------------------------------

/// A ChatPulse user: a Twitch channel owner.
#[derive(Debug, Clone, PartialEq)]
pub struct Streamer {
    pub id: StreamerId,
    pub overlay_id: OverlayId,
    pub twitch_user_id: BroadcasterId,
    pub login: String,
    pub display_name: String,
    /// Their Twitch tokens were lost (revoked, or refused on refresh or
    /// validation) and they must log in again; cleared by the next login.
    pub needs_relogin: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewStreamer {
    pub twitch_user_id: BroadcasterId,
    pub login: String,
    pub display_name: String,
}

/// A configuration as stored, with its version (bumped on every update).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConfig {
    pub config: OverlayConfig,
    pub version: i64,
    pub updated_at: OffsetDateTime,
}

/// One `configs` row's values, as both durable adapters write and read them.
/// Reading validates them as the dashboard would (through
/// [`ConfigInput`](crate::domain::ConfigInput)): a row that would not pass
/// is `Corrupt`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConfigColumns {
    pub for_trigger: String,
    pub against_trigger: String,
    pub left_label: String,
    pub right_label: String,
    pub decay_speed: f64,
    pub model: String,
    pub match_mode: String,
    pub layout: String,
    pub for_color: String,
    pub against_color: String,
    pub scale: i32,
    pub font_weight: i32,
    pub show_labels: bool,
    pub show_hint: bool,
    pub show_voters: bool,
    pub celebrate: bool,
}

/// The control room's columns of `configs` (migration V5), in the order of
/// [`ConfigColumns`], after `decay_speed`.
pub(crate) const CONTROL_COLUMNS: &str = "model, match_mode, layout, for_color, against_color, scale, font_weight, \
                                          show_labels, show_hint, show_voters, celebrate";

impl ConfigColumns {
    pub(crate) fn of(c: &OverlayConfig) -> Self {
        Self {
            for_trigger: c.for_trigger.to_string(),
            against_trigger: c.against_trigger.to_string(),
            left_label: c.left_label.to_string(),
            right_label: c.right_label.to_string(),
            decay_speed: c.decay_speed.get(),
            model: c.model.as_str().to_owned(),
            match_mode: c.match_mode.as_str().to_owned(),
            layout: c.look.layout.as_str().to_owned(),
            for_color: c.look.for_color.to_string(),
            against_color: c.look.against_color.to_string(),
            scale: i32::from(c.look.scale),
            font_weight: i32::from(c.look.font_weight),
            show_labels: c.look.show_labels,
            show_hint: c.look.show_hint,
            show_voters: c.look.show_voters,
            celebrate: c.look.celebrate,
        }
    }

    pub(crate) fn parse(self) -> Result<OverlayConfig, RepositoryError> {
        let input = crate::domain::ConfigInput {
            for_trigger: self.for_trigger,
            against_trigger: self.against_trigger,
            left_label: self.left_label,
            right_label: self.right_label,
            decay_speed: format!("{}", self.decay_speed),
            model: self.model,
            match_mode: self.match_mode,
            layout: self.layout,
            for_color: self.for_color,
            against_color: self.against_color,
            scale: self.scale.to_string(),
            font_weight: self.font_weight.to_string(),
            show_labels: self.show_labels.to_string(),
            show_hint: self.show_hint.to_string(),
            show_voters: self.show_voters.to_string(),
            celebrate: self.celebrate.to_string(),
        };
        input.parse().map_err(|problems| {
            let fields: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.field.as_str(), p.error)).collect();
            RepositoryError::Corrupt(format!("configs: {}", fields.join("; ")))
        })
    }
}

/// What the overlay page and session activation need, in one read.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlaySetup {
    pub streamer: Streamer,
    pub config: StoredConfig,
}

/// A local record of an EventSub subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub streamer: Option<StreamerId>,
    pub broadcaster: Option<BroadcasterId>,
    pub subscription_type: String,
    pub subscription_id: String,
    pub conduit_id: Option<String>,
    pub status: String,
    pub created_at: OffsetDateTime,
}

/// Twitch tokens as stored: both encrypted (see [`crate::crypto`]), opaque here.
///
/// Stored byte for byte. `expires_at` is stored with millisecond precision,
/// like every timestamp. `scopes` are stored space-separated, in the order
/// given: each scope must be non-empty and free of whitespace (as OAuth scope
/// names are), otherwise it does not read back the same.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredTokens {
    pub access_token: Vec<u8>,
    pub refresh_token: Vec<u8>,
    pub expires_at: OffsetDateTime,
    pub scopes: Vec<String>,
}

/// Only the lengths of the tokens: even encrypted, they stay out of logs.
impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field("access_token", &format_args!("<{} bytes>", self.access_token.len()))
            .field("refresh_token", &format_args!("<{} bytes>", self.refresh_token.len()))
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The Twitch account the chat bot runs as (at most one).
#[derive(Debug, Clone, PartialEq)]
pub struct BotAccount {
    pub twitch_user_id: BroadcasterId,
    pub login: String,
    pub tokens: StoredTokens,
    pub updated_at: OffsetDateTime,
}

/// The `scopes` column: the scopes joined by single spaces.
fn scopes_column(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// Reads a `scopes` column back (an empty column is no scopes).
fn parse_scopes(column: &str) -> Vec<String> {
    column.split_whitespace().map(str::to_owned).collect()
}

/// The token columns of a row: all present, or none (no tokens stored).
/// Anything in between cannot be written through the repository: `Corrupt`.
fn stored_tokens(
    access_token: Option<Vec<u8>>,
    refresh_token: Option<Vec<u8>>,
    expires_at: Option<OffsetDateTime>,
    scopes: &str,
) -> Result<Option<StoredTokens>, RepositoryError> {
    match (access_token, refresh_token, expires_at) {
        (Some(access_token), Some(refresh_token), Some(expires_at)) => {
            Ok(Some(StoredTokens { access_token, refresh_token, expires_at, scopes: parse_scopes(scopes) }))
        }
        (None, None, None) => Ok(None),
        (access, refresh, expires) => Err(RepositoryError::Corrupt(format!(
            "token columns only partly set (access token: {}, refresh token: {}, expiry: {})",
            access.is_some(),
            refresh.is_some(),
            expires.is_some()
        ))),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

pub use api_tokens::{ApiToken, ApiTokenRepository, NewApiToken};

/// Accounts, configuration and EventSub bookkeeping: the source of truth.
/// The streamer API's tokens are a port of their own ([`ApiTokenRepository`])
/// that every repository implements.
#[async_trait]
pub trait Repository: ApiTokenRepository + Send + Sync + 'static {
    /// Creates a streamer with a fresh overlay id and the default config.
    async fn create_streamer(&self, new: &NewStreamer) -> Result<OverlaySetup, RepositoryError>;
    async fn list_streamers(&self) -> Result<Vec<Streamer>, RepositoryError>;
    /// Deletes a streamer and everything that belongs to them; false if unknown.
    async fn remove_streamer(&self, twitch_user_id: &BroadcasterId) -> Result<bool, RepositoryError>;
    async fn overlay_setup(&self, overlay: OverlayId) -> Result<Option<OverlaySetup>, RepositoryError>;
    /// The current config version of each given overlay that still exists,
    /// in one query (the reconciler's periodic check).
    async fn config_versions(&self, overlays: &[OverlayId]) -> Result<HashMap<OverlayId, i64>, RepositoryError>;
    /// Replaces a streamer's config; the version increases by one.
    async fn save_config(&self, streamer: StreamerId, config: &OverlayConfig) -> Result<StoredConfig, RepositoryError>;
    /// Records a subscription. For an id already recorded only the status is
    /// replaced: streamer, broadcaster, type, conduit and creation time stay
    /// as first written.
    async fn upsert_subscription(&self, record: &SubscriptionRecord) -> Result<(), RepositoryError>;
    /// Every recorded subscription, ordered by `created_at`, then
    /// `subscription_id`.
    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, RepositoryError>;
    /// The recorded subscriptions whose broadcaster is this channel, ordered
    /// by `created_at`, then `subscription_id`.
    async fn subscriptions_of(&self, broadcaster: &BroadcasterId) -> Result<Vec<SubscriptionRecord>, RepositoryError>;
    /// Sets the status of a known subscription (e.g. a revocation reason);
    /// false if we have no record of it.
    async fn set_subscription_status(&self, subscription_id: &str, status: &str) -> Result<bool, RepositoryError>;
    /// Forgets one subscription record; false if we have no record of it.
    async fn delete_subscription(&self, subscription_id: &str) -> Result<bool, RepositoryError>;
    /// The EventSub conduit this deployment uses for a Twitch client id, if
    /// one was saved (so a restart reuses it).
    async fn conduit(&self, client_id: &str) -> Result<Option<String>, RepositoryError>;
    /// Remembers the conduit for a Twitch client id, replacing the one saved
    /// before (if any).
    async fn save_conduit(&self, client_id: &str, conduit_id: &str) -> Result<(), RepositoryError>;
    /// The fingerprint of what shard 0 of the saved conduit was bound with
    /// (`None` until [`save_shard_fingerprint`](Self::save_shard_fingerprint);
    /// saving another conduit clears it).
    async fn shard_fingerprint(&self, client_id: &str) -> Result<Option<String>, RepositoryError>;
    /// Records what shard 0 of the saved conduit was bound with. False when
    /// no conduit is saved for the client id.
    async fn save_shard_fingerprint(&self, client_id: &str, fingerprint: &str) -> Result<bool, RepositoryError>;
    async fn ping(&self) -> Result<(), RepositoryError>;

    // --- Streamer login -----------------------------------------------------
    // Every write to a streamer's row also sets its `updated_at`.

    /// Records a successful Twitch login, in one transaction. The first login
    /// of a Twitch user creates the streamer (fresh overlay id, default config
    /// at version 1) and returns `true`. A later one updates the login, display
    /// name and tokens, clears `needs_relogin`, keeps the overlay id and the
    /// config, and returns `false`.
    async fn record_login(
        &self,
        profile: &NewStreamer,
        tokens: &StoredTokens,
    ) -> Result<(OverlaySetup, bool), RepositoryError>;

    /// A streamer and their config by our id; `None` if unknown.
    async fn streamer(&self, id: StreamerId) -> Result<Option<OverlaySetup>, RepositoryError>;

    /// A streamer and their config by their Twitch user id, in one query;
    /// `None` if unknown.
    async fn streamer_by_twitch_id(
        &self,
        twitch_user_id: &BroadcasterId,
    ) -> Result<Option<OverlaySetup>, RepositoryError>;

    /// Gives the streamer a fresh random overlay id and returns it; the old
    /// one stops working at once. `NotFound` if the streamer is unknown.
    async fn rotate_overlay(&self, id: StreamerId) -> Result<OverlayId, RepositoryError>;

    /// A streamer's stored tokens; `None` if none are stored or the streamer
    /// is unknown.
    async fn tokens(&self, id: StreamerId) -> Result<Option<StoredTokens>, RepositoryError>;

    /// Replaces a streamer's tokens, expiry and scopes (after a refresh).
    /// Leaves `needs_relogin` as it is. `NotFound` if the streamer is unknown.
    async fn set_tokens(&self, id: StreamerId, tokens: &StoredTokens) -> Result<(), RepositoryError>;

    /// Deletes a streamer's tokens, expiry and scopes, and sets their
    /// `needs_relogin` to the value given. `NotFound` if the streamer is unknown.
    async fn clear_tokens(&self, id: StreamerId, needs_relogin: bool) -> Result<(), RepositoryError>;

    /// Every streamer that has tokens stored, in creation order (for the
    /// periodic token validation).
    async fn streamers_with_tokens(&self) -> Result<Vec<(StreamerId, BroadcasterId, StoredTokens)>, RepositoryError>;

    /// Stores the bot account, replacing the one stored before (if any).
    async fn save_bot(&self, bot: &BotAccount) -> Result<(), RepositoryError>;

    /// The bot account, if one was saved.
    async fn bot(&self) -> Result<Option<BotAccount>, RepositoryError>;

    // --- Stream history (migration V6) --------------------------------------
    // Timestamps are stored with millisecond precision. Every read is scoped
    // to one streamer: another streamer's stream or moment id finds nothing.

    /// Opens a stream record for `stream.online`, in one transaction. A
    /// stream already recorded for the same Twitch stream id (a redelivery),
    /// or an open one when no Twitch id is given, is returned as it is
    /// (`created: false`). A stream still open for another Twitch stream is
    /// first closed by reconciliation at the new one's start (`closed`).
    /// `NotFound` if the streamer is unknown.
    async fn open_stream(
        &self,
        streamer: StreamerId,
        twitch_stream_id: Option<&str>,
        started_at: OffsetDateTime,
    ) -> Result<StreamOpened, RepositoryError>;

    /// Closes the streamer's open stream at `ended_at` (never before its
    /// start) and returns it; `None` when no stream is open.
    async fn close_stream(
        &self,
        streamer: StreamerId,
        ended_at: OffsetDateTime,
        ended_by: StreamEnd,
    ) -> Result<Option<StreamRecord>, RepositoryError>;

    /// Every open stream with its channel, oldest first (for reconciliation).
    async fn open_streams(&self) -> Result<Vec<(StreamRecord, BroadcasterId)>, RepositoryError>;

    /// One page of a streamer's streams, newest first (by start, then id).
    async fn streams_of(&self, streamer: StreamerId, page: Page) -> Result<Paged<StreamRecord>, RepositoryError>;

    /// One of the streamer's streams.
    async fn stream(&self, streamer: StreamerId, id: StreamId) -> Result<Option<StreamRecord>, RepositoryError>;

    /// Writes closed history buckets in one batch; returns how many rows were
    /// written. A bucket already written (same streamer and start) is left as
    /// it is, so a bucket is written once whoever writes it. A bucket without
    /// a stream is given the streamer's stream that was open at its start (if
    /// any); buckets of streamers that no longer exist are skipped.
    async fn save_buckets(&self, buckets: &[HistoryBucket]) -> Result<u64, RepositoryError>;

    /// A stream's buckets, oldest first.
    async fn stream_buckets(
        &self,
        streamer: StreamerId,
        stream: StreamId,
    ) -> Result<Vec<HistoryBucket>, RepositoryError>;

    /// The streamer's buckets starting in `[from, to)`, oldest first.
    async fn buckets(
        &self,
        streamer: StreamerId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<HistoryBucket>, RepositoryError>;

    /// Stores a detected moment. `NotFound` if the streamer is unknown;
    /// `Conflict` if its id is taken.
    async fn save_moment(&self, moment: &Moment) -> Result<(), RepositoryError>;

    /// Records the outcome of a moment's marker or clip; false if the moment
    /// is unknown.
    async fn set_moment_action(
        &self,
        id: MomentId,
        action: MomentAction,
        outcome: &ActionOutcome,
    ) -> Result<bool, RepositoryError>;

    /// One page of a streamer's moments matching `filter`, newest first (by
    /// time, then id).
    async fn moments_of(
        &self,
        streamer: StreamerId,
        filter: &MomentFilter,
        page: Page,
    ) -> Result<Paged<Moment>, RepositoryError>;

    /// The retention sweep: deletes buckets that started and moments that
    /// happened before `cutoff`, and streams that ended before it (open
    /// streams stay).
    async fn delete_history_before(&self, cutoff: OffsetDateTime) -> Result<HistoryDeleted, RepositoryError>;
}

/// A count stored as a 32-bit integer (saturating).
pub(crate) fn count_column(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A stored count; a negative one is `Corrupt`.
pub(crate) fn parse_count(column: &str, n: i64) -> Result<u32, RepositoryError> {
    u32::try_from(n).map_err(|_| RepositoryError::Corrupt(format!("{column}: {n} is not a count")))
}

/// A stored moment's detail (JSON); one that does not parse, or whose kind
/// is not the row's, is `Corrupt`.
pub(crate) fn parse_detail(
    kind: crate::domain::history::MomentKind,
    detail: serde_json::Value,
) -> Result<crate::domain::history::MomentDetail, RepositoryError> {
    let detail: crate::domain::history::MomentDetail =
        serde_json::from_value(detail).map_err(|e| RepositoryError::Corrupt(format!("moments.detail: {e}")))?;
    if detail.kind() != kind {
        return Err(RepositoryError::Corrupt("moments.detail: of another kind than the moment".to_owned()));
    }
    Ok(detail)
}

/// A stored action outcome's columns.
pub(crate) fn action_outcome(
    status: &str,
    id: Option<String>,
    error: Option<String>,
) -> Result<ActionOutcome, RepositoryError> {
    let status = crate::domain::history::ActionStatus::parse(status)
        .map_err(|e| RepositoryError::Corrupt(format!("moments: {e}")))?;
    Ok(ActionOutcome { status, id, error })
}
