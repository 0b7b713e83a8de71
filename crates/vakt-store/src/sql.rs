//! What the SQLite and PostgreSQL stores share: row conversions, the batch correlation, and the SQL.
//!
//! Both schemas use the same table and column names and store times as Unix milliseconds
//! and maps as JSON text, so the SQL below runs unchanged on both (sqlx understands `$N`
//! placeholders for SQLite too). The `common_sql!` macro instantiates the query functions
//! once per backend; that keeps each backend's types checked by the compiler without the
//! trait-bound maze that generic sqlx code needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use vakt_core::pipeline::DecidedAction;
use vakt_core::pipeline::Transition;
use vakt_core::{Alert, Correlated, Fingerprint, Pipeline, Prepared};

use crate::StoreError;

/// Most bind parameters one statement may carry (SQLite allows 32766, PostgreSQL 65535).
pub(crate) const BINDS_MAX: usize = 30_000;

pub(crate) const EVENT_COLUMNS: &str = "id, received_at, occurred_at, source, resource, check_name, severity, category, service, environment, summary, fingerprint, sent_fingerprint, alert_id, dropped, labels, metrics, details, trace_id, idempotency_key";
/// Events read back with their interned trace.
pub(crate) const EVENT_SELECT: &str = "SELECT id, received_at, occurred_at, source, resource, check_name, severity, category, service, environment, summary, fingerprint, sent_fingerprint, alert_id, dropped, labels, metrics, details, idempotency_key, body AS trace FROM events JOIN traces USING (trace_id)";
pub(crate) const EVENT_COLUMN_COUNT: usize = 20;
pub(crate) const ALERT_COLUMNS: &str = "id, fingerprint, status, category, severity, severity_max, source, resource, check_name, service, environment, summary, labels, event_count, first_seen, last_seen, last_event_id, acknowledged_by, acknowledged_at, assignee, resolved_by, resolved_at, incident_id, expires_at, handling, flapping";
pub(crate) const ALERT_COLUMN_COUNT: usize = 26;
/// Columns a repeat changes: none that an index covers, so the update touches only the row.
pub(crate) const ALERT_REPEAT_UPDATE: &str = "severity = excluded.severity, severity_max = excluded.severity_max, category = excluded.category, source = excluded.source, summary = excluded.summary, labels = excluded.labels, event_count = excluded.event_count, last_seen = excluded.last_seen, last_event_id = excluded.last_event_id, expires_at = excluded.expires_at, handling = excluded.handling, flapping = excluded.flapping";
/// Columns an alert upsert overwrites (all but id, fingerprint and first_seen).
pub(crate) const ALERT_UPDATE: &str = "status = excluded.status, category = excluded.category, severity = excluded.severity, severity_max = excluded.severity_max, source = excluded.source, summary = excluded.summary, labels = excluded.labels, event_count = excluded.event_count, last_seen = excluded.last_seen, last_event_id = excluded.last_event_id, acknowledged_by = excluded.acknowledged_by, acknowledged_at = excluded.acknowledged_at, assignee = excluded.assignee, resolved_by = excluded.resolved_by, resolved_at = excluded.resolved_at, incident_id = excluded.incident_id, expires_at = excluded.expires_at, handling = excluded.handling, flapping = excluded.flapping";
pub(crate) const TRACE_COLUMNS: &str = "trace_id, body";
/// What follows a trace insert: traces are content-addressed, so a known one is kept as is.
pub(crate) const TRACE_CONFLICT: &str = " ON CONFLICT (trace_id) DO NOTHING";

/// What follows an alert insert: on an existing id, set the columns `update` names
/// (`ALERT_UPDATE` or `ALERT_REPEAT_UPDATE`).
pub(crate) fn alert_conflict(update: &str) -> String {
    format!(" ON CONFLICT (id) DO UPDATE SET {update}")
}

pub(crate) const TIMELINE_COLUMNS: &str = "id, alert_id, at, kind, actor, message, event_id";
pub(crate) const TIMELINE_COLUMN_COUNT: usize = 7;
pub(crate) const ACTION_COLUMNS: &str = "id, alert_id, event_id, action, kind, reason, decided_at, purpose, status, suppressed_by, group_key, next_at, target";
pub(crate) const ACTION_COLUMN_COUNT: usize = 13;

pub(crate) fn ms(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

pub(crate) fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} ms is out of range")))
}

pub(crate) fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(time).transpose()
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> String {
    // Serialising maps of strings and numbers cannot fail; an empty object is the safe fallback.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    column: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("column {column}: {error}")))
}

pub(crate) fn parsed<T, E: std::fmt::Display>(
    column: &str,
    result: Result<T, E>,
) -> Result<T, StoreError> {
    result.map_err(|error| StoreError::Corrupt(format!("column {column}: {error}")))
}

/// Of the alerts stored for one fingerprint, the one new events land on: the active one,
/// else the newest of the resolved ones.
pub(crate) fn current_alerts(candidates: Vec<Alert>) -> HashMap<Fingerprint, Alert> {
    let mut current: HashMap<Fingerprint, Alert> = HashMap::new();
    for alert in candidates {
        let better = match current.get(&alert.fingerprint) {
            None => true,
            Some(held) => {
                // An unresolved alert wins; among resolved ones the newest alert (ids are
                // time-ordered), as the writer's cache keeps it.
                (alert.status.is_active() && !held.status.is_active())
                    || (!held.status.is_active() && alert.id > held.id)
            }
        };
        if better {
            current.insert(alert.fingerprint.clone(), alert);
        }
    }
    current
}

