//! vakt's core: the event model, the rules and the ITIL pipeline stages, with no I/O.
//!
//! Everything here is a pure function of its inputs (event, alert state, configuration and
//! the clock and id source handed in), so the server, `vakt rules test` and replay all run the
//! same code. This crate knows nothing about HTTP, SQL, sockets or files.

pub mod access;
pub mod alert;
pub mod config;
pub mod escalation;
pub mod event;
pub mod fingerprint;
pub mod heartbeat;
pub mod incident;
pub mod matcher;
pub mod noise;
pub mod oncall;
pub mod pipeline;
pub mod probe;
pub mod replay;
pub mod rules;
pub mod secret;
pub mod silence;
pub mod suite;
pub mod trace;

pub use alert::{Alert, AlertStatus, OperatorAction, TimelineEntry, TimelineKind};
pub use config::{ActionConfig, AlertsConfig, ConfigError, PipelineConfig, RuleConfig};
pub use event::{Category, Event, EventInput, FieldError, Severity};
pub use fingerprint::Fingerprint;
pub use pipeline::{Correlated, Pipeline, Prepared};
pub use trace::{Stage, TraceEntry};
