//! Step 3 of the process, monitoring: built-in probes that watch this machine and what it
//! reaches, and the catalogue of monitored items (`GET /api/v1/monitors`).
//!
//! Each `[[probes]]` entry runs on its own task every `interval_secs`: it measures (disk and
//! inode usage by `statvfs`, load and memory and processes by `sysinfo`, a TCP connect, an
//! HTTP request, or a Nagios-compatible plugin), grades the value against its thresholds with
//! hysteresis (`vakt_core::probe`), and sends an event through the ingest path when the
//! severity changes, and every `confirm_secs` while it does not, with the measured values in
//! `metrics`. An alert a probe raised clears by itself when the value recovers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vakt_core::config::ConfigError;
use vakt_core::probe::{Thresholds, plugin_result};
use vakt_core::{EventInput, Severity};

use crate::ingest::Channel;
use crate::ingest::WhenFull;
use crate::live::Live;

/// What the probes and the catalogue need from the rest of vakt.
pub struct Deps {
    pub store: Arc<dyn vakt_store::Store>,
    pub pipeline: Live<vakt_core::Pipeline>,
    /// The `probe` channel.
    pub channel: Channel,
    /// `[[probes]]` as the server started with (probes start with the server).
    pub probes: Vec<ProbeConfig>,
    /// What the probes watch and their last readings.
    pub catalogue: Arc<Catalogue>,
}

impl Deps {
    fn pipeline(&self) -> Arc<vakt_core::Pipeline> {
        self.pipeline.get()
    }
}

/// `GET /api/v1/monitors`.
pub fn routes<S: Clone + Send + Sync + 'static>(
    deps: Arc<Deps>,
) -> utoipa_axum::router::OpenApiRouter<S> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_monitors))
        .with_state(deps)
}

/// Room the `probe` channel needs.
pub const CHANNEL_CAPACITY: usize = 1000;

/// The ingest channel probe events arrive on.
pub const CHANNEL: &str = "probe";
/// Most output a command probe keeps.
const OUTPUT_MAX: usize = 8 * 1024;

/// What a probe measures.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Used space and inodes of the filesystem holding `path`, in percent.
    Disk,
    /// The 1-minute load average per core.
    Load,
    /// Used memory, in percent (swap in the metrics).
    Memory,
    /// A TCP connect to `address`; the thresholds grade its time in ms.
    Tcp,
    /// A GET of `url`: the status must be `expect_status`, the body contain `body_match`;
    /// the thresholds grade the response time in ms.
    Http,
    /// A Nagios-compatible plugin: exit 0/1/2/3, first line the summary, perfdata metrics.
    Command,
    /// Processes named `process`: fewer than `min_count` is critical; RSS in the metrics.
    Process,
    /// Resolving `host` (DNS): failure is critical; the thresholds grade the time in ms.
    Dns,
    /// A network interface (`interface`): down is critical; the thresholds grade the errors
    /// and drops counted since the previous measurement.
    Interface,
    /// Disk I/O errors the kernel counted (`/sys/block/*/device/ioerr_cnt`, for `device` or
    /// every disk that has the counter); the thresholds grade the errors since the previous
    /// measurement (default: warning at 1).
    Diskio,
}

/// `[[probes]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Unique; the events' `check`.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// An event at least this often while nothing changes (0: only on change).
    #[serde(default = "default_confirm")]
    pub confirm_secs: u64,
    /// The events' `resource`; this host's name by default.
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub warning: Option<f64>,
    #[serde(default)]
    pub critical: Option<f64>,
    #[serde(default)]
    pub hysteresis: f64,
    /// Low values are bad.
    #[serde(default)]
    pub below: bool,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub expect_status: Option<u16>,
    #[serde(default)]
    pub body_match: Option<String>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub process: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_interval() -> u64 {
    60
}
fn default_confirm() -> u64 {
    300
}
fn default_min_count() -> u64 {
    1
}
fn default_timeout() -> u64 {
    10
}

impl ProbeConfig {
    fn thresholds(&self) -> Thresholds {
        Thresholds {
            warning: self.warning,
            critical: self.critical,
            hysteresis: self.hysteresis,
            below: self.below,
        }
    }
}

