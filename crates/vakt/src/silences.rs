//! The silence board: the silences in force, as the decide stage and the dispatcher see
//! them. A write through the board changes only the silence written; a periodic refresh
//! reads only what changed since the last one (silences other nodes wrote) and drops the
//! silences that ended. Expired silences are never read by it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use vakt_core::silence::{ActiveSilences, Silence};
use vakt_store::{SilenceQuery, SilenceSet, Store, StoreError};

/// How often the board reads the silences again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// How far before its last look the board reads changes again: commits of other nodes that
/// were in flight, and their clocks' difference from this one.
const OVERLAP: chrono::Duration = chrono::Duration::seconds(60);

/// The silences in force; a change makes a new set sharing the unchanged silences.
pub struct SilenceBoard {
    store: Arc<dyn Store>,
    current: std::sync::RwLock<Arc<ActiveSilences>>,
    /// When the board last read the store; held across a read or write and its update, so a
    /// refresh cannot put back what a write just changed.
    seen: tokio::sync::Mutex<DateTime<Utc>>,
}

impl SilenceBoard {
    /// A board over `store`, with the silences in force now.
    pub async fn build(store: Arc<dyn Store>) -> Result<SilenceBoard, StoreError> {
        let now = Utc::now();
        let silences = store
            .silences(&SilenceQuery {
                set: SilenceSet::InForce,
                now,
                changed_since: None,
            })
            .await?;
        Ok(SilenceBoard {
            store,
            current: std::sync::RwLock::new(Arc::new(ActiveSilences::new(&silences, now))),
            seen: tokio::sync::Mutex::new(now),
        })
    }

    pub fn get(&self) -> Arc<ActiveSilences> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn apply(&self, changed: &[Silence], now: DateTime<Utc>) {
        let next = Arc::new(self.get().updated(changed, now));
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
    }

    /// Reads the silences written since the last look (by any node) and drops those that
    /// ended.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let mut seen = self.seen.lock().await;
        let now = Utc::now();
        let changed = self
            .store
            .silences(&SilenceQuery {
                set: SilenceSet::All,
                now,
                changed_since: Some(*seen - OVERLAP),
            })
            .await?;
        self.apply(&changed, now);
        *seen = now;
        Ok(())
    }

    /// Stores a silence and puts it in force for the next commit.
    pub async fn put(&self, silence: &Silence) -> Result<(), StoreError> {
        let _seen = self.seen.lock().await;
        self.store.put_silence(silence).await?;
        self.apply(std::slice::from_ref(silence), Utc::now());
        Ok(())
    }
    /// Keeps the board current until `stop`.
    pub fn spawn(self: &Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) -> JoinHandle<()> {
        let board = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                if let Err(error) = board.refresh().await {
                    tracing::warn!(%error, "cannot read the silences; the last known ones stay in force");
                }
            }
        })
    }
}
