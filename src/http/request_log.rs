//! What the request log says: every request gets a request id (a
//! well-formed incoming `X-Request-Id`, else a new UUID), which the
//! `request` span carries onto every line logged while it is handled
//! (`LOG_FORMAT=json`: its `span` and `spans` fields) and the response
//! returns; paths are logged with overlay ids redacted (the id is the
//! overlay's only credential); expected 5xx answers are not errors.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::classify::ServerErrorsFailureClass;
use tracing::{Level, Span};

pub const REQUEST_ID: &str = "x-request-id";

/// An incoming request id we keep: 1 to 64 characters of letters, digits,
/// `-`, `_`, `.` (a UUID, a load balancer's id). Anything else could forge
/// or garble log lines, and is replaced.
fn well_formed(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Keeps a well-formed `X-Request-Id`, or sets a new one (before the
/// request span is made, which reads it).
pub async fn assign_id(mut request: Request, next: Next) -> Response {
    let keep = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).is_some_and(well_formed);
    if !keep {
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(value) = HeaderValue::from_str(&id) {
            request.headers_mut().insert(REQUEST_ID, value);
        }
    }
    next.run(request).await
}

/// Path prefixes whose next segment is an overlay id.
const OVERLAY_PATHS: [&str; 3] = ["/overlay/", "/ws/overlay/", "/api/reset/"];

/// The path as logs and traces show it: an overlay id becomes `{redacted}`.
pub fn redacted_path(path: &str) -> Cow<'_, str> {
    for prefix in OVERLAY_PATHS {
        if let Some(rest) = path.strip_prefix(prefix) {
            let tail = rest.find('/').map_or("", |i| &rest[i..]);
            return Cow::Owned(format!("{prefix}{{redacted}}{tail}"));
        }
    }
    Cow::Borrowed(path)
}

/// The span every line of one request is logged in.
pub fn make_span(request: &Request) -> Span {
    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let path = redacted_path(request.uri().path());
    tracing::info_span!("request", method = %request.method(), path = %path, request_id = %id)
}

/// The level of a failed answer: a 503 is what the service says on purpose
/// (draining, a connection limit, a dependency outage already logged where
/// it was met), so it is not an error; any other 5xx or a failure without a
/// response is.
pub fn failure_level(failure: &ServerErrorsFailureClass) -> Level {
    match failure {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => Level::INFO,
        _ => Level::ERROR,
    }
}

/// Logs a failed answer at [`failure_level`].
pub fn on_failure(failure: ServerErrorsFailureClass, latency: Duration, _span: &Span) {
    let latency_ms = latency.as_millis();
    match failure_level(&failure) {
        Level::ERROR => tracing::error!(classification = %failure, latency_ms, "response failed"),
        _ => {
            tracing::info!(classification = %failure, latency_ms, "answered 503 (draining, over a limit or a dependency down)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_ids_are_redacted_from_paths() {
        let id = "6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e";
        assert_eq!(redacted_path(&format!("/overlay/{id}")), "/overlay/{redacted}");
        assert_eq!(redacted_path(&format!("/ws/overlay/{id}")), "/ws/overlay/{redacted}");
        assert_eq!(redacted_path(&format!("/api/reset/{id}")), "/api/reset/{redacted}");
        assert_eq!(redacted_path(&format!("/overlay/{id}/x")), "/overlay/{redacted}/x");
        assert_eq!(redacted_path("/dashboard"), "/dashboard");
        assert_eq!(redacted_path("/static/overlay.js"), "/static/overlay.js");
    }

    #[test]
    fn only_well_formed_request_ids_are_kept() {
        assert!(well_formed("6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e"));
        assert!(well_formed("lb.7f_1"));
        for bad in ["", "has space", "new\nline", "quote\"", &"x".repeat(65), "ünï"] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_503_is_not_logged_as_an_error_but_other_failures_are() {
        let class = ServerErrorsFailureClass::StatusCode;
        assert_eq!(failure_level(&class(StatusCode::SERVICE_UNAVAILABLE)), Level::INFO);
        assert_eq!(failure_level(&class(StatusCode::INTERNAL_SERVER_ERROR)), Level::ERROR);
        assert_eq!(failure_level(&class(StatusCode::BAD_GATEWAY)), Level::ERROR);
        assert_eq!(failure_level(&ServerErrorsFailureClass::Error("reset".into())), Level::ERROR);
    }
}
