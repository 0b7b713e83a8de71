//! Retention: removing what has been kept long enough, one small batch per transaction, so
//! the writer is never held for long and ingest goes on between batches.
//!
//! Every kind is removed oldest first by an indexed range: ids are ULIDs (they sort by the
//! time they were made), so "made before T" is `id < ulid(T, 0)` on the primary key.

use chrono::{DateTime, Utc};

use crate::db::{Conn, query};
use crate::sql::Value;
use crate::sql::ms;
use crate::{PruneKind, StoreError, TableStats};

/// The smallest id made at or after `at`: ids below it were made before.
pub(crate) fn id_before(at: DateTime<Utc>) -> String {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    ulid::Ulid::from_parts(millis, 0).to_string()
}

/// What one batch removed: the rows of the kind itself, and the traces and alerts that
/// went, for the writer's caches.
#[derive(Default)]
pub(crate) struct Pruned {
    pub rows: u64,
    pub traces: Vec<String>,
    pub alerts: Vec<String>,
}

/// Removes at most `limit` items of `kind` older than `before`, with what belongs to them.
pub(crate) async fn prune(
    conn: &mut Conn<'_>,
    kind: PruneKind,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<Pruned, StoreError> {
    let limit = i64::from(limit.max(1));
    match kind {
        PruneKind::Events => prune_events(conn, before, limit).await,
        PruneKind::Alerts => prune_alerts(conn, before, limit).await,
        PruneKind::Incidents => prune_incidents(conn, before, limit).await,
        PruneKind::Silences => {
            oldest(
                conn,
                "DELETE FROM silences WHERE id IN \
                 (SELECT id FROM silences WHERE ends_at < $1 ORDER BY ends_at LIMIT $2)",
                ms(before).into(),
                limit,
            )
            .await
        }
        PruneKind::Audit => {
            oldest(
                conn,
                "DELETE FROM audit_log WHERE id IN \
                 (SELECT id FROM audit_log WHERE id < $1 ORDER BY id LIMIT $2)",
                id_before(before).into(),
                limit,
            )
            .await
        }
        PruneKind::Sessions => {
            oldest(
                conn,
                "DELETE FROM sessions WHERE hash IN \
                 (SELECT hash FROM sessions WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
                ms(before).into(),
                limit,
            )
            .await
        }
    }
}

/// Runs a `DELETE` of the oldest rows (`$1` the cutoff, `$2` the limit).
async fn oldest(
    conn: &mut Conn<'_>,
    sql: &'static str,
    cutoff: Value<'_>,
    limit: i64,
) -> Result<Pruned, StoreError> {
    let rows = query(sql)
        .bind(cutoff)
        .bind(limit)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(Pruned {
        rows,
        ..Pruned::default()
    })
}

/// Runs `head` + the ids as a placeholder list + `tail`; returns the rows it changed.
async fn with_ids(
    conn: &mut Conn<'_>,
    head: String,
    tail: &str,
    ids: &[String],
) -> Result<u64, StoreError> {
    let mut statement = query(head);
    let mut list = statement.separated(", ");
    for id in ids {
        list.push_bind(id.as_str());
    }
    statement.push(tail);
    Ok(statement.execute(&mut *conn).await?.rows_affected())
}

/// Events received before `before`, then the traces no remaining event uses.
async fn prune_events(
    conn: &mut Conn<'_>,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Pruned, StoreError> {
    let rows = query(
        "DELETE FROM events WHERE id IN \
         (SELECT id FROM events WHERE id < $1 ORDER BY id LIMIT $2) RETURNING id, trace_id",
    )
    .bind(id_before(before))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut traces: Vec<String> = Vec::with_capacity(rows.len());
    let mut newest_removed: Option<String> = None;
    for row in &rows {
        traces.push(row.try_get::<String>("trace_id")?);
        let id = row.try_get::<String>("id")?;
        if newest_removed.as_ref().is_none_or(|newest| id > *newest) {
            newest_removed = Some(id);
        }
    }
    traces.sort_unstable();
    traces.dedup();
    // Which of those traces no event uses any more. The events go oldest first, so on
    // SQLite a trace whose newest event (schema 20) is among or before them is unused;
    // PostgreSQL asks its index of events by trace.
    let (unused, newest_bound) = match conn {
        Conn::Sqlite(_) => (
            ") AND (last_event_id IS NULL OR last_event_id <= ",
            Some(newest_removed.unwrap_or_default()),
        ),
        Conn::Postgres(_) => (
            ") AND NOT EXISTS (SELECT 1 FROM events WHERE events.trace_id = traces.trace_id",
            None,
        ),
    };
    let mut removed = Vec::new();
    for chunk in traces.chunks(500) {
        let mut delete = query("DELETE FROM traces WHERE trace_id IN (");
        let mut ids = delete.separated(", ");
        for id in chunk {
            ids.push_bind(id.as_str());
        }
        delete.push(unused);
        if let Some(newest) = &newest_bound {
            delete.push_bind(newest.clone());
        }
        delete.push(") RETURNING trace_id");
        for row in delete.fetch_all(&mut *conn).await? {
            removed.push(row.try_get::<String>("trace_id")?);
        }
    }
    Ok(Pruned {
        rows: u64::try_from(rows.len()).unwrap_or(u64::MAX),
        traces: removed,
        alerts: Vec::new(),
    })
}

/// Alerts resolved before `before` with nothing still to send, and their timeline, decided
/// actions, attempts, escalation and incident links.
async fn prune_alerts(
    conn: &mut Conn<'_>,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Pruned, StoreError> {
    // An alert resolved before `before` was made before it: the id range bounds the scan.
    let rows = query(
        "SELECT id FROM alerts WHERE status = 'resolved' AND id < $1 AND resolved_at < $2 \
         AND NOT EXISTS (SELECT 1 FROM decided_actions d WHERE d.alert_id = alerts.id \
         AND d.status IN ('pending', 'running')) ORDER BY id LIMIT $3",
    )
    .bind(id_before(before))
    .bind(ms(before))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<String> = rows
        .iter()
        .map(|row| row.try_get::<String>("id"))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(Pruned::default());
    }
    let statements = [
        (
            "DELETE FROM action_attempts WHERE action_id IN \
             (SELECT id FROM decided_actions WHERE alert_id IN (",
            "))",
        ),
        ("DELETE FROM decided_actions WHERE alert_id IN (", ")"),
        ("DELETE FROM alert_timeline WHERE alert_id IN (", ")"),
        ("DELETE FROM escalations WHERE alert_id IN (", ")"),
        ("DELETE FROM incident_alerts WHERE alert_id IN (", ")"),
        ("DELETE FROM alerts WHERE id IN (", ")"),
    ];
    let mut removed = 0;
    for (head, tail) in statements {
        removed = with_ids(conn, head.to_owned(), tail, &ids).await?;
    }
    Ok(Pruned {
        rows: removed,
        traces: Vec::new(),
        alerts: ids,
    })
}

