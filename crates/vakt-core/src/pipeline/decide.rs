//! Stage 5, decide: which actions run for this event's alert, which are held back, and why.
//!
//! Actions run when an alert needs attention anew: it opened, it reopened, or its severity
//! rose. When it resolves, the actions that ran for it and announce resolutions
//! (`send_resolved`) run again with purpose `resolved`. A repeat at the same or a lower
//! severity and a dropped event run nothing.
//!
//! Before anyone is disturbed, noise control: an action for an alert a silence or an open
//! maintenance window covers is decided but suppressed; a flapping alert's notifications are
//! suppressed except the one that says it flaps and the one that says it settled. Suppressed
//! actions are stored with the reason, so "why did nobody get paged?" has an answer.
//! Executing the actions is the handling stage's job (the server's dispatcher).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::correlate::{Outcome, Transition};
use crate::alert::{Alert, HANDLING_ACTIONS_MAX, PIPELINE_ACTOR, TimelineEntry, TimelineKind};
use crate::config::ActionConfig;
use crate::noise::Noise;
use crate::rules::{Matches, RuleSet};
use crate::trace::{Stage, TraceEntry};

/// Why an action runs: the alert needs attention, it resolved, it started or stopped flapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    Trigger,
    Resolved,
    Flapping,
    Settled,
    /// A page from an escalation step (the action's `target` says to whom).
    Escalation,
}

impl Purpose {
    pub const ALL: [Purpose; 5] = [
        Purpose::Trigger,
        Purpose::Resolved,
        Purpose::Flapping,
        Purpose::Settled,
        Purpose::Escalation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Trigger => "trigger",
            Purpose::Resolved => "resolved",
            Purpose::Flapping => "flapping",
            Purpose::Settled => "settled",
            Purpose::Escalation => "escalation",
        }
    }

    pub fn parse(text: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// An action decided for an alert, waiting to be handled (or held back, with the reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecidedAction {
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub action: Arc<str>,
    pub kind: &'static str,
    pub alert_id: String,
    pub event_id: String,
    pub purpose: Purpose,
    pub reason: String,
    /// Set when noise control kept the action from running: which silence, window, ...
    pub suppressed_by: Option<String>,
    /// Notifications with the same key go out as one message (the action's `group_by`).
    pub group_key: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// For an escalation page: who it is for and how it goes out. Boxed: nearly every
    /// decided action has none, and inline it was half of each one's size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Box<crate::escalation::Page>>,
}

impl DecidedAction {
    /// The alert's timeline line for this decision, under `id`: which action was decided
    /// (or held back, and by what) for which event, and why. Stores keep the decided action
    /// and give this line back from it, rather than store both (`TimelineEntry::is_decision`).
    pub fn timeline_line(&self, id: String) -> TimelineEntry {
        let (kind, verb) = match &self.suppressed_by {
            None => (TimelineKind::ActionDecided, Cow::Borrowed("decided")),
            Some(by) => (
                TimelineKind::ActionSuppressed,
                Cow::Owned(format!("suppressed by {by}")),
            ),
        };
        TimelineEntry {
            id,
            alert_id: self.alert_id.clone(),
            at: self.decided_at,
            kind,
            by: PIPELINE_ACTOR.to_owned(),
            // Joined, not formatted (as correlate's reasons): a line for every decision.
            message: [
                "action ",
                &self.action,
                " (",
                self.kind,
                ", ",
                self.purpose.as_str(),
                ") ",
                &verb,
                ": ",
                &self.reason,
            ]
            .concat(),
            event_id: Some(self.event_id.clone()),
        }
    }

    /// The alert's timeline line for an attempt at this action: which try, what came of it
    /// and the attempt's detail. Stores give this line back from the attempt's row when it
    /// is all the line says (a command's output excerpt, added after it, is stored).
    pub fn attempt_line(&self, attempt: i64, outcome: &str, detail: &str) -> String {
        let mut line = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_attempt_line(&mut line, attempt, outcome, detail);
        line
    }

