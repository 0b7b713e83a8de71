//! Heartbeats: a source's promise to report every N seconds, and when a missing one is due.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The check of the events vakt raises and clears for heartbeats.
pub const HEARTBEAT_CHECK: &str = "heartbeat";

/// A heartbeat as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    /// Unique name of the promise, e.g. `backup-db01` or `agent-web1`.
    pub name: String,
    /// The resource the missing-heartbeat alert is about.
    pub resource: String,
    /// With a check, any event of this resource and check is a beat too.
    pub check: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub interval_secs: i64,
    /// How long after a missed interval the heartbeat counts as missing.
    pub grace_secs: i64,
    pub last_seen: DateTime<Utc>,
    /// Whether the missing-heartbeat alert is raised.
    pub missing: bool,
}

impl Heartbeat {
    /// When the heartbeat counts as missing if nothing comes.
    pub fn due_at(&self) -> DateTime<Utc> {
        self.last_seen
            + Duration::seconds(
                self.interval_secs
                    .saturating_add(self.grace_secs)
                    .clamp(1, 10 * 365 * 86_400),
            )
    }

    /// Whether it is overdue and not yet reported as missing.
    pub fn newly_missing(&self, now: DateTime<Utc>) -> bool {
        !self.missing && now > self.due_at()
    }

    /// The default grace: half an interval, at least a second.
    pub fn default_grace(interval_secs: i64) -> i64 {
        (interval_secs / 2).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_after_interval_and_grace() {
        let now = Utc::now();
        let beat = Heartbeat {
            name: "b".into(),
            resource: "r".into(),
            check: None,
            service: None,
            environment: None,
            interval_secs: 60,
            grace_secs: Heartbeat::default_grace(60),
            last_seen: now,
            missing: false,
        };
        assert!(!beat.newly_missing(now + Duration::seconds(90)));
        assert!(beat.newly_missing(now + Duration::seconds(91)));
        assert!(
            !Heartbeat {
                missing: true,
                ..beat
            }
            .newly_missing(now + Duration::seconds(91))
        );
    }
}
