//! Heartbeats: sources promise to report every N seconds; a missing heartbeat raises an exception event, its return clears it.
//!
//! A beat is `POST /api/v1/heartbeats`, or any stored event whose resource (and check, when
//! the heartbeat names one) matches a `[[heartbeats]]` entry. The monitor task looks for
//! overdue heartbeats every second and sends their events through the pipeline like any
//! other channel, with the fingerprint `heartbeat:NAME`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vakt_core::event::NAME_LEN_MAX;
use vakt_core::heartbeat::{HEARTBEAT_CHECK, Heartbeat};
use vakt_core::{Correlated, EventInput, Severity};

use crate::http::{ApiError, ErrorBody};
use crate::ingest::{Channel, SubmitError, WhenFull};
use crate::live::Live;

/// What the heartbeat monitor and its endpoints need from the rest of vakt.
pub struct Deps {
    pub store: Arc<dyn vakt_store::Store>,
    pub pipeline: Live<vakt_core::Pipeline>,
    /// The `heartbeat` channel.
    pub channel: Channel,
    /// `[[heartbeats]]` in force.
    pub config: Live<Vec<HeartbeatConfig>>,
}

impl Deps {
    fn pipeline(&self) -> Arc<vakt_core::Pipeline> {
        self.pipeline.get()
    }

    fn heartbeat_configs(&self) -> Arc<Vec<HeartbeatConfig>> {
        self.config.get()
    }
}

/// `/api/v1/heartbeats`.
pub fn routes<S: Clone + Send + Sync + 'static>(
    deps: Arc<Deps>,
) -> utoipa_axum::router::OpenApiRouter<S> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(post_heartbeat, list_heartbeats))
        .with_state(deps)
}

/// Why a beat or a check did not go through.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error(transparent)]
    Store(#[from] vakt_store::StoreError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

impl From<HeartbeatError> for ApiError {
    fn from(error: HeartbeatError) -> ApiError {
        match error {
            HeartbeatError::Store(e) => e.into(),
            HeartbeatError::Submit(e) => e.into(),
        }
    }
}

/// Room the `heartbeat` channel needs.
pub const CHANNEL_CAPACITY: usize = 1000;

/// The channel heartbeat events come through.
pub const CHANNEL: &str = "heartbeat";
/// Event-driven beats of one heartbeat are written at most this often.
const BEAT_WRITE_EVERY: Duration = Duration::from_secs(1);

/// `[[heartbeats]]`: a promise declared in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    pub name: String,
    /// Events of this resource are beats.
    pub resource: String,
    /// Only events of this check are beats (any check when absent).
    #[serde(default)]
    pub check: Option<String>,
    pub interval_secs: u64,
    /// Extra time before the heartbeat counts as missing (default: half an interval).
    #[serde(default)]
    pub grace_secs: Option<u64>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
}

/// What the ingest writer reports: events it stored, by resource and check.
pub type Observed = (String, String);

/// A resource (and check) whose events are beats.
struct Watch {
    resource: String,
    check: Option<String>,
}

/// What is watched, kept current by the monitor.
#[derive(Clone, Default)]
pub struct Watched(Arc<RwLock<Vec<Watch>>>);

impl Watched {
    /// Called after each commit: passes matching events to the monitor, never blocking.
    pub fn observe(&self, outcomes: &[Correlated], to: &mpsc::Sender<Observed>) {
        let watched = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if watched.is_empty() {
            return;
        }
        for outcome in outcomes {
            let event = &outcome.record.event;
            if event.check == HEARTBEAT_CHECK
                || outcome.transition == vakt_core::pipeline::Transition::Duplicate
            {
                continue;
            }
            let hit = watched.iter().any(|w| {
                w.resource == event.resource && w.check.as_ref().is_none_or(|c| *c == event.check)
            });
            if hit {
                let _ = to.try_send((event.resource.clone(), event.check.clone()));
            }
        }
    }
}

fn from_config(config: &HeartbeatConfig, now: chrono::DateTime<Utc>) -> Heartbeat {
    let interval = i64::try_from(config.interval_secs)
        .unwrap_or(i64::MAX / 2)
        .max(1);
    Heartbeat {
        name: config.name.clone(),
        resource: config.resource.clone(),
        check: config.check.clone(),
        service: config.service.clone(),
        environment: config.environment.clone(),
        interval_secs: interval,
        grace_secs: config.grace_secs.map_or_else(
            || Heartbeat::default_grace(interval),
            |g| i64::try_from(g).unwrap_or(0),
        ),
        last_seen: now,
        missing: false,
    }
}

/// Records a beat; when the heartbeat was missing, sends the `ok` that clears its alert.
async fn beat(state: &Deps, mut heartbeat: Heartbeat) -> Result<(), HeartbeatError> {
    heartbeat.missing = false;
    let previous = state.store.beat(&heartbeat).await?;
    if previous.is_some_and(|p| p.missing) {
        let summary = format!("heartbeat {} is back", heartbeat.name);
        send(state, &heartbeat, Severity::Ok, summary).await?;
    }
    Ok(())
}

async fn send(
    state: &Deps,
    heartbeat: &Heartbeat,
    severity: Severity,
    summary: String,
) -> Result<(), HeartbeatError> {
    let input = EventInput {
        resource: heartbeat.resource.clone(),
        check: HEARTBEAT_CHECK.to_owned(),
        severity: Some(severity),
        summary,
        service: heartbeat.service.clone(),
        environment: heartbeat.environment.clone(),
        labels: [("heartbeat".to_owned(), heartbeat.name.clone())].into(),
        fingerprint: Some(super::sources::cut(
            &format!("heartbeat:{}", heartbeat.name),
            vakt_core::event::FINGERPRINT_LEN_MAX,
        )),
        ..EventInput::default()
    };
    crate::ingest::store(
        &state.channel,
        state.pipeline(),
        vec![input],
        WhenFull::Wait,
    )
    .await?;
    Ok(())
}

