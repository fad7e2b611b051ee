//! The distributed shape only: several instances sharing PostgreSQL and
//! Redis, outages of either server, and the cost of a vote in round trips.

use std::time::{Duration, Instant};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(3);

async fn database_url() -> Option<String> {
    distributed_urls().await.map(|(db, _)| db)
}

/// An app on the test PostgreSQL (through `database_url`) and the given
/// Redis, re-checking its sessions and their settings every 200 ms.
fn on<'a>(database_url: &str, redis_url: &str) -> Builder<'a> {
    TestApp::builder().distributed(database_url, redis_url).configure(|c| {
        c.tuning.reconcile_interval = Duration::from_millis(200);
        c.tuning.config_check_interval = Duration::from_millis(200);
    })
}

async fn readiness(app: &TestApp) -> (u16, serde_json::Value) {
    app.readiness().await
}

/// The sum of every sample of a metric family whose labels start as given,
/// e.g. `chatpulse_store_call_errors_total{store="redis"`.
async fn metric_sum(app: &TestApp, prefix: &str) -> f64 {
    let text = app.http.get(format!("{}/metrics", app.metrics_base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const BREAKER: &str = "chatpulse_circuit_breaker_state";

/// Waits until `n` bars with overlays on `app` rest at the centre (read only
/// now and then): a change made elsewhere reaches them only if that
/// instance says so.
async fn wait_until_resting(app: &TestApp, n: u32) {
    let resting = || app.metric("chatpulse_sessions_resting");
    let done = eventually(WAIT, || async { resting().await == f64::from(n) }).await;
    assert!(done, "{} bars resting on {}, expected {n}", resting().await, app.base);
}

#[tokio::test]
async fn a_vote_on_one_instance_moves_an_overlay_held_by_another() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let one = on(&db, &redis).start().await;
    let two = on(&db, &redis).start().await;
    let s = one.add_streamer().await;
    let mut overlay = two.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");

    assert_eq!(one.chat(&s.streamer.twitch_user_id, "1", "yes").await, 204);

    let frame = overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("instance two's overlay moved");
    assert!(frame.value <= 10.0);
    assert_eq!(one.votes("applied").await, 1.0);
}

#[tokio::test]
async fn a_vote_is_exactly_one_redis_call() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let redis = RedisServer::start().await;
    let app = on(&db, &redis.url())
        .configure(|c| {
            // No background traffic during the measurement: no ticks, no renewals.
            c.tuning.broadcast_tick = Duration::from_secs(3600);
            c.tuning.reconcile_interval = Duration::from_secs(3600);
            c.tuning.history_flush_interval = Duration::from_secs(3600);
        })
        .start()
        .await;
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await;
    // The first vote resolves the channel's session (and caches it).
    app.chat(&s.streamer.twitch_user_id, "0", "yes").await;
    let before = redis.command_calls().await;

    for chatter in 1..=20 {
        assert_eq!(app.chat(&s.streamer.twitch_user_id, &chatter.to_string(), "yes").await, 204);
    }

    let after = redis.command_calls().await;
    let mut delta: Vec<(String, u64)> = after
        .iter()
        .map(|(cmd, calls)| (cmd.clone(), calls - before.get(cmd).unwrap_or(&0)))
        // Connection handshakes of clients that are still connecting (session
        // store, signal bus) are not part of any vote.
        .filter(|(cmd, d)| *d > 0 && !["info", "ping", "hello", "subscribe", "select"].contains(&cmd.as_str()))
        .filter(|(cmd, _)| !cmd.starts_with("client|"))
        .collect();
    delta.sort();
    // A vote that opens a new history bucket (the votes may cross a 10 s
    // boundary once) also queues the old one and clears its chatters.
    let crossing = ["del", "ltrim", "rpush"];
    assert!(delta.iter().filter(|(c, _)| crossing.contains(&c.as_str())).all(|(_, n)| *n <= 1), "{delta:?}");
    delta.retain(|(c, _)| !crossing.contains(&c.as_str()));
    // 20 FCALLs from the service; everything else ran inside them: per vote,
    // EXISTS session, GET+SET message id, GET+SET debounce, HMGET+HSET+PEXPIRE
    // bucket, HMGET+HSET session, ZADD+ZREMRANGEBYSCORE+PEXPIRE+ZCARD voters,
    // HMGET+SADD+HSET+3 PEXPIRE history bucket.
    let expected: Vec<(String, u64)> = [
        ("exists", 20),
        ("fcall", 20),
        ("get", 40),
        ("hmget", 60),
        ("hset", 60),
        ("pexpire", 100),
        ("sadd", 20),
        ("set", 40),
        ("zadd", 20),
        ("zcard", 20),
        ("zremrangebyscore", 20),
    ]
    .into_iter()
    .map(|(c, n)| (c.to_owned(), n))
    .collect();
    assert_eq!(delta, expected);
    assert_eq!(app.votes("applied").await, 21.0);
}

#[tokio::test]
async fn a_redis_outage_drops_votes_and_recovers_without_a_restart() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let mut redis = RedisServer::start().await;
    let app = on(&db, &redis.url()).start().await;
    let s = app.add_streamer().await;
    let b = s.streamer.twitch_user_id.clone();
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await;
    app.chat(&b, "1", "yes").await;
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("vote applied");
    assert_eq!(app.metric(BREAKER).await, 0.0, "the circuit breaker starts closed");
    assert_eq!(metric_sum(&app, "chatpulse_store_call_errors_total{store=\"redis\"").await, 0.0);

    // Redis goes away: webhooks are still answered quickly, votes are dropped
    // and counted, the instance stays ready (a shared outage must not take
    // every instance out of the load balancer) and says what is missing,
    // overlays show "reconnecting".
    redis.kill();
    for chatter in 2..=6 {
        let started = Instant::now();
        assert_eq!(app.chat(&b, &chatter.to_string(), "no").await, 204);
        assert!(started.elapsed() < Duration::from_secs(4), "answered within Twitch's deadline");
    }
    assert!(app.votes("error").await >= 5.0, "the dropped votes are counted");
    assert!(metric_sum(&app, "chatpulse_live_store_errors_total{").await >= 5.0, "and the failed vote-path calls");
    let failed_calls = metric_sum(&app, "chatpulse_store_call_errors_total{store=\"redis\"").await;
    assert!(failed_calls >= 5.0, "every failed Redis call is counted: {failed_calls}");
    let open = eventually(Duration::from_secs(10), || async { app.metric(BREAKER).await == 1.0 }).await;
    assert!(open, "the circuit breaker opens (gauge 1) and stops hammering Redis");
    let asked = Instant::now();
    let (status, body) = readiness(&app).await;
    assert!(asked.elapsed() < Duration::from_secs(1), "a probe gets its answer at once: {:?}", asked.elapsed());
    assert_eq!(status, 200, "still takes traffic: {body}");
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["dependencies_ok"], false, "{body}");
    assert_eq!(body["checks"]["live_store"]["ok"], false);
    let down = eventually(Duration::from_secs(10), || async {
        app.metric("chatpulse_dependency_up{dependency=\"live_store\"}").await == 0.0
    })
    .await;
    assert!(down, "the dependency gauge says Redis is down");
    assert_eq!(app.metric("chatpulse_dependency_up{dependency=\"durable_store\"}").await, 1.0);
    overlay.wait_for(Duration::from_secs(5), |f| f.status == "reconnecting").await.expect("reconnecting shown");
    let deaf =
        eventually(Duration::from_secs(5), || async { readiness(&app).await.1["checks"]["signals"]["ok"] == false })
            .await;
    assert!(deaf, "readiness reports the lost signal subscription");

    // Redis comes back empty (no persistence): the service reloads its
    // functions, re-activates the open session, and votes apply again.
    redis.restart().await;
    app.wait_until_ready().await;
    assert_eq!(readiness(&app).await.1["checks"]["signals"]["ok"], true, "re-subscribed to instance signals");
    let up = eventually(Duration::from_secs(10), || async {
        app.metric("chatpulse_dependency_up{dependency=\"live_store\"}").await == 1.0
            && app.metric("chatpulse_dependency_up{dependency=\"signals\"}").await == 1.0
    })
    .await;
    assert!(up, "the dependency gauges recover");
    overlay.wait_for(Duration::from_secs(15), |f| f.status == "active").await.expect("active again");
    let moved = eventually(Duration::from_secs(15), || async {
        app.chat(&b, &uuid::Uuid::new_v4().as_u128().to_string()[..12], "yes").await;
        app.votes("applied").await >= 2.0
    })
    .await;
    assert!(moved, "votes apply again after Redis returned");
    overlay.wait_for(WAIT, |f| f.value > 0.0).await.expect("the bar moves again");
    let closed = eventually(WAIT, || async { app.metric(BREAKER).await == 0.0 }).await;
    assert!(closed, "the circuit breaker closes again (gauge 0)");
}

