//! The EventSub webhook sender (§5): signed POSTs with the seven
//! `Twitch-Eventsub-*` headers, retries with the same message id, shard
//! routing and disabling, challenges and revocations.

use serde_json::{Value, json};

use super::state::{ShardTransport, State, SubTransport, Subscription};
use super::util::stable_hash;
use super::{DeliveryRecord, Simulator, websocket};

pub(crate) const NOTIFICATION: &str = "notification";
pub(crate) const REVOCATION: &str = "revocation";
pub(crate) const VERIFICATION: &str = "webhook_callback_verification";

/// `Twitch-Eventsub-Message-Signature` as Twitch computes it (§5.4):
/// `sha256=` and the hex HMAC-SHA256 of id, timestamp and raw body.
fn sign(secret: &str, message_id: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut hmac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else { unreachable!() };
    for part in [message_id.as_bytes(), timestamp.as_bytes(), body] {
        hmac.update(part);
    }
    format!("sha256={}", hex::encode(hmac.finalize().into_bytes()))
}

/// Every 7th message carries a field Twitch never documented (§8.5).
const UNKNOWN_FIELD_EVERY: u64 = 7;
const UNKNOWN_FIELD: &str = "sim_unknown_field";

/// Where a message goes.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Through a conduit: the shard is chosen at send time by hashing `key`.
    Conduit { conduit_id: String, key: String },
    /// A plain webhook subscription's own callback and secret.
    Webhook { callback: String, secret: String },
    /// A plain WebSocket subscription's session.
    Session { session_id: String },
}

#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub message_id: String,
    pub message_type: &'static str,
    pub subscription_id: String,
    pub subscription_type: String,
    pub subscription_version: String,
    pub body: Vec<u8>,
    pub route: Route,
    /// Notifications stop as soon as their subscription is no longer enabled.
    pub require_enabled: bool,
    /// Whether failed attempts are retried (a last-gasp revocation is not).
    pub retry: bool,
}

/// A resolved destination.
#[derive(Debug, Clone)]
enum Target {
    Shard {
        conduit_id: String,
        index: usize,
        generation: u64,
        callback: String,
        secret: String,
    },
    Webhook {
        callback: String,
        secret: String,
    },
    /// An EventSub WebSocket session (a conduit shard's or a plain subscription's).
    Session {
        session_id: String,
    },
}

impl Target {
    fn callback(&self) -> String {
        match self {
            Target::Shard { callback, .. } | Target::Webhook { callback, .. } => callback.clone(),
            Target::Session { session_id } => format!("websocket:{session_id}"),
        }
    }

    fn secret(&self) -> &str {
        match self {
            Target::Shard { secret, .. } | Target::Webhook { secret, .. } => secret,
            Target::Session { .. } => "",
        }
    }
}

pub(crate) fn route_for(sub: &Subscription, key: &str) -> Route {
    match &sub.transport {
        SubTransport::Conduit { conduit_id } => Route::Conduit { conduit_id: conduit_id.clone(), key: key.to_owned() },
        SubTransport::Webhook { callback, secret } => {
            Route::Webhook { callback: callback.clone(), secret: secret.clone() }
        }
        SubTransport::WebSocket { session_id, .. } => Route::Session { session_id: session_id.clone() },
    }
}

/// The key a subscription's events are routed by (its channel, else its user, else the client).
fn routing_key(sub: &Subscription) -> String {
    ["broadcaster_user_id", "user_id", "conduit_id", "client_id"]
        .iter()
        .find_map(|k| sub.condition_str(k))
        .unwrap_or(&sub.id)
        .to_owned()
}

fn next_message_has_unknown_field(state: &mut State) -> bool {
    state.messages += 1;
    state.messages.is_multiple_of(UNKNOWN_FIELD_EVERY)
}

