//! Storage: one interface (`Store`), two implementations (SQLite embedded, PostgreSQL), their migrations.
//!
//! The ingest path runs the pipeline's stateful stages inside the write transaction: load
//! the alerts the batch's fingerprints point at, call `Pipeline::correlate` for each event in
//! order, write events, alerts, timeline entries and decided actions, commit. Nothing is
//! acknowledged to a sender before that commit returns.

pub mod access;
mod background;
mod cache;
mod db;
pub mod dispatch;
pub mod escalate;
mod journal;
mod postgres;
mod queries;
mod retention;
mod sql;
mod sqlite;
mod sqlite_bulk;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use vakt_core::alert::{OperatorError, OperatorRequest};
use vakt_core::heartbeat::Heartbeat;
use vakt_core::pipeline::EventRecord;

pub use dispatch::{ActionQuery, ActionRecord, ActionStatus, Attempt, Finish, GroupHead, Next};
pub use escalate::{
    Escalation, EscalationStatus, Fire, IncidentChange, IncidentError, IncidentQuery, NewIncident,
    SyncResult,
};
use vakt_core::incident::{Incident, IncidentEntry};
use vakt_core::silence::Silence;
use vakt_core::{
    Alert, AlertStatus, Category, Correlated, Pipeline, Prepared, Severity, TimelineEntry,
};

pub use access::{AuditEntry, AuditQuery, SessionRecord, TokenRecord};
pub use postgres::PostgresStore;
pub use sqlite::{DATABASE_FILE, SqliteStore};
pub use sqlite_bulk::blocking;

/// A new id: a ULID, strictly increasing within this process (timeline entries made in one
/// millisecond keep the order they were made in).
pub fn new_id() -> String {
    sql::new_id()
}

/// Most items one list request returns.
pub const PAGE_LIMIT_MAX: u32 = 1000;
/// Items a list request returns when it does not say.
pub const PAGE_LIMIT_DEFAULT: u32 = 50;

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or cannot take writes now (down, disk full,
    /// read-only): retry later. HTTP answers 503.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read back as what it should be.
    /// Another writer changed the same rows (PostgreSQL unique violation, serialization
    /// failure or deadlock): the transaction may be retried.
    #[error("conflicting concurrent write: {0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &error {
            E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::Tls(_) | E::Protocol(_) => {
                StoreError::Unavailable(error.to_string())
            }
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                // SQLite: 5 BUSY, 8 READONLY, 10 IOERR, 13 FULL, 14 CANTOPEN (and extended codes);
                // PostgreSQL: class 08 connection, 53 resources, 57 operator intervention.
                let sqlite_primary = code.parse::<i32>().map(|c| c & 0xff).unwrap_or(-1);
                if matches!(code.as_ref(), "23505" | "40001" | "40P01") {
                    StoreError::Conflict(error.to_string())
                } else if matches!(sqlite_primary, 5 | 8 | 10 | 13 | 14)
                    || code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57")
                {
                    StoreError::Unavailable(error.to_string())
                } else {
                    StoreError::Other(error.to_string())
                }
            }
            E::ColumnDecode { .. } | E::Decode(_) => StoreError::Corrupt(error.to_string()),
            _ => StoreError::Other(error.to_string()),
        }
    }
}

/// Why an operator's request on an alert failed.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    #[error("no alert with id {0}")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] OperatorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of a list, and where the next one starts.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Filters for listing events. Every set field must match.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub source: Option<String>,
    pub resource: Option<String>,
    pub check: Option<String>,
    pub severity: Option<Severity>,
    pub category: Option<Category>,
    pub alert_id: Option<String>,
    pub fingerprint: Option<String>,
    pub dropped: Option<bool>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Return events older than this id (newest first).
    pub cursor: Option<String>,
    pub limit: u32,
}

/// Filters for listing alerts. `status` matches any of the listed ones.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub status: Vec<AlertStatus>,
    pub severity: Option<Severity>,
    pub category: Option<Category>,
    pub resource: Option<String>,
    pub check: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub fingerprint: Option<String>,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// What a backend is, as callers need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// One process writes (the embedded database): whatever a lease says, work claimed
    /// before this process started belonged to a process that is gone, and can be taken
    /// back at once.
    pub single_process: bool,
}

