//! Replay (the guide's step 9): stored events, in the order they were stored and with their
//! receipt times, through two configurations, the one in force (base) and a changed one
//! (new), with nothing written and nothing sent; what would have been different, counted
//! and listed.
//!
//! Both runs start from the same input: each stored event as it arrived (`received`, the
//! values rules changed, put back) and the alerts the run itself opened, so what differs is
//! the configuration's doing alone. Neither run sees silences or operator changes (acks,
//! resolves by hand): a replay compares rules, not history. Memory stays bounded whatever
//! the period: events are read a page at a time, each run forgets alerts that can no
//! longer take events, and at most `Request::list` differences are kept (all are counted).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use vakt_core::matcher::Matcher;
use vakt_core::replay::{Change, Run, Tally, compare, compare_record};
use vakt_core::{EventInput, Pipeline, TraceEntry};
use vakt_store::{Store, StoreError};

/// Events read per page.
const PAGE: u32 = 5_000;
/// Differences listed unless asked otherwise; all are counted.
pub const LIST_DEFAULT: usize = 100;
/// The most differences one replay lists.
pub const LIST_MAX: usize = 10_000;

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only events all of these match (`Event::match_labels`).
    pub filter: Vec<Matcher>,
    /// How many differences to list.
    pub list: usize,
    /// List only this event, different or not, with both traces.
    pub event: Option<String>,
}

/// What a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The base is the events as stored (no base configuration): `base` counts only events
    /// and dropped, and traces of the base are the stored ones' (not kept for a replay).
    pub base_is_record: bool,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Events read from the store, and of them replayed (the filter's matches).
    pub read: u64,
    pub replayed: u64,
    /// Events whose outcome differs, and how often each kind of change occurs.
    pub different: u64,
    pub changes: BTreeMap<&'static str, u64>,
    pub base: Tally,
    pub new: Tally,
    /// Events each rule of the new configuration matched (rules that matched none absent).
    pub rule_hits: BTreeMap<String, u64>,
    /// The first `Request::list` differences, in replay order.
    pub differences: Vec<Difference>,
}

/// One event whose outcome differs (or the event `Request::event` asked for).
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub event_id: String,
    pub received_at: DateTime<Utc>,
    pub resource: String,
    pub check: String,
    pub summary: String,
    pub changes: Vec<Change>,
    pub base_trace: Vec<TraceEntry>,
    pub new_trace: Vec<TraceEntry>,
}

/// What the replay compares the new configuration with.
#[derive(Clone, Copy)]
pub enum Base<'a> {
    /// Another configuration, replayed beside it.
    Config(&'a Pipeline),
    /// The events as they were stored: dropped, category, severity, fingerprint.
    Record,
}

/// One page's events through one run, in order.
fn run_page(
    run: &mut Run<'_>,
    page: &[vakt_core::pipeline::EventRecord],
    inputs: Vec<EventInput>,
) -> Vec<vakt_core::Correlated> {
    page.iter()
        .zip(inputs)
        .map(|(record, input)| {
            // The source is given, so the channel only names itself in the trace.
            let prepared = run.prepare(input, "replay", record.event.received_at);
            run.correlate_into(prepared, record.id.clone())
        })
        .collect()
}

/// Replays `request`'s events through `new` and compares each outcome with `base`;
/// `progress` hears how many events each page read.
pub async fn replay(
    store: &std::sync::Arc<dyn Store>,
    base: Base<'_>,
    new: &Pipeline,
    request: &Request,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Report, StoreError> {
    let mut base_run = match base {
        Base::Config(pipeline) => Some(Run::new(pipeline, "base")),
        Base::Record => None,
    };
    let mut new_run = Run::new(new, "new");
    let mut report = Report {
        base_is_record: base_run.is_none(),
        since: request.since,
        until: request.until,
        read: 0,
        replayed: 0,
        different: 0,
        changes: BTreeMap::new(),
        base: Tally::default(),
        new: Tally::default(),
        rule_hits: BTreeMap::new(),
        differences: Vec::new(),
    };
    let list = request.list.min(LIST_MAX);
    // The next page is read while this one runs: reading and running take about as long.
    let (since, until) = (request.since, request.until);
    let fetch = |after: Option<String>| {
        let store = std::sync::Arc::clone(store);
        tokio::spawn(async move {
            store
                .replay_events(since, until, after.as_deref(), PAGE)
                .await
        })
    };
    let mut next = fetch(None);
    loop {
        let page = next
            .await
            .map_err(|e| StoreError::Other(format!("reading events stopped: {e}")))??;
        let Some(last) = page.last() else {
            break;
        };
        next = fetch(Some(last.id.clone()));
        let last_at = last.event.received_at;
        let read = page.len() as u64;
        report.read += read;
        let page: Vec<_> = page
            .into_iter()
            .filter(|record| {
                request.filter.is_empty() || {
                    let labels = record.event.match_labels();
                    request.filter.iter().all(|m| m.matches(&labels))
                }
            })
            .collect();
        report.replayed += page.len() as u64;
        let inputs: Vec<EventInput> = page
            .iter()
            .map(|record| EventInput::replayed(&record.event, record.received.as_ref()))
            .collect();
        // The two runs are independent: each on a core of its own.
        let base_inputs = base_run.as_ref().map(|_| inputs.clone());
        let (base_outcomes, outcomes) = vakt_store::blocking(|| {
            std::thread::scope(|scope| {
                let page = &page;
                let base = base_run
                    .as_mut()
                    .zip(base_inputs)
                    .map(|(run, inputs)| scope.spawn(move || run_page(run, page, inputs)));
                let new = run_page(&mut new_run, page, inputs);
                (base.map(|b| b.join()), new)
            })
        });
        let base_outcomes = match base_outcomes {
            Some(Ok(outcomes)) => outcomes.into_iter().map(Some).collect(),
            Some(Err(_)) => {
                return Err(StoreError::Other(
                    "the base configuration's run stopped unexpectedly".into(),
                ));
            }
            None => vec![None; page.len()],
        };
        for ((record, outcome), base_outcome) in page.into_iter().zip(outcomes).zip(base_outcomes) {
            report.new.add(&outcome);
            let changes = match &base_outcome {
                Some(base_outcome) => {
                    report.base.add(base_outcome);
                    compare(base_outcome, &outcome)
                }
                None => {
                    report.base.events += 1;
                    report.base.dropped += u64::from(record.dropped);
                    compare_record(&record, &outcome)
                }
            };
            if !changes.is_empty() {
                report.different += 1;
                for change in &changes {
                    *report.changes.entry(change.what).or_default() += 1;
                }
            }
            let listed = match &request.event {
                Some(id) => *id == record.id,
                None => !changes.is_empty() && report.differences.len() < list,
            };
            if listed {
                let event = &record.event;
                report.differences.push(Difference {
                    event_id: record.id.clone(),
                    received_at: event.received_at,
                    resource: event.resource.clone(),
                    check: event.check.clone(),
                    summary: event.summary.clone(),
                    changes,
                    base_trace: base_outcome.map(|o| o.record.trace).unwrap_or_default(),
                    new_trace: outcome.record.trace,
                });
            }
        }
        if let Some(run) = base_run.as_mut() {
            run.forget_settled(last_at);
        }
        new_run.forget_settled(last_at);
        progress(read);
        // A page is CPU work between two reads: let other tasks run.
        tokio::task::yield_now().await;
    }
    report.rule_hits = new_run
        .rule_hits()
        .map(|(rule, hits)| (rule.to_owned(), hits))
        .collect();
    Ok(report)
}
