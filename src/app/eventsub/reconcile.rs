//! Reconciliation with Twitch, the leader's job at start-up and every
//! interval: take a snapshot (our records, Twitch's subscriptions, our
//! streamers, the channels with an active session), [`plan`] what to change,
//! and apply the plan with Helix calls and record writes, counting what each
//! step did.

use std::collections::{BTreeMap, HashSet};

use futures_util::StreamExt;

use super::EventSub;
use super::channels::channel_record;
use super::plan::{Plan, Repair, Snapshot, Wanted, plan};
use crate::domain::BroadcasterId;
use crate::metrics::OutcomeLabels;
use crate::store::Streamer;
use crate::twitch::client::Totals;

/// What one reconciliation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Wanted subscriptions Twitch had, kept as they were.
    pub kept: u64,
    /// The repairs that succeeded, by kind.
    pub done: BTreeMap<Repair, u64>,
    /// Repairs tried that failed; the next reconciliation tries again.
    pub failed: u64,
}

impl Repairs {
    /// How many repairs of this kind succeeded.
    pub fn of(&self, repair: Repair) -> u64 {
        self.done.get(&repair).copied().unwrap_or(0)
    }

    fn count(&mut self, repair: Repair, succeeded: bool) {
        if succeeded {
            *self.done.entry(repair).or_default() += 1;
        } else {
            self.failed += 1;
        }
    }
}

impl EventSub {
    /// Brings Twitch and our records in line with the active sessions (see
    /// `plan.rs` for the rules) and exports Twitch's totals.
    pub async fn reconcile(&self) -> anyhow::Result<Repairs> {
        let result = self.reconcile_once().await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.metrics.eventsub_reconciliations.get_or_create(&OutcomeLabels { outcome }).inc();
        match &result {
            Ok(r) => self.report(r),
            Err(e) => tracing::warn!(error = %e, "EventSub reconciliation failed; trying again next time"),
        }
        result
    }

    async fn reconcile_once(&self) -> anyhow::Result<Repairs> {
        let conduit = self.conduit_id().ok_or_else(|| anyhow::anyhow!("no conduit yet"))?;
        // Records before Twitch's list: a subscription made in between is
        // then on the list without a record (adopted), never a record
        // without a listed subscription (which would look stale).
        let records = self.repo.subscriptions().await?;
        let list = self.client.all_subscriptions().await?;
        self.export_totals(Totals {
            total: list.total,
            total_cost: list.total_cost,
            max_total_cost: list.max_total_cost,
        });
        let streamers = self.repo.list_streamers().await?;
        let active = self.active_channels(&streamers).await;
        let snapshot =
            Snapshot { twitch: &list.subscriptions, records: &records, streamers: &streamers, active: &active };
        let plan = plan(&snapshot, &self.ours(&conduit));
        Ok(self.apply(&conduit, plan).await)
    }

    /// The streamers' channels with an active session (an unreadable one
    /// counts as inactive).
    async fn active_channels(&self, streamers: &[Streamer]) -> HashSet<BroadcasterId> {
        let live = &self.live;
        // Owned ids: a stream over borrowed ones would not be `Send` here.
        let channels: Vec<BroadcasterId> = streamers.iter().map(|s| s.twitch_user_id.clone()).collect();
        futures_util::stream::iter(channels)
            .map(|b| async move { matches!(live.session_for(&b).await, Ok(Some(_))).then_some(b) })
            .buffer_unordered(16)
            .filter_map(|active| async move { active })
            .collect()
            .await
    }

    /// Carries the plan out, in its order; counts what each step did.
    async fn apply(&self, conduit: &str, plan: Plan) -> Repairs {
        let mut repairs = Repairs { kept: plan.kept, ..Repairs::default() };
        if plan.is_empty() {
            return repairs;
        }
        for (id, wanted) in &plan.adopt {
            self.record(channel_record(wanted, id, conduit), &wanted.replaces).await;
        }
        for (id, status) in &plan.block {
            if let Err(e) = self.repo.set_subscription_status(id, status).await {
                self.metrics.durable_error("set_subscription_status");
                tracing::warn!(error = %e, "cannot record a blocking revocation Twitch lists");
            }
        }
        for deletion in &plan.delete {
            let deleted = self.delete_on_twitch(&deletion.id, deletion.forget).await;
            repairs.count(deletion.repair, deleted);
        }
        let made = self.create_missing(conduit, &plan.create, &mut repairs).await;
        for id in plan.forget.iter().filter(|id| !made.contains(*id)) {
            match self.repo.delete_subscription(id).await {
                Ok(_) => repairs.count(Repair::StaleRecord, true),
                Err(e) => {
                    self.metrics.durable_error("delete_subscription");
                    tracing::warn!(error = %e, "cannot forget a stale subscription record");
                }
            }
        }
        for (streamer, broadcaster) in &plan.recheck {
            if matches!(self.live.session_for(broadcaster).await, Ok(Some(_)))
                && self.ensure_channel(*streamer, broadcaster).await.is_ok()
            {
                repairs.count(Repair::Missing, true);
            }
        }
        for kind in &plan.create_alarms {
            repairs.count(Repair::Missing, self.ensure_alarm(conduit, *kind).await);
        }
        repairs
    }

    /// Creates (or adopts) the missing channel subscriptions; returns their ids.
    async fn create_missing(&self, conduit: &str, create: &[Wanted], repairs: &mut Repairs) -> HashSet<String> {
        let mut made = HashSet::new();
        for wanted in create {
            match self.ensure_one(conduit, wanted).await {
                Ok(id) => {
                    made.insert(id);
                    repairs.count(Repair::Missing, true);
                }
                Err(e) => {
                    repairs.count(Repair::Missing, false);
                    let (broadcaster, kind) = (&wanted.broadcaster, wanted.kind.as_str());
                    tracing::warn!(%broadcaster, kind, error = %e, "cannot create a missing subscription");
                }
            }
        }
        made
    }

    /// Metrics and a log line for one reconciliation.
    fn report(&self, r: &Repairs) {
        for repair in Repair::ALL {
            self.metrics.repaired(repair.label(), r.of(repair));
        }
        if r.done.values().sum::<u64>() > 0 || r.failed > 0 {
            tracing::warn!(
                kept = r.kept,
                missing = r.of(Repair::Missing),
                duplicate = r.of(Repair::Duplicate),
                orphan = r.of(Repair::Orphan),
                not_enabled = r.of(Repair::NotEnabled),
                stale_record = r.of(Repair::StaleRecord),
                failed = r.failed,
                "EventSub reconciled with repairs"
            );
        } else {
            tracing::info!(kept = r.kept, "EventSub reconciled; nothing to repair");
        }
    }
}
