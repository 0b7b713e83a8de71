//! The scale-out store: PostgreSQL, one pool; row locks and a retry make concurrent nodes safe.
//!
//! Several vakt nodes may ingest into one database. A batch locks the alerts it will change
//! (`FOR UPDATE`); two nodes opening an alert for the same new fingerprint collide on the
//! unique index of unresolved alerts, and the loser retries its whole batch, which then sees
//! the winner's alert.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};

use chrono::{DateTime, Utc};

use vakt_core::incident::{Incident, IncidentEntry};
use vakt_core::pipeline::EventRecord;
use vakt_core::{Alert, Fingerprint, TimelineEntry};

use crate::access::{self, AuditEntry, AuditQuery, SessionRecord, TokenRecord};
use crate::db::Conn;
use crate::dispatch::{ActionQuery, ActionRecord, Attempt, Finish, GroupHead};
use crate::escalate::{
    Escalation, EscalationStatus, Fire, IncidentChange, IncidentError, IncidentQuery, NewIncident,
    SyncResult,
};
use crate::{AlertQuery, EventQuery, Page, StoreError};
use crate::{OperateError, Stats, Store, dispatch, escalate, queries};

/// Connections in the pool.
const CONNECTIONS: u32 = 16;
/// Attempts at a batch that collides with another node's.
const INGEST_ATTEMPTS: u32 = 5;

pub struct PostgresStore {
    pool: PgPool,
    traces: tokio::sync::Mutex<crate::sql::KnownTraces>,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "expiry and silences".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0002_expiry_silences.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "heartbeats".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0003_heartbeats.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "dispatch".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0004_dispatch.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "oncall".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0005_oncall.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "escalation_incidents".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0006_escalation_incidents.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "alert fingerprint index".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0007_alert_fingerprint_index.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "idempotency, flapping, throttles".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0008_idempotency_flapping_throttles.sql")
                .into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            "tokens and audit".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0009_tokens_audit.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            "sessions".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0010_sessions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            11,
            "user passwords".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0011_user_passwords.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            12,
            "retention".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0012_retention.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            13,
            "group heads".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0013_group_heads.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            15,
            "event received".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0015_event_received.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            16,
            "event rollup".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0016_event_rollup.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            17,
            "reopen index".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0017_reopen_index.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            19,
            "opened line".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0019_opened_line.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            21,
            "attempt lines".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0021_attempt_lines.sql").into_sql_str(),
            false,
        ),
    ])
}

