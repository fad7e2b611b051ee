//! Stream history on SQLite (migration V6): streams, history buckets and
//! moments, mirroring the PostgreSQL adapter. Each function runs on the
//! connection, on the blocking thread of [`SqliteRepository::with_conn`](super::SqliteRepository).

use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{corrupt, db_err, from_ms, to_ms};
use crate::domain::history::{
    ActionOutcome, BUCKET_MS, HistoryBucket, HistoryDeleted, Moment, MomentAction, MomentFilter, MomentId, MomentKind,
    Page, Paged, StreamEnd, StreamId, StreamOpened, StreamRecord,
};
use crate::domain::{BroadcasterId, StreamerId};
use crate::store::{RepositoryError, action_outcome, count_column, parse_count, parse_detail};

const STREAM_COLUMNS: &str = "s.id, s.user_id, s.twitch_stream_id, s.started_at, s.ended_at, s.ended_by";
const BUCKET_COLUMNS: &str = "user_id, stream_id, bucket_start, value_open, value_close, value_min, value_max, \
                              votes_for, votes_against, voters";
const MOMENT_COLUMNS: &str = "id, user_id, stream_id, at, kind, detail, marker_status, marker_id, marker_error, \
                              clip_status, clip_id, clip_error";

fn uuid(column: &str, raw: &str) -> Result<Uuid, RepositoryError> {
    Uuid::parse_str(raw).map_err(|e| corrupt(column, e))
}

/// Raw columns of a stream row ([`STREAM_COLUMNS`]).
struct StreamRow(String, String, Option<String>, i64, Option<i64>, Option<String>);

impl StreamRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
    }

    fn parse(self) -> Result<StreamRecord, RepositoryError> {
        Ok(StreamRecord {
            id: StreamId::from_uuid(uuid("streams.id", &self.0)?),
            streamer: StreamerId::from_uuid(uuid("streams.user_id", &self.1)?),
            twitch_stream_id: self.2,
            started_at: from_ms(self.3)?,
            ended_at: self.4.map(from_ms).transpose()?,
            ended_by: self
                .5
                .as_deref()
                .map(StreamEnd::parse)
                .transpose()
                .map_err(|e| corrupt("streams.ended_by", e))?,
        })
    }
}

/// Raw columns of a bucket row ([`BUCKET_COLUMNS`]).
struct BucketRow(String, Option<String>, i64, [f64; 4], [i64; 3]);

impl BucketRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self(
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            [row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?],
            [row.get(7)?, row.get(8)?, row.get(9)?],
        ))
    }

    fn parse(self) -> Result<HistoryBucket, RepositoryError> {
        let [value_open, value_close, value_min, value_max] = self.3;
        let [votes_for, votes_against, voters] = self.4;
        Ok(HistoryBucket {
            streamer: StreamerId::from_uuid(uuid("history_buckets.user_id", &self.0)?),
            stream: self.1.map(|s| uuid("history_buckets.stream_id", &s).map(StreamId::from_uuid)).transpose()?,
            start: from_ms(self.2)?,
            value_open,
            value_close,
            value_min,
            value_max,
            votes_for: parse_count("history_buckets.votes_for", votes_for)?,
            votes_against: parse_count("history_buckets.votes_against", votes_against)?,
            voters: parse_count("history_buckets.voters", voters)?,
        })
    }
}

/// Raw columns of a moment row ([`MOMENT_COLUMNS`]).
struct MomentRow {
    ids: [Option<String>; 3],
    at: i64,
    kind: String,
    detail: String,
    marker: (String, Option<String>, Option<String>),
    clip: (String, Option<String>, Option<String>),
}

