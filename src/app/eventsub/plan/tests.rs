//! The reconciliation rules, without Twitch: examples first, then
//! properties over generated snapshots, checked by applying the plan the way
//! `reconcile.rs` does when every call succeeds.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::*;
use crate::app::eventsub::{BLOCKING_REASONS, CHANNEL_TYPES};
use crate::domain::OverlayId;
use crate::twitch::client::SubscriptionTransport;

const CONDUIT: &str = "our-conduit";
const OLD_CONDUIT: &str = "old-conduit";
const BOT: &str = "9000";
const CLIENT: &str = "our-client";
const CALLBACK: &str = "https://chatpulse.test/webhooks/eventsub";

const CHAT: ChannelType = ChannelType::ChatMessage;
const ONLINE: ChannelType = ChannelType::StreamOnline;
const OFFLINE: ChannelType = ChannelType::StreamOffline;

fn ours(alarms: bool) -> Ours<'static> {
    Ours { conduit: CONDUIT, bot_user_id: BOT, client_id: CLIENT, alarm_callback: alarms.then_some(CALLBACK) }
}

fn channel(b: &str) -> BroadcasterId {
    BroadcasterId::parse(b).unwrap()
}

fn streamer(b: &str, needs_relogin: bool) -> Streamer {
    let now = OffsetDateTime::UNIX_EPOCH;
    Streamer {
        id: StreamerId::from_uuid(uuid::Uuid::from_u128(b.parse().unwrap())),
        overlay_id: OverlayId::random(),
        twitch_user_id: channel(b),
        login: format!("s{b}"),
        display_name: format!("S{b}"),
        needs_relogin,
        created_at: now,
        updated_at: now,
    }
}

/// A subscription on `conduit` (or a plain webhook when `None`).
fn sub_with(id: &str, kind: &str, condition: Map<String, Value>, conduit: Option<&str>, status: &str) -> Subscription {
    let transport = match conduit {
        Some(c) => SubscriptionTransport { method: "conduit".into(), conduit_id: Some(c.into()), callback: None },
        None => SubscriptionTransport { method: "webhook".into(), conduit_id: None, callback: Some(CALLBACK.into()) },
    };
    Subscription { id: id.into(), status: status.into(), kind: kind.into(), condition, transport, cost: 0 }
}

/// A channel subscription exactly as we make it, on `conduit`.
fn sub(id: &str, kind: ChannelType, b: &str, conduit: &str, status: &str) -> Subscription {
    sub_with(id, kind.as_str(), kind.condition(&channel(b), BOT), Some(conduit), status)
}

fn alarm(id: &str, kind: AlarmType, callback: &str, status: &str) -> Subscription {
    let condition = match kind {
        AlarmType::AuthorizationRevoke => json!({ "client_id": CLIENT }),
        AlarmType::ShardDisabled => json!({ "client_id": CLIENT, "conduit_id": CONDUIT }),
    };
    let transport =
        SubscriptionTransport { method: "webhook".into(), conduit_id: None, callback: Some(callback.into()) };
    let condition = condition.as_object().cloned().unwrap_or_default();
    Subscription { id: id.into(), status: status.into(), kind: kind.as_str().into(), condition, transport, cost: 0 }
}

fn record(id: &str, kind: ChannelType, b: &str, conduit: Option<&str>, status: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        streamer: None,
        broadcaster: Some(channel(b)),
        subscription_type: kind.as_str().into(),
        subscription_id: id.into(),
        conduit_id: conduit.map(str::to_owned),
        status: status.into(),
        created_at: OffsetDateTime::UNIX_EPOCH,
    }
}

/// A snapshot's parts, owned.
#[derive(Debug, Clone, Default)]
struct World {
    twitch: Vec<Subscription>,
    records: Vec<SubscriptionRecord>,
    streamers: Vec<Streamer>,
    active: HashSet<BroadcasterId>,
}

impl World {
    /// Streamers `b` with an active session and their grant intact.
    fn live(channels: &[&str]) -> Self {
        World {
            streamers: channels.iter().map(|b| streamer(b, false)).collect(),
            active: channels.iter().map(|b| channel(b)).collect(),
            ..World::default()
        }
    }

