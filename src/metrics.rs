//! Prometheus metrics (ARCHITECTURE §10). Labels are bounded: outcomes,
//! reasons, routes — never a user id or an overlay id.

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

fn latency_histogram() -> Histogram {
    // 100 µs … ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric the service exports. Cheap to clone (all handles are `Arc`s).
#[derive(Clone)]
pub struct Metrics {
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub webhook_messages: Family<WebhookLabels, Counter>,
    pub votes: Family<OutcomeLabels, Counter>,
    pub vote_duration: Histogram,
    pub tick_duration: Histogram,
    pub sessions_active: Gauge,
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
    /// Stored user-token checks by outcome (valid, refreshed, login_needed, skipped).
    pub token_checks: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            webhook_messages: Family::default(),
            votes: Family::default(),
            vote_duration: latency_histogram(),
            tick_duration: latency_histogram(),
            sessions_active: Gauge::default(),
            ws_clients: Gauge::default(),
            ws_connections: Counter::default(),
            ws_rejections: Family::default(),
            ws_evictions: Counter::default(),
            live_store_errors: Family::default(),
            durable_store_errors: Family::default(),
            store_calls: Family::new_with_constructor(latency_histogram),
            store_call_errors: Family::default(),
            circuit_breaker_state: Gauge::default(),
            token_checks: Family::default(),
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
            "token_checks",
            "Stored Twitch user-token checks by outcome (valid, refreshed, login_needed, skipped)",
            m.token_checks.clone(),
        );
        r.register(
            "store_call_errors",
            "Failed PostgreSQL and Redis calls by store and operation",
            m.store_call_errors.clone(),
        );
        m
    }

    pub fn vote(&self, outcome: &'static str) {
        self.votes.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn webhook(&self, message_type: &'static str, outcome: &'static str) {
        self.webhook_messages.get_or_create(&WebhookLabels { message_type, outcome }).inc();
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

    pub fn durable_error(&self, operation: &'static str) {
        self.durable_store_errors.get_or_create(&OperationLabels { operation }).inc();
    }
}
