//! The handlers of `/api/v1`: the bar, its settings, reset and test votes.
//! Each one acts for the caller's streamer only ([`ApiCaller`]).

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Map, Value, json};

use super::error::FieldError;
use super::{ApiCaller, ApiError};
use crate::app::api::StoredConfig;
use crate::app::test_votes::{TestVoteCount, TestVoteError, parse_side};
use crate::domain::{ConfigField, ConfigInput, Direction, OverlayConfig};
use crate::http::AppState;

/// `GET /api/v1/state`
pub async fn state(
    State(state): State<AppState>,
    Extension(caller): Extension<ApiCaller>,
) -> Result<Response, ApiError> {
    let bar = state.app.bar_state(caller.streamer).await?;
    Ok(Json(bar).into_response())
}

/// A config as the API shows it: typed values, and its version.
fn config_json(stored: &StoredConfig) -> Value {
    let c: &OverlayConfig = &stored.config;
    json!({
        "for_trigger": c.for_trigger.to_string(),
        "against_trigger": c.against_trigger.to_string(),
        "left_label": c.left_label.to_string(),
        "right_label": c.right_label.to_string(),
        "decay_speed": c.decay_speed.get(),
        "model": c.model.as_str(),
        "match_mode": c.match_mode.as_str(),
        "layout": c.look.layout.as_str(),
        "for_color": c.look.for_color.to_string(),
        "against_color": c.look.against_color.to_string(),
        "scale": c.look.scale,
        "font_weight": c.look.font_weight,
        "show_labels": c.look.show_labels,
        "show_hint": c.look.show_hint,
        "show_voters": c.look.show_voters,
        "celebrate": c.look.celebrate,
        "version": stored.version,
    })
}

/// `GET /api/v1/config`
pub async fn config(
    State(state): State<AppState>,
    Extension(caller): Extension<ApiCaller>,
) -> Result<Response, ApiError> {
    let stored = state.app.stored_config(caller.streamer).await?;
    Ok(Json(config_json(&stored)).into_response())
}

/// A JSON body that must be an object.
fn object(body: Result<Json<Value>, JsonRejection>) -> Result<Map<String, Value>, ApiError> {
    match body? {
        Json(Value::Object(map)) => Ok(map),
        Json(_) => Err(ApiError::bad_request("the body must be a JSON object")),
    }
}

fn field_error(field: &str, code: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_owned(), code: code.to_owned(), message: message.into() }
}

/// The text of a JSON scalar as the dashboard's form would send it.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `PATCH /api/v1/config`: the fields sent replace the saved ones, validated
/// as the dashboard validates them; the others keep their values. All or
/// nothing: with any bad field nothing is saved.
pub async fn patch_config(
    State(state): State<AppState>,
    Extension(caller): Extension<ApiCaller>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let patch = object(body)?;
    let saved = state.app.stored_config(caller.streamer).await?;
    let mut input = ConfigInput::from_config(&saved.config);
    let mut problems = Vec::new();
    for (name, value) in &patch {
        match (ConfigField::parse(name), scalar_text(value)) {
            (None, _) => problems.push(field_error(name, "unknown_field", "no such setting")),
            (Some(_), None) => {
                problems.push(field_error(name, "wrong_type", "must be a string, a number or a boolean"));
            }
            (Some(field), Some(text)) => input.set(field, text),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let config = input.parse().map_err(|found| {
        ApiError::validation(
            found.iter().map(|p| field_error(p.field.as_str(), p.error.code(), p.error.to_string())).collect(),
        )
    })?;
    let stored = state.app.save_config(caller.streamer, &config).await?;
    Ok(Json(config_json(&stored)).into_response())
}

/// `POST /api/v1/reset`: centres the bar.
pub async fn reset(
    State(state): State<AppState>,
    Extension(caller): Extension<ApiCaller>,
) -> Result<Response, ApiError> {
    state.app.reset_bar(caller.streamer).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/test-votes` with `{"side": "for"|"against", "count": 1..50}`
/// (`count` defaults to 1): votes through the real pipeline, never recorded.
pub async fn test_votes(
    State(state): State<AppState>,
    Extension(caller): Extension<ApiCaller>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = object(body)?;
    let mut problems = Vec::new();
    let side = match request.get("side").and_then(Value::as_str).map(parse_side) {
        Some(Ok(side)) => Some(side),
        _ => {
            problems.push(field_error("side", TestVoteError::BadSide.code(), TestVoteError::BadSide.to_string()));
            None
        }
    };
    let count = match request.get("count") {
        None => TestVoteCount::new(1),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(TestVoteError::BadCount)
            .and_then(TestVoteCount::new),
    };
    let count = count.map_err(|e| problems.push(field_error("count", e.code(), e.to_string()))).ok();
    for name in request.keys().filter(|k| !matches!(k.as_str(), "side" | "count")) {
        problems.push(field_error(name, "unknown_field", "no such field"));
    }
    let (Some(side), Some(count), true) = (side, count, problems.is_empty()) else {
        return Err(ApiError::validation(problems));
    };
    let votes = state.app.send_test_votes(caller.streamer, side, count).await?;
    Ok(Json(json!({
        "side": if side == Direction::For { "for" } else { "against" },
        "sent": votes.sent,
        "applied": votes.applied,
        "no_overlay": votes.no_session,
        "rate_limited": votes.rate_limited,
        "no_match": votes.no_match,
        "failed": votes.failed,
        "value": votes.value,
    }))
    .into_response())
}
