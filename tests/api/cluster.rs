//! The horizontally scaled shape as operators run it: three instances behind a
//! real load balancer (HAProxy with `deploy/haproxy/haproxy.cfg`), a private
//! Redis and the standalone Twitch simulator, started and disturbed with
//! `scripts/cluster.sh` — the script behind `make cluster`. Through the load
//! balancer, under a steady load of signed chat deliveries with overlays open:
//!
//! - a rolling restart (SIGTERM, start again, one instance at a time) answers
//!   every delivery 2xx, and every overlay has frames again within 5 s;
//! - `kill -9` of a follower and then of the leader fails at most 0.1 % of the
//!   deliveries, and another instance leads once the dead one's lease is over;
//!   the subscriptions of a channel whose only overlay was on the killed
//!   follower go within a minute, and the dead instances' leases leave the
//!   live store;
//! - a 20 s outage of the cluster's Redis keeps every instance in rotation,
//!   and the overlays move again afterwards with nothing restarted.
//!
//! It prints its figures on stderr, past the harness's capture, so `make test`
//! shows them.
//! Ports: `CLUSTER_TEST_BASE_PORT` (default 18180) and the 20 above it.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

const STREAMERS: usize = 4;
const OVERLAYS_PER_STREAMER: usize = 2;
/// One signed delivery this often: 50 a second.
const LOAD_INTERVAL: Duration = Duration::from_millis(20);
/// Every overlay has frames again this soon after its instance went away.
const MAX_OVERLAY_GAP: Duration = Duration::from_secs(5);
/// The leader's lease and how often every instance tries to take or renew
/// it: a killed leader's lease ends at most a lease after its last renewal,
/// and another instance takes it on its next attempt.
const LEADER_LEASE: Duration = Duration::from_secs(20);
const LEADER_RENEW: Duration = Duration::from_secs(5);
/// A crashed instance's heartbeat ends a session lease (30 s) after its last
/// beat; the leader sweeps every 10 s. The subscriptions only it needed go
/// within a minute.
const CRASH_CLEANUP: Duration = Duration::from_secs(60);
const REDIS_OUTAGE: Duration = Duration::from_secs(20);
/// Generous bounds for things that normally take a second or two.
const SETTLE: Duration = Duration::from_secs(30);

const ROLLING: &str = "rolling restart";
const KILL: &str = "kill -9";
const REDIS: &str = "Redis outage";

/// The cluster of `scripts/cluster.sh`, stopped when dropped.
struct Cluster {
    script: PathBuf,
    env: Vec<(&'static str, String)>,
    urls: HashMap<String, String>,
    http: reqwest::Client,
}

impl Cluster {
    async fn start() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let base = std::env::var("CLUSTER_TEST_BASE_PORT").unwrap_or_else(|_| "18180".into());
        let env = vec![
            ("CHATPULSE_BIN", env!("CARGO_BIN_EXE_chatpulse").to_owned()),
            ("CLUSTER_STATE_DIR", format!("{}/cluster-test", env!("CARGO_TARGET_TMPDIR"))),
            ("CLUSTER_BASE_PORT", base),
            ("CLUSTER_DATABASE", "chatpulse_cluster_test".to_owned()),
            ("CLUSTER_SHUTDOWN_TIMEOUT", "10s".to_owned()),
            // Every vote applies, so every overlay keeps moving.
            ("VOTE_RATE_LIMIT_CAPACITY", "1000000".to_owned()),
            ("VOTE_RATE_LIMIT_RATE", "100000000/min".to_owned()),
        ];
        let mut cluster = Self {
            script: root.join("scripts/cluster.sh"),
            env,
            urls: HashMap::new(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap(),
        };
        let exports = cluster.run(&["start"]).await;
        cluster.urls = exports
            .lines()
            .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        cluster
    }