/// `FUNCTION LOAD REPLACE` runs only when the loaded library's version
/// differs: an old version is replaced, the current one is left alone.
#[tokio::test]
async fn the_functions_library_is_loaded_only_when_its_version_differs() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let redis = RedisServer::start().await;
    let older = "#!lua name=chatpulse\nlocal VERSION = '0'\n\
                 redis.register_function('chatpulse_version', function() return VERSION end)";
    redis.cli(&["FUNCTION", "LOAD", older]).await;
    let loads = || async { redis.command_calls().await.get("function|load").copied().unwrap_or(0) };
    assert_eq!(redis.cli(&["FCALL", "chatpulse_version", "0"]).await, "0");
    let before = loads().await;

    let first = on(&db, &redis.url()).start().await;
    let current = chatpulse::store::redis::library_version();
    assert_eq!(redis.cli(&["FCALL", "chatpulse_version", "0"]).await, current, "the old version was replaced");
    assert_eq!(loads().await, before + 1);

    // A second instance (or a restart) finds this version loaded.
    let second = on(&db, &redis.url()).start().await;
    assert_eq!(loads().await, before + 1, "no FUNCTION LOAD when the version matches");
    let s = second.add_streamer().await;
    let mut overlay = second.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    assert_eq!(first.chat(&s.streamer.twitch_user_id, "1", "yes").await, 204);
    assert_eq!(first.votes("applied").await, 1.0, "the loaded library serves both instances");
}

