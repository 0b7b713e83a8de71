//! The outbox of decided actions as the dispatcher sees it: records, attempts, claims.
//!
//! A decided action is written in the ingest transaction (`pending`, or `suppressed` with the
//! reason). The dispatcher claims due rows (`running`, with a lease), runs them, and finishes
//! each attempt in one transaction: the attempt row, the action's new status, and the alert's
//! timeline entry. A row whose lease ran out belonged to a process that died mid-attempt;
//! `recover` takes it back: deliveries are repeated with the same idempotency key (the
//! action's id), commands are not run again and are marked failed, interrupted.

use chrono::{DateTime, Utc};
use serde::Serialize;
use vakt_core::pipeline::DecidedAction;

/// Where a decided action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ActionStatus {
    /// Waiting until `next_at` (first try, a retry, or a group's wait).
    Pending,
    /// Claimed by a dispatcher until its lease ends.
    Running,
    Succeeded,
    /// Gave up: the last attempt failed and no retry is left, or it was interrupted.
    Failed,
    /// Not run, for a reason found at dispatch (cooldown, inhibition, throttling).
    Skipped,
    /// Not run: noise control at decision time (silence, maintenance window, flapping).
    Suppressed,
}

impl ActionStatus {
    pub const ALL: [ActionStatus; 6] = [
        ActionStatus::Pending,
        ActionStatus::Running,
        ActionStatus::Succeeded,
        ActionStatus::Failed,
        ActionStatus::Skipped,
        ActionStatus::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Pending => "pending",
            ActionStatus::Running => "running",
            ActionStatus::Succeeded => "succeeded",
            ActionStatus::Failed => "failed",
            ActionStatus::Skipped => "skipped",
            ActionStatus::Suppressed => "suppressed",
        }
    }

    pub fn parse(text: &str) -> Result<ActionStatus, String> {
        ActionStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown action status {text:?}, expected one of pending, running, succeeded, failed, skipped, suppressed"
                )
            })
    }
}

/// A decided action and what became of it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionRecord {
    #[serde(flatten)]
    pub decided: DecidedAction,
    pub status: ActionStatus,
    pub attempts: i64,
    pub next_at: Option<DateTime<Utc>>,
    pub lease_until: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The last attempt's result in a line, or why it was skipped.
    pub outcome: Option<String>,
}

/// One try at an action.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    pub id: String,
    pub action_id: String,
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `succeeded`, `failed`, `timeout`, `interrupted`, `skipped`, `dry_run`.
    pub outcome: String,
    pub detail: String,
    /// What the attempt produced: exit status and output of a command, response of a call.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub output: Option<serde_json::Value>,
}

/// What happens to an action after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Final: `Succeeded`, `Failed` or `Skipped`.
    Done(ActionStatus),
    Retry(DateTime<Utc>),
}

/// An attempt to record, with the action's next state and the line for the alert's timeline.
#[derive(Debug, Clone)]
pub struct Finish {
    pub attempt: Attempt,
    pub next: Next,
    pub timeline: String,
}

/// Filters for listing actions.
#[derive(Debug, Clone, Default)]
pub struct ActionQuery {
    pub status: Option<ActionStatus>,
    pub action: Option<String>,
    pub alert_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// Pending members of one notification group.
#[derive(Debug, Clone)]
pub struct GroupHead {
    pub group_key: String,
    pub action: String,
    /// Since when the group has had a pending member.
    pub first_decided_at: DateTime<Utc>,
    pub last_sent_at: Option<DateTime<Utc>>,
}

// The dispatch queries: claims, attempts, groups, retries.

use crate::db::{Columns, Conn, Query, Row, query};
use crate::queries::{fetch_page, filter_eq, insert_timeline};
use crate::sql::{Value, from_json, json, ms, opt_time, parsed, time};
use crate::{Page, StoreError};
use std::borrow::Cow;
use vakt_core::TimelineEntry;
use vakt_core::alert::TimelineKind;

const ACTION_SELECT: &str = "id, alert_id, event_id, action, kind, reason, decided_at, purpose, status, suppressed_by, group_key, next_at, attempts, lease_until, finished_at, outcome, target";

/// An action from a row of `ACTION_SELECT` (by name or, read in place, by position: a
/// group's claim reads thousands of members, and sqlx copied every column of each first).
pub(crate) fn record_from_row(row: &impl Columns) -> Result<ActionRecord, StoreError> {
    let purpose = row.required_text(7, "purpose")?;
    Ok(ActionRecord {
        decided: DecidedAction {
            id: row.required_text(0, "id")?.to_owned(),
            action: std::sync::Arc::from(row.required_text(3, "action")?),
            kind: action_kind(row.required_text(4, "kind")?),
            alert_id: row.required_text(1, "alert_id")?.to_owned(),
            event_id: row.required_text(2, "event_id")?.to_owned(),
            purpose: vakt_core::pipeline::Purpose::parse(purpose).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown action purpose {purpose:?}"))
            })?,
            reason: row.required_text(5, "reason")?.to_owned(),
            suppressed_by: row.owned_text(9, "suppressed_by")?,
            group_key: row.owned_text(10, "group_key")?,
            decided_at: time(row.required_int(6, "decided_at")?)?,
            target: row
                .text(16, "target")?
                .map(|t| from_json("target", t))
                .transpose()?,
        },
        status: parsed(
            "status",
            ActionStatus::parse(row.required_text(8, "status")?),
        )?,
        attempts: row.required_int(12, "attempts")?,
        next_at: opt_time(row.int(11, "next_at")?)?,
        lease_until: opt_time(row.int(13, "lease_until")?)?,
        finished_at: opt_time(row.int(14, "finished_at")?)?,
        outcome: row.owned_text(15, "outcome")?,
    })
}

/// The kind of a stored action, as the dispatcher names it.
fn action_kind(kind: &str) -> &'static str {
    match kind {
        "exec" => "exec",
        "webhook" => "webhook",
        "notify" => "notify",
        _ => "unknown",
    }
}

