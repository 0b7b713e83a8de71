-- vakt schema 9 (PostgreSQL): API tokens and the audit log.

-- A token is shown once when created; only its SHA-256 is kept. `scopes` is the
-- space-separated list of `verb:resource` scopes it carries.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    owner        TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);

-- Every change made through the API: who, what, when, from where, and how it ended.
CREATE TABLE audit_log (
    id      TEXT PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    method  TEXT NOT NULL,
    path    TEXT NOT NULL,
    status  BIGINT NOT NULL,
    remote  TEXT,
    detail  TEXT
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
