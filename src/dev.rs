//! Development wiring around the built-in Twitch simulator (cargo feature
//! `simulator`, on by default; production builds leave this module out).
//!
//! `make run` without Twitch credentials gets a local Twitch in the same
//! process, reached over HTTP exactly like the real one. Everything the
//! product does only for that case lives here: starting the simulator with
//! its demo channel and authorized bot, the demo streamer in our database,
//! the printed newcomer URLs, and the login shortcut
//! `/auth/login?as=<login>` (and `/auth/bot/start?as=<login>`) that asks the
//! simulator to approve at once as that user.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use twitch_sim::{Running, SimConfig};

use crate::app::App;
use crate::config::{AppEnv, Config, ConfigError};
use crate::domain::BroadcasterId;
use crate::secret::Secret;
use crate::startup::TwitchEndpoints;
use crate::store::NewStreamer;

/// The built-in simulator's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltInTwitch {
    /// `TWITCH_SIM_PORT` (default `PORT` + 1; 0 picks a free port).
    pub port: u16,
    /// The simulator's first user id. User ids follow in creation order, so
    /// a restart finds the same demo streamer; simulators whose users share
    /// one database (tests) use different bases.
    pub first_user_id: u64,
}

impl BuiltInTwitch {
    /// The default first user id (the demo channel is `41245007`).
    pub const FIRST_USER_ID: u64 = 41_245_000;

    /// Whether `serve` runs on the built-in simulator: in development
    /// without `TWITCH_CLIENT_ID`. Reads `TWITCH_SIM_PORT` from the process
    /// environment (after [`Config::from_env`] has loaded `.env`).
    pub fn from_env(config: &Config) -> Result<Option<Self>, ConfigError> {
        Self::from_lookup(config, |name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] through `lookup` (a variable name → its value).
    pub fn from_lookup(config: &Config, lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        if config.app_env != AppEnv::Development || config.twitch_client_id.is_some() {
            return Ok(None);
        }
        let port = match lookup("TWITCH_SIM_PORT").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
            None => config.port.wrapping_add(1),
            Some(raw) => raw.parse().map_err(|_| ConfigError {
                variable: "TWITCH_SIM_PORT",
                message: format!("must be a port number 0-65535 (got {raw:?})"),
            })?,
        };
        Ok(Some(Self { port, first_user_id: Self::FIRST_USER_ID }))
    }
}

/// What a newcomer needs after `make run` with the built-in simulator.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The demo streamer's overlay.
    pub overlay_url: String,
    /// The simulator's chat page: type the trigger words there.
    pub chat_url: String,
    /// Logs the demo streamer in (through the simulator) and opens the dashboard.
    pub dashboard_url: String,
    /// The simulator's base URL (`TWITCH_API_URL` = this + `/helix`).
    pub simulator_url: String,
}

/// The running simulator, as the composition root uses it.
pub(crate) struct Started {
    pub running: Running,
    /// How the service reaches it.
    pub endpoints: TwitchEndpoints,
    /// The simulator's authorize page, where the login shortcut applies.
    authorize_url: Arc<str>,
}

