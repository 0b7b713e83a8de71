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

use crate::{OperateError, Stats, Store};

crate::sql::common_sql!(
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    " FOR UPDATE",
    "id DESC",
    write_rows = write_rows
);
crate::dispatch::dispatch_sql!(
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    " FOR UPDATE SKIP LOCKED"
);
crate::escalate::escalate_sql!(
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    " FOR UPDATE SKIP LOCKED",
    " FOR UPDATE",
    "SELECT pg_advisory_xact_lock(hashtext($1))"
);

/// A batch's rows go in as multi-row statements.
async fn write_rows(conn: &mut Conn, rows: &crate::sql::BatchRows<'_>) -> Result<(), StoreError> {
    write_rows_generic(conn, rows).await
}

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
    ])
}

impl PostgresStore {
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
                let mut tx = self.pool.begin().await?;
                // Other nodes write too: read the alert state inside the transaction, locked.
                let since =
                    crate::sql::reopen_cutoff(&batch, pipeline.reopen_window(), chrono::Utc::now());
                let mut fingerprints: Vec<&Fingerprint> =
                    batch.iter().map(|p| &p.fingerprint).collect();
                fingerprints.sort_unstable();
                fingerprints.dedup();
                let current =
                    load_current(&mut tx, &fingerprints, since.timestamp_millis()).await?;
                let (outcomes, traces) = write_batch(
                    &mut tx,
                    pipeline,
                    silences,
                    batch.clone(),
                    &ids,
                    current,
                    &known,
                )
                .await?;
                tx.commit().await?;
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
        get_event(&mut *self.pool.acquire().await?, id).await
    }

    async fn events(&self, query: &EventQuery) -> Result<Page<EventRecord>, StoreError> {
        list_events(&mut *self.pool.acquire().await?, query).await
    }

    async fn alert(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        get_alert(&mut *self.pool.acquire().await?, id, false).await
    }

    async fn alerts_by_id(&self, ids: &[&str]) -> Result<Vec<Alert>, StoreError> {
        get_alerts(&mut *self.pool.acquire().await?, ids).await
    }

    async fn events_by_id(&self, ids: &[&str]) -> Result<Vec<EventRecord>, StoreError> {
        get_events(&mut *self.pool.acquire().await?, ids).await
    }

    async fn flapping_alerts(&self, limit: u32) -> Result<Vec<Alert>, StoreError> {
        list_flapping(&mut *self.pool.acquire().await?, limit).await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Page<Alert>, StoreError> {
        list_alerts(&mut *self.pool.acquire().await?, query).await
    }

    async fn timeline(&self, alert_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        list_timeline(&mut *self.pool.acquire().await?, alert_id).await
    }

    async fn alert_events(
        &self,
        alert_id: &str,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        list_alert_events(&mut *self.pool.acquire().await?, alert_id, limit).await
    }

    async fn alert_actions(&self, alert_id: &str) -> Result<Vec<ActionRecord>, StoreError> {
        list_alert_action_records(&mut *self.pool.acquire().await?, alert_id).await
    }

    async fn actions(&self, query: &ActionQuery) -> Result<Page<ActionRecord>, StoreError> {
        list_action_records(&mut *self.pool.acquire().await?, query).await
    }

    async fn action(&self, id: &str) -> Result<Option<(ActionRecord, Vec<Attempt>)>, StoreError> {
        get_action_record(&mut *self.pool.acquire().await?, id).await
    }

    async fn claim_actions(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let claimed = claim_due(
            &mut tx,
            now.timestamp_millis(),
            lease_until.timestamp_millis(),
            limit,
        )
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn recover_actions(
        &self,
        leases_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let recovered = recover_expired(
            &mut tx,
            leases_before.timestamp_millis(),
            now.timestamp_millis(),
        )
        .await?;
        tx.commit().await?;
        Ok(recovered)
    }

    async fn finish_actions(&self, items: &[(ActionRecord, Finish)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (record, finish) in items {
            finish_in(&mut tx, record, finish).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn group_heads(&self, limit: u32) -> Result<Vec<GroupHead>, StoreError> {
        list_group_heads(&mut *self.pool.acquire().await?, limit).await
    }

    async fn claim_group(
        &self,
        group_key: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let claimed =
            claim_group_members(&mut tx, group_key, lease_until.timestamp_millis(), limit).await?;
        if !claimed.is_empty() {
            write_group_sent(&mut tx, group_key, now.timestamp_millis()).await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn retry_action(
        &self,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ActionRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let record = retry_in(&mut tx, id, by, now.timestamp_millis()).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn last_success(
        &self,
        action: &str,
        alert_id: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        last_success(&mut *self.pool.acquire().await?, action, alert_id)
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
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let alert = operate_in(&mut tx, pipeline, silences, alert_id, request).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(alert)
    }

    async fn claim_escalations(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Escalation>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let claimed = claim_due_escalations(
            &mut tx,
            now.timestamp_millis(),
            lease_until.timestamp_millis(),
            limit,
        )
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn release_escalation_leases(&self) -> Result<u64, StoreError> {
        let done =
            sqlx::query("UPDATE escalations SET lease_until = NULL WHERE lease_until IS NOT NULL")
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    async fn fire_escalation(
        &self,
        pipeline: &vakt_core::Pipeline,
        fire: &Fire,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let crate::escalate::Fired::Moved = fire_in(&mut tx, pipeline.incidents(), fire).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn escalation(&self, alert_id: &str) -> Result<Option<Escalation>, StoreError> {
        get_escalation(&mut *self.pool.acquire().await?, alert_id).await
    }

    async fn escalations(
        &self,
        status: Option<EscalationStatus>,
        limit: u32,
    ) -> Result<Vec<Escalation>, StoreError> {
        list_escalations(&mut *self.pool.acquire().await?, status, limit).await
    }

    async fn create_incident(
        &self,
        pipeline: &vakt_core::Pipeline,
        new: &NewIncident,
    ) -> Result<Incident, IncidentError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let incident =
            create_incident_in(&mut tx, pipeline.incidents(), new, chrono::Utc::now()).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(incident)
    }

    async fn update_incident(
        &self,
        pipeline: &vakt_core::Pipeline,
        id: &str,
        change: &IncidentChange,
    ) -> Result<Incident, IncidentError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let incident = update_incident_in(
            &mut tx,
            pipeline.incidents(),
            id,
            change,
            chrono::Utc::now(),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(incident)
    }

    async fn incident(
        &self,
        id: &str,
    ) -> Result<Option<(Incident, Vec<IncidentEntry>)>, StoreError> {
        incident_detail(&mut *self.pool.acquire().await?, id).await
    }

    async fn incidents(&self, query: &IncidentQuery) -> Result<Page<Incident>, StoreError> {
        list_incidents(&mut *self.pool.acquire().await?, query).await
    }

    async fn incident_by_external(&self, external_id: &str) -> Result<Option<String>, StoreError> {
        incident_id_by_external(&mut *self.pool.acquire().await?, external_id).await
    }

    async fn claim_incident_syncs(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Incident, i64)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let claimed = claim_syncs(
            &mut tx,
            now.timestamp_millis(),
            lease_until.timestamp_millis(),
            limit,
        )
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_incident_sync(
        &self,
        id: &str,
        version: i64,
        result: &SyncResult,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        finish_sync_in(&mut tx, id, version, result, chrono::Utc::now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        count_alerts(&mut *self.pool.acquire().await?).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn expired_alerts(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        list_expired(
            &mut *self.pool.acquire().await?,
            now.timestamp_millis(),
            limit,
        )
        .await
    }

    async fn put_silence(&self, silence: &vakt_core::silence::Silence) -> Result<(), StoreError> {
        write_silence(&mut *self.pool.acquire().await?, silence).await
    }

    async fn put_throttle(&self, key: &str, state: Option<&str>) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        write_throttle(&mut *self.pool.acquire().await?, key, state, now).await
    }

    async fn throttles(&self) -> Result<Vec<(String, String)>, StoreError> {
        read_throttles(&mut *self.pool.acquire().await?).await
    }

    async fn silence(&self, id: &str) -> Result<Option<vakt_core::silence::Silence>, StoreError> {
        Ok(read_silences(&mut *self.pool.acquire().await?, Some(id))
            .await?
            .pop())
    }

    async fn silences(&self) -> Result<Vec<vakt_core::silence::Silence>, StoreError> {
        read_silences(&mut *self.pool.acquire().await?, None).await
    }

    async fn beat(
        &self,
        heartbeat: &vakt_core::heartbeat::Heartbeat,
    ) -> Result<Option<vakt_core::heartbeat::Heartbeat>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let previous = read_heartbeats(&mut conn, Some(&heartbeat.name))
            .await?
            .pop();
        write_heartbeat(&mut conn, heartbeat).await?;
        Ok(previous)
    }

    async fn heartbeats(&self) -> Result<Vec<vakt_core::heartbeat::Heartbeat>, StoreError> {
        read_heartbeats(&mut *self.pool.acquire().await?, None).await
    }

    async fn put_override(
        &self,
        schedule: &str,
        item: &vakt_core::oncall::OverrideConfig,
    ) -> Result<(), StoreError> {
        write_override(&mut *self.pool.acquire().await?, schedule, item).await
    }

    async fn overrides(
        &self,
        schedule: &str,
        ending_after: DateTime<Utc>,
    ) -> Result<Vec<vakt_core::oncall::OverrideConfig>, StoreError> {
        read_overrides(
            &mut *self.pool.acquire().await?,
            schedule,
            ending_after.timestamp_millis(),
        )
        .await
    }

    async fn delete_override(&self, schedule: &str, id: &str) -> Result<bool, StoreError> {
        remove_override(&mut *self.pool.acquire().await?, schedule, id).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
