//! Reconciliation as a pure function: from one snapshot of Twitch's
//! subscriptions, our records, our streamers and the channels with an
//! active session, [`plan`] decides what to keep, delete, create and forget.
//! Nothing here does I/O; `reconcile.rs` takes the snapshot and applies the
//! plan.
//!
//! The rules:
//! - a channel is *wanted* while its session is active and its streamer's
//!   authorization is intact, except its chat while a record says Twitch
//!   revoked that for a blocking reason (twitch-protocol.md §5.8);
//! - of the subscriptions exactly as we make them (our conduit, our
//!   condition, enabled), one per wanted channel and type is kept — the one
//!   we hold a record of, else the oldest — and recorded if we hold no
//!   `enabled` record of it; the others are duplicates;
//! - a channel subscription on our conduit that is not wanted is an orphan,
//!   and so is one whose condition we would not make; one that is not
//!   enabled is `not_enabled`; one on another conduit is a duplicate if its
//!   channel and type are wanted here, else an orphan;
//! - a wanted subscription Twitch lacks is missing, and created;
//! - a record of our conduit's subscription that Twitch no longer has
//!   enabled is stale and forgotten — unless it records a blocking
//!   revocation: that is why the chat is not subscribed, and what the
//!   dashboard shows;
//! - a blocking revocation Twitch lists counts as much as one recorded: the
//!   list may show it before the revocation message has been handled, so
//!   the record takes Twitch's status instead of being forgotten (and the
//!   chat is not made again);
//! - with alarms (webhook transport), exactly one working subscription of
//!   each app-wide alarm.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::alarms::{AlarmType, is_our_alarm};
use super::channels::ChannelType;
use crate::domain::{BroadcasterId, StreamerId};
use crate::store::{Streamer, SubscriptionRecord};
use crate::twitch::client::Subscription;
use crate::twitch::status::SubscriptionStatus;

/// Why a subscription or a record changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Repair {
    /// A wanted subscription Twitch does not have: created.
    Missing,
    /// Another subscription of a wanted channel and type: deleted.
    Duplicate,
    /// A subscription nothing wants: deleted.
    Orphan,
    /// A subscription of ours that Twitch no longer delivers: deleted.
    NotEnabled,
    /// A record of a subscription Twitch no longer has enabled: forgotten.
    StaleRecord,
}

impl Repair {
    pub const ALL: [Repair; 5] =
        [Repair::Missing, Repair::Duplicate, Repair::Orphan, Repair::NotEnabled, Repair::StaleRecord];

    /// The `kind` label of `chatpulse_eventsub_repairs_total`.
    pub fn label(self) -> &'static str {
        match self {
            Repair::Missing => "missing",
            Repair::Duplicate => "duplicate",
            Repair::Orphan => "orphan",
            Repair::NotEnabled => "not_enabled",
            Repair::StaleRecord => "stale_record",
        }
    }
}

/// What one reconciliation looks at.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// Every subscription of our client on Twitch, oldest first.
    pub twitch: &'a [Subscription],
    pub records: &'a [SubscriptionRecord],
    pub streamers: &'a [Streamer],
    /// The channels with an active session.
    pub active: &'a HashSet<BroadcasterId>,
}

/// What makes a subscription ours.
#[derive(Debug, Clone, Copy)]
pub struct Ours<'a> {
    pub conduit: &'a str,
    /// The user in our chat subscriptions' condition.
    pub bot_user_id: &'a str,
    pub client_id: &'a str,
    /// Where the app-wide alarms deliver; `None`: no alarms (WebSocket
    /// transport: there is no public callback).
    pub alarm_callback: Option<&'a str>,
}

/// A channel subscription to record: one kept, or one to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub streamer: Option<StreamerId>,
    pub broadcaster: BroadcasterId,
    pub kind: ChannelType,
    /// Other records of the same channel and type: replaced by this one.
    pub replaces: Vec<String>,
}

/// A subscription to delete on Twitch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub id: String,
    pub repair: Repair,
    /// Its record goes too once Twitch confirms. `false` when there is none,
    /// when it is forgotten as stale anyway, or when it records a blocking
    /// revocation.
    pub forget: bool,
}