pub(crate) fn attempt_from_row(row: &Row) -> Result<Attempt, StoreError> {
    let output: Option<String> = row.try_get("output")?;
    Ok(Attempt {
        id: row.try_get("id")?,
        action_id: row.try_get("action_id")?,
        attempt: row.try_get("attempt")?,
        started_at: time(row.try_get("started_at")?)?,
        finished_at: time(row.try_get("finished_at")?)?,
        outcome: row.try_get("outcome")?,
        detail: row.try_get("detail")?,
        output: output.map(|o| from_json("output", &o)).transpose()?,
    })
}

/// Takes up to `limit` due, ungrouped pending actions, oldest due first.
pub(crate) async fn claim_due(
    conn: &mut Conn<'_>,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<ActionRecord>, StoreError> {
    let rows = query(claim_due_sql(conn))
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    in_id_order(&rows)
}

/// A claim's returned rows as records, in id order (the order they were decided in; `RETURNING`
/// gives no order).
fn in_id_order(rows: &[Row]) -> Result<Vec<ActionRecord>, StoreError> {
    // Sized first: collecting through `Result` knows no length, and a claim of thousands of
    // records grew its list by doubling.
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        claimed.push(record_from_row(row)?);
    }
    claimed.sort_unstable_by(|a, b| a.decided.id.cmp(&b.decided.id));
    Ok(claimed)
}

fn claim_due_sql(conn: &Conn<'_>) -> String {
    format!(
        "UPDATE decided_actions SET status = 'running', lease_until = $1, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM decided_actions{} WHERE status = 'pending' AND group_key IS NULL \
         AND next_at <= $2 ORDER BY next_at LIMIT $3{}) RETURNING {ACTION_SELECT}",
        conn.indexed_by("decided_actions_due"),
        conn.skip_locked()
    )
}

/// Whether an ungrouped pending action is due (a read, before a claim that would write).
pub(crate) async fn any_due(conn: &mut Conn<'_>, now_ms: i64) -> Result<bool, StoreError> {
    let row = query(any_due_sql(conn))
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get::<bool>("due")?)
}

fn any_due_sql(conn: &Conn<'_>) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM decided_actions{} WHERE status = 'pending' \
         AND group_key IS NULL AND next_at <= $1) AS due",
        conn.indexed_by("decided_actions_due")
    )
}

/// Takes up to `limit` pending members of one group.
pub(crate) async fn claim_group_members(
    conn: &mut Conn<'_>,
    group_key: &str,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<ActionRecord>, StoreError> {
    let rows = query(claim_group_sql(conn))
        .bind(lease_until_ms)
        .bind(group_key.to_owned())
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    in_id_order(&rows)
}

fn claim_group_sql(conn: &Conn<'_>) -> String {
    format!(
        "UPDATE decided_actions SET status = 'running', lease_until = $1, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM decided_actions{} WHERE status = 'pending' AND group_key = $2 \
         ORDER BY id LIMIT $3{}) RETURNING {ACTION_SELECT}",
        conn.indexed_by("decided_actions_groups"),
        conn.skip_locked()
    )
}

/// A group's pending members, oldest first: what a claim held in memory reads instead of
/// writing (`claim_groups_held`).
#[cfg(test)]
fn group_members_sql(conn: &Conn<'_>) -> String {
    group_members_select(&conn.indexed_by("decided_actions_groups"))
}

/// `group_members_sql` with the index hint given.
fn group_members_select(hint: &str) -> String {
    format!(
        "SELECT {ACTION_SELECT} FROM decided_actions{hint} WHERE status = 'pending' AND group_key = $1 \
         ORDER BY id LIMIT $2",
    )
}

/// The dispatcher's statements that must walk a partial index of `decided_actions` (the
/// plan test checks each on SQLite).
#[cfg(test)]
pub(crate) fn dispatch_sql(conn: &Conn<'_>) -> [(String, &'static str); 6] {
    [
        (claim_due_sql(conn), "decided_actions_due"),
        (any_due_sql(conn), "decided_actions_due"),
        (claim_group_sql(conn), "decided_actions_groups"),
        (group_members_sql(conn), "decided_actions_groups"),
        (MORE_MEMBERS_SQL.to_owned(), "decided_actions_groups"),
        (GROUP_SENT_SQL.to_owned(), "decided_actions_groups"),
    ]
}

/// Whether a group has pending members after `$2` (a claim that stopped at its limit). Its
/// conditions imply `decided_actions_groups`' own, which SQLite's planner takes without a
/// hint now that no index of all actions by status competes (schema 22).
const MORE_MEMBERS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM decided_actions \
     WHERE status = 'pending' AND group_key = $1 AND id > $2) AS more";

/// A group's message went out at `$2` (or none did): its pending mark is kept while it has
/// pending members.
const GROUP_SENT_SQL: &str = "UPDATE notification_groups SET last_sent_at = COALESCE($2, last_sent_at), \
     first_pending_at = CASE WHEN EXISTS (SELECT 1 FROM decided_actions \
         WHERE group_key = $1 AND status = 'pending') THEN COALESCE($2, first_pending_at, $3) ELSE NULL END \
     WHERE group_key = $1";

/// Groups with pending members, oldest first, with when each last sent: one read of the
/// small `notification_groups` table, kept as members come and go (`note_groups`,
/// `claim_groups`), not a scan of the pending actions.
pub(crate) async fn list_group_heads(
    conn: &mut Conn<'_>,
    limit: u32,
) -> Result<Vec<GroupHead>, StoreError> {
    let rows = query(
        "SELECT group_key, action, first_pending_at, last_sent_at FROM notification_groups \
         WHERE first_pending_at IS NOT NULL ORDER BY first_pending_at LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(GroupHead {
                group_key: row.try_get("group_key")?,
                action: row.try_get::<Option<String>>("action")?.unwrap_or_default(),
                first_decided_at: time(row.try_get("first_pending_at")?)?,
                last_sent_at: opt_time(row.try_get("last_sent_at")?)?,
            })
        })
        .collect()
}

