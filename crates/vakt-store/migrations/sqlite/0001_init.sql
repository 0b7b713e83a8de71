-- vakt schema 1 (SQLite): events, alerts, their timeline, decided actions.
-- Times are Unix milliseconds; maps and traces are JSON text.

CREATE TABLE events (
    id               TEXT PRIMARY KEY,
    received_at      INTEGER NOT NULL,
    occurred_at      INTEGER NOT NULL,
    source           TEXT NOT NULL,
    resource         TEXT NOT NULL,
    check_name       TEXT NOT NULL,
    severity         TEXT NOT NULL,
    category         TEXT NOT NULL,
    service          TEXT,
    environment      TEXT,
    summary          TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    sent_fingerprint TEXT,
    alert_id         TEXT,
    dropped          INTEGER NOT NULL,
    labels           TEXT NOT NULL,
    metrics          TEXT NOT NULL,
    details          TEXT NOT NULL,
    trace_id         TEXT NOT NULL
);
-- Entries carry the rowid, which follows insertion (and so id) order: (alert_id) suffices.
CREATE INDEX events_alert ON events (alert_id);

-- Traces are interned: events with identical stage decisions share one row.
CREATE TABLE traces (
    trace_id TEXT PRIMARY KEY,
    body     TEXT NOT NULL
);

CREATE TABLE alerts (
    id              TEXT PRIMARY KEY,
    fingerprint     TEXT NOT NULL,
    status          TEXT NOT NULL,
    category        TEXT NOT NULL,
    severity        TEXT NOT NULL,
    severity_max    TEXT NOT NULL,
    source          TEXT NOT NULL,
    resource        TEXT NOT NULL,
    check_name      TEXT NOT NULL,
    service         TEXT,
    environment     TEXT,
    summary         TEXT NOT NULL,
    labels          TEXT NOT NULL,
    event_count     INTEGER NOT NULL,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    last_event_id   TEXT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at INTEGER,
    assignee        TEXT,
    resolved_by     TEXT,
    resolved_at     INTEGER,
    incident_id     TEXT
);
-- Invariant: at most one unresolved alert per fingerprint.
CREATE UNIQUE INDEX alerts_active_fingerprint ON alerts (fingerprint) WHERE status <> 'resolved';
CREATE INDEX alerts_status ON alerts (status, id);

CREATE TABLE alert_timeline (
    id       TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    actor    TEXT NOT NULL,
    message  TEXT NOT NULL,
    event_id TEXT
);
CREATE INDEX alert_timeline_alert ON alert_timeline (alert_id, id);

CREATE TABLE decided_actions (
    id         TEXT PRIMARY KEY,
    alert_id   TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    action     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    decided_at INTEGER NOT NULL
);
CREATE INDEX decided_actions_alert ON decided_actions (alert_id, id);
