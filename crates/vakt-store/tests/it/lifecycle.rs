//! Stories of one alert's life: events open, repeat and resolve it and operators move it; everything is kept.

use super::*;

async fn an_alert_lives_and_is_kept(backend: &Backend) {
    let p = pipeline();
    let store = backend.open().await;
    let first = send(&*store, &p, vec![disk(91.0)]).await;
    let alert_id = first[0].record.alert_id.clone().expect("alert opened");
    let second = send(&*store, &p, vec![disk(96.0), disk(97.0)]).await;

    let alert = store.alert(&alert_id).await.expect("read").expect("exists");
    assert_eq!(alert.count, 3);
    assert_eq!(
        alert.severity,
        Severity::Critical,
        "rule raised the severity"
    );
    assert_eq!(alert.status, AlertStatus::Open);

    let ok = send(
        &*store,
        &p,
        vec![json!({"resource": "db01", "check": "disk", "summary": "fine", "severity": "ok"})],
    )
    .await;
    // What the pipeline said about its decisions, to compare with what is read back.
    let said: Vec<TimelineEntry> = [&first, &second, &ok]
        .into_iter()
        .flatten()
        .flat_map(|o| o.timeline.clone())
        .filter(|t| t.kind == TimelineKind::ActionDecided)
        .collect();
    assert_eq!(ok[0].record.alert_id.as_deref(), Some(alert_id.as_str()));
    store.close().await;

    // A fresh connection sees everything: the commit was durable.
    let store = backend.open().await;
    let alert = store.alert(&alert_id).await.expect("read").expect("exists");
    assert_eq!(alert.status, AlertStatus::Resolved);
    assert_eq!(alert.severity_max, Severity::Critical);
    let kinds: Vec<TimelineKind> = store
        .timeline(&alert_id)
        .await
        .expect("timeline")
        .iter()
        .map(|t| t.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            TimelineKind::Opened,
            TimelineKind::SeverityChanged,
            TimelineKind::ActionDecided,
            TimelineKind::Resolved,
            // The notification that ran announces the resolution.
            TimelineKind::ActionDecided
        ]
    );
    // A decision's line is given back from its decided action, not stored twice: it says
    // what the pipeline's own line said, of the same event.
    let read_back = store.timeline(&alert_id).await.expect("timeline");
    let of_kind = |lines: &[TimelineEntry], kind: TimelineKind| -> Vec<TimelineEntry> {
        lines.iter().filter(|t| t.kind == kind).cloned().collect()
    };
    let decisions = of_kind(&read_back, TimelineKind::ActionDecided);
    let what = |lines: &[TimelineEntry]| -> Vec<(String, Option<String>, String, String)> {
        lines
            .iter()
            .map(|t| {
                (
                    t.message.clone(),
                    t.event_id.clone(),
                    t.by.clone(),
                    t.alert_id.clone(),
                )
            })
            .collect()
    };
    assert_eq!(what(&decisions), what(&said));
    // The opening line is given back from the alert's row, as the pipeline said it.
    let opened = of_kind(&read_back, TimelineKind::Opened);
    let opened_said = of_kind(&first[0].timeline, TimelineKind::Opened);
    assert_eq!(what(&opened), what(&opened_said));
    assert_eq!(
        opened[0].at.timestamp_millis(),
        opened_said[0].at.timestamp_millis()
    );
    assert!(
        decisions[0]
            .message
            .starts_with("action page (notify, trigger) decided: "),
        "{decisions:?}"
    );
    let events = store.alert_events(&alert_id, 10).await.expect("events");
    assert_eq!(events.len(), 4);
    assert_eq!(events[0].event.severity, Severity::Ok, "newest first");
    assert_eq!(events[3].trace.len(), 6, "every stage traced");
    let actions = store.alert_actions(&alert_id).await.expect("actions");
    assert_eq!(actions.len(), 2);
    assert_eq!(&*actions[0].decided.action, "page");
    assert_eq!(actions[0].status, vakt_store::ActionStatus::Pending);
    assert_eq!(
        actions[1].decided.purpose,
        vakt_core::pipeline::Purpose::Resolved
    );
    assert_eq!(alert.handling.actions, ["page"]);
    let stored = store
        .event(&events[3].id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored, events[3]);
    // Several at once: each once, in the order asked, unknown ids left out.
    let by_id = store
        .events_by_id(&[&events[0].id, "no-such-event", &events[3].id, &events[0].id])
        .await
        .expect("events by id");
    let ids: Vec<&str> = by_id.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [events[0].id.as_str(), events[3].id.as_str()]);
    assert_eq!(by_id[1], events[3]);
    store.close().await;
}
story!(story_an_alert_lives_and_is_kept, an_alert_lives_and_is_kept);

