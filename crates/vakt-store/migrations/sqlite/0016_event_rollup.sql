-- vakt schema 16: events counted per hour, kept at ingest, for reports.
--
-- One row per UTC hour of receipt, source, check, category, severity and whether the filter
-- dropped the event; each ingest batch adds its counts (an upsert per distinct key), so a
-- report over months reads thousands of rows, not millions of events. The events already
-- stored are counted here once.
CREATE TABLE event_rollup (
    hour       BIGINT  NOT NULL,
    source     TEXT    NOT NULL,
    check_name TEXT    NOT NULL,
    category   TEXT    NOT NULL,
    severity   TEXT    NOT NULL,
    dropped    BOOLEAN NOT NULL,
    events     BIGINT  NOT NULL,
    PRIMARY KEY (hour, source, check_name, category, severity, dropped)
);
INSERT INTO event_rollup (hour, source, check_name, category, severity, dropped, events)
SELECT (received_at / 3600000) * 3600000, source, check_name, category, severity, dropped, COUNT(*)
FROM events
GROUP BY (received_at / 3600000) * 3600000, source, check_name, category, severity, dropped;
