//! `chatpulse api-tokens create|list|revoke`: a token printed once, listed
//! without its secret, revoked by id; clear errors and failing exit codes
//! for bad input, with nothing stored.

use std::process::{Command, Output};

fn chatpulse(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
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
fn a_token_is_created_printed_once_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let added = chatpulse(dir.path(), &["streamers", "add", "41245072", "pixelpaws"]);
    assert!(added.status.success(), "{}", stderr(&added));

    let created = chatpulse(dir.path(), &["api-tokens", "create", "41245072", "--name", "Streamer.bot"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let token = stdout(&created).trim().to_owned();
    assert!(token.starts_with("cp_") && token.len() == 67, "the token alone on stdout: {token:?}");
    assert!(stderr(&created).contains("only this once"), "{}", stderr(&created));

    let listed = stdout(&chatpulse(dir.path(), &["api-tokens", "list"]));
    let line = listed.lines().next().unwrap();
    let columns: Vec<&str> = line.split('\t').collect();
    assert_eq!(columns.len(), 7, "{line}");
    assert_eq!(&columns[1..4], &["41245072", "pixelpaws", "Streamer.bot"]);
    assert_eq!((columns[5], columns[6]), ("never used", "active"));
    assert!(!listed.contains(&token[3..]), "the list never shows the token");
    let id = columns[0].to_owned();

    let revoked = chatpulse(dir.path(), &["api-tokens", "revoke", &id]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert_eq!(stdout(&revoked).trim(), format!("revoked API token {id}"));
    let listed = stdout(&chatpulse(dir.path(), &["api-tokens", "list"]));
    assert!(listed.lines().next().unwrap().split('\t').nth(6).unwrap().starts_with("revoked "), "{listed}");

    let again = chatpulse(dir.path(), &["api-tokens", "revoke", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(stderr(&again).trim(), format!("error: no active API token with id {id}"));
}

#[test]
fn bad_arguments_are_refused_with_one_clear_line_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    assert!(chatpulse(dir.path(), &["streamers", "add", "41245072", "pixelpaws"]).status.success());
    let long_name = "x".repeat(61);
    for (args, says) in [
        (&["api-tokens", "create", "99999999"][..], "no streamer with Twitch user id 99999999"),
        (&["api-tokens", "create", "12 34"][..], "\"12 34\""),
        (&["api-tokens", "create", "41245072", "--name", "  "][..], "--name"),
        (&["api-tokens", "create", "41245072", "--name", &long_name][..], "1 to 60 characters"),
        (&["api-tokens", "revoke", "not-an-id"][..], "not an API token id"),
        (&["api-tokens", "revoke", "0190f5a4-7c3e-7000-8000-000000000000"][..], "no active API token"),
    ] {
        let out = chatpulse(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "one clear line for {args:?}: {err}");
        assert!(err.starts_with("error: ") && err.contains(says), "{args:?}: {err}");
        assert!(stdout(&out).is_empty(), "{args:?} printed no token");
    }
    let listed = chatpulse(dir.path(), &["api-tokens", "list"]);
    assert!(stdout(&listed).starts_with("no API tokens yet"), "{}", stdout(&listed));
    // A command clap does not know: its usage error, exit code 2.
    assert_eq!(chatpulse(dir.path(), &["api-tokens", "rename"]).status.code(), Some(2));
}