async fn operators_move_alerts(backend: &Backend) {
    let p = pipeline();
    let store = backend.open().await;
    // Every optional column set, so a read that swaps two of them shows it.
    let disk = |pct| {
        let mut event = disk(pct);
        event["service"] = json!("storage");
        event["environment"] = json!("prod");
        event
    };
    let id = send(&*store, &p, vec![disk(91.0)]).await[0]
        .record
        .alert_id
        .clone()
        .expect("opened");
    let ask = |action| OperatorRequest {
        action,
        by: "alice".into(),
        comment: Some("looking".into()),
    };
    let acked = store
        .operate(
            &pipeline(),
            &Default::default(),
            &id,
            &ask(OperatorAction::Ack),
        )
        .await
        .expect("ack");
    assert_eq!(acked.status, AlertStatus::Acknowledged);
    // A list read by id (SQLite reads it in place) gives the alert as read alone.
    assert_eq!(
        store.alerts_by_id(&[id.as_str()]).await.expect("by id"),
        vec![store.alert(&id).await.expect("read").expect("exists")],
    );
    assert!(matches!(
        store
            .operate(
                &pipeline(),
                &Default::default(),
                &id,
                &ask(OperatorAction::Ack)
            )
            .await,
        Err(OperateError::Refused(_))
    ));

    send(&*store, &p, vec![disk(92.0)]).await;
    let alert = store.alert(&id).await.expect("read").expect("exists");
    assert_eq!(
        (alert.status, alert.count),
        (AlertStatus::Acknowledged, 2),
        "ack survives repeats"
    );

    store
        .operate(
            &pipeline(),
            &Default::default(),
            &id,
            &ask(OperatorAction::Assign {
                assignee: Some("bob".into()),
            }),
        )
        .await
        .expect("assign");
    store
        .operate(
            &pipeline(),
            &Default::default(),
            &id,
            &ask(OperatorAction::Comment),
        )
        .await
        .expect("comment");
    store
        .operate(
            &pipeline(),
            &Default::default(),
            &id,
            &ask(OperatorAction::Unack),
        )
        .await
        .expect("unack");
    let resolved = store
        .operate(
            &pipeline(),
            &Default::default(),
            &id,
            &ask(OperatorAction::Resolve),
        )
        .await
        .expect("resolve");
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.assignee.as_deref(), Some("bob"));
    // A list read by id (SQLite reads it in place) gives the alert as read alone.
    assert_eq!(
        store.alerts_by_id(&[id.as_str()]).await.expect("by id"),
        vec![store.alert(&id).await.expect("read").expect("exists")],
    );
    assert!(matches!(
        store
            .operate(
                &pipeline(),
                &Default::default(),
                "nope",
                &ask(OperatorAction::Ack)
            )
            .await,
        Err(OperateError::NotFound(_))
    ));

    let timeline = store.timeline(&id).await.expect("timeline");
    let people: Vec<(&str, TimelineKind)> = timeline
        .iter()
        .filter(|t| t.by == "alice")
        .map(|t| (t.message.as_str(), t.kind))
        .collect();
    assert_eq!(people.len(), 5, "{people:?}");
    assert_eq!(
        people[0],
        ("acknowledged by alice: looking", TimelineKind::Acknowledged)
    );

    // Within the reopen window a new problem reopens the resolved alert.
    let again = send(&*store, &p, vec![disk(93.0)]).await;
    assert_eq!(again[0].record.alert_id.as_deref(), Some(id.as_str()));
    let alert = store.alert(&id).await.expect("read").expect("exists");
    assert_eq!(
        (alert.status, alert.acknowledged_by),
        (AlertStatus::Open, None)
    );
    store.close().await;
}
story!(story_operators_move_alerts, operators_move_alerts);