/// Counts for `/metrics` and the readiness check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub alerts_open: i64,
    pub alerts_acknowledged: i64,
    pub alerts_resolved: i64,
}

/// What the retention task removes, one kind per call of [`Store::prune`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneKind {
    /// Events received before the cutoff, and the traces no remaining event uses.
    Events,
    /// Alerts resolved before the cutoff with nothing left to send, with their timeline,
    /// actions and attempts, escalation and incident links.
    Alerts,
    /// Silences that ended before the cutoff.
    Silences,
    /// Incidents closed before the cutoff, with their timeline and alert links.
    Incidents,
    /// Audit entries written before the cutoff.
    Audit,
    /// Console sessions that expired before the cutoff.
    Sessions,
}

impl PruneKind {
    pub const ALL: [PruneKind; 6] = [
        PruneKind::Events,
        PruneKind::Alerts,
        PruneKind::Silences,
        PruneKind::Incidents,
        PruneKind::Audit,
        PruneKind::Sessions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PruneKind::Events => "events",
            PruneKind::Alerts => "alerts",
            PruneKind::Silences => "silences",
            PruneKind::Incidents => "incidents",
            PruneKind::Audit => "audit",
            PruneKind::Sessions => "sessions",
        }
    }
}

/// One table's size, for `vakt db stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableStats {
    pub table: String,
    pub rows: i64,
    /// Bytes on disk with the table's indexes, where the backend can tell.
    pub bytes: Option<i64>,
}

/// Which silences to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SilenceSet {
    /// Pending and active ones (not ended at `now`).
    #[default]
    InForce,
    /// Only those that ended.
    Expired,
    /// Every stored silence.
    All,
}

/// Filters for listing silences, newest first.
#[derive(Debug, Clone, Copy, Default)]
pub struct SilenceQuery {
    pub set: SilenceSet,
    pub now: DateTime<Utc>,
    /// Only silences written at or after this (what changed since the board last looked).
    pub changed_since: Option<DateTime<Utc>>,
}

/// Events of one hour and kind, from the rollup kept at ingest (reports).
#[derive(Debug, Clone, Serialize)]
pub struct VolumeRow {
    pub hour: DateTime<Utc>,
    pub source: String,
    pub check: String,
    pub category: Category,
    pub severity: Severity,
    pub dropped: bool,
    pub events: i64,
}

/// Decided actions of one action, kind, purpose and status, counted (reports).
#[derive(Debug, Clone, Serialize)]
pub struct ActionCount {
    pub action: String,
    pub kind: String,
    pub purpose: String,
    pub status: ActionStatus,
    /// An escalation page (a person as the target).
    pub paged: bool,
    pub count: i64,
}

/// An incident's priority and times (reports).
#[derive(Debug, Clone, Serialize)]
pub struct IncidentTimes {
    pub priority: u8,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub alerts: i64,
}

/// A page an escalation step decided (reports): for which alert, when, to whom, and what
/// became of it.
#[derive(Debug, Clone, Serialize)]
pub struct PageSent {
    pub alert_id: String,
    pub decided_at: DateTime<Utc>,
    pub status: ActionStatus,
    pub page: vakt_core::escalation::Page,
}

/// Alerts that re-opened in a period (reports): how often in all, how many alerts, and the
/// alerts that re-opened most with their counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reopens {
    pub reopens: i64,
    pub alerts: i64,
    pub top: Vec<(String, i64)>,
}

/// How far the database is behind what ingest acknowledged (SQLite's journal), and how
/// often ingest had to wait for it: the back-pressure of the write path, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriteLag {
    /// Journaled records the database has not applied yet.
    pub behind_bytes: u64,
    /// Past this, ingest waits for the database.
    pub behind_max_bytes: u64,
    /// Batches that waited, and the seconds they waited in all, since the store opened.
    pub waits: u64,
    pub waited_secs: f64,
    /// Journal records written and synced, and the seconds their writes and syncs took in
    /// all, since the store opened: the disk's share of a commit.
    pub syncs: u64,
    pub synced_secs: f64,
    /// Reads and writes that made the database take the journaled records at once (someone
    /// waited for them), since the store opened: each cuts an applier transaction short.
    pub hurried: u64,
    /// Database transactions of journaled records run at the lowest CPU priority (nobody
    /// waited for them and the database was not far behind), since the store opened.
    pub background_applies: u64,
    /// Of those, the ones stopped part-way and done again at normal priority (someone
    /// waited for them, or the database fell further behind), since the store opened.
    pub background_stops: u64,
}