/// A Redis user that may not run `FUNCTION LOAD` (a locked-down managed
/// Redis): the service says so on `/health/ready`, and its live-store check
/// passes by itself once the operator grants the permission.
#[tokio::test]
async fn readiness_explains_a_library_that_cannot_be_loaded() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let redis = RedisServer::start().await;
    redis.cli(&["ACL", "SETUSER", "chatpulse", "on", ">s3cret", "~*", "&*", "+@all", "-function"]).await;
    let url = format!("redis://chatpulse:s3cret@127.0.0.1:{}", redis.port);

    let app = on(&db, &url).unready().start().await;

    let explained = eventually(Duration::from_secs(10), || async {
        let (status, body) = readiness(&app).await;
        status == 200
            && body["checks"]["live_store"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot load the Functions library"))
    })
    .await;
    assert!(explained, "readiness names the problem: {}", readiness(&app).await.1);
    assert_eq!(redis.cli(&["FUNCTION", "LIST"]).await, "", "nothing was loaded");

    redis.cli(&["ACL", "SETUSER", "chatpulse", "+function"]).await;
    app.wait_until_ready().await;
    assert_eq!(redis.cli(&["FCALL", "chatpulse_version", "0"]).await, chatpulse::store::redis::library_version());
}

/// Redis comes back empty and the library cannot be loaded this time: the
/// live-store check must not pass on the strength of the old connection's
/// library, and passes only once the library is back.
#[tokio::test]
async fn readiness_waits_for_the_library_after_redis_returns_empty() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let mut redis = RedisServer::start().await;
    let app = on(&db, &redis.url()).start().await;

    redis.kill();
    redis.restart_with(NO_FUNCTION_LOAD).await;

    // From the restart until the service has seen that the library is
    // missing, the live-store check never passes.
    let explained = eventually(Duration::from_secs(15), || async {
        let (_, body) = readiness(&app).await;
        assert_ne!(body["checks"]["live_store"]["ok"], true, "Redis has no Functions library: {body}");
        let error = body["checks"]["live_store"]["error"].as_str().unwrap_or_default();
        error.contains("cannot load the Functions library")
    })
    .await;
    assert!(explained, "readiness never explained the missing library: {}", readiness(&app).await.1);

    // The operator allows FUNCTION LOAD: ready by itself, library loaded.
    redis.cli(&["ACL", "SETUSER", "default", "+function"]).await;
    app.wait_until_ready().await;
    assert_eq!(redis.cli(&["FCALL", "chatpulse_version", "0"]).await, chatpulse::store::redis::library_version());
}

