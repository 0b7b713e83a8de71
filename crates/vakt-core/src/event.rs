//! The event model of CONTRACT.md: validated severity and category, the wire input and the accepted event.
//!
//! **Boundary:** `EventInput::from_json` is where data from outside enters the core. It checks
//! every field and reports every problem it finds, each naming the field, instead of stopping
//! at the first one.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest accepted `resource`, `check`, `service`, `environment` and `source`, in bytes.
pub const NAME_LEN_MAX: usize = 256;
/// Longest accepted `summary`, in bytes.
pub const SUMMARY_LEN_MAX: usize = 8192;
/// Most labels (and, separately, metrics) one event may carry.
pub const LABELS_MAX: usize = 64;
/// Longest label key, in bytes.
pub const LABEL_KEY_LEN_MAX: usize = 128;
/// Longest label value, in bytes.
pub const LABEL_VALUE_LEN_MAX: usize = 1024;
/// Largest `details` object, serialised, in bytes.
pub const DETAILS_BYTES_MAX: usize = 64 * 1024;
/// Longest sent fingerprint, in bytes.
pub const FINGERPRINT_LEN_MAX: usize = 128;
/// Longest `idempotency_key`, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 256;

/// How bad an observation is. `Ok` clears the alert with the same fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    // Declared from least to most severe so that `Ord` ranks them.
    Ok,
    Info,
    Warning,
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::Major,
        Severity::Minor,
        Severity::Warning,
        Severity::Info,
        Severity::Ok,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
            Severity::Info => "info",
            Severity::Ok => "ok",
        }
    }

    /// Parses a severity name, ignoring ASCII case.
    pub fn parse(text: &str) -> Result<Severity, String> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!(
                    "unknown severity {text:?}, expected one of critical, major, minor, warning, info, ok"
                )
            })
    }

    /// True for `ok`, the severity that clears an alert.
    pub fn is_clear(self) -> bool {
        self == Severity::Ok
    }

    /// The ITIL category an event of this severity gets when no rule assigns one.
    pub fn default_category(self) -> Category {
        match self {
            Severity::Critical | Severity::Major => Category::Exception,
            Severity::Minor | Severity::Warning => Category::Warning,
            Severity::Info | Severity::Ok => Category::Informational,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ITIL's three kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Informational,
    Warning,
    Exception,
}

impl Category {
    pub const ALL: [Category; 3] = [
        Category::Informational,
        Category::Warning,
        Category::Exception,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Informational => "informational",
            Category::Warning => "warning",
            Category::Exception => "exception",
        }
    }

    pub fn parse(text: &str) -> Result<Category, String> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!(
                    "unknown category {text:?}, expected one of informational, warning, exception"
                )
            })
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field of one submitted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Position of the event in the submitted batch (0 for a single object).
    pub index: usize,
    /// The field, dotted for nested ones (`labels.mount`); empty when the whole item is wrong.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(index: usize, field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            index,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "item {}: {}", self.index, self.message)
        } else {
            write!(f, "item {}: {}: {}", self.index, self.field, self.message)
        }
    }
}

/// An event as submitted, after validation, before the pipeline.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventInput {
    pub source: Option<String>,
    pub resource: String,
    pub check: String,
    pub severity: Option<Severity>,
    pub summary: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub fingerprint: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Map<String, Value>,
    /// A key the sender chooses for this event: an event whose key is already stored is
    /// not stored again, and the answer names the stored event's id (retries are safe).
    pub idempotency_key: Option<String>,
    /// Labels the channel declares part of the event's identity (SNMP: the interface),
    /// added to whatever fingerprint fields apply unless the sender chose a fingerprint.
    /// Not part of the JSON event.
    #[serde(skip)]
    pub identity_labels: Vec<String>,
    /// Who sent it, as the server authenticated the request (`db-agent (token web1)`, a
    /// client certificate's name); recorded in the normalise stage's trace. Set by the
    /// server, never read from the JSON event.
    #[serde(skip)]
    pub sender: Option<String>,
    /// Set by channels whose alerts end by themselves (Alertmanager's `endsAt`): the alert
    /// resolves at this time unless a later event moves it. Not part of the JSON event.
    #[serde(skip)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Set on the `ok` event the expiry task sends: it resolves the alert only if the alert
    /// is still expired when the event is processed. Not part of the JSON event.
    #[serde(skip)]
    pub expiry: bool,
}

