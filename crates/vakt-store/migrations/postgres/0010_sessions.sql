-- vakt schema 10 (PostgreSQL): console sessions, kept in vakt's own database.

-- A session is known by the SHA-256 of its cookie value; `csrf` is the token its pages
-- send with every write.
CREATE TABLE sessions (
    hash         TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    remote       TEXT
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
