//! The outbox: decided actions claimed once, finished with their attempts, retried, taken back, grouped.

use super::*;

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
    assert!(heads.iter().all(|h| h.last_sent_at.is_none()));
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
