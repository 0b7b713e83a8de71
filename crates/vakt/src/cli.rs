//! The command line: every subcommand of CONTRACT.md that exists today, and the exit-code policy.
//!
//! Exit codes: 0 success, 1 a user error (bad config, bad input, a check that failed),
//! 2 an internal or environmental error (cannot bind, database unreachable).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::config::Overrides;

#[derive(Parser, Debug)]
#[command(
    name = "vakt",
    version,
    about = "vakt: ITIL event management. Watch every event, act on what matters, record why.",
    long_about = "vakt takes events from your monitoring over HTTP, runs them through the ITIL \
handling stages (normalise, filter, categorise, correlate, decide, record), keeps alerts with \
their timeline, and explains every decision.\n\n\
Start here:\n  vakt serve                       # 127.0.0.1:8470, SQLite in ./vakt-data, example rules\n  \
vakt send --resource db01 --check disk_usage --severity critical --summary '/var is 99% full'\n  \
curl -s localhost:8470/api/v1/alerts\n\n\
Exit codes: 0 success, 1 user error (bad config or input, failed check), 2 internal or \
environmental error (cannot bind, database unreachable).",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (HTTP API, pipeline, storage)
    #[command(
        long_about = "Run the server. With no arguments: listen on 127.0.0.1:8470, keep data \
in SQLite under ./vakt-data, and use the built-in configuration (examples/vakt.toml).\n\n\
Flags override environment variables, which override the configuration file.\n\
Send SIGHUP or POST /-/reload to reload the rules; SIGTERM or Ctrl-C stops gracefully."
    )]
    Serve(ServeArgs),
    /// Send one event to a running server
    #[command(long_about = "Send one event to a running server, e.g.\n\n  \
vakt send --resource db01 --check disk_usage --severity warning \\\n    \
--summary '/var is 91% full' --label mount=/var --metric used_pct=91.2\n\n\
Exits 0 when the server stored the event, 1 when it refused it, 2 when it could not be reached.")]
    Send(SendArgs),
    /// Check rules, or test what they do to an event
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Silence alerts on a running server: add, list, expire
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Decided actions on a running server: list, show with attempts, retry
    #[command(subcommand)]
    Actions(ActionsCommand),
    /// Incidents on a running server: list, show, open, update (status, assignee, notes)
    #[command(
        subcommand,
        long_about = "Incidents (ITIL) on a running server.\n\n  \
vakt incident list --status new\n  \
vakt incident open 'Checkout is down' --impact 1 --urgency 1 --alert 01J... --by alice\n  \
vakt incident update INC-000012 --status in_progress --assignee alice --by alice\n  \
vakt incident update INC-000012 --status resolved --resolution 'disk replaced' --by alice\n  \
vakt incident show INC-000012\n\n\
Priority follows impact x urgency (incidents.priority_matrix). Status moves new -> \
in_progress <-> on_hold -> resolved -> closed; resolving needs --resolution. Exit 1 when \
the server refuses the request (it says why), 2 when it cannot be reached."
    )]
    Incident(IncidentCommand),
    /// What a running server watches: every probe with its last value and status
    Monitors(MonitorsArgs),
    /// Run probes on this host and forward their events to a server, buffering on disk
    #[command(
        long_about = "Run the [[probes]] of an agent configuration on this host and \
forward their events to a vakt server. While the server is unreachable, events wait in an \
on-disk buffer (agent.buffer_dir, at most agent.buffer_events_max; beyond it the oldest are \
dropped, counted, and a warning event says so) and are delivered in order when it returns. \
A heartbeat named agent-NAME lets the server notice a dead agent.\n\n  \
vakt agent --config /etc/vakt/agent.toml\n\n\
See docs/probes.md. Exit 1 on a bad configuration; runs until interrupted."
    )]
    Agent(AgentArgs),
    /// Who is on call: every schedule now, one schedule at a time, or its coming shifts
    #[command(long_about = "Who is on call, asked of a running server.\n\n  \
