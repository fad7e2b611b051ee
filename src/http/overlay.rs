//! The overlay page (`GET /overlay/{id}`) and its WebSocket
//! (`GET /ws/overlay/{id}`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::pages::OverlayUnavailablePage;
use super::{AppState, ClientAddr, Error};
use crate::app::AcquireError;
use crate::broadcast::connection;
use crate::domain::OverlayId;

#[derive(Template, WebTemplate)]
#[template(path = "overlay.html")]
pub struct OverlayPage {
    left_label: String,
    right_label: String,
    overlay_id: String,
}

/// How soon an overlay page that could not be served reloads itself.
const OVERLAY_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

fn parse_overlay(raw: &str) -> Result<OverlayId, Error> {
    // An invalid id is indistinguishable from an unknown one on purpose.
    raw.parse().map_err(|_| Error::NotFound)
}

pub async fn page(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Response, Error> {
    let overlay = parse_overlay(&raw)?;
    let setup = match state.app.overlay(overlay).await {
        Ok(setup) => setup.ok_or(Error::NotFound)?,
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
    let page = OverlayPage {
        left_label: setup.config.config.left_label.to_string(),
        right_label: setup.config.config.right_label.to_string(),
        overlay_id: overlay.to_string(),
    };
    // The URL is a secret: keep it out of caches and referrers.
    Ok(([(header::CACHE_CONTROL, "no-store"), (header::REFERRER_POLICY, "no-referrer")], page).into_response())
}

/// `Origin` must be absent (OBS sends none) or name this host.
fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), headers.get(header::HOST).map(|h| h.to_str())) else {
        return false;
    };
    let origin_host = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host))
}

pub async fn websocket(
    State(state): State<AppState>,
    Path(raw): Path<String>,
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
    if !origin_allowed(&headers) {
        return Err(reject("origin", Error::Forbidden("cross-origin overlay connections are not allowed".into())));
    }
    let permit = state.limits.acquire(state.proxies.client_ip(addr.ip(), &headers)).map_err(|limit| {
        let error = match limit {
            crate::http::limits::LimitExceeded::Total => Error::Unavailable(limit.to_string()),
            _ => Error::TooManyRequests(match limit {
                crate::http::limits::LimitExceeded::Rate => "connecting too fast; retry shortly",
                _ => "too many connections from this address",
            }),
        };
        reject(limit.label(), error)
    })?;
    let lease = state.app.join_overlay(overlay).await.map_err(|e| match e {
        AcquireError::NotFound => reject("not_found", Error::NotFound),
        AcquireError::Full => reject("session_full", Error::Unavailable(e.to_string())),
        AcquireError::Unavailable(msg) => reject("unavailable", Error::Unavailable(msg)),
    })?;
    state.metrics.ws_connections.inc();
    let (broadcaster, settings, metrics) =
        (state.broadcaster.clone(), state.settings.connection, state.metrics.clone());
    Ok(upgrade
        .max_message_size(4 * 1024)
        // Overlays only ever send pongs and a close: a small read buffer
        // instead of the library's 128 KiB keeps an idle connection cheap
        // (it grows if a client ever sends more).
        .read_buffer_size(1024)
        .on_upgrade(move |socket| async move {
            connection::serve(socket, overlay, broadcaster, settings, metrics).await;
            drop(lease);
            drop(permit);
        })
        .into_response())
}