/// What reconciliation changes, in the order it is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Wanted subscriptions Twitch has, that stay.
    pub kept: u64,
    /// Kept channel subscriptions without an `enabled` record: recorded.
    pub adopt: Vec<(String, Wanted)>,
    pub delete: Vec<Deletion>,
    /// [`Repair::Missing`] channel subscriptions.
    pub create: Vec<Wanted>,
    /// [`Repair::StaleRecord`]s.
    pub forget: Vec<String>,
    /// Records of subscriptions Twitch lists as revoked for a blocking
    /// reason that do not say so yet: (subscription id, Twitch's status).
    pub block: Vec<(String, String)>,
    /// Channels whose subscriptions go as orphans for want of a session: a
    /// session may have started since the snapshot, so the live store is
    /// asked again after the deletions.
    pub recheck: Vec<(Option<StreamerId>, BroadcasterId)>,
    /// [`Repair::Missing`] alarms.
    pub create_alarms: Vec<AlarmType>,
}

impl Plan {
    /// Nothing to change: every wanted subscription is kept as it is.
    pub fn is_empty(&self) -> bool {
        let Plan { kept: _, adopt, delete, create, forget, block, recheck, create_alarms } = self;
        adopt.is_empty()
            && delete.is_empty()
            && create.is_empty()
            && forget.is_empty()
            && block.is_empty()
            && recheck.is_empty()
            && create_alarms.is_empty()
    }
}

/// Decides what reconciliation changes; see the module's rules.
pub fn plan(snapshot: &Snapshot<'_>, ours: &Ours<'_>) -> Plan {
    let facts = Facts::new(snapshot, ours);
    let sorted = Sorted::new(snapshot.twitch, ours);
    let mut plan = Plan {
        forget: facts.stale.iter().map(|id| (*id).to_owned()).collect(),
        block: facts.newly_blocked(),
        ..Plan::default()
    };
    let kept = keep_or_drop(&facts, &sorted, &mut plan);
    drop_the_rest(&facts, &sorted, &mut plan);
    create_missing(&facts, &sorted, &mut plan);
    if ours.alarm_callback.is_some() {
        plan_alarms(&facts, &mut plan);
    }
    fill_replaces(&facts, &kept, &mut plan);
    plan
}

/// The snapshot, indexed.
struct Facts<'a> {
    snapshot: &'a Snapshot<'a>,
    ours: &'a Ours<'a>,
    streamers: BTreeMap<&'a BroadcasterId, &'a Streamer>,
    records: HashMap<&'a str, &'a SubscriptionRecord>,
    /// Channels whose chat a record, or Twitch's list, says was revoked for
    /// a blocking reason.
    blocked: HashSet<&'a BroadcasterId>,
    /// Our conduit's subscriptions Twitch lists as revoked for a blocking
    /// reason, with that status.
    listed_blocking: HashMap<&'a str, &'a str>,
    /// Records forgotten as stale.
    stale: BTreeSet<&'a str>,
}

impl<'a> Facts<'a> {
    fn new(snapshot: &'a Snapshot<'a>, ours: &'a Ours<'a>) -> Self {
        let listed_blocking: HashMap<&str, &str> = snapshot
            .twitch
            .iter()
            .filter(|s| s.on_conduit(ours.conduit) && s.status.is_blocking())
            .map(|s| (s.id.as_str(), s.status.as_str()))
            .collect();
        let blocking = |r: &SubscriptionRecord| {
            SubscriptionStatus::from(r.status.as_str()).is_blocking()
                || listed_blocking.contains_key(r.subscription_id.as_str())
        };
        let chat = ChannelType::ChatMessage.as_str();
        let enabled_on_twitch: HashSet<&str> =
            snapshot.twitch.iter().filter(|s| s.status.is_enabled()).map(|s| s.id.as_str()).collect();
        let stale = snapshot.records.iter().filter(|r| {
            r.conduit_id.as_deref() == Some(ours.conduit)
                && !blocking(r)
                && !enabled_on_twitch.contains(r.subscription_id.as_str())
        });
        let stale = stale.map(|r| r.subscription_id.as_str()).collect();
        let blocked = snapshot
            .records
            .iter()
            .filter(|r| r.subscription_type == chat && blocking(r))
            .filter_map(|r| r.broadcaster.as_ref())
            .collect();
        Self {
            snapshot,
            ours,
            streamers: snapshot.streamers.iter().map(|s| (&s.twitch_user_id, s)).collect(),
            records: snapshot.records.iter().map(|r| (r.subscription_id.as_str(), r)).collect(),
            blocked,
            listed_blocking,
            stale,
        }
    }

