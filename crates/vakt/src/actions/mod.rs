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

mod attempt;
mod config;
mod dispatcher;
pub mod exec;
mod group;
mod handoff;
mod inhibit;
pub mod render;
mod retry;
#[cfg(test)]
pub(crate) mod testing;
mod throttle;
pub mod transport;

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
use vakt_store::{ActionRecord, ActionStatus, Attempt, Finish, GroupHead, Next, Store, StoreError};

use crate::live::Live;
use crate::metrics::Metrics;
use render::Context;
use transport::Delivery;

use attempt::Outcome;
pub use config::*;
pub use dispatcher::{Deps, Dispatcher, recover_at_start, spawn};
pub use handoff::{Handoff, Inbox, Reserved, handoff};
use inhibit::{InhibitRule, inhibitions};
use retry::lease_secs;
use throttle::Throttles;