    fn plan(&self, ours: &Ours<'_>) -> Plan {
        let snapshot =
            Snapshot { twitch: &self.twitch, records: &self.records, streamers: &self.streamers, active: &self.active };
        plan(&snapshot, ours)
    }

    fn upsert(&mut self, record: SubscriptionRecord, replaces: &[String]) {
        let id = record.subscription_id.clone();
        self.records.retain(|r| r.subscription_id != id && !replaces.contains(&r.subscription_id));
        self.records.push(record);
    }

    /// What `apply` leaves when every call succeeds (and no session
    /// started meanwhile).
    fn apply(&mut self, plan: &Plan, ours: &Ours<'_>) {
        let new_record = |w: &Wanted, id: &str| SubscriptionRecord {
            streamer: w.streamer,
            conduit_id: Some(ours.conduit.to_owned()),
            ..record(id, w.kind, w.broadcaster.as_str(), None, "enabled")
        };
        for (id, w) in &plan.adopt {
            self.upsert(new_record(w, id), &w.replaces);
        }
        for (id, status) in &plan.block {
            self.records.iter_mut().filter(|r| r.subscription_id == *id).for_each(|r| r.status.clone_from(status));
        }
        for d in &plan.delete {
            self.twitch.retain(|s| s.id != d.id);
            if d.forget {
                self.records.retain(|r| r.subscription_id != d.id);
            }
        }
        for (n, w) in plan.create.iter().enumerate() {
            let id = format!("created-{n}");
            self.twitch.push(sub(&id, w.kind, w.broadcaster.as_str(), ours.conduit, "enabled"));
            self.upsert(new_record(w, &id), &w.replaces);
        }
        self.records.retain(|r| !plan.forget.contains(&r.subscription_id));
        for (n, kind) in plan.create_alarms.iter().enumerate() {
            self.twitch.push(alarm(&format!("alarm-{n}"), *kind, CALLBACK, "enabled"));
        }
    }

    /// The channels and types `plan` wants subscribed.
    fn wanted(&self) -> Vec<(BroadcasterId, ChannelType)> {
        // Blocked by a record's status, or by Twitch listing the record's
        // subscription on our conduit as revoked for a blocking reason.
        let listed_blocking = |id: &str| {
            self.twitch
                .iter()
                .any(|s| s.id == id && s.on_conduit(CONDUIT) && BLOCKING_REASONS.contains(&s.status.as_str()))
        };
        let blocked = |b: &BroadcasterId| {
            self.records.iter().any(|r| {
                r.broadcaster.as_ref() == Some(b)
                    && r.subscription_type == CHAT.as_str()
                    && (BLOCKING_REASONS.contains(&r.status.as_str()) || listed_blocking(&r.subscription_id))
            })
        };
        let intact = self.streamers.iter().filter(|s| !s.needs_relogin && self.active.contains(&s.twitch_user_id));
        let b: Vec<&BroadcasterId> = intact.map(|s| &s.twitch_user_id).collect();
        b.into_iter()
            .flat_map(|b| ChannelType::ALL.into_iter().map(move |kind| (b.clone(), kind)))
            .filter(|(b, kind)| *kind != CHAT || !blocked(b))
            .collect()
    }

    /// Our enabled subscriptions of one channel and type, exactly as we make them.
    fn exact(&self, b: &BroadcasterId, kind: ChannelType) -> Vec<&Subscription> {
        let condition = kind.condition(b, BOT);
        self.twitch
            .iter()
            .filter(|s| {
                s.kind == kind.as_str() && s.on_conduit(CONDUIT) && s.status.is_enabled() && s.condition == condition
            })
            .collect()
    }
}

fn ids(deletions: &[Deletion], repair: Repair) -> Vec<&str> {
    deletions.iter().filter(|d| d.repair == repair).map(|d| d.id.as_str()).collect()
}

// --- Examples -----------------------------------------------------------------