    /// Runs `scripts/cluster.sh ARGS`; its stdout. Fails the test, with the
    /// script's output, if the script fails.
    async fn run(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new(&self.script)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .await
            .expect("scripts/cluster.sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "scripts/cluster.sh {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn url(&self, name: &str) -> &str {
        self.urls.get(name).unwrap_or_else(|| panic!("scripts/cluster.sh start printed no {name}"))
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.url(name).split(',').map(str::to_owned).collect()
    }

    /// HAProxy's view of the `chatpulse` backend: server (i1..i3) → status.
    async fn servers(&self) -> HashMap<String, String> {
        let Ok(r) = self.http.get(format!("{}/;csv", self.url("CLUSTER_STATS_URL"))).send().await else {
            return HashMap::new();
        };
        let csv = r.text().await.unwrap_or_default();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let col = |name: &str| header.iter().position(|h| h.trim_start_matches("# ") == name);
        let (Some(px), Some(sv), Some(status)) = (col("pxname"), col("svname"), col("status")) else {
            return HashMap::new();
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.get(px) == Some(&"chatpulse") && f.get(sv).is_some_and(|s| s.starts_with('i')))
            .filter_map(|f| Some((f.get(sv)?.to_string(), f.get(status)?.to_string())))
            .collect()
    }

    async fn servers_up(&self) -> usize {
        self.servers().await.values().filter(|s| *s == "UP").count()
    }

    /// Waits until HAProxy reports instance `n` (1-3) as `status`.
    async fn wait_for_server(&self, n: usize, status: &str) {
        let server = format!("i{n}");
        let seen =
            eventually(SETTLE, || async { self.servers().await.get(&server).is_some_and(|s| s == status) }).await;
        assert!(seen, "HAProxy never reported instance {n} {status}: {:?}", self.servers().await);
    }

    /// Instance `n`'s metrics (from its metrics port when it has one, else
    /// the public port); `None` when it does not answer.
    async fn scrape(&self, n: usize) -> Option<String> {
        for base in [&self.list("CLUSTER_METRICS_URLS")[n - 1], &self.list("CLUSTER_INSTANCE_URLS")[n - 1]] {
            let Ok(r) = self.http.get(format!("{base}/metrics")).send().await else { continue };
            if r.status().is_success() {
                return r.text().await.ok();
            }
        }
        None
    }

    /// The sum of instance `n`'s samples whose name and labels start with
    /// `prefix` (one whole sample, or a family with `{`).
    async fn metric(&self, n: usize, prefix: &str) -> Option<f64> {
        let text = self.scrape(n).await?;
        let value = |line: &str| line.rsplit(' ').next()?.parse::<f64>().ok();
        Some(text.lines().filter(|l| l.starts_with(prefix)).filter_map(value).sum())
    }

    /// Notifications instance `n` has answered since it started.
    async fn notifications(&self, n: usize) -> f64 {
        self.metric(n, "chatpulse_votes_total{").await.unwrap_or(0.0)
    }

    /// Waits until instance `n` is back in rotation: HAProxy sends it
    /// deliveries again.
    async fn wait_in_rotation(&self, n: usize) {
        self.wait_for_server(n, "UP").await;
        let serving = eventually(SETTLE, || async { self.notifications(n).await >= 20.0 }).await;
        assert!(serving, "instance {n} got no deliveries after it was back: {:?}", self.servers().await);
    }

    /// The instances (1-3) that say they lead.
    async fn leaders(&self) -> Vec<usize> {
        let mut leaders = vec![];
        for n in 1..=3 {
            if self.metric(n, "chatpulse_leader ").await == Some(1.0) {
                leaders.push(n);
            }
        }
        leaders
    }

    /// Waits until exactly one instance leads (a leader that stopped
    /// gracefully gave its lease up; another takes it on its next attempt);
    /// which one.
    async fn one_leader(&self) -> usize {
        let deadline = LEADER_LEASE + LEADER_RENEW + Duration::from_secs(10);
        let one = eventually(deadline, || async { self.leaders().await.len() == 1 }).await;
        let leaders = self.leaders().await;
        assert!(one && leaders.len() == 1, "exactly one instance leads: {leaders:?}");
        leaders[0]
    }

    fn pid(&self, n: usize) -> String {
        let dir = &self.env.iter().find(|(k, _)| *k == "CLUSTER_STATE_DIR").unwrap().1;
        std::fs::read_to_string(format!("{dir}/instance-{n}.pid")).unwrap_or_default().trim().to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.script)
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .status();
    }
}

/// Which part of the test is running; deliveries and frames count towards it.
#[derive(Default)]
struct Phase(Mutex<&'static str>);

impl Phase {
    fn set(&self, name: &'static str) {
        *self.0.lock().unwrap() = name;
    }
    fn get(&self) -> &'static str {
        *self.0.lock().unwrap()
    }
}

/// Deliveries per phase: (answered 2xx, not), and the first failures seen.
#[derive(Default)]
struct Tally {
    counts: Mutex<HashMap<&'static str, (u64, u64)>>,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, phase: &'static str, outcome: Result<u16, String>) {
        let mut counts = self.counts.lock().unwrap();
        let entry = counts.entry(phase).or_default();
        match outcome {
            Ok(status) if (200..300).contains(&status) => entry.0 += 1,
            other => {
                entry.1 += 1;
                let mut failures = self.failures.lock().unwrap();
                if failures.len() < 20 {
                    failures.push(format!("{phase}: {other:?}"));
                }
            }
        }
    }

    /// (non-2xx, total) of a phase.
    fn of(&self, phase: &str) -> (u64, u64) {
        let (ok, failed) = self.counts.lock().unwrap().get(phase).copied().unwrap_or_default();
        (failed, ok + failed)
    }
}

/// Signed `channel.chat.message` deliveries through the load balancer, one
/// every `LOAD_INTERVAL`, "yes" and "no" in turn, a new chatter each time.
async fn send_load(lb: String, channels: Vec<String>, phase: Arc<Phase>, tally: Arc<Tally>, stop: CancellationToken) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut ticker = tokio::time::interval(LOAD_INTERVAL);
    let mut in_flight = JoinSet::new();
    for n in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        while in_flight.try_join_next().is_some() {}
        let channel = &channels[(n % channels.len() as u64) as usize];
        let text = if (n / channels.len() as u64).is_multiple_of(2) { "yes" } else { "no" };
        let delivery = Delivery::chat(channel, &(1_000_000 + n).to_string(), text);
        let request = delivery_request(&http, &lb, &delivery);
        let (phase, tally) = (phase.get(), Arc::clone(&tally));
        in_flight.spawn(async move {
            let outcome = request.send().await.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
            tally.record(phase, outcome);
        });
    }
    while in_flight.join_next().await.is_some() {}
}

