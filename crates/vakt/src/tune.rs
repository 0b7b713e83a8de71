//! The tuning advisor (the guide's step 9): suggestions drawn from a period's history, each
//! with the evidence behind it and the replay that shows what the change would do.
//!
//! What it looks at: every stored event of the period run through the configuration in
//! force (rules that matched nothing, rules that match most events), the period's alerts
//! (checks whose alerts resolve by themselves within minutes, sources whose alerts nobody
//! ever touches, checks that flap), escalation pages (steps that page the next person
//! although someone paged before them acknowledges), and silences (the same matchers
//! silenced again and again). It suggests; it changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use vakt_core::{AlertStatus, Pipeline};
use vakt_store::{SilenceQuery, SilenceSet, Store, StoreError};

/// Alerts of a check that resolved by themselves within this many seconds are "quick".
const QUICK_SECS: i64 = 300;
/// Fewest alerts (or silences) a suggestion rests on.
const EVIDENCE_MIN: u64 = 10;
const SILENCES_MIN: usize = 3;
/// Alerts read per page.
const PAGE: u32 = 5_000;

#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    /// `never-matched`, `matches-most`, `self-resolving`, `unattended-source`, `flapping`,
    /// `early-escalation`, `renewed-silence`.
    pub kind: &'static str,
    /// The rule, check, source or matchers it is about.
    pub subject: String,
    pub evidence: String,
    /// What to change.
    pub change: String,
    /// The command that shows what the change would have done.
    pub replay: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub events: u64,
    pub alerts: u64,
    pub suggestions: Vec<Suggestion>,
}

/// Per check or source, what its alerts did.
#[derive(Default)]
struct Seen {
    alerts: u64,
    quick: u64,
    untouched: u64,
    flapping: u64,
}

/// Counts, for each step after the first that paged for `alert`, whether the person who
/// acknowledged it had been paged by an earlier step: then that page came too early.
fn early_steps(
    alert: &vakt_core::Alert,
    pages: &[(String, u32, Option<String>)],
    steps: &mut BTreeMap<(String, u32), (u64, u64, Vec<f64>)>,
) {
    let mut seen: std::collections::BTreeSet<(&str, u32)> = Default::default();
    for (policy, step, _) in pages.iter().filter(|(_, step, _)| *step >= 2) {
        if !seen.insert((policy, *step)) {
            continue;
        }
        let entry = steps.entry((policy.clone(), *step)).or_default();
        entry.0 += 1;
        let earlier = pages.iter().any(|(p, s, user)| {
            p == policy && s < step && user.is_some() && *user == alert.acknowledged_by
        });
        if let (true, Some(at)) = (earlier, alert.acknowledged_at) {
            entry.1 += 1;
            entry
                .2
                .push((at - alert.first_seen).num_seconds().max(0) as f64 / 60.0);
        }
    }
}

