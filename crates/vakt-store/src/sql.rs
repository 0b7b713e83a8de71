//! What the SQLite and PostgreSQL stores share besides the queries: column lists, row values,
//! time and JSON conversions, the batch correlation and trace interning.
//!
//! Both schemas use the same table and column names and store times as Unix milliseconds
//! and maps as JSON text, so the SQL runs unchanged on both (sqlx understands `$N`
//! placeholders for SQLite too). The queries themselves are plain functions over
//! `db::Conn` in `queries`, `dispatch` and `escalate`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use vakt_core::pipeline::DecidedAction;
use vakt_core::pipeline::Transition;
use vakt_core::{Alert, Correlated, Fingerprint, Pipeline, Prepared, TimelineEntry};

use crate::StoreError;

/// Most bind parameters one statement may carry (SQLite allows 32766, PostgreSQL 65535).
pub(crate) const BINDS_MAX: usize = 30_000;

pub(crate) const EVENT_COLUMNS: &str = "id, received_at, occurred_at, source, resource, check_name, severity, category, service, environment, summary, fingerprint, sent_fingerprint, alert_id, dropped, labels, metrics, details, trace_id, idempotency_key, received";
/// The events' columns before schema 15, for journal records written by an earlier vakt.
pub(crate) const EVENT_COLUMNS_14: &str = "id, received_at, occurred_at, source, resource, check_name, severity, category, service, environment, summary, fingerprint, sent_fingerprint, alert_id, dropped, labels, metrics, details, trace_id, idempotency_key";
/// Events read back with their interned trace.
pub(crate) const EVENT_SELECT: &str = "SELECT id, received_at, occurred_at, source, resource, check_name, severity, category, service, environment, summary, fingerprint, sent_fingerprint, alert_id, dropped, labels, metrics, details, idempotency_key, received, body AS trace FROM events JOIN traces USING (trace_id)";
/// An event's columns for a replay: no trace.
pub(crate) const EVENT_REPLAY_SELECT: &str = "SELECT id, received_at, occurred_at, source, resource, check_name, severity, category, service, environment, summary, fingerprint, sent_fingerprint, alert_id, dropped, labels, metrics, details, idempotency_key, received, CAST('[]' AS TEXT) AS trace FROM events";
pub(crate) const EVENT_COLUMN_COUNT: usize = 21;
pub(crate) const ALERT_COLUMNS: &str = "id, fingerprint, status, category, severity, severity_max, source, resource, check_name, service, environment, summary, labels, event_count, first_seen, last_seen, last_event_id, acknowledged_by, acknowledged_at, assignee, resolved_by, resolved_at, incident_id, expires_at, handling, flapping";
pub(crate) const ALERT_COLUMN_COUNT: usize = 26;
/// A new alert's columns: `ALERT_COLUMNS` and the line that opened it (schema 19), in
/// `opened_row` order.
pub(crate) fn alert_opened_columns() -> String {
    format!("{ALERT_COLUMNS}, opened_line, opened_event_id")
}
/// Columns a repeat changes: not status or fingerprint, so of the alerts' indexes only the
/// partial ones on `expires_at` and `flapping` can move with it.
pub(crate) const ALERT_REPEAT_UPDATE: &str = "severity = excluded.severity, severity_max = excluded.severity_max, category = excluded.category, source = excluded.source, summary = excluded.summary, labels = excluded.labels, event_count = excluded.event_count, last_seen = excluded.last_seen, last_event_id = excluded.last_event_id, expires_at = excluded.expires_at, handling = excluded.handling, flapping = excluded.flapping";
/// Columns an alert upsert overwrites (all but id, fingerprint and first_seen).
pub(crate) const ALERT_UPDATE: &str = "status = excluded.status, category = excluded.category, severity = excluded.severity, severity_max = excluded.severity_max, source = excluded.source, summary = excluded.summary, labels = excluded.labels, event_count = excluded.event_count, last_seen = excluded.last_seen, last_event_id = excluded.last_event_id, acknowledged_by = excluded.acknowledged_by, acknowledged_at = excluded.acknowledged_at, assignee = excluded.assignee, resolved_by = excluded.resolved_by, resolved_at = excluded.resolved_at, incident_id = excluded.incident_id, expires_at = excluded.expires_at, handling = excluded.handling, flapping = excluded.flapping";
pub(crate) const TRACE_COLUMNS: &str = "trace_id, body";
/// What follows a trace insert: traces are content-addressed, so a known one is kept as is.
pub(crate) const TRACE_CONFLICT: &str = " ON CONFLICT (trace_id) DO NOTHING";
/// A trace's newest event, moved forward only (SQLite, schema 20): retention removes the
/// trace once the events up to it are gone.
pub(crate) const TRACE_USED: &str = "UPDATE traces SET last_event_id = ?1 \
     WHERE trace_id = ?2 AND (last_event_id IS NULL OR last_event_id < ?1)";

