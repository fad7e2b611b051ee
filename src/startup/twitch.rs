//! Twitch as this process reaches it: the clients and the EventSub manager,
//! for the configured Twitch application or a simulator.

use std::sync::Arc;

use crate::app::eventsub::{EventSub, EventSubSettings};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::{LiveStore, Repository};
use crate::twitch::client::TwitchClient;
use crate::twitch::oauth::TwitchOAuth;
use crate::twitch::retry::RetryPolicy;

/// How this process reaches Twitch: the real one (from the configuration)
/// or a simulator (the development wiring in `crate::dev`).
#[derive(Debug, Clone)]
pub(crate) struct TwitchEndpoints {
    /// Helix (`TWITCH_API_URL`).
    pub api_url: String,
    /// OAuth (`TWITCH_AUTH_URL`): the authorize page browsers are sent to and
    /// the token endpoint.
    pub auth_url: String,
    /// The EventSub WebSocket (`TWITCH_EVENTSUB_WS_URL`).
    pub ws_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// The bot account that reads chat (`BOT_USER_ID`); its own messages
    /// never vote. `None`: chat cannot be subscribed to.
    pub bot_user_id: Option<String>,
}

impl TwitchEndpoints {
    /// The configured Twitch application, if there is one.
    pub(super) fn from_config(config: &Config) -> Option<Self> {
        let (client_id, client_secret) = (config.twitch_client_id.as_ref()?, config.twitch_client_secret.as_ref()?);
        Some(Self {
            api_url: config.twitch_api_url.clone(),
            auth_url: config.twitch_auth_url.clone(),
            ws_url: config.twitch_eventsub_ws_url.clone(),
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            bot_user_id: config.bot_user_id.clone(),
        })
    }
}

/// Twitch as this process sees it; all `None` without a Twitch application.
#[derive(Default)]
pub(super) struct Twitch {
    pub eventsub: Option<Arc<EventSub>>,
    pub oauth: Option<Arc<TwitchOAuth>>,
    pub bot_user_id: Option<String>,
    /// The Twitch application's client id.
    pub client_id: Option<String>,
}

/// What the EventSub manager needs besides its Twitch client.
pub(super) struct EventSubDeps<'a> {
    pub config: &'a Config,
    pub repo: &'a Arc<dyn Repository>,
    pub live: &'a Arc<dyn LiveStore>,
    pub metrics: &'a Metrics,
    pub instance_id: &'a str,
}

impl EventSubDeps<'_> {
    fn build(&self, client: Arc<TwitchClient>, bot_user_id: &str, ws_url: &str) -> Arc<EventSub> {
        let c = self.config;
        let settings = EventSubSettings {
            transport: c.eventsub_transport,
            callback_url: c.webhook_callback_url.clone(),
            secret: c.webhook_secret.expose().to_owned(),
            bot_user_id: bot_user_id.to_owned(),
            ws_url: ws_url.to_owned(),
            instance_id: self.instance_id.to_owned(),
            leader_key: c.tuning.leader_key.clone(),
            leader_ttl: c.tuning.leader_ttl,
            leader_renew: c.tuning.leader_renew,
            reconcile_interval: c.tuning.eventsub_reconcile_interval,
            crash_sweep_interval: c.tuning.crash_sweep_interval,
            shard_verify_timeout: c.tuning.shard_verify_timeout,
        };
        Arc::new(EventSub::new(client, Arc::clone(self.repo), Arc::clone(self.live), self.metrics.clone(), settings))
    }
}

pub(super) fn connect_twitch(deps: &EventSubDeps<'_>, endpoints: Option<TwitchEndpoints>) -> anyhow::Result<Twitch> {
    let Some(e) = endpoints else { return Ok(Twitch::default()) };
    let retry = RetryPolicy {
        base: deps.config.tuning.twitch_retry_base,
        max_rate_limit_wait: deps.config.tuning.twitch_rate_limit_wait,
        ..RetryPolicy::default()
    };
    let client = TwitchClient::new(&e.api_url, &e.auth_url, &e.client_id, e.client_secret.clone())?.with_retry(retry);
    let client = Arc::new(client);
    let redirect = &deps.config.twitch_redirect_uri;
    let oauth = TwitchOAuth::new(&e.auth_url, &e.api_url, &e.client_id, &e.client_secret, redirect)?;
    let eventsub = match &e.bot_user_id {
        Some(bot) => Some(deps.build(client, bot, &e.ws_url)),
        None => {
            tracing::warn!("BOT_USER_ID is not set: chat cannot be subscribed to");
            None
        }
    };
    Ok(Twitch { eventsub, oauth: Some(Arc::new(oauth)), bot_user_id: e.bot_user_id, client_id: Some(e.client_id) })
}
