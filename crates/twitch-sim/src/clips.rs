//! Create Clip and Get Clips (§7.1–§7.4). A clip appears in Get Clips only
//! once it has been processed (`SimConfig::clip_processing_delay` on the
//! simulator's clock, or never: `POST /sim/clips/processing`); channels can
//! disable clips and ban users (`/sim/channels/…`), which Create Clip
//! answers with 403.

use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Simulator;
use super::helix::{Caller, after, bad_request, error, page_size, paginate, require_scope, require_user};
use super::state::{Clip, ClipProcessing, State as SimState};
use super::util::{Params, parse_rfc3339, random_mixed, rfc3339_seconds};

/// The simulator's only category (Just Chatting).
pub(crate) const GAME_ID: &str = "509658";
/// `vod_offset` is null "for a while after creation" (§7.3); the simulator
/// fills it in this long after the clip became visible.
const VOD_OFFSET_AFTER: Duration = Duration::from_secs(60);
/// Without `ended_at`, Get Clips looks one week past `started_at`.
const DEFAULT_WINDOW: time::Duration = time::Duration::weeks(1);

const CLIP_WORDS: [&str; 16] = [
    "Brave", "Tiny", "Pizza", "Kappa", "Ross", "Clever", "Sleepy", "Otter", "Pogchamp", "Shiny", "Fancy", "Wombat",
    "Lucky", "Salty", "Panda", "Swift",
];

fn clip_id() -> String {
    let mut id = String::new();
    for byte in uuid::Uuid::new_v4().into_bytes().iter().take(5) {
        id.push_str(CLIP_WORDS[usize::from(*byte) % CLIP_WORDS.len()]);
    }
    format!("{id}-{}", random_mixed(10))
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return *response,
        }
    };
}