/// What follows an alert insert: on an existing id, set the columns `update` names
/// (`ALERT_UPDATE` or `ALERT_REPEAT_UPDATE`).
pub(crate) fn alert_conflict(update: &str) -> String {
    format!(" ON CONFLICT (id) DO UPDATE SET {update}")
}

pub(crate) const TIMELINE_COLUMNS: &str = "id, alert_id, at, kind, actor, message, event_id";
pub(crate) const TIMELINE_COLUMN_COUNT: usize = 7;
pub(crate) const ACTION_COLUMNS: &str = "id, alert_id, event_id, action, kind, reason, decided_at, purpose, status, suppressed_by, group_key, next_at, target";
pub(crate) const ACTION_COLUMN_COUNT: usize = 13;
/// A decided action claimed in the write that stores it (`Store::ingest_handing`).
pub(crate) const HANDED_COLUMNS: &str = "id, alert_id, event_id, action, kind, reason, decided_at, purpose, status, suppressed_by, group_key, next_at, target, lease_until, attempts";

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
    current: HashMap<Fingerprint, impl std::borrow::Borrow<Alert>>,
) -> Vec<Correlated> {
    let mut new_id = new_id;
    // Where each fingerprint's latest state is: the outcome of its last event in this batch
    // (by index, so no alert is copied to remember it), else what storage had.
    let mut latest: HashMap<Fingerprint, usize> = HashMap::new();
    let mut outcomes: Vec<Correlated> = Vec::with_capacity(batch.len());
    for (prepared, event_id) in batch.into_iter().zip(event_ids) {
        let alert = match latest.get(&prepared.fingerprint) {
            Some(&i) => outcomes[i].alert.as_deref(),
            None => current
                .get(&prepared.fingerprint)
                .map(std::borrow::Borrow::borrow),
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
///
/// Retention removes traces no event uses any more. On this node that happens under the same
/// lock as the batches, which `forget` them; another node cannot tell this one, so the whole
/// set is also forgotten after [`KnownTraces::MAX_AGE`], far less than the shortest event
/// retention: a trace this node stored within that age is used by an event younger than
/// that, which retention keeps.
///
/// It also remembers the interned form of the traces it met (`intern`): events that take
/// the same path through the rules have the same trace, and serialising and hashing it
/// again for each of them was a sixth of the writer's time.
#[derive(Default)]
pub(crate) struct KnownTraces {
    ids: std::collections::HashSet<String>,
    since: Option<std::time::Instant>,
    /// Trace -> its interned form (`intern` is a pure function of the trace, so an entry
    /// never goes stale). Bounded by `INTERNED_MAX`. Hashed with foldhash (seeded per
    /// process): every event's whole trace is hashed here, and SipHash was 1.3% of the
    /// server's CPU in a bulk run.
    interned: foldhash::HashMap<Vec<vakt_core::TraceEntry>, std::sync::Arc<InternedTrace>>,
}

impl KnownTraces {
    const MAX: usize = 100_000;
    /// Distinct traces remembered in their interned form; past it they are forgotten and
    /// interned again as they come. A rule set's paths make tens to hundreds of distinct
    /// traces; each held one costs about 2-3 KiB (the trace and its JSON), so a few MiB
    /// at the most.
    const INTERNED_MAX: usize = 1024;
    pub(crate) const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

    /// `intern(trace)`, remembered.
    pub fn intern(&mut self, trace: &[vakt_core::TraceEntry]) -> std::sync::Arc<InternedTrace> {
        if let Some(known) = self.interned.get(trace) {
            return std::sync::Arc::clone(known);
        }
        if self.interned.len() >= Self::INTERNED_MAX {
            self.interned.clear();
        }
        let new = std::sync::Arc::new(intern(trace));
        self.interned
            .insert(trace.to_vec(), std::sync::Arc::clone(&new));
        new
    }

    pub fn contains(&self, id: &str) -> bool {
        self.since.is_some_and(|t| t.elapsed() < Self::MAX_AGE) && self.ids.contains(id)
    }

    /// Remembers ids once their transaction committed.
    pub fn extend(&mut self, ids: impl IntoIterator<Item = String>) {
        if self.ids.len() > Self::MAX || self.since.is_none_or(|t| t.elapsed() >= Self::MAX_AGE) {
            self.ids.clear();
            self.since = Some(std::time::Instant::now());
        }
        self.ids.extend(ids);
    }

    /// Forgets ids whose rows were removed.
    pub fn forget(&mut self, ids: &[String]) {
        for id in ids {
            self.ids.remove(id);
        }
    }
}

/// The rows a batch writes: each alert once, in its final state, in order of first change.
pub(crate) struct Writes<'a> {
    /// Alerts the batch opened, each with the line that says so: every column is written,
    /// and the line with them (`opened_row`), not as a timeline row.
    pub opened: Vec<(&'a Alert, &'a TimelineEntry)>,
    /// Alerts whose status changed in the batch: every column is written.
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
    // The line of each alert the batch opened goes into the alert's row.
    let opening: HashMap<&str, &TimelineEntry> = outcomes
        .iter()
        .filter(|o| o.transition == Transition::Opened)
        .flat_map(|o| &o.timeline)
        .filter(|entry| entry.is_opening())
        .map(|entry| (entry.alert_id.as_str(), entry))
        .collect();
    let mut opened = Vec::with_capacity(opening.len());
    let mut others = Vec::with_capacity(changed.len());
    for (alert, _) in changed {
        match opening.get(alert.id.as_str()) {
            Some(line) => opened.push((alert, *line)),
            None => others.push(alert),
        }
    }
    Writes {
        opened,
        alerts: others,
        repeats: repeats.into_iter().map(|(a, _)| a).collect(),
        // A decision's line is given back from its decided action, an opening line from its
        // alert's row (`queries::list_timeline`).
        timeline: outcomes
            .iter()
            .flat_map(|o| &o.timeline)
            .filter(|entry| {
                let given_back = entry.is_decision()
                    || (entry.is_opening() && opening.contains_key(entry.alert_id.as_str()));
                !given_back
            })
            .collect(),
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
/// `labels` is the event's labels as JSON when the caller has made it already (`None`:
/// made here).
pub(crate) fn event_row<'a>(
    record: &'a vakt_core::pipeline::EventRecord,
    trace_id: &'a str,
    labels: Option<&'a str>,
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
        labels_json(labels, &event.labels),
        owned(json(&event.metrics)),
        owned(json(&event.details)),
        text(trace_id),
        opt_text(event.idempotency_key.as_deref()),
        Value::Text(
            record
                .received
                .as_ref()
                .map(|r| std::borrow::Cow::Owned(json(r))),
        ),
    ]
}

/// `labels` as given (JSON already made), else `labels` serialised.
fn labels_json<'a>(
    made: Option<&'a str>,
    labels: &std::collections::BTreeMap<String, String>,
) -> Value<'a> {
    match made {
        Some(made) => text(made),
        None => owned(json(labels)),
    }
}

