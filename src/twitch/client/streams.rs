//! Helix calls about streams: which channels are live (app token), and a
//! stream marker or a clip in a streamer's name (their user token, with
//! `channel:manage:broadcast` / `clips:edit`).
//!
//! The user-token calls follow the same call policy as every Helix call
//! (408, 5xx and network failures retried with backoff, an exhausted rate
//! limit waited for) but leave a 401 to the caller, who owns the token and
//! refreshes it; 400, 403 and 404 are final.

use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Data, Outgoing, TwitchClient, TwitchError, decode};

/// Channels one Get Streams call may ask about.
const STREAMS_PER_CALL: usize = 100;

/// A live stream as Get Streams describes it (the fields we use).
#[derive(Debug, Clone, Deserialize)]
pub struct LiveStream {
    pub id: String,
    pub user_id: String,
    pub started_at: String,
}

#[derive(Debug, Deserialize)]
struct MarkerCreated {
    id: String,
}

#[derive(Debug, Deserialize)]
struct ClipCreated {
    id: String,
}

impl TwitchClient {
    /// The live streams among `user_ids` (offline channels are absent), in
    /// calls of at most 100 channels.
    pub async fn live_streams(&self, user_ids: &[String]) -> Result<Vec<LiveStream>, TwitchError> {
        let mut live = Vec::new();
        for chunk in user_ids.chunks(STREAMS_PER_CALL) {
            let first = STREAMS_PER_CALL.to_string();
            let mut query: Vec<(&str, &str)> = vec![("type", "live"), ("first", &first)];
            query.extend(chunk.iter().map(|id| ("user_id", id.as_str())));
            let page: Data<LiveStream> = self.helix(Method::GET, "/streams", &query, None).await?;
            live.extend(page.data);
        }
        Ok(live)
    }

    /// Creates a stream marker in `broadcaster_id`'s live stream as the
    /// owner of `user_token`; returns the marker's id.
    pub async fn create_marker(
        &self,
        user_token: &str,
        broadcaster_id: &str,
        description: &str,
    ) -> Result<String, TwitchError> {
        let body = json!({ "user_id": broadcaster_id, "description": description });
        let page: Data<MarkerCreated> =
            self.helix_as_user(user_token, Method::POST, "/streams/markers", &[], Some(&body)).await?;
        page.data.into_iter().next().map(|m| m.id).ok_or_else(|| TwitchError::Malformed("no marker in answer".into()))
    }

    /// Creates a clip of `broadcaster_id`'s live stream as the owner of
    /// `user_token`; returns the clip's id.
    pub async fn create_clip(&self, user_token: &str, broadcaster_id: &str) -> Result<String, TwitchError> {
        let query = [("broadcaster_id", broadcaster_id)];
        let page: Data<ClipCreated> = self.helix_as_user(user_token, Method::POST, "/clips", &query, None).await?;
        page.data.into_iter().next().map(|c| c.id).ok_or_else(|| TwitchError::Malformed("no clip in answer".into()))
    }

    /// One Helix call with a user token, under the call policy.
    async fn helix_as_user<T: DeserializeOwned>(
        &self,
        user_token: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, TwitchError> {
        let what = format!("{method} {path}");
        self.retry
            .run(&what, || async {
                let out = Outgoing {
                    method: method.clone(),
                    url: format!("{}{path}", self.api_url),
                    bearer: Some(user_token),
                    client_id: Some(&self.client_id),
                    query,
                    json: body,
                    form: None,
                };
                decode(self.transport.send(out).await?, self.clock.now_ms())
            })
            .await
    }
}
