//! The queries both backends run: correlating and writing a batch, reading events, alerts
//! and timelines, operator requests, silences, heartbeats, overrides and throttles. Each is
//! a plain function over [`Conn`]; what differs between SQLite and PostgreSQL is asked of
//! the connection (`crate::db`).

use crate::db::{Columns, Conn, Query, Row, query};
use crate::escalate::{after_batch, after_operate, open_batch_incidents};
use crate::sql::{
    ACTION_COLUMNS, ALERT_COLUMNS, ALERT_REPEAT_UPDATE, ALERT_UPDATE, BINDS_MAX, EVENT_COLUMNS,
    EVENT_REPLAY_SELECT, EVENT_SELECT, TIMELINE_COLUMNS, chunk_rows, from_json, json, ms, opt_time,
    parsed, time,
};
use crate::{AlertQuery, EventQuery, Page, StoreError};
use chrono::{DateTime, Utc};
use vakt_core::alert::TimelineKind;
use vakt_core::pipeline::{DecidedAction, EventRecord};
use vakt_core::{Alert, AlertStatus, Category, Event, Fingerprint, Severity, TimelineEntry};

/// An alert from a row of `ALERT_COLUMNS` (by name or, read in place, by position).
pub(crate) fn alert_from_row(row: &impl Columns) -> Result<Alert, StoreError> {
    Ok(Alert {
        id: row.required_text(0, "id")?.to_owned(),
        fingerprint: Fingerprint::from_stored(row.required_text(1, "fingerprint")?.to_owned()),
        status: parsed(
            "status",
            AlertStatus::parse(row.required_text(2, "status")?),
        )?,
        category: parsed(
            "category",
            Category::parse(row.required_text(3, "category")?),
        )?,
        severity: parsed(
            "severity",
            Severity::parse(row.required_text(4, "severity")?),
        )?,
        severity_max: parsed(
            "severity_max",
            Severity::parse(row.required_text(5, "severity_max")?),
        )?,
        source: row.required_text(6, "source")?.to_owned(),
        resource: row.required_text(7, "resource")?.to_owned(),
        check: row.required_text(8, "check_name")?.to_owned(),
        service: row.owned_text(9, "service")?,
        environment: row.owned_text(10, "environment")?,
        summary: row.required_text(11, "summary")?.to_owned(),
        labels: from_json("labels", row.required_text(12, "labels")?)?,
        count: row.required_int(13, "event_count")?,
        first_seen: time(row.required_int(14, "first_seen")?)?,
        last_seen: time(row.required_int(15, "last_seen")?)?,
        last_event_id: row.required_text(16, "last_event_id")?.to_owned(),
        acknowledged_by: row.owned_text(17, "acknowledged_by")?,
        acknowledged_at: opt_time(row.int(18, "acknowledged_at")?)?,
        assignee: row.owned_text(19, "assignee")?,
        resolved_by: row.owned_text(20, "resolved_by")?,
        resolved_at: opt_time(row.int(21, "resolved_at")?)?,
        incident_id: row.owned_text(22, "incident_id")?,
        expires_at: opt_time(row.int(23, "expires_at")?)?,
        handling: from_json("handling", row.required_text(24, "handling")?)?,
    })
}

/// An event from a row of `EVENT_SELECT` or `EVENT_REPLAY_SELECT` (the same columns; the
/// replay's trace is an empty list), by name or, read in place, by position.
pub(crate) fn event_from_row(row: &impl Columns) -> Result<EventRecord, StoreError> {
    Ok(EventRecord {
        id: row.required_text(0, "id")?.to_owned(),
        event: Event {
            received_at: time(row.required_int(1, "received_at")?)?,
            occurred_at: time(row.required_int(2, "occurred_at")?)?,
            source: row.required_text(3, "source")?.to_owned(),
            resource: row.required_text(4, "resource")?.to_owned(),
            check: row.required_text(5, "check_name")?.to_owned(),
            severity: parsed(
                "severity",
                Severity::parse(row.required_text(6, "severity")?),
            )?,
            service: row.owned_text(8, "service")?,
            environment: row.owned_text(9, "environment")?,
            summary: row.required_text(10, "summary")?.to_owned(),
            sent_fingerprint: row.owned_text(12, "sent_fingerprint")?,
            labels: from_json("labels", row.required_text(15, "labels")?)?,
            metrics: from_json("metrics", row.required_text(16, "metrics")?)?,
            details: from_json("details", row.required_text(17, "details")?)?,
            idempotency_key: row.owned_text(18, "idempotency_key")?,
            expires_at: None,
            expiry: false,
            identity_labels: Vec::new(),
        },
        received: row
            .text(19, "received")?
            .map(|text| from_json("received", text))
            .transpose()?,
        category: parsed(
            "category",
            Category::parse(row.required_text(7, "category")?),
        )?,
        fingerprint: Fingerprint::from_stored(row.required_text(11, "fingerprint")?.to_owned()),
        alert_id: row.owned_text(13, "alert_id")?,
        dropped: row.flag(14, "dropped")?,
        trace: from_json("trace", row.required_text(20, "trace")?)?,
    })
}

pub(crate) fn timeline_from_row(row: &Row) -> Result<TimelineEntry, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(TimelineEntry {
        id: row.try_get("id")?,
        alert_id: row.try_get("alert_id")?,
        at: time(row.try_get("at")?)?,
        kind: TimelineKind::parse(&kind).ok_or_else(|| {
            StoreError::Corrupt(format!("column kind: unknown timeline kind {kind:?}"))
        })?,
        by: row.try_get("actor")?,
        message: row.try_get("message")?,
        event_id: row.try_get("event_id")?,
    })
}

