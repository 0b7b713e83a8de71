-- vakt schema 10 (SQLite): console sessions, kept in vakt's own database.

-- A session is known by the SHA-256 of its cookie value; `csrf` is the token its pages
-- send with every write.
CREATE TABLE sessions (
    hash         TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    remote       TEXT
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
