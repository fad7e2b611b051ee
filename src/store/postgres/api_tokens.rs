//! [`ApiTokenRepository`] on PostgreSQL (table `api_tokens`, migration V7).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{PostgresRepository, corrupt, db_err, get, whole_ms};
use crate::domain::api_token::TokenHash;
use crate::domain::{ApiTokenId, StreamerId, TokenName};
use crate::store::RepositoryError;
use crate::store::api_tokens::{ApiToken, ApiTokenRepository, LAST_USED_RESOLUTION_MS, NewApiToken};

macro_rules! columns {
    () => {
        "id, user_id, name, created_at, last_used_at, revoked_at"
    };
}

fn token(row: &Row) -> Result<ApiToken, RepositoryError> {
    let name: String = get(row, 2, "api_tokens.name")?;
    Ok(ApiToken {
        id: ApiTokenId::from_uuid(get(row, 0, "api_tokens.id")?),
        streamer: StreamerId::from_uuid(get(row, 1, "api_tokens.user_id")?),
        name: TokenName::parse(&name).map_err(|e| corrupt("api_tokens.name", e))?,
        created_at: get(row, 3, "api_tokens.created_at")?,
        last_used_at: get(row, 4, "api_tokens.last_used_at")?,
        revoked_at: get(row, 5, "api_tokens.revoked_at")?,
    })
}

#[async_trait]
impl ApiTokenRepository for PostgresRepository {
    async fn create_api_token(&self, new: &NewApiToken) -> Result<ApiToken, RepositoryError> {
        self.call("create_api_token", async {
            let created_at = whole_ms(new.created_at);
            let conn = self.conn().await?;
            // Inserted only if the streamer exists: no foreign-key error to
            // tell apart from a duplicate digest.
            let stmt = conn
                .prepare_cached(
                    "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at)
                     SELECT $1, id, $3, $4, $5 FROM users WHERE id = $2",
                )
                .await
                .map_err(db_err)?;
            let inserted = conn
                .execute(
                    &stmt,
                    &[&new.id.as_uuid(), &new.streamer.as_uuid(), &new.name.as_str(), &new.hash.as_str(), &created_at],
                )
                .await
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
                name: new.name.clone(),
                created_at,
                last_used_at: None,
                revoked_at: None,
            })
        })
        .await
    }

    async fn api_tokens(&self, streamer: Option<StreamerId>) -> Result<Vec<ApiToken>, RepositoryError> {
        self.call("api_tokens", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM api_tokens WHERE $1::uuid IS NULL OR user_id = $1 ORDER BY created_at, id"
                ))
                .await
                .map_err(db_err)?;
            let owner: Option<Uuid> = streamer.map(|s| s.as_uuid());
            let rows = conn.query(&stmt, &[&owner]).await.map_err(db_err)?;
            rows.iter().map(token).collect()
        })
        .await
    }

    async fn api_token_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiToken>, RepositoryError> {
        self.call("api_token_by_hash", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(concat!("SELECT ", columns!(), " FROM api_tokens WHERE token_hash = $1"))
                .await
                .map_err(db_err)?;
            let row = conn.query_opt(&stmt, &[&hash.as_str()]).await.map_err(db_err)?;
            row.as_ref().map(token).transpose()
        })
        .await
    }

    async fn revoke_api_token(
        &self,
        id: ApiTokenId,
        owner: Option<StreamerId>,
        at: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        self.call("revoke_api_token", async {
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "UPDATE api_tokens SET revoked_at = $3
                     WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2) AND revoked_at IS NULL",
                )
                .await
                .map_err(db_err)?;
            let owner: Option<Uuid> = owner.map(|s| s.as_uuid());
            let n = conn.execute(&stmt, &[&id.as_uuid(), &owner, &whole_ms(at)]).await.map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn touch_api_token(&self, id: ApiTokenId, at: OffsetDateTime) -> Result<(), RepositoryError> {
        self.call("touch_api_token", async {
            let at = whole_ms(at);
            let not_after = at - time::Duration::milliseconds(LAST_USED_RESOLUTION_MS);
            let conn = self.conn().await?;
            let stmt = conn
                .prepare_cached(
                    "UPDATE api_tokens SET last_used_at = $2
                     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)",
                )
                .await
                .map_err(db_err)?;
            conn.execute(&stmt, &[&id.as_uuid(), &at, &not_after]).await.map_err(db_err)?;
            Ok(())
        })
        .await
    }
}
