//! Noise control before people are disturbed: maintenance windows, and the snapshot of
//! silences and windows the decide stage consults.
//!
//! A silence or window never hides an event: the event is stored, categorised and correlated
//! as always; only the actions decided for it are recorded as suppressed, with the silence or
//! window that suppressed them.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::alert::Alert;
use crate::config::{ConfigError, MaintenanceConfig};
use crate::matcher::Matcher;
use crate::silence::ActiveSilences;

/// A compiled `[[maintenance]]` window.
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    pub name: String,
    when: When,
    matchers: Vec<Matcher>,
}

#[derive(Debug, Clone)]
enum When {
    Recurring {
        cron: Box<Cron>,
        timezone: Tz,
        duration: Duration,
    },
    Once {
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
}

impl MaintenanceWindow {
    /// Compiles a window, with errors that point at the offending value.
    pub fn build(config: &MaintenanceConfig) -> Result<MaintenanceWindow, ConfigError> {
        let name = config.name.get_ref();
        let at = |span: std::ops::Range<usize>, message: String| {
            ConfigError::at(span, format!("maintenance {name:?}: {message}"))
        };
        let time = |value: &toml::Spanned<String>, field: &str| {
            DateTime::parse_from_rfc3339(value.get_ref())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    at(
                        value.span(),
                        format!("{field} is not an RFC 3339 time ({e})"),
                    )
                })
        };
        let when = match (&config.schedule, &config.starts_at, &config.ends_at) {
            (Some(schedule), None, None) => {
                let cron = Cron::from_str(schedule.get_ref()).map_err(|e| {
                    at(
                        schedule.span(),
                        format!(
                            "schedule {:?} is not a cron expression: {e}",
                            schedule.get_ref()
                        ),
                    )
                })?;
                let timezone = match &config.timezone {
                    None => Tz::UTC,
                    Some(tz) => Tz::from_str(tz.get_ref()).map_err(|_| {
                        at(
                            tz.span(),
                            format!(
                                "unknown time zone {:?}; use an IANA name like \"Europe/Stockholm\"",
                                tz.get_ref()
                            ),
                        )
                    })?,
                };
                if config.duration_secs == 0 {
                    return Err(at(
                        config.name.span(),
                        "a scheduled window needs duration_secs > 0".into(),
                    ));
                }
                When::Recurring {
                    cron: Box::new(cron),
                    timezone,
                    duration: Duration::try_seconds(
                        i64::try_from(config.duration_secs).unwrap_or(i64::MAX),
                    )
                    .unwrap_or(Duration::MAX),
                }
            }
            (None, Some(start), Some(end)) => {
                let starts_at = time(start, "starts_at")?;
                let ends_at = time(end, "ends_at")?;
                if ends_at <= starts_at {
                    return Err(at(end.span(), "ends_at must be after starts_at".into()));
                }
                When::Once { starts_at, ends_at }
            }
            _ => {
                return Err(at(
                    config.name.span(),
                    "give either schedule (with duration_secs) or both starts_at and ends_at"
                        .into(),
                ));
            }
        };
        let matchers = config
            .matchers
            .iter()
            .map(|m| Matcher::parse(m.get_ref()).map_err(|e| at(m.span(), e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MaintenanceWindow {
            name: name.clone(),
            when,
            matchers,
        })
    }

    /// Whether the window is open at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        match &self.when {
            When::Once { starts_at, ends_at } => *starts_at <= now && now < *ends_at,
            When::Recurring {
                cron,
                timezone,
                duration,
            } => {
                let local = now.with_timezone(timezone);
                cron.find_previous_occurrence(&local, true)
                    .map(|start| {
                        let start = start.with_timezone(&Utc);
                        start <= now && now < start + *duration
                    })
                    .unwrap_or(false)
            }
        }
    }

    /// Whether the window covers an alert with these labels at `now`.
    pub fn covers(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels)) && self.is_open(now)
    }
}

/// What kept an action from running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suppression {
    Silence(String),
    Maintenance(String),
}

impl Suppression {
    pub fn describe(&self) -> String {
        match self {
            Suppression::Silence(id) => format!("silence {id}"),
            Suppression::Maintenance(name) => format!("maintenance window {name:?}"),
        }
    }
}