/// Checks every probe; each error names the probe and the key.
pub fn validate(probes: &[ProbeConfig]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for probe in probes {
        let mut error = |message: String| {
            errors.push(ConfigError {
                span: None,
                message: format!("probes.{}: {message}", probe.name),
            })
        };
        if probe.name.trim().is_empty() {
            error("name is empty".into());
        }
        if !names.insert(probe.name.clone()) {
            error("defined twice".into());
        }
        if probe.interval_secs == 0 {
            error("interval_secs must be at least 1".into());
        }
        if let Err(e) = probe.thresholds().check() {
            error(e);
        }
        let needs = |field: &str, present: bool| {
            (!present).then(|| {
                let kind = serde_json::to_value(probe.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                format!("type = \"{kind}\" needs {field}")
            })
        };
        let missing = match probe.kind {
            Kind::Disk => needs("path", probe.path.is_some()),
            Kind::Tcp => needs("address", probe.address.is_some()),
            Kind::Http => needs(
                "url",
                probe
                    .url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://")),
            ),
            Kind::Command => needs("command", !probe.command.is_empty()),
            Kind::Process => needs("process", probe.process.is_some()),
            Kind::Dns => needs("host", probe.host.is_some()),
            Kind::Interface => needs(
                "interface",
                probe
                    .interface
                    .as_deref()
                    .is_some_and(|i| !i.is_empty() && !i.contains('/') && !i.starts_with('.')),
            ),
            Kind::Load | Kind::Memory | Kind::Diskio => None,
        };
        if let Some(message) = missing {
            error(message);
        }
    }
    errors
}

/// One measurement, graded.
#[derive(Debug, Clone)]
struct Reading {
    severity: Severity,
    summary: String,
    metrics: BTreeMap<String, f64>,
    /// The value graded against the thresholds, when one was.
    value: Option<f64>,
}

/// A monitored item as the catalogue shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Monitor {
    pub name: String,
    /// `disk`, `load`, `memory`, `tcp`, `http`, `command`, `process`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `probe` (this server) or the agent's name.
    pub by: String,
    pub resource: String,
    pub interval_secs: u64,
    pub status: Option<Severity>,
    pub summary: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    /// The last value graded against the thresholds (a disk's used percent, a call's
    /// milliseconds, ...), when the probe grades one.
    pub value: Option<f64>,
    /// The probe's thresholds, when it has any.
    pub thresholds: Option<MonitorThresholds>,
    pub last_seen: Option<DateTime<Utc>>,
    pub last_sent: Option<DateTime<Utc>>,
}

/// `details.probe` of a probe's event: the graded value and the thresholds it was graded
/// against, so rules, notifications and the server's catalogue (for an agent's probes) see
/// them.
fn probe_details(
    value: Option<f64>,
    thresholds: &Thresholds,
) -> serde_json::Map<String, serde_json::Value> {
    let mut probe = serde_json::Map::new();
    if let Some(value) = value {
        probe.insert("value".into(), serde_json::json!(value));
    }
    if let Some(shown) = MonitorThresholds::of(thresholds) {
        probe.insert("thresholds".into(), serde_json::json!(shown));
    }
    let mut details = serde_json::Map::new();
    if !probe.is_empty() {
        details.insert("probe".into(), serde_json::Value::Object(probe));
    }
    details
}

/// A monitor's thresholds as the catalogue shows them.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MonitorThresholds {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    /// Low values are bad.
    pub below: bool,
}

impl MonitorThresholds {
    fn of(thresholds: &Thresholds) -> Option<MonitorThresholds> {
        (thresholds.warning.is_some() || thresholds.critical.is_some()).then_some(
            MonitorThresholds {
                warning: thresholds.warning,
                critical: thresholds.critical,
                below: thresholds.below,
            },
        )
    }
}

/// The catalogue: every probe this server runs, with its last reading.
#[derive(Default)]
pub struct Catalogue {
    items: Mutex<BTreeMap<String, Monitor>>,
}

impl Catalogue {
    fn update(&self, name: &str, change: impl FnOnce(&mut Monitor)) {
        let mut items = self
            .items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(item) = items.get_mut(name) {
            change(item);
        }
    }

