//! The configuration file: parsed, validated with file:line:column errors, then overridden by flags and environment.
//!
//! **Boundary:** the TOML text is outside data. Everything is checked here, at start and on
//! reload, so the running server never meets a configuration it cannot use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use vakt_core::Pipeline;
use vakt_core::config::{ActionConfig, AlertsConfig, ConfigError, PipelineConfig, RuleConfig};
use vakt_store::Location;

use crate::sources::SourcesConfig;

pub(crate) mod document;

/// The configuration `vakt serve` uses when given none: the example rules of the guide.
pub const BUILTIN: &str = include_str!("../../../../examples/vakt.toml");
/// How the built-in configuration is named in messages.
pub const BUILTIN_NAME: &str = "<built-in examples/vakt.toml>";

/// The whole file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleConfig>>,
    #[serde(default)]
    pub actions: BTreeMap<String, Spanned<ActionConfig>>,
    #[serde(default)]
    pub heartbeats: Vec<crate::heartbeat::HeartbeatConfig>,
    #[serde(default)]
    pub channels: BTreeMap<String, Spanned<crate::actions::ChannelConfig>>,
    #[serde(default)]
    pub dispatch: crate::actions::DispatchConfig,
    #[serde(default)]
    pub maintenance: Vec<vakt_core::config::MaintenanceConfig>,
    #[serde(default)]
    pub inhibit_rules: Vec<crate::actions::InhibitRuleConfig>,
    #[serde(default)]
    pub users: Vec<vakt_core::oncall::UserConfig>,
    #[serde(default)]
    pub schedules: Vec<vakt_core::oncall::ScheduleConfig>,
    #[serde(default)]
    pub escalation_policies: Vec<vakt_core::escalation::PolicyConfig>,
    #[serde(default)]
    pub escalation: crate::escalation::EscalationConfig,
    #[serde(default)]
    pub incidents: vakt_core::incident::IncidentsConfig,
    #[serde(default)]
    pub itsm: Option<crate::itsm::ItsmConfig>,
    #[serde(default)]
    pub probes: Vec<crate::probes::ProbeConfig>,
    #[serde(default)]
    pub retention: crate::retention::RetentionConfig,
}

/// The sections a configuration file may have.
const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "ingest",
    "sources",
    "alerts",
    "rules",
    "actions",
    "heartbeats",
    "channels",
    "dispatch",
    "maintenance",
    "inhibit_rules",
    "users",
    "schedules",
    "escalation_policies",
    "escalation",
    "incidents",
    "itsm",
    "probes",
    "retention",
];

