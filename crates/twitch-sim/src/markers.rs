//! Stream markers (§7.6): Create Stream Marker while the channel is live and
//! stores past broadcasts, Get Stream Markers grouped per user and video.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Simulator;
use super::helix::{Caller, after, bad_request, error, page_size, paginate, require_scope, require_user};
use super::state::{Marker, State as SimState};
use super::util::{Params, rfc3339_micros};

const MAX_DESCRIPTION: usize = 140;

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return *response,
        }
    };
}

/// The broadcaster themself or one of their editors (§7.6).
fn may_manage(state: &SimState, user_id: &str, broadcaster_id: &str) -> bool {
    user_id == broadcaster_id || state.editors.contains(&(broadcaster_id.to_owned(), user_id.to_owned()))
}

/// `POST /helix/streams/markers` `{"user_id", "description"?}` → 200 with
/// `id`, `created_at`, `position_seconds`, `description`.
pub(crate) async fn create_marker(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let me = tri!(require_user(&caller)).to_owned();
    tri!(require_scope(&caller, &["channel:manage:broadcast"]));
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("The request body must be a JSON object");
    };
    let Some(broadcaster_id) = body.get("user_id").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return bad_request("Missing required parameter \"user_id\"");
    };
    let description = match body.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(d)) if d.chars().count() <= MAX_DESCRIPTION => d.clone(),
        Some(Value::String(_)) => return bad_request("The description may be at most 140 characters long"),
        Some(_) => return bad_request("The description must be a string"),
    };
    let now = sim.now();
    let mut state = sim.state();
    // An unknown broadcaster has no live stream either: 404, as for an
    // offline one (pyTwitchAPI documents "the ID is not valid" under 404).
    if state.user(broadcaster_id).is_none() {
        return error(StatusCode::NOT_FOUND, "The user in user_id does not exist");
    }
    if !may_manage(&state, &me, broadcaster_id) {
        return error(StatusCode::FORBIDDEN, "The user must be the broadcaster or one of the broadcaster's editors");
    }
    let Some(stream) = state.streams.get(broadcaster_id).cloned() else {
        return error(StatusCode::NOT_FOUND, "The broadcaster is not live");
    };
    let Some(video_id) = stream.video_id.filter(|_| state.channel_settings(broadcaster_id).vods_enabled) else {
        return error(StatusCode::NOT_FOUND, "The broadcaster has not enabled VODs");
    };
    let marker = Marker {
        id: uuid::Uuid::new_v4().simple().to_string(),
        video_id,
        created_at: rfc3339_micros(now),
        position_seconds: u64::try_from((now - stream.started).whole_seconds()).unwrap_or(0),
        description,
    };
    let data = json!({
        "id": marker.id, "created_at": marker.created_at, "position_seconds": marker.position_seconds,
        "description": marker.description,
    });
    state.markers.push(marker);
    Json(json!({"data": [data]})).into_response()
}

/// `https://twitch.tv/videos/<id>?t=1h2m03s`, as Twitch links a marker (in
/// a field named `URL`, upper case, which pyTwitchAPI and twurple read).
fn marker_url(marker: &Marker) -> String {
    let s = marker.position_seconds;
    format!("https://twitch.tv/videos/{}?t={}h{}m{:02}s", marker.video_id, s / 3600, s / 60 % 60, s % 60)
}

/// `GET /helix/streams/markers?user_id=…` (the user's most recent video) or
/// `?video_id=…`, newest first, `first` + `after` paging; user token with
/// `user:read:broadcast` or `channel:manage:broadcast`, of the broadcaster
/// or an editor.
pub(crate) async fn get_markers(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    let me = tri!(require_user(&caller)).to_owned();
    tri!(require_scope(&caller, &["user:read:broadcast", "channel:manage:broadcast"]));
    let params = Params::parse(query.as_deref());
    let (user_id, video_id) = (params.get("user_id"), params.get("video_id"));
    if user_id.is_some() == video_id.is_some() {
        return bad_request("Exactly one of user_id and video_id must be given");
    }
    let size = tri!(page_size(&params, 20));
    let start = usize::try_from(tri!(after(&params)).unwrap_or(0)).unwrap_or(usize::MAX);
    let state = sim.state();
    let video = match (user_id, video_id) {
        (Some(user_id), _) => state.videos.iter().rev().find(|v| v.user_id == user_id),
        (_, Some(video_id)) => state.videos.iter().find(|v| v.id == video_id),
        _ => None,
    };
    let Some(video) = video else {
        return error(StatusCode::NOT_FOUND, "No video found");
    };
    if !may_manage(&state, &me, &video.user_id) {
        return error(StatusCode::FORBIDDEN, "The user must be the broadcaster or one of the broadcaster's editors");
    }
    let markers: Vec<Value> = state
        .markers
        .iter()
        .rev()
        .filter(|m| m.video_id == video.id)
        .map(|m| {
            json!({"id": m.id, "created_at": m.created_at, "description": m.description,
                "position_seconds": m.position_seconds, "URL": marker_url(m)})
        })
        .collect();
    let (markers, pagination) = paginate(markers, start, size);
    let user = state.user(&video.user_id).cloned().unwrap_or_default();
    let data = json!([{
        "user_id": user.id, "user_name": user.display_name, "user_login": user.login,
        "videos": [{"video_id": video.id, "markers": markers}],
    }]);
    Json(json!({"data": data, "pagination": pagination})).into_response()
}