/// `POST /helix/clips?broadcaster_id=…[&title=…][&duration=…]` — user token
/// with `clips:edit` → 202 `{id, edit_url}`. The legacy `has_delay` is
/// accepted and ignored.
pub(crate) async fn create_clip(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    let creator_id = tri!(require_user(&caller)).to_owned();
    tri!(require_scope(&caller, &["clips:edit"]));
    let params = Params::parse(query.as_deref());
    let Some(broadcaster_id) = params.get("broadcaster_id").filter(|b| !b.is_empty()) else {
        return bad_request("Missing required parameter \"broadcaster_id\"");
    };
    let duration = match params.get("duration") {
        None => 30.0,
        Some(raw) => match raw.parse::<f64>() {
            Ok(d) if (5.0..=60.0).contains(&d) => (d * 10.0).round() / 10.0,
            _ => return bad_request("The parameter \"duration\" must be between 5 and 60"),
        },
    };
    let title = params.get("title").map(str::to_owned);
    if title.as_ref().is_some_and(|t| t.chars().count() > 140) {
        return bad_request("The title is too long");
    }
    let now = sim.now();
    let mut state = sim.state();
    let Some(broadcaster) = state.user(broadcaster_id).cloned() else {
        return bad_request("The broadcaster does not exist");
    };
    // §7.4: a channel setting or a ban is a 403, checked before liveness:
    // it holds whether or not the channel is live.
    if !state.channel_settings(&broadcaster.id).clips_enabled {
        return error(StatusCode::FORBIDDEN, "The broadcaster has disabled clips on their channel");
    }
    if state.bans.contains(&(broadcaster.id.clone(), creator_id.clone())) {
        return error(StatusCode::FORBIDDEN, "The user is banned from the broadcaster's channel");
    }
    let Some(stream) = state.streams.get(&broadcaster.id).cloned() else {
        return error(StatusCode::NOT_FOUND, "The broadcaster is not live");
    };
    let ready_at = match state.clip_processing {
        ClipProcessing::After(delay) => Some(now + delay),
        ClipProcessing::Never => None,
    };
    // The clip ends now and starts `duration` earlier, into the VOD being recorded.
    let position = u64::try_from((now - stream.started).whole_seconds()).unwrap_or(0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 5..=60 seconds
    let offset = position.saturating_sub(duration.ceil() as u64);
    let id = clip_id();
    state.clips.push(Clip {
        id: id.clone(),
        broadcaster_id: broadcaster.id.clone(),
        creator_id,
        title: title.unwrap_or(stream.title),
        duration,
        created_at: rfc3339_seconds(now),
        created: now,
        ready_at,
        vod_offset: stream.video_id.is_some().then_some(offset),
        video_id: stream.video_id.unwrap_or_default(),
        is_featured: false,
    });
    let edit_url = format!("https://www.twitch.tv/{}/clip/{id}", broadcaster.login);
    (StatusCode::ACCEPTED, Json(json!({"data": [{"id": id, "edit_url": edit_url}]}))).into_response()
}

fn clip_json(state: &SimState, clip: &Clip, now: time::OffsetDateTime) -> Value {
    let name = |id: &str| state.user(id).map(|u| u.display_name.clone()).unwrap_or_default();
    let offset_known = clip.ready_at.is_some_and(|ready| now >= ready + VOD_OFFSET_AFTER);
    json!({
        "id": clip.id,
        "url": format!("https://clips.twitch.tv/{}", clip.id),
        "embed_url": format!("https://clips.twitch.tv/embed?clip={}", clip.id),
        "broadcaster_id": clip.broadcaster_id, "broadcaster_name": name(&clip.broadcaster_id),
        "creator_id": clip.creator_id, "creator_name": name(&clip.creator_id),
        "video_id": clip.video_id, "game_id": GAME_ID, "language": "en", "title": clip.title, "view_count": 0,
        "created_at": clip.created_at,
        "thumbnail_url": "https://clips-media-assets2.twitch.tv/simulated-preview-480x272.jpg",
        "duration": clip.duration, "vod_offset": clip.vod_offset.filter(|_| offset_known),
        "is_featured": clip.is_featured,
    })
}

/// The optional filters of Get Clips.
struct Window {
    started_at: Option<time::OffsetDateTime>,
    ended_at: Option<time::OffsetDateTime>,
    is_featured: Option<bool>,
}

impl Window {
    fn parse(params: &Params) -> Result<Self, Box<Response>> {
        let time = |key: &str| match params.get(key) {
            None | Some("") => Ok(None),
            Some(raw) => parse_rfc3339(raw)
                .map(Some)
                .ok_or_else(|| Box::new(bad_request(format!("The parameter \"{key}\" must be an RFC 3339 time")))),
        };
        let started_at = time("started_at")?;
        // Twitch's reference: without ended_at, the window is one week from started_at.
        let ended_at = time("ended_at")?.or_else(|| started_at.map(|s| s + DEFAULT_WINDOW));
        let is_featured = match params.get("is_featured") {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(Box::new(bad_request("The parameter \"is_featured\" must be true or false"))),
        };
        Ok(Self { started_at, ended_at, is_featured })
    }

    fn contains(&self, clip: &Clip) -> bool {
        self.started_at.is_none_or(|s| clip.created >= s)
            && self.ended_at.is_none_or(|e| clip.created <= e)
            && self.is_featured.is_none_or(|f| clip.is_featured == f)
    }
}

/// `GET /helix/clips`: exactly one of `id` (repeated, ≤100),
/// `broadcaster_id`, `game_id`; `started_at`/`ended_at`, `is_featured`,
/// `first` and `after`. Clips still being processed are not returned.
pub(crate) async fn get_clips(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    let ids = params.all("id");
    let filters =
        usize::from(!ids.is_empty()) + usize::from(params.has("broadcaster_id")) + usize::from(params.has("game_id"));
    if filters != 1 {
        return bad_request("Exactly one of id, broadcaster_id or game_id must be given");
    }
    if ids.len() > 100 {
        return bad_request("The number of id values must not exceed 100");
    }
    let window = tri!(Window::parse(&params));
    let size = tri!(page_size(&params, 20));
    let start = usize::try_from(tri!(after(&params)).unwrap_or(0)).unwrap_or(usize::MAX);
    let now = sim.now();
    let state = sim.state();
    let found: Vec<Value> = state
        .clips
        .iter()
        .filter(|c| c.ready_at.is_some_and(|ready| ready <= now))
        .filter(|c| {
            if !ids.is_empty() {
                ids.contains(&c.id.as_str())
            } else if let Some(b) = params.get("broadcaster_id") {
                c.broadcaster_id == b
            } else {
                params.get("game_id") == Some(GAME_ID)
            }
        })
        .filter(|c| window.contains(c))
        .map(|c| clip_json(&state, c, now))
        .collect();
    let (data, pagination) = paginate(found, start, size);
    Json(json!({"data": data, "pagination": pagination})).into_response()
}

impl Simulator {
    /// How clips created from now on are processed: visible after `delay`
    /// on the simulator's clock, or (`None`) never — Create Clip still
    /// answers 202, as when Twitch fails after accepting (§7.3, §7.4).
    /// Also `POST /sim/clips/processing`.
    pub fn set_clip_processing(&self, delay: Option<Duration>) {
        self.state().clip_processing = delay.map_or(ClipProcessing::Never, ClipProcessing::After);
    }
}