vakt oncall                                  # every schedule, now\n  \
vakt oncall ops-primary --at 2026-12-24T20:00:00+01:00\n  \
vakt oncall ops-primary --weeks 2            # the shifts of the next two weeks\n  \
vakt oncall ops-primary --weeks 8 --ics > oncall.ics   # for a calendar app")]
    Oncall(OncallArgs),
    /// API tokens: create (shown once), list, revoke; works on the database directly
    #[command(
        subcommand,
        long_about = "API tokens, managed on the machine vakt runs on (the database directly, \
so the first admin token can be made before anyone can sign in).\n\n  \
vakt token create --name admin --role admin\n  \
vakt token create --name prometheus --role ingest --expires 365d\n  \
vakt token create --name grafana --scope read:alerts --scope read:silences\n  \
vakt token list\n  \
vakt token revoke prometheus\n\n\
The token is printed once; vakt keeps only its SHA-256. Send it as Authorization: Bearer \
TOKEN, as the password of HTTP basic auth (amtool, Prometheus), or with --token / \
VAKT_TOKEN to vakt's own commands. Exit 1 on a bad request, 2 when the database cannot be \
opened."
    )]
    Token(TokenCommand),
    /// Users: print an argon2id password hash for [[users]] password_hash
    #[command(subcommand)]
    User(UserCommand),
    /// The database: rows and bytes per table, retention now, vacuum
    #[command(
        subcommand,
        long_about = "The database vakt stores into, worked on directly (beside a running \
server: SQLite's WAL lets both write).\n\n  \
vakt db stats                # rows and bytes per table\n  \
vakt db stats --json\n  \
vakt db prune                # apply [retention] now, with a progress bar\n  \
vakt db vacuum               # give the space of removed rows back to the disk\n\n\
Exit 1 on a bad request or configuration, 2 when the database cannot be opened or fails."
    )]
    Db(DbCommand),
    /// Copy the embedded database, consistent, while vakt runs (restore: docs/operations.md)
    #[command(
        long_about = "Write a consistent copy of the embedded SQLite database to FILE \
(a new file) while the server keeps ingesting: SQLite's VACUUM INTO copies the database as of \
one commit, so every event acknowledged before the backup began is in it.\n\n  \
vakt backup /backups/vakt-$(date +%F).db\n\n\
Restore: stop vakt, put the file in the data directory as vakt.db (remove vakt.db-wal and \
vakt.db-shm), start vakt. PostgreSQL is backed up with its own tools (pg_dump). Exit 1 when \
FILE exists or the storage is PostgreSQL, 2 when the copy fails."
    )]
    Backup(BackupArgs),
    /// Suggestions for the rules from a period's history, each with evidence and a replay
    #[command(
        long_about = "Look at a period (default the last 7 days) and suggest changes to the \
configuration, each with the evidence and the vakt replay command that shows what the \
change would have done: rules that matched no event, rules that match most events, checks \
whose alerts mostly resolve by themselves within 5 minutes, checks that flap, sources whose \
alerts nobody acknowledges or takes, silences made again and again for the same matchers \
(a maintenance window fits better). It changes nothing.\n\n  \
vakt tune --since 7d\n  vakt tune --since 30d --json\n\n\
Exit 0 with or without suggestions, 1 on a wrong argument, 2 when the database cannot be read."
    )]
    Tune(TuneArgs),
    /// A report of a period: volumes, noise reduction, response times, automation, incidents
    #[command(
        long_about = "Report on a period (default the last 30 days), compared with the period \
of the same length before it: events over time and by hour of the day and day of the week \
(in --tz), the noise-reduction funnel (events, kept, alerts, actions, notifications, pages, \
incidents; deduplicated, dropped and held-back shares), time to acknowledge and to resolve \
(mean, median, p90) by service, team, category and severity, actions and their success, \
alerts resolved without a human, the noisiest sources and checks, standing and flapping \
alerts, incidents by priority.\n\n  \
vakt report --since 30d --format html --out report.html --tz Europe/Stockholm\n  \
vakt report --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z --format csv > nov.csv\n\n\
HTML is one self-contained file (charts drawn as SVG, no scripts). Reads the database \
directly, like vakt db stats. Exit 1 on a wrong argument, 2 when the database cannot be read."
    )]
    Report(ReportArgs),
    /// Replay stored events through a changed configuration: what would have been different
    #[command(
        long_about = "Run the stored events of a period, in the order they were stored and \
with their receipt times, through a configuration (--config, as for every command: \
$VAKT_CONFIG or the built-in one), with nothing written and nothing sent, and compare: with \
--base FILE, with a second run through that configuration (everything: transition, an alert \
that would or would not open, dropped, category, severity, fingerprint (alerts merged or \
split), actions, suppressed actions, escalation, incident); without it, with the events as \
they were stored (dropped, category, severity, fingerprint). Prints what each side did \
(events kept and dropped, alerts opened, actions decided per action, escalations, \
incidents), then the events whose outcome differs.\n\n  \
vakt replay --base /etc/vakt/vakt.toml --config new.toml --since 7d\n  \
vakt replay --since 30d   # today's rules against what the events got when they came\n  \
vakt replay --config new.toml --from 2026-12-01T00:00:00Z --to 2026-12-02T00:00:00Z \
--filter 'check=\"disk_usage\"'\n  \
vakt replay --config new.toml --event 01JF...   # one event, both traces side by side\n\n\
The database is --config's ([storage], --data-dir, --database-url). Neither \
run sees silences or operators' changes: the replay compares rules. Exit 0 when nothing \
differs, 1 when something does (a gate for rule changes in CI) or the input is wrong, 2 \
when the database cannot be read."
    )]
    Replay(ReplayArgs),
    /// Send a bounded load of events and measure: events/s, latency percentiles, errors
    #[command(
        long_about = "Send a fixed number of events to a vakt (loopback unless --target \
says otherwise) and report accepted events per second, request latency p50/p90/p99/max and \
every refusal or error. It stops by itself.\n\n  \
vakt bench --events 100000 --format batch --batch 1000 --concurrency 4\n  \
vakt bench --events 20000 --rate 2000 --format json --fingerprints 500 --exceptions 0.2\n  \
vakt bench --format alertmanager --events 50000\n  \
vakt bench --format syslog-udp --events 100000 --rate 20000\n\n\
Exits 0 when every event was accepted, 1 when some were refused, 2 when none got through."
    )]
    Bench(BenchArgs),
}

