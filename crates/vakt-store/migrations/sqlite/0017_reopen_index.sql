-- vakt schema 17: re-opens found by time, for reports.
--
-- A report counts the alerts that re-opened in its period; their timeline rows are few
-- among many, so a partial index on their time finds them without reading the timeline.
CREATE INDEX alert_timeline_reopened ON alert_timeline (at) WHERE kind = 'reopened';