impl MomentRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            ids: [Some(row.get(0)?), Some(row.get(1)?), row.get(2)?],
            at: row.get(3)?,
            kind: row.get(4)?,
            detail: row.get(5)?,
            marker: (row.get(6)?, row.get(7)?, row.get(8)?),
            clip: (row.get(9)?, row.get(10)?, row.get(11)?),
        })
    }

    fn parse(self) -> Result<Moment, RepositoryError> {
        let [id, user, stream] = self.ids;
        let kind = MomentKind::parse(&self.kind).map_err(|e| corrupt("moments.kind", e))?;
        let detail: serde_json::Value = serde_json::from_str(&self.detail).map_err(|e| corrupt("moments.detail", e))?;
        Ok(Moment {
            id: MomentId::from_uuid(uuid("moments.id", id.as_deref().unwrap_or_default())?),
            streamer: StreamerId::from_uuid(uuid("moments.user_id", user.as_deref().unwrap_or_default())?),
            stream: stream.map(|s| uuid("moments.stream_id", &s).map(StreamId::from_uuid)).transpose()?,
            at: from_ms(self.at)?,
            kind,
            detail: parse_detail(kind, detail)?,
            marker: action_outcome(&self.marker.0, self.marker.1, self.marker.2)?,
            clip: action_outcome(&self.clip.0, self.clip.1, self.clip.2)?,
        })
    }
}

fn stream_where(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Option<StreamRecord>, RepositoryError> {
    let sql = format!("SELECT {STREAM_COLUMNS} FROM streams s WHERE {condition}");
    conn.query_row(&sql, params, StreamRow::read).optional().map_err(db_err)?.map(StreamRow::parse).transpose()
}

fn close(
    conn: &Connection,
    id: StreamId,
    ended_at: i64,
    ended_by: StreamEnd,
) -> Result<Option<StreamRecord>, RepositoryError> {
    let sql = "UPDATE streams SET ended_at = MAX(started_at, ?2), ended_by = ?3 WHERE id = ?1 AND ended_at IS NULL";
    conn.execute(sql, params![id.to_string(), ended_at, ended_by.as_str()]).map_err(db_err)?;
    stream_where(conn, "s.id = ?1", [id.to_string()])
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn open_stream(
    conn: &mut Connection,
    streamer: StreamerId,
    twitch_stream_id: Option<&str>,
    started_at: OffsetDateTime,
) -> Result<StreamOpened, RepositoryError> {
    let started_at = to_ms(started_at);
    let user = streamer.to_string();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_err)?;
    let known: Option<i64> =
        tx.query_row("SELECT 1 FROM users WHERE id = ?1", [&user], |r| r.get(0)).optional().map_err(db_err)?;
    if known.is_none() {
        return Err(RepositoryError::NotFound("streamer"));
    }
    if let Some(twitch_id) = twitch_stream_id
        && let Some(stream) = stream_where(&tx, "s.user_id = ?1 AND s.twitch_stream_id = ?2", params![user, twitch_id])?
    {
        return Ok(StreamOpened { stream, created: false, closed: None });
    }
    let mut closed = None;
    if let Some(open) = stream_where(&tx, "s.user_id = ?1 AND s.ended_at IS NULL", [&user])? {
        if twitch_stream_id.is_none() {
            return Ok(StreamOpened { stream: open, created: false, closed: None });
        }
        closed = close(&tx, open.id, started_at, StreamEnd::Reconciliation)?;
    }
    let stream = StreamRecord {
        id: StreamId::generate(),
        streamer,
        twitch_stream_id: twitch_stream_id.map(str::to_owned),
        started_at: from_ms(started_at)?,
        ended_at: None,
        ended_by: None,
    };
    tx.execute(
        "INSERT INTO streams (id, user_id, twitch_stream_id, started_at) VALUES (?1, ?2, ?3, ?4)",
        params![stream.id.to_string(), user, stream.twitch_stream_id, started_at],
    )
    .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    Ok(StreamOpened { stream, created: true, closed })
}

pub(super) fn close_stream(
    conn: &mut Connection,
    streamer: StreamerId,
    ended_at: OffsetDateTime,
    ended_by: StreamEnd,
) -> Result<Option<StreamRecord>, RepositoryError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_err)?;
    let Some(open) = stream_where(&tx, "s.user_id = ?1 AND s.ended_at IS NULL", [streamer.to_string()])? else {
        return Ok(None);
    };
    let closed = close(&tx, open.id, to_ms(ended_at), ended_by)?;
    tx.commit().map_err(db_err)?;
    Ok(closed)
}

