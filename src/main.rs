//! The `chatpulse` binary: parses the command line and the configuration,
//! then hands over to the library. Wiring only.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use chatpulse::config::{Config, StorageMode};
use chatpulse::domain::BroadcasterId;
use chatpulse::startup::{self, Application};
use chatpulse::store::{NewStreamer, RepositoryError};

/// mimalloc rather than glibc's allocator: the broadcaster's per-tick
/// batches and the Redis client's frames churn many small allocations, and
/// glibc spent a large share of an idle instance's CPU consolidating them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Twitch chat → a live tug-of-war bar for OBS.
///
/// Configuration comes from the environment (and `.env`); see `.env.example`.
#[derive(Parser)]
#[command(name = "chatpulse", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage streamers (works while the server runs).
    Streamers {
        #[command(subcommand)]
        action: StreamersCommand,
    },
    /// Manage the streamer API's personal tokens (works while the server runs).
    ApiTokens {
        #[command(subcommand)]
        action: ApiTokensCommand,
    },
    /// Run the Twitch simulator on its own (OAuth, Helix, EventSub delivery).
    /// Point a service at it with TWITCH_AUTH_URL=http://HOST:PORT/oauth2 and
    /// TWITCH_API_URL=http://HOST:PORT/helix. Absent from production builds
    /// (built without the `simulator` feature).
    #[cfg_attr(not(feature = "simulator"), command(hide = true))]
    TwitchSim {
        /// Port to listen on.
        #[arg(long, default_value_t = 8090)]
        port: u16,
        /// The client id the simulator accepts [default: chatpulsesimclient0000000000000].
        #[arg(long)]
        client_id: Option<String>,
        /// The client secret the simulator accepts [default: chatpulsesimsecret000000000000].
        #[arg(long)]
        client_secret: Option<String>,
        /// A registered OAuth redirect URI (repeatable).
        #[arg(long, default_value = "http://localhost:8080/auth/callback")]
        redirect_uri: Vec<String>,
    },
}