    /// `attempt_line`, written to `out` (a store compares it with a line without making it).
    pub fn write_attempt_line(
        &self,
        out: &mut impl std::fmt::Write,
        attempt: i64,
        outcome: &str,
        detail: &str,
    ) -> std::fmt::Result {
        write!(
            out,
            "action {} ({}, {}) attempt {attempt}: {outcome}: {detail}",
            self.action,
            self.kind,
            self.purpose.as_str()
        )
    }
}

/// An action the matching rules name, with the rules that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedAction {
    pub action: Arc<str>,
    pub rules: Vec<Arc<str>>,
}

/// The actions named by the matching rules, in rule order, each once.
pub(super) fn requested_actions(rules: &RuleSet, matches: &Matches) -> Vec<RequestedAction> {
    let mut requested: Vec<RequestedAction> = Vec::new();
    for rule in matches.matched.iter().map(|&i| rules.rule(i)) {
        for action in &rule.actions {
            match requested.iter_mut().find(|r| r.action == *action) {
                Some(known) => known.rules.push(Arc::clone(&rule.name)),
                None => requested.push(RequestedAction {
                    action: Arc::clone(action),
                    rules: vec![Arc::clone(&rule.name)],
                }),
            }
        }
    }
    requested
}

fn names(requested: &[RequestedAction]) -> String {
    requested
        .iter()
        .map(|r| &*r.action)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Flap detection settings; `threshold` 0 is off.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flap {
    pub threshold: u32,
    pub window: chrono::Duration,
}

/// What decide consults besides the event's outcome.
pub(super) struct Context<'a> {
    pub actions: &'a BTreeMap<String, ActionConfig>,
    pub flap: Flap,
    pub noise: &'a Noise<'a>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlapChange {
    Started(usize),
    Settled,
}

/// Keeps the alert's recent state changes and says when it starts or stops flapping.
fn track_flapping(
    alert: &mut Alert,
    transition: Transition,
    flap: Flap,
    now: DateTime<Utc>,
) -> Option<FlapChange> {
    if flap.threshold == 0 {
        return None;
    }
    let handling = &mut alert.handling;
    handling.changes.retain(|&at| now - at < flap.window);
    // Quiet for a whole window before this event: a flapping alert has settled, whatever
    // this event does next (a reopening after the quiet is an ordinary change again).
    let mut change = None;
    if handling.flapping && handling.changes.is_empty() {
        handling.flapping = false;
        change = Some(FlapChange::Settled);
    }
    if matches!(
        transition,
        Transition::Opened | Transition::Reopened | Transition::Resolved
    ) {
        handling.changes.push(now);
    }
    let threshold = usize::try_from(flap.threshold).unwrap_or(usize::MAX);
    let keep = threshold.saturating_add(1);
    if handling.changes.len() > keep {
        let excess = handling.changes.len() - keep;
        handling.changes.drain(..excess);
    }
    let count = handling.changes.len();
    if !handling.flapping && count > threshold {
        handling.flapping = true;
        change = Some(FlapChange::Started(count));
    }
    change
}

/// One action about to be decided, before noise control.
struct Candidate {
    action: Arc<str>,
    purpose: Purpose,
    why: String,
}

pub(super) fn decide(
    context: &Context<'_>,
    requested: &[RequestedAction],
    outcome: &mut Outcome,
    event_id: &str,
    new_id: &mut dyn FnMut() -> String,
    trace: &mut Vec<TraceEntry>,
) -> Vec<DecidedAction> {
    let transition = outcome.transition;
    let Some(alert) = outcome.alert.as_mut() else {
        let reason: Cow<'static, str> = if requested.is_empty() {
            "no matching rule names an action".into()
        } else {
            format!(
                "{} requested, none run: {}",
                names(requested),
                match transition {
                    Transition::Dropped => "the event was dropped",
                    _ => "there is no alert",
                }
            )
            .into()
        };
        trace.push(TraceEntry::new(Stage::Decide, "no_action", reason));
        return Vec::new();
    };
    let flap_change = track_flapping(alert, transition, context.flap, context.now);
    let window_secs = context.flap.window.num_seconds();
    match flap_change {
        Some(FlapChange::Started(count)) => outcome.timeline.push(TimelineEntry {
            id: new_id(),
            alert_id: alert.id.clone(),
            at: context.now,
            kind: TimelineKind::Flapping,
            by: PIPELINE_ACTOR.to_owned(),
            message: format!(
                "flapping: {count} state changes within {window_secs} s; notifications wait until it settles"
            ),
            event_id: Some(event_id.to_owned()),
        }),
        Some(FlapChange::Settled) => outcome.timeline.push(TimelineEntry {
            id: new_id(),
            alert_id: alert.id.clone(),
            at: context.now,
            kind: TimelineKind::Settled,
            by: PIPELINE_ACTOR.to_owned(),
            message: format!(
                "settled: no state change within {window_secs} s; it is {}",
                alert.status
            ),
            event_id: Some(event_id.to_owned()),
        }),
        None => {}
    }

    let trigger = match transition {
        Transition::Opened => Some("the alert opened".to_owned()),
        Transition::Reopened => Some("the alert reopened".to_owned()),
        Transition::Updated { previous_severity } if alert.severity > previous_severity => {
            Some(format!(
                "severity rose from {previous_severity} to {}",
                alert.severity
            ))
        }
        _ => None,
    };
    let notifies = |name: &str| {
        context
            .actions
            .get(name)
            .is_some_and(ActionConfig::notifies)
    };
    let remembered = |purpose: Purpose, why: &str| remembered(context, alert, purpose, why);
    let mut candidates: Vec<Candidate> = match flap_change {
        Some(FlapChange::Started(_)) => {
            let mut list = remembered(Purpose::Flapping, "the alert started flapping");
            for r in requested.iter().filter(|r| notifies(&r.action)) {
                if !list.iter().any(|c| c.action == r.action) {
                    list.push(Candidate {
                        action: Arc::clone(&r.action),
                        purpose: Purpose::Flapping,
                        why: "the alert started flapping".into(),
                    });
                }
            }
            list
        }
        Some(FlapChange::Settled) => remembered(Purpose::Settled, "the alert stopped flapping"),
        None => Vec::new(),
    };
    if let Some(trigger) = &trigger {
        for r in requested {
            // A flapping notice replaces the trigger notification of this change.
            if !candidates.iter().any(|c| c.action == r.action) {
                candidates.push(Candidate {
                    action: Arc::clone(&r.action),
                    purpose: Purpose::Trigger,
                    why: [
                        trigger.as_str(),
                        "; requested by rule ",
                        &r.rules.join(", "),
                    ]
                    .concat(),
                });
            }
        }
    } else if transition == Transition::Resolved && flap_change.is_none() {
        candidates = remembered(Purpose::Resolved, "the alert resolved");
    }

    if candidates.is_empty() {
        let reason: Cow<'static, str> = match (&trigger, requested.is_empty()) {
            (Some(trigger), _) => format!("{trigger}, but no matching rule names an action").into(),
            (None, true) if transition == Transition::Resolved => {
                "the alert resolved; no action that ran for it announces resolutions".into()
            }
            (None, true) => "no matching rule names an action".into(),
            (None, false) => format!(
                "{} requested, none run: {}",
                names(requested),
                if transition == Transition::Resolved {
                    "the alert resolved"
                } else {
                    "a repeat that does not raise the severity"
                }
            )
            .into(),
        };
        trace.push(TraceEntry::new(Stage::Decide, "no_action", reason));
        return Vec::new();
    }

    let decided = settle_candidates(
        context,
        alert,
        candidates,
        event_id,
        new_id,
        &mut outcome.timeline,
    );

    let running: Vec<&DecidedAction> = decided
        .iter()
        .filter(|a| a.suppressed_by.is_none())
        .collect();
    let held: Vec<&DecidedAction> = decided
        .iter()
        .filter(|a| a.suppressed_by.is_some())
        .collect();
    let list = |actions: &[&DecidedAction]| {
        actions
            .iter()
            .map(|a| [&*a.action, " (", a.purpose.as_str(), ")"].concat())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (decision, reason) = match (running.is_empty(), held.first()) {
        (false, None) => (
            "run",
            [
                why_of(&trigger, transition, flap_change).as_str(),
                ": run ",
                &list(&running),
            ]
            .concat(),
        ),
        (true, Some(first)) => (
            "suppressed",
            format!(
                "{}: {} suppressed by {}",
                why_of(&trigger, transition, flap_change),
                list(&held),
                first.suppressed_by.as_deref().unwrap_or_default()
            ),
        ),
        (false, Some(first)) => (
            "run",
            format!(
                "{}: run {}; {} suppressed by {}",
                why_of(&trigger, transition, flap_change),
                list(&running),
                list(&held),
                first.suppressed_by.as_deref().unwrap_or_default()
            ),
        ),
        (true, None) => ("no_action", "nothing decided".to_owned()),
    };
    trace.push(TraceEntry::new(Stage::Decide, decision, reason).with_rules(rule_names(requested)));
    decided
}

