//! The ITIL handling pipeline: its stages assembled, in process order, in `prepare` and `correlate`.
//!
//! normalise -> filter -> categorise -> correlate -> decide -> record.
//!
//! The first three stages need only the event and the configuration, so `prepare` runs them
//! wherever the event arrives (in parallel across connections). The last three need the
//! current state of the event's alert, so `correlate` runs them inside the storage
//! transaction that holds that state. Both are pure: the same inputs give the same outputs,
//! which is what lets `vakt rules test` and replay run exactly the code the server runs.

mod categorise;
mod correlate;
mod decide;
mod filter;
mod normalise;
mod record;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::alert::{Alert, TimelineEntry, TimelineKind};
use crate::config::{ActionConfig, ConfigError, PipelineConfig};
use crate::event::{Category, Event, EventInput};
use crate::fingerprint::{Fingerprint, FingerprintField};
use crate::noise::{MaintenanceWindow, Noise};
use crate::rules::{Matches, RuleSet, parse_fingerprint_fields};
use crate::silence::ActiveSilences;
use crate::trace::TraceEntry;

pub use correlate::Transition;
pub use decide::{DecidedAction, Purpose, RequestedAction};
pub use record::EventRecord;

/// A compiled configuration: everything the stages consult, built once per (re)load.
pub struct Pipeline {
    rules: RuleSet,
    fingerprints: correlate::Origins,
    reopen_window: chrono::Duration,
    actions: BTreeMap<String, ActionConfig>,
    flap: decide::Flap,
    windows: Vec<MaintenanceWindow>,
    policies: BTreeMap<String, crate::escalation::Policy>,
    incidents: crate::incident::IncidentsConfig,
}

/// An event after the stateless stages, waiting for its alert's state.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The event as normalised and then changed by categorisation (severity, labels).
    pub event: Event,
    /// What categorisation changed, as it arrived (for replays of the stored event).
    pub received: Option<crate::event::Received>,
    pub category: Category,
    pub fingerprint: Fingerprint,
    /// Why the event was dropped (the filter's reason); `None` when kept.
    pub dropped: Option<String>,
    /// Actions the matching rules name, in order, without repeats, with the rules naming them.
    pub requested_actions: Vec<RequestedAction>,
    /// Names of the rules that matched.
    pub matched_rules: Vec<Arc<str>>,
    /// The escalation policy the first matching rule that names one attaches, and that rule.
    pub escalate: Option<(Arc<str>, Arc<str>)>,
    /// The first matching rule that opens an incident, and the impact it gives.
    pub incident: Option<(Arc<str>, Option<u8>)>,
    /// Where the fingerprint came from, for the correlate stage's reason.
    pub fingerprint_origin: Arc<str>,
    /// Rule conditions that failed to evaluate for this event (counted as not matching).
    pub rule_errors: usize,
    pub trace: Vec<TraceEntry>,
}

/// One event's complete outcome: the stored event, its alert's new state and the timeline.
#[derive(Debug, Clone)]
pub struct Correlated {
    pub record: EventRecord,
    pub transition: Transition,
    /// The alert as it is after this event, when the event touched one. Shared: the
    /// embedded store's cache keeps the same alert rather than a copy of it.
    pub alert: Option<std::sync::Arc<Alert>>,
    pub timeline: Vec<TimelineEntry>,
    pub actions: Vec<DecidedAction>,
    /// An escalation to start: the alert opened or reopened under a rule that attaches one.
    pub escalation: Option<crate::escalation::Start>,
    /// An incident to open or join for the alert.
    pub incident: Option<crate::incident::Ask>,
}

impl Correlated {
    /// A repeat delivery of an event already stored as `stored_id` (same idempotency key):
    /// the answer names the stored event, and nothing is stored, processed or decided.
    pub fn duplicate(prepared: Prepared, stored_id: String) -> Correlated {
        let key = prepared
            .event
            .idempotency_key
            .as_deref()
            .unwrap_or_default();
        let trace = vec![TraceEntry::new(
            crate::trace::Stage::Record,
            "duplicate",
            format!(
                "idempotency key {key:?} is already stored as event {stored_id}: not stored again"
            ),
        )];
        Correlated {
            record: EventRecord {
                id: stored_id,
                event: prepared.event,
                received: prepared.received,
                category: prepared.category,
                fingerprint: prepared.fingerprint,
                alert_id: None,
                dropped: prepared.dropped.is_some(),
                trace,
            },
            transition: Transition::Duplicate,
            alert: None,
            timeline: Vec::new(),
            actions: Vec::new(),
            escalation: None,
            incident: None,
        }
    }
}