/// The wire format `vakt bench` sends.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchFormat {
    /// One event per POST /api/v1/events
    Json,
    /// A JSON array of --batch events per request
    Batch,
    /// NDJSON, --batch events per request
    Ndjson,
    /// Alertmanager API v2 (POST /api/v2/alerts), --batch alerts per request
    Alertmanager,
    /// PagerDuty Events API v2 (POST /v2/enqueue), one per request
    Pagerduty,
    /// RFC 5424 syslog datagrams
    SyslogUdp,
    /// RFC 5424 syslog over TCP, newline framed, one connection per --concurrency
    SyslogTcp,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Where to send [default: http://127.0.0.1:8470, or udp://|tcp://127.0.0.1:5514 for syslog]
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long, value_enum, default_value = "batch")]
    pub format: BenchFormat,
    /// Events in all (the run stops after them)
    #[arg(long, default_value_t = 10_000)]
    pub events: usize,
    /// Events per request for batch, ndjson and alertmanager
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Requests (or syslog senders) at once
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Events per second to offer; 0 sends as fast as accepted
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Distinct alerts the events fall on (repeats make the rest); as many as --events for
    /// every event a new alert. At least 1
    #[arg(long, default_value_t = 1000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub fingerprints: usize,
    /// The events' host names are PREFIX-000000 and on: two loads with different prefixes
    /// make different alerts (e.g. one per node of a cluster)
    #[arg(long, default_value = "bench-host", value_name = "PREFIX")]
    pub host_prefix: String,
    /// Share of alerts that are exceptions (a disk above 95%), 0-1
    #[arg(long, default_value_t = 0.1)]
    pub exceptions: f64,
    /// Share of events that are `ok` and clear their alert, 0-1
    #[arg(long, default_value_t = 0.1)]
    pub ok_share: f64,
    /// PagerDuty routing key for --format pagerduty
    #[arg(long, default_value = "vakt-bench")]
    pub routing_key: String,
    /// Seconds to wait for one request
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// How to sign in to a server with auth on (an `ingest` token is enough): HTTP loads
    /// then pay for authentication as production senders do
    #[command(flatten)]
    pub credential: Credential,
}

