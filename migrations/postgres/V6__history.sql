-- ChatPulse distributed schema (PostgreSQL), version 6: stream history.
-- migrations/sqlite/V6__history.sql mirrors it.

-- 1. Streams: one row per broadcast, opened by stream.online and closed by
--    stream.offline ('offline') or by reconciliation ('reconciliation': the
--    stream ended while we were not listening, or a new one started while
--    it was still open). ended_at and ended_by are NULL while it is open.
CREATE TABLE streams (
    id               uuid        PRIMARY KEY,
    user_id          uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    twitch_stream_id text,                                 -- Twitch's id, when the event carried one
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    ended_by         text        CHECK (ended_by IN ('offline', 'reconciliation')),
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
    user_id       uuid             NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    bucket_start  timestamptz      NOT NULL,               -- a multiple of 10 s
    stream_id     uuid             REFERENCES streams (id) ON DELETE SET NULL,
    value_open    double precision NOT NULL,
    value_close   double precision NOT NULL,
    value_min     double precision NOT NULL,
    value_max     double precision NOT NULL,
    votes_for     integer          NOT NULL,
    votes_against integer          NOT NULL,
    voters        integer          NOT NULL,               -- distinct chatters
    PRIMARY KEY (user_id, bucket_start)
);

CREATE INDEX history_buckets_stream ON history_buckets (stream_id, bucket_start) WHERE stream_id IS NOT NULL;
CREATE INDEX history_buckets_start ON history_buckets (bucket_start);

-- 3. Moments: bursts of votes and swings of the bar, with the outcome of
--    the Twitch stream marker and clip made for each.
CREATE TABLE moments (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    stream_id     uuid        REFERENCES streams (id) ON DELETE SET NULL,
    at            timestamptz NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('burst', 'swing')),
    detail        jsonb       NOT NULL,                    -- what was measured
    -- 'no_scope' | 'not_live' | 'pending' | 'created' | 'failed'
    marker_status text        NOT NULL,
    marker_id     text,
    marker_error  text,
    clip_status   text        NOT NULL,
    clip_id       text,
    clip_error    text
);

CREATE INDEX moments_user_at ON moments (user_id, at);
CREATE INDEX moments_stream ON moments (stream_id, at) WHERE stream_id IS NOT NULL;
CREATE INDEX moments_at ON moments (at);
