//! The embedded store: SQLite in the data directory, WAL, one writer connection, a read pool.
//!
//! All writes go through one connection, so a batch never waits on another writer and
//! group commit comes for free: the ingest worker hands over whole batches. Readers use
//! their own connections and see the last committed state (WAL snapshots).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use std::sync::Arc;

use crate::cache::AlertCache;
use crate::journal::{Journal, JournalFile, Progress};
use chrono::{DateTime, Utc};

use vakt_core::incident::{Incident, IncidentEntry};
use vakt_core::pipeline::EventRecord;
use vakt_core::{Alert, TimelineEntry};

use crate::access::{self, AuditEntry, AuditQuery, SessionRecord, TokenRecord};
use crate::db::Conn;
use crate::dispatch::{ActionQuery, ActionRecord, Attempt, Finish, GroupHead};
use crate::escalate::{
    Escalation, EscalationStatus, Fire, IncidentChange, IncidentError, IncidentQuery, NewIncident,
    SyncResult,
};
use crate::{AlertQuery, EventQuery, Page, StoreError};
use crate::{OperateError, Stats, Store, dispatch, escalate, queries};

// One writer inserts in id order, so rowid order is id order.

/// How far before a batch's reopen cutoff the writer's cache keeps resolved alerts.
const CACHE_HISTORY_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// A batch's rows go in through SQLite's C API on the writer connection (`sqlite_bulk`),
/// encoded as the journal encodes them: one way rows reach SQLite, journaled or not.
pub(crate) async fn write_rows(
    conn: &mut sqlx::SqliteConnection,
    rows: &crate::sql::BatchRows<'_>,
) -> Result<(), StoreError> {
    let record = crate::journal::encode(rows)?;
    let statements = crate::journal::statements();
    let mut handle = conn.lock_handle().await?;
    let db = &mut handle;
    crate::sqlite_bulk::blocking(|| crate::journal::apply(db, statements, &[&record]))
}

/// `Store::replay_events` on SQLite: the rows read in place through SQLite's C API (sqlx
/// copies every value of every row and sends it across threads, which made reading a
/// million events take longer than replaying them), decoded by position.
async fn replay_events_direct(
    reader: &SqlitePool,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    use crate::sql::Value;
    let mut sql = format!("{} WHERE 1 = 1", crate::sql::EVENT_REPLAY_SELECT);
    let mut binds: Vec<Value<'static>> = Vec::new();
    for (condition, value) in queries::replay_conditions(since, until, after) {
        binds.push(value);
        sql.push_str(&format!(" AND {condition} ?{}", binds.len()));
    }
    binds.push(Value::Int(Some(i64::from(limit))));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", binds.len()));
    let mut conn = reader.acquire().await?;
    let mut handle = conn.lock_handle().await?;
    crate::sqlite_bulk::blocking(|| {
        let mut statement = crate::sqlite_bulk::Statement::prepare(&mut handle, &sql)?;
        let mut out = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(100_000));
        statement.query(binds, |row| {
            out.push(queries::event_from_row(row)?);
            Ok(())
        })?;
        Ok(out)
    })
}

/// `Store::alerts_by_id` on SQLite: the rows read in place through SQLite's C API, decoded
/// by position. A group's message reads every alert it lists, and sqlx copied every column
/// of each into owned values first (issue 18, BENCHMARKS.md).
async fn alerts_direct(reader: &SqlitePool, ids: &[&str]) -> Result<Vec<Alert>, StoreError> {
    use crate::sql::Value;
    let unique = queries::unique_ids(ids);
    let mut conn = reader.acquire().await?;
    let mut handle = conn.lock_handle().await?;
    crate::sqlite_bulk::blocking(|| {
        let mut found = std::collections::HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(crate::sql::BINDS_MAX) {
            let sql = format!(
                "SELECT {} FROM alerts WHERE id IN ({})",
                crate::sql::ALERT_COLUMNS,
                crate::sqlite_bulk::parameters(chunk.len())
            );
            let mut statement = crate::sqlite_bulk::Statement::prepare(&mut handle, &sql)?;
            let binds = chunk
                .iter()
                .map(|id| Value::Text(Some(std::borrow::Cow::Borrowed(*id))));
            statement.query(binds, |row| {
                let alert = queries::alert_from_row(row)?;
                found.insert(alert.id.clone(), alert);
                Ok(())
            })?;
        }
        Ok(queries::in_id_order(unique, found))
    })
}

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "vakt.db";
/// Alerts the writer keeps in memory by default (about 1 KB each); beyond it, alerts are read
/// from the database as batches need them.
pub const ALERT_CACHE_MAX: usize = 200_000;
/// Most fingerprints the writer knows to have an alert beyond the ones it holds (about 130
/// bytes each; past this, a batch's unknown fingerprints are looked up in the database).
const KNOWN_MAX: usize = 5_000_000;
/// Connections for reads.
const READERS: u32 = 4;
/// How long the dispatcher's looks at its tables wait for the journal's applier, at most,
/// before they go on with what it has applied (`read_applied`). Far above the applier's
/// linger (so in the steady state they see every record journaled before them), far
/// below a group's wait (so a burst's backlog does not delay its first message).
const DISPATCH_WAIT_MAX: Duration = Duration::from_millis(200);
/// The WAL is copied into the database once it holds this many bytes of pages: the
/// applier's transactions rewrite the same index pages again and again, and a checkpoint
/// writes each page once however often the WAL holds it. SQLite's default (1,000 pages)
/// checkpointed after nearly every transaction of many unique alerts, a tenth of the
/// server's CPU (BENCHMARKS.md, issue 18: "Fewer checkpoints").
const WAL_CHECKPOINT_BYTES: u32 = 32 << 20;
/// The page size of a database vakt creates. Twice SQLite's default: a transaction of
/// journaled records splits half as many B-tree pages, and its rows are 300-500 bytes; the
/// journal's applier took a tenth less time for the same records (BENCHMARKS.md, issue 18:
/// "Pages of 8 KiB"). A database created before keeps its page size (SQLite changes it
/// only by rewriting the whole file, and never in WAL mode).
const PAGE_SIZE: u32 = 8192;
/// What the WAL file is cut back to after a checkpoint emptied it (a burst that outran
/// checkpoints, or a long read that held one back, leaves no larger file behind).
const WAL_KEPT_BYTES: u64 = 64 << 20;
/// Grows by a byte after each commit that creates or revokes an API token, in whichever
/// process (`Store::access_generation`): a server keeping tokens in memory reads them again.
pub const ACCESS_CHANGED_FILE: &str = "access.changed";

/// The page size of the database at `path`: its header's (bytes 16-17, big-endian, 1 for
/// 65,536), or `PAGE_SIZE` when there is no database yet to read it from.
fn page_size_of(path: &Path) -> u32 {
    use std::io::Read;
    let mut header = [0_u8; 100];
    let read = std::fs::File::open(path).and_then(|mut file| file.read_exact(&mut header));
    match read {
        Ok(()) if header.starts_with(b"SQLite format 3\0") => {
            match u16::from_be_bytes([header[16], header[17]]) {
                1 => 65_536,
                size if size >= 512 && size.is_power_of_two() => u32::from(size),
                _ => PAGE_SIZE,
            }
        }
        _ => PAGE_SIZE,
    }
}

pub struct SqliteStore {
    /// Most alerts the writer keeps in memory (`with_alert_cache_max`).
    cache_max: usize,
    writer: SqlitePool,
    reader: SqlitePool,
    /// Held for every write transaction and the cache update after its commit, so the cache
    /// always matches what is committed.
    state: tokio::sync::Mutex<WriterState>,
    /// The ingest journal, when this process holds it (`journal.rs`); `None` for a command
    /// opening the database of a running server, which then writes to SQLite directly.
    journal: Option<Arc<Journal>>,
    /// The data directory.
    dir: std::path::PathBuf,
    /// Without the journal: the shared lock that tells the journal's owner another store
    /// writes to the database.
    _writer: Option<crate::journal::Others>,
    /// Group members claimed by this process's dispatcher, held in memory: one process
    /// dispatches from the embedded database, so their rows need not say `running`.
    held: dispatch::HeldClaims,
    /// Whether a recovery of this process has noted the groups with pending members
    /// (`dispatch::note_pending_groups`): once, for claims a previous process held.
    regrouped: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct WriterState {
    alerts: Option<AlertCache>,
    /// `PRAGMA data_version` of the writer connection when the cache was last right: it
    /// changes when another connection (another process) commits, and then the cache is
    /// loaded again.
    data_version: Option<i64>,
    traces: crate::sql::KnownTraces,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "expiry and silences".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0002_expiry_silences.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "heartbeats".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0003_heartbeats.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "dispatch".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0004_dispatch.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "oncall".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0005_oncall.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "escalation_incidents".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0006_escalation_incidents.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "alert fingerprint index".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0007_alert_fingerprint_index.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "idempotency, flapping, throttles".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0008_idempotency_flapping_throttles.sql")
                .into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            "tokens and audit".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0009_tokens_audit.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            "sessions".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0010_sessions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            11,
            "user passwords".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0011_user_passwords.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            12,
            "retention".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0012_retention.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            13,
            "group heads".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0013_group_heads.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            14,
            "journal".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0014_journal.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            15,
            "event received".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0015_event_received.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            16,
            "event rollup".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0016_event_rollup.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            17,
            "reopen index".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0017_reopen_index.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            18,
            "one fingerprint index".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0018_drop_active_fingerprint.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            19,
            "opened line".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0019_opened_line.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            20,
            "trace last event".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0020_trace_last_event.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            21,
            "attempt lines".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0021_attempt_lines.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            22,
            "unusual actions index".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0022_unusual_actions_index.sql").into_sql_str(),
            false,
        ),
    ])
}

impl SqliteStore {
    /// Keeps at most `max` alerts in the writer's memory.
    pub fn with_alert_cache_max(mut self, max: usize) -> SqliteStore {
        self.cache_max = max.max(1);
        self
    }

    /// Opens (creating if needed) the database in `dir` and brings its schema up to date.
    pub async fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        // Only vakt's user may read what it stores (events, tokens' hashes, sessions).
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|error| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {error}",
                dir.display()
            ))
        })?;
        let path = dir.join(DATABASE_FILE);
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| StoreError::Other(e.to_string()))?
            .filename(&path)
            .create_if_missing(true)
            // For a database not yet written (sqlx sets it first, before the journal mode);
            // an existing one keeps its pages.
            .page_size(PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the 202 goes out, power cut included.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            // 64 MiB of page cache (negative means KiB): index pages stay in memory.
            .pragma("cache_size", "-65536")
            .pragma(
                "wal_autocheckpoint",
                (WAL_CHECKPOINT_BYTES / page_size_of(&path)).to_string(),
            )
            .pragma("journal_size_limit", WAL_KEPT_BYTES.to_string());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // Keep the one connection: its data_version is what tells other writers apart.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|error| unavailable(&path, error))?;
        migrator()
            .run(&writer)
            .await
            .map_err(|error| StoreError::Other(format!("migrating {}: {error}", path.display())))?;
        private_files(&path);
        // Readers answer the API's and console's queries from pages the OS keeps cached
        // anyway: 8 MiB each, so four of them cannot hold four times the writer's cache.
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true).pragma("cache_size", "-8192"))
            .await
            .map_err(|error| unavailable(&path, error))?;
        let journal = open_journal(dir, &writer).await?;
        let writer_lock = match journal {
            Some(_) => None,
            None => crate::journal::Others::join(dir),
        };
        Ok(SqliteStore {
            cache_max: ALERT_CACHE_MAX,
            writer,
            reader,
            state: tokio::sync::Mutex::new(WriterState::default()),
            journal,
            dir: dir.to_path_buf(),
            _writer: writer_lock,
            held: dispatch::HeldClaims::default(),
            regrouped: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl SqliteStore {
    /// Says that an API token was created or revoked (after the commit): one byte more in
    /// `ACCESS_CHANGED_FILE`. A failure is logged: servers then keep a revoked token for as
    /// long as they keep tokens in memory at most.
    fn access_changed(&self) {
        use std::io::Write as _;
        let path = self.dir.join(ACCESS_CHANGED_FILE);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(b"."));
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "cannot note a change of API tokens");
        }
    }

    /// Waits until everything journaled so far is in SQLite: every read and every other write
    /// sees what ingest acknowledged before it. `hurry`: see `Journal::barrier`.
    async fn barrier(&self, hurry: bool) -> Result<(), StoreError> {
        match &self.journal {
            Some(journal) => journal.barrier(hurry).await,
            None => Ok(()),
        }
    }

    /// Runs `f` on a reader connection (the last committed state), once the applier has
    /// written what ingest acknowledged before the call (it is hurried to).
    async fn read<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.barrier(true).await?;
        self.read_now(f).await
    }

    /// `read` for background work (the escalation and expiry loops' looks): it waits for
    /// the applier without hurrying it. A hurried applier commits what it has at once,
    /// and every dispatch round hurrying it cut its transactions short: each writes its
    /// shared pages (indexes, the groups' rows) again (issue 18, BENCHMARKS.md).
    async fn read_unhurried<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.barrier(false).await?;
        self.read_now(f).await
    }

    /// `read` for the dispatcher's looks at its tables (due actions, group heads, a group's
    /// alerts): it waits for the applier without hurrying it, for at most
    /// `DISPATCH_WAIT_MAX`, then reads what is applied (`Journal::barrier_within`). What it
    /// finds is all in the tables, and a row still in the journal is found by a later look:
    /// a burst's backlog does not hold a group's message past its wait.
    async fn read_applied<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.applied().await?;
        self.read_now(f).await
    }

    /// `write` for the dispatcher's claims, as `read_applied`.
    async fn write_applied<T, E: From<StoreError>>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.applied().await?;
        self.write_now(f).await
    }

    /// The wait of `read_applied` and `write_applied`.
    async fn applied(&self) -> Result<(), StoreError> {
        match &self.journal {
            Some(journal) => journal.barrier_within(DISPATCH_WAIT_MAX).await,
            None => Ok(()),
        }
    }

    /// Runs `f` on a reader connection at once: only for tables no journal record writes
    /// (API tokens, sessions, passwords). Authentication reads one per request; waiting for
    /// the applier there made every authenticated request hurry it: thousands of one-record
    /// transactions, 52 KB written per alert (BENCHMARKS.md).
    async fn read_now<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.reader.acquire().await?;
        f(&mut Conn::Sqlite(&mut conn)).await
    }

    /// Runs `f` in a transaction of the one writer connection and commits it, once the
    /// applier has written what ingest acknowledged before the call.
    async fn write<T, E: From<StoreError>>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.barrier(true).await?;
        self.write_now(f).await
    }

    /// `write` at once: only for tables no journal record writes, as `read_now`.
    async fn write_now<T, E: From<StoreError>>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::from)?;
        let done = f(&mut Conn::Sqlite(&mut tx)).await?;
        commit(&self.writer, tx).await?;
        Ok(done)
    }

    /// Puts alerts a transaction changed outside ingest (an incident link) into the writer's
    /// cache, so the next batch does not write their old state back.
    async fn recache(
        &self,
        state: &mut WriterState,
        alert_ids: &[String],
    ) -> Result<(), StoreError> {
        if alert_ids.is_empty() {
            return Ok(());
        }
        let Some(cache) = &mut state.alerts else {
            return Ok(());
        };
        let mut conn = self.writer.acquire().await?;
        let ids: Vec<&str> = alert_ids.iter().map(String::as_str).collect();
        for alert in queries::get_alerts(&mut Conn::Sqlite(&mut conn), &ids).await? {
            cache.put(alert);
        }
        // This process's own commit: the cache is right, not stale.
        let version: i64 = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut *conn)
            .await?;
        state.data_version = Some(version);
        Ok(())
    }
}

