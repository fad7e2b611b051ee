//! The streamer API under `/api/v1`: JSON routes for bots and tools
//! (Streamer.bot, a chat bot, a script), authenticated with a personal API
//! token (`Authorization: Bearer cp_…`), each token limited to its own
//! request budget. No cookies and no CSRF here: a bearer token is not sent
//! by a browser on its own, so a foreign page cannot ride on it.
//!
//! Every error is JSON, `{"error": {"code": "...", "message": "..."}}`, with
//! a stable `code` (see [`error`]); validation errors also name the fields.
//! `GET /api/v1/openapi.json` is the OpenAPI 3.1 document of these routes
//! (`openapi.json` next to this file; a test compares it with [`OPERATIONS`]).

mod error;
mod handlers;
pub(super) mod history;

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub use error::ApiError;

use super::AppState;
use crate::app::App;
use crate::domain::{ApiTokenId, StreamerId};

/// Largest request body of the API (a config patch is well under 1 KiB).
pub const API_BODY_LIMIT: usize = 16 * 1024;

/// The OpenAPI 3.1 document of the routes below, served as it is.
pub const OPENAPI_DOCUMENT: &str = include_str!("openapi.json");

/// Declares the authenticated routes once: the router and [`OPERATIONS`]
/// (what the OpenAPI document is checked against) come from the same list.
macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every authenticated operation: (method, path below `/api/v1`).
        pub const OPERATIONS: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn authenticated_routes() -> Router<AppState> {
            let mut router = Router::new();
            $(router = router.route($path, axum::routing::on(axum::routing::MethodFilter::$method, $handler));)*
            router
        }
    };
}

api_routes! {
    GET "/state" => handlers::state,
    GET "/config" => handlers::config,
    PATCH "/config" => handlers::patch_config,
    POST "/reset" => handlers::reset,
    POST "/test-votes" => handlers::test_votes,
    GET "/streams" => history::streams,
    GET "/streams/{id}" => history::stream,
    GET "/streams/{id}/timeline" => history::timeline,
    GET "/moments" => history::moments,
}

/// Who is calling: the token's streamer (and the token).
#[derive(Debug, Clone, Copy)]
pub struct ApiCaller {
    pub streamer: StreamerId,
    pub token: ApiTokenId,
}

/// What the authentication layer needs.
#[derive(Clone)]
struct Gate {
    app: Arc<App>,
    limiter: Arc<DefaultKeyedRateLimiter<ApiTokenId>>,
}

/// The `/api/v1` router, nested by [`super::router`]. `rate`: each token's
/// budget, (requests per minute, burst).
pub fn router(app: Arc<App>, rate: (u32, u32)) -> Router<AppState> {
    let per_minute = NonZeroU32::new(rate.0).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.1).unwrap_or(NonZeroU32::MIN);
    let limiter = Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)));
    // Forget idle tokens every minute; the task ends with the limiter.
    let weak = Arc::downgrade(&limiter);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut ticker = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                ticker.tick().await;
                let Some(limiter) = weak.upgrade() else { return };
                limiter.retain_recent();
            }
        });
    }
    let gate = Gate { app, limiter };
    Router::new()
        .route("/openapi.json", axum::routing::get(openapi))
        .merge(authenticated_routes().route_layer(axum::middleware::from_fn_with_state(gate, authenticate)))
        .fallback(|| async { ApiError::not_found("no such API route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_DOCUMENT).into_response()
}

/// The bearer token of a request: `Ok(None)` when there is no
/// `Authorization` header, `Err` when it is not `Bearer <token>`.
fn bearer(request: &Request) -> Result<Option<&str>, ()> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(());
    }
    Ok(Some(token.trim()))
}

/// Authenticates the token, spends one request of its budget, and hands the
/// handler an [`ApiCaller`]. Answers are never cached.
async fn authenticate(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let presented = match bearer(&request) {
        Ok(Some(token)) => token.to_owned(),
        Ok(None) => return ApiError::missing_token().into_response(),
        Err(()) => return ApiError::invalid_token().into_response(),
    };
    let token = match gate.app.authenticate_api_token(&presented).await {
        Ok(Some(token)) => token,
        Ok(None) => return ApiError::invalid_token().into_response(),
        Err(e) => return ApiError::unavailable(&e.to_string()).into_response(),
    };
    if let Err(not_until) = gate.limiter.check_key(&token.id) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return ApiError::rate_limited(wait).into_response();
    }
    request.extensions_mut().insert(ApiCaller { streamer: token.streamer, token: token.id });
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// (METHOD, /path) of every operation the document describes.
    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_DOCUMENT).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."), "an OpenAPI 3.1 document");
        let paths = doc["paths"].as_object().expect("paths");
        let mut operations = BTreeSet::new();
        for (path, item) in paths {
            for (method, _) in item.as_object().expect("path item") {
                if ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&method.as_str()) {
                    operations.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        operations
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_routes_of_the_router() {
        let mut routed: BTreeSet<(String, String)> =
            OPERATIONS.iter().map(|(m, p)| ((*m).to_owned(), format!("/api/v1{p}"))).collect();
        routed.insert(("GET".to_owned(), "/api/v1/openapi.json".to_owned()));
        assert_eq!(documented(), routed);
    }

    #[test]
    fn every_authenticated_operation_documents_its_401_and_429() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_DOCUMENT).unwrap();
        for (method, path) in OPERATIONS {
            let op = &doc["paths"][format!("/api/v1{path}")][method.to_lowercase()];
            for status in ["401", "429"] {
                assert!(op["responses"][status].is_object(), "{method} {path} documents {status}");
            }
            assert!(op["security"].is_array() || doc["security"].is_array(), "{method} {path} needs the bearer");
        }
    }
}
