//! `vakt serve`: the one assembler. Opens storage, starts the ingest writer, builds every
//! component from its part of the configuration with its own `Deps`, merges their routes,
//! serves HTTP, republishes the compiled configuration on reload, and shuts everything down
//! in one order.
//!
//! Components (`actions`, `escalation`, `itsm`, `expiry`, `heartbeat`, `probes`, `oncall`,
//! `silences`, `sources`) never see `Config` or this module: each gets its `Deps` (store,
//! metrics, its channel, `Live` views of what it compiled) from here.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use vakt_core::Pipeline;

use crate::config::{Config, ConfigErrors, Overrides};
use crate::http::{self, AppState, Reloaded};
use crate::ingest::Ingest;
use crate::live::{Live, Publisher, live, live_shared};
use crate::metrics::{Metrics, ResultLabels};
use crate::{
    actions, auth, escalation, expiry, heartbeat, itsm, oncall, probes, retention, silences,
    sources,
};

/// Stored events the heartbeat monitor has not looked at yet, at most (more are dropped:
/// the next event of the resource beats again).
const OBSERVED_QUEUE_MAX: usize = 1024;

/// The compiled parts of the configuration components watch; a reload publishes them all.
struct Views {
    pipeline: Publisher<Pipeline>,
    handling: Publisher<actions::HandlingConfig>,
    directory: Publisher<oncall::Directory>,
    escalation: Publisher<escalation::EscalationConfig>,
    itsm: Publisher<Option<itsm::ItsmConfig>>,
    console_url: Publisher<String>,
    heartbeats: Publisher<Vec<heartbeat::HeartbeatConfig>>,
    alertmanager: Publisher<sources::alertmanager::AlertmanagerConfig>,
    pagerduty: Publisher<sources::pagerduty::PagerDutyConfig>,
    retention: Publisher<retention::RetentionConfig>,
    config_name: Publisher<String>,
}

impl Views {
    fn new(config: &Config) -> Views {
        Views {
            pipeline: live_shared(Arc::clone(&config.pipeline)).0,
            handling: live_shared(Arc::clone(&config.handling)).0,
            directory: live_shared(Arc::clone(&config.directory)).0,
            escalation: live(config.file.escalation.clone()).0,
            itsm: live(config.file.itsm.clone()).0,
            console_url: live(config.file.dispatch.console_url.clone()).0,
            heartbeats: live(config.file.heartbeats.clone()).0,
            alertmanager: live(config.file.sources.alertmanager.clone()).0,
            pagerduty: live(config.file.sources.pagerduty.clone()).0,
            retention: live(config.file.retention.clone()).0,
            config_name: live(config.name()).0,
        }
    }

    fn publish(&self, config: &Config) {
        self.pipeline.publish_shared(Arc::clone(&config.pipeline));
        self.handling.publish_shared(Arc::clone(&config.handling));
        self.directory.publish_shared(Arc::clone(&config.directory));
        self.escalation.publish(config.file.escalation.clone());
        self.itsm.publish(config.file.itsm.clone());
        self.console_url
            .publish(config.file.dispatch.console_url.clone());
        self.heartbeats.publish(config.file.heartbeats.clone());
        self.alertmanager
            .publish(config.file.sources.alertmanager.clone());
        self.pagerduty
            .publish(config.file.sources.pagerduty.clone());
        self.retention.publish(config.file.retention.clone());
        self.config_name.publish(config.name());
    }
}

/// Reload: build the new configuration, fallibly and without side effects, then publish it
/// in one step (Alertmanager's build-then-swap). SIGHUP and `POST /-/reload` share it.
struct Reloader {
    startup: Arc<Config>,
    current: RwLock<Arc<Config>>,
    overrides: Overrides,
    views: Views,
    metrics: Arc<Metrics>,
}

