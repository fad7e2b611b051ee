//! Chat realism (§5.9): fragments, cheers, badges, replies, shared chat.

use serde_json::json;
use twitch_sim::{ChatBadge, ChatInput, ChatOptions};

use crate::harness::*;

#[tokio::test]
async fn chat_is_split_into_fragments_with_cheers_badges_and_colours() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, _, streamer, _) = chat_receiver(&t, &app).await;
    let (status, body) = t
        .sim_post(
            "/sim/chat",
            json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl",
                "text": "Cheer100 YES pizza @PixelPaws LUL",
                "badges": [{"set_id": "subscriber", "id": "3012", "info": "14"}, {"set_id": "bits", "id": "1000"}],
                "color": "#1e90ff"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let event = chat_event(&receiver, body["message_id"].as_str().unwrap()).await;
    // Exactly §5.9's example.
    assert_eq!(
        event["message"]["fragments"],
        json!([
            {"type": "cheermote", "text": "Cheer100",
                "cheermote": {"prefix": "cheer", "bits": 100, "tier": 100}, "emote": null, "mention": null},
            {"type": "text", "text": " YES pizza ", "cheermote": null, "emote": null, "mention": null},
            {"type": "mention", "text": "@PixelPaws", "cheermote": null, "emote": null,
                "mention": {"user_id": streamer, "user_name": "PixelPaws", "user_login": "pixelpaws"}},
            {"type": "text", "text": " ", "cheermote": null, "emote": null, "mention": null},
            {"type": "emote", "text": "LUL", "cheermote": null, "mention": null,
                "emote": {"id": "425618", "emote_set_id": "0", "owner_id": "0", "format": ["static"]}},
        ])
    );
    assert_eq!(event["message"]["text"], "Cheer100 YES pizza @PixelPaws LUL");
    assert_eq!(event["cheer"], json!({"bits": 100}));
    assert_eq!(
        event["badges"],
        json!([{"set_id": "subscriber", "id": "3012", "info": "14"}, {"set_id": "bits", "id": "1000", "info": ""}])
    );
    assert_eq!(event["color"], "#1E90FF");
    assert!(event["reply"].is_null() && event["source_broadcaster_user_id"].is_null());

    // An unknown user's @name stays text; no cheer without a cheermote.
    let (_, body) = t
        .sim_post(
            "/sim/chat",
            json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "@nobody_here yes"}),
        )
        .await;
    let event = chat_event(&receiver, body["message_id"].as_str().unwrap()).await;
    assert_eq!(
        event["message"]["fragments"],
        json!([{"type": "text", "text": "@nobody_here yes", "cheermote": null, "emote": null, "mention": null}])
    );
    assert!(event["cheer"].is_null());

    for bad in [json!({"color": "blue"}), json!({"badges": [{"set_id": "", "id": "1"}]}), json!({"reply_to": "nope"})] {
        let mut body = json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "x"});
        body.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        assert_eq!(t.sim_post("/sim/chat", body.clone()).await.0, 400, "{body}");
    }
}

