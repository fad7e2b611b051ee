//! Twitch in tests: how an app is wired to it ([`Wiring`]), a standalone
//! simulator shared by the instances of one test ([`Twitch`]), and what a
//! demo app's built-in simulator is asked (`sim_*`).

use std::time::Duration;

use chatpulse::config::{Config, Secret};
use chatpulse::domain::OverlayId;
use chatpulse::twitch::client::TwitchClient;
use tokio_util::sync::CancellationToken;
use twitch_sim::{Endpoints, SimConfig, SimUser, Simulator};

use super::{TestApp, eventually};

/// Which Twitch an app talks to (see [`super::Builder`]).
pub(super) enum Wiring<'a> {
    /// None: overlays and signed webhooks work, logins and EventSub do not.
    None,
    /// Its own simulator beside it, like `make run`.
    BuiltIn,
    /// A standalone simulator, EventSub included.
    Standalone(&'a Twitch),
    /// Another app's simulator, for logins and token checks only.
    LoginsOnly(Endpoints),
}

impl Wiring<'_> {
    /// Whether the wiring names the app's own port (public URL, OAuth
    /// redirect, webhook callback), so the port must be chosen ahead.
    pub(super) fn names_the_port(&self) -> bool {
        matches!(self, Self::BuiltIn | Self::Standalone(_))
    }

    pub(super) fn wire(&self, c: &mut Config, port: u16) {
        if self.names_the_port() {
            c.public_url = format!("http://127.0.0.1:{port}");
            c.twitch_redirect_uri = format!("http://127.0.0.1:{port}/auth/callback");
            c.webhook_callback_url = format!("http://127.0.0.1:{port}/webhooks/eventsub");
        }
        match self {
            Self::None | Self::BuiltIn => {}
            Self::Standalone(twitch) => {
                point_at(c, twitch.endpoints());
                c.bot_user_id = Some(twitch.bot.id.clone());
            }
            Self::LoginsOnly(endpoints) => point_at(c, endpoints.clone()),
        }
    }
}

/// Points `c`'s Twitch application at a simulator.
fn point_at(c: &mut Config, to: Endpoints) {
    c.twitch_client_id = Some(to.client_id);
    c.twitch_client_secret = Some(Secret::new(to.client_secret));
    c.twitch_api_url = to.api_url;
    c.twitch_auth_url = to.auth_url;
    c.twitch_eventsub_ws_url = to.ws_url;
}

/// A Twitch simulator of its own (a demo app's lives and dies with the
/// app), shared by the instances of one test, with our own Helix client to
/// act on it as another party would (or to test that client).
pub struct Twitch {
    pub sim: Simulator,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The bot account, which granted `twitch_sim::BOT_SCOPES`.
    pub bot: SimUser,
    /// Our own Helix client, with the simulator's application credentials.
    pub client: TwitchClient,
    stop: CancellationToken,
}

impl Drop for Twitch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Twitch {
    pub async fn start() -> Self {
        chatpulse::install_crypto_provider();
        // Tests share one database: every simulator gets its own user ids.
        let first_user_id = 3_000_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as u64;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let config = SimConfig { first_user_id, public_url: base.clone(), ..SimConfig::default() };
        let stop = CancellationToken::new();
        let twitch_sim::Running { sim, bot, .. } = twitch_sim::Running::start(config, listener, stop.clone()).unwrap();
        let to = twitch_sim::Endpoints::at(&base, sim.config());
        let client =
            TwitchClient::new(&to.api_url, &to.auth_url, &to.client_id, Secret::new(to.client_secret)).unwrap();
        Self { sim, base, bot, client, stop }
    }

    /// Where a service finds it (`TWITCH_API_URL`, …) and as which application.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints::at(&self.base, self.sim.config())
    }

    /// A new streamer who granted `channel:bot`.
    pub fn streamer(&self) -> SimUser {
        let login = format!("streamer{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let user = self.sim.create_user(&login, &login);
        self.sim.grant(&user.id, twitch_sim::STREAMER_SCOPES);
        user
    }
}

