//! [`ApiTokenRepository`] on SQLite (table `api_tokens`, migration V7).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteRepository, corrupt, db_err, from_ms, to_ms};
use crate::domain::api_token::TokenHash;
use crate::domain::{ApiTokenId, StreamerId, TokenName};
use crate::store::RepositoryError;
use crate::store::api_tokens::{ApiToken, ApiTokenRepository, LAST_USED_RESOLUTION_MS, NewApiToken};

const COLUMNS: &str = "id, user_id, name, created_at, last_used_at, revoked_at";

/// Raw columns ([`COLUMNS`]), parsed outside rusqlite's row closure.
struct TokenRow(String, String, String, i64, Option<i64>, Option<i64>);

impl TokenRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
    }

    fn parse(self) -> Result<ApiToken, RepositoryError> {
        let uuid = |raw: &str, what| Uuid::parse_str(raw).map_err(|e| corrupt(what, e));
        Ok(ApiToken {
            id: ApiTokenId::from_uuid(uuid(&self.0, "api_tokens.id")?),
            streamer: StreamerId::from_uuid(uuid(&self.1, "api_tokens.user_id")?),
            name: TokenName::parse(&self.2).map_err(|e| corrupt("api_tokens.name", e))?,
            created_at: from_ms(self.3)?,
            last_used_at: self.4.map(from_ms).transpose()?,
            revoked_at: self.5.map(from_ms).transpose()?,
        })
    }
}

#[async_trait]
impl ApiTokenRepository for SqliteRepository {
    async fn create_api_token(&self, new: &NewApiToken) -> Result<ApiToken, RepositoryError> {
        let new = new.clone();
        self.with_conn(move |conn| {
            let created_at = to_ms(new.created_at);
            // Inserted only if the streamer exists: no foreign-key error to
            // tell apart from a duplicate digest.
            let inserted = conn
                .execute(
                    "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at)
                     SELECT ?1, id, ?3, ?4, ?5 FROM users WHERE id = ?2",
                    params![
                        new.id.to_string(),
                        new.streamer.to_string(),
                        new.name.as_str(),
                        new.hash.as_str(),
                        created_at
                    ],
                )
                .map_err(|e| match db_err(e) {
                    RepositoryError::Conflict(_) => RepositoryError::Conflict("an API token with this id or digest"),
                    other => other,
                })?;
            if inserted == 0 {
                return Err(RepositoryError::NotFound("streamer"));
            }
            Ok(ApiToken {
                id: new.id,
                streamer: new.streamer,
                name: new.name,
                created_at: from_ms(created_at)?,
                last_used_at: None,
                revoked_at: None,
            })
        })
        .await
    }

    async fn api_tokens(&self, streamer: Option<StreamerId>) -> Result<Vec<ApiToken>, RepositoryError> {
        self.with_conn(move |conn| {
            let sql =
                format!("SELECT {COLUMNS} FROM api_tokens WHERE ?1 IS NULL OR user_id = ?1 ORDER BY created_at, id");
            let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
            let rows = stmt
                .query_map([streamer.map(|s| s.to_string())], TokenRow::read)
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            rows.into_iter().map(TokenRow::parse).collect()
        })
        .await
    }

    async fn api_token_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiToken>, RepositoryError> {
        let hash = hash.as_str().to_owned();
        self.with_conn(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = ?1");
            let row = conn.query_row(&sql, [hash], TokenRow::read).optional().map_err(db_err)?;
            row.map(TokenRow::parse).transpose()
        })
        .await
    }

    async fn revoke_api_token(
        &self,
        id: ApiTokenId,
        owner: Option<StreamerId>,
        at: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        self.with_conn(move |conn| {
            let n = conn
                .execute(
                    "UPDATE api_tokens SET revoked_at = ?3
                     WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2) AND revoked_at IS NULL",
                    params![id.to_string(), owner.map(|s| s.to_string()), to_ms(at)],
                )
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn touch_api_token(&self, id: ApiTokenId, at: OffsetDateTime) -> Result<(), RepositoryError> {
        self.with_conn(move |conn| {
            let at = to_ms(at);
            conn.execute(
                "UPDATE api_tokens SET last_used_at = ?2
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2 - ?3)",
                params![id.to_string(), at, LAST_USED_RESOLUTION_MS],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }
}
