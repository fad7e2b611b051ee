//! Session leases and instance heartbeats in Redis.
//!
//! Each instance renews its lease on every session it holds and beats in
//! `{instances}:heartbeat` at the same pace; it lists the sessions it holds
//! in `{instances}:held:<instance id>`. When an instance stops beating (it
//! crashed), the leader finds it among the expired heartbeats and releases
//! its leases in one sweep, so the sessions it alone held end, and their
//! channels' subscriptions go, within a heartbeat period plus a sweep.

use fred::prelude::*;

use super::{KEY_TTL_LEASES, READ_CHUNK, RENEW_CHUNK, RedisLiveStore, keys};
use crate::domain::{BroadcasterId, OverlayId};
use crate::store::{Lease, LiveStoreError};

/// A session as listed in `{instances}:held:<instance id>`.
pub(super) fn held_member(overlay: OverlayId, broadcaster: &BroadcasterId) -> String {
    format!("{overlay} {broadcaster}")
}

fn parse_member(member: &str) -> Option<(OverlayId, BroadcasterId)> {
    let (overlay, broadcaster) = member.split_once(' ')?;
    Some((overlay.parse().ok()?, BroadcasterId::parse(broadcaster).ok()?))
}

impl RedisLiveStore {
    /// Renews `lease` on every session (chunked), lists them as held by the
    /// instance; 1 or 0 per session (0: it no longer exists).
    pub(super) async fn renew_leases(
        &self,
        sessions: &[(OverlayId, BroadcasterId)],
        lease: Lease<'_>,
        now_ms: i64,
    ) -> Result<Vec<i64>, LiveStoreError> {
        let key_ttl = lease.ttl_ms.saturating_mul(KEY_TTL_LEASES);
        let until = now_ms.saturating_add(lease.ttl_ms).to_string();
        let now = now_ms.to_string();
        // One pipeline per chunk, one chunk after the other: 10,000 sessions
        // are not 20,000 commands buffered at once (and a memory peak).
        let mut exists: Vec<i64> = Vec::with_capacity(sessions.len());
        if self.client.is_clustered() {
            for chunk in sessions.chunks(RENEW_CHUNK) {
                exists.extend(self.renew_chunk(chunk, lease.instance, &until, key_ttl, &now).await?);
            }
        } else {
            // A standalone Redis holds every slot: one function call renews
            // a whole batch (as `read_batched` reads one).
            for chunk in sessions.chunks(READ_CHUNK) {
                exists.extend(self.renew_batched(chunk, lease.instance, &until, key_ttl, &now).await?);
            }
        }
        // The list of held sessions is written again too: the leader may
        // have taken this instance for dead meanwhile (a long stall).
        let held = keys::held(lease.instance);
        for chunk in sessions.chunks(RENEW_CHUNK) {
            let members: Vec<String> = chunk.iter().map(|(o, b)| held_member(*o, b)).collect();
            self.call("renew", || async {
                let pipeline = self.client.pipeline();
                pipeline.sadd::<(), _, _>(&held, members.clone()).await?;
                pipeline.pexpire::<(), _>(&held, key_ttl, None).await?;
                pipeline.all::<Vec<Value>>().await.map(|_| ())
            })
            .await?;
        }
        Ok(exists)
    }

    /// Renews a batch of sessions with one `FCALL chatpulse_renew_many`
    /// (standalone Redis only); 1 or 0 per session (0: it no longer exists).
    async fn renew_batched(
        &self,
        sessions: &[(OverlayId, BroadcasterId)],
        instance: &str,
        until: &str,
        key_ttl: i64,
        now: &str,
    ) -> Result<Vec<i64>, LiveStoreError> {
        let keys: Vec<String> =
            sessions.iter().flat_map(|(o, b)| [keys::session(*o), keys::instances(*o), keys::broadcaster(b)]).collect();
        let mut args = vec![instance.to_owned(), until.to_owned(), key_ttl.to_string(), now.to_owned()];
        args.extend(sessions.iter().map(|(o, _)| o.to_string()));
        let replies: Vec<i64> =
            self.call("renew", || self.client.fcall("chatpulse_renew_many", keys.clone(), args.clone())).await?;
        if replies.len() != sessions.len() {
            return Err(LiveStoreError(format!("renewal answered {} of {} sessions", replies.len(), sessions.len())));
        }
        Ok(replies)
    }

    /// Renews one chunk of sessions in one pipelined round trip; 1 or 0 per
    /// session (0: it no longer exists).
    async fn renew_chunk(
        &self,
        sessions: &[(OverlayId, BroadcasterId)],
        instance: &str,
        until: &str,
        key_ttl: i64,
        now: &str,
    ) -> Result<Vec<i64>, LiveStoreError> {
        self.call("renew", || async {
            let pipeline = self.client.pipeline();
            for (overlay, broadcaster) in sessions {
                let keys = vec![keys::session(*overlay), keys::instances(*overlay)];
                let args = vec![instance.to_owned(), until.to_owned(), key_ttl.to_string(), now.to_owned()];
                pipeline.fcall::<(), _, _, _>("chatpulse_renew", keys, args).await?;
                // Set, not just extended: the mapping lives on another slot
                // than the session, so a release elsewhere can remove it
                // between two calls; renewal puts it back.
                pipeline
                    .set::<(), _, _>(
                        keys::broadcaster(broadcaster),
                        overlay.to_string(),
                        Some(Expiration::PX(key_ttl)),
                        None,
                        false,
                    )
                    .await?;
            }
            let replies: Vec<Value> = pipeline.all().await?;
            // Every other reply is the renew result; the others are the SETs.
            Ok(replies.iter().step_by(2).map(|v| v.as_i64().unwrap_or(0)).collect())
        })
        .await
    }

