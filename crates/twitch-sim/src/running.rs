//! A simulator serving on a port with ChatPulse's two development accounts:
//! the one set-up that `make run`, `chatpulse twitch-sim` and the test suites
//! share.

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{SimConfig, SimUser, Simulator};

/// The scopes the demo channel grants (it lets the bot read its chat).
pub const STREAMER_SCOPES: &[&str] = &["channel:bot"];
/// The scopes of ChatPulse's bot account.
pub const BOT_SCOPES: &[&str] = &["user:read:chat", "user:bot"];

/// Where a client finds this Twitch, and as which application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `…/oauth2` (`TWITCH_AUTH_URL`).
    pub auth_url: String,
    /// `…/helix` (`TWITCH_API_URL`).
    pub api_url: String,
    /// `ws://…/ws` (`TWITCH_EVENTSUB_WS_URL`).
    pub ws_url: String,
    pub client_id: String,
    pub client_secret: String,
}

impl Endpoints {
    /// The endpoints under `base` (`http://host:port`).
    pub fn at(base: &str, config: &SimConfig) -> Self {
        let base = base.trim_end_matches('/');
        let ws_base = base.replacen("https://", "wss://", 1).replacen("http://", "ws://", 1);
        Self {
            auth_url: format!("{base}/oauth2"),
            api_url: format!("{base}/helix"),
            ws_url: format!("{ws_base}/ws"),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
        }
    }
}

/// A simulator serving in the background.
pub struct Running {
    pub sim: Simulator,
    /// `http://127.0.0.1:<port>`: how servers on this machine reach it.
    pub local_url: String,
    pub port: u16,
    /// The demo channel `demo_streamer`, which granted [`STREAMER_SCOPES`].
    pub streamer: SimUser,
    /// The bot account `chatpulse_bot`, which granted [`BOT_SCOPES`].
    pub bot: SimUser,
    /// Ends when the simulator stops (its shutdown token was cancelled).
    pub task: JoinHandle<()>,
}

impl Running {
    /// Starts `config`'s simulator on `listener` until `shutdown` and
    /// creates the two development accounts. They are created first and in a
    /// fixed order, so their ids are the same on every start with the same
    /// `first_user_id` (a restarted service finds its demo streamer again),
    /// and the chat page preselects the demo channel.
    pub fn start(config: SimConfig, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<Self> {
        let port = listener.local_addr()?.port();
        let sim = Simulator::new(config);
        let streamer = sim.create_user("demo_streamer", "DemoStreamer");
        sim.grant(&streamer.id, STREAMER_SCOPES);
        let bot = sim.create_user("chatpulse_bot", "ChatPulse Bot");
        sim.grant(&bot.id, BOT_SCOPES);
        let task = {
            let sim = sim.clone();
            tokio::spawn(async move {
                if let Err(e) = sim.serve(listener, shutdown).await {
                    tracing::error!(error = %e, "Twitch simulator stopped");
                }
            })
        };
        Ok(Self { sim, local_url: format!("http://127.0.0.1:{port}"), port, streamer, bot, task })
    }

    /// Its endpoints as servers on this machine reach them (loopback).
    pub fn endpoints(&self) -> Endpoints {
        Endpoints::at(&self.local_url, self.sim.config())
    }

    /// Its endpoints as browsers reach them ([`SimConfig::public_url`]).
    pub fn public_endpoints(&self) -> Endpoints {
        Endpoints::at(&self.sim.config().public_url, self.sim.config())
    }
}

/// What `chatpulse twitch-sim` runs: the simulator on its own, on `port`,
/// printing the variables that point a ChatPulse instance at it; serves
/// until `shutdown`.
pub async fn run_standalone(
    port: u16,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_uris: Vec<String>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    let port = listener.local_addr()?.port();
    let defaults = SimConfig::default();
    let config = SimConfig {
        client_id: client_id.unwrap_or(defaults.client_id.clone()),
        client_secret: client_secret.unwrap_or(defaults.client_secret.clone()),
        public_url: format!("http://localhost:{port}"),
        redirect_uris,
        ..defaults
    };
    let running = Running::start(config, listener, shutdown)?;
    let to = running.public_endpoints();
    println!("Twitch simulator on http://localhost:{port}; point ChatPulse at it with:");
    println!();
    println!("  export TWITCH_AUTH_URL={}", to.auth_url);
    println!("  export TWITCH_API_URL={}", to.api_url);
    println!("  export TWITCH_EVENTSUB_WS_URL={}", to.ws_url);
    println!("  export TWITCH_CLIENT_ID={}", to.client_id);
    println!("  export TWITCH_CLIENT_SECRET={}", to.client_secret);
    println!("  export BOT_USER_ID={}", running.bot.id);
    println!();
    let streamer = &running.streamer;
    println!("  chat page: http://localhost:{port}/sim/chat   (channel: {} {})", streamer.login, streamer.id);
    running.task.await.map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_base_url_and_the_application() {
        let config = SimConfig::default();
        let e = Endpoints::at("http://127.0.0.1:8090/", &config);
        assert_eq!(e.auth_url, "http://127.0.0.1:8090/oauth2");
        assert_eq!(e.api_url, "http://127.0.0.1:8090/helix");
        assert_eq!(e.ws_url, "ws://127.0.0.1:8090/ws");
        assert_eq!(e.client_id, config.client_id);
        assert_eq!(Endpoints::at("https://sim.example", &config).ws_url, "wss://sim.example/ws");
    }

    #[tokio::test]
    async fn the_development_accounts_have_the_same_ids_on_every_start() {
        let mut ids = Vec::new();
        for _ in 0..2 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let stop = CancellationToken::new();
            let running = Running::start(SimConfig::default(), listener, stop.clone()).unwrap();
            let granted = |id: &str| {
                let mut scopes = running.sim.granted_scopes(id);
                scopes.sort();
                scopes
            };
            assert_eq!(granted(&running.streamer.id), ["channel:bot"]);
            assert_eq!(granted(&running.bot.id), ["user:bot", "user:read:chat"]);
            ids.push((running.streamer.id.clone(), running.bot.id.clone()));
            stop.cancel();
            running.task.await.unwrap();
        }
        assert_eq!(ids[0], ids[1]);
        assert_ne!(ids[0].0, ids[0].1);
    }
}
