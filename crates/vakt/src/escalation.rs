//! Step 6 of the process, escalation: fires the due steps of stored escalations.
//!
//! A loop claims due escalations (a lease; on PostgreSQL `FOR UPDATE SKIP LOCKED`, so with
//! several nodes each step is claimed by one), works out who each target is at this moment
//! (a schedule's on-call person with its overrides, a team's members, a user's contact
//! methods), and stores the step in one transaction: its pages go into the outbox for the
//! dispatcher, the alert's timeline says who was paged, who could not be and why, and how
//! late the step is; the escalation moves to its next step. A step that came due while vakt
//! was down fires once when it starts, marked late.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use vakt_core::alert::{PIPELINE_ACTOR, TimelineEntry, TimelineKind};
use vakt_core::config::ConfigError;
use vakt_core::escalation::{Page, Policy, Target, Via};
use vakt_core::oncall::UserConfig;
use vakt_core::pipeline::{DecidedAction, Purpose};
use vakt_core::{Alert, AlertStatus};
use vakt_store::{Escalation, Fire, StoreError};

use crate::live::Live;
use crate::metrics::Metrics;
use crate::oncall::Directory;

/// What the escalation loop needs from the rest of vakt.
pub struct Deps {
    pub store: Arc<dyn vakt_store::Store>,
    pub metrics: Arc<Metrics>,
    pub pipeline: Live<vakt_core::Pipeline>,
    pub directory: Live<Directory>,
    pub config: Live<EscalationConfig>,
    /// Woken when a step put pages in the outbox.
    pub dispatch: Arc<tokio::sync::Notify>,
}

impl Deps {
    fn pipeline(&self) -> Arc<vakt_core::Pipeline> {
        self.pipeline.get()
    }

    fn directory(&self) -> Arc<Directory> {
        self.directory.get()
    }
}

/// `[escalation]`: how steps go out.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// The email channel that pages users with an `email`.
    pub email_channel: Option<String>,
    /// The chat channel that pages users with a `chat` handle (mentioned in the message).
    pub chat_channel: Option<String>,
    /// How often due steps are looked for.
    pub poll_interval_ms: u64,
    /// How long a node holds a claimed step before another may take it.
    pub lease_secs: u64,
    /// Off: no step fires on this node (another node fires them).
    pub enabled: bool,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            email_channel: None,
            chat_channel: None,
            poll_interval_ms: 1000,
            lease_secs: 60,
            enabled: true,
        }
    }
}

/// Most escalations one round claims.
const CLAIM_MAX: u32 = 200;

/// Checks that every policy target names a known user, schedule, team or channel, and that
/// the paging channels exist.
pub fn validate(
    config: &EscalationConfig,
    policies: &BTreeMap<String, Policy>,
    directory: &crate::oncall::Directory,
    channels: &BTreeMap<String, toml::Spanned<crate::actions::ChannelConfig>>,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let error = |message: String| ConfigError {
        span: None,
        message,
    };
    for (key, channel) in [
        ("email_channel", &config.email_channel),
        ("chat_channel", &config.chat_channel),
    ] {
        if let Some(name) = channel
            && !channels.contains_key(name)
        {
            errors.push(error(format!("escalation.{key}: unknown channel {name:?}")));
        }
    }
    if config.lease_secs == 0 {
        errors.push(error("escalation.lease_secs must be at least 1".into()));
    }
    for policy in policies.values() {
        for (i, step) in policy.steps.iter().enumerate() {
            for target in &step.notify {
                let known = match target {
                    Target::User(id) => directory.user(id).is_some(),
                    Target::Schedule(name) => directory.schedules.contains_key(name),
                    Target::Team(team) => directory.users.iter().any(|u| u.teams.contains(team)),
                    Target::Channel(name) => channels.contains_key(name),
                };
                if !known {
                    errors.push(error(format!(
                        "escalation_policies.{}.steps[{i}]: unknown {}",
                        policy.name,
                        target.describe()
                    )));
                }
            }
        }
    }
    errors
}

/// Starts the escalation loop; it stops when `stop` turns true.
pub fn spawn(
    state: Deps,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The embedded database has one process: a lease held when it started belonged to a
        // process that is gone, and its step is due now rather than when the lease ends.
        if state.store.capabilities().single_process {
            match state.store.release_escalation_leases().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    escalations = n,
                    "took back escalation steps claimed when vakt stopped"
                ),
                Err(error) => tracing::error!(%error, "cannot take back claimed escalation steps"),
            }
        }
        loop {
            if *stop.borrow() {
                break;
            }
            let config = (*state.config.get()).clone();
            if config.enabled {
                match round(&state, &config).await {
                    Ok(fired) if fired > 0 => state.dispatch.notify_one(),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "escalation round failed; trying again"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(config.poll_interval_ms.max(10))) => {}
                _ = stop.changed() => {}
            }
        }
    })
}

