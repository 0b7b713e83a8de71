//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`, `POST /-/reload`, `/openapi.json`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, Detail, ErrorBody};
use crate::metrics::StatusLabels;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    pub storage: String,
    pub writer: &'static str,
}

/// Readiness: storage answers and the ingest writer runs. 503 otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness))
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Readiness>) {
    let storage = match state.store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(error) => error.to_string(),
    };
    let writer = if state.ingest_running() {
        "ok"
    } else {
        "stopped"
    };
    let ready = storage == "ok" && writer == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "not ready" },
            storage,
            writer,
        }),
    )
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state
        .metrics
        .http_requests_in_flight
        .set(i64::try_from(state.in_flight.get()).unwrap_or(i64::MAX));
    match state.store.stats().await {
        Ok(stats) => {
            for (status, n) in [
                ("open", stats.alerts_open),
                ("acknowledged", stats.alerts_acknowledged),
                ("resolved", stats.alerts_resolved),
            ] {
                state
                    .metrics
                    .alerts
                    .get_or_create(&StatusLabels { status })
                    .set(n);
            }
        }
        // The rest of the metrics are still worth serving; the gauges keep their last value.
        Err(error) => tracing::warn!(%error, "cannot count alerts for /metrics"),
    }
    let listeners = state
        .udp
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut drops: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for (channel, addr) in listeners {
        if let Some(n) = crate::sources::udp_kernel_drops(addr.port()) {
            *drops.entry(channel).or_default() += i64::try_from(n).unwrap_or(i64::MAX);
        }
    }
    for (channel, n) in drops {
        state
            .metrics
            .udp_kernel_drops
            .get_or_create(&crate::metrics::ChannelLabels { channel })
            .set(n);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    pub status: &'static str,
    pub config: String,
    pub rules: usize,
    /// Settings that changed but apply only after a restart.
    pub restart_needed: Vec<String>,
}

/// Reload the configuration file: build the new pipeline, then swap it in.
///
/// A configuration with errors is refused (400, every error with file:line:column) and the
/// running one stays.
#[utoipa::path(
    post,
    path = "/-/reload",
    tag = "operations",
    responses((status = 200, body = Reloaded), (status = 400, body = ErrorBody))
)]
pub async fn reload(State(state): State<Arc<AppState>>) -> Result<Json<Reloaded>, ApiError> {
    let outcome = {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || state.reload())
            .await
            .map_err(|error| ApiError::internal("reload task failed", error))?
    };
    match outcome {
        Ok(report) => Ok(Json(report)),
        Err(errors) => Err(ApiError {
            details: errors
                .lines
                .iter()
                .map(|line| Detail {
                    index: None,
                    field: None,
                    message: line.clone(),
                })
                .collect(),
            ..ApiError::bad_request(format!(
                "configuration refused, the running one stays: {}",
                errors.lines.first().map_or("", String::as_str)
            ))
        }),
    }
}

/// The OpenAPI 3.1 document of this API.
pub async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
        .into_response()
}
