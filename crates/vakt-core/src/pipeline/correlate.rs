//! Stage 4, correlate: the fingerprint makes repeated events one alert; this stage moves that alert.

use crate::alert::{Alert, AlertStatus, PIPELINE_ACTOR, TimelineEntry, TimelineKind};
use crate::event::{Category, Event, Severity};
use crate::fingerprint::{Fingerprint, FingerprintField};
use std::sync::Arc;

use crate::rules::{Matches, RuleSet, field_names};
use crate::trace::{Stage, TraceEntry};

/// What the event did to its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The event was dropped by the filter: no alert was touched.
    Dropped,
    /// An `ok` event with no alert to clear.
    NothingToClear,
    Opened,
    /// A problem event within the reopen window of its resolved alert.
    Reopened,
    /// A repeat of an open or acknowledged alert.
    Updated {
        previous_severity: Severity,
    },
    /// An `ok` event cleared the alert.
    Resolved,
    /// The event's idempotency key was already stored: this is a repeat delivery of that
    /// event, answered with its id and not stored or processed again.
    Duplicate,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Dropped => "dropped",
            Transition::NothingToClear => "nothing_to_clear",
            Transition::Opened => "new_alert",
            Transition::Reopened => "reopened",
            Transition::Updated { .. } => "updated",
            Transition::Resolved => "resolved",
            Transition::Duplicate => "duplicate",
        }
    }
}

/// Computes the fingerprint: the sender's if given, else the fields of the last matching
/// rule that chooses some, else the configured defaults, plus the labels the channel made
/// part of the event's identity (SNMP: the interface). Returns it with its origin.
pub(super) fn fingerprint(
    rules: &RuleSet,
    matches: &Matches,
    defaults: &Origins,
    event: &Event,
) -> (Fingerprint, Arc<str>) {
    if let Some(sent) = &event.sent_fingerprint {
        return (Fingerprint::sent(sent), Arc::clone(&defaults.sent));
    }
    let chosen = matches
        .matched
        .iter()
        .rev()
        .map(|&i| rules.rule(i))
        .find_map(|rule| rule.fingerprint.as_ref().map(|fields| (fields, rule)));
    let (fields, origin) = match chosen {
        Some((fields, rule)) => (fields, &rule.fingerprint_origin),
        None => (&defaults.fields, &defaults.origin),
    };
    let extra: Vec<FingerprintField> = event
        .identity_labels
        .iter()
        .map(|name| FingerprintField::Label(name.clone()))
        .filter(|field| !fields.contains(field))
        .collect();
    if extra.is_empty() {
        return (Fingerprint::compute(fields, event), Arc::clone(origin));
    }
    let names: Vec<String> = extra.iter().map(|f| f.name().into_owned()).collect();
    let mut all = fields.to_vec();
    all.extend(extra);
    (
        Fingerprint::compute(&all, event),
        Arc::from(format!(
            "{origin} and {}, which the channel makes part of the identity",
            names.join(", ")
        )),
    )
}

/// The default fingerprint fields and the texts that explain fingerprints, made once.
pub(super) struct Origins {
    pub fields: Arc<[FingerprintField]>,
    pub origin: Arc<str>,
    pub sent: Arc<str>,
}

impl Origins {
    pub fn new(fields: Arc<[FingerprintField]>) -> Origins {
        Origins {
            origin: Arc::from(format!("of default fields {}", field_names(&fields))),
            sent: Arc::from("sent with the event"),
            fields,
        }
    }
}

pub(super) struct Input<'a> {
    pub event: &'a Event,
    pub event_id: &'a str,
    pub category: Category,
    pub fingerprint: &'a Fingerprint,
    pub dropped: bool,
    pub reopen_window: chrono::Duration,
}

pub(super) struct Outcome {
    pub transition: Transition,
    pub alert: Option<Alert>,
    pub timeline: Vec<TimelineEntry>,
}

