//! The trace: each stage's decision about one event and why, stored with the event.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The stages of the ITIL handling process, in the order the pipeline runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Normalise,
    Filter,
    Categorise,
    Correlate,
    Decide,
    Record,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Normalise => "normalise",
            Stage::Filter => "filter",
            Stage::Categorise => "categorise",
            Stage::Correlate => "correlate",
            Stage::Decide => "decide",
            Stage::Record => "record",
        }
    }
}

/// One stage's decision: what it decided, the rules that led to it, and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceEntry {
    pub stage: Stage,
    /// Short machine-friendly outcome, e.g. `kept`, `dropped`, `exception`, `new_alert`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub decision: Cow<'static, str>,
    /// Names of the rules that decided it, in evaluation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub rules: Vec<Arc<str>>,
    /// Why, in a sentence an operator can read.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason: Cow<'static, str>,
}

impl TraceEntry {
    pub fn new(
        stage: Stage,
        decision: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> TraceEntry {
        TraceEntry {
            stage,
            decision: decision.into(),
            rules: Vec::new(),
            reason: reason.into(),
        }
    }

    pub fn with_rules(mut self, rules: Vec<Arc<str>>) -> TraceEntry {
        self.rules = rules;
        self
    }
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<10} {:<14} {}",
            self.stage.as_str(),
            self.decision,
            self.reason
        )?;
        if !self.rules.is_empty() {
            write!(f, " [rules: {}]", self.rules.join(", "))?;
        }
        Ok(())
    }
}
