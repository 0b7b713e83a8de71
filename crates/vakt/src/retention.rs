//! Retention: a background task that removes what has been kept long enough (`[retention]`),
//! in small batches with pauses between them, so the writer is never held for long and
//! ingest goes on while it runs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::task::JoinHandle;
use vakt_core::config::ConfigError;
use vakt_store::{PruneKind, Store};

/// `[retention]`: how long each kind of record is kept. A `*_days` of 0 keeps it forever.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Events and their traces.
    pub events_days: u32,
    /// Resolved alerts, with their timelines, actions, attempts and escalations.
    pub alerts_days: u32,
    /// Silences after they ended (Alertmanager keeps them 5 days).
    pub silences_days: u32,
    /// Closed incidents, with their timelines.
    pub incidents_days: u32,
    /// The audit log of writes.
    pub audit_days: u32,
    /// The embedded database's size (bytes in use) above which the oldest events go even
    /// before their age; 0 for no limit. Not for PostgreSQL, which keeps freed space.
    pub max_bytes: u64,
    /// How often the task looks.
    pub interval_secs: u64,
    /// Rows removed per transaction.
    pub batch: u32,
    /// Pause between two batches, for the writer's other work.
    pub pause_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            events_days: 30,
            alerts_days: 90,
            silences_days: 5,
            incidents_days: 365,
            audit_days: 365,
            max_bytes: 0,
            interval_secs: 60,
            batch: 1000,
            pause_ms: 20,
        }
    }
}

/// Most batches of one kind per round, so one kind cannot hold the task for ever.
const ROUND_BATCHES_MAX: u32 = 1000;

impl RetentionConfig {
    fn days(&self, kind: PruneKind) -> u32 {
        match kind {
            PruneKind::Events => self.events_days,
            PruneKind::Alerts => self.alerts_days,
            PruneKind::Silences => self.silences_days,
            PruneKind::Incidents => self.incidents_days,
            PruneKind::Audit => self.audit_days,
            // Sessions are done when they expire.
            PruneKind::Sessions => 1,
        }
    }

    /// What is older than this goes; `None` keeps `kind` forever.
    pub fn cutoff(&self, kind: PruneKind, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match (kind, self.days(kind)) {
            (_, 0) => None,
            (PruneKind::Sessions, _) => Some(now),
            (_, days) => Some(now - chrono::Duration::days(i64::from(days))),
        }
    }

    /// Checks the settings against each other and the reopen window (a resolved alert must
    /// outlive the window in which it can reopen).
    pub fn validate(&self, reopen_window_secs: u64, embedded: bool) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut error = |message: String| {
            errors.push(ConfigError {
                span: None,
                message,
            })
        };
        for (name, days) in [
            ("events_days", self.events_days),
            ("alerts_days", self.alerts_days),
            ("silences_days", self.silences_days),
            ("incidents_days", self.incidents_days),
            ("audit_days", self.audit_days),
        ] {
            if days > 36_500 {
                error(format!(
                    "retention.{name} = {days} is more than 100 years; 0 keeps for ever"
                ));
            }
        }
        if self.alerts_days > 0 && u64::from(self.alerts_days) * 86_400 <= reopen_window_secs {
            error(format!(
                "retention.alerts_days ({} days) must be longer than alerts.reopen_window_secs ({reopen_window_secs} s): a resolved alert may still reopen",
                self.alerts_days
            ));
        }
        if !(1..=86_400).contains(&self.interval_secs) {
            error("retention.interval_secs must be between 1 and 86400".into());
        }
        if !(1..=10_000).contains(&self.batch) {
            error("retention.batch must be between 1 and 10000 rows".into());
        }
        if self.pause_ms > 60_000 {
            error("retention.pause_ms must be at most 60000".into());
        }
        if self.max_bytes > 0 && !embedded {
            error("retention.max_bytes applies to the embedded SQLite database only; on PostgreSQL use the *_days settings".into());
        }
        errors
    }
}

/// What the task works with.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub config: crate::live::Live<RetentionConfig>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Runs rounds until `stop`.
pub fn spawn(deps: Deps, mut stop: tokio::sync::watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let config = deps.config.get();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(config.interval_secs)) => {}
                _ = stop.changed() => return,
            }
            let metrics = Arc::clone(&deps.metrics);
            let mut count = |kind: PruneKind, removed: u64| {
                metrics
                    .retention_pruned
                    .get_or_create(&crate::metrics::KindLabels {
                        kind: kind.as_str(),
                    })
                    .inc_by(removed);
            };
            if let Err(error) =
                round(&*deps.store, &config, Utc::now(), &mut stop, &mut count).await
            {
                tracing::warn!(%error, "retention: cannot remove old records now; trying again next round");
            }
        }
    })
}

/// One round: every kind past its age, then the oldest events while the database is over
/// its size. Returns the rows removed.
/// `removed` hears of every batch that removed something.
pub async fn round(
    store: &dyn Store,
    config: &RetentionConfig,
    now: DateTime<Utc>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    removed: &mut (dyn FnMut(PruneKind, u64) + Send),
) -> Result<u64, vakt_store::StoreError> {
    let mut total = 0;
    for kind in PruneKind::ALL {
        let Some(before) = config.cutoff(kind, now) else {
            continue;
        };
        let mut batches = 0;
        loop {
            let removed_now = store.prune(kind, before, config.batch).await?;
            if removed_now > 0 {
                removed(kind, removed_now);
            }
            total += removed_now;
            batches += 1;
            if removed_now < u64::from(config.batch)
                || batches >= ROUND_BATCHES_MAX
                || pause(config, stop).await
            {
                break;
            }
        }
    }
    if config.max_bytes > 0 {
        let mut over = 0;
        let mut batches = 0;
        while batches < ROUND_BATCHES_MAX
            && store
                .size_bytes()
                .await?
                .is_some_and(|b| b > config.max_bytes)
        {
            let batch = store.prune(PruneKind::Events, now, config.batch).await?;
            if batch > 0 {
                removed(PruneKind::Events, batch);
            }
            over += batch;
            batches += 1;
            if batch == 0 || pause(config, stop).await {
                break;
            }
        }
        if over > 0 {
            tracing::info!(
                removed = over,
                max_bytes = config.max_bytes,
                "retention: the database was over retention.max_bytes; removed the oldest events"
            );
        }
        total += over;
    }
    Ok(total)
}

/// Waits between batches; true when the server is stopping.
async fn pause(config: &RetentionConfig, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(config.pause_ms)) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
