-- ChatPulse embedded schema (SQLite), version 2: streamer login and the bot
-- account. Mirrors migrations/postgres/V2__login.sql.

-- 1. Streamers whose Twitch tokens were lost (revoked, or refused on refresh
--    or validation) must log in again; the next login clears the flag.
ALTER TABLE users ADD COLUMN needs_relogin INTEGER NOT NULL DEFAULT 0 CHECK (needs_relogin IN (0, 1));

-- 2. The Twitch account the chat bot runs as: at most one row, always id 1.
CREATE TABLE bot_account (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    twitch_user_id   TEXT    NOT NULL,
    login            TEXT    NOT NULL,
    access_token     BLOB    NOT NULL,                 -- AES-256-GCM: nonce || ciphertext
    refresh_token    BLOB    NOT NULL,                 -- AES-256-GCM: nonce || ciphertext
    token_expires_at INTEGER NOT NULL,
    scopes           TEXT    NOT NULL DEFAULT '',      -- space-separated, as granted
    updated_at       INTEGER NOT NULL
);
