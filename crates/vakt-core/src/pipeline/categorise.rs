//! Stage 3, categorise: assign the ITIL category, and the severity and labels rules set.

use std::borrow::Cow;
use std::sync::Arc;

use crate::event::{Category, Event, Received, Severity};
use crate::rules::{Matches, RuleSet};
use crate::trace::{Stage, TraceEntry};

pub(super) struct Categorised {
    pub event: Event,
    pub category: Category,
    /// What the rules changed, as it was before (`None`: nothing, and no identity labels).
    pub received: Option<Received>,
}

/// Applies the matching rules' effects in order (later rules override), then derives the
/// category from the final severity when no rule set one.
pub(super) fn categorise(
    rules: &RuleSet,
    matches: &Matches,
    mut event: Event,
    trace: &mut Vec<TraceEntry>,
) -> Categorised {
    let mut category: Option<(Category, &Arc<str>)> = None;
    let mut notes: Vec<String> = Vec::new();
    let mut deciding: Vec<Arc<str>> = Vec::new();
    let mut received = Received {
        identity: event.identity_labels.clone(),
        ..Received::default()
    };
    for rule in matches.matched.iter().map(|&i| rules.rule(i)) {
        let mut used = false;
        if let Some(set) = rule.category {
            category = Some((set, &rule.name));
            used = true;
        }
        if let Some(severity) = rule.severity
            && severity != event.severity
        {
            notes.push(format!(
                "severity {} -> {severity} by rule {:?}",
                event.severity, rule.name
            ));
            received.severity.get_or_insert(event.severity);
            event.severity = severity;
            used = true;
        }
        if !rule.labels.is_empty() {
            notes.push(format!(
                "labels {} set by rule {:?}",
                rule.labels.keys().cloned().collect::<Vec<_>>().join(", "),
                rule.name
            ));
            for (key, value) in &rule.labels {
                let before = event.labels.insert(key.clone(), value.clone());
                received.labels.entry(key.clone()).or_insert(before);
            }
            used = true;
        }
        if used {
            deciding.push(Arc::clone(&rule.name));
        }
    }
    let (category, reason): (Category, Cow<'static, str>) = match category {
        Some((category, rule)) => (category, format!("category set by rule {rule:?}").into()),
        None => (
            event.severity.default_category(),
            default_reason(event.severity).into(),
        ),
    };
    let reason = if notes.is_empty() {
        reason
    } else {
        format!("{reason}; {}", notes.join("; ")).into()
    };
    trace.push(TraceEntry::new(Stage::Categorise, category.as_str(), reason).with_rules(deciding));
    Categorised {
        event,
        category,
        received: (!received.is_empty()).then_some(received),
    }
}

fn default_reason(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => {
            "no rule set a category: exception, the default for severity critical"
        }
        Severity::Major => "no rule set a category: exception, the default for severity major",
        Severity::Minor => "no rule set a category: warning, the default for severity minor",
        Severity::Warning => "no rule set a category: warning, the default for severity warning",
        Severity::Info => "no rule set a category: informational, the default for severity info",
        Severity::Ok => "no rule set a category: informational, the default for severity ok",
    }
}