#[test]
fn a_wanted_channel_without_subscriptions_gets_its_three_types_created() {
    let world = World::live(&["101"]);

    let plan = world.plan(&ours(false));

    let created: Vec<ChannelType> = plan.create.iter().map(|w| w.kind).collect();
    assert_eq!(created, ChannelType::ALL);
    assert!(plan.create.iter().all(|w| w.broadcaster.as_str() == "101" && w.streamer == Some(world.streamers[0].id)));
    assert!(plan.delete.is_empty() && plan.adopt.is_empty() && plan.forget.is_empty());
}

#[test]
fn a_channel_with_its_three_subscriptions_and_their_records_needs_nothing() {
    let mut world = World::live(&["101"]);
    for (n, kind) in ChannelType::ALL.into_iter().enumerate() {
        world.twitch.push(sub(&format!("s{n}"), kind, "101", CONDUIT, "enabled"));
        world.records.push(record(&format!("s{n}"), kind, "101", Some(CONDUIT), "enabled"));
    }

    let plan = world.plan(&ours(false));

    assert!(plan.is_empty(), "{plan:#?}");
    assert_eq!(plan.kept, 3);
}

#[test]
fn of_two_subscriptions_of_one_channel_and_type_the_recorded_one_stays_and_the_other_is_a_duplicate() {
    let mut world = World::live(&["101"]);
    world.twitch.push(sub("older", ONLINE, "101", CONDUIT, "enabled"));
    world.twitch.push(sub("recorded", ONLINE, "101", CONDUIT, "enabled"));
    world.records.push(record("recorded", ONLINE, "101", Some(CONDUIT), "enabled"));

    let plan = world.plan(&ours(false));

    assert_eq!(ids(&plan.delete, Repair::Duplicate), ["older"]);
    assert!(plan.adopt.is_empty(), "its record is in order");
    assert!(plan.create.iter().all(|w| w.kind != ONLINE));
}

#[test]
fn without_any_record_the_oldest_stays_and_is_recorded() {
    let mut world = World::live(&["101"]);
    world.twitch.push(sub("older", CHAT, "101", CONDUIT, "enabled"));
    world.twitch.push(sub("newer", CHAT, "101", CONDUIT, "enabled"));

    let plan = world.plan(&ours(false));

    assert_eq!(ids(&plan.delete, Repair::Duplicate), ["newer"]);
    assert_eq!(plan.adopt.len(), 1);
    assert_eq!((plan.adopt[0].0.as_str(), plan.adopt[0].1.kind), ("older", CHAT));
}

#[test]
fn a_channel_without_a_session_is_an_orphan_and_is_asked_again_after_the_deletion() {
    let mut world = World { streamers: vec![streamer("101", false)], ..World::default() };
    world.twitch.push(sub("left-over", OFFLINE, "101", CONDUIT, "enabled"));
    world.records.push(record("left-over", OFFLINE, "101", Some(CONDUIT), "enabled"));

    let plan = world.plan(&ours(false));

    assert_eq!(plan.delete, [Deletion { id: "left-over".into(), repair: Repair::Orphan, forget: true }]);
    assert_eq!(plan.recheck, [(Some(world.streamers[0].id), channel("101"))]);
    assert!(plan.create.is_empty());
}

#[test]
fn a_streamer_who_must_log_in_again_is_neither_subscribed_nor_asked_again() {
    let mut world = World::live(&["101"]);
    world.streamers[0].needs_relogin = true;
    world.twitch.push(sub("s1", CHAT, "101", CONDUIT, "enabled"));

    let plan = world.plan(&ours(false));

    assert_eq!(ids(&plan.delete, Repair::Orphan), ["s1"]);
    assert!(plan.create.is_empty() && plan.recheck.is_empty());
}

#[test]
fn on_a_leftover_conduit_a_wanted_channel_is_a_duplicate_and_any_other_an_orphan() {
    let mut world = World::live(&["101"]);
    world.twitch.push(sub("wanted-here", ONLINE, "101", OLD_CONDUIT, "enabled"));
    world.twitch.push(sub("nobody", ONLINE, "102", OLD_CONDUIT, "enabled"));

    let plan = world.plan(&ours(false));

    assert_eq!(ids(&plan.delete, Repair::Duplicate), ["wanted-here"]);
    assert_eq!(ids(&plan.delete, Repair::Orphan), ["nobody"]);
    assert!(plan.create.iter().any(|w| w.kind == ONLINE), "and it is made on our conduit");
}

