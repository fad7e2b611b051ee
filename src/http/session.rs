//! Login sessions (tower-sessions): who is logged in, the pending OAuth
//! `state`, and the CSRF token. Cookies are signed, HttpOnly, SameSite=Lax,
//! Secure in production, and expire after a period of inactivity.

use axum::Router;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use tower_sessions::cookie::{Key, SameSite};
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer, SessionStore};
use tower_sessions_redis_store::RedisStore;

use super::Error;
use crate::app::accounts::PendingAuth;
use crate::config::{AppEnv, Config, StorageMode};
use crate::domain::StreamerId;

const STREAMER: &str = "streamer_id";
const PENDING: &str = "pending_auth";
const CSRF: &str = "csrf";
pub const COOKIE: &str = "chatpulse_session";

fn internal(e: tower_sessions::session::Error) -> Error {
    Error::Internal(anyhow::anyhow!("session store: {e}"))
}

/// Adds the session layer with the store of the deployment shape: memory when
/// embedded (one instance), Redis when distributed (a login on one instance
/// is valid on all).
pub fn with_sessions<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    config: &Config,
) -> anyhow::Result<Router<S>> {
    // SHA-512 spreads SESSION_SECRET (≥ 64 characters) into the 64-byte key.
    let key = Key::from(Sha512::digest(config.session_secret.expose().as_bytes()).as_slice());
    fn layer<T: SessionStore + Clone>(
        store: T,
        config: &Config,
        key: Key,
    ) -> SessionManagerLayer<T, tower_sessions::service::SignedCookie> {
        let idle = time::Duration::try_from(config.tuning.login_session_idle).unwrap_or(time::Duration::days(7));
        SessionManagerLayer::new(store)
            .with_name(COOKIE)
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(config.app_env == AppEnv::Production)
            .with_expiry(Expiry::OnInactivity(idle))
            .with_signed(key)
    }
    Ok(match &config.storage {
        StorageMode::Embedded { .. } => router.layer(layer(MemoryStore::default(), config, key)),
        StorageMode::Distributed { redis_url, .. } => {
            use fred::prelude::*;
            let mut redis = fred::prelude::Config::from_url(redis_url.expose())?;
            redis.fail_fast = false;
            let client = Builder::from_config(redis)
                .with_performance_config(|p| p.default_command_timeout = std::time::Duration::from_secs(2))
                .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
                .build()?;
            // The connection task runs (and reconnects) on its own.
            drop(client.connect());
            router.layer(layer(RedisStore::new(client), config, key))
        }
    })
}

/// The logged-in streamer, if any.
pub async fn streamer(session: &Session) -> Result<Option<StreamerId>, Error> {
    let id: Option<uuid::Uuid> = session.get(STREAMER).await.map_err(internal)?;
    Ok(id.map(StreamerId::from_uuid))
}

/// Logs a streamer in: a fresh session id and a fresh CSRF token (nothing
/// known before the login stays valid after it), then the identity.
pub async fn log_in(session: &Session, id: StreamerId) -> Result<(), Error> {
    session.cycle_id().await.map_err(internal)?;
    session.remove::<String>(CSRF).await.map_err(internal)?;
    session.insert(STREAMER, id.as_uuid()).await.map_err(internal)
}

pub async fn log_out(session: &Session) -> Result<(), Error> {
    session.flush().await.map_err(internal)
}

pub async fn remember_pending(session: &Session, pending: &PendingAuth) -> Result<(), Error> {
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
