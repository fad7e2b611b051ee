//! What each instance sees of each channel's chat, for the dashboard's "is it
//! working?" panel: the last chat message seen, the last vote counted, and
//! what became of every message (applied, debounced, rate-limited, no
//! session, no match, …) in 5-second buckets.
//!
//! The trade-off. Chat that names neither side must stay cheap — no storage
//! call at all — and most outcomes are only known to the instance that took
//! the message. So every instance counts in memory (one lock and a map
//! update per message), and shares its counts only while somebody looks: a
//! dashboard asking for the status publishes a `WatchActivity` signal (at
//! most every [`ASK_EVERY`] per channel and instance), and for
//! [`WATCH_FOR`] afterwards each instance writes its report on that channel
//! to the live store every [`REPORT_EVERY`] when it changed (one `HSET` of a
//! small JSON). The cost is proportional to open dashboards, never to chat;
//! the price is that the first look after a quiet while sees the other
//! instances' counts a moment later, and an instance that crashes takes its
//! last two seconds of counts with it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::sessions::OpenOverlays;
use crate::domain::{BroadcasterId, ChatMessage};
use crate::engine::ChatOutcome;
use crate::store::{ActivityReport, OutcomeBucket, OutcomeCounts};

/// The counts' time buckets.
pub const BUCKET_MS: i64 = 5_000;
/// "The last minute": the buckets that started within it (60–65 s of chat).
pub const WINDOW_MS: i64 = 60_000;
/// How long a look at the status keeps every instance reporting.
pub const WATCH_FOR: Duration = Duration::from_secs(30);
/// How often an instance writes its reports on watched channels (when they
/// changed).
pub const REPORT_EVERY: Duration = Duration::from_secs(2);
/// A report is written again at least this often while watched, so that
/// readers can tell an instance that still has the overlays it reported.
pub const REFRESH_MS: i64 = 5_000;
/// A report older than this says nothing about overlays open now.
pub const FRESH_MS: i64 = 12_000;
/// How often one instance asks the others to watch the same channel.
pub const ASK_EVERY: Duration = Duration::from_secs(10);
/// A channel nobody watches is forgotten after this long without chat.
const FORGET_AFTER_MS: i64 = 3_600_000;

/// This instance's account of every channel it saw chat for.
#[derive(Default)]
pub struct ActivityLog {
    channels: Mutex<HashMap<BroadcasterId, Channel>>,
    /// Channels somebody watches, until when.
    watched: Mutex<HashMap<BroadcasterId, Instant>>,
    /// When this instance last asked everyone to watch a channel.
    asked: Mutex<HashMap<BroadcasterId, Instant>>,
}

#[derive(Default)]
struct Channel {
    last_chat_ms: Option<i64>,
    last_vote_ms: Option<i64>,
    buckets: VecDeque<OutcomeBucket>,
    /// The last report written, to skip writing the same again.
    written: Option<ActivityReport>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update is a few map operations: a panic cannot leave them half done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Channel {
    fn count(&mut self, outcome: &ChatOutcome, now_ms: i64) {
        let start_ms = now_ms - now_ms.rem_euclid(BUCKET_MS);
        if self.buckets.back().is_none_or(|b| b.start_ms < start_ms) {
            self.buckets.push_back(OutcomeBucket { start_ms, counts: OutcomeCounts::default() });
        }
        // A bucket of this time exists now (an older time — another
        // thread's clock read a moment earlier — goes to the newest one).
        let Some(bucket) = self.buckets.back_mut() else { return };
        let c = &mut bucket.counts;
        match outcome {
            ChatOutcome::Applied { .. } => c.applied += 1,
            ChatOutcome::Duplicate => c.duplicate += 1,
            ChatOutcome::Debounced => c.debounced += 1,
            ChatOutcome::RateLimited => c.rate_limited += 1,
            ChatOutcome::NoSession => c.no_session += 1,
            ChatOutcome::NoMatch => c.no_match += 1,
            ChatOutcome::Error => c.error += 1,
            ChatOutcome::Ignored => {}
        }
        self.drop_old(now_ms);
    }

    fn drop_old(&mut self, now_ms: i64) {
        while self.buckets.front().is_some_and(|b| b.start_ms <= now_ms - WINDOW_MS - BUCKET_MS) {
            self.buckets.pop_front();
        }
    }
}

impl ActivityLog {
    /// Records what became of one message (the bot's own and relayed ones
    /// are not chat of this channel's audience: not recorded). Test votes
    /// are counted, but are not "chat seen".
    pub fn record(&self, chat: &ChatMessage, outcome: &ChatOutcome, now_ms: i64) {
        if *outcome == ChatOutcome::Ignored {
            return;
        }
        let mut channels = lock(&self.channels);
        // The channel's id is copied only the first time it is seen.
        if !channels.contains_key(&chat.channel) {
            channels.insert(chat.channel.clone(), Default::default());
        }
        let Some(channel) = channels.get_mut(&chat.channel) else { return };
        channel.count(outcome, now_ms);
        if !chat.test {
            channel.last_chat_ms = Some(channel.last_chat_ms.map_or(now_ms, |t| t.max(now_ms)));
            if matches!(outcome, ChatOutcome::Applied { .. }) {
                channel.last_vote_ms = Some(channel.last_vote_ms.map_or(now_ms, |t| t.max(now_ms)));
            }
        }
    }

