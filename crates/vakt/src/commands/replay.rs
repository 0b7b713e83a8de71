//! `vakt replay`: stored events through a changed configuration, read from the database
//! directly, with a progress bar; exit 1 when something would have been different.

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use vakt_core::replay::Tally;

use super::access::{config, open_for};
use crate::cli::{Failure, ReplayArgs};
use crate::config::{Config, Overrides};
use crate::replay::{Base, Report, Request};

pub fn run(args: ReplayArgs) -> Result<(), Failure> {
    let new = config(&args.storage)?;
    let base = match &args.base {
        Some(path) => Some(Config::load(Some(path), &Overrides::default()).map_err(Failure::user)?),
        None => None,
    };
    let request = request(&args, Utc::now()).map_err(Failure::user)?;
    // Two threads: the next page is read while one runs.
    let runtime = super::access::threaded_runtime(Some(2))?;
    let report = runtime.block_on(async {
        let store = open_for(&new).await?;
        let total = store
            .count_replay_events(request.since, request.until)
            .await
            .map_err(Failure::internal)?;
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut progress = |read: u64| bar.inc(read);
        let against = match &base {
            Some(config) => Base::Config(&config.pipeline),
            None => Base::Record,
        };
        let mut report =
            crate::replay::replay(&store, against, &new.pipeline, &request, &mut progress).await;
        bar.finish_and_clear();
        // Against the record, one event's stored trace stands beside the new one.
        if let (Ok(report), None, Some(id)) = (&mut report, &base, &request.event)
            && let Some(listed) = report.differences.first_mut()
            && let Ok(Some(stored)) = store.event(id).await
        {
            listed.base_trace = stored.trace;
        }
        store.close().await;
        report
            .with_context(|| format!("reading events from {}", new.location.describe()))
            .map_err(Failure::internal)
    })?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(Failure::internal)?;
        println!("{text}");
    } else {
        let base = base.map_or_else(
            || "the events as stored (dropped, category, severity, fingerprint)".to_owned(),
            |c| c.name(),
        );
        print(&report, &base, &new.name(), &request);
    }
    if report.different > 0 {
        return Err(Failure::Found(format!(
            "{} of {} replayed events would be handled differently",
            report.different, report.replayed
        )));
    }
    Ok(())
}

/// **Boundary:** the period and filter as given on the command line.
fn request(args: &ReplayArgs, now: DateTime<Utc>) -> anyhow::Result<Request> {
    let (since, until) = crate::report::period(
        args.since.as_deref(),
        args.from.as_deref(),
        args.to.as_deref(),
        chrono::Duration::days(7),
        now,
    )
    .map_err(|e| anyhow!("--{e}"))?;
    let (since, until) = (Some(since), Some(until));
    let filter = match &args.filter {
        Some(text) => vakt_core::matcher::Matcher::parse_list(text)
            .map_err(|e| anyhow!("--filter {text:?}: {e}"))?,
        None => Vec::new(),
    };
    if args.list > crate::replay::LIST_MAX {
        return Err(anyhow!(
            "--list {}: at most {} differences are listed",
            args.list,
            crate::replay::LIST_MAX
        ));
    }
    Ok(Request {
        since,
        until,
        filter,
        list: args.list,
        event: args.event.clone(),
    })
}

