//! Fingerprints: the key that makes repeated events one alert, and the fields it is computed from.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Event;

/// The identity of an alert: events with equal fingerprints update the same alert.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// A fingerprint the sender chose, used as it is.
    pub fn sent(text: &str) -> Fingerprint {
        Fingerprint(text.to_owned())
    }

    /// Wraps a fingerprint read back from storage.
    pub fn from_stored(text: String) -> Fingerprint {
        Fingerprint(text)
    }

    /// Hashes the named fields of `event`: 128 bits of SHA-256, hex encoded.
    ///
    /// Each field contributes its name and value, so `resource=a, check=` and
    /// `resource=, check=a` differ, and a missing optional field differs from an empty one.
    pub fn compute(fields: &[FingerprintField], event: &Event) -> Fingerprint {
        let mut hasher = Sha256::new();
        for field in fields {
            hasher.update(field.name().as_bytes());
            match field.value(event) {
                Some(value) => {
                    hasher.update([1]);
                    hasher.update(value.as_bytes());
                }
                None => hasher.update([0]),
            }
            hasher.update([0xff]);
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = hasher.finalize();
        let mut text = String::with_capacity(32);
        for byte in &digest[..16] {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        Fingerprint(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A field an alert's identity can be computed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FingerprintField {
    Source,
    Resource,
    Check,
    Service,
    Environment,
    Summary,
    Label(String),
}

impl FingerprintField {
    /// The fields of the contract's default fingerprint.
    pub fn defaults() -> Vec<FingerprintField> {
        vec![
            FingerprintField::Environment,
            FingerprintField::Resource,
            FingerprintField::Check,
            FingerprintField::Service,
        ]
    }

    /// Parses `resource`, `labels.mount` and the like.
    pub fn parse(text: &str) -> Result<FingerprintField, String> {
        Ok(match text {
            "source" => FingerprintField::Source,
            "resource" => FingerprintField::Resource,
            "check" => FingerprintField::Check,
            "service" => FingerprintField::Service,
            "environment" => FingerprintField::Environment,
            "summary" => FingerprintField::Summary,
            "severity" => {
                return Err(
                    "severity cannot be part of a fingerprint: an `ok` event could never clear the alert"
                        .to_owned(),
                );
            }
            other => match other.strip_prefix("labels.") {
                Some(name) if !name.is_empty() => FingerprintField::Label(name.to_owned()),
                _ => {
                    return Err(format!(
                        "unknown fingerprint field {other:?}, expected source, resource, check, service, environment, summary or labels.NAME"
                    ));
                }
            },
        })
    }

    pub fn name(&self) -> std::borrow::Cow<'_, str> {
        match self {
            FingerprintField::Source => "source".into(),
            FingerprintField::Resource => "resource".into(),
            FingerprintField::Check => "check".into(),
            FingerprintField::Service => "service".into(),
            FingerprintField::Environment => "environment".into(),
            FingerprintField::Summary => "summary".into(),
            FingerprintField::Label(name) => format!("labels.{name}").into(),
        }
    }

    fn value<'e>(&self, event: &'e Event) -> Option<&'e str> {
        match self {
            FingerprintField::Source => Some(&event.source),
            FingerprintField::Resource => Some(&event.resource),
            FingerprintField::Check => Some(&event.check),
            FingerprintField::Service => event.service.as_deref(),
            FingerprintField::Environment => event.environment.as_deref(),
            FingerprintField::Summary => Some(&event.summary),
            FingerprintField::Label(name) => event.labels.get(name).map(String::as_str),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Severity;
    use chrono::Utc;

    fn event(resource: &str, check: &str, service: Option<&str>) -> Event {
        Event {
            source: "test".into(),
            resource: resource.into(),
            check: check.into(),
            severity: Severity::Warning,
            summary: "s".into(),
            service: service.map(Into::into),
            environment: None,
            labels: Default::default(),
            metrics: Default::default(),
            occurred_at: Utc::now(),
            received_at: Utc::now(),
            sent_fingerprint: None,
            details: Default::default(),
            expires_at: None,
            expiry: false,
            idempotency_key: None,
            identity_labels: Vec::new(),
        }
    }

    #[test]
    fn equal_fields_equal_fingerprints_and_fields_do_not_bleed() {
        let fields = FingerprintField::defaults();
        let a = Fingerprint::compute(&fields, &event("db01", "disk", None));
        assert_eq!(
            a,
            Fingerprint::compute(&fields, &event("db01", "disk", None))
        );
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(
            a,
            Fingerprint::compute(&fields, &event("db01", "disk", Some("")))
        );
        assert_ne!(
            Fingerprint::compute(&fields, &event("ab", "c", None)),
            Fingerprint::compute(&fields, &event("a", "bc", None))
        );
    }

    #[test]
    fn parses_field_names() {
        assert_eq!(
            FingerprintField::parse("labels.mount"),
            Ok(FingerprintField::Label("mount".into()))
        );
        assert!(FingerprintField::parse("severity").is_err());
        assert!(FingerprintField::parse("labels.").is_err());
    }
}
