//! Incidents (ITIL Incident Management): records that alerts open or join, with a priority
//! from impact and urgency, a status that moves by rules, and a timeline.
//!
//! The pure parts live here: the priority matrix, the allowed status changes, the correlation
//! key an alert joins an open incident by. The store keeps incidents; the server's API and
//! the ITSM sync change them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::config::ConfigError;
use crate::event::Severity;

/// `[incidents]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// What alerts must share to join one open incident: `service`, `environment`,
    /// `resource`, `check` or `labels.NAME`. Empty: every alert opens its own.
    pub correlate_by: String,
    /// An alert joins an open incident only if that incident took an alert within this many
    /// seconds.
    pub correlation_window_secs: u64,
    /// Priority by impact (rows, 1 = high .. 3 = low) and urgency (columns, 1 = high .. 3 =
    /// low); 1 is the most urgent priority. ITIL's usual matrix by default.
    pub priority_matrix: [[u8; 3]; 3],
    /// Resolve an incident when every alert linked to it has resolved. Off: the timeline says
    /// so and the incident waits for a person.
    pub resolve_with_alerts: bool,
    /// Impact of an incident an alert opens, when the rule does not say.
    pub default_impact: u8,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            correlate_by: "service".to_owned(),
            correlation_window_secs: 3600,
            priority_matrix: [[1, 2, 3], [2, 3, 4], [3, 4, 5]],
            resolve_with_alerts: false,
            default_impact: 2,
        }
    }
}

impl IncidentsConfig {
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self
            .priority_matrix
            .iter()
            .flatten()
            .any(|p| !(1..=5).contains(p))
        {
            errors.push(ConfigError {
                span: None,
                message: "incidents.priority_matrix: every priority must be 1 to 5".into(),
            });
        }
        if !(1..=3).contains(&self.default_impact) {
            errors.push(ConfigError {
                span: None,
                message: "incidents.default_impact: must be 1 (high), 2 or 3 (low)".into(),
            });
        }
        let key = self.correlate_by.as_str();
        if !(key.is_empty()
            || matches!(key, "service" | "environment" | "resource" | "check")
            || key.strip_prefix("labels.").is_some_and(|l| !l.is_empty()))
        {
            errors.push(ConfigError {
                span: None,
                message: format!(
                    "incidents.correlate_by: {key:?} is not one of service, environment, resource, check, labels.NAME (or empty)"
                ),
            });
        }
        errors
    }

    /// The priority (1..=5) for an impact and an urgency (each 1..=3, clamped).
    pub fn priority(&self, impact: u8, urgency: u8) -> u8 {
        let i = usize::from(impact.clamp(1, 3) - 1);
        let u = usize::from(urgency.clamp(1, 3) - 1);
        self.priority_matrix[i][u]
    }

    /// The key an alert joins an open incident by, `service=api` say; `None` when the alert
    /// has no value for it (it opens an incident of its own).
    pub fn correlation_key(&self, alert: &Alert) -> Option<String> {
        let key = self.correlate_by.as_str();
        let value = match key {
            "" => return None,
            "service" => alert.service.clone(),
            "environment" => alert.environment.clone(),
            "resource" => Some(alert.resource.clone()),
            "check" => Some(alert.check.clone()),
            other => other
                .strip_prefix("labels.")
                .and_then(|l| alert.labels.get(l).cloned()),
        }?;
        (!value.is_empty()).then(|| format!("{key}={value}"))
    }
}

/// Urgency from severity: critical and major are urgent, minor and warning less so.
pub fn urgency_of(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 1,
        Severity::Major => 2,
        _ => 3,
    }
}

/// Where an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    New,
    InProgress,
    OnHold,
    Resolved,
    Closed,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 5] = [
        IncidentStatus::New,
        IncidentStatus::InProgress,
        IncidentStatus::OnHold,
        IncidentStatus::Resolved,
        IncidentStatus::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::New => "new",
            IncidentStatus::InProgress => "in_progress",
            IncidentStatus::OnHold => "on_hold",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Result<IncidentStatus, IncidentStatusError> {
        IncidentStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| IncidentStatusError::Unknown(text.to_owned()))
    }

    /// Still being worked on: alerts may join it.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            IncidentStatus::New | IncidentStatus::InProgress | IncidentStatus::OnHold
        )
    }

    /// Whether a person (or the ITSM tool) may move an incident from `self` to `to`:
    /// new -> in progress -> on hold -> resolved -> closed, with on hold and in progress
    /// back and forth, and a resolved incident reopened to in progress. Closed is final.
    pub fn can_move_to(self, to: IncidentStatus) -> Result<(), IncidentStatusError> {
        use IncidentStatus::*;
        let allowed = match self {
            New => matches!(to, InProgress | OnHold | Resolved),
            InProgress => matches!(to, OnHold | Resolved),
            OnHold => matches!(to, InProgress | Resolved),
            Resolved => matches!(to, InProgress | Closed),
            Closed => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(IncidentStatusError::Move { from: self, to })
        }
    }
}