pub(super) fn open_streams(conn: &mut Connection) -> Result<Vec<(StreamRecord, BroadcasterId)>, RepositoryError> {
    let sql = format!(
        "SELECT {STREAM_COLUMNS}, u.twitch_user_id FROM streams s JOIN users u ON u.id = s.user_id
         WHERE s.ended_at IS NULL ORDER BY s.started_at, s.id"
    );
    let mut stmt = conn.prepare(&sql).map_err(db_err)?;
    let rows = stmt.query_map([], |r| Ok((StreamRow::read(r)?, r.get::<_, String>(6)?))).map_err(db_err)?;
    rows.map(|row| {
        let (stream, twitch) = row.map_err(db_err)?;
        let broadcaster = BroadcasterId::parse(&twitch).map_err(|e| corrupt("users.twitch_user_id", e))?;
        Ok((stream.parse()?, broadcaster))
    })
    .collect()
}

pub(super) fn streams_of(
    conn: &mut Connection,
    streamer: StreamerId,
    page: Page,
) -> Result<Paged<StreamRecord>, RepositoryError> {
    let user = streamer.to_string();
    let sql = format!(
        "SELECT {STREAM_COLUMNS} FROM streams s WHERE s.user_id = ?1 ORDER BY s.started_at DESC, s.id DESC LIMIT ?2 OFFSET ?3"
    );
    let mut stmt = conn.prepare(&sql).map_err(db_err)?;
    let rows = stmt.query_map(params![user, page.limit(), to_i64(page.offset())], StreamRow::read).map_err(db_err)?;
    let items = rows.map(|r| r.map_err(db_err)?.parse()).collect::<Result<Vec<_>, _>>()?;
    let total: i64 =
        conn.query_row("SELECT count(*) FROM streams WHERE user_id = ?1", [&user], |r| r.get(0)).map_err(db_err)?;
    Ok(Paged { items, total: u64::try_from(total).unwrap_or(0) })
}

pub(super) fn stream(
    conn: &mut Connection,
    streamer: StreamerId,
    id: StreamId,
) -> Result<Option<StreamRecord>, RepositoryError> {
    stream_where(conn, "s.id = ?1 AND s.user_id = ?2", params![id.to_string(), streamer.to_string()])
}

pub(super) fn save_buckets(conn: &mut Connection, buckets: &[HistoryBucket]) -> Result<u64, RepositoryError> {
    if buckets.is_empty() {
        return Ok(0);
    }
    let tx = conn.transaction().map_err(db_err)?;
    let mut written = 0u64;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO history_buckets (user_id, bucket_start, stream_id, value_open, value_close,
                                                        value_min, value_max, votes_for, votes_against, voters)
                 SELECT ?1, ?2,
                        CASE WHEN ?3 IS NOT NULL THEN
                            (SELECT s.id FROM streams s WHERE s.id = ?3 AND s.user_id = ?1)
                        ELSE
                            (SELECT s.id FROM streams s
                             WHERE s.user_id = ?1 AND s.started_at < ?2 + ?11
                               AND (s.ended_at IS NULL OR s.ended_at > ?2)
                             ORDER BY s.started_at DESC LIMIT 1)
                        END,
                        ?4, ?5, ?6, ?7, ?8, ?9, ?10
                 WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = ?1)",
            )
            .map_err(db_err)?;
        for b in buckets {
            let n = stmt
                .execute(params![
                    b.streamer.to_string(),
                    to_ms(b.start),
                    b.stream.map(|s| s.to_string()),
                    b.value_open,
                    b.value_close,
                    b.value_min,
                    b.value_max,
                    count_column(b.votes_for),
                    count_column(b.votes_against),
                    count_column(b.voters),
                    BUCKET_MS,
                ])
                .map_err(db_err)?;
            written += n as u64;
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(written)
}

