//! Login sessions (tower-sessions): who is logged in (a streamer, or the
//! operator as the bot account), the pending OAuth `state`, and the CSRF
//! token. Cookies are signed, HttpOnly, SameSite=Lax, Secure in production,
//! and expire after a period of inactivity; a login also ends a fixed time
//! after it began, however active.
//!
//! A visitor gets no stored session until a login starts (tower-sessions
//! stores a session only once something is put in it); the session a login
//! start stores lives [`PENDING_LOGIN`], and gets the login's lifetime only
//! when the login succeeds.

use axum::Router;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use tower_sessions::cookie::{Key, SameSite};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;
use tower_sessions::{Expiry, Session, SessionManagerLayer, SessionStore};
use tower_sessions_redis_store::RedisStore;

use super::{Error, HttpSettings};
use crate::app::accounts::PendingAuth;
use crate::domain::StreamerId;

const STREAMER: &str = "streamer_id";
/// The bot account's Twitch id, once the operator signed in as the bot.
const BOT: &str = "bot_user_id";
const PENDING: &str = "pending_auth";
const CSRF: &str = "csrf";
const LOGGED_IN_AT: &str = "logged_in_at";
pub const COOKIE: &str = "chatpulse_session";
/// How long a started login may take: the session stored for it lives this
/// long without activity until the login completes.
pub const PENDING_LOGIN: time::Duration = time::Duration::minutes(10);

/// A login session's lifetime without activity (`Tuning::login_session_idle`).
fn login_expiry(idle: std::time::Duration) -> Expiry {
    Expiry::OnInactivity(time::Duration::try_from(idle).unwrap_or(time::Duration::days(7)))
}

fn internal(e: tower_sessions::session::Error) -> Error {
    Error::Internal(anyhow::anyhow!("session store: {e}"))
}

/// Where login sessions live, by the deployment shape.
pub enum SessionStorage {
    /// In this process (embedded: one instance).
    InProcess,
    /// In Redis, through the instance's shared client (distributed: a login
    /// on one instance is valid on all).
    Redis(fred::clients::Client),
}

/// Adds the session layer with the store of the deployment shape.
pub fn with_sessions<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    settings: &HttpSettings,
    storage: SessionStorage,
) -> Router<S> {
    // SHA-512 spreads SESSION_SECRET (≥ 64 characters) into the 64-byte key.
    let key = Key::from(Sha512::digest(settings.session_secret.expose().as_bytes()).as_slice());
    fn layer<T: SessionStore + Clone>(
        store: T,
        settings: &HttpSettings,
        key: Key,
    ) -> SessionManagerLayer<T, tower_sessions::service::SignedCookie> {
        SessionManagerLayer::new(store)
            .with_name(COOKIE)
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(settings.production)
            .with_expiry(login_expiry(settings.login_session_idle))
            .with_signed(key)
    }
    match storage {
        SessionStorage::InProcess => router.layer(layer(EmbeddedStore::default(), settings, key)),
        SessionStorage::Redis(client) => router.layer(layer(RedisStore::new(client), settings, key)),
    }
}

/// The logged-in streamer, if any. A login older than `max_age` is over,
/// however active the session stayed: the streamer logs in again.
pub async fn streamer(session: &Session, max_age: std::time::Duration) -> Result<Option<StreamerId>, Error> {
    let id: Option<uuid::Uuid> = session.get(STREAMER).await.map_err(internal)?;
    let Some(id) = id else { return Ok(None) };
    let at: Option<i64> = session.get(LOGGED_IN_AT).await.map_err(internal)?;
    let age_ms = at.map(|at| crate::now_ms().saturating_sub(at));
    let max_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    if age_ms.is_none_or(|age| age > max_ms) {
        session.flush().await.map_err(internal)?;
        return Ok(None);
    }
    Ok(Some(StreamerId::from_uuid(id)))
}

/// Logs a streamer in: a fresh session id and a fresh CSRF token (nothing
/// known before the login stays valid after it), the login's lifetime
/// (`idle`), then the identity.
pub async fn log_in(session: &Session, id: StreamerId, idle: std::time::Duration) -> Result<(), Error> {
    fresh_login(session, idle).await?;
    session.remove::<String>(BOT).await.map_err(internal)?;
    session.insert(STREAMER, id.as_uuid()).await.map_err(internal)
}

/// Signs the operator in as the bot account (Twitch confirmed the account
/// is `bot_user_id`): only such a session sees `/auth/bot`'s status.
pub async fn log_in_bot(session: &Session, bot_user_id: &str, idle: std::time::Duration) -> Result<(), Error> {
    fresh_login(session, idle).await?;
    session.remove::<uuid::Uuid>(STREAMER).await.map_err(internal)?;
    session.insert(BOT, bot_user_id).await.map_err(internal)
}

async fn fresh_login(session: &Session, idle: std::time::Duration) -> Result<(), Error> {
    session.cycle_id().await.map_err(internal)?;
    session.remove::<String>(CSRF).await.map_err(internal)?;
    session.set_expiry(Some(login_expiry(idle)));
    session.insert(LOGGED_IN_AT, crate::now_ms()).await.map_err(internal)
}

