//! SQLite repository for the embedded shape.
//!
//! One connection behind a mutex, used from blocking threads. The database is
//! in WAL mode with a busy timeout, so the CLI (`chatpulse streamers …`) can
//! write while the server runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    BotAccount, CONTROL_COLUMNS, ConfigColumns, NewStreamer, OverlaySetup, Repository, RepositoryError, StoredConfig,
    StoredTokens, Streamer, SubscriptionRecord, parse_scopes, scopes_column, stored_tokens,
};
use crate::domain::history::{
    ActionOutcome, HistoryBucket, HistoryDeleted, Moment, MomentAction, MomentFilter, MomentId, Page, Paged, StreamEnd,
    StreamId, StreamOpened, StreamRecord,
};
use crate::domain::{BroadcasterId, OverlayConfig, OverlayId, StreamerId};

mod api_tokens;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}
mod history;
mod repository;

pub const DATABASE_FILE: &str = "chatpulse.db";

#[derive(Clone)]
pub struct SqliteRepository {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteRepository {
    /// Opens (creating if needed) `DATA_DIR/chatpulse.db` and applies pending
    /// migrations.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create DATA_DIR {}", data_dir.display()))?;
        let path = data_dir.join(DATABASE_FILE);
        let mut conn = Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&mut conn, &lock_path(data_dir))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, RepositoryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, RepositoryError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| RepositoryError::Unavailable(anyhow::anyhow!("database task failed: {e}")))?
    }
}

fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join(format!("{DATABASE_FILE}.migrate-lock"))
}

/// Applies migrations while holding an exclusive file lock, so a server and a
/// CLI command starting at the same moment do not both try to create tables.
fn migrate(conn: &mut Connection, lock_path: &Path) -> anyhow::Result<()> {
    let lock = File::create(lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock().context("cannot lock the migration lock file")?;
    let report = embedded::migrations::runner().run(conn).context("SQLite migrations failed");
    // Dropping the file releases the lock.
    drop(lock);
    for m in report?.applied_migrations() {
        tracing::info!(migration = %m, "applied SQLite migration");
    }
    Ok(())
}

fn db_err(e: rusqlite::Error) -> RepositoryError {
    if let rusqlite::Error::SqliteFailure(code, _) = &e
        && code.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return RepositoryError::Conflict("a row with this key");
    }
    RepositoryError::Unavailable(anyhow::Error::new(e).context("SQLite query failed"))
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_ms(ms: i64) -> Result<OffsetDateTime, RepositoryError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| RepositoryError::Corrupt(format!("timestamp {ms}: {e}")))
}

/// Whole milliseconds, rounded down (also before 1970), as PostgreSQL's
/// adapter truncates.
fn to_ms(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos().div_euclid(1_000_000) as i64
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Corrupt(format!("{what}: {e}"))
}

const STREAMER_COLUMNS: &str =
    "u.id, u.overlay_uuid, u.twitch_user_id, u.login, u.display_name, u.created_at, u.updated_at, u.needs_relogin";
/// How many columns [`STREAMER_COLUMNS`] has (where the config columns start).
const STREAMER_WIDTH: usize = 8;
const CONFIG_COLUMNS: &str = "c.for_trigger, c.against_trigger, c.left_label, c.right_label, c.decay_speed, \
                              c.version, c.updated_at, c.model, c.match_mode, c.layout, c.for_color, c.against_color, \
                              c.scale, c.font_weight, c.show_labels, c.show_hint, c.show_voters, c.celebrate";

/// Raw columns of a streamer row, converted outside rusqlite's row closure so
/// that invalid stored data becomes a `Corrupt` error instead of a panic.
struct StreamerRow(String, String, String, String, String, i64, i64, bool);

impl StreamerRow {
    fn read(row: &Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(Self(
            row.get(at)?,
            row.get(at + 1)?,
            row.get(at + 2)?,
            row.get(at + 3)?,
            row.get(at + 4)?,
            row.get(at + 5)?,
            row.get(at + 6)?,
            row.get(at + 7)?,
        ))
    }

    fn parse(self) -> Result<Streamer, RepositoryError> {
        Ok(Streamer {
            id: StreamerId::from_uuid(Uuid::parse_str(&self.0).map_err(|e| corrupt("users.id", e))?),
            overlay_id: self.1.parse().map_err(|e| corrupt("users.overlay_uuid", e))?,
            twitch_user_id: BroadcasterId::parse(&self.2).map_err(|e| corrupt("users.twitch_user_id", e))?,
            login: self.3,
            display_name: self.4,
            needs_relogin: self.7,
            created_at: from_ms(self.5)?,
            updated_at: from_ms(self.6)?,
        })
    }
}

/// Raw columns of a config row ([`CONFIG_COLUMNS`]), parsed outside the row
/// closure.
struct ConfigRow {
    columns: ConfigColumns,
    version: i64,
    updated_at: i64,
}

