//! The handling stage's configuration: `[dispatch]`, `[channels.NAME]`, `[[inhibit_rules]]`, and
//! `HandlingConfig`, all of it compiled at load (templates checked, channels resolved, inhibit
//! rules parsed) and swapped whole on reload.

use super::*;
use vakt_core::secret::Secret;

/// `[dispatch]`: how the handling stage runs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Actions running at once, all kinds together.
    pub concurrency: usize,
    /// How often due actions are looked for when nothing wakes the dispatcher.
    pub poll_interval_ms: u64,
    /// Base URL of this vakt as people reach it, for links in notifications.
    pub console_url: String,
    /// Off: actions are decided and recorded, never run (a read-only replica, a test).
    pub enabled: bool,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            concurrency: 32,
            poll_interval_ms: 1000,
            console_url: "http://127.0.0.1:8470".to_owned(),
            enabled: true,
        }
    }
}

/// `[channels.NAME]`: where notifications go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelConfig {
    Email {
        host: String,
        #[serde(default = "default_smtp_port")]
        port: u16,
        #[serde(default)]
        tls: SmtpTls,
        #[serde(default)]
        username: Option<String>,
        /// A string, `${ENV}`, `{ env = "NAME" }` or `{ file = "/path" }`.
        #[serde(default)]
        password: Option<Secret>,
        from: String,
        /// Default recipients when the action names none.
        #[serde(default)]
        to: Vec<String>,
        /// Templates replacing the built-in subject and body.
        #[serde(default)]
        subject: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
        #[serde(default, flatten)]
        throttle: ThrottleConfig,
    },
    Slack(ChatConfig),
    Mattermost(ChatConfig),
    Teams(ChatConfig),
    Webhook(ChatConfig),
}

/// A chat service's (or a generic) incoming webhook.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    /// The webhook URL: the credential itself (a string, `${ENV}`, `{ env = "NAME" }` or
    /// `{ file = "/path" }`).
    pub url: Secret,
    /// Extra headers; their values are secrets too (`Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// A template producing the JSON body, replacing the service's built-in format.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default, flatten)]
    pub throttle: ThrottleConfig,
}

/// At most `throttle_max` messages per `throttle_window_secs` to one channel and recipient
/// list; the rest are recorded as skipped and summarised in one message when the window
/// allows. 0 is unlimited.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    #[serde(default)]
    pub throttle_max: u32,
    #[serde(default = "default_throttle_window")]
    pub throttle_window_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on loopback).
    None,
    /// STARTTLS, required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_timeout() -> u64 {
    10
}
fn default_throttle_window() -> u64 {
    300
}

/// `[[inhibit_rules]]`: while an alert matching `source_matchers` is active, alerts matching
/// `target_matchers` that agree with it on `equal` do not notify. An `equal` entry
/// `"upstream=resource"` compares the target's `upstream` label with the source's `resource`:
/// that is how declared dependencies are written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub source_matchers: Vec<Spanned<String>>,
    pub target_matchers: Vec<Spanned<String>>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// The email channel as the deliverer needs it.
#[derive(Debug, Clone)]
pub struct EmailChannel {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub timeout_secs: u64,
}

/// Everything the dispatcher needs from the configuration, compiled: templates checked,
/// channels resolved, inhibit rules parsed. Built at load and reload.
pub struct HandlingConfig {
    pub dispatch: DispatchConfig,
    pub(super) actions: BTreeMap<String, ActionConfig>,
    pub(super) channels: BTreeMap<String, ChannelConfig>,
    pub(super) inhibit: Vec<InhibitRule>,
    pub(super) templates: minijinja::Environment<'static>,
}

