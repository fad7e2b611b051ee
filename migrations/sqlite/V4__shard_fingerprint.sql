-- ChatPulse embedded schema (SQLite), version 4: what shard 0 was bound with.
-- Mirrors migrations/postgres/V4__shard_fingerprint.sql.

-- A fingerprint (SHA-256, never the secret itself) of the callback URL and
-- WEBHOOK_SECRET that shard 0 of the conduit was last bound with. Twitch never
-- returns a shard's secret, so this is how a changed WEBHOOK_SECRET is noticed
-- and the shard re-bound. NULL: not bound by this deployment yet.
ALTER TABLE eventsub_conduits ADD COLUMN shard_fingerprint TEXT;
