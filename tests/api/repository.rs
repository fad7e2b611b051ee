//! The `Repository` contract (ARCHITECTURE §6): every implementation — SQLite
//! today, PostgreSQL next — must pass this same suite.
//!
//! Each behaviour is one generic `async fn(&dyn Repository)`; `repository_contract!`
//! turns the whole list into one `#[tokio::test]` per behaviour for a backend.
//! To add a backend, add one line at the bottom: a name and a constructor
//! `|| async { (repository, guard) }`, where `guard` is kept alive for the test
//! (the SQLite temporary directory; `()` if there is nothing to keep). A backend
//! that needs an external server is declared `optional <name>`, with a
//! constructor returning `Option<(repository, guard)>`; `None` skips the test
//! (loudly) when the server is not configured. Every test builds a fresh
//! repository, uses random Twitch ids and subscription ids, and only looks at
//! rows it created itself, so a backend that shares one database server across
//! tests passes too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chatpulse::domain::{BroadcasterId, DecaySpeed, Label, OverlayConfig, OverlayId, StreamerId, Trigger};
use chatpulse::metrics::Metrics;
use chatpulse::store::postgres::PostgresRepository;
use chatpulse::store::sqlite::SqliteRepository;
use chatpulse::store::{
    BotAccount, NewStreamer, OverlaySetup, Repository, RepositoryError, StoredTokens, Streamer, SubscriptionRecord,
};
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use uuid::Uuid;

mod history;
use history::*;

fn random_twitch_id() -> BroadcasterId {
    BroadcasterId::parse(&(Uuid::new_v4().as_u128() % 10u128.pow(18)).to_string()).unwrap()
}

fn new_streamer() -> NewStreamer {
    let twitch_user_id = random_twitch_id();
    NewStreamer {
        login: format!("user{twitch_user_id}"),
        display_name: format!("User {twitch_user_id}"),
        twitch_user_id,
    }
}

fn config(for_word: &str, against_word: &str, k: f64) -> OverlayConfig {
    OverlayConfig::new(
        Trigger::parse(for_word).unwrap(),
        Trigger::parse(against_word).unwrap(),
        Label::parse("Left").unwrap(),
        Label::parse("Right").unwrap(),
        DecaySpeed::new(k).unwrap(),
    )
    .unwrap()
}

/// A subscription record with a unique id; timestamps are whole milliseconds,
/// the precision every backend stores.
fn subscription(streamer: Option<&Streamer>, kind: &str, status: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        streamer: streamer.map(|s| s.id),
        broadcaster: streamer.map(|s| s.twitch_user_id.clone()),
        subscription_type: kind.to_owned(),
        subscription_id: format!("sub-{}", Uuid::new_v4()),
        conduit_id: Some(format!("conduit-{}", Uuid::new_v4())),
        status: status.to_owned(),
        created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    }
}

/// The streamers listed whose Twitch id is one of `ids`, in listed order.
async fn listed(repo: &dyn Repository, ids: &[&BroadcasterId]) -> Vec<Streamer> {
    let all = repo.list_streamers().await.unwrap();
    all.into_iter().filter(|s| ids.contains(&&s.twitch_user_id)).collect()
}

/// The stored subscription with this id, if any.
async fn stored_subscription(repo: &dyn Repository, id: &str) -> Option<SubscriptionRecord> {
    let all = repo.subscriptions().await.unwrap();
    let mut matching: Vec<_> = all.into_iter().filter(|r| r.subscription_id == id).collect();
    assert!(matching.len() <= 1, "subscription {id} listed {} times", matching.len());
    matching.pop()
}

async fn a_new_streamer_gets_a_fresh_overlay_and_the_default_config(repo: &dyn Repository) {
    let new = new_streamer();
    let setup = repo.create_streamer(&new).await.unwrap();
    assert_eq!(setup.streamer.twitch_user_id, new.twitch_user_id);
    assert_eq!(setup.streamer.login, new.login);
    assert_eq!(setup.streamer.display_name, new.display_name);
    assert_eq!(setup.config.config, OverlayConfig::default());
    assert_eq!(setup.config.version, 1);
    assert_eq!(repo.overlay_setup(setup.streamer.overlay_id).await.unwrap(), Some(setup.clone()));

    let other = repo.create_streamer(&new_streamer()).await.unwrap();
    assert_ne!(other.streamer.overlay_id, setup.streamer.overlay_id);
    assert_ne!(other.streamer.id, setup.streamer.id);
    assert_eq!(repo.overlay_setup(OverlayId::random()).await.unwrap(), None);
}

async fn a_second_streamer_with_the_same_twitch_id_is_a_conflict(repo: &dyn Repository) {
    let new = new_streamer();
    let first = repo.create_streamer(&new).await.unwrap();
    let again = NewStreamer { login: "someone_else".into(), display_name: "Someone Else".into(), ..new.clone() };
    let err = repo.create_streamer(&again).await.unwrap_err();
    assert!(matches!(err, RepositoryError::Conflict(_)), "got {err:?}");
    assert_eq!(listed(repo, &[&new.twitch_user_id]).await, vec![first.streamer.clone()]);
    assert_eq!(repo.overlay_setup(first.streamer.overlay_id).await.unwrap(), Some(first));
}

async fn streamers_are_listed_in_creation_order(repo: &dyn Repository) {
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(repo.create_streamer(&new_streamer()).await.unwrap().streamer);
    }
    let ids: Vec<_> = created.iter().map(|s| &s.twitch_user_id).collect();
    assert_eq!(listed(repo, &ids).await, created);
}