/// What an event was as it arrived, where the pipeline's rules changed it: kept with the
/// stored event so that a replay runs another configuration on the event as it came.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Received {
    /// The severity before a rule set another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The labels rules set, each with the value it had before (`None`: it had none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Option<String>>,
    /// Labels the channel made part of the identity (`EventInput::identity_labels`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity: Vec<String>,
}

impl Event {
    /// The labels matchers select events by (`vakt replay --filter`): the event's labels,
    /// plus its fields under their own names where no label has that name, as
    /// `Alert::match_labels` does for alerts.
    pub fn match_labels(&self) -> BTreeMap<String, String> {
        crate::alert::match_labels(
            &self.labels,
            [
                ("alertname", Some(self.check.as_str())),
                ("instance", Some(&self.resource)),
                ("resource", Some(&self.resource)),
                ("check", Some(&self.check)),
                ("severity", Some(self.severity.as_str())),
                ("source", Some(&self.source)),
                ("service", self.service.as_deref()),
                ("environment", self.environment.as_deref()),
            ],
        )
    }
}

impl Received {
    pub fn is_empty(&self) -> bool {
        self.severity.is_none() && self.labels.is_empty() && self.identity.is_empty()
    }
}

impl EventInput {
    /// A stored event as it arrived (its `received` values put back), to run through a
    /// pipeline again: the source, severity and times the first run filled in are given.
    pub fn replayed(event: &Event, received: Option<&Received>) -> EventInput {
        let mut labels = event.labels.clone();
        let mut severity = event.severity;
        let mut identity = Vec::new();
        if let Some(received) = received {
            if let Some(before) = received.severity {
                severity = before;
            }
            for (key, before) in &received.labels {
                match before {
                    Some(value) => labels.insert(key.clone(), value.clone()),
                    None => labels.remove(key),
                };
            }
            identity.clone_from(&received.identity);
        }
        EventInput {
            source: Some(event.source.clone()),
            resource: event.resource.clone(),
            check: event.check.clone(),
            severity: Some(severity),
            summary: event.summary.clone(),
            service: event.service.clone(),
            environment: event.environment.clone(),
            labels,
            metrics: event.metrics.clone(),
            occurred_at: Some(event.occurred_at),
            fingerprint: event.sent_fingerprint.clone(),
            details: event.details.clone(),
            idempotency_key: event.idempotency_key.clone(),
            identity_labels: identity,
            sender: None,
            expires_at: event.expires_at,
            expiry: event.expiry,
        }
    }
}

const EVENT_FIELDS: &str = "source, resource, check, severity, summary, service, environment, labels, metrics, occurred_at, fingerprint, details, idempotency_key";

