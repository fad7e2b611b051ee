//! The [`Repository`] trait on PostgreSQL: one method per query, each run
//! through [`PostgresRepository::call`] (deadline, metrics, error mapping);
//! the row decoders and column lists are in the parent module.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;
use crate::domain::history::{
    ActionOutcome, HistoryBucket, HistoryDeleted, Moment, MomentAction, MomentFilter, MomentId, Page, Paged, StreamEnd,
    StreamId, StreamOpened, StreamRecord,
};
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
    async fn open_stream(
        &self,
        streamer: StreamerId,
        twitch_stream_id: Option<&str>,
        started_at: OffsetDateTime,
    ) -> Result<StreamOpened, RepositoryError> {
        self.history_open_stream(streamer, twitch_stream_id, started_at).await
    }

    async fn close_stream(
        &self,
        streamer: StreamerId,
        ended_at: OffsetDateTime,
        ended_by: StreamEnd,
    ) -> Result<Option<StreamRecord>, RepositoryError> {
        self.history_close_stream(streamer, ended_at, ended_by).await
    }

    async fn open_streams(&self) -> Result<Vec<(StreamRecord, BroadcasterId)>, RepositoryError> {
        self.history_open_streams().await
    }

    async fn streams_of(&self, streamer: StreamerId, page: Page) -> Result<Paged<StreamRecord>, RepositoryError> {
        self.history_streams_of(streamer, page).await
    }

    async fn stream(&self, streamer: StreamerId, id: StreamId) -> Result<Option<StreamRecord>, RepositoryError> {
        self.history_stream(streamer, id).await
    }

    async fn save_buckets(&self, buckets: &[HistoryBucket]) -> Result<u64, RepositoryError> {
        self.history_save_buckets(buckets).await
    }

    async fn stream_buckets(
        &self,
        streamer: StreamerId,
        stream: StreamId,
    ) -> Result<Vec<HistoryBucket>, RepositoryError> {
        self.history_stream_buckets(streamer, stream).await
    }

    async fn buckets(
        &self,
        streamer: StreamerId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<HistoryBucket>, RepositoryError> {
        self.history_buckets(streamer, from, to).await
    }

    async fn save_moment(&self, moment: &Moment) -> Result<(), RepositoryError> {
        self.history_save_moment(moment).await
    }

    async fn set_moment_action(
        &self,
        id: MomentId,
        action: MomentAction,
        outcome: &ActionOutcome,
    ) -> Result<bool, RepositoryError> {
        self.history_set_moment_action(id, action, outcome).await
    }

    async fn moments_of(
        &self,
        streamer: StreamerId,
        filter: &MomentFilter,
        page: Page,
    ) -> Result<Paged<Moment>, RepositoryError> {
        self.history_moments_of(streamer, filter, page).await
    }

    async fn delete_history_before(&self, cutoff: OffsetDateTime) -> Result<HistoryDeleted, RepositoryError> {
        self.history_delete_before(cutoff).await
    }
}
