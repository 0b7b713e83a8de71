-- vakt schema 19: an alert's "opened" line is kept in its row, not as a timeline row.
--
-- Every new alert wrote a timeline row (and its two index entries) that says what the
-- alert row's first event said: the line's message and its event are now two columns of
-- the alert, written with it, and the timeline is given the line back when read (its id
-- is the alert's, its time the alert's first_seen). Alerts opened before stay as they are:
-- their lines are in the timeline table, these columns are NULL.
ALTER TABLE alerts ADD COLUMN opened_line TEXT;
ALTER TABLE alerts ADD COLUMN opened_event_id TEXT;
