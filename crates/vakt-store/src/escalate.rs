//! Escalations (stored timers) and incidents as the store keeps them.
//!
//! An escalation row per alert holds the position due next and when. A node claims due rows
//! with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and fires a step in one transaction:
//! the step's pages go into the outbox, the alert's timeline says what happened, and the row
//! moves on, guarded on the position it was claimed at, so a step fires once whatever
//! crashes or how many nodes run. Acknowledging pauses the row (keeping what was left of the
//! wait), un-acknowledging resumes it, resolving ends it; all inside the transaction that
//! changes the alert.
//!
//! Incidents are opened or joined inside the transaction that decided them (ingest, a fired
//! step, an API request): an alert joins the newest open incident with its correlation key
//! that took an alert within the window, else opens a new one numbered after the highest.

use chrono::{DateTime, Utc};
use serde::Serialize;
use vakt_core::escalation::Position;
use vakt_core::incident::IncidentStatus;

/// Where an escalation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EscalationStatus {
    Active,
    Paused,
    Done,
}

impl EscalationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationStatus::Active => "active",
            EscalationStatus::Paused => "paused",
            EscalationStatus::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<EscalationStatus> {
        [
            EscalationStatus::Active,
            EscalationStatus::Paused,
            EscalationStatus::Done,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One alert's escalation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Escalation {
    pub alert_id: String,
    pub policy: String,
    /// The rule that attached the policy.
    pub rule: String,
    /// The step due next, 0-based.
    pub step: u32,
    /// The round the step belongs to, 0-based.
    pub round: u32,
    pub status: EscalationStatus,
    pub due_at: Option<DateTime<Utc>>,
    /// While paused: milliseconds of the wait that were left when it was acknowledged.
    pub remaining_ms: Option<i64>,
    pub lease_until: Option<DateTime<Utc>>,
    /// Steps fired so far.
    pub fired: i64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ended_reason: Option<String>,
}

impl Escalation {
    pub fn position(&self) -> Position {
        Position {
            step: self.step,
            round: self.round,
        }
    }
}

/// A fired step, to store in one transaction.
#[derive(Debug, Clone)]
pub struct Fire {
    /// The escalation as claimed (its position guards the write).
    pub claimed: Escalation,
    /// Pages for the outbox.
    pub pages: Vec<vakt_core::pipeline::DecidedAction>,
    /// What the alert's timeline says about the step.
    pub timeline: Vec<vakt_core::TimelineEntry>,
    /// Where the escalation goes next; `Err(reason)` ends it.
    pub next: Result<(Position, DateTime<Utc>), String>,
    /// An incident the step opens (or has the alert join).
    pub incident: Option<vakt_core::incident::Ask>,
    pub now: DateTime<Utc>,
}

/// An incident opened by hand.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub title: String,
    pub description: String,
    pub impact: u8,
    pub urgency: u8,
    pub assignee: Option<String>,
    pub alerts: Vec<String>,
    pub by: String,
}

/// A change to an incident by a person or the ITSM tool. Every set field changes.
#[derive(Debug, Clone, Default)]
pub struct IncidentChange {
    pub status: Option<IncidentStatus>,
    /// `Some(None)` unassigns.
    pub assignee: Option<Option<String>>,
    pub impact: Option<u8>,
    pub urgency: Option<u8>,
    pub resolution: Option<String>,
    pub note: Option<String>,
    /// Alert ids to link.
    pub link: Vec<String>,
    pub by: String,
    /// The change came from the ITSM tool: it is not sent back to it.
    pub from_itsm: bool,
}

/// Why a change to an incident was refused.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("no incident {0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

impl From<sqlx::Error> for IncidentError {
    fn from(error: sqlx::Error) -> Self {
        IncidentError::Store(error.into())
    }
}

/// Filters for listing incidents.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub status: Option<IncidentStatus>,
    pub correlation_key: Option<String>,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// What the ITSM sync got back.
#[derive(Debug, Clone)]
pub enum SyncResult {
    Synced {
        external_id: String,
        external_url: Option<String>,
    },
    Failed {
        error: String,
        retry_at: DateTime<Utc>,
    },
}

/// What storing a fired step did.
#[derive(Debug)]
pub(crate) enum Fired {
    /// The escalation was no longer where it was claimed: nothing was written.
    Moved,
    /// The step is stored; the alert, when the step linked it to an incident (for the
    /// SQLite writer's cache).
    Stored {
        incident_linked: Option<Box<vakt_core::Alert>>,
    },
}

// The escalation and incident queries.

use crate::db::{Conn, Query, Row, query};
use crate::queries::{fetch_page, filter_eq, get_alert, insert_actions, insert_timeline};
use crate::sql::{ms, opt_time, parsed, time};
use crate::{Page, StoreError};
use vakt_core::Alert;
use vakt_core::TimelineEntry;
use vakt_core::alert::TimelineKind;
use vakt_core::incident::{Incident, IncidentEntry};

const ESCALATION_SELECT: &str = "alert_id, policy, rule, step, round, status, due_at, remaining_ms, lease_until, fired, started_at, updated_at, ended_reason";
const INCIDENT_SELECT: &str = "id, number, title, description, impact, urgency, priority, status, assignee, correlation_key, opened_by, opened_at, updated_at, resolved_at, closed_at, resolution, external_id, external_url, (SELECT COUNT(*) FROM incident_alerts ia WHERE ia.incident_id = incidents.id) AS alert_count";