impl EventInput {
    /// Validates one JSON value as an event; `index` is its position in the batch, used in errors.
    pub fn from_json(index: usize, value: Value) -> Result<EventInput, Vec<FieldError>> {
        let Value::Object(object) = value else {
            return Err(vec![FieldError::new(
                index,
                "",
                format!("expected a JSON object, got {}", json_type(&value)),
            )]);
        };
        let mut v = Validator {
            index,
            errors: Vec::new(),
        };
        let mut input = EventInput::default();
        let mut seen_resource = false;
        let mut seen_check = false;
        let mut seen_summary = false;
        for (key, value) in object {
            match key.as_str() {
                "source" => input.source = v.name(&key, value, true),
                "resource" => {
                    seen_resource = true;
                    input.resource = v.name(&key, value, false).unwrap_or_default();
                }
                "check" => {
                    seen_check = true;
                    input.check = v.name(&key, value, false).unwrap_or_default();
                }
                "summary" => {
                    seen_summary = true;
                    input.summary = v.summary(value).unwrap_or_default();
                }
                "severity" => input.severity = v.severity(value),
                "service" => input.service = v.name(&key, value, true),
                "environment" => input.environment = v.name(&key, value, true),
                "labels" => input.labels = v.labels(value),
                "metrics" => input.metrics = v.metrics(value),
                "occurred_at" => input.occurred_at = v.timestamp(&key, value),
                "fingerprint" => input.fingerprint = v.fingerprint(value),
                "details" => input.details = v.details(value),
                "idempotency_key" => input.idempotency_key = v.idempotency_key(value),
                "category" => v.error(
                    "category",
                    "category is assigned by rules and cannot be sent; remove it",
                ),
                other => v.error(
                    other,
                    format!("unknown field, expected one of {EVENT_FIELDS}"),
                ),
            }
        }
        for (seen, field) in [
            (seen_resource, "resource"),
            (seen_check, "check"),
            (seen_summary, "summary"),
        ] {
            if !seen {
                v.error(field, "missing required field");
            }
        }
        if v.errors.is_empty() {
            Ok(input)
        } else {
            Err(v.errors)
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Collects field errors for one item.
struct Validator {
    index: usize,
    errors: Vec<FieldError>,
}

impl Validator {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .push(FieldError::new(self.index, field, message));
    }

    /// A string field; `None` for an accepted null (when `nullable`) or after an error.
    fn string(&mut self, field: &str, value: Value, nullable: bool) -> Option<String> {
        match value {
            Value::String(s) => Some(s),
            Value::Null if nullable => None,
            other => {
                let expected = if nullable {
                    "a string or null"
                } else {
                    "a string"
                };
                self.error(
                    field,
                    format!("expected {expected}, got {}", json_type(&other)),
                );
                None
            }
        }
    }

    fn text_within(&mut self, field: &str, text: String, max: usize) -> Option<String> {
        if text.trim().is_empty() {
            self.error(field, "must not be empty");
            return None;
        }
        if text.len() > max {
            self.error(
                field,
                format!("is {} bytes long, the limit is {max}", text.len()),
            );
            return None;
        }
        if let Some(position) = text.find(|c: char| c.is_control() && c != '\t') {
            self.error(
                field,
                format!("contains a control character at byte {position}"),
            );
            return None;
        }
        Some(text)
    }

    fn name(&mut self, field: &str, value: Value, nullable: bool) -> Option<String> {
        let text = self.string(field, value, nullable)?;
        self.text_within(field, text, NAME_LEN_MAX)
    }

    /// A printable key of at most `IDEMPOTENCY_KEY_LEN_MAX` bytes, or null.
    fn idempotency_key(&mut self, value: Value) -> Option<String> {
        let text = self.string("idempotency_key", value, true)?;
        self.text_within("idempotency_key", text, IDEMPOTENCY_KEY_LEN_MAX)
    }

    fn summary(&mut self, value: Value) -> Option<String> {
        let text = self.string("summary", value, false)?;
        if text.trim().is_empty() {
            self.error("summary", "must not be empty");
            return None;
        }
        if text.len() > SUMMARY_LEN_MAX {
            self.error(
                "summary",
                format!(
                    "is {} bytes long, the limit is {SUMMARY_LEN_MAX}",
                    text.len()
                ),
            );
            return None;
        }
        // Text that reaches terminals, mail headers and chat: no NUL, escape sequences or
        // line breaks (a summary is one line; put more in `details`).
        if let Some(position) = text.find(|c: char| c.is_control() && c != '\t') {
            self.error(
                "summary",
                format!(
                    "contains a control character at byte {position}; a summary is one line (put more in details)"
                ),
            );
            return None;
        }
        Some(text)
    }

    fn severity(&mut self, value: Value) -> Option<Severity> {
        let text = self.string("severity", value, true)?;
        match Severity::parse(&text) {
            Ok(severity) => Some(severity),
            Err(message) => {
                self.error("severity", message);
                None
            }
        }
    }

    fn object(&mut self, field: &str, value: Value) -> Option<Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                self.error(
                    field,
                    format!("expected an object or null, got {}", json_type(&other)),
                );
                None
            }
        }
    }

    fn labels(&mut self, value: Value) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        let Some(map) = self.object("labels", value) else {
            return labels;
        };
        if map.len() > LABELS_MAX {
            self.error(
                "labels",
                format!("has {} labels, the limit is {LABELS_MAX}", map.len()),
            );
            return labels;
        }
        for (key, value) in map {
            let field = format!("labels.{key}");
            if key.is_empty() || key.len() > LABEL_KEY_LEN_MAX || key.chars().any(char::is_control)
            {
                self.error(
                    &field,
                    format!(
                        "label names must be 1 to {LABEL_KEY_LEN_MAX} bytes without control characters"
                    ),
                );
                continue;
            }
            match value {
                Value::String(text) if text.len() > LABEL_VALUE_LEN_MAX => self.error(
                    &field,
                    format!(
                        "is {} bytes long, the limit is {LABEL_VALUE_LEN_MAX}",
                        text.len()
                    ),
                ),
                Value::String(text) => match text.find(|c: char| c.is_control() && c != '\t') {
                    Some(position) => self.error(
                        &field,
                        format!("contains a control character at byte {position}"),
                    ),
                    None => {
                        labels.insert(key, text);
                    }
                },
                other => self.error(
                    &field,
                    format!("label values must be strings, got {}", json_type(&other)),
                ),
            }
        }
        labels
    }

    fn metrics(&mut self, value: Value) -> BTreeMap<String, f64> {
        let mut metrics = BTreeMap::new();
        let Some(map) = self.object("metrics", value) else {
            return metrics;
        };
        if map.len() > LABELS_MAX {
            self.error(
                "metrics",
                format!("has {} metrics, the limit is {LABELS_MAX}", map.len()),
            );
            return metrics;
        }
        for (key, value) in map {
            let field = format!("metrics.{key}");
            if key.is_empty() || key.len() > LABEL_KEY_LEN_MAX {
                self.error(
                    &field,
                    format!("metric names must be 1 to {LABEL_KEY_LEN_MAX} bytes"),
                );
                continue;
            }
            match value.as_f64() {
                Some(number) if number.is_finite() => {
                    metrics.insert(key, number);
                }
                _ => self.error(
                    &field,
                    format!(
                        "metric values must be finite numbers, got {}",
                        json_type(&value)
                    ),
                ),
            }
        }
        metrics
    }

    fn timestamp(&mut self, field: &str, value: Value) -> Option<DateTime<Utc>> {
        let text = self.string(field, value, true)?;
        match DateTime::parse_from_rfc3339(&text) {
            Ok(time) if time.timestamp() < 0 => {
                self.error(
                    field,
                    format!("{text:?} is before 1970-01-01T00:00:00Z; send the time the event occurred, or leave it out for the receive time"),
                );
                None
            }
            Ok(time) => Some(time.with_timezone(&Utc)),
            Err(error) => {
                self.error(
                    field,
                    format!("not an RFC 3339 timestamp ({error}), e.g. 2026-11-24T01:00:00Z"),
                );
                None
            }
        }
    }

    fn fingerprint(&mut self, value: Value) -> Option<String> {
        let text = self.string("fingerprint", value, true)?;
        self.text_within("fingerprint", text, FINGERPRINT_LEN_MAX)
    }

    fn details(&mut self, value: Value) -> Map<String, Value> {
        let Some(map) = self.object("details", value) else {
            return Map::new();
        };
        let size = serde_json::to_vec(&map)
            .map(|bytes| bytes.len())
            .unwrap_or(usize::MAX);
        if size > DETAILS_BYTES_MAX {
            self.error(
                "details",
                format!("is {size} bytes serialised, the limit is {DETAILS_BYTES_MAX}"),
            );
            return Map::new();
        }
        map
    }
}

