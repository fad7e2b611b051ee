//! The leader's clean-up after crashed instances. Every instance beats a
//! heartbeat as often as it renews its session leases, with the same TTL
//! (`app::sessions`). An instance that stops (`kill -9`, a lost node) leaves
//! its leases to expire; every `crash_sweep_interval` the leader finds the
//! instances whose heartbeat ended, releases their leases, and deletes the
//! subscriptions of every channel whose session thereby ended — within a
//! lease plus a sweep of the crash, instead of at the next reconciliation.
//! Sessions other instances still hold stay, without the dead lease.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::EventSub;
use crate::domain::BroadcasterId;
use crate::store::{LiveStore, LiveStoreError};

/// One sweep at `now_ms`: releases the leases of every instance whose
/// heartbeat ended; the channels whose session ended, each once.
pub async fn release_crashed(live: &dyn LiveStore, now_ms: i64) -> Result<Vec<BroadcasterId>, LiveStoreError> {
    let mut ended = Vec::new();
    for instance in live.expired_instances(now_ms).await? {
        let channels = live.drop_instance(&instance, now_ms).await?;
        tracing::warn!(
            %instance,
            sessions_ended = channels.len(),
            "an instance stopped beating (crashed?); its session leases were released"
        );
        ended.extend(channels);
    }
    ended.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    ended.dedup();
    Ok(ended)
}

impl EventSub {
    /// The leader's sweep, until `token` is cancelled: at once, then every
    /// `crash_sweep_interval`.
    pub(super) async fn sweep_crashes(self: Arc<Self>, token: CancellationToken) {
        let mut ticker = tokio::time::interval(self.settings.crash_sweep_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let ended = match release_crashed(self.live.as_ref(), crate::now_ms()).await {
                Ok(ended) => ended,
                Err(e) => {
                    self.metrics.live_error("drop_instance");
                    tracing::warn!(error = %e, "cannot clean up after crashed instances; trying again");
                    continue;
                }
            };
            for broadcaster in ended {
                // Checks again that no session came back meanwhile.
                self.forget_channel(None, &broadcaster).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OverlayConfig, OverlayId};
    use crate::store::memory::MemoryLiveStore;
    use crate::store::{Lease, SessionActivation, VoteLimits};

    const T0: i64 = 1_700_000_000_000;
    const TTL: i64 = 30_000;

    async fn hold(live: &MemoryLiveStore, instance: &str, broadcaster: &str, now: i64) -> (OverlayId, BroadcasterId) {
        let (overlay, broadcaster) = (OverlayId::random(), BroadcasterId::parse(broadcaster).unwrap());
        let activation = SessionActivation {
            overlay,
            broadcaster: broadcaster.clone(),
            config: OverlayConfig::default(),
            config_version: 1,
        };
        live.activate(&activation, Lease { instance, ttl_ms: TTL }, now).await.unwrap();
        (overlay, broadcaster)
    }

    #[tokio::test]
    async fn a_sweep_ends_the_sessions_only_a_silent_instance_held_and_keeps_shared_ones() {
        let live = MemoryLiveStore::new(VoteLimits::default());
        let (alone, alone_channel) = hold(&live, "crashed", "1001", T0).await;
        let (shared, shared_channel) = hold(&live, "crashed", "1002", T0).await;
        hold(&live, "alive", "1002", T0).await;
        live.heartbeat("crashed", TTL, T0).await.unwrap();
        live.heartbeat("alive", TTL, T0).await.unwrap();
        // `alive` keeps beating and renewing; `crashed` is silent from T0.
        let later = T0 + 20_000;
        live.heartbeat("alive", TTL, later).await.unwrap();
        live.renew(&[(shared, shared_channel.clone())], Lease { instance: "alive", ttl_ms: TTL }, later).await.unwrap();

        assert_eq!(release_crashed(&live, T0 + TTL - 1).await.unwrap(), vec![], "not before its heartbeat ends");
        assert!(live.session_for(&alone_channel).await.unwrap().is_some());

        assert_eq!(release_crashed(&live, T0 + TTL).await.unwrap(), vec![alone_channel.clone()]);
        assert!(live.session_for(&alone_channel).await.unwrap().is_none(), "its lone session ended");
        assert_eq!(live.read_many(&[alone], T0 + TTL).await.unwrap(), vec![None]);
        let kept = live.session_for(&shared_channel).await.unwrap().map(|s| s.overlay);
        assert_eq!(kept, Some(shared), "the session another instance holds stays");
        assert_eq!(live.expired_instances(T0 + TTL).await.unwrap(), Vec::<String>::new(), "forgotten");
        assert_eq!(release_crashed(&live, T0 + TTL + 10_000).await.unwrap(), vec![], "nothing twice");
        // Only `alive`'s lease is left on the shared session.
        assert!(live.release(shared, &shared_channel, "alive", T0 + TTL + 1).await.unwrap());
    }

    #[tokio::test]
    async fn an_instance_that_beats_again_is_not_forgotten_and_a_sweep_without_crashes_changes_nothing() {
        let live = MemoryLiveStore::new(VoteLimits::default());
        let (_, channel) = hold(&live, "slow", "1003", T0).await;
        live.heartbeat("slow", TTL, T0).await.unwrap();
        assert_eq!(release_crashed(&live, T0 + 1_000).await.unwrap(), vec![]);
        assert!(live.session_for(&channel).await.unwrap().is_some());

        // Its heartbeat ended and it comes back between the listing and the
        // drop: the heartbeat stays (its next renewal re-activates sessions).
        live.heartbeat("slow", TTL, T0 + TTL + 5).await.unwrap();
        assert_eq!(live.drop_instance("slow", T0 + TTL + 10).await.unwrap(), vec![channel]);
        assert_eq!(live.expired_instances(T0 + 2 * TTL + 5).await.unwrap(), vec!["slow".to_owned()]);
    }
}