/// Notes that these groups (key, action) have a pending member since `at_ms`; a group
/// that already had one keeps its earlier time.
pub(crate) const GROUP_NOTE_COLUMNS: &str = "group_key, action, first_pending_at";
pub(crate) const GROUP_NOTE_CONFLICT: &str = " ON CONFLICT (group_key) DO UPDATE SET \
     action = excluded.action, \
     first_pending_at = COALESCE(notification_groups.first_pending_at, excluded.first_pending_at)";

/// A group note's row, in `GROUP_NOTE_COLUMNS` order.
pub(crate) fn group_note_row<'a>(key: &'a str, action: &'a str, at_ms: i64) -> [Value<'a>; 3] {
    [
        Value::Text(Some(Cow::Borrowed(key))),
        Value::Text(Some(Cow::Borrowed(action))),
        Value::Int(Some(at_ms)),
    ]
}

pub(crate) const ATTEMPT_COLUMNS: &str =
    "id, action_id, attempt, started_at, finished_at, outcome, detail, output, timeline_line";
/// What `attempt_from_row` reads.
const ATTEMPT_SELECT: &str =
    "id, action_id, attempt, started_at, finished_at, outcome, detail, output";

/// An attempt's row, in `ATTEMPT_COLUMNS` order; `gives_line` when the alert's timeline
/// line for it is made from the row when read, not stored (`line_from_attempt`).
pub(crate) fn attempt_row(a: &Attempt, gives_line: bool) -> [Value<'_>; 9] {
    [
        Value::Text(Some(Cow::Borrowed(&a.id))),
        Value::Text(Some(Cow::Borrowed(&a.action_id))),
        Value::Int(Some(a.attempt)),
        Value::Int(Some(ms(a.started_at))),
        Value::Int(Some(ms(a.finished_at))),
        Value::Text(Some(Cow::Borrowed(&a.outcome))),
        Value::Text(Some(Cow::Borrowed(&a.detail))),
        Value::Text(a.output.as_ref().map(|o| Cow::Owned(json(o)))),
        Value::Int(Some(i64::from(gives_line))),
    ]
}

/// Whether a finished attempt's timeline line says nothing its attempt row and action do
/// not: then the line is not stored but made from them when read (schema 21), as a
/// decision's line is made from its action. A line that says more (a command's output
/// excerpt) is stored.
fn line_from_attempt(record: &ActionRecord, finish: &Finish) -> bool {
    let attempt = &finish.attempt;
    let skipped = finish.next == Next::Done(ActionStatus::Skipped);
    if skipped != (attempt.outcome == "skipped") {
        return false;
    }
    // Compared piece by piece as the line is written, without making it.
    let mut rest = Unwritten(finish.timeline.as_str());
    record
        .decided
        .write_attempt_line(
            &mut rest,
            attempt.attempt,
            &attempt.outcome,
            &attempt.detail,
        )
        .is_ok()
        && rest.0.is_empty()
}

/// What of a line is left to match what is written; writing what does not follow fails.
struct Unwritten<'a>(&'a str);

impl std::fmt::Write for Unwritten<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 = self.0.strip_prefix(s).ok_or(std::fmt::Error)?;
        Ok(())
    }
}

/// The timeline line of an attempt whose line is not stored (`line_from_attempt`), under
/// the attempt's id (made with `new_id` when it finished, so in order among the alert's
/// lines).
pub(crate) fn attempt_timeline_line(decided: &DecidedAction, attempt: &Attempt) -> TimelineEntry {
    attempt_entry(
        decided,
        attempt.id.clone(),
        attempt.finished_at,
        attempt.outcome == "skipped",
        decided.attempt_line(attempt.attempt, &attempt.outcome, &attempt.detail),
    )
}

/// The lines of an alert's attempts that are made from their rows (schema 21; attempts
/// recorded before have their lines stored), given the alert's actions.
pub(crate) async fn attempt_lines(
    conn: &mut Conn<'_>,
    alert_id: &str,
    actions: &[ActionRecord],
) -> Result<Vec<TimelineEntry>, StoreError> {
    let rows = query(format!(
        "SELECT {ATTEMPT_SELECT} FROM action_attempts \
         WHERE timeline_line = 1 AND action_id IN (SELECT id FROM decided_actions WHERE alert_id = $1)"
    ))
    .bind(alert_id.to_owned())
    .fetch_all(&mut *conn)
    .await?;
    let by_id: std::collections::HashMap<&str, &DecidedAction> = actions
        .iter()
        .map(|r| (r.decided.id.as_str(), &r.decided))
        .collect();
    let mut lines = Vec::with_capacity(rows.len());
    for row in &rows {
        let attempt = attempt_from_row(row)?;
        if let Some(decided) = by_id.get(attempt.action_id.as_str()) {
            lines.push(attempt_timeline_line(decided, &attempt));
        }
    }
    Ok(lines)
}

/// The groups of `actions` that got a pending member, each once.
pub(crate) fn pending_groups<'a>(
    actions: impl IntoIterator<Item = &'a DecidedAction>,
) -> Vec<(&'a str, &'a str)> {
    let mut seen = std::collections::BTreeMap::new();
    for action in actions {
        if let (Some(key), None) = (&action.group_key, &action.suppressed_by) {
            seen.entry(key.as_str()).or_insert(&*action.action);
        }
    }
    seen.into_iter().collect()
}

/// Notes groups with a new pending member (the generic path; SQLite's bulk path binds the
/// same statement in place).
pub(crate) async fn note_groups(
    conn: &mut Conn<'_>,
    groups: &[(&str, &str)],
    at_ms: i64,
) -> Result<(), StoreError> {
    // Each key once (`pending_groups`), so one statement may upsert them all.
    let head = format!("INSERT INTO notification_groups ({GROUP_NOTE_COLUMNS}) ");
    crate::queries::insert_rows(conn, &head, GROUP_NOTE_CONFLICT, groups, |(key, action)| {
        group_note_row(key, action, at_ms)
    })
    .await
}

