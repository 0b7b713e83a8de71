-- vakt schema 3 (SQLite): heartbeats, promises to report every N seconds.

CREATE TABLE heartbeats (
    name          TEXT PRIMARY KEY,
    resource      TEXT NOT NULL,
    check_name    TEXT,
    service       TEXT,
    environment   TEXT,
    interval_secs INTEGER NOT NULL,
    grace_secs    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    missing       INTEGER NOT NULL
);