impl SqliteStore {
    /// Ingest in one transaction, as before the journal: for a store without one, and for
    /// batches that read the database (idempotency keys, alerts beyond the cache, a cache to
    /// load). Everything journaled is applied first.
    async fn ingest_in_transaction(
        &self,
        state: &mut WriterState,
        pipeline: &vakt_core::Pipeline,
        silences: &vakt_core::silence::ActiveSilences,
        batch: Vec<vakt_core::Prepared>,
    ) -> Result<Vec<vakt_core::Correlated>, StoreError> {
        self.barrier(true).await?;
        let ids: Vec<String> = batch.iter().map(|_| crate::sql::new_id()).collect();
        let now = chrono::Utc::now();
        let window = pipeline.reopen_window();
        // The long-lived cache keeps a margin before the batch's own cutoff: batches from
        // several channels may carry receipt times slightly out of order.
        let history_before = crate::sql::reopen_cutoff(&batch, window, now) - CACHE_HISTORY_MARGIN;
        let since_ms = history_before.timestamp_millis();
        // The single writer connection means no other transaction of this process can slip
        // in between the read of alert state and the write, and no conflict forces a retry.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let version: i64 = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut *tx)
            .await?;
        let fresh = state.data_version == Some(version);
        state.data_version = Some(version);
        let cache = match &mut state.alerts {
            Some(cache) if fresh && cache.window == window => cache,
            slot => {
                let cache = match queries::load_all_current(
                    &mut Conn::Sqlite(&mut tx),
                    since_ms,
                    self.cache_max,
                )
                .await?
                {
                    Some(alerts) => {
                        tracing::info!(
                            alerts = alerts.len(),
                            "loaded the alerts that can take events"
                        );
                        AlertCache::new(window, history_before, alerts, self.cache_max, true)
                    }
                    None => {
                        let mut cache = AlertCache::new(
                            window,
                            history_before,
                            Default::default(),
                            self.cache_max,
                            false,
                        );
                        let known =
                            queries::load_known(&mut Conn::Sqlite(&mut tx), since_ms, KNOWN_MAX)
                                .await?;
                        let count = known.as_ref().map(Vec::len);
                        if let Some(known) = known {
                            cache.know(known);
                        }
                        tracing::info!(
                            cache_max = self.cache_max,
                            known = count,
                            "more alerts can take events than the writer keeps in memory; reading the others as batches need them"
                        );
                        cache
                    }
                };
                slot.insert(cache)
            }
        };
        cache.prune(history_before);
        let (mut current, missing) = cache.current(batch.iter().map(|p| &p.fingerprint));
        if !missing.is_empty() {
            for (fingerprint, alert) in
                queries::load_current(&mut Conn::Sqlite(&mut tx), &missing, since_ms).await?
            {
                cache.put(alert.clone());
                current.insert(fingerprint, alert);
            }
        }
        let (outcomes, traces) = queries::write_batch(
            &mut Conn::Sqlite(&mut tx),
            pipeline,
            silences,
            batch,
            &ids,
            current,
            &mut state.traces,
        )
        .await?;
        commit(&self.writer, tx).await?;
        for alert in outcomes.iter().filter_map(|o| o.alert.as_ref()) {
            cache.put(Arc::clone(alert));
        }
        state.traces.extend(traces);
        Ok(outcomes)
    }

    /// Appends a batch's record to the journal (durable when this returns) and hands it to
    /// the applier; waits first when the applier is too far behind.
    async fn journal_append(&self, journal: &Journal, record: Vec<u8>) -> Result<(), StoreError> {
        if let Some(error) = journal.failing() {
            // The database refuses what the journal holds: accept no more until it takes it.
            return Err(error);
        }
        // Room counted uncompressed: how far behind the database may be is a bound on the
        // rows it has yet to write, not on the file.
        let room = journal.reserve(record.len()).await?;
        let record = crate::journal::pack(record);
        // The writer task's one step that waits on the disk. While the disk answers fast it
        // runs on this worker (the other workers run the HTTP side meanwhile). While the disk
        // is slow (a sync of `SLOW_SYNC` or more lately) the worker's queue is handed over
        // for the sync instead (`block_in_place`): a task this worker woke waits in its LIFO
        // slot, which no other worker can take from, and would wait out every slow sync (a
        // `/healthz` waited 163 ms once in CI). The first slow sync after a calm still holds
        // such a task up once (a yield before every sync, which would run it first, cost a
        // single sender 40%: BENCHMARKS.md).
        let inline = crate::sqlite_bulk::may_block_worker() && !journal.disk_slow();
        let append = || {
            let mut file = journal
                .file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            file.append(&record)
        };
        let started = std::time::Instant::now();
        let seq = if inline {
            append()
        } else {
            crate::sqlite_bulk::blocking(append)
        }?;
        journal.synced(started.elapsed());
        journal
            .journaled
            .store(seq, std::sync::atomic::Ordering::Release);
        journal.queued_bytes.fetch_add(
            u64::try_from(record.len()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        journal
            .queue
            .send((seq, record, room))
            .map_err(|_| crate::journal::applier_stopped())
    }
}

/// Opens the ingest journal in `dir`: applies what it holds beyond the position SQLite
/// recorded, then starts the applier. `None` when another process (a running server) holds it.
async fn open_journal(dir: &Path, writer: &SqlitePool) -> Result<Option<Arc<Journal>>, StoreError> {
    let opened = match crate::sqlite_bulk::blocking(|| JournalFile::open(dir)) {
        Ok(opened) => opened,
        Err(error) => {
            // A read-only data directory, say: vakt still starts and reads, and every write
            // is refused by the database itself, saying why. Records the journal may hold
            // are applied by the next start that can open it.
            tracing::warn!(%error, "cannot use the ingest journal: writing to the database directly");
            return Ok(None);
        }
    };
    let Some((mut file, records)) = opened else {
        tracing::info!(
            "another process holds the ingest journal: writing to the database directly"
        );
        return Ok(None);
    };
    let applied = applied_seq(&mut *writer.acquire().await?).await?;
    let pending = Pending::after(&records, applied);
    if let Some(missing) = pending.missing(applied) {
        // Cannot happen unless a file was damaged or replaced: a lap overwrites only
        // records the database holds, synced. What is there is applied all the same.
        tracing::error!(
            missing,
            applied,
            "the ingest journal lacks record {missing}: the batches it held are lost"
        );
    }
    let mut last = applied;
    if let Some(seq) = pending.last {
        apply_records(writer, &pending.payloads, seq, true, &|| false).await?;
        tracing::info!(
            records = pending.payloads.len(),
            last = seq,
            "applied the ingest journal's records the database did not have yet"
        );
        last = seq;
    }
    // Everything in the file is in the database now: the next record starts a new lap.
    file.continue_after(last);
    file.restart();
    let (progress, _) = tokio::sync::watch::channel(Progress {
        applied: file.last(),
        synced: file.last(),
        error: None,
    });
    let (queue, records) = tokio::sync::mpsc::unbounded_channel();
    let journal = Arc::new(Journal {
        journaled: std::sync::atomic::AtomicU64::new(file.last()),
        file: std::sync::Mutex::new(file),
        progress,
        queue,
        room: Arc::new(tokio::sync::Semaphore::new(
            crate::journal::BEHIND_KIB_MAX as usize,
        )),
        foreign_write: std::sync::atomic::AtomicBool::new(false),
        queued_bytes: std::sync::atomic::AtomicU64::new(0),
        behind_mark: std::sync::atomic::AtomicU64::new(0),
        sync_at: std::sync::atomic::AtomicU64::new(0),
        hurry: tokio::sync::Notify::new(),
        others: crate::journal::Others::watch(dir)?,
        waits: std::sync::atomic::AtomicU64::new(0),
        hurried: std::sync::atomic::AtomicU64::new(0),
        waited_us: std::sync::atomic::AtomicU64::new(0),
        syncs: std::sync::atomic::AtomicU64::new(0),
        synced_us: std::sync::atomic::AtomicU64::new(0),
        slow_until: std::sync::Mutex::new(None),
        background_applies: std::sync::atomic::AtomicU64::new(0),
        background_stops: std::sync::atomic::AtomicU64::new(0),
    });
    let background = match crate::background::Background::start("vakt-applier") {
        Ok(background) => Some(background),
        Err(error) => {
            tracing::warn!(%error, "no background thread for the journal's applier: it runs on the runtime's workers");
            None
        }
    };
    tokio::spawn(applier(
        writer.clone(),
        Arc::downgrade(&journal),
        records,
        background,
    ));
    Ok(Some(journal))
}

/// The last journal record the database holds (`journal_applied`).
async fn applied_seq(conn: &mut sqlx::SqliteConnection) -> Result<u64, StoreError> {
    let applied: i64 = sqlx::query_scalar("SELECT seq FROM journal_applied WHERE id = 1")
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(applied).unwrap_or(0))
}

/// The records of a journal that come after the database's position.
struct Pending<'a> {
    seqs: Vec<u64>,
    payloads: Vec<&'a [u8]>,
    last: Option<u64>,
}

