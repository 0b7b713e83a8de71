-- vakt schema 13 (PostgreSQL): notification groups with pending members, kept as they change.
--
-- The dispatcher used to find due groups by grouping every pending grouped action each
-- round (a scan of all of them, many times a second under load). Now ingest notes a group's
-- first pending member here, a claim clears it when the group has none left, and a retry
-- or a recovered lease notes it again: the dispatcher reads this small table.
ALTER TABLE notification_groups ALTER COLUMN last_sent_at DROP NOT NULL;
ALTER TABLE notification_groups ADD COLUMN action TEXT;
ALTER TABLE notification_groups ADD COLUMN first_pending_at BIGINT;
INSERT INTO notification_groups (group_key, action, first_pending_at)
    SELECT group_key, MIN(action), MIN(decided_at) FROM decided_actions
    WHERE status = 'pending' AND group_key IS NOT NULL GROUP BY group_key
    ON CONFLICT (group_key) DO UPDATE SET action = excluded.action,
        first_pending_at = excluded.first_pending_at;
CREATE INDEX notification_groups_pending ON notification_groups (first_pending_at)
    WHERE first_pending_at IS NOT NULL;