/// Start-up with Redis unreachable (nothing listens on its port yet): the
/// service runs and takes traffic, reports Redis missing with the reason, and
/// its live-store check passes by itself when Redis appears; votes then apply.
#[tokio::test]
async fn the_service_waits_for_redis_and_becomes_ready_when_it_appears() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let mut redis = RedisServer::unstarted();

    let app = on(&db, &redis.url()).unready().start().await;

    let (status, body) = readiness(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dependencies_ok"], false, "{body}");
    assert_eq!(body["checks"]["live_store"]["ok"], false, "{body}");
    // Unreachable Redis, or (while the client keeps reconnecting) no answer in time.
    let error = body["checks"]["live_store"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("Redis") || error.contains("live store gave no answer"), "{body}");
    assert_eq!(body["checks"]["durable_store"]["ok"], true, "only Redis is missing: {body}");

    redis.restart().await;
    app.wait_until_ready().await;

    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "1", "yes").await, 204);
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("the vote moves the bar");
    assert_eq!(app.votes("applied").await, 1.0);
}

/// Garbage in a session's stored config (here: not JSON) would make the
/// channel's votes find "no session" for as long as its overlays stay open.
/// Instead the vote that finds it is dropped as an error, and the session
/// is re-activated from PostgreSQL with the streamer's own settings.
#[tokio::test]
async fn a_session_with_an_unreadable_stored_config_is_reactivated_from_postgres() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let app = on(&db, &redis).start().await;
    let s = app.add_streamer_with(&config("pizza", "pasta", "Pasta", "Pizza", 0.5)).await;
    let (overlay_id, channel) = (s.streamer.overlay_id, s.streamer.twitch_user_id.clone());
    let mut overlay = app.connect(&overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    let key = format!("session:{{{overlay_id}}}");

    redis_cli(&redis, &["HSET", &key, "config", "{\"for_trigger\": oops"]).await;

    assert_eq!(app.chat(&channel, "1", "pizza").await, 204);
    assert_eq!(app.votes("error").await, 1.0, "the vote that found the garbage is dropped, visibly");
    let mut chatter = 1;
    let back = eventually(Duration::from_secs(5), || {
        chatter += 1;
        let chatter = chatter.to_string();
        let (app, channel) = (&app, &channel);
        async move {
            app.chat(channel, &chatter, "pizza").await;
            app.votes("applied").await >= 1.0
        }
    })
    .await;
    assert!(back, "votes apply again");
    let stored: serde_json::Value = serde_json::from_str(&redis_cli(&redis, &["HGET", &key, "config"]).await).unwrap();
    assert_eq!(stored["for_trigger"], "pizza", "the config came back from PostgreSQL: {stored}");
    assert_eq!(stored["right_label"], "Pizza");
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("the bar moves again");
}

