//! `vakt report` (a period's report from the database, as JSON, CSV or one HTML file) and
//! `vakt tune` (suggestions from the period's history).

use anyhow::{Context, anyhow};

use super::access::{config, open_for, runtime};
use crate::cli::{Failure, ReportArgs, TuneArgs};
use crate::report::Format;

pub fn run(args: ReportArgs) -> Result<(), Failure> {
    let format =
        Format::parse(&args.format).map_err(|e| Failure::user(anyhow!("--format: {e}")))?;
    let asked = crate::report::Asked {
        since: args.since.as_deref(),
        from: args.from.as_deref(),
        to: args.to.as_deref(),
        tz: args.tz.as_deref(),
        ack_target: args.ack_target.as_deref(),
        business_hours: args.business_hours.as_deref(),
        sleep_hours: args.sleep_hours.as_deref(),
    };
    let request = crate::report::request(&asked, chrono::Utc::now())
        .map_err(|e| Failure::user(anyhow!("--{e}")))?;
    let config = config(&args.storage)?;
    // The advisor replays the period's events: two threads, as `vakt tune`.
    let runtime = if args.tune {
        super::access::threaded_runtime(Some(2))?
    } else {
        runtime()?
    };
    let name = config
        .path
        .as_ref()
        .map_or_else(|| "vakt.toml".to_owned(), |p| p.display().to_string());
    let report = runtime.block_on(async {
        let store = open_for(&config).await?;
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} {msg} {per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message("alerts read");
        let mut progress = |read: u64| bar.inc(read);
        let report = crate::report::build(&*store, &config.pipeline, &request, &mut progress).await;
        let advice = if args.tune && report.is_ok() {
            bar.set_position(0);
            bar.set_message("events replayed for the suggestions");
            let period = match (&args.since, &args.from) {
                (Some(since), _) => format!("--since {since}"),
                (None, Some(_)) => format!(
                    "--from {} --to {}",
                    request.since.to_rfc3339(),
                    request.until.to_rfc3339()
                ),
                (None, None) => "--since 30d".to_owned(),
            };
            let mut progress = |read: u64| bar.inc(read);
            Some(
                crate::tune::advise(
                    &store,
                    &config.pipeline,
                    &name,
                    &period,
                    request.since,
                    request.until,
                    &mut progress,
                )
                .await,
            )
        } else {
            None
        };
        let report = match (report, advice) {
            (Ok(mut report), Some(Ok(advice))) => {
                report.suggestions = Some(advice.suggestions);
                Ok(report)
            }
            (Ok(_), Some(Err(error))) => Err(error),
            (report, _) => report,
        };
        bar.finish_and_clear();
        store.close().await;
        report
            .with_context(|| format!("reading {}", config.location.describe()))
            .map_err(Failure::internal)
    })?;
    let text = format.render(&report).map_err(Failure::internal)?;
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(Failure::user),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

pub fn tune(args: TuneArgs) -> Result<(), Failure> {
    let (since, until) = crate::report::period(
        Some(&args.since),
        None,
        None,
        chrono::Duration::days(7),
        chrono::Utc::now(),
    )
    .map_err(|e| Failure::user(anyhow!("--{e}")))?;
    let config = config(&args.storage)?;
    let runtime = super::access::threaded_runtime(Some(2))?;
    let name = config
        .path
        .as_ref()
        .map_or_else(|| "vakt.toml".to_owned(), |p| p.display().to_string());
    let period = format!("--since {}", args.since);
    let advice = runtime.block_on(async {
        let store = open_for(&config).await?;
        let total = store
            .count_replay_events(Some(since), Some(until))
            .await
            .map_err(Failure::internal)?;
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut progress = |read: u64| bar.inc(read);
        let advice = crate::tune::advise(
            &store,
            &config.pipeline,
            &name,
            &period,
            since,
            until,
            &mut progress,
        )
        .await;
        bar.finish_and_clear();
        store.close().await;
        advice
            .with_context(|| format!("reading {}", config.location.describe()))
            .map_err(Failure::internal)
    })?;
    if args.json {
        let text = serde_json::to_string_pretty(&advice).map_err(Failure::internal)?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{} events and {} alerts since {}",
        advice.events,
        advice.alerts,
        advice.since.format("%Y-%m-%d %H:%M UTC")
    );
    if advice.suggestions.is_empty() {
        println!("no suggestion: nothing in the period points at a change");
        return Ok(());
    }
    for (n, s) in advice.suggestions.iter().enumerate() {
        println!(
            "\n{}. [{}] {}\n   evidence: {}\n   change:   {}\n   check:    {}",
            n + 1,
            s.kind,
            s.subject,
            s.evidence,
            s.change,
            s.replay
        );
    }
    Ok(())
}
