//! The overlay page (`GET /overlay/{id}`) and its WebSocket
//! (`GET /ws/overlay/{id}`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::pages::{OverlayGonePage, OverlayUnavailablePage};
use super::{AppState, ClientAddr, Error};
use crate::app::AcquireError;
use crate::broadcast::connection;
use crate::domain::{Appearance, OverlayId};

/// The overlay page. The look is applied by the page's own script from
/// `look_json` (the same object frames carry): the Content-Security-Policy
/// allows no inline style.
#[derive(Template, WebTemplate)]
#[template(path = "overlay.html")]
pub struct OverlayPage {
    appearance: Appearance,
    look_json: String,
    overlay_id: String,
    /// The dashboard's preview of the overlay (its connection is counted
    /// apart from OBS's).
    preview: bool,
    /// How often the page asks its socket "are you there?" (ms).
    keepalive_ms: u128,
    /// The server's clock when the page was made (ms since the epoch): the
    /// page's first estimate of the clock difference for the frames' `at`.
    server_ms: i64,
}

/// `?preview`: the dashboard's preview.
#[derive(Deserialize, Default)]
pub struct Preview {
    preview: Option<String>,
}

/// An overlay URL that does not exist: a transparent page saying so (404).
fn gone() -> Response {
    (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")], OverlayGonePage).into_response()
}

/// How soon an overlay page that could not be served reloads itself.
const OVERLAY_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

fn parse_overlay(raw: &str) -> Result<OverlayId, Error> {
    // An invalid id is indistinguishable from an unknown one on purpose.
    raw.parse().map_err(|_| Error::NotFound)
}

pub async fn page(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(preview): Query<Preview>,
) -> Result<Response, Error> {
    let Ok(overlay) = parse_overlay(&raw) else { return Ok(gone()) };
    let setup = match state.app.overlay(overlay).await {
        Ok(Some(setup)) => setup,
        Ok(None) => return Ok(gone()),
        Err(e) => {
            // A Browser Source shows whatever it gets: a page that looks like
            // the overlay's own "reconnecting" state and reloads itself, not
            // an error text on stream.
            tracing::warn!(error = %e, "overlay page unavailable");
            let page = OverlayUnavailablePage { retry_seconds: OVERLAY_RETRY.as_secs() };
            let retry = HeaderValue::from(OVERLAY_RETRY.as_secs());
            return Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CACHE_CONTROL, HeaderValue::from_static("no-store")), (header::RETRY_AFTER, retry)],
                page,
            )
                .into_response());
        }
    };
    let appearance = setup.config.config.appearance(setup.config.version);
    let page = OverlayPage {
        look_json: serde_json::to_string(&appearance.look).unwrap_or_else(|_| "{}".into()),
        appearance,
        overlay_id: overlay.to_string(),
        preview: preview.preview.is_some(),
        keepalive_ms: state.settings.overlay_keepalive.as_millis(),
        server_ms: crate::now_ms(),
    };
    // The URL is a secret: keep it out of caches and referrers.
    Ok(([(header::CACHE_CONTROL, "no-store"), (header::REFERRER_POLICY, "no-referrer")], page).into_response())
}

/// The origin (`scheme://host[:port]`, lower case) of the public URL, which
/// browsers send as `Origin` from our own pages.
pub fn public_origin(public_url: &str) -> String {
    let (scheme, rest) = public_url.split_once("://").unwrap_or(("", public_url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}").to_ascii_lowercase()
}

/// `Origin` must be absent (OBS sends none) or our public URL's origin (the
/// dashboard's preview). Never compared with the request's own `Host`, which
/// whoever makes the request writes (a page on a rebinding domain would
/// pass). Outside production, a loopback origin is also fine: the service
/// then runs on the developer's own machine.
fn origin_allowed(headers: &HeaderMap, public_origin: &str, production: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if origin == public_origin {
        return true;
    }
    let Some(authority) = origin.strip_prefix("http://") else { return false };
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    !production && matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

pub async fn websocket(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(preview): Query<Preview>,
    axum::extract::ConnectInfo(addr): ClientAddr,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Error> {
    let reject = |reason: &'static str, error: Error| {
        state.metrics.ws_rejected(reason);
        error
    };
    if !state.is_accepting() {
        return Err(reject("shutting_down", Error::Unavailable("shutting down".into())));
    }
    let overlay = parse_overlay(&raw).map_err(|e| reject("not_found", e))?;
    if !origin_allowed(&headers, &state.settings.public_origin, state.settings.production) {
        return Err(reject("origin", Error::Forbidden("cross-origin overlay connections are not allowed".into())));
    }
    let permit = state.limits.acquire(state.proxies.client_ip(addr.ip(), &headers), overlay).map_err(|limit| {
        use crate::http::limits::LimitExceeded;
        let error = match limit {
            LimitExceeded::Total => Error::Unavailable(limit.to_string()),
            LimitExceeded::Rate => Error::TooManyRequests("connecting too fast; retry shortly"),
            LimitExceeded::PerIp => Error::TooManyRequests("too many connections from this address"),
            LimitExceeded::PerOverlay => {
                Error::TooManyRequests("too many connections to this overlay from this address")
            }
        };
        reject(limit.label(), error)
    })?;
    let lease = state.app.join_overlay(overlay, preview.preview.is_some()).await.map_err(|e| match e {
        AcquireError::NotFound => reject("not_found", Error::NotFound),
        AcquireError::Full => reject("session_full", Error::Unavailable(e.to_string())),
        AcquireError::Unavailable(msg) => reject("unavailable", Error::Unavailable(msg)),
    })?;
    state.metrics.ws_connections.inc();
    let (broadcaster, settings, metrics) =
        (state.broadcaster.clone(), state.settings.connection, state.metrics.clone());
    let appearance = lease.appearance();
    Ok(upgrade
        .max_message_size(4 * 1024)
        // Overlays only ever send pongs and a close: a small read buffer
        // instead of the library's 128 KiB keeps an idle connection cheap
        // (it grows if a client ever sends more).
        .read_buffer_size(1024)
        .on_upgrade(move |socket| async move {
            connection::serve(socket, overlay, broadcaster, settings, metrics, appearance).await;
            drop(lease);
            drop(permit);
        })
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(header::HOST, HeaderValue::from_static("evil.example"));
        h
    }

    #[test]
    fn the_origin_is_compared_with_the_public_url_never_the_host_header() {
        let ours = public_origin("https://ChatPulse.example/");
        assert_eq!(ours, "https://chatpulse.example");
        assert!(origin_allowed(&HeaderMap::new(), &ours, true), "OBS sends none");
        assert!(origin_allowed(&from("https://chatpulse.example"), &ours, true));
        assert!(!origin_allowed(&from("https://evil.example"), &ours, true), "Host says evil.example too");
        assert!(!origin_allowed(&from("http://chatpulse.example"), &ours, true), "another scheme");
        assert!(!origin_allowed(&from("http://127.0.0.1:8080"), &ours, true), "production: no loopback");
        for dev in ["http://127.0.0.1:8080", "http://localhost:3000", "http://[::1]:8080"] {
            assert!(origin_allowed(&from(dev), &ours, false), "{dev}");
        }
        assert!(!origin_allowed(&from("http://localhost.evil.example"), &ours, false));
        assert!(!origin_allowed(&from("http://127.0.0.1.evil.example:80"), &ours, false));
    }
}
