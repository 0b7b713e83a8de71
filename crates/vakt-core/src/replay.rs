//! Running a sequence of events through a pipeline with alert state in memory: what rule
//! test suites (`suite`) and replays of stored events use instead of a store.
//!
//! Pure like the rest of the crate: receive times and ids come from the caller, no silence
//! is active, and nothing leaves the run.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::pipeline::{Correlated, Pipeline, Prepared};
use crate::silence::ActiveSilences;
use crate::{Alert, AlertStatus, EventInput};

/// One pipeline's view of a sequence of events: the alert each fingerprint last had.
pub struct Run<'a> {
    pipeline: &'a Pipeline,
    silences: ActiveSilences,
    alerts: HashMap<String, Alert>,
    /// Ids made so far (alerts, timeline entries, actions): `{prefix}-{n}`.
    ids: u64,
    prefix: String,
    /// How many events each rule matched.
    rule_hits: HashMap<std::sync::Arc<str>, u64>,
}

impl<'a> Run<'a> {
    /// A run of `pipeline` with no alert yet; ids it makes start with `prefix`.
    pub fn new(pipeline: &'a Pipeline, prefix: &str) -> Run<'a> {
        Run {
            pipeline,
            silences: ActiveSilences::default(),
            alerts: HashMap::new(),
            ids: 0,
            prefix: prefix.to_owned(),
            rule_hits: HashMap::new(),
        }
    }

    pub fn pipeline(&self) -> &'a Pipeline {
        self.pipeline
    }

    /// The stateless stages for an event received on `channel` at `received_at`.
    pub fn prepare(
        &self,
        input: EventInput,
        channel: &str,
        received_at: DateTime<Utc>,
    ) -> Prepared {
        self.pipeline.prepare(input, channel, received_at)
    }

    /// The stateful stages against the alert this run has for the event's fingerprint (the
    /// correlate stage applies the reopen window to it), keeping the alert it leaves.
    pub fn correlate(&mut self, prepared: Prepared, event_id: String) -> Correlated {
        let key = prepared.fingerprint.as_str().to_owned();
        let outcome = self.correlate_only(prepared, event_id, &key);
        if let Some(alert) = &outcome.alert {
            self.alerts.insert(key, Alert::clone(alert));
        }
        outcome
    }

    /// `correlate` for a caller that does not need the alert back: it moves into the run's
    /// state instead of being copied there (`outcome.alert` is `None`), which a replay of
    /// millions of events notices.
    pub fn correlate_into(&mut self, prepared: Prepared, event_id: String) -> Correlated {
        let key = prepared.fingerprint.as_str().to_owned();
        let mut outcome = self.correlate_only(prepared, event_id, &key);
        if let Some(alert) = outcome.alert.take() {
            // The outcome held the only reference: no copy.
            self.alerts
                .insert(key, std::sync::Arc::unwrap_or_clone(alert));
        }
        outcome
    }

    fn correlate_only(&mut self, prepared: Prepared, event_id: String, key: &str) -> Correlated {
        for rule in &prepared.matched_rules {
            match self.rule_hits.get_mut(rule) {
                Some(hits) => *hits += 1,
                None => {
                    self.rule_hits.insert(std::sync::Arc::clone(rule), 1);
                }
            }
        }
        let current = self.alerts.get(key);
        let Run {
            pipeline,
            silences,
            ids,
            prefix,
            ..
        } = self;
        let mut new_id = || {
            *ids += 1;
            format!("{prefix}-{ids:08}")
        };
        pipeline.correlate(prepared, event_id, current, silences, &mut new_id)
    }

    /// How many events each rule matched so far (rules that matched none are absent).
    pub fn rule_hits(&self) -> impl Iterator<Item = (&str, u64)> {
        self.rule_hits.iter().map(|(rule, hits)| (&**rule, *hits))
    }

    /// The alerts this run holds: every fingerprint's latest.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// Forgets alerts resolved before `now` minus the reopen window: they take no event any
    /// more, so a long replay keeps only what can still change.
    pub fn forget_settled(&mut self, now: DateTime<Utc>) -> usize {
        let before = now - self.pipeline.reopen_window();
        let was = self.alerts.len();
        self.alerts.retain(|_, alert| {
            alert.status != AlertStatus::Resolved || alert.resolved_at.is_none_or(|at| at >= before)
        });
        was - self.alerts.len()
    }

    /// How many alerts the run holds.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }
}

/// One way an event's outcome differs between two runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `transition`, `dropped`, `category`, `severity`, `fingerprint`, `actions`,
    /// `suppressed`, `escalation`, `incident`.
    pub what: &'static str,
    pub base: String,
    pub new: String,
}

/// What differs between the same event's outcomes in two runs (empty: nothing). Compares
/// in place and allocates only for what differs: a replay calls it for every event.
pub fn compare(base: &Correlated, new: &Correlated) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut check = |what: &'static str, base: &str, new: &str| {
        if base != new {
            changes.push(Change {
                what,
                base: base.to_owned(),
                new: new.to_owned(),
            });
        }
    };
    check(
        "transition",
        base.transition.as_str(),
        new.transition.as_str(),
    );
    check(
        "dropped",
        bool_str(base.record.dropped),
        bool_str(new.record.dropped),
    );
    check(
        "category",
        base.record.category.as_str(),
        new.record.category.as_str(),
    );
    check(
        "severity",
        base.record.event.severity.as_str(),
        new.record.event.severity.as_str(),
    );
    check(
        "fingerprint",
        base.record.fingerprint.as_str(),
        new.record.fingerprint.as_str(),
    );
    for (what, suppressed) in [("actions", false), ("suppressed", true)] {
        let (b, n) = (
            action_names(base, suppressed),
            action_names(new, suppressed),
        );
        if b != n {
            check(what, &b.join(", "), &n.join(", "));
        }
    }
    check("escalation", policy(base), policy(new));
    check(
        "incident",
        bool_str(base.incident.is_some()),
        bool_str(new.incident.is_some()),
    );
    changes
}