/// After a claim of a group's members: when it sent (if it claimed any) and whether it still
/// has pending members (beyond the claim's limit, or joined since).
pub(crate) async fn write_group_sent(
    conn: &mut Conn<'_>,
    group_key: &str,
    sent_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<(), StoreError> {
    query(GROUP_SENT_SQL)
        .bind(group_key.to_owned())
        .bind(sent_at_ms)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Decided actions a write stores as claimed (`running` until `lease_until_ms`).
pub(crate) struct Claimed<'a> {
    pub ids: std::collections::BTreeSet<&'a str>,
    pub lease_until_ms: i64,
}

impl Claimed<'_> {
    pub const NONE: Claimed<'static> = Claimed {
        ids: std::collections::BTreeSet::new(),
        lease_until_ms: 0,
    };
}

/// Which of a batch's decided actions may be handed to this process's dispatcher, at most
/// `max`: due, ungrouped deliveries and commands (not escalation pages) of alerts the batch
/// opened, whose earlier actions are all in the batch. Actions of existing alerts are
/// claimed from the table as before: running them needs the alert's earlier actions.
pub(crate) fn handable(
    outcomes: &[vakt_core::Correlated],
    max: usize,
    now: DateTime<Utc>,
) -> std::collections::BTreeSet<&str> {
    outcomes
        .iter()
        .filter(|o| o.transition == vakt_core::pipeline::Transition::Opened)
        .flat_map(|o| &o.actions)
        .filter(|a| {
            a.suppressed_by.is_none()
                && a.group_key.is_none()
                && a.target.is_none()
                && a.decided_at <= now
        })
        .take(max)
        .map(|a| a.id.as_str())
        .collect()
}

/// The handed actions as claimed records, each with its alert as the batch left it, its
/// event and the batch's other actions for the alert.
pub(crate) fn handed(
    outcomes: &[vakt_core::Correlated],
    claimed: &Claimed<'_>,
    lease_until: DateTime<Utc>,
) -> Vec<crate::Handed> {
    if claimed.ids.is_empty() {
        return Vec::new();
    }
    let record = |decided: &DecidedAction, status, attempts, lease| ActionRecord {
        decided: decided.clone(),
        status,
        attempts,
        next_at: Some(decided.decided_at),
        lease_until: lease,
        finished_at: None,
        outcome: None,
    };
    let mut out = Vec::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        for action in &outcome.actions {
            if !claimed.ids.contains(action.id.as_str()) {
                continue;
            }
            let same_alert = || {
                outcomes
                    .iter()
                    .filter(|o| o.alert.as_ref().is_some_and(|a| a.id == action.alert_id))
            };
            let Some(alert) = same_alert()
                .filter_map(|o| o.alert.as_deref())
                .next_back()
                .cloned()
            else {
                continue;
            };
            let earlier = same_alert()
                .flat_map(|o| &o.actions)
                .filter(|a| a.id != action.id)
                .map(|a| {
                    let status = if a.suppressed_by.is_some() {
                        ActionStatus::Suppressed
                    } else {
                        ActionStatus::Pending
                    };
                    record(a, status, 0, None)
                })
                .collect();
            out.push(crate::Handed {
                record: record(action, ActionStatus::Running, 1, Some(lease_until)),
                alert,
                event: outcomes[i].record.clone(),
                earlier,
            });
        }
    }
    out
}

/// Running actions whose lease ended: their dispatcher died mid-attempt. Deliveries
/// go back to pending (sent again with the same idempotency key); commands are not
/// run twice: they end failed. Each gets an `interrupted` attempt on record.
pub(crate) async fn recover_expired(
    conn: &mut Conn<'_>,
    leases_before_ms: i64,
    now_ms: i64,
) -> Result<Vec<ActionRecord>, StoreError> {
    let rows = query(format!(
        "UPDATE decided_actions SET \
         status = CASE WHEN kind = 'exec' THEN 'failed' ELSE 'pending' END, \
         next_at = $1, lease_until = NULL, \
         finished_at = CASE WHEN kind = 'exec' THEN $1 ELSE NULL END, \
         outcome = CASE WHEN kind = 'exec' THEN 'interrupted: vakt stopped while the command ran; not run again' \
         ELSE 'interrupted: vakt stopped during delivery; delivering again with the same idempotency key' END \
         WHERE status = 'running' AND lease_until < $2 RETURNING {ACTION_SELECT}"
    ))
    .bind(now_ms)
    .bind(leases_before_ms)
    .fetch_all(&mut *conn)
    .await?;
    let recovered = rows
        .iter()
        .map(record_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    note_interrupted(conn, &recovered, now_ms).await?;
    Ok(recovered)
}

/// Group members whose claim, held in this process's memory (`HeldClaims`), ran out before
/// their attempt was recorded: their rows never left `pending`. Each counts the attempt it
/// was claimed for and gets an `interrupted` one on record, as `recover_expired` does for a
/// claim written to the table; a member no longer pending (an operator's change, retention)
/// is left alone.
pub(crate) async fn recover_held(
    conn: &mut Conn<'_>,
    expired: &[(String, Held)],
    now_ms: i64,
) -> Result<Vec<ActionRecord>, StoreError> {
    const WHY: &str = "interrupted: the group message was not recorded in time; delivering again with the same idempotency key";
    let sql = format!(
        "UPDATE decided_actions SET attempts = $1, next_at = $2, outcome = $3 \
         WHERE id = $4 AND status = 'pending' RETURNING {ACTION_SELECT}"
    );
    let mut recovered = Vec::with_capacity(expired.len());
    for (id, held) in expired {
        let row = query(sql.clone())
            .bind(held.attempts)
            .bind(now_ms)
            .bind(WHY)
            .bind(id.clone())
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            recovered.push(record_from_row(&row)?);
        }
    }
    note_interrupted(conn, &recovered, now_ms).await?;
    Ok(recovered)
}

