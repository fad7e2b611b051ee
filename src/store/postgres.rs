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

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
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

#[async_trait]
impl Repository for PostgresRepository {
    async fn create_streamer(&self, new: &NewStreamer) -> Result<OverlaySetup, RepositoryError> {
        self.call("create_streamer", async {
            let now = whole_ms(OffsetDateTime::now_utc());
            let streamer = Streamer {
                id: StreamerId::generate(),
                overlay_id: OverlayId::random(),
                twitch_user_id: new.twitch_user_id.clone(),
                login: new.login.clone(),
                display_name: new.display_name.clone(),
                needs_relogin: false,
                created_at: now,
                updated_at: now,
            };
            let config = OverlayConfig::default();
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await.map_err(db_err)?;
            let insert_user = tx
                .prepare_cached(
                    "INSERT INTO users (id, overlay_uuid, twitch_user_id, login, display_name, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .await
                .map_err(db_err)?;
            tx.execute(
                &insert_user,
                &[
                    &streamer.id.as_uuid(),
                    &streamer.overlay_id.as_uuid(),
                    &streamer.twitch_user_id.as_str(),
                    &streamer.login,
                    &streamer.display_name,
                    &now,
                ],
            )
            .await
            .map_err(|e| match db_err(e) {
                RepositoryError::Conflict(_) => RepositoryError::Conflict("a streamer with this Twitch user id"),
                other => other,
            })?;
            insert_config(&tx, streamer.id, &config, now).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(OverlaySetup { streamer, config: StoredConfig { config, version: 1, updated_at: now } })
        })
        .await
    }

    async fn list_streamers(&self) -> Result<Vec<Streamer>, RepositoryError> {
        self.call("list_streamers", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(concat!("SELECT ", streamer_columns!(), " FROM users u ORDER BY u.created_at, u.id"))
                .await
                .map_err(db_err)?;
            let rows = conn.query(&stmt, &[]).await.map_err(db_err)?;
            rows.iter().map(|row| streamer_at(row, 0)).collect()
        })
        .await
    }

