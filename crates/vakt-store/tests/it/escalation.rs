//! Escalations and incidents: steps fire once, incidents open and join, ITSM sync.

use super::*;

const ESCALATION_RULES: &str = r#"
[incidents]
correlate_by = "service"

[[escalation_policies]]
name = "p"
[[escalation_policies.steps]]
notify = [{ user = "a" }]
[[escalation_policies.steps]]
after_secs = 60
notify = [{ user = "b" }]
incident = true

[[rules]]
name = "page"
when = 'severity == "critical"'
escalate = "p"
[[rules]]
name = "open"
when = 'severity == "major"'
incident = true
impact = 1
"#;

/// Escalations: started by ingest, claimed once among concurrent claimers, fired guarded by
/// position, paused by an ack, resumed by an un-ack, ended by a resolve. Incidents: opened,
/// joined by correlation, changed by the status rules.
async fn escalations_and_incidents(backend: &Backend) {
    use vakt_core::escalation::Position;
    use vakt_core::incident::IncidentStatus;
    use vakt_store::{EscalationStatus, Fire, IncidentChange, IncidentQuery};
    let p = Pipeline::build(&PipelineConfig::from_toml(ESCALATION_RULES).expect("parses"))
        .expect("compiles");
    let store = backend.open().await;
    let events: Vec<serde_json::Value> = (0..10)
        .map(|i| json!({"resource": format!("h{i}"), "check": "c", "summary": "s", "severity": "critical", "service": "web"}))
        .collect();
    send(&*store, &p, events).await;
    let active = store
        .escalations(Some(EscalationStatus::Active), 100)
        .await
        .expect("list");
    assert_eq!(active.len(), 10);

    // Four claimers at once: each due escalation goes to exactly one.
    let lease = Utc::now() + Duration::seconds(60);
    let mut claims = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        claims.push(tokio::spawn(async move {
            store
                .claim_escalations(Utc::now() + Duration::seconds(1), lease, 100)
                .await
                .expect("claim")
        }));
    }
    let mut claimed = Vec::new();
    for claim in claims {
        claimed.extend(claim.await.expect("join"));
    }
    assert_eq!(claimed.len(), 10, "each claimed once");
    let again = store
        .claim_escalations(Utc::now() + Duration::seconds(1), lease, 100)
        .await
        .expect("claim");
    assert!(again.is_empty(), "leased ones are not claimed again");

    // Firing moves the position once; a second fire of the same claim writes nothing.
    let first = claimed[0].clone();
    let now = Utc::now();
    let fire = Fire {
        claimed: first.clone(),
        pages: Vec::new(),
        timeline: Vec::new(),
        next: Ok((Position { step: 1, round: 0 }, now + Duration::seconds(60))),
        incident: Some(vakt_core::incident::Ask {
            alert_id: first.alert_id.clone(),
            by: "escalation p step 2".into(),
            impact: None,
            urgency: None,
        }),
        now,
    };
    assert!(store.fire_escalation(&p, &fire).await.expect("fire"));
    assert!(!store.fire_escalation(&p, &fire).await.expect("fire again"));
    let moved = store
        .escalation(&first.alert_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((moved.step, moved.fired, moved.lease_until), (1, 1, None));
    let alert = store
        .alert(&first.alert_id)
        .await
        .expect("alert")
        .expect("exists");
    let incident_id = alert
        .incident_id
        .clone()
        .expect("the step opened an incident");

    // Ack pauses with the rest of the wait kept; un-ack resumes; resolve ends.
    let by = |action| OperatorRequest {
        action,
        by: "ann".into(),
        comment: None,
    };
    store
        .operate(
            &p,
            &Default::default(),
            &first.alert_id,
            &by(OperatorAction::Ack),
        )
        .await
        .expect("ack");
    let paused = store
        .escalation(&first.alert_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(paused.status, EscalationStatus::Paused);
    assert!(
        paused
            .remaining_ms
            .is_some_and(|r| r > 50_000 && r <= 60_000),
        "{paused:?}"
    );
    store
        .operate(
            &p,
            &Default::default(),
            &first.alert_id,
            &by(OperatorAction::Unack),
        )
        .await
        .expect("unack");
    let resumed = store
        .escalation(&first.alert_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(resumed.status, EscalationStatus::Active);
    assert!(
        resumed
            .due_at
            .is_some_and(|d| d > Utc::now() + Duration::seconds(50))
    );
    store
        .operate(
            &p,
            &Default::default(),
            &first.alert_id,
            &by(OperatorAction::Resolve),
        )
        .await
        .expect("resolve");
    let ended = store
        .escalation(&first.alert_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(ended.status, EscalationStatus::Done);
    let kinds: Vec<String> = store
        .timeline(&first.alert_id)
        .await
        .expect("timeline")
        .iter()
        .filter(|t| t.kind == TimelineKind::Escalation || t.kind == TimelineKind::Incident)
        .map(|t| t.message.clone())
        .collect();
    assert_eq!(kinds.len(), 5, "{kinds:#?}");

    // Rule-opened incidents of one service join one; priority follows the matrix.
    let events: Vec<serde_json::Value> = (0..5)
        .map(|i| json!({"resource": format!("db{i}"), "check": "c", "summary": "s", "severity": "major", "service": "db"}))
        .collect();
    send(&*store, &p, events).await;
    let page = store
        .incidents(&IncidentQuery {
            correlation_key: Some("service=db".into()),
            limit: 10,
            ..IncidentQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    let db = &page.items[0];
    assert_eq!(
        (db.alert_count, db.impact, db.urgency, db.priority),
        (5, 1, 2, 2)
    );
    assert_ne!(db.id, incident_id);
    let refused = store
        .update_incident(
            &p,
            &db.number,
            &IncidentChange {
                status: Some(IncidentStatus::Closed),
                by: "ann".into(),
                ..IncidentChange::default()
            },
        )
        .await;
    assert!(matches!(
        refused,
        Err(vakt_store::IncidentError::Refused(_))
    ));
    let resolved = store
        .update_incident(
            &p,
            &db.number,
            &IncidentChange {
                status: Some(IncidentStatus::Resolved),
                resolution: Some("failover".into()),
                by: "ann".into(),
                ..IncidentChange::default()
            },
        )
        .await
        .expect("resolve");
    assert_eq!(resolved.status, IncidentStatus::Resolved);
    let (detail, timeline) = store.incident(&db.id).await.expect("get").expect("exists");
    assert_eq!(detail.alerts.len(), 5);
    assert!(
        timeline
            .iter()
            .any(|e| e.message == "new -> resolved by ann: failover"),
        "{timeline:#?}"
    );
    // Version bookkeeping for the ITSM sync: claimed once, then synced.
    let syncs = store
        .claim_incident_syncs(Utc::now(), Utc::now() + Duration::seconds(60), 10)
        .await
        .expect("claim syncs");
    assert_eq!(syncs.len(), 2);
    for (incident, version) in &syncs {
        store
            .finish_incident_sync(
                &incident.id,
                *version,
                &vakt_store::SyncResult::Synced {
                    external_id: format!("X-{}", incident.number),
                    external_url: None,
                },
            )
            .await
            .expect("finish");
    }
    assert_eq!(
        store
            .incident_by_external(&format!("X-{}", db.number))
            .await
            .expect("by external"),
        Some(db.id.clone())
    );
    let none = store
        .claim_incident_syncs(Utc::now(), Utc::now() + Duration::seconds(60), 10)
        .await
        .expect("claim syncs");
    assert!(none.is_empty());

    // Four writers at once (nodes, on PostgreSQL) with the first alerts of a new service:
    // one incident, every alert linked, numbers unique.
    let mut writers = Vec::new();
    for w in 0..4 {
        let (store, p) = (
            Arc::clone(&store),
            Pipeline::build(&PipelineConfig::from_toml(ESCALATION_RULES).expect("parses"))
                .expect("compiles"),
        );
        writers.push(tokio::spawn(async move {
            let events: Vec<serde_json::Value> = (0..5)
                .map(|i| json!({"resource": format!("b{w}-{i}"), "check": "c", "summary": "s", "severity": "major", "service": "burst"}))
                .collect();
            send(&*store, &p, events).await;
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let burst = store
        .incidents(&IncidentQuery {
            correlation_key: Some("service=burst".into()),
            limit: 10,
            ..IncidentQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(burst.items.len(), 1, "{:?}", burst.items);
    assert_eq!(burst.items[0].alert_count, 20);
    store.close().await;
}

story!(story_escalations_and_incidents, escalations_and_incidents);

/// What reports read: the pages escalation steps decided (with their target, in time
/// order, within the period only) and the alerts that re-opened.
async fn reports_read_pages_and_reopens(backend: &Backend) {
    use vakt_core::escalation::{Page, Position, Via};
    use vakt_store::Fire;
    let config = format!("[alerts]\nreopen_window_secs = 600\n{ESCALATION_RULES}");
    let p =
        Pipeline::build(&PipelineConfig::from_toml(&config).expect("parses")).expect("compiles");
    let store = backend.open().await;
    let start = Utc::now();
    send(
        &*store,
        &p,
        vec![json!({"resource": "h", "check": "c", "summary": "s", "severity": "critical"})],
    )
    .await;
    let claimed = store
        .claim_escalations(
            start + Duration::seconds(5),
            start + Duration::seconds(60),
            10,
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let escalation = claimed[0].clone();
    let page = |user: &str, at| vakt_core::pipeline::DecidedAction {
        id: vakt_store::new_id(),
        action: "escalation:p".into(),
        kind: "notify",
        alert_id: escalation.alert_id.clone(),
        event_id: String::new(),
        purpose: vakt_core::pipeline::Purpose::Escalation,
        reason: "step 1".into(),
        suppressed_by: None,
        group_key: None,
        decided_at: at,
        target: Some(Box::new(Page {
            policy: "p".into(),
            step: 1,
            round: 0,
            user: Some(user.to_owned()),
            via: Via::Phone {
                url: "http://127.0.0.1:9/".into(),
            },
        })),
    };
    let fire = Fire {
        claimed: escalation.clone(),
        pages: vec![
            page("a", start + Duration::seconds(1)),
            page("b", start + Duration::seconds(1)),
        ],
        timeline: Vec::new(),
        next: Ok((
            Position { step: 1, round: 0 },
            start + Duration::seconds(60),
        )),
        incident: None,
        now: start + Duration::seconds(1),
    };
    assert!(store.fire_escalation(&p, &fire).await.expect("fire"));
    let pages = store
        .report_pages(start, start + Duration::seconds(10))
        .await
        .expect("pages");
    let mut who: Vec<(&str, u32)> = pages
        .iter()
        .map(|s| (s.page.user.as_deref().unwrap_or(""), s.page.step))
        .collect();
    who.sort();
    assert_eq!(who, [("a", 1), ("b", 1)]);
    assert_eq!(pages[0].alert_id, escalation.alert_id);
    assert_eq!(pages[0].status, vakt_store::ActionStatus::Pending);
    assert!(
        store
            .report_pages(start + Duration::seconds(2), start + Duration::seconds(10))
            .await
            .expect("pages")
            .is_empty(),
        "pages before the period are not in it"
    );

    // Resolve and come back, twice.
    for severity in ["ok", "critical", "ok", "critical"] {
        send(
            &*store,
            &p,
            vec![json!({"resource": "h", "check": "c", "summary": "s", "severity": severity})],
        )
        .await;
    }
    let reopens = store
        .reopens(start, Utc::now() + Duration::seconds(1), 5)
        .await
        .expect("reopens");
    assert_eq!((reopens.reopens, reopens.alerts), (2, 1));
    assert_eq!(reopens.top, [(escalation.alert_id.clone(), 2)]);
    let none = store
        .reopens(start - Duration::hours(1), start, 5)
        .await
        .expect("reopens");
    assert_eq!((none.reopens, none.alerts, none.top.len()), (0, 0, 0));
    store.close().await;
}
story!(
    story_reports_read_pages_and_reopens,
    reports_read_pages_and_reopens
);