impl ConfigRow {
    fn read(row: &Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            columns: ConfigColumns {
                for_trigger: row.get(at)?,
                against_trigger: row.get(at + 1)?,
                left_label: row.get(at + 2)?,
                right_label: row.get(at + 3)?,
                decay_speed: row.get(at + 4)?,
                model: row.get(at + 7)?,
                match_mode: row.get(at + 8)?,
                layout: row.get(at + 9)?,
                for_color: row.get(at + 10)?,
                against_color: row.get(at + 11)?,
                scale: row.get(at + 12)?,
                font_weight: row.get(at + 13)?,
                show_labels: row.get(at + 14)?,
                show_hint: row.get(at + 15)?,
                show_voters: row.get(at + 16)?,
                celebrate: row.get(at + 17)?,
            },
            version: row.get(at + 5)?,
            updated_at: row.get(at + 6)?,
        })
    }

    fn parse(self) -> Result<StoredConfig, RepositoryError> {
        Ok(StoredConfig { config: self.columns.parse()?, version: self.version, updated_at: from_ms(self.updated_at)? })
    }
}

const TOKEN_COLUMNS: &str = "access_token, refresh_token, token_expires_at, scopes";

/// Raw token columns ([`TOKEN_COLUMNS`]), parsed outside the row closure.
struct TokenRow(Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>, String);

impl TokenRow {
    fn read(row: &Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(Self(row.get(at)?, row.get(at + 1)?, row.get(at + 2)?, row.get(at + 3)?))
    }

    fn parse(self) -> Result<Option<StoredTokens>, RepositoryError> {
        stored_tokens(self.0, self.1, self.2.map(from_ms).transpose()?, &self.3)
    }
}

const SUBSCRIPTION_COLUMNS: &str =
    "subscription_id, user_id, broadcaster_user_id, type, conduit_id, status, created_at";

/// Raw columns of a subscription row ([`SUBSCRIPTION_COLUMNS`]), parsed
/// outside the row closure.
struct SubscriptionRow(String, Option<String>, Option<String>, String, Option<String>, String, i64);

impl SubscriptionRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?))
    }

    fn parse(self) -> Result<SubscriptionRecord, RepositoryError> {
        let streamer = self
            .1
            .map(|u| Uuid::parse_str(&u).map(StreamerId::from_uuid))
            .transpose()
            .map_err(|e| corrupt("eventsub_subscriptions.user_id", e))?;
        let broadcaster = self
            .2
            .map(|b| BroadcasterId::parse(&b))
            .transpose()
            .map_err(|e| corrupt("eventsub_subscriptions.broadcaster_user_id", e))?;
        Ok(SubscriptionRecord {
            streamer,
            broadcaster,
            subscription_type: self.3,
            subscription_id: self.0,
            conduit_id: self.4,
            status: self.5,
            created_at: from_ms(self.6)?,
        })
    }
}

/// A streamer and their config by our id.
fn setup_by_id(conn: &Connection, id: &str) -> Result<Option<OverlaySetup>, RepositoryError> {
    let sql = format!(
        "SELECT {STREAMER_COLUMNS}, {CONFIG_COLUMNS} FROM users u JOIN configs c ON c.user_id = u.id WHERE u.id = ?1"
    );
    let row = conn
        .query_row(&sql, [id], |r| Ok((StreamerRow::read(r, 0)?, ConfigRow::read(r, STREAMER_WIDTH)?)))
        .optional()
        .map_err(db_err)?;
    row.map(|(s, c)| Ok(OverlaySetup { streamer: s.parse()?, config: c.parse()? })).transpose()
}

/// Runs an `UPDATE … WHERE id = ?1` on one streamer's row; `NotFound` if
/// there is no such streamer.
fn update_streamer(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<(), RepositoryError> {
    match conn.execute(sql, params).map_err(db_err)? {
        0 => Err(RepositoryError::NotFound("streamer")),
        _ => Ok(()),
    }
}

fn insert_config(conn: &Connection, user_id: &str, c: &OverlayConfig, now: i64) -> rusqlite::Result<usize> {
    let c = ConfigColumns::of(c);
    conn.execute(
        &format!(
            "INSERT INTO configs (user_id, for_trigger, against_trigger, left_label, right_label, decay_speed,
                                  version, updated_at, {CONTROL_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
        ),
        params![
            user_id,
            c.for_trigger,
            c.against_trigger,
            c.left_label,
            c.right_label,
            c.decay_speed,
            now,
            c.model,
            c.match_mode,
            c.layout,
            c.for_color,
            c.against_color,
            c.scale,
            c.font_weight,
            c.show_labels,
            c.show_hint,
            c.show_voters,
            c.celebrate
        ],
    )
}