    async fn remove_streamer(&self, twitch_user_id: &BroadcasterId) -> Result<bool, RepositoryError> {
        self.call("remove_streamer", async {
            let conn = self.conn().await?;
            let stmt = conn.prepare_cached("DELETE FROM users WHERE twitch_user_id = $1").await.map_err(db_err)?;
            let n = conn.execute(&stmt, &[&twitch_user_id.as_str()]).await.map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn overlay_setup(&self, overlay: OverlayId) -> Result<Option<OverlaySetup>, RepositoryError> {
        self.call("overlay_setup", async {
            let conn = self.conn().await?;
            setup_by(&conn, setup_where!("u.overlay_uuid = $1"), &overlay.as_uuid()).await
        })
        .await
    }

    async fn config_versions(&self, overlays: &[OverlayId]) -> Result<HashMap<OverlayId, i64>, RepositoryError> {
        self.call("config_versions", async {
            if overlays.is_empty() {
                return Ok(HashMap::new());
            }
            let wanted: Vec<Uuid> = overlays.iter().map(OverlayId::as_uuid).collect();
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "SELECT u.overlay_uuid, c.version FROM users u JOIN configs c ON c.user_id = u.id
                     WHERE u.overlay_uuid = ANY($1)",
                )
                .await
                .map_err(db_err)?;
            let rows = conn.query(&stmt, &[&wanted]).await.map_err(db_err)?;
            rows.iter()
                .map(|row| Ok((overlay_id(get(row, 0, "users.overlay_uuid")?)?, get(row, 1, "configs.version")?)))
                .collect()
        })
        .await
    }

    async fn save_config(&self, streamer: StreamerId, config: &OverlayConfig) -> Result<StoredConfig, RepositoryError> {
        self.call("save_config", async {
            let now = whole_ms(OffsetDateTime::now_utc());
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "UPDATE configs SET for_trigger = $2, against_trigger = $3, left_label = $4, right_label = $5,
                            decay_speed = $6, version = version + 1, updated_at = $7, model = $8, match_mode = $9,
                            layout = $10, for_color = $11, against_color = $12, scale = $13, font_weight = $14,
                            show_labels = $15, show_hint = $16, show_voters = $17, celebrate = $18
                     WHERE user_id = $1 RETURNING version",
                )
                .await
                .map_err(db_err)?;
            let c = ConfigColumns::of(config);
            let row = conn
                .query_opt(
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
            let row = row.ok_or(RepositoryError::NotFound("config of this streamer"))?;
            Ok(StoredConfig { config: config.clone(), version: get(&row, 0, "configs.version")?, updated_at: now })
        })
        .await
    }

    async fn upsert_subscription(&self, r: &SubscriptionRecord) -> Result<(), RepositoryError> {
        self.call("upsert_subscription", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "INSERT INTO eventsub_subscriptions
                        (subscription_id, user_id, broadcaster_user_id, type, conduit_id, status, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (subscription_id) DO UPDATE SET status = excluded.status",
                )
                .await
                .map_err(db_err)?;
            conn.execute(
                &stmt,
                &[
                    &r.subscription_id,
                    &r.streamer.map(|s| s.as_uuid()),
                    &r.broadcaster.as_ref().map(BroadcasterId::as_str),
                    &r.subscription_type,
                    &r.conduit_id,
                    &r.status,
                    &whole_ms(r.created_at),
                ],
            )
            .await
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, RepositoryError> {
        self.call("subscriptions", async {
            let conn = self.conn().await?;
            // `COLLATE "C"`: byte order, as SQLite sorts text, whatever the
            // database's default collation.
            let stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    subscription_columns!(),
                    " FROM eventsub_subscriptions ORDER BY created_at, subscription_id COLLATE \"C\""
                ))
                .await
                .map_err(db_err)?;
            let rows = conn.query(&stmt, &[]).await.map_err(db_err)?;
            rows.iter().map(subscription).collect()
        })
        .await
    }

    async fn subscriptions_of(&self, broadcaster: &BroadcasterId) -> Result<Vec<SubscriptionRecord>, RepositoryError> {
        self.call("subscriptions_of", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    subscription_columns!(),
                    " FROM eventsub_subscriptions WHERE broadcaster_user_id = $1
                     ORDER BY created_at, subscription_id COLLATE \"C\""
                ))
                .await
                .map_err(db_err)?;
            let rows = conn.query(&stmt, &[&broadcaster.as_str()]).await.map_err(db_err)?;
            rows.iter().map(subscription).collect()
        })
        .await
    }

    async fn delete_subscription(&self, subscription_id: &str) -> Result<bool, RepositoryError> {
        self.call("delete_subscription", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached("DELETE FROM eventsub_subscriptions WHERE subscription_id = $1")
                .await
                .map_err(db_err)?;
            let n = conn.execute(&stmt, &[&subscription_id]).await.map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn conduit(&self, client_id: &str) -> Result<Option<String>, RepositoryError> {
        self.call("conduit", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached("SELECT conduit_id FROM eventsub_conduits WHERE client_id = $1")
                .await
                .map_err(db_err)?;
            let row = conn.query_opt(&stmt, &[&client_id]).await.map_err(db_err)?;
            row.map(|row| get(&row, 0, "eventsub_conduits.conduit_id")).transpose()
        })
        .await
    }

    async fn save_conduit(&self, client_id: &str, conduit_id: &str) -> Result<(), RepositoryError> {
        self.call("save_conduit", async {
            let now = whole_ms(OffsetDateTime::now_utc());
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "INSERT INTO eventsub_conduits (client_id, conduit_id, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (client_id) DO UPDATE SET
                        shard_fingerprint = CASE WHEN eventsub_conduits.conduit_id = excluded.conduit_id
                                                 THEN eventsub_conduits.shard_fingerprint END,
                        conduit_id = excluded.conduit_id, updated_at = excluded.updated_at",
                )
                .await
                .map_err(db_err)?;
            conn.execute(&stmt, &[&client_id, &conduit_id, &now]).await.map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn shard_fingerprint(&self, client_id: &str) -> Result<Option<String>, RepositoryError> {
        self.call("shard_fingerprint", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached("SELECT shard_fingerprint FROM eventsub_conduits WHERE client_id = $1")
                .await
                .map_err(db_err)?;
            let row = conn.query_opt(&stmt, &[&client_id]).await.map_err(db_err)?;
            let fingerprint: Option<Option<String>> =
                row.map(|row| get(&row, 0, "eventsub_conduits.shard_fingerprint")).transpose()?;
            Ok(fingerprint.flatten())
        })
        .await
    }

    async fn save_shard_fingerprint(&self, client_id: &str, fingerprint: &str) -> Result<bool, RepositoryError> {
        self.call("save_shard_fingerprint", async {
            let now = whole_ms(OffsetDateTime::now_utc());
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "UPDATE eventsub_conduits SET shard_fingerprint = $2, updated_at = $3 WHERE client_id = $1",
                )
                .await
                .map_err(db_err)?;
            let n = conn.execute(&stmt, &[&client_id, &fingerprint, &now]).await.map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn set_subscription_status(&self, subscription_id: &str, status: &str) -> Result<bool, RepositoryError> {
        self.call("set_subscription_status", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached("UPDATE eventsub_subscriptions SET status = $2 WHERE subscription_id = $1")
                .await
                .map_err(db_err)?;
            let n = conn.execute(&stmt, &[&subscription_id, &status]).await.map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn ping(&self) -> Result<(), RepositoryError> {
        self.call("ping", async {
            let conn = self.conn().await?;
            let stmt = conn.prepare_cached("SELECT 1").await.map_err(db_err)?;
            conn.query_one(&stmt, &[]).await.map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn record_login(
        &self,
        profile: &NewStreamer,
        tokens: &StoredTokens,
    ) -> Result<(OverlaySetup, bool), RepositoryError> {
        self.call("record_login", async {
            let now = whole_ms(OffsetDateTime::now_utc());
            let fresh_id = StreamerId::generate().as_uuid();
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await.map_err(db_err)?;
            // The id that comes back is the fresh one only if the row is new.
            // A concurrent first login of the same user waits on the unique
            // index and then takes the update branch.
            let upsert = tx
                .prepare_cached(
                    "INSERT INTO users (id, overlay_uuid, twitch_user_id, login, display_name, access_token,
                                        refresh_token, token_expires_at, scopes, needs_relogin, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false, $10, $10)
                     ON CONFLICT (twitch_user_id) DO UPDATE SET
                        login = excluded.login, display_name = excluded.display_name,
                        access_token = excluded.access_token, refresh_token = excluded.refresh_token,
                        token_expires_at = excluded.token_expires_at, scopes = excluded.scopes,
                        needs_relogin = false, updated_at = excluded.updated_at
                     RETURNING id",
                )
                .await
                .map_err(db_err)?;
            let row = tx
                .query_one(
                    &upsert,
                    &[
                        &fresh_id,
                        &OverlayId::random().as_uuid(),
                        &profile.twitch_user_id.as_str(),
                        &profile.login,
                        &profile.display_name,
                        &tokens.access_token,
                        &tokens.refresh_token,
                        &whole_ms(tokens.expires_at),
                        &scopes_column(&tokens.scopes),
                        &now,
                    ],
                )
                .await
                .map_err(db_err)?;
            let id: Uuid = get(&row, 0, "users.id")?;
            let created = id == fresh_id;
            let id = StreamerId::from_uuid(id);
            if created {
                insert_config(&tx, id, &OverlayConfig::default(), now).await?;
            }
            let setup = setup_by_id(&tx, id)
                .await?
                .ok_or_else(|| RepositoryError::Corrupt(format!("streamer {id} has no config")))?;
            tx.commit().await.map_err(db_err)?;
            Ok((setup, created))
        })
        .await
    }

    async fn streamer(&self, id: StreamerId) -> Result<Option<OverlaySetup>, RepositoryError> {
        self.call("streamer", async {
            let conn = self.conn().await?;
            setup_by_id(&conn, id).await
        })
        .await
    }

    async fn streamer_by_twitch_id(
        &self,
        twitch_user_id: &BroadcasterId,
    ) -> Result<Option<OverlaySetup>, RepositoryError> {
        self.call("streamer_by_twitch_id", async {
            let conn = self.conn().await?;
            setup_by(&conn, setup_where!("u.twitch_user_id = $1"), &twitch_user_id.as_str()).await
        })
        .await
    }

    async fn rotate_overlay(&self, id: StreamerId) -> Result<OverlayId, RepositoryError> {
        self.call("rotate_overlay", async {
            let overlay = OverlayId::random();
            let now = whole_ms(OffsetDateTime::now_utc());
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached("UPDATE users SET overlay_uuid = $2, updated_at = $3 WHERE id = $1")
                .await
                .map_err(db_err)?;
            match conn.execute(&stmt, &[&id.as_uuid(), &overlay.as_uuid(), &now]).await.map_err(db_err)? {
                0 => Err(RepositoryError::NotFound("streamer")),
                _ => Ok(overlay),
            }
        })
        .await
    }

    async fn tokens(&self, id: StreamerId) -> Result<Option<StoredTokens>, RepositoryError> {
        self.call("tokens", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(concat!("SELECT ", token_columns!(), " FROM users u WHERE u.id = $1"))
                .await
                .map_err(db_err)?;
            let row = conn.query_opt(&stmt, &[&id.as_uuid()]).await.map_err(db_err)?;
            Ok(row.map(|row| tokens_at(&row, 0)).transpose()?.flatten())
        })
        .await
    }

    async fn set_tokens(&self, id: StreamerId, tokens: &StoredTokens) -> Result<(), RepositoryError> {
        self.call("set_tokens", async {
            let now = whole_ms(OffsetDateTime::now_utc());
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "UPDATE users SET access_token = $2, refresh_token = $3, token_expires_at = $4, scopes = $5,
                            updated_at = $6
                     WHERE id = $1",
                )
                .await
                .map_err(db_err)?;
            let n = conn
                .execute(
                    &stmt,
                    &[
                        &id.as_uuid(),
                        &tokens.access_token,
                        &tokens.refresh_token,
                        &whole_ms(tokens.expires_at),
                        &scopes_column(&tokens.scopes),
                        &now,
                    ],
                )
                .await
                .map_err(db_err)?;
            match n {
                0 => Err(RepositoryError::NotFound("streamer")),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn clear_tokens(&self, id: StreamerId, needs_relogin: bool) -> Result<(), RepositoryError> {
        self.call("clear_tokens", async {
            let now = whole_ms(OffsetDateTime::now_utc());
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "UPDATE users SET access_token = NULL, refresh_token = NULL, token_expires_at = NULL, scopes = '',
                            needs_relogin = $2, updated_at = $3
                     WHERE id = $1",
                )
                .await
                .map_err(db_err)?;
            match conn.execute(&stmt, &[&id.as_uuid(), &needs_relogin, &now]).await.map_err(db_err)? {
                0 => Err(RepositoryError::NotFound("streamer")),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn streamers_with_tokens(&self) -> Result<Vec<(StreamerId, BroadcasterId, StoredTokens)>, RepositoryError> {
        self.call("streamers_with_tokens", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(concat!(
                    "SELECT u.id, u.twitch_user_id, ",
                    token_columns!(),
                    " FROM users u WHERE u.access_token IS NOT NULL ORDER BY u.created_at, u.id"
                ))
                .await
                .map_err(db_err)?;
            let rows = conn.query(&stmt, &[]).await.map_err(db_err)?;
            rows.iter()
                .map(|row| {
                    let twitch_user_id: &str = get(row, 1, "users.twitch_user_id")?;
                    let tokens = tokens_at(row, 2)?.ok_or_else(|| corrupt("users", "access token without the rest"))?;
                    Ok((
                        StreamerId::from_uuid(get(row, 0, "users.id")?),
                        BroadcasterId::parse(twitch_user_id).map_err(|e| corrupt("users.twitch_user_id", e))?,
                        tokens,
                    ))
                })
                .collect()
        })
        .await
    }

    async fn save_bot(&self, bot: &BotAccount) -> Result<(), RepositoryError> {
        self.call("save_bot", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "INSERT INTO bot_account (id, twitch_user_id, login, access_token, refresh_token,
                                              token_expires_at, scopes, updated_at)
                     VALUES (1, $1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (id) DO UPDATE SET
                        twitch_user_id = excluded.twitch_user_id, login = excluded.login,
                        access_token = excluded.access_token, refresh_token = excluded.refresh_token,
                        token_expires_at = excluded.token_expires_at, scopes = excluded.scopes,
                        updated_at = excluded.updated_at",
                )
                .await
                .map_err(db_err)?;
            conn.execute(
                &stmt,
                &[
                    &bot.twitch_user_id.as_str(),
                    &bot.login,
                    &bot.tokens.access_token,
                    &bot.tokens.refresh_token,
                    &whole_ms(bot.tokens.expires_at),
                    &scopes_column(&bot.tokens.scopes),
                    &whole_ms(bot.updated_at),
                ],
            )
            .await
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn bot(&self) -> Result<Option<BotAccount>, RepositoryError> {
        self.call("bot", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "SELECT twitch_user_id, login, access_token, refresh_token, token_expires_at, scopes, updated_at
                     FROM bot_account WHERE id = 1",
                )
                .await
                .map_err(db_err)?;
            let row = conn.query_opt(&stmt, &[]).await.map_err(db_err)?;
            row.map(|row| {
                let twitch_user_id: &str = get(&row, 0, "bot_account.twitch_user_id")?;
                let scopes: &str = get(&row, 5, "bot_account.scopes")?;
                Ok(BotAccount {
                    twitch_user_id: BroadcasterId::parse(twitch_user_id)
                        .map_err(|e| corrupt("bot_account.twitch_user_id", e))?,
                    login: get(&row, 1, "bot_account.login")?,
                    tokens: StoredTokens {
                        access_token: get(&row, 2, "bot_account.access_token")?,
                        refresh_token: get(&row, 3, "bot_account.refresh_token")?,
                        expires_at: get(&row, 4, "bot_account.token_expires_at")?,
                        scopes: parse_scopes(scopes),
                    },
                    updated_at: get(&row, 6, "bot_account.updated_at")?,
                })
            })
            .transpose()
        })
        .await
    }
}
