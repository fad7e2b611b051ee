-- ChatPulse distributed schema (PostgreSQL), version 7: personal API tokens
-- for the streamer API (/api/v1). migrations/sqlite/V7__api_tokens.sql
-- mirrors it.
--
-- A token is shown once, when it is created; only its SHA-256 digest is
-- stored (64 lower-case hex digits), and requests find their token by it.
-- Each token belongs to one streamer and goes with them.
CREATE TABLE api_tokens (
    id           uuid        PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    token_hash   text        NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,                 -- at most once a minute
    revoked_at   timestamptz                  -- set once; never cleared
);

CREATE INDEX api_tokens_user ON api_tokens (user_id);
