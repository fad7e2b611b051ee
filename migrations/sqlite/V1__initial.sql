-- ChatPulse embedded schema (SQLite). Mirrors the PostgreSQL schema in
-- migrations/postgres; timestamps are Unix milliseconds, ids are UUID text.

-- 1. Streamers: one row per Twitch channel owner who uses ChatPulse.
CREATE TABLE users (
    id               TEXT    PRIMARY KEY,
    overlay_uuid     TEXT    NOT NULL UNIQUE,          -- the secret in the overlay URL
    twitch_user_id   TEXT    NOT NULL UNIQUE,
    login            TEXT    NOT NULL,
    display_name     TEXT    NOT NULL,
    access_token     BLOB,                             -- AES-256-GCM: nonce || ciphertext
    refresh_token    BLOB,                             -- AES-256-GCM: nonce || ciphertext
    token_expires_at INTEGER,
    scopes           TEXT    NOT NULL DEFAULT '',      -- space-separated, as granted
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- 2. One overlay configuration per streamer; version increases on every update.
CREATE TABLE configs (
    user_id         TEXT    PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    for_trigger     TEXT    NOT NULL,
    against_trigger TEXT    NOT NULL,
    left_label      TEXT    NOT NULL,
    right_label     TEXT    NOT NULL,
    decay_speed     REAL    NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    updated_at      INTEGER NOT NULL
);

-- 3. EventSub subscriptions we created (or adopted) on Twitch.
CREATE TABLE eventsub_subscriptions (
    subscription_id     TEXT    PRIMARY KEY,
    user_id             TEXT    REFERENCES users (id) ON DELETE CASCADE,  -- NULL for app-wide types
    broadcaster_user_id TEXT,
    type                TEXT    NOT NULL,
    conduit_id          TEXT,
    status              TEXT    NOT NULL,
    created_at          INTEGER NOT NULL
);

CREATE INDEX eventsub_subscriptions_user ON eventsub_subscriptions (user_id);