fn print(report: &Report, base: &str, new: &str, request: &Request) {
    let when = |t: Option<DateTime<Utc>>, none: &str| {
        t.map_or_else(
            || none.to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
    };
    println!(
        "replayed {} of {} stored events ({} .. {})",
        report.replayed,
        report.read,
        when(report.since, "the first"),
        when(report.until, "now")
    );
    println!("base: {base}\nnew:  {new}\n");
    println!("{:<24} {:>10} {:>10} {:>10}", "", "BASE", "NEW", "CHANGE");
    // Against the record only events and dropped are known of the base.
    let known = !report.base_is_record;
    let row = |name: &str, b: u64, n: u64, b_known: bool| {
        if !b_known {
            println!("{name:<24} {:>10} {n:>10} {:>10}", "-", "");
            return;
        }
        let change = i128::from(n) - i128::from(b);
        let change = if change == 0 {
            String::new()
        } else {
            format!("{change:+}")
        };
        println!("{name:<24} {b:>10} {n:>10} {change:>10}");
    };
    let (b, n): (&Tally, &Tally) = (&report.base, &report.new);
    row(
        "events kept",
        b.events - b.dropped,
        n.events - n.dropped,
        true,
    );
    row("dropped", b.dropped, n.dropped, true);
    row("alerts opened", b.opened, n.opened, known);
    row("  reopened", b.reopened, n.reopened, known);
    row("  deduplicated into", b.deduplicated, n.deduplicated, known);
    row("  resolved", b.resolved, n.resolved, known);
    let actions = |t: &Tally| t.actions.values().sum::<u64>();
    row("actions decided", actions(b), actions(n), known);
    let names: std::collections::BTreeSet<&String> =
        b.actions.keys().chain(n.actions.keys()).collect();
    for name in names {
        let count = |t: &Tally| t.actions.get(name).copied().unwrap_or(0);
        row(&format!("  {name}"), count(b), count(n), known);
    }
    row("actions held back", b.suppressed, n.suppressed, known);
    row("escalations (pages)", b.escalations, n.escalations, known);
    row("incidents", b.incidents, n.incidents, known);
    println!();
    if report.different == 0 && request.event.is_none() {
        println!("no event would be handled differently");
        return;
    }
    if report.different > 0 {
        let kinds: Vec<String> = report
            .changes
            .iter()
            .map(|(what, count)| format!("{what} {count}"))
            .collect();
        println!(
            "{} events would be handled differently: {}\n",
            report.different,
            kinds.join(", ")
        );
    }
    if let Some(id) = &request.event {
        match report.differences.first() {
            Some(d) => side_by_side(d),
            None => println!("event {id} is not among the replayed events"),
        }
        return;
    }
    println!(
        "{:<26} {:<19} {:<28} WHAT: BASE -> NEW",
        "EVENT", "RECEIVED", "RESOURCE CHECK"
    );
    for d in &report.differences {
        let what: Vec<String> = d
            .changes
            .iter()
            .map(|c| format!("{}: {} -> {}", c.what, shown(&c.base), shown(&c.new)))
            .collect();
        println!(
            "{:<26} {:<19} {:<28} {}",
            d.event_id,
            d.received_at.format("%Y-%m-%d %H:%M:%S"),
            clip(&format!("{} {}", d.resource, d.check), 28),
            what.join("; ")
        );
    }
    if report.different > report.differences.len() as u64 {
        println!(
            "\n(listed {} of {}: --list N for more, --json for everything listed with both traces)",
            report.differences.len(),
            report.different
        );
    }
    println!("\n--event ID shows one event's outcome in both runs, trace by trace");
}

fn shown(value: &str) -> &str {
    if value.is_empty() { "none" } else { value }
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// One event in both runs: the changes, then each stage's decision and reason in both.
fn side_by_side(d: &crate::replay::Difference) {
    println!(
        "event {} received {} ({} {}: {})",
        d.event_id,
        d.received_at.format("%Y-%m-%d %H:%M:%S UTC"),
        d.resource,
        d.check,
        d.summary
    );
    if d.changes.is_empty() {
        println!("the same outcome in both runs");
    }
    for c in &d.changes {
        println!("  {}: {} -> {}", c.what, shown(&c.base), shown(&c.new));
    }
    println!("\nstage by stage (* where the runs differ):");
    let line = |e: &vakt_core::TraceEntry| {
        let mut text = format!("{} {}", e.decision, e.reason);
        if !e.rules.is_empty() {
            text.push_str(&format!(" [rules: {}]", e.rules.join(", ")));
        }
        text
    };
    for (b, n) in d.base_trace.iter().zip(&d.new_trace) {
        let (bl, nl) = (line(b), line(n));
        if bl == nl {
            println!(" {:<10} {bl}", b.stage.as_str());
        } else {
            println!("*{:<10}\n    base: {bl}\n    new:  {nl}", b.stage.as_str());
        }
    }
}