    fn register(&self, monitor: Monitor) {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(monitor.name.clone(), monitor);
    }

    pub fn list(&self) -> Vec<Monitor> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// This host's name, for probes that name no resource.
pub fn hostname() -> String {
    sysinfo::System::host_name()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Where a probe's events go: each is handed over with a reply saying whether it is safe
/// (stored by the server, or written to the agent's buffer).
pub type Sink = tokio::sync::mpsc::Sender<(EventInput, tokio::sync::oneshot::Sender<bool>)>;

/// Starts one task per configured probe, sending through the ingest path; they stop with
/// `stop`.
pub fn spawn(
    state: Arc<Deps>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let probes = state.probes.clone();
    let (sink, mut events) =
        tokio::sync::mpsc::channel::<(EventInput, tokio::sync::oneshot::Sender<bool>)>(64);
    let deliverer = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            while let Some((input, done)) = events.recv().await {
                let check = input.check.clone();
                let stored = crate::ingest::store(
                    &state.channel,
                    state.pipeline(),
                    vec![input],
                    WhenFull::Wait,
                )
                .await;
                if let Err(error) = &stored {
                    tracing::warn!(probe = %check, %error, "probe event not stored; sending again next time");
                }
                let _ = done.send(stored.is_ok());
            }
        })
    };
    let mut tasks = start(&probes, &sink, Some(&state.catalogue), &stop);
    tasks.push(deliverer);
    tasks
}

/// Starts one task per probe sending to `sink`, registering each in `catalogue` if given.
pub fn start(
    probes: &[ProbeConfig],
    sink: &Sink,
    catalogue: Option<&Arc<Catalogue>>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let host = hostname();
    probes
        .iter()
        .cloned()
        .map(|probe| {
            let resource = probe.resource.clone().unwrap_or_else(|| host.clone());
            if let Some(catalogue) = catalogue {
                catalogue.register(Monitor {
                    name: probe.name.clone(),
                    kind: serde_json::to_value(probe.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    by: CHANNEL.to_owned(),
                    resource: resource.clone(),
                    interval_secs: probe.interval_secs,
                    status: None,
                    summary: None,
                    metrics: BTreeMap::new(),
                    value: None,
                    thresholds: MonitorThresholds::of(&probe.thresholds()),
                    last_seen: None,
                    last_sent: None,
                });
            }
            tokio::spawn(run(
                catalogue.cloned(),
                sink.clone(),
                probe,
                resource,
                stop.clone(),
            ))
        })
        .collect()
}

async fn run(
    catalogue: Option<Arc<Catalogue>>,
    sink: Sink,
    probe: ProbeConfig,
    resource: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap_or_default();
    let mut system = sysinfo::System::new().map_err(|e| e.to_string());
    let mut severity = Severity::Ok;
    let mut counters: Option<f64> = None;
    let mut sent: Option<(Severity, Instant)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(probe.interval_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let reading = measure(&probe, &client, &mut system, severity, &mut counters).await;
        severity = reading.severity;
        let now = Utc::now();
        if let Some(catalogue) = &catalogue {
            catalogue.update(&probe.name, |m| {
                m.status = Some(reading.severity);
                m.summary = Some(reading.summary.clone());
                m.metrics = reading.metrics.clone();
                m.value = reading.value;
                m.last_seen = Some(now);
            });
        }
        let due = match sent {
            None => true,
            Some((last, _)) if last != reading.severity => true,
            Some((_, at)) => {
                probe.confirm_secs > 0 && at.elapsed() >= Duration::from_secs(probe.confirm_secs)
            }
        };
        if !due {
            continue;
        }
        let mut labels = probe.labels.clone();
        labels.insert("probe".to_owned(), probe.name.clone());
        let input = EventInput {
            source: Some(CHANNEL.to_owned()),
            resource: resource.clone(),
            check: probe.name.clone(),
            severity: Some(reading.severity),
            summary: crate::sources::one_line(&reading.summary, 1024),
            service: probe.service.clone(),
            environment: probe.environment.clone(),
            labels,
            metrics: reading.metrics.clone(),
            details: probe_details(reading.value, &probe.thresholds()),
            ..EventInput::default()
        };
        let (done, safe) = tokio::sync::oneshot::channel();
        if sink.send((input, done)).await.is_err() {
            return;
        }
        if safe.await.unwrap_or(false) {
            sent = Some((reading.severity, Instant::now()));
            if let Some(catalogue) = &catalogue {
                catalogue.update(&probe.name, |m| m.last_sent = Some(now));
            }
        }
    }
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        (part / whole * 1000.0).round() / 10.0
    } else {
        0.0
    }
}

