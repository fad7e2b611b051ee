//! Stream history on PostgreSQL (migration V6): streams, history buckets and
//! moments. The [`Repository`](super::Repository) methods delegate here.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::Json;
use uuid::Uuid;

use super::{PostgresRepository, corrupt, db_err, get, whole_ms};
use crate::domain::history::{
    ActionOutcome, HistoryBucket, HistoryDeleted, Moment, MomentAction, MomentFilter, MomentId, MomentKind, Page,
    Paged, StreamEnd, StreamId, StreamOpened, StreamRecord,
};
use crate::domain::{BroadcasterId, StreamerId};
use crate::store::{RepositoryError, action_outcome, count_column, parse_count, parse_detail};

const STREAM_COLUMNS: &str = "s.id, s.user_id, s.twitch_stream_id, s.started_at, s.ended_at, s.ended_by";
const BUCKET_COLUMNS: &str = "user_id, stream_id, bucket_start, value_open, value_close, value_min, value_max, \
                              votes_for, votes_against, voters";
const MOMENT_COLUMNS: &str = "id, user_id, stream_id, at, kind, detail, marker_status, marker_id, marker_error, \
                              clip_status, clip_id, clip_error";

/// Rows one `INSERT` of buckets carries at most.
const BUCKETS_PER_STATEMENT: usize = 2_000;

fn stream_at(row: &Row, at: usize) -> Result<StreamRecord, RepositoryError> {
    let ended_by: Option<String> = get(row, at + 5, "streams.ended_by")?;
    Ok(StreamRecord {
        id: StreamId::from_uuid(get(row, at, "streams.id")?),
        streamer: StreamerId::from_uuid(get(row, at + 1, "streams.user_id")?),
        twitch_stream_id: get(row, at + 2, "streams.twitch_stream_id")?,
        started_at: get(row, at + 3, "streams.started_at")?,
        ended_at: get(row, at + 4, "streams.ended_at")?,
        ended_by: ended_by.as_deref().map(StreamEnd::parse).transpose().map_err(|e| corrupt("streams.ended_by", e))?,
    })
}

fn bucket(row: &Row) -> Result<HistoryBucket, RepositoryError> {
    let count = |i: usize, column: &str| parse_count(column, i64::from(get::<i32>(row, i, column)?));
    Ok(HistoryBucket {
        streamer: StreamerId::from_uuid(get(row, 0, "history_buckets.user_id")?),
        stream: get::<Option<Uuid>>(row, 1, "history_buckets.stream_id")?.map(StreamId::from_uuid),
        start: get(row, 2, "history_buckets.bucket_start")?,
        value_open: get(row, 3, "history_buckets.value_open")?,
        value_close: get(row, 4, "history_buckets.value_close")?,
        value_min: get(row, 5, "history_buckets.value_min")?,
        value_max: get(row, 6, "history_buckets.value_max")?,
        votes_for: count(7, "history_buckets.votes_for")?,
        votes_against: count(8, "history_buckets.votes_against")?,
        voters: count(9, "history_buckets.voters")?,
    })
}

fn moment(row: &Row) -> Result<Moment, RepositoryError> {
    let kind: String = get(row, 4, "moments.kind")?;
    let kind = MomentKind::parse(&kind).map_err(|e| corrupt("moments.kind", e))?;
    let detail: Json<serde_json::Value> = get(row, 5, "moments.detail")?;
    let marker_status: String = get(row, 6, "moments.marker_status")?;
    let clip_status: String = get(row, 9, "moments.clip_status")?;
    Ok(Moment {
        id: MomentId::from_uuid(get(row, 0, "moments.id")?),
        streamer: StreamerId::from_uuid(get(row, 1, "moments.user_id")?),
        stream: get::<Option<Uuid>>(row, 2, "moments.stream_id")?.map(StreamId::from_uuid),
        at: get(row, 3, "moments.at")?,
        kind,
        detail: parse_detail(kind, detail.0)?,
        marker: action_outcome(
            &marker_status,
            get(row, 7, "moments.marker_id")?,
            get(row, 8, "moments.marker_error")?,
        )?,
        clip: action_outcome(&clip_status, get(row, 10, "moments.clip_id")?, get(row, 11, "moments.clip_error")?)?,
    })
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The open stream of a streamer, in a transaction (locked for update).
async fn open_stream_of(client: &impl GenericClient, streamer: Uuid) -> Result<Option<StreamRecord>, RepositoryError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {STREAM_COLUMNS} FROM streams s WHERE s.user_id = $1 AND s.ended_at IS NULL FOR UPDATE"
        ))
        .await
        .map_err(db_err)?;
    client.query_opt(&stmt, &[&streamer]).await.map_err(db_err)?.map(|row| stream_at(&row, 0)).transpose()
}