/// Notes every group with a pending member as pending (since `now_ms`, or since earlier):
/// the first recovery of a process on SQLite, where a previous process may have died
/// holding a claim in memory (`HeldClaims`) after its claim cleared the group's pending
/// mark; without this its members would wait for the group's next new member.
pub(crate) async fn note_pending_groups(
    conn: &mut Conn<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    query(format!(
        "INSERT INTO notification_groups ({GROUP_NOTE_COLUMNS}) \
         SELECT group_key, MIN(action), $1 FROM decided_actions{} \
         WHERE status = 'pending' AND group_key IS NOT NULL GROUP BY group_key{GROUP_NOTE_CONFLICT}",
        conn.indexed_by("decided_actions_groups")
    ))
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What a taken-back action leaves: its group pending again (a delivery), an `interrupted`
/// attempt and a timeline line.
async fn note_interrupted(
    conn: &mut Conn<'_>,
    recovered: &[ActionRecord],
    now_ms: i64,
) -> Result<(), StoreError> {
    let pending = recovered
        .iter()
        .filter(|r| r.status == ActionStatus::Pending)
        .map(|r| &r.decided);
    note_groups(conn, &pending_groups(pending), now_ms).await?;
    for record in recovered {
        let at = time(now_ms)?;
        insert_attempt(
            conn,
            &Attempt {
                id: crate::sql::new_id(),
                action_id: record.decided.id.clone(),
                attempt: record.attempts,
                started_at: at,
                finished_at: at,
                outcome: "interrupted".into(),
                detail: record.outcome.clone().unwrap_or_default(),
                output: None,
            },
            false,
        )
        .await?;
        insert_timeline(
            conn,
            &[&TimelineEntry {
                id: crate::sql::new_id(),
                alert_id: record.decided.alert_id.clone(),
                at,
                kind: TimelineKind::ActionRun,
                by: vakt_core::alert::PIPELINE_ACTOR.to_owned(),
                message: format!(
                    "action {} attempt {} {}",
                    record.decided.action,
                    record.attempts,
                    record.outcome.as_deref().unwrap_or("interrupted")
                ),
                event_id: None,
            }],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn insert_attempt(
    conn: &mut Conn<'_>,
    attempt: &Attempt,
    gives_line: bool,
) -> Result<(), StoreError> {
    let head = format!("INSERT INTO action_attempts ({ATTEMPT_COLUMNS}) ");
    crate::queries::insert_rows(conn, &head, "", &[attempt], |a| attempt_row(a, gives_line)).await
}

/// Where a finished attempt moves its action: its new status, when it is tried again
/// (`None` keeps the row's), and when it finished (`None` while it will be tried again).
fn finish_move(finish: &Finish) -> (ActionStatus, Option<i64>, Option<i64>) {
    match finish.next {
        Next::Done(status) => (status, None, Some(ms(finish.attempt.finished_at))),
        Next::Retry(at) => (ActionStatus::Pending, Some(ms(at)), None),
    }
}

/// The moves of many finished actions in one statement (`FinishRows::write`): each row of
/// `VALUES` is `(status, next_at, finished_at, outcome, id)`; only an action still
/// `running` moves.
const MOVE_HEAD: &str = "UPDATE decided_actions AS d SET status = v.status, \
     next_at = COALESCE(v.next_at, d.next_at), lease_until = NULL, finished_at = v.finished_at, \
     outcome = v.outcome FROM (";
const MOVE_TAIL: &str =
    ") AS v (status, next_at, finished_at, outcome, id) WHERE d.id = v.id AND d.status = 'running'";

/// The timeline line an attempt leaves on its alert.
fn finish_line(record: &ActionRecord, finish: &Finish) -> TimelineEntry {
    attempt_entry(
        &record.decided,
        crate::sql::new_id(),
        finish.attempt.finished_at,
        finish.next == Next::Done(ActionStatus::Skipped),
        finish.timeline.clone(),
    )
}

/// An attempt's line on its action's alert, stored (`finish_line`) or made from the
/// attempt's row (`attempt_timeline_line`): `action_suppressed` when it was skipped.
fn attempt_entry(
    decided: &DecidedAction,
    id: String,
    at: DateTime<Utc>,
    skipped: bool,
    message: String,
) -> TimelineEntry {
    TimelineEntry {
        id,
        alert_id: decided.alert_id.clone(),
        at,
        kind: if skipped {
            TimelineKind::ActionSuppressed
        } else {
            TimelineKind::ActionRun
        },
        by: vakt_core::alert::PIPELINE_ACTOR.to_owned(),
        message,
        event_id: None,
    }
}

/// The rows a batch of finished attempts writes, prepared once for a bulk path: an attempt
/// row, the action's move (only from `running`, or `pending` when held) and, where the attempt
/// row does not give it back (`line_from_attempt`), a timeline line each.
pub(crate) struct FinishRows<'a> {
    items: &'a [(ActionRecord, Finish)],
    /// Per item: claimed in memory (`HeldClaims`), so its row is still `pending` and has
    /// not counted the attempt.
    held: &'a [bool],
    gives_line: Vec<bool>,
    timeline: Vec<TimelineEntry>,
}

impl<'a> FinishRows<'a> {
    pub(crate) fn new(items: &'a [(ActionRecord, Finish)], held: &'a [bool]) -> FinishRows<'a> {
        let gives_line: Vec<bool> = items
            .iter()
            .map(|(record, finish)| line_from_attempt(record, finish))
            .collect();
        let timeline = items
            .iter()
            .zip(&gives_line)
            .filter(|(_, given)| !**given)
            .map(|((record, finish), _)| finish_line(record, finish))
            .collect();
        FinishRows {
            items,
            held,
            gives_line,
            timeline,
        }
    }

    /// Each item's attempt row, with whether it gives its timeline line back.
    fn attempts(&self) -> Vec<(&'a Attempt, bool)> {
        self.items
            .iter()
            .zip(&self.gives_line)
            .map(|((_, finish), given)| (&finish.attempt, *given))
            .collect()
    }

    /// The groups whose members will be tried again, pending again: one note per group
    /// (PostgreSQL's upsert may not touch a row twice in one statement), with what the
    /// members' upserts one by one would leave (`GROUP_NOTE_CONFLICT`): the last member's
    /// action and the first one's time.
    fn retried_groups(&self) -> Vec<(&'a str, &'a str, i64)> {
        let mut retried: std::collections::BTreeMap<&str, (&str, i64)> =
            std::collections::BTreeMap::new();
        for (record, finish) in self.items {
            if let Next::Retry(at) = finish.next {
                for (key, action) in pending_groups([&record.decided]) {
                    retried
                        .entry(key)
                        .and_modify(|note| note.0 = action)
                        .or_insert((action, ms(at)));
                }
            }
        }
        retried
            .into_iter()
            .map(|(key, (action, at))| (key, action, at))
            .collect()
    }

    /// Writes the rows through sqlx, inside the caller's transaction (PostgreSQL's path):
    /// the attempts, the moves and the timeline lines each in statements of many rows, not
    /// two or three round trips per member. Claims there are never held in memory, so an
    /// action moves only from `running`.
    pub(crate) async fn write(&self, conn: &mut Conn<'_>) -> Result<(), StoreError> {
        let attempts = self.attempts();
        let head = format!("INSERT INTO action_attempts ({ATTEMPT_COLUMNS}) ");
        crate::queries::insert_rows(conn, &head, "", &attempts, |(attempt, given)| {
            attempt_row(attempt, *given)
        })
        .await?;
        crate::queries::insert_rows(
            conn,
            MOVE_HEAD,
            MOVE_TAIL,
            self.items,
            |(record, finish)| {
                let (status, next_at, finished_at) = finish_move(finish);
                [
                    Value::Text(Some(Cow::Borrowed(status.as_str()))),
                    Value::Int(next_at),
                    Value::Int(finished_at),
                    Value::Text(Some(Cow::Borrowed(&finish.attempt.detail))),
                    Value::Text(Some(Cow::Borrowed(&record.decided.id))),
                ]
            },
        )
        .await?;
        let lines: Vec<&TimelineEntry> = self.timeline.iter().collect();
        crate::queries::insert_timeline(conn, &lines).await?;
        let retried = self.retried_groups();
        let head = format!("INSERT INTO notification_groups ({GROUP_NOTE_COLUMNS}) ");
        crate::queries::insert_rows(
            conn,
            &head,
            GROUP_NOTE_CONFLICT,
            &retried,
            |(key, action, at)| group_note_row(key, action, *at),
        )
        .await
    }

    /// Writes the rows on a locked SQLite connection, inside the caller's transaction.
    pub(crate) fn write_sqlite(
        &self,
        db: &mut sqlx::sqlite::LockedSqliteHandle<'_>,
    ) -> Result<(), StoreError> {
        use crate::sql::{TIMELINE_COLUMNS, timeline_row};
        use crate::sqlite_bulk::{each, insert};
        let attempts = self.attempts();
        insert(
            db,
            "action_attempts",
            ATTEMPT_COLUMNS,
            "",
            &attempts,
            |(attempt, given)| attempt_row(attempt, *given),
        )?;
        // Only an action still claimed moves: `running` in the table, or `pending` when the
        // claim was held in memory (then the row counts the attempt here: the claimed
        // record's count, which includes it).
        let moves: Vec<(&(ActionRecord, Finish), bool)> =
            self.items.iter().zip(self.held.iter().copied()).collect();
        each(
            db,
            "UPDATE decided_actions SET status = ?1, next_at = COALESCE(?2, next_at), lease_until = NULL, \
             finished_at = ?3, outcome = ?4, attempts = ?6 WHERE id = ?5 AND status = ?7",
            &moves,
            |((record, finish), held)| {
                let (status, next_at, finished_at) = finish_move(finish);
                let claimed = if *held {
                    ActionStatus::Pending
                } else {
                    ActionStatus::Running
                };
                [
                    Value::Text(Some(Cow::Borrowed(status.as_str()))),
                    Value::Int(next_at),
                    Value::Int(finished_at),
                    Value::Text(Some(Cow::Borrowed(&finish.attempt.detail))),
                    Value::Text(Some(Cow::Borrowed(&record.decided.id))),
                    Value::Int(Some(record.attempts)),
                    Value::Text(Some(Cow::Borrowed(claimed.as_str()))),
                ]
            },
        )?;
        insert(
            db,
            "alert_timeline",
            TIMELINE_COLUMNS,
            "",
            &self.timeline,
            timeline_row,
        )?;
        let retried = self.retried_groups();
        insert(
            db,
            "notification_groups",
            GROUP_NOTE_COLUMNS,
            GROUP_NOTE_CONFLICT,
            &retried,
            |(key, action, at)| group_note_row(key, action, *at),
        )
    }
}

/// The condition of a listing by `status`: a literal, not a parameter, because SQLite's
/// planner takes the partial index of unusual statuses (`decided_actions_unusual`, schema
/// 22) only for a condition it can see implies the index's. `as_str` is one of six fixed
/// words.
pub(crate) fn status_condition(status: ActionStatus) -> String {
    format!(" AND status = '{}'", status.as_str())
}

pub(crate) async fn list_action_records(
    conn: &mut Conn<'_>,
    q: &ActionQuery,
) -> Result<Page<ActionRecord>, StoreError> {
    let mut query: Query<'_> = Query::new(format!(
        "SELECT {ACTION_SELECT} FROM decided_actions WHERE 1 = 1"
    ));
    if let Some(status) = q.status {
        query.push(status_condition(status));
    }
    filter_eq(&mut query, "action", q.action.clone());
    filter_eq(&mut query, "alert_id", q.alert_id.clone());
    fetch_page(
        conn,
        query,
        q.cursor.as_deref(),
        q.limit,
        record_from_row,
        |a| &a.decided.id,
    )
    .await
}