/// Incidents closed before `before`, with their timeline and alert links.
async fn prune_incidents(
    conn: &mut Conn<'_>,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Pruned, StoreError> {
    let rows = query(
        "SELECT id FROM incidents WHERE closed_at IS NOT NULL AND closed_at < $1 \
         ORDER BY closed_at LIMIT $2",
    )
    .bind(ms(before))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<String> = rows
        .iter()
        .map(|row| row.try_get::<String>("id"))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(Pruned::default());
    }
    let mut removed = 0;
    for table in ["incident_timeline", "incident_alerts", "incidents"] {
        let column = if table == "incidents" {
            "id"
        } else {
            "incident_id"
        };
        let head = format!("DELETE FROM {table} WHERE {column} IN (");
        removed = with_ids(conn, head, ")", &ids).await?;
    }
    Ok(Pruned {
        rows: removed,
        ..Pruned::default()
    })
}

/// The tables `vakt db stats` reports, in the order it prints them.
pub(crate) const TABLES: &[&str] = &[
    "events",
    "traces",
    "alerts",
    "alert_timeline",
    "decided_actions",
    "action_attempts",
    "escalations",
    "incidents",
    "incident_timeline",
    "incident_alerts",
    "silences",
    "heartbeats",
    "schedule_overrides",
    "throttle_windows",
    "notification_groups",
    "api_tokens",
    "audit_log",
    "sessions",
    "user_passwords",
];

/// Rows per table (bytes are the backend's to add).
pub(crate) async fn row_counts(conn: &mut Conn<'_>) -> Result<Vec<TableStats>, StoreError> {
    let mut stats = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let row = query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&mut *conn)
            .await?;
        stats.push(TableStats {
            table: (*table).to_owned(),
            rows: row.try_get("n")?,
            bytes: None,
        });
    }
    Ok(stats)
}
