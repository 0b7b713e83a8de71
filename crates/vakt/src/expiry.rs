//! The expiry task: alerts whose `expires_at` passed without a new event are resolved by an `ok` event through the pipeline.
//!
//! Alertmanager-style sources promise an end time (`endsAt`) and refresh it while the problem
//! lasts. When a refresh does not come, this task sends the `ok` the source would have sent.
//! The event is marked `expiry`, so a refresh that wins the race keeps the alert open.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use vakt_core::{EventInput, Severity};

use crate::ingest::WhenFull;
use crate::server::AppState;
use crate::sources::deliver;

/// The channel the expiry task's events come through.
pub const CHANNEL: &str = "expiry";
/// Expired alerts resolved per pass, at most.
const BATCH_MAX: u32 = 1000;

pub fn spawn(state: Arc<AppState>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let channel = state.ingest.channel(CHANNEL, BATCH_MAX as usize);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
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
            let result = async {
                deliver(&state, &channel, inputs, WhenFull::Wait)
                    .await?
                    .committed()
                    .await
            }
            .await;
            match result {
                Ok(_) => tracing::debug!(count, "expired alerts resolved"),
                Err(error) => {
                    tracing::warn!(%error, count, "expired alerts not resolved yet; retrying")
                }
            }
        }
    })
}