    /// `chatpulse_release` and, when the session ended, the channel mapping
    /// (if it still points at this session). True when the session ended.
    pub(super) async fn release_lease(
        &self,
        overlay: OverlayId,
        broadcaster: &BroadcasterId,
        instance: &str,
        now_ms: i64,
    ) -> Result<bool, LiveStoreError> {
        let keys = vec![keys::session(overlay), keys::ratelimit(overlay), keys::instances(overlay)];
        let args = vec![instance.to_owned(), now_ms.to_string()];
        let removed: i64 =
            self.call("release", || self.client.fcall("chatpulse_release", keys.clone(), args.clone())).await?;
        if removed == 1 {
            let mapping = vec![keys::broadcaster(broadcaster)];
            let overlay_arg = vec![overlay.to_string()];
            self.call("unmap", || {
                self.client.fcall::<i64, _, _, _>("chatpulse_unmap", mapping.clone(), overlay_arg.clone())
            })
            .await?;
        }
        self.forget_overlay(overlay);
        if removed == 1 {
            self.cache().remove(broadcaster);
        }
        Ok(removed == 1)
    }

    pub(super) async fn beat(&self, instance: &str, ttl_ms: i64, now_ms: i64) -> Result<(), LiveStoreError> {
        let until = now_ms.saturating_add(ttl_ms).to_string();
        let key_ttl = ttl_ms.saturating_mul(KEY_TTL_LEASES).max(1);
        self.call("heartbeat", || async {
            let pipeline = self.client.pipeline();
            pipeline.hset::<(), _, _>(keys::HEARTBEAT, (instance, until.as_str())).await?;
            // Gone on its own only once every instance stopped beating.
            pipeline.pexpire::<(), _>(keys::HEARTBEAT, key_ttl, None).await?;
            pipeline.all::<Vec<Value>>().await.map(|_| ())
        })
        .await
    }

    pub(super) async fn expired(&self, now_ms: i64) -> Result<Vec<String>, LiveStoreError> {
        let beats: std::collections::HashMap<String, String> =
            self.call("heartbeat", || self.client.hgetall(keys::HEARTBEAT)).await?;
        let mut expired: Vec<String> = beats
            .into_iter()
            .filter(|(_, until)| super::stored_number(Some(until)).is_none_or(|until| until <= now_ms as f64))
            .map(|(instance, _)| instance)
            .collect();
        expired.sort();
        Ok(expired)
    }

    pub(super) async fn drop_held(&self, instance: &str, now_ms: i64) -> Result<Vec<BroadcasterId>, LiveStoreError> {
        let held = keys::held(instance);
        let members: Vec<String> = self.call("drop_instance", || self.client.smembers(&held)).await?;
        let mut ended = Vec::new();
        for member in &members {
            let Some((overlay, broadcaster)) = parse_member(member) else {
                tracing::warn!("dropping an unreadable entry in an instance's list of sessions");
                self.call("drop_instance", || self.client.srem::<i64, _, _>(&held, member.as_str())).await?;
                continue;
            };
            if self.release_lease(overlay, &broadcaster, instance, now_ms).await? {
                ended.push(broadcaster);
            }
            // No longer held, whether or not the instance is forgotten below.
            self.call("drop_instance", || self.client.srem::<i64, _, _>(&held, member.as_str())).await?;
        }
        let keys = vec![keys::HEARTBEAT.to_owned(), held];
        let args = vec![instance.to_owned(), now_ms.to_string()];
        self.call("drop_instance", || {
            self.client.fcall::<i64, _, _, _>("chatpulse_forget_instance", keys.clone(), args.clone())
        })
        .await?;
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_session_reads_back_and_garbage_does_not() {
        let overlay: OverlayId = "6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e".parse().unwrap();
        let broadcaster = BroadcasterId::parse("41245007").unwrap();
        let member = held_member(overlay, &broadcaster);
        assert_eq!(member, "6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e 41245007");
        assert_eq!(parse_member(&member), Some((overlay, broadcaster)));
        for garbage in
            ["", "6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e", "nope 41245007", "6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e x y"]
        {
            assert_eq!(parse_member(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn instance_keys_share_one_slot() {
        let slot = |k: &str| fred::util::redis_keyslot(k.as_bytes());
        assert_eq!(slot(keys::HEARTBEAT), slot(&keys::held("a-b-c")));
        assert_eq!(keys::held("i1"), "{instances}:held:i1");
    }
}