async fn measure(
    probe: &ProbeConfig,
    client: &reqwest::Client,
    system: &mut Result<sysinfo::System, String>,
    previous: Severity,
    counters: &mut Option<f64>,
) -> Reading {
    let thresholds = probe.thresholds();
    let graded = |value: f64, summary: String, metrics: BTreeMap<String, f64>| Reading {
        severity: thresholds.grade(value, previous),
        summary,
        metrics,
        value: Some(value),
    };
    let failed = |summary: String| Reading {
        severity: Severity::Critical,
        summary,
        metrics: BTreeMap::new(),
        value: None,
    };
    let failed_major = |summary: String| Reading {
        severity: Severity::Major,
        summary,
        metrics: BTreeMap::new(),
        value: None,
    };
    let timeout = Duration::from_secs(probe.timeout_secs.max(1));
    match probe.kind {
        Kind::Disk => {
            let path = probe.path.clone().unwrap_or_else(|| "/".into());
            match statvfs(&path) {
                Ok(usage) => {
                    let used = percent(usage.used as f64, (usage.used + usage.available) as f64);
                    let inodes = percent(usage.inodes_used as f64, usage.inodes as f64);
                    let worst = used.max(inodes);
                    graded(
                        worst,
                        format!("{path} is {used}% full, {inodes}% of inodes used"),
                        [
                            ("used_pct".to_owned(), used),
                            ("inode_used_pct".to_owned(), inodes),
                            ("free_bytes".to_owned(), usage.available as f64),
                        ]
                        .into(),
                    )
                }
                Err(error) => failed(format!("cannot read {path}: {error}")),
            }
        }
        Kind::Load => {
            let load = match sysinfo::System::load_average() {
                Ok(load) => load,
                Err(error) => {
                    return failed_major(format!("cannot read the load average: {error}"));
                }
            };
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let per_core = (load.one / cores * 100.0).round() / 100.0;
            // Utilisation over the interval: sysinfo compares with the previous refresh.
            let cpu = match system {
                Ok(system) => {
                    system.refresh_cpu_usage();
                    f64::from(system.global_cpu_usage())
                }
                Err(_) => 0.0,
            };
            graded(
                per_core,
                format!(
                    "load {:.2} {:.2} {:.2} on {cores} cores ({per_core} per core)",
                    load.one, load.five, load.fifteen
                ),
                [
                    ("load1".to_owned(), load.one),
                    ("load5".to_owned(), load.five),
                    ("load15".to_owned(), load.fifteen),
                    ("load_per_core".to_owned(), per_core),
                    ("cpu_used_pct".to_owned(), (cpu * 10.0).round() / 10.0),
                ]
                .into(),
            )
        }
        Kind::Dns => {
            let host = probe.host.clone().unwrap_or_default();
            let started = Instant::now();
            let target = if host.contains(':') {
                host.clone()
            } else {
                format!("{host}:0")
            };
            match tokio::time::timeout(timeout, tokio::net::lookup_host(target)).await {
                Ok(Ok(addresses)) => {
                    let count = addresses.count();
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    if count == 0 {
                        failed(format!("{host} resolves to no address"))
                    } else {
                        graded(
                            ms,
                            format!("{host} resolves to {count} address(es) in {ms:.1} ms"),
                            [
                                ("resolve_ms".to_owned(), ms),
                                ("addresses".to_owned(), count as f64),
                            ]
                            .into(),
                        )
                    }
                }
                Ok(Err(error)) => failed(format!("cannot resolve {host}: {error}")),
                Err(_) => failed(format!(
                    "no answer resolving {host} within {} s",
                    timeout.as_secs()
                )),
            }
        }
        Kind::Interface => {
            let name = probe.interface.clone().unwrap_or_default();
            let base = std::path::Path::new("/sys/class/net").join(&name);
            let read =
                |file: &str| std::fs::read_to_string(base.join(file)).map(|t| t.trim().to_owned());
            let state = match read("operstate") {
                Ok(state) => state,
                Err(error) => return failed(format!("no interface {name}: {error}")),
            };
            let stat = |file: &str| {
                read(&format!("statistics/{file}"))
                    .ok()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let metrics: BTreeMap<String, f64> = [
                ("rx_errors".to_owned(), stat("rx_errors")),
                ("tx_errors".to_owned(), stat("tx_errors")),
                ("rx_dropped".to_owned(), stat("rx_dropped")),
                ("tx_dropped".to_owned(), stat("tx_dropped")),
                ("up".to_owned(), if state == "down" { 0.0 } else { 1.0 }),
            ]
            .into();
            // Loopback says "unknown": only "down" (or "lowerlayerdown") is down.
            if state == "down" || state == "lowerlayerdown" {
                *counters = None;
                return Reading {
                    metrics,
                    ..failed(format!("{name} is {state}"))
                };
            }
            let total: f64 = ["rx_errors", "tx_errors", "rx_dropped", "tx_dropped"]
                .iter()
                .map(|k| metrics[*k])
                .sum();
            let new = counters.map_or(0.0, |before| (total - before).max(0.0));
            *counters = Some(total);
            let mut metrics = metrics;
            metrics.insert("new_errors".to_owned(), new);
            graded(
                new,
                format!("{name} is {state}; {new} new error(s) or drop(s)"),
                metrics,
            )
        }
        Kind::Diskio => match io_errors(std::path::Path::new("/sys"), probe.device.as_deref()) {
            None => Reading {
                severity: Severity::Ok,
                summary: "no kernel I/O error counters on this host (virtual disks have none)"
                    .into(),
                metrics: BTreeMap::new(),
                value: None,
            },
            Some((total, devices)) => {
                let total = total as f64;
                let new = counters.map_or(0.0, |before| (total - before).max(0.0));
                *counters = Some(total);
                let mut thresholds = thresholds;
                if thresholds.warning.is_none() && thresholds.critical.is_none() {
                    thresholds.warning = Some(1.0);
                }
                Reading {
                    severity: thresholds.grade(new, previous),
                    summary: format!(
                        "{new} new I/O error(s) on {} ({total} counted since boot)",
                        devices.join(", ")
                    ),
                    metrics: [
                        ("io_errors".to_owned(), total),
                        ("new_io_errors".to_owned(), new),
                    ]
                    .into(),
                    value: Some(new),
                }
            }
        },
        Kind::Memory => {
            let system = match system {
                Ok(system) => system,
                Err(error) => {
                    return failed_major(format!("cannot read system information: {error}"));
                }
            };
            system.refresh_memory();
            let used = percent(system.used_memory() as f64, system.total_memory() as f64);
            let swap = percent(system.used_swap() as f64, system.total_swap() as f64);
            graded(
                used,
                format!("memory {used}% used, swap {swap}% used"),
                [
                    ("used_pct".to_owned(), used),
                    ("swap_used_pct".to_owned(), swap),
                    (
                        "available_bytes".to_owned(),
                        system.available_memory() as f64,
                    ),
                ]
                .into(),
            )
        }
        Kind::Tcp => {
            let address = probe.address.clone().unwrap_or_default();
            let started = Instant::now();
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
                Ok(Ok(_)) => {
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    graded(
                        ms,
                        format!("{address} answers in {ms:.1} ms"),
                        [("connect_ms".to_owned(), ms)].into(),
                    )
                }
                Ok(Err(error)) => failed(format!("cannot connect to {address}: {error}")),
                Err(_) => failed(format!(
                    "no answer from {address} within {} s",
                    timeout.as_secs()
                )),
            }
        }
        Kind::Http => {
            let url = probe.url.clone().unwrap_or_default();
            let started = Instant::now();
            match client.get(&url).timeout(timeout).send().await {
                Err(error) => failed(format!("GET {url}: {error}")),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    let metrics: BTreeMap<String, f64> = [
                        ("response_ms".to_owned(), ms),
                        ("status".to_owned(), f64::from(status)),
                    ]
                    .into();
                    let status_ok = match probe.expect_status {
                        Some(expected) => status == expected,
                        None => (200..400).contains(&status),
                    };
                    if !status_ok {
                        Reading {
                            metrics,
                            ..failed(format!("GET {url} answered {status}"))
                        }
                    } else if let Some(needle) =
                        probe.body_match.as_deref().filter(|n| !body.contains(n))
                    {
                        Reading {
                            metrics,
                            ..failed(format!(
                                "GET {url} answered {status} without {needle:?} in the body"
                            ))
                        }
                    } else {
                        graded(
                            ms,
                            format!("GET {url} answered {status} in {ms:.1} ms"),
                            metrics,
                        )
                    }
                }
            }
        }
        Kind::Command => {
            match crate::actions::exec::run(
                &probe.command,
                &BTreeMap::new(),
                None,
                timeout,
                OUTPUT_MAX,
            )
            .await
            {
                Err(error) => Reading {
                    severity: Severity::Major,
                    summary: format!("cannot run {:?}: {error}", probe.command),
                    metrics: BTreeMap::new(),
                    value: None,
                },
                Ok(ran) if ran.timed_out => Reading {
                    severity: Severity::Major,
                    summary: format!(
                        "{} timed out after {} s",
                        probe.command[0],
                        timeout.as_secs()
                    ),
                    metrics: BTreeMap::new(),
                    value: None,
                },
                Ok(ran) => {
                    let result = plugin_result(ran.status, &ran.stdout.text);
                    Reading {
                        severity: result.severity,
                        summary: result.summary,
                        metrics: result.metrics,
                        value: None,
                    }
                }
            }
        }
        Kind::Process => {
            let name = probe.process.clone().unwrap_or_default();
            let system = match system {
                Ok(system) => system,
                Err(error) => {
                    return failed_major(format!("cannot read system information: {error}"));
                }
            };
            system.refresh_processes(sysinfo::ProcessesToUpdate::All, true);
            let matching: Vec<&sysinfo::Process> =
                system.processes_by_exact_name(name.as_ref()).collect();
            let count = matching.len() as u64;
            let rss: u64 = matching.iter().map(|p| p.memory()).sum();
            let metrics: BTreeMap<String, f64> = [
                ("count".to_owned(), count as f64),
                ("rss_bytes".to_owned(), rss as f64),
            ]
            .into();
            if count < probe.min_count {
                Reading {
                    metrics,
                    ..failed(format!(
                        "{count} process(es) named {name}, expected at least {}",
                        probe.min_count
                    ))
                }
            } else {
                graded(
                    rss as f64 / 1_048_576.0,
                    format!(
                        "{count} process(es) named {name}, {} MiB resident",
                        rss / 1_048_576
                    ),
                    metrics,
                )
            }
        }
    }
}