pub(crate) fn escalation_from_row(row: &Row) -> Result<Escalation, StoreError> {
    let status: String = row.try_get("status")?;
    let step: i64 = row.try_get("step")?;
    let round: i64 = row.try_get("round")?;
    Ok(Escalation {
        alert_id: row.try_get("alert_id")?,
        policy: row.try_get("policy")?,
        rule: row.try_get("rule")?,
        step: u32::try_from(step)
            .map_err(|_| StoreError::Corrupt(format!("escalation step {step}")))?,
        round: u32::try_from(round)
            .map_err(|_| StoreError::Corrupt(format!("escalation round {round}")))?,
        status: EscalationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown escalation status {status:?}")))?,
        due_at: opt_time(row.try_get("due_at")?)?,
        remaining_ms: row.try_get("remaining_ms")?,
        lease_until: opt_time(row.try_get("lease_until")?)?,
        fired: row.try_get("fired")?,
        started_at: time(row.try_get("started_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
        ended_reason: row.try_get("ended_reason")?,
    })
}

pub(crate) fn incident_from_row(row: &Row) -> Result<Incident, StoreError> {
    let status: String = row.try_get("status")?;
    let small = |column: &str| -> Result<u8, StoreError> {
        let value: i64 = row.try_get(column)?;
        u8::try_from(value).map_err(|_| StoreError::Corrupt(format!("incident {column} {value}")))
    };
    Ok(Incident {
        id: row.try_get("id")?,
        number: vakt_core::incident::number_text(row.try_get("number")?),
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        impact: small("impact")?,
        urgency: small("urgency")?,
        priority: small("priority")?,
        status: parsed("status", IncidentStatus::parse(&status))?,
        assignee: row.try_get("assignee")?,
        correlation_key: row.try_get("correlation_key")?,
        opened_by: row.try_get("opened_by")?,
        opened_at: time(row.try_get("opened_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
        resolved_at: opt_time(row.try_get("resolved_at")?)?,
        closed_at: opt_time(row.try_get("closed_at")?)?,
        resolution: row.try_get("resolution")?,
        external_id: row.try_get("external_id")?,
        external_url: row.try_get("external_url")?,
        alerts: Vec::new(),
        alert_count: row.try_get("alert_count")?,
    })
}

/// Starts (or restarts, for a reopened alert) escalations decided by ingest.
pub(crate) async fn start_escalations(
    conn: &mut Conn<'_>,
    starts: &[(&str, &vakt_core::escalation::Start)],
    now_ms: i64,
) -> Result<(), StoreError> {
    for (alert_id, start) in starts {
        query(
            "INSERT INTO escalations (alert_id, policy, rule, step, round, status, due_at, remaining_ms, lease_until, fired, started_at, updated_at, ended_reason) \
             VALUES ($1, $2, $3, 0, 0, 'active', $4, NULL, NULL, 0, $5, $5, NULL) \
             ON CONFLICT (alert_id) DO UPDATE SET policy = excluded.policy, rule = excluded.rule, step = 0, round = 0, \
             status = 'active', due_at = excluded.due_at, remaining_ms = NULL, lease_until = NULL, fired = 0, \
             started_at = excluded.started_at, updated_at = excluded.updated_at, ended_reason = NULL",
        )
        .bind((*alert_id).to_owned())
        .bind(start.policy.clone())
        .bind(start.rule.clone())
        .bind(ms(start.due_at))
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Moves an alert's escalation on an operator's (or an event's) change: an ack pauses
/// it, an un-ack resumes it, a resolve ends it. Returns the timeline line, if it moved.
pub(crate) async fn steer_escalation(
    conn: &mut Conn<'_>,
    alert_id: &str,
    action: &vakt_core::OperatorAction,
    by: &str,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    use vakt_core::OperatorAction as A;
    let (sql, line) = match action {
        A::Ack => (
            "UPDATE escalations SET status = 'paused', remaining_ms = CASE WHEN due_at > $2 THEN due_at - $2 ELSE 0 END, \
             due_at = NULL, lease_until = NULL, updated_at = $2 WHERE alert_id = $1 AND status = 'active' RETURNING policy, remaining_ms",
            "paused",
        ),
        A::Unack => (
            "UPDATE escalations SET status = 'active', due_at = $2 + COALESCE(remaining_ms, 0), remaining_ms = NULL, \
             updated_at = $2 WHERE alert_id = $1 AND status = 'paused' RETURNING policy, due_at - $2 AS remaining_ms",
            "resumed",
        ),
        A::Resolve => (
            "UPDATE escalations SET status = 'done', due_at = NULL, remaining_ms = NULL, lease_until = NULL, updated_at = $2, \
             ended_reason = 'the alert resolved' WHERE alert_id = $1 AND status <> 'done' RETURNING policy, remaining_ms",
            "ended",
        ),
        _ => return Ok(None),
    };
    let row = query(sql)
        .bind(alert_id.to_owned())
        .bind(now_ms)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let policy: String = row.try_get("policy")?;
    let remaining: Option<i64> = row.try_get("remaining_ms")?;
    Ok(Some(match line {
        "paused" => format!(
            "escalation policy {policy} paused: acknowledged by {by}; {} s of the wait were left",
            remaining.unwrap_or(0) / 1000
        ),
        "resumed" => format!(
            "escalation policy {policy} resumed: unacknowledged by {by}; next step due in {} s",
            remaining.unwrap_or(0).max(0) / 1000
        ),
        _ => format!("escalation policy {policy} ended: the alert resolved ({by})"),
    }))
}

/// Whether an escalation is due and not leased (what `claim_due_escalations` would take).
pub(crate) async fn any_due_escalation(
    conn: &mut Conn<'_>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let row = query(
        "SELECT EXISTS (SELECT 1 FROM escalations WHERE status = 'active' AND due_at <= $1 \
         AND (lease_until IS NULL OR lease_until < $1)) AS due",
    )
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get::<bool>("due")?)
}

/// Claims up to `limit` due escalations until `lease_until`.
pub(crate) async fn claim_due_escalations(
    conn: &mut Conn<'_>,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<Escalation>, StoreError> {
    let rows = query(format!(
        "UPDATE escalations SET lease_until = $1 WHERE alert_id IN (SELECT alert_id FROM escalations \
         WHERE status = 'active' AND due_at <= $2 AND (lease_until IS NULL OR lease_until < $2) \
         ORDER BY due_at LIMIT $3{}) RETURNING {ESCALATION_SELECT}",
        conn.skip_locked()
    ))
    .bind(lease_until_ms)
    .bind(now_ms)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let mut claimed = rows
        .iter()
        .map(escalation_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by_key(|e| e.due_at);
    Ok(claimed)
}

/// Stores a fired step, or nothing when the escalation is no longer where it was
/// claimed (another node fired it, or it was paused or ended meanwhile).
pub(crate) async fn fire_in(
    conn: &mut Conn<'_>,
    incidents: &vakt_core::incident::IncidentsConfig,
    fire: &Fire,
) -> Result<crate::escalate::Fired, StoreError> {
    let now_ms = ms(fire.now);
    let claimed = &fire.claimed;
    let moved = match &fire.next {
        Ok((position, due)) => query(
            "UPDATE escalations SET step = $1, round = $2, due_at = $3, lease_until = NULL, fired = fired + 1, updated_at = $4 \
             WHERE alert_id = $5 AND step = $6 AND round = $7 AND status = 'active'",
        )
        .bind(i64::from(position.step))
        .bind(i64::from(position.round))
        .bind(ms(*due))
        .bind(now_ms)
        .bind(claimed.alert_id.clone())
        .bind(i64::from(claimed.step))
        .bind(i64::from(claimed.round))
        .execute(&mut *conn)
        .await?,
        Err(reason) => query(
            "UPDATE escalations SET status = 'done', due_at = NULL, lease_until = NULL, fired = fired + $1, updated_at = $2, ended_reason = $3 \
             WHERE alert_id = $4 AND step = $5 AND round = $6 AND status = 'active'",
        )
        .bind(i64::from(!fire.pages.is_empty() || fire.incident.is_some()))
        .bind(now_ms)
        .bind(reason.clone())
        .bind(claimed.alert_id.clone())
        .bind(i64::from(claimed.step))
        .bind(i64::from(claimed.round))
        .execute(&mut *conn)
        .await?,
    };
    if moved.rows_affected() != 1 {
        return Ok(crate::escalate::Fired::Moved);
    }
    insert_actions(conn, &fire.pages.iter().collect::<Vec<_>>(), now_ms).await?;
    insert_timeline(conn, &fire.timeline.iter().collect::<Vec<_>>()).await?;
    let mut changed = None;
    if let Some(ask) = &fire.incident
        && let Some(mut alert) = get_alert(conn, &ask.alert_id, true).await?
    {
        let (incident, entry) = open_or_join(conn, incidents, &alert, ask, fire.now).await?;
        if alert.incident_id.as_deref() != Some(incident.id.as_str()) {
            query("UPDATE alerts SET incident_id = $1 WHERE id = $2")
                .bind(incident.id.clone())
                .bind(alert.id.clone())
                .execute(&mut *conn)
                .await?;
            alert.incident_id = Some(incident.id.clone());
            changed = Some(alert);
        }
        if let Some(entry) = entry {
            insert_timeline(conn, &[&entry]).await?;
        }
    }
    Ok(crate::escalate::Fired::Stored {
        incident_linked: changed.map(Box::new),
    })
}

pub(crate) async fn get_escalation(
    conn: &mut Conn<'_>,
    alert_id: &str,
) -> Result<Option<Escalation>, StoreError> {
    query(format!(
        "SELECT {ESCALATION_SELECT} FROM escalations WHERE alert_id = $1"
    ))
    .bind(alert_id.to_owned())
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(escalation_from_row)
    .transpose()
}

pub(crate) async fn list_escalations(
    conn: &mut Conn<'_>,
    status: Option<EscalationStatus>,
    limit: u32,
) -> Result<Vec<Escalation>, StoreError> {
    let mut query: Query<'_> = Query::new(format!(
        "SELECT {ESCALATION_SELECT} FROM escalations WHERE 1 = 1"
    ));
    filter_eq(&mut query, "status", status.map(|s| s.as_str().to_owned()));
    query.push(" ORDER BY updated_at DESC LIMIT ");
    query.push_bind(i64::from(limit));
    query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(escalation_from_row)
        .collect()
}

pub(crate) async fn incident_line(
    conn: &mut Conn<'_>,
    incident_id: &str,
    at: DateTime<Utc>,
    by: &str,
    kind: &str,
    message: String,
) -> Result<(), StoreError> {
    query("INSERT INTO incident_timeline (id, incident_id, at, actor, kind, message) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(crate::sql::new_id())
        .bind(incident_id.to_owned())
        .bind(ms(at))
        .bind(by.to_owned())
        .bind(kind.to_owned())
        .bind(message)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn get_incident_row(
    conn: &mut Conn<'_>,
    id: &str,
    lock: bool,
) -> Result<Option<Incident>, StoreError> {
    let mut query: Query<'_> =
        Query::new(format!("SELECT {INCIDENT_SELECT} FROM incidents WHERE "));
    match vakt_core::incident::parse_number(id) {
        Some(number) if id.len() < 20 => {
            query.push("number = ");
            query.push_bind(number);
        }
        _ => {
            query.push("id = ");
            query.push_bind(id.to_owned());
        }
    }
    if lock {
        query.push(conn.lock());
    }
    query
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(incident_from_row)
        .transpose()
}

/// Fills each incident's `alerts` (the ids of its linked alerts, in the order they
/// were linked), in one query per chunk of incidents.
pub(crate) async fn fill_alerts(
    conn: &mut Conn<'_>,
    incidents: &mut [Incident],
) -> Result<(), StoreError> {
    let ids: Vec<String> = incidents.iter().map(|i| i.id.clone()).collect();
    let mut linked: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for chunk in ids.chunks(crate::sql::BINDS_MAX) {
        let mut query: Query<'_> =
            Query::new("SELECT incident_id, alert_id FROM incident_alerts WHERE incident_id IN (");
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(id.clone());
        }
        query.push(") ORDER BY linked_at, alert_id");
        for row in query.fetch_all(&mut *conn).await? {
            linked
                .entry(row.try_get("incident_id")?)
                .or_default()
                .push(row.try_get("alert_id")?);
        }
    }
    for incident in incidents {
        incident.alerts = linked.remove(&incident.id).unwrap_or_default();
    }
    Ok(())
}

pub(crate) async fn link_alert(
    conn: &mut Conn<'_>,
    incident_id: &str,
    alert_id: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let inserted = query(
        "INSERT INTO incident_alerts (incident_id, alert_id, linked_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(incident_id.to_owned())
    .bind(alert_id.to_owned())
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub(crate) async fn insert_incident(
    conn: &mut Conn<'_>,
    incident: &Incident,
    number: i64,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO incidents (id, number, title, description, impact, urgency, priority, status, assignee, correlation_key, \
         opened_by, opened_at, updated_at, last_linked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12)",
    )
    .bind(incident.id.clone())
    .bind(number)
    .bind(incident.title.clone())
    .bind(incident.description.clone())
    .bind(i64::from(incident.impact))
    .bind(i64::from(incident.urgency))
    .bind(i64::from(incident.priority))
    .bind(incident.status.as_str())
    .bind(incident.assignee.clone())
    .bind(incident.correlation_key.clone())
    .bind(incident.opened_by.clone())
    .bind(ms(incident.opened_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Holds `key` until the transaction ends (several nodes on PostgreSQL).
pub(crate) async fn lock_key(conn: &mut Conn<'_>, key: &str) -> Result<(), StoreError> {
    if let Some(statement) = conn.key_lock() {
        query(statement)
            .bind(key.to_owned())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn next_number(conn: &mut Conn<'_>) -> Result<i64, StoreError> {
    // Numbers are MAX + 1: one transaction at a time picks one.
    lock_key(conn, "vakt:incident-number").await?;
    let row = query("SELECT COALESCE(MAX(number), 0) + 1 AS next FROM incidents")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get("next")?)
}

/// Opens an incident for `alert`, or has it join the open one it correlates with.
/// Returns the incident and the alert's timeline line (none when it was linked already).
pub(crate) async fn open_or_join(
    conn: &mut Conn<'_>,
    config: &vakt_core::incident::IncidentsConfig,
    alert: &Alert,
    ask: &vakt_core::incident::Ask,
    now: DateTime<Utc>,
) -> Result<(Incident, Option<TimelineEntry>), StoreError> {
    let now_ms = ms(now);
    if let Some(id) = &alert.incident_id
        && let Some(incident) = get_incident_row(conn, id, false).await?
        && incident.status.is_open()
    {
        return Ok((incident, None));
    }
    let urgency = ask
        .urgency
        .unwrap_or_else(|| vakt_core::incident::urgency_of(alert.severity));
    let impact = ask.impact.unwrap_or(config.default_impact);
    let key = config.correlation_key(alert);
    let window_ms =
        i64::try_from(config.correlation_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    // Two nodes opening the first incident of a key at once must not make two.
    if let Some(key) = &key {
        lock_key(conn, &format!("vakt:incident:{key}")).await?;
    }
    let open = match &key {
        Some(key) => query(format!(
            "SELECT {INCIDENT_SELECT} FROM incidents WHERE correlation_key = $1 AND status IN ('new', 'in_progress', 'on_hold') \
             AND last_linked_at >= $2 ORDER BY opened_at DESC LIMIT 1{}",
            conn.lock()
        ))
        .bind(key.clone())
        .bind(now_ms.saturating_sub(window_ms))
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(incident_from_row)
        .transpose()?,
        None => None,
    };
    let entry = |message: String| TimelineEntry {
        id: crate::sql::new_id(),
        alert_id: alert.id.clone(),
        at: now,
        kind: TimelineKind::Incident,
        by: ask.by.clone(),
        message,
        event_id: None,
    };
    if let Some(mut incident) = open {
        link_alert(conn, &incident.id, &alert.id, now_ms).await?;
        // The incident is as urgent and as wide as its worst alert.
        let impact = impact.min(incident.impact);
        let urgency = urgency.min(incident.urgency);
        let priority = config.priority(impact, urgency);
        query(
            "UPDATE incidents SET impact = $1, urgency = $2, priority = $3, last_linked_at = $4, updated_at = $4, version = version + 1 WHERE id = $5",
        )
        .bind(i64::from(impact))
        .bind(i64::from(urgency))
        .bind(i64::from(priority))
        .bind(now_ms)
        .bind(incident.id.clone())
        .execute(&mut *conn)
        .await?;
        let raised = priority < incident.priority;
        incident_line(
            conn,
            &incident.id,
            now,
            &ask.by,
            "linked",
            format!(
                "alert {} ({} on {}) joined, correlated by {}{}",
                alert.id,
                alert.check,
                alert.resource,
                key.as_deref().unwrap_or_default(),
                if raised {
                    format!(
                        "; priority raised from P{} to P{priority}",
                        incident.priority
                    )
                } else {
                    String::new()
                }
            ),
        )
        .await?;
        incident.impact = impact;
        incident.urgency = urgency;
        incident.priority = priority;
        incident.alert_count += 1;
        let line = format!(
            "joined incident {} (P{priority}, correlated by {})",
            incident.number,
            key.as_deref().unwrap_or_default()
        );
        return Ok((incident, Some(entry(line))));
    }
    let number = next_number(conn).await?;
    let priority = config.priority(impact, urgency);
    let incident = Incident {
        id: crate::sql::new_id(),
        number: vakt_core::incident::number_text(number),
        title: match &key {
            Some(key) => format!("{key}: {} on {}", alert.check, alert.resource),
            None => format!("{} on {}", alert.check, alert.resource),
        },
        description: alert.summary.clone(),
        impact,
        urgency,
        priority,
        status: IncidentStatus::New,
        assignee: None,
        correlation_key: key.clone(),
        opened_by: ask.by.clone(),
        opened_at: now,
        updated_at: now,
        resolved_at: None,
        closed_at: None,
        resolution: None,
        external_id: None,
        external_url: None,
        alerts: vec![alert.id.clone()],
        alert_count: 1,
    };
    insert_incident(conn, &incident, number).await?;
    link_alert(conn, &incident.id, &alert.id, now_ms).await?;
    incident_line(
        conn,
        &incident.id,
        now,
        &ask.by,
        "opened",
        format!(
            "opened by {} for alert {} ({} {} on {}): impact {impact}, urgency {urgency}, priority P{priority}",
            ask.by, alert.id, alert.severity, alert.check, alert.resource
        ),
    )
    .await?;
    let line = format!("opened incident {} (P{priority})", incident.number);
    Ok((incident, Some(entry(line))))
}

/// After an alert resolved: if every alert of its incident has, resolve the incident
/// (configured) or say on its timeline that it waits for a person.
pub(crate) async fn check_incident_resolution(
    conn: &mut Conn<'_>,
    config: &vakt_core::incident::IncidentsConfig,
    incident_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(incident) = get_incident_row(conn, incident_id, true).await? else {
        return Ok(());
    };
    if !incident.status.is_open() {
        return Ok(());
    }
    let row = query(
        "SELECT COUNT(*) AS active FROM incident_alerts ia JOIN alerts a ON a.id = ia.alert_id \
         WHERE ia.incident_id = $1 AND a.status <> 'resolved'",
    )
    .bind(incident_id.to_owned())
    .fetch_one(&mut *conn)
    .await?;
    let active: i64 = row.try_get("active")?;
    if active > 0 {
        return Ok(());
    }
    if config.resolve_with_alerts {
        let resolution = format!("all {} linked alert(s) resolved", incident.alert_count);
        query(
            "UPDATE incidents SET status = 'resolved', resolved_at = $1, updated_at = $1, resolution = $2, version = version + 1 WHERE id = $3",
        )
        .bind(ms(now))
        .bind(resolution.clone())
        .bind(incident_id.to_owned())
        .execute(&mut *conn)
        .await?;
        incident_line(
            conn,
            incident_id,
            now,
            vakt_core::alert::PIPELINE_ACTOR,
            "status",
            format!(
                "{} -> resolved: {resolution} (incidents.resolve_with_alerts)",
                incident.status
            ),
        )
        .await?;
    } else {
        incident_line(
            conn,
            incident_id,
            now,
            vakt_core::alert::PIPELINE_ACTOR,
            "note",
            format!(
                "all {} linked alert(s) resolved; the incident stays {} until someone resolves it",
                incident.alert_count, incident.status
            ),
        )
        .await?;
    }
    Ok(())
}

/// Whether writing these outcomes reads or writes more than their own rows: an incident to
/// open or join, an escalation to start, or a resolve that may end an escalation or an
/// incident (`open_batch_incidents`, `after_batch`).
pub(crate) fn batch_needs_database(
    pipeline: &vakt_core::Pipeline,
    outcomes: &[vakt_core::Correlated],
) -> bool {
    let policies = !pipeline.escalation_policies().is_empty();
    outcomes.iter().any(|o| {
        o.incident.is_some()
            || o.escalation.is_some()
            || (o.transition == vakt_core::pipeline::Transition::Resolved
                && o.alert
                    .as_ref()
                    .is_some_and(|a| policies || a.incident_id.is_some()))
    })
}

/// After ingest wrote a batch: starts the escalations it decided, ends those of alerts
/// it resolved, and looks at the incidents of resolved alerts.
pub(crate) async fn after_batch(
    conn: &mut Conn<'_>,
    pipeline: &vakt_core::Pipeline,
    outcomes: &[vakt_core::Correlated],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let now_ms = ms(now);
    let mut lines = Vec::new();
    // In event order: a batch may resolve an alert and reopen it, or the reverse.
    for outcome in outcomes {
        let Some(alert) = &outcome.alert else {
            continue;
        };
        if let Some(start) = &outcome.escalation {
            start_escalations(conn, &[(alert.id.as_str(), start)], now_ms).await?;
            continue;
        }
        if outcome.transition != vakt_core::pipeline::Transition::Resolved {
            continue;
        }
        // Without policies there is nothing to end (an escalation left from an earlier
        // configuration ends when its step comes due and finds the alert resolved).
        if !pipeline.escalation_policies().is_empty()
            && let Some(line) = steer_escalation(
                conn,
                &alert.id,
                &vakt_core::OperatorAction::Resolve,
                "an event",
                now_ms,
            )
            .await?
        {
            lines.push(TimelineEntry {
                id: crate::sql::new_id(),
                alert_id: alert.id.clone(),
                at: now,
                kind: TimelineKind::Escalation,
                by: vakt_core::alert::PIPELINE_ACTOR.to_owned(),
                message: line,
                event_id: Some(outcome.record.id.clone()),
            });
        }
        if let Some(incident) = &alert.incident_id {
            check_incident_resolution(conn, pipeline.incidents(), incident, now).await?;
        }
    }
    insert_timeline(conn, &lines.iter().collect::<Vec<_>>()).await?;
    Ok(())
}

/// Before ingest writes a batch: opens or joins the incidents it asks for, so the
/// alerts are written with their incident.
pub(crate) async fn open_batch_incidents(
    conn: &mut Conn<'_>,
    pipeline: &vakt_core::Pipeline,
    outcomes: &mut [vakt_core::Correlated],
) -> Result<(), StoreError> {
    for i in 0..outcomes.len() {
        let (Some(ask), Some(alert)) = (outcomes[i].incident.clone(), outcomes[i].alert.clone())
        else {
            continue;
        };
        let now = outcomes[i].record.event.received_at;
        let (incident, entry) = open_or_join(conn, pipeline.incidents(), &alert, &ask, now).await?;
        // Later events of the batch on the same alert carry the incident too.
        for later in outcomes[i..].iter_mut() {
            if let Some(a) = later.alert.as_mut().filter(|a| a.id == alert.id) {
                std::sync::Arc::make_mut(a).incident_id = Some(incident.id.clone());
            }
        }
        if let Some(entry) = entry {
            outcomes[i].timeline.push(entry);
        }
    }
    Ok(())
}

/// Hooks an operator's request on an alert into its escalation and its incident.
pub(crate) async fn after_operate(
    conn: &mut Conn<'_>,
    pipeline: &vakt_core::Pipeline,
    alert: &Alert,
    request: &vakt_core::alert::OperatorRequest,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let Some(line) =
        steer_escalation(conn, &alert.id, &request.action, request.by.trim(), ms(now)).await?
    {
        insert_timeline(
            conn,
            &[&TimelineEntry {
                id: crate::sql::new_id(),
                alert_id: alert.id.clone(),
                at: now,
                kind: TimelineKind::Escalation,
                by: request.by.trim().to_owned(),
                message: line,
                event_id: None,
            }],
        )
        .await?;
    }
    if request.action == vakt_core::OperatorAction::Resolve
        && let Some(incident) = &alert.incident_id
    {
        check_incident_resolution(conn, pipeline.incidents(), incident, now).await?;
    }
    Ok(())
}

pub(crate) async fn create_incident_in(
    conn: &mut Conn<'_>,
    config: &vakt_core::incident::IncidentsConfig,
    new: &NewIncident,
    now: DateTime<Utc>,
) -> Result<Incident, IncidentError> {
    let number = next_number(conn).await?;
    let priority = config.priority(new.impact, new.urgency);
    let mut incident = Incident {
        id: crate::sql::new_id(),
        number: vakt_core::incident::number_text(number),
        title: new.title.clone(),
        description: new.description.clone(),
        impact: new.impact,
        urgency: new.urgency,
        priority,
        status: IncidentStatus::New,
        assignee: new.assignee.clone(),
        correlation_key: None,
        opened_by: new.by.clone(),
        opened_at: now,
        updated_at: now,
        resolved_at: None,
        closed_at: None,
        resolution: None,
        external_id: None,
        external_url: None,
        alerts: Vec::new(),
        alert_count: 0,
    };
    insert_incident(conn, &incident, number).await?;
    incident_line(
        conn,
        &incident.id,
        now,
        &new.by,
        "opened",
        format!(
            "opened by {}: impact {}, urgency {}, priority P{priority}",
            new.by, new.impact, new.urgency
        ),
    )
    .await?;
    for alert_id in &new.alerts {
        attach_alert(conn, &incident, alert_id, &new.by, now).await?;
        incident.alerts.push(alert_id.clone());
        incident.alert_count += 1;
    }
    Ok(incident)
}

/// Links an existing alert to an incident by hand.
pub(crate) async fn attach_alert(
    conn: &mut Conn<'_>,
    incident: &Incident,
    alert_id: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<(), IncidentError> {
    if get_alert(conn, alert_id, true).await?.is_none() {
        return Err(IncidentError::Refused(format!(
            "alerts: no alert with id {alert_id}"
        )));
    }
    if link_alert(conn, &incident.id, alert_id, ms(now)).await? {
        query("UPDATE alerts SET incident_id = $1 WHERE id = $2")
            .bind(incident.id.clone())
            .bind(alert_id.to_owned())
            .execute(&mut *conn)
            .await?;
        incident_line(
            conn,
            &incident.id,
            now,
            by,
            "linked",
            format!("alert {alert_id} linked by {by}"),
        )
        .await?;
        insert_timeline(
            conn,
            &[&TimelineEntry {
                id: crate::sql::new_id(),
                alert_id: alert_id.to_owned(),
                at: now,
                kind: TimelineKind::Incident,
                by: by.to_owned(),
                message: format!("linked to incident {} by {by}", incident.number),
                event_id: None,
            }],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn update_incident_in(
    conn: &mut Conn<'_>,
    config: &vakt_core::incident::IncidentsConfig,
    id: &str,
    change: &IncidentChange,
    now: DateTime<Utc>,
) -> Result<Incident, IncidentError> {
    let Some(mut incident) = get_incident_row(conn, id, true).await? else {
        return Err(IncidentError::NotFound(id.to_owned()));
    };
    let by = change.by.as_str();
    let mut lines: Vec<(&str, String)> = Vec::new();
    if let Some(to) = change.status
        && to != incident.status
    {
        incident
            .status
            .can_move_to(to)
            .map_err(|e| IncidentError::Refused(e.to_string()))?;
        if to == IncidentStatus::Resolved {
            let resolution = change
                .resolution
                .as_deref()
                .map(str::trim)
                .unwrap_or_default();
            if resolution.is_empty() {
                return Err(IncidentError::Refused(
                    "resolution: resolving an incident needs resolution notes (what was wrong, what fixed it)".into(),
                ));
            }
            incident.resolution = Some(resolution.to_owned());
            incident.resolved_at = Some(now);
        }
        if to == IncidentStatus::Closed {
            incident.closed_at = Some(now);
        }
        if to == IncidentStatus::InProgress && incident.status == IncidentStatus::Resolved {
            incident.resolved_at = None;
        }
        lines.push((
            "status",
            format!(
                "{} -> {to} by {by}{}",
                incident.status,
                if to == IncidentStatus::Resolved {
                    format!(": {}", incident.resolution.as_deref().unwrap_or_default())
                } else {
                    String::new()
                }
            ),
        ));
        incident.status = to;
    } else if let Some(resolution) = &change.resolution {
        incident.resolution = Some(resolution.clone());
        lines.push(("note", format!("resolution notes changed by {by}")));
    }
    if let Some(assignee) = &change.assignee
        && *assignee != incident.assignee
    {
        lines.push((
            "assigned",
            match assignee {
                Some(a) => format!("assigned to {a} by {by}"),
                None => format!("unassigned by {by}"),
            },
        ));
        incident.assignee = assignee.clone();
    }
    if change.impact.is_some() || change.urgency.is_some() {
        for (name, value) in [("impact", change.impact), ("urgency", change.urgency)] {
            if value.is_some_and(|v| !(1..=3).contains(&v)) {
                return Err(IncidentError::Refused(format!(
                    "{name}: must be 1 (high), 2 or 3 (low)"
                )));
            }
        }
        let impact = change.impact.unwrap_or(incident.impact);
        let urgency = change.urgency.unwrap_or(incident.urgency);
        let priority = config.priority(impact, urgency);
        lines.push(("priority", format!(
            "impact {} -> {impact}, urgency {} -> {urgency}: priority P{} -> P{priority} (by {by})",
            incident.impact, incident.urgency, incident.priority
        )));
        incident.impact = impact;
        incident.urgency = urgency;
        incident.priority = priority;
    }
    if let Some(note) = change
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        lines.push(("note", format!("{by}: {note}")));
    }
    query(
        "UPDATE incidents SET status = $1, assignee = $2, impact = $3, urgency = $4, priority = $5, resolution = $6, \
         resolved_at = $7, closed_at = $8, updated_at = $9, version = version + 1, sync_next_at = 0, \
         synced_version = CASE WHEN $11 AND synced_version = version THEN version + 1 ELSE synced_version END WHERE id = $10",
    )
    .bind(incident.status.as_str())
    .bind(incident.assignee.clone())
    .bind(i64::from(incident.impact))
    .bind(i64::from(incident.urgency))
    .bind(i64::from(incident.priority))
    .bind(incident.resolution.clone())
    .bind(incident.resolved_at.map(ms))
    .bind(incident.closed_at.map(ms))
    .bind(ms(now))
    .bind(incident.id.clone())
    .bind(change.from_itsm)
    .execute(&mut *conn)
    .await?;
    for (kind, line) in lines {
        incident_line(conn, &incident.id, now, by, kind, line).await?;
    }
    for alert_id in &change.link {
        attach_alert(conn, &incident, alert_id, by, now).await?;
    }
    incident.updated_at = now;
    let mut updated = get_incident_row(conn, &incident.id, false)
        .await?
        .unwrap_or(incident);
    fill_alerts(conn, std::slice::from_mut(&mut updated)).await?;
    Ok(updated)
}

pub(crate) async fn incident_detail(
    conn: &mut Conn<'_>,
    id: &str,
) -> Result<Option<(Incident, Vec<IncidentEntry>)>, StoreError> {
    let Some(mut incident) = get_incident_row(conn, id, false).await? else {
        return Ok(None);
    };
    let rows = query(
        "SELECT alert_id FROM incident_alerts WHERE incident_id = $1 ORDER BY linked_at, alert_id",
    )
    .bind(incident.id.clone())
    .fetch_all(&mut *conn)
    .await?;
    incident.alerts = rows
        .iter()
        .map(|r| r.try_get("alert_id"))
        .collect::<Result<_, _>>()?;
    let entries = query("SELECT id, incident_id, at, actor, kind, message FROM incident_timeline WHERE incident_id = $1 ORDER BY at, id")
        .bind(incident.id.clone())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok(IncidentEntry {
            id: r.try_get("id")?,
            incident_id: r.try_get("incident_id")?,
            at: time(r.try_get("at")?)?,
            by: r.try_get("actor")?,
            kind: r.try_get("kind")?,
            message: r.try_get("message")?,
        }))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some((incident, entries)))
}

pub(crate) async fn list_incidents(
    conn: &mut Conn<'_>,
    q: &IncidentQuery,
) -> Result<Page<Incident>, StoreError> {
    let mut query: Query<'_> = Query::new(format!(
        "SELECT {INCIDENT_SELECT} FROM incidents WHERE 1 = 1"
    ));
    filter_eq(
        &mut query,
        "status",
        q.status.map(|s| s.as_str().to_owned()),
    );
    filter_eq(&mut query, "correlation_key", q.correlation_key.clone());
    let mut page = fetch_page(
        conn,
        query,
        q.cursor.as_deref(),
        q.limit,
        incident_from_row,
        |i| &i.id,
    )
    .await?;
    fill_alerts(conn, &mut page.items).await?;
    Ok(page)
}

/// Claims incidents with changes the ITSM tool has not seen; returns each with the
/// version it is synced up to when the call succeeds.
pub(crate) async fn claim_syncs(
    conn: &mut Conn<'_>,
    now_ms: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<(Incident, i64)>, StoreError> {
    let rows = query(format!(
        "UPDATE incidents SET sync_lease = $1 WHERE id IN (SELECT id FROM incidents WHERE version > synced_version \
         AND sync_next_at <= $2 AND (sync_lease IS NULL OR sync_lease < $2) ORDER BY sync_next_at LIMIT $3{}) \
         RETURNING {INCIDENT_SELECT}, version",
        conn.skip_locked()
    ))
    .bind(lease_ms)
    .bind(now_ms)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let mut incidents = rows
        .iter()
        .map(incident_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let versions = rows
        .iter()
        .map(|row| row.try_get("version"))
        .collect::<Result<Vec<i64>, _>>()?;
    fill_alerts(conn, &mut incidents).await?;
    Ok(incidents.into_iter().zip(versions).collect())
}

pub(crate) async fn finish_sync_in(
    conn: &mut Conn<'_>,
    id: &str,
    version: i64,
    result: &SyncResult,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match result {
        SyncResult::Synced {
            external_id,
            external_url,
        } => {
            let before = get_incident_row(conn, id, true).await?;
            query(
                "UPDATE incidents SET external_id = $1, external_url = COALESCE($2, external_url), synced_version = $3, \
                 sync_lease = NULL, sync_attempts = 0, sync_error = NULL WHERE id = $4",
            )
            .bind(external_id.clone())
            .bind(external_url.clone())
            .bind(version)
            .bind(id.to_owned())
            .execute(&mut *conn)
            .await?;
            if before.is_some_and(|b| b.external_id.as_deref() != Some(external_id.as_str())) {
                incident_line(
                    conn,
                    id,
                    now,
                    "itsm",
                    "sync",
                    format!(
                        "created in the ITSM tool as {external_id}{}",
                        external_url
                            .as_deref()
                            .map(|u| format!(" ({u})"))
                            .unwrap_or_default()
                    ),
                )
                .await?;
            }
        }
        SyncResult::Failed { error, retry_at } => {
            query(
                "UPDATE incidents SET sync_lease = NULL, sync_attempts = sync_attempts + 1, sync_error = $1, sync_next_at = $2 WHERE id = $3",
            )
            .bind(error.clone())
            .bind(ms(*retry_at))
            .bind(id.to_owned())
            .execute(&mut *conn)
            .await?;
            incident_line(
                conn,
                id,
                now,
                "itsm",
                "sync",
                format!(
                    "sync failed: {error}; next try at {}",
                    retry_at.to_rfc3339()
                ),
            )
            .await?;
        }
    }
    Ok(())
}

/// The incident the ITSM tool knows by `external_id`.
pub(crate) async fn incident_id_by_external(
    conn: &mut Conn<'_>,
    external_id: &str,
) -> Result<Option<String>, StoreError> {
    let row = query("SELECT id FROM incidents WHERE external_id = $1")
        .bind(external_id.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?)
}

/// Releases every escalation lease (a node starting up after a crash); returns how many.
pub(crate) async fn release_leases(conn: &mut Conn<'_>) -> Result<u64, StoreError> {
    let done = query("UPDATE escalations SET lease_until = NULL WHERE lease_until IS NOT NULL")
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
