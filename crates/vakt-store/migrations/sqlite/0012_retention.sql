-- vakt schema 12 (SQLite): retention and the incremental silence board.

-- A trace no remaining event uses is removed with the last event that used it.
CREATE INDEX events_trace ON events (trace_id);
-- The silence board reads only the silences written since its last look.
CREATE INDEX silences_updated ON silences (updated_at);
-- Closed incidents are removed oldest first.
CREATE INDEX incidents_closed ON incidents (closed_at) WHERE closed_at IS NOT NULL;