impl ConfigFile {
    /// Reads every section on its own (list items and named tables one by one), so each
    /// mistake is reported; a broken part reads as its default and is marked failed.
    fn read(doc: &mut document::Document<'_>, errors: &mut Vec<ConfigError>) -> ConfigFile {
        ConfigFile {
            server: doc.section("server", errors),
            storage: doc.section("storage", errors),
            ingest: doc.section("ingest", errors),
            sources: doc.section("sources", errors),
            alerts: doc.section("alerts", errors),
            rules: doc
                .list::<RuleConfig>("rules", errors)
                .into_iter()
                .map(|(rule, span)| Spanned::new(span, rule))
                .collect(),
            actions: doc.named("actions", errors),
            heartbeats: doc.values("heartbeats", errors),
            channels: doc.named("channels", errors),
            dispatch: doc.section("dispatch", errors),
            maintenance: doc.values("maintenance", errors),
            inhibit_rules: doc.values("inhibit_rules", errors),
            users: doc.values("users", errors),
            schedules: doc.values("schedules", errors),
            escalation_policies: doc.values("escalation_policies", errors),
            escalation: doc.section("escalation", errors),
            incidents: doc.section("incidents", errors),
            itsm: doc.optional("itsm", errors),
            probes: doc.values("probes", errors),
            retention: doc.section("retention", errors),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP API listens on.
    pub listen: Spanned<String>,
    /// Seconds a graceful shutdown waits for in-flight requests and queued events.
    pub shutdown_grace_secs: u64,
    /// Open HTTP connections at most; beyond it new ones are closed at once (logged).
    pub connections_max: usize,
    /// Seconds a client has to send a request's headers; an idle keep-alive connection is
    /// closed after as long (slow or silent clients cannot hold connections).
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's body.
    pub body_read_timeout_secs: u64,
    /// Whether requests must carry a credential: `auto` (on, except on a loopback address
    /// while no token and no user password exists), `required`, or `none` (anyone who
    /// reaches the port can do everything; warned about).
    pub auth: crate::auth::Setting,
    /// The URL people and browsers reach vakt at (`https://vakt.example.com`): its host is
    /// one vakt answers to, its origin the one browser writes may come from.
    pub public_url: Option<String>,
    /// More host names vakt answers to (besides IP addresses, `localhost` and the host of
    /// `public_url`).
    pub allowed_hosts: Vec<String>,
    /// PEM certificate chain (leaf first) for TLS on the HTTP listener; with `tls_key`.
    /// Reloaded when the file changes.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: a client showing a certificate they signed signs in as the
    /// certificate's common name with the `ingest` role.
    pub tls_client_ca: Option<PathBuf>,
    /// A console session ends after this many seconds without a request.
    pub session_idle_secs: u64,
    /// A console session ends this many seconds after sign-in in any case.
    pub session_max_secs: u64,
    /// Bytes of JSON one list answer carries at most: a page of large items is cut short
    /// and its `next_cursor` continues where it stopped.
    pub list_bytes_max: usize,
    /// Write requests per second one client (an address, or a signed-in identity) may make
    /// on average; more are answered 429 with `Retry-After`. 0 turns the limit off.
    pub write_rate_per_client: u32,
    /// Write requests one client may make at once above its rate.
    pub write_burst_per_client: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Spanned::new(0..0, "127.0.0.1:8470".to_owned()),
            shutdown_grace_secs: 30,
            connections_max: 512,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            auth: crate::auth::Setting::Auto,
            public_url: None,
            allowed_hosts: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            session_idle_secs: 12 * 3600,
            session_max_secs: 7 * 86_400,
            list_bytes_max: 4 << 20,
            write_rate_per_client: 2000,
            write_burst_per_client: 4000,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory of the embedded SQLite database.
    pub data_dir: PathBuf,
    /// A `postgres://` URL selects PostgreSQL instead of the embedded database.
    pub database_url: Option<Spanned<String>>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./vakt-data"),
            database_url: None,
        }
    }
}

/// `[ingest]`: the bounds of the ingest path.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Events accepted but not yet committed, at most; past it senders get 429.
    pub queue_events_max: usize,
    /// Events the writer commits in one transaction, at most (a single larger request is
    /// still committed whole).
    pub batch_events_max: usize,
    /// Largest request body, in bytes; larger bodies get 413.
    pub body_bytes_max: usize,
    /// Most events one request may carry.
    pub request_events_max: usize,
    /// Seconds a 429 asks the sender to wait (`Retry-After`).
    pub retry_after_secs: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            queue_events_max: 100_000,
            batch_events_max: 5_000,
            body_bytes_max: 10 * 1024 * 1024,
            request_events_max: 10_000,
            retry_after_secs: 1,
        }
    }
}

/// Overrides from the command line and the environment (flags win over environment).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

/// A loaded, validated configuration.
#[derive(Clone)]
pub struct Config {
    /// Where it came from: a path, or `None` for the built-in one.
    pub path: Option<PathBuf>,
    pub file: ConfigFile,
    pub listen: SocketAddr,
    pub location: Location,
    pub pipeline: Arc<Pipeline>,
    /// The handling stage's compiled configuration (channels, templates, inhibition).
    pub handling: Arc<crate::actions::HandlingConfig>,
    /// Users and compiled on-call schedules.
    pub directory: Arc<crate::oncall::Directory>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("listen", &self.listen)
            .field("location", &self.location.describe())
            .field("rules", &self.file.rules.len())
            .finish()
    }
}

/// Every problem found in a configuration, rendered as `file:line:column: message` lines.
#[derive(Debug, thiserror::Error)]
#[error("{}", .lines.join("\n"))]
pub struct ConfigErrors {
    pub lines: Vec<String>,
}