#[tokio::test]
async fn the_service_waits_for_postgres_and_keeps_overlays_live_while_it_is_gone() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let target: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = TcpProxy::new(target);
    let proxied = db.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(proxied, db, "TEST_DATABASE_URL points at 127.0.0.1:5432");

    // Start with PostgreSQL unreachable: the service serves and takes
    // traffic (votes need only Redis), and says PostgreSQL is missing.
    let app = on(&proxied, &redis).unready().start().await;
    let (status, body) = app.readiness().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["dependencies_ok"], false);
    assert!(body["checks"]["durable_store"]["error"].as_str().unwrap_or("").contains("PostgreSQL"), "{body}");

    // PostgreSQL appears: the service migrates and its check passes by itself.
    proxy.start().await;
    app.wait_until_ready().await;

    // PostgreSQL goes away while an overlay is open: the overlay keeps working.
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    proxy.stop();

    assert_eq!(app.chat(&s.streamer.twitch_user_id, "1", "yes").await, 204);
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("votes still move the bar without PostgreSQL");
    let page_url = format!("{}/overlay/{}", app.base, s.streamer.overlay_id);
    let page = app.http.get(&page_url).send().await.unwrap();
    assert_eq!(page.status(), 503, "pages that need PostgreSQL say so");
    // In the overlay's own look, reloading itself: OBS shows no error text
    // and recovers on its own.
    assert_eq!(page.headers()["retry-after"], "10");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let page = page.text().await.unwrap();
    assert!(page.contains(r#"<meta http-equiv="refresh" content="10">"#), "{page}");
    assert!(page.contains("reconnecting…") && page.contains("/static/overlay.css"), "{page}");

    proxy.start().await;
    let page_back = eventually(Duration::from_secs(15), || async {
        app.http.get(&page_url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(page_back, "recovers without a restart");
}

/// An overlay whose bar rests at the centre is read about once a second,
/// not every tick; a vote through this instance is shown at once, and so is
/// one through another instance (which tells the others it moved a bar
/// from the centre).
#[tokio::test]
async fn a_resting_bar_costs_one_read_a_second_and_still_follows_votes_from_anywhere() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let redis = RedisServer::start().await;
    let here = on(&db, &redis.url()).configure(|c| c.tuning.resting_read = Duration::from_secs(1)).start().await;
    let elsewhere = on(&db, &redis.url()).start().await;
    let s = here.add_streamer().await;
    let b = s.streamer.twitch_user_id.clone();
    let mut overlay = here.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");

    // Resting: over two seconds a few batched reads, not the 40 ticks' worth.
    wait_until_resting(&here, 1).await;
    let before = redis.command_calls().await.get("fcall_ro").copied().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reads = redis.command_calls().await.get("fcall_ro").copied().unwrap_or(0) - before;
    assert!((1..=5).contains(&reads), "a resting session is still read, about once a second: {reads} reads in 2 s");

    // A vote on this instance shows on the next tick.
    let sent = Instant::now();
    here.chat(&b, "1", "yes").await;
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("vote shown");
    assert!(sent.elapsed() < Duration::from_millis(900), "shown without waiting for the resting read");

    // Another resting bar: a vote through another instance shows on the
    // next tick, not on the next resting read.
    let other = here.add_streamer().await;
    let mut resting = here.connect(&other.streamer.overlay_id).await;
    resting.next_frame(WAIT).await.expect("initial frame");
    wait_until_resting(&here, 1).await; // that one (the first is moving)
    let sent = Instant::now();
    assert_eq!(elsewhere.chat(&other.streamer.twitch_user_id, "2", "no").await, 204);
    assert_eq!(elsewhere.votes("applied").await, 1.0, "applied through the other instance");
    resting.wait_for(Duration::from_secs(3), |f| f.value < 0.0).await.expect("a vote from another instance shows");
    eprintln!("resting bar moved by another instance after {:?}", sent.elapsed());
}

/// With resting reads a minute apart, a bar at rest here follows a vote
/// and a status change made through another instance only because that
/// instance says so: the change shows within a tick or two.
#[tokio::test]
async fn a_change_through_another_instance_wakes_a_resting_bar_here() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let redis = RedisServer::start().await;
    let rarely = |c: &mut chatpulse::config::Config| c.tuning.resting_read = Duration::from_secs(60);
    let here = on(&db, &redis.url()).configure(rarely).start().await;
    let elsewhere = on(&db, &redis.url()).configure(rarely).start().await;
    let s = here.add_streamer().await;
    let b = s.streamer.twitch_user_id.clone();
    let mut overlay = here.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    wait_until_resting(&here, 1).await;

    assert_eq!(elsewhere.chat(&b, "1", "yes").await, 204);
    overlay.wait_for(Duration::from_secs(2), |f| f.value > 9.0).await.expect("the vote shows here");

    // Another bar at rest here; its stream goes live, as told to the other
    // instance.
    let t = here.add_streamer().await;
    let mut second = here.connect(&t.streamer.overlay_id).await;
    second.next_frame(WAIT).await.expect("initial frame");
    wait_until_resting(&here, 1).await; // that one (the first is moving)
    let channel = t.streamer.twitch_user_id.as_str();
    let online = Delivery::notification(
        "stream.online",
        serde_json::json!({
            "subscription": {"id": "f1c2d3e4-0000-4000-8000-000000000001", "status": "enabled", "type": "stream.online",
                "version": "1", "condition": {"broadcaster_user_id": channel},
                "transport": {"method": "conduit", "conduit_id": "c0ffee00-0000-4000-8000-000000000001"},
                "created_at": "2026-03-14T18:59:42.117290301Z", "cost": 0},
            "event": {"id": "9001", "broadcaster_user_id": channel, "broadcaster_user_login": "x",
                "broadcaster_user_name": "X", "type": "live", "started_at": "2026-03-14T19:00:00Z"}
        })
        .to_string(),
    );
    assert_eq!(elsewhere.deliver(&online).await.status(), 204);
    second.wait_for(Duration::from_secs(2), |f| f.status == "live").await.expect("the status shows here");
}

/// With glide reads a minute apart, a bar gliding here follows votes taken
/// by another instance only because that instance says so: its `Voted`
/// signal (one a tick for all its votes) makes this instance read the bar
/// on its next tick.
#[tokio::test]
async fn votes_through_another_instance_reach_a_gliding_bar_here_by_signal() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let redis = RedisServer::start().await;
    let rarely = |c: &mut chatpulse::config::Config| {
        c.tuning.glide_read = Duration::from_secs(60);
        c.tuning.resting_read = Duration::from_secs(60);
    };
    let here = on(&db, &redis.url()).configure(rarely).start().await;
    let elsewhere = on(&db, &redis.url()).configure(rarely).start().await;
    let s = here.add_streamer().await;
    let b = s.streamer.twitch_user_id.clone();
    let mut overlay = here.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");

    assert_eq!(elsewhere.chat(&b, "1", "yes").await, 204);
    let first = overlay.wait_for(Duration::from_secs(3), |f| f.value > 9.0).await.expect("the first vote shows here");
    // The bar glides now and is read here once a minute: only the `Voted`
    // signal tells this instance of the next votes within seconds.
    for chatter in ["2", "3"] {
        assert_eq!(elsewhere.chat(&b, chatter, "yes").await, 204);
    }
    let frame = overlay
        .wait_for(Duration::from_secs(3), |f| f.value > first.value + 5.0)
        .await
        .expect("the later votes show here within a few ticks");
    assert!(frame.value <= 100.0, "{}", frame.value);
    assert_eq!(elsewhere.votes("applied").await, 3.0);
    assert_eq!(here.votes("applied").await, 0.0, "every vote went through the other instance");
}

/// Leases are renewed a third of a lease apart, not on every reconcile tick,
/// and a held session never lapses.
#[tokio::test]
async fn leases_are_renewed_three_times_per_lease_and_never_lapse() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let redis = RedisServer::start().await;
    let app = on(&db, &redis.url())
        .configure(|c| {
            c.tuning.reconcile_interval = Duration::from_millis(100);
            c.tuning.lease_ttl = Duration::from_millis(900);
        })
        .start()
        .await;
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    let before = redis.command_calls().await.get("fcall").copied().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // No votes meanwhile: the function calls are renewals (every 300 ms:
    // about 10), not one per 100 ms tick (30). The leader lease adds one.
    let calls = redis.command_calls().await.get("fcall").copied().unwrap_or(0) - before;
    assert!((6..=16).contains(&calls), "{calls} renewals in 3 s");
    // Three lease periods later the lease is still held and the session alive.
    let lease = tokio::process::Command::new("redis-cli")
        .args(["-u", &redis.url(), "HVALS", &format!("instances:{{{}}}", s.streamer.overlay_id)])
        .output()
        .await
        .unwrap();
    let expiry: i64 = String::from_utf8_lossy(&lease.stdout).trim().parse().expect("one lease");
    assert!(expiry > chatpulse::now_ms(), "the lease is current");
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "1", "yes").await, 204);
    assert_eq!(app.votes("applied").await, 1.0);
}

