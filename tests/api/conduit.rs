//! The EventSub conduit lifecycle against the Twitch simulator, over real
//! HTTP: the service sets up one conduit and shard by itself (once, however
//! many instances start), subscriptions follow sessions, reconciliation
//! repairs what drifted, Helix faults are handled by the retry policy, a
//! disabled shard is re-assigned, revocations act by reason, and chat reaches
//! overlays through the webhook shard and through the WebSocket shard.

use std::time::{Duration, Instant};

use chatpulse::config::{EventSubTransport, Secret};
use chatpulse::domain::BroadcasterId;
use chatpulse::store::{NewStreamer, OverlaySetup};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use twitch_sim::{ChatInput, SimConfig, SimUser, Simulator};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

/// What these tests ask the simulator.
impl Twitch {
    fn conduits(&self) -> Vec<Value> {
        self.sim.conduits()
    }

    /// Enabled subscriptions whose condition names this channel.
    fn enabled_for(&self, broadcaster: &str) -> Vec<Value> {
        self.sim
            .subscriptions()
            .into_iter()
            .filter(|s| s["status"] == "enabled" && s["condition"]["broadcaster_user_id"] == broadcaster)
            .collect()
    }

    fn enabled_of_type(&self, kind: &str) -> Vec<Value> {
        self.sim.subscriptions().into_iter().filter(|s| s["status"] == "enabled" && s["type"] == kind).collect()
    }

    async fn post(&self, path: &str, body: Value) -> u16 {
        reqwest::Client::new().post(format!("{}{path}", self.base)).json(&body).send().await.unwrap().status().as_u16()
    }
}

/// Our streamer for a simulated Twitch user.
async fn add(app: &TestApp, user: &SimUser) -> OverlaySetup {
    let new = NewStreamer {
        twitch_user_id: BroadcasterId::parse(&user.id).unwrap(),
        login: user.login.clone(),
        display_name: user.display_name.clone(),
    };
    app.repo.create_streamer(&new).await.unwrap()
}

async fn readiness(app: &TestApp) -> Value {
    app.http.get(format!("{}/health/ready", app.metrics_base)).send().await.unwrap().json().await.unwrap()
}

/// Waits until the instance has set EventSub up (the leader: conduit,
/// shard, alarms; the others: the conduit is known); returns the conduit.
async fn eventsub_ready(app: &TestApp) -> String {
    let ready = eventually(WAIT * 2, || async { readiness(app).await["eventsub"]["set_up"] == true }).await;
    let body = readiness(app).await;
    assert!(ready, "EventSub never set up: {body}");
    body["eventsub"]["conduit_id"].as_str().unwrap().to_owned()
}

/// Set up, and the leader's first reconciliation done: nothing else calls
/// Helix until a session activates, so injected faults hit that.
async fn settled(app: &TestApp) -> String {
    let conduit = eventsub_ready(app).await;
    let reconciled = eventually(WAIT, || async {
        app.metric("chatpulse_eventsub_reconciliations_total{outcome=\"ok\"}").await >= 1.0
    })
    .await;
    assert!(reconciled, "the start-up reconciliation ran");
    conduit
}

/// Reconciliations done by these instances (only a leader reconciles).
async fn reconciliations(apps: &[TestApp]) -> f64 {
    let mut sum = 0.0;
    for app in apps {
        sum += app.metric("chatpulse_eventsub_reconciliations_total{outcome=\"ok\"}").await;
    }
    sum
}

async fn calls(app: &TestApp, operation: &str, outcome: &str) -> f64 {
    app.metric(&format!(
        "chatpulse_eventsub_subscription_calls_total{{operation=\"{operation}\",outcome=\"{outcome}\"}}"
    ))
    .await
}

/// Waits until `twitch` has exactly `n` enabled subscriptions for the channel.
async fn expect_subscriptions(twitch: &Twitch, broadcaster: &str, n: usize) -> Vec<Value> {
    let settled = eventually(WAIT, || async { twitch.enabled_for(broadcaster).len() == n }).await;
    let subs = twitch.enabled_for(broadcaster);
    assert!(settled, "expected {n} subscriptions for {broadcaster}, Twitch has {subs:#?}");
    subs
}

