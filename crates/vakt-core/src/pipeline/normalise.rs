//! Stage 1, normalise: fill every default so later stages see a complete event.

use chrono::{DateTime, Utc};

use crate::event::{Event, EventInput, Severity};
use crate::trace::{Stage, TraceEntry};

/// How far ahead of the receive time an `occurred_at` may be (clocks differ a little).
const FUTURE_SKEW_SECS: i64 = 300;

/// Turns validated input into an event: `source` from the channel, `severity` info,
/// `occurred_at` the receive time, names trimmed. Records what it filled in.
pub(super) fn normalise(
    input: EventInput,
    channel: &str,
    received_at: DateTime<Utc>,
    trace: &mut Vec<TraceEntry>,
) -> Event {
    let defaulted_source = input.source.is_none();
    let source = input.source.map_or_else(|| channel.to_owned(), trim_owned);
    let defaulted_severity = input.severity.is_none();
    let severity = input.severity.unwrap_or(Severity::Info);
    let defaulted_time = input.occurred_at.is_none();
    // A time ahead of the receive time by more than clock skew cannot be when the event
    // occurred (year 9999 would sort first forever and never age out): the receive time
    // stands in for it, and the trace says so.
    let future = input
        .occurred_at
        .filter(|time| *time > received_at + chrono::Duration::seconds(FUTURE_SKEW_SECS));
    let occurred_at = match future {
        Some(_) => received_at,
        None => input.occurred_at.unwrap_or(received_at),
    };
    // Static texts: this runs for every event and allocating a sentence each time is not free.
    let reason = match (defaulted_source, defaulted_severity, defaulted_time) {
        (false, false, false) => "every field was given",
        (true, false, false) => "defaulted source to the channel name",
        (false, true, false) => "defaulted severity to info",
        (false, false, true) => "defaulted occurred_at to the receive time",
        (true, true, false) => "defaulted source to the channel name, severity to info",
        (true, false, true) => {
            "defaulted source to the channel name, occurred_at to the receive time"
        }
        (false, true, true) => "defaulted severity to info, occurred_at to the receive time",
        (true, true, true) => {
            "defaulted source to the channel name, severity to info, occurred_at to the receive time"
        }
    };
    let mut reason: std::borrow::Cow<'static, str> = match &input.sender {
        None => reason.into(),
        Some(sender) => format!("{reason}; sent by {sender}").into(),
    };
    // No value of this event's in the reason: traces are shared by content.
    if future.is_some() {
        reason = format!(
            "{reason}; occurred_at was more than {FUTURE_SKEW_SECS} s after the receive time, used the receive time"
        )
        .into();
    }
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
        expires_at: input.expires_at,
        expiry: input.expiry,
        idempotency_key: input.idempotency_key,
        identity_labels: input.identity_labels,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_says_who_sent_the_event_when_the_server_knows() {
        let input = EventInput {
            resource: "db01".into(),
            check: "disk".into(),
            summary: "s".into(),
            ..EventInput::default()
        };
        let mut trace = Vec::new();
        normalise(input.clone(), "http", Utc::now(), &mut trace);
        assert!(!trace[0].reason.contains("sent by"), "{:?}", trace[0]);
        let signed = EventInput {
            sender: Some("db-agent (token web1)".into()),
            ..input
        };
        let mut trace = Vec::new();
        normalise(signed, "http", Utc::now(), &mut trace);
        assert!(
            trace[0].reason.ends_with("; sent by db-agent (token web1)"),
            "{:?}",
            trace[0]
        );
        let received = Utc::now();
        let ahead = EventInput {
            occurred_at: Some(received + chrono::Duration::days(3_000_000)),
            ..EventInput::default()
        };
        let mut trace = Vec::new();
        let event = normalise(ahead, "http", received, &mut trace);
        assert_eq!(
            event.occurred_at, received,
            "a time in the future is not kept"
        );
        assert!(
            trace[0].reason.contains("after the receive time"),
            "{:?}",
            trace[0]
        );
        let skewed = received + chrono::Duration::seconds(FUTURE_SKEW_SECS - 1);
        let near = EventInput {
            occurred_at: Some(skewed),
            ..EventInput::default()
        };
        let event = normalise(near, "http", received, &mut Vec::new());
        assert_eq!(event.occurred_at, skewed, "clock skew is tolerated");
        let from_json: EventInput = serde_json::from_value(serde_json::json!({
            "resource": "r", "check": "c", "summary": "s", "sender": "forged"
        }))
        .unwrap_or_default();
        assert_eq!(from_json.sender, None, "a body cannot claim a sender");
    }
}
