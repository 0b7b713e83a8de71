-- vakt schema 15: what an event was as it arrived, where the rules changed it.
--
-- JSON of the severity and labels categorisation replaced (with their earlier values) and
-- the labels the channel made part of the identity; NULL when the rules changed nothing.
-- Replays (`vakt replay`) run another configuration on the event as it came.
ALTER TABLE events ADD COLUMN received TEXT;
