//! Reconciliation with Twitch: what Twitch has, what we recorded and which
//! channels want subscriptions, brought in line.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::StreamExt;

use super::channels::channel_condition;
use super::{BLOCKING_REASONS, CHANNEL_TYPES, ENABLED, EventSub};
use crate::config::EventSubTransport;
use crate::domain::BroadcasterId;
use crate::store::SubscriptionRecord;
use crate::twitch::client::{Subscription, Totals, TwitchError};
use crate::twitch::eventsub::CHANNEL_CHAT_MESSAGE;

/// What one reconciliation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repairs {
    pub kept: u64,
    pub missing: u64,
    pub duplicate: u64,
    pub orphan: u64,
    pub not_enabled: u64,
    pub stale_record: u64,
    pub failed: u64,
}

impl EventSub {
    /// Compares Twitch's subscriptions (all pages) with the active sessions
    /// and our records: keeps one enabled subscription per wanted channel and
    /// type, creates what is missing, deletes duplicates, orphans and dead
    /// ones, forgets stale records, and exports Twitch's totals.
    pub async fn reconcile(&self) -> Result<Repairs, TwitchError> {
        let result = self.reconcile_once().await;
        match &result {
            Ok(r) => {
                self.metrics
                    .eventsub_reconciliations
                    .get_or_create(&crate::metrics::OutcomeLabels { outcome: "ok" })
                    .inc();
                for (kind, n) in [
                    ("missing", r.missing),
                    ("duplicate", r.duplicate),
                    ("orphan", r.orphan),
                    ("not_enabled", r.not_enabled),
                    ("stale_record", r.stale_record),
                ] {
                    self.metrics.repaired(kind, n);
                }
                let changed = r.missing + r.duplicate + r.orphan + r.not_enabled + r.stale_record;
                if changed > 0 || r.failed > 0 {
                    tracing::warn!(
                        kept = r.kept,
                        missing = r.missing,
                        duplicate = r.duplicate,
                        orphan = r.orphan,
                        not_enabled = r.not_enabled,
                        stale_record = r.stale_record,
                        failed = r.failed,
                        "EventSub reconciled with repairs"
                    );
                } else {
                    tracing::info!(kept = r.kept, "EventSub reconciled; nothing to repair");
                }
            }
            Err(e) => {
                self.metrics
                    .eventsub_reconciliations
                    .get_or_create(&crate::metrics::OutcomeLabels { outcome: "failed" })
                    .inc();
                tracing::warn!(error = %e, "EventSub reconciliation failed; trying again next time");
            }
        }
        result
    }

