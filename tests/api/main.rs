//! The one integration-test binary (each file under `tests/` would be another
//! linked binary). Modules read as specifications of the running service.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Runs an end-to-end test twice: on the embedded shape (SQLite +
/// in-process) and on the distributed shape (PostgreSQL + Redis, from
/// `TEST_DATABASE_URL` / `TEST_REDIS_URL`; skipped loudly when unset).
macro_rules! both_modes {
    (async fn $name:ident() $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body() $body

            #[tokio::test]
            async fn embedded() {
                crate::helpers::run_in(crate::helpers::Mode::Embedded, body()).await
            }

            #[tokio::test]
            async fn distributed() {
                crate::helpers::run_in(crate::helpers::Mode::Distributed, body()).await
            }
        }
    };
}

mod browser;
mod browser_control;
mod cli;
mod cluster;
mod conduit;
mod control;
mod dashboard;
mod distributed;
mod equivalence;
mod eventsub_ws;
mod helpers;
mod history;
mod live_store;
mod live_store_meter;
mod meter;
mod overlay;
mod repository;
mod security;
mod sessions;
mod shutdown;
mod simulated;
mod streamer_api;
mod webhook;