    /// A record's own status or Twitch's listing says it was revoked for a
    /// blocking reason.
    fn is_blocking(&self, record: &SubscriptionRecord) -> bool {
        SubscriptionStatus::from(record.status.as_str()).is_blocking()
            || self.listed_blocking.contains_key(record.subscription_id.as_str())
    }

    /// Records that take Twitch's blocking status, oldest record first.
    fn newly_blocked(&self) -> Vec<(String, String)> {
        let records = self.snapshot.records.iter();
        let unmarked = records.filter(|r| !SubscriptionStatus::from(r.status.as_str()).is_blocking());
        unmarked
            .filter_map(|r| self.listed_blocking.get(r.subscription_id.as_str()).map(|status| (r, *status)))
            .map(|(r, status)| (r.subscription_id.clone(), status.to_owned()))
            .collect()
    }

    fn wanted(&self, broadcaster: &BroadcasterId, kind: ChannelType) -> bool {
        self.snapshot.active.contains(broadcaster)
            && self.streamers.get(broadcaster).is_some_and(|s| !s.needs_relogin)
            && !(kind == ChannelType::ChatMessage && self.blocked.contains(broadcaster))
    }

    fn owner(&self, broadcaster: &BroadcasterId) -> Option<StreamerId> {
        self.streamers.get(broadcaster).map(|s| s.id)
    }

    fn wanted_sub(&self, broadcaster: &BroadcasterId, kind: ChannelType) -> Wanted {
        Wanted { streamer: self.owner(broadcaster), broadcaster: broadcaster.clone(), kind, replaces: Vec::new() }
    }

    fn deletion(&self, sub: &Subscription, repair: Repair) -> Deletion {
        let record = self.records.get(sub.id.as_str());
        let forget = record.is_some_and(|r| !self.is_blocking(r) && !self.stale.contains(&sub.id.as_str()));
        Deletion { id: sub.id.clone(), repair, forget }
    }

    /// A session may have started since the snapshot, and the streamer's
    /// grant allows subscribing.
    fn may_have_started(&self, broadcaster: &BroadcasterId) -> bool {
        !self.snapshot.active.contains(broadcaster) && !self.streamers.get(broadcaster).is_some_and(|s| s.needs_relogin)
    }
}

/// Twitch's channel subscriptions, sorted.
#[derive(Default)]
struct Sorted<'a> {
    /// Exactly as we make them (our conduit, our condition, enabled), by
    /// channel and type, oldest first.
    exact: BTreeMap<(BroadcasterId, ChannelType), Vec<&'a Subscription>>,
    /// On our conduit, not enabled.
    dead: Vec<&'a Subscription>,
    /// Enabled on our conduit with a condition we would not make (no key),
    /// and whatever is on another conduit (with the channel and type it
    /// names, if any).
    foreign: Vec<(Option<(BroadcasterId, ChannelType)>, &'a Subscription)>,
}

impl<'a> Sorted<'a> {
    fn new(twitch: &'a [Subscription], ours: &Ours<'_>) -> Self {
        let mut sorted = Sorted::default();
        for sub in twitch {
            let Some(kind) = ChannelType::parse(&sub.kind) else { continue };
            let broadcaster = sub.condition_str("broadcaster_user_id").and_then(|b| BroadcasterId::parse(b).ok());
            if !sub.on_conduit(ours.conduit) {
                // Plain webhooks and WebSockets of these types are not ours.
                if sub.transport.method == "conduit" {
                    sorted.foreign.push((broadcaster.map(|b| (b, kind)), sub));
                }
                continue;
            }
            match broadcaster {
                _ if !sub.status.is_enabled() => sorted.dead.push(sub),
                Some(b) if sub.condition == kind.condition(&b, ours.bot_user_id) => {
                    sorted.exact.entry((b, kind)).or_default().push(sub);
                }
                _ => sorted.foreign.push((None, sub)),
            }
        }
        sorted
    }
}

