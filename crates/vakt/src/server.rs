//! `vakt serve`: open storage, start the ingest writer, serve HTTP, reload on request, shut down cleanly.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vakt_core::Pipeline;
use vakt_store::Store;

use crate::config::{Config, ConfigErrors, IngestConfig, Overrides};
use crate::http;
use crate::http::Reloaded;
use crate::ingest::{Channel, Ingest};
use crate::metrics::{Metrics, ResultLabels};

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingest: Ingest,
    /// The `http` channel: events posted to `/api/v1/events`.
    pub http: Channel,
    /// The `pagerduty` channel: `/v2/enqueue`.
    pub pagerduty: Channel,
    /// `POST /api/v2/alerts` and the Alertmanager webhook receiver.
    pub alertmanager: Channel,
    pub alertmanager_webhook: Channel,
    /// Raised and cleared missing heartbeats.
    pub heartbeats: Channel,
    /// Events of the built-in probes.
    pub probes: Channel,
    /// What the probes watch and their last readings.
    pub catalogue: Arc<crate::probes::Catalogue>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// UDP listeners by channel, for the kernel drop counter.
    pub udp_listeners: std::sync::Mutex<Vec<(String, SocketAddr)>>,
    pub metrics: Arc<Metrics>,
    /// The OpenAPI document, serialised once.
    pub openapi: String,
    /// The silences in force, for the writer's decide stage.
    pub silences: Arc<crate::ingest::SilenceBoard>,
    /// Wakes the dispatcher (new due actions, a retry).
    pub dispatch_wake: Arc<tokio::sync::Notify>,
    /// The configuration the process started with: listen, storage and ingest come from here.
    startup: Arc<Config>,
    /// The configuration in force for the pipeline; swapped whole by a reload.
    current: RwLock<Arc<Config>>,
    overrides: Overrides,
}

impl AppState {
    /// The configuration in force (a reload swaps it whole).
    pub fn current(&self) -> Arc<Config> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The pipeline new events go through.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        Arc::clone(&self.current().pipeline)
    }

    /// The handling stage's configuration in force.
    pub fn handling(&self) -> Arc<crate::actions::Handling> {
        Arc::clone(&self.current().handling)
    }

    /// Users and schedules in force.
    pub fn directory(&self) -> Arc<crate::oncall::Directory> {
        Arc::clone(&self.current().directory)
    }

    /// Stores a silence and puts it in force for the next commit.
    pub async fn put_silence(
        &self,
        silence: &vakt_core::silence::Silence,
    ) -> Result<(), vakt_store::StoreError> {
        self.store.put_silence(silence).await?;
        self.silences.refresh(&*self.store).await
    }

    pub fn wake_dispatcher(&self) {
        self.dispatch_wake.notify_one();
    }

    /// The PagerDuty integration a routing key belongs to, in the current configuration.
    pub fn pagerduty_integration(
        &self,
        routing_key: &str,
    ) -> Option<crate::sources::pagerduty::Integration> {
        self.current()
            .file
            .sources
            .pagerduty
            .integrations
            .iter()
            .find(|i| i.routing_key == routing_key)
            .cloned()
    }

    /// `[sources.alertmanager]` as currently configured.
    pub fn alertmanager_config(&self) -> crate::sources::alertmanager::AlertmanagerConfig {
        self.current().file.sources.alertmanager.clone()
    }

    /// `[[heartbeats]]` as currently configured.
    pub fn heartbeat_configs(&self) -> Vec<crate::heartbeat::HeartbeatConfig> {
        self.current().file.heartbeats.clone()
    }

    /// The name of the configuration in force, for messages.
    pub fn config_name(&self) -> String {
        self.current().name()
    }

    pub fn ingest_limits(&self) -> &IngestConfig {
        &self.startup.file.ingest
    }

    pub fn ingest_running(&self) -> bool {
        self.ingest.is_running()
    }

    /// Build-then-swap: load and compile the configuration again; swap only if all of it is good.
    pub fn reload(&self) -> Result<Reloaded, ConfigErrors> {
        let outcome = |result: &'static str| {
            self.metrics
                .reloads
                .get_or_create(&ResultLabels { result })
                .inc();
        };
        let next = Config::load(self.startup.path.as_deref(), &self.overrides)
            .inspect_err(|_| outcome("failure"))?;
        outcome("success");
        let restart_needed = self.startup.restart_needed(&next);
        let rules = next.file.rules.len();
        let name = next.name();
        self.metrics.rules_loaded.set(rules as i64);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        tracing::info!(config = %name, rules, ?restart_needed, "configuration reloaded");
        Ok(Reloaded {
            status: "reloaded",
            config: name,
            rules,
            restart_needed,
        })
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    /// What the other channels listen on.
    pub sources: crate::sources::Bound,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Asks the server to stop: no new connections, in-flight requests finish, the queue drains.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the server has stopped and storage is closed.
    pub async fn wait(self) -> anyhow::Result<()> {
        drop(self.state);
        self.task.await.context("server task failed")?
    }
}

