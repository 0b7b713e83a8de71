//! Silences: a time span in which alerts whose labels match are recorded but not acted on.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::matcher::{Matcher, MatcherSpec};

/// Longest `createdBy` and `comment`, in bytes.
pub const SILENCE_TEXT_MAX: usize = 4096;
/// Most matchers one silence may have.
pub const SILENCE_MATCHERS_MAX: usize = 64;

/// Where a silence is in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<MatcherSpec>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
    pub updated_at: DateTime<Utc>,
}

impl Silence {
    /// Checks what a sender asked for; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        if self.matchers.len() > SILENCE_MATCHERS_MAX {
            return Err(format!(
                "a silence may have at most {SILENCE_MATCHERS_MAX} matchers"
            ));
        }
        let compiled = self.compiled().map_err(|e| e.to_string())?;
        if compiled.iter().all(Matcher::matches_empty) {
            return Err("at least one matcher must not match the empty string, or the silence would match every alert".into());
        }
        if self.ends_at <= self.starts_at {
            return Err("endsAt must be after startsAt".into());
        }
        if self.created_by.trim().is_empty() {
            return Err("createdBy must name who creates the silence".into());
        }
        if self.created_by.len() > SILENCE_TEXT_MAX || self.comment.len() > SILENCE_TEXT_MAX {
            return Err(format!(
                "createdBy and comment may be at most {SILENCE_TEXT_MAX} bytes"
            ));
        }
        Ok(())
    }

    pub fn compiled(&self) -> Result<Vec<Matcher>, crate::matcher::MatcherError> {
        self.matchers.iter().cloned().map(Matcher::new).collect()
    }

    pub fn state(&self, now: DateTime<Utc>) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// Ends the silence now (a pending one never starts).
    pub fn expire(&mut self, now: DateTime<Utc>) {
        if self.starts_at > now {
            self.starts_at = now;
        }
        if self.ends_at > now {
            self.ends_at = now;
        }
        self.updated_at = now;
    }
}

/// The silences that are active or will be (not expired), compiled once, for matching many
/// alerts at a given time. A change makes a new set that shares every unchanged silence
/// (`updated`), so a write compiles one silence, not all of them.
#[derive(Default)]
pub struct ActiveSilences {
    silences: Vec<Arc<CompiledSilence>>,
    built_at: Option<DateTime<Utc>>,
}

struct CompiledSilence {
    id: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    matchers: Vec<Matcher>,
}

impl CompiledSilence {
    fn of(silence: &Silence, now: DateTime<Utc>) -> Option<Arc<CompiledSilence>> {
        if silence.state(now) == SilenceState::Expired {
            return None;
        }
        let matchers = silence.compiled().ok()?;
        Some(Arc::new(CompiledSilence {
            id: silence.id.clone(),
            starts_at: silence.starts_at,
            ends_at: silence.ends_at,
            matchers,
        }))
    }
}

impl ActiveSilences {
    /// Keeps the silences not yet expired at `now`; a stored silence that no longer compiles
    /// is skipped.
    pub fn new(silences: &[Silence], now: DateTime<Utc>) -> ActiveSilences {
        ActiveSilences {
            silences: silences
                .iter()
                .filter_map(|s| CompiledSilence::of(s, now))
                .collect(),
            built_at: Some(now),
        }
    }

    /// This set at `now`, with `changed` put in place of the silences of the same ids (an
    /// expired one removes its id) and the silences that have ended since left out. Only
    /// `changed` is compiled.
    pub fn updated(&self, changed: &[Silence], now: DateTime<Utc>) -> ActiveSilences {
        let ids: std::collections::HashSet<&str> = changed.iter().map(|s| s.id.as_str()).collect();
        let mut silences: Vec<Arc<CompiledSilence>> = self
            .silences
            .iter()
            .filter(|s| s.ends_at > now && !ids.contains(s.id.as_str()))
            .cloned()
            .collect();
        silences.extend(changed.iter().filter_map(|s| CompiledSilence::of(s, now)));
        ActiveSilences {
            silences,
            built_at: Some(now),
        }
    }

    /// How many silences are in force or pending.
    pub fn len(&self) -> usize {
        self.silences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.silences.is_empty()
    }

