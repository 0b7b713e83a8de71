//! The vakt server: configuration, HTTP API, ingest queue, metrics and the command line, glued together.
//!
//! This crate is glue. The decisions live in `vakt-core`, the data in `vakt-store`.

pub mod actions;
pub mod agent;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod escalation;
pub mod expiry;
pub mod heartbeat;
pub mod http;
pub mod ingest;
pub mod itsm;
pub mod listen;
pub mod live;
pub mod metrics;
pub mod oncall;
pub mod probes;
pub mod redact;
pub mod replay;
pub mod report;
pub mod retention;
pub mod server;
pub mod silences;
pub mod sources;
pub mod tune;
