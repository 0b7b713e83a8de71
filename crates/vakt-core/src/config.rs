//! The pipeline's part of the TOML configuration: alert settings, rules and actions, with source spans.
//!
//! The server crate owns the whole file (listen address, storage, limits) and embeds these
//! types; `Pipeline::build` turns them into a compiled pipeline or a list of `ConfigError`s
//! that point at the offending bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::event::{Category, Severity};

/// The configuration the pipeline is built from.
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    pub alerts: AlertsConfig,
    pub rules: Vec<Spanned<RuleConfig>>,
    pub actions: BTreeMap<String, Spanned<ActionConfig>>,
    pub maintenance: Vec<MaintenanceConfig>,
    pub escalation_policies: Vec<crate::escalation::PolicyConfig>,
    pub incidents: crate::incident::IncidentsConfig,
}

impl PipelineConfig {
    /// Parses a TOML document holding only the pipeline's sections (`[alerts]`, `[[rules]]`,
    /// `[actions.NAME]`), as tests and tools that need no server settings do.
    pub fn from_toml(source: &str) -> Result<PipelineConfig, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            alerts: AlertsConfig,
            #[serde(default)]
            rules: Vec<Spanned<RuleConfig>>,
            #[serde(default)]
            actions: BTreeMap<String, Spanned<ActionConfig>>,
            #[serde(default)]
            maintenance: Vec<MaintenanceConfig>,
            #[serde(default)]
            escalation_policies: Vec<crate::escalation::PolicyConfig>,
            #[serde(default)]
            incidents: crate::incident::IncidentsConfig,
        }
        let file: File = toml::from_str(source).map_err(|error| ConfigError {
            span: error.span(),
            message: error.message().to_owned(),
        })?;
        Ok(PipelineConfig {
            alerts: file.alerts,
            rules: file.rules,
            actions: file.actions,
            maintenance: file.maintenance,
            escalation_policies: file.escalation_policies,
            incidents: file.incidents,
        })
    }
}

/// `[alerts]`: how events become alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// A problem event within this many seconds of its alert's resolution reopens that alert
    /// instead of opening a new one. 0 always opens a new alert.
    pub reopen_window_secs: u64,
    /// The event fields the default fingerprint is computed from.
    pub fingerprint: Spanned<Vec<String>>,
    /// An alert that changes state (opens, reopens, resolves) more than this many times
    /// within `flap_window_secs` is flapping: it notifies once that it flaps, then not
    /// until it settles. 0 turns detection off. Needs `reopen_window_secs` at least
    /// `flap_window_secs`, or each reopening would be a new alert.
    pub flap_threshold: u32,
    pub flap_window_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            reopen_window_secs: 0,
            fingerprint: Spanned::new(
                0..0,
                ["environment", "resource", "check", "service"]
                    .map(String::from)
                    .to_vec(),
            ),
            flap_threshold: 0,
            flap_window_secs: 600,
        }
    }
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name, shown in traces.
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A disabled rule is compiled and checked but never evaluated.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// CEL condition over the event; absent means every event matches.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    #[serde(default)]
    pub category: Option<Category>,
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Labels to add or overwrite.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Drop the event: stored with its trace, but no alert and no action.
    #[serde(default)]
    pub drop: bool,
    /// Fields the fingerprint is computed from for events this rule matches.
    #[serde(default)]
    pub fingerprint: Option<Spanned<Vec<String>>>,
    /// Names of `[actions.NAME]` to run for the alert.
    #[serde(default)]
    pub actions: Vec<Spanned<String>>,
    /// Go on evaluating later rules after this one matched (default: stop).
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// An `[[escalation_policies]]` name: the alert climbs it until someone acknowledges.
    #[serde(default)]
    pub escalate: Option<Spanned<String>>,
    /// Open an incident for the alert (or join the open one it correlates with).
    #[serde(default)]
    pub incident: bool,
    /// The incident's impact, 1 (high) .. 3 (low); default `incidents.default_impact`.
    #[serde(default)]
    pub impact: Option<u8>,
}

fn yes() -> bool {
    true
}

