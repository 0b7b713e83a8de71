//! Alerts: the stateful object events with one fingerprint update, its timeline and the operators' transitions.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Category, Severity};
use crate::fingerprint::Fingerprint;

/// Where an alert is in its lifecycle: `open -> acknowledged -> resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub const ALL: [AlertStatus; 3] = [
        AlertStatus::Open,
        AlertStatus::Acknowledged,
        AlertStatus::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Result<AlertStatus, String> {
        AlertStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                format!("unknown status {text:?}, expected one of open, acknowledged, resolved")
            })
    }

    pub fn is_active(self) -> bool {
        self != AlertStatus::Resolved
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The alert of CONTRACT.md.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub fingerprint: Fingerprint,
    pub status: AlertStatus,
    pub category: Category,
    pub severity: Severity,
    pub severity_max: Severity,
    pub source: String,
    pub resource: String,
    pub check: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    /// Problem events this alert has absorbed.
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub last_event_id: String,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub assignee: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub incident_id: Option<String>,
    /// When the alert resolves by itself unless a new event moves it (Alertmanager's `endsAt`).
    pub expires_at: Option<DateTime<Utc>>,
    /// What the handling stage remembers: actions that ran, recent state changes, flapping.
    #[serde(default)]
    pub handling: Handling,
}

/// Written out (not derived) for `clone_from`: the writer's cache takes every change of a
/// held alert with it, and the derived one copies the whole alert afresh and drops the old
/// copy (4.4% of the server's CPU with 1,000 repeating alerts, BENCHMARKS.md issue 18).
/// Both name every field (a struct literal and a pattern without `..`), so a new field
/// cannot be forgotten.
impl Clone for Alert {
    fn clone(&self) -> Alert {
        Alert {
            id: self.id.clone(),
            fingerprint: self.fingerprint.clone(),
            status: self.status,
            category: self.category,
            severity: self.severity,
            severity_max: self.severity_max,
            source: self.source.clone(),
            resource: self.resource.clone(),
            check: self.check.clone(),
            service: self.service.clone(),
            environment: self.environment.clone(),
            summary: self.summary.clone(),
            labels: self.labels.clone(),
            count: self.count,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            last_event_id: self.last_event_id.clone(),
            acknowledged_by: self.acknowledged_by.clone(),
            acknowledged_at: self.acknowledged_at,
            assignee: self.assignee.clone(),
            resolved_by: self.resolved_by.clone(),
            resolved_at: self.resolved_at,
            incident_id: self.incident_id.clone(),
            expires_at: self.expires_at,
            handling: self.handling.clone(),
        }
    }

    /// Field by field into this alert's own buffers; the fingerprint and labels, which a
    /// later state of the same alert mostly keeps, only when they differ.
    fn clone_from(&mut self, source: &Alert) {
        let Alert {
            id,
            fingerprint,
            status,
            category,
            severity,
            severity_max,
            source: from,
            resource,
            check,
            service,
            environment,
            summary,
            labels,
            count,
            first_seen,
            last_seen,
            last_event_id,
            acknowledged_by,
            acknowledged_at,
            assignee,
            resolved_by,
            resolved_at,
            incident_id,
            expires_at,
            handling:
                Handling {
                    actions,
                    changes,
                    flapping,
                },
        } = source;
        self.id.clone_from(id);
        if self.fingerprint != *fingerprint {
            self.fingerprint = fingerprint.clone();
        }
        self.status = *status;
        self.category = *category;
        self.severity = *severity;
        self.severity_max = *severity_max;
        self.source.clone_from(from);
        self.resource.clone_from(resource);
        self.check.clone_from(check);
        self.service.clone_from(service);
        self.environment.clone_from(environment);
        self.summary.clone_from(summary);
        if self.labels != *labels {
            self.labels.clone_from(labels);
        }
        self.count = *count;
        self.first_seen = *first_seen;
        self.last_seen = *last_seen;
        self.last_event_id.clone_from(last_event_id);
        self.acknowledged_by.clone_from(acknowledged_by);
        self.acknowledged_at = *acknowledged_at;
        self.assignee.clone_from(assignee);
        self.resolved_by.clone_from(resolved_by);
        self.resolved_at = *resolved_at;
        self.incident_id.clone_from(incident_id);
        self.expires_at = *expires_at;
        self.handling.actions.clone_from(actions);
        self.handling.changes.clone_from(changes);
        self.handling.flapping = *flapping;
    }
}

