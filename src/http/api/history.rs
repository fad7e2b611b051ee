//! The history routes of `/api/v1`: the caller's streams (newest first,
//! paginated), one stream's summary, its timeline (JSON or CSV) and the
//! moments. The dashboard's history shows the same data.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::FieldError;
use super::{ApiCaller, ApiError};
use crate::app::reports::{StreamReport, Timeline};
use crate::domain::history::{HistoryBucket, Moment, MomentFilter, Page, StreamId, StreamRecord};
use crate::domain::stream_summary::timeline_csv;
use crate::http::AppState;

/// Rows per page unless `per_page` says otherwise, and the most it may say.
pub const DEFAULT_PER_PAGE: u32 = 20;
pub const MAX_PER_PAGE: u32 = 100;

type Params = Query<HashMap<String, String>>;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn invalid(field: &str, code: &str, message: &str) -> FieldError {
    FieldError { field: field.to_owned(), code: code.to_owned(), message: message.to_owned() }
}

/// `page` (from 1) and `per_page` (1..=100) of a listing; each bad one is
/// named.
fn page_of(params: &HashMap<String, String>, problems: &mut Vec<FieldError>) -> Page {
    let mut number = |name: &str, default: u32, max: u32| match params.get(name) {
        None => default,
        Some(raw) => match raw.trim().parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                problems.push(invalid(name, "out_of_range", &format!("must be a whole number from 1 to {max}")));
                default
            }
        },
    };
    let page = number("page", 1, u32::MAX / MAX_PER_PAGE);
    let per_page = number("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE);
    Page::new(page, per_page)
}

/// A stream id from the path; anything else is simply not found.
fn stream_id(raw: &str) -> Result<StreamId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("no such stream"))
}

pub fn stream_json(s: &StreamRecord) -> Value {
    json!({
        "id": s.id.to_string(),
        "twitch_stream_id": s.twitch_stream_id,
        "started_at": rfc3339(s.started_at),
        "ended_at": s.ended_at.map(rfc3339),
        "ended_by": s.ended_by.map(|e| e.as_str()),
        "live": s.is_open(),
    })
}

pub fn bucket_json(b: &HistoryBucket) -> Value {
    json!({
        "start": rfc3339(b.start),
        "value_open": b.value_open,
        "value_close": b.value_close,
        "value_min": b.value_min,
        "value_max": b.value_max,
        "votes_for": b.votes_for,
        "votes_against": b.votes_against,
        "voters": b.voters,
    })
}

pub fn moment_json(m: &Moment) -> Value {
    let outcome =
        |o: &crate::domain::history::ActionOutcome| json!({"status": o.status.as_str(), "id": o.id, "error": o.error});
    json!({
        "id": m.id.to_string(),
        "stream_id": m.stream.map(|s| s.to_string()),
        "at": rfc3339(m.at),
        "kind": m.kind.as_str(),
        "detail": m.detail,
        "marker": outcome(&m.marker),
        "clip": outcome(&m.clip),
    })
}

pub fn report_json(r: &StreamReport) -> Value {
    let mut stream = stream_json(&r.stream);
    stream["summary"] = json!(r.summary);
    stream
}

/// `GET /api/v1/streams?page=&per_page=`
pub async fn streams(
    State(state): State<AppState>,
    Extension(caller): Extension<ApiCaller>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    let page = page_of(&params, &mut problems);
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let listed = state.app.streams_of(caller.streamer, page).await?;
    Ok(Json(json!({
        "streams": listed.items.iter().map(stream_json).collect::<Vec<_>>(),
        "page": page.page,
        "per_page": page.per_page,
        "total": listed.total,
    }))
    .into_response())
}

/// `GET /api/v1/streams/{id}`: the stream and its summary.
pub async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<ApiCaller>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = stream_id(&raw)?;
    let report =
        state.app.stream_report(caller.streamer, id).await?.ok_or_else(|| ApiError::not_found("no such stream"))?;
    Ok(Json(report_json(&report)).into_response())
}

/// The JSON form of a timeline (also the dashboard's export).
pub fn timeline_json(t: &Timeline) -> Value {
    json!({
        "stream": stream_json(&t.stream),
        "bucket_seconds": crate::domain::history::BUCKET_MS / 1_000,
        "buckets": t.buckets.iter().map(bucket_json).collect::<Vec<_>>(),
        "moments": t.moments.iter().map(moment_json).collect::<Vec<_>>(),
    })
}

/// The CSV form of a timeline, as a download.
pub fn timeline_csv_response(t: &Timeline) -> Response {
    let disposition = format!("attachment; filename=\"stream-{}.csv\"", t.stream.id);
    (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        timeline_csv(&t.buckets),
    )
        .into_response()
}

/// `GET /api/v1/streams/{id}/timeline?format=json|csv`
pub async fn timeline(
    State(state): State<AppState>,
    Extension(caller): Extension<ApiCaller>,
    Path(raw): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let csv = match params.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::validation(vec![invalid("format", "not_a_choice", "must be json or csv")])),
    };
    let id = stream_id(&raw)?;
    let timeline =
        state.app.timeline(caller.streamer, id).await?.ok_or_else(|| ApiError::not_found("no such stream"))?;
    Ok(if csv { timeline_csv_response(&timeline) } else { Json(timeline_json(&timeline)).into_response() })
}

/// `GET /api/v1/moments?stream=&from=&to=&page=&per_page=`, newest first.
pub async fn moments(
    State(state): State<AppState>,
    Extension(caller): Extension<ApiCaller>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    let page = page_of(&params, &mut problems);
    let mut time = |name: &str| {
        params.get(name).and_then(|raw| match OffsetDateTime::parse(raw.trim(), &Rfc3339) {
            Ok(t) => Some(t),
            Err(_) => {
                problems.push(invalid(name, "not_a_time", "must be an RFC 3339 time, e.g. 2026-12-05T20:00:00Z"));
                None
            }
        })
    };
    let (from, to) = (time("from"), time("to"));
    let stream = match params.get("stream").map(|raw| raw.trim().parse::<StreamId>()) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            problems.push(invalid("stream", "not_a_stream_id", "must be a stream id as /api/v1/streams lists it"));
            None
        }
    };
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let filter = MomentFilter { stream, from, to };
    let listed = state.app.moments_of(caller.streamer, &filter, page).await?;
    Ok(Json(json!({
        "moments": listed.items.iter().map(moment_json).collect::<Vec<_>>(),
        "page": page.page,
        "per_page": page.per_page,
        "total": listed.total,
    }))
    .into_response())
}