/// One `[actions.NAME]` entry: something done about an alert. The pipeline decides which
/// actions run and why; the server's dispatcher executes them (`docs/actions.md`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ActionConfig {
    /// Run a command, without a shell unless `shell = true`:
    /// `command = ["systemctl", "restart", "{{ alert.service }}"]`.
    Exec {
        /// Program and arguments; each element is a template.
        command: Vec<String>,
        /// Run `command` joined as one `/bin/sh -c` script. Off by default: a shell turns
        /// event text into code.
        #[serde(default)]
        shell: bool,
        /// Extra environment, values are templates. `VAKT_ALERT_ID` and friends are always set.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Working directory.
        #[serde(default)]
        cwd: Option<String>,
        #[serde(default = "default_exec_timeout_secs")]
        timeout_secs: u64,
        /// At most this many runs of this action at once; more wait.
        #[serde(default = "one")]
        concurrency: u32,
        /// After a run for an alert, later decisions for the same alert within this many
        /// seconds are skipped (recorded, not run).
        #[serde(default)]
        cooldown_secs: u64,
        /// Render and record the command, do not run it.
        #[serde(default)]
        dry_run: bool,
        /// Bytes of stdout and of stderr kept on the timeline.
        #[serde(default = "default_output_max")]
        output_max_bytes: usize,
        /// Commands are not retried unless asked: a remediation that failed needs a person.
        #[serde(default = "no_retry")]
        retry: RetryConfig,
    },
    /// An HTTP call with a templated JSON body.
    Webhook {
        url: String,
        #[serde(default = "default_method")]
        method: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// A template producing JSON; the default body is vakt's notification document.
        #[serde(default)]
        body: Option<String>,
        /// Sign the body: `X-Vakt-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
        #[serde(default)]
        hmac_secret: Option<String>,
        #[serde(default = "default_http_timeout_secs")]
        timeout_secs: u64,
        /// Also call when the alert resolves.
        #[serde(default = "yes_")]
        send_resolved: bool,
        #[serde(default)]
        retry: RetryConfig,
    },
    /// Tell people through a `[channels.NAME]` (email, Slack, Mattermost, Teams, webhook).
    Notify {
        channel: String,
        /// Recipients: addresses for email; ignored by chat webhooks (the URL names the room).
        #[serde(default)]
        to: Vec<String>,
        #[serde(default = "yes_")]
        send_resolved: bool,
        /// Group alerts that share these labels (fields count as labels: `service`,
        /// `resource`, `check`, ...) into one message. Empty: one message per alert.
        #[serde(default)]
        group_by: Vec<String>,
        /// Wait this long after a group's first alert before sending it.
        #[serde(default = "default_group_wait")]
        group_wait_secs: u64,
        /// At least this long between two messages of one group.
        #[serde(default = "default_group_interval")]
        group_interval_secs: u64,
        #[serde(default)]
        retry: RetryConfig,
    },
}

/// How a failed attempt is retried: `attempts` in all, waiting `backoff_secs`, doubled each
/// time up to `backoff_max_secs`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub attempts: u32,
    pub backoff_secs: u64,
    pub backoff_max_secs: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 5,
            backoff_secs: 2,
            backoff_max_secs: 300,
        }
    }
}

fn no_retry() -> RetryConfig {
    RetryConfig {
        attempts: 1,
        ..RetryConfig::default()
    }
}
fn default_exec_timeout_secs() -> u64 {
    60
}
fn default_http_timeout_secs() -> u64 {
    10
}
fn default_output_max() -> usize {
    16 * 1024
}
fn default_method() -> String {
    "POST".to_owned()
}
fn default_group_wait() -> u64 {
    30
}
fn default_group_interval() -> u64 {
    300
}
fn one() -> u32 {
    1
}
fn yes_() -> bool {
    true
}

impl ActionConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ActionConfig::Exec { .. } => "exec",
            ActionConfig::Webhook { .. } => "webhook",
            ActionConfig::Notify { .. } => "notify",
        }
    }

    /// Whether a resolution of an alert this action ran for is announced again.
    pub fn send_resolved(&self) -> bool {
        match self {
            ActionConfig::Exec { .. } => false,
            ActionConfig::Webhook { send_resolved, .. }
            | ActionConfig::Notify { send_resolved, .. } => *send_resolved,
        }
    }

    /// Actions that tell people (and so are subject to flapping and grouping).
    pub fn notifies(&self) -> bool {
        !matches!(self, ActionConfig::Exec { .. })
    }

    pub fn retry(&self) -> RetryConfig {
        match self {
            ActionConfig::Exec { retry, .. }
            | ActionConfig::Webhook { retry, .. }
            | ActionConfig::Notify { retry, .. } => *retry,
        }
    }

    /// The labels a notification groups by, if it groups.
    pub fn group_by(&self) -> &[String] {
        match self {
            ActionConfig::Notify { group_by, .. } => group_by,
            _ => &[],
        }
    }
}

/// One `[[maintenance]]` window: recurring (cron with a time zone) or one span; matching
/// events are recorded and categorised, but no action runs for them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    pub name: Spanned<String>,
    /// Cron expression for when the window starts: `"0 2 * * SUN"` (5 fields, or 6 with
    /// seconds first).
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    /// How long each window lasts, in seconds.
    #[serde(default)]
    pub duration_secs: u64,
    /// IANA time zone the schedule is read in (default UTC): `"Europe/Stockholm"`.
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// A one-off window instead of a schedule: RFC 3339 start and end.
    #[serde(default)]
    pub starts_at: Option<Spanned<String>>,
    #[serde(default)]
    pub ends_at: Option<Spanned<String>>,
    /// Prometheus-style matchers over the alert's labels and fields, all must match:
    /// `["environment=\"production\"", "service=~\"db.*\""]`. Empty matches everything.
    #[serde(default)]
    pub matchers: Vec<Spanned<String>>,
    #[serde(default)]
    pub comment: String,
}

/// A configuration problem with the bytes it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl ConfigError {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            span: Some(span),
            message: message.into(),
        }
    }

    /// Formats as `file:line:column: message`, the way compilers do.
    pub fn render(&self, file: &str, source: &str) -> String {
        match &self.span {
            Some(span) if !span.is_empty() || span.start > 0 => {
                let (line, column) = line_col(source, span.start);
                format!("{file}:{line}:{column}: {}", self.message)
            }
            _ => format!("{file}: {}", self.message),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let source = "a = 1\nbé = 2\n";
        assert_eq!(line_col(source, 0), (1, 1));
        assert_eq!(line_col(source, 6), (2, 1));
        assert_eq!(line_col(source, 9), (2, 3));
        assert_eq!(line_col(source, 999), (3, 1));
    }
}
