-- vakt schema 18 (SQLite only): one index on alerts' fingerprints, not two.
--
-- Every new alert inserted an entry in two B-trees keyed by its fingerprint (a hash: each
-- insert lands on a random page), and those random pages were most of what a transaction
-- of new alerts wrote to the WAL. Lookups by fingerprint use alerts_fingerprint_resolved
-- (fingerprint, resolved_at). One open alert per fingerprint is kept by the one writer
-- (its state lock, its cache), not by this index: had the index ever refused a row, the
-- journal's applier would have stopped on it. PostgreSQL, where several nodes write, keeps
-- its unique index.
DROP INDEX IF EXISTS alerts_active_fingerprint;
