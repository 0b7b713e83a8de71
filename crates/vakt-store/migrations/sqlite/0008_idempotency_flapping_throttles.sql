-- vakt schema 8 (SQLite): idempotent ingest, flapping alerts found without reading every
-- alert, and throttle windows that survive a restart.

-- A sender's key for an event: a key already stored is answered with the stored event's id
-- and not stored again (retries after a lost answer are safe).
ALTER TABLE events ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX events_idempotency_key ON events (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Mirrors handling.flapping, so the settle sweep reads only flapping alerts.
ALTER TABLE alerts ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
UPDATE alerts SET flapping = 1 WHERE json_extract(handling, '$.flapping') = 1;
CREATE INDEX alerts_flapping ON alerts (id) WHERE flapping;

-- The dispatcher's throttle windows per channel and recipients: sent times and the lines
-- held back for the summary (JSON).
CREATE TABLE throttle_windows (
    throttle_key TEXT PRIMARY KEY,
    state        TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
);