/// Moves the alert for this event's fingerprint: open, update, reopen or resolve it.
pub(super) fn correlate(
    input: &Input<'_>,
    current: Option<&Alert>,
    fingerprint_origin: &str,
    new_id: &mut dyn FnMut() -> String,
    trace: &mut Vec<TraceEntry>,
) -> Outcome {
    let event = input.event;
    let at = event.received_at;
    let mut timeline = Vec::new();
    let mut entry = |new_id: &mut dyn FnMut() -> String,
                     alert_id: &str,
                     kind: TimelineKind,
                     message: String| {
        timeline.push(TimelineEntry {
            id: new_id(),
            alert_id: alert_id.to_owned(),
            at,
            kind,
            by: PIPELINE_ACTOR.to_owned(),
            message,
            event_id: Some(input.event_id.to_owned()),
        });
    };
    let fp = fingerprint_origin;
    let (transition, alert, reason) = if input.dropped {
        (
            Transition::Dropped,
            None,
            because(&["skipped: the event was dropped"], fp),
        )
    } else {
        // An alert resolved longer ago than the reopen window is history, not state. A zero
        // window never reopens, even for an event of the same millisecond.
        let current = current.filter(|alert| {
            alert.status.is_active()
                || (input.reopen_window > chrono::Duration::zero()
                    && alert
                        .resolved_at
                        .is_some_and(|resolved| at - resolved <= input.reopen_window))
        });
        match (current, event.severity.is_clear()) {
            (None, true) => (
                Transition::NothingToClear,
                None,
                because(&["ok event and no open alert to clear"], fp),
            ),
            (Some(alert), true)
                if event.expiry && alert.expires_at.is_none_or(|expires| expires > at) =>
            {
                (
                    Transition::NothingToClear,
                    None,
                    because(
                        &["expiry ok event, but the alert was refreshed since it expired"],
                        fp,
                    ),
                )
            }
            (Some(alert), true) if !alert.status.is_active() => (
                Transition::NothingToClear,
                None,
                because(&["ok event, and its alert is already resolved"], fp),
            ),
            (Some(alert), true) => {
                let mut next = alert.clone();
                next.status = AlertStatus::Resolved;
                next.severity = Severity::Ok;
                next.last_seen = at;
                next.last_event_id = input.event_id.to_owned();
                next.resolved_by = Some(PIPELINE_ACTOR.to_owned());
                next.resolved_at = Some(at);
                next.expires_at = None;
                entry(
                    new_id,
                    &next.id,
                    TimelineKind::Resolved,
                    if event.expiry {
                        format!(
                            "resolved: it expired without a new event ({})",
                            event.summary
                        )
                    } else {
                        format!(
                            "resolved by an ok event from {}: {}",
                            event.source, event.summary
                        )
                    },
                );
                let reason = because(&["ok event resolved the alert"], fp);
                (Transition::Resolved, Some(next), reason)
            }
            (None, false) => {
                let alert = open(input, new_id());
                entry(
                    new_id,
                    &alert.id,
                    TimelineKind::Opened,
                    [
                        "opened: ",
                        alert.category.as_str(),
                        " ",
                        alert.severity.as_str(),
                        " from ",
                        &event.source,
                        ": ",
                        &event.summary,
                    ]
                    .concat(),
                );
                let reason = because(&["no open alert: opened a new one"], fp);
                (Transition::Opened, Some(alert), reason)
            }
            (Some(alert), false) if !alert.status.is_active() => {
                let mut next = alert.clone();
                repeat(&mut next, input);
                next.status = AlertStatus::Open;
                next.resolved_at = None;
                next.resolved_by = None;
                next.acknowledged_at = None;
                next.acknowledged_by = None;
                let since = alert.resolved_at.map_or(0, |r| (at - r).num_seconds());
                entry(
                    new_id,
                    &next.id,
                    TimelineKind::Reopened,
                    format!(
                        "reopened {since} s after it was resolved: {} {}",
                        next.severity, event.summary
                    ),
                );
                let reason = because(
                    &["the alert was resolved within the reopen window: reopened"],
                    fp,
                );
                (Transition::Reopened, Some(next), reason)
            }
            (Some(alert), false) => {
                let mut next = alert.clone();
                repeat(&mut next, input);
                if next.severity != alert.severity {
                    let direction = if next.severity > alert.severity {
                        "raised"
                    } else {
                        "lowered"
                    };
                    entry(
                        new_id,
                        &next.id,
                        TimelineKind::SeverityChanged,
                        format!(
                            "severity {direction} from {} to {}: {}",
                            alert.severity, next.severity, event.summary
                        ),
                    );
                }
                let reason = because(&["repeat of the ", alert.status.as_str(), " alert"], fp);
                let transition = Transition::Updated {
                    previous_severity: alert.severity,
                };
                (transition, Some(next), reason)
            }
        }
    };
    trace.push(TraceEntry::new(
        Stage::Correlate,
        transition.as_str(),
        reason,
    ));
    Outcome {
        transition,
        alert,
        timeline,
    }
}

fn open(input: &Input<'_>, id: String) -> Alert {
    let event = input.event;
    Alert {
        id,
        fingerprint: input.fingerprint.clone(),
        status: AlertStatus::Open,
        category: input.category,
        severity: event.severity,
        severity_max: event.severity,
        source: event.source.clone(),
        resource: event.resource.clone(),
        check: event.check.clone(),
        service: event.service.clone(),
        environment: event.environment.clone(),
        summary: event.summary.clone(),
        labels: event.labels.clone(),
        count: 1,
        first_seen: event.received_at,
        last_seen: event.received_at,
        last_event_id: input.event_id.to_owned(),
        acknowledged_by: None,
        acknowledged_at: None,
        assignee: None,
        resolved_by: None,
        resolved_at: None,
        incident_id: None,
        expires_at: event.expires_at,
        handling: crate::alert::Handling::default(),
    }
}

/// What every problem event does to the alert it lands on. Acknowledgement is kept.
fn repeat(alert: &mut Alert, input: &Input<'_>) {
    let event = input.event;
    alert.count += 1;
    alert.last_seen = event.received_at;
    alert.last_event_id = input.event_id.to_owned();
    alert.severity = event.severity;
    alert.severity_max = alert.severity_max.max(event.severity);
    alert.category = input.category;
    alert.source.clone_from(&event.source);
    alert.summary.clone_from(&event.summary);
    // Repeats mostly carry the labels the alert has: compare rather than copy the map.
    if alert.labels != event.labels {
        alert.labels.clone_from(&event.labels);
    }
    alert.expires_at = event.expires_at;
}

/// A correlation's reason: the parts of `what`, then how the fingerprint was made, `(fingerprint of
/// default fields resource, check)`. The value itself is the event's `fingerprint`; leaving
/// it out keeps the traces of repeats identical, so storage keeps each distinct trace once.
/// Joined, not formatted: every event's correlation writes one, and `format!` (through a
/// `Display` that formatted again) cost the writer about a thousand instructions each.
fn because(what: &[&str], origin: &str) -> String {
    const BEFORE: &str = " (fingerprint ";
    let length = what.iter().map(|part| part.len()).sum::<usize>() + BEFORE.len() + origin.len();
    let mut reason = String::with_capacity(length + 1);
    for part in what {
        reason.push_str(part);
    }
    reason.push_str(BEFORE);
    reason.push_str(origin);
    reason.push(')');
    reason
}
