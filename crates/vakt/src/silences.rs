//! The silence board: the silences in force, as the decide stage and the dispatcher see
//! them, kept current by writes through it and a periodic refresh (silences other nodes
//! wrote, and those that began or ended).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use vakt_core::silence::{ActiveSilences, Silence};
use vakt_store::{Store, StoreError};

/// How often the board reads the silences again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// The silences in force; replaced whole when one changes.
pub struct SilenceBoard {
    store: Arc<dyn Store>,
    current: std::sync::RwLock<Arc<ActiveSilences>>,
}

impl SilenceBoard {
    /// A board over `store`, with the silences stored now.
    pub async fn build(store: Arc<dyn Store>) -> Result<SilenceBoard, StoreError> {
        let board = SilenceBoard {
            store,
            current: std::sync::RwLock::new(Arc::default()),
        };
        board.refresh().await?;
        Ok(board)
    }

    pub fn get(&self) -> Arc<ActiveSilences> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Reads every silence again from storage.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let silences = self.store.silences().await?;
        let active = ActiveSilences::new(&silences, chrono::Utc::now());
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(active);
        Ok(())
    }

    /// Stores a silence and puts it in force for the next commit.
    pub async fn put(&self, silence: &Silence) -> Result<(), StoreError> {
        self.store.put_silence(silence).await?;
        self.refresh().await
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
