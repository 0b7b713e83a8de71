//! Rules: compiled once from the configuration, evaluated in order over each event.
//!
//! Semantics (documented in docs/configuration.md): rules are evaluated in the order they are
//! written. Every condition sees the event as normalised, not as changed by earlier rules.
//! A matching rule's effects apply in order, so a later matching rule overrides an earlier
//! one's category, severity and fingerprint, adds to its labels and actions. Evaluation stops
//! after the first matching rule unless that rule says `continue = true`, and always stops at
//! a rule that drops. A condition that fails to evaluate (a missing label, say) counts as not
//! matching and is recorded in the trace.

pub mod expr;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::config::{ActionConfig, ConfigError, RuleConfig};
use crate::event::{Category, Event, Severity};
use crate::fingerprint::FingerprintField;
use expr::{Condition, Conditions, EventVars, IndexedField};
use toml::Spanned;

/// One rule, compiled.
pub struct Rule {
    pub name: Arc<str>,
    pub enabled: bool,
    condition: Option<Condition>,
    /// The condition as written (`when`), for people to read; `None` matches every event.
    pub when: Option<Arc<str>>,
    pub category: Option<Category>,
    pub severity: Option<Severity>,
    pub labels: BTreeMap<String, String>,
    pub drop: bool,
    pub fingerprint: Option<Arc<[FingerprintField]>>,
    /// How traces explain a fingerprint this rule chose, made once at load.
    pub fingerprint_origin: Arc<str>,
    pub actions: Vec<Arc<str>>,
    pub continue_: bool,
    /// The escalation policy this rule attaches.
    pub escalate: Option<Arc<str>>,
    /// Whether the rule opens an incident, and with which impact.
    pub incident: bool,
    pub impact: Option<u8>,
}

/// All rules of a configuration, with an index that skips rules that cannot match.
pub struct RuleSet {
    conditions: Conditions,
    rules: Vec<Rule>,
    /// Rules whose condition requires `field == value`, by field and value.
    indexed: HashMap<IndexedField, HashMap<String, Vec<u32>>>,
    /// Enabled rules without an index key: evaluated for every event.
    unindexed: Vec<u32>,
}

/// What evaluating the rules over one event found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Matches {
    /// Indices of matching rules, in evaluation order.
    pub matched: Vec<u32>,
    /// Rules whose condition failed to evaluate, with the error.
    pub errors: Vec<(u32, String)>,
    /// How many conditions were evaluated (the index skips the others).
    pub evaluated: u32,
}

