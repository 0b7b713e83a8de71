//! What the core API's handlers share (events, alerts, actions, silences, incidents,
//! operations). Components with endpoints of their own (on-call, heartbeats, monitors, ITSM,
//! the peer protocols) serve them with their own `Deps` through their `routes()`.

use std::sync::Arc;

use vakt_core::Pipeline;
use vakt_store::Store;

use super::Reloaded;
use crate::config::{ConfigErrors, IngestConfig};
use crate::ingest::{Channel, Ingest};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::silences::SilenceBoard;
use crate::sources::UdpListeners;

/// Builds the new configuration and swaps it in (the assembler's reload).
pub type Reload = Arc<dyn Fn() -> Result<Reloaded, ConfigErrors> + Send + Sync>;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// The writer's sending side (is it running?).
    pub ingest: Ingest,
    /// The `http` channel: events posted to `/api/v1/events`.
    pub http: Channel,
    pub pipeline: Live<Pipeline>,
    pub silences: Arc<SilenceBoard>,
    /// Wakes the dispatcher (an operator's retry, a resolve's notices).
    pub dispatch_wake: Arc<tokio::sync::Notify>,
    /// `[ingest]` as the server started (limits need a restart).
    pub ingest_limits: IngestConfig,
    /// UDP listeners, for the kernel drop counter.
    pub udp: UdpListeners,
    /// Bytes of JSON one list answer carries at most (`server.list_bytes_max`).
    pub list_bytes_max: usize,
    /// The operator console: templates, texts, the change counter live pages follow.
    pub console: Arc<super::console::Console>,
    /// The OpenAPI document, serialised once.
    pub openapi: String,
    /// The listener's requests in flight (`serve`), for `/metrics`.
    pub in_flight: tower_http::metrics::in_flight_requests::InFlightRequestsCounter,
    pub reload: Reload,
}

impl AppState {
    /// The pipeline new events go through.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.get()
    }

    /// Stores a silence and puts it in force for the next commit.
    pub async fn put_silence(
        &self,
        silence: &vakt_core::silence::Silence,
    ) -> Result<(), vakt_store::StoreError> {
        self.silences.put(silence).await
    }

    pub fn wake_dispatcher(&self) {
        self.dispatch_wake.notify_one();
    }

    pub fn ingest_limits(&self) -> &IngestConfig {
        &self.ingest_limits
    }

    pub fn ingest_running(&self) -> bool {
        self.ingest.is_running()
    }

    /// Build-then-swap: load and compile the configuration again; swap only if all of it is good.
    pub fn reload(&self) -> Result<Reloaded, ConfigErrors> {
        (self.reload)()
    }
}
