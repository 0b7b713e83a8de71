//! On-call schedules: who is on call at a time, and the shifts over a span.
//!
//! A schedule has layers; each layer rotates through its users (daily, weekly, or a custom
//! length) from a handoff time, optionally only within restrictions (e.g. business hours).
//! Where several layers have someone on call, the last layer wins (it is the most specific);
//! an override (a person covering a span) wins over every layer. Daily and weekly rotations
//! hand off at the same wall-clock time in the schedule's time zone across daylight saving
//! changes; custom lengths are exact durations. Everything is a pure function of the
//! configuration and the time asked about.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::ConfigError;

/// Longest span `shifts` computes at once.
pub const SHIFTS_SPAN_MAX_DAYS: i64 = 366;
/// Most shifts `shifts` returns.
pub const SHIFTS_MAX: usize = 10_000;

/// `[[users]]`: a person vakt can notify.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserConfig {
    /// Short unique id used in schedules and policies: `alice`.
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Chat handle, shown in chat pages: `@alice`. Shown as text only: a mention that
    /// notifies needs the service's own id (`slack_id`, `mattermost`, `teams_id`).
    #[serde(default)]
    pub chat: Option<String>,
    /// Slack member id (`U024BE7LH`): Slack pages mention `<@U024BE7LH>`.
    #[serde(default)]
    pub slack_id: Option<String>,
    /// Mattermost username (`alice`): Mattermost pages mention `@alice`.
    #[serde(default)]
    pub mattermost: Option<String>,
    /// Microsoft Teams user (Entra object id or UPN `alice@example.com`): Teams pages carry
    /// a mention entity for it.
    #[serde(default)]
    pub teams_id: Option<String>,
    /// A URL that pages the phone (an SMS or voice gateway's webhook); a secret.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub phone_webhook: Option<crate::secret::Secret>,
    #[serde(default)]
    pub teams: Vec<String>,
    /// The user's role when signing in to the API: `viewer`, `responder` (the default),
    /// `engineer` or `admin` (`vakt_core::access::ROLES`).
    #[serde(default)]
    pub role: Option<String>,
    /// The argon2id hash of the user's password (`vakt user hash` prints one); without it
    /// the user cannot sign in with a password. Never shown by the API.
    #[serde(default, skip_serializing)]
    pub password_hash: Option<String>,
}

/// `[[schedules]]` as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub name: Spanned<String>,
    /// IANA time zone the handoffs and restrictions are read in (default UTC).
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub description: String,
    pub layers: Vec<LayerConfig>,
    #[serde(default)]
    pub overrides: Vec<OverrideConfig>,
}

/// One layer of a schedule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LayerConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// User ids in rotation order.
    pub users: Vec<Spanned<String>>,
    /// `daily`, `weekly` or `custom` (with `length_secs`).
    pub rotation: Spanned<String>,
    #[serde(default)]
    pub length_secs: Option<u64>,
    /// When the first user's first shift starts, local time: `2026-11-23T09:00`.
    pub handoff: Spanned<String>,
    /// When the layer is on call at all; empty means always.
    #[serde(default)]
    pub restrictions: Vec<RestrictionConfig>,
}

/// `{ days = ["mon", "tue"], start = "09:00", end = "17:00" }`; an `end` at or before
/// `start` runs into the next day.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RestrictionConfig {
    #[serde(default)]
    pub days: Vec<Spanned<String>>,
    pub start: Spanned<String>,
    pub end: Spanned<String>,
}

/// A user covering a span, in place of whoever the layers say.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OverrideConfig {
    /// Set for overrides made through the API (they can be deleted); none for configured ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub user: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    /// Whole local days: handoffs keep their wall-clock time.
    Days(i64),
    /// An exact duration.
    Exact(Duration),
}

#[derive(Debug, Clone)]
struct Restriction {
    /// Indexed by days from Monday.
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
}

#[derive(Debug, Clone)]
struct Layer {
    name: String,
    users: Vec<String>,
    period: Period,
    handoff: NaiveDateTime,
    restrictions: Vec<Restriction>,
}

/// A compiled schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub description: String,
    pub timezone: Tz,
    layers: Vec<Layer>,
    overrides: Vec<OverrideConfig>,
}

/// Who is on call, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OnCall {
    pub user: String,
    /// The layer's name, or `override`.
    pub source: String,
}

