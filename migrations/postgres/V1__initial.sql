-- ChatPulse distributed schema (PostgreSQL). migrations/sqlite mirrors it for
-- the embedded shape (there: UUID text, Unix-millisecond integers, REAL, BLOB).
-- Timestamps are written with millisecond precision by the application, so
-- both backends return the same values.

-- 1. Streamers: one row per Twitch channel owner who uses ChatPulse.
CREATE TABLE users (
    id               uuid        PRIMARY KEY,
    overlay_uuid     uuid        NOT NULL UNIQUE,          -- the secret in the overlay URL
    twitch_user_id   text        NOT NULL UNIQUE,
    login            text        NOT NULL,
    display_name     text        NOT NULL,
    access_token     bytea,                                -- AES-256-GCM: nonce || ciphertext
    refresh_token    bytea,                                -- AES-256-GCM: nonce || ciphertext
    token_expires_at timestamptz,
    scopes           text        NOT NULL DEFAULT '',      -- space-separated, as granted
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- 2. One overlay configuration per streamer; version increases on every update.
CREATE TABLE configs (
    user_id         uuid             PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    for_trigger     text             NOT NULL,
    against_trigger text             NOT NULL,
    left_label      text             NOT NULL,
    right_label     text             NOT NULL,
    decay_speed     double precision NOT NULL,
    version         bigint           NOT NULL DEFAULT 1,
    updated_at      timestamptz      NOT NULL
);

-- 3. EventSub subscriptions we created (or adopted) on Twitch.
CREATE TABLE eventsub_subscriptions (
    subscription_id     text        PRIMARY KEY,
    user_id             uuid        REFERENCES users (id) ON DELETE CASCADE,  -- NULL for app-wide types
    broadcaster_user_id text,
    type                text        NOT NULL,
    conduit_id          text,
    status              text        NOT NULL,
    created_at          timestamptz NOT NULL
);

CREATE INDEX eventsub_subscriptions_user ON eventsub_subscriptions (user_id);
