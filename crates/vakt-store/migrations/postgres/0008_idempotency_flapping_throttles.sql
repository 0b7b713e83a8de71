-- vakt schema 8 (PostgreSQL): idempotent ingest, flapping alerts found without reading every
-- alert, and throttle windows that survive a restart.

ALTER TABLE events ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX events_idempotency_key ON events (idempotency_key) WHERE idempotency_key IS NOT NULL;

ALTER TABLE alerts ADD COLUMN flapping BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE alerts SET flapping = TRUE WHERE (handling::jsonb ->> 'flapping') = 'true';
CREATE INDEX alerts_flapping ON alerts (id) WHERE flapping;

CREATE TABLE throttle_windows (
    throttle_key TEXT PRIMARY KEY,
    state        TEXT NOT NULL,
    updated_at   BIGINT NOT NULL
);