/// Applies noise control to the candidates and records each decision on the timeline:
/// silences and maintenance windows hold back everything; a flapping alert holds back
/// notifications other than the flapping and settled notices.
fn settle_candidates(
    context: &Context<'_>,
    alert: &mut Alert,
    candidates: Vec<Candidate>,
    event_id: &str,
    new_id: &mut dyn FnMut() -> String,
    timeline: &mut Vec<TimelineEntry>,
) -> Vec<DecidedAction> {
    // Noise control: silences and maintenance windows hold back everything; a flapping
    // alert holds back notifications other than the flapping and settled notices.
    let suppression = context.noise.suppression(alert, context.now);
    let mut decided = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let config = context.actions.get(&*candidate.action);
        let suppressed_by = match (&suppression, config) {
            (Some(s), _) => Some(s.describe()),
            (None, Some(config))
                if config.notifies()
                    && alert.handling.flapping
                    && matches!(candidate.purpose, Purpose::Trigger | Purpose::Resolved) =>
            {
                Some("the alert is flapping".to_owned())
            }
            _ => None,
        };
        let group_key = match config {
            Some(config) if !config.group_by().is_empty() => {
                Some(group_key(&candidate.action, config.group_by(), alert))
            }
            _ => None,
        };
        decided.push(DecidedAction {
            id: new_id(),
            kind: config.map_or("unknown", ActionConfig::kind),
            action: candidate.action,
            alert_id: alert.id.clone(),
            event_id: event_id.to_owned(),
            purpose: candidate.purpose,
            reason: candidate.why,
            suppressed_by,
            group_key,
            decided_at: context.now,
            target: None,
        });
    }

    for action in &decided {
        if action.suppressed_by.is_none()
            && action.purpose == Purpose::Trigger
            && !alert.handling.actions.iter().any(|a| **a == *action.action)
            && alert.handling.actions.len() < HANDLING_ACTIONS_MAX
        {
            alert.handling.actions.push(action.action.to_string());
        }
        timeline.push(action.timeline_line(new_id()));
    }

    decided
}