/// Claims and fires due steps until none is due; returns how many fired.
async fn round(state: &Deps, config: &EscalationConfig) -> Result<usize, StoreError> {
    let mut fired = 0;
    loop {
        let now = Utc::now();
        let lease = now + chrono::Duration::seconds(i64::try_from(config.lease_secs).unwrap_or(60));
        let claimed = state.store.claim_escalations(now, lease, CLAIM_MAX).await?;
        if claimed.is_empty() {
            return Ok(fired);
        }
        let count = claimed.len();
        for escalation in claimed {
            // One step that cannot be stored waits for its lease to end; the others go on.
            let alert_id = escalation.alert_id.clone();
            let result = match plan(state, config, escalation).await {
                Ok(fire) => state
                    .store
                    .fire_escalation(&state.pipeline(), &fire)
                    .await
                    .map(|stored| stored.then_some(fire)),
                Err(error) => Err(error),
            };
            let fire = match result {
                Ok(Some(fire)) => fire,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, alert = %alert_id, "escalation step not stored; it is tried again when its lease ends");
                    continue;
                }
            };
            fired += 1;
            state
                .metrics
                .escalation_steps
                .get_or_create(&crate::metrics::PolicyLabels {
                    policy: fire.claimed.policy.clone(),
                })
                .inc();
        }
        if count < CLAIM_MAX as usize {
            return Ok(fired);
        }
    }
}

/// Works out what a due step does: pages, timeline lines, the next position.
async fn plan(
    state: &Deps,
    config: &EscalationConfig,
    claimed: Escalation,
) -> Result<Fire, StoreError> {
    let now = Utc::now();
    let pipeline = state.pipeline();
    let mut fire = Fire {
        claimed,
        pages: Vec::new(),
        timeline: Vec::new(),
        next: Err(String::new()),
        incident: None,
        now,
    };
    let escalation = &fire.claimed;
    let alert = state.store.alert(&escalation.alert_id).await?;
    let line = |alert_id: &str, message: String| TimelineEntry {
        id: vakt_store::new_id(),
        alert_id: alert_id.to_owned(),
        at: now,
        kind: TimelineKind::Escalation,
        by: PIPELINE_ACTOR.to_owned(),
        message,
        event_id: None,
    };
    let ended = |reason: String| -> Result<Fire, StoreError> {
        Ok(Fire {
            timeline: vec![line(
                &escalation.alert_id,
                format!("escalation policy {} ended: {reason}", escalation.policy),
            )],
            next: Err(reason),
            ..fire.clone()
        })
    };
    let Some(alert) = alert else {
        return ended("the alert no longer exists".into());
    };
    match alert.status {
        AlertStatus::Open => {}
        // Resolved or acknowledged by a path that did not move the escalation.
        other => return ended(format!("the alert is {other}")),
    }
    let Some(policy) = pipeline.escalation_policies().get(&escalation.policy) else {
        return ended(format!(
            "policy {} is no longer configured",
            escalation.policy
        ));
    };
    let position = escalation.position();
    let Some(step) = policy.step(position) else {
        return ended(format!(
            "policy {} has no step {} any more",
            policy.name,
            position.step + 1
        ));
    };
    let due = escalation.due_at.unwrap_or(now);
    let late_ms = (now - due).num_milliseconds();
    let late = if late_ms >= 1000 {
        format!(
            "; late by {} s (vakt was not running or was busy when it came due)",
            late_ms / 1000
        )
    } else {
        String::new()
    };
    let directory = state.directory();
    let mut paged = Vec::new();
    let mut skipped = Vec::new();
    let mut pages = Vec::new();
    let step_no = position.step + 1;
    let round_no = position.round + 1;
    for target in &step.notify {
        let users: Vec<&UserConfig> = match target {
            Target::User(id) => directory.user(id).into_iter().collect(),
            Target::Team(team) => directory
                .users
                .iter()
                .filter(|u| u.teams.contains(team))
                .collect(),
            Target::Schedule(name) => match on_call(state, name, now).await? {
                Some(id) => match directory.user(&id) {
                    Some(user) => vec![user],
                    None => {
                        skipped.push(format!("{}: {id} is not a known user", target.describe()));
                        continue;
                    }
                },
                None => {
                    skipped.push(format!("{}: nobody is on call", target.describe()));
                    continue;
                }
            },
            Target::Channel(channel) => {
                pages.push(Page {
                    policy: policy.name.clone(),
                    step: step_no,
                    round: round_no,
                    user: None,
                    via: Via::Channel {
                        channel: channel.clone(),
                        to: Vec::new(),
                        mention: None,
                        who: None,
                    },
                });
                paged.push(format!("channel {channel}"));
                continue;
            }
        };
        if users.is_empty() {
            skipped.push(format!("{}: nobody to page", target.describe()));
        }
        for user in users {
            let found = user_pages(config, policy, step_no, round_no, user);
            if found.is_empty() {
                skipped.push(format!(
                    "{} ({}): no contact method this vakt can use (set email with escalation.email_channel, chat with escalation.chat_channel, or phone_webhook)",
                    user.id,
                    target.describe()
                ));
            } else {
                paged.push(format!(
                    "{} ({})",
                    found
                        .iter()
                        .map(Page::describe)
                        .collect::<Vec<_>>()
                        .join(", "),
                    target.describe()
                ));
                pages.extend(found);
            }
        }
    }
    let mut message = format!(
        "escalation policy {} step {step_no} of {} (round {round_no} of {}) fired{late}: ",
        policy.name,
        policy.steps.len(),
        policy.repeat + 1
    );
    if paged.is_empty() {
        message.push_str("paged nobody");
    } else {
        message.push_str(&format!("paged {}", paged.join("; ")));
    }
    if !skipped.is_empty() {
        message.push_str(&format!("; skipped {}", skipped.join("; ")));
    }
    if step.incident {
        message.push_str("; opens an incident");
    }
    fire.timeline.push(line(&alert.id, message));
    fire.pages = pages
        .into_iter()
        .map(|page| page_action(&alert, &page, now))
        .collect();
    if step.incident {
        fire.incident = Some(vakt_core::incident::Ask {
            alert_id: alert.id.clone(),
            by: format!("escalation {} step {step_no}", policy.name),
            impact: None,
            urgency: None,
        });
    }
    fire.next = match policy.next(position, due) {
        Some(next) => Ok(next),
        None => {
            let reason = format!(
                "policy {} ran its last step ({} step(s), {} round(s)) and nobody acknowledged",
                policy.name,
                policy.steps.len(),
                policy.repeat + 1
            );
            fire.timeline
                .push(line(&alert.id, format!("escalation ended: {reason}")));
            Err(reason)
        }
    };
    Ok(fire)
}

