//! "Is it working?": the facts the dashboard shows live — chat subscription,
//! last chat seen and last vote counted, overlays open across all instances,
//! the last minute's votes by outcome, the stream — and a diagnosis of the
//! most important thing to fix. Facts and diagnosis are types; the page
//! words them (`http::control`).

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::App;
use super::accounts::{ChatBlock, ChatConnection, DashboardView, StreamState};
use super::activity::{Activity, REPORT_EVERY, WATCH_FOR};
use crate::domain::{BroadcasterId, MatchMode, StreamerId};
use crate::store::signals::Signal;
use crate::store::{OutcomeCounts, RepositoryError};

/// Live chat this long ago while the stream is live: Twitch may have
/// stopped sending it.
pub const CHAT_STOPPED_MS: i64 = 10 * 60_000;

/// Everything the status panel shows.
pub struct StatusView {
    pub dashboard: DashboardView,
    pub activity: Activity,
    /// The bar now, when a session is live somewhere.
    pub value: Option<f64>,
    pub voters: Option<u32>,
    /// When these facts were gathered (ms since the epoch).
    pub at_ms: i64,
    pub diagnosis: Diagnosis,
}

/// The most important thing the streamer should know, in order: what stops
/// chat from reaching the bar at all, then what stops votes from counting,
/// then how it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// This server has no Twitch application configured.
    NoTwitch,
    /// Twitch no longer accepts the streamer's login.
    ReloginNeeded,
    /// Twitch will not deliver chat until the streamer acts.
    ChatBlocked(ChatBlock),
    /// The login lacks `channel:bot`.
    MissingChannelBot,
    /// Subscribing to the channel's chat failed, with Twitch's reason.
    SubscriptionFailed(String),
    /// The live store did not answer: overlays show "reconnecting".
    LiveStoreDown,
    /// No overlay is open anywhere: votes only count while one is. How many
    /// messages found no open overlay in the last minute.
    NoOverlay { missed: u32 },
    /// Overlays are open, and the channel's chat subscription is being made.
    Subscribing,
    /// Chat arrives, but no message of the last minute matched the words.
    NoMatch { messages: u32, for_words: String, against_words: String, match_mode: MatchMode },
    /// Some votes were over the per-session limit (an abuse guard).
    RateLimited { votes: u32 },
    /// Live, chat arrived before, and none for a while: Twitch may have
    /// stopped sending it.
    ChatStopped { minutes: i64 },
    /// No chat seen yet.
    WaitingForChat,
    /// Votes count, but only the dashboard's preview shows the bar: it is
    /// not in OBS.
    PreviewOnly,
    /// Votes were counted in the last minute.
    Working { applied: u32 },
    /// Chat came before; the last minute was quiet.
    Quiet,
}

impl Diagnosis {
    /// A stable name for machine clients.
    pub fn code(&self) -> &'static str {
        match self {
            Diagnosis::NoTwitch => "no_twitch",
            Diagnosis::ReloginNeeded => "relogin_needed",
            Diagnosis::ChatBlocked(_) => "chat_blocked",
            Diagnosis::MissingChannelBot => "missing_channel_bot",
            Diagnosis::SubscriptionFailed(_) => "subscription_failed",
            Diagnosis::LiveStoreDown => "live_store_down",
            Diagnosis::NoOverlay { .. } => "no_overlay",
            Diagnosis::Subscribing => "subscribing",
            Diagnosis::NoMatch { .. } => "no_match",
            Diagnosis::RateLimited { .. } => "rate_limited",
            Diagnosis::ChatStopped { .. } => "chat_stopped",
            Diagnosis::WaitingForChat => "waiting_for_chat",
            Diagnosis::PreviewOnly => "preview_only",
            Diagnosis::Working { .. } => "working",
            Diagnosis::Quiet => "quiet",
        }
    }

    /// Whether it is a problem to fix (rather than how it goes).
    pub fn is_problem(&self) -> bool {
        !matches!(self, Diagnosis::Working { .. } | Diagnosis::Quiet | Diagnosis::WaitingForChat)
    }
}