/// Most actions an alert remembers for its resolution notice.
pub const HANDLING_ACTIONS_MAX: usize = 16;

/// What the decide stage keeps on an alert between events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Handling {
    /// Actions decided (not suppressed) for this alert, so its resolution can be announced
    /// through the same ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// Times of recent state changes (open, reopen, resolve) within the flap window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<DateTime<Utc>>,
    /// The alert flaps: its notifications wait until it settles.
    #[serde(default)]
    pub flapping: bool,
}

impl Alert {
    /// The labels silences, maintenance windows, inhibition and grouping match on: the
    /// alert's labels, plus its fields under their own names where no label has that name
    /// (`resource`, `check`, `service`, `environment`, `severity`, `category`, `source`),
    /// and `alertname` (= check) and `instance` (= resource) as Alertmanager names them.
    pub fn match_labels(&self) -> BTreeMap<String, String> {
        match_labels(&self.labels, self.label_fields())
    }

    /// One of `match_labels`, without building the map (grouping reads a few per action).
    pub fn match_label(&self, name: &str) -> Option<&str> {
        match self.labels.get(name) {
            Some(value) => Some(value),
            None => self
                .label_fields()
                .into_iter()
                .find(|(field, _)| *field == name)
                .and_then(|(_, value)| value),
        }
    }

    /// The fields `match_labels` adds under their names.
    fn label_fields(&self) -> [(&'static str, Option<&str>); 9] {
        [
            ("alertname", Some(self.check.as_str())),
            ("instance", Some(&self.resource)),
            ("resource", Some(&self.resource)),
            ("check", Some(&self.check)),
            ("severity", Some(self.severity.as_str())),
            ("category", Some(self.category.as_str())),
            ("source", Some(&self.source)),
            ("service", self.service.as_deref()),
            ("environment", self.environment.as_deref()),
        ]
    }
}

/// `labels`, plus each named field (when it has a value) where no label has its name.
pub(crate) fn match_labels<'a>(
    labels: &BTreeMap<String, String>,
    fields: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> BTreeMap<String, String> {
    let mut labels = labels.clone();
    for (name, value) in fields {
        if let Some(value) = value {
            labels
                .entry(name.to_owned())
                .or_insert_with(|| value.to_owned());
        }
    }
    labels
}

/// What a timeline entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    Opened,
    Reopened,
    SeverityChanged,
    Resolved,
    Acknowledged,
    Unacknowledged,
    Commented,
    Assigned,
    ActionDecided,
    /// A decided action was kept from running (silence, maintenance, flapping, inhibition,
    /// cooldown, throttling), with the reason.
    ActionSuppressed,
    /// An attempt to run an action ended (delivered, failed, gave up), with its output.
    ActionRun,
    Flapping,
    Settled,
    /// An escalation policy started, fired a step (or skipped one), paused, resumed or ended.
    Escalation,
    /// The alert opened or joined an incident.
    Incident,
}

impl TimelineKind {
    pub const ALL: [TimelineKind; 15] = [
        TimelineKind::Opened,
        TimelineKind::Reopened,
        TimelineKind::SeverityChanged,
        TimelineKind::Resolved,
        TimelineKind::Acknowledged,
        TimelineKind::Unacknowledged,
        TimelineKind::Commented,
        TimelineKind::Assigned,
        TimelineKind::ActionDecided,
        TimelineKind::ActionSuppressed,
        TimelineKind::ActionRun,
        TimelineKind::Flapping,
        TimelineKind::Settled,
        TimelineKind::Escalation,
        TimelineKind::Incident,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TimelineKind::Opened => "opened",
            TimelineKind::Reopened => "reopened",
            TimelineKind::SeverityChanged => "severity_changed",
            TimelineKind::Resolved => "resolved",
            TimelineKind::Acknowledged => "acknowledged",
            TimelineKind::Unacknowledged => "unacknowledged",
            TimelineKind::Commented => "commented",
            TimelineKind::Assigned => "assigned",
            TimelineKind::ActionDecided => "action_decided",
            TimelineKind::ActionSuppressed => "action_suppressed",
            TimelineKind::ActionRun => "action_run",
            TimelineKind::Flapping => "flapping",
            TimelineKind::Settled => "settled",
            TimelineKind::Escalation => "escalation",
            TimelineKind::Incident => "incident",
        }
    }

    pub fn parse(text: &str) -> Option<TimelineKind> {
        TimelineKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// One change in an alert's life: who, when, what and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    pub id: String,
    pub alert_id: String,
    pub at: DateTime<Utc>,
    pub kind: TimelineKind,
    /// An operator's name, or `vakt` for what the pipeline did.
    pub by: String,
    pub message: String,
    /// The event that caused the change, when an event did.
    pub event_id: Option<String>,
}