async fn saving_a_config_bumps_its_version_by_one(repo: &dyn Repository) {
    let setup = repo.create_streamer(&new_streamer()).await.unwrap();
    let overlay = setup.streamer.overlay_id;
    for (version, config) in [(2, config("up", "down", 1.5)), (3, config("pineapple yes", "pineapple no", 0.1))] {
        let saved = repo.save_config(setup.streamer.id, &config).await.unwrap();
        assert_eq!((saved.version, &saved.config), (version, &config));
        let read = repo.overlay_setup(overlay).await.unwrap().unwrap();
        assert_eq!(read.config, saved);
        assert_eq!(read.streamer.id, setup.streamer.id);
    }
}

async fn saving_a_config_for_an_unknown_streamer_fails_and_creates_nothing(repo: &dyn Repository) {
    let unknown = StreamerId::generate();
    let result = repo.save_config(unknown, &config("up", "down", 1.0)).await;
    assert!(matches!(result, Err(RepositoryError::NotFound(_))), "got {result:?}");
    let all = repo.list_streamers().await.unwrap();
    assert!(all.iter().all(|s| s.id != unknown));
}

async fn removing_a_streamer_removes_the_overlay_and_its_subscriptions(repo: &dyn Repository) {
    let setup = repo.create_streamer(&new_streamer()).await.unwrap();
    let keep = repo.create_streamer(&new_streamer()).await.unwrap();
    let (s, k) = (&setup.streamer, &keep.streamer);
    let gone = subscription(Some(s), "channel.chat.message", "enabled");
    let kept = subscription(Some(k), "channel.chat.message", "enabled");
    let app_wide = subscription(None, "user.authorization.revoke", "enabled");
    for record in [&gone, &kept, &app_wide] {
        repo.upsert_subscription(record).await.unwrap();
    }

    assert!(repo.remove_streamer(&s.twitch_user_id).await.unwrap());
    assert_eq!(repo.overlay_setup(s.overlay_id).await.unwrap(), None);
    assert_eq!(repo.streamer_by_twitch_id(&s.twitch_user_id).await.unwrap(), None);
    assert_eq!(stored_subscription(repo, &gone.subscription_id).await, None);
    assert_eq!(repo.subscriptions_of(&s.twitch_user_id).await.unwrap(), vec![]);
    assert_eq!(repo.subscriptions_of(&k.twitch_user_id).await.unwrap(), vec![kept.clone()]);
    assert_eq!(listed(repo, &[&s.twitch_user_id, &k.twitch_user_id]).await, vec![k.clone()]);
    assert_eq!(stored_subscription(repo, &kept.subscription_id).await, Some(kept));
    assert_eq!(stored_subscription(repo, &app_wide.subscription_id).await, Some(app_wide));
    assert_eq!(repo.overlay_setup(k.overlay_id).await.unwrap(), Some(keep));

    assert!(!repo.remove_streamer(&s.twitch_user_id).await.unwrap());
    // The Twitch id is free again: nothing of the old row is left behind.
    let back = NewStreamer {
        twitch_user_id: s.twitch_user_id.clone(),
        login: s.login.clone(),
        display_name: s.display_name.clone(),
    };
    let again = repo.create_streamer(&back).await.unwrap();
    assert_ne!(again.streamer.overlay_id, s.overlay_id);
    assert_eq!(again.config.version, 1);
}

async fn subscriptions_are_upserted_listed_and_their_status_updated(repo: &dyn Repository) {
    let setup = repo.create_streamer(&new_streamer()).await.unwrap();
    let chat = subscription(Some(&setup.streamer), "channel.chat.message", "webhook_callback_verification_pending");
    let revoke = subscription(None, "user.authorization.revoke", "enabled");
    repo.upsert_subscription(&chat).await.unwrap();
    repo.upsert_subscription(&revoke).await.unwrap();
    assert_eq!(stored_subscription(repo, &chat.subscription_id).await, Some(chat.clone()));
    assert_eq!(stored_subscription(repo, &revoke.subscription_id).await, Some(revoke.clone()));

    // Upserting the same id again changes the status and nothing else.
    let update = SubscriptionRecord {
        subscription_type: "channel.chat.notification".into(),
        conduit_id: None,
        status: "enabled".into(),
        created_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        ..subscription(None, "ignored", "ignored")
    };
    let update = SubscriptionRecord { subscription_id: chat.subscription_id.clone(), ..update };
    repo.upsert_subscription(&update).await.unwrap();
    let enabled = SubscriptionRecord { status: "enabled".into(), ..chat.clone() };
    assert_eq!(stored_subscription(repo, &chat.subscription_id).await, Some(enabled.clone()));

    assert!(repo.set_subscription_status(&chat.subscription_id, "authorization_revoked").await.unwrap());
    let revoked = SubscriptionRecord { status: "authorization_revoked".into(), ..enabled };
    assert_eq!(stored_subscription(repo, &chat.subscription_id).await, Some(revoked));
    assert_eq!(stored_subscription(repo, &revoke.subscription_id).await, Some(revoke));

    let unknown = format!("sub-{}", Uuid::new_v4());
    assert!(!repo.set_subscription_status(&unknown, "enabled").await.unwrap());
    assert_eq!(stored_subscription(repo, &unknown).await, None);
}