/// The diagnosis of a set of facts.
pub fn diagnose(view: &DashboardView, activity: &Activity, now_ms: i64) -> Diagnosis {
    let counts: &OutcomeCounts = &activity.last_minute;
    let open = activity.overlays + activity.previews;
    let config = &view.setup.config.config;
    match &view.chat {
        ChatConnection::NoTwitch => return Diagnosis::NoTwitch,
        _ if view.relogin_needed => return Diagnosis::ReloginNeeded,
        _ if view.chat_blocked.is_some() => return view.chat_blocked.map_or(Diagnosis::Quiet, Diagnosis::ChatBlocked),
        _ if view.missing_channel_bot => return Diagnosis::MissingChannelBot,
        ChatConnection::Failed(reason) => return Diagnosis::SubscriptionFailed(reason.clone()),
        _ => {}
    }
    if view.stream == StreamState::Unavailable {
        return Diagnosis::LiveStoreDown;
    }
    if open == 0 {
        return Diagnosis::NoOverlay { missed: counts.no_session };
    }
    if view.chat == ChatConnection::WaitingForOverlay {
        return Diagnosis::Subscribing;
    }
    if counts.no_match > 0 && counts.applied == 0 {
        return Diagnosis::NoMatch {
            messages: counts.no_match,
            for_words: config.for_trigger.to_string(),
            against_words: config.against_trigger.to_string(),
            match_mode: config.match_mode,
        };
    }
    if counts.rate_limited > 0 {
        return Diagnosis::RateLimited { votes: counts.rate_limited };
    }
    match activity.last_chat_ms {
        Some(at) if view.stream == StreamState::Live && now_ms - at >= CHAT_STOPPED_MS => {
            return Diagnosis::ChatStopped { minutes: (now_ms - at) / 60_000 };
        }
        None if counts.applied == 0 => return Diagnosis::WaitingForChat,
        _ => {}
    }
    if activity.overlays == 0 {
        return Diagnosis::PreviewOnly;
    }
    if counts.applied > 0 { Diagnosis::Working { applied: counts.applied } } else { Diagnosis::Quiet }
}

