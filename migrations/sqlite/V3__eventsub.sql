-- ChatPulse embedded schema (SQLite), version 3: the EventSub conduit.
-- Mirrors migrations/postgres/V3__eventsub.sql.

-- 1. The EventSub conduit this deployment uses, one per Twitch client id, so
--    a restart reuses it instead of creating another.
CREATE TABLE eventsub_conduits (
    client_id  TEXT    PRIMARY KEY,
    conduit_id TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- 2. Looking up one channel's subscriptions.
CREATE INDEX eventsub_subscriptions_broadcaster ON eventsub_subscriptions (broadcaster_user_id);