fn buckets_where(
    conn: &Connection,
    condition: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<HistoryBucket>, RepositoryError> {
    let sql = format!("SELECT {BUCKET_COLUMNS} FROM history_buckets WHERE {condition} ORDER BY bucket_start");
    let mut stmt = conn.prepare(&sql).map_err(db_err)?;
    let rows = stmt.query_map(params, BucketRow::read).map_err(db_err)?;
    rows.map(|r| r.map_err(db_err)?.parse()).collect()
}

pub(super) fn stream_buckets(
    conn: &mut Connection,
    streamer: StreamerId,
    stream: StreamId,
) -> Result<Vec<HistoryBucket>, RepositoryError> {
    buckets_where(conn, "stream_id = ?1 AND user_id = ?2", params![stream.to_string(), streamer.to_string()])
}

pub(super) fn buckets(
    conn: &mut Connection,
    streamer: StreamerId,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<HistoryBucket>, RepositoryError> {
    buckets_where(
        conn,
        "user_id = ?1 AND bucket_start >= ?2 AND bucket_start < ?3",
        params![streamer.to_string(), to_ms(from), to_ms(to)],
    )
}

pub(super) fn save_moment(conn: &mut Connection, m: &Moment) -> Result<(), RepositoryError> {
    let detail = serde_json::to_string(&m.detail).map_err(|e| corrupt("moments.detail", e))?;
    let sql = format!(
        "INSERT INTO moments ({MOMENT_COLUMNS})
         SELECT ?1, ?2, (SELECT s.id FROM streams s WHERE s.id = ?3 AND s.user_id = ?2),
                ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12
         WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2)"
    );
    let n = conn
        .execute(
            &sql,
            params![
                m.id.to_string(),
                m.streamer.to_string(),
                m.stream.map(|s| s.to_string()),
                to_ms(m.at),
                m.kind.as_str(),
                detail,
                m.marker.status.as_str(),
                m.marker.id,
                m.marker.error,
                m.clip.status.as_str(),
                m.clip.id,
                m.clip.error,
            ],
        )
        .map_err(db_err)?;
    if n == 0 {
        return Err(RepositoryError::NotFound("streamer"));
    }
    Ok(())
}

pub(super) fn set_moment_action(
    conn: &mut Connection,
    id: MomentId,
    action: MomentAction,
    outcome: &ActionOutcome,
) -> Result<bool, RepositoryError> {
    let sql = match action {
        MomentAction::Marker => {
            "UPDATE moments SET marker_status = ?2, marker_id = ?3, marker_error = ?4 WHERE id = ?1"
        }
        MomentAction::Clip => "UPDATE moments SET clip_status = ?2, clip_id = ?3, clip_error = ?4 WHERE id = ?1",
    };
    let n = conn
        .execute(sql, params![id.to_string(), outcome.status.as_str(), outcome.id, outcome.error])
        .map_err(db_err)?;
    Ok(n > 0)
}

pub(super) fn moments_of(
    conn: &mut Connection,
    streamer: StreamerId,
    filter: &MomentFilter,
    page: Page,
) -> Result<Paged<Moment>, RepositoryError> {
    const WHERE: &str = "WHERE user_id = ?1 AND (?2 IS NULL OR stream_id = ?2) AND (?3 IS NULL OR at >= ?3)
                         AND (?4 IS NULL OR at < ?4)";
    let user = streamer.to_string();
    let stream = filter.stream.map(|s| s.to_string());
    let (from, to) = (filter.from.map(to_ms), filter.to.map(to_ms));
    let sql = format!("SELECT {MOMENT_COLUMNS} FROM moments {WHERE} ORDER BY at DESC, id DESC LIMIT ?5 OFFSET ?6");
    let mut stmt = conn.prepare(&sql).map_err(db_err)?;
    let rows = stmt
        .query_map(params![user, stream, from, to, page.limit(), to_i64(page.offset())], MomentRow::read)
        .map_err(db_err)?;
    let items = rows.map(|r| r.map_err(db_err)?.parse()).collect::<Result<Vec<_>, _>>()?;
    let total: i64 = conn
        .query_row(&format!("SELECT count(*) FROM moments {WHERE}"), params![user, stream, from, to], |r| r.get(0))
        .map_err(db_err)?;
    Ok(Paged { items, total: u64::try_from(total).unwrap_or(0) })
}

pub(super) fn delete_before(conn: &mut Connection, cutoff: OffsetDateTime) -> Result<HistoryDeleted, RepositoryError> {
    let cutoff = to_ms(cutoff);
    let tx = conn.transaction().map_err(db_err)?;
    let deleted = HistoryDeleted {
        buckets: tx.execute("DELETE FROM history_buckets WHERE bucket_start < ?1", [cutoff]).map_err(db_err)? as u64,
        moments: tx.execute("DELETE FROM moments WHERE at < ?1", [cutoff]).map_err(db_err)? as u64,
        streams: tx.execute("DELETE FROM streams WHERE ended_at < ?1", [cutoff]).map_err(db_err)? as u64,
    };
    tx.commit().map_err(db_err)?;
    Ok(deleted)
}