impl Config {
    /// Reads `path` (or the built-in configuration), applies `overrides`, validates everything.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let (name, source) = match path {
            Some(path) => {
                let source = std::fs::read_to_string(path).map_err(|error| ConfigErrors {
                    lines: vec![format!("{}: cannot read: {error}", path.display())],
                })?;
                (path.display().to_string(), source)
            }
            None => (BUILTIN_NAME.to_owned(), BUILTIN.to_owned()),
        };
        Config::parse(&name, &source, path, overrides)
    }

    /// Parses configuration text; `name` is used in messages.
    pub fn parse(
        name: &str,
        source: &str,
        path: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        let render = |errors: Vec<ConfigError>| ConfigErrors {
            lines: document::render(errors, name, source),
        };
        let mut doc = document::Document::parse(source).map_err(render)?;
        let mut errors = doc.unknown_sections(SECTIONS);
        let file = ConfigFile::read(&mut doc, &mut errors);
        if let Some(url) = &file.server.public_url
            && reqwest::Url::parse(url).map_or(true, |u| {
                !matches!(u.scheme(), "http" | "https") || u.host().is_none()
            })
        {
            errors.push(ConfigError {
                span: None,
                message: format!(
                    "server.public_url: {url:?} is not an http(s) URL like https://vakt.example.com"
                ),
            });
        }
        match (&file.server.tls_cert, &file.server.tls_key) {
            (Some(_), None) | (None, Some(_)) => errors.push(ConfigError {
                span: None,
                message: "server.tls_cert and server.tls_key go together: give both or neither"
                    .to_owned(),
            }),
            (None, None) if file.server.tls_client_ca.is_some() => errors.push(ConfigError {
                span: None,
                message: "server.tls_client_ca needs server.tls_cert and server.tls_key".to_owned(),
            }),
            _ => {}
        }
        let listen_text = overrides
            .listen
            .clone()
            .unwrap_or_else(|| file.server.listen.get_ref().clone());
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(listen) => Some(listen),
            Err(error) => {
                let what = format!(
                    "server.listen: {listen_text:?} is not an address like 127.0.0.1:8470 ({error})"
                );
                errors.push(match overrides.listen {
                    Some(_) => ConfigError {
                        span: None,
                        message: format!("--listen / VAKT_LISTEN: {what}"),
                    },
                    None => ConfigError::at(file.server.listen.span(), what),
                });
                None
            }
        };
        let location = match (&overrides.database_url, &file.storage.database_url) {
            (Some(url), _) => Location::from_url(url).map_err(|message| ConfigError {
                span: None,
                message: format!("VAKT_DATABASE_URL: {message}"),
            }),
            (None, Some(url)) => Location::from_url(url.get_ref()).map_err(|message| {
                ConfigError::at(url.span(), format!("storage.database_url: {message}"))
            }),
            (None, None) => Ok(Location::SqliteDir(
                overrides
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| file.storage.data_dir.clone()),
            )),
        };
        let location = location.map_err(|e| errors.push(e)).ok();
        // Each validation runs when the sections it reads were read; errors of one do not
        // stop the others.
        let mut found = Vec::new();
        if doc.all_ok(&["ingest"]) {
            found.extend(validate_ingest(&file.ingest));
        }
        if doc.all_ok(&["heartbeats"]) {
            found.extend(validate_heartbeats(&file.heartbeats));
        }
        // Rules and maintenance windows are not referred to by name: those that did read
        // are still compiled. Sections whose entries others name must have read whole, or
        // every reference to a broken entry would be reported again as unknown.
        let pipeline_sections = ["alerts", "actions", "escalation_policies", "incidents"];
        let pipeline = doc
            .all_ok(&pipeline_sections)
            .then(|| {
                Pipeline::build(&PipelineConfig {
                    alerts: file.alerts.clone(),
                    rules: file.rules.clone(),
                    actions: file.actions.clone(),
                    maintenance: file.maintenance.clone(),
                    escalation_policies: file.escalation_policies.clone(),
                    incidents: file.incidents.clone(),
                })
                .map_err(|e| found.extend(e))
                .ok()
            })
            .flatten();
        let handling = doc
            .all_ok(&["dispatch", "actions", "channels", "inhibit_rules"])
            .then(|| {
                crate::actions::HandlingConfig::build(
                    &file.dispatch,
                    &file.actions,
                    &file.channels,
                    &file.inhibit_rules,
                )
                .map_err(|e| found.extend(e))
                .ok()
            })
            .flatten();
        let directory = doc
            .all_ok(&["users", "schedules"])
            .then(|| {
                crate::oncall::Directory::build(&file.users, &file.schedules)
                    .map_err(|e| found.extend(e))
                    .ok()
            })
            .flatten();
        // The policies' targets, checked even when a rule does not compile (the pipeline
        // reports the policies' own errors).
        let policies = doc
            .all_ok(&["escalation_policies"])
            .then(|| vakt_core::escalation::compile(&file.escalation_policies).ok())
            .flatten();
        if let (Some(policies), Some(directory), true) = (
            &policies,
            &directory,
            doc.all_ok(&["escalation", "channels"]),
        ) {
            found.extend(crate::escalation::validate(
                &file.escalation,
                policies,
                directory,
                &file.channels,
            ));
        }
        if let Some(itsm) = &file.itsm {
            found.extend(itsm.validate());
        }
        if doc.all_ok(&["probes"]) {
            found.extend(crate::probes::validate(&file.probes));
        }
        if doc.all_ok(&["sources"]) {
            found.extend(file.sources.alertmanager.validate());
        }
        if doc.all_ok(&["retention", "alerts"]) {
            found.extend(file.retention.validate(
                file.alerts.reopen_window_secs,
                matches!(location, Some(Location::SqliteDir(_))),
            ));
        }
        // Errors that name their setting by path get its place in the file.
        doc.place(found, &mut errors);
        match (listen, location, pipeline, handling, directory) {
            (Some(listen), Some(location), Some(pipeline), Some(handling), Some(directory))
                if errors.is_empty() =>
            {
                Ok(Config {
                    path: path.map(Path::to_path_buf),
                    file,
                    listen,
                    location,
                    pipeline: Arc::new(pipeline),
                    handling: Arc::new(handling),
                    directory: Arc::new(directory),
                })
            }
            _ => Err(render(errors)),
        }
    }

    /// The name used for this configuration in messages.
    pub fn name(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| BUILTIN_NAME.to_owned(), |p| p.display().to_string())
    }

    /// What differs between `self` and `next` that a reload cannot apply (needs a restart).
    pub fn restart_needed(&self, next: &Config) -> Vec<String> {
        let mut changed = Vec::new();
        if self.listen != next.listen {
            changed.push("server.listen".to_owned());
        }
        if self.location != next.location {
            changed.push("storage".to_owned());
        }
        if self.file.ingest != next.file.ingest {
            changed.push("ingest".to_owned());
        }
        if self.file.sources.syslog != next.file.sources.syslog {
            changed.push("sources.syslog".to_owned());
        }
        if self.file.sources.snmp != next.file.sources.snmp {
            changed.push("sources.snmp".to_owned());
        }
        if self.file.sources.pagerduty.queue_events_max
            != next.file.sources.pagerduty.queue_events_max
        {
            changed.push("sources.pagerduty.queue_events_max".to_owned());
        }
        if self.file.dispatch.concurrency != next.file.dispatch.concurrency {
            changed.push("dispatch.concurrency".to_owned());
        }
        if self.file.server.auth != next.file.server.auth
            || self.file.server.public_url != next.file.server.public_url
            || self.file.server.allowed_hosts != next.file.server.allowed_hosts
        {
            changed.push("server.auth, public_url, allowed_hosts".to_owned());
        }
        if self.file.server.tls_cert != next.file.server.tls_cert
            || self.file.server.tls_key != next.file.server.tls_key
            || self.file.server.tls_client_ca != next.file.server.tls_client_ca
        {
            changed.push("server.tls_cert, tls_key, tls_client_ca (the files themselves reload when they change)".to_owned());
        }
        if self.file.server.shutdown_grace_secs != next.file.server.shutdown_grace_secs {
            changed.push("server.shutdown_grace_secs".to_owned());
        }
        // Probe tasks start with the server.
        if self.file.probes != next.file.probes {
            changed.push("probes".to_owned());
        }
        changed
    }
}

