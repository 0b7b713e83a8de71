//! The storage story suite: every story runs against SQLite always and PostgreSQL when `VAKT_TEST_PG_URL` is set.

use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::json;
use vakt_core::alert::{OperatorAction, OperatorRequest};
use vakt_core::{AlertStatus, EventInput, Pipeline, PipelineConfig, Severity, TimelineKind};
use vakt_store::{AlertQuery, EventQuery, Location, OperateError, Store};

const RULES: &str = r#"
[alerts]
reopen_window_secs = 600

[[rules]]
name = "drop-noise"
when = 'check == "noise"'
drop = true

[[rules]]
name = "disk-full"
when = 'check == "disk" && metrics.used_pct >= 95.0'
category = "exception"
severity = "critical"
actions = ["page"]

[actions.page]
type = "notify"
channel = "email"
"#;

/// A database for one story, removed when the story passes.
struct Backend {
    location: Location,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Backend {
    async fn open(&self) -> Arc<dyn Store> {
        vakt_store::open(&self.location)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.location.describe()))
    }

    async fn cleanup(self) {
        if let Some((admin, name)) = self.pg {
            let pool = sqlx::PgPool::connect(&admin)
                .await
                .expect("admin connection");
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&pool)
                .await
                .expect("drop database");
        }
    }
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut all = vec![Backend {
        location: Location::SqliteDir(dir.path().join("data")),
        _dir: Some(dir),
        pg: None,
    }];
    match std::env::var("VAKT_TEST_PG_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!(
                "vakt_story_{}",
                ulid::Ulid::new().to_string().to_lowercase()
            );
            let pool = sqlx::PgPool::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("VAKT_TEST_PG_URL is set but unreachable: {e}"));
            let create = format!("CREATE DATABASE {name}");
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&pool)
                .await
                .expect("create database");
            let url = match admin.rsplit_once('/') {
                Some((base, _)) => format!("{base}/{name}"),
                None => panic!("VAKT_TEST_PG_URL needs a database path"),
            };
            all.push(Backend {
                location: Location::Postgres(url),
                _dir: None,
                pg: Some((admin, name)),
            });
        }
        _ => eprintln!(
            "\n*** SKIPPED the PostgreSQL half of the storage stories: VAKT_TEST_PG_URL is not set ***\n"
        ),
    }
    all
}

/// Declares a story that runs on every backend.
macro_rules! story {
    ($name:ident, $body:ident) => {
        #[tokio::test]
        async fn $name() {
            for backend in backends().await {
                eprintln!(
                    "story {} on {}",
                    stringify!($name),
                    backend.location.describe()
                );
                $body(&backend).await;
                backend.cleanup().await;
            }
        }
    };
}

// Stories in files of their own (declared after `story!`, which they use).
mod reopen;

fn pipeline() -> Pipeline {
    Pipeline::build(&PipelineConfig::from_toml(RULES).expect("parses")).expect("compiles")
}

fn event(value: serde_json::Value) -> EventInput {
    EventInput::from_json(0, value).expect("valid event")
}

async fn send(
    store: &dyn Store,
    pipeline: &Pipeline,
    events: Vec<serde_json::Value>,
) -> Vec<vakt_core::Correlated> {
    let now = Utc::now();
    let batch = events
        .into_iter()
        .map(|e| pipeline.prepare(event(e), "test", now))
        .collect();
    store
        .ingest(pipeline, &Default::default(), batch)
        .await
        .expect("ingest")
}

fn disk(pct: f64) -> serde_json::Value {
    json!({"resource": "db01", "check": "disk", "summary": format!("/var {pct}%"), "severity": "warning", "metrics": {"used_pct": pct}})
}