/// Alerts of these fingerprints that can still take events, locked for the transaction.
pub(crate) async fn load_candidates(
    conn: &mut Conn<'_>,
    fingerprints: &[&Fingerprint],
    resolved_since_ms: i64,
) -> Result<Vec<Alert>, StoreError> {
    let mut alerts = Vec::new();
    for chunk in fingerprints.chunks(chunk_rows(1)) {
        let mut query: Query<'_> = Query::new(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE fingerprint IN ("
        ));
        let mut list = query.separated(", ");
        for fingerprint in chunk {
            list.push_bind(fingerprint.as_str().to_owned());
        }
        query.push(") AND (status <> 'resolved' OR resolved_at >= ");
        query.push_bind(resolved_since_ms);
        query.push(")");
        query.push(conn.lock());
        for row in query.fetch_all(&mut *conn).await? {
            alerts.push(alert_from_row(&row)?);
        }
    }
    Ok(alerts)
}

/// Inserts rows, `chunk_rows` per statement; `tail` follows the VALUES.
pub(crate) async fn insert_rows<T, const N: usize>(
    conn: &mut Conn<'_>,
    head: &str,
    tail: &str,
    items: &[T],
    to_row: impl for<'a> Fn(&'a T) -> [crate::sql::Value<'a>; N],
) -> Result<(), StoreError> {
    for chunk in items.chunks(chunk_rows(N)) {
        let mut query: Query<'_> = Query::new(head.to_owned());
        query.push_values(chunk, &to_row);
        query.push(tail);
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

pub(crate) async fn insert_events(
    conn: &mut Conn<'_>,
    records: &[(&EventRecord, &str)],
) -> Result<(), StoreError> {
    let head = format!("INSERT INTO events ({EVENT_COLUMNS}) ");
    insert_rows(conn, &head, "", records, |(record, trace_id)| {
        crate::sql::event_row(record, trace_id, None)
    })
    .await
}

pub(crate) async fn insert_traces(
    conn: &mut Conn<'_>,
    traces: &[&crate::sql::InternedTrace],
) -> Result<(), StoreError> {
    let head = format!("INSERT INTO traces ({}) ", crate::sql::TRACE_COLUMNS);
    insert_rows(conn, &head, crate::sql::TRACE_CONFLICT, traces, |trace| {
        crate::sql::trace_row(trace)
    })
    .await
}

pub(crate) async fn upsert_alerts(
    conn: &mut Conn<'_>,
    alerts: &[&Alert],
) -> Result<(), StoreError> {
    write_alerts(conn, alerts, ALERT_UPDATE).await
}

/// Inserts alerts, or on an existing id sets the columns `update` names.
pub(crate) async fn write_alerts(
    conn: &mut Conn<'_>,
    alerts: &[&Alert],
    update: &str,
) -> Result<(), StoreError> {
    let head = format!("INSERT INTO alerts ({ALERT_COLUMNS}) ");
    let tail = crate::sql::alert_conflict(update);
    insert_rows(conn, &head, &tail, alerts, |alert| {
        crate::sql::alert_row(alert, None)
    })
    .await
}

/// Stores timeline lines, but not decisions' lines: those are given back from the decided
/// actions (`list_timeline`).
pub(crate) async fn insert_timeline(
    conn: &mut Conn<'_>,
    entries: &[&TimelineEntry],
) -> Result<(), StoreError> {
    let head = format!("INSERT INTO alert_timeline ({TIMELINE_COLUMNS}) ");
    let stored: Vec<&TimelineEntry> = entries
        .iter()
        .copied()
        .filter(|entry| !entry.is_decision())
        .collect();
    insert_rows(conn, &head, "", &stored, |entry| {
        crate::sql::timeline_row(entry)
    })
    .await
}

pub(crate) async fn insert_actions(
    conn: &mut Conn<'_>,
    actions: &[&DecidedAction],
    decided_at_ms: i64,
) -> Result<(), StoreError> {
    let head = format!("INSERT INTO decided_actions ({ACTION_COLUMNS}) ");
    insert_rows(conn, &head, "", actions, |action| {
        crate::sql::action_row(action, decided_at_ms)
    })
    .await?;
    let groups = crate::dispatch::pending_groups(actions.iter().copied());
    crate::dispatch::note_groups(conn, &groups, decided_at_ms).await
}

/// Writes a batch's rows with the multi-row statements above (the bulk path a
/// backend uses unless it has a faster one of its own).
pub(crate) async fn write_rows_generic(
    conn: &mut Conn<'_>,
    rows: &crate::sql::BatchRows<'_>,
) -> Result<(), StoreError> {
    insert_traces(conn, &rows.traces).await?;
    insert_events(conn, &rows.events).await?;
    let head = format!(
        "INSERT INTO alerts ({}) ",
        crate::sql::alert_opened_columns()
    );
    let tail = crate::sql::alert_conflict(ALERT_UPDATE);
    insert_rows(conn, &head, &tail, &rows.writes.opened, |(alert, line)| {
        crate::sql::opened_row(alert, line, None)
    })
    .await?;
    upsert_alerts(conn, &rows.writes.alerts).await?;
    write_alerts(conn, &rows.writes.repeats, ALERT_REPEAT_UPDATE).await?;
    insert_timeline(conn, &rows.writes.timeline).await?;
    insert_actions(conn, &rows.writes.actions, rows.decided_at_ms).await?;
    let head = format!("INSERT INTO event_rollup ({}) ", crate::sql::ROLLUP_COLUMNS);
    insert_rows(
        conn,
        &head,
        crate::sql::ROLLUP_CONFLICT,
        &rows.rollup,
        |row| crate::sql::rollup_row(row),
    )
    .await
}

/// The alerts of `fingerprints` that new events may land on (active, or resolved
/// since `resolved_since_ms`), keyed by fingerprint, locked for the transaction.
pub(crate) async fn load_current(
    conn: &mut Conn<'_>,
    fingerprints: &[&Fingerprint],
    resolved_since_ms: i64,
) -> Result<std::collections::HashMap<Fingerprint, Alert>, StoreError> {
    let candidates = load_candidates(conn, fingerprints, resolved_since_ms).await?;
    Ok(crate::sql::current_alerts(candidates))
}

/// The fingerprint, id and resolution time of every alert new events may land on, without
/// the rest of the alert; `None` when there are more than `max`.
#[allow(clippy::type_complexity)]
pub(crate) async fn load_known(
    conn: &mut Conn<'_>,
    resolved_since_ms: i64,
    max: usize,
) -> Result<Option<Vec<(Fingerprint, String, Option<DateTime<Utc>>)>>, StoreError> {
    let rows = query(
        "SELECT fingerprint, id, status, resolved_at FROM alerts \
         WHERE status <> 'resolved' OR resolved_at >= $1 LIMIT $2",
    )
    .bind(resolved_since_ms)
    .bind(i64::try_from(max.saturating_add(1)).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    if rows.len() > max {
        return Ok(None);
    }
    rows.iter()
        .map(|row| {
            let status = parsed("status", AlertStatus::parse(row.try_get("status")?))?;
            let resolved_at =
                opt_time(row.try_get("resolved_at")?)?.filter(|_| !status.is_active());
            Ok((
                Fingerprint::from_stored(row.try_get("fingerprint")?),
                row.try_get("id")?,
                resolved_at,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()
        .map(Some)
}

/// Every alert new events may land on, read page by page; `None` when there are more
/// than `max` (the caller then reads them as batches need them).
pub(crate) async fn load_all_current(
    conn: &mut Conn<'_>,
    resolved_since_ms: i64,
    max: usize,
) -> Result<Option<std::collections::HashMap<Fingerprint, Alert>>, StoreError> {
    const PAGE: i64 = 10_000;
    let count: i64 =
        query("SELECT COUNT(*) AS n FROM alerts WHERE status <> 'resolved' OR resolved_at >= $1")
            .bind(resolved_since_ms)
            .fetch_one(&mut *conn)
            .await?
            .try_get("n")?;
    if usize::try_from(count).unwrap_or(usize::MAX) > max {
        return Ok(None);
    }
    let mut all = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut after = String::new();
    loop {
        let rows = query(format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE (status <> 'resolved' OR resolved_at >= $1) AND id > $2 ORDER BY id LIMIT {PAGE}"
        ))
        .bind(resolved_since_ms)
        .bind(after.clone())
        .fetch_all(&mut *conn)
        .await?;
        let last = rows.len() < usize::try_from(PAGE).unwrap_or(0);
        for row in &rows {
            all.push(alert_from_row(row)?);
        }
        match all.last() {
            Some(alert) if !last => after = alert.id.clone(),
            _ => break,
        }
    }
    Ok(Some(crate::sql::current_alerts(all)))
}

/// Correlates a batch against `current` and writes everything inside the caller's
/// transaction. Returns the outcomes and the ids of traces it stored.
/// The ids of events stored under these idempotency keys (key -> id).
pub(crate) async fn stored_keys(
    conn: &mut Conn<'_>,
    keys: &[&str],
) -> Result<std::collections::HashMap<String, String>, StoreError> {
    let mut found = std::collections::HashMap::new();
    for chunk in keys.chunks(BINDS_MAX) {
        let mut query: Query<'_> =
            Query::new("SELECT idempotency_key, id FROM events WHERE idempotency_key IN (");
        let mut list = query.separated(", ");
        for key in chunk {
            list.push_bind(*key);
        }
        query.push(")");
        for row in query.fetch_all(&mut *conn).await? {
            found.insert(row.try_get("idempotency_key")?, row.try_get("id")?);
        }
    }
    Ok(found)
}

/// `write_unique` for a batch whose events may repeat stored ones (idempotency
/// keys): repeats are answered with the stored event's id and not processed.
pub(crate) async fn write_batch(
    conn: &mut Conn<'_>,
    pipeline: &vakt_core::Pipeline,
    silences: &vakt_core::silence::ActiveSilences,
    batch: Vec<vakt_core::Prepared>,
    event_ids: &[String],
    current: std::collections::HashMap<Fingerprint, Alert>,
    known: &mut crate::sql::KnownTraces,
) -> Result<(Vec<vakt_core::Correlated>, Vec<String>), StoreError> {
    let keys: Vec<&str> = batch
        .iter()
        .filter_map(|p| p.event.idempotency_key.as_deref())
        .collect();
    if keys.is_empty() {
        return write_unique(conn, pipeline, silences, batch, event_ids, current, known).await;
    }
    let stored = stored_keys(conn, &keys).await?;
    drop(keys);
    let mut split = crate::sql::dedupe(batch, event_ids, stored);
    let kept = std::mem::take(&mut split.kept);
    let kept_ids = std::mem::take(&mut split.kept_ids);
    let (outcomes, traces) =
        write_unique(conn, pipeline, silences, kept, &kept_ids, current, known).await?;
    Ok((split.merge(outcomes), traces))
}

/// Correlates a batch of new events against `current` and writes everything inside
/// the caller's transaction. Returns the outcomes and the ids of traces it stored.
pub(crate) async fn write_unique(
    conn: &mut Conn<'_>,
    pipeline: &vakt_core::Pipeline,
    silences: &vakt_core::silence::ActiveSilences,
    batch: Vec<vakt_core::Prepared>,
    event_ids: &[String],
    current: std::collections::HashMap<Fingerprint, Alert>,
    known: &mut crate::sql::KnownTraces,
) -> Result<(Vec<vakt_core::Correlated>, Vec<String>), StoreError> {
    if batch.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut outcomes = crate::sql::correlate_batch(pipeline, silences, batch, event_ids, current);
    let stored = write_correlated(conn, pipeline, &mut outcomes, known).await?;
    Ok((outcomes, stored))
}

/// Writes correlated outcomes inside the caller's transaction: opens or joins the incidents
/// they ask for, writes their rows, then starts and ends escalations. Returns the ids of the
/// traces it stored.
pub(crate) async fn write_correlated(
    conn: &mut Conn<'_>,
    pipeline: &vakt_core::Pipeline,
    outcomes: &mut [vakt_core::Correlated],
    known: &mut crate::sql::KnownTraces,
) -> Result<Vec<String>, StoreError> {
    if outcomes.iter().any(|o| o.incident.is_some()) {
        open_batch_incidents(conn, pipeline, outcomes).await?;
    }
    let traces = intern_all(outcomes, known);
    let rows = batch_rows(outcomes, &traces, known, &crate::dispatch::Claimed::NONE);
    conn.write_rows(&rows).await?;
    let stored = rows.traces.iter().map(|t| t.id.clone()).collect();
    drop(rows);
    after_batch(conn, pipeline, outcomes, chrono::Utc::now()).await?;
    Ok(stored)
}

/// Outcomes that need nothing but their own rows (no incident, no escalation: see
/// `escalate::batch_needs_database`) as one journal record, and the ids of the new traces in it.
pub(crate) fn encode_correlated(
    outcomes: &[vakt_core::Correlated],
    known: &mut crate::sql::KnownTraces,
    handed: &crate::dispatch::Claimed<'_>,
) -> Result<(Vec<u8>, Vec<String>), StoreError> {
    let traces = intern_all(outcomes, known);
    let rows = batch_rows(outcomes, &traces, known, handed);
    let record = crate::journal::encode(&rows)?;
    Ok((record, rows.traces.iter().map(|t| t.id.clone()).collect()))
}

fn intern_all(
    outcomes: &[vakt_core::Correlated],
    known: &mut crate::sql::KnownTraces,
) -> Vec<std::sync::Arc<crate::sql::InternedTrace>> {
    outcomes
        .iter()
        .map(|o| known.intern(&o.record.trace))
        .collect()
}

/// The rows a batch writes: traces not yet stored (each once), events, alert changes,
/// timeline, decided actions (the `claimed` ones apart) and the groups they join.
fn batch_rows<'a>(
    outcomes: &'a [vakt_core::Correlated],
    traces: &'a [std::sync::Arc<crate::sql::InternedTrace>],
    known: &crate::sql::KnownTraces,
    claimed: &crate::dispatch::Claimed<'_>,
) -> crate::sql::BatchRows<'a> {
    let decided_at = outcomes
        .iter()
        .map(|o| o.record.event.received_at)
        .min()
        .map_or(0, ms);
    let mut seen = std::collections::HashSet::new();
    let new_traces: Vec<&crate::sql::InternedTrace> = traces
        .iter()
        .filter(|t| !known.contains(&t.id) && seen.insert(t.id.as_str()))
        .map(|t| &**t)
        .collect();
    let records: Vec<(&EventRecord, &str)> = outcomes
        .iter()
        .zip(traces)
        .map(|(o, t)| (&o.record, t.id.as_str()))
        .collect();
    let mut writes = crate::sql::writes(outcomes);
    let groups = crate::dispatch::pending_groups(writes.actions.iter().copied());
    let handed = if claimed.ids.is_empty() {
        Vec::new()
    } else {
        let (handed, kept) = writes
            .actions
            .iter()
            .partition(|a| claimed.ids.contains(a.id.as_str()));
        writes.actions = kept;
        handed
    };
    crate::sql::BatchRows {
        traces: new_traces,
        events: records,
        writes,
        decided_at_ms: decided_at,
        groups,
        handed,
        rollup: crate::sql::rollup(outcomes),
        lease_until_ms: claimed.lease_until_ms,
    }
}

/// The rows `select` (`SELECT ... FROM t`) finds for these ids, each once, in the
/// order of their first mention; ids with no row are left out. One query per chunk.
pub(crate) async fn by_ids<T>(
    conn: &mut Conn<'_>,
    select: &str,
    ids: &[&str],
    from_row: fn(&Row) -> Result<T, StoreError>,
    id_of: fn(&T) -> &str,
) -> Result<Vec<T>, StoreError> {
    let unique = unique_ids(ids);
    let mut found: std::collections::HashMap<String, T> =
        std::collections::HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(BINDS_MAX) {
        let mut query: Query<'_> = Query::new(format!("{select} WHERE id IN ("));
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
        for row in query.fetch_all(&mut *conn).await? {
            let item = from_row(&row)?;
            found.insert(id_of(&item).to_owned(), item);
        }
    }
    Ok(in_id_order(unique, found))
}

/// `ids` without repeats, in their first order (`by_ids`).
pub(crate) fn unique_ids<'a>(ids: &[&'a str]) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// What was `found` by id, in the order of `ids` (those found; `by_ids`).
pub(crate) fn in_id_order<T>(
    ids: Vec<&str>,
    mut found: std::collections::HashMap<String, T>,
) -> Vec<T> {
    ids.into_iter().filter_map(|id| found.remove(id)).collect()
}

pub(crate) async fn get_alerts(
    conn: &mut Conn<'_>,
    ids: &[&str],
) -> Result<Vec<Alert>, StoreError> {
    let select = format!("SELECT {ALERT_COLUMNS} FROM alerts");
    by_ids(conn, &select, ids, alert_from_row, |a| &a.id).await
}

pub(crate) async fn get_alert(
    conn: &mut Conn<'_>,
    id: &str,
    lock: bool,
) -> Result<Option<Alert>, StoreError> {
    let mut query: Query<'_> =
        Query::new(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = "));
    query.push_bind(id.to_owned());
    if lock {
        query.push(conn.lock());
    }
    match query.fetch_optional(&mut *conn).await? {
        Some(row) => Ok(Some(alert_from_row(&row)?)),
        None => Ok(None),
    }
}

/// Applies an operator's request inside the caller's transaction.
pub(crate) async fn operate_in(
    conn: &mut Conn<'_>,
    pipeline: &vakt_core::Pipeline,
    silences: &vakt_core::silence::ActiveSilences,
    alert_id: &str,
    request: &vakt_core::alert::OperatorRequest,
) -> Result<Alert, crate::OperateError> {
    let Some(alert) = get_alert(conn, alert_id, true).await? else {
        return Err(crate::OperateError::NotFound(alert_id.to_owned()));
    };
    let now = chrono::Utc::now();
    let mut new_id = crate::sql::new_id;
    let done = pipeline.operate(&alert, request, now, silences, &mut new_id)?;
    upsert_alerts(conn, &[&done.alert]).await?;
    insert_timeline(conn, &done.timeline.iter().collect::<Vec<_>>()).await?;
    insert_actions(conn, &done.actions.iter().collect::<Vec<_>>(), ms(now)).await?;
    after_operate(conn, pipeline, &done.alert, request, now).await?;
    Ok(done.alert)
}

/// Stores a throttle window (`state` is the dispatcher's JSON), or forgets it when
/// `state` is `None`.
pub(crate) async fn write_throttle(
    conn: &mut Conn<'_>,
    key: &str,
    state: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    match state {
        Some(state) => {
            query(
                "INSERT INTO throttle_windows (throttle_key, state, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (throttle_key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            )
            .bind(key.to_owned())
            .bind(state.to_owned())
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        }
        None => {
            query("DELETE FROM throttle_windows WHERE throttle_key = $1")
                .bind(key.to_owned())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

pub(crate) async fn read_throttles(
    conn: &mut Conn<'_>,
) -> Result<Vec<(String, String)>, StoreError> {
    query("SELECT throttle_key, state FROM throttle_windows ORDER BY throttle_key")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("throttle_key")?, row.try_get("state")?)))
        .collect()
}

pub(crate) async fn list_flapping(
    conn: &mut Conn<'_>,
    limit: u32,
) -> Result<Vec<Alert>, StoreError> {
    query(format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE flapping ORDER BY id LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(alert_from_row)
    .collect()
}

pub(crate) async fn get_events(
    conn: &mut Conn<'_>,
    ids: &[&str],
) -> Result<Vec<EventRecord>, StoreError> {
    by_ids(conn, EVENT_SELECT, ids, event_from_row, |e| &e.id).await
}

pub(crate) async fn get_event(
    conn: &mut Conn<'_>,
    id: &str,
) -> Result<Option<EventRecord>, StoreError> {
    let mut query: Query<'_> = Query::new(format!("{EVENT_SELECT} WHERE id = "));
    query.push_bind(id.to_owned());
    match query.fetch_optional(&mut *conn).await? {
        Some(row) => Ok(Some(event_from_row(&row)?)),
        None => Ok(None),
    }
}

/// Adds ` AND column = value` when the filter is set.
pub(crate) fn filter_eq(query: &mut Query<'_>, column: &str, value: Option<String>) {
    if let Some(value) = value {
        query.push(format!(" AND {column} = "));
        query.push_bind(value);
    }
}

/// Finishes a list query: the cursor, newest first, `limit + 1` rows to learn whether
/// another page follows.
pub(crate) async fn fetch_page<T>(
    conn: &mut Conn<'_>,
    mut query: Query<'_>,
    cursor: Option<&str>,
    limit: u32,
    from_row: fn(&Row) -> Result<T, StoreError>,
    id: fn(&T) -> &str,
) -> Result<Page<T>, StoreError> {
    if let Some(cursor) = cursor {
        query.push(" AND id < ");
        query.push_bind(cursor.to_owned());
    }
    query.push(" ORDER BY id DESC LIMIT ");
    query.push_bind(i64::from(limit) + 1);
    let rows = query.fetch_all(&mut *conn).await?;
    let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|item| id(item).to_owned())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

pub(crate) async fn list_events(
    conn: &mut Conn<'_>,
    q: &EventQuery,
) -> Result<Page<EventRecord>, StoreError> {
    let mut query: Query<'_> = Query::new(format!("{EVENT_SELECT} WHERE 1 = 1"));
    filter_eq(&mut query, "source", q.source.clone());
    filter_eq(&mut query, "resource", q.resource.clone());
    filter_eq(&mut query, "check_name", q.check.clone());
    filter_eq(
        &mut query,
        "severity",
        q.severity.map(|s| s.as_str().to_owned()),
    );
    filter_eq(
        &mut query,
        "category",
        q.category.map(|c| c.as_str().to_owned()),
    );
    filter_eq(&mut query, "alert_id", q.alert_id.clone());
    filter_eq(&mut query, "fingerprint", q.fingerprint.clone());
    if let Some(dropped) = q.dropped {
        query.push(" AND dropped = ");
        query.push_bind(dropped);
    }
    if let Some(since) = q.since {
        query.push(" AND received_at >= ");
        query.push_bind(ms(since));
    }
    if let Some(until) = q.until {
        query.push(" AND received_at < ");
        query.push_bind(ms(until));
    }
    fetch_page(
        conn,
        query,
        q.cursor.as_deref(),
        q.limit,
        event_from_row,
        |e| &e.id,
    )
    .await
}

/// Where a replay reads, as `(condition, value)` pairs each backend joins with `AND`: events
/// received in `[since, until)` and stored after the id `after`, by id (the order they were
/// stored in). Ids are ULIDs made when the batch is stored, just after receipt, so the id
/// range (a minute of slack at the end) finds them on the primary key and the receipt
/// times decide exactly.
pub(crate) fn replay_conditions(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    after: Option<&str>,
) -> Vec<(&'static str, crate::sql::Value<'static>)> {
    use crate::sql::Value;
    let id_at = |at: DateTime<Utc>| {
        let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        Value::Text(Some(ulid::Ulid::from_parts(ms, 0).to_string().into()))
    };
    let mut conditions = Vec::new();
    if let Some(since) = since {
        conditions.push(("id >=", id_at(since)));
        conditions.push(("received_at >=", Value::Int(Some(ms(since)))));
    }
    if let Some(until) = until {
        conditions.push(("id <", id_at(until + chrono::Duration::minutes(1))));
        conditions.push(("received_at <", Value::Int(Some(ms(until)))));
    }
    if let Some(after) = after {
        conditions.push(("id >", Value::Text(Some(after.to_owned().into()))));
    }
    conditions
}

fn replay_range(
    query: &mut Query<'_>,
    conditions: Vec<(&'static str, crate::sql::Value<'static>)>,
) {
    for (condition, value) in conditions {
        query.push(format!(" AND {condition} "));
        query.push_bind(value);
    }
}

/// Up to `limit` events of the range after the id `after`, oldest first, without traces.
pub(crate) async fn replay_events(
    conn: &mut Conn<'_>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    let mut query: Query<'_> = Query::new(format!("{EVENT_REPLAY_SELECT} WHERE 1 = 1"));
    replay_range(&mut query, replay_conditions(since, until, after));
    query.push(" ORDER BY id LIMIT ");
    query.push_bind(i64::from(limit));
    let rows = query.fetch_all(conn).await?;
    rows.iter().map(event_from_row).collect()
}

/// Events per hour and kind from the rollup kept at ingest, hours starting in `[since, until)`.
pub(crate) async fn event_volume(
    conn: &mut Conn<'_>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<crate::VolumeRow>, StoreError> {
    let rows = query(
        "SELECT hour, source, check_name, category, severity, dropped, events FROM event_rollup \
         WHERE hour >= $1 AND hour < $2",
    )
    .bind(ms(since).div_euclid(3_600_000) * 3_600_000)
    .bind(ms(until))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(crate::VolumeRow {
                hour: time(row.try_get("hour")?)?,
                source: row.try_get("source")?,
                check: row.try_get("check_name")?,
                category: parsed("category", Category::parse(row.try_get("category")?))?,
                severity: parsed("severity", Severity::parse(row.try_get("severity")?))?,
                dropped: row.try_get("dropped")?,
                events: row.try_get("events")?,
            })
        })
        .collect()
}

/// Alerts first seen in `[since, until)` after the id `after`, by id, at most `limit`.
pub(crate) async fn report_alerts(
    conn: &mut Conn<'_>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Alert>, StoreError> {
    query(format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE first_seen >= $1 AND first_seen < $2 \
         AND id > $3 ORDER BY id LIMIT $4"
    ))
    .bind(ms(since))
    .bind(ms(until))
    .bind(after.unwrap_or("").to_owned())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(alert_from_row)
    .collect()
}

/// Alerts not resolved, the longest standing first.
pub(crate) async fn standing_alerts(
    conn: &mut Conn<'_>,
    limit: u32,
) -> Result<Vec<Alert>, StoreError> {
    query(format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE status <> 'resolved' ORDER BY first_seen, id LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(alert_from_row)
    .collect()
}

/// Actions decided in `[since, until)`, counted per action, kind, purpose, status and
/// whether they page someone.
pub(crate) async fn action_counts(
    conn: &mut Conn<'_>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<crate::ActionCount>, StoreError> {
    let rows = query(
        "SELECT action, kind, purpose, status, CASE WHEN target IS NULL THEN 0 ELSE 1 END AS paged, \
         COUNT(*) AS n FROM decided_actions WHERE decided_at >= $1 AND decided_at < $2 \
         GROUP BY action, kind, purpose, status, CASE WHEN target IS NULL THEN 0 ELSE 1 END",
    )
    .bind(ms(since))
    .bind(ms(until))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            Ok(crate::ActionCount {
                action: row.try_get("action")?,
                kind: row.try_get("kind")?,
                purpose: row.try_get("purpose")?,
                status: parsed("status", crate::ActionStatus::parse(&status))?,
                paged: row.try_get::<i64>("paged")? == 1,
                count: row.try_get("n")?,
            })
        })
        .collect()
}

/// Incidents opened in `[since, until)`: priority, times and how many alerts joined.
pub(crate) async fn incident_times(
    conn: &mut Conn<'_>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<crate::IncidentTimes>, StoreError> {
    let rows = query(
        "SELECT i.priority, i.opened_at, i.resolved_at, \
         (SELECT COUNT(*) FROM incident_alerts a WHERE a.incident_id = i.id) AS alerts \
         FROM incidents i WHERE i.opened_at >= $1 AND i.opened_at < $2",
    )
    .bind(ms(since))
    .bind(ms(until))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(crate::IncidentTimes {
                priority: u8::try_from(row.try_get::<i64>("priority")?).unwrap_or(u8::MAX),
                opened_at: time(row.try_get("opened_at")?)?,
                resolved_at: opt_time(row.try_get("resolved_at")?)?,
                alerts: row.try_get("alerts")?,
            })
        })
        .collect()
}

