//! Reports (the guide's step 8): what came in, what was made of it, how fast people
//! answered, what ran by itself, where the noise is, and the incidents, for a period and
//! compared with the period before it; as JSON, CSV or one self-contained HTML file.
//!
//! Event volumes come from the hourly rollup kept at ingest (`event_rollup`), so a report
//! over months reads thousands of rows, not the events; alerts are read a page at a time
//! (times to acknowledge and resolve need each one), actions and incidents as counts.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, DurationRound, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use vakt_core::{ActionConfig, Alert, AlertStatus, Pipeline};
use vakt_store::{ActionStatus, Store, StoreError};

mod csv;
mod html;
pub use csv::csv;
pub use html::{html, volume_chart};

/// Alerts read per page.
const PAGE: u32 = 5_000;
/// Rows in each top list.
const TOP: usize = 10;

/// What to report on.
#[derive(Debug, Clone)]
pub struct Request {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The viewer's time zone: days, hours of the day, days of the week.
    pub tz: Tz,
    /// Acknowledged within this counts as on target.
    pub ack_target_secs: i64,
    /// Hours of the day (local, `[start, end)`) that are business hours on weekdays.
    pub business_hours: (u32, u32),
    /// Hours of the day (local, wrapping past midnight) that are sleep hours, every day;
    /// the rest is off hours.
    pub sleep_hours: (u32, u32),
}

/// The formats a report is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Html,
}

impl Format {
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "html" => Ok(Format::Html),
            other => Err(format!(
                "unknown format {other:?}, expected html, csv or json"
            )),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }

    /// The report in this format.
    pub fn render(self, report: &Report) -> Result<String, serde_json::Error> {
        Ok(match self {
            Format::Json => serde_json::to_string_pretty(report)?,
            Format::Csv => csv(report),
            Format::Html => html(report),
        })
    }
}

/// A duration as given (`90s`, `30m`, `2h`, `7d`) in seconds; the error names `field`.
fn secs(field: &str, text: &str) -> Result<i64, String> {
    vakt_core::suite::duration_secs(text)
        .map_err(|e| format!("{field} {e}"))
        .and_then(|s| i64::try_from(s).map_err(|_| format!("{field} {text:?}: too long")))
}

/// **Boundary:** a period as given to a report, a replay or the advisor: `since` (a
/// duration back from `now`, 1 s to 10 years) or `from`/`to` (RFC 3339, `to` defaulting to
/// now); neither gives `default` back from now. Each error names its field.
pub fn period(
    since: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    default: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let time = |field: &str, text: &str| {
        DateTime::parse_from_rfc3339(text.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                format!("{field} {text:?}: expected RFC 3339 like 2026-12-01T00:00:00Z: {e}")
            })
    };
    let (since, until) = match (since, from, to) {
        (Some(_), Some(_), _) => return Err("give since or from, not both".into()),
        (Some(_), None, Some(_)) => return Err("to goes with from, not with since".into()),
        (Some(text), None, None) => {
            let back = secs("since", text)?;
            if back == 0 || back > 366 * 86_400 * 10 {
                return Err(format!("since {text:?}: between 1s and 10 years"));
            }
            (now - chrono::Duration::seconds(back), now)
        }
        (None, Some(text), to) => (
            time("from", text)?,
            to.map(|t| time("to", t)).transpose()?.unwrap_or(now),
        ),
        (None, None, Some(_)) => return Err("to needs from".into()),
        (None, None, None) => (now - default, now),
    };
    if until <= since {
        return Err("to must be after from".into());
    }
    Ok((since, until))
}

/// What was asked for, as given (flags, query parameters): each `None` takes its default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    pub since: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub tz: Option<&'a str>,
    pub ack_target: Option<&'a str>,
    /// `9-17`: weekday hours counted as business hours.
    pub business_hours: Option<&'a str>,
    /// `22-7`: hours counted as sleep hours, every day.
    pub sleep_hours: Option<&'a str>,
}

