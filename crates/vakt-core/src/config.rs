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
        }
        let file: File = toml::from_str(source).map_err(|error| ConfigError {
            span: error.span(),
            message: error.message().to_owned(),
        })?;
        Ok(PipelineConfig {
            alerts: file.alerts,
            rules: file.rules,
            actions: file.actions,
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
}

fn yes() -> bool {
    true
}

/// One `[actions.NAME]` entry: something done about an alert. Executing actions is the
/// handling stage's job; the pipeline records which ones a rule asked for and why.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ActionConfig {
    /// Run a command (no shell): `command = ["systemctl", "restart", "nginx"]`.
    Exec {
        command: Vec<String>,
        #[serde(default = "default_action_timeout_secs")]
        timeout_secs: u64,
    },
    /// POST the alert as JSON to a URL.
    Webhook {
        url: String,
        #[serde(default = "default_action_timeout_secs")]
        timeout_secs: u64,
    },
    /// Tell people through a channel (email, chat).
    Notify {
        channel: String,
        #[serde(default)]
        to: Vec<String>,
    },
}

fn default_action_timeout_secs() -> u64 {
    30
}

impl ActionConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ActionConfig::Exec { .. } => "exec",
            ActionConfig::Webhook { .. } => "webhook",
            ActionConfig::Notify { .. } => "notify",
        }
    }
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