#[test]
fn a_condition_we_would_not_make_is_an_orphan() {
    let mut world = World::live(&["101"]);
    let other_bot = CHAT.condition(&channel("101"), "1234");
    world.twitch.push(sub_with("other-bot", CHAT.as_str(), other_bot, Some(CONDUIT), "enabled"));

    let plan = world.plan(&ours(false));

    assert_eq!(ids(&plan.delete, Repair::Orphan), ["other-bot"]);
    assert!(plan.create.iter().any(|w| w.kind == CHAT), "ours is made");
}

#[test]
fn plain_webhook_subscriptions_of_channel_types_are_not_ours_to_touch() {
    let mut world = World::live(&["101"]);
    let condition = ONLINE.condition(&channel("101"), BOT);
    world.twitch.push(sub_with("plain", ONLINE.as_str(), condition, None, "enabled"));

    let plan = world.plan(&ours(false));

    assert!(plan.delete.is_empty());
    assert!(plan.create.iter().any(|w| w.kind == ONLINE));
}

#[test]
fn a_dead_subscription_is_deleted_and_its_record_forgotten_as_stale() {
    let mut world = World::live(&["101"]);
    world.twitch.push(sub("dead", ONLINE, "101", CONDUIT, "authorization_revoked"));
    world.records.push(record("dead", ONLINE, "101", Some(CONDUIT), "enabled"));

    let plan = world.plan(&ours(false));

    assert_eq!(plan.delete, [Deletion { id: "dead".into(), repair: Repair::NotEnabled, forget: false }]);
    assert_eq!(plan.forget, ["dead"], "forgotten once, as stale");
    assert!(plan.create.iter().any(|w| w.kind == ONLINE));
}

#[test]
fn a_chat_subscription_revoked_for_a_blocking_reason_is_not_made_again_and_its_record_stays() {
    let mut world = World::live(&["101"]);
    world.twitch.push(sub("banned", CHAT, "101", CONDUIT, "chat_user_banned"));
    world.records.push(record("banned", CHAT, "101", Some(CONDUIT), "chat_user_banned"));

    let plan = world.plan(&ours(false));

    assert_eq!(plan.delete, [Deletion { id: "banned".into(), repair: Repair::NotEnabled, forget: false }]);
    assert!(plan.forget.is_empty(), "the record says why: it stays");
    let created: Vec<ChannelType> = plan.create.iter().map(|w| w.kind).collect();
    assert_eq!(created, [ONLINE, OFFLINE], "the live status still works");
}

#[test]
fn a_blocking_revocation_twitch_lists_before_its_message_is_handled_is_recorded_not_forgotten() {
    let mut world = World::live(&["101"]);
    world.twitch.push(sub("banned", CHAT, "101", CONDUIT, "chat_user_banned"));
    world.records.push(record("banned", CHAT, "101", Some(CONDUIT), "enabled"));

    let plan = world.plan(&ours(false));

    assert_eq!(plan.block, [("banned".to_owned(), "chat_user_banned".to_owned())]);
    assert_eq!(plan.delete, [Deletion { id: "banned".into(), repair: Repair::NotEnabled, forget: false }]);
    assert!(plan.forget.is_empty(), "the record is kept: it says why the chat is not subscribed");
    let created: Vec<ChannelType> = plan.create.iter().map(|w| w.kind).collect();
    assert_eq!(created, [ONLINE, OFFLINE], "the chat is not made again");

    world.apply(&plan, &ours(false));
    assert_eq!(world.records.len(), 3);
    assert!(world.records.iter().any(|r| r.subscription_id == "banned" && r.status == "chat_user_banned"));
    assert!(world.plan(&ours(false)).is_empty(), "nothing more to do");
}