async fn a_channels_subscriptions_are_listed_in_order_and_deleted_one_by_one(repo: &dyn Repository) {
    let mine = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let other = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let at = |s| OffsetDateTime::from_unix_timestamp(s).unwrap();
    // Recorded out of order: listed by creation time, then id.
    let later =
        SubscriptionRecord { created_at: at(1_700_000_100), ..subscription(Some(&mine), "stream.online", "enabled") };
    let unique = Uuid::new_v4();
    let first = SubscriptionRecord {
        subscription_id: format!("sub-a-{unique}"),
        ..subscription(Some(&mine), "stream.offline", "enabled")
    };
    let second = SubscriptionRecord {
        subscription_id: format!("sub-b-{unique}"),
        ..subscription(Some(&mine), "channel.chat.message", "enabled")
    };
    let theirs = subscription(Some(&other), "channel.chat.message", "enabled");
    let app_wide = subscription(None, "user.authorization.revoke", "enabled");
    for record in [&later, &second, &theirs, &first, &app_wide] {
        repo.upsert_subscription(record).await.unwrap();
    }

    let expected = vec![first.clone(), second.clone(), later.clone()];
    assert_eq!(repo.subscriptions_of(&mine.twitch_user_id).await.unwrap(), expected);
    assert_eq!(repo.subscriptions_of(&other.twitch_user_id).await.unwrap(), vec![theirs.clone()]);
    assert_eq!(repo.subscriptions_of(&random_twitch_id()).await.unwrap(), vec![]);

    // Re-recording a subscription never moves it to another channel or conduit.
    let moved = SubscriptionRecord {
        streamer: Some(other.id),
        broadcaster: Some(other.twitch_user_id.clone()),
        subscription_type: "stream.online".into(),
        conduit_id: Some("another-conduit".into()),
        status: "authorization_revoked".into(),
        ..second.clone()
    };
    repo.upsert_subscription(&moved).await.unwrap();
    let second = SubscriptionRecord { status: "authorization_revoked".into(), ..second };
    let expected = vec![first.clone(), second.clone(), later.clone()];
    assert_eq!(repo.subscriptions_of(&mine.twitch_user_id).await.unwrap(), expected);
    assert_eq!(repo.subscriptions_of(&other.twitch_user_id).await.unwrap(), vec![theirs.clone()]);

    assert!(repo.delete_subscription(&second.subscription_id).await.unwrap());
    assert!(!repo.delete_subscription(&second.subscription_id).await.unwrap(), "already gone");
    assert!(!repo.delete_subscription(&format!("sub-{}", Uuid::new_v4())).await.unwrap(), "never known");
    assert_eq!(repo.subscriptions_of(&mine.twitch_user_id).await.unwrap(), vec![first, later]);
    assert_eq!(stored_subscription(repo, &second.subscription_id).await, None);
    assert_eq!(stored_subscription(repo, &theirs.subscription_id).await, Some(theirs));
    assert!(repo.delete_subscription(&app_wide.subscription_id).await.unwrap());
    assert_eq!(stored_subscription(repo, &app_wide.subscription_id).await, None);
}

async fn the_conduit_of_a_client_id_is_remembered_and_replaced(repo: &dyn Repository) {
    let (client, other_client) = (format!("client-{}", Uuid::new_v4()), format!("client-{}", Uuid::new_v4()));
    assert_eq!(repo.conduit(&client).await.unwrap(), None);

    repo.save_conduit(&client, "conduit-1").await.unwrap();
    assert_eq!(repo.conduit(&client).await.unwrap().as_deref(), Some("conduit-1"));
    assert_eq!(repo.conduit(&other_client).await.unwrap(), None, "per client id");

    repo.save_conduit(&other_client, "conduit-2").await.unwrap();
    repo.save_conduit(&client, "conduit-3").await.unwrap();
    assert_eq!(repo.conduit(&client).await.unwrap().as_deref(), Some("conduit-3"), "replaced");
    assert_eq!(repo.conduit(&other_client).await.unwrap().as_deref(), Some("conduit-2"));
    // Saving the same one again is fine.
    repo.save_conduit(&client, "conduit-3").await.unwrap();
    assert_eq!(repo.conduit(&client).await.unwrap().as_deref(), Some("conduit-3"));
}

async fn the_shard_fingerprint_belongs_to_the_saved_conduit(repo: &dyn Repository) {
    let client = format!("client-{}", Uuid::new_v4());
    assert!(!repo.save_shard_fingerprint(&client, "fp-0").await.unwrap(), "no conduit saved: nothing to mark");
    assert_eq!(repo.shard_fingerprint(&client).await.unwrap(), None);

    repo.save_conduit(&client, "conduit-1").await.unwrap();
    assert_eq!(repo.shard_fingerprint(&client).await.unwrap(), None, "not bound yet");
    assert!(repo.save_shard_fingerprint(&client, "fp-1").await.unwrap());
    assert_eq!(repo.shard_fingerprint(&client).await.unwrap().as_deref(), Some("fp-1"));
    repo.save_conduit(&client, "conduit-1").await.unwrap();
    assert_eq!(repo.shard_fingerprint(&client).await.unwrap().as_deref(), Some("fp-1"), "same conduit: kept");

    repo.save_conduit(&client, "conduit-2").await.unwrap();
    assert_eq!(repo.shard_fingerprint(&client).await.unwrap(), None, "another conduit is not bound yet");
}