#[derive(Args, Debug)]
pub struct OncallArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// A schedule's name; all schedules when absent
    pub schedule: Option<String>,
    /// The time to ask about (RFC 3339) instead of now
    #[arg(long)]
    pub at: Option<String>,
    /// List the shifts of this many weeks ahead (1-52)
    #[arg(long)]
    pub weeks: Option<u32>,
    /// With --weeks: print iCalendar instead of a table
    #[arg(long, requires = "weeks")]
    pub ics: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Where the server is.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Server base URL
    #[arg(long, env = "VAKT_URL", default_value = "http://127.0.0.1:8470")]
    pub url: String,
    /// Seconds to wait for the server
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub credential: Credential,
}

/// How a command signs in to a server that requires it.
#[derive(Args, Debug, Clone, Default)]
pub struct Credential {
    /// API token (vakt token create); sent as Authorization: Bearer
    #[arg(
        long,
        env = "VAKT_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// File holding the API token (its first line), instead of --token
    #[arg(long, env = "VAKT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate to trust for an https:// server (besides the system's)
    #[arg(long, env = "VAKT_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

impl Credential {
    /// The token to send, if any; a token file that cannot be read is an error.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        use anyhow::Context as _;
        if let Some(token) = &self.token {
            return Ok(Some(token.trim().to_owned()));
        }
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        Ok(text
            .lines()
            .next()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty()))
    }

    /// An HTTP client builder that trusts `--ca-file` too.
    pub fn client(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        trusting(reqwest::Client::builder(), self.ca_file.as_deref())
    }
}

