-- ChatPulse distributed schema (PostgreSQL), version 2: streamer login and the
-- bot account. migrations/sqlite/V2__login.sql mirrors it.

-- 1. Streamers whose Twitch tokens were lost (revoked, or refused on refresh
--    or validation) must log in again; the next login clears the flag.
ALTER TABLE users ADD COLUMN needs_relogin boolean NOT NULL DEFAULT false;

-- 2. The Twitch account the chat bot runs as: at most one row, always id 1.
CREATE TABLE bot_account (
    id               integer     PRIMARY KEY CHECK (id = 1),
    twitch_user_id   text        NOT NULL,
    login            text        NOT NULL,
    access_token     bytea       NOT NULL,                 -- AES-256-GCM: nonce || ciphertext
    refresh_token    bytea       NOT NULL,                 -- AES-256-GCM: nonce || ciphertext
    token_expires_at timestamptz NOT NULL,
    scopes           text        NOT NULL DEFAULT '',      -- space-separated, as granted
    updated_at       timestamptz NOT NULL
);