pub(crate) async fn get_action_record(
    conn: &mut Conn<'_>,
    id: &str,
) -> Result<Option<(ActionRecord, Vec<Attempt>)>, StoreError> {
    let row = query(format!(
        "SELECT {ACTION_SELECT} FROM decided_actions WHERE id = $1"
    ))
    .bind(id.to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let record = record_from_row(&row)?;
    let attempts = query(format!(
        "SELECT {ATTEMPT_SELECT} FROM action_attempts WHERE action_id = $1 ORDER BY attempt, id"
    ))
    .bind(id.to_owned())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(attempt_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((record, attempts)))
}

pub(crate) async fn list_alert_action_records(
    conn: &mut Conn<'_>,
    alert_id: &str,
) -> Result<Vec<ActionRecord>, StoreError> {
    query(format!(
        "SELECT {ACTION_SELECT} FROM decided_actions WHERE alert_id = $1 ORDER BY id"
    ))
    .bind(alert_id.to_owned())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(record_from_row)
    .collect()
}

/// Puts a failed or skipped action back to pending, due now.
pub(crate) async fn retry_in(
    conn: &mut Conn<'_>,
    id: &str,
    by: &str,
    now_ms: i64,
) -> Result<Option<ActionRecord>, StoreError> {
    let row = query(format!(
        "UPDATE decided_actions SET status = 'pending', next_at = $1, finished_at = NULL, \
         outcome = $2 WHERE id = $3 AND status IN ('failed', 'skipped') RETURNING {ACTION_SELECT}"
    ))
    .bind(now_ms)
    .bind(format!("retry requested by {by}"))
    .bind(id.to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let record = record_from_row(&row)?;
    note_groups(conn, &pending_groups([&record.decided]), now_ms).await?;
    insert_timeline(
        conn,
        &[&TimelineEntry {
            id: crate::sql::new_id(),
            alert_id: record.decided.alert_id.clone(),
            at: time(now_ms)?,
            kind: TimelineKind::ActionRun,
            by: by.to_owned(),
            message: format!("action {} retried by {by}", record.decided.action),
            event_id: None,
        }],
    )
    .await?;
    Ok(Some(record))
}

/// When this action last succeeded for this alert.
pub(crate) async fn last_success(
    conn: &mut Conn<'_>,
    action: &str,
    alert_id: &str,
) -> Result<Option<i64>, StoreError> {
    let row = query(
        "SELECT MAX(finished_at) AS at FROM decided_actions WHERE action = $1 AND alert_id = $2 AND status = 'succeeded'",
    )
    .bind(action.to_owned())
    .bind(alert_id.to_owned())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("at")?)
}

/// Takes the pending members of groups, in `keys` order, in the caller's transaction: up to
/// `limit` of each, and no further group once `budget` members are taken (the first group is
/// always taken). Each group taken is recorded as sent at `now_ms` when it had members.
/// Returns one list per group taken: as many as a prefix of `keys`.
///
/// One transaction for many groups, not one each: a group's members are spread over the
/// whole range of `decided_actions` (every group's members arrive interleaved), so each
/// group's claim rewrites nearly one table page per member; claiming the groups together
/// writes each page once.
pub(crate) async fn claim_groups(
    conn: &mut Conn<'_>,
    keys: &[&str],
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
    budget: usize,
) -> Result<Vec<Vec<ActionRecord>>, StoreError> {
    let mut taken = 0;
    let mut groups = Vec::with_capacity(keys.len());
    for key in keys {
        if taken >= budget && !groups.is_empty() {
            break;
        }
        let claimed = claim_group_members(conn, key, lease_until_ms, limit).await?;
        let sent = (!claimed.is_empty()).then_some(now_ms);
        write_group_sent(conn, key, sent, now_ms).await?;
        taken += claimed.len();
        groups.push(claimed);
    }
    Ok(groups)
}

/// `claim_groups` for a store with one dispatching process (SQLite): the members are read,
/// not marked `running`, and the claim is held in that process's memory (`HeldClaims`,
/// whose ids `held` are skipped); only the groups' send times are written. A group's
/// members lie spread over `decided_actions`, so marking them rewrote nearly a table page
/// per member, and the finish rewrote it again.
pub(crate) fn claim_groups_held(
    db: &mut sqlx::sqlite::LockedSqliteHandle<'_>,
    keys: &[&str],
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
    budget: usize,
    held: &std::collections::HashSet<String>,
) -> Result<Vec<Vec<ActionRecord>>, StoreError> {
    use crate::sql::Value;
    use crate::sqlite_bulk::{Locked, Statement};
    let lease_until = time(lease_until_ms)?;
    let want = usize::try_from(limit).unwrap_or(usize::MAX);
    // Enough rows that the held ones (normally none) cannot crowd out `limit` free ones.
    let fetch = i64::from(limit).saturating_add(i64::try_from(held.len()).unwrap_or(i64::MAX));
    // Read in place on the locked connection, each statement prepared once for all groups.
    let numbered = |sql: &str| sql.replace('$', "?");
    let sql = [
        numbered(&group_members_select(&crate::db::sqlite_indexed_by(
            "decided_actions_groups",
        ))),
        numbered(MORE_MEMBERS_SQL),
        numbered(CLAIM_SENT_SQL),
    ];
    let locked = Locked::new(db);
    let mut read = Statement::prepare_in(&locked, &sql[0])?;
    let mut ask_more = Statement::prepare_in(&locked, &sql[1])?;
    let mut mark_sent = Statement::prepare_in(&locked, &sql[2])?;
    let mut taken = 0;
    let mut groups = Vec::with_capacity(keys.len());
    for key in keys {
        if taken >= budget && !groups.is_empty() {
            break;
        }
        let mut members = Vec::with_capacity(want.min(1024));
        let mut more = false;
        let mut rows = 0;
        let mut last = None;
        let key_value = || Value::Text(Some(Cow::Borrowed(*key)));
        read.query([key_value(), Value::Int(Some(fetch))], |row| {
            rows += 1;
            let id = row.required_text(0, "decided_actions.id")?;
            if rows == fetch {
                last = Some(id.to_owned());
            }
            if more || held.contains(id) {
                return Ok(());
            }
            if members.len() == want {
                more = true;
                return Ok(());
            }
            let mut record = record_from_row(row)?;
            record.status = ActionStatus::Running;
            record.attempts += 1;
            record.lease_until = Some(lease_until);
            members.push(record);
            Ok(())
        })?;
        // The read stopped at its limit: members beyond it wait for the next message.
        if !more && rows == fetch {
            let after = last.as_deref().unwrap_or_default();
            ask_more.query(
                [key_value(), Value::Text(Some(Cow::Borrowed(after)))],
                |row| {
                    more = row.column_int(0).is_some_and(|n| n != 0);
                    Ok(())
                },
            )?;
        }
        let sent = (!members.is_empty()).then_some(now_ms);
        mark_sent.run([
            key_value(),
            Value::Int(sent),
            Value::Int(Some(i64::from(more))),
            Value::Int(Some(now_ms)),
        ])?;
        taken += members.len();
        groups.push(members);
    }
    Ok(groups)
}

/// A group's claim went out at `$2` (or none did, NULL); its pending mark stays while `$3`
/// says members are left (from `$4` if it had none).
const CLAIM_SENT_SQL: &str = "UPDATE notification_groups SET last_sent_at = COALESCE($2, last_sent_at), \
     first_pending_at = CASE WHEN $3 = 1 THEN COALESCE($2, first_pending_at, $4) ELSE NULL END \
     WHERE group_key = $1";

/// Group members claimed in memory by the one process that dispatches (`claim_groups_held`),
/// by action id: until its attempt is recorded (`take`) or its lease runs out (`expired`,
/// then taken back by `recover_held`). At most what the claims in flight hold: one round's
/// claim, normally. Only what recovery needs is held (the rest is in the member's row, which
/// stays `pending`): a copy of each claimed record held 16,384 members' records twice.
#[derive(Default)]
pub(crate) struct HeldClaims(std::sync::Mutex<std::collections::HashMap<String, Held>>);

/// What a held claim needs to be taken back: the attempt it was claimed for, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) attempts: i64,
    pub(crate) lease_until_ms: i64,
}

