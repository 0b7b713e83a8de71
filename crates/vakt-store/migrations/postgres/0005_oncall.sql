-- vakt schema 5 (PostgreSQL): on-call overrides made through the API.

CREATE TABLE schedule_overrides (
    id         TEXT PRIMARY KEY,
    schedule   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    starts_at  BIGINT NOT NULL,
    ends_at    BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX schedule_overrides_schedule ON schedule_overrides (schedule, ends_at);