/// What one overlay client saw.
#[derive(Default)]
struct Seen {
    connects: AtomicU64,
    frames: AtomicU64,
    /// The last frame, and the last frame whose value differed from the one
    /// before with the session active (the bar moving).
    last_frame: Mutex<Option<Instant>>,
    last_move: Mutex<Option<Instant>>,
    last_value: Mutex<Option<f64>>,
    /// The longest wait between two frames, per phase (by the later frame).
    worst_gap: Mutex<HashMap<&'static str, Duration>>,
}

impl Seen {
    fn frame(&self, phase: &'static str, value: f64, status: &str) {
        let now = Instant::now();
        self.frames.fetch_add(1, Ordering::Relaxed);
        if let Some(before) = self.last_frame.lock().unwrap().replace(now) {
            let mut worst = self.worst_gap.lock().unwrap();
            let gap = worst.entry(phase).or_default();
            *gap = (*gap).max(now - before);
        }
        let previous = self.last_value.lock().unwrap().replace(value);
        if status == "active" && previous.is_some_and(|p| p != value) {
            *self.last_move.lock().unwrap() = Some(now);
        }
    }

    fn moved_since(&self, t: Instant) -> bool {
        self.last_move.lock().unwrap().is_some_and(|m| m > t)
    }
}

/// An overlay as OBS runs it: connected through the load balancer, and
/// connecting again (after 100 ms) whenever the connection ends.
async fn watch_overlay(url: String, seen: Arc<Seen>, phase: Arc<Phase>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await {
            seen.connects.fetch_add(1, Ordering::Relaxed);
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => return,
                    message = ws.next() => message,
                };
                match message {
                    Some(Ok(Message::Text(text))) => {
                        let frame: serde_json::Value = serde_json::from_str(&text).expect("frames are JSON");
                        let value = frame["value"].as_f64().expect("a frame has a value");
                        seen.frame(phase.get(), value, frame["status"].as_str().unwrap_or_default());
                    }
                    Some(Ok(_)) => continue,
                    None | Some(Err(_)) => break,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A channel whose one overlay is open straight on one instance (not through
/// the load balancer, and never reconnecting): when that instance crashes,
/// nobody needs the channel's subscriptions any more.
struct Lonely {
    broadcaster: String,
    sim: String,
    http: reqwest::Client,
}

impl Lonely {
    /// A simulated user who granted `channel:bot`, stored as a streamer, with
    /// an overlay on instance `n`; waits until its three subscriptions exist.
    async fn open(
        cluster: &Cluster,
        repo: &dyn chatpulse::store::Repository,
        n: usize,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let sim = cluster.url("CLUSTER_SIM_URL").to_owned();
        let http = cluster.http.clone();
        let login = format!("lonely{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let user: serde_json::Value = http
            .post(format!("{sim}/sim/users"))
            .json(&serde_json::json!({ "login": login }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let broadcaster = user["id"].as_str().expect("the simulator names its user").to_owned();
        let grant = serde_json::json!({ "user_id": broadcaster, "scopes": "channel:bot" });
        assert!(http.post(format!("{sim}/sim/grants")).json(&grant).send().await.unwrap().status().is_success());
        let new = chatpulse::store::NewStreamer {
            twitch_user_id: chatpulse::domain::BroadcasterId::parse(&broadcaster).unwrap(),
            login: login.clone(),
            display_name: login,
        };
        let overlay = repo.create_streamer(&new).await.unwrap().streamer.overlay_id;
        let url = format!(
            "{}/ws/overlay/{overlay}",
            cluster.list("CLUSTER_INSTANCE_URLS")[n - 1].replacen("http://", "ws://", 1)
        );
        tasks.spawn(async move {
            // One connection, read until the instance is gone.
            if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await {
                while let Some(Ok(_)) = ws.next().await {}
            }
        });
        let lonely = Self { broadcaster, sim, http };
        let subscribed = eventually(SETTLE, || async { lonely.subscriptions().await == 3 }).await;
        assert!(subscribed, "the lonely channel was never subscribed: {} subscriptions", lonely.subscriptions().await);
        lonely
    }

    /// The channel's subscriptions on the simulated Twitch.
    async fn subscriptions(&self) -> usize {
        let Ok(r) = self.http.get(format!("{}/sim/state", self.sim)).send().await else { return usize::MAX };
        let state: serde_json::Value = r.json().await.unwrap_or_default();
        let subs = state["subscriptions"].as_array().cloned().unwrap_or_default();
        subs.iter().filter(|s| s["condition"]["broadcaster_user_id"] == self.broadcaster.as_str()).count()
    }
}

/// Every instance id named in the cluster's Redis: in heartbeats, and in
/// the session lease hashes.
async fn instance_ids(redis: &str) -> (Vec<String>, Vec<String>) {
    let mut beating: Vec<String> =
        redis_cli(redis, &["HKEYS", "{instances}:heartbeat"]).await.lines().map(str::to_owned).collect();
    beating.sort();
    let mut leased = vec![];
    for key in redis_cli(redis, &["--scan", "--pattern", "instances:{*}"]).await.lines() {
        leased.extend(redis_cli(redis, &["HKEYS", key]).await.lines().map(str::to_owned));
    }
    leased.sort();
    leased.dedup();
    (beating, leased)
}

/// Waits until every overlay's bar has moved after `t`; how long that took.
async fn all_moved_since(overlays: &[Arc<Seen>], t: Instant, within: Duration) -> Duration {
    let moved = eventually(within, || async { overlays.iter().all(|s| s.moved_since(t)) }).await;
    let stuck = overlays.iter().filter(|s| !s.moved_since(t)).count();
    assert!(moved, "{stuck} of {} overlays did not move again within {within:?}", overlays.len());
    t.elapsed()
}

fn worst_gap(overlays: &[Arc<Seen>], phase: &str) -> Duration {
    overlays.iter().filter_map(|s| s.worst_gap.lock().unwrap().get(phase).copied()).max().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_haproxy_survive_restarts_crashes_and_a_redis_outage() {
    if test_env("TEST_DATABASE_URL").is_none() {
        return eprintln!("SKIPPED: the cluster needs the local PostgreSQL (make test provisions it)");
    }
    let has_haproxy = std::process::Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success());
    if !has_haproxy {
        assert!(std::env::var_os("TEST_REQUIRE_ALL").is_none(), "haproxy is not installed (scripts/test-services.sh)");
        return eprintln!("SKIPPED: haproxy is not installed (make test installs it)");
    }
    chatpulse::install_crypto_provider();
    let cluster = Cluster::start().await;
    let lb = cluster.url("CLUSTER_URL").to_owned();
    let repo = postgres_repository(cluster.url("CLUSTER_DATABASE_URL"), true).await;

    // Streamers, and two overlays of each through the load balancer.
    let phase = Arc::new(Phase::default());
    phase.set("start");
    let stop = CancellationToken::new();
    let mut channels = vec![];
    let mut overlays = vec![];
    let mut tasks = JoinSet::new();
    for _ in 0..STREAMERS {
        let new = chatpulse::store::NewStreamer {
            twitch_user_id: chatpulse::domain::BroadcasterId::parse(&random_twitch_id()).unwrap(),
            login: "clustered".into(),
            display_name: "Clustered".into(),
        };
        let setup = repo.create_streamer(&new).await.unwrap();
        channels.push(setup.streamer.twitch_user_id.to_string());
        for _ in 0..OVERLAYS_PER_STREAMER {
            let seen = Arc::new(Seen::default());
            let url = format!("{}/ws/overlay/{}", lb.replacen("http://", "ws://", 1), setup.streamer.overlay_id);
            tasks.spawn(watch_overlay(url, Arc::clone(&seen), Arc::clone(&phase), stop.clone()));
            overlays.push(seen);
        }
    }
    let tally = Arc::new(Tally::default());
    tasks.spawn(send_load(lb.clone(), channels, Arc::clone(&phase), Arc::clone(&tally), stop.clone()));
    all_moved_since(&overlays, Instant::now(), SETTLE).await;
    cluster.one_leader().await;

    // (a) Rolling restart: each instance in turn gets SIGTERM, starts again
    // and is back in rotation before the next one goes.
    phase.set(ROLLING);
    for n in 1..=3 {
        cluster.run(&["stop-instance", &n.to_string()]).await;
        cluster.run(&["start-instance", &n.to_string()]).await;
        cluster.wait_in_rotation(n).await;
        all_moved_since(&overlays, Instant::now(), SETTLE).await;
    }

    // (b) kill -9: first a follower, then the leader.
    phase.set(KILL);
    let leader = cluster.one_leader().await;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let lonely = Arc::new(Lonely::open(&cluster, repo.as_ref(), follower, &mut tasks).await);
    let mut takeover = Duration::ZERO;
    let mut unsubscribed = None;
    for (n, is_leader) in [(follower, false), (leader, true)] {
        let killed = Instant::now();
        cluster.run(&["kill-instance", &n.to_string()]).await;
        let cleanup = (!is_leader).then(|| {
            let lonely = Arc::clone(&lonely);
            tokio::spawn(async move {
                let gone = eventually(CRASH_CLEANUP * 2, || async { lonely.subscriptions().await == 0 }).await;
                gone.then(|| killed.elapsed())
            })
        });
        if is_leader {
            let others: Vec<usize> = (1..=3).filter(|m| *m != n).collect();
            let deadline = LEADER_LEASE + LEADER_RENEW + Duration::from_secs(10);
            let taken = eventually(deadline, || async {
                let leaders = cluster.leaders().await;
                leaders.len() == 1 && others.contains(&leaders[0])
            })
            .await;
            assert!(taken, "no other instance took the lead within {deadline:?}");
            takeover = killed.elapsed();
            // The lease runs out at most a lease after the kill, and the
            // others try every renewal period (+ a second to see it here).
            let bound = LEADER_LEASE + LEADER_RENEW + Duration::from_secs(1);
            assert!(takeover <= bound, "takeover took {takeover:?}");
        }
        cluster.wait_for_server(n, "DOWN").await;
        all_moved_since(&overlays, killed, SETTLE).await;
        cluster.run(&["start-instance", &n.to_string()]).await;
        cluster.wait_in_rotation(n).await;
        if let Some(cleanup) = cleanup {
            // Before the leader goes too: the leader is who cleans up.
            unsubscribed = cleanup.await.unwrap();
        }
    }
    // The dead instances' heartbeats and leases leave the live store: only
    // the three running instances are named there.
    let redis = cluster.url("CLUSTER_REDIS_URL").to_owned();
    let tidy = eventually(CRASH_CLEANUP * 2, || async {
        let (beating, leased) = instance_ids(&redis).await;
        beating.len() == 3 && leased.iter().all(|i| beating.contains(i))
    })
    .await;
    let (beating, leased) = instance_ids(&redis).await;
    assert!(tidy, "only running instances are named in Redis: heartbeats {beating:?}, leases {leased:?}");
    // The restarted instance does not lead beside the new leader.
    let leaders = cluster.leaders().await;
    assert_eq!(leaders.len(), 1, "exactly one instance leads after the crashes: {leaders:?}");

    // (c) Redis goes away for 20 s: every instance stays in rotation, and
    // afterwards the overlays move again with nothing restarted.
    phase.set(REDIS);
    let pids: Vec<String> = (1..=3).map(|n| cluster.pid(n)).collect();
    let connects_before: u64 = overlays.iter().map(|s| s.connects.load(Ordering::Relaxed)).sum();
    cluster.run(&["redis-stop"]).await;
    let outage = Instant::now();
    let (mut fewest_up, mut not_ready) = (3, 0);
    while outage.elapsed() < REDIS_OUTAGE {
        fewest_up = fewest_up.min(cluster.servers_up().await);
        let ready = cluster.http.get(format!("{lb}/health/ready")).send().await;
        if !ready.is_ok_and(|r| r.status() == 200) {
            not_ready += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dependency_down = cluster.metric(1, "chatpulse_dependency_up{dependency=\"live_store\"}").await;
    cluster.run(&["redis-start"]).await;
    let back = Instant::now();
    let recovery = all_moved_since(&overlays, back, Duration::from_secs(60)).await;
    let connects_after: u64 = overlays.iter().map(|s| s.connects.load(Ordering::Relaxed)).sum();
    let pids_after: Vec<String> = (1..=3).map(|n| cluster.pid(n)).collect();

    stop.cancel();
    while tasks.join_next().await.is_some() {}

    let (rolling_failed, rolling_total) = tally.of(ROLLING);
    let (kill_failed, kill_total) = tally.of(KILL);
    let (redis_failed, redis_total) = tally.of(REDIS);
    let frames: u64 = overlays.iter().map(|s| s.frames.load(Ordering::Relaxed)).sum();
    let figures = [
        format!(
            "{} overlays through HAProxy, {frames} frames; a signed delivery every {LOAD_INTERVAL:?}",
            overlays.len()
        ),
        format!(
            "rolling restart: {rolling_failed} non-2xx of {rolling_total} deliveries; worst overlay gap {:.2} s",
            worst_gap(&overlays, ROLLING).as_secs_f64()
        ),
        format!(
            "kill -9 (follower, then leader): {kill_failed} non-2xx of {kill_total} deliveries; worst overlay gap {:.2} s; \
             leadership taken over {:.1} s after the leader was killed; the subscriptions only the killed follower \
             needed deleted {} after it was killed",
            worst_gap(&overlays, KILL).as_secs_f64(),
            takeover.as_secs_f64(),
            unsubscribed.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
        ),
        format!(
            "Redis outage of {REDIS_OUTAGE:?}: {redis_failed} non-2xx of {redis_total} deliveries; fewest instances in \
             rotation {fewest_up}/3; /health/ready through HAProxy not 200 {not_ready} times; overlays moving again {:.1} s \
             after Redis returned",
            recovery.as_secs_f64()
        ),
    ];
    // Straight to stderr, past the test harness's capture: `make test` shows them.
    let mut out = std::io::stderr().lock();
    for line in &figures {
        let _ = writeln!(out, "cluster test: {line}");
    }
    let failures = tally.failures.lock().unwrap().clone();
    if !failures.is_empty() {
        let _ = writeln!(out, "cluster test: first failures: {failures:#?}");
    }
    drop(out);

    assert!(rolling_total > 100 && kill_total > 100 && redis_total > 100, "the load really ran");
    let unsubscribed = unsubscribed.expect("the killed follower's lone channel was unsubscribed");
    assert!(unsubscribed <= CRASH_CLEANUP, "crash clean-up within a minute: {unsubscribed:?}");
    assert_eq!(rolling_failed, 0, "a rolling restart answers every delivery 2xx");
    assert!(worst_gap(&overlays, ROLLING) <= MAX_OVERLAY_GAP, "every overlay has frames again within 5 s");
    assert!(kill_failed * 1000 <= kill_total, "kill -9 fails at most 0.1 % of the deliveries");
    assert_eq!(fewest_up, 3, "every instance stays in rotation while Redis is away");
    assert_eq!(not_ready, 0, "and the load balancer keeps answering /health/ready");
    assert_eq!(dependency_down, Some(0.0), "the instances report Redis down meanwhile");
    assert!(redis_failed * 1000 <= redis_total, "webhooks are still answered while Redis is away");
    assert_eq!(pids_after, pids, "nothing was restarted");
    assert_eq!(connects_after, connects_before, "open overlays stayed connected through the outage");
}
