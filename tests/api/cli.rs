//! The `chatpulse` command line: streamer management (also while the server
//! runs on the same data) and start-up configuration errors.

use std::process::{Command, Output};
use std::time::Duration;

use chatpulse::domain::OverlayId;

use crate::helpers::*;

fn chatpulse(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("PUBLIC_URL", "http://overlay.test:8080")
        .current_dir(data_dir)
        .output()
        .expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn streamers_can_be_added_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();

    let added = chatpulse(dir.path(), &["streamers", "add", "41245072", "PixelPaws"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let url = stdout(&added).trim().to_owned();
    let overlay = url.strip_prefix("http://overlay.test:8080/overlay/").expect("prints the overlay URL");
    assert!(overlay.parse::<OverlayId>().is_ok(), "{url}");

    let listed = chatpulse(dir.path(), &["streamers", "list"]);
    assert_eq!(stdout(&listed), format!("41245072\tpixelpaws\t{url}\n"));

    let duplicate = chatpulse(dir.path(), &["streamers", "add", "41245072", "other"]);
    assert!(!duplicate.status.success());
    assert!(stderr(&duplicate).contains("already exists"), "{}", stderr(&duplicate));

    let removed = chatpulse(dir.path(), &["streamers", "remove", "41245072"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    let again = chatpulse(dir.path(), &["streamers", "remove", "41245072"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("no streamer"), "{}", stderr(&again));
    assert!(stdout(&chatpulse(dir.path(), &["streamers", "list"])).starts_with("no streamers yet"));
}

#[test]
fn invalid_arguments_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["streamers", "add", "12 34", "pixelpaws"][..], &["streamers", "add", "41245072", "not a login!"][..]]
    {
        let out = chatpulse(dir.path(), args);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr(&out).lines().count(), 1, "one clear line: {}", stderr(&out));
    }
    assert!(stdout(&chatpulse(dir.path(), &["streamers", "list"])).starts_with("no streamers yet"));
}

#[test]
fn a_bad_variable_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .env_clear()
        .env("DATA_DIR", dir.path())
        .env("PORT", "eighty")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: invalid configuration: PORT:"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .env_clear()
        .env("DATA_DIR", dir.path())
        .env("APP_ENV", "production")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("TWITCH_CLIENT_ID"), "{}", stderr(&out));
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = chatpulse(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("chatpulse.db").exists());
}

#[tokio::test]
async fn the_cli_works_against_a_running_server() {
    let app = TestApp::builder()
        .configure(|c| {
            c.tuning.reconcile_interval = Duration::from_millis(100);
            c.tuning.config_check_interval = Duration::from_millis(100);
        })
        .start()
        .await;
    let data = app.data_dir.clone();

    let added = chatpulse(&data, &["streamers", "add", "55501234", "livestreamer"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let overlay: OverlayId = stdout(&added).trim().rsplit('/').next().unwrap().parse().unwrap();
    let page = app.http.get(format!("{}/overlay/{overlay}", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200, "a streamer added by the CLI is served at once");

    let mut client = app.connect(&overlay).await;
    client.next_frame(Duration::from_secs(2)).await.expect("initial frame");
    let removed = chatpulse(&data, &["streamers", "remove", "55501234"]);
    assert!(removed.status.success(), "{}", stderr(&removed));

    let close = client.wait_for_close(Duration::from_secs(3)).await.expect("closed").expect("close frame");
    assert_eq!(u16::from(close.code), 4404);
    let page = app.http.get(format!("{}/overlay/{overlay}", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 404);
}

#[tokio::test]
async fn the_cli_manages_streamers_in_postgres_too() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let dir = tempfile::tempdir().unwrap();
    let id = random_twitch_id();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chatpulse"))
            .args(args)
            .env_clear()
            .env("DATABASE_URL", &db)
            .env("REDIS_URL", &redis)
            .env("PUBLIC_URL", "http://overlay.test:8080")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };

    let added = run(&["streamers", "add", &id, "pgstreamer"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let url = stdout(&added).trim().to_owned();
    assert!(url.starts_with("http://overlay.test:8080/overlay/"), "{url}");
    let listed = stdout(&run(&["streamers", "list"]));
    assert!(listed.lines().any(|l| l == format!("{id}\tpgstreamer\t{url}")), "{listed}");
    assert!(run(&["streamers", "remove", &id]).status.success());
    assert!(!stdout(&run(&["streamers", "list"])).contains(&id));
    assert!(!dir.path().join("data").exists(), "nothing embedded was created");

    let unreachable = Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .args(["streamers", "list"])
        .env_clear()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(stderr(&unreachable).contains("DATABASE_URL"), "{}", stderr(&unreachable));
}

/// `chatpulse twitch-sim` prints exactly what an instance needs, and those
/// values work: the client credentials get an app token, the bot is a real
/// authorized account, the demo channel exists.
#[tokio::test]
async fn the_standalone_simulator_prints_working_settings() {
    use tokio::io::AsyncBufReadExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .args(["twitch-sim", "--port", &port.to_string()])
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut vars = std::collections::HashMap::new();
    while vars.len() < 6 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
        if let Some((k, v)) = line.trim().strip_prefix("export ").and_then(|kv| kv.split_once('=')) {
            vars.insert(k.to_owned(), v.to_owned());
        }
    }
    let base = format!("http://localhost:{port}");
    assert_eq!(vars["TWITCH_AUTH_URL"], format!("{base}/oauth2"));
    assert_eq!(vars["TWITCH_API_URL"], format!("{base}/helix"));

    let http = reqwest::Client::new();
    let form = [
        ("client_id", vars["TWITCH_CLIENT_ID"].as_str()),
        ("client_secret", vars["TWITCH_CLIENT_SECRET"].as_str()),
        ("grant_type", "client_credentials"),
    ];
    let token = http.post(format!("{}/token", vars["TWITCH_AUTH_URL"])).form(&form).send().await.unwrap();
    assert_eq!(token.status(), 200, "the printed client credentials are accepted");
    let state: serde_json::Value = http.get(format!("{base}/sim/state")).send().await.unwrap().json().await.unwrap();
    let has_grant = |user: &str, scope: &str| {
        state["grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["user_id"] == user && g["scopes"].as_array().unwrap().iter().any(|s| s == scope))
    };
    assert!(has_grant(&vars["BOT_USER_ID"], "user:read:chat"), "the bot is authorized: {state}");
    assert!(has_grant(&vars["BOT_USER_ID"], "user:bot"));
    let channel = state["users"].as_array().unwrap().iter().find(|u| u["login"] == "demo_streamer").unwrap();
    assert!(has_grant(channel["id"].as_str().unwrap(), "channel:bot"), "the demo channel granted channel:bot");
    child.kill().await.unwrap();
}