async fn config_versions_cover_existing_overlays_at_their_current_version(repo: &dyn Repository) {
    let edited = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let untouched = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let removed = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    repo.save_config(edited.id, &config("up", "down", 1.5)).await.unwrap();
    repo.save_config(edited.id, &config("left", "right", 0.5)).await.unwrap();
    assert!(repo.remove_streamer(&removed.twitch_user_id).await.unwrap());

    let asked = [edited.overlay_id, untouched.overlay_id, removed.overlay_id, OverlayId::random(), edited.overlay_id];
    let versions = repo.config_versions(&asked).await.unwrap();
    assert_eq!(versions, HashMap::from([(edited.overlay_id, 3), (untouched.overlay_id, 1)]));
    assert_eq!(repo.config_versions(&[]).await.unwrap(), HashMap::new());
}

async fn ping_succeeds(repo: &dyn Repository) {
    repo.ping().await.unwrap();
}

// --- Streamer login ----------------------------------------------------------

/// A random whole-millisecond instant (the precision every backend stores).
fn random_instant() -> OffsetDateTime {
    let ms = 1_800_000_000_000 + i128::from(Uuid::new_v4().as_u64_pair().0 % 1_000_000_000);
    OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).unwrap()
}

/// Tokens as `crate::crypto` would hand them over: arbitrary bytes (every
/// byte value, NULs, quotes, invalid UTF-8), unique per call.
fn tokens(scopes: &[&str]) -> StoredTokens {
    let mut access_token: Vec<u8> = (0..=255u8).collect();
    access_token.extend_from_slice(Uuid::new_v4().as_bytes());
    let mut refresh_token = Uuid::new_v4().as_bytes().to_vec();
    refresh_token.extend_from_slice(&[0, 0, 0xff, 0xc3, 0x28, b'\'', b'\\', 0]);
    StoredTokens {
        access_token,
        refresh_token,
        expires_at: random_instant(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

const SCOPES: &[&str] = &["channel:bot", "user:read:chat"];

/// A streamer who logged in once, with `SCOPES`.
async fn logged_in(repo: &dyn Repository) -> (OverlaySetup, StoredTokens) {
    let granted = tokens(SCOPES);
    let (setup, created) = repo.record_login(&new_streamer(), &granted).await.unwrap();
    assert!(created);
    (setup, granted)
}

async fn a_first_login_creates_the_streamer_and_a_later_one_updates_it(repo: &dyn Repository) {
    let profile = new_streamer();
    let first = tokens(SCOPES);
    let (setup, created) = repo.record_login(&profile, &first).await.unwrap();
    assert!(created, "the first login creates the streamer");
    let s = &setup.streamer;
    assert_eq!(
        (&s.twitch_user_id, &s.login, &s.display_name),
        (&profile.twitch_user_id, &profile.login, &profile.display_name)
    );
    assert!(!s.needs_relogin);
    assert_eq!(s.created_at, s.updated_at);
    assert_eq!((&setup.config.config, setup.config.version), (&OverlayConfig::default(), 1));
    assert_eq!(repo.overlay_setup(s.overlay_id).await.unwrap(), Some(setup.clone()));
    assert_eq!(repo.tokens(s.id).await.unwrap(), Some(first.clone()));

    let edited = repo.save_config(s.id, &config("up", "down", 1.5)).await.unwrap();
    let renamed = NewStreamer {
        login: format!("renamed{}", profile.twitch_user_id),
        display_name: format!("Renamed {}", profile.twitch_user_id),
        ..profile.clone()
    };
    let second = tokens(&["channel:bot", "moderator:read:followers", "user:read:chat", "user:write:chat"]);
    let (again, created) = repo.record_login(&renamed, &second).await.unwrap();
    assert!(!created, "a later login updates the streamer");
    let expected = Streamer {
        login: renamed.login.clone(),
        display_name: renamed.display_name.clone(),
        updated_at: again.streamer.updated_at,
        ..s.clone()
    };
    assert_eq!(again.streamer, expected, "same id, overlay id and creation time; new profile");
    assert!(again.streamer.updated_at >= s.updated_at);
    assert_eq!(again.config, edited, "the config and its version are kept");
    assert_eq!(repo.overlay_setup(s.overlay_id).await.unwrap(), Some(again.clone()));
    assert_eq!(repo.tokens(s.id).await.unwrap(), Some(second));
    assert_eq!(listed(repo, &[&profile.twitch_user_id]).await, vec![again.streamer]);
}

async fn tokens_and_scopes_round_trip_exactly(repo: &dyn Repository) {
    let (setup, granted) = logged_in(repo).await;
    let id = setup.streamer.id;
    let read = repo.tokens(id).await.unwrap().unwrap();
    assert_eq!(read.access_token, granted.access_token, "access token bytes");
    assert_eq!(read.refresh_token, granted.refresh_token, "refresh token bytes");
    assert_eq!(read.expires_at, granted.expires_at);
    assert_eq!(read.scopes, ["channel:bot", "user:read:chat"]);

    // Empty tokens, no scopes, scope order kept (also duplicates); the expiry
    // loses what is below a millisecond, the same in every backend.
    let odd = StoredTokens {
        access_token: Vec::new(),
        refresh_token: vec![0; 3],
        expires_at: OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_789).unwrap(),
        scopes: Vec::new(),
    };
    repo.set_tokens(id, &odd).await.unwrap();
    let expected = StoredTokens {
        expires_at: OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_000_000).unwrap(),
        ..odd.clone()
    };
    assert_eq!(repo.tokens(id).await.unwrap(), Some(expected));
    let reordered = StoredTokens { scopes: vec!["z:last".into(), "a:first".into(), "z:last".into()], ..tokens(&[]) };
    repo.set_tokens(id, &reordered).await.unwrap();
    assert_eq!(repo.tokens(id).await.unwrap(), Some(reordered));
}

async fn a_streamer_is_found_by_id(repo: &dyn Repository) {
    let (setup, _) = logged_in(repo).await;
    assert_eq!(repo.streamer(setup.streamer.id).await.unwrap(), Some(setup.clone()));
    let created = repo.create_streamer(&new_streamer()).await.unwrap();
    assert_eq!(repo.streamer(created.streamer.id).await.unwrap(), Some(created));
    assert_eq!(repo.streamer(StreamerId::generate()).await.unwrap(), None);
}

async fn a_streamer_is_found_by_twitch_id(repo: &dyn Repository) {
    let (setup, _) = logged_in(repo).await;
    let twitch_id = &setup.streamer.twitch_user_id;
    assert_eq!(repo.streamer_by_twitch_id(twitch_id).await.unwrap(), Some(setup.clone()));
    let saved = repo.save_config(setup.streamer.id, &config("up", "down", 1.5)).await.unwrap();
    let found = repo.streamer_by_twitch_id(twitch_id).await.unwrap().unwrap();
    assert_eq!(found, OverlaySetup { config: saved, ..setup });
    assert_eq!(repo.streamer_by_twitch_id(&random_twitch_id()).await.unwrap(), None);
}

async fn rotating_the_overlay_retires_the_old_id_at_once(repo: &dyn Repository) {
    let (setup, granted) = logged_in(repo).await;
    let old = setup.streamer.overlay_id;
    let saved = repo.save_config(setup.streamer.id, &config("yes", "no", 0.5)).await.unwrap();

    let new = repo.rotate_overlay(setup.streamer.id).await.unwrap();
    assert_ne!(new, old);
    assert_eq!(repo.overlay_setup(old).await.unwrap(), None);
    let rotated = repo.overlay_setup(new).await.unwrap().unwrap();
    assert_eq!(rotated.streamer.id, setup.streamer.id);
    assert_eq!(rotated.streamer.overlay_id, new);
    assert_eq!(rotated.config, saved, "the config moves with the streamer");
    assert_eq!(repo.streamer(setup.streamer.id).await.unwrap(), Some(rotated));
    assert_eq!(repo.config_versions(&[old, new]).await.unwrap(), HashMap::from([(new, 2)]));
    assert_eq!(repo.tokens(setup.streamer.id).await.unwrap(), Some(granted), "tokens are untouched");

    let again = repo.rotate_overlay(setup.streamer.id).await.unwrap();
    assert!(again != new && again != old);
    assert_eq!(repo.overlay_setup(new).await.unwrap(), None);

    let unknown = repo.rotate_overlay(StreamerId::generate()).await;
    assert!(matches!(unknown, Err(RepositoryError::NotFound(_))), "got {unknown:?}");
}

async fn tokens_are_replaced_and_cleared_and_a_login_clears_the_relogin_flag(repo: &dyn Repository) {
    let (setup, _) = logged_in(repo).await;
    let s = &setup.streamer;

    let refreshed = tokens(SCOPES);
    repo.set_tokens(s.id, &refreshed).await.unwrap();
    assert_eq!(repo.tokens(s.id).await.unwrap(), Some(refreshed));

    repo.clear_tokens(s.id, false).await.unwrap();
    assert_eq!(repo.tokens(s.id).await.unwrap(), None);
    assert!(!repo.streamer(s.id).await.unwrap().unwrap().streamer.needs_relogin);

    repo.set_tokens(s.id, &tokens(SCOPES)).await.unwrap();
    repo.clear_tokens(s.id, true).await.unwrap();
    assert_eq!(repo.tokens(s.id).await.unwrap(), None);
    let flagged = repo.streamer(s.id).await.unwrap().unwrap();
    assert!(flagged.streamer.needs_relogin);
    assert_eq!((flagged.streamer.overlay_id, &flagged.config), (s.overlay_id, &setup.config), "only the tokens go");
    assert_eq!(repo.overlay_setup(s.overlay_id).await.unwrap(), Some(flagged.clone()));
    assert_eq!(listed(repo, &[&s.twitch_user_id]).await, vec![flagged.streamer.clone()]);

    let profile = NewStreamer {
        twitch_user_id: s.twitch_user_id.clone(),
        login: s.login.clone(),
        display_name: s.display_name.clone(),
    };
    let relogin = tokens(SCOPES);
    let (back, created) = repo.record_login(&profile, &relogin).await.unwrap();
    assert!(!created);
    assert!(!back.streamer.needs_relogin, "logging in again clears the flag");
    assert_eq!(back.streamer.overlay_id, s.overlay_id);
    assert_eq!(repo.streamer(s.id).await.unwrap(), Some(back));
    assert_eq!(repo.tokens(s.id).await.unwrap(), Some(relogin));

    let unknown = StreamerId::generate();
    let set = repo.set_tokens(unknown, &tokens(SCOPES)).await;
    assert!(matches!(set, Err(RepositoryError::NotFound(_))), "got {set:?}");
    let cleared = repo.clear_tokens(unknown, true).await;
    assert!(matches!(cleared, Err(RepositoryError::NotFound(_))), "got {cleared:?}");
    assert_eq!(repo.tokens(unknown).await.unwrap(), None);
    assert_eq!(repo.streamer(unknown).await.unwrap(), None, "nothing was created");
}

async fn a_streamer_added_without_a_login_has_no_tokens(repo: &dyn Repository) {
    let setup = repo.create_streamer(&new_streamer()).await.unwrap();
    assert!(!setup.streamer.needs_relogin);
    assert_eq!(repo.tokens(setup.streamer.id).await.unwrap(), None);
    // Their first login finds them and keeps their overlay.
    let profile = NewStreamer {
        twitch_user_id: setup.streamer.twitch_user_id.clone(),
        login: setup.streamer.login.clone(),
        display_name: setup.streamer.display_name.clone(),
    };
    let granted = tokens(SCOPES);
    let (login, created) = repo.record_login(&profile, &granted).await.unwrap();
    assert!(!created);
    assert_eq!((login.streamer.id, login.streamer.overlay_id), (setup.streamer.id, setup.streamer.overlay_id));
    assert_eq!(repo.tokens(setup.streamer.id).await.unwrap(), Some(granted));
}

async fn only_streamers_with_tokens_are_listed_for_validation(repo: &dyn Repository) {
    let (a, a_tokens) = logged_in(repo).await;
    let without = repo.create_streamer(&new_streamer()).await.unwrap();
    let (cleared, _) = logged_in(repo).await;
    repo.clear_tokens(cleared.streamer.id, true).await.unwrap();
    let (d, _) = logged_in(repo).await;
    let d_tokens = tokens(&["channel:bot"]);
    repo.set_tokens(d.streamer.id, &d_tokens).await.unwrap();

    let ours = [a.streamer.id, without.streamer.id, cleared.streamer.id, d.streamer.id];
    let listed: Vec<_> =
        repo.streamers_with_tokens().await.unwrap().into_iter().filter(|(id, _, _)| ours.contains(id)).collect();
    assert_eq!(
        listed,
        vec![
            (a.streamer.id, a.streamer.twitch_user_id.clone(), a_tokens),
            (d.streamer.id, d.streamer.twitch_user_id.clone(), d_tokens),
        ]
    );
}

async fn concurrent_first_logins_create_one_streamer(repo: &dyn Repository) {
    let profile = new_streamer();
    let (one, two) = (tokens(SCOPES), tokens(SCOPES));
    let (a, b) = tokio::join!(repo.record_login(&profile, &one), repo.record_login(&profile, &two));
    let ((a, a_created), (b, b_created)) = (a.unwrap(), b.unwrap());
    assert!(a_created != b_created, "exactly one login creates: {a_created} {b_created}");
    assert_eq!((a.streamer.id, a.streamer.overlay_id), (b.streamer.id, b.streamer.overlay_id));
    assert_eq!(listed(repo, &[&profile.twitch_user_id]).await.len(), 1);
    let last = if a_created { two } else { one };
    assert_eq!(repo.tokens(a.streamer.id).await.unwrap(), Some(last), "the later login's tokens win");
}

/// The bot account is a single row that every test using this database
/// shares, so this only checks what a save leaves behind right after it.
async fn the_bot_account_is_saved_and_replaced(repo: &dyn Repository) {
    let bot = BotAccount {
        twitch_user_id: random_twitch_id(),
        login: "chatpulsebot".into(),
        tokens: tokens(&["user:bot", "user:read:chat", "user:write:chat"]),
        updated_at: random_instant(),
    };
    repo.save_bot(&bot).await.unwrap();
    assert_eq!(repo.bot().await.unwrap(), Some(bot.clone()));

    let replaced = BotAccount {
        twitch_user_id: random_twitch_id(),
        login: "chatpulsebot2".into(),
        tokens: tokens(&[]),
        updated_at: random_instant(),
    };
    repo.save_bot(&replaced).await.unwrap();
    let read = repo.bot().await.unwrap().unwrap();
    assert_eq!(read.tokens.access_token, replaced.tokens.access_token, "access token bytes");
    assert_eq!(read.tokens.refresh_token, replaced.tokens.refresh_token, "refresh token bytes");
    assert_eq!(read, replaced);
}

macro_rules! repository_contract {
    (optional $backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            repository_contract!(@tests $make;
                a_new_streamer_gets_a_fresh_overlay_and_the_default_config,
                a_second_streamer_with_the_same_twitch_id_is_a_conflict,
                streamers_are_listed_in_creation_order,
                saving_a_config_bumps_its_version_by_one,
                saving_a_config_for_an_unknown_streamer_fails_and_creates_nothing,
                removing_a_streamer_removes_the_overlay_and_its_subscriptions,
                subscriptions_are_upserted_listed_and_their_status_updated,
                a_channels_subscriptions_are_listed_in_order_and_deleted_one_by_one,
                the_conduit_of_a_client_id_is_remembered_and_replaced,
    the_shard_fingerprint_belongs_to_the_saved_conduit,
                config_versions_cover_existing_overlays_at_their_current_version,
                ping_succeeds,
                a_first_login_creates_the_streamer_and_a_later_one_updates_it,
                tokens_and_scopes_round_trip_exactly,
                a_streamer_is_found_by_id,
                a_streamer_is_found_by_twitch_id,
                rotating_the_overlay_retires_the_old_id_at_once,
                tokens_are_replaced_and_cleared_and_a_login_clears_the_relogin_flag,
                a_streamer_added_without_a_login_has_no_tokens,
                only_streamers_with_tokens_are_listed_for_validation,
                concurrent_first_logins_create_one_streamer,
                the_bot_account_is_saved_and_replaced,
                a_stream_is_opened_once_per_twitch_stream_and_closed_once,
                a_new_stream_closes_the_one_left_open_and_open_streams_are_listed,
                opening_a_stream_for_an_unknown_streamer_is_not_found,
                streams_are_listed_newest_first_in_pages_and_only_the_streamers_own,
                a_bucket_is_written_once_and_tagged_with_the_stream_open_at_its_start,
                moments_are_stored_listed_newest_first_and_their_outcomes_recorded,
                a_moment_of_an_unknown_streamer_or_a_taken_id_is_refused,
                the_retention_sweep_deletes_only_what_is_older_than_the_cutoff,
                removing_a_streamer_removes_their_history,
            );
        }
    };
    ($backend:ident, $make:expr) => {
        repository_contract!(optional $backend, {
            let make = $make;
            move || {
                let made = make();
                async move { Some(made.await) }
            }
        });
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let make = $make;
            let Some((repo, _guard)) = make().await else { return };
            super::$name(&repo).await;
        }
    )*};
}