/// Escalation pages (actions with a target) decided in `[since, until)`, oldest first.
pub(crate) async fn report_pages(
    conn: &mut Conn<'_>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<crate::PageSent>, StoreError> {
    let rows = query(
        "SELECT alert_id, decided_at, status, target FROM decided_actions \
         WHERE target IS NOT NULL AND decided_at >= $1 AND decided_at < $2 ORDER BY decided_at, id",
    )
    .bind(ms(since))
    .bind(ms(until))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            let target: String = row.try_get("target")?;
            Ok(crate::PageSent {
                alert_id: row.try_get("alert_id")?,
                decided_at: time(row.try_get("decided_at")?)?,
                status: parsed("status", crate::ActionStatus::parse(&status))?,
                page: from_json("target", &target)?,
            })
        })
        .collect()
}

/// Re-opens in `[since, until)` from the alerts' timelines (a partial index on their
/// time, schema 17).
pub(crate) async fn reopens(
    conn: &mut Conn<'_>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
) -> Result<crate::Reopens, StoreError> {
    let range = "kind = 'reopened' AND at >= $1 AND at < $2";
    let total = query(format!(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT alert_id) AS alerts FROM alert_timeline WHERE {range}"
    ))
    .bind(ms(since))
    .bind(ms(until))
    .fetch_one(&mut *conn)
    .await?;
    let top = query(format!(
        "SELECT alert_id, COUNT(*) AS n FROM alert_timeline WHERE {range} \
         GROUP BY alert_id ORDER BY n DESC, alert_id LIMIT $3"
    ))
    .bind(ms(since))
    .bind(ms(until))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("alert_id")?, row.try_get("n")?)))
    .collect::<Result<Vec<(String, i64)>, StoreError>>()?;
    Ok(crate::Reopens {
        reopens: total.try_get("n")?,
        alerts: total.try_get("alerts")?,
        top,
    })
}