/// An accepted event after normalisation: every default filled in. Immutable from here on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub source: String,
    pub resource: String,
    pub check: String,
    pub severity: Severity,
    pub summary: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// The fingerprint the sender chose, if any; it wins over computed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_fingerprint: Option<String>,
    pub details: Map<String, Value>,
    /// When the alert resolves by itself unless refreshed (see `EventInput::expires_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The expiry task's `ok` (see `EventInput::expiry`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expiry: bool,
    /// The sender's key for this event (see `EventInput::idempotency_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Labels the channel made part of the identity (see `EventInput::identity_labels`).
    #[serde(skip)]
    pub identity_labels: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(value: Value) -> Vec<(String, String)> {
        match EventInput::from_json(0, value) {
            Ok(input) => panic!("expected errors, got {input:?}"),
            Err(errors) => errors.into_iter().map(|e| (e.field, e.message)).collect(),
        }
    }

    #[test]
    fn a_summary_with_control_characters_is_refused_with_its_byte() {
        for (summary, byte) in [
            ("disk\u{0}full", 4),
            ("a\u{1b}[31mred", 1),
            ("two\r\nlines", 3),
        ] {
            let found = errors(json!({"resource": "r", "check": "c", "summary": summary}));
            assert_eq!(found.len(), 1, "{summary:?}: {found:?}");
            assert_eq!(found[0].0, "summary");
            assert!(found[0].1.contains(&format!("at byte {byte}")), "{found:?}");
        }
        assert!(
            EventInput::from_json(
                0,
                json!({"resource": "r", "check": "c", "summary": "tab\tok"})
            )
            .is_ok()
        );
    }

    #[test]
    fn a_time_before_1970_is_refused_naming_the_field() {
        for time in ["0000-01-01T00:00:00Z", "1969-12-31T23:59:59Z"] {
            let found =
                errors(json!({"resource": "r", "check": "c", "summary": "s", "occurred_at": time}));
            assert_eq!(found.len(), 1, "{time}: {found:?}");
            assert_eq!(found[0].0, "occurred_at");
            assert!(found[0].1.contains("before 1970"), "{found:?}");
        }
    }

    #[test]
    fn accepts_the_contract_example() {
        let input = EventInput::from_json(
            0,
            json!({
                "source": "nagios", "resource": "db01", "check": "disk_usage",
                "severity": "warning", "summary": "/var is 91% full", "service": "billing",
                "environment": "production", "labels": {"mount": "/var"},
                "metrics": {"used_pct": 91.2}, "occurred_at": "2026-11-24T01:00:00Z",
                "fingerprint": null, "details": {}
            }),
        )
        .expect("valid event");
        assert_eq!(input.severity, Some(Severity::Warning));
        assert_eq!(input.labels["mount"], "/var");
        assert_eq!(input.metrics["used_pct"], 91.2);
        assert_eq!(input.fingerprint, None);
    }

    #[test]
    fn reports_every_bad_field_by_name() {
        let found = errors(json!({
            "resource": 5, "severity": "crit", "labels": {"a": 1},
            "metrics": {"x": "y"}, "occurred_at": "yesterday", "colour": "red",
            "category": "exception"
        }));
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        for expected in [
            "resource",
            "severity",
            "labels.a",
            "metrics.x",
            "occurred_at",
            "colour",
            "category",
            "check",
            "summary",
        ] {
            assert!(
                fields.contains(&expected),
                "{expected} missing from {found:?}"
            );
        }
        let severity = &found
            .iter()
            .find(|(f, _)| f == "severity")
            .expect("severity")
            .1;
        assert!(severity.contains("\"crit\""), "{severity}");
    }

    #[test]
    fn rejects_non_objects_and_empty_strings() {
        assert_eq!(
            errors(json!([1]))[0].1,
            "expected a JSON object, got an array"
        );
        let found = errors(json!({"resource": " ", "check": "c", "summary": ""}));
        assert_eq!(
            found,
            vec![
                ("resource".into(), "must not be empty".into()),
                ("summary".into(), "must not be empty".into()),
            ]
        );
    }

    /// Any JSON value: valid events survive a round trip unchanged, anything else is a
    /// list of field errors; nothing panics.
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            any::<i64>().prop_map(Value::from),
            "[a-z_.]{0,12}".prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("resource".to_owned()),
                        Just("check".to_owned()),
                        Just("summary".to_owned()),
                        Just("severity".to_owned()),
                        Just("labels".to_owned()),
                        Just("metrics".to_owned()),
                        Just("occurred_at".to_owned()),
                        Just("details".to_owned()),
                        Just("service".to_owned()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_json_is_an_event_or_field_errors(value in json_value()) {
            match EventInput::from_json(3, value) {
                Ok(input) => {
                    let again = EventInput::from_json(3, serde_json::to_value(&input).expect("serialises"));
                    proptest::prop_assert_eq!(again, Ok(input));
                }
                Err(errors) => {
                    proptest::prop_assert!(!errors.is_empty());
                    proptest::prop_assert!(errors.iter().all(|e| e.index == 3 && !e.message.is_empty()));
                }
            }
        }
    }

    #[test]
    fn severity_order_and_default_category() {
        assert!(Severity::Critical > Severity::Major && Severity::Info > Severity::Ok);
        assert_eq!(Severity::Minor.default_category(), Category::Warning);
        assert_eq!(Severity::parse("CRITICAL"), Ok(Severity::Critical));
    }
}