#[derive(Subcommand)]
enum StreamersCommand {
    /// Create a streamer with the default config and print their overlay URL.
    Add {
        /// The streamer's Twitch user id (numeric string).
        twitch_user_id: String,
        /// The streamer's Twitch login.
        login: String,
        /// Display name (defaults to the login).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List streamers and their overlay URLs.
    List,
    /// Delete a streamer and everything stored for them.
    Remove {
        /// The streamer's Twitch user id.
        twitch_user_id: String,
    },
}

#[derive(Subcommand)]
enum ApiTokensCommand {
    /// Create a token for a streamer and print it. It is shown this once:
    /// only its SHA-256 digest is stored.
    Create {
        /// The streamer's Twitch user id.
        twitch_user_id: String,
        /// What the token is for (e.g. "Streamer.bot"); 1-60 characters.
        #[arg(long)]
        name: Option<String>,
    },
    /// List every token (never the tokens themselves): id, Twitch user id,
    /// login, name, created, last used, state.
    List,
    /// Revoke a token by its id (as `list` shows it); it stops working at once.
    Revoke {
        /// The token's id.
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    chatpulse::install_crypto_provider();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // One-shot commands print their result on stdout; progress logs would
    // only be noise there unless asked for.
    let serving = matches!(cli.command, None | Some(Command::Serve));
    let level = if serving || std::env::var_os("LOG_LEVEL").is_some() { config.log_level.as_str() } else { "warn" };
    chatpulse::telemetry::init(level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => startup::open_repository(&config).await.map(|_| println!("migrations are up to date")),
            Command::Streamers { action } => streamers(&config, action).await,
            Command::ApiTokens { action } => api_tokens(&config, action).await,
            Command::TwitchSim { port, client_id, client_secret, redirect_uri } => {
                twitch_sim(port, client_id, client_secret, redirect_uri).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let storage = match &config.storage {
        StorageMode::Embedded { data_dir } => format!("embedded (SQLite in {})", data_dir.display()),
        StorageMode::Distributed { .. } => "distributed (PostgreSQL + Redis)".to_owned(),
    };
    let public_url = config.public_url.clone();
    #[cfg(feature = "simulator")]
    let (app, demo) = match chatpulse::dev::BuiltInTwitch::from_env(&config)? {
        Some(builtin) => Application::build_with_simulator(config, builtin).await?,
        None => (Application::build(config).await?, None),
    };
    #[cfg(not(feature = "simulator"))]
    let app = Application::build(config).await?;
    tracing::info!(port = app.port(), storage = %storage, "ChatPulse is listening");
    println!("ChatPulse is listening on port {} — storage: {storage}", app.port());
    #[cfg(feature = "simulator")]
    if let Some(demo) = demo {
        println!();
        println!("  Demo on the built-in Twitch simulator ({}):", demo.simulator_url);
        println!("    dashboard:  {}", demo.dashboard_url);
        println!("    overlay:    {}", demo.overlay_url);
        println!("    chat page:  {}   ← type \"yes\" or \"no\" there", demo.chat_url);
        println!();
    }
    println!("  add a streamer: chatpulse streamers add <twitch_user_id> <login>");
    println!("  health:  {public_url}/health/ready");
    startup::cancel_on_signal(app.shutdown_token());
    app.run_until_stopped().await
}

/// `chatpulse twitch-sim`: the simulator crate's standalone runner.
#[cfg(feature = "simulator")]
async fn twitch_sim(
    port: u16,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_uris: Vec<String>,
) -> anyhow::Result<()> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    startup::cancel_on_signal(shutdown.clone());
    twitch_sim::run_standalone(port, client_id, client_secret, redirect_uris, shutdown).await?;
    Ok(())
}

#[cfg(not(feature = "simulator"))]
#[allow(clippy::unused_async)] // the same shape as the simulator build's
async fn twitch_sim(_: u16, _: Option<String>, _: Option<String>, _: Vec<String>) -> anyhow::Result<()> {
    anyhow::bail!("this chatpulse was built without the Twitch simulator (cargo feature `simulator`)")
}

async fn streamers(config: &Config, action: StreamersCommand) -> anyhow::Result<()> {
    let repo = startup::open_repository(config).await?;
    let parse_id = |raw: &str| BroadcasterId::parse(raw).map_err(|e| anyhow::anyhow!("{raw:?}: {e}"));
    match action {
        StreamersCommand::Add { twitch_user_id, login, display_name } => {
            let login = login.trim().to_lowercase();
            if login.is_empty() || login.len() > 25 || !login.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                anyhow::bail!("{login:?}: a Twitch login is 1-25 letters, digits or '_'");
            }
            let new = NewStreamer {
                twitch_user_id: parse_id(&twitch_user_id)?,
                display_name: display_name.unwrap_or_else(|| login.clone()),
                login,
            };
            let setup = repo.create_streamer(&new).await.map_err(|e| match e {
                RepositoryError::Conflict(_) => {
                    anyhow::anyhow!("a streamer with Twitch user id {twitch_user_id} already exists")
                }
                other => other.into(),
            })?;
            println!("{}", config.overlay_url(setup.streamer.overlay_id));
        }
        StreamersCommand::List => {
            let all = repo.list_streamers().await?;
            if all.is_empty() {
                println!("no streamers yet (add one: chatpulse streamers add <twitch_user_id> <login>)");
            }
            for s in all {
                println!("{}\t{}\t{}", s.twitch_user_id, s.login, config.overlay_url(s.overlay_id));
            }
        }
        StreamersCommand::Remove { twitch_user_id } => {
            if !repo.remove_streamer(&parse_id(&twitch_user_id)?).await? {
                anyhow::bail!("no streamer with Twitch user id {twitch_user_id}");
            }
            println!("removed streamer {twitch_user_id}");
        }
    }
    Ok(())
}

async fn api_tokens(config: &Config, action: ApiTokensCommand) -> anyhow::Result<()> {
    use chatpulse::app::api;
    use chatpulse::domain::{ApiTokenId, TokenName};

    let repo = startup::open_repository(config).await?;
    match action {
        ApiTokensCommand::Create { twitch_user_id, name } => {
            let streamer =
                BroadcasterId::parse(&twitch_user_id).map_err(|e| anyhow::anyhow!("{twitch_user_id:?}: {e}"))?;
            let name = match name {
                Some(raw) => TokenName::parse(&raw).map_err(|e| anyhow::anyhow!("--name {raw:?}: {e}"))?,
                None => TokenName::default(),
            };
            let created = api::create_token_for(repo.as_ref(), &streamer, name).await.map_err(|e| match e {
                RepositoryError::NotFound(_) => anyhow::anyhow!("no streamer with Twitch user id {twitch_user_id}"),
                other => other.into(),
            })?;
            // The token alone on stdout (for scripts); the rest on stderr.
            println!("{}", created.secret.expose());
            eprintln!(
                "API token {} ({}) created for {twitch_user_id}. It is shown only this once: store it now.",
                created.token.id, created.token.name
            );
        }
        ApiTokensCommand::List => {
            let tokens = repo.api_tokens(None).await?;
            if tokens.is_empty() {
                println!("no API tokens yet (create one: chatpulse api-tokens create <twitch_user_id>)");
            }
            let streamers = repo.list_streamers().await?;
            let time = |t: time::OffsetDateTime| {
                t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
            };
            for t in tokens {
                let owner = streamers.iter().find(|s| s.id == t.streamer);
                let (twitch_id, login) = owner.map_or(("-", "-"), |s| (s.twitch_user_id.as_str(), s.login.as_str()));
                let state = t.revoked_at.map_or_else(|| "active".to_owned(), |at| format!("revoked {}", time(at)));
                let used = t.last_used_at.map_or_else(|| "never used".to_owned(), time);
                println!("{}\t{twitch_id}\t{login}\t{}\t{}\t{used}\t{state}", t.id, t.name, time(t.created_at));
            }
        }
        ApiTokensCommand::Revoke { id } => {
            let parsed: ApiTokenId = id.parse().map_err(|e| anyhow::anyhow!("{id:?}: {e}"))?;
            if !api::revoke_token(repo.as_ref(), parsed, None).await? {
                anyhow::bail!("no active API token with id {parsed}");
            }
            println!("revoked API token {parsed}");
        }
    }
    Ok(())
}
