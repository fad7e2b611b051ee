//! The `ApiTokenRepository` contract: the same suite on SQLite and
//! PostgreSQL (skipped loudly without `TEST_DATABASE_URL`).

use chatpulse::domain::api_token::NewTokenSecret;
use chatpulse::domain::{ApiTokenId, BroadcasterId, StreamerId, TokenName};
use chatpulse::store::postgres::PostgresRepository;
use chatpulse::store::sqlite::SqliteRepository;
use chatpulse::store::{NewApiToken, NewStreamer, Repository, RepositoryError};
use time::OffsetDateTime;

/// A whole-millisecond instant, `ms` after a fixed start.
fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap() + time::Duration::milliseconds(ms)
}

async fn streamer(repo: &dyn Repository) -> StreamerId {
    let id = BroadcasterId::parse(&crate::helpers::random_twitch_id()).unwrap();
    let new = NewStreamer { login: format!("u{id}"), display_name: format!("U {id}"), twitch_user_id: id };
    repo.create_streamer(&new).await.unwrap().streamer.id
}

fn new_token(streamer: StreamerId, name: &str, created_ms: i64) -> (NewApiToken, String) {
    let made = NewTokenSecret::generate();
    let new = NewApiToken {
        id: ApiTokenId::generate(),
        streamer,
        name: TokenName::parse(name).unwrap(),
        hash: made.hash,
        created_at: at(created_ms),
    };
    (new, made.secret.expose().to_owned())
}

fn hash_of(token: &str) -> chatpulse::domain::api_token::TokenHash {
    chatpulse::domain::api_token::presented_token_hash(token).unwrap()
}

async fn a_token_is_stored_by_its_digest_and_found_by_it(repo: &dyn Repository) {
    let owner = streamer(repo).await;
    let (new, secret) = new_token(owner, "Streamer.bot", 0);
    let stored = repo.create_api_token(&new).await.unwrap();
    assert_eq!((stored.id, stored.streamer, stored.name.as_str()), (new.id, owner, "Streamer.bot"));
    assert_eq!((stored.created_at, stored.last_used_at, stored.revoked_at), (at(0), None, None));
    assert_eq!(repo.api_token_by_hash(&hash_of(&secret)).await.unwrap(), Some(stored.clone()));
    let other = NewTokenSecret::generate();
    assert_eq!(repo.api_token_by_hash(&other.hash).await.unwrap(), None, "an unknown digest finds nothing");
    assert_eq!(repo.api_tokens(Some(owner)).await.unwrap(), vec![stored.clone()]);
    assert!(repo.api_tokens(None).await.unwrap().contains(&stored));
}

async fn a_token_for_an_unknown_streamer_is_not_found_and_nothing_is_stored(repo: &dyn Repository) {
    let (new, secret) = new_token(StreamerId::generate(), "x", 0);
    let err = repo.create_api_token(&new).await.unwrap_err();
    assert!(matches!(err, RepositoryError::NotFound(_)), "{err:?}");
    assert_eq!(repo.api_token_by_hash(&hash_of(&secret)).await.unwrap(), None);
}

async fn a_second_token_with_the_same_digest_is_a_conflict(repo: &dyn Repository) {
    let owner = streamer(repo).await;
    let (first, _) = new_token(owner, "first", 0);
    repo.create_api_token(&first).await.unwrap();
    let again = NewApiToken { id: ApiTokenId::generate(), ..first.clone() };
    let err = repo.create_api_token(&again).await.unwrap_err();
    assert!(matches!(err, RepositoryError::Conflict(_)), "{err:?}");
    assert_eq!(repo.api_tokens(Some(owner)).await.unwrap().len(), 1);
}

async fn a_streamers_tokens_are_listed_oldest_first_and_only_theirs(repo: &dyn Repository) {
    let (owner, other) = (streamer(repo).await, streamer(repo).await);
    let mut made = Vec::new();
    for (i, ms) in [3_000, 1_000, 2_000].into_iter().enumerate() {
        made.push(repo.create_api_token(&new_token(owner, &format!("t{i}"), ms).0).await.unwrap());
    }
    repo.create_api_token(&new_token(other, "theirs", 0).0).await.unwrap();
    let names: Vec<String> = repo.api_tokens(Some(owner)).await.unwrap().iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["t1", "t2", "t0"]);
}

