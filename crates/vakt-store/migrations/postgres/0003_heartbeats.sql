-- vakt schema 3 (PostgreSQL): heartbeats, promises to report every N seconds.

CREATE TABLE heartbeats (
    name          TEXT PRIMARY KEY,
    resource      TEXT NOT NULL,
    check_name    TEXT,
    service       TEXT,
    environment   TEXT,
    interval_secs BIGINT NOT NULL,
    grace_secs    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL,
    missing       BOOLEAN NOT NULL
);
