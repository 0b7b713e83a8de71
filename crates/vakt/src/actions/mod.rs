//! The handling stage: the dispatcher that executes decided actions, reliably.
//!
//! Decided actions are rows of the outbox (`decided_actions`), written in the same
//! transaction as the alert change that decided them. The dispatcher claims due rows with a
//! lease, runs each (exec, webhook, notify through a channel), and records every attempt with
//! its outcome in one transaction with the action's new state and a timeline entry.
//! Transient failures are retried with exponential backoff up to the action's limit. A
//! dispatcher that dies mid-attempt leaves a lease that runs out: the next one takes the row
//! back and delivers it again with the same idempotency key (`Idempotency-Key` header, the
//! action id), while a command is never run twice (it is recorded as interrupted).
//!
//! Before a notification goes out: inhibition (an open upstream alert mutes what depends on
//! it), throttling per channel and recipients, and grouping (one message per group per
//! `group_interval`). Silences, maintenance windows and flapping were already applied when
//! the action was decided.

pub mod deliver;
pub mod exec;
pub mod render;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;
use tokio::sync::{Notify, Semaphore};
use toml::Spanned;
use vakt_core::config::{ActionConfig, ConfigError};
use vakt_core::matcher::Matcher;
use vakt_core::{Alert, AlertStatus};
use vakt_store::{ActionRecord, ActionStatus, Attempt, Finish, Next, Store, StoreError};

use crate::live::Live;
use crate::metrics::Metrics;
use deliver::Delivery;
use render::Context;

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
        #[serde(default)]
        password: Option<String>,
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
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
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
    pub password: Option<String>,
    pub from: String,
    pub timeout_secs: u64,
}

struct InhibitRule {
    name: String,
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    /// (target label, source label).
    equal: Vec<(String, String)>,
}

/// Everything the dispatcher needs from the configuration, compiled: templates checked,
/// channels resolved, inhibit rules parsed. Built at load and reload.
pub struct Handling {
    pub dispatch: DispatchConfig,
    actions: BTreeMap<String, ActionConfig>,
    channels: BTreeMap<String, ChannelConfig>,
    inhibit: Vec<InhibitRule>,
    templates: minijinja::Environment<'static>,
}

