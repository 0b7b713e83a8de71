-- vakt schema 7 (SQLite): alerts by fingerprint, for the writer's reads of alerts its
-- bounded cache does not hold (PostgreSQL has had this index since schema 1).
CREATE INDEX IF NOT EXISTS alerts_fingerprint_resolved ON alerts (fingerprint, resolved_at);
