//! Stage 2, filter: drop what the rules call noise. A dropped event is still stored, with this reason.

use std::sync::Arc;

use crate::rules::{Matches, RuleSet};
use crate::trace::{Stage, TraceEntry};

/// Returns the reason the event is dropped, or `None` to keep it; records evaluation errors too.
pub(super) fn filter(
    rules: &RuleSet,
    matches: &Matches,
    trace: &mut Vec<TraceEntry>,
) -> Option<String> {
    let errors = evaluation_errors(rules, matches);
    let dropper = matches
        .matched
        .iter()
        .map(|&i| rules.rule(i))
        .find(|rule| rule.drop);
    let (entry, dropped) = match dropper {
        Some(rule) => {
            let reason = format!("rule {:?} drops matching events{errors}", rule.name);
            (
                TraceEntry::new(Stage::Filter, "dropped", reason.clone())
                    .with_rules(vec![Arc::clone(&rule.name)]),
                Some(reason),
            )
        }
        None => {
            let reason = if errors.is_empty() {
                // Joined, not formatted: every kept event writes this one.
                let (mut evaluated, mut of, mut matched) = (
                    itoa::Buffer::new(),
                    itoa::Buffer::new(),
                    itoa::Buffer::new(),
                );
                [
                    "no matching rule drops it (",
                    evaluated.format(matches.evaluated),
                    " of ",
                    of.format(rules.rules().len()),
                    " rules evaluated, ",
                    matched.format(matches.matched.len()),
                    " matched)",
                ]
                .concat()
            } else {
                format!("no matching rule drops it{errors}")
            };
            (TraceEntry::new(Stage::Filter, "kept", reason), None)
        }
    };
    trace.push(entry);
    dropped
}

/// `; rule "x" failed to evaluate (...) and counted as not matching`, or empty.
fn evaluation_errors(rules: &RuleSet, matches: &Matches) -> String {
    matches
        .errors
        .iter()
        .map(|(i, error)| {
            format!(
                "; rule {:?} failed to evaluate ({error}) and counted as not matching",
                rules.rule(*i).name
            )
        })
        .collect()
}
