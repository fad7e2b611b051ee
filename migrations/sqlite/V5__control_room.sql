-- ChatPulse embedded schema (SQLite), version 5: the control room.
-- Mirrors migrations/postgres/V5__control_room.sql.
--
-- Every streamer so far keeps what they had: the classic meter, words
-- matched as the whole message, and the classic look (the defaults below).
-- New streamers get the application's defaults instead (the balance meter,
-- words anywhere in a message, a hint line): it writes every column.

-- How the bar turns votes into a value: 'classic' (+10 per vote) or
-- 'balance' (the balance of recent opinion).
ALTER TABLE configs ADD COLUMN model TEXT NOT NULL DEFAULT 'classic';
-- How a chat message is matched: 'exact' (the whole message) or 'word'
-- (a word anywhere in it). for_trigger / against_trigger may now hold
-- several comma-separated words.
ALTER TABLE configs ADD COLUMN match_mode TEXT NOT NULL DEFAULT 'exact';

-- The look: layout ('horizontal' | 'vertical'), the sides' colours
-- (#rrggbb), text size (percent, 50-150), label font weight (400-900),
-- and what is shown besides the bar.
ALTER TABLE configs ADD COLUMN layout TEXT NOT NULL DEFAULT 'horizontal';
ALTER TABLE configs ADD COLUMN for_color TEXT NOT NULL DEFAULT '#2fd67b';
ALTER TABLE configs ADD COLUMN against_color TEXT NOT NULL DEFAULT '#ff4d5e';
ALTER TABLE configs ADD COLUMN scale INTEGER NOT NULL DEFAULT 100;
ALTER TABLE configs ADD COLUMN font_weight INTEGER NOT NULL DEFAULT 800;
ALTER TABLE configs ADD COLUMN show_labels INTEGER NOT NULL DEFAULT 1 CHECK (show_labels IN (0, 1));
ALTER TABLE configs ADD COLUMN show_hint INTEGER NOT NULL DEFAULT 0 CHECK (show_hint IN (0, 1));
ALTER TABLE configs ADD COLUMN show_voters INTEGER NOT NULL DEFAULT 0 CHECK (show_voters IN (0, 1));
ALTER TABLE configs ADD COLUMN celebrate INTEGER NOT NULL DEFAULT 0 CHECK (celebrate IN (0, 1));
