//! Stream history: stream records, the bar's 10-second history buckets and
//! moments (bursts and swings), as stored and as detected. Pure types and
//! rules; the live store accumulates buckets ([`bucket`]), the sessions
//! detect moments ([`moments`]), the repository stores all three.

pub mod bucket;
pub mod moments;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StreamerId;

pub use bucket::{BUCKET_MS, BucketAccumulator, BucketCounters, bucket_start_ms};
pub use moments::{BurstRule, Detected, MomentDetector, SwingRule};

macro_rules! time_ordered_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Time-ordered (v7) so that rows sort by creation.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = HistoryParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| HistoryParseError($what))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

time_ordered_id!(
    /// Our id of one stream (one broadcast of a channel).
    StreamId,
    "stream id"
);
time_ordered_id!(
    /// Our id of one moment.
    MomentId,
    "moment id"
);

/// A stored word that is not one of its type's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0}")]
pub struct HistoryParseError(pub &'static str);

/// How a stream record was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEnd {
    /// Twitch told us (`stream.offline`).
    Offline,
    /// We found out ourselves: Helix "Get Streams" no longer lists the
    /// channel (the stream ended while we were not listening), or a new
    /// stream started while this one was still open.
    Reconciliation,
}

impl StreamEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamEnd::Offline => "offline",
            StreamEnd::Reconciliation => "reconciliation",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, HistoryParseError> {
        match raw {
            "offline" => Ok(StreamEnd::Offline),
            "reconciliation" => Ok(StreamEnd::Reconciliation),
            _ => Err(HistoryParseError("stream end")),
        }
    }
}

/// One broadcast of a streamer's channel, from `stream.online` to
/// `stream.offline` (or reconciliation). `ended_at` and `ended_by` are both
/// `None` while the stream is open.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamRecord {
    pub id: StreamId,
    pub streamer: StreamerId,
    /// Twitch's id of the stream, when the event carried one.
    pub twitch_stream_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub ended_by: Option<StreamEnd>,
}

impl StreamRecord {
    pub fn is_open(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// What opening a stream did.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOpened {
    /// The open stream: the new one, or the one already open for the same
    /// Twitch stream (a redelivered `stream.online`).
    pub stream: StreamRecord,
    /// Whether a new record was created.
    pub created: bool,
    /// A stream that was still open for another Twitch stream and was closed
    /// by reconciliation at the new one's start.
    pub closed: Option<StreamRecord>,
}

/// Ten seconds of a session's bar, written once when the bucket has closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryBucket {
    pub streamer: StreamerId,
    /// The stream that was open while the bucket was recorded, if any.
    pub stream: Option<StreamId>,
    /// The bucket's start, a multiple of [`BUCKET_MS`] since the epoch.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// The bar's value at the bucket's first vote (or read), at its last,
    /// and its extremes in between.
    pub value_open: f64,
    pub value_close: f64,
    pub value_min: f64,
    pub value_max: f64,
    /// Counted votes each way (test votes never count).
    pub votes_for: u32,
    pub votes_against: u32,
    /// Distinct chatters with a counted vote in the bucket.
    pub voters: u32,
}

/// The kind of a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MomentKind {
    /// Chat voted far faster than its rolling baseline.
    Burst,
    /// The bar crossed from one side's strong half to the other's quickly.
    Swing,
}

impl MomentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MomentKind::Burst => "burst",
            MomentKind::Swing => "swing",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, HistoryParseError> {
        match raw {
            "burst" => Ok(MomentKind::Burst),
            "swing" => Ok(MomentKind::Swing),
            _ => Err(HistoryParseError("moment kind")),
        }
    }
}

/// What was measured when a moment was detected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MomentDetail {
    Burst {
        /// Counted votes per second over the detection window.
        rate: f64,
        /// The session's baseline: mean and standard deviation of the
        /// per-window rate over the baseline period.
        baseline_mean: f64,
        baseline_stddev: f64,
    },
    Swing {
        /// The value at the start of the crossing and where it ended.
        from: f64,
        to: f64,
        /// How long the crossing took.
        millis: i64,
    },
}