/// A span with one person on call (or nobody).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Shift {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub user: Option<String>,
    pub source: Option<String>,
}

fn weekday(text: &str) -> Option<Weekday> {
    Weekday::from_str(text).ok()
}

fn local_time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S"))
        .ok()
}

impl Schedule {
    /// Compiles a schedule; `users` are the known user ids.
    pub fn build(config: &ScheduleConfig, users: &[&str]) -> Result<Schedule, Vec<ConfigError>> {
        let name = config.name.get_ref().clone();
        let mut errors = Vec::new();
        let at = |span: std::ops::Range<usize>, message: String| {
            ConfigError::at(span, format!("schedule {name:?}: {message}"))
        };
        let timezone = match &config.timezone {
            None => Tz::UTC,
            Some(tz) => Tz::from_str(tz.get_ref()).unwrap_or_else(|_| {
                errors.push(at(
                    tz.span(),
                    format!(
                        "unknown time zone {:?}; use an IANA name like \"Europe/Stockholm\"",
                        tz.get_ref()
                    ),
                ));
                Tz::UTC
            }),
        };
        if config.layers.is_empty() {
            errors.push(at(config.name.span(), "needs at least one layer".into()));
        }
        let mut layers = Vec::new();
        for (i, layer) in config.layers.iter().enumerate() {
            let layer_name = layer
                .name
                .clone()
                .unwrap_or_else(|| format!("layer {}", i + 1));
            if layer.users.is_empty() {
                errors.push(at(
                    layer.rotation.span(),
                    format!("{layer_name}: users is empty"),
                ));
            }
            for user in &layer.users {
                if !users.contains(&user.get_ref().as_str()) {
                    errors.push(at(
                        user.span(),
                        format!(
                            "{layer_name}: unknown user {:?}; define it in [[users]]",
                            user.get_ref()
                        ),
                    ));
                }
            }
            let period = match (layer.rotation.get_ref().as_str(), layer.length_secs) {
                ("daily", None) => Some(Period::Days(1)),
                ("weekly", None) => Some(Period::Days(7)),
                ("custom", Some(secs)) if secs > 0 => {
                    Duration::try_seconds(i64::try_from(secs).unwrap_or(i64::MAX))
                        .map(Period::Exact)
                }
                ("daily" | "weekly", Some(_)) => {
                    errors.push(at(
                        layer.rotation.span(),
                        format!("{layer_name}: length_secs goes with rotation = \"custom\""),
                    ));
                    None
                }
                ("custom", _) => {
                    errors.push(at(
                        layer.rotation.span(),
                        format!("{layer_name}: a custom rotation needs length_secs > 0"),
                    ));
                    None
                }
                (other, _) => {
                    errors.push(at(
                        layer.rotation.span(),
                        format!(
                            "{layer_name}: unknown rotation {other:?}; expected daily, weekly or custom"
                        ),
                    ));
                    None
                }
            };
            let handoff = NaiveDateTime::parse_from_str(layer.handoff.get_ref(), "%Y-%m-%dT%H:%M")
                .or_else(|_| {
                    NaiveDateTime::parse_from_str(layer.handoff.get_ref(), "%Y-%m-%dT%H:%M:%S")
                })
                .map_err(|_| {
                    errors.push(at(
                        layer.handoff.span(),
                        format!(
                            "{layer_name}: handoff {:?} is not a local time like 2026-11-23T09:00",
                            layer.handoff.get_ref()
                        ),
                    ))
                })
                .ok();
            let mut restrictions = Vec::new();
            for r in &layer.restrictions {
                let mut days = [r.days.is_empty(); 7];
                for day in &r.days {
                    match weekday(day.get_ref()) {
                        Some(d) => days[d.num_days_from_monday() as usize] = true,
                        None => errors.push(at(
                            day.span(),
                            format!(
                                "{layer_name}: {:?} is not a weekday (mon ... sun)",
                                day.get_ref()
                            ),
                        )),
                    }
                }
                let start = local_time(r.start.get_ref());
                let end = local_time(r.end.get_ref());
                if start.is_none() {
                    errors.push(at(
                        r.start.span(),
                        format!("{layer_name}: start is not HH:MM"),
                    ));
                }
                if end.is_none() {
                    errors.push(at(r.end.span(), format!("{layer_name}: end is not HH:MM")));
                }
                if let (Some(start), Some(end)) = (start, end) {
                    restrictions.push(Restriction { days, start, end });
                }
            }
            if let (Some(period), Some(handoff)) = (period, handoff) {
                layers.push(Layer {
                    name: layer_name,
                    users: layer.users.iter().map(|u| u.get_ref().clone()).collect(),
                    period,
                    handoff,
                    restrictions,
                });
            }
        }
        for o in &config.overrides {
            if !users.contains(&o.user.as_str()) {
                errors.push(at(
                    config.name.span(),
                    format!("override: unknown user {:?}", o.user),
                ));
            }
            if o.end <= o.start {
                errors.push(at(
                    config.name.span(),
                    format!("override for {}: end must be after start", o.user),
                ));
            }
        }
        if errors.is_empty() {
            Ok(Schedule {
                name,
                description: config.description.clone(),
                timezone,
                layers,
                overrides: config.overrides.clone(),
            })
        } else {
            Err(errors)
        }
    }