/// An operator resolved the alert (no event did): the notifications that ran for it announce
/// the resolution, under the same noise control as an `ok` event's. `event_id` is the
/// alert's last event, which the actions are filed under.
pub(super) fn operator_resolved(
    context: &Context<'_>,
    alert: &mut Alert,
    by: &str,
    new_id: &mut dyn FnMut() -> String,
    timeline: &mut Vec<TimelineEntry>,
) -> Vec<DecidedAction> {
    let why = format!("{by} resolved the alert");
    let candidates = remembered(context, alert, Purpose::Resolved, &why);
    if candidates.is_empty() {
        return Vec::new();
    }
    let event_id = alert.last_event_id.clone();
    settle_candidates(context, alert, candidates, &event_id, new_id, timeline)
}

/// The notifications that ran for the alert, again with `purpose` (resolution notices only
/// through actions that announce resolutions).
fn remembered(context: &Context<'_>, alert: &Alert, purpose: Purpose, why: &str) -> Vec<Candidate> {
    alert
        .handling
        .actions
        .iter()
        .filter(|name| {
            context.actions.get(name.as_str()).is_some_and(|a| {
                a.notifies() && (purpose != Purpose::Resolved || a.send_resolved())
            })
        })
        .map(|name| Candidate {
            action: Arc::from(name.as_str()),
            purpose,
            why: why.to_owned(),
        })
        .collect()
}