/// Builds and sends a notification to every enabled subscription of `kind`
/// that `matches`. Returns how many messages were sent.
pub(crate) fn emit(
    sim: &Simulator,
    kind: &str,
    key: &str,
    event: &Value,
    matches: impl Fn(&Subscription) -> bool,
) -> usize {
    let outgoing: Vec<Outgoing> = {
        let mut state = sim.state();
        let subs: Vec<Subscription> = state
            .subscriptions
            .iter()
            .filter(|s| s.kind == kind && s.status == "enabled" && matches(s))
            .cloned()
            .collect();
        subs.iter()
            .map(|sub| {
                let mut event = event.clone();
                if next_message_has_unknown_field(&mut state)
                    && let Some(object) = event.as_object_mut()
                {
                    object.insert(UNKNOWN_FIELD.into(), json!({"note": "unknown fields must be ignored"}));
                }
                let body = json!({"subscription": sub.to_json(), "event": event});
                Outgoing {
                    message_id: uuid::Uuid::new_v4().to_string(),
                    message_type: NOTIFICATION,
                    subscription_id: sub.id.clone(),
                    subscription_type: sub.kind.clone(),
                    subscription_version: sub.version.clone(),
                    body: body.to_string().into_bytes(),
                    route: route_for(sub, key),
                    require_enabled: true,
                    retry: true,
                }
            })
            .collect()
    };
    let sent = outgoing.len();
    for message in outgoing {
        spawn(sim, message);
    }
    sent
}

/// A `revocation` message for a subscription whose status was just changed.
pub(crate) fn revocation(state: &mut State, sub: &Subscription) -> Outgoing {
    let mut body = json!({"subscription": sub.to_json()});
    if next_message_has_unknown_field(state)
        && let Some(object) = body.as_object_mut()
    {
        object.insert(UNKNOWN_FIELD.into(), json!(true));
    }
    Outgoing {
        message_id: uuid::Uuid::new_v4().to_string(),
        message_type: REVOCATION,
        subscription_id: sub.id.clone(),
        subscription_type: sub.kind.clone(),
        subscription_version: sub.version.clone(),
        body: body.to_string().into_bytes(),
        route: route_for(sub, &routing_key(sub)),
        require_enabled: false,
        retry: true,
    }
}

pub(crate) fn spawn(sim: &Simulator, message: Outgoing) {
    let sim = sim.clone();
    tokio::spawn(async move { deliver(&sim, message).await });
}

fn shard_deliverable(state: &State, conduit_id: &str, index: usize) -> Option<Target> {
    let conduit = state.conduits.iter().find(|c| c.id == conduit_id)?;
    let shard = conduit.shards.get(index)?;
    if shard.status != "enabled" {
        return None;
    }
    match &shard.transport {
        ShardTransport::Webhook { callback, secret } => Some(Target::Shard {
            conduit_id: conduit_id.to_owned(),
            index,
            generation: shard.generation,
            callback: callback.clone(),
            secret: secret.clone(),
        }),
        ShardTransport::WebSocket { session_id, .. } => state
            .sessions
            .get(session_id)
            .filter(|s| !s.superseded)
            .map(|_| Target::Session { session_id: session_id.clone() }),
        ShardTransport::Unbound => None,
    }
}

/// Picks the destination: the hashed shard, or one other shard if that one
/// is disabled, else nothing (§3.9).
fn resolve(state: &State, route: &Route) -> Result<Target, String> {
    match route {
        Route::Webhook { callback, secret } => {
            Ok(Target::Webhook { callback: callback.clone(), secret: secret.clone() })
        }
        Route::Session { session_id } => state
            .sessions
            .get(session_id)
            .filter(|s| !s.superseded)
            .map(|_| Target::Session { session_id: session_id.clone() })
            .ok_or_else(|| "dropped: the websocket session is gone".to_owned()),
        Route::Conduit { conduit_id, key } => {
            let conduit = state
                .conduits
                .iter()
                .find(|c| &c.id == conduit_id)
                .ok_or_else(|| format!("dropped: conduit {conduit_id} does not exist"))?;
            let count = conduit.shards.len();
            if count == 0 {
                return Err("dropped: conduit has no shards".into());
            }
            let count_u64 = u64::try_from(count).unwrap_or(u64::MAX);
            let first = usize::try_from(stable_hash(key) % count_u64).unwrap_or(0);
            if let Some(target) = shard_deliverable(state, conduit_id, first) {
                return Ok(target);
            }
            if count > 1 {
                let second = (first + 1) % count;
                if let Some(target) = shard_deliverable(state, conduit_id, second) {
                    return Ok(target);
                }
                return Err(format!("dropped: shards {first} and {second} are not enabled"));
            }
            Err(format!("dropped: shard {first} is not enabled"))
        }
    }
}

/// Still allowed to (re)send? Re-checked before every attempt.
fn still_deliverable(state: &State, message: &Outgoing, target: &Target) -> Result<(), String> {
    if message.require_enabled {
        let enabled = state.subscriptions.iter().any(|s| s.id == message.subscription_id && s.status == "enabled");
        if !enabled {
            return Err("dropped: subscription is no longer enabled".into());
        }
    }
    if let Target::Shard { conduit_id, index, generation, .. } = target {
        let same = shard_deliverable(state, conduit_id, *index)
            .is_some_and(|t| matches!(t, Target::Shard { generation: g, .. } if g == *generation));
        if !same {
            return Err(format!("dropped: shard {index} is no longer enabled"));
        }
    }
    Ok(())
}

