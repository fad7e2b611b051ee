//! PostgreSQL repository for the distributed shape.
//!
//! A `deadpool-postgres` pool of `tokio-postgres` connections, built without
//! connecting: a server that is down does not stop the service from starting,
//! every call just fails fast with [`RepositoryError::Unavailable`] until it is
//! back. Every connection runs with a server-side `statement_timeout` and
//! `application_name=chatpulse`; pool waits and connection attempts are bounded
//! too, and every call has a client-side deadline on top, so no call hangs.
//!
//! Behaviour mirrors [`super::sqlite`] exactly (the contract suite in
//! `tests/api/repository.rs` runs against both): constraint violations are
//! `Conflict`, rows are validated through the domain parsers (`Corrupt`, never a
//! panic), timestamps are stored with millisecond precision, and text sorts
//! byte-wise (`COLLATE "C"`), as in SQLite.
//!
//! **No TLS yet**: connections use [`NoTls`], so the database must be reached
//! over a trusted network (same host, private network or a sidecar proxy).

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use time::OffsetDateTime;
use tokio_postgres::types::FromSql;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::{
    BotAccount, CONTROL_COLUMNS, ConfigColumns, NewStreamer, OverlaySetup, Repository, RepositoryError, StoredConfig,
    StoredTokens, Streamer, SubscriptionRecord, parse_scopes, scopes_column, stored_tokens,
};
use crate::domain::{BroadcasterId, OverlayConfig, OverlayId, StreamerId};
use crate::metrics::Metrics;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The `store` label of this adapter's metrics.
const STORE: &str = "postgres";

/// Server-side limit on any one statement of a pooled connection.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a free pooled connection, for a new connection, and for a
/// returned connection's health check.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Client-side deadline for one whole repository call (pool wait + queries),
/// for when the server stops answering without closing the connection.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time before TCP keepalives probe a pooled connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Statement timeout on the migration session: waiting for another instance's
/// migration lock and each migration may take longer than a normal query.
const MIGRATION_STATEMENT_TIMEOUT: Duration = Duration::from_secs(600);
/// Key of the session-level advisory lock that serialises migrations across
/// instances ("CHATPULS" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x4348_4154_5055_4C53;

#[derive(Clone)]
pub struct PostgresRepository {
    pool: Pool,
    metrics: Metrics,
}

impl PostgresRepository {
    /// Builds the pool without opening a connection. `min_conns` is only
    /// checked here; [`warm_up`](Self::warm_up) opens them.
    ///
    /// Uses [`NoTls`]: TLS to the database is not supported yet.
    pub fn new(database_url: &str, min_conns: usize, max_conns: usize, metrics: Metrics) -> anyhow::Result<Self> {
        anyhow::ensure!(max_conns > 0, "the PostgreSQL pool needs at least one connection");
        anyhow::ensure!(
            min_conns <= max_conns,
            "the PostgreSQL pool minimum ({min_conns}) exceeds its maximum ({max_conns})"
        );
        // The parser's errors never echo the URL (which may hold a password).
        let mut pg = tokio_postgres::Config::from_str(database_url).context("invalid PostgreSQL connection URL")?;
        let timeout = format!("-c statement_timeout={}", STATEMENT_TIMEOUT.as_millis());
        let options = match pg.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {timeout}"),
            _ => timeout,
        };
        pg.options(options);
        if pg.get_application_name().is_none() {
            pg.application_name("chatpulse");
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(POOL_TIMEOUT);
        }
        pg.keepalives_idle(KEEPALIVE_IDLE);