/// One subscription per wanted channel and type stays; the rest go.
/// Returns the ids of those that stay.
fn keep_or_drop<'a>(facts: &Facts<'_>, sorted: &Sorted<'a>, plan: &mut Plan) -> HashSet<&'a str> {
    let (mut recheck, mut staying) = (BTreeSet::new(), HashSet::new());
    for ((broadcaster, kind), subs) in &sorted.exact {
        if !facts.wanted(broadcaster, *kind) {
            plan.delete.extend(subs.iter().map(|s| facts.deletion(s, Repair::Orphan)));
            if facts.may_have_started(broadcaster) {
                recheck.insert(broadcaster);
            }
            continue;
        }
        let Some(kept) = subs.iter().find(|s| facts.records.contains_key(s.id.as_str())).or(subs.first()) else {
            continue;
        };
        plan.kept += 1;
        staying.insert(kept.id.as_str());
        let recorded = |r: &&SubscriptionRecord| SubscriptionStatus::from(r.status.as_str()).is_enabled();
        if !facts.records.get(kept.id.as_str()).is_some_and(recorded) {
            plan.adopt.push((kept.id.clone(), facts.wanted_sub(broadcaster, *kind)));
        }
        let others = subs.iter().filter(|s| s.id != kept.id);
        plan.delete.extend(others.map(|s| facts.deletion(s, Repair::Duplicate)));
    }
    plan.recheck = recheck.into_iter().map(|b| (facts.owner(b), b.clone())).collect();
    staying
}

/// Dead subscriptions on our conduit, and whatever is on another conduit.
fn drop_the_rest(facts: &Facts<'_>, sorted: &Sorted<'_>, plan: &mut Plan) {
    plan.delete.extend(sorted.dead.iter().map(|s| facts.deletion(s, Repair::NotEnabled)));
    for (key, sub) in &sorted.foreign {
        let wanted_here = key.as_ref().is_some_and(|(b, kind)| facts.wanted(b, *kind));
        plan.delete.push(facts.deletion(sub, if wanted_here { Repair::Duplicate } else { Repair::Orphan }));
    }
}

/// Wanted channel subscriptions Twitch does not have.
fn create_missing(facts: &Facts<'_>, sorted: &Sorted<'_>, plan: &mut Plan) {
    for broadcaster in facts.streamers.keys() {
        for kind in ChannelType::ALL {
            if facts.wanted(broadcaster, kind) && !sorted.exact.contains_key(&((*broadcaster).clone(), kind)) {
                plan.create.push(facts.wanted_sub(broadcaster, kind));
            }
        }
    }
}

/// Exactly one working subscription of each app-wide alarm: ours (our
/// callback, client and conduit), enabled or still being verified.
fn plan_alarms(facts: &Facts<'_>, plan: &mut Plan) {
    for kind in AlarmType::ALL {
        let of_kind = facts.snapshot.twitch.iter().filter(|s| s.kind == kind.as_str());
        let (ours, others): (Vec<&Subscription>, Vec<&Subscription>) =
            of_kind.partition(|s| is_our_alarm(s, facts.ours));
        let (working, dead): (Vec<&Subscription>, Vec<&Subscription>) = ours
            .into_iter()
            .partition(|s| s.status.is_enabled() || s.status == SubscriptionStatus::WebhookCallbackVerificationPending);
        plan.delete.extend(others.iter().map(|s| facts.deletion(s, Repair::Orphan)));
        plan.delete.extend(dead.iter().map(|s| facts.deletion(s, Repair::NotEnabled)));
        plan.delete.extend(working.iter().skip(1).map(|s| facts.deletion(s, Repair::Duplicate)));
        if working.is_empty() {
            plan.create_alarms.push(kind);
        } else {
            plan.kept += 1;
        }
    }
}

/// The records a kept or created subscription replaces: the other records
/// of its channel and type that nothing else forgets, except records of
/// subscriptions that stay.
fn fill_replaces(facts: &Facts<'_>, staying: &HashSet<&str>, plan: &mut Plan) {
    let mut gone: HashSet<&str> = facts.stale.iter().copied().chain(staying.iter().copied()).collect();
    gone.extend(plan.delete.iter().filter(|d| d.forget).map(|d| d.id.as_str()));
    let replaced = |wanted: &Wanted, own: Option<&str>| -> Vec<String> {
        let same = facts.snapshot.records.iter().filter(|r| {
            r.broadcaster.as_ref() == Some(&wanted.broadcaster) && r.subscription_type == wanted.kind.as_str()
        });
        same.map(|r| r.subscription_id.as_str())
            .filter(|id| Some(*id) != own && !gone.contains(id))
            .map(str::to_owned)
            .collect()
    };
    let adopt: Vec<Vec<String>> = plan.adopt.iter().map(|(id, w)| replaced(w, Some(id))).collect();
    let create: Vec<Vec<String>> = plan.create.iter().map(|w| replaced(w, None)).collect();
    plan.adopt.iter_mut().zip(adopt).for_each(|((_, w), r)| w.replaces = r);
    plan.create.iter_mut().zip(create).for_each(|(w, r)| w.replaces = r);
}

#[cfg(test)]
mod tests;
