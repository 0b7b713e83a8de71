//! Escalation policies: what nobody acknowledges climbs, step by step, until someone does.
//!
//! A policy is an ordered list of steps; step `k` comes due `after_secs` after step `k - 1`
//! came due (step 0: after the escalation started). After the last step the policy may start
//! over (`repeat` more rounds, the first step of a new round `repeat_after_secs` after the
//! last step). Due times chain from the previous due time, not from when a step actually
//! fired, so a late step does not shift the ones after it. Everything here is a pure function
//! of the policy and the escalation's position; the store keeps the position and the server
//! fires due steps.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::ConfigError;

/// Most steps one policy may have.
pub const STEPS_MAX: usize = 50;
/// Most rounds (`repeat` + 1) one policy may run.
pub const ROUNDS_MAX: u32 = 100;

/// `[[escalation_policies]]` as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub steps: Vec<Spanned<StepConfig>>,
    /// How many times the whole policy runs again after its last step (0: once).
    #[serde(default)]
    pub repeat: u32,
    /// Seconds between the last step and the first step of the next round.
    #[serde(default = "default_repeat_after")]
    pub repeat_after_secs: u64,
}

fn default_repeat_after() -> u64 {
    300
}

/// One step: after `after_secs` unacknowledged, notify `notify`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Seconds after the previous step (or the start, for the first step).
    #[serde(default)]
    pub after_secs: u64,
    #[serde(default)]
    pub notify: Vec<TargetConfig>,
    /// Open an incident for the alert (or join the open one it correlates with) at this step.
    #[serde(default)]
    pub incident: bool,
}

/// One target, written with exactly one key: `{ user = "alice" }`, `{ schedule = "primary" }`,
/// `{ team = "db" }` or `{ channel = "ops-chat" }`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
}

/// Who or what a step notifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase", tag = "type", content = "name")]
pub enum Target {
    User(String),
    /// Whoever is on call for the schedule when the step fires.
    Schedule(String),
    /// Every member of the team.
    Team(String),
    /// A configured channel, to its own recipients.
    Channel(String),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::User(id) => format!("user {id}"),
            Target::Schedule(name) => format!("on call for schedule {name}"),
            Target::Team(name) => format!("team {name}"),
            Target::Channel(name) => format!("channel {name}"),
        }
    }
}

/// A compiled step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Step {
    pub after_secs: u64,
    pub notify: Vec<Target>,
    pub incident: bool,
}

/// A compiled policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Policy {
    pub name: String,
    pub description: String,
    pub steps: Vec<Step>,
    pub repeat: u32,
    pub repeat_after_secs: u64,
}

/// Where an escalation is: the step due next (0-based) of which round (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub step: u32,
    pub round: u32,
}

impl Policy {
    /// When the first step comes due for an escalation starting at `start`.
    pub fn first_due(&self, start: DateTime<Utc>) -> DateTime<Utc> {
        start + secs(self.steps.first().map_or(0, |s| s.after_secs))
    }

    pub fn step(&self, position: Position) -> Option<&Step> {
        self.steps.get(usize::try_from(position.step).ok()?)
    }

    /// The position after `position` fired (it was due at `due`), and when that one is due;
    /// `None` when the policy has run its last step of its last round.
    pub fn next(
        &self,
        position: Position,
        due: DateTime<Utc>,
    ) -> Option<(Position, DateTime<Utc>)> {
        let next_step = usize::try_from(position.step).ok()? + 1;
        if let Some(step) = self.steps.get(next_step) {
            let step_index = u32::try_from(next_step).ok()?;
            return Some((
                Position {
                    step: step_index,
                    round: position.round,
                },
                due + secs(step.after_secs),
            ));
        }
        if position.round < self.repeat {
            return Some((
                Position {
                    step: 0,
                    round: position.round + 1,
                },
                due + secs(self.repeat_after_secs),
            ));
        }
        None
    }
}

fn secs(value: u64) -> Duration {
    Duration::seconds(
        i64::try_from(value)
            .unwrap_or(i64::MAX / 1000)
            .min(i64::MAX / 1000),
    )
}