impl Handling {
    pub fn build(
        dispatch: &DispatchConfig,
        actions: &BTreeMap<String, Spanned<ActionConfig>>,
        channels: &BTreeMap<String, Spanned<ChannelConfig>>,
        inhibit: &[InhibitRuleConfig],
    ) -> Result<Handling, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut templates = render::environment();
        for (name, action) in actions {
            let span = action.span();
            match action.get_ref() {
                ActionConfig::Exec { command, env, .. } => {
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
                            format!("actions.{name}.command[{i}]"),
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
                            format!("actions.{name}.body"),
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
                    if !(chat.url.starts_with("http://") || chat.url.starts_with("https://")) {
                        errors.push(ConfigError::at(
                            span.clone(),
                            format!(
                                "channels.{name}: url {:?} must start with http:// or https://",
                                chat.url
                            ),
                        ));
                    }
                    if let Some(body) = &chat.template {
                        add_template(
                            &mut templates,
                            &mut errors,
                            format!("channels.{name}.template"),
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
            Ok(Handling {
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

    /// Whether any inhibit rule's target matchers match `target` (else nothing can
    /// inhibit it, and no other alert need be read).
    fn may_be_inhibited(&self, target: &Alert) -> bool {
        if self.inhibit.is_empty() || !target.status.is_active() {
            return false;
        }
        let labels = target.match_labels();
        self.inhibit
            .iter()
            .any(|rule| rule.target.iter().all(|m| m.matches(&labels)))
    }

    /// The inhibit rule and the active source alert that mute `target`, if any.
    pub fn inhibitor<'a>(&self, target: &Alert, active: &'a [Alert]) -> Option<(&str, &'a Alert)> {
        if self.inhibit.is_empty() {
            return None;
        }
        let target_labels = target.match_labels();
        for rule in &self.inhibit {
            if !rule.target.iter().all(|m| m.matches(&target_labels)) {
                continue;
            }
            for source in active
                .iter()
                .filter(|a| a.id != target.id && a.status.is_active())
            {
                let source_labels = source.match_labels();
                if rule.source.iter().all(|m| m.matches(&source_labels))
                    && rule
                        .equal
                        .iter()
                        .all(|(t, s)| target_labels.get(t) == source_labels.get(s))
                {
                    return Some((rule.name.as_str(), source));
                }
            }
        }
        None
    }

    /// Why `target` is inhibited, if it is.
    fn inhibited_by(&self, target: &Alert, active: &[Alert]) -> Option<String> {
        self.inhibitor(target, active).map(|(rule, source)| {
            format!(
                "inhibited by rule {rule} while alert {} ({} on {}) is active",
                source.id, source.check, source.resource
            )
        })
    }
}

fn add_template(
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

/// Backoff before retry number `attempt` (1-based): base * 2^(attempt-1), capped.
fn backoff(config: &vakt_core::config::RetryConfig, attempt: i64) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    Duration::from_secs(
        config
            .backoff_secs
            .saturating_mul(1u64 << exponent)
            .min(config.backoff_max_secs),
    )
}

/// Messages sent per (channel, recipients), for throttling; held-back lines for the summary.
/// Stored as they change (`Store::put_throttle`) and loaded at start, so a restart in the
/// middle of a storm does not open a fresh window.
#[derive(Default)]
struct Throttles {
    windows: HashMap<ThrottleKey, Window>,
    /// Windows changed since they were last stored.
    dirty: std::collections::HashSet<ThrottleKey>,
}

/// A channel and the recipients a message goes to.
type ThrottleKey = (String, Vec<String>);

/// Lines held back for one summary, at most.
const THROTTLE_HELD_MAX: usize = 1000;

#[derive(Default, serde::Serialize, Deserialize)]
struct Window {
    sent: VecDeque<chrono::DateTime<Utc>>,
    held: Vec<String>,
}

impl Window {
    /// Forgets messages older than the window; whether another may go out now.
    fn has_room(&mut self, throttle: ThrottleConfig, now: chrono::DateTime<Utc>) -> bool {
        let window = chrono::Duration::seconds(
            i64::try_from(throttle.throttle_window_secs).unwrap_or(i64::MAX / 1000),
        );
        while self.sent.front().is_some_and(|&t| now - t >= window) {
            self.sent.pop_front();
        }
        self.sent.len() < usize::try_from(throttle.throttle_max).unwrap_or(usize::MAX)
    }
}

impl Throttles {
    /// What to store for the changed windows: (key, state, or `None` once empty).
    fn take_dirty(&mut self) -> Vec<(String, Option<String>)> {
        let dirty: Vec<ThrottleKey> = self.dirty.drain().collect();
        dirty
            .into_iter()
            .map(|key| {
                let state = self
                    .windows
                    .get(&key)
                    .filter(|w| !w.sent.is_empty() || !w.held.is_empty())
                    .and_then(|w| serde_json::to_string(w).ok());
                (serde_json::to_string(&key).unwrap_or_default(), state)
            })
            .collect()
    }

    /// Takes stored windows back (at start); entries that do not parse are skipped.
    fn restore(&mut self, stored: Vec<(String, String)>) -> usize {
        let mut restored = 0;
        for (key, state) in stored {
            match (
                serde_json::from_str::<ThrottleKey>(&key),
                serde_json::from_str::<Window>(&state),
            ) {
                (Ok(key), Ok(window)) => {
                    self.windows.insert(key, window);
                    restored += 1;
                }
                _ => tracing::warn!(%key, "a stored throttle window does not parse; skipped"),
            }
        }
        restored
    }
}

/// The dispatcher's shared parts.
pub struct Dispatcher {
    deps: Deps,
    wake: Arc<Notify>,
    client: reqwest::Client,
    running: Arc<Semaphore>,
    per_action: Mutex<HashMap<String, Arc<Semaphore>>>,
    throttles: Mutex<Throttles>,
    finisher: tokio::sync::mpsc::Sender<Finished>,
    /// When abandoned leases were last looked for (a write transaction: not every round).
    recovered_at: Mutex<Option<Instant>>,
}

/// An attempt to store, and who waits for it.
type Finished = (ActionRecord, Finish, tokio::sync::oneshot::Sender<()>);

/// Most attempts one finishing transaction stores.
const FINISH_BATCH_MAX: usize = 512;

/// Commits finished attempts in batches: one transaction (one fsync on SQLite) for all the
/// attempts that ended while the previous one committed.
async fn finisher(store: Arc<dyn Store>, mut queue: tokio::sync::mpsc::Receiver<Finished>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < FINISH_BATCH_MAX {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let items: Vec<(ActionRecord, Finish)> = batch
            .iter()
            .map(|(record, finish, _)| (record.clone(), finish.clone()))
            .collect();
        // The store is the record: retry the write a few times before giving up on it.
        let mut stored = false;
        for attempt in 1..=5u64 {
            match store.finish_actions(&items).await {
                Ok(()) => {
                    stored = true;
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, attempt, attempts = items.len(), "cannot record action attempts");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
        if !stored {
            tracing::error!(
                attempts = items.len(),
                "gave up recording attempts; their leases will run out and they will be taken back"
            );
        }
        for (_, _, done) in batch {
            let _ = done.send(());
        }
    }
}

/// Starts the dispatcher; it stops when `stop` turns true.
/// What the dispatcher needs from the rest of vakt.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// The handling stage's configuration in force (reload publishes a new one).
    pub handling: Live<Handling>,
    /// Woken when there is due work (a commit decided actions, an operator retried one).
    pub wake: Arc<Notify>,
}

impl Deps {
    fn handling(&self) -> Arc<Handling> {
        self.handling.get()
    }
}

/// Starts the dispatcher; it stops taking work when `stop` turns true and ends once the
/// attempts it started have finished.
pub fn spawn(
    deps: Deps,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let handling = deps.handling();
    let wake = Arc::clone(&deps.wake);
    let concurrency = handling.dispatch.concurrency.max(1);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap_or_default();
    let (finished, queue) = tokio::sync::mpsc::channel(FINISH_BATCH_MAX * 2);
    tokio::spawn(finisher(Arc::clone(&deps.store), queue));
    let dispatcher = Arc::new(Dispatcher {
        deps,
        wake,
        client,
        running: Arc::new(Semaphore::new(concurrency)),
        per_action: Mutex::new(HashMap::new()),
        throttles: Mutex::new(Throttles::default()),
        finisher: finished,
        recovered_at: Mutex::new(None),
    });
    tokio::spawn(async move {
        // The embedded database has one writer process: whatever was running when this
        // process started belonged to a process that is gone, whatever its lease says.
        if dispatcher.deps.store.capabilities().single_process {
            match dispatcher
                .deps
                .store
                .recover_actions(chrono::DateTime::<Utc>::MAX_UTC, Utc::now())
                .await
            {
                Ok(recovered) if !recovered.is_empty() => tracing::warn!(
                    actions = recovered.len(),
                    "took back actions that were running when vakt stopped"
                ),
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "cannot take back interrupted actions"),
            }
        }
        // Throttle windows outlive a restart: a storm stays throttled.
        match dispatcher.deps.store.throttles().await {
            Ok(stored) => {
                let restored = dispatcher
                    .throttles
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .restore(stored);
                if restored > 0 {
                    tracing::info!(windows = restored, "throttle windows restored");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the stored throttle windows"),
        }
        loop {
            if *stop.borrow() {
                break;
            }
            let handling = dispatcher.deps.handling();
            let poll = Duration::from_millis(handling.dispatch.poll_interval_ms.max(10));
            if handling.dispatch.enabled
                && let Err(error) = dispatcher.round(&handling).await
            {
                tracing::warn!(%error, "dispatch round failed; trying again");
            }
            tokio::select! {
                _ = dispatcher.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
        // Let running attempts finish (bounded by their timeouts): they hold permits.
        let _ = dispatcher
            .running
            .acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX))
            .await;
    })
}

impl Dispatcher {
    /// One pass: take back abandoned actions, start due ones, send due groups, summaries.
    async fn round(self: &Arc<Self>, handling: &Arc<Handling>) -> Result<(), StoreError> {
        let store = Arc::clone(&self.deps.store);
        // Leases run for many seconds, so looking for abandoned ones once a poll interval is
        // soon enough; rounds woken by new work (many a second under load) skip it, and the
        // claim behind it does not queue for the writer twice.
        let poll = Duration::from_millis(handling.dispatch.poll_interval_ms.max(10));
        let recover = {
            let mut at = self
                .recovered_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = at.is_none_or(|at| at.elapsed() >= poll);
            if due {
                *at = Some(Instant::now());
            }
            due
        };
        if recover {
            let now = Utc::now();
            let recovered = store.recover_actions(now, now).await?;
            if !recovered.is_empty() {
                tracing::warn!(
                    actions = recovered.len(),
                    "took back actions whose dispatcher stopped mid-attempt"
                );
            }
        }
        // Claim in batches: a claim is a write transaction, so claiming one action each time
        // one finishes would spend a commit per action. Wait for a quarter of the slots.
        let concurrency = handling.dispatch.concurrency.max(1);
        let batch_min = (concurrency / 4).max(1);
        loop {
            let free = self.running.available_permits();
            if free == 0 || (free < batch_min && free < concurrency) {
                break;
            }
            let now = Utc::now();
            // The lease outlasts the longest attempt: the action's timeout plus a margin.
            let lease_until = now + chrono::Duration::seconds(lease_secs(handling));
            let claimed = store
                .claim_actions(now, lease_until, u32::try_from(free).unwrap_or(u32::MAX))
                .await?;
            if claimed.is_empty() {
                break;
            }
            for record in claimed {
                let Ok(permit) = Arc::clone(&self.running).acquire_owned().await else {
                    return Ok(());
                };
                let this = Arc::clone(self);
                let handling = Arc::clone(handling);
                tokio::spawn(async move {
                    this.run_one(&handling, record).await;
                    drop(permit);
                    // Room for another: look for due work now, not at the next poll.
                    this.wake.notify_one();
                });
            }
        }
        self.send_groups(handling).await?;
        self.send_summaries(handling).await;
        self.store_throttles().await;
        Ok(())
    }

    async fn run_one(&self, handling: &Handling, record: ActionRecord) {
        let started = Utc::now();
        let result = self.attempt(handling, &record).await;
        let finished = Utc::now();
        let finish = self.finish_for(handling, &record, result, started, finished);
        self.store_throttles().await;
        self.record(vec![(record, finish)]).await;
    }

    /// Stores the throttle windows that changed; a failed write is tried again later.
    async fn store_throttles(&self) {
        let changed = self
            .throttles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_dirty();
        for (key, state) in changed {
            if let Err(error) = self.deps.store.put_throttle(&key, state.as_deref()).await {
                tracing::warn!(%error, %key, "cannot store a throttle window; trying again later");
                if let Ok(key) = serde_json::from_str::<ThrottleKey>(&key) {
                    self.throttles
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .dirty
                        .insert(key);
                }
            }
        }
    }

    /// Records attempts: counted in metrics, then committed by the finisher (several
    /// dispatch tasks' attempts share one transaction); returns once they are stored.
    async fn record(&self, items: Vec<(ActionRecord, Finish)>) {
        let metrics = &self.deps.metrics;
        let mut waits = Vec::with_capacity(items.len());
        for (record, finish) in items {
            metrics
                .action_attempts
                .get_or_create(&crate::metrics::AttemptLabels {
                    kind: record.decided.kind,
                    outcome: match &finish.next {
                        Next::Done(ActionStatus::Succeeded) => "succeeded",
                        Next::Done(ActionStatus::Skipped) => "skipped",
                        Next::Retry(_) => "retry",
                        Next::Done(_) => "failed",
                    },
                })
                .inc();
            if let Next::Done(ActionStatus::Succeeded) = finish.next {
                let latency = (finish.attempt.finished_at - record.decided.decided_at)
                    .num_milliseconds()
                    .max(0) as f64
                    / 1000.0;
                metrics.action_latency_seconds.observe(latency);
            }
            let (done, wait) = tokio::sync::oneshot::channel();
            if self.finisher.send((record, finish, done)).await.is_ok() {
                waits.push(wait);
            }
        }
        for wait in waits {
            let _ = wait.await;
        }
    }

    fn finish_for(
        &self,
        handling: &Handling,
        record: &ActionRecord,
        result: Outcome,
        started: chrono::DateTime<Utc>,
        finished: chrono::DateTime<Utc>,
    ) -> Finish {
        let retry = handling
            .actions
            .get(&*record.decided.action)
            .map(ActionConfig::retry)
            .unwrap_or_default();
        let (outcome, next, detail, output) = match result {
            Outcome::Succeeded { detail, output } => (
                "succeeded",
                Next::Done(ActionStatus::Succeeded),
                detail,
                output,
            ),
            Outcome::Skipped(detail) => {
                ("skipped", Next::Done(ActionStatus::Skipped), detail, None)
            }
            Outcome::Failed {
                detail,
                output,
                transient,
            } => {
                if transient && record.attempts < i64::from(retry.attempts) {
                    let wait = backoff(&retry, record.attempts);
                    (
                        "failed",
                        Next::Retry(
                            finished
                                + chrono::Duration::from_std(wait)
                                    .unwrap_or(chrono::Duration::zero()),
                        ),
                        format!("{detail}; retry in {} s", wait.as_secs()),
                        output,
                    )
                } else {
                    let why = if transient {
                        format!("{detail}; gave up after {} attempt(s)", record.attempts)
                    } else {
                        format!("{detail}; not retried (a permanent error)")
                    };
                    ("failed", Next::Done(ActionStatus::Failed), why, output)
                }
            }
        };
        let mut timeline = format!(
            "action {} ({}, {}) attempt {}: {outcome}: {detail}",
            record.decided.action,
            record.decided.kind,
            record.decided.purpose.as_str(),
            record.attempts
        );
        // A command's first lines of output belong on the alert's timeline too.
        if record.decided.kind == "exec"
            && let Some(excerpt) = output.as_ref().and_then(exec::Ran::excerpt)
        {
            timeline.push('\n');
            timeline.push_str(&excerpt);
        }
        Finish {
            attempt: Attempt {
                id: ulid::Ulid::new().to_string(),
                action_id: record.decided.id.clone(),
                attempt: record.attempts,
                started_at: started,
                finished_at: finished,
                outcome: outcome.to_owned(),
                detail,
                output,
            },
            next,
            timeline,
        }
    }

    /// Runs one action once.
    async fn attempt(&self, handling: &Handling, record: &ActionRecord) -> Outcome {
        let store = &self.deps.store;
        if let Some(page) = &record.decided.target {
            return self.page(handling, record, page).await;
        }
        let Some(config) = handling.actions.get(&*record.decided.action) else {
            return Outcome::Failed {
                detail: format!("action {:?} is no longer configured", record.decided.action),
                output: None,
                transient: false,
            };
        };
        let alert = match store.alert(&record.decided.alert_id).await {
            Ok(Some(alert)) => alert,
            Ok(None) => {
                return Outcome::Failed {
                    detail: "its alert no longer exists".into(),
                    output: None,
                    transient: false,
                };
            }
            Err(error) => return Outcome::transient(format!("reading its alert: {error}")),
        };
        // Inhibition: an active upstream alert mutes notifications of what depends on it.
        if config.notifies() {
            match inhibitions(&**store, handling, &[&alert]).await {
                Ok(mut found) => {
                    if let Some(why) = found.remove(&alert.id) {
                        return Outcome::Skipped(why);
                    }
                }
                Err(error) => return Outcome::transient(format!("checking inhibition: {error}")),
            }
        }
        let event = store.event(&record.decided.event_id).await.ok().flatten();
        let earlier = store.alert_actions(&alert.id).await.unwrap_or_default();
        let context = Context::new(
            record,
            alert,
            event,
            &earlier,
            &handling.dispatch.console_url,
        );
        match config {
            ActionConfig::Exec {
                command,
                shell,
                env,
                cwd,
                timeout_secs,
                concurrency,
                cooldown_secs,
                dry_run,
                output_max_bytes,
                ..
            } => {
                if *cooldown_secs > 0 {
                    match store
                        .last_success(&record.decided.action, &record.decided.alert_id)
                        .await
                    {
                        Ok(Some(last))
                            if (Utc::now() - last).num_seconds()
                                < i64::try_from(*cooldown_secs).unwrap_or(i64::MAX) =>
                        {
                            return Outcome::Skipped(format!(
                                "cooldown: it last ran for this alert {} s ago (cooldown {cooldown_secs} s)",
                                (Utc::now() - last).num_seconds()
                            ));
                        }
                        Ok(_) => {}
                        Err(error) => {
                            return Outcome::transient(format!("checking the cooldown: {error}"));
                        }
                    }
                }
                let name = &*record.decided.action;
                let mut argv = Vec::with_capacity(command.len());
                for i in 0..command.len() {
                    match render::render(
                        &handling.templates,
                        &format!("actions.{name}.command[{i}]"),
                        &context,
                    ) {
                        Ok(arg) => argv.push(arg),
                        Err(e) => return Outcome::permanent(e),
                    }
                }
                if *shell {
                    argv = vec!["/bin/sh".into(), "-c".into(), argv.join(" ")];
                }
                let mut environment = BTreeMap::new();
                let a = &context.alert;
                for (k, v) in [
                    ("VAKT_ACTION_ID", record.decided.id.as_str()),
                    ("VAKT_PURPOSE", record.decided.purpose.as_str()),
                    ("VAKT_ALERT_ID", a.id.as_str()),
                    ("VAKT_ALERT_STATUS", a.status.as_str()),
                    ("VAKT_SEVERITY", a.severity.as_str()),
                    ("VAKT_RESOURCE", a.resource.as_str()),
                    ("VAKT_CHECK", a.check.as_str()),
                    ("VAKT_SUMMARY", a.summary.as_str()),
                ] {
                    environment.insert(k.to_owned(), v.to_owned());
                }
                for key in env.keys() {
                    match render::render(
                        &handling.templates,
                        &format!("actions.{name}.env.{key}"),
                        &context,
                    ) {
                        Ok(value) => {
                            environment.insert(key.clone(), value);
                        }
                        Err(e) => return Outcome::permanent(e),
                    }
                }
                if *dry_run {
                    return Outcome::Succeeded {
                        detail: format!("dry run: would run {argv:?}"),
                        output: Some(serde_json::json!({"argv": argv, "dry_run": true})),
                    };
                }
                let limit = self.action_limit(name, *concurrency);
                let Ok(_permit) = limit.acquire_owned().await else {
                    return Outcome::transient("the action's concurrency limit closed".into());
                };
                match exec::run(
                    &argv,
                    &environment,
                    cwd.as_deref(),
                    Duration::from_secs(*timeout_secs),
                    *output_max_bytes,
                )
                .await
                {
                    Err(detail) => Outcome::permanent(detail),
                    Ok(ran) if ran.succeeded() => Outcome::Succeeded {
                        detail: format!("{}: {}", argv.join(" "), ran.summary()),
                        output: Some(ran.output(&argv)),
                    },
                    Ok(ran) => Outcome::Failed {
                        detail: format!("{}: {}", argv.join(" "), ran.summary()),
                        output: Some(ran.output(&argv)),
                        transient: true,
                    },
                }
            }
            ActionConfig::Webhook {
                url,
                method,
                headers,
                body,
                hmac_secret,
                timeout_secs,
                ..
            } => {
                let body = match body {
                    Some(_) => match render::render(
                        &handling.templates,
                        &format!("actions.{}.body", record.decided.action),
                        &context,
                    )
                    .and_then(|text| valid_json(&text))
                    {
                        Ok(body) => body,
                        Err(e) => return Outcome::permanent(e),
                    },
                    None => context.document().to_string(),
                };
                let headers: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Outcome::from(
                    deliver::http(
                        &self.client,
                        deliver::HttpCall {
                            method,
                            url,
                            headers: &headers,
                            body,
                            timeout: Duration::from_secs(*timeout_secs),
                            idempotency_key: &record.decided.id,
                            hmac_secret: hmac_secret.as_deref(),
                        },
                    )
                    .await,
                )
            }
            ActionConfig::Notify { channel, to, .. } => {
                let Some(channel_config) = handling.channels.get(channel) else {
                    return Outcome::permanent(format!(
                        "channel {channel:?} is no longer configured"
                    ));
                };
                if let Some(held) = self.throttled(channel, to, channel_config, &context) {
                    return Outcome::Skipped(held);
                }
                self.notify(
                    handling,
                    channel,
                    channel_config,
                    to,
                    &context,
                    &record.decided.id,
                )
                .await
            }
        }
    }

    /// Sends an escalation page: through a channel to the person's address (or the
    /// channel's own recipients), or to the person's phone gateway webhook.
    async fn page(
        &self,
        handling: &Handling,
        record: &ActionRecord,
        page: &vakt_core::escalation::Page,
    ) -> Outcome {
        let store = &self.deps.store;
        let alert = match store.alert(&record.decided.alert_id).await {
            Ok(Some(alert)) => alert,
            Ok(None) => return Outcome::permanent("its alert no longer exists".into()),
            Err(error) => return Outcome::transient(format!("reading its alert: {error}")),
        };
        // Acknowledged or resolved since the step fired: the page would only be noise.
        if !matches!(alert.status, AlertStatus::Open) {
            return Outcome::Skipped(format!(
                "not paged: the alert is {} since the step fired",
                alert.status
            ));
        }
        let event = store.event(&record.decided.event_id).await.ok().flatten();
        let context = Context::new(record, alert, event, &[], &handling.dispatch.console_url);
        match &page.via {
            vakt_core::escalation::Via::Channel { channel, to, .. } => {
                let Some(config) = handling.channels.get(channel) else {
                    return Outcome::permanent(format!(
                        "channel {channel:?} is no longer configured"
                    ));
                };
                self.notify(handling, channel, config, to, &context, &record.decided.id)
                    .await
            }
            vakt_core::escalation::Via::Phone { url } => {
                self.post(
                    url,
                    &[],
                    context.document().to_string(),
                    Duration::from_secs(10),
                    &record.decided.id,
                )
                .await
            }
        }
    }

    fn action_limit(&self, name: &str, concurrency: u32) -> Arc<Semaphore> {
        let mut limits = self
            .per_action
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(limits.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Semaphore::new(
                usize::try_from(concurrency.max(1)).unwrap_or(1),
            ))
        }))
    }

    /// Counts a message against its channel's throttle; `Some(reason)` when it must wait.
    fn throttled(
        &self,
        channel: &str,
        to: &[String],
        config: &ChannelConfig,
        context: &Context,
    ) -> Option<String> {
        let throttle = config.throttle();
        if throttle.throttle_max == 0 {
            return None;
        }
        let mut throttles = self
            .throttles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (channel.to_owned(), to.to_vec());
        throttles.dirty.insert(key.clone());
        let state = throttles.windows.entry(key).or_default();
        let now = Utc::now();
        if state.has_room(throttle, now) {
            state.sent.push_back(now);
            None
        } else {
            if state.held.len() < THROTTLE_HELD_MAX {
                state.held.push(context.title());
            }
            Some(format!(
                "throttled: channel {channel} already sent {} message(s) in the last {} s; summarised later",
                state.sent.len(),
                throttle.throttle_window_secs
            ))
        }
    }

    /// Sends one summary per throttled channel whose window has room again.
    async fn send_summaries(&self, handling: &Handling) {
        let due: Vec<(ThrottleKey, Vec<String>)> = {
            let mut throttles = self
                .throttles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Utc::now();
            let mut due = Vec::new();
            for (key, state) in throttles.windows.iter_mut() {
                let Some(config) = handling.channels.get(&key.0) else {
                    continue;
                };
                if !state.held.is_empty() && state.has_room(config.throttle(), now) {
                    state.sent.push_back(now);
                    due.push((key.clone(), std::mem::take(&mut state.held)));
                }
            }
            for (key, _) in &due {
                throttles.dirty.insert(key.clone());
            }
            due
        };
        for ((channel, to), held) in due {
            let Some(config) = handling.channels.get(&channel) else {
                continue;
            };
            let title = format!(
                "[vakt] {} notification(s) held back by throttling",
                held.len()
            );
            let mut text = String::new();
            for line in held.iter().take(render::GROUP_LISTED_MAX) {
                text.push_str("- ");
                text.push_str(line);
                text.push('\n');
            }
            if held.len() > render::GROUP_LISTED_MAX {
                text.push_str(&format!(
                    "... and {} more\n",
                    held.len() - render::GROUP_LISTED_MAX
                ));
            }
            let outcome = self.send_plain(config, &to, &title, &text).await;
            tracing::info!(
                %channel,
                held = held.len(),
                ?outcome,
                "sent a throttling summary"
            );
        }
    }

    /// A message that belongs to no alert (throttling summaries).
    async fn send_plain(
        &self,
        config: &ChannelConfig,
        to: &[String],
        title: &str,
        text: &str,
    ) -> Outcome {
        let key = ulid::Ulid::new().to_string();
        match config {
            ChannelConfig::Email { .. } => {
                self.send_mail(config, to, title.to_owned(), text.to_owned(), &key, None)
                    .await
            }
            ChannelConfig::Slack(chat)
            | ChannelConfig::Mattermost(chat)
            | ChannelConfig::Teams(chat)
            | ChannelConfig::Webhook(chat) => {
                let body = match config {
                    ChannelConfig::Teams(_) => {
                        serde_json::json!({"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "weight": "Bolder", "text": title, "wrap": true}, {"type": "TextBlock", "text": text, "wrap": true}]}}]})
                    }
                    ChannelConfig::Webhook(_) => {
                        serde_json::json!({"version": "1", "purpose": "throttle_summary", "title": title, "text": text})
                    }
                    _ => serde_json::json!({"text": format!("{title}\n{text}")}),
                };
                self.post_chat(chat, body.to_string(), &key).await
            }
        }
    }

    async fn notify(
        &self,
        handling: &Handling,
        channel: &str,
        config: &ChannelConfig,
        to: &[String],
        context: &Context,
        key: &str,
    ) -> Outcome {
        match config {
            ChannelConfig::Email { subject, body, .. } => {
                let subject = match subject {
                    Some(_) => match render::render(
                        &handling.templates,
                        &format!("channels.{channel}.subject"),
                        context,
                    ) {
                        Ok(s) => s,
                        Err(e) => return Outcome::permanent(e),
                    },
                    None => context.title(),
                };
                let body = match body {
                    Some(_) => match render::render(
                        &handling.templates,
                        &format!("channels.{channel}.body"),
                        context,
                    ) {
                        Ok(s) => s,
                        Err(e) => return Outcome::permanent(e),
                    },
                    None => context.text(),
                };
                self.send_mail(config, to, subject, body, key, context.thread())
                    .await
            }
            ChannelConfig::Slack(chat)
            | ChannelConfig::Mattermost(chat)
            | ChannelConfig::Teams(chat)
            | ChannelConfig::Webhook(chat) => {
                let body = match &chat.template {
                    Some(_) => match render::render(
                        &handling.templates,
                        &format!("channels.{channel}.template"),
                        context,
                    )
                    .and_then(|t| valid_json(&t))
                    {
                        Ok(body) => body,
                        Err(e) => return Outcome::permanent(e),
                    },
                    None => match config {
                        ChannelConfig::Slack(_) => context.slack(),
                        ChannelConfig::Mattermost(_) => context.mattermost(),
                        ChannelConfig::Teams(_) => context.teams(),
                        _ => context.document(),
                    }
                    .to_string(),
                };
                self.post_chat(chat, body, key).await
            }
        }
    }

    /// Sends mail through an email channel, to `to` or else the channel's own recipients.
    async fn send_mail(
        &self,
        config: &ChannelConfig,
        to: &[String],
        subject: String,
        body: String,
        key: &str,
        thread: Option<(String, Option<String>)>,
    ) -> Outcome {
        let (Some(email), ChannelConfig::Email { to: default_to, .. }) = (config.email(), config)
        else {
            return Outcome::permanent("not an email channel".into());
        };
        let recipients = if to.is_empty() { default_to } else { to };
        Outcome::from(
            deliver::email(
                &email,
                deliver::Mail {
                    to: recipients,
                    subject,
                    body,
                    idempotency_key: key,
                    thread,
                },
            )
            .await,
        )
    }

    /// POSTs a JSON body to a chat service's (or a generic) incoming webhook.
    async fn post_chat(&self, chat: &ChatConfig, body: String, key: &str) -> Outcome {
        let headers: Vec<(String, String)> = chat
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let timeout = Duration::from_secs(chat.timeout_secs);
        self.post(&chat.url, &headers, body, timeout, key).await
    }

    /// POSTs a document (a chat message, a phone page) with its idempotency key.
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: String,
        timeout: Duration,
        key: &str,
    ) -> Outcome {
        Outcome::from(
            deliver::http(
                &self.client,
                deliver::HttpCall {
                    method: "POST",
                    url,
                    headers,
                    body,
                    timeout,
                    idempotency_key: key,
                    hmac_secret: None,
                },
            )
            .await,
        )
    }

    /// Sends every group whose wait (first member) and interval (last message) have passed:
    /// one message for all its pending members.
    async fn send_groups(&self, handling: &Handling) -> Result<(), StoreError> {
        let store = &self.deps.store;
        let heads = store.group_heads(1000).await?;
        let now = Utc::now();
        for head in heads {
            let Some(ActionConfig::Notify {
                channel,
                to,
                group_by,
                group_wait_secs,
                group_interval_secs,
                ..
            }) = handling.actions.get(&head.action)
            else {
                continue;
            };
            let wait_over = (now - head.first_decided_at).num_seconds()
                >= i64::try_from(*group_wait_secs).unwrap_or(i64::MAX);
            let interval_over = head.last_sent_at.is_none_or(|last| {
                (now - last).num_seconds()
                    >= i64::try_from(*group_interval_secs).unwrap_or(i64::MAX)
            });
            if !(wait_over && interval_over) {
                continue;
            }
            let lease_until = now + chrono::Duration::seconds(lease_secs(handling));
            let members = store
                .claim_group(&head.group_key, now, lease_until, 10_000)
                .await?;
            let Some(first) = members.first() else {
                continue;
            };
            let started = Utc::now();
            // The members' alerts, each once, in one query (not one per member).
            let ids: Vec<&str> = members
                .iter()
                .map(|m| m.decided.alert_id.as_str())
                .collect();
            // A failed read ends the round: the members stay leased and are taken back
            // when the lease runs out, then sent again; nothing is marked as sent.
            let mut alerts = store.alerts_by_id(&ids).await?;
            // Inhibited members are left out of the message and recorded as skipped.
            let targets: Vec<&Alert> = alerts.iter().collect();
            let skipped = inhibitions(&**store, handling, &targets).await?;
            alerts.retain(|a| !skipped.contains_key(&a.id));
            let result = match alerts.first() {
                None => Outcome::Skipped("every alert of the group is inhibited".into()),
                Some(lead) => {
                    let labels = lead.match_labels();
                    let mut context = Context::new(
                        first,
                        lead.clone(),
                        None,
                        &[],
                        &handling.dispatch.console_url,
                    );
                    context.group = Some(render::Group {
                        key: head.group_key.clone(),
                        labels: group_by
                            .iter()
                            .map(|k| (k.clone(), labels.get(k).cloned().unwrap_or_default()))
                            .collect(),
                        count: alerts.len(),
                        alerts: alerts
                            .iter()
                            .take(render::GROUP_LISTED_MAX * 5)
                            .cloned()
                            .collect(),
                    });
                    match handling.channels.get(channel) {
                        None => Outcome::permanent(format!(
                            "channel {channel:?} is no longer configured"
                        )),
                        Some(config) => match self.throttled(channel, to, config, &context) {
                            Some(held) => Outcome::Skipped(held),
                            None => {
                                self.notify(
                                    handling,
                                    channel,
                                    config,
                                    to,
                                    &context,
                                    &first.decided.id,
                                )
                                .await
                            }
                        },
                    }
                }
            };
            let finished = Utc::now();
            let message_id = first.decided.id.clone();
            let count = members.len();
            let mut finished_members = Vec::with_capacity(members.len());
            for member in members {
                let member_result = match skipped.get(&member.decided.alert_id) {
                    Some(why) => Outcome::Skipped(why.clone()),
                    None => result.for_member(&message_id, count),
                };
                let finish = self.finish_for(handling, &member, member_result, started, finished);
                finished_members.push((member, finish));
            }
            self.record(finished_members).await;
        }
        Ok(())
    }
}

/// The lease for a claim: longer than any configured attempt can take.
fn lease_secs(handling: &Handling) -> i64 {
    let longest = handling
        .actions
        .values()
        .map(|a| match a {
            ActionConfig::Exec { timeout_secs, .. }
            | ActionConfig::Webhook { timeout_secs, .. } => *timeout_secs,
            ActionConfig::Notify { .. } => 30,
        })
        .max()
        .unwrap_or(30);
    i64::try_from(longest.saturating_add(60)).unwrap_or(i64::MAX)
}

/// Which of `targets` an active alert inhibits, and why (by target id). Every active alert
/// is read, a page at a time, so the answer is exact however many alerts are open (issue
/// 13: it read only the first 1,000); nothing is read when no inhibit rule targets any of
/// them, and reading stops once every target is inhibited.
async fn inhibitions(
    store: &dyn Store,
    handling: &Handling,
    targets: &[&Alert],
) -> Result<HashMap<String, String>, StoreError> {
    let candidates: Vec<&Alert> = targets
        .iter()
        .copied()
        .filter(|t| handling.may_be_inhibited(t))
        .collect();
    let mut found = HashMap::new();
    if candidates.is_empty() {
        return Ok(found);
    }
    let mut query = vakt_store::AlertQuery {
        status: vec![AlertStatus::Open, AlertStatus::Acknowledged],
        limit: vakt_store::PAGE_LIMIT_MAX,
        ..Default::default()
    };
    loop {
        let page = store.alerts(&query).await?;
        for target in &candidates {
            if !found.contains_key(&target.id)
                && let Some(why) = handling.inhibited_by(target, &page.items)
            {
                found.insert(target.id.clone(), why);
            }
        }
        match page.next_cursor {
            Some(cursor) if found.len() < candidates.len() => query.cursor = Some(cursor),
            _ => break,
        }
    }
    Ok(found)
}

fn valid_json(text: &str) -> Result<String, String> {
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
    fn throttle(&self) -> ThrottleConfig {
        match self {
            ChannelConfig::Email { throttle, .. } => *throttle,
            ChannelConfig::Slack(c)
            | ChannelConfig::Mattermost(c)
            | ChannelConfig::Teams(c)
            | ChannelConfig::Webhook(c) => c.throttle,
        }
    }

    fn email(&self) -> Option<EmailChannel> {
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

/// How one attempt ended.
#[derive(Debug)]
enum Outcome {
    Succeeded {
        detail: String,
        output: Option<serde_json::Value>,
    },
    Failed {
        detail: String,
        output: Option<serde_json::Value>,
        transient: bool,
    },
    Skipped(String),
}

impl Outcome {
    fn transient(detail: String) -> Outcome {
        Outcome::Failed {
            detail,
            output: None,
            transient: true,
        }
    }

    fn permanent(detail: String) -> Outcome {
        Outcome::Failed {
            detail,
            output: None,
            transient: false,
        }
    }

    /// The group message's outcome, as each member records it.
    fn for_member(&self, message: &str, count: usize) -> Outcome {
        match self {
            Outcome::Succeeded { detail, output } => Outcome::Succeeded {
                detail: format!("sent in group message {message} with {count} action(s): {detail}"),
                output: output.clone(),
            },
            Outcome::Failed {
                detail,
                output,
                transient,
            } => Outcome::Failed {
                detail: format!("group message {message}: {detail}"),
                output: output.clone(),
                transient: *transient,
            },
            Outcome::Skipped(why) => Outcome::Skipped(why.clone()),
        }
    }
}

impl From<Delivery> for Outcome {
    fn from(delivery: Delivery) -> Outcome {
        match delivery {
            Delivery::Delivered { detail, output } => Outcome::Succeeded {
                detail,
                output: Some(output),
            },
            Delivery::Transient { detail, output } => Outcome::Failed {
                detail,
                output: Some(output),
                transient: true,
            },
            Delivery::Permanent { detail, output } => Outcome::Failed {
                detail,
                output: Some(output),
                transient: false,
            },
        }
    }
}