        let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(max_conns)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .context("cannot build the PostgreSQL connection pool")?;
        Ok(Self { pool, metrics })
    }

    /// Applies pending migrations. Safe when several instances start at once:
    /// they queue on a session-level advisory lock and the later ones find
    /// nothing left to do.
    ///
    /// The migration runs on a connection taken out of the pool for good and
    /// closed afterwards, so neither its longer statement timeout nor (if this
    /// future is dropped half-way) a still-held lock can leak into the pool.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let result = self.migrate_locked().await;
        self.metrics.store_call(STORE, "migrate", started.elapsed(), result.is_ok());
        result
    }

    async fn migrate_locked(&self) -> anyhow::Result<()> {
        let conn = self.pool.get().await.context("cannot connect to PostgreSQL to migrate")?;
        // Dropping a `ClientWrapper` closes the connection, which ends the
        // session and releases its advisory lock even on cancellation.
        let mut conn = Object::take(conn);
        let client: &mut tokio_postgres::Client = &mut conn;
        let report = run_migrations(client).await;
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await;
        drop(conn);
        if let Err(e) = unlocked {
            // Closing the connection has released the lock anyway.
            tracing::warn!(error = %e, "cannot release the PostgreSQL migration lock explicitly");
        }
        for m in report?.applied_migrations() {
            tracing::info!(migration = %m, "applied PostgreSQL migration");
        }
        Ok(())
    }

    /// Opens up to `min_conns` connections (at most the pool size) so the pool
    /// starts warm. Best effort: the first error is returned, and the pool
    /// stays usable either way.
    pub async fn warm_up(&self, min_conns: usize) -> anyhow::Result<()> {
        let wanted = min_conns.min(self.pool.status().max_size);
        let conns = futures_util::future::try_join_all((0..wanted).map(|_| self.pool.get()))
            .await
            .context("cannot open PostgreSQL connections")?;
        // Dropping returns them to the pool, idle and connected.
        drop(conns);
        Ok(())
    }

    /// The value of a run-time setting on a pooled connection, as the server
    /// reports it (e.g. `statement_timeout` → `5s`). For diagnostics and tests.
    pub async fn session_setting(&self, name: &str) -> Result<String, RepositoryError> {
        self.call("session_setting", async {
            let conn = self.conn().await?;
            let stmt = conn.prepare_cached("SELECT current_setting($1)").await.map_err(db_err)?;
            let row = conn.query_one(&stmt, &[&name]).await.map_err(db_err)?;
            get(&row, 0, "current_setting")
        })
        .await
    }

    /// Times `f`, bounds it by [`CALL_TIMEOUT`] and records the call. Conflicts
    /// and not-found answers come from a healthy database: they do not count
    /// as failed calls.
    async fn call<T>(
        &self,
        operation: &'static str,
        f: impl Future<Output = Result<T, RepositoryError>>,
    ) -> Result<T, RepositoryError> {
        let started = Instant::now();
        let result = tokio::time::timeout(CALL_TIMEOUT, f).await.unwrap_or_else(|_| {
            Err(RepositoryError::Unavailable(anyhow::anyhow!(
                "PostgreSQL call {operation} timed out after {CALL_TIMEOUT:?}"
            )))
        });
        let ok = !matches!(result, Err(RepositoryError::Unavailable(_) | RepositoryError::Corrupt(_)));
        self.metrics.store_call(STORE, operation, started.elapsed(), ok);
        result
    }

    async fn conn(&self) -> Result<Object, RepositoryError> {
        self.pool
            .get()
            .await
            .map_err(|e| RepositoryError::Unavailable(anyhow::Error::new(e).context("no PostgreSQL connection")))
    }
}

/// Takes the migration lock on `client`'s session, then runs the embedded
/// migrations. The caller unlocks (or closes the session).
async fn run_migrations(client: &mut tokio_postgres::Client) -> anyhow::Result<refinery::Report> {
    client
        .batch_execute(&format!("SET statement_timeout = {}", MIGRATION_STATEMENT_TIMEOUT.as_millis()))
        .await
        .context("cannot set the migration statement timeout")?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("cannot take the PostgreSQL migration lock")?;
    embedded::migrations::runner().run_async(client).await.context("PostgreSQL migrations failed")
}