/// The reopen cutoff of a batch, one rule for both backends: an alert resolved before the
/// earliest receipt in the batch minus the reopen window cannot be reopened by any of its
/// events (correlate measures the window from each event's `received_at`), so it is history
/// and need not be read. `now` stands in for an empty batch.
pub(crate) fn reopen_cutoff(
    batch: &[Prepared],
    window: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    batch
        .iter()
        .map(|p| p.event.received_at)
        .min()
        .unwrap_or(now)
        - window
}

/// A batch split by idempotency key: the events to process (with their new ids), and the
/// repeats of events already stored, or of an earlier event of the same batch.
pub(crate) struct Deduped {
    pub kept: Vec<Prepared>,
    pub kept_ids: Vec<String>,
    /// For each input position: `Ok(i)` the i-th kept event, `Err((prepared, stored_id))` a
    /// repeat.
    order: Vec<Result<usize, (Prepared, String)>>,
}

/// Splits `batch` (whose new ids are `ids`) by the keys already `stored` (key -> event id).
pub(crate) fn dedupe(
    batch: Vec<Prepared>,
    ids: &[String],
    mut stored: HashMap<String, String>,
) -> Deduped {
    let mut deduped = Deduped {
        kept: Vec::with_capacity(batch.len()),
        kept_ids: Vec::with_capacity(batch.len()),
        order: Vec::with_capacity(batch.len()),
    };
    for (prepared, id) in batch.into_iter().zip(ids) {
        let key = prepared.event.idempotency_key.clone();
        match key.as_ref().and_then(|k| stored.get(k)) {
            Some(stored_id) => {
                let stored_id = stored_id.clone();
                deduped.order.push(Err((prepared, stored_id)));
            }
            None => {
                if let Some(key) = key {
                    stored.insert(key, id.clone());
                }
                deduped.order.push(Ok(deduped.kept.len()));
                deduped.kept.push(prepared);
                deduped.kept_ids.push(id.clone());
            }
        }
    }
    deduped
}

impl Deduped {
    /// The outcomes in input order: the kept events' outcomes, and a `Duplicate` outcome
    /// naming the stored event for each repeat.
    pub fn merge(self, outcomes: Vec<Correlated>) -> Vec<Correlated> {
        let mut outcomes: Vec<Option<Correlated>> = outcomes.into_iter().map(Some).collect();
        self.order
            .into_iter()
            .filter_map(|slot| match slot {
                Ok(i) => outcomes.get_mut(i).and_then(Option::take),
                Err((prepared, stored_id)) => Some(Correlated::duplicate(prepared, stored_id)),
            })
            .collect()
    }
}

/// Runs the stateful stages over a batch in order, each event seeing what the previous ones did.
pub(crate) fn correlate_batch(
    pipeline: &Pipeline,
    silences: &vakt_core::silence::ActiveSilences,
    batch: Vec<Prepared>,
    event_ids: &[String],
    current: HashMap<Fingerprint, Alert>,
) -> Vec<Correlated> {
    let mut new_id = new_id;
    // Where each fingerprint's latest state is: the outcome of its last event in this batch
    // (by index, so no alert is copied to remember it), else what storage had.
    let mut latest: HashMap<Fingerprint, usize> = HashMap::new();
    let mut outcomes: Vec<Correlated> = Vec::with_capacity(batch.len());
    for (prepared, event_id) in batch.into_iter().zip(event_ids) {
        let alert = match latest.get(&prepared.fingerprint) {
            Some(&i) => outcomes[i].alert.as_ref(),
            None => current.get(&prepared.fingerprint),
        };
        let outcome = pipeline.correlate(prepared, event_id.clone(), alert, silences, &mut new_id);
        if let Some(alert) = &outcome.alert {
            latest.insert(alert.fingerprint.clone(), outcomes.len());
        }
        outcomes.push(outcome);
    }
    outcomes
}

/// A trace serialised, and its content address: 128 bits of SHA-256, hex.
pub(crate) struct InternedTrace {
    pub id: String,
    pub body: String,
}

pub(crate) fn intern(trace: &[vakt_core::TraceEntry]) -> InternedTrace {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let body = json(&trace);
    let digest = Sha256::digest(body.as_bytes());
    let mut id = String::with_capacity(32);
    for byte in &digest[..16] {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    InternedTrace { id, body }
}

/// Trace ids known to be stored, so repeats skip the insert. Bounded: forgotten ids are only
/// inserted again (`ON CONFLICT DO NOTHING`), never lost.
#[derive(Default)]
pub(crate) struct KnownTraces {
    ids: std::collections::HashSet<String>,
}

impl KnownTraces {
    const MAX: usize = 100_000;

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Remembers ids once their transaction committed.
    pub fn extend(&mut self, ids: impl IntoIterator<Item = String>) {
        if self.ids.len() > Self::MAX {
            self.ids.clear();
        }
        self.ids.extend(ids);
    }
}

/// The rows a batch writes: each alert once, in its final state, in order of first change.
pub(crate) struct Writes<'a> {
    /// Alerts created or whose status changed in the batch: every column is written.
    pub alerts: Vec<&'a Alert>,
    /// Alerts that only absorbed repeats: only the columns a repeat changes are written.
    pub repeats: Vec<&'a Alert>,
    pub timeline: Vec<&'a vakt_core::TimelineEntry>,
    pub actions: Vec<&'a DecidedAction>,
}