/// Looks at `[since, until)`; `config` names the configuration in the replay commands and
/// `period` is how the commands give the period (`--since 7d`).
pub async fn advise(
    store: &Arc<dyn Store>,
    pipeline: &Pipeline,
    config: &str,
    period: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Advice, StoreError> {
    let replay_cmd = format!("vakt replay --base {config} --config CHANGED.toml {period}");
    let request = crate::replay::Request {
        since: Some(since),
        until: Some(until),
        list: 0,
        ..Default::default()
    };
    let run = crate::replay::replay(
        store,
        crate::replay::Base::Record,
        pipeline,
        &request,
        progress,
    )
    .await?;
    let mut suggestions = Vec::new();
    let events = run.replayed;
    for rule in pipeline.rules().rules().iter().filter(|r| r.enabled) {
        let hits = run.rule_hits.get(&*rule.name).copied().unwrap_or(0);
        let when = rule.when.as_deref().unwrap_or("(every event)");
        if hits == 0 && events > 0 {
            suggestions.push(Suggestion {
                kind: "never-matched",
                subject: format!("rule {:?}", &*rule.name),
                evidence: format!("matched none of the {events} events of the period"),
                change: format!("remove it, or fix its condition: {when}"),
                replay: replay_cmd.clone(),
            });
        } else if events >= EVIDENCE_MIN && hits * 2 > events && !rule.drop {
            suggestions.push(Suggestion {
                kind: "matches-most",
                subject: format!("rule {:?}", &*rule.name),
                evidence: format!(
                    "matched {hits} of {events} events ({:.0}%)",
                    hits as f64 * 100.0 / events as f64
                ),
                change: format!("narrow its condition: {when}"),
                replay: replay_cmd.clone(),
            });
        }
    }
    // Pages per alert: (policy, step, person), to see which steps page too early.
    let mut paged: std::collections::HashMap<String, Vec<(String, u32, Option<String>)>> =
        std::collections::HashMap::new();
    for sent in store.report_pages(since, until).await? {
        paged.entry(sent.alert_id).or_default().push((
            sent.page.policy,
            sent.page.step,
            sent.page.user,
        ));
    }
    // (policy, step) -> (alerts it paged for, of those acknowledged by someone an earlier
    // step had paged, minutes from the alert's opening to that acknowledgement).
    let mut steps: BTreeMap<(String, u32), (u64, u64, Vec<f64>)> = BTreeMap::new();
    let (mut checks, mut sources): (BTreeMap<String, Seen>, BTreeMap<String, Seen>) =
        Default::default();
    let mut alerts = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = store
            .report_alerts(since, until, after.as_deref(), PAGE)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id.clone());
        for alert in &page {
            alerts += 1;
            if let Some(pages) = paged.get(&alert.id) {
                early_steps(alert, pages, &mut steps);
            }
            let quick = alert.status == AlertStatus::Resolved
                && alert.acknowledged_at.is_none()
                && alert.resolved_by.as_deref() == Some(vakt_core::alert::PIPELINE_ACTOR)
                && alert
                    .resolved_at
                    .is_some_and(|at| (at - alert.first_seen).num_seconds() <= QUICK_SECS);
            let untouched = alert.acknowledged_at.is_none() && alert.assignee.is_none();
            for seen in [
                checks.entry(alert.check.clone()).or_default(),
                sources.entry(alert.source.clone()).or_default(),
            ] {
                seen.alerts += 1;
                seen.quick += u64::from(quick);
                seen.untouched += u64::from(untouched);
                seen.flapping += u64::from(alert.handling.flapping);
            }
        }
    }
    for (check, seen) in &checks {
        if seen.alerts >= EVIDENCE_MIN && seen.quick * 5 >= seen.alerts * 4 {
            suggestions.push(Suggestion {
                kind: "self-resolving",
                subject: format!("check {check:?}"),
                evidence: format!(
                    "{} of its {} alerts resolved by themselves within {} minutes, unacknowledged",
                    seen.quick,
                    seen.alerts,
                    QUICK_SECS / 60
                ),
                change: format!(
                    "wait before notifying (group its notifications with a group_wait), or drop it: a rule with when = 'check == \"{}\" && severity != \"ok\"'",
                    check.replace('"', "\\\"")
                ),
                replay: replay_cmd.clone(),
            });
        }
        if seen.flapping >= 3 {
            suggestions.push(Suggestion {
                kind: "flapping",
                subject: format!("check {check:?}"),
                evidence: format!("{} of its alerts flapped", seen.flapping),
                change: "a threshold with hysteresis at the source, or [alerts] flap settings that hold it back longer".into(),
                replay: replay_cmd.clone(),
            });
        }
    }
    for (source, seen) in &sources {
        if seen.alerts >= EVIDENCE_MIN * 2 && seen.untouched * 20 >= seen.alerts * 19 {
            suggestions.push(Suggestion {
                kind: "unattended-source",
                subject: format!("source {source:?}"),
                evidence: format!(
                    "nobody acknowledged or took {} of its {} alerts",
                    seen.untouched, seen.alerts
                ),
                change:
                    "route it to whoever owns it, lower its severity, or drop what nobody needs"
                        .into(),
                replay: replay_cmd.clone(),
            });
        }
    }
    for ((policy, step), (alerts, early, minutes)) in &steps {
        if *alerts >= EVIDENCE_MIN / 2 && early * 5 >= alerts * 4 {
            let median = crate::report::times(minutes.clone()).median.unwrap_or(0.0);
            suggestions.push(Suggestion {
                kind: "early-escalation",
                subject: format!("step {step} of escalation policy {policy:?}"),
                evidence: format!(
                    "it paged for {alerts} alerts; {early} of them were then acknowledged by someone an earlier step had paged (median {median:.0} min after the alert opened)"
                ),
                change: format!(
                    "give step {} more time before step {step} pages (its delay), or make the first steps reach people who can answer sooner",
                    step - 1
                ),
                replay: format!("vakt report {period} --format html (Escalations, Interruptions per person)"),
            });
        }
    }
    // Silences made again and again for the same matchers.
    let silences = store
        .silences(&SilenceQuery {
            set: SilenceSet::All,
            now: until,
            changed_since: Some(since),
        })
        .await?;
    let mut renewed: BTreeMap<String, usize> = BTreeMap::new();
    for silence in silences.iter().filter(|s| s.starts_at < until) {
        let mut matchers: Vec<String> = silence.matchers.iter().map(ToString::to_string).collect();
        matchers.sort();
        *renewed.entry(matchers.join(", ")).or_default() += 1;
    }
    for (matchers, count) in renewed {
        if count >= SILENCES_MIN {
            suggestions.push(Suggestion {
                kind: "renewed-silence",
                subject: format!("silences of {matchers}"),
                evidence: format!("{count} silences with the same matchers in the period"),
                change:
                    "a [[maintenance]] window with a schedule covers it without anyone remembering"
                        .into(),
                replay: replay_cmd.clone(),
            });
        }
    }
    Ok(Advice {
        since,
        until,
        events,
        alerts,
        suggestions,
    })
}