fn outcome_parts(outcome: &Result<(u16, Vec<u8>), String>) -> (Option<u16>, Option<String>) {
    match outcome {
        Ok((status, _)) => (Some(*status), None),
        Err(e) => (None, Some(e.clone())),
    }
}

fn record(
    sim: &Simulator,
    message: &Outgoing,
    callback: &str,
    attempt: u32,
    (status, error): (Option<u16>, Option<String>),
) -> DeliveryRecord {
    DeliveryRecord {
        at: sim.now_nanos(),
        message_id: message.message_id.clone(),
        message_type: message.message_type.to_owned(),
        subscription_type: Some(message.subscription_type.clone()).filter(|t| !t.is_empty()),
        subscription_id: Some(message.subscription_id.clone()).filter(|t| !t.is_empty()),
        callback: callback.to_owned(),
        attempt,
        status,
        error,
    }
}

/// The parts of one attempt that are signed or sent as headers.
struct Envelope<'a> {
    message_id: &'a str,
    message_type: &'a str,
    /// Subscription type and version; absent for a shard challenge.
    subscription: Option<(&'a str, &'a str)>,
    /// A deliberate misbehaviour (tests of the receiver).
    fault: Option<super::DeliveryFault>,
    retry: u32,
    body: &'a [u8],
}

/// One signed POST. Returns the status and body, or a transport error.
async fn post(sim: &Simulator, callback: &str, secret: &str, envelope: Envelope<'_>) -> Result<(u16, Vec<u8>), String> {
    let Envelope { message_id, message_type, subscription, retry, body, fault } = envelope;
    let client = sim.http().ok_or("the simulator's HTTP client is unavailable")?;
    let timestamp = match fault {
        Some(super::DeliveryFault::Stale) => super::util::rfc3339_nanos(sim.now() - time::Duration::minutes(11)),
        _ => sim.now_nanos(),
    };
    let signature = match fault {
        Some(super::DeliveryFault::BadSignature) => sign("not-the-shard-secret", message_id, &timestamp, body),
        _ => sign(secret, message_id, &timestamp, body),
    };
    let mut request = client
        .post(sim.tunnelled(callback))
        .header("Content-Type", "application/json")
        .header("Twitch-Eventsub-Message-Id", message_id)
        .header("Twitch-Eventsub-Message-Retry", retry.to_string())
        .header("Twitch-Eventsub-Message-Type", message_type)
        .header("Twitch-Eventsub-Message-Signature", signature)
        .header("Twitch-Eventsub-Message-Timestamp", timestamp);
    if let Some((kind, version)) = subscription {
        request = request
            .header("Twitch-Eventsub-Subscription-Type", kind)
            .header("Twitch-Eventsub-Subscription-Version", version);
    }
    let response = request.body(body.to_vec()).send().await.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| describe(&e))?;
    Ok((status, body.to_vec()))
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        format!("connection failed: {error}")
    } else {
        error.to_string()
    }
}