repository_contract!(sqlite, || async {
    let dir = tempfile::tempdir().unwrap();
    (SqliteRepository::open(dir.path()).unwrap(), dir)
});

repository_contract!(optional postgres, || async {
    let url = crate::helpers::isolated_database_url(&test_database_url().await?).await;
    Some((migrated_postgres(&url).await, ()))
});

// ---------------------------------------------------------------------------
// PostgreSQL: what only the distributed adapter has
// ---------------------------------------------------------------------------

/// `TEST_DATABASE_URL` (set by `make test` through `scripts/test-services.sh`).
/// Unset means "no PostgreSQL here": the caller skips, loudly. Set means the
/// server must work: every failure after this is a test failure.
async fn test_database_url() -> Option<String> {
    let url = crate::helpers::test_server_url("TEST_DATABASE_URL").await;
    if url.is_none() {
        eprintln!(
            "!!! SKIPPED: PostgreSQL repository test not run because TEST_DATABASE_URL is unset \
             (run `make test`, or `eval \"$(scripts/test-services.sh)\"` first) !!!"
        );
    }
    url
}

fn metrics() -> Metrics {
    Metrics::register(&mut Registry::default())
}

/// A repository on `url` with the schema migrated (idempotent; the migration
/// lock makes the tests that run at once take turns).
async fn migrated_postgres(url: &str) -> PostgresRepository {
    let repo = PostgresRepository::new(url, 1, 4, metrics()).unwrap();
    repo.migrate().await.expect("cannot migrate the database at TEST_DATABASE_URL; is PostgreSQL running?");
    repo
}

