//! `twitch-sim`: the simulator on its own, without building ChatPulse — the
//! same runner as `chatpulse twitch-sim` (client libraries' compatibility
//! tests start it). Stops on Ctrl-C or SIGTERM.

use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: twitch-sim [--port N] [--client-id ID] [--client-secret SECRET] [--redirect-uri URI]...

  --port           port to listen on (default 8090; 0 picks a free one, printed at start)
  --client-id      the registered client ID (default: the simulator's)
  --client-secret  its secret (default: the simulator's)
  --redirect-uri   a registered OAuth redirect URI, repeatable
                   (default http://localhost:8080/auth/callback)";

struct Args {
    port: u16,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_uris: Vec<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args { port: 8090, client_id: None, client_secret: None, redirect_uris: Vec::new() };
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => parsed.port = value.parse().map_err(|_| format!("--port: not a port: {value}"))?,
            "--client-id" => parsed.client_id = Some(value),
            "--client-secret" => parsed.client_secret = Some(value),
            "--redirect-uri" => parsed.redirect_uris.push(value),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if parsed.redirect_uris.is_empty() {
        parsed.redirect_uris.push("http://localhost:8080/auth/callback".into());
    }
    Ok(parsed)
}

async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    shutdown.cancel();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("twitch-sim: {message}");
            }
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let run = twitch_sim::run_standalone(args.port, args.client_id, args.client_secret, args.redirect_uris, shutdown);
    match run.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twitch-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
