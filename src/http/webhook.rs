//! `POST /webhooks/eventsub`: EventSub deliveries from Twitch (twitch-protocol.md §5).
//!
//! Order of checks: required headers → signature → freshness → message type →
//! body → handle. Anything rejected changes nothing. Notifications are
//! answered 204 as soon as the vote is applied (one in-memory or one Redis
//! call); nothing slow runs on that path.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AppState, Error};
use crate::engine::ChatOutcome;
use crate::twitch::eventsub::{
    self, AuthorizationRevokeEvent, ChatMessageEvent, Notification, Revocation, ShardDisabledEvent, StreamEvent,
    Verification,
};
use crate::twitch::signature;

/// Deliveries older than this are replays (twitch-protocol.md §5.5).
const MAX_AGE: time::Duration = time::Duration::minutes(10);
/// Tolerated clock difference for timestamps from the future.
const MAX_FUTURE: time::Duration = time::Duration::minutes(1);

const H_ID: &str = "twitch-eventsub-message-id";
const H_TIMESTAMP: &str = "twitch-eventsub-message-timestamp";
const H_SIGNATURE: &str = "twitch-eventsub-message-signature";
const H_TYPE: &str = "twitch-eventsub-message-type";
const H_SUB_TYPE: &str = "twitch-eventsub-subscription-type";

struct Delivery<'a> {
    id: &'a str,
    timestamp: &'a str,
    signature: &'a str,
    message_type: &'a str,
    subscription_type: Option<&'a str>,
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, Error> {
    headers
        .get(name)
        .map(|v| v.to_str().map_err(|_| Error::BadRequest(format!("header {name} is not valid text"))))
        .transpose()
}

fn required<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Error> {
    match header(headers, name)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::BadRequest(format!("missing header {name}"))),
    }
}

fn delivery(headers: &HeaderMap) -> Result<Delivery<'_>, Error> {
    Ok(Delivery {
        id: required(headers, H_ID)?,
        timestamp: required(headers, H_TIMESTAMP)?,
        signature: required(headers, H_SIGNATURE)?,
        message_type: required(headers, H_TYPE)?,
        subscription_type: header(headers, H_SUB_TYPE)?,
    })
}

fn check_fresh(timestamp: &str, now: OffsetDateTime) -> Result<(), Error> {
    let sent = OffsetDateTime::parse(timestamp, &Rfc3339)
        .map_err(|_| Error::BadRequest("message timestamp is not RFC 3339".into()))?;
    if now - sent > MAX_AGE {
        return Err(Error::Forbidden("message is older than 10 minutes".into()));
    }
    if sent - now > MAX_FUTURE {
        return Err(Error::Forbidden("message timestamp is in the future".into()));
    }
    Ok(())
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("malformed body: {e}")))
}

pub fn type_label(message_type: &str) -> &'static str {
    match message_type {
        eventsub::MESSAGE_NOTIFICATION => eventsub::MESSAGE_NOTIFICATION,
        eventsub::MESSAGE_VERIFICATION => eventsub::MESSAGE_VERIFICATION,
        eventsub::MESSAGE_REVOCATION => eventsub::MESSAGE_REVOCATION,
        _ => "unknown",
    }
}