/// The escalation policy an outcome starts, `""` for none.
fn policy(outcome: &Correlated) -> &str {
    outcome
        .escalation
        .as_ref()
        .map_or("", |start| start.policy.as_str())
}

fn bool_str(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

/// What differs between how an event was stored and a run's outcome for it, in what the
/// event's record keeps: dropped, category, severity, fingerprint.
pub fn compare_record(stored: &crate::pipeline::EventRecord, new: &Correlated) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut check = |what: &'static str, base: String, new: String| {
        if base != new {
            changes.push(Change { what, base, new });
        }
    };
    check(
        "dropped",
        stored.dropped.to_string(),
        new.record.dropped.to_string(),
    );
    check(
        "category",
        stored.category.as_str().to_owned(),
        new.record.category.as_str().to_owned(),
    );
    check(
        "severity",
        stored.event.severity.as_str().to_owned(),
        new.record.event.severity.as_str().to_owned(),
    );
    check(
        "fingerprint",
        stored.fingerprint.as_str().to_owned(),
        new.record.fingerprint.as_str().to_owned(),
    );
    changes
}

/// The actions an outcome decided (`suppressed`: those held back), sorted.
fn action_names(outcome: &Correlated, suppressed: bool) -> Vec<&str> {
    let mut names: Vec<&str> = outcome
        .actions
        .iter()
        .filter(|a| a.suppressed_by.is_some() == suppressed)
        .map(|a| &*a.action)
        .collect();
    names.sort_unstable();
    names
}

/// What one run did over a replay, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub events: u64,
    pub dropped: u64,
    /// Alerts opened (new alerts), and reopened.
    pub opened: u64,
    pub reopened: u64,
    pub resolved: u64,
    /// Problem events that updated an alert (deduplicated into it).
    pub deduplicated: u64,
    /// Actions decided to run, per action.
    pub actions: std::collections::BTreeMap<String, u64>,
    /// Actions decided but held back (maintenance window, flapping).
    pub suppressed: u64,
    /// Escalations started (pages follow from them).
    pub escalations: u64,
    /// Incidents opened or joined.
    pub incidents: u64,
}

impl Tally {
    pub fn add(&mut self, outcome: &Correlated) {
        use crate::pipeline::Transition;
        self.events += 1;
        match outcome.transition {
            Transition::Dropped => self.dropped += 1,
            Transition::Opened => self.opened += 1,
            Transition::Reopened => self.reopened += 1,
            Transition::Resolved => self.resolved += 1,
            Transition::Updated { .. } => self.deduplicated += 1,
            Transition::NothingToClear | Transition::Duplicate => {}
        }
        for action in &outcome.actions {
            if action.suppressed_by.is_some() {
                self.suppressed += 1;
            } else {
                *self.actions.entry(action.action.to_string()).or_default() += 1;
            }
        }
        self.escalations += u64::from(outcome.escalation.is_some());
        self.incidents += u64::from(outcome.incident.is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PipelineConfig;
    use crate::pipeline::Transition;

    fn input(severity: &str) -> EventInput {
        EventInput::from_json(
            0,
            serde_json::json!({"resource": "db01", "check": "disk", "summary": "s", "severity": severity}),
        )
        .expect("valid")
    }

    #[test]
    fn a_run_remembers_alerts_between_events_and_forgets_settled_ones() {
        let pipeline = Pipeline::build(
            &PipelineConfig::from_toml("[alerts]\nreopen_window_secs = 60\n").expect("parses"),
        )
        .expect("compiles");
        let mut run = Run::new(&pipeline, "r");
        let t0 = DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let step = |run: &mut Run, severity: &str, secs: i64, id: &str| {
            let prepared = run.prepare(
                input(severity),
                "test",
                t0 + chrono::Duration::seconds(secs),
            );
            run.correlate(prepared, id.to_owned())
        };
        assert_eq!(
            step(&mut run, "major", 0, "e1").transition,
            Transition::Opened
        );
        assert!(matches!(
            step(&mut run, "major", 1, "e2").transition,
            Transition::Updated { .. }
        ));
        assert_eq!(
            step(&mut run, "ok", 2, "e3").transition,
            Transition::Resolved
        );
        assert_eq!(
            step(&mut run, "major", 30, "e4").transition,
            Transition::Reopened
        );
        assert_eq!(
            step(&mut run, "ok", 40, "e5").transition,
            Transition::Resolved
        );
        assert_eq!(run.forget_settled(t0 + chrono::Duration::seconds(60)), 0);
        assert_eq!(run.forget_settled(t0 + chrono::Duration::seconds(101)), 1);
        assert!(run.is_empty());
        assert_eq!(
            step(&mut run, "major", 200, "e6").transition,
            Transition::Opened
        );
    }
}