/// `start-end` in whole hours of the day (`9-17`, `22-7`: wrapping past midnight), start
/// included, end not; the error names `field`.
pub fn hours(field: &str, text: &str) -> Result<(u32, u32), String> {
    let wrong = || format!("{field} {text:?}: expected hours like 9-17 or 22-7 (0 to 24)");
    let (start, end) = text.trim().split_once('-').ok_or_else(wrong)?;
    let start: u32 = start.trim().parse().map_err(|_| wrong())?;
    let end: u32 = end.trim().parse().map_err(|_| wrong())?;
    if start > 24 || end > 24 || start == end {
        return Err(wrong());
    }
    Ok((start % 24, end % 24))
}

/// Whether `hour` lies in `[start, end)`, wrapping past midnight when `end <= start`.
fn within((start, end): (u32, u32), hour: u32) -> bool {
    if start < end {
        (start..end).contains(&hour)
    } else {
        hour >= start || hour < end
    }
}

/// **Boundary:** a report's period (`period`), a time zone name, an acknowledgement
/// target and the business and sleep hours, each error naming its field.
pub fn request(asked: &Asked<'_>, now: DateTime<Utc>) -> Result<Request, String> {
    let (since, until) = period(
        asked.since,
        asked.from,
        asked.to,
        chrono::Duration::days(30),
        now,
    )?;
    let tz = match asked.tz {
        Some(name) => name
            .parse::<Tz>()
            .map_err(|_| format!("tz {name:?}: not a time zone name like Europe/Stockholm"))?,
        None => Tz::UTC,
    };
    let ack_target_secs = match asked.ack_target {
        Some(text) => secs("ack_target", text)?,
        None => 15 * 60,
    };
    Ok(Request {
        since,
        until,
        tz,
        ack_target_secs,
        business_hours: asked
            .business_hours
            .map(|t| hours("business_hours", t))
            .transpose()?
            .unwrap_or((9, 17)),
        sleep_hours: asked
            .sleep_hours
            .map(|t| hours("sleep_hours", t))
            .transpose()?
            .unwrap_or((22, 7)),
    })
}

/// A report; every duration in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub timezone: String,
    /// Weekday business hours and daily sleep hours the interruptions were counted by.
    pub business_hours: (u32, u32),
    pub sleep_hours: (u32, u32),
    pub headline: Headline,
    /// The same numbers for the period of the same length before `since`.
    pub previous: Headline,
    pub volume: Volume,
    pub funnel: Funnel,
    pub response: Response,
    pub automation: Automation,
    pub quality: Quality,
    pub incidents: Vec<PriorityRow>,
    /// The tuning advisor's suggestions for the period, when asked for (`vakt report --tune`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestions: Option<Vec<crate::tune::Suggestion>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Headline {
    pub events: i64,
    pub dropped: i64,
    pub alerts: i64,
    pub actions: i64,
    pub notifications: i64,
    pub pages: i64,
    pub incidents: i64,
    pub mtta_median: Option<f64>,
    pub mttr_median: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Volume {
    /// `hour` for periods up to two days, else `day` (in the viewer's time zone).
    pub bucket: &'static str,
    pub buckets: Vec<Bucket>,
    pub by_category: BTreeMap<String, i64>,
    pub by_severity: BTreeMap<String, i64>,
    /// Events per hour of the day (0-23) and per day of the week (Monday first), local.
    pub hour_of_day: Vec<i64>,
    pub day_of_week: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Local start, `2026-12-01` or `2026-12-01 14:00`.
    pub start: String,
    pub events: i64,
    pub dropped: i64,
    /// The bucket's events by severity (after the rules), severities with none left out.
    pub by_severity: BTreeMap<String, i64>,
}

