//! What one stream looked like, from its history buckets and moments: the
//! summary the dashboard's history and the streamer API both show (one
//! computation, here), and the CSV form of its timeline.
//!
//! Rules (pure; the caller passes "now" for a stream still open):
//! - **duration**: from the stream's start to its end (or now, while open);
//! - **votes per side**: the sum of the buckets' counted votes;
//! - **peaks**: the highest value the bar reached towards the "for" side
//!   (`max(value_max)`, at least 0) and towards "against" (`min(value_min)`,
//!   at most 0);
//! - **share of time**, of the stream's duration: a 10-second bucket exists
//!   only when chat voted in it, and counts for the side its mean value
//!   ((open + close) / 2) leans to — within ±[`CENTRE_BAND`], for the centre;
//!   the rest of the stream had no vote and is `quiet` (the bar resting or
//!   decaying back to the centre). The four shares add up to 1 (all 0 for a
//!   stream of no duration and no buckets);
//! - **moments**: counted per kind.

use serde::Serialize;
use time::OffsetDateTime;

use super::history::{BUCKET_MS, HistoryBucket, Moment, MomentKind, StreamRecord};

/// A bucket whose mean value is within ± this counts as the centre.
pub const CENTRE_BAND: f64 = 5.0;

/// The share of the stream's time the bar leaned each way (each 0..1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimeShare {
    pub for_side: f64,
    pub against_side: f64,
    /// Chat voted, and the bar stayed near the centre.
    pub centre: f64,
    /// No vote at all.
    pub quiet: f64,
}

/// Moments per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MomentCounts {
    pub total: u32,
    pub bursts: u32,
    pub swings: u32,
}

/// One stream, summed up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamSummary {
    /// Whole seconds from start to end (or to now, while open).
    pub duration_seconds: i64,
    pub votes_for: u64,
    pub votes_against: u64,
    /// The bar's furthest point each way: `peak_for` in 0..=100,
    /// `peak_against` in -100..=0.
    pub peak_for: f64,
    pub peak_against: f64,
    pub time_share: TimeShare,
    /// How much of the stream chat voted in (10 s per bucket), in seconds.
    pub recorded_seconds: i64,
    /// The most distinct voters in one bucket.
    pub peak_voters: u32,
    pub moments: MomentCounts,
}

/// The summary of `stream` from its buckets and moments (others' are
/// ignored by the caller's query, not here: every bucket given counts).
pub fn summarize(
    stream: &StreamRecord,
    buckets: &[HistoryBucket],
    moments: &[Moment],
    now: OffsetDateTime,
) -> StreamSummary {
    let end = stream.ended_at.unwrap_or(now).max(stream.started_at);
    let duration_seconds = (end - stream.started_at).whole_seconds();
    let (mut votes_for, mut votes_against) = (0u64, 0u64);
    let (mut peak_for, mut peak_against) = (0.0f64, 0.0f64);
    let (mut leaning_for, mut leaning_against, mut centre) = (0u32, 0u32, 0u32);
    let mut peak_voters = 0;
    for b in buckets {
        votes_for += u64::from(b.votes_for);
        votes_against += u64::from(b.votes_against);
        if b.value_max.is_finite() {
            peak_for = peak_for.max(b.value_max.min(100.0));
        }
        if b.value_min.is_finite() {
            peak_against = peak_against.min(b.value_min.max(-100.0));
        }
        peak_voters = peak_voters.max(b.voters);
        let mean = (b.value_open + b.value_close) / 2.0;
        match mean {
            m if m > CENTRE_BAND => leaning_for += 1,
            m if m < -CENTRE_BAND => leaning_against += 1,
            _ => centre += 1,
        }
    }
    let recorded = leaning_for + leaning_against + centre;
    let recorded_seconds = i64::from(recorded) * BUCKET_MS / 1_000;
    // Buckets at the edges may reach past the stream's start or end.
    let whole = duration_seconds.max(recorded_seconds);
    let bucket_seconds = BUCKET_MS as f64 / 1_000.0;
    let share = |n: u32| if whole == 0 { 0.0 } else { f64::from(n) * bucket_seconds / whole as f64 };
    let mut counts = MomentCounts::default();
    for m in moments {
        counts.total += 1;
        match m.kind {
            MomentKind::Burst => counts.bursts += 1,
            MomentKind::Swing => counts.swings += 1,
        }
    }
    StreamSummary {
        duration_seconds,
        votes_for,
        votes_against,
        peak_for,
        peak_against,
        time_share: TimeShare {
            for_side: share(leaning_for),
            against_side: share(leaning_against),
            centre: share(centre),
            quiet: if whole == 0 { 0.0 } else { (whole - recorded_seconds) as f64 / whole as f64 },
        },
        recorded_seconds,
        peak_voters,
        moments: counts,
    }
}

/// The CSV header of a timeline export.
pub const TIMELINE_CSV_HEADER: &str = "start,value_open,value_close,value_min,value_max,votes_for,votes_against,voters";

