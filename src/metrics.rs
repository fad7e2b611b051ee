//! Prometheus metrics (ARCHITECTURE §10). Labels are bounded: outcomes,
//! reasons, routes — never a user id or an overlay id.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route template (`/overlay/{overlay_uuid}`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `notification`, `webhook_callback_verification`, `revocation`, `unknown`.
    pub message_type: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MomentActionLabels {
    /// `marker`, `clip`.
    pub action: &'static str,
    /// `created`, `failed`, `no_scope`, `not_live`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreCallLabels {
    /// `sqlite`, `postgres`, `memory`, `redis`.
    pub store: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabels {
    /// `create`, `adopt`, `delete`.
    pub operation: &'static str,
    /// `ok`, `transient` (retries exhausted), `rate_limited`, `rejected` (4xx, not retried).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    /// A background task's name (a fixed set: `reconciler`, `signals`, …).
    pub task: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    /// `durable_store` (PostgreSQL; SQLite embedded), `live_store` (Redis;
    /// in-process embedded), `signals` (instance-to-instance pub/sub).
    pub dependency: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric the service exports. Cheap to clone: one reference count
/// (every request clones the HTTP state that holds it; a clone per handle
/// was a dozen contended atomic operations per request).
#[derive(Clone)]
pub struct Metrics(Arc<MetricFamilies>);

impl std::ops::Deref for Metrics {
    type Target = MetricFamilies;

    fn deref(&self) -> &MetricFamilies {
        &self.0
    }
}

/// The metric handles behind [`Metrics`].
pub struct MetricFamilies {
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub webhook_messages: Family<WebhookLabels, Counter>,
    pub votes: Family<OutcomeLabels, Counter>,
    pub vote_duration: Histogram,
    pub tick_duration: Histogram,
    pub sessions_active: Gauge,
    /// Sessions whose bar rests at the centre, read only every `Tuning::resting_read`.
    pub sessions_resting: Gauge,
    pub ws_clients: Gauge,
    pub ws_connections: Counter,
    pub ws_rejections: Family<ReasonLabels, Counter>,
    pub ws_evictions: Counter,
    pub live_store_errors: Family<OperationLabels, Counter>,
    pub durable_store_errors: Family<OperationLabels, Counter>,
    pub store_calls: Family<StoreCallLabels, Histogram>,
    pub store_call_errors: Family<StoreCallLabels, Counter>,
    /// Redis circuit breaker: 0 closed, 1 open, 2 half-open.
    pub circuit_breaker_state: Gauge,
    /// 1 while a dependency is reachable and usable, 0 while not (the
    /// readiness checks; they never take the instance out of rotation).
    pub dependency_up: Family<DependencyLabels, Gauge>,
    /// Stored user-token checks by outcome (valid, refreshed, login_needed, skipped).
    pub token_checks: Family<OutcomeLabels, Counter>,
    /// History buckets written to the durable store (rows), the batched
    /// writes that carried them, and flushes that failed.
    pub history_buckets_written: Counter,
    pub history_batches_written: Counter,
    pub history_flush_failures: Counter,
    /// Moments detected, by kind (burst, swing).
    pub moments: Family<KindLabels, Counter>,
    /// Twitch markers and clips of moments, by outcome.
    pub moment_actions: Family<MomentActionLabels, Counter>,
    /// 1 while this instance holds `cleanup:leader`.
    pub leader: Gauge,
    /// EventSub set-up: 1 once the conduit (and its shard, on this transport) is in place.
    pub eventsub_ready: Gauge,
    pub eventsub_setup_failures: Counter,
    pub eventsub_subscription_calls: Family<SubscriptionLabels, Counter>,
    /// Reconciliation repairs by kind (missing, duplicate, orphan, stale_record, not_enabled).
    pub eventsub_repairs: Family<KindLabels, Counter>,
    pub eventsub_reconciliations: Family<OutcomeLabels, Counter>,
    /// Revocations received, by reason (§4.4 status).
    pub eventsub_revocations: Family<ReasonLabels, Counter>,
    /// Signed messages about something that is not ours, by reason
    /// (`unknown_subscription`, `condition_mismatch`, `foreign_client`):
    /// acknowledged, nothing changed.
    pub eventsub_not_ours: Family<ReasonLabels, Counter>,
    /// `conduit.shard.disabled` alarms and shard re-assignments.
    pub eventsub_shard_disabled: Counter,
    pub eventsub_shard_repairs: Family<OutcomeLabels, Counter>,
    /// Twitch's own subscription totals, from the last reconciliation.
    pub eventsub_total: Gauge,
    pub eventsub_total_cost: Gauge,
    pub eventsub_max_total_cost: Gauge,
    /// Streamers whose Twitch authorization was withdrawn.
    pub authorizations_revoked: Counter,
    /// The bot account lost its authorization: chat stops in every channel
    /// until the operator re-authorizes it (`/auth/bot`). Alert on any rise.
    pub bot_authorization_lost: Counter,
    /// Background tasks restarted after they ended or panicked.
    pub task_restarts: Family<TaskLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = MetricFamilies {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            webhook_messages: Family::default(),
            votes: Family::default(),
            vote_duration: latency_histogram(),
            tick_duration: latency_histogram(),
            sessions_active: Gauge::default(),
            sessions_resting: Gauge::default(),
            ws_clients: Gauge::default(),
            ws_connections: Counter::default(),
            ws_rejections: Family::default(),
            ws_evictions: Counter::default(),
            live_store_errors: Family::default(),
            durable_store_errors: Family::default(),
            store_calls: Family::new_with_constructor(latency_histogram),
            store_call_errors: Family::default(),
            circuit_breaker_state: Gauge::default(),
            dependency_up: Family::default(),
            token_checks: Family::default(),
            history_buckets_written: Counter::default(),
            history_batches_written: Counter::default(),
            history_flush_failures: Counter::default(),
            moments: Family::default(),
            moment_actions: Family::default(),
            leader: Gauge::default(),
            eventsub_ready: Gauge::default(),
            eventsub_setup_failures: Counter::default(),
            eventsub_subscription_calls: Family::default(),
            eventsub_repairs: Family::default(),
            eventsub_reconciliations: Family::default(),
            eventsub_revocations: Family::default(),
            eventsub_not_ours: Family::default(),
            eventsub_shard_disabled: Counter::default(),
            eventsub_shard_repairs: Family::default(),
            eventsub_total: Gauge::default(),
            eventsub_total_cost: Gauge::default(),
            eventsub_max_total_cost: Gauge::default(),
            authorizations_revoked: Counter::default(),
            bot_authorization_lost: Counter::default(),
            task_restarts: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("chatpulse");
        r.register("http_requests", "HTTP requests by method, route and status", m.http_requests.clone());
        r.register("http_request_duration_seconds", "HTTP request latency by route", m.http_duration.clone());
        r.register("webhook_messages", "EventSub webhook messages by type and outcome", m.webhook_messages.clone());
        r.register(
            "votes",
            "Chat messages through the vote pipeline by outcome (applied, duplicate, debounced, rate_limited, no_session, no_match, ignored, error)",
            m.votes.clone(),
        );
        r.register("vote_duration_seconds", "Time of one vote through the pipeline", m.vote_duration.clone());
        r.register("broadcast_tick_duration_seconds", "Duration of one broadcaster tick", m.tick_duration.clone());
        r.register("sessions_active", "Sessions with overlays connected to this instance", m.sessions_active.clone());
        r.register(
            "sessions_resting",
            "Sessions with overlays here whose bar rests at the centre, read only now and then",
            m.sessions_resting.clone(),
        );
        r.register("websocket_clients", "Overlay WebSocket connections open on this instance", m.ws_clients.clone());
        r.register("websocket_connections", "Overlay WebSocket connections accepted", m.ws_connections.clone());
        r.register("websocket_rejections", "Overlay WebSocket connections refused, by reason", m.ws_rejections.clone());
        r.register(
            "websocket_evictions",
            "Overlay clients closed because they could not keep up",
            m.ws_evictions.clone(),
        );
        r.register("live_store_errors", "Failed live-store calls by operation", m.live_store_errors.clone());
        r.register("durable_store_errors", "Failed durable-store calls by operation", m.durable_store_errors.clone());
        r.register(
            "store_call_duration_seconds",
            "Latency of PostgreSQL and Redis calls by store and operation",
            m.store_calls.clone(),
        );
        r.register(
            "circuit_breaker_state",
            "Redis circuit breaker state (0 closed, 1 open, 2 half-open)",
            m.circuit_breaker_state.clone(),
        );
        r.register(
            "dependency_up",
            "1 while a dependency is reachable and usable, 0 while not (durable_store, live_store, signals)",
            m.dependency_up.clone(),
        );
        r.register(
            "token_checks",
            "Stored Twitch user-token checks by outcome (valid, refreshed, login_needed, skipped)",
            m.token_checks.clone(),
        );
        r.register(
            "history_buckets_written",
            "History buckets (10 s of one session's bar) written to the durable store",
            m.history_buckets_written.clone(),
        );
        r.register(
            "history_batches_written",
            "Batched writes of history buckets (one per flush that had buckets to write)",
            m.history_batches_written.clone(),
        );
        r.register(
            "history_flush_failures",
            "History flushes whose write failed (kept and retried on the next flush)",
            m.history_flush_failures.clone(),
        );
        r.register("moments", "Moments detected, by kind (burst, swing)", m.moments.clone());
        r.register(
            "moment_actions",
            "Stream markers and clips of moments by action and outcome (created, failed, no_scope, not_live)",
            m.moment_actions.clone(),
        );
        r.register(
            "store_call_errors",
            "Failed PostgreSQL and Redis calls by store and operation",
            m.store_call_errors.clone(),
        );
        r.register(
            "task_restarts",
            "Background tasks restarted after they ended or panicked, by task",
            m.task_restarts.clone(),
        );
        r.register("leader", "1 while this instance is the leader (EventSub set-up, reconciliation)", m.leader.clone());
        r.register("eventsub_ready", "1 once the EventSub conduit and its shard are set up", m.eventsub_ready.clone());
        r.register("eventsub_setup_failures", "Failed EventSub set-up attempts", m.eventsub_setup_failures.clone());
        r.register(
            "eventsub_subscription_calls",
            "EventSub subscription calls to Twitch by operation and outcome",
            m.eventsub_subscription_calls.clone(),
        );
        r.register(
            "eventsub_repairs",
            "Subscriptions repaired by reconciliation, by kind (missing, duplicate, orphan, stale_record, not_enabled)",
            m.eventsub_repairs.clone(),
        );
        r.register(
            "eventsub_reconciliations",
            "EventSub reconciliation runs by outcome",
            m.eventsub_reconciliations.clone(),
        );
        r.register("eventsub_revocations", "Subscription revocations by reason", m.eventsub_revocations.clone());
        r.register(
            "eventsub_not_ours",
            "Signed EventSub messages about a subscription or application that is not ours, ignored, by reason",
            m.eventsub_not_ours.clone(),
        );
        r.register(
            "eventsub_shard_disabled",
            "conduit.shard.disabled alarms for our conduit",
            m.eventsub_shard_disabled.clone(),
        );
        r.register("eventsub_shard_repairs", "Shard re-assignments by outcome", m.eventsub_shard_repairs.clone());
        r.register(
            "eventsub_subscriptions",
            "Twitch's count of our subscriptions (its total)",
            m.eventsub_total.clone(),
        );
        r.register(
            "eventsub_subscription_cost",
            "Twitch's total cost of our subscriptions (total_cost)",
            m.eventsub_total_cost.clone(),
        );
        r.register(
            "eventsub_subscription_max_cost",
            "Twitch's subscription budget (max_total_cost)",
            m.eventsub_max_total_cost.clone(),
        );
        r.register(
            "authorizations_revoked",
            "Streamers who withdrew their Twitch authorization",
            m.authorizations_revoked.clone(),
        );
        r.register(
            "bot_authorization_lost",
            "Times the bot account's Twitch authorization was found withdrawn (chat stops everywhere)",
            m.bot_authorization_lost.clone(),
        );
        Self(Arc::new(m))
    }

    pub fn subscription_call(&self, operation: &'static str, outcome: &'static str) {
        self.eventsub_subscription_calls.get_or_create(&SubscriptionLabels { operation, outcome }).inc();
    }

    pub fn repaired(&self, kind: &'static str, n: u64) {
        if n > 0 {
            self.eventsub_repairs.get_or_create(&KindLabels { kind }).inc_by(n);
        }
    }

    pub fn vote(&self, outcome: &'static str) {
        self.votes.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn webhook(&self, message_type: &'static str, outcome: &'static str) {
        self.webhook_messages.get_or_create(&WebhookLabels { message_type, outcome }).inc();
    }

    pub fn task_restarted(&self, task: &'static str) {
        self.task_restarts.get_or_create(&TaskLabels { task }).inc();
    }

    /// How often `task` was restarted (tests read it).
    pub fn task_restarts_of(&self, task: &'static str) -> u64 {
        self.task_restarts.get_or_create(&TaskLabels { task }).get()
    }

    pub fn ws_rejected(&self, reason: &'static str) {
        self.ws_rejections.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn live_error(&self, operation: &'static str) {
        self.live_store_errors.get_or_create(&OperationLabels { operation }).inc();
    }

    /// Records one call to an external store: its latency, and whether it failed.
    pub fn store_call(&self, store: &'static str, operation: &'static str, elapsed: std::time::Duration, ok: bool) {
        let labels = StoreCallLabels { store, operation };
        self.store_calls.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if !ok {
            self.store_call_errors.get_or_create(&labels).inc();
        }
    }

    pub fn dependency_up(&self, dependency: &'static str, up: bool) {
        self.dependency_up.get_or_create(&DependencyLabels { dependency }).set(i64::from(up));
    }

    pub fn durable_error(&self, operation: &'static str) {
        self.durable_store_errors.get_or_create(&OperationLabels { operation }).inc();
    }
}
