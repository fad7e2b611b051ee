-- ChatPulse embedded schema (SQLite), version 6: stream history.
-- Mirrors migrations/postgres/V6__history.sql.

-- 1. Streams: one row per broadcast, opened by stream.online and closed by
--    stream.offline ('offline') or by reconciliation ('reconciliation': the
--    stream ended while we were not listening, or a new one started while
--    it was still open). ended_at and ended_by are NULL while it is open.
CREATE TABLE streams (
    id               TEXT    PRIMARY KEY,
    user_id          TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    twitch_stream_id TEXT,                                 -- Twitch's id, when the event carried one
    started_at       INTEGER NOT NULL,
    ended_at         INTEGER,
    ended_by         TEXT    CHECK (ended_by IN ('offline', 'reconciliation')),
    CHECK ((ended_at IS NULL) = (ended_by IS NULL))
);

-- At most one open stream per streamer; one record per Twitch stream.
CREATE UNIQUE INDEX streams_one_open ON streams (user_id) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX streams_twitch_stream ON streams (user_id, twitch_stream_id) WHERE twitch_stream_id IS NOT NULL;
CREATE INDEX streams_started ON streams (user_id, started_at);
CREATE INDEX streams_ended ON streams (ended_at);

-- 2. The bar in 10-second buckets (only buckets with counted votes), each
--    written once: the primary key refuses a second write.
CREATE TABLE history_buckets (
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    bucket_start  INTEGER NOT NULL,                        -- a multiple of 10 s
    stream_id     TEXT    REFERENCES streams (id) ON DELETE SET NULL,
    value_open    REAL    NOT NULL,
    value_close   REAL    NOT NULL,
    value_min     REAL    NOT NULL,
    value_max     REAL    NOT NULL,
    votes_for     INTEGER NOT NULL,
    votes_against INTEGER NOT NULL,
    voters        INTEGER NOT NULL,                        -- distinct chatters
    PRIMARY KEY (user_id, bucket_start)
);

CREATE INDEX history_buckets_stream ON history_buckets (stream_id, bucket_start) WHERE stream_id IS NOT NULL;
CREATE INDEX history_buckets_start ON history_buckets (bucket_start);

-- 3. Moments: bursts of votes and swings of the bar, with the outcome of
--    the Twitch stream marker and clip made for each.
CREATE TABLE moments (
    id            TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    stream_id     TEXT    REFERENCES streams (id) ON DELETE SET NULL,
    at            INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('burst', 'swing')),
    detail        TEXT    NOT NULL,                        -- JSON: what was measured
    -- 'no_scope' | 'not_live' | 'pending' | 'created' | 'failed'
    marker_status TEXT    NOT NULL,
    marker_id     TEXT,
    marker_error  TEXT,
    clip_status   TEXT    NOT NULL,
    clip_id       TEXT,
    clip_error    TEXT
);

CREATE INDEX moments_user_at ON moments (user_id, at);
CREATE INDEX moments_stream ON moments (stream_id, at) WHERE stream_id IS NOT NULL;
CREATE INDEX moments_at ON moments (at);