/// The whole service on a Redis Cluster (`REDIS_URL=redis-cluster://…`), two
/// instances of one deployment: the first wired to the simulator like
/// `make run` leads and sets up EventSub; votes through either instance move
/// overlays on both; a bar resting on one is woken by the other's pub/sub
/// signal; a login made on one is valid on the other.
#[tokio::test]
async fn two_instances_run_on_a_redis_cluster() {
    let Some(db) = database_url().await else { return eprintln!("SKIPPED: TEST_DATABASE_URL unset") };
    let Some(cluster) = test_env("TEST_REDIS_CLUSTER_URL") else {
        return eprintln!("SKIPPED: TEST_REDIS_CLUSTER_URL unset (make test starts a cluster)");
    };
    let leader_key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    // Resting bars are read rarely: only the other instance's signal can
    // wake one within the test's deadline.
    let instance =
        || on(&db, &cluster).leader_key(&leader_key).configure(|c| c.tuning.resting_read = Duration::from_secs(60));
    let one = instance().demo().start().await;
    let two = instance().start().await;

    let set_up = eventually(WAIT, || async {
        one.metric("chatpulse_leader").await == 1.0 && one.metric("chatpulse_eventsub_ready").await == 1.0
    })
    .await;
    assert!(set_up, "the simulator-wired instance leads and its conduit shard is ready");

    let s = one.add_streamer().await;
    let b = s.streamer.twitch_user_id.clone();
    let mut here = one.connect(&s.streamer.overlay_id).await;
    let mut there = two.connect(&s.streamer.overlay_id).await;
    here.next_frame(WAIT).await.expect("initial frame on one");
    there.next_frame(WAIT).await.expect("initial frame on two");

    assert_eq!(two.chat(&b, "1", "yes").await, 204);
    here.wait_for(WAIT, |f| f.value > 9.0).await.expect("a vote through two moves the bar on one");
    there.wait_for(WAIT, |f| f.value > 9.0).await.expect("and on two");
    assert_eq!(one.chat(&b, "2", "no").await, 204);
    assert_eq!(one.chat(&b, "3", "no").await, 204);
    here.wait_for(WAIT, |f| f.value < 0.0).await.expect("votes through one move it back");
    assert_eq!(one.votes("applied").await + two.votes("applied").await, 3.0);

    // Another channel, its overlay open on one only and resting there.
    let other = two.add_streamer().await;
    let mut resting = one.connect(&other.streamer.overlay_id).await;
    resting.next_frame(WAIT).await.expect("initial frame");
    wait_until_resting(&one, 1).await; // that one (the first is moving)
    assert_eq!(two.chat(&other.streamer.twitch_user_id, "4", "yes").await, 204);
    resting.wait_for(Duration::from_secs(3), |f| f.value > 9.0).await.expect("woken by the other instance's signal");

    // Login sessions live in the cluster too.
    let login = unique_login();
    let LoggedIn { client, .. } = one.log_in(&login).await;
    let elsewhere = client.get(format!("{}/dashboard", two.base)).send().await.unwrap();
    assert!(elsewhere.url().path().ends_with("/dashboard"), "still logged in on two: {}", elsewhere.url());
    assert_eq!(elsewhere.status(), 200);
    assert!(elsewhere.text().await.unwrap().contains(&login), "two shows the same account");
}