#[test]
fn a_record_twitch_no_longer_has_is_stale_unless_it_is_of_another_conduit() {
    let mut world = World::live(&[]);
    world.records.push(record("gone", ONLINE, "101", Some(CONDUIT), "enabled"));
    world.records.push(record("elsewhere", ONLINE, "102", Some(OLD_CONDUIT), "enabled"));

    let plan = world.plan(&ours(false));

    assert_eq!(plan.forget, ["gone"]);
}

#[test]
fn a_created_subscription_replaces_the_records_of_its_channel_and_type_that_nothing_else_forgets() {
    let mut world = World::live(&["101"]);
    world.records.push(record("stale", CHAT, "101", Some(CONDUIT), "enabled"));
    world.records.push(record("unbound", CHAT, "101", None, "enabled"));
    world.records.push(record("online", ONLINE, "101", None, "enabled"));

    let plan = world.plan(&ours(false));

    let chat = plan.create.iter().find(|w| w.kind == CHAT).unwrap();
    assert_eq!(chat.replaces, ["unbound"], "the stale one is forgotten as stale, not twice");
    assert_eq!(plan.forget, ["stale"]);
}

#[test]
fn each_alarm_keeps_one_working_subscription_and_a_missing_one_is_made() {
    let mut world = World::live(&[]);
    world.twitch.push(alarm(
        "pending",
        AlarmType::AuthorizationRevoke,
        CALLBACK,
        "webhook_callback_verification_pending",
    ));
    world.twitch.push(alarm("second", AlarmType::AuthorizationRevoke, CALLBACK, "enabled"));
    world.twitch.push(alarm("failed", AlarmType::ShardDisabled, CALLBACK, "webhook_callback_verification_failed"));
    world.twitch.push(alarm("old-host", AlarmType::ShardDisabled, "https://old.test/webhooks/eventsub", "enabled"));

    let plan = world.plan(&ours(true));

    assert_eq!(ids(&plan.delete, Repair::Duplicate), ["second"]);
    assert_eq!(ids(&plan.delete, Repair::NotEnabled), ["failed"]);
    assert_eq!(ids(&plan.delete, Repair::Orphan), ["old-host"]);
    assert_eq!(plan.create_alarms, [AlarmType::ShardDisabled]);
    assert_eq!(plan.kept, 1);
}

#[test]
fn without_a_public_callback_the_alarms_are_left_alone() {
    let mut world = World::live(&[]);
    world.twitch.push(alarm(
        "old-host",
        AlarmType::AuthorizationRevoke,
        "https://old.test/webhooks/eventsub",
        "enabled",
    ));

    let plan = world.plan(&ours(false));

    assert!(plan.is_empty(), "{plan:#?}");
}

#[test]
fn the_metric_labels_of_the_repairs_are_the_documented_ones() {
    let labels: Vec<&str> = Repair::ALL.iter().map(|r| r.label()).collect();
    assert_eq!(labels, ["missing", "duplicate", "orphan", "not_enabled", "stale_record"]);
}

#[test]
fn the_wire_spellings_agree_with_the_typed_ones() {
    let kinds: Vec<&str> = ChannelType::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, CHANNEL_TYPES);
    assert!(BLOCKING_REASONS.iter().all(|r| SubscriptionStatus::from(*r).is_blocking()));
    assert!(ChannelType::ALL.iter().all(|k| ChannelType::parse(k.as_str()) == Some(*k)));
    assert!(AlarmType::ALL.iter().all(|k| AlarmType::parse(k.as_str()) == Some(*k)));
}

// --- Properties -------------------------------------------------------------------

const CHANNELS: [&str; 4] = ["101", "102", "103", "104"];
const STATUSES: [&str; 5] = ["enabled", "enabled", "authorization_revoked", "chat_user_banned", "something_new"];
const RECORD_STATUSES: [&str; 4] = ["enabled", "chat_user_banned", "moderator_removed", "authorization_revoked"];

