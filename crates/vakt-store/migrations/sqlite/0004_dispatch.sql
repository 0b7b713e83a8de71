-- vakt schema 4 (SQLite): executing decided actions (an outbox), their attempts, and
-- what the decide stage remembers per alert (actions that ran, flapping).

ALTER TABLE alerts ADD COLUMN handling TEXT NOT NULL DEFAULT '{}';

-- status: pending (due at next_at) -> running (claimed until lease_until) -> succeeded |
-- failed (gave up) | skipped (cooldown, inhibited, throttled: outcome says why); or
-- suppressed from the start (silence, maintenance window, flapping: suppressed_by says which).
ALTER TABLE decided_actions ADD COLUMN purpose TEXT NOT NULL DEFAULT 'trigger';
ALTER TABLE decided_actions ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE decided_actions ADD COLUMN suppressed_by TEXT;
ALTER TABLE decided_actions ADD COLUMN group_key TEXT;
ALTER TABLE decided_actions ADD COLUMN next_at INTEGER;
ALTER TABLE decided_actions ADD COLUMN lease_until INTEGER;
ALTER TABLE decided_actions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE decided_actions ADD COLUMN finished_at INTEGER;
ALTER TABLE decided_actions ADD COLUMN outcome TEXT;
-- Decisions recorded before vakt executed actions are history, not work.
UPDATE decided_actions SET status = 'skipped', outcome = 'decided before this vakt version executed actions';
CREATE INDEX decided_actions_due ON decided_actions (next_at) WHERE status = 'pending' AND group_key IS NULL;
CREATE INDEX decided_actions_running ON decided_actions (lease_until) WHERE status = 'running';
CREATE INDEX decided_actions_groups ON decided_actions (group_key, next_at) WHERE status = 'pending' AND group_key IS NOT NULL;
CREATE INDEX decided_actions_status ON decided_actions (status, id);

CREATE TABLE action_attempts (
    id          TEXT PRIMARY KEY,
    action_id   TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    output      TEXT
);
CREATE INDEX action_attempts_action ON action_attempts (action_id, attempt);

-- When each notification group last sent, for group_interval.
CREATE TABLE notification_groups (
    group_key    TEXT PRIMARY KEY,
    last_sent_at INTEGER NOT NULL
);