/// The kernel's I/O error counts of the disks under `sys/block` (only `device` if given):
/// their sum and the disks that have the counter; `None` when none has it.
fn io_errors(sys: &std::path::Path, device: Option<&str>) -> Option<(u64, Vec<String>)> {
    let mut total = 0u64;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(sys.join("block")).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if device.is_some_and(|d| d != name) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join("device/ioerr_cnt")) else {
            continue;
        };
        let text = text.trim();
        let count = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => text.parse().ok(),
        };
        if let Some(count) = count {
            total += count;
            found.push(name);
        }
    }
    found.sort();
    (!found.is_empty()).then_some((total, found))
}

struct Usage {
    used: u64,
    available: u64,
    inodes: u64,
    inodes_used: u64,
}

/// Space and inodes of the filesystem holding `path`, as `df` computes them.
fn statvfs(path: &str) -> std::io::Result<Usage> {
    let c_path = std::ffi::CString::new(path).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path contains a NUL byte",
        )
    })?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid C string and `stat` a writable statvfs for the call.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let block = stat.f_frsize as u64;
    let total = stat.f_blocks as u64 * block;
    let free = stat.f_bfree as u64 * block;
    Ok(Usage {
        used: total.saturating_sub(free),
        available: stat.f_bavail as u64 * block,
        inodes: stat.f_files as u64,
        inodes_used: (stat.f_files as u64).saturating_sub(stat.f_ffree as u64),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MonitorPage {
    pub items: Vec<Monitor>,
}

/// Most events read per agent to list its probes.
const AGENT_EVENTS_READ: u32 = 500;

/// Everything watched: this server's probes with their last values, when each last measured
/// and its status; every agent the server knows (by its heartbeat, `agent-NAME`) and the
/// probes it reported (the process's "list of events to monitor").
#[utoipa::path(
    get,
    path = "/api/v1/monitors",
    tag = "operations",
    responses((status = 200, body = MonitorPage), (status = 503, body = crate::http::ErrorBody))
)]
pub async fn list_monitors(
    State(state): State<Arc<Deps>>,
) -> Result<Json<MonitorPage>, crate::http::ApiError> {
    Ok(Json(MonitorPage {
        items: monitors(&state).await?,
    }))
}