/// An alert row, in `ALERT_COLUMNS` order; `labels` as in `event_row`.
pub(crate) fn alert_row<'a>(
    alert: &'a Alert,
    labels: Option<&'a str>,
) -> [Value<'a>; ALERT_COLUMN_COUNT] {
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
        labels_json(labels, &alert.labels),
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

/// An opened alert's row, in `alert_opened_columns` order: its columns and the line
/// correlate wrote when it opened it (the line's time is the alert's `first_seen`).
pub(crate) fn opened_row<'a>(
    alert: &'a Alert,
    line: &'a TimelineEntry,
    labels: Option<&'a str>,
) -> [Value<'a>; ALERT_COLUMN_COUNT + 2] {
    let mut values = alert_row(alert, labels)
        .into_iter()
        .chain([text(&line.message), opt_text(line.event_id.as_deref())]);
    std::array::from_fn(|_| values.next().unwrap_or(Value::Int(None)))
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

/// A handed action's row, in `HANDED_COLUMNS` order: claimed (`running`, its first
/// attempt) until `lease_until_ms`.
pub(crate) fn handed_row(
    action: &DecidedAction,
    decided_at_ms: i64,
    lease_until_ms: i64,
) -> [Value<'_>; ACTION_COLUMN_COUNT + 2] {
    let [a, b, c, d, e, f, g, h, _status, j, k, l, m] = action_row(action, decided_at_ms);
    [
        a,
        b,
        c,
        d,
        e,
        f,
        g,
        h,
        text("running"),
        j,
        k,
        l,
        m,
        Value::Int(Some(lease_until_ms)),
        Value::Int(Some(1)),
    ]
}

pub(crate) const ROLLUP_COLUMNS: &str =
    "hour, source, check_name, category, severity, dropped, events";
pub(crate) const ROLLUP_CONFLICT: &str = " ON CONFLICT (hour, source, check_name, category, severity, dropped) \
     DO UPDATE SET events = event_rollup.events + excluded.events";

/// Events of one hour and kind in a batch.
pub(crate) struct RollupRow<'a> {
    pub hour_ms: i64,
    pub source: &'a str,
    pub check: &'a str,
    pub category: &'static str,
    pub severity: &'static str,
    pub dropped: bool,
    pub events: i64,
}