/// Whether a flapping alert had no state change within the flap window before `now`.
pub(super) fn quiet_since(alert: &Alert, flap: Flap, now: DateTime<Utc>) -> bool {
    flap.threshold > 0
        && alert.handling.flapping
        && alert
            .handling
            .changes
            .iter()
            .all(|&at| now - at >= flap.window)
}

/// A flapping alert that stayed quiet for a whole window without an event to notice it
/// (typically one that ended resolved): it settles now, with the timeline line and the
/// `settled` notices an event would have brought. `None` when it is not flapping or not
/// quiet.
pub(super) fn settle_quiet(
    context: &Context<'_>,
    alert: &Alert,
    new_id: &mut dyn FnMut() -> String,
) -> Option<super::Operated> {
    if !quiet_since(alert, context.flap, context.now) {
        return None;
    }
    let mut next = alert.clone();
    next.handling.changes.clear();
    next.handling.flapping = false;
    let window_secs = context.flap.window.num_seconds();
    let mut timeline = vec![TimelineEntry {
        id: new_id(),
        alert_id: next.id.clone(),
        at: context.now,
        kind: TimelineKind::Settled,
        by: PIPELINE_ACTOR.to_owned(),
        message: format!(
            "settled: no state change within {window_secs} s (no event since); it is {}",
            next.status
        ),
        event_id: None,
    }];
    let candidates = remembered(
        context,
        &next,
        Purpose::Settled,
        "the alert stopped flapping",
    );
    let event_id = next.last_event_id.clone();
    let actions = if candidates.is_empty() {
        Vec::new()
    } else {
        settle_candidates(
            context,
            &mut next,
            candidates,
            &event_id,
            new_id,
            &mut timeline,
        )
    };
    Some(super::Operated {
        alert: next,
        timeline,
        actions,
    })
}

fn why_of(trigger: &Option<String>, transition: Transition, flap: Option<FlapChange>) -> String {
    match (flap, trigger) {
        (Some(FlapChange::Started(_)), _) => "the alert started flapping".to_owned(),
        (Some(FlapChange::Settled), _) => "the alert stopped flapping".to_owned(),
        (None, Some(trigger)) => trigger.clone(),
        (None, None) if transition == Transition::Resolved => "the alert resolved".to_owned(),
        (None, None) => "the alert changed".to_owned(),
    }
}

/// `action` and the values of the grouping labels: `page-ops|service=billing`.
fn group_key(action: &str, group_by: &[String], alert: &Alert) -> String {
    let mut key = String::from(action);
    for name in group_by {
        key.push('|');
        key.push_str(name);
        key.push('=');
        key.push_str(alert.match_label(name).unwrap_or(""));
    }
    key
}

/// The rules behind the requested actions, each once, in order.
fn rule_names(requested: &[RequestedAction]) -> Vec<Arc<str>> {
    let mut rules: Vec<Arc<str>> = Vec::new();
    for rule in requested.iter().flat_map(|r| &r.rules) {
        if !rules.contains(rule) {
            rules.push(Arc::clone(rule));
        }
    }
    rules
}
