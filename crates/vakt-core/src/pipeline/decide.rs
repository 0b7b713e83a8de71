//! Stage 5, decide: which actions the matching rules ask for run now, and why (or why not).
//!
//! Actions run when an alert needs attention anew: it opened, it reopened, or its severity
//! rose. A repeat at the same or a lower severity, a resolution and a dropped event run
//! nothing. Executing the actions is the handling stage's job; this stage only decides.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::correlate::{Outcome, Transition};
use crate::alert::{PIPELINE_ACTOR, TimelineEntry, TimelineKind};
use crate::config::ActionConfig;
use crate::rules::{Matches, RuleSet};
use crate::trace::{Stage, TraceEntry};

/// An action decided for an alert, waiting to be handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecidedAction {
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub action: Arc<str>,
    pub kind: &'static str,
    pub alert_id: String,
    pub event_id: String,
    pub reason: String,
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

pub(super) fn decide(
    actions: &BTreeMap<String, ActionConfig>,
    requested: &[RequestedAction],
    outcome: &mut Outcome,
    event_id: &str,
    new_id: &mut dyn FnMut() -> String,
    trace: &mut Vec<TraceEntry>,
) -> Vec<DecidedAction> {
    let trigger = match outcome.transition {
        Transition::Opened => Some("the alert opened".to_owned()),
        Transition::Reopened => Some("the alert reopened".to_owned()),
        Transition::Updated { previous_severity } => outcome
            .alert
            .as_ref()
            .filter(|alert| alert.severity > previous_severity)
            .map(|alert| {
                format!(
                    "severity rose from {previous_severity} to {}",
                    alert.severity
                )
            }),
        Transition::Dropped | Transition::NothingToClear | Transition::Resolved => None,
    };
    let (Some(trigger), Some(alert)) = (trigger, outcome.alert.as_ref()) else {
        let reason: Cow<'static, str> = if requested.is_empty() {
            "no matching rule names an action".into()
        } else {
            format!(
                "{} requested, none run: {}",
                names(requested),
                match outcome.transition {
                    Transition::Dropped => "the event was dropped",
                    Transition::NothingToClear => "there is no alert",
                    Transition::Resolved => "the alert resolved",
                    _ => "a repeat that does not raise the severity",
                }
            )
            .into()
        };
        trace.push(TraceEntry::new(Stage::Decide, "no_action", reason));
        return Vec::new();
    };
    if requested.is_empty() {
        trace.push(TraceEntry::new(
            Stage::Decide,
            "no_action",
            format!("{trigger}, but no matching rule names an action"),
        ));
        return Vec::new();
    }
    let decided: Vec<DecidedAction> = requested
        .iter()
        .map(|requested| DecidedAction {
            id: new_id(),
            action: Arc::clone(&requested.action),
            kind: actions
                .get(requested.action.as_ref())
                .map_or("unknown", ActionConfig::kind),
            alert_id: alert.id.clone(),
            event_id: event_id.to_owned(),
            reason: format!(
                "{trigger}; requested by rule {}",
                requested.rules.join(", ")
            ),
        })
        .collect();
    for action in &decided {
        outcome.timeline.push(TimelineEntry {
            id: new_id(),
            alert_id: action.alert_id.clone(),
            at: alert.last_seen,
            kind: TimelineKind::ActionDecided,
            by: PIPELINE_ACTOR.to_owned(),
            message: format!(
                "action {} ({}) decided: {}",
                action.action, action.kind, action.reason
            ),
            event_id: Some(event_id.to_owned()),
        });
    }
    trace.push(
        TraceEntry::new(
            Stage::Decide,
            "run",
            format!("{trigger}: run {}", names(requested)),
        )
        .with_rules(rule_names(requested)),
    );
    decided
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