/// The probes, agents and agents' probes, as `GET /api/v1/monitors` and the console list them.
pub async fn monitors(state: &Deps) -> Result<Vec<Monitor>, vakt_store::StoreError> {
    let mut items = state.catalogue.list();
    for heartbeat in state.store.heartbeats().await? {
        let Some(agent) = heartbeat.name.strip_prefix("agent-") else {
            continue;
        };
        items.push(Monitor {
            name: heartbeat.name.clone(),
            kind: "agent".to_owned(),
            by: agent.to_owned(),
            resource: heartbeat.resource.clone(),
            interval_secs: u64::try_from(heartbeat.interval_secs).unwrap_or(0),
            status: Some(if heartbeat.missing {
                Severity::Critical
            } else {
                Severity::Ok
            }),
            summary: Some(if heartbeat.missing {
                "heartbeat missing: the agent or its host is down, or cannot reach vakt".to_owned()
            } else {
                "heartbeat on time".to_owned()
            }),
            metrics: BTreeMap::new(),
            value: None,
            thresholds: None,
            last_seen: Some(heartbeat.last_seen),
            last_sent: None,
        });
        let events = state
            .store
            .events(&vakt_store::EventQuery {
                source: Some(format!("agent:{agent}")),
                limit: AGENT_EVENTS_READ,
                ..vakt_store::EventQuery::default()
            })
            .await?;
        let mut seen = std::collections::BTreeSet::new();
        for record in events.items {
            let event = &record.event;
            if !seen.insert(event.check.clone()) {
                continue;
            }
            items.push(Monitor {
                name: event.check.clone(),
                kind: "probe".to_owned(),
                by: agent.to_owned(),
                resource: event.resource.clone(),
                interval_secs: 0,
                status: Some(event.severity),
                summary: Some(event.summary.clone()),
                metrics: event.metrics.clone(),
                value: event
                    .details
                    .get("probe")
                    .and_then(|p| p.get("value"))
                    .and_then(serde_json::Value::as_f64),
                thresholds: event
                    .details
                    .get("probe")
                    .and_then(|p| p.get("thresholds"))
                    .and_then(|t| serde_json::from_value(t.clone()).ok()),
                last_seen: Some(event.occurred_at),
                last_sent: Some(event.received_at),
            });
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_io_error_counters_are_read_where_present() {
        let sys = tempfile::tempdir().expect("dir");
        for (disk, count) in [("sda", Some("0x1f")), ("sdb", Some("3")), ("vda", None)] {
            let device = sys.path().join("block").join(disk).join("device");
            std::fs::create_dir_all(&device).expect("dir");
            if let Some(count) = count {
                std::fs::write(device.join("ioerr_cnt"), format!("{count}\n")).expect("write");
            }
        }
        assert_eq!(
            io_errors(sys.path(), None),
            Some((34, vec!["sda".to_owned(), "sdb".to_owned()]))
        );
        assert_eq!(
            io_errors(sys.path(), Some("sdb")),
            Some((3, vec!["sdb".to_owned()]))
        );
        assert_eq!(io_errors(sys.path(), Some("vda")), None);
        assert_eq!(io_errors(&sys.path().join("nowhere"), None), None);
    }
}
