//! The one Redis connection set-up of an instance: the live store, the
//! instance signals' publisher and the login sessions share one client (one
//! multiplexed connection per Redis node, reconnecting on its own); pub/sub
//! gets a second connection from the same settings, since a subscribed
//! connection can run no other command.

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::ReconnectPolicy;

/// How long one command may take before it fails (the live store's circuit
/// breaker counts the failures).
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);

pub struct RedisConnection {
    client: Client,
    config: Config,
}

fn policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 100, 5_000, 2)
}

impl RedisConnection {
    /// Builds the client for `url` (`REDIS_URL`) without waiting for Redis:
    /// a server that is down at start-up is retried like any lost
    /// connection. The live store's maintenance task connects it.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let mut config = Config::from_url(url).map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        // Retry the first connection like any other instead of failing.
        config.fail_fast = false;
        let client = Builder::from_config(config.clone())
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 2;
            })
            .with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT)
            .set_policy(policy())
            .build()
            .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        Ok(Self { client, config })
    }

    /// The shared client (cheap to clone: clones share the connection).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A connection of its own for pub/sub, from the same settings.
    pub fn subscriber(&self) -> anyhow::Result<SubscriberClient> {
        Ok(Builder::from_config(self.config.clone()).set_policy(policy()).build_subscriber_client()?)
    }
}
