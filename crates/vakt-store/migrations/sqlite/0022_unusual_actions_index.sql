-- vakt schema 22 (SQLite only): decided actions by status only where the status is unusual.
--
-- Every decided action inserted an entry in decided_actions_status (status, id) when it was
-- decided (pending) and moved it when it finished (mostly succeeded): two B-tree writes per
-- notified alert for an index that a listing of the common statuses does not need, since
-- walking decided_actions newest first finds pending and succeeded actions at once. The
-- journal's applier spent about a tenth of its time on it (BENCHMARKS.md, issue 18). The
-- statuses an operator looks for among many (failed, skipped, suppressed, running) keep
-- their index; the dispatcher finds pending actions through its own partial indexes.
-- The condition is a disjunction of equalities, which SQLite's planner sees implied by a
-- listing's `status = 'failed'` (a literal: dispatch::list_action_records). PostgreSQL
-- keeps its index.
DROP INDEX IF EXISTS decided_actions_status;
CREATE INDEX decided_actions_unusual ON decided_actions (status, id)
    WHERE status = 'failed' OR status = 'skipped' OR status = 'suppressed' OR status = 'running';
