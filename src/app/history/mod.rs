//! Stream history: stream records from `stream.online` / `stream.offline`,
//! closed by reconciliation when the stream ended while nobody listened;
//! the 10-second history buckets each instance takes from the live store
//! and writes in batches ([`recorder`]); moments detected in them, with a
//! Twitch marker and clip when the streamer allowed it ([`actions`]); and
//! the retention sweep. The leader runs reconciliation and the sweep.

pub mod actions;
pub mod recorder;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use super::App;
use super::leader::{Leadership, Lease};
use crate::domain::history::{HistoryDeleted, StreamEnd};
use crate::store::RepositoryError;
use crate::twitch::client::TwitchError;
use crate::twitch::eventsub::StreamEvent;

pub use recorder::HistoryState;

/// What stream reconciliation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamsReconciled {
    /// Open streams Twitch no longer lists as live: closed.
    pub closed: usize,
    /// Open streams replaced by the one Twitch lists now (another stream id).
    pub replaced: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    #[error(transparent)]
    Twitch(#[from] TwitchError),
}

/// A Twitch time, or `None` when it is missing or not RFC 3339.
fn twitch_time(raw: Option<&str>) -> Option<OffsetDateTime> {
    raw.and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

impl App {
    /// Records a channel going live (opens its stream) or offline (closes
    /// it). Channels that are no streamer's are ignored. An error means the
    /// durable store failed: the webhook answers 5xx and Twitch delivers the
    /// event again (opening and closing are idempotent).
    pub(super) async fn record_stream(&self, event: &StreamEvent, live: bool) -> Result<(), RepositoryError> {
        let Some(setup) = self.repo.streamer_by_twitch_id(&event.broadcaster_user_id).await? else {
            return Ok(());
        };
        let streamer = setup.streamer.id;
        if live {
            let started_at = twitch_time(event.started_at.as_deref()).unwrap_or_else(OffsetDateTime::now_utc);
            let opened = self.repo.open_stream(streamer, event.id.as_deref(), started_at).await?;
            if opened.created {
                tracing::info!(streamer = %streamer, stream = %opened.stream.id, "stream opened");
            }
        } else if let Some(closed) =
            self.repo.close_stream(streamer, OffsetDateTime::now_utc(), StreamEnd::Offline).await?
        {
            tracing::info!(streamer = %streamer, stream = %closed.id, "stream closed");
        }
        Ok(())
    }

    /// Closes the open streams Twitch ("Get Streams") no longer lists as
    /// live — they ended while we were not listening — and replaces those
    /// whose channel is live with another stream by that one. Does nothing
    /// without Twitch.
    pub async fn reconcile_streams(&self) -> Result<StreamsReconciled, ReconcileError> {
        let Some(eventsub) = &self.eventsub else { return Ok(StreamsReconciled::default()) };
        let open = self.repo.open_streams().await?;
        if open.is_empty() {
            return Ok(StreamsReconciled::default());
        }
        let channels: Vec<String> =
            open.iter().map(|(_, b)| b.as_str().to_owned()).collect::<HashSet<_>>().into_iter().collect();
        let live = eventsub.client().live_streams(&channels).await?;
        let mut done = StreamsReconciled::default();
        let now = OffsetDateTime::now_utc();
        for (stream, broadcaster) in open {
            let current = live.iter().find(|l| l.user_id == broadcaster.as_str());
            match current {
                None => {
                    if self.repo.close_stream(stream.streamer, now, StreamEnd::Reconciliation).await?.is_some() {
                        tracing::info!(streamer = %stream.streamer, stream = %stream.id, "stream closed by reconciliation");
                        done.closed += 1;
                    }
                }
                Some(l) if stream.twitch_stream_id.as_deref().is_some_and(|id| id != l.id) => {
                    let started = twitch_time(Some(&l.started_at)).unwrap_or(now);
                    let opened = self.repo.open_stream(stream.streamer, Some(&l.id), started).await?;
                    if opened.closed.is_some() {
                        done.replaced += 1;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(done)
    }

    /// Deletes history older than `retention` (streams that ended, buckets
    /// and moments before the cutoff).
    pub async fn sweep_history(&self, retention: Duration) -> Result<HistoryDeleted, RepositoryError> {
        let retention = time::Duration::try_from(retention).unwrap_or(time::Duration::MAX);
        let cutoff = OffsetDateTime::now_utc().checked_sub(retention).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        self.repo.delete_history_before(cutoff).await
    }
}

/// The leader's history duties, every `interval` (the first a little after
/// start-up): stream
/// reconciliation and the retention sweep (`HISTORY_RETENTION_DAYS`). One
/// instance at a time holds the `<leader key>:history` lease.
pub async fn run_history_upkeep(app: Arc<App>, interval: Duration, retention: Duration, shutdown: CancellationToken) {
    let lease = Lease {
        key: format!("{}:history", app.settings.leader_key),
        instance: app.settings.instance_id.clone(),
        ttl: interval.saturating_mul(2),
        renew: interval,
    };
    // Joins a little after start-up, which has more urgent work (and the
    // live store's functions to load first).
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = tokio::time::sleep(interval.min(Duration::from_secs(30))) => {}
    }
    let leadership = Leadership::new(Arc::clone(&app.live), app.metrics.clone(), lease);
    let upkeep = |token: CancellationToken| {
        let app = Arc::clone(&app);
        async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                match app.reconcile_streams().await {
                    Ok(done) if done != StreamsReconciled::default() => {
                        tracing::info!(closed = done.closed, replaced = done.replaced, "streams reconciled");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "stream reconciliation failed; trying again next round"),
                }
                match app.sweep_history(retention).await {
                    Ok(d) if d != HistoryDeleted::default() => tracing::info!(
                        streams = d.streams,
                        buckets = d.buckets,
                        moments = d.moments,
                        "old history deleted"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "history retention sweep failed; trying again next round"),
                }
            }
        }
    };
    leadership.run_while_leading(shutdown, |_| {}, upkeep).await;
}
