//! Integration tests of the server binary and library over real sockets, SQLite and PostgreSQL.

mod access;
mod actions;
mod agent;
mod alertmanager;
mod api;
mod attacks;
mod bad_input;
mod cli;
mod console;
mod durability;
mod escalation;
mod harness;
mod heartbeats;
mod idempotency;
mod incidents;
mod lifecycle;
mod oncall;
mod pagerduty;
mod probes;
mod replay;
mod report;
mod retention;
mod slow_clients;
mod snmp;
mod source_files;
mod syslog;