impl PostgresStore {
    /// Runs `f` on a pooled connection.
    async fn read<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.acquire().await?;
        f(&mut Conn::Postgres(&mut conn)).await
    }

    /// Runs `f` in a transaction and commits it.
    async fn write<T, E: From<StoreError>>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let done = f(&mut Conn::Postgres(&mut tx)).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(done)
    }

    /// Connects and brings the schema up to date (migrations take an advisory lock, so nodes
    /// starting together do not race).
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|error| {
                StoreError::Unavailable(format!(
                    "cannot connect to {}: {error}",
                    crate::redact(url)
                ))
            })?;
        migrator()
            .run(&pool)
            .await
            .map_err(|error| StoreError::Other(format!("migrating PostgreSQL: {error}")))?;
        if let Some(warning) = autovacuum_warning(&pool).await {
            tracing::warn!("{warning}");
        }
        Ok(PostgresStore {
            pool,
            traces: tokio::sync::Mutex::new(crate::sql::KnownTraces::default()),
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> crate::Capabilities {
        crate::Capabilities {
            single_process: false,
        }
    }

    async fn ingest(
        &self,
        pipeline: &vakt_core::Pipeline,
        silences: &vakt_core::silence::ActiveSilences,
        batch: Vec<vakt_core::Prepared>,
    ) -> Result<Vec<vakt_core::Correlated>, StoreError> {
        let ids: Vec<String> = batch.iter().map(|_| crate::sql::new_id()).collect();
        let mut attempt = 1;
        loop {
            let result = async {
                let mut known = self.traces.lock().await;
                let since =
                    crate::sql::reopen_cutoff(&batch, pipeline.reopen_window(), chrono::Utc::now())
                        .timestamp_millis();
                let mut fingerprints: Vec<&Fingerprint> =
                    batch.iter().map(|p| &p.fingerprint).collect();
                fingerprints.sort_unstable();
                fingerprints.dedup();
                let known_now = &mut *known;
                // Other nodes write too: read the alert state inside the transaction, locked.
                let (outcomes, traces) = self
                    .write(async |c| {
                        let current = queries::load_current(c, &fingerprints, since).await?;
                        let batch = batch.clone();
                        queries::write_batch(c, pipeline, silences, batch, &ids, current, known_now)
                            .await
                    })
                    .await?;
                known.extend(traces);
                Ok::<_, StoreError>(outcomes)
            }
            .await;
            match result {
                Err(StoreError::Conflict(error)) if attempt < INGEST_ATTEMPTS => {
                    tracing::debug!(attempt, %error, "batch collided with another node, retrying");
                    attempt += 1;
                }
                other => return other,
            }
        }
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
        self.read(async |c| queries::replay_events(c, since, until, after, limit).await)
            .await
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
        self.read(async |c| queries::get_alerts(c, ids).await).await
    }

    async fn events_by_id(&self, ids: &[&str]) -> Result<Vec<EventRecord>, StoreError> {
        self.read(async |c| queries::get_events(c, ids).await).await
    }

    async fn flapping_alerts(&self, limit: u32) -> Result<Vec<Alert>, StoreError> {
        self.read(async |c| queries::list_flapping(c, limit).await)
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
        self.write(async |c| {
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
        self.write(async |c| {
            dispatch::recover_expired(c, leases_before.timestamp_millis(), now.timestamp_millis())
                .await
        })
        .await
    }

    async fn finish_actions(&self, items: &[(ActionRecord, Finish)]) -> Result<(), StoreError> {
        // A group message finishes thousands of members at once: statements of many rows,
        // not a round trip per row (the claims are in the table, none held in memory).
        let held = vec![false; items.len()];
        let rows = dispatch::FinishRows::new(items, &held);
        self.write(async |c| rows.write(c).await).await
    }

    async fn group_heads(&self, limit: u32) -> Result<Vec<GroupHead>, StoreError> {
        self.read(async |c| dispatch::list_group_heads(c, limit).await)
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
        self.write(async |c| dispatch::claim_groups(c, keys, now, lease_until, limit, budget).await)
            .await
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
        self.write(async |c| queries::operate_in(c, pipeline, silences, alert_id, request).await)
            .await
    }

    async fn claim_escalations(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Escalation>, StoreError> {
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
        // A step that moved wrote nothing: committing the empty transaction is a rollback.
        let fired = self
            .write(async |c| escalate::fire_in(c, pipeline.incidents(), fire).await)
            .await?;
        Ok(matches!(fired, crate::escalate::Fired::Stored { .. }))
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
        self.write(async |c| {
            escalate::create_incident_in(c, pipeline.incidents(), new, chrono::Utc::now()).await
        })
        .await
    }

    async fn update_incident(
        &self,
        pipeline: &vakt_core::Pipeline,
        id: &str,
        change: &IncidentChange,
    ) -> Result<Incident, IncidentError> {
        self.write(async |c| {
            escalate::update_incident_in(c, pipeline.incidents(), id, change, chrono::Utc::now())
                .await
        })
        .await
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
        self.read(async |c| queries::ping(c).await).await
    }

    async fn prune(
        &self,
        kind: crate::PruneKind,
        before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut known = self.traces.lock().await;
        let pruned = self
            .write(async |c| crate::retention::prune(c, kind, before, limit).await)
            .await?;
        known.forget(&pruned.traces);
        Ok(pruned.rows)
    }

    async fn table_stats(&self) -> Result<Vec<crate::TableStats>, StoreError> {
        self.read(async |c| {
            let mut stats = crate::retention::row_counts(c).await?;
            for table in &mut stats {
                let row =
                    crate::db::query("SELECT pg_total_relation_size(to_regclass($1)) AS bytes")
                        .bind(table.table.as_str())
                        .fetch_one(&mut *c)
                        .await?;
                table.bytes = row.try_get("bytes")?;
            }
            Ok(stats)
        })
        .await
    }

    async fn size_bytes(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    async fn vacuum(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("VACUUM (ANALYZE)").execute(&mut *conn).await?;
        Ok(())
    }

    async fn backup(&self, _to: &std::path::Path) -> Result<(), StoreError> {
        Err(StoreError::Other(
            "vakt backup copies the embedded SQLite database; back PostgreSQL up with its own \
             tools (pg_dump, or continuous archiving)"
                .into(),
        ))
    }

    async fn expired_alerts(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        self.read(async |c| queries::list_expired(c, now.timestamp_millis(), limit).await)
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
        self.read(async |c| queries::read_heartbeats(c, None).await)
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
            .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(async |c| access::token_by_hash(c, hash).await)
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
        self.write(async |c| access::revoke_token(c, id_or_name, at).await)
            .await
    }

    async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let at = at.timestamp_millis();
        self.write(async |c| access::touch_token(c, id, at).await)
            .await
    }

    async fn live_tokens(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let now = now.timestamp_millis();
        self.read(async |c| access::live_tokens(c, now).await).await
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
        self.read(async |c| access::session_by_hash(c, hash).await)
            .await
    }

    async fn touch_session(&self, hash: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let at = at.timestamp_millis();
        self.write(async |c| access::touch_session(c, hash, at).await)
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
        self.read(async |c| access::password_of(c, user).await)
            .await
    }

    async fn password_users(&self) -> Result<Vec<String>, StoreError> {
        self.read(async |c| access::password_users(c).await).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// What to tell the operator when the server keeps no statistics of vakt's tables by itself
/// (`autovacuum = off`): without them PostgreSQL takes a batch's lookup of its alerts by
/// fingerprint for a third of the table and scans it whole, and ingest slows as the table
/// fills (BENCHMARKS.md, issue 18: 1,700-3,500 against 7,000-9,000 alerts/s at 100,000).
/// `None` when autovacuum is on, or the setting cannot be read.
async fn autovacuum_warning(pool: &PgPool) -> Option<String> {
    let setting: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(pool)
        .await
        .ok()?;
    (setting == "off").then(|| {
        "PostgreSQL runs with autovacuum = off: it keeps no statistics of vakt's tables, so \
         lookups scan them whole and ingest slows as they fill; turn autovacuum on, or run \
         ANALYZE on a schedule (docs/configuration.md)"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warning at connect says so exactly when the server's autovacuum is off (read
    /// here on its own). Needs `VAKT_TEST_PG_URL`; says it skipped without it.
    #[tokio::test]
    async fn connect_warns_when_autovacuum_is_off() {
        let Ok(url) = std::env::var("VAKT_TEST_PG_URL") else {
            eprintln!(
                "\n*** SKIPPED connect_warns_when_autovacuum_is_off: VAKT_TEST_PG_URL is not set ***\n"
            );
            return;
        };
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("VAKT_TEST_PG_URL is set but unreachable");
        let setting: String = sqlx::query_scalar("SHOW autovacuum")
            .fetch_one(&pool)
            .await
            .expect("setting");
        let warning = autovacuum_warning(&pool).await;
        assert_eq!(
            warning.is_some(),
            setting == "off",
            "autovacuum = {setting}"
        );
        if let Some(warning) = warning {
            assert!(warning.contains("autovacuum = off") && warning.contains("ANALYZE"));
        }
        pool.close().await;
    }
}
