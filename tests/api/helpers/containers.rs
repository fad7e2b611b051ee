//! PostgreSQL and Redis in containers (cargo feature `testcontainers`), for
//! a machine with a Docker engine and no test servers of its own: when
//! `TEST_DATABASE_URL` and `TEST_REDIS_URL` are both unset, the distributed
//! suites run on these instead.
//!
//! The two containers are started once and then reused, by name, by every
//! later run (`docker rm -f chatpulse-test-postgres chatpulse-test-redis`
//! removes them): a test binary never gets to drop what it keeps for all its
//! tests, so containers that were not reused would pile up. Every test still
//! gets a fresh schema and Redis keys of its own.

use std::sync::OnceLock;

use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ImageExt, ReuseDirective};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::redis::{REDIS_PORT, Redis};

/// PostgreSQL 15+ and Redis 7+ (Functions), as the service requires.
const POSTGRES_TAG: &str = "16-alpine";
const REDIS_TAG: &str = "7.4-alpine";

/// Whether the suite starts its own servers: neither URL is set.
pub fn wanted() -> bool {
    ["TEST_DATABASE_URL", "TEST_REDIS_URL"].iter().all(|v| std::env::var(v).map_or(true, |s| s.trim().is_empty()))
}

/// The running containers, and the runtime their Docker client lives on:
/// each test has a runtime of its own that ends with the test.
struct Servers {
    database_url: String,
    redis_url: String,
    _postgres: ContainerAsync<Postgres>,
    _redis: ContainerAsync<Redis>,
    _runtime: tokio::runtime::Runtime,
}

static SERVERS: OnceLock<Servers> = OnceLock::new();

/// The PostgreSQL (base) and Redis URLs, starting the containers on first use.
pub async fn urls() -> (String, String) {
    let servers = tokio::task::spawn_blocking(|| SERVERS.get_or_init(start)).await.expect("containers start");
    (servers.database_url.clone(), servers.redis_url.clone())
}

fn start() -> Servers {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the containers");
    let (postgres, redis) = runtime.block_on(async {
        let postgres = Postgres::default()
            .with_tag(POSTGRES_TAG)
            .with_container_name("chatpulse-test-postgres")
            .with_reuse(ReuseDirective::Always)
            .start();
        let redis = Redis::default()
            .with_tag(REDIS_TAG)
            .with_container_name("chatpulse-test-redis")
            .with_reuse(ReuseDirective::Always)
            .start();
        let (postgres, redis) = tokio::join!(postgres, redis);
        let no_docker =
            "the testcontainers feature needs a running Docker engine (or set TEST_DATABASE_URL and TEST_REDIS_URL)";
        (postgres.unwrap_or_else(|e| panic!("{no_docker}: {e}")), redis.unwrap_or_else(|e| panic!("{no_docker}: {e}")))
    });
    let (database_url, redis_url) = runtime.block_on(async {
        let pg_host = postgres.get_host().await.expect("PostgreSQL container host");
        let pg_port = postgres.get_host_port_ipv4(5432).await.expect("PostgreSQL container port");
        let redis_host = redis.get_host().await.expect("Redis container host");
        let redis_port = redis.get_host_port_ipv4(REDIS_PORT).await.expect("Redis container port");
        (
            format!("postgres://postgres:postgres@{pg_host}:{pg_port}/postgres"),
            format!("redis://{redis_host}:{redis_port}"),
        )
    });
    Servers { database_url, redis_url, _postgres: postgres, _redis: redis, _runtime: runtime }
}
