-- vakt schema 7 (PostgreSQL): the same index SQLite gains here; PostgreSQL has had it since
-- schema 1, so this changes nothing and keeps the two schemas' numbers in step.
CREATE INDEX IF NOT EXISTS alerts_fingerprint_resolved ON alerts (fingerprint, resolved_at);
