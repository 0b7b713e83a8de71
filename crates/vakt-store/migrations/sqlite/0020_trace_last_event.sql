-- vakt schema 20 (SQLite only): a trace knows its newest event; no index of events by trace.
--
-- Retention removed a trace once no event used it, which needed an index of every event by
-- its trace (a B-tree entry per event written, for a delete that runs once a day). A trace
-- now keeps the id of its newest event, moved forward once per applied transaction for each
-- trace its events used; retention removes events oldest first, so a trace whose newest
-- event is gone is used by none. PostgreSQL, where several nodes would update the same
-- trace rows, keeps its index.
ALTER TABLE traces ADD COLUMN last_event_id TEXT;
UPDATE traces SET last_event_id = (SELECT MAX(id) FROM events WHERE events.trace_id = traces.trace_id);
DROP INDEX IF EXISTS events_trace;