    /// Ids of the silences active when this set was built whose every matcher matches.
    pub fn silencing(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        match self.built_at {
            Some(now) => self.silencing_at(labels, now),
            None => Vec::new(),
        }
    }

    /// Ids of the silences active at `at` whose every matcher matches `labels`.
    pub fn silencing_at(
        &self,
        labels: &BTreeMap<String, String>,
        at: DateTime<Utc>,
    ) -> Vec<String> {
        self.silences
            .iter()
            .filter(|s| s.starts_at <= at && at < s.ends_at)
            .filter(|s| s.matchers.iter().all(|m| m.matches(labels)))
            .map(|s| s.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn silence(matchers: &[(&str, &str, bool)], from: i64, to: i64) -> Silence {
        let now = Utc::now();
        Silence {
            id: "s1".into(),
            matchers: matchers
                .iter()
                .map(|(n, v, re)| MatcherSpec {
                    name: n.to_string(),
                    value: v.to_string(),
                    is_regex: *re,
                    is_equal: true,
                })
                .collect(),
            starts_at: now + Duration::minutes(from),
            ends_at: now + Duration::minutes(to),
            created_by: "alice".into(),
            comment: "maintenance".into(),
            updated_at: now,
        }
    }

    #[test]
    fn states_follow_the_clock_and_expire_ends_now() {
        let now = Utc::now();
        assert_eq!(
            silence(&[("a", "b", false)], 5, 10).state(now),
            SilenceState::Pending
        );
        let mut active = silence(&[("a", "b", false)], -5, 10);
        assert_eq!(active.state(now), SilenceState::Active);
        active.expire(now);
        assert_eq!(active.state(now), SilenceState::Expired);
    }

    #[test]
    fn validation_refuses_what_alertmanager_refuses() {
        assert!(
            silence(&[("alertname", "X", false)], 0, 10)
                .validate()
                .is_ok()
        );
        assert!(silence(&[], 0, 10).validate().is_err());
        assert!(
            silence(&[("alertname", ".*", true)], 0, 10)
                .validate()
                .is_err(),
            "matches everything"
        );
        assert!(
            silence(&[("alertname", "X", false)], 10, 0)
                .validate()
                .is_err()
        );
        assert!(
            silence(&[("bad name", "X", false)], 0, 10)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn an_update_replaces_adds_and_expires_without_touching_the_rest() {
        let now = Utc::now();
        let disk = silence(&[("alertname", "Disk.*", true)], -1, 10);
        let db = Silence {
            id: "s2".into(),
            ..silence(&[("team", "db", false)], -1, 10)
        };
        let board = ActiveSilences::new(&[disk.clone(), db.clone()], now);
        let labels: BTreeMap<String, String> = [
            ("alertname".to_string(), "DiskFull".to_string()),
            ("team".to_string(), "db".to_string()),
        ]
        .into();
        let mut expired = disk.clone();
        expired.expire(now);
        let web = Silence {
            id: "s3".into(),
            ..silence(&[("team", "db", false)], -1, 10)
        };
        let next = board.updated(&[expired, web], now);
        let mut ids = next.silencing(&labels);
        ids.sort();
        assert_eq!(ids, ["s2", "s3"], "s1 expired, s3 added, s2 kept");
        assert_eq!(
            board.silencing(&labels).len(),
            2,
            "the old set is unchanged"
        );
        let later = now + Duration::minutes(11);
        assert!(next.updated(&[], later).is_empty(), "all ended by then");
    }

    #[test]
    fn active_silences_say_which_silence_applies() {
        let now = Utc::now();
        let silences = [
            silence(&[("alertname", "Disk.*", true)], -1, 10),
            Silence {
                id: "s2".into(),
                ..silence(&[("team", "db", false)], 5, 10)
            },
        ];
        let active = ActiveSilences::new(&silences, now);
        let labels: BTreeMap<String, String> = [
            ("alertname".to_string(), "DiskFull".to_string()),
            ("team".to_string(), "db".to_string()),
        ]
        .into();
        assert_eq!(active.silencing(&labels), ["s1"], "s2 is pending");
    }
}