impl App {
    /// The status facts of the streamer's channel, gathered from every
    /// instance (see `app::activity`); `None` if the streamer is unknown.
    pub async fn status(&self, id: StreamerId) -> Result<Option<StatusView>, RepositoryError> {
        let Some(dashboard) = self.dashboard(id).await? else { return Ok(None) };
        let broadcaster = dashboard.setup.streamer.twitch_user_id.clone();
        let now = tokio::time::Instant::now();
        self.activity.watch(&broadcaster, now + WATCH_FOR);
        if self.activity.should_ask(&broadcaster, now)
            && let Err(e) = self.signals.publish(Signal::WatchActivity { broadcaster: broadcaster.clone() }).await
        {
            tracing::debug!(error = %e, "other instances were not asked for their counts; this one's are shown");
        }
        // This instance's own account is always current.
        self.report_activity(&broadcaster, true).await;
        let at_ms = crate::now_ms();
        let reports = self.live.activity_reports(&broadcaster, at_ms).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the instances' activity reports");
            Vec::new()
        });
        let activity = Activity::sum(&reports, at_ms);
        let snapshot = self.snapshot(dashboard.setup.streamer.overlay_id).await;
        let (value, voters) = match snapshot {
            Ok(Some(s)) => (Some(s.value), Some(s.voters)),
            _ => (None, None),
        };
        let diagnosis = diagnose(&dashboard, &activity, at_ms);
        Ok(Some(StatusView { dashboard, activity, value, voters, at_ms, diagnosis }))
    }

    /// Writes this instance's report on a channel to the live store, if it
    /// has something new to say (`force`: whatever it is).
    async fn report_activity(&self, broadcaster: &BroadcasterId, force: bool) {
        let open = self.sessions.open_overlays(broadcaster);
        let report = self.activity.report(broadcaster, open, &self.settings.instance_id, crate::now_ms(), force);
        if let Some(report) = report
            && let Err(e) = self.live.report_activity(broadcaster, &report).await
        {
            tracing::debug!(error = %e, "activity report not written");
        }
    }

    /// Reports on watched channels until shutdown: when another instance
    /// asks (a `WatchActivity` signal) and every [`REPORT_EVERY`] while the
    /// watch lasts. Also tells the history flush of bars other instances
    /// moved or took votes for (`Moved` and `Voted` signals).
    pub async fn run_activity(
        self: Arc<Self>,
        mut signals: tokio::sync::broadcast::Receiver<Signal>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(REPORT_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                signal = signals.recv() => match signal {
                    Ok(Signal::WatchActivity { broadcaster }) => {
                        self.activity.watch(&broadcaster, tokio::time::Instant::now() + WATCH_FOR);
                        self.report_activity(&broadcaster, true).await;
                    }
                    // Another instance moved this bar from the centre: a
                    // vote the history flush must not wait for the sweep to see.
                    Ok(Signal::Moved { overlay }) => self.history.touch(overlay, crate::now_ms()),
                    Ok(Signal::Voted { overlays }) => {
                        let now = crate::now_ms();
                        for overlay in overlays {
                            self.history.touch(overlay, now);
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                _ = ticker.tick() => {
                    let now = tokio::time::Instant::now();
                    for broadcaster in self.activity.watched(now) {
                        self.report_activity(&broadcaster, false).await;
                    }
                    self.activity.forget_idle(crate::now_ms(), now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OverlayConfig;
    use crate::store::{OverlaySetup, StoredConfig, Streamer};

    const NOW: i64 = 1_800_000_000_000;

    fn view(chat: ChatConnection, stream: StreamState) -> DashboardView {
        let streamer = Streamer {
            id: StreamerId::generate(),
            overlay_id: crate::domain::OverlayId::random(),
            twitch_user_id: BroadcasterId::parse("1").unwrap(),
            login: "s".into(),
            display_name: "S".into(),
            needs_relogin: false,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let config =
            StoredConfig { config: OverlayConfig::default(), version: 1, updated_at: time::OffsetDateTime::UNIX_EPOCH };
        DashboardView {
            setup: OverlaySetup { streamer, config },
            relogin_needed: false,
            chat_blocked: None,
            missing_channel_bot: false,
            chat,
            stream,
        }
    }

    fn activity(overlays: u32, previews: u32, last_chat_ms: Option<i64>, counts: OutcomeCounts) -> Activity {
        Activity { overlays, previews, last_chat_ms, last_vote_ms: None, last_minute: counts }
    }

    fn counts(applied: u32, no_match: u32, no_session: u32, rate_limited: u32) -> OutcomeCounts {
        OutcomeCounts { applied, no_match, no_session, rate_limited, ..OutcomeCounts::default() }
    }

    #[test]
    fn chat_that_cannot_arrive_is_diagnosed_first() {
        let none = activity(0, 0, None, OutcomeCounts::default());
        assert_eq!(diagnose(&view(ChatConnection::NoTwitch, StreamState::NoOverlay), &none, NOW), Diagnosis::NoTwitch);
        let mut relogin = view(ChatConnection::Connected, StreamState::Live);
        relogin.relogin_needed = true;
        assert_eq!(diagnose(&relogin, &none, NOW), Diagnosis::ReloginNeeded);
        let failed = view(ChatConnection::Failed("403".into()), StreamState::Live);
        assert_eq!(diagnose(&failed, &none, NOW), Diagnosis::SubscriptionFailed("403".into()));
        let down = view(ChatConnection::Connected, StreamState::Unavailable);
        assert_eq!(diagnose(&down, &none, NOW), Diagnosis::LiveStoreDown);
    }

    #[test]
    fn no_overlay_then_no_match_then_the_limit() {
        let v = view(ChatConnection::Connected, StreamState::NotKnownYet);
        let missed = activity(0, 0, Some(NOW), counts(0, 0, 4, 0));
        assert_eq!(diagnose(&v, &missed, NOW), Diagnosis::NoOverlay { missed: 4 });
        let unmatched = activity(1, 0, Some(NOW), counts(0, 9, 0, 0));
        assert!(
            matches!(diagnose(&v, &unmatched, NOW), Diagnosis::NoMatch { messages: 9, ref for_words, .. } if for_words == "yes")
        );
        let some_matched = activity(1, 0, Some(NOW), counts(2, 9, 0, 0));
        assert_eq!(diagnose(&v, &some_matched, NOW), Diagnosis::Working { applied: 2 });
        let limited = activity(1, 0, Some(NOW), counts(2, 0, 0, 3));
        assert_eq!(diagnose(&v, &limited, NOW), Diagnosis::RateLimited { votes: 3 });
    }

    #[test]
    fn chat_that_stopped_while_live_and_a_preview_alone_are_told() {
        let live = view(ChatConnection::Connected, StreamState::Live);
        let stopped = activity(1, 0, Some(NOW - CHAT_STOPPED_MS - 60_000), OutcomeCounts::default());
        assert_eq!(diagnose(&live, &stopped, NOW), Diagnosis::ChatStopped { minutes: 11 });
        let offline = view(ChatConnection::Connected, StreamState::Offline);
        assert_eq!(diagnose(&offline, &stopped, NOW), Diagnosis::Quiet, "offline: quiet chat is expected");
        let waiting = activity(1, 0, None, OutcomeCounts::default());
        assert_eq!(diagnose(&live, &waiting, NOW), Diagnosis::WaitingForChat);
        let preview = activity(0, 1, Some(NOW), counts(3, 0, 0, 0));
        assert_eq!(diagnose(&live, &preview, NOW), Diagnosis::PreviewOnly);
        let subscribing = view(ChatConnection::WaitingForOverlay, StreamState::NotKnownYet);
        assert_eq!(
            diagnose(&subscribing, &activity(1, 0, None, OutcomeCounts::default()), NOW),
            Diagnosis::Subscribing
        );
    }
}