/// The silences active now and the configured windows: what decide consults per event.
pub struct Noise<'a> {
    pub silences: &'a ActiveSilences,
    pub windows: &'a [MaintenanceWindow],
}

impl Noise<'_> {
    /// The first silence, else the first open window, covering the alert at `now`.
    pub fn suppression(&self, alert: &Alert, now: DateTime<Utc>) -> Option<Suppression> {
        if self.silences.is_empty() && self.windows.is_empty() {
            return None;
        }
        let labels = alert.match_labels();
        if let Some(id) = self.silences.silencing_at(&labels, now).into_iter().next() {
            return Some(Suppression::Silence(id));
        }
        self.windows
            .iter()
            .find(|w| w.covers(&labels, now))
            .map(|w| Suppression::Maintenance(w.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::Spanned;

    fn window(
        schedule: &str,
        duration_secs: u64,
        tz: &str,
        matchers: &[&str],
    ) -> MaintenanceWindow {
        let config = MaintenanceConfig {
            name: Spanned::new(0..0, "w".into()),
            schedule: Some(Spanned::new(0..0, schedule.into())),
            duration_secs,
            timezone: Some(Spanned::new(0..0, tz.into())),
            starts_at: None,
            ends_at: None,
            matchers: matchers
                .iter()
                .map(|m| Spanned::new(0..0, m.to_string()))
                .collect(),
            comment: String::new(),
        };
        match MaintenanceWindow::build(&config) {
            Ok(w) => w,
            Err(e) => panic!("window should build: {}", e.message),
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("bad time {text}: {e}"))
    }

    #[test]
    fn sunday_night_in_stockholm_follows_daylight_saving() {
        let w = window("0 2 * * SUN", 2 * 3600, "Europe/Stockholm", &[]);
        // 2026-11-29 is a Sunday; Stockholm is UTC+1 in winter: 02:00 local = 01:00 UTC.
        assert!(!w.is_open(utc("2026-11-29T00:59:59Z")));
        assert!(w.is_open(utc("2026-11-29T01:00:00Z")));
        assert!(w.is_open(utc("2026-11-29T02:59:59Z")));
        assert!(!w.is_open(utc("2026-11-29T03:00:00Z")));
        // In summer (UTC+2), 02:00 local = 00:00 UTC.
        assert!(w.is_open(utc("2026-06-07T00:30:00Z")));
        assert!(!w.is_open(utc("2026-06-07T02:30:00Z")));
        // Not on a Saturday.
        assert!(!w.is_open(utc("2026-11-28T01:30:00Z")));
    }

    #[test]
    fn matchers_limit_what_a_window_covers() {
        let w = window("* * * * *", 60, "UTC", &["environment=\"staging\""]);
        let now = utc("2026-11-24T10:00:30Z");
        let staging: BTreeMap<String, String> =
            [("environment".to_string(), "staging".to_string())].into();
        let production: BTreeMap<String, String> =
            [("environment".to_string(), "production".to_string())].into();
        assert!(w.covers(&staging, now));
        assert!(!w.covers(&production, now));
    }

    #[test]
    fn bad_windows_are_refused_with_their_reason() {
        let mut config = MaintenanceConfig {
            name: Spanned::new(0..0, "w".into()),
            schedule: Some(Spanned::new(3..9, "61 * * * *".into())),
            duration_secs: 60,
            timezone: None,
            starts_at: None,
            ends_at: None,
            matchers: vec![],
            comment: String::new(),
        };
        let error = MaintenanceWindow::build(&config)
            .err()
            .map(|e| (e.span, e.message));
        assert!(matches!(&error, Some((Some(span), m)) if *span == (3..9) && m.contains("cron")));
        config.schedule = Some(Spanned::new(0..0, "0 2 * * SUN".into()));
        config.timezone = Some(Spanned::new(10..20, "Mars/Olympus".into()));
        let error = MaintenanceWindow::build(&config).err().map(|e| e.message);
        assert!(matches!(&error, Some(m) if m.contains("unknown time zone")));
    }
}