/// The batch's stored events counted per hour of receipt, source, check, category,
/// severity and dropped: one row per distinct key.
pub(crate) fn rollup(outcomes: &[Correlated]) -> Vec<RollupRow<'_>> {
    let mut counts: BTreeMap<(i64, &str, &str, &'static str, &'static str, bool), i64> =
        BTreeMap::new();
    for outcome in outcomes {
        if outcome.transition == Transition::Duplicate {
            continue;
        }
        let record = &outcome.record;
        let event = &record.event;
        let hour_ms = ms(event.received_at).div_euclid(3_600_000) * 3_600_000;
        *counts
            .entry((
                hour_ms,
                event.source.as_str(),
                event.check.as_str(),
                record.category.as_str(),
                event.severity.as_str(),
                record.dropped,
            ))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(
            |((hour_ms, source, check, category, severity, dropped), events)| RollupRow {
                hour_ms,
                source,
                check,
                category,
                severity,
                dropped,
                events,
            },
        )
        .collect()
}

/// A rollup row, in `ROLLUP_COLUMNS` order.
pub(crate) fn rollup_row<'a>(row: &'a RollupRow<'_>) -> [Value<'a>; 7] {
    [
        Value::Int(Some(row.hour_ms)),
        text(row.source),
        text(row.check),
        text(row.category),
        text(row.severity),
        Value::Bool(row.dropped),
        Value::Int(Some(row.events)),
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
    /// Notification groups (key, action) the batch gave a pending member.
    pub groups: Vec<(&'a str, &'a str)>,
    /// Actions claimed in this write (`handed_row`), not among `writes.actions`.
    pub handed: Vec<&'a DecidedAction>,
    /// The batch's events counted per hour and kind (`event_rollup`).
    pub rollup: Vec<RollupRow<'a>>,
    pub lease_until_ms: i64,
}

/// A new id: a ULID, strictly increasing within this process so that ids sort in the order
/// they were made (timeline entries of one millisecond stay in order). Written out after
/// the lock and through a buffer: `Ulid::to_string` checks the UTF-8 of its own alphabet,
/// and a new alert takes five ids.
pub(crate) fn new_id() -> String {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let id = {
        let mut guard = GENERATOR
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let generator = guard.get_or_insert_with(ulid::Generator::new);
        generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
    };
    let mut text = [0; ulid::ULID_LEN];
    id.array_to_str(&mut text).to_owned()
}

/// Rows per multi-row INSERT for a table of `columns` columns.
pub(crate) fn chunk_rows(columns: usize) -> usize {
    (BINDS_MAX / columns).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vakt_core::{Stage, TraceEntry};

    /// Ids read as the ULIDs they are, in `Ulid::to_string`'s text, and sort in the order
    /// they were made.
    #[test]
    fn new_ids_are_ulids_in_the_order_made() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        for id in &ids {
            let read = ulid::Ulid::from_string(id).map(|u| u.to_string());
            assert_eq!(read.as_deref(), Ok(id.as_str()));
        }
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    fn trace(reason: String) -> Vec<TraceEntry> {
        vec![
            TraceEntry::new(Stage::Normalise, "kept", "defaults filled in"),
            TraceEntry::new(Stage::Correlate, "new_alert", reason),
        ]
    }

    #[test]
    fn remembered_traces_intern_as_the_trace_itself_does() {
        let mut known = KnownTraces::default();
        let a = trace("fingerprint of default fields".into());
        let b = trace("fingerprint of labels".into());
        let first = known.intern(&a);
        let direct = intern(&a);
        assert_eq!((&first.id, &first.body), (&direct.id, &direct.body));
        // Met again: the same interned trace, not hashed again.
        assert!(std::sync::Arc::ptr_eq(&first, &known.intern(&a)));
        let other = known.intern(&b);
        assert_ne!(other.id, first.id);
        assert_eq!(other.id, intern(&b).id);
        // Bounded: many distinct traces forget the old ones, which still intern right.
        for n in 0..KnownTraces::INTERNED_MAX + 10 {
            known.intern(&trace(format!("reason {n}")));
        }
        let held = known.interned.len();
        assert!(held <= KnownTraces::INTERNED_MAX, "{held} held");
        assert_eq!(known.intern(&a).id, direct.id);
    }
}