/// Sends one message with retries. A message whose every attempt failed
/// counts once against its shard or plain webhook subscription (§3.9, §5.7);
/// a delivered one resets the count. An injected `stale` or `bad_signature`
/// fault spoils the first attempt only: Twitch's retries are sent correctly.
/// A `duplicate` one sends the delivered message once more.
pub(crate) async fn deliver(sim: &Simulator, message: Outgoing) {
    let target = {
        let mut state = sim.state();
        match resolve(&state, &message.route) {
            Ok(target) => target,
            Err(reason) => {
                state.log_delivery(record(sim, &message, "", 0, (None, Some(reason))));
                return;
            }
        }
    };
    if let Target::Session { session_id } = &target {
        send_frame(sim, &message, session_id);
        return;
    }
    let fault = if message.message_type == "notification" { sim.state().delivery_faults.pop_front() } else { None };
    let delays = if message.retry { sim.config().retry_delays.clone() } else { Vec::new() };
    let attempts = u32::try_from(delays.len()).unwrap_or(u32::MAX).saturating_add(1);
    for attempt in 0..attempts {
        if attempt > 0 {
            let pause = delays.get(usize::try_from(attempt - 1).unwrap_or(0)).copied().unwrap_or_default();
            tokio::time::sleep(pause).await;
            let mut state = sim.state();
            if let Err(reason) = still_deliverable(&state, &message, &target) {
                state.log_delivery(record(sim, &message, &target.callback(), attempt, (None, Some(reason))));
                return;
            }
        }
        let envelope = Envelope {
            message_id: &message.message_id,
            message_type: message.message_type,
            subscription: Some((message.subscription_type.as_str(), message.subscription_version.as_str())),
            retry: attempt,
            body: &message.body,
            fault: fault.filter(|_| attempt == 0),
        };
        let outcome = post(sim, &target.callback(), target.secret(), envelope).await;
        let delivered = matches!(outcome, Ok((status, _)) if (200..300).contains(&status));
        sim.state().log_delivery(record(sim, &message, &target.callback(), attempt, outcome_parts(&outcome)));
        if delivered {
            note_success(sim, &message, &target);
            if fault == Some(super::DeliveryFault::Duplicate) {
                // At-least-once delivery: the same message id once more, after
                // whichever attempt got through.
                let again = Envelope {
                    message_id: &message.message_id,
                    message_type: message.message_type,
                    subscription: Some((message.subscription_type.as_str(), message.subscription_version.as_str())),
                    retry: attempt + 1,
                    body: &message.body,
                    fault: None,
                };
                let outcome = post(sim, &target.callback(), target.secret(), again).await;
                sim.state().log_delivery(record(
                    sim,
                    &message,
                    &target.callback(),
                    attempt + 1,
                    outcome_parts(&outcome),
                ));
            }
            return;
        }
    }
    note_failed_message(sim, &message, &target);
}

/// WebSocket delivery: one frame, no signature, no retries (§6).
fn send_frame(sim: &Simulator, message: &Outgoing, session_id: &str) {
    let header = websocket::FrameHeader {
        message_id: &message.message_id,
        message_type: message.message_type,
        timestamp: sim.now_nanos(),
        kind: &message.subscription_type,
        version: &message.subscription_version,
    };
    let text = websocket::frame(header, &message.body);
    let mut state = sim.state();
    let sent = state.sessions.get(session_id).is_some_and(|s| s.tx.send(websocket::WsOut::Text(text)).is_ok());
    let error = (!sent).then(|| "dropped: the websocket session is gone".to_owned());
    state.log_delivery(record(sim, message, &format!("websocket:{session_id}"), 0, (None, error)));
}

fn note_success(sim: &Simulator, message: &Outgoing, target: &Target) {
    let mut state = sim.state();
    match target {
        Target::Session { .. } => {}
        Target::Shard { conduit_id, index, generation, .. } => {
            if let Some(shard) = state
                .conduits
                .iter_mut()
                .find(|c| &c.id == conduit_id)
                .and_then(|c| c.shards.get_mut(*index))
                .filter(|s| s.generation == *generation)
            {
                shard.failures = 0;
            }
        }
        Target::Webhook { .. } => {
            if let Some(sub) = state.subscriptions.iter_mut().find(|s| s.id == message.subscription_id) {
                sub.failures = 0;
            }
        }
    }
}

/// Counts a message whose every attempt failed; disables the shard or plain
/// webhook subscription after `failed_messages_before_disable` in a row.
fn note_failed_message(sim: &Simulator, message: &Outgoing, target: &Target) {
    let threshold = sim.config().failed_messages_before_disable.max(1);
    match target {
        Target::Session { .. } => {}
        Target::Shard { conduit_id, index, generation, callback, .. } => {
            let disabled = {
                let mut state = sim.state();
                let Some(conduit) = state.conduits.iter_mut().find(|c| &c.id == conduit_id) else { return };
                let client_id = conduit.client_id.clone();
                let Some(shard) = conduit.shards.get_mut(*index).filter(|s| s.generation == *generation) else {
                    return;
                };
                shard.failures += 1;
                if shard.failures >= threshold && shard.status == "enabled" {
                    shard.status = "notification_failures_exceeded".into();
                    Some(client_id)
                } else {
                    None
                }
            };
            let Some(client_id) = disabled else { return };
            sim.sweep();
            tracing::info!(conduit_id, shard = index, "simulator: webhook shard disabled after failures");
            let event = json!({
                "conduit_id": conduit_id,
                "shard_id": index.to_string(),
                "status": "notification_failures_exceeded",
                "transport": {"method": "webhook", "callback": callback},
            });
            emit_shard_disabled(sim, &client_id, conduit_id, &event);
        }
        Target::Webhook { .. } => {
            if message.message_type != NOTIFICATION {
                return;
            }
            let last_gasp = {
                let mut state = sim.state();
                let Some(sub) = state.subscriptions.iter_mut().find(|s| s.id == message.subscription_id) else {
                    return;
                };
                sub.failures += 1;
                if sub.failures >= threshold && sub.status == "enabled" {
                    sub.status = "notification_failures_exceeded".into();
                    let sub = sub.clone();
                    let mut outgoing = revocation(&mut state, &sub);
                    outgoing.retry = false;
                    Some(outgoing)
                } else {
                    None
                }
            };
            if let Some(outgoing) = last_gasp {
                spawn(sim, outgoing);
            }
        }
    }
}