/// Closes a stream at `ended_at` (never before its start).
async fn close(
    client: &impl GenericClient,
    id: StreamId,
    ended_at: OffsetDateTime,
    ended_by: StreamEnd,
) -> Result<Option<StreamRecord>, RepositoryError> {
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE streams s SET ended_at = GREATEST(s.started_at, $2), ended_by = $3
             WHERE s.id = $1 AND s.ended_at IS NULL RETURNING {STREAM_COLUMNS}"
        ))
        .await
        .map_err(db_err)?;
    let row =
        client.query_opt(&stmt, &[&id.as_uuid(), &whole_ms(ended_at), &ended_by.as_str()]).await.map_err(db_err)?;
    row.map(|row| stream_at(&row, 0)).transpose()
}

impl PostgresRepository {
    pub(super) async fn history_open_stream(
        &self,
        streamer: StreamerId,
        twitch_stream_id: Option<&str>,
        started_at: OffsetDateTime,
    ) -> Result<StreamOpened, RepositoryError> {
        self.call("open_stream", async {
            let started_at = whole_ms(started_at);
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await.map_err(db_err)?;
            // Serialises openings of one streamer's streams (and refuses an
            // unknown streamer) by locking their row.
            let lock = tx.prepare_cached("SELECT 1 FROM users WHERE id = $1 FOR UPDATE").await.map_err(db_err)?;
            if tx.query_opt(&lock, &[&streamer.as_uuid()]).await.map_err(db_err)?.is_none() {
                return Err(RepositoryError::NotFound("streamer"));
            }
            if let Some(twitch_id) = twitch_stream_id {
                let stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {STREAM_COLUMNS} FROM streams s WHERE s.user_id = $1 AND s.twitch_stream_id = $2"
                    ))
                    .await
                    .map_err(db_err)?;
                if let Some(row) = tx.query_opt(&stmt, &[&streamer.as_uuid(), &twitch_id]).await.map_err(db_err)? {
                    return Ok(StreamOpened { stream: stream_at(&row, 0)?, created: false, closed: None });
                }
            }
            let mut closed = None;
            if let Some(open) = open_stream_of(&tx, streamer.as_uuid()).await? {
                if twitch_stream_id.is_none() {
                    return Ok(StreamOpened { stream: open, created: false, closed: None });
                }
                closed = close(&tx, open.id, started_at, StreamEnd::Reconciliation).await?;
            }
            let stream = StreamRecord {
                id: StreamId::generate(),
                streamer,
                twitch_stream_id: twitch_stream_id.map(str::to_owned),
                started_at,
                ended_at: None,
                ended_by: None,
            };
            let insert = tx
                .prepare_cached(
                    "INSERT INTO streams (id, user_id, twitch_stream_id, started_at) VALUES ($1, $2, $3, $4)",
                )
                .await
                .map_err(db_err)?;
            tx.execute(&insert, &[&stream.id.as_uuid(), &streamer.as_uuid(), &stream.twitch_stream_id, &started_at])
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(StreamOpened { stream, created: true, closed })
        })
        .await
    }

    pub(super) async fn history_close_stream(
        &self,
        streamer: StreamerId,
        ended_at: OffsetDateTime,
        ended_by: StreamEnd,
    ) -> Result<Option<StreamRecord>, RepositoryError> {
        self.call("close_stream", async {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await.map_err(db_err)?;
            let Some(open) = open_stream_of(&tx, streamer.as_uuid()).await? else { return Ok(None) };
            let closed = close(&tx, open.id, ended_at, ended_by).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(closed)
        })
        .await
    }

    pub(super) async fn history_open_streams(&self) -> Result<Vec<(StreamRecord, BroadcasterId)>, RepositoryError> {
        self.call("open_streams", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(&format!(
                    "SELECT {STREAM_COLUMNS}, u.twitch_user_id FROM streams s JOIN users u ON u.id = s.user_id
                     WHERE s.ended_at IS NULL ORDER BY s.started_at, s.id"
                ))
                .await
                .map_err(db_err)?;
            let rows = conn.query(&stmt, &[]).await.map_err(db_err)?;
            rows.iter()
                .map(|row| {
                    let twitch: String = get(row, 6, "users.twitch_user_id")?;
                    let broadcaster = BroadcasterId::parse(&twitch).map_err(|e| corrupt("users.twitch_user_id", e))?;
                    Ok((stream_at(row, 0)?, broadcaster))
                })
                .collect()
        })
        .await
    }

    pub(super) async fn history_streams_of(
        &self,
        streamer: StreamerId,
        page: Page,
    ) -> Result<Paged<StreamRecord>, RepositoryError> {
        self.call("streams_of", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(&format!(
                    "SELECT {STREAM_COLUMNS} FROM streams s WHERE s.user_id = $1
                     ORDER BY s.started_at DESC, s.id DESC LIMIT $2 OFFSET $3"
                ))
                .await
                .map_err(db_err)?;
            let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
            let rows =
                conn.query(&stmt, &[&streamer.as_uuid(), &i64::from(page.limit()), &offset]).await.map_err(db_err)?;
            let items = rows.iter().map(|row| stream_at(row, 0)).collect::<Result<Vec<_>, _>>()?;
            let count = conn.prepare_cached("SELECT count(*) FROM streams WHERE user_id = $1").await.map_err(db_err)?;
            let total: i64 = get(&conn.query_one(&count, &[&streamer.as_uuid()]).await.map_err(db_err)?, 0, "count")?;
            Ok(Paged { items, total: to_u64(total) })
        })
        .await
    }

    pub(super) async fn history_stream(
        &self,
        streamer: StreamerId,
        id: StreamId,
    ) -> Result<Option<StreamRecord>, RepositoryError> {
        self.call("stream", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(&format!("SELECT {STREAM_COLUMNS} FROM streams s WHERE s.id = $1 AND s.user_id = $2"))
                .await
                .map_err(db_err)?;
            let row = conn.query_opt(&stmt, &[&id.as_uuid(), &streamer.as_uuid()]).await.map_err(db_err)?;
            row.map(|row| stream_at(&row, 0)).transpose()
        })
        .await
    }

    pub(super) async fn history_save_buckets(&self, buckets: &[HistoryBucket]) -> Result<u64, RepositoryError> {
        self.call("save_buckets", async {
            if buckets.is_empty() {
                return Ok(0);
            }
            let conn = self.conn().await?;
            // One statement per chunk: the rows travel as arrays, unnested on
            // the server. The stream is the one given if it is the
            // streamer's, else (none given) the one open at the bucket's start.
            let stmt = conn
                .prepare_cached(
                    "INSERT INTO history_buckets (user_id, bucket_start, stream_id, value_open, value_close,
                                                  value_min, value_max, votes_for, votes_against, voters)
                     SELECT b.user_id, b.bucket_start,
                            CASE WHEN b.stream_id IS NOT NULL THEN
                                (SELECT s.id FROM streams s WHERE s.id = b.stream_id AND s.user_id = b.user_id)
                            ELSE
                                (SELECT s.id FROM streams s
                                 WHERE s.user_id = b.user_id AND s.started_at < b.bucket_start + interval '10 seconds'
                                   AND (s.ended_at IS NULL OR s.ended_at > b.bucket_start)
                                 ORDER BY s.started_at DESC LIMIT 1)
                            END,
                            b.value_open, b.value_close, b.value_min, b.value_max,
                            b.votes_for, b.votes_against, b.voters
                     FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::float8[], $5::float8[],
                                 $6::float8[], $7::float8[], $8::int4[], $9::int4[], $10::int4[])
                          AS b(user_id, bucket_start, stream_id, value_open, value_close, value_min, value_max,
                               votes_for, votes_against, voters)
                     WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = b.user_id)
                     ON CONFLICT (user_id, bucket_start) DO NOTHING",
                )
                .await
                .map_err(db_err)?;
            let mut written = 0;
            for chunk in buckets.chunks(BUCKETS_PER_STATEMENT) {
                let users: Vec<Uuid> = chunk.iter().map(|b| b.streamer.as_uuid()).collect();
                let starts: Vec<OffsetDateTime> = chunk.iter().map(|b| whole_ms(b.start)).collect();
                let streams: Vec<Option<Uuid>> = chunk.iter().map(|b| b.stream.map(|s| s.as_uuid())).collect();
                let column = |f: fn(&HistoryBucket) -> f64| chunk.iter().map(f).collect::<Vec<f64>>();
                let counts =
                    |f: fn(&HistoryBucket) -> u32| chunk.iter().map(|b| count_column(f(b))).collect::<Vec<i32>>();
                let (open, close, min, max) = (
                    column(|b| b.value_open),
                    column(|b| b.value_close),
                    column(|b| b.value_min),
                    column(|b| b.value_max),
                );
                let (votes_for, votes_against, voters) =
                    (counts(|b| b.votes_for), counts(|b| b.votes_against), counts(|b| b.voters));
                written += conn
                    .execute(
                        &stmt,
                        &[&users, &starts, &streams, &open, &close, &min, &max, &votes_for, &votes_against, &voters],
                    )
                    .await
                    .map_err(db_err)?;
            }
            Ok(written)
        })
        .await
    }

    pub(super) async fn history_stream_buckets(
        &self,
        streamer: StreamerId,
        stream: StreamId,
    ) -> Result<Vec<HistoryBucket>, RepositoryError> {
        self.call("stream_buckets", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(&format!(
                    "SELECT {BUCKET_COLUMNS} FROM history_buckets WHERE stream_id = $1 AND user_id = $2
                     ORDER BY bucket_start"
                ))
                .await
                .map_err(db_err)?;
            let rows = conn.query(&stmt, &[&stream.as_uuid(), &streamer.as_uuid()]).await.map_err(db_err)?;
            rows.iter().map(bucket).collect()
        })
        .await
    }

    pub(super) async fn history_buckets(
        &self,
        streamer: StreamerId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<HistoryBucket>, RepositoryError> {
        self.call("buckets", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(&format!(
                    "SELECT {BUCKET_COLUMNS} FROM history_buckets
                     WHERE user_id = $1 AND bucket_start >= $2 AND bucket_start < $3 ORDER BY bucket_start"
                ))
                .await
                .map_err(db_err)?;
            let rows = conn.query(&stmt, &[&streamer.as_uuid(), &from, &to]).await.map_err(db_err)?;
            rows.iter().map(bucket).collect()
        })
        .await
    }

    pub(super) async fn history_save_moment(&self, m: &Moment) -> Result<(), RepositoryError> {
        self.call("save_moment", async {
            let detail = serde_json::to_value(&m.detail).map_err(|e| corrupt("moments.detail", e))?;
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(&format!(
                    "INSERT INTO moments ({MOMENT_COLUMNS})
                     SELECT $1, $2, (SELECT s.id FROM streams s WHERE s.id = $3 AND s.user_id = $2),
                            $4, $5, $6, $7, $8, $9, $10, $11, $12
                     WHERE EXISTS (SELECT 1 FROM users WHERE id = $2)"
                ))
                .await
                .map_err(db_err)?;
            let n = conn
                .execute(
                    &stmt,
                    &[
                        &m.id.as_uuid(),
                        &m.streamer.as_uuid(),
                        &m.stream.map(|s| s.as_uuid()),
                        &whole_ms(m.at),
                        &m.kind.as_str(),
                        &Json(&detail),
                        &m.marker.status.as_str(),
                        &m.marker.id,
                        &m.marker.error,
                        &m.clip.status.as_str(),
                        &m.clip.id,
                        &m.clip.error,
                    ],
                )
                .await
                .map_err(db_err)?;
            if n == 0 {
                return Err(RepositoryError::NotFound("streamer"));
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn history_set_moment_action(
        &self,
        id: MomentId,
        action: MomentAction,
        outcome: &ActionOutcome,
    ) -> Result<bool, RepositoryError> {
        self.call("set_moment_action", async {
            let conn = self.conn().await?;
            let sql = match action {
                MomentAction::Marker => {
                    "UPDATE moments SET marker_status = $2, marker_id = $3, marker_error = $4 WHERE id = $1"
                }
                MomentAction::Clip => {
                    "UPDATE moments SET clip_status = $2, clip_id = $3, clip_error = $4 WHERE id = $1"
                }
            };
            let stmt = conn.prepare_cached(sql).await.map_err(db_err)?;
            let n = conn
                .execute(&stmt, &[&id.as_uuid(), &outcome.status.as_str(), &outcome.id, &outcome.error])
                .await
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    pub(super) async fn history_moments_of(
        &self,
        streamer: StreamerId,
        filter: &MomentFilter,
        page: Page,
    ) -> Result<Paged<Moment>, RepositoryError> {
        self.call("moments_of", async {
            let conn = self.conn().await?;
            const WHERE: &str = "WHERE user_id = $1 AND ($2::uuid IS NULL OR stream_id = $2)
                                 AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)";
            let stmt = conn
                .prepare_cached(&format!(
                    "SELECT {MOMENT_COLUMNS} FROM moments {WHERE} ORDER BY at DESC, id DESC LIMIT $5 OFFSET $6"
                ))
                .await
                .map_err(db_err)?;
            let stream = filter.stream.map(|s| s.as_uuid());
            let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
            let rows = conn
                .query(
                    &stmt,
                    &[&streamer.as_uuid(), &stream, &filter.from, &filter.to, &i64::from(page.limit()), &offset],
                )
                .await
                .map_err(db_err)?;
            let items = rows.iter().map(moment).collect::<Result<Vec<_>, _>>()?;
            let count = conn.prepare_cached(&format!("SELECT count(*) FROM moments {WHERE}")).await.map_err(db_err)?;
            let row = conn
                .query_one(&count, &[&streamer.as_uuid(), &stream, &filter.from, &filter.to])
                .await
                .map_err(db_err)?;
            let total: i64 = get(&row, 0, "count")?;
            Ok(Paged { items, total: to_u64(total) })
        })
        .await
    }

    pub(super) async fn history_delete_before(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<HistoryDeleted, RepositoryError> {
        self.call("delete_history_before", async {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await.map_err(db_err)?;
            let mut deleted = HistoryDeleted::default();
            for (sql, slot) in [
                ("DELETE FROM history_buckets WHERE bucket_start < $1", &mut deleted.buckets),
                ("DELETE FROM moments WHERE at < $1", &mut deleted.moments),
                ("DELETE FROM streams WHERE ended_at < $1", &mut deleted.streams),
            ] {
                let stmt = tx.prepare_cached(sql).await.map_err(db_err)?;
                *slot = tx.execute(&stmt, &[&cutoff]).await.map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)?;
            Ok(deleted)
        })
        .await
    }
}
