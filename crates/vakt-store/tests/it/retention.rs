//! Retention: what has been kept long enough goes in small batches, and what is still in
//! use stays; `db stats` counts it and a backup holds it.

use super::*;
use vakt_store::{PruneKind, SilenceQuery, SilenceSet};

fn cpu(resource: &str, severity: &str) -> serde_json::Value {
    json!({"resource": resource, "check": "cpu", "summary": "load", "severity": severity})
}

async fn rows(store: &dyn Store, table: &str) -> i64 {
    store
        .table_stats()
        .await
        .expect("stats")
        .into_iter()
        .find(|t| t.table == table)
        .unwrap_or_else(|| panic!("no table {table} in stats"))
        .rows
}

async fn old_data_goes_and_what_is_in_use_stays(backend: &Backend) {
    let p = pipeline();
    let store = backend.open().await;
    // Three alerts; b01 resolves.
    let old = send(
        &*store,
        &p,
        vec![
            cpu("a01", "major"),
            cpu("b01", "major"),
            cpu("c01", "major"),
            // Nothing to clear: the same trace as the young one below.
            cpu("z01", "ok"),
        ],
    )
    .await;
    send(&*store, &p, vec![cpu("b01", "ok")]).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cutoff = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // A repeat of a01 after the cutoff: its event stays.
    let young = send(&*store, &p, vec![cpu("a01", "major"), cpu("z01", "ok")]).await;
    assert_eq!(
        young[1].record.trace, old[3].record.trace,
        "one trace, old and young"
    );
    assert_eq!(rows(&*store, "events").await, 7);
    let traces_before = rows(&*store, "traces").await;

    // Events: at most `limit` per call, oldest first, until none is older.
    assert_eq!(
        store
            .prune(PruneKind::Events, cutoff, 3)
            .await
            .expect("prune"),
        3
    );
    assert_eq!(
        store
            .prune(PruneKind::Events, cutoff, 3)
            .await
            .expect("prune"),
        2
    );
    assert_eq!(
        store
            .prune(PruneKind::Events, cutoff, 3)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(rows(&*store, "events").await, 2);
    assert!(
        store
            .event(&old[0].record.id)
            .await
            .expect("read")
            .is_none()
    );
    let kept = store
        .event(&young[0].record.id)
        .await
        .expect("read")
        .expect("the young event stays");
    assert!(!kept.trace.is_empty(), "its trace stays with it");
    let shared = store
        .event(&young[1].record.id)
        .await
        .expect("read")
        .expect("the young event stays");
    assert_eq!(
        shared.trace, young[1].record.trace,
        "a trace an old event shared with a young one stays"
    );
    let traces_after = rows(&*store, "traces").await;
    assert!(
        traces_after < traces_before && traces_after >= 1,
        "unused traces go ({traces_before} -> {traces_after})"
    );

    // Alerts: only resolved ones, with their timeline.
    let resolved = old[1].record.alert_id.clone().expect("alert");
    let open = old[0].record.alert_id.clone().expect("alert");
    assert!(
        !store
            .timeline(&resolved)
            .await
            .expect("timeline")
            .is_empty()
    );
    let later = Utc::now() + Duration::seconds(1);
    assert_eq!(
        store
            .prune(PruneKind::Alerts, later, 100)
            .await
            .expect("prune"),
        1
    );
    assert!(store.alert(&resolved).await.expect("read").is_none());
    assert!(
        store
            .timeline(&resolved)
            .await
            .expect("timeline")
            .is_empty()
    );
    assert!(
        store.alert(&open).await.expect("read").is_some(),
        "open alerts stay"
    );
    assert!(!store.timeline(&open).await.expect("timeline").is_empty());

    // A new event for a pruned alert's fingerprint opens a new alert, as after any resolve.
    let again = send(&*store, &p, vec![cpu("b01", "major")]).await;
    let new_alert = again[0].record.alert_id.clone().expect("alert");
    assert_ne!(new_alert, resolved);

    // Silences: expired ones past the cutoff go; those in force stay.
    use vakt_core::matcher::MatcherSpec;
    let now = Utc::now();
    let silence = |id: &str, ends: chrono::DateTime<Utc>| vakt_core::silence::Silence {
        id: id.into(),
        matchers: vec![MatcherSpec {
            name: "check".into(),
            value: "cpu".into(),
            is_regex: false,
            is_equal: true,
        }],
        starts_at: now - Duration::hours(2),
        ends_at: ends,
        created_by: "alice".into(),
        comment: "c".into(),
        updated_at: now,
    };
    store
        .put_silence(&silence("ended", now - Duration::hours(1)))
        .await
        .expect("put");
    store
        .put_silence(&silence("running", now + Duration::hours(1)))
        .await
        .expect("put");
    assert_eq!(
        store
            .prune(PruneKind::Silences, now, 100)
            .await
            .expect("prune"),
        1
    );
    let left = store
        .silences(&SilenceQuery {
            set: SilenceSet::All,
            now,
            changed_since: None,
        })
        .await
        .expect("list");
    assert_eq!(
        left.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["running"]
    );

    // Nothing older than the beginning of time: every kind answers 0.
    let epoch = chrono::DateTime::<Utc>::UNIX_EPOCH;
    for kind in PruneKind::ALL {
        assert_eq!(
            store.prune(kind, epoch, 100).await.expect("prune"),
            0,
            "{kind:?}"
        );
    }
    store.close().await;
}
story!(
    story_old_data_goes_and_what_is_in_use_stays,
    old_data_goes_and_what_is_in_use_stays
);

async fn stats_count_every_table_and_a_backup_holds_every_event(backend: &Backend) {
    let p = pipeline();
    let store = backend.open().await;
    let sent = send(&*store, &p, vec![cpu("a01", "major"), cpu("b01", "minor")]).await;
    let stats = store.table_stats().await.expect("stats");
    let events = stats.iter().find(|t| t.table == "events").expect("events");
    assert_eq!(events.rows, 2);
    assert!(events.bytes.is_some_and(|b| b > 0), "{events:?}");
    assert!(stats.iter().any(|t| t.table == "audit_log"));
    store.vacuum().await.expect("vacuum");

    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("restored").join(vakt_store::DATABASE_FILE);
    std::fs::create_dir_all(copy.parent().expect("parent")).expect("dir");
    let made = store.backup(&copy).await;
    if store.backend() == "postgres" {
        let error = made.expect_err("PostgreSQL is backed up with its own tools");
        assert!(error.to_string().contains("pg_dump"), "{error}");
        store.close().await;
        return;
    }
    made.expect("backup");
    assert!(
        store.backup(&copy).await.is_err(),
        "a backup never overwrites a file"
    );
    store.close().await;
    let restored = vakt_store::open(&Location::SqliteDir(dir.path().join("restored")))
        .await
        .expect("open the backup");
    for outcome in &sent {
        assert!(
            restored
                .event(&outcome.record.id)
                .await
                .expect("read")
                .is_some(),
            "event {} is in the backup",
            outcome.record.id
        );
    }
    restored.close().await;
}
story!(
    story_stats_count_every_table_and_a_backup_holds_every_event,
    stats_count_every_table_and_a_backup_holds_every_event
);
