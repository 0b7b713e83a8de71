//! The SQLite writer's bounded alert cache reads what it does not hold from the database.

use super::*;

/// The embedded store keeps a bounded number of alerts in memory; alerts beyond it are read
/// from the database, so repeats still land on their alert and nothing is opened twice.
#[tokio::test]
async fn a_small_alert_cache_reads_the_rest_from_the_database() {
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn Store> = Arc::new(
        vakt_store::SqliteStore::open(&dir.path().join("data"))
            .await
            .expect("open")
            .with_alert_cache_max(3),
    );
    let p = pipeline();
    let events = |severity: &str| -> Vec<serde_json::Value> {
        (0..10)
            .map(|i| json!({"resource": format!("h{i}"), "check": "c", "summary": "s", "severity": severity}))
            .collect()
    };
    send(&*store, &p, events("warning")).await;
    send(&*store, &p, events("major")).await;
    send(&*store, &p, events("warning")).await;
    let page = store
        .alerts(&AlertQuery {
            limit: 100,
            ..AlertQuery::default()
        })
        .await
        .expect("alerts");
    assert_eq!(page.items.len(), 10, "one alert per fingerprint");
    assert!(
        page.items.iter().all(|a| a.count == 3),
        "every repeat landed on its alert"
    );
    // Resolving through the cache and the database alike.
    send(&*store, &p, events("ok")).await;
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.alerts_open, stats.alerts_resolved), (0, 10));
    // A restart with more alerts than the cache holds reads them as needed too.
    store.close().await;
    let store: Arc<dyn Store> = Arc::new(
        vakt_store::SqliteStore::open(&dir.path().join("data"))
            .await
            .expect("open")
            .with_alert_cache_max(3),
    );
    send(&*store, &p, events("critical")).await;
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        stats.alerts_open, 10,
        "reopened within the window, not new ones"
    );
    let page = store
        .alerts(&AlertQuery {
            limit: 100,
            ..AlertQuery::default()
        })
        .await
        .expect("alerts");
    assert_eq!(page.items.len(), 10);
    store.close().await;
}