/// How many events a replay of the range reads.
pub(crate) async fn count_replay_events(
    conn: &mut Conn<'_>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<u64, StoreError> {
    let mut query: Query<'_> = Query::new("SELECT COUNT(*) AS n FROM events WHERE 1 = 1");
    replay_range(&mut query, replay_conditions(since, until, None));
    let row = query.fetch_one(conn).await?;
    Ok(u64::try_from(row.try_get::<i64>("n")?).unwrap_or(0))
}

pub(crate) async fn list_alerts(
    conn: &mut Conn<'_>,
    q: &AlertQuery,
) -> Result<Page<Alert>, StoreError> {
    let mut query: Query<'_> =
        Query::new(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE 1 = 1"));
    if !q.status.is_empty() {
        query.push(" AND status IN (");
        let mut list = query.separated(", ");
        for status in &q.status {
            list.push_bind(status.as_str());
        }
        query.push(")");
    }
    filter_eq(
        &mut query,
        "severity",
        q.severity.map(|s| s.as_str().to_owned()),
    );
    filter_eq(
        &mut query,
        "category",
        q.category.map(|c| c.as_str().to_owned()),
    );
    filter_eq(&mut query, "resource", q.resource.clone());
    filter_eq(&mut query, "check_name", q.check.clone());
    filter_eq(&mut query, "service", q.service.clone());
    filter_eq(&mut query, "environment", q.environment.clone());
    filter_eq(&mut query, "fingerprint", q.fingerprint.clone());
    fetch_page(
        conn,
        query,
        q.cursor.as_deref(),
        q.limit,
        alert_from_row,
        |a| &a.id,
    )
    .await
}

/// An alert's timeline in order: the stored lines, the line that opened the alert, made from
/// the alert's row, and, for each action the pipeline decided for it, the decision's line,
/// made from the decided action (issue 18: neither is stored twice). Decisions' lines stored
/// by an earlier vakt are left out: their actions give them. Escalation pages (actions with a
/// target) never had such a line.
pub(crate) async fn list_timeline(
    conn: &mut Conn<'_>,
    alert_id: &str,
) -> Result<Vec<TimelineEntry>, StoreError> {
    let rows = query(
        "SELECT id, alert_id, at, kind, actor, message, event_id FROM alert_timeline WHERE alert_id = $1 ORDER BY id",
    )
    .bind(alert_id.to_owned())
    .fetch_all(&mut *conn)
    .await?;
    // The line that opened the alert, kept in its row (schema 19; NULL for alerts opened
    // before, whose line is among the stored ones).
    let opening = query(
        "SELECT first_seen, opened_line, opened_event_id FROM alerts WHERE id = $1 AND opened_line IS NOT NULL",
    )
    .bind(alert_id.to_owned())
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| -> Result<TimelineEntry, StoreError> {
        Ok(TimelineEntry {
            id: alert_id.to_owned(),
            alert_id: alert_id.to_owned(),
            at: time(row.try_get("first_seen")?)?,
            kind: TimelineKind::Opened,
            by: vakt_core::alert::PIPELINE_ACTOR.to_owned(),
            message: row.try_get("opened_line")?,
            event_id: row.try_get("opened_event_id")?,
        })
    })
    .transpose()?;
    let mut lines = Vec::with_capacity(rows.len() + 1);
    for row in &rows {
        let line = timeline_from_row(row)?;
        // Lines given back from their rows below are shown once.
        let given_back = line.is_decision() || (opening.is_some() && line.is_opening());
        if !given_back {
            lines.push(line);
        }
    }
    lines.extend(opening);
    let decided = crate::dispatch::list_alert_action_records(conn, alert_id).await?;
    lines.extend(
        decided
            .iter()
            .filter(|record| record.decided.target.is_none())
            .map(|record| record.decided.timeline_line(record.decided.id.clone())),
    );
    lines.extend(crate::dispatch::attempt_lines(conn, alert_id, &decided).await?);
    // Ids are made in order (`sql::new_id`, an attempt's when it finished): a decided
    // action's id comes just before the line the pipeline made for it, after the lines
    // before it.
    lines.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(lines)
}

