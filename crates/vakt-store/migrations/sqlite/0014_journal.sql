-- vakt schema 14 (SQLite): the ingest journal's applied position.
--
-- Ingest batches are made durable in `ingest.journal` and written here behind the senders'
-- backs; the last journal record applied is stored in the transaction that applies it, so
-- at open the records after it are applied, and none twice.
CREATE TABLE journal_applied (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO journal_applied (id, seq) VALUES (1, 0);
