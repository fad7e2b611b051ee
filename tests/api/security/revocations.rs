//! Signed messages act only on what is ours: a revocation of a subscription
//! we did not create, or whose condition is not the one we created, and a
//! `user.authorization.revoke` for another application change nothing.

use std::time::Duration;

use chatpulse::store::{OverlaySetup, SubscriptionRecord};
use serde_json::json;
use time::OffsetDateTime;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(5);

/// A record of a subscription of ours on the streamer's channel.
async fn record(app: &TestApp, s: &OverlaySetup, kind: &str) -> SubscriptionRecord {
    let record = SubscriptionRecord {
        streamer: Some(s.streamer.id),
        broadcaster: Some(s.streamer.twitch_user_id.clone()),
        subscription_type: kind.into(),
        subscription_id: uuid::Uuid::new_v4().to_string(),
        conduit_id: Some("e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa".into()),
        status: "enabled".into(),
        created_at: OffsetDateTime::now_utc(),
    };
    app.repo.upsert_subscription(&record).await.unwrap();
    record
}

/// A signed revocation of subscription `id` of `kind` on `broadcaster`.
pub fn revocation(id: &str, kind: &str, reason: &str, broadcaster: &str) -> Delivery {
    let body = json!({"subscription": {
        "id": id, "status": reason, "type": kind, "version": "1",
        "condition": {"broadcaster_user_id": broadcaster, "user_id": "99887766"},
        "transport": {"method": "conduit", "conduit_id": "e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa"},
        "created_at": "2026-03-14T18:59:42.117290301Z", "cost": 0}});
    Delivery::notification(kind, body.to_string()).of_type("revocation")
}

fn not_ours(reason: &str) -> String {
    format!("chatpulse_eventsub_not_ours_total{{reason=\"{reason}\"}}")
}

async fn status_of(app: &TestApp, id: &str) -> Option<String> {
    app.repo.subscriptions().await.unwrap().into_iter().find(|r| r.subscription_id == id).map(|r| r.status)
}

async fn flagged(app: &TestApp, s: &OverlaySetup) -> bool {
    app.repo.streamer(s.streamer.id).await.unwrap().is_some_and(|st| st.streamer.needs_relogin)
}

both_modes! {
async fn a_revocation_of_a_subscription_we_did_not_create_changes_nothing() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    let ours = record(&app, &s, "channel.chat.message").await;
    let channel = s.streamer.twitch_user_id.as_str();

    // Signed, fresh, naming our streamer, but a subscription id we never made.
    let stranger = uuid::Uuid::new_v4().to_string();
    for reason in ["user_removed", "authorization_revoked"] {
        let d = revocation(&stranger, "channel.chat.message", reason, channel);
        assert_eq!(app.deliver(&d).await.status(), 204, "{reason}: acknowledged");
    }
    assert!(app.repo.streamer(s.streamer.id).await.unwrap().is_some(), "the streamer was not deleted");
    assert!(!flagged(&app, &s).await, "nor asked to log in again");
    assert_eq!(app.metric(&not_ours("unknown_subscription")).await, 2.0);
    // Our id, but another type than the one we created.
    let d = revocation(&ours.subscription_id, "stream.online", "user_removed", channel);
    assert_eq!(app.deliver(&d).await.status(), 204);
    assert_eq!(app.metric(&not_ours("condition_mismatch")).await, 1.0);
    // Our id, but another channel: not a subscription of that channel.
    let elsewhere = app.add_streamer().await;
    let d = revocation(&ours.subscription_id, "channel.chat.message", "user_removed", elsewhere.streamer.twitch_user_id.as_str());
    assert_eq!(app.deliver(&d).await.status(), 204);
    assert!(app.repo.streamer(elsewhere.streamer.id).await.unwrap().is_some(), "the other streamer is kept");
    assert!(app.repo.streamer(s.streamer.id).await.unwrap().is_some());
    assert_eq!(status_of(&app, &ours.subscription_id).await.as_deref(), Some("enabled"), "our record unchanged");
    assert_eq!(app.metric("chatpulse_eventsub_revocations_total{reason=\"user_removed\"}").await, 0.0);
    assert_eq!(app.metric(&not_ours("unknown_subscription")).await, 3.0);

    // The same revocation of the subscription we did create acts.
    let d = revocation(&ours.subscription_id, "channel.chat.message", "user_removed", channel);
    assert_eq!(app.deliver(&d).await.status(), 204);
    assert!(app.repo.streamer(s.streamer.id).await.unwrap().is_none(), "user_removed deletes the streamer");
    assert_eq!(app.metric("chatpulse_eventsub_revocations_total{reason=\"user_removed\"}").await, 1.0);
}
}

/// A signed `user.authorization.revoke` of `client_id` for `user`.
fn authorization_revoke(client_id: &str, user: &str) -> Delivery {
    let body = json!({
        "subscription": {"id": uuid::Uuid::new_v4().to_string(), "status": "enabled",
            "type": "user.authorization.revoke", "version": "1", "condition": {"client_id": client_id},
            "transport": {"method": "webhook", "callback": "https://chatpulse.example/webhooks/eventsub"},
            "created_at": "2026-03-14T17:00:00.384920117Z", "cost": 1},
        "event": {"client_id": client_id, "user_id": user, "user_login": null, "user_name": null}
    });
    Delivery::notification("user.authorization.revoke", body.to_string())
}

both_modes! {
async fn user_authorization_revoke_acts_only_for_our_client_id() {
    let app = TestApp::builder().demo().start().await;
    let ours = twitch_sim::SimConfig::default().client_id;
    let s = app.add_streamer().await;
    let user = s.streamer.twitch_user_id.as_str();

    let foreign = authorization_revoke("another-apps-client-id", user);
    assert_eq!(app.deliver(&foreign).await.status(), 204);
    assert_eq!(app.metric(&not_ours("foreign_client")).await, 1.0);
    assert!(!flagged(&app, &s).await, "another application's revoke changes nothing");
    assert_eq!(app.metric("chatpulse_authorizations_revoked_total").await, 0.0);

    let mine = authorization_revoke(&ours, user);
    assert_eq!(app.deliver(&mine).await.status(), 204);
    assert!(eventually(WAIT, || async { flagged(&app, &s).await }).await, "ours flags the streamer");
    assert_eq!(app.metric("chatpulse_authorizations_revoked_total").await, 1.0);
}
}
