//! The dashboard's timeline chart: the bar over one stream as an SVG drawn
//! on the server (no script, no library), with the stream's moments marked.
//!
//! x is time from the stream's start to its end (or its last bucket, while
//! live); y is the bar, +100 ("for") at the top, −100 at the bottom. Each
//! bucket is drawn from its opening to its closing value; between buckets
//! chat did not vote, so the line returns to the centre (where the bar
//! decays to) and rests there until the next vote.

use time::OffsetDateTime;

use crate::app::reports::Timeline;
use crate::domain::history::{BUCKET_MS, MomentKind};

/// The drawing's size in SVG user units (it scales to the page's width).
pub const WIDTH: f64 = 960.0;
pub const HEIGHT: f64 = 240.0;

/// A moment's mark on the chart.
pub struct Mark {
    pub x: String,
    pub kind: &'static str,
    /// The mark's tooltip: kind and time.
    pub title: String,
}

/// A time label under the chart.
pub struct Tick {
    pub x: String,
    pub label: String,
}

/// What the template draws.
pub struct Chart {
    /// `points` of the value's polyline.
    pub points: String,
    pub marks: Vec<Mark>,
    pub ticks: Vec<Tick>,
    /// Whether there is anything to draw.
    pub empty: bool,
}

fn fmt(n: f64) -> String {
    format!("{n:.1}")
}

/// The chart of a stream's timeline; `now` ends a live stream without buckets.
pub fn chart(t: &Timeline, now: OffsetDateTime) -> Chart {
    let start = t.stream.started_at;
    let last_bucket_end = t.buckets.last().map(|b| b.start + time::Duration::milliseconds(BUCKET_MS));
    let end = t.stream.ended_at.or(last_bucket_end).unwrap_or(now).max(start + time::Duration::seconds(1));
    let span = (end - start).as_seconds_f64();
    let x_of = |at: OffsetDateTime| ((at - start).as_seconds_f64() / span * WIDTH).clamp(0.0, WIDTH);
    let y_of = |value: f64| (HEIGHT / 2.0 - value.clamp(-100.0, 100.0) / 100.0 * (HEIGHT / 2.0)).clamp(0.0, HEIGHT);
    let bucket = time::Duration::milliseconds(BUCKET_MS);

    let mut points: Vec<(f64, f64)> = vec![(0.0, y_of(0.0))];
    let mut rest_from = start;
    for b in &t.buckets {
        if b.start > rest_from {
            // No vote since the last bucket: back to the centre, resting.
            points.push((x_of(rest_from), y_of(0.0)));
            points.push((x_of(b.start), y_of(0.0)));
        }
        points.push((x_of(b.start), y_of(b.value_open)));
        points.push((x_of(b.start + bucket), y_of(b.value_close)));
        rest_from = b.start + bucket + bucket;
    }
    if t.buckets.last().is_some() && rest_from < end {
        points.push((x_of(rest_from), y_of(0.0)));
    }
    points.push((WIDTH, y_of(0.0)));
    let points = points.iter().map(|(x, y)| format!("{},{}", fmt(*x), fmt(*y))).collect::<Vec<_>>().join(" ");

    let marks = t
        .moments
        .iter()
        .map(|m| {
            let kind = match m.kind {
                MomentKind::Burst => "burst",
                MomentKind::Swing => "swing",
            };
            let title = format!("{kind} at {}", clock(m.at));
            Mark { x: fmt(x_of(m.at)), kind, title }
        })
        .collect();
    let ticks = (0..=4)
        .map(|i| {
            let at = start + time::Duration::seconds_f64(span * f64::from(i) / 4.0);
            Tick { x: fmt(WIDTH * f64::from(i) / 4.0), label: clock(at) }
        })
        .collect();
    Chart { points, marks, ticks, empty: t.buckets.is_empty() }
}

/// `HH:MM` UTC.
fn clock(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StreamerId;
    use crate::domain::history::{
        ActionOutcome, ActionStatus, HistoryBucket, Moment, MomentDetail, MomentId, StreamEnd, StreamId, StreamRecord,
    };

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_750_000_000 + seconds).unwrap()
    }

    fn timeline(buckets: &[(i64, f64, f64)], moments: &[i64], ended: Option<i64>) -> Timeline {
        let streamer = StreamerId::generate();
        Timeline {
            stream: StreamRecord {
                id: StreamId::generate(),
                streamer,
                twitch_stream_id: None,
                started_at: at(0),
                ended_at: ended.map(at),
                ended_by: ended.map(|_| StreamEnd::Offline),
            },
            buckets: buckets
                .iter()
                .map(|&(s, open, close)| HistoryBucket {
                    streamer,
                    stream: None,
                    start: at(s),
                    value_open: open,
                    value_close: close,
                    value_min: open.min(close),
                    value_max: open.max(close),
                    votes_for: 1,
                    votes_against: 0,
                    voters: 1,
                })
                .collect(),
            moments: moments
                .iter()
                .map(|&s| Moment {
                    id: MomentId::generate(),
                    streamer,
                    stream: None,
                    at: at(s),
                    kind: MomentKind::Swing,
                    detail: MomentDetail::Swing { from: 60.0, to: -60.0, millis: 3_000 },
                    marker: ActionOutcome::status(ActionStatus::NoScope),
                    clip: ActionOutcome::status(ActionStatus::NoScope),
                })
                .collect(),
        }
    }

    #[test]
    fn buckets_are_drawn_from_open_to_close_and_quiet_time_rests_at_the_centre() {
        // 100 s: x = 9.6 per second; y = 120 at the centre, 0 at +100, 240 at −100.
        let c = chart(&timeline(&[(0, 0.0, 50.0), (40, 50.0, -100.0)], &[45], Some(100)), at(1_000));
        assert_eq!(
            c.points,
            "0.0,120.0 0.0,120.0 96.0,60.0 192.0,120.0 384.0,120.0 384.0,60.0 480.0,240.0 576.0,120.0 960.0,120.0"
        );
        assert_eq!(c.marks.len(), 1);
        assert_eq!((c.marks[0].x.as_str(), c.marks[0].kind), ("432.0", "swing"));
        assert_eq!(c.ticks.first().map(|t| t.x.as_str()), Some("0.0"));
        assert_eq!(c.ticks.last().map(|t| t.x.as_str()), Some("960.0"));
        assert!(!c.empty);
    }

    #[test]
    fn a_stream_without_votes_is_a_flat_line_and_says_so() {
        let c = chart(&timeline(&[], &[], None), at(60));
        assert_eq!(c.points, "0.0,120.0 960.0,120.0");
        assert!(c.empty);
    }
}