#[tokio::test]
async fn replies_carry_the_parent_and_the_thread() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, _, streamer, _) = chat_receiver(&t, &app).await;
    let raccoon = t.sim.create_user("tinyraccoon", "TinyRaccoon");
    let parent = t
        .sim
        .post_chat(ChatInput {
            broadcaster_user_id: streamer.clone(),
            chatter_user_id: raccoon.id.clone(),
            chatter_login: None,
            text: "is pineapple allowed?".into(),
        })
        .await
        .unwrap();
    let (status, body) = t
        .sim_post(
            "/sim/chat",
            json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "yes", "reply_to": parent}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let reply_id = body["message_id"].as_str().unwrap().to_owned();
    let event = chat_event(&receiver, &reply_id).await;
    assert_eq!(event["message"]["text"], "@tinyraccoon yes", "observed: a reply starts with @<parent login>");
    assert_eq!(event["message"]["fragments"][0]["type"], "mention");
    assert_eq!(event["message"]["fragments"][0]["mention"]["user_id"], raccoon.id.as_str());
    let expected = json!({
        "parent_message_id": parent, "parent_message_body": "is pineapple allowed?",
        "parent_user_id": raccoon.id, "parent_user_name": "TinyRaccoon", "parent_user_login": "tinyraccoon",
        "thread_message_id": parent, "thread_user_id": raccoon.id, "thread_user_name": "TinyRaccoon",
        "thread_user_login": "tinyraccoon",
    });
    assert_eq!(event["reply"], expected);

    // A reply to the reply stays in the thread of the first message.
    let options = ChatOptions { reply_to: Some(reply_id.clone()), ..ChatOptions::default() };
    let input = ChatInput {
        broadcaster_user_id: streamer.clone(),
        chatter_user_id: raccoon.id.clone(),
        chatter_login: None,
        text: "@mossy_owl really?".into(),
    };
    let second = t.sim.post_chat_with(input, options).await.unwrap();
    let event = chat_event(&receiver, &second).await;
    assert_eq!(event["message"]["text"], "@mossy_owl really?", "no second prefix");
    assert_eq!(event["reply"]["parent_message_id"], reply_id.as_str());
    assert_eq!(event["reply"]["parent_user_login"], "mossy_owl");
    assert_eq!(event["reply"]["thread_message_id"], parent.as_str());
    assert_eq!(event["reply"]["thread_user_login"], "tinyraccoon");

    // Only messages of the same channel can be replied to.
    let other = t.sim.create_user("otherchannel", "OtherChannel");
    let body = json!({"broadcaster_user_id": other.id, "chatter_login": "mossy_owl", "text": "hi", "reply_to": parent});
    let (status, body) = t.sim_post("/sim/chat", body).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("reply_to"), "{body}");
}

#[tokio::test]
async fn shared_chat_messages_name_their_source_channel() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, conduit, streamer, bot) = chat_receiver(&t, &app).await;
    let partner = t.sim.create_user("partnerchan", "PartnerChan");
    t.sim.grant(&partner.id, &["channel:bot"]);
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": partner.id, "user_id": bot}), &conduit)
        .await;
    let vip = ChatBadge { set_id: "vip".into(), id: "1".into(), info: String::new() };
    let sub = ChatBadge { set_id: "subscriber".into(), id: "0".into(), info: "3".into() };
    let (status, body) = t
        .sim_post(
            "/sim/chat",
            json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "yes",
                "badges": [vip], "source_broadcaster_user_id": partner.id, "source_badges": [sub]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let event = chat_event(&receiver, body["message_id"].as_str().unwrap()).await;
    assert_eq!(event["broadcaster_user_id"], streamer.as_str());
    assert_eq!(event["source_broadcaster_user_id"], partner.id.as_str());
    assert_eq!(event["source_broadcaster_user_login"], "partnerchan");
    assert_eq!(event["source_broadcaster_user_name"], "PartnerChan");
    assert_eq!(event["badges"], json!([vip]));
    assert_eq!(event["source_badges"], json!([sub]));
    let source_id = event["source_message_id"].as_str().unwrap().to_owned();
    assert_ne!(source_id, event["message_id"].as_str().unwrap());

    // The channel it was typed in sees it as its own message.
    let home = chat_event(&receiver, &source_id).await;
    assert_eq!(home["broadcaster_user_id"], partner.id.as_str());
    assert_eq!(home["chatter_user_login"], "mossy_owl");
    assert_eq!(home["badges"], json!([sub]));
    for field in ["source_broadcaster_user_id", "source_broadcaster_user_login", "source_message_id", "source_badges"] {
        assert!(home[field].is_null(), "{field} is null in the source channel");
    }

    let same = json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "x",
        "source_broadcaster_user_id": streamer});
    assert_eq!(t.sim_post("/sim/chat", same).await.0, 400);
    let unknown = json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "x",
        "source_broadcaster_user_id": "404404"});
    assert_eq!(t.sim_post("/sim/chat", unknown).await.0, 400);
}