async fn an_alert_lives_and_is_kept(backend: &Backend) {
    let p = pipeline();
    let store = backend.open().await;
    let first = send(&*store, &p, vec![disk(91.0)]).await;
    let alert_id = first[0].record.alert_id.clone().expect("alert opened");
    send(&*store, &p, vec![disk(96.0), disk(97.0)]).await;

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

async fn silences_and_expiring_alerts_are_kept(backend: &Backend) {
    use vakt_core::matcher::MatcherSpec;
    use vakt_core::silence::{Silence, SilenceState};
    let p = pipeline();
    let store = backend.open().await;
    // Stored times keep milliseconds.
    let now = chrono::TimeZone::timestamp_millis_opt(&Utc, Utc::now().timestamp_millis())
        .single()
        .expect("now");
    let mut silence = Silence {
        id: "7c2e5e4a-0000-4000-8000-000000000001".into(),
        matchers: vec![MatcherSpec {
            name: "alertname".into(),
            value: "Disk.*".into(),
            is_regex: true,
            is_equal: true,
        }],
        starts_at: now - Duration::minutes(1),
        ends_at: now + Duration::hours(1),
        created_by: "alice".into(),
        comment: "disk swap".into(),
        updated_at: now,
    };
    store.put_silence(&silence).await.expect("create");
    assert_eq!(
        store.silence(&silence.id).await.expect("read").as_ref(),
        Some(&silence)
    );
    silence.expire(now);
    store.put_silence(&silence).await.expect("update");
    let all = store.silences().await.expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].state(now + Duration::seconds(1)),
        SilenceState::Expired
    );
    assert_eq!(store.silence("nope").await.expect("read"), None);

    // An event that says when its alert ends: due once that time passes, not before.
    let mut input =
        event(json!({"resource": "r", "check": "c", "summary": "firing", "severity": "major"}));
    input.expires_at = Some(now + Duration::seconds(30));
    let prepared = p.prepare(input, "test", now);
    let id = store
        .ingest(&p, &Default::default(), vec![prepared])
        .await
        .expect("ingest")[0]
        .record
        .alert_id
        .clone()
        .expect("alert");
    assert!(store.expired_alerts(now, 10).await.expect("due").is_empty());
    let due = store
        .expired_alerts(now + Duration::seconds(31), 10)
        .await
        .expect("due");
    assert_eq!(
        due.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    assert_eq!(
        due[0].expires_at.map(|t| t.timestamp()),
        Some((now + Duration::seconds(30)).timestamp())
    );
    store.close().await;
}
story!(
    story_silences_and_expiring_alerts_are_kept,
    silences_and_expiring_alerts_are_kept
);

const DISPATCH_RULES: &str = r#"
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["hook", "grouped"]

[actions.hook]
type = "webhook"
url = "http://127.0.0.1:9/hook"

[actions.grouped]
type = "notify"
channel = "chat"
group_by = ["service"]
"#;

fn finish(
    record: &vakt_store::ActionRecord,
    outcome: &str,
    next: vakt_store::Next,
) -> vakt_store::Finish {
    let now = Utc::now();
    vakt_store::Finish {
        attempt: vakt_store::Attempt {
            id: ulid::Ulid::new().to_string(),
            action_id: record.decided.id.clone(),
            attempt: record.attempts,
            started_at: now,
            finished_at: now,
            outcome: outcome.to_owned(),
            detail: format!("test {outcome}"),
            output: Some(json!({"status": 200})),
        },
        next,
        timeline: format!("attempt {outcome}"),
    }
}

