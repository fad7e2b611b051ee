//! Internal timings and limits (`Config::tuning`).

use std::time::Duration;

/// Internal timings and limits. Not environment variables: the defaults are
/// the product's behaviour; tests shorten them to observe it quickly.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Broadcaster tick: how often overlays are brought up to date.
    pub broadcast_tick: Duration,
    /// How often a session whose bar rests at the centre is read. Changes
    /// made elsewhere wake a resting bar at once (the `Moved` signal); this
    /// slow sweep is only the safety net for a lost signal.
    pub resting_read: Duration,
    /// How often a session whose bar glides (decays) is read: its overlays
    /// draw the decay themselves, so the read only corrects drift (a
    /// keyframe) and sees what time alone changes (participation running
    /// out). Votes anywhere are read on the next tick (the `Voted` signal).
    pub glide_read: Duration,
    /// Frames queued per overlay connection; a client this far behind is evicted.
    pub client_queue: usize,
    /// Overlay connections per session (on one instance).
    pub max_clients_per_session: usize,
    /// WebSocket ping interval.
    pub ping_interval: Duration,
    /// How often an overlay page asks its socket "are you there?" (silent
    /// 2.5 times this long: it shows "reconnecting" and reconnects).
    pub overlay_keepalive: Duration,
    /// A connection that sends nothing (not even a pong) this long is closed.
    pub idle_timeout: Duration,
    /// A single frame write that takes longer than this closes the connection.
    pub write_timeout: Duration,
    /// How long a session stays active after its last overlay disconnected.
    pub session_grace: Duration,
    /// How often the session reconciler wakes (lease renewals and config
    /// checks happen on its ticks).
    pub reconcile_interval: Duration,
    /// How often active sessions are checked against the durable
    /// configuration (at most as often as `reconcile_interval`). Changes made
    /// through the service reach every instance at once by signal; this
    /// catches the others (the CLI, a lost signal).
    pub config_check_interval: Duration,
    /// How long a session lease lasts without renewal. Leases are renewed
    /// every third of it (on a reconcile tick), so one missed renewal does
    /// not drop a session. A crashed instance's leases are released sooner,
    /// by the leader, once its heartbeat ends: the lease is only the
    /// backstop, and long so that resting sessions cost almost nothing.
    pub lease_ttl: Duration,
    /// How long an instance counts as alive after its last heartbeat (beaten
    /// every third of it): the leader releases the leases of an instance
    /// whose heartbeat ended.
    pub heartbeat_ttl: Duration,
    /// Upper bound for one live-store call on the vote path.
    pub vote_timeout: Duration,
    /// Per-IP request budget for login pages: (per minute, burst).
    pub auth_rate: (u32, u32),
    /// Per-IP request budget for the dashboard and its API: (per minute, burst).
    pub dashboard_rate: (u32, u32),
    /// Request budget of each streamer API token: (per minute, burst).
    pub api_rate: (u32, u32),
    /// How long a login session lasts without activity.
    pub login_session_idle: Duration,
    /// How long a login lasts at most, however active.
    pub login_session_max: Duration,
    /// How often stored Twitch user tokens are validated (Twitch requires hourly).
    pub token_check_interval: Duration,
    /// How often the leader closes streams that ended while nobody listened
    /// (Helix "Get Streams") and deletes history older than the retention.
    pub history_upkeep_interval: Duration,
    /// How often an instance takes its sessions' closed history buckets
    /// (and writes them, and detects moments in them).
    pub history_flush_interval: Duration,
    /// SO_SNDBUF of accepted connections; `None` keeps the kernel's
    /// autotuning. A small buffer makes a stalled overlay reach its queue
    /// limit (and eviction) after kilobytes instead of megabytes of backlog.
    pub socket_send_buffer: Option<u32>,
    /// The live-store key instances compete for to lead (EventSub set-up and
    /// reconciliation). Tests sharing one Redis give each deployment its own.
    pub leader_key: String,
    /// How long leadership lasts without renewal, and how often it is renewed
    /// (and tried by the others): another instance leads at most `leader_ttl
    /// + leader_renew` (25 s) after the leader crashed.
    pub leader_ttl: Duration,
    pub leader_renew: Duration,
    /// How often the leader reconciles EventSub subscriptions with Twitch.
    pub eventsub_reconcile_interval: Duration,
    /// How often the leader looks for instances whose heartbeat ended (a
    /// crash) to release their sessions and the subscriptions only they
    /// needed.
    pub crash_sweep_interval: Duration,
    /// First pause of the 1 s, 2 s, 4 s retries of a transient Twitch error.
    pub twitch_retry_base: Duration,
    /// Longest wait for a rate-limit reset before giving up on a call.
    pub twitch_rate_limit_wait: Duration,
    /// How long a new webhook shard may take to be verified and enabled.
    pub shard_verify_timeout: Duration,
    /// On shutdown, how long the instance keeps serving while readiness
    /// already fails, so the load balancer stops sending it new requests
    /// before it closes its overlays and stops listening. Production: a
    /// third of `SHUTDOWN_TIMEOUT`, at most 5 s; development: none.
    pub shutdown_drain: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            broadcast_tick: Duration::from_millis(50),
            resting_read: Duration::from_secs(120),
            glide_read: Duration::from_secs(1),
            client_queue: 16,
            max_clients_per_session: 50,
            ping_interval: Duration::from_secs(30),
            overlay_keepalive: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            session_grace: Duration::from_secs(30),
            reconcile_interval: Duration::from_secs(5),
            config_check_interval: Duration::from_secs(15),
            lease_ttl: Duration::from_secs(1800),
            heartbeat_ttl: Duration::from_secs(30),
            vote_timeout: Duration::from_secs(2),
            auth_rate: (30, 15),
            dashboard_rate: (240, 60),
            api_rate: (120, 60),
            login_session_idle: Duration::from_secs(7 * 24 * 3600),
            login_session_max: Duration::from_secs(30 * 24 * 3600),
            token_check_interval: Duration::from_secs(3600),
            history_upkeep_interval: Duration::from_secs(300),
            history_flush_interval: Duration::from_secs(5),
            socket_send_buffer: None,
            leader_key: "cleanup:leader".to_owned(),
            leader_ttl: Duration::from_secs(20),
            leader_renew: Duration::from_secs(5),
            eventsub_reconcile_interval: Duration::from_secs(600),
            crash_sweep_interval: Duration::from_secs(10),
            twitch_retry_base: Duration::from_secs(1),
            twitch_rate_limit_wait: Duration::from_secs(70),
            shard_verify_timeout: Duration::from_secs(10),
            shutdown_drain: Duration::ZERO,
        }
    }
}