mod postgres_specific {
    use super::*;
    use tokio_postgres::NoTls;

    /// `url` with its database name replaced by `database`.
    fn with_database(url: &str, database: &str) -> String {
        let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
        let authority = base.find("://").map_or(0, |i| i + 3);
        let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
        let mut out = format!("{}/{database}", &base[..path]);
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        out
    }

    async fn connect(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("cannot connect to PostgreSQL");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// The versions of the migrations embedded from `migrations/postgres`.
    fn migration_versions() -> Vec<i32> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
        let mut versions: Vec<i32> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter_map(|name| name.strip_prefix('V')?.split_once("__")?.0.parse().ok())
            .collect();
        versions.sort_unstable();
        assert!(!versions.is_empty(), "no migrations found in {dir}");
        versions
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn concurrent_migrations_of_a_new_database_apply_each_migration_once() {
        let Some(url) = test_database_url().await else { return };
        let admin = connect(&with_database(&url, "postgres")).await;
        let name = format!("chatpulse_migrate_{}", Uuid::new_v4().simple());
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let db_url = with_database(&url, &name);

        // Run the checks in their own task so the database is dropped even if they fail.
        let checks = tokio::spawn(async move {
            let instances: Vec<_> =
                (0..3).map(|_| PostgresRepository::new(&db_url, 1, 2, metrics()).unwrap()).collect();
            let runs: Vec<_> = instances
                .iter()
                .map(|repo| {
                    let repo = repo.clone();
                    tokio::spawn(async move { repo.migrate().await })
                })
                .collect();
            for run in runs {
                run.await.unwrap().expect("a concurrent migration failed");
            }

            let client = connect(&db_url).await;
            let rows = client
                .query("SELECT version, count(*) FROM refinery_schema_history GROUP BY version ORDER BY version", &[])
                .await
                .unwrap();
            let applied: BTreeMap<i32, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let expected: BTreeMap<i32, i64> = migration_versions().into_iter().map(|v| (v, 1)).collect();
            assert_eq!(applied, expected, "rows per migration version in refinery_schema_history");

            let tables: i64 = client
                .query_one(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'
                     AND table_name IN ('users', 'configs', 'eventsub_subscriptions', 'bot_account')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(tables, 4);
            // A later start finds nothing to do, and the schema works.
            instances[0].migrate().await.unwrap();
            instances[1].create_streamer(&new_streamer()).await.unwrap();
        })
        .await;

        admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).await.unwrap();
        if let Err(e) = checks {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// What is in the columns themselves, not just what the adapter reads back.
    #[tokio::test]
    async fn token_columns_hold_exactly_the_bytes_given() {
        let Some(url) = test_database_url().await else { return };
        let repo = migrated_postgres(&url).await;
        let (setup, granted) = logged_in(&repo).await;
        let client = connect(&url).await;
        let row = client
            .query_one(
                "SELECT access_token, refresh_token, token_expires_at, scopes, needs_relogin FROM users WHERE id = $1",
                &[&setup.streamer.id.as_uuid()],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, Vec<u8>>(0), granted.access_token);
        assert_eq!(row.get::<_, Vec<u8>>(1), granted.refresh_token);
        assert_eq!(row.get::<_, OffsetDateTime>(2), granted.expires_at);
        assert_eq!(row.get::<_, String>(3), "channel:bot user:read:chat");
        assert!(!row.get::<_, bool>(4));

        repo.clear_tokens(setup.streamer.id, true).await.unwrap();
        let row = client
            .query_one(
                "SELECT access_token IS NULL AND refresh_token IS NULL AND token_expires_at IS NULL, scopes, needs_relogin
                 FROM users WHERE id = $1",
                &[&setup.streamer.id.as_uuid()],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, bool>(0), row.get::<_, String>(1), row.get::<_, bool>(2)),
            (true, String::new(), true)
        );
    }

    #[tokio::test]
    async fn the_bot_account_table_refuses_a_second_row() {
        let Some(url) = test_database_url().await else { return };
        migrated_postgres(&url).await;
        let client = connect(&url).await;
        let err = client
            .execute(
                "INSERT INTO bot_account (id, twitch_user_id, login, access_token, refresh_token, token_expires_at,
                                          scopes, updated_at)
                 VALUES (2, '1', 'x', '\\x00', '\\x00', now(), '', now())",
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION), "got {err}");
    }