impl TimelineEntry {
    /// A line the pipeline writes when it decides an action (or holds one back) for an
    /// event: `DecidedAction::timeline_line`. The decided action says all it says, so
    /// stores keep only the action and give the line back from it (issue 18: one row fewer
    /// per decided action on the write path).
    pub fn is_decision(&self) -> bool {
        matches!(
            self.kind,
            TimelineKind::ActionDecided | TimelineKind::ActionSuppressed
        ) && self.event_id.is_some()
    }

    /// The line correlate writes when it opens an alert (for its first event). Stores keep
    /// it in the alert's row and give it back from there (issue 18: one row fewer per new
    /// alert).
    pub fn is_opening(&self) -> bool {
        self.kind == TimelineKind::Opened && self.event_id.is_some()
    }
}

/// The name the pipeline signs its own timeline entries with.
pub const PIPELINE_ACTOR: &str = "vakt";

/// A change an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorAction {
    Ack,
    Unack,
    Resolve,
    Comment,
    Assign {
        assignee: Option<String>,
    },
    /// vakt itself: a flapping alert that has not changed state for a whole flap window
    /// settles, although no event came to say so (an alert that ended resolved and stays
    /// quiet). Not an operator's request: the HTTP API does not take it.
    Settle,
}

impl OperatorAction {
    pub fn name(&self) -> &'static str {
        match self {
            OperatorAction::Ack => "ack",
            OperatorAction::Unack => "unack",
            OperatorAction::Resolve => "resolve",
            OperatorAction::Comment => "comment",
            OperatorAction::Assign { .. } => "assign",
            OperatorAction::Settle => "settle",
        }
    }
}

/// An operator's request: the action, who asks, and an optional comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRequest {
    pub action: OperatorAction,
    pub by: String,
    pub comment: Option<String>,
}

/// Why an operator's request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// The request itself is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The alert's state does not allow it (409).
    #[error("{0}")]
    Conflict(String),
}

/// Longest operator name and comment, in bytes.
pub const OPERATOR_TEXT_MAX: usize = 4096;