/// Noise reduction, step by step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Funnel {
    pub events: i64,
    pub kept: i64,
    pub alerts: i64,
    pub actions: i64,
    pub suppressed: i64,
    pub notifications: i64,
    pub pages: i64,
    pub incidents: i64,
    /// Kept events that updated an alert instead of opening one.
    pub dedup_pct: Option<f64>,
    pub dropped_pct: Option<f64>,
    /// Decided actions held back (silence, window, flapping) or skipped at dispatch
    /// (inhibition, throttling, cooldown).
    pub suppressed_pct: Option<f64>,
    pub events_per_alert: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Times {
    pub count: usize,
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub p90: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ResponseRow {
    pub key: String,
    pub alerts: usize,
    pub mtta: Times,
    pub mttr: Times,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Response {
    pub overall: ResponseRow,
    pub by_service: Vec<ResponseRow>,
    pub by_team: Vec<ResponseRow>,
    pub by_category: Vec<ResponseRow>,
    pub by_severity: Vec<ResponseRow>,
    pub ack_target_secs: i64,
    /// Of acknowledged alerts, the share acknowledged within the target.
    pub acked_within_target_pct: Option<f64>,
    pub escalations: Escalations,
    /// Pages to each person (sent or on their way, not failed), by the local hour they
    /// were decided (most interrupted first).
    pub interruptions: Vec<Interruptions>,
}

/// Alerts of the period an escalation paged for, and how far each had climbed when
/// someone acknowledged it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Escalations {
    /// Alerts with at least one page.
    pub alerts: i64,
    pub pages: i64,
    /// Acknowledged after the page of step N (1-based) and before any later step's.
    pub acked_at_step: BTreeMap<u32, i64>,
    /// Paged, never acknowledged (resolved by themselves or still open).
    pub never_acked: i64,
}

/// One person's pages in the period, by the local hour they came in.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Interruptions {
    pub user: String,
    pub pages: i64,
    /// Weekdays within the business hours.
    pub business: i64,
    /// Within the sleep hours, any day.
    pub sleep: i64,
    /// The rest: evenings, weekends.
    pub off: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ActionRow {
    pub action: String,
    pub kind: String,
    pub decided: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
    pub suppressed: i64,
    pub pending: i64,
    pub success_pct: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Automation {
    pub actions: Vec<ActionRow>,
    pub resolved: i64,
    /// Resolved by an event, never acknowledged, after a command ran for it (step 6).
    pub resolved_by_automation: i64,
    /// Resolved before anyone acknowledged them.
    pub resolved_before_ack: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertLine {
    pub id: String,
    pub resource: String,
    pub check: String,
    pub severity: String,
    pub status: String,
    pub first_seen: DateTime<Utc>,
    pub events: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Quality {
    pub noisy_sources: Vec<(String, i64)>,
    pub noisy_checks: Vec<(String, i64)>,
    /// Alerts of the period that took the most events.
    pub busiest_alerts: Vec<AlertLine>,
    /// Unresolved the longest (now).
    pub standing: Vec<AlertLine>,
    pub flapping: Vec<AlertLine>,
    /// Alerts that re-opened in the period: how often, and those that did most.
    pub reopens: i64,
    pub reopened_alerts: i64,
    pub reopened: Vec<(AlertLine, i64)>,
    /// Sources that sent events in the period before and none in this one.
    pub silent_sources: Vec<(String, i64)>,
    /// Heartbeats missing now: what stopped reporting.
    pub heartbeats_missing: Vec<HeartbeatLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatLine {
    pub name: String,
    pub resource: String,
    pub last_seen: DateTime<Utc>,
    pub interval_secs: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PriorityRow {
    pub priority: u8,
    pub count: usize,
    pub resolved: usize,
    pub time_to_resolve: Times,
    pub alerts_per_incident: Option<f64>,
}

/// Builds the report; `progress` hears how many alerts each page read.
pub async fn build(
    store: &dyn Store,
    pipeline: &Pipeline,
    request: &Request,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Report, StoreError> {
    let length = request.until - request.since;
    let before = Request {
        since: request.since - length,
        until: request.since,
        ..request.clone()
    };
    let (previous, sources_before) = report_of(store, pipeline, &before, &mut |_| {}).await?;
    let (mut report, sources) = report_of(store, pipeline, request, progress).await?;
    report.previous = previous.headline;
    let mut silent: Vec<(String, i64)> = sources_before
        .into_iter()
        .filter(|(source, _)| !sources.contains_key(source))
        .collect();
    silent.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    silent.truncate(TOP * 2);
    report.quality.silent_sources = silent;
    report.quality.heartbeats_missing = store
        .heartbeats()
        .await?
        .into_iter()
        .filter(|h| h.missing)
        .map(|h| HeartbeatLine {
            name: h.name,
            resource: h.resource,
            last_seen: h.last_seen,
            interval_secs: h.interval_secs,
        })
        .collect();
    let reopens = store
        .reopens(
            request.since,
            request.until,
            u32::try_from(TOP).unwrap_or(10),
        )
        .await?;
    let ids: Vec<&str> = reopens.top.iter().map(|(id, _)| id.as_str()).collect();
    let found = store.alerts_by_id(&ids).await?;
    report.quality.reopens = reopens.reopens;
    report.quality.reopened_alerts = reopens.alerts;
    report.quality.reopened = reopens
        .top
        .iter()
        .filter_map(|(id, n)| found.iter().find(|a| &a.id == id).map(|a| (line(a), *n)))
        .collect();
    report.quality.standing = store
        .standing_alerts(u32::try_from(TOP).unwrap_or(10))
        .await?
        .iter()
        .map(line)
        .collect();
    report.quality.flapping = store
        .flapping_alerts(u32::try_from(TOP).unwrap_or(10))
        .await?
        .iter()
        .map(line)
        .collect();
    Ok(report)
}

fn line(alert: &Alert) -> AlertLine {
    AlertLine {
        id: alert.id.clone(),
        resource: alert.resource.clone(),
        check: alert.check.clone(),
        severity: alert.severity.as_str().to_owned(),
        status: alert.status.as_str().to_owned(),
        first_seen: alert.first_seen,
        events: alert.count,
    }
}

fn pct(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

fn top(counts: BTreeMap<String, i64>) -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(TOP);
    all
}

/// Mean, median and 90th percentile of `values` (nearest rank).
pub fn times(mut values: Vec<f64>) -> Times {
    if values.is_empty() {
        return Times::default();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = |q: f64| values[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Times {
        count: n,
        mean: Some(values.iter().sum::<f64>() / n as f64),
        median: Some(rank(0.5)),
        p90: Some(rank(0.9)),
    }
}

/// Acknowledge and resolve times of a group of alerts, collected as pages are read.
#[derive(Default)]
struct Group {
    alerts: usize,
    ack: Vec<f64>,
    resolve: Vec<f64>,
}

impl Group {
    fn add(&mut self, alert: &Alert) {
        self.alerts += 1;
        if let Some(at) = alert.acknowledged_at {
            self.ack
                .push((at - alert.first_seen).num_milliseconds().max(0) as f64 / 1000.0);
        }
        if let (AlertStatus::Resolved, Some(at)) = (alert.status, alert.resolved_at) {
            self.resolve
                .push((at - alert.first_seen).num_milliseconds().max(0) as f64 / 1000.0);
        }
    }

    fn row(self, key: String) -> ResponseRow {
        ResponseRow {
            key,
            alerts: self.alerts,
            mtta: times(self.ack),
            mttr: times(self.resolve),
        }
    }
}

fn rows(groups: BTreeMap<String, Group>) -> Vec<ResponseRow> {
    let mut rows: Vec<ResponseRow> = groups.into_iter().map(|(k, g)| g.row(k)).collect();
    rows.sort_by(|a, b| b.alerts.cmp(&a.alerts).then_with(|| a.key.cmp(&b.key)));
    rows
}

/// Whether a local time falls in business, sleep or off hours.
fn interruption(request: &Request, at: DateTime<Utc>) -> (bool, bool) {
    let local = at.with_timezone(&request.tz);
    let weekday = local.weekday().num_days_from_monday() < 5;
    let sleep = within(request.sleep_hours, local.hour());
    let business = !sleep && weekday && within(request.business_hours, local.hour());
    (business, sleep)
}

/// The report of one period, and the events per source in it (for silent sources).
async fn report_of(
    store: &dyn Store,
    pipeline: &Pipeline,
    request: &Request,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<(Report, BTreeMap<String, i64>), StoreError> {
    let tz = request.tz;
    // Volume, from the rollup.
    let hourly = (request.until - request.since) <= chrono::Duration::days(2);
    let mut buckets: BTreeMap<String, (i64, i64, BTreeMap<String, i64>)> = BTreeMap::new();
    let mut volume = Volume {
        bucket: if hourly { "hour" } else { "day" },
        hour_of_day: vec![0; 24],
        day_of_week: vec![0; 7],
        ..Volume::default()
    };
    let (mut sources, mut checks): (BTreeMap<String, i64>, BTreeMap<String, i64>) =
        (BTreeMap::new(), BTreeMap::new());
    let (mut events, mut dropped) = (0i64, 0i64);
    for row in store.event_volume(request.since, request.until).await? {
        let local = row.hour.with_timezone(&tz);
        let key = if hourly {
            local.format("%Y-%m-%d %H:00").to_string()
        } else {
            local.format("%Y-%m-%d").to_string()
        };
        let bucket = buckets.entry(key).or_default();
        bucket.0 += row.events;
        *bucket
            .2
            .entry(row.severity.as_str().to_owned())
            .or_default() += row.events;
        events += row.events;
        if row.dropped {
            bucket.1 += row.events;
            dropped += row.events;
        }
        volume.hour_of_day[local.hour() as usize] += row.events;
        volume.day_of_week[local.weekday().num_days_from_monday() as usize] += row.events;
        *volume
            .by_category
            .entry(row.category.as_str().to_owned())
            .or_default() += row.events;
        *volume
            .by_severity
            .entry(row.severity.as_str().to_owned())
            .or_default() += row.events;
        *sources.entry(row.source).or_default() += row.events;
        *checks.entry(row.check).or_default() += row.events;
    }
    // Every hour or day of the period, empty ones too, so the time axis is true.
    let mut keys: Vec<String> = Vec::new();
    let mut at = request
        .since
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap_or(request.since);
    while at < request.until {
        let local = at.with_timezone(&tz);
        let key = if hourly {
            local.format("%Y-%m-%d %H:00").to_string()
        } else {
            local.format("%Y-%m-%d").to_string()
        };
        if keys.last() != Some(&key) {
            keys.push(key);
        }
        at += chrono::Duration::hours(1);
    }
    volume.buckets = keys
        .into_iter()
        .map(|start| {
            let (events, dropped, by_severity) = buckets.remove(&start).unwrap_or_default();
            Bucket {
                start,
                events,
                dropped,
                by_severity,
            }
        })
        .collect();

    // Pages: who was interrupted when, and the steps each alert climbed.
    let mut people: BTreeMap<String, Interruptions> = BTreeMap::new();
    let mut climbed: std::collections::HashMap<String, Vec<(DateTime<Utc>, u32)>> =
        std::collections::HashMap::new();
    let mut escalations = Escalations::default();
    for sent in store.report_pages(request.since, request.until).await? {
        if matches!(
            sent.status,
            ActionStatus::Skipped | ActionStatus::Suppressed
        ) {
            continue;
        }
        escalations.pages += 1;
        climbed
            .entry(sent.alert_id.clone())
            .or_default()
            .push((sent.decided_at, sent.page.step));
        // Sent or on its way: a failed page interrupted nobody.
        if let (Some(user), false) = (&sent.page.user, sent.status == ActionStatus::Failed) {
            let person = people.entry(user.clone()).or_insert_with(|| Interruptions {
                user: user.clone(),
                ..Interruptions::default()
            });
            person.pages += 1;
            match interruption(request, sent.decided_at) {
                (true, _) => person.business += 1,
                (_, true) => person.sleep += 1,
                _ => person.off += 1,
            }
        }
    }
    let mut interruptions: Vec<Interruptions> = people.into_values().collect();
    interruptions.sort_by(|a, b| b.pages.cmp(&a.pages).then_with(|| a.user.cmp(&b.user)));

    // Alerts: response times, automation, the busiest.
    let commands: BTreeSet<&str> = pipeline
        .actions()
        .iter()
        .filter(|(_, a)| matches!(a, ActionConfig::Exec { .. }))
        .map(|(name, _)| name.as_str())
        .collect();
    let mut overall = Group::default();
    let mut by: [BTreeMap<String, Group>; 4] = Default::default();
    let mut automation = Automation::default();
    let mut busiest: Vec<AlertLine> = Vec::new();
    let mut alerts = 0i64;
    let (mut acked, mut on_target) = (0i64, 0i64);
    let mut after: Option<String> = None;
    loop {
        let page = store
            .report_alerts(request.since, request.until, after.as_deref(), PAGE)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id.clone());
        progress(page.len() as u64);
        for alert in &page {
            alerts += 1;
            overall.add(alert);
            let keys = [
                alert.service.clone().unwrap_or_else(|| "(none)".into()),
                alert
                    .labels
                    .get("team")
                    .cloned()
                    .unwrap_or_else(|| "(none)".into()),
                alert.category.as_str().to_owned(),
                alert.severity.as_str().to_owned(),
            ];
            for (groups, key) in by.iter_mut().zip(keys) {
                groups.entry(key).or_default().add(alert);
            }
            if let Some(steps) = climbed.get(&alert.id) {
                escalations.alerts += 1;
                match alert.acknowledged_at {
                    Some(at) => {
                        let step = steps
                            .iter()
                            .filter(|(paged, _)| *paged <= at)
                            .map(|(_, step)| *step)
                            .max()
                            .unwrap_or(0);
                        *escalations.acked_at_step.entry(step).or_default() += 1;
                    }
                    None => escalations.never_acked += 1,
                }
            }
            if let Some(at) = alert.acknowledged_at {
                acked += 1;
                on_target +=
                    i64::from((at - alert.first_seen).num_seconds() <= request.ack_target_secs);
            }
            if alert.status == AlertStatus::Resolved {
                automation.resolved += 1;
                if alert.acknowledged_at.is_none() {
                    automation.resolved_before_ack += 1;
                    if alert.resolved_by.as_deref() == Some(vakt_core::alert::PIPELINE_ACTOR)
                        && alert
                            .handling
                            .actions
                            .iter()
                            .any(|a| commands.contains(a.as_str()))
                    {
                        automation.resolved_by_automation += 1;
                    }
                }
            }
            busiest.push(line(alert));
            if busiest.len() > TOP * 4 {
                busiest.sort_by_key(|a| std::cmp::Reverse(a.events));
                busiest.truncate(TOP);
            }
        }
        tokio::task::yield_now().await;
    }
    busiest.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.id.cmp(&b.id)));
    busiest.truncate(TOP);
    let [service, team, category, severity] = by;
    let overall = overall.row("all".into());
    let response = Response {
        ack_target_secs: request.ack_target_secs,
        acked_within_target_pct: pct(on_target, acked),
        by_service: rows(service),
        by_team: rows(team),
        by_category: rows(category),
        by_severity: rows(severity),
        overall,
        escalations,
        interruptions,
    };

    // Actions.
    let mut per_action: BTreeMap<(String, String), ActionRow> = BTreeMap::new();
    let (mut decided, mut held, mut notifications, mut pages) = (0i64, 0i64, 0i64, 0i64);
    for count in store.action_counts(request.since, request.until).await? {
        let row = per_action
            .entry((count.action.clone(), count.kind.clone()))
            .or_insert_with(|| ActionRow {
                action: count.action.clone(),
                kind: count.kind.clone(),
                ..ActionRow::default()
            });
        row.decided += count.count;
        decided += count.count;
        match count.status {
            ActionStatus::Succeeded => row.succeeded += count.count,
            ActionStatus::Failed => row.failed += count.count,
            ActionStatus::Skipped => row.skipped += count.count,
            ActionStatus::Suppressed => row.suppressed += count.count,
            ActionStatus::Pending | ActionStatus::Running => row.pending += count.count,
        }
        if matches!(
            count.status,
            ActionStatus::Skipped | ActionStatus::Suppressed
        ) {
            held += count.count;
        }
        if count.paged {
            pages += count.count;
        } else if count.kind != "exec" && count.status == ActionStatus::Succeeded {
            notifications += count.count;
        }
    }
    automation.actions = per_action
        .into_values()
        .map(|mut row| {
            row.success_pct = pct(row.succeeded, row.succeeded + row.failed);
            row
        })
        .collect();

    // Incidents.
    let mut priorities: BTreeMap<u8, (usize, Vec<f64>, i64)> = BTreeMap::new();
    let found = store.incident_times(request.since, request.until).await?;
    for incident in &found {
        let entry = priorities.entry(incident.priority).or_default();
        entry.0 += 1;
        entry.2 += incident.alerts;
        if let Some(at) = incident.resolved_at {
            entry
                .1
                .push((at - incident.opened_at).num_milliseconds().max(0) as f64 / 1000.0);
        }
    }
    let incidents: Vec<PriorityRow> = priorities
        .into_iter()
        .map(|(priority, (count, resolved, alerts))| PriorityRow {
            priority,
            count,
            resolved: resolved.len(),
            time_to_resolve: times(resolved),
            alerts_per_incident: (count > 0).then(|| alerts as f64 / count as f64),
        })
        .collect();

    let kept = events - dropped;
    let funnel = Funnel {
        events,
        kept,
        alerts,
        actions: decided,
        suppressed: held,
        notifications,
        pages,
        incidents: found.len() as i64,
        dedup_pct: pct(kept - alerts, kept).map(|p| p.max(0.0)),
        dropped_pct: pct(dropped, events),
        suppressed_pct: pct(held, decided),
        events_per_alert: (alerts > 0).then(|| kept as f64 / alerts as f64),
    };
    let headline = Headline {
        events,
        dropped,
        alerts,
        actions: decided,
        notifications,
        pages,
        incidents: found.len() as i64,
        mtta_median: response.overall.mtta.median,
        mttr_median: response.overall.mttr.median,
    };
    let noisy_sources = top(sources.clone());
    Ok((
        Report {
            since: request.since,
            until: request.until,
            timezone: tz.name().to_owned(),
            business_hours: request.business_hours,
            sleep_hours: request.sleep_hours,
            headline,
            previous: Headline::default(),
            volume,
            funnel,
            response,
            automation,
            quality: Quality {
                noisy_sources,
                noisy_checks: top(checks),
                busiest_alerts: busiest,
                ..Quality::default()
            },
            incidents,
            suggestions: None,
        },
        sources,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_since_or_from_to_and_say_what_is_wrong() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let day = chrono::Duration::days(1);
        assert_eq!(period(None, None, None, day, now), Ok((now - day, now)));
        assert_eq!(
            period(Some("2h"), None, None, day, now),
            Ok((now - chrono::Duration::hours(2), now))
        );
        let from = "2026-12-01T00:00:00Z";
        let (since, until) = period(None, Some(from), None, day, now).unwrap_or_default();
        assert_eq!(
            (since.to_rfc3339(), until),
            ("2026-12-01T00:00:00+00:00".into(), now)
        );
        for (since, from, to, says) in [
            (Some("1d"), Some(from), None, "give since or from, not both"),
            (Some("1d"), None, Some(from), "to goes with from"),
            (None, None, Some(from), "to needs from"),
            (None, Some(from), Some(from), "to must be after from"),
            (
                Some("0s"),
                None,
                None,
                "since \"0s\": between 1s and 10 years",
            ),
            (
                None,
                Some("monday"),
                None,
                "from \"monday\": expected RFC 3339",
            ),
        ] {
            let error = period(since, from, to, day, now).err().unwrap_or_default();
            assert!(error.starts_with(says), "{error}");
        }
    }

    #[test]
    fn hours_wrap_past_midnight_and_say_what_is_wrong() {
        assert_eq!(hours("business_hours", "9-17"), Ok((9, 17)));
        assert_eq!(hours("sleep_hours", "22-7"), Ok((22, 7)));
        assert_eq!(hours("sleep_hours", "0-24"), Ok((0, 0)));
        assert!(within((9, 17), 9) && within((9, 17), 16) && !within((9, 17), 17));
        assert!(within((22, 7), 23) && within((22, 7), 3) && !within((22, 7), 7));
        assert!(within((0, 0), 12), "0-24 is the whole day");
        for bad in ["9", "9-9", "a-17", "9-25"] {
            let error = hours("business_hours", bad).err().unwrap_or_default();
            assert!(error.starts_with("business_hours"), "{error}");
        }
    }

    #[test]
    fn times_are_mean_median_and_nearest_rank_p90() {
        let t = times(vec![10.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(t.count, 10);
        assert_eq!(t.mean, Some(5.5));
        assert_eq!(t.median, Some(5.0));
        assert_eq!(t.p90, Some(9.0));
        assert_eq!(times(vec![7.0]).p90, Some(7.0));
        assert!(times(Vec::new()).median.is_none());
    }
}
