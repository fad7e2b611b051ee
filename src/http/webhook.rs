//! `POST /webhooks/eventsub`: EventSub deliveries from Twitch (twitch-protocol.md §5).
//!
//! Order of checks: required headers → signature → freshness → body (whose
//! signed `subscription.type` must agree with the unsigned header) → the
//! application's dispatcher (`app::inbound`). Anything rejected changes
//! nothing. Notifications are answered 204 as soon as the vote is applied
//! (one in-memory or one Redis call); nothing slow runs on that path.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AppState, Error};
use crate::twitch::eventsub::{self, Message, Verification};
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

/// The message-type metric label of a delivery.
fn type_label(message_type: &str) -> &'static str {
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

/// Verifies, parses, hands the message to the application's dispatcher and
/// maps what it did to a status: a challenge is answered here (it is this
/// transport's own business); everything else is 204.
async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(&'static str, Response), Error> {
    let message = verify_delivery(&state.webhook_secret, headers, body, OffsetDateTime::now_utc())?;
    let inbound = match message {
        Message::Verification(v) => return challenge(v).map(|response| ("challenge_answered", response)),
        Message::Unknown => return Ok(("ignored", StatusCode::NO_CONTENT.into_response())),
        Message::Inbound(inbound) => inbound,
    };
    let outcome = state.app.dispatch(inbound).await.map_err(|e| Error::Internal(e.into()))?;
    Ok((outcome.label(), StatusCode::NO_CONTENT.into_response()))
}

/// The transport's checks of one delivery, in order: required headers →
/// signature → freshness at `now` → the body (whose signed subscription type
/// must agree with the header). Pure: the fuzz target `webhook` drives it
/// with arbitrary headers and bodies.
pub fn verify_delivery(secret: &str, headers: &HeaderMap, body: &[u8], now: OffsetDateTime) -> Result<Message, Error> {
    let d = delivery(headers)?;
    signature::verify(secret, d.id, d.timestamp, body, d.signature)
        .map_err(|e| Error::Forbidden(format!("invalid signature: {e}")))?;
    check_fresh(d.timestamp, now)?;
    eventsub::parse_message(d.id, d.message_type, d.subscription_type, body)
        .map_err(|e| Error::BadRequest(e.to_string()))
}

/// Answers a subscription's or our shard's challenge: the raw challenge,
/// verbatim, as text/plain (no JSON, no newline).
fn challenge(v: Verification) -> Result<Response, Error> {
    let ours =
        v.conduit_shard.is_some() || v.subscription.as_ref().is_some_and(|s| eventsub::is_supported_type(&s.kind));
    if !ours {
        return Err(Error::BadRequest("not a subscription type this service uses".into()));
    }
    if v.challenge.is_empty() {
        return Err(Error::BadRequest("empty challenge".into()));
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], v.challenge).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    const SECRET: &str = "webhook-test-secret-0123456789";

    fn signed(id: &str, timestamp: &str, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let signature = signature::sign(SECRET, id, timestamp, body);
        for (name, value) in [
            (H_ID, id),
            (H_TIMESTAMP, timestamp),
            (H_SIGNATURE, signature.as_str()),
            (H_TYPE, eventsub::MESSAGE_NOTIFICATION),
            (H_SUB_TYPE, "stream.offline"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        headers
    }

    const OFFLINE: &str = r#"{"subscription":{"id":"9f1c","status":"enabled","type":"stream.offline","version":"1",
        "condition":{"broadcaster_user_id":"41245072"}},"event":{"broadcaster_user_id":"41245072"}}"#;

    #[test]
    fn a_signed_fresh_delivery_passes_the_transport_checks() {
        let now = at("2026-03-14T19:20:31Z");
        let headers = signed("m-1", "2026-03-14T19:20:30Z", OFFLINE.as_bytes());
        assert!(matches!(verify_delivery(SECRET, &headers, OFFLINE.as_bytes(), now), Ok(Message::Inbound(_))));
    }

    proptest::proptest! {
        // What the fuzz target `webhook` checks at random, here on every run:
        // no change to a signed body's bytes gets past the signature.
        #[test]
        fn a_signed_body_changed_anywhere_is_forbidden(at in 0usize..OFFLINE.len(), flip in 1u8..=255) {
            let now = at_time();
            let headers = signed("m-2", "2026-03-14T19:20:30Z", OFFLINE.as_bytes());
            let mut body = OFFLINE.as_bytes().to_vec();
            body[at] ^= flip;
            let result = verify_delivery(SECRET, &headers, &body, now);
            proptest::prop_assert!(matches!(result, Err(Error::Forbidden(_))), "{:?}", result.map(|_| ()));
        }
    }

    fn at_time() -> OffsetDateTime {
        at("2026-03-14T19:20:31Z")
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