/// Applies an operator's request to `alert`: the changed alert and its timeline entry.
pub fn apply_operator(
    alert: &Alert,
    request: &OperatorRequest,
    now: DateTime<Utc>,
    entry_id: String,
) -> Result<(Alert, TimelineEntry), OperatorError> {
    let by = request.by.trim();
    if by.is_empty() {
        return Err(OperatorError::Invalid("by: must name who acts".into()));
    }
    if by.len() > 256 {
        return Err(OperatorError::Invalid("by: longer than 256 bytes".into()));
    }
    let comment = request.comment.as_deref().map(str::trim).unwrap_or("");
    if comment.len() > OPERATOR_TEXT_MAX {
        return Err(OperatorError::Invalid(format!(
            "comment: longer than {OPERATOR_TEXT_MAX} bytes"
        )));
    }
    let mut next = alert.clone();
    let (kind, mut message) = match &request.action {
        OperatorAction::Ack => {
            match alert.status {
                AlertStatus::Open => {}
                AlertStatus::Acknowledged => {
                    return Err(OperatorError::Conflict(format!(
                        "alert is already acknowledged by {}",
                        alert.acknowledged_by.as_deref().unwrap_or("someone")
                    )));
                }
                AlertStatus::Resolved => {
                    return Err(OperatorError::Conflict(
                        "alert is resolved; a resolved alert cannot be acknowledged".into(),
                    ));
                }
            }
            next.status = AlertStatus::Acknowledged;
            next.acknowledged_by = Some(by.to_owned());
            next.acknowledged_at = Some(now);
            (TimelineKind::Acknowledged, format!("acknowledged by {by}"))
        }
        OperatorAction::Unack => {
            if alert.status != AlertStatus::Acknowledged {
                return Err(OperatorError::Conflict(format!(
                    "alert is {}, only an acknowledged alert can be unacknowledged",
                    alert.status
                )));
            }
            next.status = AlertStatus::Open;
            next.acknowledged_by = None;
            next.acknowledged_at = None;
            (
                TimelineKind::Unacknowledged,
                format!("unacknowledged by {by}"),
            )
        }
        OperatorAction::Resolve => {
            if alert.status == AlertStatus::Resolved {
                return Err(OperatorError::Conflict("alert is already resolved".into()));
            }
            next.status = AlertStatus::Resolved;
            next.resolved_by = Some(by.to_owned());
            next.resolved_at = Some(now);
            (TimelineKind::Resolved, format!("resolved by {by}"))
        }
        OperatorAction::Comment => {
            if comment.is_empty() {
                return Err(OperatorError::Invalid(
                    "comment: a comment needs text".into(),
                ));
            }
            (TimelineKind::Commented, format!("comment by {by}"))
        }
        OperatorAction::Settle => {
            return Err(OperatorError::Invalid(
                "settle: decided by the pipeline (Pipeline::operate), not applied as a request"
                    .into(),
            ));
        }
        OperatorAction::Assign { assignee } => {
            let assignee = assignee.as_deref().map(str::trim).filter(|a| !a.is_empty());
            if assignee.is_some_and(|a| a.len() > 256) {
                return Err(OperatorError::Invalid(
                    "assignee: longer than 256 bytes".into(),
                ));
            }
            next.assignee = assignee.map(str::to_owned);
            let message = match assignee {
                Some(assignee) => format!("assigned to {assignee} by {by}"),
                None => format!("unassigned by {by}"),
            };
            (TimelineKind::Assigned, message)
        }
    };
    if !comment.is_empty() {
        message = format!("{message}: {comment}");
    }
    let entry = TimelineEntry {
        id: entry_id,
        alert_id: alert.id.clone(),
        at: now,
        kind,
        by: by.to_owned(),
        message,
        event_id: None,
    };
    Ok((next, entry))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `match_label` answers as the map `match_labels` builds: a label before the field of
    /// its name, each field and alias, nothing for a name neither has.
    #[test]
    fn one_match_label_is_the_maps() {
        let mut a = alert(AlertStatus::Open);
        a.labels.insert("team".into(), "db".into());
        a.labels.insert("resource".into(), "from-a-label".into());
        a.service = Some("billing".into());
        a.environment = None;
        let map = a.match_labels();
        for name in [
            "team",
            "resource",
            "instance",
            "alertname",
            "check",
            "severity",
            "category",
            "source",
            "service",
            "environment",
            "nothing",
        ] {
            assert_eq!(
                a.match_label(name),
                map.get(name).map(String::as_str),
                "{name}"
            );
        }
        assert_eq!(a.match_label("resource"), Some("from-a-label"));
        assert_eq!(a.match_label("environment"), None);
    }

    /// `clone_from` leaves an alert equal to its source, whichever fields differ (here all
    /// of them, some from a value to none and back) and when the labels are the same.
    #[test]
    fn clone_from_copies_every_field() {
        let mut a = alert(AlertStatus::Open);
        a.labels.insert("team".into(), "db".into());
        a.service = Some("billing".into());
        a.handling.actions.push("page".into());
        let later = a.first_seen + chrono::Duration::minutes(5);
        let b = Alert {
            id: "01B".into(),
            fingerprint: Fingerprint::sent("other"),
            status: AlertStatus::Resolved,
            category: Category::Warning,
            severity: Severity::Minor,
            severity_max: Severity::Major,
            source: "prometheus".into(),
            resource: "web02".into(),
            check: "http".into(),
            service: None,
            environment: Some("prod".into()),
            summary: "slow".into(),
            labels: BTreeMap::from([("team".into(), "web".into())]),
            count: 7,
            first_seen: later,
            last_seen: later,
            last_event_id: "01F".into(),
            acknowledged_by: Some("alice".into()),
            acknowledged_at: Some(later),
            assignee: Some("bob".into()),
            resolved_by: Some("carol".into()),
            resolved_at: Some(later),
            incident_id: Some("01I".into()),
            expires_at: Some(later),
            handling: Handling {
                actions: vec!["mail".into(), "chat".into()],
                changes: vec![later],
                flapping: true,
            },
        };
        let mut c = a.clone();
        assert_eq!(c, a);
        c.clone_from(&b);
        assert_eq!(c, b);
        c.clone_from(&a);
        assert_eq!(c, a);
        let mut same_labels = b.clone();
        same_labels.labels.clone_from(&a.labels);
        let mut d = a.clone();
        d.clone_from(&same_labels);
        assert_eq!(d, same_labels);
    }

    pub fn alert(status: AlertStatus) -> Alert {
        let now = Utc::now();
        Alert {
            id: "01A".into(),
            fingerprint: Fingerprint::sent("fp"),
            status,
            category: Category::Exception,
            severity: Severity::Critical,
            severity_max: Severity::Critical,
            source: "test".into(),
            resource: "db01".into(),
            check: "disk".into(),
            service: None,
            environment: None,
            summary: "full".into(),
            labels: BTreeMap::new(),
            count: 1,
            first_seen: now,
            last_seen: now,
            last_event_id: "01E".into(),
            acknowledged_by: None,
            acknowledged_at: None,
            assignee: None,
            resolved_by: None,
            resolved_at: None,
            incident_id: None,
            expires_at: None,
            handling: Handling::default(),
        }
    }

    fn request(action: OperatorAction, comment: Option<&str>) -> OperatorRequest {
        OperatorRequest {
            action,
            by: "alice".into(),
            comment: comment.map(Into::into),
        }
    }

    #[test]
    fn ack_unack_resolve_walk_the_lifecycle() {
        let now = Utc::now();
        let open = alert(AlertStatus::Open);
        let (acked, entry) = apply_operator(
            &open,
            &request(OperatorAction::Ack, Some("on it")),
            now,
            "t1".into(),
        )
        .expect("ack");
        assert_eq!(acked.status, AlertStatus::Acknowledged);
        assert_eq!(acked.acknowledged_by.as_deref(), Some("alice"));
        assert_eq!(entry.message, "acknowledged by alice: on it");
        let (reopened, _) = apply_operator(
            &acked,
            &request(OperatorAction::Unack, None),
            now,
            "t2".into(),
        )
        .expect("unack");
        assert_eq!(reopened.status, AlertStatus::Open);
        assert_eq!(reopened.acknowledged_by, None);
        let (resolved, entry) = apply_operator(
            &reopened,
            &request(OperatorAction::Resolve, None),
            now,
            "t3".into(),
        )
        .expect("resolve");
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(entry.kind, TimelineKind::Resolved);
    }

    #[test]
    fn refuses_impossible_transitions() {
        let now = Utc::now();
        let conflict = |status, action| {
            matches!(
                apply_operator(&alert(status), &request(action, None), now, "t".into()),
                Err(OperatorError::Conflict(_))
            )
        };
        assert!(conflict(AlertStatus::Acknowledged, OperatorAction::Ack));
        assert!(conflict(AlertStatus::Resolved, OperatorAction::Ack));
        assert!(conflict(AlertStatus::Open, OperatorAction::Unack));
        assert!(conflict(AlertStatus::Resolved, OperatorAction::Resolve));
        let invalid = apply_operator(
            &alert(AlertStatus::Open),
            &request(OperatorAction::Comment, Some("  ")),
            now,
            "t".into(),
        );
        assert!(matches!(invalid, Err(OperatorError::Invalid(_))));
        let nobody = OperatorRequest {
            action: OperatorAction::Ack,
            by: " ".into(),
            comment: None,
        };
        assert!(matches!(
            apply_operator(&alert(AlertStatus::Open), &nobody, now, "t".into()),
            Err(OperatorError::Invalid(_))
        ));
    }

    #[test]
    fn assign_and_unassign() {
        let now = Utc::now();
        let assign = |alert: &Alert, who: Option<&str>| {
            apply_operator(
                alert,
                &request(
                    OperatorAction::Assign {
                        assignee: who.map(Into::into),
                    },
                    None,
                ),
                now,
                "t".into(),
            )
            .expect("assign")
        };
        let (assigned, entry) = assign(&alert(AlertStatus::Open), Some("bob"));
        assert_eq!(assigned.assignee.as_deref(), Some("bob"));
        assert_eq!(entry.message, "assigned to bob by alice");
        let (unassigned, _) = assign(&assigned, None);
        assert_eq!(unassigned.assignee, None);
    }
}