/// One generated channel subscription: channel, type, where (ours, a
/// leftover conduit, a plain webhook), status, and how its condition is off
/// (0: exact, 1: another bot, 2: no broadcaster).
fn any_subscription() -> impl Strategy<Value = (usize, usize, usize, usize, usize)> {
    (0..CHANNELS.len(), 0..3usize, 0..3usize, 0..STATUSES.len(), prop_oneof![6 => Just(0usize), 1 => 1..3usize])
}

/// One generated record: channel, type, conduit (ours, leftover, none),
/// status, and whether it is of a generated subscription (its index) or of
/// one Twitch does not list.
fn any_record() -> impl Strategy<Value = (usize, usize, usize, usize, Option<prop::sample::Index>)> {
    (
        0..CHANNELS.len(),
        0..3usize,
        0..3usize,
        0..RECORD_STATUSES.len(),
        proptest::option::of(any::<prop::sample::Index>()),
    )
}

/// One generated alarm: type, ours or another callback, status.
fn any_alarm() -> impl Strategy<Value = (usize, bool, usize)> {
    (0..2usize, any::<bool>(), 0..3usize)
}

prop_compose! {
    fn any_world()(
        streamers in prop::collection::vec((any::<bool>(), prop::bool::weighted(0.2)), CHANNELS.len()),
        active in prop::collection::vec(any::<bool>(), CHANNELS.len()),
        subs in prop::collection::vec(any_subscription(), 0..12),
        records in prop::collection::vec(any_record(), 0..10),
        alarms in prop::collection::vec(any_alarm(), 0..5),
    ) -> World {
        let mut world = World::default();
        for (n, (is_streamer, needs_relogin)) in streamers.into_iter().enumerate() {
            if is_streamer {
                world.streamers.push(streamer(CHANNELS[n], needs_relogin));
            }
        }
        world.active = CHANNELS.iter().zip(active).filter(|(_, a)| *a).map(|(b, _)| channel(b)).collect();
        for (n, (b, kind, place, status, off)) in subs.into_iter().enumerate() {
            let kind = ChannelType::ALL[kind];
            let mut condition = kind.condition(&channel(CHANNELS[b]), BOT);
            match off {
                1 => { condition.insert("user_id".into(), "1234".into()); }
                2 => { condition.remove("broadcaster_user_id"); }
                _ => {}
            }
            let conduit = [Some(CONDUIT), Some(OLD_CONDUIT), None][place];
            world.twitch.push(sub_with(&format!("t{n}"), kind.as_str(), condition, conduit, STATUSES[status]));
        }
        let listed = world.twitch.len();
        for (n, (b, kind, conduit, status, of)) in records.into_iter().enumerate() {
            let conduit = [Some(CONDUIT), Some(OLD_CONDUIT), None][conduit];
            let mut r = record(&format!("r{n}"), ChannelType::ALL[kind], CHANNELS[b], conduit, RECORD_STATUSES[status]);
            // A record of a listed subscription names its channel and type.
            if let Some(listed) = of.filter(|_| listed > 0).map(|i| &world.twitch[i.index(listed)]) {
                r.subscription_id = listed.id.clone();
                r.subscription_type = listed.kind.clone();
                let named = listed.condition_str("broadcaster_user_id").and_then(|b| BroadcasterId::parse(b).ok());
                r.broadcaster = named.or(r.broadcaster);
            }
            if !world.records.iter().any(|other| other.subscription_id == r.subscription_id) {
                world.records.push(r); // one record per subscription id, as the stores keep them
            }
        }
        for (n, (kind, mine, status)) in alarms.into_iter().enumerate() {
            let callback = if mine { CALLBACK } else { "https://old.test/webhooks/eventsub" };
            let status = ["enabled", "webhook_callback_verification_pending", "notification_failures_exceeded"][status];
            world.twitch.push(alarm(&format!("a{n}"), AlarmType::ALL[kind], callback, status));
        }
        world
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_the_plan_leaves_exactly_one_enabled_subscription_per_wanted_channel_and_type_and_nothing_else(
        world in any_world(), alarms in any::<bool>(),
    ) {
        let ours = ours(alarms);
        let wanted = world.wanted();
        let mut after = world.clone();
        after.apply(&world.plan(&ours), &ours);

        for (b, kind) in &wanted {
            prop_assert_eq!(after.exact(b, *kind).len(), 1, "{} {:?}", b, kind);
        }
        let on_conduits = after.twitch.iter().filter(|s| ChannelType::parse(&s.kind).is_some() && s.transport.method == "conduit");
        prop_assert_eq!(on_conduits.count(), wanted.len(), "nothing else on any conduit");
        if alarms {
            for kind in AlarmType::ALL {
                let left: Vec<&Subscription> = after.twitch.iter().filter(|s| s.kind == kind.as_str()).collect();
                prop_assert_eq!(left.len(), 1, "{:?}", kind);
                prop_assert!(is_our_alarm(left[0], &ours));
            }
        }
    }

    #[test]
    fn a_wanted_enabled_subscription_is_never_deleted_nor_made_again(world in any_world(), alarms in any::<bool>()) {
        let ours = ours(alarms);
        let plan = world.plan(&ours);

        let deleted: HashSet<&str> = plan.delete.iter().map(|d| d.id.as_str()).collect();
        for (b, kind) in world.wanted() {
            let existing = world.exact(&b, kind);
            if existing.is_empty() {
                continue;
            }
            prop_assert_eq!(existing.iter().filter(|s| !deleted.contains(s.id.as_str())).count(), 1);
            prop_assert!(!plan.create.iter().any(|w| w.broadcaster == b && w.kind == kind));
        }
    }

    #[test]
    fn a_channel_whose_chat_was_revoked_for_a_blocking_reason_gets_no_chat_and_keeps_the_record(
        world in any_world(), alarms in any::<bool>(),
    ) {
        let ours = ours(alarms);
        let blocking: Vec<&SubscriptionRecord> = world.records.iter()
            .filter(|r| r.subscription_type == CHAT.as_str() && BLOCKING_REASONS.contains(&r.status.as_str()))
            .collect();
        let plan = world.plan(&ours);
        let mut after = world.clone();
        after.apply(&plan, &ours);

        for r in blocking {
            let b = r.broadcaster.as_ref().unwrap();
            prop_assert!(!plan.create.iter().chain(plan.adopt.iter().map(|(_, w)| w)).any(|w| &w.broadcaster == b && w.kind == CHAT));
            prop_assert!(after.records.iter().any(|kept| kept.subscription_id == r.subscription_id && kept.status == r.status));
        }
    }

    #[test]
    fn planning_again_over_the_applied_plan_asks_for_nothing(world in any_world(), alarms in any::<bool>()) {
        let ours = ours(alarms);
        let mut after = world.clone();
        after.apply(&world.plan(&ours), &ours);

        let again = after.plan(&ours);

        prop_assert!(again.is_empty(), "{:#?}", again);
        let alarms_kept = if alarms { AlarmType::ALL.len() } else { 0 };
        prop_assert_eq!(again.kept as usize, world.wanted().len() + alarms_kept);
    }

    #[test]
    fn no_record_is_forgotten_twice_and_every_kept_subscription_ends_up_recorded(world in any_world(), alarms in any::<bool>()) {
        let ours = ours(alarms);
        let plan = world.plan(&ours);

        let mut forgotten: BTreeMap<&str, usize> = BTreeMap::new();
        let replaced = plan.adopt.iter().map(|(_, w)| w).chain(&plan.create).flat_map(|w| &w.replaces);
        let deleted = plan.delete.iter().filter(|d| d.forget).map(|d| &d.id);
        for id in plan.forget.iter().chain(replaced).chain(deleted) {
            *forgotten.entry(id.as_str()).or_default() += 1;
        }
        prop_assert!(forgotten.values().all(|n| *n == 1), "{:?}", forgotten);

        let mut after = world.clone();
        after.apply(&plan, &ours);
        for (b, kind) in world.wanted() {
            let kept = after.exact(&b, kind)[0].id.clone();
            prop_assert!(after.records.iter().any(|r| r.subscription_id == kept && r.status == "enabled"));
        }
    }
}