impl Reloader {
    fn reload(&self) -> Result<Reloaded, ConfigErrors> {
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
        self.views.publish(&next);
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
    pub sources: sources::Bound,
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
    let listener = crate::listen::tcp(config.listen)
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
    // TLS files first: a broken certificate stops the start before anything runs.
    let tls = match (&config.file.server.tls_cert, &config.file.server.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            http::tls::HttpTls::load(http::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.file.server.tls_client_ca.clone(),
            })
            .context("server.tls_cert / tls_key / tls_client_ca")?,
        )),
        _ => None,
    };
    let store = vakt_store::open(&config.location)
        .await
        .with_context(|| format!("cannot open storage ({})", config.location.describe()))?;
    // Before anything here can ingest and hand out actions.
    actions::recover_at_start(&*store).await;
    let metrics = Arc::new(Metrics::new());
    metrics.rules_loaded.set(config.file.rules.len() as i64);
    let limits = config.file.ingest.clone();
    let config = Arc::new(config);
    let views = Views::new(&config);
    let pipeline: Live<Pipeline> = views.pipeline.subscribe();

    // The writer, and what it tells: heartbeats watch stored events, the silence board
    // hands decide the silences in force, the dispatcher wakes on new due actions.
    let watched = heartbeat::Watched::default();
    let (observed_tx, observed_rx) = tokio::sync::mpsc::channel(OBSERVED_QUEUE_MAX);
    // Live console pages follow every commit.
    let changes = Arc::new(http::console::Changes::default());
    let rule_hits = Arc::new(http::console::RuleHits::default());
    let open_alerts = Arc::new(http::console::OpenAlerts::default());
    let observer: crate::ingest::Observer = {
        let watched = watched.clone();
        let changes = Arc::clone(&changes);
        let rule_hits = Arc::clone(&rule_hits);
        let open_alerts = Arc::clone(&open_alerts);
        Box::new(move |outcomes| {
            watched.observe(outcomes, &observed_tx);
            open_alerts.apply_outcomes(outcomes);
            rule_hits.observe(outcomes, chrono::Utc::now());
            changes.bump();
        })
    };
    let silence_board = Arc::new(
        silences::SilenceBoard::build(Arc::clone(&store))
            .await
            .context("reading the silences")?,
    );
    let dispatch_wake = Arc::new(tokio::sync::Notify::new());
    let (handoff, inbox) = actions::handoff(views.handling.subscribe());
    let (ingest, writer) = Ingest::start(
        Arc::clone(&store),
        Arc::clone(&metrics),
        limits.queue_events_max,
        limits.batch_events_max,
        crate::ingest::WriterHooks {
            observer,
            silences: Arc::clone(&silence_board),
            dispatch: Arc::clone(&dispatch_wake),
            handoff,
        },
    );
    let (stop, stopped) = watch::channel(false);
    let started_at = chrono::Utc::now();
    let udp: sources::UdpListeners = Arc::default();

    // Components with endpoints: their deps, their routes.
    let oncall = Arc::new(oncall::Deps {
        store: Arc::clone(&store),
        directory: views.directory.subscribe(),
    });
    let heartbeats = Arc::new(heartbeat::Deps {
        store: Arc::clone(&store),
        pipeline: pipeline.clone(),
        channel: ingest.channel(heartbeat::CHANNEL, heartbeat::CHANNEL_CAPACITY),
        config: views.heartbeats.subscribe(),
    });
    let probes = Arc::new(probes::Deps {
        store: Arc::clone(&store),
        pipeline: pipeline.clone(),
        channel: ingest.channel(probes::CHANNEL, probes::CHANNEL_CAPACITY),
        probes: config.file.probes.clone(),
        catalogue: Arc::default(),
    });
    let itsm = Arc::new(itsm::Deps {
        store: Arc::clone(&store),
        pipeline: pipeline.clone(),
        config: views.itsm.subscribe(),
        console_url: views.console_url.subscribe(),
    });
    let am_queue = config
        .file
        .sources
        .alertmanager
        .queue_events_max
        .unwrap_or(limits.queue_events_max);
    let alertmanager = Arc::new(sources::alertmanager::Deps {
        store: Arc::clone(&store),
        pipeline: pipeline.clone(),
        handling: views.handling.subscribe(),
        config: views.alertmanager.subscribe(),
        config_name: views.config_name.subscribe(),
        channel: ingest.channel(sources::alertmanager::CHANNEL, am_queue),
        webhook_channel: ingest.channel(sources::alertmanager::WEBHOOK_CHANNEL, am_queue),
        silences: Arc::clone(&silence_board),
        started_at,
        request_events_max: limits.request_events_max,
    });
    let pagerduty = Arc::new(sources::pagerduty::Deps {
        store: Arc::clone(&store),
        pipeline: pipeline.clone(),
        config: views.pagerduty.subscribe(),
        channel: ingest.channel(
            sources::pagerduty::CHANNEL,
            config
                .file
                .sources
                .pagerduty
                .queue_events_max
                .unwrap_or(limits.queue_events_max),
        ),
        silences: Arc::clone(&silence_board),
    });
    let auth = Arc::new(auth::Auth::new(
        Arc::clone(&store),
        views.directory.subscribe(),
        auth::Settings {
            setting: config.file.server.auth,
            listen: Some(addr),
            public_url: config.file.server.public_url.clone(),
            allowed_hosts: config.file.server.allowed_hosts.clone(),
            session_idle: Duration::from_secs(config.file.server.session_idle_secs.max(1)),
            session_max: Duration::from_secs(config.file.server.session_max_secs.max(1)),
            secure_cookies: tls.is_some(),
        },
    ));
    match auth.check_start().await {
        Ok(line) if config.file.server.auth == auth::Setting::None => tracing::warn!("{line}"),
        Ok(line) => tracing::info!("{line}"),
        Err(refusal) => anyhow::bail!("{refusal}"),
    }
    let console = Arc::new(
        http::console::Console::new(http::console::Parts {
            directory: views.directory.subscribe(),
            stop: stopped.clone(),
            auth: Arc::clone(&auth),
            changes,
            probes: Arc::clone(&probes),
            hits: rule_hits,
            open: open_alerts,
        })
        .map_err(anyhow::Error::msg)
        .context("building the console")?,
    );
    let extra = auth::routes(Arc::clone(&auth))
        .merge(oncall::routes(Arc::clone(&oncall)))
        .merge(heartbeat::routes(Arc::clone(&heartbeats)))
        .merge(probes::routes(Arc::clone(&probes)))
        .merge(itsm::routes(Arc::clone(&itsm)))
        .merge(sources::alertmanager::routes(alertmanager))
        .merge(sources::pagerduty::routes(pagerduty));
    let (router, mut doc) = http::router(
        Arc::clone(&auth),
        limits.body_bytes_max,
        Duration::from_secs(config.file.server.body_read_timeout_secs.max(1)),
        extra,
    );
    auth::document(&mut doc);
    // Outside the guard: a client over its write allowance is refused before any
    // credential is checked or body read.
    let router = match http::limit::WriteLimit::new(
        config.file.server.write_rate_per_client,
        config.file.server.write_burst_per_client,
    ) {
        Some(limit) => router.layer(axum::middleware::from_fn_with_state(
            limit,
            http::limit::writes,
        )),
        None => router,
    };
    let openapi = doc
        .to_pretty_json()
        .context("serialising the OpenAPI document")?;

    let reloader = Arc::new(Reloader {
        startup: Arc::clone(&config),
        current: RwLock::new(Arc::clone(&config)),
        overrides,
        views,
        metrics: Arc::clone(&metrics),
    });
    // The listener counts its requests in flight (`http::serve`); `/metrics` reads the count.
    let (counting, in_flight) = tower_http::metrics::InFlightRequestsLayer::pair();
    let state = Arc::new(AppState {
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        ingest: ingest.clone(),
        http: ingest.channel(http::HTTP_CHANNEL, limits.queue_events_max),
        pipeline: pipeline.clone(),
        silences: Arc::clone(&silence_board),
        dispatch_wake: Arc::clone(&dispatch_wake),
        ingest_limits: limits.clone(),
        list_bytes_max: config.file.server.list_bytes_max.max(1024),
        udp: Arc::clone(&udp),
        console,
        openapi,
        in_flight: in_flight.clone(),
        reload: {
            let reloader = Arc::clone(&reloader);
            Arc::new(move || reloader.reload())
        },
    });
    let grace = Duration::from_secs(config.file.server.shutdown_grace_secs);
    tracing::info!(
        %addr,
        scheme = if tls.is_some() { "https" } else { "http" },
        storage = %config.location.describe(),
        config = %config.name(),
        rules = config.file.rules.len(),
        "vakt is serving"
    );

    // Listening sources, then the background components, each with its deps.
    let listening = sources::start(
        &config.file.sources,
        &Arc::new(sources::Deps {
            ingest: ingest.clone(),
            pipeline: pipeline.clone(),
            udp,
        }),
    )
    .await?;
    let bound = listening.bound.clone();
    let mut background = JoinSet::new();
    background.spawn(reload_on_sighup(Arc::clone(&state)));
    if config.file.server.auth == auth::Setting::None {
        background.spawn(warn_auth_off(addr, stopped.clone()));
    }
    background.spawn(await_task(silence_board.spawn(stopped.clone())));
    background.spawn(await_task(expiry::spawn(
        expiry::Deps {
            store: Arc::clone(&store),
            pipeline: pipeline.clone(),
            channel: ingest.channel(expiry::CHANNEL, expiry::CHANNEL_CAPACITY),
            silences: Arc::clone(&silence_board),
            dispatch: Arc::clone(&dispatch_wake),
        },
        stopped.clone(),
    )));
    background.spawn(await_task(heartbeat::spawn(
        heartbeats,
        watched,
        observed_rx,
    )));
    background.spawn(await_task(escalation::spawn(
        escalation::Deps {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            pipeline: pipeline.clone(),
            directory: oncall.directory.clone(),
            config: reloader.views.escalation.subscribe(),
            dispatch: Arc::clone(&dispatch_wake),
        },
        stopped.clone(),
    )));
    background.spawn(await_task(itsm::spawn(itsm, stopped.clone())));
    background.spawn(await_task(retention::spawn(
        retention::Deps {
            store: Arc::clone(&store),
            config: reloader.views.retention.subscribe(),
            metrics: Arc::clone(&metrics),
        },
        stopped.clone(),
    )));
    for task in probes::spawn(probes, stopped.clone()) {
        background.spawn(await_task(task));
    }
    drop(ingest);
    let dispatcher = actions::spawn(
        actions::Deps {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            handling: reloader.views.handling.subscribe(),
            wake: Arc::clone(&dispatch_wake),
        },
        inbox,
        stopped.clone(),
    );
    let app = router.with_state(Arc::clone(&state));
    let server_state = Arc::clone(&state);
    let limits = http::serve::Limits {
        connections_max: config.file.server.connections_max,
        header_read_timeout: Duration::from_secs(
            config.file.server.header_read_timeout_secs.max(1),
        ),
    };
    let task = tokio::spawn(async move {
        // Serves until the stop, then gives requests in flight the grace period.
        http::serve::serve(
            listener,
            app,
            limits,
            stopped,
            grace,
            tls,
            (counting, in_flight),
        )
        .await;
        // The shutdown order: listeners and background components first (they feed the
        // queue), then the dispatcher (it lets running attempts end, bounded by their
        // timeouts; what it has not started stays pending for the next start), then the
        // writer drains the queue, then storage closes.
        background.shutdown().await;
        listening.stop();
        if tokio::time::timeout(grace, dispatcher).await.is_err() {
            tracing::warn!(
                "actions still running after the grace period; their leases will run out and they will be taken back"
            );
        }
        // Dropping the last sender lets the writer drain what was queued and stop.
        drop(state);
        drop(reloader);
        if tokio::time::timeout(grace, writer).await.is_err() {
            tracing::warn!("ingest writer did not drain within the grace period");
        }
        store.close().await;
        tracing::info!("vakt stopped");
        Ok(())
    });
    Ok(Server {
        addr,
        sources: bound,
        state: server_state,
        stop,
        task,
    })
}

/// A spawned task as a future the `JoinSet` owns: aborting the set aborts the task.
async fn await_task(task: JoinHandle<()>) {
    struct AbortOnDrop(JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut guard = AbortOnDrop(task);
    let _ = (&mut guard.0).await;
}

/// `kill -HUP` reloads the configuration, as with `POST /-/reload`.
async fn reload_on_sighup(state: Arc<AppState>) {
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
}

/// With `server.auth = "none"`, says so every hour: nobody should forget it is on.
async fn warn_auth_off(addr: SocketAddr, mut stopped: watch::Receiver<bool>) {
    const EVERY: Duration = Duration::from_secs(3600);
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => tracing::warn!(
                %addr,
                "AUTH IS OFF (server.auth = \"none\"): anyone who reaches vakt can read and change everything"
            ),
            _ = stopped.changed() => return,
        }
    }
}
