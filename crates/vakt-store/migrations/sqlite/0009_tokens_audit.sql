-- vakt schema 9 (SQLite): API tokens and the audit log.

-- A token is shown once when created; only its SHA-256 is kept. `scopes` is the
-- space-separated list of `verb:resource` scopes it carries.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    owner        TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

-- Every change made through the API: who, what, when, from where, and how it ended.
CREATE TABLE audit_log (
    id      TEXT PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    method  TEXT NOT NULL,
    path    TEXT NOT NULL,
    status  INTEGER NOT NULL,
    remote  TEXT,
    detail  TEXT
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