/// Sends `conduit.shard.disabled` to the client's plain-webhook subscriptions
/// for this conduit (or for all its conduits).
pub(crate) fn emit_shard_disabled(sim: &Simulator, client_id: &str, conduit_id: &str, event: &Value) {
    emit(sim, "conduit.shard.disabled", conduit_id, event, |s| {
        matches!(s.transport, SubTransport::Webhook { .. })
            && s.condition_str("client_id") == Some(client_id)
            && s.condition_str("conduit_id").is_none_or(|c| c == conduit_id)
    });
}

/// What a challenge is for.
#[derive(Debug, Clone)]
pub(crate) enum ChallengeFor {
    Shard { conduit_id: String, index: usize, generation: u64 },
    Subscription { subscription: Box<Subscription> },
}

/// Sends a `webhook_callback_verification` and applies the verdict: only
/// `200` with a body byte-equal to the challenge enables.
pub(crate) fn spawn_challenge(sim: &Simulator, callback: String, secret: String, what: ChallengeFor) {
    let sim = sim.clone();
    tokio::spawn(async move {
        let challenge = uuid::Uuid::new_v4().to_string();
        let message_id = uuid::Uuid::new_v4().to_string();
        let (body, subscription) = match &what {
            ChallengeFor::Shard { conduit_id, index, .. } => (
                json!({"challenge": challenge, "conduit_shard": {"conduit_id": conduit_id, "shard": index.to_string()}}),
                None,
            ),
            ChallengeFor::Subscription { subscription } => (
                json!({"challenge": challenge, "subscription": subscription.to_json()}),
                Some((subscription.kind.clone(), subscription.version.clone(), subscription.id.clone())),
            ),
        };
        let body = body.to_string().into_bytes();
        let headers = subscription.as_ref().map(|(k, v, _)| (k.as_str(), v.as_str()));
        let envelope = Envelope {
            message_id: &message_id,
            message_type: VERIFICATION,
            subscription: headers,
            retry: 0,
            body: &body,
            fault: None,
        };
        let outcome = post(&sim, &callback, &secret, envelope).await;
        let verified = matches!(&outcome, Ok((200, answer)) if answer.as_slice() == challenge.as_bytes());
        let at = sim.now_nanos();
        let mut state = sim.state();
        state.log_delivery(DeliveryRecord {
            at,
            message_id,
            message_type: VERIFICATION.into(),
            subscription_type: subscription.as_ref().map(|(k, _, _)| k.clone()),
            subscription_id: subscription.as_ref().map(|(_, _, id)| id.clone()),
            callback,
            attempt: 0,
            status: outcome.as_ref().ok().map(|(s, _)| *s),
            error: match &outcome {
                Err(e) => Some(e.clone()),
                Ok(_) if !verified => Some("challenge not echoed (needs 200 and the raw challenge)".into()),
                Ok(_) => None,
            },
        });
        let status = if verified { "enabled" } else { "webhook_callback_verification_failed" };
        match what {
            ChallengeFor::Shard { conduit_id, index, generation } => {
                if let Some(shard) = state
                    .conduits
                    .iter_mut()
                    .find(|c| c.id == conduit_id)
                    .and_then(|c| c.shards.get_mut(index))
                    .filter(|s| s.generation == generation)
                {
                    shard.status = status.into();
                    shard.failures = 0;
                }
            }
            ChallengeFor::Subscription { subscription } => {
                if let Some(sub) = state
                    .subscriptions
                    .iter_mut()
                    .find(|s| s.id == subscription.id && s.status == "webhook_callback_verification_pending")
                {
                    sub.status = status.into();
                }
            }
        }
        drop(state);
        sim.sweep();
    });
}