    pub(super) async fn reconcile_once(&self) -> Result<Repairs, TwitchError> {
        let conduit = self.conduit_id().ok_or_else(|| TwitchError::Transport("no conduit yet".into()))?;
        let list = self.client.all_subscriptions().await?;
        self.export_totals(Totals {
            total: list.total,
            total_cost: list.total_cost,
            max_total_cost: list.max_total_cost,
        });
        let records = self.repo.subscriptions().await.map_err(|e| TwitchError::Transport(e.to_string()))?;
        let streamers = self.repo.list_streamers().await.map_err(|e| TwitchError::Transport(e.to_string()))?;
        let mut repairs = Repairs::default();

        // Channel subscriptions exactly as we make them (our conduit, our
        // condition, enabled), by channel and type. Everything else of a
        // channel type that is ours to clean: dead ones on our conduit, and
        // leftovers on other conduits (a deployment uses one conduit).
        let mut on_twitch: BTreeMap<(BroadcasterId, &'static str), Vec<&Subscription>> = BTreeMap::new();
        let mut dead: Vec<&Subscription> = Vec::new();
        let mut elsewhere: Vec<(Option<(BroadcasterId, &'static str)>, &Subscription)> = Vec::new();
        for sub in &list.subscriptions {
            let Some(kind) = CHANNEL_TYPES.iter().copied().find(|k| *k == sub.kind) else { continue };
            let broadcaster = sub.condition_str("broadcaster_user_id").and_then(|b| BroadcasterId::parse(b).ok());
            let exact = broadcaster.as_ref().is_some_and(|b| {
                let wanted = channel_condition(kind, b, &self.settings.bot_user_id);
                wanted.as_object().is_some_and(|w| *w == sub.condition)
            });
            if !sub.on_conduit(&conduit) {
                if sub.transport.method == "conduit" {
                    elsewhere.push((broadcaster.map(|b| (b, kind)), sub));
                }
                continue;
            }
            match broadcaster {
                _ if sub.status != ENABLED => dead.push(sub),
                Some(b) if exact => on_twitch.entry((b, kind)).or_default().push(sub),
                // Enabled, but not a condition we would make: not ours to keep.
                _ => elsewhere.push((None, sub)),
            }
        }

        // Which channels want subscriptions: streamers with an active session
        // whose authorization is intact.
        let known: HashMap<&BroadcasterId, &crate::store::Streamer> =
            streamers.iter().map(|s| (&s.twitch_user_id, s)).collect();
        let mut candidates: HashSet<BroadcasterId> = streamers.iter().map(|s| s.twitch_user_id.clone()).collect();
        candidates.extend(on_twitch.keys().map(|(b, _)| b.clone()));
        let live = &self.live;
        let active: HashSet<BroadcasterId> = futures_util::stream::iter(candidates)
            .map(|b| async move {
                let active = matches!(live.session_for(&b).await, Ok(Some(_)));
                (b, active)
            })
            .buffer_unordered(16)
            .filter_map(|(b, active)| async move { active.then_some(b) })
            .collect()
            .await;
        let blocked: HashSet<&BroadcasterId> = records
            .iter()
            .filter(|r| r.subscription_type == CHANNEL_CHAT_MESSAGE && BLOCKING_REASONS.contains(&r.status.as_str()))
            .filter_map(|r| r.broadcaster.as_ref())
            .collect();
        let wanted = |b: &BroadcasterId, kind: &str| {
            active.contains(b)
                && known.get(b).is_some_and(|s| !s.needs_relogin)
                && !(kind == CHANNEL_CHAT_MESSAGE && blocked.contains(b))
        };

        let mut keep: HashSet<String> = HashSet::new();
        let mut remove: Vec<(&'static str, String)> = Vec::new();
        let mut orphaned: HashSet<BroadcasterId> = HashSet::new();
        for ((b, kind), subs) in &on_twitch {
            if wanted(b, kind) {
                // Keep the one we have a record of, else the oldest.
                let kept = subs.iter().find(|s| records.iter().any(|r| r.subscription_id == s.id)).unwrap_or(&subs[0]);
                keep.insert(kept.id.clone());
                repairs.kept += 1;
                let owner = known.get(b).map(|s| s.id);
                let same: Vec<SubscriptionRecord> =
                    records.iter().filter(|r| r.broadcaster.as_ref() == Some(b)).cloned().collect();
                if !records.iter().any(|r| r.subscription_id == kept.id && r.status == ENABLED) {
                    self.record(owner, Some(b), kind, &kept.id, Some(&conduit), ENABLED, &same).await;
                }
                for s in subs.iter().filter(|s| s.id != kept.id) {
                    remove.push(("duplicate", s.id.clone()));
                }
            } else {
                for s in subs {
                    remove.push(("orphan", s.id.clone()));
                }
                orphaned.insert(b.clone());
            }
        }
        // Revoked for a reason that forbids subscribing again (the bot was
        // banned): gone from Twitch's list, but the record stays.
        let blocking: HashSet<&str> =
            dead.iter().filter(|s| BLOCKING_REASONS.contains(&s.status.as_str())).map(|s| s.id.as_str()).collect();
        for s in &dead {
            remove.push(("not_enabled", s.id.clone()));
        }
        for (key, s) in elsewhere {
            let kept_here = key.is_some_and(|(b, kind)| wanted(&b, kind));
            remove.push((if kept_here { "duplicate" } else { "orphan" }, s.id.clone()));
        }
        for (kind, id) in remove {
            if self.delete_on_twitch(&id, !blocking.contains(id.as_str())).await {
                match kind {
                    "duplicate" => repairs.duplicate += 1,
                    "orphan" => repairs.orphan += 1,
                    _ => repairs.not_enabled += 1,
                }
            } else {
                repairs.failed += 1;
            }
        }

        // Missing subscriptions of wanted channels.
        for b in active.iter().filter(|b| known.contains_key(b)) {
            for kind in CHANNEL_TYPES {
                if !wanted(b, kind) || on_twitch.contains_key(&(b.clone(), kind)) {
                    continue;
                }
                let owner = known.get(b).map(|s| s.id);
                let same: Vec<SubscriptionRecord> =
                    records.iter().filter(|r| r.broadcaster.as_ref() == Some(b)).cloned().collect();
                match self.ensure_one(&conduit, owner, b, kind, &same).await {
                    Ok(id) => {
                        keep.insert(id);
                        repairs.missing += 1;
                    }
                    Err(e) => {
                        repairs.failed += 1;
                        tracing::warn!(broadcaster = %b, kind, error = %e, "cannot create a missing subscription");
                    }
                }
            }
        }

        // Records of our conduit's subscriptions that Twitch no longer has
        // enabled (kept: the reasons the dashboard shows).
        for r in records.iter().filter(|r| r.conduit_id.as_deref() == Some(conduit.as_str())) {
            if keep.contains(&r.subscription_id) || BLOCKING_REASONS.contains(&r.status.as_str()) {
                continue;
            }
            let listed = list.subscriptions.iter().any(|s| s.id == r.subscription_id && s.status == ENABLED);
            if !listed {
                match self.repo.delete_subscription(&r.subscription_id).await {
                    Ok(_) => repairs.stale_record += 1,
                    Err(e) => {
                        self.metrics.durable_error("delete_subscription");
                        tracing::warn!(error = %e, "cannot forget a stale subscription record");
                    }
                }
            }
        }

        // A session may have started on some instance since the snapshot,
        // and adopted what was just deleted as an orphan: subscribe it again.
        for b in orphaned {
            if known.get(&b).is_some_and(|s| s.needs_relogin) {
                continue; // their grant is gone: nothing to subscribe with
            }
            if matches!(self.live.session_for(&b).await, Ok(Some(_))) {
                let owner = known.get(&b).map(|s| s.id);
                if self.ensure_channel(owner, &b).await.is_ok() {
                    repairs.missing += 1;
                }
            }
        }

        if self.settings.transport == EventSubTransport::Webhook {
            self.reconcile_alarms(&conduit, &list.subscriptions, &mut repairs).await;
        }
        Ok(repairs)
    }
}
