//! Stage 1, normalise: fill every default so later stages see a complete event.

use chrono::{DateTime, Utc};

use crate::event::{Event, EventInput, Severity};
use crate::trace::{Stage, TraceEntry};

/// Turns validated input into an event: `source` from the channel, `severity` info,
/// `occurred_at` the receive time, names trimmed. Records what it filled in.
pub(super) fn normalise(
    input: EventInput,
    channel: &str,
    received_at: DateTime<Utc>,
    trace: &mut Vec<TraceEntry>,
) -> Event {
    let mut defaulted: Vec<String> = Vec::new();
    let source = match input.source {
        Some(source) => trim_owned(source),
        None => {
            defaulted.push(format!("source = {channel:?} (the channel)"));
            channel.to_owned()
        }
    };
    let severity = input.severity.unwrap_or_else(|| {
        defaulted.push("severity = info".to_owned());
        Severity::Info
    });
    let occurred_at = input.occurred_at.unwrap_or_else(|| {
        defaulted.push("occurred_at = the receive time".to_owned());
        received_at
    });
    let reason = if defaulted.is_empty() {
        "every field was given".to_owned()
    } else {
        format!("defaulted {}", defaulted.join(", "))
    };
    trace.push(TraceEntry::new(Stage::Normalise, "accepted", reason));
    Event {
        source,
        resource: trim_owned(input.resource),
        check: trim_owned(input.check),
        severity,
        summary: input.summary,
        service: input.service.map(trim_owned),
        environment: input.environment.map(trim_owned),
        labels: input.labels,
        metrics: input.metrics,
        occurred_at,
        received_at,
        sent_fingerprint: input.fingerprint,
        details: input.details,
    }
}

/// Trims surrounding whitespace, reusing the allocation when there is none.
fn trim_owned(text: String) -> String {
    if text.len() == text.trim().len() {
        text
    } else {
        text.trim().to_owned()
    }
}