impl Held {
    fn of(record: &ActionRecord) -> Held {
        Held {
            attempts: record.attempts,
            // A claim always has a lease; without one it is taken back at the next recovery.
            lease_until_ms: record.lease_until.map_or(i64::MIN, ms),
        }
    }
}

impl HeldClaims {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Held>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ids held now (for the next claim to skip).
    pub(crate) fn ids(&self) -> std::collections::HashSet<String> {
        self.lock().keys().cloned().collect()
    }

    pub(crate) fn hold(&self, groups: &[Vec<ActionRecord>]) {
        let mut held = self.lock();
        for record in groups.iter().flatten() {
            held.insert(record.decided.id.clone(), Held::of(record));
        }
    }

    /// Which of the finished items were held, released from the hold (their rows are about
    /// to be written; `restore` puts them back if the write fails).
    pub(crate) fn take(&self, items: &[(ActionRecord, Finish)]) -> Vec<bool> {
        let mut held = self.lock();
        items
            .iter()
            .map(|(record, _)| held.remove(&record.decided.id).is_some())
            .collect()
    }

    /// Holds again what `take` released, for a write that failed.
    pub(crate) fn restore(&self, items: &[(ActionRecord, Finish)], taken: &[bool]) {
        let mut held = self.lock();
        for ((record, _), was) in items.iter().zip(taken) {
            if *was {
                held.insert(record.decided.id.clone(), Held::of(record));
            }
        }
    }