/// The bot account this session signed in as, if any (a login older than
/// `max_age` is over, as for streamers).
pub async fn bot(session: &Session, max_age: std::time::Duration) -> Result<Option<String>, Error> {
    let Some(id) = session.get::<String>(BOT).await.map_err(internal)? else { return Ok(None) };
    let at: Option<i64> = session.get(LOGGED_IN_AT).await.map_err(internal)?;
    let max_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    if at.is_none_or(|at| crate::now_ms().saturating_sub(at) > max_ms) {
        session.flush().await.map_err(internal)?;
        return Ok(None);
    }
    Ok(Some(id))
}

pub async fn log_out(session: &Session) -> Result<(), Error> {
    session.flush().await.map_err(internal)
}

/// Remembers a started login. A visitor's session is stored from here on,
/// for [`PENDING_LOGIN`]; a logged-in session keeps its lifetime.
pub async fn remember_pending(session: &Session, pending: &PendingAuth) -> Result<(), Error> {
    let streamer = session.get::<uuid::Uuid>(STREAMER).await.map_err(internal)?;
    let bot = session.get::<String>(BOT).await.map_err(internal)?;
    if streamer.is_none() && bot.is_none() {
        session.set_expiry(Some(Expiry::OnInactivity(PENDING_LOGIN)));
    }
    session.insert(PENDING, pending).await.map_err(internal)
}

/// The pending OAuth request, removed: a `state` is good for one callback.
pub async fn take_pending(session: &Session) -> Result<Option<PendingAuth>, Error> {
    session.remove(PENDING).await.map_err(internal)
}

/// This session's CSRF token, created on first use.
pub async fn csrf_token(session: &Session) -> Result<String, Error> {
    if let Some(token) = session.get::<String>(CSRF).await.map_err(internal)? {
        return Ok(token);
    }
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    session.insert(CSRF, &token).await.map_err(internal)?;
    Ok(token)
}

/// Refuses a state-changing request without this session's CSRF token (403).
pub async fn check_csrf(session: &Session, provided: Option<&str>) -> Result<(), Error> {
    let expected: Option<String> = session.get(CSRF).await.map_err(internal)?;
    match (expected, provided) {
        (Some(expected), Some(provided)) if bool::from(expected.as_bytes().ct_eq(provided.as_bytes())) => Ok(()),
        _ => Err(Error::Forbidden("missing or invalid CSRF token".into())),
    }
}

/// The embedded shape's session store: in memory (one instance), like
/// tower-sessions' `MemoryStore`, but expired sessions are swept out (at most
/// once a minute, when sessions are created) instead of kept forever.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedStore(std::sync::Arc<std::sync::Mutex<EmbeddedSessions>>);

#[derive(Debug, Default)]
pub struct EmbeddedSessions {
    records: std::collections::HashMap<Id, Record>,
    swept_at: Option<std::time::Instant>,
}

const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl EmbeddedStore {
    fn sessions(&self) -> std::sync::MutexGuard<'_, EmbeddedSessions> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops every expired session now.
    pub fn sweep(&self) {
        let now = time::OffsetDateTime::now_utc();
        let mut sessions = self.sessions();
        sessions.records.retain(|_, r| r.expiry_date > now);
        sessions.swept_at = Some(std::time::Instant::now());
    }

    pub fn len(&self) -> usize {
        self.sessions().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl SessionStore for EmbeddedStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let due = self.sessions().swept_at.is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
        if due {
            self.sweep();
        }
        let mut sessions = self.sessions();
        while sessions.records.contains_key(&record.id) {
            record.id = Id::default(); // a collision: pick another
        }
        sessions.records.insert(record.id, record.clone());
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.sessions().records.insert(record.id, record.clone());
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let now = time::OffsetDateTime::now_utc();
        Ok(self.sessions().records.get(id).filter(|r| r.expiry_date > now).cloned())
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.sessions().records.remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_in: time::Duration) -> Record {
        Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: time::OffsetDateTime::now_utc() + expires_in,
        }
    }

    #[tokio::test]
    async fn expired_sessions_are_not_loaded_and_are_swept_out() {
        let store = EmbeddedStore::default();
        let mut old = record(time::Duration::seconds(-1));
        let mut live = record(time::Duration::hours(1));
        store.create(&mut old).await.unwrap();
        store.create(&mut live).await.unwrap();
        assert_eq!(store.load(&old.id).await.unwrap(), None, "expired: not loaded");
        assert_eq!(store.load(&live.id).await.unwrap().map(|r| r.id), Some(live.id));
        assert_eq!(store.len(), 2);

        store.sweep();

        assert_eq!(store.len(), 1, "the expired one is gone");
        store.delete(&live.id).await.unwrap();
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn creating_sessions_sweeps_when_a_sweep_is_due() {
        let store = EmbeddedStore::default();
        let mut old = record(time::Duration::seconds(-1));
        store.create(&mut old).await.unwrap();
        store.sessions().swept_at = None; // as if a minute had passed
        let mut new = record(time::Duration::hours(1));
        store.create(&mut new).await.unwrap();
        assert_eq!(store.len(), 1);
    }
}
