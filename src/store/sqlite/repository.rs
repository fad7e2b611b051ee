//! The [`Repository`] trait on SQLite: each method runs its statements on
//! the one connection (under its mutex, off the async threads); the row
//! decoders and helpers are in the parent module.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;

#[async_trait]
impl Repository for SqliteRepository {
    async fn create_streamer(&self, new: &NewStreamer) -> Result<OverlaySetup, RepositoryError> {
        let new = new.clone();
        self.with_conn(move |conn| {
            let now = now_ms();
            let streamer = Streamer {
                id: StreamerId::generate(),
                overlay_id: OverlayId::random(),
                twitch_user_id: new.twitch_user_id,
                login: new.login,
                display_name: new.display_name,
                needs_relogin: false,
                created_at: from_ms(now)?,
                updated_at: from_ms(now)?,
            };
            let config = OverlayConfig::default();
            let tx = conn.transaction().map_err(db_err)?;
            let id = streamer.id.to_string();
            tx.execute(
                "INSERT INTO users (id, overlay_uuid, twitch_user_id, login, display_name, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    id,
                    streamer.overlay_id.to_string(),
                    streamer.twitch_user_id.as_str(),
                    streamer.login,
                    streamer.display_name,
                    now
                ],
            )
            .map_err(|e| match db_err(e) {
                RepositoryError::Conflict(_) => RepositoryError::Conflict("a streamer with this Twitch user id"),
                other => other,
            })?;
            insert_config(&tx, &id, &config, now).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(OverlaySetup { streamer, config: StoredConfig { config, version: 1, updated_at: from_ms(now)? } })
        })
        .await
    }

    async fn list_streamers(&self) -> Result<Vec<Streamer>, RepositoryError> {
        self.with_conn(|conn| {
            let sql = format!("SELECT {STREAMER_COLUMNS} FROM users u ORDER BY u.created_at, u.id");
            let mut stmt = conn.prepare(&sql).map_err(db_err)?;
            let rows = stmt.query_map([], |r| StreamerRow::read(r, 0)).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)?.parse()).collect()
        })
        .await
    }

    async fn remove_streamer(&self, twitch_user_id: &BroadcasterId) -> Result<bool, RepositoryError> {
        let id = twitch_user_id.as_str().to_owned();
        self.with_conn(move |conn| {
            let n = conn.execute("DELETE FROM users WHERE twitch_user_id = ?1", [id]).map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn overlay_setup(&self, overlay: OverlayId) -> Result<Option<OverlaySetup>, RepositoryError> {
        self.with_conn(move |conn| {
            let sql = format!(
                "SELECT {STREAMER_COLUMNS}, {CONFIG_COLUMNS} FROM users u JOIN configs c ON c.user_id = u.id
                 WHERE u.overlay_uuid = ?1"
            );
            let row = conn
                .query_row(&sql, [overlay.to_string()], |r| {
                    Ok((StreamerRow::read(r, 0)?, ConfigRow::read(r, STREAMER_WIDTH)?))
                })
                .optional()
                .map_err(db_err)?;
            row.map(|(s, c)| Ok(OverlaySetup { streamer: s.parse()?, config: c.parse()? })).transpose()
        })
        .await
    }

    async fn config_versions(&self, overlays: &[OverlayId]) -> Result<HashMap<OverlayId, i64>, RepositoryError> {
        let wanted: Vec<String> = overlays.iter().map(ToString::to_string).collect();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT c.version FROM users u JOIN configs c ON c.user_id = u.id WHERE u.overlay_uuid = ?1",
                )
                .map_err(db_err)?;
            let mut versions = HashMap::with_capacity(wanted.len());
            for raw in wanted {
                if let Some(version) = stmt.query_row([&raw], |r| r.get::<_, i64>(0)).optional().map_err(db_err)? {
                    let overlay = raw.parse().map_err(|e| corrupt("users.overlay_uuid", e))?;
                    versions.insert(overlay, version);
                }
            }
            Ok(versions)
        })
        .await
    }

    async fn save_config(&self, streamer: StreamerId, config: &OverlayConfig) -> Result<StoredConfig, RepositoryError> {
        let config = config.clone();
        self.with_conn(move |conn| {
            let now = now_ms();
            let c = ConfigColumns::of(&config);
            let version: Option<i64> = conn
                .query_row(
                    "UPDATE configs SET for_trigger = ?2, against_trigger = ?3, left_label = ?4, right_label = ?5,
                            decay_speed = ?6, version = version + 1, updated_at = ?7, model = ?8, match_mode = ?9,
                            layout = ?10, for_color = ?11, against_color = ?12, scale = ?13, font_weight = ?14,
                            show_labels = ?15, show_hint = ?16, show_voters = ?17, celebrate = ?18
                     WHERE user_id = ?1 RETURNING version",
                    params![
                        streamer.to_string(),
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
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let version = version.ok_or(RepositoryError::NotFound("config of this streamer"))?;
            Ok(StoredConfig { config, version, updated_at: from_ms(now)? })
        })
        .await
    }

    async fn upsert_subscription(&self, r: &SubscriptionRecord) -> Result<(), RepositoryError> {
        let r = r.clone();
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO eventsub_subscriptions
                    (subscription_id, user_id, broadcaster_user_id, type, conduit_id, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (subscription_id) DO UPDATE SET status = excluded.status",
                params![
                    r.subscription_id,
                    r.streamer.map(|s| s.to_string()),
                    r.broadcaster.as_ref().map(|b| b.as_str().to_owned()),
                    r.subscription_type,
                    r.conduit_id,
                    r.status,
                    to_ms(r.created_at)
                ],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, RepositoryError> {
        self.with_conn(|conn| {
            let sql = format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM eventsub_subscriptions ORDER BY created_at, subscription_id"
            );
            let mut stmt = conn.prepare(&sql).map_err(db_err)?;
            let rows = stmt.query_map([], SubscriptionRow::read).map_err(db_err)?;
            rows.map(|row| row.map_err(db_err)?.parse()).collect()
        })
        .await
    }

    async fn subscriptions_of(&self, broadcaster: &BroadcasterId) -> Result<Vec<SubscriptionRecord>, RepositoryError> {
        let broadcaster = broadcaster.as_str().to_owned();
        self.with_conn(move |conn| {
            let sql = format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM eventsub_subscriptions WHERE broadcaster_user_id = ?1
                 ORDER BY created_at, subscription_id"
            );
            let mut stmt = conn.prepare(&sql).map_err(db_err)?;
            let rows = stmt.query_map([broadcaster], SubscriptionRow::read).map_err(db_err)?;
            rows.map(|row| row.map_err(db_err)?.parse()).collect()
        })
        .await
    }

    async fn delete_subscription(&self, subscription_id: &str) -> Result<bool, RepositoryError> {
        let id = subscription_id.to_owned();
        self.with_conn(move |conn| {
            let n =
                conn.execute("DELETE FROM eventsub_subscriptions WHERE subscription_id = ?1", [id]).map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn conduit(&self, client_id: &str) -> Result<Option<String>, RepositoryError> {
        let client_id = client_id.to_owned();
        self.with_conn(move |conn| {
            conn.query_row("SELECT conduit_id FROM eventsub_conduits WHERE client_id = ?1", [client_id], |r| r.get(0))
                .optional()
                .map_err(db_err)
        })
        .await
    }

    async fn save_conduit(&self, client_id: &str, conduit_id: &str) -> Result<(), RepositoryError> {
        let (client_id, conduit_id) = (client_id.to_owned(), conduit_id.to_owned());
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO eventsub_conduits (client_id, conduit_id, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (client_id) DO UPDATE SET
                    shard_fingerprint = CASE WHEN eventsub_conduits.conduit_id = excluded.conduit_id
                                             THEN eventsub_conduits.shard_fingerprint END,
                    conduit_id = excluded.conduit_id, updated_at = excluded.updated_at",
                params![client_id, conduit_id, now_ms()],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn shard_fingerprint(&self, client_id: &str) -> Result<Option<String>, RepositoryError> {
        let client_id = client_id.to_owned();
        self.with_conn(move |conn| {
            conn.query_row("SELECT shard_fingerprint FROM eventsub_conduits WHERE client_id = ?1", [client_id], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()
            .map(Option::flatten)
            .map_err(db_err)
        })
        .await
    }

    async fn save_shard_fingerprint(&self, client_id: &str, fingerprint: &str) -> Result<bool, RepositoryError> {
        let (client_id, fingerprint) = (client_id.to_owned(), fingerprint.to_owned());
        self.with_conn(move |conn| {
            let n = conn
                .execute(
                    "UPDATE eventsub_conduits SET shard_fingerprint = ?2, updated_at = ?3 WHERE client_id = ?1",
                    params![client_id, fingerprint, now_ms()],
                )
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn set_subscription_status(&self, subscription_id: &str, status: &str) -> Result<bool, RepositoryError> {
        let (id, status) = (subscription_id.to_owned(), status.to_owned());
        self.with_conn(move |conn| {
            let n = conn
                .execute("UPDATE eventsub_subscriptions SET status = ?2 WHERE subscription_id = ?1", [id, status])
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn ping(&self) -> Result<(), RepositoryError> {
        self.with_conn(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn record_login(
        &self,
        profile: &NewStreamer,
        tokens: &StoredTokens,
    ) -> Result<(OverlaySetup, bool), RepositoryError> {
        let (profile, tokens) = (profile.clone(), tokens.clone());
        self.with_conn(move |conn| {
            let now = now_ms();
            let fresh_id = StreamerId::generate().to_string();
            let tx = conn.transaction().map_err(db_err)?;
            // The id that comes back is the fresh one only if the row is new.
            let id: String = tx
                .query_row(
                    "INSERT INTO users (id, overlay_uuid, twitch_user_id, login, display_name, access_token,
                                        refresh_token, token_expires_at, scopes, needs_relogin, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?10)
                     ON CONFLICT (twitch_user_id) DO UPDATE SET
                        login = excluded.login, display_name = excluded.display_name,
                        access_token = excluded.access_token, refresh_token = excluded.refresh_token,
                        token_expires_at = excluded.token_expires_at, scopes = excluded.scopes,
                        needs_relogin = 0, updated_at = excluded.updated_at
                     RETURNING id",
                    params![
                        fresh_id,
                        OverlayId::random().to_string(),
                        profile.twitch_user_id.as_str(),
                        profile.login,
                        profile.display_name,
                        tokens.access_token,
                        tokens.refresh_token,
                        to_ms(tokens.expires_at),
                        scopes_column(&tokens.scopes),
                        now
                    ],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            let created = id == fresh_id;
            if created {
                insert_config(&tx, &id, &OverlayConfig::default(), now).map_err(db_err)?;
            }
            let setup = setup_by_id(&tx, &id)?
                .ok_or_else(|| RepositoryError::Corrupt(format!("streamer {id} has no config")))?;
            tx.commit().map_err(db_err)?;
            Ok((setup, created))
        })
        .await
    }

    async fn streamer(&self, id: StreamerId) -> Result<Option<OverlaySetup>, RepositoryError> {
        self.with_conn(move |conn| setup_by_id(conn, &id.to_string())).await
    }

    async fn streamer_by_twitch_id(
        &self,
        twitch_user_id: &BroadcasterId,
    ) -> Result<Option<OverlaySetup>, RepositoryError> {
        let twitch_user_id = twitch_user_id.as_str().to_owned();
        self.with_conn(move |conn| {
            let sql = format!(
                "SELECT {STREAMER_COLUMNS}, {CONFIG_COLUMNS} FROM users u JOIN configs c ON c.user_id = u.id
                 WHERE u.twitch_user_id = ?1"
            );
            let row = conn
                .query_row(&sql, [twitch_user_id], |r| {
                    Ok((StreamerRow::read(r, 0)?, ConfigRow::read(r, STREAMER_WIDTH)?))
                })
                .optional()
                .map_err(db_err)?;
            row.map(|(s, c)| Ok(OverlaySetup { streamer: s.parse()?, config: c.parse()? })).transpose()
        })
        .await
    }

    async fn rotate_overlay(&self, id: StreamerId) -> Result<OverlayId, RepositoryError> {
        self.with_conn(move |conn| {
            let overlay = OverlayId::random();
            update_streamer(
                conn,
                "UPDATE users SET overlay_uuid = ?2, updated_at = ?3 WHERE id = ?1",
                params![id.to_string(), overlay.to_string(), now_ms()],
            )?;
            Ok(overlay)
        })
        .await
    }

    async fn tokens(&self, id: StreamerId) -> Result<Option<StoredTokens>, RepositoryError> {
        self.with_conn(move |conn| {
            let sql = format!("SELECT {TOKEN_COLUMNS} FROM users WHERE id = ?1");
            let row = conn.query_row(&sql, [id.to_string()], |r| TokenRow::read(r, 0)).optional().map_err(db_err)?;
            Ok(row.map(TokenRow::parse).transpose()?.flatten())
        })
        .await
    }

    async fn set_tokens(&self, id: StreamerId, tokens: &StoredTokens) -> Result<(), RepositoryError> {
        let tokens = tokens.clone();
        self.with_conn(move |conn| {
            update_streamer(
                conn,
                "UPDATE users SET access_token = ?2, refresh_token = ?3, token_expires_at = ?4, scopes = ?5,
                        updated_at = ?6
                 WHERE id = ?1",
                params![
                    id.to_string(),
                    tokens.access_token,
                    tokens.refresh_token,
                    to_ms(tokens.expires_at),
                    scopes_column(&tokens.scopes),
                    now_ms()
                ],
            )
        })
        .await
    }

    async fn clear_tokens(&self, id: StreamerId, needs_relogin: bool) -> Result<(), RepositoryError> {
        self.with_conn(move |conn| {
            update_streamer(
                conn,
                "UPDATE users SET access_token = NULL, refresh_token = NULL, token_expires_at = NULL, scopes = '',
                        needs_relogin = ?2, updated_at = ?3
                 WHERE id = ?1",
                params![id.to_string(), needs_relogin, now_ms()],
            )
        })
        .await
    }

    async fn streamers_with_tokens(&self) -> Result<Vec<(StreamerId, BroadcasterId, StoredTokens)>, RepositoryError> {
        self.with_conn(|conn| {
            let sql = format!(
                "SELECT id, twitch_user_id, {TOKEN_COLUMNS} FROM users WHERE access_token IS NOT NULL
                 ORDER BY created_at, id"
            );
            let mut stmt = conn.prepare(&sql).map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, TokenRow::read(r, 2)?)))
                .map_err(db_err)?;
            rows.map(|row| {
                let (id, twitch_user_id, tokens) = row.map_err(db_err)?;
                let id = StreamerId::from_uuid(Uuid::parse_str(&id).map_err(|e| corrupt("users.id", e))?);
                let twitch_user_id =
                    BroadcasterId::parse(&twitch_user_id).map_err(|e| corrupt("users.twitch_user_id", e))?;
                let tokens = tokens.parse()?.ok_or_else(|| corrupt("users", "access token without the rest"))?;
                Ok((id, twitch_user_id, tokens))
            })
            .collect()
        })
        .await
    }

    async fn save_bot(&self, bot: &BotAccount) -> Result<(), RepositoryError> {
        let bot = bot.clone();
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO bot_account (id, twitch_user_id, login, access_token, refresh_token, token_expires_at,
                                          scopes, updated_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET
                    twitch_user_id = excluded.twitch_user_id, login = excluded.login,
                    access_token = excluded.access_token, refresh_token = excluded.refresh_token,
                    token_expires_at = excluded.token_expires_at, scopes = excluded.scopes,
                    updated_at = excluded.updated_at",
                params![
                    bot.twitch_user_id.as_str(),
                    bot.login,
                    bot.tokens.access_token,
                    bot.tokens.refresh_token,
                    to_ms(bot.tokens.expires_at),
                    scopes_column(&bot.tokens.scopes),
                    to_ms(bot.updated_at)
                ],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn bot(&self) -> Result<Option<BotAccount>, RepositoryError> {
        self.with_conn(|conn| {
            type Raw = (String, String, Vec<u8>, Vec<u8>, i64, String, i64);
            let row = conn
                .query_row(
                    "SELECT twitch_user_id, login, access_token, refresh_token, token_expires_at, scopes, updated_at
                     FROM bot_account WHERE id = 1",
                    [],
                    |r| Ok::<Raw, _>((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
                )
                .optional()
                .map_err(db_err)?;
            row.map(|(twitch_user_id, login, access_token, refresh_token, expires_at, scopes, updated_at)| {
                Ok(BotAccount {
                    twitch_user_id: BroadcasterId::parse(&twitch_user_id)
                        .map_err(|e| corrupt("bot_account.twitch_user_id", e))?,
                    login,
                    tokens: StoredTokens {
                        access_token,
                        refresh_token,
                        expires_at: from_ms(expires_at)?,
                        scopes: parse_scopes(&scopes),
                    },
                    updated_at: from_ms(updated_at)?,
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
        let twitch_stream_id = twitch_stream_id.map(str::to_owned);
        self.with_conn(move |c| history::open_stream(c, streamer, twitch_stream_id.as_deref(), started_at)).await
    }

    async fn close_stream(
        &self,
        streamer: StreamerId,
        ended_at: OffsetDateTime,
        ended_by: StreamEnd,
    ) -> Result<Option<StreamRecord>, RepositoryError> {
        self.with_conn(move |c| history::close_stream(c, streamer, ended_at, ended_by)).await
    }

    async fn open_streams(&self) -> Result<Vec<(StreamRecord, BroadcasterId)>, RepositoryError> {
        self.with_conn(history::open_streams).await
    }

    async fn streams_of(&self, streamer: StreamerId, page: Page) -> Result<Paged<StreamRecord>, RepositoryError> {
        self.with_conn(move |c| history::streams_of(c, streamer, page)).await
    }

    async fn stream(&self, streamer: StreamerId, id: StreamId) -> Result<Option<StreamRecord>, RepositoryError> {
        self.with_conn(move |c| history::stream(c, streamer, id)).await
    }

    async fn save_buckets(&self, buckets: &[HistoryBucket]) -> Result<u64, RepositoryError> {
        let buckets = buckets.to_vec();
        self.with_conn(move |c| history::save_buckets(c, &buckets)).await
    }

    async fn stream_buckets(
        &self,
        streamer: StreamerId,
        stream: StreamId,
    ) -> Result<Vec<HistoryBucket>, RepositoryError> {
        self.with_conn(move |c| history::stream_buckets(c, streamer, stream)).await
    }

    async fn buckets(
        &self,
        streamer: StreamerId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<HistoryBucket>, RepositoryError> {
        self.with_conn(move |c| history::buckets(c, streamer, from, to)).await
    }

    async fn save_moment(&self, moment: &Moment) -> Result<(), RepositoryError> {
        let moment = moment.clone();
        self.with_conn(move |c| history::save_moment(c, &moment)).await
    }

    async fn set_moment_action(
        &self,
        id: MomentId,
        action: MomentAction,
        outcome: &ActionOutcome,
    ) -> Result<bool, RepositoryError> {
        let outcome = outcome.clone();
        self.with_conn(move |c| history::set_moment_action(c, id, action, &outcome)).await
    }

    async fn moments_of(
        &self,
        streamer: StreamerId,
        filter: &MomentFilter,
        page: Page,
    ) -> Result<Paged<Moment>, RepositoryError> {
        let filter = *filter;
        self.with_conn(move |c| history::moments_of(c, streamer, &filter, page)).await
    }

    async fn delete_history_before(&self, cutoff: OffsetDateTime) -> Result<HistoryDeleted, RepositoryError> {
        self.with_conn(move |c| history::delete_before(c, cutoff)).await
    }
}