    /// Releases the claims whose lease ends before `before_ms`.
    pub(crate) fn expired(&self, before_ms: i64) -> Vec<(String, Held)> {
        let mut held = self.lock();
        let ids: Vec<String> = held
            .iter()
            .filter(|(_, h)| h.lease_until_ms < before_ms)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| held.remove(&id).map(|h| (id, h)))
            .collect()
    }

    /// Holds again what `expired` released, for a recovery that failed.
    pub(crate) fn hold_again(&self, expired: Vec<(String, Held)>) {
        self.lock().extend(expired);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ActionRecord {
        ActionRecord {
            decided: DecidedAction {
                id: crate::sql::new_id(),
                action: "hook".into(),
                kind: "webhook",
                alert_id: "a1".into(),
                event_id: "e1".into(),
                purpose: vakt_core::pipeline::Purpose::Trigger,
                reason: "rule r".into(),
                suppressed_by: None,
                group_key: None,
                decided_at: Utc::now(),
                target: None,
            },
            status: ActionStatus::Running,
            attempts: 2,
            next_at: None,
            lease_until: None,
            finished_at: None,
            outcome: None,
        }
    }

    fn finished(record: &ActionRecord, outcome: &str, next: Next, line: &str) -> Finish {
        Finish {
            attempt: Attempt {
                id: crate::sql::new_id(),
                action_id: record.decided.id.clone(),
                attempt: record.attempts,
                started_at: Utc::now(),
                finished_at: Utc::now(),
                outcome: outcome.into(),
                detail: "POST answered 200 OK".into(),
                output: None,
            },
            next,
            timeline: line.into(),
        }
    }

    /// A line is left to the attempt's row only when it is exactly the line the row makes:
    /// not one that says more or less, nor one whose kind the row would get wrong.
    #[test]
    fn only_a_line_the_attempt_makes_again_is_left_to_it() {
        let r = record();
        let line = r
            .decided
            .attempt_line(2, "succeeded", "POST answered 200 OK");
        assert_eq!(
            line,
            "action hook (webhook, trigger) attempt 2: succeeded: POST answered 200 OK"
        );
        let done = Next::Done(ActionStatus::Succeeded);
        assert!(line_from_attempt(
            &r,
            &finished(&r, "succeeded", done, &line)
        ));
        let longer = format!("{line}\nexit 0: output");
        assert!(!line_from_attempt(
            &r,
            &finished(&r, "succeeded", done, &longer)
        ));
        let shorter = &line[..line.len() - 1];
        assert!(!line_from_attempt(
            &r,
            &finished(&r, "succeeded", done, shorter)
        ));
        assert!(!line_from_attempt(&r, &finished(&r, "failed", done, &line)));
        let skipped = r.decided.attempt_line(2, "skipped", "POST answered 200 OK");
        assert!(line_from_attempt(
            &r,
            &finished(&r, "skipped", Next::Done(ActionStatus::Skipped), &skipped)
        ));
        // A skipped outcome that does not end the action would be made as the wrong kind.
        assert!(!line_from_attempt(
            &r,
            &finished(&r, "skipped", Next::Retry(Utc::now()), &skipped)
        ));
    }
}