async fn a_token_is_revoked_once_and_only_by_its_owner(repo: &dyn Repository) {
    let (owner, other) = (streamer(repo).await, streamer(repo).await);
    let (new, secret) = new_token(owner, "bot", 0);
    repo.create_api_token(&new).await.unwrap();
    assert!(!repo.revoke_api_token(new.id, Some(other), at(5)).await.unwrap(), "not another streamer's");
    assert_eq!(repo.api_token_by_hash(&hash_of(&secret)).await.unwrap().unwrap().revoked_at, None);
    assert!(repo.revoke_api_token(new.id, Some(owner), at(10)).await.unwrap());
    assert!(!repo.revoke_api_token(new.id, None, at(20)).await.unwrap(), "revoked already");
    let read = repo.api_token_by_hash(&hash_of(&secret)).await.unwrap().unwrap();
    assert_eq!(read.revoked_at, Some(at(10)), "the first revocation time stays");
    assert!(read.is_revoked());
    assert!(!repo.revoke_api_token(ApiTokenId::generate(), None, at(30)).await.unwrap(), "unknown id");
}

async fn a_use_is_recorded_at_most_once_a_minute(repo: &dyn Repository) {
    let owner = streamer(repo).await;
    let (new, secret) = new_token(owner, "poller", 0);
    repo.create_api_token(&new).await.unwrap();
    let last_used = || async { repo.api_token_by_hash(&hash_of(&secret)).await.unwrap().unwrap().last_used_at };
    repo.touch_api_token(new.id, at(1_000)).await.unwrap();
    assert_eq!(last_used().await, Some(at(1_000)));
    repo.touch_api_token(new.id, at(60_999)).await.unwrap();
    assert_eq!(last_used().await, Some(at(1_000)), "within the minute: not written");
    repo.touch_api_token(new.id, at(61_000)).await.unwrap();
    assert_eq!(last_used().await, Some(at(61_000)));
}

async fn removing_a_streamer_removes_their_tokens(repo: &dyn Repository) {
    let owner = streamer(repo).await;
    let (new, secret) = new_token(owner, "bot", 0);
    repo.create_api_token(&new).await.unwrap();
    let twitch_id = repo.streamer(owner).await.unwrap().unwrap().streamer.twitch_user_id;
    assert!(repo.remove_streamer(&twitch_id).await.unwrap());
    assert_eq!(repo.api_token_by_hash(&hash_of(&secret)).await.unwrap(), None);
    assert!(repo.api_tokens(Some(owner)).await.unwrap().is_empty());
}

macro_rules! api_token_contract {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            api_token_contract!(@tests $make;
                a_token_is_stored_by_its_digest_and_found_by_it,
                a_token_for_an_unknown_streamer_is_not_found_and_nothing_is_stored,
                a_second_token_with_the_same_digest_is_a_conflict,
                a_streamers_tokens_are_listed_oldest_first_and_only_theirs,
                a_token_is_revoked_once_and_only_by_its_owner,
                a_use_is_recorded_at_most_once_a_minute,
                removing_a_streamer_removes_their_tokens,
            );
        }
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

api_token_contract!(sqlite, || async {
    let dir = tempfile::tempdir().unwrap();
    Some((SqliteRepository::open(dir.path()).unwrap(), dir))
});

api_token_contract!(postgres, || async {
    let Some(url) = crate::helpers::test_server_url("TEST_DATABASE_URL").await else {
        eprintln!("!!! SKIPPED: API token contract on PostgreSQL: TEST_DATABASE_URL is unset !!!");
        return None;
    };
    let url = crate::helpers::isolated_database_url(&url).await;
    let metrics = chatpulse::metrics::Metrics::register(&mut prometheus_client::registry::Registry::default());
    let repo = PostgresRepository::new(&url, 1, 4, metrics).unwrap();
    repo.migrate().await.expect("migrates");
    Some((repo, ()))
});