/// Maps a query error: any integrity-constraint violation (SQLSTATE class 23:
/// unique, foreign key, not null, check) is a conflict, as SQLite's
/// `ConstraintViolation` is in the embedded adapter.
fn db_err(e: tokio_postgres::Error) -> RepositoryError {
    if e.code().is_some_and(|code| code.code().starts_with("23")) {
        return RepositoryError::Conflict("a row with this key");
    }
    RepositoryError::Unavailable(anyhow::Error::new(e).context("PostgreSQL query failed"))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Corrupt(format!("{what}: {e}"))
}

/// Reads one column; a value of the wrong type or out of range is `Corrupt`.
fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, column: &str) -> Result<T, RepositoryError> {
    row.try_get(idx).map_err(|e| corrupt(column, e))
}

/// Drops sub-millisecond precision: what SQLite stores, so both backends
/// return the same timestamps (PostgreSQL itself keeps microseconds).
fn whole_ms(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(t)
}

fn overlay_id(raw: Uuid) -> Result<OverlayId, RepositoryError> {
    raw.hyphenated().to_string().parse().map_err(|e| corrupt("users.overlay_uuid", e))
}

macro_rules! streamer_columns {
    () => {
        "u.id, u.overlay_uuid, u.twitch_user_id, u.login, u.display_name, u.created_at, u.updated_at, u.needs_relogin"
    };
}
/// How many columns [`streamer_columns!`] has (where the config columns start).
const STREAMER_WIDTH: usize = 8;
macro_rules! config_columns {
    () => {
        "c.for_trigger, c.against_trigger, c.left_label, c.right_label, c.decay_speed, c.version, c.updated_at, \
         c.model, c.match_mode, c.layout, c.for_color, c.against_color, c.scale, c.font_weight, c.show_labels, \
         c.show_hint, c.show_voters, c.celebrate"
    };
}
macro_rules! token_columns {
    () => {
        "u.access_token, u.refresh_token, u.token_expires_at, u.scopes"
    };
}

/// The streamer in columns `at..at + STREAMER_WIDTH` ([`streamer_columns!`]).
fn streamer_at(row: &Row, at: usize) -> Result<Streamer, RepositoryError> {
    let twitch_user_id: String = get(row, at + 2, "users.twitch_user_id")?;
    Ok(Streamer {
        id: StreamerId::from_uuid(get(row, at, "users.id")?),
        overlay_id: overlay_id(get(row, at + 1, "users.overlay_uuid")?)?,
        twitch_user_id: BroadcasterId::parse(&twitch_user_id).map_err(|e| corrupt("users.twitch_user_id", e))?,
        login: get(row, at + 3, "users.login")?,
        display_name: get(row, at + 4, "users.display_name")?,
        needs_relogin: get(row, at + 7, "users.needs_relogin")?,
        created_at: get(row, at + 5, "users.created_at")?,
        updated_at: get(row, at + 6, "users.updated_at")?,
    })
}

/// The tokens in columns `at..at + 4` ([`token_columns!`]), if any.
fn tokens_at(row: &Row, at: usize) -> Result<Option<StoredTokens>, RepositoryError> {
    stored_tokens(
        get(row, at, "users.access_token")?,
        get(row, at + 1, "users.refresh_token")?,
        get(row, at + 2, "users.token_expires_at")?,
        get(row, at + 3, "users.scopes")?,
    )
}

/// Inserts a new streamer's config at version 1.
async fn insert_config(
    client: &impl GenericClient,
    streamer: StreamerId,
    config: &OverlayConfig,
    now: OffsetDateTime,
) -> Result<(), RepositoryError> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO configs (user_id, for_trigger, against_trigger, left_label, right_label, decay_speed,
                                  version, updated_at, {CONTROL_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ))
        .await
        .map_err(db_err)?;
    let c = ConfigColumns::of(config);
    client
        .execute(
            &stmt,
            &[
                &streamer.as_uuid(),
                &c.for_trigger,
                &c.against_trigger,
                &c.left_label,
                &c.right_label,
                &c.decay_speed,
                &now,
                &c.model,
                &c.match_mode,
                &c.layout,
                &c.for_color,
                &c.against_color,
                &c.scale,
                &c.font_weight,
                &c.show_labels,
                &c.show_hint,
                &c.show_voters,
                &c.celebrate,
            ],
        )
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Selects one streamer and their config; `$1` is the key in the `WHERE`.
macro_rules! setup_where {
    ($condition:literal) => {
        concat!(
            "SELECT ",
            streamer_columns!(),
            ", ",
            config_columns!(),
            " FROM users u JOIN configs c ON c.user_id = u.id WHERE ",
            $condition
        )
    };
}

