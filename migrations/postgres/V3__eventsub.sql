-- ChatPulse distributed schema (PostgreSQL), version 3: the EventSub conduit.
-- migrations/sqlite/V3__eventsub.sql mirrors it.

-- 1. The EventSub conduit this deployment uses, one per Twitch client id, so
--    a restart reuses it instead of creating another.
CREATE TABLE eventsub_conduits (
    client_id  text        PRIMARY KEY,
    conduit_id text        NOT NULL,
    updated_at timestamptz NOT NULL
);

-- 2. Looking up one channel's subscriptions.
CREATE INDEX eventsub_subscriptions_broadcaster ON eventsub_subscriptions (broadcaster_user_id);
