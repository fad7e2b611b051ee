-- ChatPulse distributed schema (PostgreSQL), version 5: the control room.
-- migrations/sqlite/V5__control_room.sql mirrors it.
--
-- Every streamer so far keeps what they had: the classic meter, words
-- matched as the whole message, and the classic look (the defaults below).
-- New streamers get the application's defaults instead (the balance meter,
-- words anywhere in a message, a hint line): it writes every column.

-- How the bar turns votes into a value: 'classic' (+10 per vote) or
-- 'balance' (the balance of recent opinion).
ALTER TABLE configs ADD COLUMN model text NOT NULL DEFAULT 'classic';
-- How a chat message is matched: 'exact' (the whole message) or 'word'
-- (a word anywhere in it). for_trigger / against_trigger may now hold
-- several comma-separated words.
ALTER TABLE configs ADD COLUMN match_mode text NOT NULL DEFAULT 'exact';

-- The look: layout ('horizontal' | 'vertical'), the sides' colours
-- (#rrggbb), text size (percent, 50-150), label font weight (400-900),
-- and what is shown besides the bar.
ALTER TABLE configs ADD COLUMN layout text NOT NULL DEFAULT 'horizontal';
ALTER TABLE configs ADD COLUMN for_color text NOT NULL DEFAULT '#2fd67b';
ALTER TABLE configs ADD COLUMN against_color text NOT NULL DEFAULT '#ff4d5e';
ALTER TABLE configs ADD COLUMN scale integer NOT NULL DEFAULT 100;
ALTER TABLE configs ADD COLUMN font_weight integer NOT NULL DEFAULT 800;
ALTER TABLE configs ADD COLUMN show_labels boolean NOT NULL DEFAULT true;
ALTER TABLE configs ADD COLUMN show_hint boolean NOT NULL DEFAULT false;
ALTER TABLE configs ADD COLUMN show_voters boolean NOT NULL DEFAULT false;
ALTER TABLE configs ADD COLUMN celebrate boolean NOT NULL DEFAULT false;