/// One streamer and their config by `sql` (a [`setup_where!`] query) and
/// its key, on a pooled connection or in a transaction.
async fn setup_by(
    client: &impl GenericClient,
    sql: &str,
    key: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<Option<OverlaySetup>, RepositoryError> {
    let stmt = client.prepare_cached(sql).await.map_err(db_err)?;
    let row = client.query_opt(&stmt, &[key]).await.map_err(db_err)?;
    row.map(|row| Ok(OverlaySetup { streamer: streamer_at(&row, 0)?, config: config_at(&row, STREAMER_WIDTH)? }))
        .transpose()
}

/// A streamer and their config by our id, on a pooled connection or in a
/// transaction.
async fn setup_by_id(client: &impl GenericClient, id: StreamerId) -> Result<Option<OverlaySetup>, RepositoryError> {
    setup_by(client, setup_where!("u.id = $1"), &id.as_uuid()).await
}

/// The config in columns `at..at + 18` ([`config_columns!`]).
fn config_at(row: &Row, at: usize) -> Result<StoredConfig, RepositoryError> {
    let text = |i: usize| get::<String>(row, at + i, "configs");
    let flag = |i: usize| get::<bool>(row, at + i, "configs");
    let number = |i: usize| get::<i32>(row, at + i, "configs");
    let columns = ConfigColumns {
        for_trigger: text(0)?,
        against_trigger: text(1)?,
        left_label: text(2)?,
        right_label: text(3)?,
        decay_speed: get(row, at + 4, "configs.decay_speed")?,
        model: text(7)?,
        match_mode: text(8)?,
        layout: text(9)?,
        for_color: text(10)?,
        against_color: text(11)?,
        scale: number(12)?,
        font_weight: number(13)?,
        show_labels: flag(14)?,
        show_hint: flag(15)?,
        show_voters: flag(16)?,
        celebrate: flag(17)?,
    };
    Ok(StoredConfig {
        config: columns.parse()?,
        version: get(row, at + 5, "configs.version")?,
        updated_at: get(row, at + 6, "configs.updated_at")?,
    })
}

macro_rules! subscription_columns {
    () => {
        "subscription_id, user_id, broadcaster_user_id, type, conduit_id, status, created_at"
    };
}

/// The subscription in a row of [`subscription_columns!`].
fn subscription(row: &Row) -> Result<SubscriptionRecord, RepositoryError> {
    let broadcaster: Option<&str> = get(row, 2, "eventsub_subscriptions.broadcaster_user_id")?;
    Ok(SubscriptionRecord {
        subscription_id: get(row, 0, "eventsub_subscriptions.subscription_id")?,
        streamer: get::<Option<Uuid>>(row, 1, "eventsub_subscriptions.user_id")?.map(StreamerId::from_uuid),
        broadcaster: broadcaster
            .map(BroadcasterId::parse)
            .transpose()
            .map_err(|e| corrupt("eventsub_subscriptions.broadcaster_user_id", e))?,
        subscription_type: get(row, 3, "eventsub_subscriptions.type")?,
        conduit_id: get(row, 4, "eventsub_subscriptions.conduit_id")?,
        status: get(row, 5, "eventsub_subscriptions.status")?,
        created_at: get(row, 6, "eventsub_subscriptions.created_at")?,
    })
}

mod api_tokens;
mod history;
mod repository;