impl RuleSet {
    /// Compiles every rule; returns every problem found, each pointing at its bytes.
    pub fn build(
        configs: &[Spanned<RuleConfig>],
        actions: &BTreeMap<String, Spanned<ActionConfig>>,
    ) -> Result<RuleSet, Vec<ConfigError>> {
        let conditions = Conditions::default();
        let mut errors = Vec::new();
        let mut rules = Vec::with_capacity(configs.len());
        let mut names = HashSet::new();
        for config in configs {
            let span = config.span();
            let config = config.get_ref();
            let name = config.name.get_ref().trim();
            let at = |span: std::ops::Range<usize>, message: String| {
                ConfigError::at(span, format!("rule {name:?}: {message}"))
            };
            if name.is_empty() {
                errors.push(ConfigError::at(
                    config.name.span(),
                    "rule name must not be empty",
                ));
            } else if !names.insert(name.to_owned()) {
                errors.push(at(config.name.span(), "duplicate rule name".into()));
            }
            let condition = match &config.when {
                None => None,
                Some(when) => match conditions.compile(when.get_ref()) {
                    Ok(condition) => Some(condition),
                    Err(error) => {
                        let position = error
                            .position
                            .map(|(line, column)| {
                                format!(" (line {line}, column {column} of the expression)")
                            })
                            .unwrap_or_default();
                        errors.push(at(
                            when.span(),
                            format!("when: {}{position}", error.message),
                        ));
                        None
                    }
                },
            };
            let fingerprint = match &config.fingerprint {
                None => None,
                Some(fields) => match parse_fingerprint_fields(fields) {
                    Ok(fields) => Some(fields),
                    Err(error) => {
                        errors.push(at(
                            error.span.clone().unwrap_or(span.clone()),
                            error.message,
                        ));
                        None
                    }
                },
            };
            for action in &config.actions {
                if !actions.contains_key(action.get_ref()) {
                    let known: Vec<&str> = actions.keys().map(String::as_str).collect();
                    errors.push(at(
                        action.span(),
                        format!(
                            "unknown action {:?}; defined actions: {}",
                            action.get_ref(),
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
            }
            if config.drop && !config.actions.is_empty() {
                errors.push(at(
                    span.clone(),
                    "a rule that drops events cannot also name actions".into(),
                ));
            }
            if config.impact.is_some_and(|i| !(1..=3).contains(&i)) {
                errors.push(at(
                    span.clone(),
                    "impact must be 1 (high), 2 or 3 (low)".into(),
                ));
            }
            if config.drop && (config.escalate.is_some() || config.incident) {
                errors.push(at(
                    span.clone(),
                    "a rule that drops events cannot also escalate or open an incident".into(),
                ));
            }
            for key in config.labels.keys() {
                if key.is_empty() || key.chars().any(char::is_control) {
                    errors.push(at(span.clone(), format!("invalid label name {key:?}")));
                }
            }
            let fingerprint_origin = fingerprint.as_deref().map_or_else(String::new, |fields| {
                format!("of fields {} chosen by rule {name:?}", field_names(fields))
            });
            rules.push(Rule {
                fingerprint_origin: Arc::from(fingerprint_origin),
                name: Arc::from(name),
                enabled: config.enabled,
                condition,
                when: config
                    .when
                    .as_ref()
                    .map(|w| Arc::from(w.get_ref().as_str())),
                category: config.category,
                severity: config.severity,
                labels: config.labels.clone(),
                drop: config.drop,
                fingerprint,
                actions: config
                    .actions
                    .iter()
                    .map(|a| Arc::from(a.get_ref().as_str()))
                    .collect(),
                continue_: config.continue_,
                escalate: config
                    .escalate
                    .as_ref()
                    .map(|p| Arc::from(p.get_ref().trim())),
                incident: config.incident,
                impact: config.impact,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut indexed: HashMap<IndexedField, HashMap<String, Vec<u32>>> = HashMap::new();
        let mut unindexed = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| {
                vec![ConfigError {
                    span: None,
                    message: "too many rules".into(),
                }]
            })?;
            if !rule.enabled {
                continue;
            }
            match rule.condition.as_ref().and_then(Condition::index_key) {
                Some(key) => indexed
                    .entry(key.field.clone())
                    .or_default()
                    .entry(key.value.clone())
                    .or_default()
                    .push(i),
                None => unindexed.push(i),
            }
        }
        Ok(RuleSet {
            conditions,
            rules,
            indexed,
            unindexed,
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, index: u32) -> &Rule {
        &self.rules[index as usize]
    }

    /// Evaluates the rules over `event` with the documented order and stop semantics.
    pub fn evaluate(&self, event: &Event) -> Matches {
        let mut candidates: Vec<u32> = Vec::with_capacity(self.unindexed.len() + 4);
        candidates.extend_from_slice(&self.unindexed);
        for (field, by_value) in &self.indexed {
            if let Some(rules) = field.value(event).and_then(|value| by_value.get(value)) {
                candidates.extend_from_slice(rules);
            }
        }
        candidates.sort_unstable();
        let vars = EventVars::new(event);
        let mut matches = Matches::default();
        for index in candidates {
            let rule = &self.rules[index as usize];
            let matched = match &rule.condition {
                None => true,
                Some(condition) => {
                    matches.evaluated += 1;
                    match self.conditions.eval(condition, &vars) {
                        Ok(result) => result,
                        Err(error) => {
                            matches.errors.push((index, error));
                            false
                        }
                    }
                }
            };
            if matched {
                matches.matched.push(index);
                if rule.drop || !rule.continue_ {
                    break;
                }
            }
        }
        matches
    }
}

/// Parses a list of fingerprint field names, pointing at the list on error.
pub fn parse_fingerprint_fields(
    fields: &Spanned<Vec<String>>,
) -> Result<Arc<[FingerprintField]>, ConfigError> {
    if fields.get_ref().is_empty() {
        return Err(ConfigError::at(
            fields.span(),
            "fingerprint needs at least one field",
        ));
    }
    fields
        .get_ref()
        .iter()
        .map(|name| FingerprintField::parse(name))
        .collect::<Result<Vec<_>, _>>()
        .map(Arc::from)
        .map_err(|message| ConfigError::at(fields.span(), format!("fingerprint: {message}")))
}

/// `environment, resource, labels.mount`.
pub fn field_names(fields: &[FingerprintField]) -> String {
    fields
        .iter()
        .map(|f| f.name().into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}