/// What `Store::ingest_handing` may claim for the caller: how many, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct HandOff {
    pub max: usize,
    pub lease_until: DateTime<Utc>,
}

/// A decided action claimed in the ingest write (`running`, leased), with its alert as the
/// batch left it, its event and the other actions the batch decided for the alert: what
/// the dispatcher would otherwise read back from the tables.
#[derive(Debug, Clone)]
pub struct Handed {
    pub record: ActionRecord,
    pub alert: Alert,
    pub event: EventRecord,
    pub earlier: Vec<ActionRecord>,
}

/// Everything vakt keeps. Both implementations pass the same story suite (tests/it).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for messages.
    fn backend(&self) -> &'static str;

    /// What the backend can and cannot do; callers branch on these, never on its name.
    fn capabilities(&self) -> Capabilities;

    /// The write path's lag behind acknowledged ingest; `None` where acknowledged means
    /// written (PostgreSQL, SQLite without its journal).
    fn write_lag(&self) -> Option<WriteLag> {
        None
    }

    /// Where every process that creates or revokes an API token says so cheaply: a value
    /// that changes after each such change is committed, by this process or another one
    /// (SQLite: the size and time of `access.changed` in the data directory). A caller may
    /// keep tokens read while it is unchanged. `None`: no such signal (PostgreSQL, whose
    /// nodes share no directory); read the token each time.
    fn access_generation(&self) -> Option<(u64, u64)> {
        None
    }

    /// Runs the stateful pipeline stages for a batch and stores the outcome atomically.
    /// Events get ids in the order given; when this returns `Ok` the whole batch is durable.
    /// `silences` are the current silences, for the decide stage.
    async fn ingest(
        &self,
        pipeline: &Pipeline,
        silences: &vakt_core::silence::ActiveSilences,
        batch: Vec<Prepared>,
    ) -> Result<Vec<Correlated>, StoreError>;

    /// `ingest`, and up to `hand.max` of the batch's due deliveries for new alerts claimed
    /// for this process in the same durable write (leased until `hand.lease_until`), each
    /// with what running it needs, so the caller runs them without reading them back. A
    /// backend that claims only from its tables hands none (the default).
    async fn ingest_handing(
        &self,
        pipeline: &Pipeline,
        silences: &vakt_core::silence::ActiveSilences,
        batch: Vec<Prepared>,
        hand: HandOff,
    ) -> Result<(Vec<Correlated>, Vec<Handed>), StoreError> {
        let _ = hand;
        Ok((self.ingest(pipeline, silences, batch).await?, Vec::new()))
    }

    async fn event(&self, id: &str) -> Result<Option<EventRecord>, StoreError>;
    /// Up to `limit` events received in `[since, until)` after the event `after`, in the
    /// order they were stored, without their traces: what a replay reads, page by page.
    async fn replay_events(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// Events per hour and kind for hours starting in `[since, until)` (the hour holding
    /// `since` included), from the rollup kept at ingest.
    async fn event_volume(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<VolumeRow>, StoreError>;
    /// Alerts first seen in `[since, until)` after the alert `after`, by id, a page at a time.
    async fn report_alerts(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError>;
    /// The `limit` alerts unresolved the longest.
    async fn standing_alerts(&self, limit: u32) -> Result<Vec<Alert>, StoreError>;
    /// Actions decided in `[since, until)`, counted per action, kind, purpose, status, page.
    async fn action_counts(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ActionCount>, StoreError>;
    /// Incidents opened in `[since, until)`.
    async fn incident_times(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<IncidentTimes>, StoreError>;
    /// Escalation pages decided in `[since, until)`, oldest first.
    async fn report_pages(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<PageSent>, StoreError>;
    /// Alerts re-opened in `[since, until)`: counts and the `limit` that re-opened most.
    async fn reopens(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Reopens, StoreError>;
    /// How many events `replay_events` finds in the range.
    async fn count_replay_events(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError>;
    async fn events(&self, query: &EventQuery) -> Result<Page<EventRecord>, StoreError>;
    async fn alert(&self, id: &str) -> Result<Option<Alert>, StoreError>;
    /// The alerts with these ids, each once, in the order of their first mention; ids with
    /// no alert are left out. One query per few thousand ids, not one per id.
    async fn alerts_by_id(&self, ids: &[&str]) -> Result<Vec<Alert>, StoreError>;
    /// `alerts_by_id` for background work (a group's message): on SQLite it waits for the
    /// journal's applier without hurrying it, and not past a short bound, as the
    /// dispatcher's other calls do (a hurry stops a transaction at idle priority and sends
    /// the next to normal priority; the members' alerts are applied with the members).
    async fn alerts_by_id_unhurried(&self, ids: &[&str]) -> Result<Vec<Alert>, StoreError> {
        self.alerts_by_id(ids).await
    }
    /// The events with these ids, each once, in the order of their first mention; ids with
    /// no event are left out. One query per few thousand ids.
    async fn events_by_id(&self, ids: &[&str]) -> Result<Vec<EventRecord>, StoreError>;
    /// Alerts the decide stage marked flapping (oldest first), for the settle sweep.
    async fn flapping_alerts(&self, limit: u32) -> Result<Vec<Alert>, StoreError>;
    async fn alerts(&self, query: &AlertQuery) -> Result<Page<Alert>, StoreError>;
    /// The alert's timeline, oldest first.
    async fn timeline(&self, alert_id: &str) -> Result<Vec<TimelineEntry>, StoreError>;
    /// The alert's most recent events (newest first), with their traces.
    async fn alert_events(
        &self,
        alert_id: &str,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// Actions decided for an alert and what became of them, oldest first.
    async fn alert_actions(&self, alert_id: &str) -> Result<Vec<ActionRecord>, StoreError>;
    /// Decided actions, newest first.
    async fn actions(&self, query: &ActionQuery) -> Result<Page<ActionRecord>, StoreError>;
    /// One action with all its attempts.
    async fn action(&self, id: &str) -> Result<Option<(ActionRecord, Vec<Attempt>)>, StoreError>;
    /// Claims up to `limit` due ungrouped actions until `lease_until` (exactly one
    /// dispatcher, of however many nodes, gets each).
    async fn claim_actions(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ActionRecord>, StoreError>;
    /// Takes back running actions whose lease ends before `leases_before` (their dispatcher
    /// died mid-attempt); they are due again at `now`.
    async fn recover_actions(
        &self,
        leases_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ActionRecord>, StoreError>;
    /// Records an attempt, the action's next state and a timeline entry, atomically.
    async fn finish_action(
        &self,
        record: &ActionRecord,
        finish: &Finish,
    ) -> Result<(), StoreError> {
        self.finish_actions(&[(record.clone(), finish.clone())])
            .await
    }
    /// Records several attempts in one transaction (the dispatcher's group commit); each
    /// moves only an action that is still claimed (`running`, or held by a claim that
    /// `claim_groups` kept in memory).
    async fn finish_actions(&self, items: &[(ActionRecord, Finish)]) -> Result<(), StoreError>;
    /// Notification groups with pending members.
    async fn group_heads(&self, limit: u32) -> Result<Vec<GroupHead>, StoreError>;
    /// Claims the pending members of groups in one transaction, in `keys` order: up to
    /// `limit` of each, and no further group once `budget` members are claimed (the first
    /// group always is). Each group claimed that had members is noted as sent at `now`.
    /// Returns one list per group claimed, as many as a prefix of `keys`; the caller claims
    /// the rest in another call. The records come back `running` under the lease; a store
    /// with one dispatching process (SQLite) holds the claim in memory and leaves the rows
    /// `pending` until `finish_actions` (a claim that outlives its lease is taken back by
    /// `recover_actions`, as a written one is).
    async fn claim_groups(
        &self,
        keys: &[&str],
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        budget: usize,
    ) -> Result<Vec<Vec<ActionRecord>>, StoreError>;
    /// Puts a failed or skipped action back in the queue; `None` when there is no such
    /// action in one of those states.
    async fn retry_action(
        &self,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ActionRecord>, StoreError>;
    /// When an action last succeeded for an alert (for cooldowns).
    async fn last_success(
        &self,
        action: &str,
        alert_id: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Applies an operator's request (ack, resolve, ...) in one transaction.
    /// Applies an operator's request in one transaction: the alert, its timeline entries,
    /// and for a resolve the resolution notices `pipeline` decides (under `silences`).
    async fn operate(
        &self,
        pipeline: &Pipeline,
        silences: &vakt_core::silence::ActiveSilences,
        alert_id: &str,
        request: &OperatorRequest,
    ) -> Result<Alert, OperateError>;
    async fn stats(&self) -> Result<Stats, StoreError>;
    /// Unresolved alerts whose `expires_at` is at or before `now`, oldest first.
    async fn expired_alerts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError>;
    /// Creates or replaces a silence.
    async fn put_silence(&self, silence: &Silence) -> Result<(), StoreError>;
    /// Stores the dispatcher's throttle window for `key` (its own JSON), or removes it when
    /// `state` is `None`, so a restart does not start a fresh window in a storm.
    async fn put_throttle(&self, key: &str, state: Option<&str>) -> Result<(), StoreError>;
    /// Every stored throttle window: (key, state).
    async fn throttles(&self) -> Result<Vec<(String, String)>, StoreError>;
    async fn silence(&self, id: &str) -> Result<Option<Silence>, StoreError>;
    /// The silences `query` asks for, newest first.
    async fn silences(&self, query: &SilenceQuery) -> Result<Vec<Silence>, StoreError>;
    /// Records a heartbeat's state (created when new); returns what was stored before.
    async fn beat(&self, heartbeat: &Heartbeat) -> Result<Option<Heartbeat>, StoreError>;
    /// Every heartbeat, by name.
    async fn heartbeats(&self) -> Result<Vec<Heartbeat>, StoreError>;
    /// Stores an on-call override made through the API (its `id` and `created_by` set).
    async fn put_override(
        &self,
        schedule: &str,
        item: &vakt_core::oncall::OverrideConfig,
    ) -> Result<(), StoreError>;
    /// A schedule's stored overrides that end after `ending_after`, by start.
    async fn overrides(
        &self,
        schedule: &str,
        ending_after: DateTime<Utc>,
    ) -> Result<Vec<vakt_core::oncall::OverrideConfig>, StoreError>;
    /// Removes a stored override; `false` when there was none.
    async fn delete_override(&self, schedule: &str, id: &str) -> Result<bool, StoreError>;
    /// Stores a new API token (its hash; the token itself is never stored).
    async fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// The token with this SHA-256 hash, revoked or expired ones included.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes the live token with this id or name; `None` when there is none.
    async fn revoke_token(
        &self,
        id_or_name: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<TokenRecord>, StoreError>;
    /// Notes when a token was last used.
    async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// How many tokens can still be used at `now`.
    async fn live_tokens(&self, now: DateTime<Utc>) -> Result<i64, StoreError>;
    /// Appends to the audit log.
    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// A page of the audit log, newest first.
    async fn audit_log(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, StoreError>;
    /// Stores a new console session (and forgets sessions that ended before `now`).
    async fn put_session(
        &self,
        session: &SessionRecord,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The session with this SHA-256 hash.
    async fn session(&self, hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Notes a session's activity.
    async fn touch_session(&self, hash: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Ends a session; `false` when there was none.
    async fn end_session(&self, hash: &str) -> Result<bool, StoreError>;
    /// Sets a user's password hash (argon2id; `vakt user passwd`).
    async fn put_password(
        &self,
        user: &str,
        hash: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// A user's stored password hash.
    async fn password(&self, user: &str) -> Result<Option<String>, StoreError>;
    /// The users with a stored password.
    async fn password_users(&self) -> Result<Vec<String>, StoreError>;
    /// Claims up to `limit` escalations whose step is due, until `lease_until` (exactly one
    /// node, of however many, gets each).
    async fn claim_escalations(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Escalation>, StoreError>;
    /// Drops every escalation lease: for the embedded database at start, where whatever held
    /// a lease was a process that is gone.
    async fn release_escalation_leases(&self) -> Result<u64, StoreError>;
    /// Stores a fired step atomically (pages, timeline, the next position, an incident);
    /// `false` when the escalation moved since it was claimed and nothing was written.
    async fn fire_escalation(&self, pipeline: &Pipeline, fire: &Fire) -> Result<bool, StoreError>;
    async fn escalation(&self, alert_id: &str) -> Result<Option<Escalation>, StoreError>;
    /// Escalations, most recently changed first.
    async fn escalations(
        &self,
        status: Option<EscalationStatus>,
        limit: u32,
    ) -> Result<Vec<Escalation>, StoreError>;
    /// Opens an incident by hand, linking the given alerts.
    async fn create_incident(
        &self,
        pipeline: &Pipeline,
        new: &NewIncident,
    ) -> Result<Incident, IncidentError>;
    /// Changes an incident (`id` is its id or its number, `INC-000123`).
    async fn update_incident(
        &self,
        pipeline: &Pipeline,
        id: &str,
        change: &IncidentChange,
    ) -> Result<Incident, IncidentError>;
    /// An incident with its linked alerts and its timeline.
    async fn incident(
        &self,
        id: &str,
    ) -> Result<Option<(Incident, Vec<IncidentEntry>)>, StoreError>;
    /// Incidents, newest first.
    async fn incidents(&self, query: &IncidentQuery) -> Result<Page<Incident>, StoreError>;
    /// The id of the incident the ITSM tool knows as `external_id`.
    async fn incident_by_external(&self, external_id: &str) -> Result<Option<String>, StoreError>;
    /// Claims incidents with changes not yet sent to the ITSM tool, each with its version.
    async fn claim_incident_syncs(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Incident, i64)>, StoreError>;
    /// Records what the ITSM tool answered for an incident at `version`.
    async fn finish_incident_sync(
        &self,
        id: &str,
        version: i64,
        result: &SyncResult,
    ) -> Result<(), StoreError>;
    /// Cheap round trip to the database, for readiness.
    /// Removes at most `limit` items of `kind` from before `before` (and what belongs to
    /// them) in one short transaction; returns how many items went.
    async fn prune(
        &self,
        kind: PruneKind,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
    /// Rows (and bytes, where known) of every table.
    async fn table_stats(&self) -> Result<Vec<TableStats>, StoreError>;
    /// Bytes the database uses (freed pages not counted), where the backend can tell
    /// cheaply: the embedded database; `None` on PostgreSQL.
    async fn size_bytes(&self) -> Result<Option<u64>, StoreError>;
    /// Gives the space of removed rows back (SQLite `VACUUM`, PostgreSQL `VACUUM ANALYZE`).
    async fn vacuum(&self) -> Result<(), StoreError>;
    /// Writes a consistent copy of the whole database to the new file `to` while writes go
    /// on (SQLite `VACUUM INTO`); a backend that cannot says how to back it up instead.
    async fn backup(&self, to: &std::path::Path) -> Result<(), StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    async fn close(&self);
}

/// Opens the store a location names: a `postgres://` (or `postgresql://`) URL, or a
/// directory for the embedded SQLite database. Runs migrations.
pub async fn open(location: &Location) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match location {
        Location::Postgres(url) => Arc::new(PostgresStore::connect(url).await?),
        Location::SqliteDir(dir) => Arc::new(SqliteStore::open(dir).await?),
    })
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Postgres(String),
    SqliteDir(std::path::PathBuf),
}

impl Location {
    /// A `postgres://` URL selects PostgreSQL; anything else is not a database URL.
    pub fn from_url(url: &str) -> Result<Location, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Location::Postgres(url.to_owned()))
        } else {
            Err(format!(
                "unsupported database URL {:?}: expected postgres://...; for SQLite give a data directory instead",
                redact(url)
            ))
        }
    }

    /// The location with any password hidden, for logs.
    pub fn describe(&self) -> String {
        match self {
            Location::Postgres(url) => redact(url),
            Location::SqliteDir(dir) => format!("sqlite in {}", dir.display()),
        }
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_redaction() {
        assert_eq!(
            Location::from_url("postgres://u:pw@h/db").map(|l| l.describe()),
            Ok("postgres://u:***@h/db".to_owned())
        );
        assert!(Location::from_url("mysql://h/db").is_err());
    }
}