/// A status that is not one, or a move the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncidentStatusError {
    #[error(
        "unknown incident status {0:?}, expected one of new, in_progress, on_hold, resolved, closed"
    )]
    Unknown(String),
    #[error("an incident cannot go from {from} to {to}{}", if *from == IncidentStatus::Closed { " (closed is final)" } else { "" })]
    Move {
        from: IncidentStatus,
        to: IncidentStatus,
    },
}

impl std::fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An incident record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Incident {
    pub id: String,
    /// `INC-000123`.
    pub number: String,
    pub title: String,
    pub description: String,
    /// 1 (high) .. 3 (low).
    pub impact: u8,
    /// 1 (high) .. 3 (low).
    pub urgency: u8,
    /// 1 (critical) .. 5 (planning), from the matrix.
    pub priority: u8,
    pub status: IncidentStatus,
    pub assignee: Option<String>,
    pub correlation_key: Option<String>,
    pub opened_by: String,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
    /// The incident's id in the external ITSM tool, once synced.
    pub external_id: Option<String>,
    pub external_url: Option<String>,
    /// Ids of the linked alerts, in the order they were linked (`alert_count` of them).
    #[serde(default)]
    pub alerts: Vec<String>,
    pub alert_count: i64,
}

/// `INC-000123`.
pub fn number_text(number: i64) -> String {
    format!("INC-{number:06}")
}

/// `INC-000123` or `123` -> 123.
pub fn parse_number(text: &str) -> Option<i64> {
    let digits = text
        .strip_prefix("INC-")
        .or_else(|| text.strip_prefix("inc-"))
        .unwrap_or(text);
    digits.parse().ok().filter(|n: &i64| *n > 0)
}

/// A request to open an incident for an alert (or have it join the open one it correlates
/// with), from a rule or an escalation step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub alert_id: String,
    /// `rule NAME` or `escalation POLICY step N`.
    pub by: String,
    pub impact: Option<u8>,
    pub urgency: Option<u8>,
}

/// One line on an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentEntry {
    pub id: String,
    pub incident_id: String,
    pub at: DateTime<Utc>,
    pub by: String,
    /// `opened`, `linked`, `status`, `assigned`, `note`, `sync`.
    pub kind: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_itil_matrix_and_its_corners() {
        let config = IncidentsConfig::default();
        let table: [(u8, u8, u8); 9] = [
            (1, 1, 1),
            (1, 2, 2),
            (1, 3, 3),
            (2, 1, 2),
            (2, 2, 3),
            (2, 3, 4),
            (3, 1, 3),
            (3, 2, 4),
            (3, 3, 5),
        ];
        for (impact, urgency, priority) in table {
            assert_eq!(
                config.priority(impact, urgency),
                priority,
                "{impact}x{urgency}"
            );
        }
        assert_eq!(config.priority(0, 9), 3, "out of range values are clamped");
        let custom = IncidentsConfig {
            priority_matrix: [[1, 1, 2], [2, 2, 3], [3, 3, 6]],
            ..IncidentsConfig::default()
        };
        assert_eq!(custom.priority(1, 2), 1);
        assert_eq!(custom.validate().len(), 1, "6 is not a priority");
    }

    #[test]
    fn status_moves() {
        use IncidentStatus::*;
        assert!(New.can_move_to(InProgress).is_ok());
        assert!(InProgress.can_move_to(OnHold).is_ok());
        assert!(OnHold.can_move_to(Resolved).is_ok());
        assert!(Resolved.can_move_to(Closed).is_ok());
        assert!(Resolved.can_move_to(InProgress).is_ok());
        assert!(Closed.can_move_to(InProgress).is_err());
        assert!(New.can_move_to(Closed).is_err());
        assert!(InProgress.can_move_to(New).is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(number_text(123), "INC-000123");
        assert_eq!(parse_number("INC-000123"), Some(123));
        assert_eq!(parse_number("7"), Some(7));
        assert_eq!(parse_number("INC-x"), None);
        assert_eq!(parse_number("0"), None);
    }
}