/// The outbox: decided actions are claimed once, finished with their attempts, retried,
/// taken back after a dead dispatcher, and grouped ones come out as whole groups.
async fn decided_actions_are_dispatched_exactly_once(backend: &Backend) {
    use vakt_store::{ActionQuery, ActionStatus, Next};
    let p = Pipeline::build(&PipelineConfig::from_toml(DISPATCH_RULES).expect("parses"))
        .expect("compiles");
    let store = backend.open().await;
    let events: Vec<serde_json::Value> = (0..40)
        .map(|i| json!({"resource": format!("h{i}"), "check": "c", "summary": "s", "severity": "critical", "service": format!("svc{}", i % 2)}))
        .collect();
    send(&*store, &p, events).await;
    let now = Utc::now();
    let lease = now + Duration::seconds(60);

    // Four dispatchers claim at once: each webhook action goes to exactly one of them.
    let mut claims = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        claims.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_actions(Utc::now(), lease, 3)
                    .await
                    .expect("claim");
                if got.is_empty() {
                    break;
                }
                mine.extend(got);
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for claim in claims {
        claimed.extend(claim.await.expect("claimer"));
    }
    let mut ids: Vec<&str> = claimed.iter().map(|r| r.decided.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every ungrouped action claimed once");
    assert_eq!(claimed.len(), 40, "and only once");
    assert!(
        claimed
            .iter()
            .all(|r| r.status == ActionStatus::Running && r.attempts == 1)
    );
    assert!(claimed.iter().all(|r| &*r.decided.action == "hook"));

    // Finish: one succeeds, one is retried later, one gives up.
    store
        .finish_action(
            &claimed[0],
            &finish(
                &claimed[0],
                "succeeded",
                Next::Done(ActionStatus::Succeeded),
            ),
        )
        .await
        .expect("finish");
    let later = now + Duration::seconds(30);
    store
        .finish_action(
            &claimed[1],
            &finish(&claimed[1], "failed", Next::Retry(later)),
        )
        .await
        .expect("finish");
    store
        .finish_action(
            &claimed[2],
            &finish(&claimed[2], "failed", Next::Done(ActionStatus::Failed)),
        )
        .await
        .expect("finish");
    let (record, attempts) = store
        .action(&claimed[0].decided.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(record.status, ActionStatus::Succeeded);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].output, Some(json!({"status": 200})));
    assert_eq!(
        store
            .last_success("hook", &record.decided.alert_id)
            .await
            .expect("last")
            .map(|t| t.timestamp_millis()),
        Some(attempts[0].finished_at.timestamp_millis())
    );
    // The retry is not due before its time, and is after.
    assert!(
        store
            .claim_actions(now, lease, 100)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store.claim_actions(later, lease, 100).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].decided.id, claimed[1].decided.id);
    assert_eq!(again[0].attempts, 2);

    // A failed action can be retried by a person; a succeeded one cannot.
    let retried = store
        .retry_action(&claimed[2].decided.id, "alice", now)
        .await
        .expect("retry");
    assert_eq!(retried.map(|r| r.status), Some(ActionStatus::Pending));
    assert!(
        store
            .retry_action(&claimed[0].decided.id, "alice", now)
            .await
            .expect("retry")
            .is_none()
    );

    // A dispatcher that died: its leases run out, the actions come back, interrupted.
    let recovered = store
        .recover_actions(lease + Duration::seconds(1), later)
        .await
        .expect("recover");
    assert_eq!(recovered.len(), 38, "everything still running");
    assert!(recovered.iter().all(|r| r.status == ActionStatus::Pending));
    let (_, attempts) = store
        .action(&recovered[0].decided.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        attempts.last().map(|a| a.outcome.as_str()),
        Some("interrupted")
    );
    let page = store
        .actions(&ActionQuery {
            status: Some(ActionStatus::Pending),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(
        page.items
            .iter()
            .filter(|r| &*r.decided.action == "hook")
            .count(),
        39
    );

    // Groups: two services, twenty members each, claimed whole and noted as sent.
    let heads = store.group_heads(100).await.expect("heads");
    assert_eq!(heads.len(), 2);
    assert!(
        heads
            .iter()
            .all(|h| h.pending == 20 && h.last_sent_at.is_none())
    );
    let members = store
        .claim_group(&heads[0].group_key, now, lease, 1000)
        .await
        .expect("group");
    assert_eq!(members.len(), 20);
    let heads = store.group_heads(100).await.expect("heads");
    assert_eq!(
        heads.len(),
        1,
        "the claimed group has no pending member left"
    );
    store.close().await;
}
story!(
    story_decided_actions_are_dispatched_exactly_once,
    decided_actions_are_dispatched_exactly_once
);

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

async fn throttle_windows_are_kept_and_forgotten(backend: &Backend) {
    let store = backend.open().await;
    store
        .put_throttle("[\"chat\",[]]", Some("{\"sent\":[],\"held\":[\"a\"]}"))
        .await
        .expect("put");
    store
        .put_throttle(
            "[\"chat\",[]]",
            Some("{\"sent\":[],\"held\":[\"a\",\"b\"]}"),
        )
        .await
        .expect("replace");
    store
        .put_throttle("[\"mail\",[\"x\"]]", Some("{}"))
        .await
        .expect("put another");
    store.close().await;
    let store = backend.open().await;
    let kept = store.throttles().await.expect("read");
    assert_eq!(
        kept,
        [
            (
                "[\"chat\",[]]".to_owned(),
                "{\"sent\":[],\"held\":[\"a\",\"b\"]}".to_owned()
            ),
            ("[\"mail\",[\"x\"]]".to_owned(), "{}".to_owned()),
        ]
    );
    store
        .put_throttle("[\"mail\",[\"x\"]]", None)
        .await
        .expect("forget");
    assert_eq!(store.throttles().await.expect("read").len(), 1);
    store.close().await;
}
story!(
    story_throttle_windows_are_kept_and_forgotten,
    throttle_windows_are_kept_and_forgotten
);