/// Compiles the policies, reporting every problem with its location. Targets are checked
/// for form here; whether the named users, schedules, teams and channels exist is checked by
/// the server, which knows them.
pub fn compile(configs: &[PolicyConfig]) -> Result<BTreeMap<String, Policy>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut policies = BTreeMap::new();
    for config in configs {
        let name = config.name.get_ref().trim().to_owned();
        if name.is_empty() {
            errors.push(ConfigError::at(
                config.name.span(),
                "escalation_policies: name is empty".to_owned(),
            ));
            continue;
        }
        if policies.contains_key(&name) {
            errors.push(ConfigError::at(
                config.name.span(),
                format!("escalation_policies: {name:?} is defined twice"),
            ));
            continue;
        }
        if config.steps.is_empty() || config.steps.len() > STEPS_MAX {
            errors.push(ConfigError::at(
                config.name.span(),
                format!(
                    "escalation_policies.{name}: needs 1 to {STEPS_MAX} steps, has {}",
                    config.steps.len()
                ),
            ));
        }
        if config.repeat >= ROUNDS_MAX {
            errors.push(ConfigError::at(
                config.name.span(),
                format!(
                    "escalation_policies.{name}: repeat {} is more than {}",
                    config.repeat,
                    ROUNDS_MAX - 1
                ),
            ));
        }
        let mut steps = Vec::new();
        for (i, step) in config.steps.iter().enumerate() {
            let span = step.span();
            let step = step.get_ref();
            if step.notify.is_empty() && !step.incident {
                errors.push(ConfigError::at(
                    span.clone(),
                    format!(
                        "escalation_policies.{name}.steps[{i}]: notifies nobody and opens no incident"
                    ),
                ));
            }
            let mut notify = Vec::new();
            for (j, target) in step.notify.iter().enumerate() {
                let given: Vec<Target> = [
                    target.user.clone().map(Target::User),
                    target.schedule.clone().map(Target::Schedule),
                    target.team.clone().map(Target::Team),
                    target.channel.clone().map(Target::Channel),
                ]
                .into_iter()
                .flatten()
                .collect();
                match <[Target; 1]>::try_from(given) {
                    Ok([one]) => notify.push(one),
                    Err(given) => errors.push(ConfigError::at(
                        span.clone(),
                        format!(
                            "escalation_policies.{name}.steps[{i}].notify[{j}]: give exactly one of user, schedule, team, channel (found {})",
                            given.len()
                        ),
                    )),
                }
            }
            steps.push(Step {
                after_secs: step.after_secs,
                notify,
                incident: step.incident,
            });
        }
        policies.insert(
            name.clone(),
            Policy {
                name,
                description: config.description.clone(),
                steps,
                repeat: config.repeat,
                repeat_after_secs: config.repeat_after_secs,
            },
        );
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

/// One page an escalation step sends: to whom, and through what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page {
    pub policy: String,
    /// 1-based, as people count.
    pub step: u32,
    pub round: u32,
    /// The user paged, when the page is for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub via: Via,
}

/// A person to mention in a chat page, by each service's own id: only these notify.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mention {
    /// Their name, for services that show one beside the mention (Teams).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mattermost: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_id: Option<String>,
}

/// How a page goes out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Via {
    /// Through a configured channel, to these recipients (the channel's own when empty),
    /// with a chat mention when the user has a handle.
    Channel {
        channel: String,
        #[serde(default)]
        to: Vec<String>,
        /// The user's chat handle, as text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mention: Option<String>,
        /// Whom to mention, with each chat service's own id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        who: Option<Mention>,
    },
    /// A POST to the user's phone gateway webhook.
    Phone { url: String },
}

impl Page {
    pub fn describe(&self) -> String {
        let who = self
            .user
            .as_deref()
            .map(|u| format!("{u} "))
            .unwrap_or_default();
        match &self.via {
            Via::Channel { channel, to, .. } if to.is_empty() => format!("{who}via {channel}"),
            Via::Channel { channel, to, .. } => format!("{who}via {channel} ({})", to.join(", ")),
            Via::Phone { .. } => format!("{who}via phone webhook"),
        }
    }
}

/// An escalation to start, decided by the pipeline when an alert opens or reopens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub policy: String,
    /// The rule that named the policy.
    pub rule: String,
    pub due_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(source: &str) -> Result<BTreeMap<String, Policy>, Vec<ConfigError>> {
        #[derive(Deserialize)]
        struct File {
            escalation_policies: Vec<PolicyConfig>,
        }
        let file: File = toml::from_str(source).map_err(|e| {
            vec![ConfigError {
                span: e.span(),
                message: e.to_string(),
            }]
        })?;
        compile(&file.escalation_policies)
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn steps_chain_from_due_times_and_rounds_repeat() {
        let policies = policy(
            r#"
            [[escalation_policies]]
            name = "p"
            repeat = 1
            repeat_after_secs = 100
            [[escalation_policies.steps]]
            after_secs = 0
            notify = [{ schedule = "primary" }]
            [[escalation_policies.steps]]
            after_secs = 30
            notify = [{ user = "lead" }, { channel = "chat" }]
            incident = true
            "#,
        )
        .map_err(|e| format!("{e:?}"));
        let Ok(policies) = policies else {
            panic!("{policies:?}")
        };
        let p = &policies["p"];
        assert_eq!(p.first_due(at(0)), at(0));
        let first = Position { step: 0, round: 0 };
        assert_eq!(
            p.next(first, at(0)),
            Some((Position { step: 1, round: 0 }, at(30)))
        );
        assert_eq!(
            p.next(Position { step: 1, round: 0 }, at(30)),
            Some((Position { step: 0, round: 1 }, at(130)))
        );
        assert_eq!(
            p.next(Position { step: 0, round: 1 }, at(130)),
            Some((Position { step: 1, round: 1 }, at(160)))
        );
        assert_eq!(p.next(Position { step: 1, round: 1 }, at(160)), None);
        assert_eq!(
            p.steps[1].notify,
            vec![Target::User("lead".into()), Target::Channel("chat".into())]
        );
        assert!(p.steps[1].incident);
    }

    #[test]
    fn mistakes_are_reported_with_their_place() {
        let errors = policy(
            r#"
            [[escalation_policies]]
            name = "p"
            [[escalation_policies.steps]]
            notify = [{ user = "a", schedule = "b" }]
            [[escalation_policies.steps]]
            after_secs = 5
            "#,
        )
        .err()
        .unwrap_or_default();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].contains("steps[0].notify[0]: give exactly one"));
        assert!(messages[1].contains("steps[1]: notifies nobody"));
        assert!(errors.iter().all(|e| e.span.is_some()));
    }
}
