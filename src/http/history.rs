//! The dashboard's history: `GET /dashboard/history` (the streamer's streams,
//! each summed up, newest first), `GET /dashboard/history/{id}` (one stream:
//! summary, timeline chart, moments) and its exports
//! `GET /dashboard/history/{id}/timeline.csv` and `.json`. Read-only pages
//! behind the login; the summary is the one the streamer API answers with.

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use tower_sessions::Session;

use super::api::history::{timeline_csv_response, timeline_json};
use super::api_tokens::when;
use super::chart::{self, Chart};
use super::dashboard::action_error;
use super::{AppState, Error, session};
use crate::app::reports::StreamReport;
use crate::domain::StreamerId;
use crate::domain::history::{ActionOutcome, ActionStatus, Moment, MomentDetail, Page, StreamId};

/// Streams per page of the list.
const PER_PAGE: u32 = 10;

/// One stream's facts in the page's words.
pub struct StreamFacts {
    pub id: String,
    pub started: String,
    pub live: bool,
    pub duration: String,
    pub votes_for: u64,
    pub votes_against: u64,
    pub peak_for: String,
    pub peak_against: String,
    pub share_for: String,
    pub share_against: String,
    pub moments: String,
}

/// `1 h 05 min`, `4 min 05 s`, `12 s`.
fn duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3_600, seconds % 3_600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s:02} s"),
        _ => format!("{h} h {m:02} min"),
    }
}

fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

fn facts(r: &StreamReport) -> StreamFacts {
    let s = &r.summary;
    let moments = match (s.moments.total, s.moments.bursts, s.moments.swings) {
        (0, _, _) => "none".to_owned(),
        (total, bursts, swings) => format!("{total} ({bursts} bursts, {swings} swings)"),
    };
    StreamFacts {
        id: r.stream.id.to_string(),
        started: when(r.stream.started_at),
        live: r.stream.is_open(),
        duration: duration(s.duration_seconds),
        votes_for: s.votes_for,
        votes_against: s.votes_against,
        peak_for: format!("{:+.0}", s.peak_for),
        peak_against: format!("{:.0}", s.peak_against),
        share_for: percent(s.time_share.for_side),
        share_against: percent(s.time_share.against_side),
        moments,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "history.html")]
pub struct HistoryPage {
    pub streams: Vec<StreamFacts>,
    pub page: u32,
    pub pages: u64,
    pub previous_page: Option<u32>,
    pub next_page: Option<u32>,
}

/// One moment in the page's words.
pub struct MomentFacts {
    pub at: String,
    pub kind: &'static str,
    pub detail: String,
    pub marker: String,
    pub clip: String,
}

fn outcome(o: &ActionOutcome) -> String {
    match o.status {
        ActionStatus::NoScope => "not enabled".to_owned(),
        ActionStatus::NotLive => "not live".to_owned(),
        ActionStatus::Pending => "pending".to_owned(),
        ActionStatus::Created => format!("created{}", o.id.as_deref().map(|id| format!(" ({id})")).unwrap_or_default()),
        ActionStatus::Failed => format!("failed{}", o.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()),
    }
}

fn moment_facts(m: &Moment) -> MomentFacts {
    let (kind, detail) = match &m.detail {
        MomentDetail::Burst { rate, baseline_mean, .. } => {
            ("Burst", format!("{rate:.1} votes/s against a usual {baseline_mean:.1}"))
        }
        MomentDetail::Swing { from, to, millis } => {
            ("Swing", format!("from {from:+.0} to {to:+.0} in {:.1} s", *millis as f64 / 1_000.0))
        }
    };
    let at = m.at.to_offset(time::UtcOffset::UTC);
    MomentFacts {
        at: format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second()),
        kind,
        detail,
        marker: outcome(&m.marker),
        clip: outcome(&m.clip),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "history_stream.html")]
pub struct StreamPage {
    pub s: StreamFacts,
    pub ended: Option<String>,
    pub share_centre: String,
    pub share_quiet: String,
    pub chart: Chart,
    pub moments: Vec<MomentFacts>,
    pub left_label: String,
    pub right_label: String,
    pub width: f64,
    pub height: f64,
    pub centre: f64,
    pub height_with_labels: f64,
    pub label_y: f64,
}