impl<'a> Pending<'a> {
    fn after(records: &'a [crate::journal::Recovered], applied: u64) -> Pending<'a> {
        let after: Vec<&(u64, Vec<u8>)> =
            records.iter().filter(|(seq, _)| *seq > applied).collect();
        Pending {
            seqs: after.iter().map(|(seq, _)| *seq).collect(),
            payloads: after.iter().map(|(_, p)| p.as_slice()).collect(),
            last: after.last().map(|(seq, _)| *seq),
        }
    }

    /// The first sequence number missing between the database's position and the last
    /// record, if one is.
    fn missing(&self, applied: u64) -> Option<u64> {
        (applied + 1..)
            .zip(&self.seqs)
            .find(|(expected, seq)| expected != *seq)
            .map(|(expected, _)| expected)
    }
}

/// Applies to a copy of the database (`to`) the records of the journal in `dir` that it
/// does not have. `false` when the journal no longer holds all of them (it started a new
/// lap since the copy was taken, so the live database has them: copy again).
async fn catch_up(dir: &Path, to: &Path) -> Result<bool, StoreError> {
    use sqlx::Connection;
    let records = crate::journal::read_dir(dir)?;
    let options = SqliteConnectOptions::new()
        .filename(to)
        .synchronous(SqliteSynchronous::Full);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    let applied = applied_seq(&mut conn).await?;
    let pending = Pending::after(&records, applied);
    if pending.missing(applied).is_some() {
        conn.close().await?;
        return Ok(false);
    }
    if let Some(last) = pending.last {
        apply_in(&mut conn, &pending.payloads, last, &|| false).await?;
    }
    conn.close().await?;
    Ok(true)
}

/// Writes journaled records to SQLite in order, as many per transaction as are waiting, and
/// publishes how far it got. A failure is retried (the records stay, ingest waits once the
/// backlog is full) and published, so reads fail instead of showing a stale database.
///
/// A transaction runs on `background` (the lowest CPU priority) while the applier keeps up
/// and nobody waits for it; on the runtime's workers when a reader or writer hurried it,
/// the transaction is large (`BACKGROUND_APPLY_KIB_MAX`) or the records waiting pass
/// three quarters of the journal's bound (`wants_normal_priority`). So a busy machine cannot starve the applier,
/// and a read that hurries it finds at most one transaction of at most 8 MiB of records
/// running at idle priority ahead of it (which stops at its next record).
async fn applier(
    writer: SqlitePool,
    journal: std::sync::Weak<Journal>,
    mut records: tokio::sync::mpsc::UnboundedReceiver<(
        u64,
        Vec<u8>,
        tokio::sync::OwnedSemaphorePermit,
    )>,
    background: Option<crate::background::Background>,
) {
    let mut data_version: Option<i64> = None;
    let mut synced = journal
        .upgrade()
        .map_or(0, |journal| journal.progress.borrow().synced);
    while let Some(first) = records.recv().await {
        // Let more records gather while they keep coming (one transaction writes a shared
        // page once), unless a reader or writer waits for them.
        let hurry = journal.upgrade();
        let hurried_before = hurry
            .as_ref()
            .map(|j| j.hurried.load(std::sync::atomic::Ordering::Relaxed));
        // While the lane at the lowest priority is open (nobody waits, the backlog is
        // within it) the transaction is gathered to fit it: a backlog goes through the lane
        // in steps instead of in one transaction too large for it.
        let lane_open = background.is_some()
            && hurry
                .as_ref()
                .is_some_and(|j| !wants_normal_priority(j, hurried_before));
        type Record = (u64, Vec<u8>, tokio::sync::OwnedSemaphorePermit);
        let (size, linger): (fn(&Record) -> usize, _) = if lane_open {
            // Counted before compression, as the lane's bound is.
            (
                |(_, _, room)| room.num_permits() * 1024,
                crate::journal::Linger::BACKGROUND,
            )
        } else {
            (
                |(_, payload, _)| payload.len(),
                crate::journal::Linger::APPLIER,
            )
        };
        let (batch, _) = crate::journal::gather(
            &mut records,
            first,
            size,
            hurry.as_ref().map(|j| &j.hurry),
            linger,
        )
        .await;
        drop(hurry);
        let last = batch.last().map_or(0, |(seq, _, _)| *seq);
        // The records' room in the backlog is given back once they are applied.
        let (payloads, room): (Vec<Vec<u8>>, Vec<_>) = batch
            .into_iter()
            .map(|(_, payload, room)| (payload, room))
            .unzip();
        // The records' size before compression, in KiB: their room in the backlog.
        let kib: usize = room
            .iter()
            .map(tokio::sync::OwnedSemaphorePermit::num_permits)
            .sum();
        let journal_bytes: u64 = payloads
            .iter()
            .map(|p| u64::try_from(p.len()).unwrap_or(u64::MAX))
            .sum();
        let payloads = Arc::new(payloads);
        let records_count = payloads.len();
        // Past the end of a lap: this commit is synced, so that lap's file may be overwritten.
        let (sync, mut urgent) = journal.upgrade().map_or((false, true), |journal| {
            let at = journal.sync_at.load(std::sync::atomic::Ordering::Acquire);
            let urgent = wants_normal_priority(&journal, hurried_before)
                || kib > crate::journal::BACKGROUND_APPLY_KIB_MAX as usize;
            (at > synced && last >= at, urgent)
        });
        let mut backoff = std::time::Duration::from_millis(50);
        let started = std::time::Instant::now();
        loop {
            let on_background = background
                .as_ref()
                .zip(journal.upgrade())
                .filter(|_| !urgent);
            let background_lane = on_background.is_some();
            let result = match on_background {
                Some((background, journal)) => match writer.acquire().await {
                    Err(error) => Err(error.into()),
                    Ok(conn) => {
                        let payloads = Arc::clone(&payloads);
                        background
                            .run(async move {
                                let payloads: Vec<&[u8]> =
                                    payloads.iter().map(Vec::as_slice).collect();
                                // Someone waits, or it fell behind, since the lane was
                                // chosen: stop, and do it again at normal priority.
                                let stop = || wants_normal_priority(&journal, hurried_before);
                                apply_records_on(conn, &payloads, last, sync, &stop).await
                            })
                            .await
                            // The connection goes back to the pool from here: its return (a
                            // ping, then the release) runs on the runtime's workers, not
                            // waiting for the idle thread's next turn.
                            .map_or_else(
                                || {
                                    Err(StoreError::Unavailable(
                                        "the journal's background thread stopped".into(),
                                    ))
                                },
                                |(conn, result)| {
                                    drop(conn);
                                    result
                                },
                            )
                    }
                },
                None => {
                    let payloads: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                    apply_records(&writer, &payloads, last, sync, &|| false).await
                }
            };
            let Some(journal) = journal.upgrade() else {
                return;
            };
            match result {
                Ok(None) => {
                    journal
                        .background_stops
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    urgent = true;
                }
                Ok(Some(version)) => {
                    // Another process's commit changes the writer connection's data_version.
                    if data_version.is_some_and(|v| v != version) {
                        journal
                            .foreign_write
                            .store(true, std::sync::atomic::Ordering::Release);
                    }
                    data_version = Some(version);
                    tracing::debug!(
                        records = records_count,
                        kib,
                        last,
                        background = background_lane,
                        behind =
                            journal.journaled.load(std::sync::atomic::Ordering::Acquire) - last,
                        ms = started.elapsed().as_secs_f64() * 1000.0,
                        "applied journal records"
                    );
                    if sync {
                        synced = last;
                    }
                    if background_lane {
                        journal
                            .background_applies
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // Before the progress is published: whoever sees the records applied
                    // sees their bytes gone too.
                    let _ = journal.queued_bytes.fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |queued| Some(queued.saturating_sub(journal_bytes)),
                    );
                    journal.progress.send_replace(Progress {
                        applied: last,
                        synced,
                        error: None,
                    });
                    break;
                }
                Err(error) => {
                    tracing::error!(%error, records = records_count, "cannot write journaled events to the database; trying again");
                    journal
                        .progress
                        .send_modify(|p| p.error = Some(error.to_string()));
                    drop(journal);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    }
}

/// Whether the applier's next transaction should run on the runtime's workers: a reader or
/// writer hurried it since `before` (`Journal::hurried`), the unapplied records pass
/// `BACKGROUND_BEHIND_KIB_MAX`, or their journal bytes pass three quarters of a lap
/// (`queued_bytes`).
fn wants_normal_priority(journal: &Journal, before: Option<u64>) -> bool {
    use crate::journal::{BACKGROUND_BEHIND_KIB_MAX, BEHIND_KIB_MAX, LAP_BYTES};
    let now = journal.hurried.load(std::sync::atomic::Ordering::Relaxed);
    let behind = (BEHIND_KIB_MAX as usize).saturating_sub(journal.room.available_permits());
    let journal_behind = journal
        .queued_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    before != Some(now)
        || behind > BACKGROUND_BEHIND_KIB_MAX as usize
        || journal_behind > LAP_BYTES / 4 * 3
}

/// Applies journal records in one transaction that also records `last` as applied; returns
/// the connection's data_version before it, or `None` when `stop` said stop before a record
/// (the transaction rolled back, nothing written). With `sync` false the commit is not synced
/// (`synchronous = NORMAL` for this transaction only): the records are durable in the
/// journal already, and the journal starts over only after a synced commit (`ingest` runs
/// `queries::sync_point` first), so a power cut loses nothing the journal does not replay.
async fn apply_records(
    writer: &SqlitePool,
    payloads: &[&[u8]],
    last: u64,
    sync: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Option<i64>, StoreError> {
    let conn = writer.acquire().await?;
    let (conn, result) = apply_records_on(conn, payloads, last, sync, stop).await;
    drop(conn);
    result
}

/// `apply_records` on a connection taken from the writer pool, which it gives back unless it
/// had to close it; the caller drops it where its return to the pool should run.
async fn apply_records_on(
    mut conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    payloads: &[&[u8]],
    last: u64,
    sync: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> (
    Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>,
    Result<Option<i64>, StoreError>,
) {
    if !sync
        && let Err(error) = sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await
    {
        return (Some(conn), Err(error.into()));
    }
    let result = apply_in(&mut conn, payloads, last, stop).await;
    // Every other write on this connection must be synced: if the setting cannot be put
    // back, or the transaction failed half-way (a COMMIT that failed leaves the connection in
    // a transaction the driver no longer tracks), the connection goes and the pool opens a
    // new one (FULL, from its options).
    let restored = if sync {
        Ok(())
    } else {
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await
            .map(|_| ())
    };
    if result.is_err() || restored.is_err() {
        tracing::warn!("reopening the database's writer connection after a failed journal write");
        let _ = conn.close().await;
        return (
            None,
            result.and_then(|version| restored.map(|()| version).map_err(StoreError::from)),
        );
    }
    (Some(conn), result)
}

async fn apply_in(
    conn: &mut sqlx::SqliteConnection,
    payloads: &[&[u8]],
    last: u64,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Option<i64>, StoreError> {
    let version: i64 = sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(&mut *conn)
        .await?;
    // The whole transaction on this thread, through SQLite's C API: on the background
    // thread its commit (the WAL's page writes, a checkpoint) runs at that thread's
    // priority, not on sqlx's worker thread.
    let seq = i64::try_from(last).unwrap_or(i64::MAX);
    let mut handle = conn.lock_handle().await?;
    let db = &mut handle;
    let applied = crate::sqlite_bulk::blocking(|| {
        crate::sqlite_bulk::execute(db, "BEGIN IMMEDIATE")?;
        let result = crate::journal::apply_until(db, crate::journal::statements(), payloads, stop)
            .and_then(|whole| {
                if !whole {
                    return Ok(false);
                }
                crate::sqlite_bulk::Statement::prepare(
                    db,
                    "UPDATE journal_applied SET seq = ?1 WHERE id = 1",
                )?
                .run([crate::sql::Value::Int(Some(seq))])?;
                crate::sqlite_bulk::execute(db, "COMMIT")?;
                Ok(true)
            });
        if !matches!(result, Ok(true)) {
            // Stopped, or a failed statement or COMMIT: nothing of the batch stays (after a
            // failure the caller closes the connection as well).
            let _ = crate::sqlite_bulk::execute(db, "ROLLBACK");
        }
        result
    })?;
    Ok(applied.then_some(version))
}

/// Commits a writer transaction. A COMMIT that fails (disk full, I/O error) leaves the one
/// writer connection inside a transaction the driver no longer tracks, and every later write
/// would fail: close that connection so the pool opens a fresh one.
async fn commit(
    writer: &SqlitePool,
    tx: sqlx::Transaction<'_, sqlx::Sqlite>,
) -> Result<(), StoreError> {
    match tx.commit().await {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::warn!(%error, "commit failed; reopening the database's writer connection");
            if let Ok(conn) = writer.acquire().await {
                let _ = conn.close().await;
            }
            Err(error.into())
        }
    }
}

/// Makes the database file and its WAL and shared-memory files readable by their owner
/// only (SQLite creates them as the umask allows, often world-readable). A file that
/// cannot be changed is logged, not fatal: the operator may manage permissions.
fn private_files(database: &Path) {
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let path = std::path::PathBuf::from(format!("{}{suffix}", database.display()));
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.permissions().mode() & 0o077 != 0
            && let Err(error) =
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(path = %path.display(), %error, "cannot make the database file private");
        }
    }
    #[cfg(not(unix))]
    let _ = database;
}

fn unavailable(path: &Path, error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot open {}: {error}", path.display()))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn capabilities(&self) -> crate::Capabilities {
        crate::Capabilities {
            single_process: true,
        }
    }

    fn write_lag(&self) -> Option<crate::WriteLag> {
        self.journal.as_ref().map(|journal| journal.lag())
    }

    fn access_generation(&self) -> Option<(u64, u64)> {
        // A file that was never written is generation zero; one that cannot be read (its
        // directory unreadable) gives no generation, and tokens are read each time.
        match std::fs::metadata(self.dir.join(ACCESS_CHANGED_FILE)) {
            Ok(meta) => {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                Some((meta.len(), modified))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some((0, 0)),
            Err(_) => None,
        }
    }

    async fn ingest(
        &self,
        pipeline: &vakt_core::Pipeline,
        silences: &vakt_core::silence::ActiveSilences,
        batch: Vec<vakt_core::Prepared>,
    ) -> Result<Vec<vakt_core::Correlated>, StoreError> {
        let none = crate::HandOff {
            max: 0,
            lease_until: chrono::Utc::now(),
        };
        Ok(self
            .ingest_handing(pipeline, silences, batch, none)
            .await?
            .0)
    }

    async fn ingest_handing(
        &self,
        pipeline: &vakt_core::Pipeline,
        silences: &vakt_core::silence::ActiveSilences,
        batch: Vec<vakt_core::Prepared>,
        hand: crate::HandOff,
    ) -> Result<(Vec<vakt_core::Correlated>, Vec<crate::Handed>), StoreError> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let unhanded = |outcomes| (outcomes, Vec::new());
        let Some(journal) = &self.journal else {
            return self
                .ingest_in_transaction(state, pipeline, silences, batch)
                .await
                .map(unhanded);
        };
        let window = pipeline.reopen_window();
        let keyed = batch.iter().any(|p| p.event.idempotency_key.is_some());
        let foreign = journal
            .foreign_write
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        if foreign {
            // Another process wrote: the transactional path sees a new data_version and
            // reads the cache again.
            state.data_version = None;
        }
        let cached = state.alerts.as_ref().is_some_and(|c| c.window == window);
        if keyed || foreign || !cached || journal.others.present() {
            // Idempotency keys are looked up in the database, a cache to (re)load reads it,
            // and another writer's commits are seen only by reading it (data_version): the
            // whole batch goes the transactional way.
            return self
                .ingest_in_transaction(state, pipeline, silences, batch)
                .await
                .map(unhanded);
        }
        let now = chrono::Utc::now();
        let history_before = crate::sql::reopen_cutoff(&batch, window, now) - CACHE_HISTORY_MARGIN;
        let current = match state.alerts.as_mut() {
            Some(cache) => {
                cache.prune(history_before);
                let (current, missing) = cache.held(batch.iter().map(|p| &p.fingerprint));
                missing.is_empty().then_some(current)
            }
            None => None,
        };
        let Some(current) = current else {
            // Alerts beyond the cache's bound are read from the database.
            return self
                .ingest_in_transaction(state, pipeline, silences, batch)
                .await
                .map(unhanded);
        };
        let lap_full = journal
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lap_full();
        if let Some(needed) = lap_full {
            // The next lap overwrites the other file: its records must be in SQLite, synced.
            // The applier syncs past each lap's end, so it usually is; when the applier is a
            // whole lap behind, wait for it and sync here.
            if journal.progress.borrow().synced < needed {
                self.write(async |c| queries::sync_point(c).await).await?;
            }
            let ended = journal
                .file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .switch();
            journal
                .sync_at
                .fetch_max(ended, std::sync::atomic::Ordering::AcqRel);
        }
        let ids: Vec<String> = batch.iter().map(|_| crate::sql::new_id()).collect();
        let mut outcomes = crate::sql::correlate_batch(pipeline, silences, batch, &ids, current);
        let mut handed = Vec::new();
        let traces = if escalate::batch_needs_database(pipeline, &outcomes) {
            // Incidents and escalations read and write other tables as the batch goes: a
            // transaction of its own, after everything journaled is applied.
            journal.barrier(true).await?;
            let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
            let traces = queries::write_correlated(
                &mut Conn::Sqlite(&mut tx),
                pipeline,
                &mut outcomes,
                &mut state.traces,
            )
            .await?;
            commit(&self.writer, tx).await?;
            traces
        } else {
            let claimed = crate::dispatch::Claimed {
                ids: crate::dispatch::handable(&outcomes, hand.max, now),
                lease_until_ms: hand.lease_until.timestamp_millis(),
            };
            let (record, traces) =
                queries::encode_correlated(&outcomes, &mut state.traces, &claimed)?;
            self.journal_append(journal, record).await?;
            // Durable, claimed: the caller runs them now (a crash from here on leaves rows
            // `running` whose lease the next start takes back, as for any claim).
            handed = crate::dispatch::handed(&outcomes, &claimed, hand.lease_until);
            traces
        };
        if let Some(cache) = state.alerts.as_mut() {
            for alert in outcomes.iter().filter_map(|o| o.alert.as_ref()) {
                cache.put(Arc::clone(alert));
            }
        }
        state.traces.extend(traces);
        Ok((outcomes, handed))
    }

    async fn event(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        self.read(async |c| queries::get_event(c, id).await).await
    }

    async fn replay_events(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.barrier(true).await?;
        replay_events_direct(&self.reader, since, until, after, limit).await
    }

    async fn event_volume(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<crate::VolumeRow>, StoreError> {
        self.read(async |c| queries::event_volume(c, since, until).await)
            .await
    }

    async fn report_alerts(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        self.read(async |c| queries::report_alerts(c, since, until, after, limit).await)
            .await
    }

    async fn standing_alerts(&self, limit: u32) -> Result<Vec<Alert>, StoreError> {
        self.read(async |c| queries::standing_alerts(c, limit).await)
            .await
    }

    async fn action_counts(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<crate::ActionCount>, StoreError> {
        self.read(async |c| queries::action_counts(c, since, until).await)
            .await
    }

    async fn incident_times(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<crate::IncidentTimes>, StoreError> {
        self.read(async |c| queries::incident_times(c, since, until).await)
            .await
    }

    async fn report_pages(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<crate::PageSent>, StoreError> {
        self.read(async |c| queries::report_pages(c, since, until).await)
            .await
    }

    async fn reopens(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<crate::Reopens, StoreError> {
        self.read(async |c| queries::reopens(c, since, until, limit).await)
            .await
    }

    async fn count_replay_events(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError> {
        self.read(async |c| queries::count_replay_events(c, since, until).await)
            .await
    }

    async fn events(&self, query: &EventQuery) -> Result<Page<EventRecord>, StoreError> {
        self.read(async |c| queries::list_events(c, query).await)
            .await
    }

    async fn alert(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        self.read(async |c| queries::get_alert(c, id, false).await)
            .await
    }

    async fn alerts_by_id(&self, ids: &[&str]) -> Result<Vec<Alert>, StoreError> {
        self.barrier(true).await?;
        alerts_direct(&self.reader, ids).await
    }

    async fn alerts_by_id_unhurried(&self, ids: &[&str]) -> Result<Vec<Alert>, StoreError> {
        self.applied().await?;
        alerts_direct(&self.reader, ids).await
    }

    async fn events_by_id(&self, ids: &[&str]) -> Result<Vec<EventRecord>, StoreError> {
        self.read(async |c| queries::get_events(c, ids).await).await
    }

    async fn flapping_alerts(&self, limit: u32) -> Result<Vec<Alert>, StoreError> {
        // The expiry loop's look every second (and a report's): unhurried.
        self.read_unhurried(async |c| queries::list_flapping(c, limit).await)
            .await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Page<Alert>, StoreError> {
        self.read(async |c| queries::list_alerts(c, query).await)
            .await
    }

    async fn timeline(&self, alert_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        self.read(async |c| queries::list_timeline(c, alert_id).await)
            .await
    }

    async fn alert_events(
        &self,
        alert_id: &str,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.read(async |c| queries::list_alert_events(c, alert_id, limit).await)
            .await
    }

    async fn alert_actions(&self, alert_id: &str) -> Result<Vec<ActionRecord>, StoreError> {
        self.read(async |c| dispatch::list_alert_action_records(c, alert_id).await)
            .await
    }

    async fn actions(&self, query: &ActionQuery) -> Result<Page<ActionRecord>, StoreError> {
        self.read(async |c| dispatch::list_action_records(c, query).await)
            .await
    }

    async fn action(&self, id: &str) -> Result<Option<(ActionRecord, Vec<Attempt>)>, StoreError> {
        self.read(async |c| dispatch::get_action_record(c, id).await)
            .await
    }

    async fn claim_actions(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        // Most rounds find nothing due (grouped notifications wait for their group): a read
        // says so without taking the one writer connection from ingest.
        let now_ms = now.timestamp_millis();
        if !self
            .read_applied(async |c| dispatch::any_due(c, now_ms).await)
            .await?
        {
            return Ok(Vec::new());
        }
        self.write_applied(async |c| {
            dispatch::claim_due(
                c,
                now.timestamp_millis(),
                lease_until.timestamp_millis(),
                limit,
            )
            .await
        })
        .await
    }

    async fn recover_actions(
        &self,
        leases_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let (before, now) = (leases_before.timestamp_millis(), now.timestamp_millis());
        // Group members held in memory whose lease ran out, and those written `running`;
        // the first time, also the groups whose members a previous process held when it
        // stopped (their rows say `pending`; only the group's mark was lost).
        let expired = self.held.expired(before);
        let regroup = !self.regrouped.load(std::sync::atomic::Ordering::Acquire);
        let recovered = self
            .write_applied(async |c| {
                let mut recovered = dispatch::recover_expired(c, before, now).await?;
                recovered.extend(dispatch::recover_held(c, &expired, now).await?);
                if regroup {
                    dispatch::note_pending_groups(c, now).await?;
                }
                Ok::<_, StoreError>(recovered)
            })
            .await;
        match &recovered {
            Ok(_) => self
                .regrouped
                .store(true, std::sync::atomic::Ordering::Release),
            Err(_) => self.held.hold_again(expired),
        }
        recovered
    }

    async fn finish_actions(&self, items: &[(ActionRecord, Finish)]) -> Result<(), StoreError> {
        // Released from the hold while written, so a recovery cannot take them back too.
        let held = self.held.take(items);
        // A group message finishes thousands of members at once: their rows go in through
        // the bulk path (three prepared statements for the lot), not three queries each.
        let rows = dispatch::FinishRows::new(items, &held);
        // After the applier has written the actions' rows (a handed action's may still be
        // in the journal), without hurrying it: the attempts are out already. Members of
        // groups claimed from the tables are there already: a message's members are
        // recorded without waiting for a burst's backlog (the round waits for them).
        let members_only = held.iter().all(|held| *held);
        let written = async {
            if !members_only {
                self.barrier(false).await?;
            }
            self.write_now(async |c| {
                let Conn::Sqlite(conn) = c else {
                    return Err(StoreError::Other(
                        "the SQLite store on another backend".into(),
                    ));
                };
                let mut handle = conn.lock_handle().await?;
                let db = &mut handle;
                crate::sqlite_bulk::blocking(|| rows.write_sqlite(db))
            })
            .await
        }
        .await;
        if written.is_err() {
            self.held.restore(items, &held);
        }
        written
    }

    async fn group_heads(&self, limit: u32) -> Result<Vec<GroupHead>, StoreError> {
        self.read_applied(async |c| dispatch::list_group_heads(c, limit).await)
            .await
    }

    async fn claim_groups(
        &self,
        keys: &[&str],
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        budget: usize,
    ) -> Result<Vec<Vec<ActionRecord>>, StoreError> {
        let (now, lease_until) = (now.timestamp_millis(), lease_until.timestamp_millis());
        let held = self.held.ids();
        let claimed = self
            .write_applied(async |c| {
                let Conn::Sqlite(conn) = c else {
                    return Err(StoreError::Other(
                        "the SQLite store on another backend".into(),
                    ));
                };
                let mut handle = conn.lock_handle().await?;
                let db = &mut handle;
                crate::sqlite_bulk::blocking(|| {
                    dispatch::claim_groups_held(db, keys, now, lease_until, limit, budget, &held)
                })
            })
            .await?;
        self.held.hold(&claimed);
        Ok(claimed)
    }

    async fn retry_action(
        &self,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ActionRecord>, StoreError> {
        self.write(async |c| dispatch::retry_in(c, id, by, now.timestamp_millis()).await)
            .await
    }

    async fn last_success(
        &self,
        action: &str,
        alert_id: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(async |c| dispatch::last_success(c, action, alert_id).await)
            .await?
            .map(crate::sql::time)
            .transpose()
    }

    async fn operate(
        &self,
        pipeline: &vakt_core::Pipeline,
        silences: &vakt_core::silence::ActiveSilences,
        alert_id: &str,
        request: &vakt_core::alert::OperatorRequest,
    ) -> Result<Alert, OperateError> {
        let mut state = self.state.lock().await;
        let alert = self
            .write(async |c| queries::operate_in(c, pipeline, silences, alert_id, request).await)
            .await?;
        if let Some(cache) = &mut state.alerts {
            cache.put(alert.clone());
        }
        Ok(alert)
    }

    async fn claim_escalations(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Escalation>, StoreError> {
        // The escalation loop looks every second and nearly always finds nothing due: a
        // read says so without taking the one writer from ingest, or hurrying the applier
        // into a transaction of whatever it holds (BENCHMARKS.md, issue 18).
        let now_ms = now.timestamp_millis();
        if !self
            .read_unhurried(async |c| escalate::any_due_escalation(c, now_ms).await)
            .await?
        {
            return Ok(Vec::new());
        }
        self.write(async |c| {
            escalate::claim_due_escalations(
                c,
                now.timestamp_millis(),
                lease_until.timestamp_millis(),
                limit,
            )
            .await
        })
        .await
    }

    async fn release_escalation_leases(&self) -> Result<u64, StoreError> {
        self.write(async |c| escalate::release_leases(c).await)
            .await
    }

    async fn fire_escalation(
        &self,
        pipeline: &vakt_core::Pipeline,
        fire: &Fire,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock().await;
        // A step that moved wrote nothing: committing the empty transaction is a rollback.
        let fired = self
            .write(async |c| escalate::fire_in(c, pipeline.incidents(), fire).await)
            .await?;
        let changed = match fired {
            crate::escalate::Fired::Moved => return Ok(false),
            crate::escalate::Fired::Stored { incident_linked } => incident_linked,
        };
        if let (Some(alert), Some(cache)) = (changed, &mut state.alerts) {
            cache.put(alert);
        }
        Ok(true)
    }

    async fn escalation(&self, alert_id: &str) -> Result<Option<Escalation>, StoreError> {
        self.read(async |c| escalate::get_escalation(c, alert_id).await)
            .await
    }

    async fn escalations(
        &self,
        status: Option<EscalationStatus>,
        limit: u32,
    ) -> Result<Vec<Escalation>, StoreError> {
        self.read(async |c| escalate::list_escalations(c, status, limit).await)
            .await
    }

    async fn create_incident(
        &self,
        pipeline: &vakt_core::Pipeline,
        new: &NewIncident,
    ) -> Result<Incident, IncidentError> {
        let mut state = self.state.lock().await;
        let now = chrono::Utc::now();
        let incident = self
            .write(async |c| escalate::create_incident_in(c, pipeline.incidents(), new, now).await)
            .await?;
        self.recache(&mut state, &new.alerts).await?;
        Ok(incident)
    }

    async fn update_incident(
        &self,
        pipeline: &vakt_core::Pipeline,
        id: &str,
        change: &IncidentChange,
    ) -> Result<Incident, IncidentError> {
        let mut state = self.state.lock().await;
        let now = chrono::Utc::now();
        let incident = self
            .write(async |c| {
                escalate::update_incident_in(c, pipeline.incidents(), id, change, now).await
            })
            .await?;
        self.recache(&mut state, &change.link).await?;
        Ok(incident)
    }

    async fn incident(
        &self,
        id: &str,
    ) -> Result<Option<(Incident, Vec<IncidentEntry>)>, StoreError> {
        self.read(async |c| escalate::incident_detail(c, id).await)
            .await
    }

    async fn incidents(&self, query: &IncidentQuery) -> Result<Page<Incident>, StoreError> {
        self.read(async |c| escalate::list_incidents(c, query).await)
            .await
    }

    async fn incident_by_external(&self, external_id: &str) -> Result<Option<String>, StoreError> {
        self.read(async |c| escalate::incident_id_by_external(c, external_id).await)
            .await
    }

    async fn claim_incident_syncs(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Incident, i64)>, StoreError> {
        self.write(async |c| {
            escalate::claim_syncs(
                c,
                now.timestamp_millis(),
                lease_until.timestamp_millis(),
                limit,
            )
            .await
        })
        .await
    }

    async fn finish_incident_sync(
        &self,
        id: &str,
        version: i64,
        result: &SyncResult,
    ) -> Result<(), StoreError> {
        let now = chrono::Utc::now();
        self.write(async |c| escalate::finish_sync_in(c, id, version, result, now).await)
            .await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.read(async |c| queries::count_alerts(c).await).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Readiness: the database answers and the applier is not failing. It does not wait
        // for the journal's backlog (up to `BEHIND_KIB_MAX`, seconds after a burst), which
        // is no fault, nor hurry it.
        if let Some(error) = self.journal.as_ref().and_then(|j| j.failing()) {
            return Err(error);
        }
        self.read_now(async |c| queries::ping(c).await).await
    }

    async fn prune(
        &self,
        kind: crate::PruneKind,
        before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        // Under the batches' lock: the writer's list of stored traces loses what goes.
        let mut state = self.state.lock().await;
        let pruned = self
            .write(async |c| crate::retention::prune(c, kind, before, limit).await)
            .await?;
        state.traces.forget(&pruned.traces);
        if let Some(cache) = &mut state.alerts {
            cache.forget(&pruned.alerts);
        }
        Ok(pruned.rows)
    }

    async fn table_stats(&self) -> Result<Vec<crate::TableStats>, StoreError> {
        self.read(async |c| {
            let mut stats = crate::retention::row_counts(c).await?;
            let Conn::Sqlite(conn) = c else {
                return Ok(stats);
            };
            // Every table's pages with its indexes' (dbstat is compiled into the bundled SQLite).
            let bytes: Vec<(String, i64)> = sqlx::query_as(
                "SELECT s.tbl_name, SUM(d.pgsize) FROM dbstat AS d \
                 JOIN sqlite_schema AS s ON s.name = d.name GROUP BY s.tbl_name",
            )
            .fetch_all(&mut **conn)
            .await?;
            for table in &mut stats {
                table.bytes = bytes
                    .iter()
                    .find(|(name, _)| *name == table.table)
                    .map(|(_, b)| *b);
            }
            Ok(stats)
        })
        .await
    }

    async fn size_bytes(&self) -> Result<Option<u64>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        let mut pragma = async |name: &'static str| -> Result<i64, StoreError> {
            Ok(sqlx::query_scalar::<_, i64>(name)
                .fetch_one(&mut *conn)
                .await?)
        };
        let pages = pragma("PRAGMA page_count").await? - pragma("PRAGMA freelist_count").await?;
        let size = pragma("PRAGMA page_size").await?;
        Ok(u64::try_from(pages.saturating_mul(size)).ok())
    }

    async fn vacuum(&self) -> Result<(), StoreError> {
        let _state = self.state.lock().await;
        self.barrier(true).await?;
        let mut conn = self.writer.acquire().await?;
        sqlx::query("VACUUM").execute(&mut *conn).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn backup(&self, to: &Path) -> Result<(), StoreError> {
        if to.exists() {
            return Err(StoreError::Other(format!(
                "{} exists; a backup goes to a new file",
                to.display()
            )));
        }
        let target = to
            .to_str()
            .ok_or_else(|| StoreError::Other(format!("{} is not a UTF-8 path", to.display())))?;
        // The copy holds every event acknowledged before it started.
        self.barrier(true).await?;
        for attempt in 1.. {
            let mut conn = self.reader.acquire().await?;
            // One read transaction: the copy is the database as of one commit.
            sqlx::query("VACUUM INTO $1")
                .bind(target)
                .execute(&mut *conn)
                .await?;
            drop(conn);
            // From another process than the server's, the server's journal may hold
            // acknowledged events its database does not have yet: they go into the copy.
            if self.journal.is_some() || catch_up(&self.dir, to).await? {
                break;
            }
            // The journal started a new lap meanwhile (its records are in the database
            // now): copy again.
            let _ = std::fs::remove_file(to);
            if attempt == 5 {
                return Err(StoreError::Unavailable(
                    "the server's journal moved on during five copies in a row; try again".into(),
                ));
            }
        }
        let file = std::fs::File::open(to).map_err(|error| {
            StoreError::Other(format!("cannot open the backup {}: {error}", to.display()))
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
        }
        file.sync_all().map_err(|error| {
            StoreError::Other(format!("cannot sync the backup {}: {error}", to.display()))
        })?;
        Ok(())
    }

    async fn expired_alerts(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        // The expiry loop's look every second: unhurried.
        self.read_unhurried(async |c| queries::list_expired(c, now.timestamp_millis(), limit).await)
            .await
    }

    async fn put_silence(&self, silence: &vakt_core::silence::Silence) -> Result<(), StoreError> {
        self.write(async |c| queries::write_silence(c, silence).await)
            .await
    }

    async fn put_throttle(&self, key: &str, state: Option<&str>) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        self.write(async |c| queries::write_throttle(c, key, state, now).await)
            .await
    }

    async fn throttles(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(async |c| queries::read_throttles(c).await).await
    }

    async fn silence(&self, id: &str) -> Result<Option<vakt_core::silence::Silence>, StoreError> {
        Ok(self
            .read(async |c| queries::read_silences(c, Some(id), None).await)
            .await?
            .pop())
    }

    async fn silences(
        &self,
        query: &crate::SilenceQuery,
    ) -> Result<Vec<vakt_core::silence::Silence>, StoreError> {
        self.read(async |c| queries::read_silences(c, None, Some(query)).await)
            .await
    }

    async fn beat(
        &self,
        heartbeat: &vakt_core::heartbeat::Heartbeat,
    ) -> Result<Option<vakt_core::heartbeat::Heartbeat>, StoreError> {
        self.write(async |c| queries::beat(c, heartbeat).await)
            .await
    }

    async fn heartbeats(&self) -> Result<Vec<vakt_core::heartbeat::Heartbeat>, StoreError> {
        // No journal record writes heartbeats: the monitor's look every second neither
        // waits for the applier nor hurries it.
        self.read_now(async |c| queries::read_heartbeats(c, None).await)
            .await
    }

    async fn put_override(
        &self,
        schedule: &str,
        item: &vakt_core::oncall::OverrideConfig,
    ) -> Result<(), StoreError> {
        self.write(async |c| queries::write_override(c, schedule, item).await)
            .await
    }

    async fn overrides(
        &self,
        schedule: &str,
        ending_after: DateTime<Utc>,
    ) -> Result<Vec<vakt_core::oncall::OverrideConfig>, StoreError> {
        self.read(async |c| {
            queries::read_overrides(c, schedule, ending_after.timestamp_millis()).await
        })
        .await
    }

    async fn delete_override(&self, schedule: &str, id: &str) -> Result<bool, StoreError> {
        self.write(async |c| queries::remove_override(c, schedule, id).await)
            .await
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.write(async |c| access::insert_token(c, token).await)
            .await?;
        self.access_changed();
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read_now(async |c| access::token_by_hash(c, hash).await)
            .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(async |c| access::list_tokens(c).await).await
    }

    async fn revoke_token(
        &self,
        id_or_name: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let at = at.timestamp_millis();
        let revoked = self
            .write(async |c| access::revoke_token(c, id_or_name, at).await)
            .await?;
        if revoked.is_some() {
            self.access_changed();
        }
        Ok(revoked)
    }

    async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let at = at.timestamp_millis();
        self.write_now(async |c| access::touch_token(c, id, at).await)
            .await
    }

    async fn live_tokens(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let now = now.timestamp_millis();
        self.read_now(async |c| access::live_tokens(c, now).await)
            .await
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.write(async |c| access::insert_audit(c, entry).await)
            .await
    }

    async fn audit_log(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, StoreError> {
        self.read(async |c| access::list_audit(c, query).await)
            .await
    }

    async fn put_session(
        &self,
        session: &SessionRecord,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = now.timestamp_millis();
        self.write(async |c| access::insert_session(c, session, now).await)
            .await
    }

    async fn session(&self, hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.read_now(async |c| access::session_by_hash(c, hash).await)
            .await
    }

    async fn touch_session(&self, hash: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let at = at.timestamp_millis();
        self.write_now(async |c| access::touch_session(c, hash, at).await)
            .await
    }

    async fn end_session(&self, hash: &str) -> Result<bool, StoreError> {
        self.write(async |c| access::delete_session(c, hash).await)
            .await
    }

    async fn put_password(
        &self,
        user: &str,
        hash: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at = at.timestamp_millis();
        self.write(async |c| access::upsert_password(c, user, hash, at).await)
            .await
    }

    async fn password(&self, user: &str) -> Result<Option<String>, StoreError> {
        self.read_now(async |c| access::password_of(c, user).await)
            .await
    }

    async fn password_users(&self) -> Result<Vec<String>, StoreError> {
        self.read_now(async |c| access::password_users(c).await)
            .await
    }

    async fn close(&self) {
        // What was acknowledged goes into the database now rather than at the next start
        // (the journal keeps it either way).
        if let Some(journal) = &self.journal
            && tokio::time::timeout(std::time::Duration::from_secs(10), journal.barrier(true))
                .await
                .is_err()
        {
            tracing::warn!("the journal was not applied within 10 s; the next start applies it");
        }
        self.writer.close().await;
        self.reader.close().await;
    }
}

#[cfg(test)]
mod tests {
    //! The writer's cache against the database: after any sequence of events and operator
    //! resolves, what the cache holds for a fingerprint is what the database would answer.

    use super::*;
    use proptest::prelude::*;
    use vakt_core::alert::{OperatorAction, OperatorRequest};
    use vakt_core::{EventInput, Pipeline, PipelineConfig};

    #[derive(Debug, Clone)]
    enum Step {
        /// A problem (or, with `ok`, a clearing) event for one of three resources, received
        /// `later_ms` after the previous step.
        Event {
            resource: u8,
            ok: bool,
            later_ms: i64,
        },
        /// An operator resolves the resource's alert, if it has an open one.
        Resolve { resource: u8 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..3u8, any::<bool>(), 0..2_500i64)
                .prop_map(|(resource, ok, later_ms)| Step::Event { resource, ok, later_ms }),
            1 => (0..3u8).prop_map(|resource| Step::Resolve { resource }),
        ]
    }

    /// Events only (an operator's resolve is stamped with the real clock, these with a
    /// simulated one), now and then past the cache's history margin (60 s), so resolved
    /// alerts become history while others are held.
    fn event_step() -> impl Strategy<Value = Step> {
        (
            0..3u8,
            any::<bool>(),
            prop_oneof![4 => 0..2_500i64, 1 => 0..90_000i64],
        )
            .prop_map(|(resource, ok, later_ms)| Step::Event {
                resource,
                ok,
                later_ms,
            })
    }

    /// With `capacity` 1 the cache holds one of the three resources' alerts and answers for
    /// the others from `known`: a fingerprint it calls unknown must have no alert that can
    /// take events in the database.
    async fn check(
        window_secs: u64,
        steps: Vec<Step>,
        capacity: usize,
    ) -> Result<(), TestCaseError> {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let store = SqliteStore::open(dir.path())
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .with_alert_cache_max(capacity);
        let config = format!("[alerts]\nreopen_window_secs = {window_secs}\n");
        let pipeline = Pipeline::build(&PipelineConfig::from_toml(&config).expect("parses"))
            .expect("compiles");
        let mut at = Utc::now() - chrono::Duration::hours(1);
        let mut fingerprints = std::collections::BTreeMap::new();
        for step in steps {
            match step {
                Step::Event {
                    resource,
                    ok,
                    later_ms,
                } => {
                    at += chrono::Duration::milliseconds(later_ms);
                    let input = EventInput {
                        resource: format!("host{resource}"),
                        check: "ping".into(),
                        summary: "x".into(),
                        severity: Some(if ok {
                            vakt_core::Severity::Ok
                        } else {
                            vakt_core::Severity::Major
                        }),
                        ..EventInput::default()
                    };
                    let prepared = pipeline.prepare(input, "test", at);
                    fingerprints.insert(resource, prepared.fingerprint.clone());
                    store
                        .ingest(&pipeline, &Default::default(), vec![prepared])
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                Step::Resolve { resource } => {
                    let Some(fp) = fingerprints.get(&resource) else {
                        continue;
                    };
                    let held = {
                        let state = store.state.lock().await;
                        state
                            .alerts
                            .as_ref()
                            .and_then(|c| c.current([fp]).0.remove(fp))
                    };
                    if let Some(alert) = held.filter(|a| a.status.is_active()) {
                        let request = OperatorRequest {
                            action: OperatorAction::Resolve,
                            by: "alice".into(),
                            comment: None,
                        };
                        store
                            .operate(&pipeline, &Default::default(), &alert.id, &request)
                            .await
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                }
            }
            // Read the database as the store's reads do: after what was journaled is applied.
            store
                .barrier(true)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let state = store.state.lock().await;
            let Some(cache) = state.alerts.as_ref() else {
                continue;
            };
            let since_ms = cache.history_before().timestamp_millis();
            let mut conn = store
                .reader
                .acquire()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            if capacity <= 3 {
                prop_assert!(cache.known_len().is_some(), "known is kept");
            }
            for fp in fingerprints.values() {
                let (mut held, missing) = cache.current([fp]);
                if capacity > 3 {
                    prop_assert!(missing.is_empty(), "the cache is complete here");
                } else if !missing.is_empty() {
                    // Known to have an alert, not held: the database answers.
                    continue;
                }
                let from_db = queries::load_current(&mut Conn::Sqlite(&mut conn), &[fp], since_ms)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .remove(fp);
                let key = |a: Option<Alert>| a.map(|a| (a.id, a.status, a.count, a.severity));
                prop_assert_eq!(key(held.remove(fp)), key(from_db), "fingerprint {}", fp);
            }
        }
        store.close().await;
        Ok(())
    }

    /// A first attempt of `record` that succeeded at `at`, with its timeline line.
    fn succeeded(record: &ActionRecord, at: DateTime<Utc>, detail: &str) -> Finish {
        let attempt = Attempt {
            id: crate::sql::new_id(),
            action_id: record.decided.id.clone(),
            attempt: record.attempts,
            started_at: at,
            finished_at: at,
            outcome: "succeeded".into(),
            detail: detail.into(),
            output: None,
        };
        let timeline =
            record
                .decided
                .attempt_line(attempt.attempt, &attempt.outcome, &attempt.detail);
        Finish {
            attempt,
            next: crate::Next::Done(crate::ActionStatus::Succeeded),
            timeline,
        }
    }

    fn no_rules() -> Pipeline {
        Pipeline::build(&PipelineConfig::from_toml("").expect("parses")).expect("compiles")
    }

    /// Ingests one single-event batch per resource: the first loads the writer's cache (a
    /// transaction), the next ones go through the journal. Their event ids.
    async fn ingest_each(
        store: &SqliteStore,
        pipeline: &Pipeline,
        resources: &[&str],
    ) -> Vec<String> {
        let mut ids = Vec::new();
        for resource in resources {
            let out = store
                .ingest(
                    pipeline,
                    &Default::default(),
                    vec![ping(pipeline, resource)],
                )
                .await
                .expect("ingest");
            ids.push(out[0].record.id.clone());
        }
        ids
    }

    fn ping(pipeline: &Pipeline, resource: &str) -> vakt_core::Prepared {
        ping_of(pipeline, resource, None)
    }

    /// `ping` of a resource in `service` (which a `group_by = ["service"]` groups by).
    fn ping_of(pipeline: &Pipeline, resource: &str, service: Option<&str>) -> vakt_core::Prepared {
        pipeline.prepare(
            EventInput {
                resource: resource.into(),
                check: "ping".into(),
                summary: "x".into(),
                severity: Some(vakt_core::Severity::Major),
                service: service.map(Into::into),
                ..EventInput::default()
            },
            "test",
            Utc::now(),
        )
    }

    /// A group message's read of its alerts waits for the journal's applier without
    /// hurrying it (which would stop a transaction at idle priority); a person's read of
    /// the same alerts hurries it. Both find every alert journaled before them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_messages_read_does_not_hurry_the_applier() {
        let dir = tempfile::tempdir().expect("dir");
        let pipeline = no_rules();
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let journal = Arc::clone(store.journal.as_ref().expect("journal"));
        // Ingests alerts until the applier is behind the last one (it lingers 2 ms for more
        // records first), so a read that hurried it would count.
        let mut alert_ids: Vec<String> = Vec::new();
        let journal_one = async |alert_ids: &mut Vec<String>| {
            for _ in 0..20 {
                let resource = format!("r{}", alert_ids.len());
                let out = store
                    .ingest(
                        &pipeline,
                        &Default::default(),
                        vec![ping(&pipeline, &resource)],
                    )
                    .await
                    .expect("ingest");
                let alert = out[0].alert.as_ref().expect("a ping opens an alert");
                alert_ids.push(alert.id.clone());
                let target = journal.journaled.load(std::sync::atomic::Ordering::Acquire);
                if journal.progress.borrow().applied < target {
                    return;
                }
            }
            panic!("the applier never lagged behind a record");
        };
        journal_one(&mut alert_ids).await;
        let before = journal.lag().hurried;
        let ids: Vec<&str> = alert_ids.iter().map(String::as_str).collect();
        let read = store.alerts_by_id_unhurried(&ids).await.expect("read");
        let read_ids: Vec<&str> = read.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(read_ids, ids, "every alert journaled before the read");
        assert_eq!(
            journal.lag().hurried,
            before,
            "the message's read did not hurry"
        );
        journal_one(&mut alert_ids).await;
        let ids: Vec<&str> = alert_ids.iter().map(String::as_str).collect();
        let read = store.alerts_by_id(&ids).await.expect("read");
        assert_eq!(
            read.len(),
            ids.len(),
            "every alert journaled before the read"
        );
        assert_eq!(journal.lag().hurried, before + 1, "a person's read hurried");
    }

    /// A readiness check (`ping`) neither waits for the journal's backlog nor hurries the
    /// applier, and says so when the applier cannot write (what ingest then refuses too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_does_not_wait_for_the_backlog_but_for_a_failing_applier() {
        let dir = tempfile::tempdir().expect("dir");
        let pipeline = no_rules();
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let journal = Arc::clone(store.journal.as_ref().expect("journal"));
        ingest_each(&store, &pipeline, &["a", "b", "c"]).await;
        let hurried = journal.lag().hurried;
        store.ping().await.expect("ready");
        assert_eq!(journal.lag().hurried, hurried, "the check hurried nothing");
        journal
            .progress
            .send_modify(|p| p.error = Some("disk I/O error".into()));
        let error = store.ping().await.expect_err("not ready");
        assert!(
            error
                .to_string()
                .contains("journaled events cannot be written to the database: disk I/O error"),
            "{error}"
        );
        journal.progress.send_modify(|p| p.error = None);
        store.ping().await.expect("ready again");
    }

    /// Journaled records nobody waits for go into the database on the background thread
    /// (lowest priority); a read after them finds them all the same. A hurry since the
    /// applier started gathering, or a backlog past three quarters of the journal's bound, sends
    /// its next transaction to the runtime's workers instead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unawaited_journal_records_are_applied_in_the_background() {
        let dir = tempfile::tempdir().expect("dir");
        let pipeline = no_rules();
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let journal = Arc::clone(store.journal.as_ref().expect("journal"));
        let ids = ingest_each(&store, &pipeline, &["a", "b", "c", "d"]).await;
        // Nobody reads: the applier takes them when its linger ends.
        let mut progress = journal.progress.subscribe();
        let target = journal.journaled.load(std::sync::atomic::Ordering::Acquire);
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            progress.wait_for(|p| p.applied >= target),
        )
        .await
        .expect("applied within 10 s")
        .expect("applier running");
        let lag = journal.lag();
        assert!(lag.background_applies >= 1, "{lag:?}");
        assert_eq!(lag.hurried, 0, "nothing waited: {lag:?}");
        for id in &ids {
            assert!(store.event(id).await.expect("read").is_some(), "event {id}");
        }
        // The lane's choice.
        let now = journal.hurried.load(std::sync::atomic::Ordering::Relaxed);
        assert!(!wants_normal_priority(&journal, Some(now)), "calm");
        assert!(
            wants_normal_priority(&journal, Some(now.wrapping_sub(1))),
            "hurried since"
        );
        assert!(wants_normal_priority(&journal, None), "no journal before");
        let background_max = crate::journal::BACKGROUND_BEHIND_KIB_MAX;
        let taken = Arc::clone(&journal.room)
            .try_acquire_many_owned(background_max)
            .expect("room");
        assert!(
            !wants_normal_priority(&journal, Some(now)),
            "exactly at the background bound"
        );
        let more = Arc::clone(&journal.room)
            .try_acquire_many_owned(1)
            .expect("room");
        assert!(
            wants_normal_priority(&journal, Some(now)),
            "past the background bound"
        );
        drop((taken, more));
        // Or past three quarters of a lap of journal bytes, whatever their size before
        // compression.
        assert_eq!(
            journal
                .queued_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "every applied record's bytes counted off"
        );
        journal.queued_bytes.store(
            crate::journal::LAP_BYTES / 4 * 3,
            std::sync::atomic::Ordering::Relaxed,
        );
        assert!(
            !wants_normal_priority(&journal, Some(now)),
            "three quarters of a lap"
        );
        journal.queued_bytes.store(
            crate::journal::LAP_BYTES / 4 * 3 + 1,
            std::sync::atomic::Ordering::Relaxed,
        );
        assert!(
            wants_normal_priority(&journal, Some(now)),
            "past three quarters of a lap of journal bytes"
        );
        journal
            .queued_bytes
            .store(0, std::sync::atomic::Ordering::Relaxed);
        // A transaction told to stop writes nothing, moves no position, and leaves the
        // writer connection out of a transaction.
        let position = || async {
            sqlx::query_scalar::<_, i64>("SELECT seq FROM journal_applied WHERE id = 1")
                .fetch_one(&store.reader)
                .await
                .expect("position")
        };
        let before = position().await;
        let records = crate::journal::read_dir(dir.path()).expect("read the journal");
        let payloads: Vec<&[u8]> = records.iter().map(|(_, p)| p.as_slice()).collect();
        let stopped = apply_records(&store.writer, &payloads, 1_000, false, &|| true)
            .await
            .expect("a stop is no error");
        assert_eq!(stopped, None);
        assert_eq!(position().await, before);
        store
            .ingest(&pipeline, &Default::default(), vec![ping(&pipeline, "e")])
            .await
            .expect("ingest after a stop");
        store.close().await;
    }

    /// The database of a closed store as if the journal records after `applied` had not
    /// reached it: the rows of `alert_ids` removed, the position set back.
    async fn rewind(dir: &Path, alert_ids: &[String], applied: i64) {
        let options = SqliteConnectOptions::new().filename(dir.join(DATABASE_FILE));
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
            .await
            .expect("connect");
        for alert_id in alert_ids {
            for sql in [
                "DELETE FROM alert_timeline WHERE alert_id = $1",
                "DELETE FROM events WHERE alert_id = $1",
                "DELETE FROM alerts WHERE id = $1",
            ] {
                sqlx::query(sql)
                    .bind(alert_id)
                    .execute(&mut conn)
                    .await
                    .expect("delete");
            }
        }
        sqlx::query("UPDATE journal_applied SET seq = $1")
            .bind(applied)
            .execute(&mut conn)
            .await
            .expect("rewind");
        sqlx::Connection::close(conn).await.expect("close");
    }

    /// A batch acknowledged from the journal but not yet applied when the process died is
    /// applied at the next open, once: the database is rolled back to "record 2 not applied"
    /// by hand (its rows removed, the position set back) and opened again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journaled_batches_the_database_lacks_are_applied_at_open() {
        let dir = tempfile::tempdir().expect("dir");
        let pipeline = no_rules();
        let event = |resource: &str| ping(&pipeline, resource);
        let store = SqliteStore::open(dir.path()).await.expect("open");
        assert!(
            store.journal.is_some(),
            "the first process holds the journal"
        );
        // The first batch loads the cache (a transaction); the next two are journaled.
        let mut last = None;
        for resource in ["a", "b", "c"] {
            let out = store
                .ingest(&pipeline, &Default::default(), vec![event(resource)])
                .await
                .expect("ingest");
            last = Some(out);
        }
        let last = last.expect("outcomes");
        let event_id = last[0].record.id.clone();
        let alert_id = last[0].alert.as_ref().expect("alert").id.clone();
        // Read back at once: the barrier waits for the applier.
        assert!(store.event(&event_id).await.expect("read").is_some());
        let applied = store
            .journal
            .as_ref()
            .expect("journal")
            .journaled
            .load(std::sync::atomic::Ordering::Acquire);
        assert_eq!(applied, 2, "two journaled batches");
        // The file holds them as they are: a single event's record is shorter than a page,
        // not worth compressing (`journal::pack`).
        let records = crate::journal::read_dir(dir.path()).expect("read the journal");
        assert_eq!(records.len(), 2);
        for (_, payload) in &records {
            assert!(payload.len() < 4096, "{} bytes", payload.len());
            let unpacked = crate::journal::unpack(payload).expect("unpack");
            assert!(
                matches!(unpacked, std::borrow::Cow::Borrowed(_)),
                "{} bytes stored compressed",
                payload.len()
            );
        }
        // A second opener while the first runs writes directly (no journal).
        let second = SqliteStore::open(dir.path()).await.expect("open");
        assert!(second.journal.is_none());
        second.close().await;
        store.close().await;
        drop(store);
        rewind(dir.path(), std::slice::from_ref(&alert_id), 1).await;
        let store = SqliteStore::open(dir.path()).await.expect("reopen");
        let stored = store
            .event(&event_id)
            .await
            .expect("read")
            .expect("applied again at open");
        assert_eq!(stored.event.resource, "c");
        let alert = store
            .alert(&alert_id)
            .await
            .expect("read")
            .expect("alert back");
        assert_eq!(alert.count, 1);
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&store.reader)
            .await
            .expect("count");
        assert_eq!(events, 3, "every batch once");
        // The next batch continues the numbering after the recovered records.
        store
            .ingest(&pipeline, &Default::default(), vec![event("d")])
            .await
            .expect("ingest");
        store.close().await;
    }

    /// A sync of `SLOW_SYNC` or more marks the disk slow for `SLOW_SPELL` (the writer then
    /// hands its worker over while it syncs); fast syncs do not, and do not end a spell.
    #[tokio::test]
    async fn a_slow_journal_sync_starts_a_slow_spell() {
        use crate::journal::{SLOW_SPELL, SLOW_SYNC};
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let journal = store.journal.as_ref().expect("journal");
        journal.synced(SLOW_SYNC / 10);
        assert!(!journal.disk_slow(), "a fast sync");
        let before = std::time::Instant::now();
        journal.synced(SLOW_SYNC);
        assert!(journal.disk_slow(), "a slow sync");
        journal.synced(SLOW_SYNC / 10);
        assert!(journal.disk_slow(), "still within the spell");
        let until = journal.slow_until.lock().expect("lock").expect("a spell");
        assert!(until >= before + SLOW_SPELL, "the spell lasts SLOW_SPELL");
        // Once the spell is over, the disk is fast again.
        *journal.slow_until.lock().expect("lock") = Some(std::time::Instant::now());
        assert!(!journal.disk_slow(), "the spell ended");
        store.close().await;
    }

    /// With laps of one record each, batches alternate between the journal's two files;
    /// what the database lacks of both is applied at open, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_in_both_journal_files_are_applied_at_open() {
        let dir = tempfile::tempdir().expect("dir");
        let pipeline = no_rules();
        let event = |resource: &str| ping(&pipeline, resource);
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let journal = store.journal.as_ref().expect("journal");
        journal.file.lock().expect("lock").set_lap_bytes(1);
        let mut alerts = Vec::new();
        for resource in ["a", "b", "c", "d", "e", "f"] {
            let out = store
                .ingest(&pipeline, &Default::default(), vec![event(resource)])
                .await
                .expect("ingest");
            alerts.push(out[0].alert.as_ref().expect("alert").id.clone());
        }
        // "a" loaded the cache (a transaction); b..f are records 1..5, in files 1, 2, 1, 2, 1.
        assert_eq!(
            journal.journaled.load(std::sync::atomic::Ordering::Acquire),
            5
        );
        store.close().await;
        drop(store);
        // The database as if records 4 and 5 (e in the second file, f in the first) had
        // not reached it; record 3 had, synced (the lap of f overwrote it).
        rewind(dir.path(), &alerts[4..], 3).await;
        let store = SqliteStore::open(dir.path()).await.expect("reopen");
        let resources: Vec<String> =
            sqlx::query_scalar("SELECT resource FROM events ORDER BY resource")
                .fetch_all(&store.reader)
                .await
                .expect("read");
        assert_eq!(
            resources,
            ["a", "b", "c", "d", "e", "f"],
            "every batch once"
        );
        for alert_id in &alerts[4..] {
            assert!(store.alert(alert_id).await.expect("read").is_some());
        }
        store.close().await;
    }

    /// A journal record written by a vakt before schema 15 (events without `received`)
    /// still applies after an upgrade: its events section has a statement of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journal_records_from_before_schema_15_still_apply() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let pipeline =
            Pipeline::build(&PipelineConfig::from_toml("").expect("parses")).expect("compiles");
        let prepared = pipeline.prepare(
            EventInput {
                resource: "db01".into(),
                check: "disk".into(),
                summary: "x".into(),
                severity: Some(vakt_core::Severity::Major),
                ..EventInput::default()
            },
            "test",
            Utc::now(),
        );
        let outcome = pipeline.correlate(
            prepared,
            crate::sql::new_id(),
            None,
            &Default::default(),
            &mut crate::sql::new_id,
        );
        let trace = crate::sql::intern(&outcome.record.trace);
        let mut encoded = crate::journal::Encoded::default();
        encoded
            .section(0, &[&trace], |t| crate::sql::trace_row(t))
            .expect("traces");
        encoded
            .section(1, &[(&outcome.record, trace.id.as_str())], |(r, t)| {
                // The 20 columns of schema 14: today's row without `received`.
                let mut values = crate::sql::event_row(r, t, None).into_iter();
                std::array::from_fn::<_, 20, _>(|_| {
                    values.next().unwrap_or(crate::sql::Value::Int(None))
                })
            })
            .expect("events");
        let bytes = encoded.into_bytes();
        apply_records(&store.writer, &[&bytes], 1_000, true, &|| false)
            .await
            .expect("applies");
        let stored = store
            .event(&outcome.record.id)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(stored.event.resource, "db01");
        assert_eq!(stored.received, None);
        store.close().await;
    }

    /// Authentication reads tables no journal record writes: it answers while the database
    /// cannot take the journaled records. The expiry and escalation loops' looks for work
    /// wait for them without hurrying the applier; an API read hurries it
    /// (`WriteLag::hurried`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_and_access_reads_do_not_hurry_the_database() {
        let dir = tempfile::tempdir().expect("dir");
        let pipeline = no_rules();
        let store = Arc::new(SqliteStore::open(dir.path()).await.expect("open"));
        // The first batch loads the writer's cache (a transaction); later ones are journaled.
        store
            .ingest(&pipeline, &Default::default(), vec![ping(&pipeline, "a")])
            .await
            .expect("ingest");
        let now = Utc::now();
        let token = TokenRecord {
            id: crate::sql::new_id(),
            name: "prometheus".into(),
            owner: "prometheus".into(),
            scopes: vec!["ingest:events".into()],
            hash: "f00d".into(),
            created_at: now,
            created_by: "test".into(),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        store.put_token(&token).await.expect("token");
        // The one writer connection held: the applier cannot write what comes next.
        let held = store.writer.acquire().await.expect("writer");
        store
            .ingest(&pipeline, &Default::default(), vec![ping(&pipeline, "b")])
            .await
            .expect("journaled");
        let hurried = || store.write_lag().expect("the journal").hurried;
        let before = hurried();
        let soon = std::time::Duration::from_secs(5);
        let found = tokio::time::timeout(soon, store.token_by_hash("f00d"))
            .await
            .expect("a token is read without waiting for the database")
            .expect("read");
        assert_eq!(found.map(|t| t.name), Some("prometheus".to_owned()));
        let live = tokio::time::timeout(soon, store.live_tokens(now))
            .await
            .expect("live tokens")
            .expect("read");
        assert_eq!(live, 1);
        tokio::time::timeout(soon, store.password_users())
            .await
            .expect("passwords")
            .expect("read");
        // Nor does a journal record write heartbeats: the monitor's look answers at once.
        tokio::time::timeout(soon, store.heartbeats())
            .await
            .expect("heartbeats are read without waiting for the database")
            .expect("read");
        // The expiry and escalation loops' looks wait for the journaled batch, and let the
        // applier gather (the dispatcher's wait only so long: the test below).
        let flapping = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.flapping_alerts(10).await }
        });
        let expired = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.expired_alerts(Utc::now(), 10).await }
        });
        let escalations = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                let now = Utc::now();
                store
                    .claim_escalations(now, now + chrono::Duration::seconds(60), 10)
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!escalations.is_finished(), "it waits for the database");
        assert!(!expired.is_finished(), "it waits for the database");
        assert!(!flapping.is_finished(), "it waits for the database");
        assert_eq!(hurried(), before, "without hurrying it");
        // A person's read hurries it.
        let read = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                let query = crate::AlertQuery {
                    limit: 100,
                    ..Default::default()
                };
                store.alerts(&query).await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(hurried(), before + 1, "an API read hurries the applier");
        drop(held);
        let claimed = escalations.await.expect("task").expect("escalations");
        assert!(claimed.is_empty(), "none started, none due");
        expired.await.expect("task").expect("expired");
        flapping.await.expect("task").expect("flapping");
        let alerts = read.await.expect("task").expect("alerts");
        assert_eq!(alerts.items.len(), 2, "the read saw the journaled batch");
        store.close().await;
    }

    /// The dispatcher's looks and claims wait for the journal's applier only so long
    /// (`DISPATCH_WAIT_MAX`), without hurrying it, then go on with what it has applied: a
    /// backlog does not hold a group's message back. A group message's members are
    /// recorded without waiting for it; an attempt of an action that may still be in the
    /// journal (not a held member) waits for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dispatcher_goes_on_with_what_is_applied() {
        use crate::ActionStatus;
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(SqliteStore::open(dir.path()).await.expect("open"));
        let journal = Arc::clone(store.journal.as_ref().expect("journal"));
        let config = "[[rules]]\nname = \"all\"\nactions = [\"page\", \"hook\"]\n\
                      [actions.page]\ntype = \"notify\"\nchannel = \"email\"\ngroup_by = [\"service\"]\n\
                      [actions.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n";
        let pipeline =
            Pipeline::build(&PipelineConfig::from_toml(config).expect("parses")).expect("compiles");
        let event = |resource: &str, service: &str| ping_of(&pipeline, resource, Some(service));
        let mut alert_ids = Vec::new();
        for (resource, service) in [("h1", "a"), ("h2", "b")] {
            let out = store
                .ingest(
                    &pipeline,
                    &Default::default(),
                    vec![event(resource, service)],
                )
                .await
                .expect("ingest");
            alert_ids.push(out[0].alert.as_ref().expect("an alert").id.clone());
        }
        store.barrier(true).await.expect("applied");
        // A record journaled that the applier never reaches: a backlog that does not end.
        journal
            .journaled
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let hurried = || store.write_lag().expect("the journal").hurried;
        let before = hurried();
        let soon = std::time::Duration::from_secs(5);
        let started = std::time::Instant::now();
        let heads = tokio::time::timeout(soon, store.group_heads(10))
            .await
            .expect("the dispatcher's look does not wait for the whole backlog")
            .expect("heads");
        assert!(
            started.elapsed() >= DISPATCH_WAIT_MAX,
            "it waited for the applier first"
        );
        let mut keys: Vec<&str> = heads.iter().map(|h| h.group_key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys.len(), 2, "both applied groups: {keys:?}");
        assert!(
            journal
                .behind_mark
                .load(std::sync::atomic::Ordering::Acquire)
                > journal.progress.borrow().applied,
            "the wait that ran out marked the applier behind"
        );
        // The round's next calls go on at once (four more waits of the bound before).
        let started = std::time::Instant::now();
        let ids: Vec<&str> = alert_ids.iter().map(String::as_str).collect();
        let alerts = tokio::time::timeout(soon, store.alerts_by_id_unhurried(&ids))
            .await
            .expect("a message's alerts are read without the backlog")
            .expect("alerts");
        assert_eq!(alerts.len(), 2);
        let now = Utc::now();
        let lease = now + chrono::Duration::seconds(60);
        let members = tokio::time::timeout(soon, store.claim_groups(&keys, now, lease, 100, 100))
            .await
            .expect("groups are claimed without the backlog")
            .expect("claim");
        assert_eq!(members.iter().map(Vec::len).sum::<usize>(), 2);
        let hooks = tokio::time::timeout(soon, store.claim_actions(now, lease, 10))
            .await
            .expect("due actions are claimed without the backlog")
            .expect("claim");
        assert_eq!(hooks.len(), 2, "the ungrouped webhooks");
        assert!(
            started.elapsed() < DISPATCH_WAIT_MAX * 4,
            "the calls after it did not wait again: {:?}",
            started.elapsed()
        );
        assert_eq!(hurried(), before, "none of it hurried the applier");
        let finish = |record: &ActionRecord| (record.clone(), succeeded(record, now, "sent"));
        let sent: Vec<_> = members.iter().flatten().map(finish).collect();
        tokio::time::timeout(soon, store.finish_actions(&sent))
            .await
            .expect("a message's members are recorded without the backlog")
            .expect("recorded");
        // An action that was not claimed from the tables here may still be in the journal
        // (a handed one): its attempt waits for the applier.
        let hooks_done: Vec<_> = hooks.iter().map(finish).collect();
        let recorded = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.finish_actions(&hooks_done).await }
        });
        tokio::time::sleep(DISPATCH_WAIT_MAX * 2).await;
        assert!(!recorded.is_finished(), "it waits for the backlog");
        // The backlog's end: the record journaled next is the one it waits for.
        journal
            .journaled
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        store
            .ingest(&pipeline, &Default::default(), vec![event("h3", "c")])
            .await
            .expect("ingest");
        tokio::time::timeout(soon, recorded)
            .await
            .expect("recorded once the backlog is applied")
            .expect("task")
            .expect("recorded");
        for record in members.iter().flatten().chain(&hooks) {
            let (stored, attempts) = store
                .action(&record.decided.id)
                .await
                .expect("read")
                .expect("stored");
            assert_eq!(
                stored.status,
                ActionStatus::Succeeded,
                "{}",
                record.decided.action
            );
            assert_eq!(attempts.len(), 1);
        }
        store.close().await;
    }

    /// Creating or revoking an API token, in this store or in another one on the same
    /// directory (the CLI next to a running server), changes the access generation that
    /// servers keep tokens by; noting a token's use, or revoking one that is not there, does
    /// not.
    #[tokio::test]
    async fn token_changes_move_the_access_generation() {
        let dir = tempfile::tempdir().expect("dir");
        let server = SqliteStore::open(dir.path()).await.expect("open");
        let cli = SqliteStore::open(dir.path()).await.expect("open");
        let start = server.access_generation().expect("a generation");
        let now = Utc::now();
        let token = TokenRecord {
            id: crate::sql::new_id(),
            name: "amtool".into(),
            owner: "amtool".into(),
            scopes: vec!["read:alerts".into()],
            hash: "beef".into(),
            created_at: now,
            created_by: "test".into(),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        cli.put_token(&token).await.expect("create");
        let created = server.access_generation().expect("a generation");
        assert_ne!(created, start, "a token made by another process");
        server.touch_token(&token.id, now).await.expect("touch");
        assert_eq!(
            server.access_generation(),
            Some(created),
            "a use is no change"
        );
        assert!(
            cli.revoke_token("nobody", now)
                .await
                .expect("revoke")
                .is_none()
        );
        assert_eq!(server.access_generation(), Some(created), "nothing revoked");
        cli.revoke_token("amtool", now)
            .await
            .expect("revoke")
            .expect("revoked");
        assert_ne!(server.access_generation(), Some(created), "a revocation");
        cli.close().await;
        server.close().await;
    }

    /// The steps of SQLite's plan for `sql`, each `$n` bound to 0.
    async fn query_plan(c: &mut sqlx::SqliteConnection, sql: &str) -> Vec<String> {
        let params = (1..=3).filter(|n| sql.contains(&format!("${n}"))).count();
        let mut plan = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for _ in 0..params {
            plan = plan.bind(0_i64);
        }
        plan.fetch_all(c)
            .await
            .expect("plan")
            .iter()
            .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
            .collect()
    }

    /// The dispatcher's claims, its look for due work and its reads of a group's pending
    /// members walk their partial indexes of `decided_actions`, not every pending action
    /// (through `decided_actions_status` before schema 22, which SQLite's planner picked
    /// without the hint: each claim of a group then read the pending members of every
    /// group).
    #[tokio::test]
    async fn dispatch_statements_walk_their_partial_indexes() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let mut c = store.writer.acquire().await.expect("connection");
        let statements = dispatch::dispatch_sql(&Conn::Sqlite(&mut c));
        for (sql, index) in statements {
            let details = query_plan(&mut c, &sql).await;
            assert!(
                details
                    .iter()
                    .any(|d| d.contains(&format!("INDEX {index} "))),
                "{sql}: {}",
                details.join("; ")
            );
        }
        drop(c);
        store.close().await;
    }

    /// An attempt's line that says only what its row does is not stored but made from the
    /// row; one that says more is stored; lines an earlier vakt stored beside its attempts
    /// (schema 20 and before) are shown as they are, once.
    #[tokio::test]
    async fn attempt_lines_are_made_from_their_rows_unless_they_say_more() {
        use crate::Finish;
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let config = "[[rules]]\nname = \"all\"\nactions = [\"hook\"]\n\
                      [actions.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n";
        let pipeline =
            Pipeline::build(&PipelineConfig::from_toml(config).expect("parses")).expect("compiles");
        let batch = ["db01", "db02", "db03"]
            .iter()
            .map(|r| ping(&pipeline, r))
            .collect();
        store
            .ingest(&pipeline, &Default::default(), batch)
            .await
            .expect("ingest");
        let now = Utc::now();
        let claimed = store
            .claim_actions(now, now + chrono::Duration::seconds(60), 10)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 3);
        let finish = |record: &ActionRecord, more: &str| {
            let finish = succeeded(record, now, "POST answered 200 OK");
            Finish {
                timeline: finish.timeline + more,
                ..finish
            }
        };
        let items = vec![
            (claimed[0].clone(), finish(&claimed[0], "")),
            (claimed[1].clone(), finish(&claimed[1], "\nexit 0: done")),
        ];
        store.finish_actions(&items).await.expect("finish");
        // The third as an earlier vakt stored it: the attempt unmarked, its line beside it.
        let old = finish(&claimed[2], "");
        let mut c = store.writer.acquire().await.expect("connection");
        sqlx::query(
            "INSERT INTO action_attempts (id, action_id, attempt, started_at, finished_at, outcome, detail) \
             VALUES (?1, ?2, 1, ?3, ?3, 'succeeded', ?4)",
        )
        .bind(&old.attempt.id)
        .bind(&claimed[2].decided.id)
        .bind(now.timestamp_millis())
        .bind(&old.attempt.detail)
        .execute(&mut *c)
        .await
        .expect("attempt");
        sqlx::query(
            "INSERT INTO alert_timeline (id, alert_id, at, kind, actor, message) \
             VALUES (?1, ?2, ?3, 'action_run', 'vakt', ?4)",
        )
        .bind(crate::sql::new_id())
        .bind(&claimed[2].decided.alert_id)
        .bind(now.timestamp_millis())
        .bind(&old.timeline)
        .execute(&mut *c)
        .await
        .expect("line");
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT message FROM alert_timeline WHERE kind = 'action_run' ORDER BY id",
        )
        .fetch_all(&mut *c)
        .await
        .expect("stored lines");
        drop(c);
        assert_eq!(
            stored,
            [items[1].1.timeline.clone(), old.timeline.clone()],
            "only the line that says more, and the earlier vakt's"
        );
        for (record, finished) in [&items[0], &items[1], &(claimed[2].clone(), old)] {
            let timeline = store
                .timeline(&record.decided.alert_id)
                .await
                .expect("timeline");
            let runs: Vec<&TimelineEntry> = timeline
                .iter()
                .filter(|t| t.kind == vakt_core::alert::TimelineKind::ActionRun)
                .collect();
            assert_eq!(runs.len(), 1, "{timeline:?}");
            assert_eq!(runs[0].message, finished.timeline);
        }
        store.close().await;
    }

    /// The decided actions of an applied transaction lie by group, each group's in decision
    /// order: a group message's claim and finish then rewrite a page per dozen members, not
    /// a page per member.
    #[tokio::test]
    async fn decided_actions_are_written_by_group() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let config = "[[rules]]\nname = \"all\"\nactions = [\"page\", \"hook\"]\n\
                      [actions.page]\ntype = \"notify\"\nchannel = \"email\"\ngroup_by = [\"service\"]\n\
                      [actions.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n";
        let pipeline =
            Pipeline::build(&PipelineConfig::from_toml(config).expect("parses")).expect("compiles");
        let batch = (0..30)
            .map(|i| {
                pipeline.prepare(
                    EventInput {
                        resource: format!("h{i}"),
                        check: "ping".into(),
                        summary: "x".into(),
                        severity: Some(vakt_core::Severity::Major),
                        service: Some(["a", "b", "c"][i % 3].into()),
                        ..EventInput::default()
                    },
                    "test",
                    Utc::now(),
                )
            })
            .collect();
        store
            .ingest(&pipeline, &Default::default(), batch)
            .await
            .expect("ingest");
        store.barrier(true).await.expect("applied");
        let mut c = store.writer.acquire().await.expect("connection");
        let rows: Vec<(Option<String>, String)> =
            sqlx::query_as("SELECT group_key, id FROM decided_actions ORDER BY rowid")
                .fetch_all(&mut *c)
                .await
                .expect("rows");
        drop(c);
        assert_eq!(rows.len(), 60);
        let keys: Vec<&Option<String>> = rows.iter().map(|(k, _)| k).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "ungrouped first, then group by group");
        assert!(
            rows.windows(2)
                .filter(|w| w[0].0 == w[1].0)
                .all(|w| w[0].1 < w[1].1),
            "in decision order within a group"
        );
        assert_eq!(
            keys.windows(2).filter(|w| w[0] != w[1]).count(),
            3,
            "four runs: the ungrouped ones and three groups"
        );
        store.close().await;
    }

    /// A decision's line is not stored (its decided action is) and is given back from the
    /// action; one an earlier vakt stored is not shown twice.
    #[tokio::test]
    async fn decisions_lines_are_given_back_from_their_actions() {
        use vakt_core::alert::TimelineKind;
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let config = "[[rules]]\nname = \"all\"\nactions = [\"page\"]\n\
                      [actions.page]\ntype = \"notify\"\nchannel = \"email\"\n";
        let pipeline =
            Pipeline::build(&PipelineConfig::from_toml(config).expect("parses")).expect("compiles");
        let outcome = store
            .ingest(
                &pipeline,
                &Default::default(),
                vec![ping(&pipeline, "db01")],
            )
            .await
            .expect("ingest");
        let alert_id = outcome[0].record.alert_id.clone().expect("opened");
        let said = outcome[0]
            .timeline
            .iter()
            .find(|t| t.is_decision())
            .expect("the pipeline's line")
            .clone();
        store.barrier(true).await.expect("applied");
        let mut c = store.writer.acquire().await.expect("connection");
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM alert_timeline WHERE alert_id = ?1 AND kind = 'action_decided'",
        )
        .bind(&alert_id)
        .fetch_one(&mut *c)
        .await
        .expect("count");
        assert_eq!(stored, 0, "the line is not stored beside its action");
        // The line as an earlier vakt stored it.
        sqlx::query(
            "INSERT INTO alert_timeline (id, alert_id, at, kind, actor, message, event_id) \
             VALUES (?1, ?2, ?3, 'action_decided', 'vakt', ?4, ?5)",
        )
        .bind(&said.id)
        .bind(&alert_id)
        .bind(said.at.timestamp_millis())
        .bind(&said.message)
        .bind(&said.event_id)
        .execute(&mut *c)
        .await
        .expect("insert");
        drop(c);
        let timeline = store.timeline(&alert_id).await.expect("timeline");
        let kinds: Vec<TimelineKind> = timeline.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [TimelineKind::Opened, TimelineKind::ActionDecided]);
        assert_eq!(timeline[1].message, said.message);
        assert_eq!(timeline[1].event_id, said.event_id);
        assert_eq!(
            timeline[1].id, outcome[0].actions[0].id,
            "made from the action"
        );
        store.close().await;
    }

    /// The writer checkpoints the WAL in large steps and cuts the file back after: both
    /// settings reach its connection (sqlx applies pragmas per connection it opens). A new
    /// database has pages of `PAGE_SIZE`; one created with SQLite's default keeps its pages
    /// and checkpoints after the same bytes.
    #[tokio::test]
    async fn the_writer_checkpoints_in_large_steps() {
        use sqlx::Connection;
        let pragma = async |c: &mut sqlx::SqliteConnection, name: &str| -> i64 {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
                .fetch_one(c)
                .await
                .expect("pragma")
        };
        let new = tempfile::tempdir().expect("dir");
        let old = tempfile::tempdir().expect("dir");
        // A database an earlier vakt created: SQLite's default pages of 4 KiB.
        let options = SqliteConnectOptions::new()
            .filename(old.path().join(DATABASE_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let mut earlier = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("create");
        sqlx::query("CREATE TABLE earlier (x INTEGER)")
            .execute(&mut earlier)
            .await
            .expect("write");
        assert_eq!(pragma(&mut earlier, "page_size").await, 4096);
        earlier.close().await.expect("close");
        for (dir, page) in [(&new, PAGE_SIZE), (&old, 4096)] {
            let store = SqliteStore::open(dir.path()).await.expect("open");
            let mut c = store.writer.acquire().await.expect("connection");
            assert_eq!(pragma(&mut c, "page_size").await, i64::from(page));
            assert_eq!(page_size_of(&dir.path().join(DATABASE_FILE)), page);
            assert_eq!(
                pragma(&mut c, "wal_autocheckpoint").await * i64::from(page),
                i64::from(WAL_CHECKPOINT_BYTES)
            );
            assert_eq!(
                pragma(&mut c, "journal_size_limit").await,
                i64::try_from(WAL_KEPT_BYTES).expect("small")
            );
            drop(c);
            store.close().await;
        }
        assert_eq!(page_size_of(&new.path().join("none.db")), PAGE_SIZE);
    }

    /// An alert repeated in several records of one applier transaction is written once, with
    /// its newest repeat; a full write of the same alert between them (another section) comes
    /// after the repeats before it and before those after it. The row ends as writing every
    /// record's rows in turn leaves it.
    #[tokio::test]
    async fn an_alerts_repeats_in_one_transaction_are_written_once() {
        use crate::journal::Encoded;
        let dir = tempfile::tempdir().expect("dir");
        let pipeline = no_rules();
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let out = store
            .ingest(&pipeline, &Default::default(), vec![ping(&pipeline, "x")])
            .await
            .expect("ingest");
        let id = out[0].alert.as_ref().expect("an alert").id.clone();
        let stored = store.alert(&id).await.expect("read").expect("stored");
        // The same alert as successive records would carry it.
        let version = |summary: &str, count: i64, acknowledged: Option<&str>| {
            let mut alert = stored.clone();
            alert.summary = summary.into();
            alert.count = count;
            alert.acknowledged_by = acknowledged.map(str::to_owned);
            alert
        };
        let record = |section: u8, alert: &Alert| {
            let mut encoded = Encoded::default();
            encoded
                .section(section, std::slice::from_ref(alert), |a| {
                    crate::sql::alert_row(a, None)
                })
                .expect("encode");
            encoded.into_bytes()
        };
        let (repeat, full) = (3, 2);
        let cases = [
            // Three repeats: one write, the newest.
            (
                vec![
                    record(repeat, &version("one", 2, None)),
                    record(repeat, &version("two", 3, None)),
                    record(repeat, &version("three", 4, None)),
                ],
                1,
                ("three", 4, None),
            ),
            // Two repeats, then a full write: the newest repeat, then the full write.
            (
                vec![
                    record(repeat, &version("four", 5, None)),
                    record(repeat, &version("five", 6, None)),
                    record(full, &version("six", 7, Some("alice"))),
                ],
                2,
                ("six", 7, Some("alice")),
            ),
        ];
        let mut c = store.writer.acquire().await.expect("connection");
        for (records, writes, (summary, count, acknowledged)) in cases {
            let changes = async |c: &mut sqlx::SqliteConnection| -> i64 {
                sqlx::query_scalar("SELECT total_changes()")
                    .fetch_one(c)
                    .await
                    .expect("changes")
            };
            let before = changes(&mut c).await;
            {
                let mut handle = c.lock_handle().await.expect("handle");
                let payloads: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
                crate::sqlite_bulk::execute(&mut handle, "BEGIN IMMEDIATE").expect("begin");
                crate::journal::apply(&mut handle, crate::journal::statements(), &payloads)
                    .expect("apply");
                crate::sqlite_bulk::execute(&mut handle, "COMMIT").expect("commit");
            }
            assert_eq!(changes(&mut c).await - before, writes, "rows written");
            let row: (String, i64, Option<String>) = sqlx::query_as(
                "SELECT summary, event_count, acknowledged_by FROM alerts WHERE id = ?1",
            )
            .bind(&id)
            .fetch_one(&mut *c)
            .await
            .expect("row");
            assert_eq!(
                (row.0.as_str(), row.1, row.2.as_deref()),
                (summary, count, acknowledged)
            );
        }
        drop(c);
        store.close().await;
    }

    /// Listing actions by an unusual status (failed, skipped, suppressed, running) walks
    /// the partial index of those statuses; pending and succeeded, which nearly every
    /// decided action passes through, have no index by status (schema 22) and are listed
    /// from the table newest first, where they are.
    #[tokio::test]
    async fn actions_are_listed_by_unusual_status_through_their_index() {
        use crate::ActionStatus;
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let mut c = store.reader.acquire().await.expect("connection");
        for status in ActionStatus::ALL {
            let sql = format!(
                "SELECT id FROM decided_actions WHERE 1 = 1{} ORDER BY id DESC LIMIT 51",
                dispatch::status_condition(status)
            );
            let plan = query_plan(&mut c, &sql).await.join("; ");
            let unusual = !matches!(status, ActionStatus::Pending | ActionStatus::Succeeded);
            assert_eq!(
                plan.contains("INDEX decided_actions_unusual (status=?)"),
                unusual,
                "{status:?}: {plan}"
            );
        }
        drop(c);
        store.close().await;
    }

    /// A new alert's "opened" line is kept in the alert's row, not as a timeline row, and
    /// read back as the pipeline said it; an alert opened by an earlier vakt keeps its
    /// stored line.
    #[tokio::test]
    async fn opening_lines_are_given_back_from_their_alerts() {
        use vakt_core::alert::TimelineKind;
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let pipeline = no_rules();
        let outcome = store
            .ingest(
                &pipeline,
                &Default::default(),
                vec![ping(&pipeline, "db01"), ping(&pipeline, "db01")],
            )
            .await
            .expect("ingest");
        let alert_id = outcome[0].record.alert_id.clone().expect("opened");
        let said = outcome[0].timeline[0].clone();
        assert_eq!(said.kind, TimelineKind::Opened);
        store.barrier(true).await.expect("applied");
        let mut c = store.writer.acquire().await.expect("connection");
        let stored: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM alert_timeline WHERE kind = 'opened'")
                .fetch_one(&mut *c)
                .await
                .expect("count");
        assert_eq!(stored, 0, "the line is in the alert's row");
        // An alert as an earlier vakt stored it: no line in its row, the line in the timeline.
        let old = "01OLDALERT0000000000000000";
        sqlx::query(
            "INSERT INTO alerts (id, fingerprint, status, category, severity, severity_max, source, \
             resource, check_name, summary, labels, event_count, first_seen, last_seen, last_event_id) \
             SELECT ?1, 'old', status, category, severity, severity_max, source, resource, check_name, \
             summary, labels, event_count, first_seen, last_seen, last_event_id FROM alerts WHERE id = ?2",
        )
        .bind(old)
        .bind(&alert_id)
        .execute(&mut *c)
        .await
        .expect("old alert");
        sqlx::query(
            "INSERT INTO alert_timeline (id, alert_id, at, kind, actor, message, event_id) \
             VALUES ('01OLDLINE00000000000000000', ?1, 0, 'opened', 'vakt', 'opened long ago', NULL)",
        )
        .bind(old)
        .execute(&mut *c)
        .await
        .expect("old line");
        drop(c);
        let timeline = store.timeline(&alert_id).await.expect("timeline");
        let line = &timeline[0];
        assert_eq!(
            (
                line.kind,
                &line.alert_id,
                &line.by,
                &line.message,
                &line.event_id
            ),
            (
                said.kind,
                &said.alert_id,
                &said.by,
                &said.message,
                &said.event_id
            )
        );
        assert_eq!(line.at.timestamp_millis(), said.at.timestamp_millis());
        assert_eq!(line.id, alert_id, "the line's id is its alert's");
        assert_eq!(
            timeline
                .iter()
                .filter(|t| t.kind == TimelineKind::Opened)
                .count(),
            1
        );
        let old_timeline = store.timeline(old).await.expect("timeline");
        assert_eq!(old_timeline.len(), 1);
        assert_eq!(old_timeline[0].message, "opened long ago");
        store.close().await;
    }

    /// The records of one applier transaction upsert each hour's counts and each group's
    /// note once, merged, leaving what their upserts one by one would.
    #[tokio::test]
    async fn an_applier_transaction_merges_the_records_repeated_upserts() {
        use crate::journal::Encoded;
        use crate::sql::Value;
        use std::borrow::Cow;
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let text = |t: &'static str| Value::Text(Some(Cow::Borrowed(t)));
        let record = |events: i64, action: &'static str, at: i64, dropped: bool| {
            let mut encoded = Encoded::default();
            encoded
                .section(9, &[()], |()| {
                    [
                        Value::Int(Some(3_600_000)),
                        text("api"),
                        text("disk"),
                        text("availability"),
                        text("major"),
                        Value::Bool(dropped),
                        Value::Int(Some(events)),
                    ]
                })
                .expect("rollup");
            encoded
                .section(6, &[()], |()| {
                    [text("svc=db"), text(action), Value::Int(Some(at))]
                })
                .expect("group note");
            encoded.into_bytes()
        };
        let records = [
            record(2, "page", 100, false),
            record(3, "mail", 200, false),
            record(5, "mail", 300, true),
        ];
        let mut conn = store.writer.acquire().await.expect("connection");
        sqlx::query(
            "INSERT INTO event_rollup (hour, source, check_name, category, severity, dropped, events) \
             VALUES (3600000, 'api', 'disk', 'availability', 'major', 0, 10)",
        )
        .execute(&mut *conn)
        .await
        .expect("earlier counts");
        {
            let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
            let mut handle = tx.lock_handle().await.expect("handle");
            let payloads: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            crate::journal::apply(&mut handle, crate::journal::statements(), &payloads)
                .expect("applied");
            drop(handle);
            tx.commit().await.expect("commit");
        }
        let counts: Vec<(bool, i64)> =
            sqlx::query_as("SELECT dropped, events FROM event_rollup ORDER BY dropped")
                .fetch_all(&mut *conn)
                .await
                .expect("counts");
        assert_eq!(
            counts,
            [(false, 15), (true, 5)],
            "summed onto the stored count"
        );
        let note: (String, i64) = sqlx::query_as(
            "SELECT action, first_pending_at FROM notification_groups WHERE group_key = 'svc=db'",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("note");
        assert_eq!(
            note,
            ("mail".to_owned(), 100),
            "the last action, the first time"
        );
        drop(conn);
        store.close().await;
    }

    /// The data directory and the database files are private to vakt's user.
    #[cfg(unix)]
    #[test]
    fn the_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        runtime.block_on(async {
            let store = SqliteStore::open(&data).await.expect("opens");
            let mode = |p: &Path| {
                std::fs::metadata(p)
                    .map(|m| m.permissions().mode() & 0o777)
                    .ok()
            };
            assert_eq!(mode(&data), Some(0o700));
            assert_eq!(mode(&data.join(DATABASE_FILE)), Some(0o600));
            assert_eq!(
                mode(&data.join(format!("{DATABASE_FILE}-wal"))),
                Some(0o600)
            );
            store.close().await;
        });
    }

    /// `check` on a runtime of its own (a proptest case is a plain function).
    fn run_check(
        window_secs: u64,
        steps: Vec<Step>,
        cache_max: usize,
    ) -> Result<(), TestCaseError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(check(window_secs, steps, cache_max))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn the_cache_answers_as_the_database_does(
            window_secs in prop::sample::select(vec![0u64, 1, 300]),
            steps in prop::collection::vec(step(), 1..30),
        ) {
            run_check(window_secs, steps, 1000)?;
        }

        #[test]
        fn beyond_its_capacity_the_cache_knows_which_alerts_exist(
            window_secs in prop::sample::select(vec![0u64, 1, 300]),
            steps in prop::collection::vec(event_step(), 1..40),
        ) {
            run_check(window_secs, steps, 1)?;
        }
    }
}
