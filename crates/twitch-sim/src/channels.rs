//! What a broadcaster sets up for their channel and who they trust or ban:
//! clips allowed (§7.4), past broadcasts stored (§7.6), editors (§7.6),
//! bans (§7.4, §5.8).

use super::{SimError, Simulator, delivery};

impl Simulator {
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