    /// The overrides in force: configured ones first, then `extra` (from storage).
    pub fn overrides(&self) -> &[OverrideConfig] {
        &self.overrides
    }

    /// The overrides configured and given (from storage), newest last.
    pub fn with_overrides(&self, extra: &[OverrideConfig]) -> Schedule {
        let mut schedule = self.clone();
        schedule.overrides.extend(extra.iter().cloned());
        schedule
    }

    /// A local wall-clock time as an instant: the earlier of two in a repeated hour, the
    /// first instant after a skipped hour.
    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.timezone.from_local_datetime(&local) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(early, _) => early.with_timezone(&Utc),
            LocalResult::None => {
                // In a spring-forward gap: the wall clock jumps; take the time one hour later.
                let later = local + Duration::hours(1);
                match self.timezone.from_local_datetime(&later) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
                    LocalResult::None => Utc.from_utc_datetime(&local),
                }
            }
        }
    }

    /// The index of the rotation slot `at` falls in, and that slot's start and end.
    fn slot(&self, layer: &Layer, at: DateTime<Utc>) -> (i64, DateTime<Utc>, DateTime<Utc>) {
        match layer.period {
            Period::Exact(length) => {
                let origin = self.instant(layer.handoff);
                let length_ms = length.num_milliseconds().max(1);
                let index = (at - origin).num_milliseconds().div_euclid(length_ms);
                let start = origin + Duration::milliseconds(index.saturating_mul(length_ms));
                (index, start, start + length)
            }
            Period::Days(days) => {
                let local = at.with_timezone(&self.timezone).naive_local();
                let mut index = (local - layer.handoff)
                    .num_seconds()
                    .div_euclid(days.saturating_mul(86_400));
                // Wall-clock arithmetic around the local handoff: correct by one slot if the
                // instant is before the computed slot start (or at/after its end).
                let start_of = |i: i64| self.instant(layer.handoff + Duration::days(i * days));
                while at < start_of(index) {
                    index -= 1;
                }
                while at >= start_of(index + 1) {
                    index += 1;
                }
                (index, start_of(index), start_of(index + 1))
            }
        }
    }

    fn restricted_in(&self, layer: &Layer, at: DateTime<Utc>) -> bool {
        if layer.restrictions.is_empty() {
            return true;
        }
        let local = at.with_timezone(&self.timezone);
        let (day, time) = (local.weekday(), local.time());
        let on = |d: Weekday, r: &Restriction| r.days[d.num_days_from_monday() as usize];
        layer.restrictions.iter().any(|r| {
            if r.start < r.end {
                on(day, r) && r.start <= time && time < r.end
            } else {
                // Overnight: from start on a listed day to end on the next day.
                (on(day, r) && time >= r.start) || (on(day.pred(), r) && time < r.end)
            }
        })
    }

    /// Who the layer has on call at `at`, if anyone.
    fn layer_on_call(&self, layer: &Layer, at: DateTime<Utc>) -> Option<String> {
        if layer.users.is_empty() || !self.restricted_in(layer, at) {
            return None;
        }
        let (index, _, _) = self.slot(layer, at);
        let n = i64::try_from(layer.users.len()).unwrap_or(1);
        usize::try_from(index.rem_euclid(n))
            .ok()
            .and_then(|i| layer.users.get(i))
            .cloned()
    }

    /// Who is on call at `at`: an override, else the last layer with someone, else nobody.
    pub fn on_call(&self, at: DateTime<Utc>) -> Option<OnCall> {
        if let Some(o) = self
            .overrides
            .iter()
            .rev()
            .find(|o| o.start <= at && at < o.end)
        {
            return Some(OnCall {
                user: o.user.clone(),
                source: "override".into(),
            });
        }
        self.layers.iter().rev().find_map(|layer| {
            self.layer_on_call(layer, at).map(|user| OnCall {
                user,
                source: layer.name.clone(),
            })
        })
    }

    /// Every moment in `[from, to)` at which who is on call may change.
    fn boundaries(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut points = BTreeSet::from([from]);
        for layer in &self.layers {
            let (_, mut start, mut end) = self.slot(layer, from);
            let _ = start;
            while end < to && points.len() < SHIFTS_MAX * 4 {
                points.insert(end);
                start = end;
                end = self.slot(layer, start).2;
            }
            if !layer.restrictions.is_empty() {
                let first = from.with_timezone(&self.timezone).date_naive() - Duration::days(1);
                let last = to.with_timezone(&self.timezone).date_naive();
                let mut day: NaiveDate = first;
                while day <= last {
                    for r in &layer.restrictions {
                        for time in [r.start, r.end] {
                            let t = self.instant(day.and_time(time));
                            if from < t && t < to {
                                points.insert(t);
                            }
                        }
                    }
                    day += Duration::days(1);
                }
            }
        }
        for o in &self.overrides {
            for t in [o.start, o.end] {
                if from < t && t < to {
                    points.insert(t);
                }
            }
        }
        points.into_iter().collect()
    }

    /// The shifts in `[from, to)`, merged where the same person stays on call; at most
    /// `SHIFTS_SPAN_MAX_DAYS` long.
    pub fn shifts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Shift>, String> {
        if to <= from {
            return Err("the end must be after the start".into());
        }
        if to - from > Duration::days(SHIFTS_SPAN_MAX_DAYS) {
            return Err(format!("at most {SHIFTS_SPAN_MAX_DAYS} days at once"));
        }
        let points = self.boundaries(from, to);
        let mut shifts: Vec<Shift> = Vec::new();
        for (i, &start) in points.iter().enumerate() {
            let end = points.get(i + 1).copied().unwrap_or(to);
            let who = self.on_call(start);
            let (user, source) = match who {
                Some(o) => (Some(o.user), Some(o.source)),
                None => (None, None),
            };
            match shifts.last_mut() {
                Some(last) if last.user == user && last.source == source => last.end = end,
                _ => shifts.push(Shift {
                    start,
                    end,
                    user,
                    source,
                }),
            }
            if shifts.len() >= SHIFTS_MAX {
                break;
            }
        }
        Ok(shifts)
    }

    /// The shifts as an iCalendar (RFC 5545) document: one event per shift with someone on
    /// call, times in UTC.
    pub fn icalendar(&self, shifts: &[Shift], now: DateTime<Utc>) -> String {
        let mut out = String::new();
        let mut line = |text: String| fold(&mut out, &text);
        line("BEGIN:VCALENDAR".into());
        line("VERSION:2.0".into());
        line("PRODID:-//vakt//on-call//EN".into());
        line("CALSCALE:GREGORIAN".into());
        line(format!(
            "X-WR-CALNAME:{}",
            escape(&format!("On call: {}", self.name))
        ));
        let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
        for shift in shifts {
            let Some(user) = &shift.user else { continue };
            line("BEGIN:VEVENT".into());
            line(format!(
                "UID:{}-{}@vakt",
                escape(&self.name).replace(' ', "-"),
                shift.start.timestamp()
            ));
            line(format!("DTSTAMP:{stamp}"));
            line(format!("DTSTART:{}", shift.start.format("%Y%m%dT%H%M%SZ")));
            line(format!("DTEND:{}", shift.end.format("%Y%m%dT%H%M%SZ")));
            line(format!(
                "SUMMARY:{}",
                escape(&format!("{user} on call ({})", self.name))
            ));
            line(format!(
                "DESCRIPTION:{}",
                escape(&format!(
                    "{} is on call for {} ({}).",
                    user,
                    self.name,
                    shift.source.as_deref().unwrap_or("")
                ))
            ));
            line("END:VEVENT".into());
        }
        line("END:VCALENDAR".into());
        out
    }
}

/// RFC 5545 text escaping.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends a content line folded at 75 octets (RFC 5545 3.1), CRLF-terminated.
fn fold(out: &mut String, text: &str) {
    let mut width = 0;
    for c in text.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests;
