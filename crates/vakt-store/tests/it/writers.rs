//! Concurrent writers: one alert per fingerprint however many write, and each sees the others' changes.

use super::*;

async fn concurrent_writers_keep_one_alert_per_fingerprint(backend: &Backend) {
    // Two stores on one database stand for two vakt nodes (or two processes).
    let p = Arc::new(pipeline());
    let a = backend.open().await;
    let b = backend.open().await;
    let mut tasks = Vec::new();
    for store in [a.clone(), b.clone()] {
        let p = Arc::clone(&p);
        tasks.push(tokio::spawn(async move {
            for round in 0..10 {
                let events = (0..20)
                    .map(|i| json!({"resource": format!("node{}", (i + round) % 10), "check": "cpu", "summary": "hot", "severity": "major"}))
                    .collect();
                send(&*store, &p, events).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer finished");
    }
    let alerts = a
        .alerts(&AlertQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(alerts.items.len(), 10, "one alert per fingerprint");
    let total: i64 = alerts.items.iter().map(|a| a.count).sum();
    assert_eq!(total, 400, "every event counted exactly once");
    a.close().await;
    b.close().await;
}
story!(
    story_concurrent_writers_keep_one_alert_per_fingerprint,
    concurrent_writers_keep_one_alert_per_fingerprint
);

async fn writers_see_each_others_changes(backend: &Backend) {
    // The embedded store keeps alerts in memory; another writer's commits must still count.
    let p = pipeline();
    let a = backend.open().await;
    let b = backend.open().await;
    let id = send(&*a, &p, vec![disk(91.0)]).await[0]
        .record
        .alert_id
        .clone()
        .expect("opened");
    assert_eq!(
        send(&*b, &p, vec![disk(91.0)]).await[0]
            .record
            .alert_id
            .as_deref(),
        Some(id.as_str())
    );
    send(&*a, &p, vec![disk(91.0)]).await;
    let ask = OperatorRequest {
        action: OperatorAction::Ack,
        by: "bob".into(),
        comment: None,
    };
    b.operate(&pipeline(), &Default::default(), &id, &ask)
        .await
        .expect("ack through the other writer");
    send(&*a, &p, vec![disk(91.0)]).await;
    let alert = a.alert(&id).await.expect("read").expect("exists");
    assert_eq!(
        (alert.count, alert.status),
        (4, AlertStatus::Acknowledged),
        "{alert:?}"
    );
    a.close().await;
    b.close().await;
}
story!(
    story_writers_see_each_others_changes,
    writers_see_each_others_changes
);
