//! Request metrics: count and latency per matched route (bounded labels).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::metrics::{HttpLabels, RouteLabels};

pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // A fixed set: any client may send any method name.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| {
        if request.uri().path().starts_with("/static/") { "/static".into() } else { "unmatched".into() }
    });
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.http_requests.get_or_create(&HttpLabels { method, route: route.clone(), status }).inc();
    state.metrics.http_duration.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    response
}
