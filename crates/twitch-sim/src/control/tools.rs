//! The simulator's own tools: the state dump, synthetic chat, the clock, clip processing, tunnels.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{parse_json, sim_error};
use crate::helix::error;
use crate::util::Params;
use crate::{ChatGenerator, Simulator};

pub(super) async fn state(State(sim): State<Simulator>) -> Response {
    Json(sim.snapshot()).into_response()
}

#[derive(Debug, Deserialize)]
struct GeneratorBody {
    broadcaster_user_id: Option<String>,
    broadcaster_login: Option<String>,
    viewers: Option<u32>,
    for_share: Option<f64>,
    for_word: Option<String>,
    against_word: Option<String>,
    other_share: Option<f64>,
    per_second: Option<f64>,
    duration_seconds: Option<f64>,
}

/// `POST /sim/generator` → 202; synthetic chat runs in the background and stops by itself.
pub(super) async fn generator(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: GeneratorBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    let broadcaster = match (&body.broadcaster_user_id, &body.broadcaster_login) {
        (Some(id), _) => sim.user(id),
        (None, Some(login)) => sim.user_by_login(login),
        (None, None) => return error(StatusCode::BAD_REQUEST, "broadcaster_user_id or broadcaster_login is required"),
    };
    let Some(broadcaster) = broadcaster else { return error(StatusCode::NOT_FOUND, "unknown broadcaster") };
    let seconds = body.duration_seconds.unwrap_or(30.0);
    if !seconds.is_finite() || seconds <= 0.0 {
        return error(StatusCode::BAD_REQUEST, "duration_seconds must be positive");
    }
    let generator = ChatGenerator {
        broadcaster_user_id: broadcaster.id,
        viewers: body.viewers.unwrap_or(50),
        for_share: body.for_share.unwrap_or(0.5),
        for_word: body.for_word.unwrap_or_else(|| "yes".into()),
        against_word: body.against_word.unwrap_or_else(|| "no".into()),
        other_share: body.other_share.unwrap_or(0.2),
        per_second: body.per_second.unwrap_or(10.0),
        duration: Duration::from_secs_f64(seconds.min(crate::generator::MAX_DURATION.as_secs_f64())),
    };
    let planned = generator.planned_messages();
    let summary = json!({
        "broadcaster_user_id": generator.broadcaster_user_id, "planned_messages": planned,
        "duration_seconds": generator.duration.as_secs_f64(), "per_second": generator.effective_rate(),
    });
    let background = sim.clone();
    tokio::spawn(async move {
        let report = generator.run(&background).await;
        tracing::info!(?report, "simulator: chat generator finished");
    });
    (StatusCode::ACCEPTED, Json(summary)).into_response()
}

fn clock_json(sim: &Simulator) -> Response {
    Json(json!({
        "now": crate::util::rfc3339_nanos(sim.now()),
        "offset_seconds": sim.clock_offset().as_secs_f64(),
    }))
    .into_response()
}

/// `GET /sim/clock` → `{"now", "offset_seconds"}`.
pub(super) async fn clock(State(sim): State<Simulator>) -> Response {
    clock_json(&sim)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    advance_seconds: Option<f64>,
    set: Option<String>,
}

/// `POST /sim/clock` `{"advance_seconds": 3600}` or `{"set": "2030-01-01T00:00:00Z"}`:
/// moves the simulator's clock forward (never back) and applies what is due.
pub(super) async fn set_clock(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: ClockBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    match (body.advance_seconds, body.set) {
        (Some(seconds), None) => match Duration::try_from_secs_f64(seconds) {
            Ok(by) => sim.advance_clock(by),
            Err(_) => return error(StatusCode::BAD_REQUEST, "advance_seconds must be a number of seconds ≥ 0"),
        },
        (None, Some(at)) => {
            let Some(at) = crate::util::parse_rfc3339(&at) else {
                return error(StatusCode::BAD_REQUEST, "set must be an RFC 3339 time");
            };
            if let Err(e) = sim.set_clock(at) {
                return sim_error(&e);
            }
        }
        _ => return error(StatusCode::BAD_REQUEST, "give exactly one of advance_seconds and set"),
    }
    clock_json(&sim)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClipProcessingBody {
    delay_seconds: Option<f64>,
    #[serde(default)]
    never: bool,
}

/// `POST /sim/clips/processing` `{"delay_seconds": 15}` or `{"never": true}`:
/// how clips created from now on appear in Get Clips.
pub(super) async fn clip_processing(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: ClipProcessingBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    match (body.delay_seconds, body.never) {
        (Some(seconds), false) => match Duration::try_from_secs_f64(seconds) {
            Ok(delay) => sim.set_clip_processing(Some(delay)),
            Err(_) => return error(StatusCode::BAD_REQUEST, "delay_seconds must be a number of seconds ≥ 0"),
        },
        (None, true) => sim.set_clip_processing(None),
        _ => return error(StatusCode::BAD_REQUEST, "give either delay_seconds or \"never\": true"),
    }
    Json(json!({"delay_seconds": body.delay_seconds, "never": body.never})).into_response()
}

#[derive(Debug, Deserialize)]
struct TunnelBody {
    public_url: String,
    local_url: String,
}

pub(super) async fn list_tunnels(State(sim): State<Simulator>) -> Response {
    Json(json!({"data": sim.snapshot()["tunnels"].clone()})).into_response()
}

/// `POST /sim/tunnels` `{"public_url": "https://hooks.example", "local_url": "http://127.0.0.1:8099"}` → 201.
pub(super) async fn add_tunnel(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: TunnelBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    match sim.add_tunnel(&body.public_url, &body.local_url) {
        Ok(()) => (StatusCode::CREATED, Json(json!({"public_url": body.public_url, "local_url": body.local_url})))
            .into_response(),
        Err(e) => sim_error(&e),
    }
}

/// `DELETE /sim/tunnels?public_url=https://hooks.example` → 204.
pub(super) async fn remove_tunnel(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    let Some(public_url) = params.get("public_url") else {
        return error(StatusCode::BAD_REQUEST, "public_url is required");
    };
    match sim.remove_tunnel(public_url) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => sim_error(&e),
    }
}