/// `builder`, trusting the PEM CA certificates in `ca_file` as well.
pub fn trusting(
    mut builder: reqwest::ClientBuilder,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<reqwest::ClientBuilder> {
    use anyhow::Context as _;
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

#[derive(Subcommand, Debug)]
pub enum SilenceCommand {
    /// Silence matching alerts for a while: events are recorded, no action runs
    #[command(
        long_about = "Silence matching alerts for a while: their events are still \
recorded and categorised, but no action runs, and the trace names the silence.\n\n  \
vakt silence add 'service=\"billing\"' --duration 2h --by alice --comment 'migration'\n  \
vakt silence add 'resource=~\"db0[1-3]\"' 'severity!=\"critical\"' --duration 30m --by bob"
    )]
    Add {
        #[command(flatten)]
        remote: Remote,
        /// Prometheus-style matchers over labels and fields (all must match)
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long: 90s, 30m, 2h, 1d
        #[arg(long, default_value = "1h")]
        duration: String,
        /// Who silences
        #[arg(long, env = "USER")]
        by: String,
        /// Why
        #[arg(long, default_value = "")]
        comment: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// List silences, newest first
    List {
        #[command(flatten)]
        remote: Remote,
        /// Only pending, active or expired ones
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// End a silence now
    Expire {
        #[command(flatten)]
        remote: Remote,
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The agent's configuration: [agent] and [[probes]]
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct MonitorsArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum IncidentCommand {
    /// List incidents, newest first
    List {
        #[command(flatten)]
        remote: Remote,
        /// new, in_progress, on_hold, resolved or closed
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One incident with its alerts and timeline
    Show {
        #[command(flatten)]
        remote: Remote,
        /// Its number (INC-000012) or id
        id: String,
    },
    /// Open an incident by hand
    Open {
        #[command(flatten)]
        remote: Remote,
        title: String,
        #[arg(long, default_value = "")]
        description: String,
        /// 1 (high) .. 3 (low)
        #[arg(long, default_value_t = 2)]
        impact: u8,
        /// 1 (high) .. 3 (low)
        #[arg(long, default_value_t = 2)]
        urgency: u8,
        #[arg(long)]
        assignee: Option<String>,
        /// An alert id to link (repeatable)
        #[arg(long = "alert")]
        alerts: Vec<String>,
        /// Who opens it
        #[arg(long, env = "USER")]
        by: String,
        #[arg(long)]
        json: bool,
    },
    /// Change status, assignee, impact/urgency, add a note, link alerts
    Update {
        #[command(flatten)]
        remote: Remote,
        /// Its number (INC-000012) or id
        id: String,
        #[arg(long)]
        status: Option<String>,
        /// A user id; "" unassigns
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        impact: Option<u8>,
        #[arg(long)]
        urgency: Option<u8>,
        /// Resolution notes (needed to resolve)
        #[arg(long)]
        resolution: Option<String>,
        #[arg(long)]
        note: Option<String>,
        /// An alert id to link (repeatable)
        #[arg(long = "alert")]
        alerts: Vec<String>,
        /// Who changes it
        #[arg(long, env = "USER")]
        by: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ActionsCommand {
    /// List decided actions, newest first
    List {
        #[command(flatten)]
        remote: Remote,
        /// pending, running, succeeded, failed, skipped or suppressed
        #[arg(long)]
        status: Option<String>,
        /// Only this alert's
        #[arg(long)]
        alert: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One action with every attempt and its output
    Show {
        #[command(flatten)]
        remote: Remote,
        id: String,
    },
    /// Run a failed or skipped action again
    Retry {
        #[command(flatten)]
        remote: Remote,
        id: String,
        /// Who asks
        #[arg(long, env = "USER")]
        by: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// Configuration file (TOML); without it the built-in examples/vakt.toml is used
    #[arg(long, short = 'c', env = "VAKT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Address to listen on [default: 127.0.0.1:8470, or server.listen]
    #[arg(long, env = "VAKT_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory of the embedded SQLite database [default: ./vakt-data, or storage.data_dir]
    #[arg(long, env = "VAKT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://...); replaces the embedded database
    #[arg(
        long,
        env = "VAKT_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
        }
    }
}

/// Where the database is, for commands that open it directly.
#[derive(Args, Debug)]
pub struct StorageArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Directory of the embedded SQLite database [default: ./vakt-data, or storage.data_dir]
    #[arg(long, env = "VAKT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://...) instead of the embedded database
    #[arg(
        long,
        env = "VAKT_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

#[derive(Args, Debug)]
pub struct TuneArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// How far back from now: 24h, 7d, 30d [default: 7d]
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// How far back from now: 24h, 7d, 30d [default: 30d]
    #[arg(long, conflicts_with = "from")]
    pub since: Option<String>,
    /// Start of the period (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the period, exclusive (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME", requires = "from")]
    pub to: Option<String>,
    /// html, csv or json
    #[arg(long, default_value = "json")]
    pub format: String,
    /// Write to this file instead of standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The time zone days and hours are counted in [default: UTC]
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// Acknowledged within this is on target: 5m, 15m, 1h [default: 15m]
    #[arg(long, value_name = "DURATION")]
    pub ack_target: Option<String>,
    /// Weekday hours that count as business hours, in --tz [default: 9-17]
    #[arg(long, value_name = "HOURS")]
    pub business_hours: Option<String>,
    /// Hours that count as sleep hours, any day, in --tz [default: 22-7]
    #[arg(long, value_name = "HOURS")]
    pub sleep_hours: Option<String>,
    /// Add the tuning advisor's suggestions (`vakt tune` over the same period: it replays
    /// the period's events, which takes seconds per million)
    #[arg(long)]
    pub tune: bool,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The configuration replayed through is --config; the database is its [storage]
    #[command(flatten)]
    pub storage: StorageArgs,
    /// A configuration to compare with, replayed beside it [default: the events as stored]
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
    /// How far back from now: 90m, 12h, 7d [default: 7d]
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,
    /// Start of the period (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the period, exclusive (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Only events these matchers select, over labels and fields: 'check="disk_usage",severity=~"critical|major"'
    #[arg(long, value_name = "MATCHERS")]
    pub filter: Option<String>,
    /// List at most this many differing events (all are counted; at most 10000)
    #[arg(long, default_value_t = 100)]
    pub list: usize,
    /// Show one event's outcome in both runs, with both traces side by side
    #[arg(long, value_name = "ID")]
    pub event: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Rows and bytes (with indexes) per table
    Stats {
        #[command(flatten)]
        storage: StorageArgs,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Remove what [retention] says has been kept long enough, now
    Prune {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Give the space of removed rows back (SQLite VACUUM, PostgreSQL VACUUM ANALYZE)
    Vacuum {
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Where the copy goes: a new file
    pub file: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token and print it (once)
    Create {
        #[command(flatten)]
        storage: StorageArgs,
        /// A name to tell it by: prometheus, deploy-bot, alice-laptop
        #[arg(long)]
        name: String,
        /// A role: viewer, responder, engineer, admin, ingest (repeatable)
        #[arg(long)]
        role: Vec<String>,
        /// A scope such as read:alerts or write:silences (repeatable)
        #[arg(long)]
        scope: Vec<String>,
        /// Whom it acts as (what `by` records) [default: the token's name]
        #[arg(long)]
        owner: Option<String>,
        /// It stops working after this long: 90d, 12h, 30m
        #[arg(long)]
        expires: Option<String>,
    },
    /// Every token: name, owner, scopes, expiry, last use; never the token itself
    List {
        #[command(flatten)]
        storage: StorageArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id or name: it stops working at once
    Revoke {
        #[command(flatten)]
        storage: StorageArgs,
        /// The token's id or name
        token: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Read a password from standard input and print its argon2id hash, for a [[users]]
    /// entry's password_hash
    #[command(
        long_about = "Read a password from standard input (its first line) and print \
its argon2id hash for the configuration file:\n\n  \
vakt user hash < password.txt\n\n\
[[users]]\nid = \"alice\"\nrole = \"responder\"\npassword_hash = \"$argon2id$v=19$...\"\n\n\
Exit 1 when standard input holds no password."
    )]
    Hash,
    /// Set a user's password in the database (it wins over the configuration's
    /// password_hash); the password is read from standard input
    #[command(
        long_about = "Set the password of a [[users]] entry in vakt's database (only its \
argon2id hash is kept; it takes precedence over the entry's password_hash). The password is \
the first line of standard input:\n\n  vakt user passwd alice < password.txt\n\n\
Exit 1 when the user is not in the configuration or no password is given, 2 when the \
database cannot be opened."
    )]
    Passwd {
        #[command(flatten)]
        storage: StorageArgs,
        /// The user's id, as in [[users]]
        user: String,
    },
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Server base URL
    #[arg(long, env = "VAKT_URL", default_value = "http://127.0.0.1:8470")]
    pub url: String,
    #[command(flatten)]
    pub credential: Credential,
    /// What the event is about: a host, a device, a service instance
    #[arg(long)]
    pub resource: String,
    /// What was checked: disk_usage, cpu_load, ping, ...
    #[arg(long)]
    pub check: String,
    /// critical, major, minor, warning, info or ok (ok clears the alert)
    #[arg(long, default_value = "info")]
    pub severity: String,
    /// One line for a human
    #[arg(long)]
    pub summary: String,
    /// Where it comes from [default: the server's channel name, http]
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub environment: Option<String>,
    /// A label, repeatable: --label mount=/var
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// A measured value, repeatable: --metric used_pct=91.2
    #[arg(long = "metric", value_name = "KEY=NUMBER")]
    pub metrics: Vec<String>,
    /// Seconds to wait for the server
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Validate the configuration; errors are printed as file:line:column
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show what the pipeline does with an event, or run a suite of rule tests
    #[command(
        long_about = "Run an event (a JSON object, or an array of them) through the \
pipeline as the server would, assuming no alert is open for it yet, and print each stage's \
decision, the rules that matched and why. Nothing is stored and no action runs.\n\n\
  vakt rules test --config vakt.toml event.json\n  echo '{...}' | vakt rules test -\n\n\
With --suite, run rule tests instead: every *.toml file of the directory holds [[test]]s, \
each a sequence of events ([[test.step]] with event = {...}, after = \"5m\") and what each \
must do (expect = { transition = \"new_alert\", category = \"exception\", actions = [\"page\"] }). \
Each test starts with no alert; each failure is printed with the step, what was expected, \
what happened and the event's trace. The format: docs/configuration.md, \"Rule tests\".\n\n\
  vakt rules test --config examples/vakt.toml --suite examples/tests\n\n\
Exit 0 when every test passes, 1 when one fails or a file is invalid (file:line:column)."
    )]
    Test {
        #[command(flatten)]
        config: ConfigArg,
        /// The event file, or - for standard input
        #[arg(required_unless_present = "suite")]
        event: Option<PathBuf>,
        /// A directory of rule test files (*.toml), or one such file
        #[arg(long, conflicts_with = "event")]
        suite: Option<PathBuf>,
        /// Print the outcome as JSON
        #[arg(long)]
        json: bool,
    },
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// The user can fix it: bad configuration, bad input, a check that failed (exit 1).
    User(anyhow::Error),
    /// Internal or environmental: cannot bind, database unreachable (exit 2).
    Internal(anyhow::Error),
    /// The command ran and found what it exists to find (a replay's differences): the
    /// message as it is, exit 1.
    Found(String),
}

impl Failure {
    pub fn user(error: impl Into<anyhow::Error>) -> Failure {
        Failure::User(error.into())
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Failure {
        Failure::Internal(error.into())
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Send(args) => commands::send::run(args),
        Command::Rules(RulesCommand::Check { config }) => commands::rules::check(config),
        Command::Rules(RulesCommand::Test {
            config,
            event,
            suite,
            json,
        }) => match (suite, event) {
            (Some(suite), _) => commands::rules::suite(config, &suite, json),
            (None, Some(event)) => commands::rules::test(config, &event, json),
            (None, None) => Err(Failure::user(anyhow::anyhow!(
                "give an event file (or - for standard input), or --suite DIR"
            ))),
        },
        Command::Silence(command) => commands::remote::silence(command),
        Command::Actions(command) => commands::remote::actions(command),
        Command::Incident(command) => commands::remote::incident(command),
        Command::Monitors(args) => commands::remote::monitors(args),
        Command::Agent(args) => {
            commands::serve::init_logging();
            crate::agent::run(args)
        }
        Command::Oncall(args) => commands::remote::oncall(args),
        Command::Token(command) => commands::access::token(command),
        Command::User(command) => commands::access::user(command),
        Command::Db(command) => commands::db::db(command),
        Command::Backup(args) => commands::db::backup(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Tune(args) => commands::report::tune(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::User(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
        Err(Failure::Internal(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
        Err(Failure::Found(message)) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}
