//! `vakt report`: a period's report from the database, as JSON, CSV or one HTML file.

use anyhow::{Context, anyhow};

use super::access::{config, open_for, runtime};
use crate::cli::{Failure, ReportArgs};
use crate::report::Format;

pub fn run(args: ReportArgs) -> Result<(), Failure> {
    let format =
        Format::parse(&args.format).map_err(|e| Failure::user(anyhow!("--format: {e}")))?;
    let request = crate::report::request(
        args.since.as_deref(),
        args.from.as_deref(),
        args.to.as_deref(),
        args.tz.as_deref(),
        args.ack_target.as_deref(),
        chrono::Utc::now(),
    )
    .map_err(|e| Failure::user(anyhow!("--{e}")))?;
    let config = config(&args.storage)?;
    let report = runtime()?.block_on(async {
        let store = open_for(&config).await?;
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} alerts read {per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        let mut progress = |read: u64| bar.inc(read);
        let report = crate::report::build(&*store, &config.pipeline, &request, &mut progress).await;
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
