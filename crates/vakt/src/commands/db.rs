//! `vakt db ...` and `vakt backup`: the database, worked on directly.

use anyhow::anyhow;

use super::access::{config, open_for, runtime};
use crate::cli::{BackupArgs, DbCommand, Failure};

pub fn db(command: DbCommand) -> Result<(), Failure> {
    runtime()?.block_on(async move {
        match command {
            DbCommand::Stats { storage, json } => {
                let store = open_for(&config(&storage)?).await?;
                let stats = store.table_stats().await.map_err(Failure::internal)?;
                store.close().await;
                if json {
                    let text = serde_json::to_string_pretty(&stats)
                        .map_err(|e| Failure::internal(anyhow!(e)))?;
                    println!("{text}");
                    return Ok(());
                }
                println!("{:<22} {:>12} {:>14}", "TABLE", "ROWS", "BYTES");
                let (mut rows, mut bytes) = (0, 0);
                for table in &stats {
                    rows += table.rows;
                    bytes += table.bytes.unwrap_or(0);
                    let size = table
                        .bytes
                        .map_or_else(|| "-".to_owned(), |b| b.to_string());
                    println!("{:<22} {:>12} {:>14}", table.table, table.rows, size);
                }
                println!("{:<22} {rows:>12} {bytes:>14}", "total");
                Ok(())
            }
            DbCommand::Prune { storage } => {
                let config = config(&storage)?;
                let store = open_for(&config).await?;
                let progress = indicatif::ProgressBar::new_spinner();
                progress.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {pos} rows removed {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                let (_stop, mut stopped) = tokio::sync::watch::channel(false);
                let mut each = |kind: vakt_store::PruneKind, removed: u64| {
                    progress.inc(removed);
                    progress.set_message(format!("({})", kind.as_str()));
                };
                let retention = crate::retention::RetentionConfig {
                    pause_ms: 0,
                    ..config.file.retention.clone()
                };
                let done = crate::retention::round(
                    &*store,
                    &retention,
                    chrono::Utc::now(),
                    &mut stopped,
                    &mut each,
                )
                .await;
                progress.finish_and_clear();
                store.close().await;
                let removed = done.map_err(Failure::internal)?;
                println!(
                    "removed {removed} rows; `vakt db vacuum` gives their space back to the disk"
                );
                Ok(())
            }
            DbCommand::Vacuum { storage } => {
                let store = open_for(&config(&storage)?).await?;
                let before = store.size_bytes().await.map_err(Failure::internal)?;
                let done = store.vacuum().await;
                let after = store.size_bytes().await.ok().flatten();
                store.close().await;
                done.map_err(Failure::internal)?;
                match (before, after) {
                    (Some(before), Some(after)) => {
                        println!("vacuumed: {before} bytes in use before, {after} after");
                    }
                    _ => println!("vacuumed"),
                }
                Ok(())
            }
        }
    })
}

pub fn backup(args: BackupArgs) -> Result<(), Failure> {
    runtime()?.block_on(async move {
        let config = config(&args.storage)?;
        if !matches!(config.location, vakt_store::Location::SqliteDir(_)) {
            return Err(Failure::user(anyhow!(
                "vakt backup copies the embedded SQLite database; back PostgreSQL up with pg_dump"
            )));
        }
        if args.file.exists() {
            return Err(Failure::user(anyhow!(
                "{} exists; a backup goes to a new file",
                args.file.display()
            )));
        }
        let store = open_for(&config).await?;
        let started = std::time::Instant::now();
        let done = store.backup(&args.file).await;
        store.close().await;
        done.map_err(Failure::internal)?;
        let size = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
        println!(
            "backed up {} to {} ({size} bytes, {:.1} s)",
            config.location.describe(),
            args.file.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
}
