//! The expiry task: what time alone does to alerts. Alerts whose `expires_at` passed without a new event are resolved by an `ok` event through the pipeline; flapping alerts quiet for a whole flap window settle.
//!
//! Alertmanager-style sources promise an end time (`endsAt`) and refresh it while the problem
//! lasts. When a refresh does not come, this task sends the `ok` the source would have sent.
//! The event is marked `expiry`, so a refresh that wins the race keeps the alert open.
//!
//! A flapping alert settles when an event finds it quiet; one that ended resolved and stays
//! quiet gets no event, so this task settles it (`OperatorAction::Settle`, decided by the
//! pipeline in the writer's transaction): the timeline says so and the `settled` notices go
//! out.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use vakt_core::{EventInput, Severity};

use crate::ingest::{Channel, WhenFull};
use crate::live::Live;
use crate::silences::SilenceBoard;

/// What the expiry task needs from the rest of vakt.
pub struct Deps {
    pub store: Arc<dyn vakt_store::Store>,
    pub pipeline: Live<vakt_core::Pipeline>,
    /// The `expiry` channel (see `channel_capacity`).
    pub channel: Channel,
    pub silences: Arc<SilenceBoard>,
    /// Woken when settling decided notices.
    pub dispatch: Arc<tokio::sync::Notify>,
}

impl Deps {
    fn pipeline(&self) -> Arc<vakt_core::Pipeline> {
        self.pipeline.get()
    }
}

/// Room the `expiry` channel needs: one pass's events.
pub const CHANNEL_CAPACITY: usize = BATCH_MAX as usize;

/// The channel the expiry task's events come through.
pub const CHANNEL: &str = "expiry";
/// Expired alerts resolved per pass, at most.
const BATCH_MAX: u32 = 1000;

/// How often the task looks.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Starts the task; it ends when `stop` turns true.
pub fn spawn(state: Deps, mut stop: tokio::sync::watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let channel = state.channel.clone();
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            settle_flapping(&state).await;
            let expired = match state.store.expired_alerts(Utc::now(), BATCH_MAX).await {
                Ok(expired) => expired,
                Err(error) => {
                    tracing::warn!(%error, "cannot look for expired alerts");
                    continue;
                }
            };
            if expired.is_empty() {
                continue;
            }
            let inputs: Vec<EventInput> = expired
                .iter()
                .map(|alert| EventInput {
                    source: Some(alert.source.clone()),
                    resource: alert.resource.clone(),
                    check: alert.check.clone(),
                    severity: Some(Severity::Ok),
                    summary: format!(
                        "no new event before {}: {}",
                        alert
                            .expires_at
                            .map_or_else(String::new, |t| t.to_rfc3339()),
                        alert.summary
                    ),
                    service: alert.service.clone(),
                    environment: alert.environment.clone(),
                    labels: alert.labels.clone(),
                    fingerprint: Some(alert.fingerprint.to_string()),
                    expiry: true,
                    ..EventInput::default()
                })
                .collect();
            let count = inputs.len();
            let result =
                crate::ingest::store(&channel, state.pipeline(), inputs, WhenFull::Wait).await;
            match result {
                Ok(_) => tracing::debug!(count, "expired alerts resolved"),
                Err(error) => {
                    tracing::warn!(%error, count, "expired alerts not resolved yet; retrying")
                }
            }
        }
    })
}

/// Flapping alerts looked at per pass, at most.
const SETTLE_BATCH_MAX: u32 = 1000;

/// Settles flapping alerts that had no state change for a whole flap window.
async fn settle_flapping(state: &Deps) {
    let pipeline = state.pipeline();
    if !pipeline.detects_flapping() {
        return;
    }
    let now = Utc::now();
    let flapping = match state.store.flapping_alerts(SETTLE_BATCH_MAX).await {
        Ok(alerts) => alerts,
        Err(error) => {
            tracing::warn!(%error, "cannot look for flapping alerts");
            return;
        }
    };
    let quiet: Vec<_> = flapping
        .into_iter()
        .filter(|alert| pipeline.settles(alert, now))
        .collect();
    if quiet.is_empty() {
        return;
    }
    let silences = state.silences.get();
    let request = vakt_core::alert::OperatorRequest {
        action: vakt_core::alert::OperatorAction::Settle,
        by: vakt_core::alert::PIPELINE_ACTOR.to_owned(),
        comment: None,
    };
    let mut settled = 0;
    for alert in quiet {
        match state
            .store
            .operate(&pipeline, &silences, &alert.id, &request)
            .await
        {
            Ok(_) => settled += 1,
            // An event changed it meanwhile: it is not quiet, or it settled by itself.
            Err(vakt_store::OperateError::Refused(_)) => {}
            Err(error) => {
                tracing::warn!(%error, alert = %alert.id, "cannot settle a flapping alert")
            }
        }
    }
    if settled > 0 {
        tracing::info!(settled, "flapping alerts settled after a quiet window");
        state.dispatch.notify_one();
    }
}