    #[tokio::test]
    async fn pooled_connections_run_with_the_statement_timeout_and_application_name() {
        let Some(url) = test_database_url().await else { return };
        let repo = migrated_postgres(&url).await;
        repo.warm_up(3).await.unwrap();
        // Several at once, so more than one pooled connection answers.
        let (a, b, c) = tokio::join!(
            repo.session_setting("statement_timeout"),
            repo.session_setting("statement_timeout"),
            repo.session_setting("statement_timeout"),
        );
        for timeout in [a, b, c] {
            assert_eq!(timeout.unwrap(), "5s");
        }
        assert_eq!(repo.session_setting("application_name").await.unwrap(), "chatpulse");
    }

    #[tokio::test]
    async fn a_repository_for_a_server_that_is_down_is_built_and_fails_fast() {
        // Nothing listens on port 1; construction must not try to connect.
        let repo = PostgresRepository::new("postgres://postgres@127.0.0.1:1/chatpulse", 2, 4, metrics()).unwrap();
        let started = Instant::now();
        let ping = tokio::time::timeout(Duration::from_secs(15), repo.ping()).await.expect("ping hung");
        assert!(matches!(ping, Err(RepositoryError::Unavailable(_))), "got {ping:?}");
        let listed = tokio::time::timeout(Duration::from_secs(15), repo.list_streamers()).await.expect("call hung");
        assert!(matches!(listed, Err(RepositoryError::Unavailable(_))), "got {listed:?}");
        assert!(tokio::time::timeout(Duration::from_secs(15), repo.migrate()).await.expect("hung").is_err());
        assert!(tokio::time::timeout(Duration::from_secs(15), repo.warm_up(2)).await.expect("hung").is_err());
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    }