pub(crate) fn writes(outcomes: &[Correlated]) -> Writes<'_> {
    // Per alert id: its position, its final state, and whether anything but a repeat happened.
    let mut position: BTreeMap<&str, usize> = BTreeMap::new();
    let mut alerts: Vec<(&Alert, bool)> = Vec::new();
    for outcome in outcomes {
        let Some(alert) = outcome.alert.as_ref() else {
            continue;
        };
        let repeat = matches!(outcome.transition, Transition::Updated { .. });
        match position.get(alert.id.as_str()) {
            Some(&i) => alerts[i] = (alert, alerts[i].1 && repeat),
            None => {
                position.insert(&alert.id, alerts.len());
                alerts.push((alert, repeat));
            }
        }
    }
    let (repeats, changed): (Vec<_>, Vec<_>) = alerts.into_iter().partition(|(_, repeat)| *repeat);
    Writes {
        alerts: changed.into_iter().map(|(a, _)| a).collect(),
        repeats: repeats.into_iter().map(|(a, _)| a).collect(),
        timeline: outcomes.iter().flat_map(|o| &o.timeline).collect(),
        actions: outcomes.iter().flat_map(|o| &o.actions).collect(),
    }
}

/// One bound value of a row. Typed, so that PostgreSQL learns each parameter's type even
/// when it is NULL; the same row functions feed the multi-row statements (both backends) and
/// SQLite's bulk path, so a table's column order is written down once.
pub(crate) enum Value<'a> {
    Text(Option<std::borrow::Cow<'a, str>>),
    Int(Option<i64>),
    Bool(bool),
}

fn text(value: &str) -> Value<'_> {
    Value::Text(Some(std::borrow::Cow::Borrowed(value)))
}

fn opt_text(value: Option<&str>) -> Value<'_> {
    Value::Text(value.map(std::borrow::Cow::Borrowed))
}

fn owned<'a>(value: String) -> Value<'a> {
    Value::Text(Some(std::borrow::Cow::Owned(value)))
}

/// An event row, in `EVENT_COLUMNS` order.
pub(crate) fn event_row<'a>(
    record: &'a vakt_core::pipeline::EventRecord,
    trace_id: &'a str,
) -> [Value<'a>; EVENT_COLUMN_COUNT] {
    let event = &record.event;
    [
        text(&record.id),
        Value::Int(Some(ms(event.received_at))),
        Value::Int(Some(ms(event.occurred_at))),
        text(&event.source),
        text(&event.resource),
        text(&event.check),
        text(event.severity.as_str()),
        text(record.category.as_str()),
        opt_text(event.service.as_deref()),
        opt_text(event.environment.as_deref()),
        text(&event.summary),
        text(record.fingerprint.as_str()),
        opt_text(event.sent_fingerprint.as_deref()),
        opt_text(record.alert_id.as_deref()),
        Value::Bool(record.dropped),
        owned(json(&event.labels)),
        owned(json(&event.metrics)),
        owned(json(&event.details)),
        text(trace_id),
        opt_text(event.idempotency_key.as_deref()),
    ]
}

/// An alert row, in `ALERT_COLUMNS` order.
pub(crate) fn alert_row(alert: &Alert) -> [Value<'_>; ALERT_COLUMN_COUNT] {
    [
        text(&alert.id),
        text(alert.fingerprint.as_str()),
        text(alert.status.as_str()),
        text(alert.category.as_str()),
        text(alert.severity.as_str()),
        text(alert.severity_max.as_str()),
        text(&alert.source),
        text(&alert.resource),
        text(&alert.check),
        opt_text(alert.service.as_deref()),
        opt_text(alert.environment.as_deref()),
        text(&alert.summary),
        owned(json(&alert.labels)),
        Value::Int(Some(alert.count)),
        Value::Int(Some(ms(alert.first_seen))),
        Value::Int(Some(ms(alert.last_seen))),
        text(&alert.last_event_id),
        opt_text(alert.acknowledged_by.as_deref()),
        Value::Int(alert.acknowledged_at.map(ms)),
        opt_text(alert.assignee.as_deref()),
        opt_text(alert.resolved_by.as_deref()),
        Value::Int(alert.resolved_at.map(ms)),
        opt_text(alert.incident_id.as_deref()),
        Value::Int(alert.expires_at.map(ms)),
        owned(json(&alert.handling)),
        Value::Bool(alert.handling.flapping),
    ]
}

/// A timeline row, in `TIMELINE_COLUMNS` order.
pub(crate) fn timeline_row(entry: &vakt_core::TimelineEntry) -> [Value<'_>; TIMELINE_COLUMN_COUNT] {
    [
        text(&entry.id),
        text(&entry.alert_id),
        Value::Int(Some(ms(entry.at))),
        text(entry.kind.as_str()),
        text(&entry.by),
        text(&entry.message),
        opt_text(entry.event_id.as_deref()),
    ]
}

/// A decided action's row, in `ACTION_COLUMNS` order; `decided_at_ms` is the batch's.
pub(crate) fn action_row(
    action: &DecidedAction,
    decided_at_ms: i64,
) -> [Value<'_>; ACTION_COLUMN_COUNT] {
    [
        text(&action.id),
        text(&action.alert_id),
        text(&action.event_id),
        text(&action.action),
        text(action.kind),
        text(&action.reason),
        Value::Int(Some(decided_at_ms)),
        text(action.purpose.as_str()),
        text(if action.suppressed_by.is_some() {
            "suppressed"
        } else {
            "pending"
        }),
        opt_text(action.suppressed_by.as_deref()),
        opt_text(action.group_key.as_deref()),
        Value::Int(Some(ms(action.decided_at))),
        Value::Text(
            action
                .target
                .as_ref()
                .map(|t| std::borrow::Cow::Owned(json(t))),
        ),
    ]
}

/// An interned trace's row: `(trace_id, body)`.
pub(crate) fn trace_row(trace: &InternedTrace) -> [Value<'_>; 2] {
    [text(&trace.id), text(&trace.body)]
}