fn validate_heartbeats(heartbeats: &[crate::heartbeat::HeartbeatConfig]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut names = std::collections::HashSet::new();
    for beat in heartbeats {
        let problem = if beat.name.trim().is_empty() || beat.resource.trim().is_empty() {
            Some("name and resource must not be empty".to_owned())
        } else if !names.insert(beat.name.as_str()) {
            Some("duplicate heartbeat name".to_owned())
        } else if beat.interval_secs == 0 {
            Some("interval_secs must be at least 1".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            errors.push(ConfigError {
                span: None,
                message: format!("heartbeats.{}: {problem}", beat.name),
            });
        }
    }
    errors
}

fn validate_ingest(ingest: &IngestConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut positive = |name: &str, value: usize| {
        if value == 0 {
            errors.push(ConfigError {
                span: None,
                message: format!("ingest.{name} must be at least 1"),
            });
        }
    };
    positive("queue_events_max", ingest.queue_events_max);
    positive("batch_events_max", ingest.batch_events_max);
    positive("body_bytes_max", ingest.body_bytes_max);
    positive("request_events_max", ingest.request_events_max);
    if ingest.request_events_max > ingest.queue_events_max {
        errors.push(ConfigError {
            span: None,
            message: format!(
                "ingest.request_events_max ({}) cannot exceed ingest.queue_events_max ({}): such a request could never be queued",
                ingest.request_events_max, ingest.queue_events_max
            ),
        });
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(source: &str) -> Vec<String> {
        match Config::parse("t.toml", source, None, &Overrides::default()) {
            Ok(_) => panic!("expected errors for {source}"),
            Err(errors) => errors.lines,
        }
    }

    #[test]
    fn the_builtin_configuration_is_valid() {
        let config = Config::load(None, &Overrides::default()).expect("built-in config loads");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8470");
        assert!(config.pipeline.rules().rules().len() >= 5);
    }

    #[test]
    fn retention_is_checked_against_the_reopen_window() {
        let found = errors(
            "[alerts]\nreopen_window_secs = 864000\n\n[retention]\nalerts_days = 5\nbatch = 0\n",
        );
        assert!(
            found.iter().any(|e| e.starts_with("t.toml:5:")
                && e.contains("retention.alerts_days (5 days) must be longer")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|e| e.contains("retention.batch must be between 1 and 10000")),
            "{found:?}"
        );
    }

    #[test]
    fn errors_point_at_line_and_column() {
        assert_eq!(
            errors("[server]\nlisten = 5\n"),
            ["t.toml:2:10: invalid type: integer `5`, expected a string"]
        );
        assert_eq!(
            errors("[server]\nlisten = \"nowhere\"\n")[0],
            "t.toml:2:10: server.listen: \"nowhere\" is not an address like 127.0.0.1:8470 (invalid socket address syntax)"
        );
        let unknown = errors("[storage]\ndatadir = \"x\"\n");
        assert!(
            unknown[0].starts_with("t.toml:2:1: unknown field `datadir`"),
            "{unknown:?}"
        );
        let rule = errors("[[rules]]\nname = \"r\"\nwhen = 'check ==== 1'\n");
        assert!(
            rule[0].starts_with("t.toml:3:8: rule \"r\": when:"),
            "{rule:?}"
        );
        let severity = errors("[[rules]]\nname = \"r\"\nseverity = \"bad\"\n");
        assert!(
            severity[0].starts_with("t.toml:3:12: unknown variant `bad`"),
            "{severity:?}"
        );
    }

    #[test]
    fn access_settings_are_checked() {
        let auth = errors("[server]\nauth = \"off\"\n");
        assert!(
            auth[0].starts_with(
                "t.toml:2:8: unknown variant `off`, expected one of `auto`, `required`, `none`"
            ),
            "{auth:?}"
        );
        let url = errors("[server]\npublic_url = \"vakt.example.com\"\n");
        assert!(
            url[0].contains("server.public_url: \"vakt.example.com\" is not an http(s) URL"),
            "{url:?}"
        );
        let tls = errors("[server]\ntls_cert = \"c.pem\"\n");
        assert!(
            tls[0].contains("tls_cert and server.tls_key go together"),
            "{tls:?}"
        );
        let ca = errors("[server]\ntls_client_ca = \"ca.pem\"\n");
        assert!(ca[0].contains("tls_client_ca needs"), "{ca:?}");
        let role = errors("[[users]]\nid = \"a\"\nrole = \"root\"\n");
        assert!(
            role[0].contains("role \"root\" is not one of viewer, responder"),
            "{role:?}"
        );
        let hash = errors("[[users]]\nid = \"a\"\npassword_hash = \"hunter2\"\n");
        assert!(
            hash[0].contains("password_hash is not an argon2id hash"),
            "{hash:?}"
        );
    }

    /// Issue 13: every problem of a file at once, each at its line, whichever phase finds
    /// it (reading a section, compiling rules, checking references and limits).
    #[test]
    fn every_problem_is_reported_at_once_with_its_place() {
        let source = r#"[server]
listen = 5

[ingest]
queue_events_max = 10
request_events_max = 20

[[rules]]
name = "r"
when = 'check ==== 1'

[[rules]]
name = "s"
severity = "bad"

[[users]]
id = "alice"

[[escalation_policies]]
name = "p"
[[escalation_policies.steps]]
notify = [{ user = "ghost" }]

[[probes]]
name = "root"
type = "disk"

[[heartbeats]]
name = "backup"
resource = "db1"
interval_secs = 0

[typo]
x = 1
"#;
        let found = errors(source);
        let expect = [
            "t.toml:2:10: invalid type: integer `5`",
            "t.toml:6:1: ingest.request_events_max (20) cannot exceed",
            "t.toml:10:8: rule \"r\": when:",
            "t.toml:14:12: unknown variant `bad`",
            "t.toml:21:1: escalation_policies.p.steps[0]: unknown user ghost",
            "t.toml:24:1: probes.root: type = \"disk\" needs path",
            "t.toml:28:1: heartbeats.backup: interval_secs must be at least 1",
            "t.toml:33:2: unknown section `typo`",
        ];
        for line in expect {
            assert!(
                found.iter().any(|f| f.starts_with(line)),
                "{line:?} missing from {found:#?}"
            );
        }
        assert!(
            found.iter().all(|f| f.starts_with("t.toml:")),
            "every one placed: {found:#?}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// **Boundary:** any text is a configuration or a list of `file:line:column`
        /// problems (or `file: ...` for what has no place); nothing panics.
        #[test]
        fn any_text_is_a_configuration_or_placed_errors(text in "(\\[[a-z_.]{0,12}\\]\n|[a-z_]{1,10} = (\"[^\"\n]{0,10}\"|[0-9]{1,4}|true)\n|\\[\\[rules\\]\\]\n|.{0,20}\n){0,12}") {
            match Config::parse("t.toml", &text, None, &Overrides::default()) {
                Ok(_) => {}
                Err(errors) => {
                    proptest::prop_assert!(!errors.lines.is_empty());
                    proptest::prop_assert!(errors.lines.iter().all(|l| l.starts_with("t.toml")), "{:?}", errors.lines);
                }
            }
        }
    }

    #[test]
    fn chat_ids_are_checked() {
        let found =
            errors("[[users]]\nid = \"alice\"\nslack_id = \"@alice\"\nmattermost = \"@alice\"\n");
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("t.toml:1:1: users.alice: slack_id")),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|f| f.contains("users.alice: mattermost")),
            "{found:#?}"
        );
    }

    #[test]
    fn overrides_win() {
        let overrides = Overrides {
            listen: Some("127.0.0.1:9999".into()),
            data_dir: Some("/tmp/x".into()),
            database_url: None,
        };
        let config = Config::parse("t", "", None, &overrides).expect("loads");
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.location, Location::SqliteDir("/tmp/x".into()));
        let pg = Overrides {
            database_url: Some("postgres://h/db".into()),
            ..overrides
        };
        let config = Config::parse("t", "", None, &pg).expect("loads");
        assert_eq!(
            config.location,
            Location::Postgres("postgres://h/db".into())
        );
        let bad = Overrides {
            database_url: Some("mysql://h".into()),
            ..Overrides::default()
        };
        assert!(Config::parse("t", "", None, &bad).is_err());
    }

    #[test]
    fn ingest_bounds_are_checked() {
        let found = errors("[ingest]\nqueue_events_max = 10\nrequest_events_max = 20\n");
        assert!(found[0].contains("cannot exceed"), "{found:?}");
    }
}