/// Runs the monitor: declared heartbeats registered, overdue ones raised, event beats recorded.
pub fn spawn(
    state: Arc<Deps>,
    watched: Watched,
    mut observed: mpsc::Receiver<Observed>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_write: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(error) = check(&state, &watched).await {
                        tracing::warn!(%error, "heartbeat check failed");
                    }
                }
                Some((resource, check_name)) = observed.recv() => {
                    let configs = state.heartbeat_configs();
                    for config in configs.iter().filter(|c| c.resource == resource && c.check.as_ref().is_none_or(|c| *c == check_name)) {
                        let due = last_write.get(&config.name).is_none_or(|t| t.elapsed() >= BEAT_WRITE_EVERY);
                        if due {
                            last_write.insert(config.name.clone(), Instant::now());
                            if let Err(error) = beat(&state, from_config(config, Utc::now())).await {
                                tracing::warn!(%error, heartbeat = %config.name, "heartbeat not recorded");
                            }
                        }
                    }
                }
            }
        }
    })
}

/// Registers declared heartbeats, refreshes what is watched, raises overdue heartbeats.
async fn check(state: &Deps, watched: &Watched) -> Result<(), HeartbeatError> {
    let now = Utc::now();
    let configs = state.heartbeat_configs();
    *watched
        .0
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = configs
        .iter()
        .map(|c| Watch {
            resource: c.resource.clone(),
            check: c.check.clone(),
        })
        .collect();
    let stored = state.store.heartbeats().await?;
    for config in configs.iter() {
        if !stored.iter().any(|h| h.name == config.name) {
            // A new promise starts counting now.
            state.store.beat(&from_config(config, now)).await?;
        }
    }
    for mut heartbeat in stored.into_iter().filter(|h| h.newly_missing(now)) {
        let age = (now - heartbeat.last_seen).num_seconds();
        let summary = format!(
            "no heartbeat from {} for {age} s (expected every {} s)",
            heartbeat.name, heartbeat.interval_secs
        );
        send(state, &heartbeat, Severity::Critical, summary).await?;
        heartbeat.missing = true;
        state.store.beat(&heartbeat).await?;
        tracing::warn!(heartbeat = %heartbeat.name, age, "heartbeat missing");
    }
    Ok(())
}

/// `POST /api/v1/heartbeats`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeatBody {
    /// The promise's name.
    pub name: String,
    /// Seconds until the next beat at the latest.
    pub interval_secs: u64,
    /// Extra seconds before the heartbeat counts as missing (default: half an interval).
    #[serde(default)]
    pub grace_secs: Option<u64>,
    /// The resource a missing-heartbeat alert is about (default: the name).
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
}

/// A heartbeat and when it will count as missing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatView {
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    pub due_at: chrono::DateTime<Utc>,
}

/// Beat: "I am alive, expect me again within `interval_secs`".
#[utoipa::path(post, path = "/api/v1/heartbeats", tag = "events", request_body = BeatBody, responses((status = 200, body = HeartbeatView), (status = 400, body = ErrorBody)))]
pub async fn post_heartbeat(
    State(state): State<Arc<Deps>>,
    body: Bytes,
) -> Result<Json<HeartbeatView>, ApiError> {
    let body: BeatBody = crate::http::parse_json(&body)?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > NAME_LEN_MAX || name.chars().any(char::is_control) {
        return Err(ApiError::field(
            "name",
            format!("must be 1 to {NAME_LEN_MAX} bytes without control characters"),
        ));
    }
    if body.interval_secs == 0 || body.interval_secs > 7 * 86_400 {
        return Err(ApiError::field(
            "interval_secs",
            "must be from 1 to 604800 (a week)",
        ));
    }
    let resource = body
        .resource
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or(name);
    if resource.len() > NAME_LEN_MAX || resource.chars().any(char::is_control) {
        return Err(ApiError::field(
            "resource",
            format!("must be at most {NAME_LEN_MAX} bytes without control characters"),
        ));
    }
    if body.grace_secs.is_some_and(|g| g > 7 * 86_400) {
        return Err(ApiError::field(
            "grace_secs",
            "must be at most 604800 (a week)",
        ));
    }
    let config = HeartbeatConfig {
        name: name.to_owned(),
        resource: resource.to_owned(),
        check: None,
        interval_secs: body.interval_secs,
        grace_secs: body.grace_secs,
        service: body.service,
        environment: body.environment,
    };
    let heartbeat = from_config(&config, Utc::now());
    beat(&state, heartbeat.clone()).await?;
    Ok(Json(HeartbeatView {
        due_at: heartbeat.due_at(),
        heartbeat,
    }))
}

/// Every heartbeat with its state.
#[utoipa::path(get, path = "/api/v1/heartbeats", tag = "events", responses((status = 200, body = Vec<HeartbeatView>)))]
pub async fn list_heartbeats(
    State(state): State<Arc<Deps>>,
) -> Result<Json<Vec<HeartbeatView>>, ApiError> {
    let heartbeats = state.store.heartbeats().await?;
    Ok(Json(
        heartbeats
            .into_iter()
            .map(|h| HeartbeatView {
                due_at: h.due_at(),
                heartbeat: h,
            })
            .collect(),
    ))
}