/// Everything a batch inserts or updates, row by row, for a backend's bulk path.
pub(crate) struct BatchRows<'a> {
    /// Traces not yet known to be stored.
    pub traces: Vec<&'a InternedTrace>,
    /// Each event with its trace's id.
    pub events: Vec<(&'a vakt_core::pipeline::EventRecord, &'a str)>,
    pub writes: Writes<'a>,
    /// When the batch's actions were decided (its earliest receipt).
    pub decided_at_ms: i64,
}

/// A new id: a ULID, strictly increasing within this process so that ids sort in the order
/// they were made (timeline entries of one millisecond stay in order).
pub(crate) fn new_id() -> String {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = GENERATOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    generator
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

/// Rows per multi-row INSERT for a table of `columns` columns.
pub(crate) fn chunk_rows(columns: usize) -> usize {
    (BINDS_MAX / columns).max(1)
}

/// Defines the query functions for one backend. `$db` is the sqlx database type, `$row` its
/// row type, `$lock` the suffix that locks selected rows (`FOR UPDATE` or nothing),
/// `$newest_first` the ORDER BY that lists an alert's events newest first along its index,
/// and `write_rows` the backend's function that writes a batch's rows (named at the
/// instantiation, so it can be followed from there).
macro_rules! common_sql {
    ($db:ty, $row:ty, $lock:expr, $newest_first:expr, write_rows = $write_rows:path) => {
        use sqlx::{QueryBuilder, Row};
        use vakt_core::alert::TimelineKind;
        use vakt_core::pipeline::{DecidedAction, EventRecord};
        use vakt_core::{
            Alert, AlertStatus, Category, Event, Fingerprint, Severity, TimelineEntry,
        };
        use $crate::sql::{
            chunk_rows, from_json, json, ms, opt_time, parsed, time, ACTION_COLUMNS,
            ALERT_COLUMNS, ALERT_REPEAT_UPDATE, ALERT_UPDATE, BINDS_MAX, EVENT_COLUMNS, EVENT_SELECT,
            TIMELINE_COLUMNS,
        };
        use $crate::{AlertQuery, EventQuery, Page, StoreError};

        type Conn = <$db as sqlx::Database>::Connection;

        fn alert_from_row(row: &$row) -> Result<Alert, StoreError> {
            Ok(Alert {
                id: row.try_get("id")?,
                fingerprint: Fingerprint::from_stored(row.try_get("fingerprint")?),
                status: parsed("status", AlertStatus::parse(row.try_get("status")?))?,
                category: parsed("category", Category::parse(row.try_get("category")?))?,
                severity: parsed("severity", Severity::parse(row.try_get("severity")?))?,
                severity_max: parsed(
                    "severity_max",
                    Severity::parse(row.try_get("severity_max")?),
                )?,
                source: row.try_get("source")?,
                resource: row.try_get("resource")?,
                check: row.try_get("check_name")?,
                service: row.try_get("service")?,
                environment: row.try_get("environment")?,
                summary: row.try_get("summary")?,
                labels: from_json("labels", row.try_get("labels")?)?,
                count: row.try_get("event_count")?,
                first_seen: time(row.try_get("first_seen")?)?,
                last_seen: time(row.try_get("last_seen")?)?,
                last_event_id: row.try_get("last_event_id")?,
                acknowledged_by: row.try_get("acknowledged_by")?,
                acknowledged_at: opt_time(row.try_get("acknowledged_at")?)?,
                assignee: row.try_get("assignee")?,
                resolved_by: row.try_get("resolved_by")?,
                resolved_at: opt_time(row.try_get("resolved_at")?)?,
                incident_id: row.try_get("incident_id")?,
                expires_at: opt_time(row.try_get("expires_at")?)?,
                handling: from_json("handling", row.try_get("handling")?)?,
            })
        }

        fn event_from_row(row: &$row) -> Result<EventRecord, StoreError> {
            Ok(EventRecord {
                id: row.try_get("id")?,
                event: Event {
                    source: row.try_get("source")?,
                    resource: row.try_get("resource")?,
                    check: row.try_get("check_name")?,
                    severity: parsed("severity", Severity::parse(row.try_get("severity")?))?,
                    summary: row.try_get("summary")?,
                    service: row.try_get("service")?,
                    environment: row.try_get("environment")?,
                    labels: from_json("labels", row.try_get("labels")?)?,
                    metrics: from_json("metrics", row.try_get("metrics")?)?,
                    occurred_at: time(row.try_get("occurred_at")?)?,
                    received_at: time(row.try_get("received_at")?)?,
                    sent_fingerprint: row.try_get("sent_fingerprint")?,
                    details: from_json("details", row.try_get("details")?)?,
                    expires_at: None,
                    expiry: false,
                    idempotency_key: row.try_get("idempotency_key")?,
                    identity_labels: Vec::new(),
                },
                category: parsed("category", Category::parse(row.try_get("category")?))?,
                fingerprint: Fingerprint::from_stored(row.try_get("fingerprint")?),
                alert_id: row.try_get("alert_id")?,
                dropped: row.try_get("dropped")?,
                trace: from_json("trace", row.try_get("trace")?)?,
            })
        }

        fn timeline_from_row(row: &$row) -> Result<TimelineEntry, StoreError> {
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
        async fn load_candidates(
            conn: &mut Conn,
            fingerprints: &[&Fingerprint],
            resolved_since_ms: i64,
        ) -> Result<Vec<Alert>, StoreError> {
            let mut alerts = Vec::new();
            for chunk in fingerprints.chunks(chunk_rows(1)) {
                let mut query: QueryBuilder<$db> = QueryBuilder::new(format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE fingerprint IN ("
                ));
                let mut list = query.separated(", ");
                for fingerprint in chunk {
                    list.push_bind(fingerprint.as_str().to_owned());
                }
                query.push(") AND (status <> 'resolved' OR resolved_at >= ");
                query.push_bind(resolved_since_ms);
                query.push(")");
                query.push($lock);
                for row in query.build().fetch_all(&mut *conn).await? {
                    alerts.push(alert_from_row(&row)?);
                }
            }
            Ok(alerts)
        }

        /// Binds one row's values into a multi-row statement.
        fn push_row<'a>(
            row: &mut sqlx::query_builder::Separated<'_, $db, &'static str>,
            values: impl IntoIterator<Item = $crate::sql::Value<'a>>,
        ) {
            use std::borrow::Cow;
            use $crate::sql::Value;
            for value in values {
                match value {
                    Value::Text(None) => row.push_bind(None::<&str>),
                    Value::Text(Some(Cow::Borrowed(text))) => row.push_bind(text),
                    Value::Text(Some(Cow::Owned(text))) => row.push_bind(text),
                    Value::Int(number) => row.push_bind(number),
                    Value::Bool(flag) => row.push_bind(flag),
                };
            }
        }

        /// Inserts rows, `chunk_rows` per statement; `tail` follows the VALUES.
        async fn insert_rows<T, const N: usize>(
            conn: &mut Conn,
            head: &str,
            tail: &str,
            items: &[T],
            to_row: impl for<'a> Fn(&'a T) -> [$crate::sql::Value<'a>; N],
        ) -> Result<(), StoreError> {
            for chunk in items.chunks(chunk_rows(N)) {
                let mut query: QueryBuilder<$db> = QueryBuilder::new(head);
                query.push_values(chunk, |mut row, item| push_row(&mut row, to_row(item)));
                query.push(tail);
                query.build().execute(&mut *conn).await?;
            }
            Ok(())
        }

        #[allow(dead_code)]
        async fn insert_events(
            conn: &mut Conn,
            records: &[(&EventRecord, &str)],
        ) -> Result<(), StoreError> {
            let head = format!("INSERT INTO events ({EVENT_COLUMNS}) ");
            insert_rows(conn, &head, "", records, |(record, trace_id)| $crate::sql::event_row(record, trace_id)).await
        }

        #[allow(dead_code)]
        async fn insert_traces(
            conn: &mut Conn,
            traces: &[&$crate::sql::InternedTrace],
        ) -> Result<(), StoreError> {
            let head = format!("INSERT INTO traces ({}) ", $crate::sql::TRACE_COLUMNS);
            insert_rows(conn, &head, $crate::sql::TRACE_CONFLICT, traces, |trace| $crate::sql::trace_row(trace)).await
        }

        async fn upsert_alerts(conn: &mut Conn, alerts: &[&Alert]) -> Result<(), StoreError> {
            write_alerts(conn, alerts, ALERT_UPDATE).await
        }

        /// Inserts alerts, or on an existing id sets the columns `update` names.
        async fn write_alerts(
            conn: &mut Conn,
            alerts: &[&Alert],
            update: &str,
        ) -> Result<(), StoreError> {
            let head = format!("INSERT INTO alerts ({ALERT_COLUMNS}) ");
            let tail = $crate::sql::alert_conflict(update);
            insert_rows(conn, &head, &tail, alerts, |alert| $crate::sql::alert_row(alert)).await
        }

        async fn insert_timeline(
            conn: &mut Conn,
            entries: &[&TimelineEntry],
        ) -> Result<(), StoreError> {
            let head = format!("INSERT INTO alert_timeline ({TIMELINE_COLUMNS}) ");
            insert_rows(conn, &head, "", entries, |entry| $crate::sql::timeline_row(entry)).await
        }

        async fn insert_actions(
            conn: &mut Conn,
            actions: &[&DecidedAction],
            decided_at_ms: i64,
        ) -> Result<(), StoreError> {
            let head = format!("INSERT INTO decided_actions ({ACTION_COLUMNS}) ");
            insert_rows(conn, &head, "", actions, |action| $crate::sql::action_row(action, decided_at_ms)).await
        }

        /// Writes a batch's rows with the multi-row statements above (the bulk path a
        /// backend uses unless it has a faster one of its own).
        #[allow(dead_code)]
        async fn write_rows_generic(
            conn: &mut Conn,
            rows: &$crate::sql::BatchRows<'_>,
        ) -> Result<(), StoreError> {
            insert_traces(conn, &rows.traces).await?;
            insert_events(conn, &rows.events).await?;
            upsert_alerts(conn, &rows.writes.alerts).await?;
            write_alerts(conn, &rows.writes.repeats, ALERT_REPEAT_UPDATE).await?;
            insert_timeline(conn, &rows.writes.timeline).await?;
            insert_actions(conn, &rows.writes.actions, rows.decided_at_ms).await
        }

        /// The alerts of `fingerprints` that new events may land on (active, or resolved
        /// since `resolved_since_ms`), keyed by fingerprint, locked for the transaction.
        async fn load_current(
            conn: &mut Conn,
            fingerprints: &[&Fingerprint],
            resolved_since_ms: i64,
        ) -> Result<std::collections::HashMap<Fingerprint, Alert>, StoreError> {
            let candidates = load_candidates(conn, fingerprints, resolved_since_ms).await?;
            Ok($crate::sql::current_alerts(candidates))
        }

        /// Every alert new events may land on, read page by page; `None` when there are more
        /// than `max` (the caller then reads them as batches need them).
        #[allow(dead_code)]
        async fn load_all_current(
            conn: &mut Conn,
            resolved_since_ms: i64,
            max: usize,
        ) -> Result<Option<std::collections::HashMap<Fingerprint, Alert>>, StoreError> {
            const PAGE: i64 = 10_000;
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM alerts WHERE status <> 'resolved' OR resolved_at >= $1",
            )
            .bind(resolved_since_ms)
            .fetch_one(&mut *conn)
            .await?;
            if usize::try_from(count).unwrap_or(usize::MAX) > max {
                return Ok(None);
            }
            let mut all = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
            let mut after = String::new();
            loop {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE (status <> 'resolved' OR resolved_at >= $1) AND id > $2 ORDER BY id LIMIT {PAGE}"
                )))
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
            Ok(Some($crate::sql::current_alerts(all)))
        }

        /// Correlates a batch against `current` and writes everything inside the caller's
        /// transaction. Returns the outcomes and the ids of traces it stored.
        /// The ids of events stored under these idempotency keys (key -> id).
        async fn stored_keys(
            conn: &mut Conn,
            keys: &[&str],
        ) -> Result<std::collections::HashMap<String, String>, StoreError> {
            let mut found = std::collections::HashMap::new();
            for chunk in keys.chunks(BINDS_MAX) {
                let mut query: QueryBuilder<$db> =
                    QueryBuilder::new("SELECT idempotency_key, id FROM events WHERE idempotency_key IN (");
                let mut list = query.separated(", ");
                for key in chunk {
                    list.push_bind(*key);
                }
                query.push(")");
                for row in query.build().fetch_all(&mut *conn).await? {
                    found.insert(row.try_get("idempotency_key")?, row.try_get("id")?);
                }
            }
            Ok(found)
        }

        /// `write_unique` for a batch whose events may repeat stored ones (idempotency
        /// keys): repeats are answered with the stored event's id and not processed.
        async fn write_batch(
            conn: &mut Conn,
            pipeline: &vakt_core::Pipeline,
            silences: &vakt_core::silence::ActiveSilences,
            batch: Vec<vakt_core::Prepared>,
            event_ids: &[String],
            current: std::collections::HashMap<Fingerprint, Alert>,
            known: &$crate::sql::KnownTraces,
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
            let mut split = $crate::sql::dedupe(batch, event_ids, stored);
            let kept = std::mem::take(&mut split.kept);
            let kept_ids = std::mem::take(&mut split.kept_ids);
            let (outcomes, traces) =
                write_unique(conn, pipeline, silences, kept, &kept_ids, current, known).await?;
            Ok((split.merge(outcomes), traces))
        }

        /// Correlates a batch of new events against `current` and writes everything inside
        /// the caller's transaction. Returns the outcomes and the ids of traces it stored.
        async fn write_unique(
            conn: &mut Conn,
            pipeline: &vakt_core::Pipeline,
            silences: &vakt_core::silence::ActiveSilences,
            batch: Vec<vakt_core::Prepared>,
            event_ids: &[String],
            current: std::collections::HashMap<Fingerprint, Alert>,
            known: &$crate::sql::KnownTraces,
        ) -> Result<(Vec<vakt_core::Correlated>, Vec<String>), StoreError> {
            if batch.is_empty() {
                return Ok((Vec::new(), Vec::new()));
            }
            let decided_at = batch.iter().map(|p| p.event.received_at).min().map_or(0, ms);
            let mut outcomes = $crate::sql::correlate_batch(pipeline, silences, batch, event_ids, current);
            if outcomes.iter().any(|o| o.incident.is_some()) {
                open_batch_incidents(conn, pipeline, &mut outcomes).await?;
            }
            let traces: Vec<$crate::sql::InternedTrace> =
                outcomes.iter().map(|o| $crate::sql::intern(&o.record.trace)).collect();
            let mut seen = std::collections::HashSet::new();
            let new_traces: Vec<&$crate::sql::InternedTrace> = traces
                .iter()
                .filter(|t| !known.contains(&t.id) && seen.insert(t.id.as_str()))
                .collect();
            let records: Vec<(&EventRecord, &str)> = outcomes
                .iter()
                .zip(&traces)
                .map(|(o, t)| (&o.record, t.id.as_str()))
                .collect();
            let rows = $crate::sql::BatchRows {
                traces: new_traces,
                events: records,
                writes: $crate::sql::writes(&outcomes),
                decided_at_ms: decided_at,
            };
            $write_rows(conn, &rows).await?;
            let stored = rows.traces.iter().map(|t| t.id.clone()).collect();
            drop(rows);
            after_batch(conn, pipeline, &outcomes, chrono::Utc::now()).await?;
            Ok((outcomes, stored))
        }

        /// The rows `select` (`SELECT ... FROM t`) finds for these ids, each once, in the
        /// order of their first mention; ids with no row are left out. One query per chunk.
        async fn by_ids<T>(
            conn: &mut Conn,
            select: &str,
            ids: &[&str],
            from_row: fn(&$row) -> Result<T, StoreError>,
            id_of: fn(&T) -> &str,
        ) -> Result<Vec<T>, StoreError> {
            let mut unique: Vec<&str> = Vec::with_capacity(ids.len());
            let mut seen = std::collections::HashSet::with_capacity(ids.len());
            unique.extend(ids.iter().copied().filter(|id| seen.insert(*id)));
            let mut found: std::collections::HashMap<String, T> =
                std::collections::HashMap::with_capacity(unique.len());
            for chunk in unique.chunks(BINDS_MAX) {
                let mut query: QueryBuilder<$db> = QueryBuilder::new(format!("{select} WHERE id IN ("));
                let mut list = query.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                query.push(")");
                for row in query.build().fetch_all(&mut *conn).await? {
                    let item = from_row(&row)?;
                    found.insert(id_of(&item).to_owned(), item);
                }
            }
            Ok(unique.into_iter().filter_map(|id| found.remove(id)).collect())
        }

        async fn get_alerts(conn: &mut Conn, ids: &[&str]) -> Result<Vec<Alert>, StoreError> {
            let select = format!("SELECT {ALERT_COLUMNS} FROM alerts");
            by_ids(conn, &select, ids, alert_from_row, |a| &a.id).await
        }

        async fn get_alert(conn: &mut Conn, id: &str, lock: bool) -> Result<Option<Alert>, StoreError> {
            let mut query: QueryBuilder<$db> =
                QueryBuilder::new(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = "));
            query.push_bind(id.to_owned());
            if lock {
                query.push($lock);
            }
            match query.build().fetch_optional(&mut *conn).await? {
                Some(row) => Ok(Some(alert_from_row(&row)?)),
                None => Ok(None),
            }
        }

        /// Applies an operator's request inside the caller's transaction.
        async fn operate_in(
            conn: &mut Conn,
            pipeline: &vakt_core::Pipeline,
            silences: &vakt_core::silence::ActiveSilences,
            alert_id: &str,
            request: &vakt_core::alert::OperatorRequest,
        ) -> Result<Alert, $crate::OperateError> {
            let Some(alert) = get_alert(conn, alert_id, true).await? else {
                return Err($crate::OperateError::NotFound(alert_id.to_owned()));
            };
            let now = chrono::Utc::now();
            let mut new_id = $crate::sql::new_id;
            let done = pipeline.operate(&alert, request, now, silences, &mut new_id)?;
            upsert_alerts(conn, &[&done.alert]).await?;
            insert_timeline(conn, &done.timeline.iter().collect::<Vec<_>>()).await?;
            insert_actions(conn, &done.actions.iter().collect::<Vec<_>>(), ms(now)).await?;
            after_operate(conn, pipeline, &done.alert, request, now).await?;
            Ok(done.alert)
        }

        /// Stores a throttle window (`state` is the dispatcher's JSON), or forgets it when
        /// `state` is `None`.
        async fn write_throttle(conn: &mut Conn, key: &str, state: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
            match state {
                Some(state) => {
                    sqlx::query(
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
                    sqlx::query("DELETE FROM throttle_windows WHERE throttle_key = $1")
                        .bind(key.to_owned())
                        .execute(&mut *conn)
                        .await?;
                }
            }
            Ok(())
        }

        async fn read_throttles(conn: &mut Conn) -> Result<Vec<(String, String)>, StoreError> {
            sqlx::query("SELECT throttle_key, state FROM throttle_windows ORDER BY throttle_key")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|row| Ok((row.try_get("throttle_key")?, row.try_get("state")?)))
                .collect()
        }

        async fn list_flapping(conn: &mut Conn, limit: u32) -> Result<Vec<Alert>, StoreError> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE flapping ORDER BY id LIMIT $1"
            )))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(alert_from_row)
            .collect()
        }

        async fn get_events(conn: &mut Conn, ids: &[&str]) -> Result<Vec<EventRecord>, StoreError> {
            by_ids(conn, EVENT_SELECT, ids, event_from_row, |e| &e.id).await
        }

        async fn get_event(conn: &mut Conn, id: &str) -> Result<Option<EventRecord>, StoreError> {
            let mut query: QueryBuilder<$db> =
                QueryBuilder::new(format!("{EVENT_SELECT} WHERE id = "));
            query.push_bind(id.to_owned());
            match query.build().fetch_optional(&mut *conn).await? {
                Some(row) => Ok(Some(event_from_row(&row)?)),
                None => Ok(None),
            }
        }

        /// Adds ` AND column = value` when the filter is set.
        fn filter_eq(query: &mut QueryBuilder<$db>, column: &str, value: Option<String>) {
            if let Some(value) = value {
                query.push(format!(" AND {column} = "));
                query.push_bind(value);
            }
        }

        /// Finishes a list query: the cursor, newest first, `limit + 1` rows to learn whether
        /// another page follows.
        async fn fetch_page<T>(
            conn: &mut Conn,
            mut query: QueryBuilder<$db>,
            cursor: Option<&str>,
            limit: u32,
            from_row: fn(&$row) -> Result<T, StoreError>,
            id: fn(&T) -> &str,
        ) -> Result<Page<T>, StoreError> {
            if let Some(cursor) = cursor {
                query.push(" AND id < ");
                query.push_bind(cursor.to_owned());
            }
            query.push(" ORDER BY id DESC LIMIT ");
            query.push_bind(i64::from(limit) + 1);
            let rows = query.build().fetch_all(&mut *conn).await?;
            let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
            let next_cursor = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items.last().map(|item| id(item).to_owned())
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        }

        async fn list_events(conn: &mut Conn, q: &EventQuery) -> Result<Page<EventRecord>, StoreError> {
            let mut query: QueryBuilder<$db> =
                QueryBuilder::new(format!("{EVENT_SELECT} WHERE 1 = 1"));
            filter_eq(&mut query, "source", q.source.clone());
            filter_eq(&mut query, "resource", q.resource.clone());
            filter_eq(&mut query, "check_name", q.check.clone());
            filter_eq(&mut query, "severity", q.severity.map(|s| s.as_str().to_owned()));
            filter_eq(&mut query, "category", q.category.map(|c| c.as_str().to_owned()));
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
            fetch_page(conn, query, q.cursor.as_deref(), q.limit, event_from_row, |e| &e.id).await
        }

        async fn list_alerts(conn: &mut Conn, q: &AlertQuery) -> Result<Page<Alert>, StoreError> {
            let mut query: QueryBuilder<$db> =
                QueryBuilder::new(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE 1 = 1"));
            if !q.status.is_empty() {
                query.push(" AND status IN (");
                let mut list = query.separated(", ");
                for status in &q.status {
                    list.push_bind(status.as_str());
                }
                query.push(")");
            }
            filter_eq(&mut query, "severity", q.severity.map(|s| s.as_str().to_owned()));
            filter_eq(&mut query, "category", q.category.map(|c| c.as_str().to_owned()));
            filter_eq(&mut query, "resource", q.resource.clone());
            filter_eq(&mut query, "check_name", q.check.clone());
            filter_eq(&mut query, "service", q.service.clone());
            filter_eq(&mut query, "environment", q.environment.clone());
            filter_eq(&mut query, "fingerprint", q.fingerprint.clone());
            fetch_page(conn, query, q.cursor.as_deref(), q.limit, alert_from_row, |a| &a.id).await
        }

        async fn list_timeline(conn: &mut Conn, alert_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
            let rows = sqlx::query(
                "SELECT id, alert_id, at, kind, actor, message, event_id FROM alert_timeline WHERE alert_id = $1 ORDER BY id",
            )
            .bind(alert_id.to_owned())
            .fetch_all(&mut *conn)
            .await?;
            rows.iter().map(timeline_from_row).collect()
        }

        async fn list_alert_events(
            conn: &mut Conn,
            alert_id: &str,
            limit: u32,
        ) -> Result<Vec<EventRecord>, StoreError> {
            let mut query: QueryBuilder<$db> =
                QueryBuilder::new(format!("{EVENT_SELECT} WHERE alert_id = "));
            query.push_bind(alert_id.to_owned());
            query.push(concat!(" ORDER BY ", $newest_first, " LIMIT "));
            query.push_bind(i64::from(limit));
            let rows = query.build().fetch_all(&mut *conn).await?;
            rows.iter().map(event_from_row).collect()
        }

        async fn write_override(
            conn: &mut Conn,
            schedule: &str,
            item: &vakt_core::oncall::OverrideConfig,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO schedule_overrides (id, schedule, user_id, starts_at, ends_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(item.id.clone().unwrap_or_else($crate::sql::new_id))
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

        async fn read_overrides(
            conn: &mut Conn,
            schedule: &str,
            ending_after_ms: i64,
        ) -> Result<Vec<vakt_core::oncall::OverrideConfig>, StoreError> {
            let rows = sqlx::query(
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

        async fn remove_override(conn: &mut Conn, schedule: &str, id: &str) -> Result<bool, StoreError> {
            let done = sqlx::query("DELETE FROM schedule_overrides WHERE schedule = $1 AND id = $2")
                .bind(schedule.to_owned())
                .bind(id.to_owned())
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        /// Unresolved alerts whose `expires_at` has passed, oldest first.
        async fn list_expired(
            conn: &mut Conn,
            now_ms: i64,
            limit: u32,
        ) -> Result<Vec<Alert>, StoreError> {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE expires_at IS NOT NULL AND status <> 'resolved' AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
            )))
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            rows.iter().map(alert_from_row).collect()
        }

        fn silence_from_row(row: &$row) -> Result<vakt_core::silence::Silence, StoreError> {
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

        async fn write_silence(
            conn: &mut Conn,
            silence: &vakt_core::silence::Silence,
        ) -> Result<(), StoreError> {
            sqlx::query(
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

        /// Silences, newest first; with `id`, only that one.
        async fn read_silences(
            conn: &mut Conn,
            id: Option<&str>,
        ) -> Result<Vec<vakt_core::silence::Silence>, StoreError> {
            let mut query: QueryBuilder<$db> = QueryBuilder::new(
                "SELECT id, matchers, starts_at, ends_at, created_by, comment, updated_at FROM silences",
            );
            if let Some(id) = id {
                query.push(" WHERE id = ");
                query.push_bind(id.to_owned());
            }
            query.push(" ORDER BY updated_at DESC");
            let rows = query.build().fetch_all(&mut *conn).await?;
            rows.iter().map(silence_from_row).collect()
        }

        fn heartbeat_from_row(row: &$row) -> Result<vakt_core::heartbeat::Heartbeat, StoreError> {
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

        async fn write_heartbeat(
            conn: &mut Conn,
            beat: &vakt_core::heartbeat::Heartbeat,
        ) -> Result<(), StoreError> {
            sqlx::query(
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

        async fn read_heartbeats(
            conn: &mut Conn,
            name: Option<&str>,
        ) -> Result<Vec<vakt_core::heartbeat::Heartbeat>, StoreError> {
            let mut query: QueryBuilder<$db> = QueryBuilder::new(
                "SELECT name, resource, check_name, service, environment, interval_secs, grace_secs, last_seen, missing FROM heartbeats",
            );
            if let Some(name) = name {
                query.push(" WHERE name = ");
                query.push_bind(name.to_owned());
            }
            query.push(" ORDER BY name");
            let rows = query.build().fetch_all(&mut *conn).await?;
            rows.iter().map(heartbeat_from_row).collect()
        }

        async fn count_alerts(conn: &mut Conn) -> Result<$crate::Stats, StoreError> {
            let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM alerts GROUP BY status")
                .fetch_all(&mut *conn)
                .await?;
            let mut stats = $crate::Stats::default();
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
    };
}

pub(crate) use common_sql;