pub async fn eventsub(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let label = type_label(header(&headers, H_TYPE).ok().flatten().unwrap_or_default());
    match handle(&state, &headers, &body).await {
        Ok((outcome, response)) => {
            state.metrics.webhook(label, outcome);
            response
        }
        Err(error) => {
            let outcome = match &error {
                Error::Forbidden(_) => "forbidden",
                Error::BadRequest(_) => "bad_request",
                _ => "error",
            };
            state.metrics.webhook(label, outcome);
            tracing::info!(%error, "webhook delivery rejected");
            error.into_response()
        }
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(&'static str, Response), Error> {
    let d = delivery(headers)?;
    signature::verify(&state.webhook_secret, d.id, d.timestamp, body, d.signature)
        .map_err(|e| Error::Forbidden(format!("invalid signature: {e}")))?;
    check_fresh(d.timestamp, OffsetDateTime::now_utc())?;

    match d.message_type {
        eventsub::MESSAGE_VERIFICATION => {
            let v: Verification = parse(body)?;
            let ours = v.conduit_shard.is_some()
                || v.subscription.as_ref().is_some_and(|s| eventsub::is_supported_type(&s.kind));
            if !ours {
                return Err(Error::BadRequest("not a subscription type this service uses".into()));
            }
            if v.challenge.is_empty() {
                return Err(Error::BadRequest("empty challenge".into()));
            }
            // The raw challenge, verbatim, as text/plain (no JSON, no newline).
            let response = (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], v.challenge).into_response();
            Ok(("challenge_answered", response))
        }
        other => {
            let outcome = dispatch(state, d.id, other, d.subscription_type, body).await?;
            Ok((outcome, StatusCode::NO_CONTENT.into_response()))
        }
    }
}

/// Handles one authenticated EventSub message, whichever transport brought
/// it (our webhook, or the WebSocket shard): notifications by subscription
/// type, revocations by reason. Returns the outcome (a metric label).
pub async fn dispatch(
    state: &AppState,
    message_id: &str,
    message_type: &str,
    subscription_type: Option<&str>,
    body: &[u8],
) -> Result<&'static str, Error> {
    match message_type {
        eventsub::MESSAGE_NOTIFICATION => {
            let kind = subscription_type.ok_or_else(|| Error::BadRequest(format!("missing header {H_SUB_TYPE}")))?;
            Ok(match kind {
                eventsub::CHANNEL_CHAT_MESSAGE => {
                    let n: Notification<ChatMessageEvent> = parse(body)?;
                    let outcome = state.engine.handle_chat(message_id, &n.event).await;
                    match outcome {
                        // Everywhere: the bar may be resting on other instances.
                        ChatOutcome::Applied { overlay, from_rest: true, .. } => state.app.sessions.touch(overlay),
                        // Moving bars are read every tick everywhere already.
                        ChatOutcome::Applied { overlay, .. } => state.broadcaster.touch(overlay),
                        _ => {}
                    }
                    outcome.label()
                }
                eventsub::STREAM_ONLINE | eventsub::STREAM_OFFLINE => {
                    let n: Notification<StreamEvent> = parse(body)?;
                    let live = kind == eventsub::STREAM_ONLINE;
                    state.app.stream_changed(&n.event.broadcaster_user_id, live).await
                }
                eventsub::USER_AUTHORIZATION_REVOKE => {
                    let n: Notification<AuthorizationRevokeEvent> = parse(body)?;
                    state.app.authorization_revoked(&n.event.user_id).await.map_err(|e| Error::Internal(e.into()))?
                }
                eventsub::CONDUIT_SHARD_DISABLED => {
                    let n: Notification<ShardDisabledEvent> = parse(body)?;
                    let e = &n.event;
                    match &state.app.eventsub {
                        Some(eventsub) if eventsub.shard_disabled(&e.conduit_id, &e.shard_id, &e.status) => {
                            // Any instance may re-assign it; the leader checks again too.
                            let eventsub = std::sync::Arc::clone(eventsub);
                            tokio::spawn(async move { eventsub.repair_shard().await });
                            "shard_repair_started"
                        }
                        _ => "ignored",
                    }
                }
                _ => {
                    // Tolerant: a valid notification of a type we do not use.
                    let n: Notification<serde_json::Value> = parse(body)?;
                    tracing::debug!(subscription_type = %n.subscription.kind, "notification acknowledged");
                    "acknowledged"
                }
            })
        }
        eventsub::MESSAGE_REVOCATION => {
            let r: Revocation = parse(body)?;
            state.app.revoked(&r.subscription).await.map_err(|e| Error::Internal(e.into()))
        }
        // Tolerant: a message type we do not know is acknowledged and ignored.
        _ => Ok("ignored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    #[test]
    fn freshness_accepts_recent_and_rejects_old_or_future_timestamps() {
        let now = at("2026-03-14T19:20:31Z");
        assert!(check_fresh("2026-03-14T19:20:30.055381920Z", now).is_ok());
        assert!(check_fresh("2026-03-14T19:11:00Z", now).is_ok());
        assert!(matches!(check_fresh("2026-03-14T19:10:30Z", now), Err(Error::Forbidden(_))));
        assert!(matches!(check_fresh("2026-03-14T19:22:00Z", now), Err(Error::Forbidden(_))));
        assert!(matches!(check_fresh("yesterday", now), Err(Error::BadRequest(_))));
    }
}
