//! The stores of the configured shape (ARCHITECTURE §2): SQLite and the
//! in-process live store (embedded), or PostgreSQL and Redis (distributed),
//! with the background work that keeps them healthy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;

use super::supervisor::Supervisor;
use crate::config::{Config, StorageMode};
use crate::http::session::SessionStorage;
use crate::metrics::Metrics;
use crate::store::memory::MemoryLiveStore;
use crate::store::postgres::PostgresRepository;
use crate::store::redis::{RedisConnection, RedisLiveStore};
use crate::store::signals::SignalBus;
use crate::store::sqlite::SqliteRepository;
use crate::store::{LiveStore, Repository, VoteLimits};

/// Opens the durable store for a one-shot command (CLI): migrations are
/// applied first, and an unreachable server is an error, not a retry.
pub async fn open_repository(config: &Config) -> anyhow::Result<Arc<dyn Repository>> {
    match &config.storage {
        StorageMode::Embedded { data_dir } => {
            let data_dir = data_dir.clone();
            let repo = tokio::task::spawn_blocking(move || SqliteRepository::open(&data_dir)).await??;
            Ok(Arc::new(repo))
        }
        StorageMode::Distributed { database_url, .. } => {
            let mut registry = Registry::default();
            let metrics = Metrics::register(&mut registry);
            let repo = PostgresRepository::new(database_url.expose(), 1, 2, metrics)?;
            repo.migrate().await.context("DATABASE_URL: cannot apply migrations")?;
            Ok(Arc::new(repo))
        }
    }
}

fn vote_limits(config: &Config) -> VoteLimits {
    VoteLimits {
        bucket_capacity: config.vote_rate_limit_capacity,
        bucket_refill_per_minute: config.vote_rate_limit_rate,
        ..VoteLimits::default()
    }
}

/// The stores of the configured shape.
pub(super) struct Stores {
    pub repo: Arc<dyn Repository>,
    pub live: Arc<dyn LiveStore>,
    pub signals: Arc<SignalBus>,
    pub sessions: SessionStorage,
    /// Schema state of the durable store: `Err` until migrations have run.
    pub migrations: Arc<Mutex<Result<(), String>>>,
}

/// Opens the stores; the work that keeps them healthy (connecting,
/// migrating, loading the Redis Functions library) runs under `supervisor`.
pub(super) async fn open_stores(
    config: &Config,
    metrics: &Metrics,
    supervisor: &mut Supervisor,
) -> anyhow::Result<Stores> {
    match &config.storage {
        StorageMode::Embedded { .. } => Ok(Stores {
            repo: open_repository(config).await?,
            live: Arc::new(MemoryLiveStore::new(vote_limits(config))),
            signals: Arc::new(SignalBus::local()),
            sessions: SessionStorage::InProcess,
            migrations: Arc::new(Mutex::new(Ok(()))),
        }),
        StorageMode::Distributed { database_url, redis_url } => {
            // Neither server needs to be up yet: both are retried in the
            // background and readiness says what is missing.
            let pg = Arc::new(PostgresRepository::new(
                database_url.expose(),
                config.db_min_conns,
                config.db_max_conns,
                metrics.clone(),
            )?);
            let migrations = Arc::new(Mutex::new(Err("migrations not applied yet".to_owned())));
            supervisor
                .once("migrations", migrate_until_done(Arc::clone(&pg), Arc::clone(&migrations), config.db_min_conns));
            // One client for the live store, the signals' publisher and the
            // login sessions; the live store's maintenance connects it.
            let connection = RedisConnection::open(redis_url.expose())?;
            let redis = RedisLiveStore::new(&connection, vote_limits(config), metrics.clone());
            let maintained = Arc::clone(&redis);
            supervisor.restarting("redis", move |_| Arc::clone(&maintained).maintain());
            Ok(Stores {
                repo: pg,
                live: redis,
                signals: Arc::new(SignalBus::redis(&connection)?),
                sessions: SessionStorage::Redis(connection.client().clone()),
                migrations,
            })
        }
    }
}

/// Applies PostgreSQL migrations, retrying with backoff until they succeed.
async fn migrate_until_done(pg: Arc<PostgresRepository>, status: Arc<Mutex<Result<(), String>>>, min_conns: usize) {
    let mut delay = Duration::from_millis(250);
    loop {
        match pg.migrate().await {
            Ok(()) => {
                *status.lock().unwrap_or_else(|p| p.into_inner()) = Ok(());
                if let Err(e) = pg.warm_up(min_conns).await {
                    tracing::warn!(error = %e, "could not open the minimum number of database connections");
                }
                return;
            }
            Err(e) => {
                let message = format!("PostgreSQL migrations pending: {e:#}");
                tracing::warn!(retry_in = ?delay, "{message}");
                *status.lock().unwrap_or_else(|p| p.into_inner()) = Err(message);
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
