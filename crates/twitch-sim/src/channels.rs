//! Channels: going live and offline (§5.10), what a broadcaster sets up —
//! clips allowed (§7.4), past broadcasts stored (§7.6) — and who they trust
//! or ban: editors (§7.6), bans (§7.4, §5.8).

use serde_json::json;

use super::{SimError, Simulator, delivery, state, util};

impl Simulator {
    /// Takes a channel live or offline, emitting `stream.online` /
    /// `stream.offline`. Repeating the current state is a no-op.
    #[allow(clippy::unused_async)] // async by contract: a WebSocket transport will await here
    pub async fn set_live(&self, broadcaster_user_id: &str, live: bool) -> Result<(), SimError> {
        let (user, started) = {
            let mut state = self.state();
            let user = state
                .user(broadcaster_user_id)
                .cloned()
                .ok_or_else(|| SimError::NotFound(format!("broadcaster {broadcaster_user_id}")))?;
            let started = if live {
                if state.streams.contains_key(&user.id) {
                    return Ok(());
                }
                state.next_stream += 1;
                let now = self.now();
                // A channel that stores past broadcasts records this one as a video.
                let video_id = state.channel_settings(&user.id).vods_enabled.then(|| {
                    state.next_video += 1;
                    let id = (2_012_345_678 + state.next_video * 11).to_string();
                    state.videos.push(state::Video { id: id.clone(), user_id: user.id.clone() });
                    id
                });
                let stream = state::LiveStream {
                    id: (50_123_456_789 + state.next_stream * 13).to_string(),
                    started_at: util::rfc3339_seconds(now),
                    started: now,
                    title: format!("{} is live (simulated)", user.display_name),
                    video_id,
                };
                state.streams.insert(user.id.clone(), stream.clone());
                Some(stream)
            } else {
                if state.streams.remove(&user.id).is_none() {
                    return Ok(());
                }
                None
            };
            (user, started)
        };
        let id = user.id.clone();
        let matches = |s: &state::Subscription| s.condition_str("broadcaster_user_id") == Some(&id);
        match started {
            Some(stream) => {
                let event = json!({
                    "id": stream.id, "broadcaster_user_id": user.id, "broadcaster_user_login": user.login,
                    "broadcaster_user_name": user.display_name, "type": "live", "started_at": stream.started_at,
                });
                delivery::emit(self, "stream.online", &id, &event, matches);
            }
            None => {
                let event = json!({
                    "broadcaster_user_id": user.id, "broadcaster_user_login": user.login,
                    "broadcaster_user_name": user.display_name,
                });
                delivery::emit(self, "stream.offline", &id, &event, matches);
            }
        }
        Ok(())
    }

    /// Whether the channel is live, and the current stream id.
    pub fn live_stream_id(&self, broadcaster_user_id: &str) -> Option<String> {
        self.state().streams.get(broadcaster_user_id).map(|s| s.id.clone())
    }

    fn require_user(&self, user_id: &str) -> Result<(), SimError> {
        match self.user(user_id) {
            Some(_) => Ok(()),
            None => Err(SimError::NotFound(format!("user {user_id}"))),
        }
    }

    /// Whether clips are allowed in the channel (else Create Clip → 403).
    pub fn set_clips_enabled(&self, broadcaster_user_id: &str, enabled: bool) -> Result<(), SimError> {
        self.require_user(broadcaster_user_id)?;
        self.state().channel_settings.entry(broadcaster_user_id.to_owned()).or_default().clips_enabled = enabled;
        Ok(())
    }

    /// Whether the channel stores past broadcasts (VODs). Without them
    /// Create Stream Marker answers 404 at once; a broadcast started with
    /// them off has no video, so it stays without markers.
    pub fn set_vods_enabled(&self, broadcaster_user_id: &str, enabled: bool) -> Result<(), SimError> {
        self.require_user(broadcaster_user_id)?;
        self.state().channel_settings.entry(broadcaster_user_id.to_owned()).or_default().vods_enabled = enabled;
        Ok(())
    }

    /// Makes `user_id` an editor of the channel (or not): editors may create
    /// and read its stream markers.
    pub fn set_editor(&self, broadcaster_user_id: &str, user_id: &str, editor: bool) -> Result<(), SimError> {
        self.require_user(broadcaster_user_id)?;
        self.require_user(user_id)?;
        let key = (broadcaster_user_id.to_owned(), user_id.to_owned());
        let mut state = self.state();
        if editor {
            state.editors.insert(key);
        } else {
            state.editors.remove(&key);
        }
        Ok(())
    }

    /// Bans `user_id` from the channel (or lifts the ban). A banned user
    /// cannot create clips there (403), and chat subscriptions that read
    /// the channel as that user are revoked with `chat_user_banned` (§5.8).
    /// Returns the ids of the revoked subscriptions.
    pub fn set_banned(&self, broadcaster_user_id: &str, user_id: &str, banned: bool) -> Result<Vec<String>, SimError> {
        self.require_user(broadcaster_user_id)?;
        self.require_user(user_id)?;
        let key = (broadcaster_user_id.to_owned(), user_id.to_owned());
        let revocations = {
            let mut state = self.state();
            if !banned {
                state.bans.remove(&key);
                return Ok(Vec::new());
            }
            state.bans.insert(key);
            let mut revoked = Vec::new();
            for sub in &mut state.subscriptions {
                let reads_as_user = sub.kind == "channel.chat.message"
                    && sub.condition_str("broadcaster_user_id") == Some(broadcaster_user_id)
                    && sub.condition_str("user_id") == Some(user_id);
                if reads_as_user && sub.is_active() {
                    sub.status = "chat_user_banned".into();
                    revoked.push(sub.clone());
                }
            }
            revoked.iter().map(|s| (s.id.clone(), delivery::revocation(&mut state, s))).collect::<Vec<_>>()
        };
        let ids = revocations.iter().map(|(id, _)| id.clone()).collect();
        for (_, outgoing) in revocations {
            delivery::spawn(self, outgoing);
        }
        Ok(ids)
    }
}
