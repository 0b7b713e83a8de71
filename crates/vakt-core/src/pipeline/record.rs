//! Stage 6, record: assemble everything the event changed into one write set for storage.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Correlated;
use super::correlate::{Outcome, Transition};
use super::decide::DecidedAction;
use crate::event::{Category, Event, Received};
use crate::fingerprint::Fingerprint;
use crate::trace::{Stage, TraceEntry};

/// An event as stored: the event, what the pipeline made of it, and the trace of why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventRecord {
    pub id: String,
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(inline, value_type = Object))]
    pub event: Event,
    /// What the rules changed (severity, labels), as the event arrived; absent when they
    /// changed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub received: Option<Received>,
    pub category: Category,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub fingerprint: Fingerprint,
    pub alert_id: Option<String>,
    pub dropped: bool,
    pub trace: Vec<TraceEntry>,
}

pub(super) struct Parts {
    pub event_id: String,
    pub event: Event,
    pub received: Option<Received>,
    pub category: Category,
    pub fingerprint: Fingerprint,
    pub dropped: bool,
}

pub(super) fn record(
    parts: Parts,
    outcome: Outcome,
    actions: Vec<DecidedAction>,
    mut trace: Vec<TraceEntry>,
) -> Correlated {
    let alert_id = outcome.alert.as_ref().map(|alert| alert.id.clone());
    let changed = match outcome.transition {
        Transition::Opened => "created",
        Transition::Reopened => "reopened",
        Transition::Resolved => "resolved",
        _ => "updated",
    };
    let what: Cow<'static, str> = match (&alert_id, outcome.transition) {
        (None, Transition::Dropped) => "event stored as dropped".into(),
        (None, _) => "event stored without an alert".into(),
        (Some(_), _) if outcome.timeline.is_empty() && actions.is_empty() => {
            ["event stored; alert ", changed].concat().into()
        }
        // Joined, not formatted: every event on an alert writes one.
        (Some(_), _) => {
            let (mut entries, mut decided) = (itoa::Buffer::new(), itoa::Buffer::new());
            [
                "event stored; alert ",
                changed,
                "; ",
                entries.format(outcome.timeline.len()),
                if outcome.timeline.len() == 1 {
                    " timeline entry; "
                } else {
                    " timeline entries; "
                },
                decided.format(actions.len()),
                if actions.len() == 1 {
                    " action decided"
                } else {
                    " actions decided"
                },
            ]
            .concat()
            .into()
        }
    };
    trace.push(TraceEntry::new(Stage::Record, "stored", what));
    Correlated {
        record: EventRecord {
            id: parts.event_id,
            event: parts.event,
            received: parts.received,
            category: parts.category,
            fingerprint: parts.fingerprint,
            alert_id,
            dropped: parts.dropped,
            trace,
        },
        transition: outcome.transition,
        alert: outcome.alert.map(std::sync::Arc::new),
        timeline: outcome.timeline,
        actions,
        escalation: None,
        incident: None,
    }
}