    /// Somebody looks at this channel's status: report on it until `until`.
    pub fn watch(&self, broadcaster: &BroadcasterId, until: Instant) {
        let mut watched = lock(&self.watched);
        let entry = watched.entry(broadcaster.clone()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Whether this instance should ask everyone to watch the channel now
    /// (it has not for [`ASK_EVERY`]); records the ask.
    pub fn should_ask(&self, broadcaster: &BroadcasterId, now: Instant) -> bool {
        let mut asked = lock(&self.asked);
        if asked.get(broadcaster).is_some_and(|at| now.duration_since(*at) < ASK_EVERY) {
            return false;
        }
        asked.retain(|_, at| now.duration_since(*at) < ASK_EVERY);
        asked.insert(broadcaster.clone(), now);
        true
    }

    /// The channels watched now; forgets the watches that ended.
    pub fn watched(&self, now: Instant) -> Vec<BroadcasterId> {
        let mut watched = lock(&self.watched);
        watched.retain(|_, until| *until > now);
        watched.keys().cloned().collect()
    }

    /// This instance's report on a channel, if it has anything to say that
    /// it did not write within [`REFRESH_MS`] (`force`: whatever it wrote).
    /// Nothing to say — no overlays, no chat, never reported — is no report.
    pub fn report(
        &self,
        broadcaster: &BroadcasterId,
        open: OpenOverlays,
        instance: &str,
        now_ms: i64,
        force: bool,
    ) -> Option<ActivityReport> {
        let mut channels = lock(&self.channels);
        let empty = open == OpenOverlays::default();
        if empty && !channels.contains_key(broadcaster) {
            return None;
        }
        let channel = channels.entry(broadcaster.clone()).or_default();
        channel.drop_old(now_ms);
        let report = ActivityReport {
            instance: instance.to_owned(),
            written_ms: now_ms,
            overlays: open.overlays,
            previews: open.previews,
            last_chat_ms: channel.last_chat_ms,
            last_vote_ms: channel.last_vote_ms,
            buckets: channel.buckets.iter().copied().collect(),
        };
        let same = channel.written.as_ref().is_some_and(|w| {
            now_ms - w.written_ms < REFRESH_MS && ActivityReport { written_ms: w.written_ms, ..report.clone() } == *w
        });
        if same && !force {
            return None;
        }
        channel.written = Some(report.clone());
        Some(report)
    }

    /// Forgets channels that nobody watches and that had no chat for an hour.
    pub fn forget_idle(&self, now_ms: i64, now: Instant) {
        let watched = self.watched(now);
        lock(&self.channels).retain(|b, c| {
            watched.contains(b) || c.last_chat_ms.is_some_and(|t| now_ms - t < FORGET_AFTER_MS) || !c.buckets.is_empty()
        });
    }
}

/// Every instance's reports on a channel, added up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    pub overlays: u32,
    pub previews: u32,
    pub last_chat_ms: Option<i64>,
    pub last_vote_ms: Option<i64>,
    /// The outcomes of the last minute (the buckets that started within it).
    pub last_minute: OutcomeCounts,
}

impl Activity {
    pub fn sum(reports: &[ActivityReport], now_ms: i64) -> Self {
        let mut total = Activity::default();
        for r in reports {
            if now_ms - r.written_ms <= FRESH_MS {
                total.overlays += r.overlays;
                total.previews += r.previews;
            }
            total.last_chat_ms = total.last_chat_ms.max(r.last_chat_ms);
            total.last_vote_ms = total.last_vote_ms.max(r.last_vote_ms);
            for b in r.buckets.iter().filter(|b| b.start_ms > now_ms - WINDOW_MS - BUCKET_MS) {
                total.last_minute.add(&b.counts);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChatterId, OverlayId};
    use crate::engine::Wake;

    const T: i64 = 1_800_000_000_000;

    fn chat(channel: &str, test: bool) -> ChatMessage {
        ChatMessage {
            delivery_id: "d".into(),
            channel: BroadcasterId::parse(channel).unwrap(),
            chatter: ChatterId::parse("9").unwrap(),
            text: "yes".into(),
            emotes: vec![],
            relayed_from: None,
            test,
        }
    }

    fn applied() -> ChatOutcome {
        ChatOutcome::Applied { value: 10.0, overlay: OverlayId::random(), wake: Wake::Here }
    }

    fn b(id: &str) -> BroadcasterId {
        BroadcasterId::parse(id).unwrap()
    }

    #[test]
    fn outcomes_are_counted_per_bucket_and_chat_and_votes_are_timed() {
        let log = ActivityLog::default();
        log.record(&chat("1", false), &ChatOutcome::NoMatch, T);
        log.record(&chat("1", false), &applied(), T + 1);
        log.record(&chat("1", false), &ChatOutcome::Debounced, T + BUCKET_MS);
        log.record(&chat("1", false), &ChatOutcome::Ignored, T + BUCKET_MS + 1);
        let r = log.report(&b("1"), OpenOverlays::default(), "i", T + BUCKET_MS + 2, false).unwrap();
        assert_eq!((r.last_chat_ms, r.last_vote_ms), (Some(T + BUCKET_MS), Some(T + 1)));
        let total = Activity::sum(&[r], T + BUCKET_MS + 2).last_minute;
        assert_eq!((total.applied, total.no_match, total.debounced), (1, 1, 1));
    }

    #[test]
    fn test_votes_are_counted_but_are_not_chat_seen() {
        let log = ActivityLog::default();
        log.record(&chat("1", true), &applied(), T);
        let r = log.report(&b("1"), OpenOverlays::default(), "i", T, false).unwrap();
        assert_eq!((r.last_chat_ms, r.last_vote_ms), (None, None));
        assert_eq!(Activity::sum(&[r], T).last_minute.applied, 1);
    }

    #[test]
    fn counts_older_than_a_minute_drop_out() {
        let log = ActivityLog::default();
        log.record(&chat("1", false), &ChatOutcome::NoMatch, T);
        let later = T + WINDOW_MS + 2 * BUCKET_MS;
        let r = log.report(&b("1"), OpenOverlays::default(), "i", later, false).unwrap();
        assert!(r.buckets.is_empty());
        assert_eq!(r.last_chat_ms, Some(T), "the last chat seen is kept");
    }

    #[test]
    fn reports_add_up_across_instances_and_stale_ones_say_nothing_about_overlays() {
        let report = |instance: &str, written_ms: i64, overlays: u32, chat: Option<i64>, applied: u32| ActivityReport {
            instance: instance.into(),
            written_ms,
            overlays,
            previews: 0,
            last_chat_ms: chat,
            last_vote_ms: None,
            buckets: vec![OutcomeBucket { start_ms: T, counts: OutcomeCounts { applied, ..Default::default() } }],
        };
        let now = T + 1_000;
        let total = Activity::sum(
            &[
                report("a", now, 2, Some(T), 3),
                report("b", now - 1_000, 1, Some(T + 5), 4),
                report("c", now - FRESH_MS - 1, 7, None, 1),
            ],
            now,
        );
        assert_eq!((total.overlays, total.last_chat_ms, total.last_minute.applied), (3, Some(T + 5), 8));
    }

    #[test]
    fn a_report_is_written_when_it_changed_or_is_due_again() {
        let log = ActivityLog::default();
        let open = OpenOverlays { overlays: 1, previews: 0 };
        assert!(log.report(&b("1"), OpenOverlays::default(), "i", T, false).is_none(), "nothing to say");
        assert!(log.report(&b("1"), open, "i", T, false).is_some());
        assert!(log.report(&b("1"), open, "i", T + 1_000, false).is_none(), "unchanged");
        assert!(log.report(&b("1"), open, "i", T + 1_000, true).is_some(), "asked for");
        assert!(log.report(&b("1"), OpenOverlays::default(), "i", T + 1_500, false).is_some(), "the overlay left");
        assert!(log.report(&b("1"), OpenOverlays::default(), "i", T + 1_500 + REFRESH_MS, false).is_some(), "due");
    }

    #[test]
    fn watches_end_and_asks_are_spaced() {
        let log = ActivityLog::default();
        let now = Instant::now();
        log.watch(&b("1"), now + WATCH_FOR);
        assert_eq!(log.watched(now), [b("1")]);
        assert!(log.watched(now + WATCH_FOR).is_empty());
        assert!(log.should_ask(&b("1"), now));
        assert!(!log.should_ask(&b("1"), now + Duration::from_secs(1)));
        assert!(log.should_ask(&b("1"), now + ASK_EVERY));
    }
}