fn ids(subs: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = subs.iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

async fn recorded_ids(app: &TestApp, broadcaster: &str) -> Vec<String> {
    let records = app.repo.subscriptions_of(&BroadcasterId::parse(broadcaster).unwrap()).await.unwrap();
    let mut ids: Vec<String> =
        records.into_iter().filter(|r| r.status == "enabled").map(|r| r.subscription_id).collect();
    ids.sort();
    ids
}

both_modes! {
async fn a_fresh_start_sets_up_one_conduit_an_enabled_shard_and_the_alarms_and_a_restart_reuses_them() {
    let twitch = Twitch::start().await;
    let mut app = TestApp::builder().twitch(&twitch).start().await;
    let conduit = eventsub_ready(&app).await;

    let conduits = twitch.conduits();
    assert_eq!(conduits.len(), 1, "{conduits:#?}");
    assert_eq!(conduits[0]["id"], conduit.as_str());
    let shard = &conduits[0]["shards"][0];
    assert_eq!(shard["status"], "enabled", "{shard}");
    assert_eq!(shard["transport"]["callback"], format!("{}/webhooks/eventsub", app.base));
    let client_id = twitch.sim.config().client_id.clone();
    assert_eq!(app.repo.conduit(&client_id).await.unwrap().as_deref(), Some(conduit.as_str()), "remembered");
    // The two app-wide alarms, as plain webhooks verified through our endpoint.
    for kind in ["user.authorization.revoke", "conduit.shard.disabled"] {
        let ok = eventually(WAIT, || async { twitch.enabled_of_type(kind).len() == 1 }).await;
        assert!(ok, "{kind} not enabled: {:#?}", twitch.sim.subscriptions());
        let sub = &twitch.enabled_of_type(kind)[0];
        assert_eq!(sub["transport"]["method"], "webhook");
        assert_eq!(sub["condition"]["client_id"], client_id.as_str());
    }
    assert_eq!(twitch.enabled_of_type("conduit.shard.disabled")[0]["condition"]["conduit_id"], conduit.as_str());
    assert_eq!(app.metric("chatpulse_leader").await, 1.0);
    assert_eq!(app.metric("chatpulse_eventsub_ready").await, 1.0);
    let body = readiness(&app).await;
    assert_eq!(body["eventsub"]["shard_ready"], true, "{body}");
    assert_eq!(body["ready"], true);

    // A restart finds everything again and creates nothing new.
    app.stop().await.unwrap();
    let again = TestApp::builder().twitch(&twitch).restart_of(&app).start().await;
    // Set up and reconciled: nothing more happens until an overlay opens.
    assert_eq!(settled(&again).await, conduit);
    assert_eq!(twitch.conduits().len(), 1);
    for kind in ["user.authorization.revoke", "conduit.shard.disabled"] {
        let all: Vec<Value> = twitch.sim.subscriptions().into_iter().filter(|s| s["type"] == kind).collect();
        assert_eq!(all.len(), 1, "no duplicate {kind}: {all:#?}");
    }
}
}

/// A new streamer of `twitch` opens an overlay on `app`; once subscribed, a
/// "yes" typed in their channel must move the bar: chat flows end to end.
async fn chat_moves_a_new_overlay(twitch: &Twitch, app: &TestApp, chatter: &str, what: &str) {
    let user = twitch.streamer();
    let s = add(app, &user).await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    expect_subscriptions(twitch, &user.id, 3).await;
    let chat = ChatInput {
        broadcaster_user_id: user.id.clone(),
        chatter_user_id: chatter.into(),
        text: "yes".into(),
        ..ChatInput::default()
    };
    twitch.sim.post_chat(chat).await.unwrap();
    overlay.wait_for(WAIT, |f| f.value > 0.0).await.expect(what);
}

both_modes! {
async fn a_new_webhook_secret_rebinds_the_shard_and_renews_the_alarms() {
    let twitch = Twitch::start().await;
    let mut app = TestApp::builder()
        .twitch(&twitch)
        .configure(|c| c.webhook_secret = Secret::new("the-first-webhook-secret"))
        .start()
        .await;
    let conduit = eventsub_ready(&app).await;
    let alarms = |twitch: &Twitch| {
        let mut ids: Vec<String> = ["user.authorization.revoke", "conduit.shard.disabled"]
            .iter()
            .flat_map(|k| twitch.enabled_of_type(k))
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    assert!(eventually(WAIT, || async { alarms(&twitch).len() == 2 }).await, "alarms subscribed");
    let before = alarms(&twitch);

    // The operator rotates WEBHOOK_SECRET and restarts. Twitch never shows
    // a shard's secret: only the service knows it changed.
    app.stop().await.unwrap();
    let again = TestApp::builder()
        .twitch(&twitch)
        .restart_of(&app)
        .configure(|c| c.webhook_secret = Secret::new("the-second-webhook-secret"))
        .start()
        .await;
    assert_eq!(eventsub_ready(&again).await, conduit, "same conduit");
    let renewed = eventually(WAIT, || async {
        let now = alarms(&twitch);
        now.len() == 2 && now.iter().all(|id| !before.contains(id))
    })
    .await;
    assert!(renewed, "alarms made again with the new secret: {:#?}", twitch.sim.subscriptions());

    // Twitch now signs with the new secret: chat is accepted.
    chat_moves_a_new_overlay(&twitch, &again, "6061", "chat signed with the new secret is accepted").await;
}
}

#[tokio::test]
async fn a_conduit_deleted_on_twitch_is_replaced_and_every_instance_follows() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let twitch = Twitch::start().await;
    let key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    let instance = || {
        TestApp::builder()
            .twitch(&twitch)
            .distributed(&db, &redis)
            .leader_key(&key)
            .configure(|c| c.tuning.eventsub_reconcile_interval = Duration::from_millis(500))
            .start()
    };
    let leader = instance().await;
    let old = eventsub_ready(&leader).await;
    let follower = instance().await;
    assert_eq!(eventsub_ready(&follower).await, old);
    let (leader, follower) =
        if readiness(&leader).await["eventsub"]["leader"] == true { (leader, follower) } else { (follower, leader) };
    let user = twitch.streamer();
    let s = add(&leader, &user).await;
    let mut overlay = follower.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    expect_subscriptions(&twitch, &user.id, 3).await;

    // Twitch deletes the conduit (as after 72 h of disabled shards).
    let token = twitch.client.app_token().await.unwrap();
    let deleted = reqwest::Client::new()
        .delete(format!("{}/helix/eventsub/conduits?id={old}", twitch.base))
        .bearer_auth(token)
        .header("Client-Id", &twitch.sim.config().client_id)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    let replaced = eventually(Duration::from_secs(10), || async {
        let conduits = twitch.conduits();
        conduits.len() == 1
            && conduits[0]["id"] != old.as_str()
            && conduits[0]["shards"][0]["status"] == "enabled"
            && twitch.enabled_for(&user.id).len() == 3
            && twitch.enabled_for(&user.id).iter().all(|s| s["transport"]["conduit_id"] == conduits[0]["id"])
    })
    .await;
    assert!(replaced, "a new conduit, bound and subscribed: {:#?}", twitch.conduits());
    let new = twitch.conduits()[0]["id"].as_str().unwrap().to_owned();
    let followed = eventually(Duration::from_secs(5), || async {
        readiness(&follower).await["eventsub"]["conduit_id"] == new.as_str()
    })
    .await;
    assert!(followed, "the other instance follows: {}", readiness(&follower).await);
    let chat = ChatInput {
        broadcaster_user_id: user.id.clone(),
        chatter_user_id: "6062".into(),
        text: "yes".into(),
        ..ChatInput::default()
    };
    twitch.sim.post_chat(chat).await.unwrap();
    overlay.wait_for(WAIT, |f| f.value > 0.0).await.expect("chat flows on the new conduit");
}

#[tokio::test]
async fn a_websocket_shard_taken_away_is_bound_back_to_our_session() {
    let twitch = Twitch::start().await;
    let app = TestApp::builder()
        .twitch(&twitch)
        .configure(|c| {
            c.eventsub_transport = EventSubTransport::WebSocket;
            c.tuning.eventsub_reconcile_interval = Duration::from_millis(500);
        })
        .start()
        .await;
    let conduit = eventsub_ready(&app).await;
    let ours = || {
        let shard = &twitch.conduits()[0]["shards"][0];
        (shard["status"] == "enabled" && shard["transport"]["method"] == "websocket")
            .then(|| shard["transport"]["session_id"].as_str().unwrap_or_default().to_owned())
    };
    assert!(eventually(WAIT, || async { ours().is_some() }).await, "bound to our session");
    let session = ours().unwrap();

    // Someone points shard 0 elsewhere (a stale deployment, an operator).
    twitch
        .client
        .update_webhook_shard(&conduit, "0", "http://127.0.0.1:9/elsewhere", "some-other-secret")
        .await
        .unwrap();
    let back = eventually(WAIT, || async { ours().as_deref() == Some(session.as_str()) }).await;

    assert!(back, "the leader's check bound it back: {:#?}", twitch.conduits());
    chat_moves_a_new_overlay(&twitch, &app, "6063", "chat flows through our socket again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_starting_at_once_create_one_conduit_and_elect_one_leader() {
    run_in(Mode::Distributed, async {
        let twitch = Twitch::start().await;
        let key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
        // One callback, as behind a load balancer: the first instance's port.
        let port = free_port();
        let instance = || {
            TestApp::builder().twitch(&twitch).leader_key(&key).configure(|c| {
                c.tuning.leader_ttl = Duration::from_millis(1500);
                c.tuning.leader_renew = Duration::from_millis(300);
                c.webhook_callback_url = format!("http://127.0.0.1:{port}/webhooks/eventsub");
            })
        };
        let (a, b, c) = tokio::join!(instance().port(port).start(), instance().start(), instance().start());
        let mut apps = vec![a, b, c];
        let mut conduits = Vec::new();
        for app in &apps {
            conduits.push(eventsub_ready(app).await);
        }
        assert_eq!(twitch.conduits().len(), 1, "{:#?}", twitch.conduits());
        assert!(conduits.iter().all(|c| *c == conduits[0]), "every instance found the same conduit: {conduits:?}");
        let mut leaders = Vec::new();
        for app in &apps {
            leaders.push(app.metric("chatpulse_leader").await);
        }
        assert_eq!(leaders.iter().sum::<f64>(), 1.0, "exactly one leader: {leaders:?}");

        // The leader stops: another instance takes over within the lease,
        // and reuses the conduit.
        let leader = leaders.iter().position(|l| *l == 1.0).unwrap();
        let mut stopped = apps.remove(leader);
        let before = reconciliations(&apps).await;
        stopped.stop().await.unwrap();
        let took_over = eventually(Duration::from_secs(5), || async {
            let mut sum = 0.0;
            for app in &apps {
                sum += app.metric("chatpulse_leader").await;
            }
            sum == 1.0
        })
        .await;
        assert!(took_over, "a new leader was elected");
        // A leader reconciles once its set-up (finding the conduit) is done.
        let set_up = eventually(WAIT, || async { reconciliations(&apps).await > before }).await;
        assert!(set_up, "the new leader set EventSub up");
        assert_eq!(twitch.conduits().len(), 1, "the new leader reuses the conduit");
    })
    .await
}

both_modes! {
async fn subscriptions_follow_sessions_without_duplicates_and_go_with_them() {
    let twitch = Twitch::start().await;
    let key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    let mut app = TestApp::builder().twitch(&twitch).leader_key(&key).start().await;
    eventsub_ready(&app).await;
    let user = twitch.streamer();
    let s = add(&app, &user).await;

    // Activation creates the three subscriptions and records their ids.
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    let subs = expect_subscriptions(&twitch, &user.id, 3).await;
    let mut kinds: Vec<&str> = subs.iter().map(|s| s["type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["channel.chat.message", "stream.offline", "stream.online"]);
    let chat = subs.iter().find(|s| s["type"] == "channel.chat.message").unwrap();
    assert_eq!(chat["condition"]["user_id"], twitch.bot.id.as_str());
    let created = ids(&subs);
    let recorded = eventually(WAIT, || async { recorded_ids(&app, &user.id).await == created }).await;
    assert!(recorded, "ids persisted: {:?} vs {created:?}", recorded_ids(&app, &user.id).await);

    // A second overlay (same session) and a second activation create nothing new.
    let mut second = app.connect(&s.streamer.overlay_id).await;
    second.next_frame(WAIT).await.expect("second overlay");
    overlay.close().await;
    second.close().await;
    let gone = eventually(WAIT, || async { twitch.enabled_for(&user.id).is_empty() }).await;
    assert!(gone, "the session's clean-up deleted its subscriptions: {:#?}", twitch.enabled_for(&user.id));
    let forgotten = eventually(WAIT, || async { recorded_ids(&app, &user.id).await.is_empty() }).await;
    assert!(forgotten, "and their records");
    assert!(calls(&app, "delete", "ok").await >= 3.0);

    let mut back = app.connect(&s.streamer.overlay_id).await;
    back.next_frame(WAIT).await.expect("reactivated");
    let subs = expect_subscriptions(&twitch, &user.id, 3).await;
    // Chat flows through the conduit's webhook shard and moves the bar.
    let delivered = eventually(WAIT, || async {
        let chat = ChatInput {
            broadcaster_user_id: user.id.clone(),
            chatter_user_id: uuid::Uuid::new_v4().as_u128().to_string()[..9].to_owned(),
            text: "yes".into(),
            ..ChatInput::default()
        };
        twitch.sim.post_chat(chat).await.unwrap();
        app.votes("applied").await >= 1.0
    })
    .await;
    assert!(delivered, "chat reaches the overlay through the conduit");
    back.wait_for(WAIT, |f| f.value > 0.0).await.expect("the bar moved");

    // Another process activating the same channel never duplicates: a second
    // instance of the deployment adopts (409) while the first still holds the
    // session; a restarted embedded process subscribes afresh.
    let again = if mode() == Mode::Distributed {
        let callback = format!("{}/webhooks/eventsub", app.base);
        let instance = TestApp::builder().twitch(&twitch).leader_key(&key);
        instance.configure(|c| c.webhook_callback_url = callback.clone()).start().await
    } else {
        app.stop().await.unwrap();
        TestApp::builder().twitch(&twitch).restart_of(&app).start().await
    };
    eventsub_ready(&again).await;
    let mut third = again.connect(&s.streamer.overlay_id).await;
    third.next_frame(WAIT).await.expect("overlay on the second process");
    let now = expect_subscriptions(&twitch, &user.id, 3).await;
    if mode() == Mode::Distributed {
        let adopted = eventually(WAIT, || async { calls(&again, "adopt", "ok").await >= 3.0 }).await;
        assert!(adopted, "409s adopted the existing subscriptions");
        assert_eq!(ids(&now), ids(&subs), "the same subscriptions");
    } else {
        let subscribed = eventually(WAIT, || async {
            calls(&again, "create", "ok").await + calls(&again, "adopt", "ok").await >= 3.0
        })
        .await;
        assert!(subscribed, "the restarted process subscribed the channel itself");
    }
    assert_eq!(twitch.enabled_for(&user.id).len(), 3, "no duplicates: {:#?}", twitch.sim.subscriptions());
    assert_eq!(twitch.conduits().len(), 1);
    drop(app);
}
}

both_modes! {
async fn reconciliation_removes_orphans_and_duplicates_and_restores_what_is_missing() {
    let twitch = Twitch::start().await;
    let app = TestApp::builder().twitch(&twitch).configure(|c| c.tuning.eventsub_reconcile_interval = Duration::from_millis(700)).start().await;
    let conduit = eventsub_ready(&app).await;
    let user = twitch.streamer();
    let s = add(&app, &user).await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    let subs = expect_subscriptions(&twitch, &user.id, 3).await;

    // Drift, as a crash or an old deployment would leave it:
    // an orphan — a channel without a session, subscribed on our conduit;
    let stranger = twitch.streamer();
    let orphan = twitch
        .client
        .create_conduit_subscription("stream.online", json!({"broadcaster_user_id": stranger.id}), &conduit)
        .await
        .unwrap()
        .subscription;
    // a duplicate — the active channel again, on a leftover conduit;
    let old = twitch.client.create_conduit(1).await.unwrap();
    let duplicate = twitch
        .client
        .create_conduit_subscription("stream.offline", json!({"broadcaster_user_id": user.id}), &old.id)
        .await
        .unwrap()
        .subscription;
    // a missing one — deleted behind our back;
    let online = subs.iter().find(|s| s["type"] == "stream.online").unwrap()["id"].as_str().unwrap().to_owned();
    twitch.client.delete_subscription(&online).await.unwrap();

    let repaired = eventually(Duration::from_secs(15), || async {
        let all = twitch.sim.subscriptions();
        let alive = |id: &str| all.iter().any(|s| s["id"] == id && s["status"] == "enabled");
        !alive(&orphan.id) && !alive(&duplicate.id) && twitch.enabled_for(&user.id).len() == 3
    })
    .await;
    assert!(repaired, "reconciliation repaired the drift: {:#?}", twitch.sim.subscriptions());
    let now = twitch.enabled_for(&user.id);
    assert!(now.iter().any(|s| s["type"] == "stream.online" && s["id"] != online.as_str()), "re-created");
    assert!(now.iter().all(|s| s["transport"]["conduit_id"] == conduit.as_str()));
    let recorded = eventually(WAIT, || async { recorded_ids(&app, &user.id).await == ids(&now) }).await;
    assert!(recorded, "records follow: {:?}", recorded_ids(&app, &user.id).await);
    for kind in ["orphan", "duplicate", "missing"] {
        let n = app.metric(&format!("chatpulse_eventsub_repairs_total{{kind=\"{kind}\"}}")).await;
        assert!(n >= 1.0, "{kind} repair counted");
    }
    assert!(app.metric("chatpulse_eventsub_reconciliations_total{outcome=\"ok\"}").await >= 1.0);
    // Twitch's totals are exported.
    let total = app.metric("chatpulse_eventsub_subscriptions").await;
    assert!(total >= 5.0, "total from Twitch: {total}");
    assert_eq!(app.metric("chatpulse_eventsub_subscription_max_cost").await, 10_000.0);
}
}

#[tokio::test]
async fn a_rate_limited_call_waits_for_the_reset_and_then_succeeds() {
    let twitch = Twitch::start().await;
    // Transient retries would be over in 50 + 100 ms; a reset is a second away.
    let app = TestApp::builder()
        .twitch(&twitch)
        .configure(|c| c.tuning.twitch_retry_base = Duration::from_millis(50))
        .start()
        .await;
    settled(&app).await;
    let user = twitch.streamer();
    let s = add(&app, &user).await;
    assert_eq!(twitch.post("/sim/faults", json!({"status": 429, "count": 2})).await, 200);
    let started = Instant::now();
    let _overlay = app.connect(&s.streamer.overlay_id).await;
    expect_subscriptions(&twitch, &user.id, 3).await;
    assert!(started.elapsed() >= Duration::from_millis(1000), "waited for Ratelimit-Reset: {:?}", started.elapsed());
    assert_eq!(calls(&app, "create", "rate_limited").await, 0.0, "not given up");
    assert!(calls(&app, "create", "ok").await >= 3.0);
}

#[tokio::test]
async fn server_errors_are_retried_and_a_forbidden_answer_is_not() {
    let twitch = Twitch::start().await;
    let app = TestApp::builder()
        .twitch(&twitch)
        .configure(|c| c.tuning.twitch_retry_base = Duration::from_millis(50))
        .start()
        .await;
    settled(&app).await;

    // Two 500s, then success: the subscriptions exist and nothing failed.
    let user = twitch.streamer();
    let s = add(&app, &user).await;
    assert_eq!(twitch.post("/sim/faults", json!({"status": 500, "count": 2})).await, 200);
    let _overlay = app.connect(&s.streamer.overlay_id).await;
    expect_subscriptions(&twitch, &user.id, 3).await;
    assert_eq!(calls(&app, "create", "transient").await, 0.0);

    // A 403 is final: had it been retried, the next attempt would succeed.
    let refused = twitch.streamer();
    let r = add(&app, &refused).await;
    assert_eq!(twitch.post("/sim/faults", json!({"status": 403, "count": 1})).await, 200);
    let _second = app.connect(&r.streamer.overlay_id).await;
    let reported = eventually(WAIT, || async { calls(&app, "create", "rejected").await == 1.0 }).await;
    assert!(reported, "the 403 is counted");
    // The refused type (chat) is tried first, so once the channel's other
    // types exist its attempt is over: it was not retried. They are still
    // created, so its live status keeps working.
    let others = eventually(WAIT, || async { twitch.enabled_for(&refused.id).len() >= 2 }).await;
    assert!(others, "the other types were created: {:#?}", twitch.enabled_for(&refused.id));
    let enabled = twitch.enabled_for(&refused.id);
    let kinds: Vec<&str> = enabled.iter().filter_map(|s| s["type"].as_str()).collect();
    assert_eq!(kinds.len(), 2, "not retried: {enabled:#?}");
    assert!(!kinds.contains(&"channel.chat.message"), "{kinds:?}");
    assert_eq!(calls(&app, "create", "rejected").await, 1.0, "reported once");
}

#[tokio::test]
async fn a_disabled_shard_is_re_assigned_and_chat_flows_again() {
    let twitch = Twitch::start().await;
    let app = TestApp::builder().twitch(&twitch).start().await;
    let conduit = eventsub_ready(&app).await;
    let alarm = eventually(WAIT, || async { twitch.enabled_of_type("conduit.shard.disabled").len() == 1 }).await;
    assert!(alarm, "the shard alarm is subscribed");

    assert_eq!(twitch.post(&format!("/sim/conduits/{conduit}/shards/0/disable"), json!({})).await, 202);
    let repaired = eventually(WAIT, || async {
        app.metric("chatpulse_eventsub_shard_repairs_total{outcome=\"repaired\"}").await >= 1.0
            && twitch.conduits()[0]["shards"][0]["status"] == "enabled"
    })
    .await;
    assert!(repaired, "shard re-enabled: {:#?}", twitch.conduits());
    assert!(app.metric("chatpulse_eventsub_shard_disabled_total").await >= 1.0, "alerted");

    chat_moves_a_new_overlay(&twitch, &app, "5551", "chat flows through the repaired shard").await;
}

both_modes! {
async fn a_streamer_who_disconnects_the_app_is_flagged_and_gets_chat_back_by_logging_in() {
    let app = TestApp::builder().demo().start().await;
    let sim = app.simulator_url().to_owned();
    let login = unique_login();
    app.log_in(&login).await;
    let user_id = app.sim_user_id(&login).await;
    let s = app.repo.streamer_by_twitch_id(&BroadcasterId::parse(&user_id).unwrap()).await.unwrap().unwrap();
    assert!(app.repo.tokens(s.streamer.id).await.unwrap().is_some());
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    let subscribed = eventually(WAIT, || async { recorded_ids(&app, &user_id).await.len() == 3 }).await;
    assert!(subscribed, "the channel is subscribed");

    // The streamer disconnects ChatPulse on Twitch: revocations arrive for
    // their subscriptions, and user.authorization.revoke for the app.
    let disconnected = app.http.post(format!("{sim}/sim/users/{user_id}/disconnect")).send().await.unwrap();
    assert!(disconnected.status().is_success(), "{}", disconnected.status());
    let flagged = eventually(WAIT, || async {
        let st = app.repo.streamer(s.streamer.id).await.unwrap().unwrap();
        st.streamer.needs_relogin && app.repo.tokens(s.streamer.id).await.unwrap().is_none()
    })
    .await;
    assert!(flagged, "tokens deleted and the streamer asked to reconnect");
    overlay.wait_for(WAIT, |f| f.status == "disconnected").await.expect("the overlay says so");
    assert!(app.metric("chatpulse_authorizations_revoked_total").await >= 1.0);
    let reason = "chatpulse_eventsub_revocations_total{reason=\"authorization_revoked\"}";
    assert!(eventually(WAIT, || async { app.metric(reason).await >= 1.0 }).await, "revocations counted");

    // Logging in again (granting access again) brings chat back at once.
    app.log_in(&login).await;
    overlay.wait_for(WAIT, |f| f.status == "active").await.expect("the overlay is back to normal");
    let back = eventually(WAIT, || async { recorded_ids(&app, &user_id).await.len() == 3 }).await;
    assert!(back, "subscribed again: {:?}", app.repo.subscriptions_of(&s.streamer.twitch_user_id).await.unwrap());
    let chat = json!({"broadcaster_user_id": user_id, "chatter_user_id": "8123", "text": "yes"});
    app.http.post(format!("{sim}/sim/chat")).json(&chat).send().await.unwrap();
    overlay.wait_for(WAIT, |f| f.value > 0.0).await.expect("chat moves the bar again");
}
}

#[tokio::test]
async fn a_retired_subscription_version_is_re_created() {
    let twitch = Twitch::start().await;
    let app = TestApp::builder().twitch(&twitch).start().await;
    eventsub_ready(&app).await;
    let user = twitch.streamer();
    let s = add(&app, &user).await;
    let _overlay = app.connect(&s.streamer.overlay_id).await;
    let subs = expect_subscriptions(&twitch, &user.id, 3).await;
    let online = subs.iter().find(|s| s["type"] == "stream.online").unwrap()["id"].as_str().unwrap().to_owned();
    let status =
        twitch.post(&format!("/sim/subscriptions/{online}/revoke"), json!({"status": "version_removed"})).await;
    assert_eq!(status, 202);
    let recreated = eventually(WAIT, || async {
        twitch.enabled_for(&user.id).iter().any(|s| s["type"] == "stream.online" && s["id"] != online.as_str())
    })
    .await;
    assert!(recreated, "re-created after version_removed: {:#?}", twitch.enabled_for(&user.id));
    assert!(app.metric("chatpulse_eventsub_revocations_total{reason=\"version_removed\"}").await >= 1.0);
}

both_modes! {
async fn chat_reaches_the_overlay_through_the_websocket_shard() {
    let twitch = Twitch::start().await;
    let app = TestApp::builder().twitch(&twitch).configure(|c| c.eventsub_transport = EventSubTransport::WebSocket).start().await;
    let conduit = eventsub_ready(&app).await;
    let bound = eventually(WAIT, || async {
        let shard = &twitch.conduits()[0]["shards"][0];
        shard["status"] == "enabled" && shard["transport"]["method"] == "websocket"
    })
    .await;
    assert!(bound, "shard 0 bound to our WebSocket session: {:#?}", twitch.conduits());
    assert_eq!(twitch.conduits()[0]["id"], conduit.as_str());
    // No plain-webhook alarms in this mode (there is no public callback).
    assert!(twitch.enabled_of_type("user.authorization.revoke").is_empty());

    let user = twitch.streamer();
    let s = add(&app, &user).await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    expect_subscriptions(&twitch, &user.id, 3).await;
    let say = |chatter: &str, text: &str| ChatInput {
        broadcaster_user_id: user.id.clone(),
        chatter_user_id: chatter.into(),
        text: text.into(),
        ..ChatInput::default()
    };
    twitch.sim.post_chat(say("7001", "yes")).await.unwrap();
    overlay.wait_for(WAIT, |f| f.value > 0.0).await.expect("the bar moved through the WebSocket shard");

    // Twitch asks us to reconnect: we follow, and chat keeps flowing.
    let session = twitch.conduits()[0]["shards"][0]["transport"]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(twitch.post(&format!("/sim/websocket/{session}/reconnect"), json!({})).await, 202);
    let moved = eventually(WAIT, || async {
        let shard = &twitch.conduits()[0]["shards"][0];
        shard["status"] == "enabled"
            && shard["transport"]["session_id"] != session.as_str()
            && twitch.sim.websocket_sessions().len() == 1
    })
    .await;
    assert!(moved, "on the new session, the old socket closed: {:#?}", twitch.conduits());
    twitch.sim.post_chat(say("7002", "no")).await.unwrap();
    twitch.sim.post_chat(say("7003", "no")).await.unwrap();
    overlay.wait_for(WAIT, |f| f.value < 0.0).await.expect("chat after the reconnect");
    assert_eq!(twitch.conduits()[0]["shards"][0]["status"], "enabled");

    // Online and offline arrive the same way and change the frame status.
    twitch.sim.set_live(&user.id, true).await.unwrap();
    overlay.wait_for(WAIT, |f| f.status == "live").await.expect("live");
    twitch.sim.set_live(&user.id, false).await.unwrap();
    overlay.wait_for(WAIT, |f| f.status == "offline").await.expect("offline");
}
}

#[tokio::test]
async fn set_up_failures_keep_the_service_serving_and_it_sets_up_once_twitch_appears() {
    // Twitch is unreachable at first: this port has nobody listening.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let own = free_port();
    let app = TestApp::builder()
        .port(own)
        .configure(|c| {
            c.webhook_callback_url = format!("http://127.0.0.1:{own}/webhooks/eventsub");
            c.twitch_client_id = Some(SimConfig::default().client_id);
            c.twitch_client_secret = Some(Secret::new(SimConfig::default().client_secret));
            c.twitch_api_url = format!("{base}/helix");
            c.twitch_auth_url = format!("{base}/oauth2");
            c.bot_user_id = Some("41245007".into());
        })
        .start()
        .await;
    let failing =
        eventually(WAIT, || async { app.metric("chatpulse_eventsub_setup_failures_total").await >= 1.0 }).await;
    assert!(failing, "set-up failures are counted");
    let body = readiness(&app).await;
    assert_eq!(body["ready"], true, "the service still serves: {body}");
    assert_eq!(body["eventsub"]["set_up"], false);
    assert!(body["eventsub"]["last_error"].as_str().is_some_and(|e| e.contains("unreachable")), "{body}");
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("overlays work without Twitch");

    // Twitch appears on that address: the retries set everything up.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let sim = Simulator::new(SimConfig { public_url: base.clone(), ..SimConfig::default() });
    let stop = CancellationToken::new();
    tokio::spawn(sim.clone().serve(listener, stop.clone()));
    let ready =
        eventually(Duration::from_secs(70), || async { readiness(&app).await["eventsub"]["set_up"] == true }).await;
    assert!(ready, "set up once Twitch is reachable: {}", readiness(&app).await);
    assert_eq!(sim.conduits().len(), 1);
    assert_eq!(readiness(&app).await["eventsub"]["last_error"], Value::Null);
    stop.cancel();
}

/// Revokes one subscription the way Twitch does (the simulator's control API).
async fn revoke(app: &TestApp, subscription: &str, status: &str) {
    let sim = app.simulator_url();
    let url = format!("{sim}/sim/subscriptions/{subscription}/revoke");
    let revoked = app.http.post(url).json(&json!({ "status": status })).send().await.unwrap();
    assert_eq!(revoked.status(), 202);
}

/// A logged-in streamer with an open overlay and their three subscriptions.
async fn subscribed_streamer(app: &TestApp) -> (OverlaySetup, OverlayClient, String) {
    let login = unique_login();
    app.log_in(&login).await;
    let user_id = app.sim_user_id(&login).await;
    let s = app.repo.streamer_by_twitch_id(&BroadcasterId::parse(&user_id).unwrap()).await.unwrap().unwrap();
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    assert!(eventually(WAIT, || async { recorded_ids(app, &user_id).await.len() == 3 }).await, "subscribed");
    (s, overlay, user_id)
}

async fn chat_subscription(app: &TestApp, s: &OverlaySetup) -> String {
    let records = app.repo.subscriptions_of(&s.streamer.twitch_user_id).await.unwrap();
    records.into_iter().find(|r| r.subscription_type == "channel.chat.message").unwrap().subscription_id
}

both_modes! {
async fn a_chat_revocation_flags_the_streamer_whose_own_grant_is_gone() {
    let app = TestApp::builder().demo().start().await;
    let (s, mut overlay, _) = subscribed_streamer(&app).await;
    // The streamer's token no longer works on Twitch (revoked there).
    let stored = app.repo.tokens(s.streamer.id).await.unwrap().unwrap();
    let cipher = chatpulse::crypto::TokenCipher::new(chatpulse::config::DEV_TOKEN_ENCRYPTION_KEY, None).unwrap();
    let access = cipher.decrypt(&stored.access_token, s.streamer.twitch_user_id.as_str()).unwrap();
    let sim = app.simulator_url();
    let client_id = twitch_sim::SimConfig::default().client_id;
    let form = [("client_id", client_id.as_str()), ("token", access.as_str())];
    assert_eq!(app.http.post(format!("{sim}/oauth2/revoke")).form(&form).send().await.unwrap().status(), 200);

    revoke(&app, &chat_subscription(&app, &s).await, "authorization_revoked").await;

    let flagged = eventually(WAIT, || async {
        app.repo.streamer(s.streamer.id).await.unwrap().unwrap().streamer.needs_relogin
            && app.repo.tokens(s.streamer.id).await.unwrap().is_none()
    })
    .await;
    assert!(flagged, "tokens deleted, streamer asked to log in again");
    overlay.wait_for(WAIT, |f| f.status == "disconnected").await.expect("the overlay says so");
    assert_eq!(app.metric("chatpulse_bot_authorization_lost_total").await, 0.0, "not the bot");
}
}

both_modes! {
async fn a_chat_revocation_while_the_streamers_grant_holds_is_the_bots_and_flags_nobody() {
    let app = TestApp::builder().demo().start().await;
    let (s, mut overlay, _) = subscribed_streamer(&app).await;

    revoke(&app, &chat_subscription(&app, &s).await, "authorization_revoked").await;

    let alarmed =
        eventually(WAIT, || async { app.metric("chatpulse_bot_authorization_lost_total").await >= 1.0 }).await;
    assert!(alarmed, "the operator is alerted");
    let streamer = app.repo.streamer(s.streamer.id).await.unwrap().unwrap();
    assert!(!streamer.streamer.needs_relogin, "the streamer did nothing wrong");
    assert!(app.repo.tokens(s.streamer.id).await.unwrap().is_some(), "their tokens are kept");
    assert!(overlay.wait_for(Duration::from_millis(500), |f| f.status == "disconnected").await.is_none());
    assert_eq!(app.metric("chatpulse_authorizations_revoked_total").await, 0.0);
}
}

both_modes! {
async fn a_bot_banned_from_a_channel_is_explained_on_the_dashboard_and_not_resubscribed() {
    // Reconciliation runs often here: it must not undo the block.
    let app = TestApp::builder().demo().configure(|c| c.tuning.eventsub_reconcile_interval = Duration::from_millis(300)).start().await;
    let sim = app.simulator_url().to_owned();
    let login = unique_login();
    let browser = app.log_in(&login).await.client;
    let user_id = app.sim_user_id(&login).await;
    let b = BroadcasterId::parse(&user_id).unwrap();
    let s = app.repo.streamer_by_twitch_id(&b).await.unwrap().unwrap();
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    assert!(eventually(WAIT, || async { recorded_ids(&app, &user_id).await.len() == 3 }).await);
    let records = app.repo.subscriptions_of(&b).await.unwrap();
    let chat = records.iter().find(|r| r.subscription_type == "channel.chat.message").unwrap().subscription_id.clone();

    let revoked = app
        .http
        .post(format!("{sim}/sim/subscriptions/{chat}/revoke"))
        .json(&json!({"status": "chat_user_banned"}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 202);
    let recorded = eventually(WAIT, || async {
        app.repo.subscriptions_of(&b).await.unwrap().iter().any(|r| r.status == "chat_user_banned")
    })
    .await;
    assert!(recorded, "the reason is recorded");
    // Reconciliation removes the dead subscription from Twitch's list but
    // keeps the record that blocks re-subscribing.
    let cleaned = eventually(WAIT, || async {
        app.metric("chatpulse_eventsub_repairs_total{kind=\"not_enabled\"}").await >= 1.0
    })
    .await;
    assert!(cleaned, "reconciliation ran over the revoked subscription");
    assert!(app.repo.subscriptions_of(&b).await.unwrap().iter().any(|r| r.status == "chat_user_banned"), "kept");
    let page = browser.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("banned from your chat"), "the dashboard explains");
    // Not re-created by a new session either: the overlay closes, the
    // session ends, an overlay opens it again and its activation (which
    // tries chat first) subscribes the other two types.
    overlay.close().await;
    let ended = eventually(WAIT, || async { app.metric("chatpulse_sessions_active").await == 0.0 }).await;
    assert!(ended, "the session ended after its grace period");
    let mut again = app.connect(&s.streamer.overlay_id).await;
    again.next_frame(WAIT).await.expect("overlay again");
    let activated = eventually(WAIT, || async { recorded_ids(&app, &user_id).await.len() == 2 }).await;
    assert!(activated, "the new session subscribed: {:?}", app.repo.subscriptions_of(&b).await.unwrap());
    let chat_subs: Vec<_> = app
        .repo
        .subscriptions_of(&b)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.subscription_type == "channel.chat.message" && r.status == "enabled")
        .collect();
    assert!(chat_subs.is_empty(), "no automatic re-subscription: {chat_subs:?}");

    // Logging in again says the cause is fixed: chat is subscribed again.
    app.log_in(&login).await;
    let back = eventually(WAIT, || async { recorded_ids(&app, &user_id).await.len() == 3 }).await;
    assert!(back, "re-subscribed after the new login");
    let page = browser.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("banned from your chat"));
}
}

#[tokio::test]
async fn the_app_token_is_cached_and_renewed_after_a_401() {
    let twitch = Twitch::start().await;
    let first = twitch.client.app_token().await.unwrap();
    assert_eq!(twitch.client.app_token().await.unwrap(), first, "cached, not fetched per call");
    assert!(twitch.client.conduits().await.is_ok());

    // Twitch stops accepting it (revoked): the next Helix call gets a 401,
    // fetches a new token once, and succeeds.
    let form = [("client_id", twitch.sim.config().client_id.clone()), ("token", first.clone())];
    let revoked =
        reqwest::Client::new().post(format!("{}/oauth2/revoke", twitch.base)).form(&form).send().await.unwrap();
    assert_eq!(revoked.status(), 200);
    let created = twitch.client.create_conduit(1).await.expect("renewed on 401 and retried");
    assert!(twitch.conduits().iter().any(|c| c["id"] == created.id.as_str()));
    assert_ne!(twitch.client.app_token().await.unwrap(), first, "a new token is cached");
}

#[tokio::test]
async fn the_dashboard_shows_whether_the_stream_is_live() {
    let app = TestApp::builder().demo().start().await;
    let sim = app.simulator_url().to_owned();
    let login = unique_login();
    let browser = app.log_in(&login).await.client;
    let user_id = app.sim_user_id(&login).await;
    let dashboard =
        || async { browser.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap() };
    assert!(dashboard().await.contains("Shown once your overlay is open."));
    let s = app.repo.streamer_by_twitch_id(&BroadcasterId::parse(&user_id).unwrap()).await.unwrap().unwrap();
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    assert!(eventually(WAIT, || async { recorded_ids(&app, &user_id).await.len() == 3 }).await);
    for (action, frame, text) in [("online", "live", "Live now"), ("offline", "offline", "Offline.")] {
        let r = app.http.post(format!("{sim}/sim/streams/{user_id}/{action}")).send().await.unwrap();
        assert!(r.status().is_success(), "{action}: {}", r.status());
        overlay.wait_for(WAIT, |f| f.status == frame).await.expect("frame status");
        assert!(dashboard().await.contains(text), "dashboard says {text}");
    }
}