    #[test]
    fn a_malformed_url_or_pool_size_is_refused_at_construction() {
        assert!(PostgresRepository::new("postgres://host:notaport/db", 1, 4, metrics()).is_err());
        assert!(PostgresRepository::new("postgres://127.0.0.1/db", 5, 4, metrics()).is_err());
        assert!(PostgresRepository::new("postgres://127.0.0.1/db", 0, 0, metrics()).is_err());
    }

    #[test]
    fn the_database_name_is_replaced_in_urls() {
        assert_eq!(with_database("postgres://u@h:5432/db", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
    }
}

// ---------------------------------------------------------------------------
// SQLite: the stored columns themselves
// ---------------------------------------------------------------------------

mod sqlite_specific {
    use super::*;
    use chatpulse::store::sqlite::DATABASE_FILE;

    /// What is in the columns themselves, not just what the adapter reads back.
    #[tokio::test]
    async fn token_columns_hold_exactly_the_bytes_given() {
        let dir = tempfile::tempdir().unwrap();
        let repo = SqliteRepository::open(dir.path()).unwrap();
        let (setup, granted) = logged_in(&repo).await;
        let conn = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        type Raw = (Vec<u8>, Vec<u8>, String, i64, String, i64);
        let raw: Raw = conn
            .query_row(
                "SELECT access_token, refresh_token, typeof(access_token), token_expires_at, scopes, needs_relogin
                 FROM users WHERE id = ?1",
                [setup.streamer.id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .unwrap();
        let expires_ms = (granted.expires_at.unix_timestamp_nanos() / 1_000_000) as i64;
        assert_eq!(
            raw,
            (
                granted.access_token,
                granted.refresh_token,
                "blob".to_owned(),
                expires_ms,
                "channel:bot user:read:chat".to_owned(),
                0
            )
        );

        repo.clear_tokens(setup.streamer.id, true).await.unwrap();
        let cleared: (bool, String, i64) = conn
            .query_row(
                "SELECT access_token IS NULL AND refresh_token IS NULL AND token_expires_at IS NULL, scopes, needs_relogin
                 FROM users WHERE id = ?1",
                [setup.streamer.id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(cleared, (true, String::new(), 1));
    }

    #[tokio::test]
    async fn the_bot_account_table_refuses_a_second_row() {
        let dir = tempfile::tempdir().unwrap();
        let _repo = SqliteRepository::open(dir.path()).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        let err = conn
            .execute(
                "INSERT INTO bot_account (id, twitch_user_id, login, access_token, refresh_token, token_expires_at,
                                          scopes, updated_at)
                 VALUES (2, '1', 'x', x'00', x'00', 0, '', 0)",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("CHECK constraint failed"), "got {err}");
    }
}
