-- vakt schema 2 (SQLite): alerts that end by themselves; silences.

ALTER TABLE alerts ADD COLUMN expires_at INTEGER;
CREATE INDEX alerts_expiry ON alerts (expires_at) WHERE expires_at IS NOT NULL AND status <> 'resolved';

CREATE TABLE silences (
    id         TEXT PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    comment    TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX silences_ends ON silences (ends_at);