/// Starts the simulator beside the service, with its demo channel and bot.
pub(crate) async fn start(
    builtin: &BuiltInTwitch,
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Started> {
    let port = builtin.port;
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .with_context(|| format!("TWITCH_SIM_PORT: cannot listen on port {port}"))?;
    let port = listener.local_addr()?.port();
    let sim_config = SimConfig {
        public_url: format!("http://localhost:{port}"),
        redirect_uris: vec![config.twitch_redirect_uri.clone()],
        first_user_id: builtin.first_user_id,
        ..SimConfig::default()
    };
    let running = Running::start(sim_config, listener, shutdown)?;
    // The server talks to the simulator on loopback; browsers (the login
    // pages) go to its public address.
    let local = running.endpoints();
    let public = running.public_endpoints();
    let endpoints = TwitchEndpoints {
        api_url: local.api_url,
        auth_url: public.auth_url.clone(),
        ws_url: local.ws_url,
        client_id: local.client_id,
        client_secret: Secret::new(local.client_secret),
        bot_user_id: Some(running.bot.id.clone()),
    };
    let authorize_url = Arc::from(format!("{}/authorize", public.auth_url));
    Ok(Started { running, endpoints, authorize_url })
}

impl Started {
    /// The demo streamer's URLs, creating the streamer on first start.
    pub async fn demo(&self, app: &App, config: &Config) -> Option<Demo> {
        let streamer = &self.running.streamer;
        let new = BroadcasterId::parse(&streamer.id).map(|id| NewStreamer {
            twitch_user_id: id,
            login: streamer.login.clone(),
            display_name: streamer.display_name.clone(),
        });
        let created = match new {
            Ok(new) => app.ensure_streamer(&new).await.map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match created {
            Ok(overlay) => Some(Demo {
                overlay_url: config.overlay_url(overlay),
                chat_url: format!("{}/sim/chat", self.running.sim.config().public_url),
                dashboard_url: format!("{}/auth/login?as={}", config.public_url, streamer.login),
                simulator_url: self.running.sim.config().public_url.clone(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the demo streamer yet");
                None
            }
        }
    }

    /// Adds the login shortcut to the service's router.
    pub fn wrap(&self) -> impl FnOnce(Router) -> Router + Send + 'static {
        let authorize_url = Arc::clone(&self.authorize_url);
        move |router| router.layer(axum::middleware::from_fn_with_state(authorize_url, login_shortcut))
    }
}

/// A Twitch login: 1–25 letters, digits or `_` (safe in a query string as is).
fn is_login(s: &str) -> bool {
    (1..=25).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `GET /auth/login?as=<login>` and `GET /auth/bot/start?as=<login>`: the
/// product answers with a redirect to the simulator's authorize page; this
/// adds `sim_auto_approve=<login>` to it, so the simulator approves at once
/// as that user (demo and tests). Every other request passes untouched.
async fn login_shortcut(State(authorize_url): State<Arc<str>>, request: Request, next: Next) -> Response {
    let shortcut = matches!(request.uri().path(), "/auth/login" | "/auth/bot/start");
    let login = shortcut
        .then(|| Query::<std::collections::HashMap<String, String>>::try_from_uri(request.uri()).ok())
        .flatten()
        .and_then(|Query(mut q)| q.remove("as"))
        .filter(|login| is_login(login));
    let mut response = next.run(request).await;
    let Some(login) = login else { return response };
    let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok());
    if let Some(location) = location.filter(|l| l.starts_with(&*authorize_url))
        && let Ok(value) = HeaderValue::from_str(&format!("{location}&sim_auto_approve={login}"))
    {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Config {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|k| map.get(k).map(|v| (*v).to_owned())).unwrap()
    }

    #[test]
    fn development_without_twitch_credentials_runs_on_the_simulator_beside_the_service() {
        let c = config(&[]);
        let builtin = BuiltInTwitch::from_lookup(&c, |_| None).unwrap().unwrap();
        assert_eq!(builtin.port, 8081, "PORT + 1");
        assert_eq!(builtin.first_user_id, BuiltInTwitch::FIRST_USER_ID);
        let port = BuiltInTwitch::from_lookup(&c, |k| (k == "TWITCH_SIM_PORT").then(|| "9000".into())).unwrap();
        assert_eq!(port.map(|b| b.port), Some(9000));
    }

    #[test]
    fn real_twitch_credentials_mean_no_simulator() {
        let c = config(&[("TWITCH_CLIENT_ID", "abc"), ("TWITCH_CLIENT_SECRET", "def")]);
        assert_eq!(BuiltInTwitch::from_lookup(&c, |_| None).unwrap(), None);
    }

    #[test]
    fn a_bad_simulator_port_names_its_variable() {
        let e = BuiltInTwitch::from_lookup(&config(&[]), |_| Some("eighty".into())).unwrap_err();
        assert_eq!(e.variable, "TWITCH_SIM_PORT");
    }

    #[test]
    fn only_plain_twitch_logins_take_the_shortcut() {
        assert!(is_login("demo_streamer") && is_login("a1"));
        assert!(!is_login("") && !is_login("x&scope=evil") && !is_login(&"a".repeat(26)));
    }
}
