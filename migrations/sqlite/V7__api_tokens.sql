-- ChatPulse embedded schema (SQLite), version 7: personal API tokens for the
-- streamer API (/api/v1). Mirrors migrations/postgres/V7__api_tokens.sql.
--
-- A token is shown once, when it is created; only its SHA-256 digest is
-- stored (64 lower-case hex digits), and requests find their token by it.
-- Each token belongs to one streamer and goes with them.
CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,                     -- at most once a minute
    revoked_at   INTEGER                      -- set once; never cleared
);

CREATE INDEX api_tokens_user ON api_tokens (user_id);