/// What a demo app's built-in simulator is asked.
impl TestApp {
    /// The built-in simulator's base URL (a demo app only).
    pub fn simulator_url(&self) -> &str {
        &self.demo.as_ref().expect("a demo app (TestApp::builder().demo()) runs the simulator").simulator_url
    }

    /// The demo streamer's overlay (a demo app only).
    pub fn demo_overlay(&self) -> OverlayId {
        let url = &self.demo.as_ref().expect("the demo is set up").overlay_url;
        url.rsplit('/').next().unwrap().parse().unwrap()
    }

    /// The demo streamer's Twitch id, as stored.
    pub async fn demo_broadcaster(&self) -> String {
        let setup = self.repo.overlay_setup(self.demo_overlay()).await.unwrap().expect("demo streamer stored");
        setup.streamer.twitch_user_id.to_string()
    }

    /// Types one chat message into `broadcaster`'s channel through the
    /// simulator (`POST /sim/chat`), which signs it and delivers it through
    /// the conduit's shard to our webhook. Returns the simulator's status.
    pub async fn sim_chat(&self, broadcaster: &str, chatter: &str, text: &str) -> u16 {
        let body = serde_json::json!({ "broadcaster_user_id": broadcaster, "chatter_user_id": chatter, "text": text });
        let url = format!("{}/sim/chat", self.simulator_url());
        self.http.post(url).json(&body).send().await.unwrap().status().as_u16()
    }

    /// The simulator's state dump (`GET /sim/state`).
    pub async fn sim_state(&self) -> serde_json::Value {
        let url = format!("{}/sim/state", self.simulator_url());
        self.http.get(url).send().await.unwrap().json().await.unwrap()
    }

    /// A simulated Twitch user's id by login.
    pub async fn sim_user_id(&self, login: &str) -> String {
        let state = self.sim_state().await;
        let users = state["users"].as_array().cloned().unwrap_or_default();
        let user = users.iter().find(|u| u["login"] == login).unwrap_or_else(|| panic!("no user {login} in {users:?}"));
        user["id"].as_str().unwrap().to_owned()
    }

    /// Whether the simulator would deliver chat typed in `broadcaster`'s
    /// channel to us now: an enabled `channel.chat.message` subscription on a
    /// conduit whose shard is enabled (its challenge answered).
    pub async fn sim_delivers_chat_of(&self, broadcaster: &str) -> bool {
        let state = self.sim_state().await;
        let conduits = state["conduits"].as_array().cloned().unwrap_or_default();
        let shard_enabled = |conduit_id: &serde_json::Value| {
            conduits.iter().any(|c| {
                &c["id"] == conduit_id
                    && c["shards"]
                        .as_array()
                        .is_some_and(|s| !s.is_empty() && s.iter().all(|s| s["status"] == "enabled"))
            })
        };
        state["subscriptions"].as_array().is_some_and(|subs| {
            subs.iter().any(|s| {
                s["type"] == "channel.chat.message"
                    && s["status"] == "enabled"
                    && s["condition"]["broadcaster_user_id"] == broadcaster
                    && shard_enabled(&s["transport"]["conduit_id"])
            })
        })
    }

    /// Waits until [`Self::sim_delivers_chat_of`] (an overlay of the channel
    /// is open, so the service subscribes it).
    pub async fn wait_until_sim_delivers_chat_of(&self, broadcaster: &str) {
        let subscribed = eventually(Duration::from_secs(20), || self.sim_delivers_chat_of(broadcaster)).await;
        assert!(subscribed, "the simulator never got an enabled chat subscription: {:#}", self.sim_state().await);
    }

    /// The simulator's delivery attempts of one subscription, oldest first.
    pub async fn sim_deliveries_of(&self, subscription_id: &str) -> Vec<serde_json::Value> {
        let state = self.sim_state().await;
        let all = state["deliveries"].as_array().cloned().unwrap_or_default();
        all.into_iter().filter(|d| d["subscription_id"] == subscription_id).collect()
    }

    /// The built-in simulator as another service would reach it.
    pub fn simulator_endpoints(&self) -> Endpoints {
        Endpoints::at(self.simulator_url(), &SimConfig::default())
    }
}