/// A stream's buckets as CSV (RFC 4180; one header line, one line per
/// bucket, oldest first; times in RFC 3339 UTC, values as stored).
pub fn timeline_csv(buckets: &[HistoryBucket]) -> String {
    let mut out = String::with_capacity(64 * (buckets.len() + 1));
    out.push_str(TIMELINE_CSV_HEADER);
    out.push_str("\r\n");
    for b in buckets {
        let start = b.start.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        out.push_str(&format!(
            "{start},{},{},{},{},{},{},{}\r\n",
            b.value_open, b.value_close, b.value_min, b.value_max, b.votes_for, b.votes_against, b.voters
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StreamerId;
    use crate::domain::history::{ActionOutcome, ActionStatus, MomentDetail, MomentId, StreamEnd, StreamId};

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_750_000_000 + seconds).unwrap()
    }

    fn stream(ended: Option<i64>) -> StreamRecord {
        StreamRecord {
            id: StreamId::generate(),
            streamer: StreamerId::generate(),
            twitch_stream_id: Some("40001".into()),
            started_at: at(0),
            ended_at: ended.map(at),
            ended_by: ended.map(|_| StreamEnd::Offline),
        }
    }

    fn bucket(
        start: i64,
        open: f64,
        close: f64,
        (min, max): (f64, f64),
        (f, a, voters): (u32, u32, u32),
    ) -> HistoryBucket {
        HistoryBucket {
            streamer: StreamerId::generate(),
            stream: None,
            start: at(start),
            value_open: open,
            value_close: close,
            value_min: min,
            value_max: max,
            votes_for: f,
            votes_against: a,
            voters,
        }
    }

    fn moment(kind: MomentKind) -> Moment {
        let detail = match kind {
            MomentKind::Burst => MomentDetail::Burst { rate: 5.0, baseline_mean: 1.0, baseline_stddev: 0.5 },
            MomentKind::Swing => MomentDetail::Swing { from: 60.0, to: -55.0, millis: 4_000 },
        };
        Moment {
            id: MomentId::generate(),
            streamer: StreamerId::generate(),
            stream: None,
            at: at(5),
            kind,
            detail,
            marker: ActionOutcome::status(ActionStatus::NoScope),
            clip: ActionOutcome::status(ActionStatus::NoScope),
        }
    }

    #[test]
    fn a_stream_is_summed_up_from_its_buckets_and_moments() {
        let buckets = [
            bucket(0, 0.0, 20.0, (0.0, 30.0), (3, 0, 3)),
            bucket(10, 20.0, -40.0, (-50.0, 20.0), (1, 6, 7)),
            bucket(40, 2.0, -2.0, (-3.0, 4.0), (1, 1, 2)),
        ];
        let moments = [moment(MomentKind::Burst), moment(MomentKind::Swing), moment(MomentKind::Swing)];
        let s = summarize(&stream(Some(100)), &buckets, &moments, at(5_000));
        assert_eq!(s.duration_seconds, 100, "an ended stream's duration ignores now");
        assert_eq!((s.votes_for, s.votes_against), (5, 7));
        assert_eq!((s.peak_for, s.peak_against), (30.0, -50.0));
        assert_eq!(s.peak_voters, 7);
        assert_eq!(s.recorded_seconds, 30);
        // (0 + 20) / 2 = 10 leans for; (20 - 40) / 2 = -10 against; 0 is the centre; 70 s had no vote.
        assert_eq!(s.time_share, TimeShare { for_side: 0.1, against_side: 0.1, centre: 0.1, quiet: 0.7 });
        assert_eq!(s.moments, MomentCounts { total: 3, bursts: 1, swings: 2 });
    }

    #[test]
    fn an_open_stream_lasts_until_now_and_an_empty_one_has_no_shares() {
        let s = summarize(&stream(None), &[], &[], at(90));
        assert_eq!(s.duration_seconds, 90);
        assert_eq!((s.votes_for, s.votes_against, s.peak_for, s.peak_against), (0, 0, 0.0, 0.0));
        assert_eq!(s.time_share, TimeShare { for_side: 0.0, against_side: 0.0, centre: 0.0, quiet: 1.0 });
        let none = summarize(&stream(Some(0)), &[], &[], at(0));
        assert_eq!(none.time_share, TimeShare { for_side: 0.0, against_side: 0.0, centre: 0.0, quiet: 0.0 });
    }

    #[test]
    fn peaks_never_leave_the_scale_nor_cross_the_centre() {
        let buckets =
            [bucket(0, -10.0, -20.0, (-30.0, -5.0), (0, 2, 2)), bucket(10, 1.0, 2.0, (f64::NAN, 250.0), (2, 0, 2))];
        let s = summarize(&stream(Some(20)), &buckets, &[], at(20));
        assert_eq!((s.peak_for, s.peak_against), (100.0, -30.0));
        let against_only = summarize(&stream(Some(20)), &buckets[..1], &[], at(20));
        assert_eq!(against_only.peak_for, 0.0, "a bar that never leaned for peaks at 0 that way");
    }

    #[test]
    fn the_csv_has_a_header_and_one_line_per_bucket() {
        let csv = timeline_csv(&[bucket(0, 0.0, 12.5, (0.0, 12.5), (2, 1, 3))]);
        assert_eq!(csv, format!("{TIMELINE_CSV_HEADER}\r\n2025-06-15T15:06:40Z,0,12.5,0,12.5,2,1,3\r\n"));
    }
}