/// The logged-in streamer, or the redirect to the login.
async fn streamer(state: &AppState, session: &Session) -> Result<Result<StreamerId, Response>, Error> {
    Ok(match session::streamer(session, state.settings.login_session_max).await? {
        Some(id) => Ok(id),
        None => Err(Redirect::to("/auth/login").into_response()),
    })
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    page: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Result<Response, Error> {
    let id = match streamer(&state, &session).await? {
        Ok(id) => id,
        Err(redirect) => return Ok(redirect),
    };
    let page = query.page.as_deref().and_then(|p| p.trim().parse::<u32>().ok()).unwrap_or(1).clamp(1, 1_000_000);
    let listed = state.app.stream_reports(id, Page::new(page, PER_PAGE)).await.map_err(action_error)?;
    let pages = listed.total.div_ceil(u64::from(PER_PAGE)).max(1);
    Ok(HistoryPage {
        streams: listed.items.iter().map(facts).collect(),
        page,
        pages,
        previous_page: (page > 1).then(|| page - 1),
        next_page: (u64::from(page) < pages).then(|| page + 1),
    }
    .into_response())
}

/// The logged-in streamer's stream `raw`, or why not (login, 404).
async fn stream_of(
    state: &AppState,
    session: &Session,
    raw: &str,
) -> Result<Result<(StreamerId, StreamId), Response>, Error> {
    let id = match streamer(state, session).await? {
        Ok(id) => id,
        Err(redirect) => return Ok(Err(redirect)),
    };
    let stream: StreamId = raw.parse().map_err(|_| Error::NotFound)?;
    Ok(Ok((id, stream)))
}

pub async fn show(State(state): State<AppState>, session: Session, Path(raw): Path<String>) -> Result<Response, Error> {
    let (streamer, stream) = match stream_of(&state, &session, &raw).await? {
        Ok(ids) => ids,
        Err(redirect) => return Ok(redirect),
    };
    let timeline = state.app.timeline(streamer, stream).await.map_err(action_error)?.ok_or(Error::NotFound)?;
    let config = state.app.config_of(streamer).await.map_err(action_error)?.ok_or(Error::NotFound)?;
    let now = OffsetDateTime::now_utc();
    let chart = chart::chart(&timeline, now);
    let moments = timeline.moments.iter().map(moment_facts).collect();
    let ended = timeline.stream.ended_at.map(when);
    let report = {
        let summary =
            crate::domain::stream_summary::summarize(&timeline.stream, &timeline.buckets, &timeline.moments, now);
        StreamReport { stream: timeline.stream, summary, moments: timeline.moments }
    };
    Ok(StreamPage {
        s: facts(&report),
        ended,
        share_centre: percent(report.summary.time_share.centre),
        share_quiet: percent(report.summary.time_share.quiet),
        chart,
        moments,
        left_label: config.left_label.to_string(),
        right_label: config.right_label.to_string(),
        width: chart::WIDTH,
        height: chart::HEIGHT,
        centre: chart::HEIGHT / 2.0,
        height_with_labels: chart::HEIGHT + 32.0,
        label_y: chart::HEIGHT + 16.0,
    }
    .into_response())
}

pub async fn export_csv(
    State(state): State<AppState>,
    session: Session,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let (streamer, stream) = match stream_of(&state, &session, &raw).await? {
        Ok(ids) => ids,
        Err(redirect) => return Ok(redirect),
    };
    let timeline = state.app.timeline(streamer, stream).await.map_err(action_error)?.ok_or(Error::NotFound)?;
    Ok(timeline_csv_response(&timeline))
}

pub async fn export_json(
    State(state): State<AppState>,
    session: Session,
    Path(raw): Path<String>,
) -> Result<Response, Error> {
    let (streamer, stream) = match stream_of(&state, &session, &raw).await? {
        Ok(ids) => ids,
        Err(redirect) => return Ok(redirect),
    };
    let timeline = state.app.timeline(streamer, stream).await.map_err(action_error)?.ok_or(Error::NotFound)?;
    Ok(Json(timeline_json(&timeline)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(12), "12 s");
        assert_eq!(duration(245), "4 min 05 s");
        assert_eq!(duration(3_900), "1 h 05 min");
        assert_eq!(percent(0.344), "34 %");
    }
}
