//! Listing events and alerts: every filter and the cursor pagination.

use super::*;

async fn lists_filter_and_paginate(backend: &Backend) {
    let p = pipeline();
    let store = backend.open().await;
    let events: Vec<_> = (0..25)
        .map(|i| json!({"resource": format!("host{i:02}"), "check": "ping", "summary": "down", "severity": if i % 5 == 0 { "critical" } else { "minor" }}))
        .chain([json!({"resource": "x", "check": "noise", "summary": "chatter"})])
        .collect();
    send(&*store, &p, events).await;

    let mut query = AlertQuery {
        limit: 10,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.alerts(&query).await.expect("list");
        seen.extend(page.items.iter().map(|a| a.resource.clone()));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "no alert twice across pages");

    // Many alerts by id in one call: each once, in the order first asked, unknown ids left out.
    let all = store
        .alerts(&AlertQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .expect("list")
        .items;
    let ids: Vec<&str> = [
        all[3].id.as_str(),
        "no-such-alert",
        all[0].id.as_str(),
        all[3].id.as_str(),
    ]
    .into_iter()
    .chain(all.iter().skip(10).map(|a| a.id.as_str()))
    .collect();
    let by_id = store.alerts_by_id(&ids).await.expect("by id");
    let got: Vec<&str> = by_id.iter().map(|a| a.id.as_str()).collect();
    let expected: Vec<&str> = [all[3].id.as_str(), all[0].id.as_str()]
        .into_iter()
        .chain(all.iter().skip(10).map(|a| a.id.as_str()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(by_id[0].resource, all[3].resource, "whole alerts come back");
    assert!(store.alerts_by_id(&[]).await.expect("none").is_empty());

    let critical = store
        .alerts(&AlertQuery {
            severity: Some(Severity::Critical),
            limit: 50,
            ..Default::default()
        })
        .await
        .expect("filter");
    assert_eq!(critical.items.len(), 5);
    let host = store
        .alerts(&AlertQuery {
            resource: Some("host07".into()),
            status: vec![AlertStatus::Open],
            limit: 50,
            ..Default::default()
        })
        .await
        .expect("filter");
    assert_eq!(host.items.len(), 1);

    let dropped = store
        .events(&EventQuery {
            dropped: Some(true),
            limit: 50,
            ..Default::default()
        })
        .await
        .expect("events");
    assert_eq!(dropped.items.len(), 1, "dropped events are kept, not lost");
    assert!(dropped.items[0].trace[1].reason.contains("drop-noise"));
    let recent = store
        .events(&EventQuery {
            since: Some(Utc::now() - Duration::minutes(1)),
            check: Some("ping".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .expect("events");
    assert_eq!(recent.items.len(), 5);
    assert!(recent.next_cursor.is_some());
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.alerts_open, 25);
    store.close().await;
}
story!(story_lists_filter_and_paginate, lists_filter_and_paginate);

/// A replay reads every event of a range once, oldest first, page by page, with what the
/// rules changed as it arrived (`received`).
async fn replays_read_events_in_order(backend: &Backend) {
    let p = Pipeline::build(
        &PipelineConfig::from_toml(
            r#"
[[rules]]
name = "disk"
when = 'check == "disk"'
severity = "critical"
labels = { team = "storage" }
"#,
        )
        .expect("parses"),
    )
    .expect("compiles");
    let store = backend.open().await;
    let before = Utc::now() - Duration::seconds(1);
    for round in 0..3 {
        let events = (0..10)
            .map(|i| json!({"resource": format!("h{round}-{i}"), "check": if i % 2 == 0 { "disk" } else { "cpu" }, "summary": "s", "severity": "minor", "labels": {"team": "web"}}))
            .collect();
        send(&*store, &p, events).await;
    }
    let after = Utc::now() + Duration::seconds(1);
    assert_eq!(
        store
            .count_replay_events(Some(before), Some(after))
            .await
            .expect("count"),
        30
    );
    let mut seen: Vec<vakt_core::pipeline::EventRecord> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .replay_events(Some(before), Some(after), cursor.as_deref(), 7)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        cursor = page.last().map(|e| e.id.clone());
        seen.extend(page);
    }
    assert_eq!(seen.len(), 30);
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(seen[0].event.resource, "h0-0");
    let disk = &seen[0];
    assert_eq!(disk.event.severity, vakt_core::Severity::Critical);
    let received = disk.received.as_ref().expect("the rule changed it");
    assert_eq!(received.severity, Some(vakt_core::Severity::Minor));
    assert_eq!(
        received.labels.get("team"),
        Some(&Some("web".to_owned())),
        "the label as it came"
    );
    assert_eq!(seen[1].received, None, "cpu: no rule changed it");
    // A range before the events holds none.
    assert_eq!(
        store
            .count_replay_events(None, Some(before))
            .await
            .expect("count"),
        0
    );
    store.close().await;
}
story!(
    story_replays_read_events_in_order,
    replays_read_events_in_order
);