/// Who is on call for a schedule at `at`, with its stored overrides.
async fn on_call(
    state: &Deps,
    name: &str,
    at: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    Ok(
        crate::oncall::with_stored_overrides(&*state.store, &state.directory(), name, at)
            .await?
            .and_then(|schedule| schedule.on_call(at))
            .map(|c| c.user),
    )
}

/// The pages a user gets: email and chat through the configured channels, the phone webhook.
fn user_pages(
    config: &EscalationConfig,
    policy: &Policy,
    step: u32,
    round: u32,
    user: &UserConfig,
) -> Vec<Page> {
    let page = |via: Via| Page {
        policy: policy.name.clone(),
        step,
        round,
        user: Some(user.id.clone()),
        via,
    };
    let mut pages = Vec::new();
    if let (Some(email), Some(channel)) = (&user.email, &config.email_channel) {
        pages.push(page(Via::Channel {
            channel: channel.clone(),
            to: vec![email.clone()],
            mention: None,
            who: None,
        }));
    }
    let chat_ids = user.slack_id.is_some() || user.mattermost.is_some() || user.teams_id.is_some();
    if let (true, Some(channel)) = (user.chat.is_some() || chat_ids, &config.chat_channel) {
        pages.push(page(Via::Channel {
            channel: channel.clone(),
            to: Vec::new(),
            mention: user.chat.clone(),
            who: chat_ids.then(|| vakt_core::escalation::Mention {
                name: if user.name.is_empty() {
                    user.id.clone()
                } else {
                    user.name.clone()
                },
                slack_id: user.slack_id.clone(),
                mattermost: user.mattermost.clone(),
                teams_id: user.teams_id.clone(),
            }),
        }));
    }
    if let Some(url) = &user.phone_webhook {
        pages.push(page(Via::Phone {
            url: url.expose().to_owned(),
        }));
    }
    pages
}

fn page_action(alert: &Alert, page: &Page, now: DateTime<Utc>) -> DecidedAction {
    DecidedAction {
        id: vakt_store::new_id(),
        action: Arc::from(format!("escalation:{}", page.policy).as_str()),
        kind: "notify",
        alert_id: alert.id.clone(),
        event_id: alert.last_event_id.clone(),
        purpose: Purpose::Escalation,
        reason: format!(
            "escalation policy {} step {} (round {}): {}",
            page.policy,
            page.step,
            page.round,
            page.describe()
        ),
        suppressed_by: None,
        group_key: None,
        decided_at: now,
        target: Some(Box::new(page.clone())),
    }
}