/// Binds the configured address and starts serving.
pub async fn launch(config: Config, overrides: Overrides) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    launch_with_listener(listener, config, overrides).await
}

/// Starts serving on a listener the caller bound (tests bind `127.0.0.1:0`).
pub async fn launch_with_listener(
    listener: TcpListener,
    config: Config,
    overrides: Overrides,
) -> anyhow::Result<Server> {
    let addr = listener.local_addr().context("listener has no address")?;
    let store = vakt_store::open(&config.location)
        .await
        .with_context(|| format!("cannot open storage ({})", config.location.describe()))?;
    let metrics = Arc::new(Metrics::new());
    metrics.rules_loaded.set(config.file.rules.len() as i64);
    let limits = config.file.ingest.clone();
    let watched = crate::heartbeat::Watched::default();
    let (observed_tx, observed_rx) = tokio::sync::mpsc::channel(1024);
    let observer: crate::ingest::Observer = {
        let watched = watched.clone();
        Box::new(move |outcomes| watched.observe(outcomes, &observed_tx))
    };
    let silences = Arc::new(crate::ingest::SilenceBoard::default());
    silences
        .refresh(&*store)
        .await
        .context("reading the silences")?;
    let dispatch_wake = Arc::new(tokio::sync::Notify::new());
    let (ingest, writer) = Ingest::start(
        Arc::clone(&store),
        Arc::clone(&metrics),
        limits.queue_events_max,
        limits.batch_events_max,
        crate::ingest::WriterHooks {
            observer,
            silences: Arc::clone(&silences),
            dispatch: Arc::clone(&dispatch_wake),
        },
    );
    let (router, doc) = http::router(limits.body_bytes_max);
    let openapi = doc
        .to_pretty_json()
        .context("serialising the OpenAPI document")?;
    let config = Arc::new(config);
    let grace = Duration::from_secs(config.file.server.shutdown_grace_secs);
    tracing::info!(
        %addr,
        storage = %config.location.describe(),
        config = %config.name(),
        rules = config.file.rules.len(),
        "vakt is serving"
    );
    let http = ingest.channel(http::HTTP_CHANNEL, limits.queue_events_max);
    let heartbeats = ingest.channel(crate::heartbeat::CHANNEL, 1000);
    let probes = ingest.channel(crate::probes::CHANNEL, 1000);
    let pagerduty = ingest.channel(
        crate::sources::pagerduty::CHANNEL,
        config
            .file
            .sources
            .pagerduty
            .queue_events_max
            .unwrap_or(limits.queue_events_max),
    );
    let am_queue = config
        .file
        .sources
        .alertmanager
        .queue_events_max
        .unwrap_or(limits.queue_events_max);
    let alertmanager = ingest.channel(crate::sources::alertmanager::CHANNEL, am_queue);
    let alertmanager_webhook =
        ingest.channel(crate::sources::alertmanager::WEBHOOK_CHANNEL, am_queue);
    let state = Arc::new(AppState {
        store: Arc::clone(&store),
        ingest,
        http,
        pagerduty,
        alertmanager,
        alertmanager_webhook,
        heartbeats,
        probes,
        catalogue: Arc::default(),
        started_at: chrono::Utc::now(),
        udp_listeners: std::sync::Mutex::new(Vec::new()),
        metrics,
        openapi,
        silences,
        dispatch_wake,
        startup: Arc::clone(&config),
        current: RwLock::new(config),
        overrides,
    });
    let sources = crate::sources::start(&state.startup.file.sources, &state).await?;
    let bound = sources.bound.clone();
    let (stop, stopped) = watch::channel(false);
    let reloader = spawn_reload_on_sighup(Arc::clone(&state));
    let expiry = crate::expiry::spawn(Arc::clone(&state), Duration::from_secs(1));
    let heartbeat_monitor = crate::heartbeat::spawn(Arc::clone(&state), watched, observed_rx);
    // Silences written by other nodes (PostgreSQL) come into force within seconds.
    let silence_refresher = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Err(error) = state.silences.refresh(&*state.store).await {
                    tracing::warn!(%error, "cannot read the silences; the last known ones stay in force");
                }
            }
        })
    };
    let dispatcher = crate::actions::spawn(
        Arc::clone(&state),
        Arc::clone(&state.dispatch_wake),
        stop.subscribe(),
    );
    let escalator = crate::escalation::spawn(Arc::clone(&state), stop.subscribe());
    let itsm_sync = crate::itsm::spawn(Arc::clone(&state), stop.subscribe());
    let probe_tasks = crate::probes::spawn(Arc::clone(&state), stop.subscribe());
    let app = router.with_state(Arc::clone(&state));
    let server_state = Arc::clone(&state);
    let task = tokio::spawn(async move {
        let mut until = stopped.clone();
        let mut serve = Box::pin(
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = until.wait_for(|stop| *stop).await;
                })
                .into_future(),
        );
        let mut stopped = stopped;
        let served = tokio::select! {
            result = &mut serve => result,
            () = async { let _ = stopped.wait_for(|stop| *stop).await; } => {
                // Graceful shutdown started: give in-flight requests the grace period.
                match tokio::time::timeout(grace, &mut serve).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!(?grace, "requests still running after the grace period; stopping anyway");
                        Ok(())
                    }
                }
            }
        };
        reloader.abort();
        expiry.abort();
        heartbeat_monitor.abort();
        silence_refresher.abort();
        escalator.abort();
        itsm_sync.abort();
        for task in &probe_tasks {
            task.abort();
        }
        sources.stop();
        // The dispatcher saw the stop too; it lets running attempts end (bounded by their
        // timeouts); what it has not started stays pending for the next start.
        if tokio::time::timeout(grace, dispatcher).await.is_err() {
            tracing::warn!(
                "actions still running after the grace period; their leases will run out and they will be taken back"
            );
        }
        // The router holds the state too: drop it with the server future.
        drop(serve);
        // Dropping the last sender lets the writer drain what was queued and stop.
        drop(state);
        if tokio::time::timeout(grace, writer).await.is_err() {
            tracing::warn!("ingest writer did not drain within the grace period");
        }
        store.close().await;
        tracing::info!("vakt stopped");
        served.context("HTTP server failed")
    });
    Ok(Server {
        addr,
        sources: bound,
        state: server_state,
        stop,
        task,
    })
}

/// `kill -HUP` reloads the configuration, as with `POST /-/reload`.
fn spawn_reload_on_sighup(state: Arc<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
                return;
            };
            while hangups.recv().await.is_some() {
                let state = Arc::clone(&state);
                match tokio::task::spawn_blocking(move || state.reload()).await {
                    Ok(Err(errors)) => {
                        tracing::error!(errors = %errors, "SIGHUP reload refused; the running configuration stays")
                    }
                    Err(error) => tracing::error!(%error, "SIGHUP reload task failed"),
                    Ok(Ok(_)) => {}
                }
            }
        }
        #[cfg(not(unix))]
        drop(state);
    })
}
