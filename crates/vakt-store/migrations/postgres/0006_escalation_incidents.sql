-- vakt schema 6 (PostgreSQL): escalations (stored timers), pages in the outbox, incidents.

-- An escalation page is an outbox row whose target (JSON) says to whom and how.
ALTER TABLE decided_actions ADD COLUMN target TEXT;

-- One row per alert that climbs a policy. step/round: the position due next (0-based).
-- status: active (due at due_at; claimed by a node until lease_until) | paused (acknowledged:
-- remaining_ms is what was left of the wait) | done (resolved, or the policy ran out).
CREATE TABLE escalations (
    alert_id     TEXT PRIMARY KEY,
    policy       TEXT NOT NULL,
    rule         TEXT NOT NULL,
    step         BIGINT NOT NULL,
    round        BIGINT NOT NULL,
    status       TEXT NOT NULL,
    due_at       BIGINT,
    remaining_ms BIGINT,
    lease_until  BIGINT,
    fired        BIGINT NOT NULL DEFAULT 0,
    started_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    ended_reason TEXT
);
CREATE INDEX escalations_due ON escalations (due_at) WHERE status = 'active';

CREATE TABLE incidents (
    id              TEXT PRIMARY KEY,
    number          BIGINT NOT NULL UNIQUE,
    title           TEXT NOT NULL,
    description     TEXT NOT NULL,
    impact          BIGINT NOT NULL,
    urgency         BIGINT NOT NULL,
    priority        BIGINT NOT NULL,
    status          TEXT NOT NULL,
    assignee        TEXT,
    correlation_key TEXT,
    opened_by       TEXT NOT NULL,
    opened_at       BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_linked_at  BIGINT NOT NULL,
    resolved_at     BIGINT,
    closed_at       BIGINT,
    resolution      TEXT,
    external_id     TEXT,
    external_url    TEXT,
    -- Bumped on every change; the ITSM sync sends what is newer than synced_version.
    version         BIGINT NOT NULL DEFAULT 1,
    synced_version  BIGINT NOT NULL DEFAULT 0,
    sync_next_at    BIGINT NOT NULL DEFAULT 0,
    sync_lease      BIGINT,
    sync_attempts   BIGINT NOT NULL DEFAULT 0,
    sync_error      TEXT
);
CREATE INDEX incidents_open ON incidents (correlation_key, last_linked_at) WHERE status IN ('new', 'in_progress', 'on_hold');
CREATE INDEX incidents_external ON incidents (external_id);
CREATE INDEX incidents_unsynced ON incidents (sync_next_at) WHERE version > synced_version;

CREATE TABLE incident_alerts (
    incident_id TEXT NOT NULL,
    alert_id    TEXT NOT NULL,
    linked_at   BIGINT NOT NULL,
    PRIMARY KEY (incident_id, alert_id)
);
CREATE INDEX incident_alerts_alert ON incident_alerts (alert_id);

CREATE TABLE incident_timeline (
    id          TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, at);