impl HandlingConfig {
    pub fn build(
        dispatch: &DispatchConfig,
        actions: &BTreeMap<String, Spanned<ActionConfig>>,
        channels: &BTreeMap<String, Spanned<ChannelConfig>>,
        inhibit: &[InhibitRuleConfig],
    ) -> Result<HandlingConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut templates = render::environment();
        for (name, action) in actions {
            let span = action.span();
            match action.get_ref() {
                ActionConfig::Exec {
                    command,
                    env,
                    shell,
                    ..
                } => {
                    if command.is_empty() {
                        errors.push(ConfigError::at(
                            span.clone(),
                            format!("actions.{name}: command is empty"),
                        ));
                    }
                    for (i, arg) in command.iter().enumerate() {
                        add_template(
                            &mut templates,
                            &mut errors,
                            render::command_template(name, i, *shell),
                            arg,
                            span.clone(),
                        );
                    }
                    for (key, value) in env {
                        add_template(
                            &mut templates,
                            &mut errors,
                            format!("actions.{name}.env.{key}"),
                            value,
                            span.clone(),
                        );
                    }
                }
                ActionConfig::Webhook { url, body, .. } => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        errors.push(ConfigError::at(
                            span.clone(),
                            format!(
                                "actions.{name}: url {url:?} must start with http:// or https://"
                            ),
                        ));
                    }
                    if let Some(body) = body {
                        add_template(
                            &mut templates,
                            &mut errors,
                            render::json_template(&format!("actions.{name}.body")),
                            body,
                            span.clone(),
                        );
                    }
                }
                ActionConfig::Notify { channel, .. } => {
                    if !channels.contains_key(channel) {
                        let known: Vec<&str> = channels.keys().map(String::as_str).collect();
                        errors.push(ConfigError::at(
                            span.clone(),
                            format!(
                                "actions.{name}: unknown channel {channel:?}; defined channels: {}",
                                if known.is_empty() {
                                    "none (add a [channels.NAME] table)".to_owned()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        ));
                    }
                }
            }
        }
        for (name, channel) in channels {
            let span = channel.span();
            match channel.get_ref() {
                ChannelConfig::Email {
                    subject,
                    body,
                    from,
                    ..
                } => {
                    if from.parse::<lettre::message::Mailbox>().is_err() {
                        errors.push(ConfigError::at(
                            span.clone(),
                            format!("channels.{name}: from {from:?} is not an email address"),
                        ));
                    }
                    if let Some(subject) = subject {
                        add_template(
                            &mut templates,
                            &mut errors,
                            format!("channels.{name}.subject"),
                            subject,
                            span.clone(),
                        );
                    }
                    if let Some(body) = body {
                        add_template(
                            &mut templates,
                            &mut errors,
                            format!("channels.{name}.body"),
                            body,
                            span.clone(),
                        );
                    }
                }
                ChannelConfig::Slack(chat)
                | ChannelConfig::Mattermost(chat)
                | ChannelConfig::Teams(chat)
                | ChannelConfig::Webhook(chat) => {
                    let url = chat.url.expose();
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        errors.push(ConfigError::at(
                            span.clone(),
                            format!(
                                "channels.{name}: url must start with http:// or https:// (it starts {:?})",
                                url.chars().take(8).collect::<String>()
                            ),
                        ));
                    }
                    if let Some(body) = &chat.template {
                        add_template(
                            &mut templates,
                            &mut errors,
                            render::json_template(&format!("channels.{name}.template")),
                            body,
                            span.clone(),
                        );
                    }
                }
            }
        }
        let mut rules = Vec::new();
        for (i, rule) in inhibit.iter().enumerate() {
            let name = rule
                .name
                .clone()
                .unwrap_or_else(|| format!("inhibit_rules[{i}]"));
            let parse = |list: &[Spanned<String>], errors: &mut Vec<ConfigError>| {
                list.iter()
                    .filter_map(|m| {
                        Matcher::parse(m.get_ref())
                            .map_err(|e| {
                                errors.push(ConfigError::at(m.span(), format!("{name}: {e}")))
                            })
                            .ok()
                    })
                    .collect::<Vec<_>>()
            };
            let source = parse(&rule.source_matchers, &mut errors);
            let target = parse(&rule.target_matchers, &mut errors);
            rules.push(InhibitRule {
                name: name.clone(),
                source,
                target,
                equal: rule
                    .equal
                    .iter()
                    .map(|e| match e.split_once('=') {
                        Some((t, s)) => (t.trim().to_owned(), s.trim().to_owned()),
                        None => (e.clone(), e.clone()),
                    })
                    .collect(),
            });
        }
        if dispatch.concurrency == 0 {
            errors.push(ConfigError {
                span: None,
                message: "dispatch.concurrency must be at least 1".into(),
            });
        }
        if errors.is_empty() {
            Ok(HandlingConfig {
                dispatch: dispatch.clone(),
                actions: actions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                    .collect(),
                channels: channels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                    .collect(),
                inhibit: rules,
                templates,
            })
        } else {
            Err(errors)
        }
    }
}

pub(super) fn add_template(
    templates: &mut minijinja::Environment<'static>,
    errors: &mut Vec<ConfigError>,
    name: String,
    source: &str,
    span: std::ops::Range<usize>,
) {
    if let Err(error) = templates.add_template_owned(name.clone(), source.to_owned()) {
        errors.push(ConfigError::at(span, format!("{name}: {error:#}")));
    }
}

pub(super) fn valid_json(text: &str) -> Result<String, String> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|_| text.to_owned())
        .map_err(|e| {
            format!(
                "the template did not produce JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            )
        })
}

impl ChannelConfig {
    pub(super) fn throttle(&self) -> ThrottleConfig {
        match self {
            ChannelConfig::Email { throttle, .. } => *throttle,
            ChannelConfig::Slack(c)
            | ChannelConfig::Mattermost(c)
            | ChannelConfig::Teams(c)
            | ChannelConfig::Webhook(c) => c.throttle,
        }
    }

    pub(super) fn email(&self) -> Option<EmailChannel> {
        match self {
            ChannelConfig::Email {
                host,
                port,
                tls,
                username,
                password,
                from,
                timeout_secs,
                ..
            } => Some(EmailChannel {
                host: host.clone(),
                port: *port,
                tls: *tls,
                username: username.clone(),
                password: password.clone(),
                from: from.clone(),
                timeout_secs: *timeout_secs,
            }),
            _ => None,
        }
    }
}
