//! The service as an operator runs it, as a process: production refuses a
//! placeholder secret with one line naming it; `LOG_FORMAT=json` carries
//! the request id on every line of a request, and never an overlay id.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

/// A production configuration that passes every check, on an embedded store.
fn production(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    [
        ("APP_ENV", "production"),
        ("PORT", "0"),
        ("PUBLIC_URL", "https://chatpulse.example"),
        ("TWITCH_CLIENT_ID", "cp1exampleclientid00000000000a"),
        ("TWITCH_CLIENT_SECRET", "s3cr3tvalue000000000000000000"),
        ("TWITCH_API_URL", "https://127.0.0.1:9/helix"),
        ("TWITCH_AUTH_URL", "https://127.0.0.1:9/oauth2"),
        ("TWITCH_EVENTSUB_WS_URL", "wss://127.0.0.1:9/ws"),
        ("SESSION_SECRET", "x7f3d9a0c2e4b6f8a1c3e5d7b9f0a2c4e6d8b0f1a3c5e7d9b2f4a6c8e0d1b3f5a7"),
        ("WEBHOOK_SECRET", "a-real-webhook-secret-42"),
        ("TOKEN_ENCRYPTION_KEY", "8e1f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7"),
        ("BOT_USER_ID", "99887766"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .chain([("DATA_DIR", dir.to_string_lossy().into_owned())])
    .collect()
}

fn chatpulse(env: &[(&str, String)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatpulse"));
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

#[test]
fn production_refuses_a_placeholder_secret_in_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (variable, placeholder) in [
        ("SESSION_SECRET", "a".repeat(64)),
        ("WEBHOOK_SECRET", "secretsecret".to_owned()),
        ("TOKEN_ENCRYPTION_KEY", format!("{}1", "0".repeat(63))),
    ] {
        let mut env = production(dir.path());
        env.retain(|(k, _)| *k != variable);
        env.push((variable, placeholder.clone()));
        let out = chatpulse(&env, &["migrate"]).current_dir(dir.path()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{variable}: {err}");
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
        assert!(err.contains(variable) && err.contains("distinct characters"), "{err}");
        assert!(!err.contains(&placeholder), "the secret itself is never printed: {err}");
    }
    // The same configuration with real secrets starts.
    let out = chatpulse(&production(dir.path()), &["migrate"]).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn json_logs_carry_the_request_id_on_every_line_and_never_an_overlay_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env: Vec<(&str, String)> = vec![
        ("DATA_DIR", dir.path().to_string_lossy().into_owned()),
        ("PORT", port.to_string()),
        ("PUBLIC_URL", format!("http://127.0.0.1:{port}")),
        ("LOG_FORMAT", "json".into()),
        ("LOG_LEVEL", "info,chatpulse=debug,tower_http=debug".into()),
    ];
    let added =
        chatpulse(&env, &["streamers", "add", "41245072", "pixelpaws"]).current_dir(dir.path()).output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let url = String::from_utf8_lossy(&added.stdout).trim().to_owned();
    let overlay = url.rsplit('/').next().unwrap().to_owned();
    let mut server = tokio::process::Command::from(chatpulse(&env, &[]))
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let up = eventually(Duration::from_secs(30), || async {
        http.get(format!("{base}/health/live")).send().await.is_ok_and(|r| r.status() == 200)
    });
    assert!(up.await, "the server starts");

    // An incoming id is kept and returned; a malformed one is replaced.
    let page = http.get(format!("{base}/overlay/{overlay}")).header("x-request-id", "lb-7f3a.1").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-request-id"], "lb-7f3a.1");
    let forged =
        http.get(format!("{base}/overlay/{overlay}")).header("x-request-id", "x\" forged=1").send().await.unwrap();
    let replaced = forged.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(replaced.parse::<uuid::Uuid>().is_ok(), "a new id: {replaced}");
    let unknown = format!("{base}/overlay/{}", uuid::Uuid::new_v4());
    assert_eq!(http.get(unknown).send().await.unwrap().status(), 404);

    server.start_kill().unwrap();
    let out = server.wait_with_output().await.unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!logs.contains(&overlay), "an overlay id in the logs:\n{logs}");
    let lines: Vec<serde_json::Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    // Every line logged while a request was handled names its id.
    let in_request: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["spans"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == "request")))
        .collect();
    assert!(in_request.len() >= 6, "start and end of each request at least:\n{logs}");
    for line in &in_request {
        let id = line["span"]["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty() && id != "-", "a line without its request id: {line}");
    }
    let ours: Vec<_> = in_request.iter().filter(|l| l["span"]["request_id"] == "lb-7f3a.1").collect();
    assert!(ours.len() >= 2, "{logs}");
    assert!(ours.iter().all(|l| l["span"]["path"] == "/overlay/{redacted}"), "{ours:?}");
    assert!(in_request.iter().any(|l| l["span"]["request_id"] == replaced.as_str()), "the new id is logged");
    assert!(!logs.contains("forged=1"), "a malformed id never reaches the logs");
}