/// What an operator's request did: the alert after it, its timeline entries, and the
/// resolution notices it decided.
#[derive(Debug, Clone)]
pub struct Operated {
    pub alert: Alert,
    pub timeline: Vec<TimelineEntry>,
    pub actions: Vec<DecidedAction>,
}

impl Pipeline {
    /// Compiles a configuration, reporting every problem with its location.
    pub fn build(config: &PipelineConfig) -> Result<Pipeline, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let default_fingerprint = match parse_fingerprint_fields(&config.alerts.fingerprint) {
            Ok(fields) => fields,
            Err(error) => {
                errors.push(ConfigError {
                    message: format!("alerts.{}", error.message),
                    ..error
                });
                FingerprintField::defaults().into()
            }
        };
        let rules = match RuleSet::build(&config.rules, &config.actions) {
            Ok(rules) => Some(rules),
            Err(found) => {
                errors.extend(found);
                None
            }
        };
        let reopen_window_secs =
            i64::try_from(config.alerts.reopen_window_secs).unwrap_or(i64::MAX);
        let alerts = &config.alerts;
        if alerts.flap_threshold > 0 && alerts.reopen_window_secs < alerts.flap_window_secs {
            errors.push(ConfigError {
                span: None,
                message: format!(
                    "alerts.flap_threshold is set, so alerts.reopen_window_secs ({}) must be at least alerts.flap_window_secs ({}): otherwise every reopening is a new alert and none is ever seen flapping",
                    alerts.reopen_window_secs, alerts.flap_window_secs
                ),
            });
        }
        let mut windows = Vec::new();
        for window in &config.maintenance {
            match MaintenanceWindow::build(window) {
                Ok(w) if windows.iter().any(|k: &MaintenanceWindow| k.name == w.name) => {
                    errors.push(ConfigError::at(
                        window.name.span(),
                        format!("maintenance window {:?} is defined twice", w.name),
                    ));
                }
                Ok(w) => windows.push(w),
                Err(error) => errors.push(error),
            }
        }
        let policies = crate::escalation::compile(&config.escalation_policies)
            .map_err(|found| errors.extend(found))
            .unwrap_or_default();
        for rule in &config.rules {
            if let Some(policy) = &rule.get_ref().escalate
                && !policies.contains_key(policy.get_ref().trim())
            {
                let known: Vec<&str> = policies.keys().map(String::as_str).collect();
                errors.push(ConfigError::at(
                    policy.span(),
                    format!(
                        "rule {:?}: unknown escalation policy {:?}; defined policies: {}",
                        rule.get_ref().name.get_ref(),
                        policy.get_ref(),
                        if known.is_empty() {
                            "none (add an [[escalation_policies]] table)".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        errors.extend(config.incidents.validate());
        match rules {
            Some(rules) if errors.is_empty() => Ok(Pipeline {
                policies,
                incidents: config.incidents.clone(),
                rules,
                fingerprints: correlate::Origins::new(default_fingerprint),
                reopen_window: chrono::Duration::try_seconds(reopen_window_secs)
                    .unwrap_or(chrono::Duration::MAX),
                actions: config
                    .actions
                    .iter()
                    .map(|(name, action)| (name.clone(), action.get_ref().clone()))
                    .collect(),
                flap: decide::Flap {
                    threshold: alerts.flap_threshold,
                    window: chrono::Duration::try_seconds(
                        i64::try_from(alerts.flap_window_secs).unwrap_or(i64::MAX),
                    )
                    .unwrap_or(chrono::Duration::MAX),
                },
                windows,
            }),
            _ => Err(errors),
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The configured actions, by name.
    pub fn actions(&self) -> &BTreeMap<String, ActionConfig> {
        &self.actions
    }

    /// The compiled escalation policies, by name.
    pub fn escalation_policies(&self) -> &BTreeMap<String, crate::escalation::Policy> {
        &self.policies
    }

    /// How incidents are opened, correlated and prioritised.
    pub fn incidents(&self) -> &crate::incident::IncidentsConfig {
        &self.incidents
    }

    /// The compiled maintenance windows.
    pub fn maintenance_windows(&self) -> &[MaintenanceWindow] {
        &self.windows
    }

    /// How long after resolution a problem event reopens an alert instead of opening a new one.
    pub fn reopen_window(&self) -> chrono::Duration {
        self.reopen_window
    }

    /// An operator's request on an alert (ack, resolve, ...): the transition, and for a
    /// resolve the resolution notices of the notifications that ran, as decide would.
    pub fn operate(
        &self,
        alert: &Alert,
        request: &crate::alert::OperatorRequest,
        now: DateTime<Utc>,
        silences: &ActiveSilences,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<Operated, crate::alert::OperatorError> {
        if request.action == crate::alert::OperatorAction::Settle {
            let noise = Noise {
                silences,
                windows: &self.windows,
            };
            let context = decide::Context {
                actions: &self.actions,
                flap: self.flap,
                noise: &noise,
                now,
            };
            return decide::settle_quiet(&context, alert, new_id).ok_or_else(|| {
                crate::alert::OperatorError::Conflict(
                    "the alert is not flapping, or it changed state within the flap window".into(),
                )
            });
        }
        let (mut next, entry) = crate::alert::apply_operator(alert, request, now, new_id())?;
        let mut timeline = vec![entry];
        let actions = if request.action == crate::alert::OperatorAction::Resolve {
            let noise = Noise {
                silences,
                windows: &self.windows,
            };
            decide::operator_resolved(
                &decide::Context {
                    actions: &self.actions,
                    flap: self.flap,
                    noise: &noise,
                    now,
                },
                &mut next,
                request.by.trim(),
                new_id,
                &mut timeline,
            )
        } else {
            Vec::new()
        };
        Ok(Operated {
            alert: next,
            timeline,
            actions,
        })
    }

    /// Whether flap detection is on (`alerts.flap_threshold` above 0): else no alert is ever
    /// flapping and nothing need look for one.
    pub fn detects_flapping(&self) -> bool {
        self.flap.threshold > 0
    }

    /// Whether a flapping alert has been quiet for a whole flap window at `now`, so that
    /// `operate` with `OperatorAction::Settle` would settle it.
    pub fn settles(&self, alert: &Alert, now: DateTime<Utc>) -> bool {
        decide::quiet_since(alert, self.flap, now)
    }

    /// The stateless stages: normalise, filter, categorise, and the fingerprint.
    ///
    /// `channel` names where the event came from (`http`, `syslog`, ...); it becomes the
    /// event's `source` when the sender gave none.
    pub fn prepare(
        &self,
        input: EventInput,
        channel: &str,
        received_at: DateTime<Utc>,
    ) -> Prepared {
        let mut trace = Vec::with_capacity(6);
        let event = normalise::normalise(input, channel, received_at, &mut trace);
        let matches: Matches = self.rules.evaluate(&event);
        let dropped = filter::filter(&self.rules, &matches, &mut trace);
        let categorised = categorise::categorise(&self.rules, &matches, event, &mut trace);
        let (fingerprint, fingerprint_origin) = correlate::fingerprint(
            &self.rules,
            &matches,
            &self.fingerprints,
            &categorised.event,
        );
        Prepared {
            event: categorised.event,
            received: categorised.received,
            category: categorised.category,
            fingerprint,
            dropped,
            requested_actions: decide::requested_actions(&self.rules, &matches),
            escalate: matches.matched.iter().find_map(|&i| {
                let rule = self.rules.rule(i);
                rule.escalate
                    .as_ref()
                    .map(|p| (Arc::clone(p), Arc::clone(&rule.name)))
            }),
            incident: matches.matched.iter().find_map(|&i| {
                let rule = self.rules.rule(i);
                rule.incident.then(|| (Arc::clone(&rule.name), rule.impact))
            }),
            matched_rules: matches
                .matched
                .iter()
                .map(|&i| Arc::clone(&self.rules.rule(i).name))
                .collect(),
            fingerprint_origin,
            rule_errors: matches.errors.len(),
            trace,
        }
    }

    /// The stateful stages: correlate with the alert's current state, decide, record.
    ///
    /// `current` is the alert this fingerprint last had that can still take events (open,
    /// acknowledged, or resolved within the reopen window); `new_id` makes ids for a new alert
    /// and for timeline entries; `silences` are the silences active now (decide suppresses
    /// the actions of alerts they cover, as it does for open maintenance windows).
    pub fn correlate(
        &self,
        prepared: Prepared,
        event_id: String,
        current: Option<&Alert>,
        silences: &ActiveSilences,
        new_id: &mut dyn FnMut() -> String,
    ) -> Correlated {
        let Prepared {
            event,
            received,
            category,
            fingerprint,
            dropped,
            requested_actions,
            escalate,
            incident,
            matched_rules: _,
            fingerprint_origin,
            rule_errors: _,
            mut trace,
        } = prepared;
        let mut outcome = correlate::correlate(
            &correlate::Input {
                event: &event,
                event_id: &event_id,
                category,
                fingerprint: &fingerprint,
                dropped: dropped.is_some(),
                reopen_window: self.reopen_window,
            },
            current,
            &fingerprint_origin,
            new_id,
            &mut trace,
        );
        let noise = Noise {
            silences,
            windows: &self.windows,
        };
        let actions = decide::decide(
            &decide::Context {
                actions: &self.actions,
                flap: self.flap,
                noise: &noise,
                now: event.received_at,
            },
            &requested_actions,
            &mut outcome,
            &event_id,
            new_id,
            &mut trace,
        );
        let now = event.received_at;
        let mut correlated = record::record(
            record::Parts {
                event_id,
                event,
                received,
                category,
                fingerprint,
                dropped: dropped.is_some(),
            },
            outcome,
            actions,
            trace,
        );
        self.escalate_and_open(&mut correlated, escalate, incident, &noise, now, new_id);
        correlated
    }

    /// Step 6 and 7's start: an alert that opened or reopened under a rule that attaches an
    /// escalation policy starts climbing it (unless a silence or maintenance window covers
    /// it, which the timeline says); one under a rule that opens incidents asks for one.
    fn escalate_and_open(
        &self,
        correlated: &mut Correlated,
        escalate: Option<(Arc<str>, Arc<str>)>,
        incident: Option<(Arc<str>, Option<u8>)>,
        noise: &Noise<'_>,
        now: DateTime<Utc>,
        new_id: &mut dyn FnMut() -> String,
    ) {
        if !matches!(
            correlated.transition,
            Transition::Opened | Transition::Reopened
        ) {
            return;
        }
        let Some(alert) = &correlated.alert else {
            return;
        };
        let entry = |message: String, kind: TimelineKind, id: String| TimelineEntry {
            id,
            alert_id: alert.id.clone(),
            at: now,
            kind,
            by: crate::alert::PIPELINE_ACTOR.to_owned(),
            message,
            event_id: Some(correlated.record.id.clone()),
        };
        if let Some((policy_name, rule)) = escalate
            && let Some(policy) = self.policies.get(&*policy_name)
        {
            match noise.suppression(alert, now) {
                Some(suppression) => correlated.timeline.push(entry(
                    format!(
                        "escalation policy {policy_name} (rule {rule}) not started: {}",
                        suppression.describe()
                    ),
                    TimelineKind::Escalation,
                    new_id(),
                )),
                None => {
                    let due_at = policy.first_due(now);
                    correlated.timeline.push(entry(
                        format!(
                            "escalation policy {policy_name} started by rule {rule}; step 1 due at {}",
                            due_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                        TimelineKind::Escalation,
                        new_id(),
                    ));
                    correlated.escalation = Some(crate::escalation::Start {
                        policy: policy_name.to_string(),
                        rule: rule.to_string(),
                        due_at,
                    });
                }
            }
        }
        if let Some((rule, impact)) = incident {
            correlated.incident = Some(crate::incident::Ask {
                alert_id: alert.id.clone(),
                by: format!("rule {rule}"),
                impact,
                urgency: None,
            });
        }
    }
}

#[cfg(test)]
mod tests;