pub(crate) async fn list_alert_events(
    conn: &mut Conn<'_>,
    alert_id: &str,
    limit: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    let mut query: Query<'_> = Query::new(format!("{EVENT_SELECT} WHERE alert_id = "));
    query.push_bind(alert_id.to_owned());
    query.push(format!(" ORDER BY {} LIMIT ", conn.newest_first()));
    query.push_bind(i64::from(limit));
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(event_from_row).collect()
}

pub(crate) async fn write_override(
    conn: &mut Conn<'_>,
    schedule: &str,
    item: &vakt_core::oncall::OverrideConfig,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO schedule_overrides (id, schedule, user_id, starts_at, ends_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(item.id.clone().unwrap_or_else(crate::sql::new_id))
    .bind(schedule.to_owned())
    .bind(item.user.clone())
    .bind(ms(item.start))
    .bind(ms(item.end))
    .bind(item.created_by.clone().unwrap_or_default())
    .bind(ms(chrono::Utc::now()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn read_overrides(
    conn: &mut Conn<'_>,
    schedule: &str,
    ending_after_ms: i64,
) -> Result<Vec<vakt_core::oncall::OverrideConfig>, StoreError> {
    let rows = query(
        "SELECT id, user_id, starts_at, ends_at, created_by FROM schedule_overrides WHERE schedule = $1 AND ends_at > $2 ORDER BY starts_at, id",
    )
    .bind(schedule.to_owned())
    .bind(ending_after_ms)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(vakt_core::oncall::OverrideConfig {
                id: Some(row.try_get("id")?),
                user: row.try_get("user_id")?,
                start: time(row.try_get("starts_at")?)?,
                end: time(row.try_get("ends_at")?)?,
                created_by: Some(row.try_get("created_by")?),
            })
        })
        .collect()
}

pub(crate) async fn remove_override(
    conn: &mut Conn<'_>,
    schedule: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let done = query("DELETE FROM schedule_overrides WHERE schedule = $1 AND id = $2")
        .bind(schedule.to_owned())
        .bind(id.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Unresolved alerts whose `expires_at` has passed, oldest first.
pub(crate) async fn list_expired(
    conn: &mut Conn<'_>,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<Alert>, StoreError> {
    let rows = query(format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE expires_at IS NOT NULL AND status <> 'resolved' AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
    ))
    .bind(now_ms)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(alert_from_row).collect()
}

pub(crate) fn silence_from_row(row: &Row) -> Result<vakt_core::silence::Silence, StoreError> {
    Ok(vakt_core::silence::Silence {
        id: row.try_get("id")?,
        matchers: from_json("matchers", row.try_get("matchers")?)?,
        starts_at: time(row.try_get("starts_at")?)?,
        ends_at: time(row.try_get("ends_at")?)?,
        created_by: row.try_get("created_by")?,
        comment: row.try_get("comment")?,
        updated_at: time(row.try_get("updated_at")?)?,
    })
}

pub(crate) async fn write_silence(
    conn: &mut Conn<'_>,
    silence: &vakt_core::silence::Silence,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, starts_at = excluded.starts_at, ends_at = excluded.ends_at, \
         created_by = excluded.created_by, comment = excluded.comment, updated_at = excluded.updated_at",
    )
    .bind(silence.id.as_str())
    .bind(json(&silence.matchers))
    .bind(ms(silence.starts_at))
    .bind(ms(silence.ends_at))
    .bind(silence.created_by.as_str())
    .bind(silence.comment.as_str())
    .bind(ms(silence.updated_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Silences, newest first; with `id`, only that one, else those `set` asks for.
pub(crate) async fn read_silences(
    conn: &mut Conn<'_>,
    id: Option<&str>,
    set: Option<&crate::SilenceQuery>,
) -> Result<Vec<vakt_core::silence::Silence>, StoreError> {
    let mut query: Query<'_> = Query::new(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment, updated_at FROM silences WHERE 1 = 1",
    );
    if let Some(id) = id {
        query.push(" AND id = ");
        query.push_bind(id.to_owned());
    }
    if let Some(set) = set {
        match set.set {
            crate::SilenceSet::InForce => {
                query.push(" AND ends_at > ");
                query.push_bind(ms(set.now));
            }
            crate::SilenceSet::Expired => {
                query.push(" AND ends_at <= ");
                query.push_bind(ms(set.now));
            }
            crate::SilenceSet::All => {}
        }
        if let Some(since) = set.changed_since {
            query.push(" AND updated_at >= ");
            query.push_bind(ms(since));
        }
    }
    query.push(" ORDER BY updated_at DESC");
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(silence_from_row).collect()
}

pub(crate) fn heartbeat_from_row(row: &Row) -> Result<vakt_core::heartbeat::Heartbeat, StoreError> {
    Ok(vakt_core::heartbeat::Heartbeat {
        name: row.try_get("name")?,
        resource: row.try_get("resource")?,
        check: row.try_get("check_name")?,
        service: row.try_get("service")?,
        environment: row.try_get("environment")?,
        interval_secs: row.try_get("interval_secs")?,
        grace_secs: row.try_get("grace_secs")?,
        last_seen: time(row.try_get("last_seen")?)?,
        missing: row.try_get("missing")?,
    })
}

pub(crate) async fn write_heartbeat(
    conn: &mut Conn<'_>,
    beat: &vakt_core::heartbeat::Heartbeat,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO heartbeats (name, resource, check_name, service, environment, interval_secs, grace_secs, last_seen, missing) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO UPDATE SET resource = excluded.resource, \
         check_name = excluded.check_name, service = excluded.service, environment = excluded.environment, \
         interval_secs = excluded.interval_secs, grace_secs = excluded.grace_secs, last_seen = excluded.last_seen, \
         missing = excluded.missing",
    )
    .bind(beat.name.as_str())
    .bind(beat.resource.as_str())
    .bind(beat.check.as_deref())
    .bind(beat.service.as_deref())
    .bind(beat.environment.as_deref())
    .bind(beat.interval_secs)
    .bind(beat.grace_secs)
    .bind(ms(beat.last_seen))
    .bind(beat.missing)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn read_heartbeats(
    conn: &mut Conn<'_>,
    name: Option<&str>,
) -> Result<Vec<vakt_core::heartbeat::Heartbeat>, StoreError> {
    let mut query: Query<'_> = Query::new(
        "SELECT name, resource, check_name, service, environment, interval_secs, grace_secs, last_seen, missing FROM heartbeats",
    );
    if let Some(name) = name {
        query.push(" WHERE name = ");
        query.push_bind(name.to_owned());
    }
    query.push(" ORDER BY name");
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(heartbeat_from_row).collect()
}

pub(crate) async fn count_alerts(conn: &mut Conn<'_>) -> Result<crate::Stats, StoreError> {
    let rows = query("SELECT status, COUNT(*) AS n FROM alerts GROUP BY status")
        .fetch_all(&mut *conn)
        .await?;
    let mut stats = crate::Stats::default();
    for row in rows {
        let status: String = row.try_get("status")?;
        let n: i64 = row.try_get("n")?;
        match status.as_str() {
            "open" => stats.alerts_open = n,
            "acknowledged" => stats.alerts_acknowledged = n,
            _ => stats.alerts_resolved += n,
        }
    }
    Ok(stats)
}

/// Records a heartbeat and returns the one it replaces.
pub(crate) async fn beat(
    conn: &mut Conn<'_>,
    heartbeat: &vakt_core::heartbeat::Heartbeat,
) -> Result<Option<vakt_core::heartbeat::Heartbeat>, StoreError> {
    let previous = read_heartbeats(conn, Some(&heartbeat.name)).await?.pop();
    write_heartbeat(conn, heartbeat).await?;
    Ok(previous)
}

/// Whether the database answers.
pub(crate) async fn ping(conn: &mut Conn<'_>) -> Result<(), StoreError> {
    query("SELECT 1").execute(conn).await?;
    Ok(())
}

/// A write that changes nothing but is committed like any other: on SQLite a synced commit
/// that makes every earlier commit of the connection durable too.
pub(crate) async fn sync_point(conn: &mut Conn<'_>) -> Result<(), StoreError> {
    query("UPDATE journal_applied SET seq = seq WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