impl MomentDetail {
    pub fn kind(&self) -> MomentKind {
        match self {
            MomentDetail::Burst { .. } => MomentKind::Burst,
            MomentDetail::Swing { .. } => MomentKind::Swing,
        }
    }
}

/// The Twitch actions a moment may trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MomentAction {
    /// A stream marker (`channel:manage:broadcast`).
    Marker,
    /// A clip (`clips:edit`).
    Clip,
}

impl MomentAction {
    pub fn as_str(self) -> &'static str {
        match self {
            MomentAction::Marker => "marker",
            MomentAction::Clip => "clip",
        }
    }

    /// The OAuth scope the action needs.
    pub fn scope(self) -> &'static str {
        match self {
            MomentAction::Marker => "channel:manage:broadcast",
            MomentAction::Clip => "clips:edit",
        }
    }
}

/// Where a moment's marker or clip stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// The streamer has not granted the scope.
    NoScope,
    /// The channel was not live (Twitch only marks and clips live streams).
    NotLive,
    /// Being created.
    Pending,
    /// Created; the outcome carries Twitch's id.
    Created,
    /// Twitch refused, or kept failing; the outcome carries why.
    Failed,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::NoScope => "no_scope",
            ActionStatus::NotLive => "not_live",
            ActionStatus::Pending => "pending",
            ActionStatus::Created => "created",
            ActionStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, HistoryParseError> {
        match raw {
            "no_scope" => Ok(ActionStatus::NoScope),
            "not_live" => Ok(ActionStatus::NotLive),
            "pending" => Ok(ActionStatus::Pending),
            "created" => Ok(ActionStatus::Created),
            "failed" => Ok(ActionStatus::Failed),
            _ => Err(HistoryParseError("action status")),
        }
    }
}

/// The outcome of a moment's marker or clip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionOutcome {
    pub status: ActionStatus,
    /// Twitch's id of the marker or clip (when created).
    pub id: Option<String>,
    /// Why it failed (when failed): a short description, never a token.
    pub error: Option<String>,
}

impl ActionOutcome {
    pub fn status(status: ActionStatus) -> Self {
        Self { status, id: None, error: None }
    }

    pub fn created(id: impl Into<String>) -> Self {
        Self { status: ActionStatus::Created, id: Some(id.into()), error: None }
    }

    pub fn failed(error: impl Into<String>) -> Self {
        Self { status: ActionStatus::Failed, id: None, error: Some(error.into()) }
    }
}

/// A detected moment of a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moment {
    pub id: MomentId,
    pub streamer: StreamerId,
    pub stream: Option<StreamId>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: MomentKind,
    pub detail: MomentDetail,
    pub marker: ActionOutcome,
    pub clip: ActionOutcome,
}

/// One page of a newest-first listing: `page` counts from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: u32,
    pub per_page: u32,
}

impl Page {
    /// The most rows one page may hold.
    pub const MAX_PER_PAGE: u32 = 500;

    /// A page, with `page` at least 1 and `per_page` within 1..=500.
    pub fn new(page: u32, per_page: u32) -> Self {
        Self { page: page.max(1), per_page: per_page.clamp(1, Self::MAX_PER_PAGE) }
    }

    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        u64::from(self.page.max(1) - 1) * u64::from(self.per_page)
    }

    pub fn limit(&self) -> u32 {
        self.per_page.clamp(1, Self::MAX_PER_PAGE)
    }
}

/// A page of rows and how many rows there are in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Which moments to list.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MomentFilter {
    /// Only this stream's moments.
    pub stream: Option<StreamId>,
    /// Only moments at or after `from` and before `to`.
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// What the retention sweep deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryDeleted {
    pub streams: u64,
    pub buckets: u64,
    pub moments: u64,
}
