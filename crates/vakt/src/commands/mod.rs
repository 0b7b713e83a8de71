//! One module per subcommand; each returns `Result<(), Failure>` and leaves exit codes to `cli`.

pub mod access;
pub mod bench;
pub mod db;
pub mod remote;
pub mod replay;
pub mod report;
pub mod rules;
pub mod send;
pub mod serve;
