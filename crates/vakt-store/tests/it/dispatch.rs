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
            id: vakt_store::new_id(),
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

/// An action as stored, with its attempts; it must exist.
async fn stored_action(
    store: &dyn vakt_store::Store,
    id: &str,
) -> (vakt_store::ActionRecord, Vec<vakt_store::Attempt>) {
    store.action(id).await.expect("read").expect("exists")
}

/// The groups that have pending members, by key, oldest first.
async fn pending_groups(store: &dyn vakt_store::Store) -> Vec<String> {
    let heads = store.group_heads(100).await.expect("heads");
    heads.into_iter().map(|h| h.group_key).collect()
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

    // Listed by status: exactly the actions in it, newest first, whichever index (or none)
    // the store walks for it (SQLite indexes only the unusual statuses: schema 22).
    let all = store
        .actions(&ActionQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list");
    for status in ActionStatus::ALL {
        let listed = store
            .actions(&ActionQuery {
                status: Some(status),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("list");
        let ids = |records: &mut dyn Iterator<Item = &vakt_store::ActionRecord>| -> Vec<String> {
            records.map(|r| r.decided.id.clone()).collect()
        };
        assert_eq!(
            ids(&mut listed.items.iter()),
            ids(&mut all.items.iter().filter(|r| r.status == status)),
            "{status:?}"
        );
    }
    assert!(
        [
            ActionStatus::Pending,
            ActionStatus::Running,
            ActionStatus::Succeeded,
            ActionStatus::Failed
        ]
        .iter()
        .all(|s| all.items.iter().any(|r| r.status == *s)),
        "the usual and the unusual statuses are both listed"
    );

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
    let keys: Vec<&str> = heads.iter().map(|h| h.group_key.as_str()).collect();
    // A budget smaller than the first group: the first is claimed anyway, the second not.
    let whole = store
        .claim_groups(&keys, now, lease, 1000, 5)
        .await
        .expect("groups");
    assert_eq!(whole.len(), 1, "no second group once the budget is spent");
    assert_eq!(whole[0].len(), 20);
    assert!(whole[0].iter().all(|m| {
        m.status == ActionStatus::Running
            && m.decided.group_key.as_deref() == Some(keys[0])
            && m.lease_until.is_some()
    }));
    assert_eq!(
        pending_groups(&*store).await,
        [keys[1]],
        "the claimed group has no pending member left; the other waits"
    );
    // Two groups at once, at most 8 of each: the rest of each stays pending.
    let claimed = store
        .claim_groups(&keys, now, lease, 8, 1000)
        .await
        .expect("groups");
    assert_eq!(
        claimed.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![0, 8],
        "the first group had none left, the second gave up to its limit"
    );
    let left = store.group_heads(100).await.expect("heads");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].group_key, keys[1]);
    assert_eq!(
        left[0].last_sent_at.map(|t| t.timestamp_millis()),
        Some(now.timestamp_millis()),
        "a group that sent keeps pending members and its send time"
    );
    let second = &claimed[1];
    // No claim takes a claimed member again, however the store keeps the claim.
    let again = store
        .claim_groups(&keys[1..], now, lease, 1000, 1000)
        .await
        .expect("groups");
    assert_eq!(again[0].len(), 12, "only the members not yet claimed");
    assert!(
        again[0]
            .iter()
            .all(|m| !second.iter().any(|s| s.decided.id == m.decided.id))
    );
    // The first group's message and the second's last twelve are recorded: each member
    // succeeded on its first attempt.
    let members: Vec<(vakt_store::ActionRecord, vakt_store::Finish)> = whole[0]
        .iter()
        .chain(&again[0])
        .map(|m| {
            (
                m.clone(),
                finish(m, "succeeded", Next::Done(ActionStatus::Succeeded)),
            )
        })
        .collect();
    store.finish_actions(&members).await.expect("finish");
    for (member, _) in &members {
        let (record, attempts) = stored_action(&*store, &member.decided.id).await;
        assert_eq!(record.status, ActionStatus::Succeeded);
        assert_eq!(record.attempts, 1, "the claim's attempt is counted once");
        assert_eq!(attempts.len(), 1);
    }
    // The 8 claimed before are never recorded: once their lease runs out they are taken
    // back, pending with an interrupted attempt, and their group is pending again.
    let recovered = store
        .recover_actions(lease + Duration::seconds(1), later)
        .await
        .expect("recover");
    let mut back: Vec<&str> = recovered
        .iter()
        .filter(|r| &*r.decided.action == "grouped")
        .map(|r| r.decided.id.as_str())
        .collect();
    back.sort_unstable();
    let mut expected: Vec<&str> = second.iter().map(|m| m.decided.id.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(back, expected, "exactly the unrecorded members");
    for member in second {
        let (record, attempts) = store
            .action(&member.decided.id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(record.status, ActionStatus::Pending);
        assert_eq!(record.attempts, 1);
        assert_eq!(
            attempts
                .iter()
                .map(|a| a.outcome.as_str())
                .collect::<Vec<_>>(),
            ["interrupted"]
        );
    }
    assert_eq!(
        pending_groups(&*store).await,
        [keys[1]],
        "the taken-back members make their group pending again"
    );
    // Their old claim's late record moves nothing; a new claim takes them on attempt 2.
    let late: Vec<_> = second
        .iter()
        .map(|m| {
            (
                m.clone(),
                finish(m, "succeeded", Next::Done(ActionStatus::Succeeded)),
            )
        })
        .collect();
    store.finish_actions(&late).await.expect("finish");
    let (record, _) = store
        .action(&second[0].decided.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        record.status,
        ActionStatus::Pending,
        "a late record moves nothing"
    );
    // A claim with no room takes nothing and leaves the group pending.
    let none = store
        .claim_groups(&keys[1..], later, later + Duration::seconds(60), 0, 1000)
        .await
        .expect("groups");
    assert!(none.iter().all(Vec::is_empty));
    let heads = store.group_heads(100).await.expect("heads");
    assert_eq!(heads.len(), 1, "still pending after a claim of none");
    // A claim that reads exactly its limit of members asks whether more are left: its
    // group stays pending for them.
    let part = store
        .claim_groups(&keys[1..], later, later + Duration::seconds(60), 4, 1000)
        .await
        .expect("groups");
    assert_eq!(part[0].len(), 4);
    assert_eq!(
        pending_groups(&*store).await,
        [keys[1]],
        "members are left after a claim that stopped at its limit"
    );
    let retaken = store
        .claim_groups(&keys[1..], later, later + Duration::seconds(60), 1000, 1000)
        .await
        .expect("groups");
    assert_eq!(retaken[0].len(), 4, "the rest, none claimed twice");
    assert!(part[0].iter().chain(&retaken[0]).all(|m| m.attempts == 2));
    let heads = store.group_heads(100).await.expect("heads");
    assert!(heads.is_empty(), "no pending member left");
    // A message that failed: its members will be tried again, and their group is pending
    // again, once, however many members one finish moved.
    let retry_at = later + Duration::seconds(30);
    let retried: Vec<(vakt_store::ActionRecord, vakt_store::Finish)> = retaken[0]
        .iter()
        .map(|m| (m.clone(), finish(m, "failed", Next::Retry(retry_at))))
        .collect();
    store.finish_actions(&retried).await.expect("finish");
    assert_eq!(
        pending_groups(&*store).await,
        [keys[1]],
        "a group whose members will be tried again is pending again"
    );
    for (member, _) in &retried {
        let (record, attempts) = stored_action(&*store, &member.decided.id).await;
        assert_eq!(record.status, ActionStatus::Pending);
        assert_eq!(
            record.next_at.map(|t| t.timestamp_millis()),
            Some(retry_at.timestamp_millis()),
            "tried again when the finish said"
        );
        assert_eq!(record.outcome.as_deref(), Some("test failed"));
        assert_eq!(attempts.last().map(|a| a.outcome.as_str()), Some("failed"));
    }
    store.close().await;
}
story!(
    story_decided_actions_are_dispatched_exactly_once,
    decided_actions_are_dispatched_exactly_once
);

/// Actions handed at ingest are claimed by the write that stores them: the store shows
/// them running under the caller's lease, no claim takes them again, each has its alert as
/// the batch left it, and the rest (grouped, over the limit, of alerts that existed
/// before) wait in the table for a claim. A backend that hands none leaves all to claims.
async fn handed_actions_are_claimed_by_the_write(backend: &Backend) {
    use vakt_store::{ActionQuery, ActionStatus, HandOff, Next};
    let p = Pipeline::build(&PipelineConfig::from_toml(DISPATCH_RULES).expect("parses"))
        .expect("compiles");
    let store = backend.open().await;
    let lease = Utc::now() + Duration::seconds(60);
    let batch = |from: usize| {
        let now = Utc::now();
        (from..from + 10)
            .map(|i| {
                let e = json!({"resource": format!("h{i}"), "check": "c", "summary": "s", "severity": "critical", "service": "svc"});
                p.prepare(event(e), "test", now)
            })
            .collect::<Vec<_>>()
    };
    let mut handed = Vec::new();
    // Three batches: the first may load the writer's cache; h0..h9 repeat in the third.
    for from in [0, 10, 0] {
        let (outcomes, got) = store
            .ingest_handing(
                &p,
                &Default::default(),
                batch(from),
                HandOff {
                    max: 4,
                    lease_until: lease,
                },
            )
            .await
            .expect("ingest");
        assert!(got.len() <= 4, "never more than asked for");
        for h in &got {
            assert_eq!(h.record.status, ActionStatus::Running);
            assert_eq!(h.record.attempts, 1);
            assert_eq!(h.record.decided.action.as_ref(), "hook", "ungrouped only");
            assert_eq!(h.alert.id, h.record.decided.alert_id);
            assert_eq!(h.event.id, h.record.decided.event_id);
            let outcome = outcomes
                .iter()
                .find(|o| o.record.id == h.event.id)
                .expect("its event is in the batch");
            assert_eq!(
                outcome.transition,
                vakt_core::pipeline::Transition::Opened,
                "only actions of new alerts"
            );
            assert!(
                h.earlier
                    .iter()
                    .any(|e| e.decided.action.as_ref() == "grouped")
            );
        }
        handed.extend(got);
    }
    if store.backend() == "sqlite" {
        assert!(!handed.is_empty(), "the journal's writes hand actions");
    }
    // The store agrees: handed actions are running under the lease.
    for h in &handed {
        let (record, _) = store
            .action(&h.record.decided.id)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(record.status, ActionStatus::Running);
        assert_eq!(record.attempts, 1);
        assert_eq!(
            record.lease_until.map(|t| t.timestamp_millis()),
            Some(lease.timestamp_millis())
        );
    }
    // Claims take exactly the other 20 ungrouped actions (the repeats decided none).
    let mut claimed = Vec::new();
    loop {
        let got = store
            .claim_actions(Utc::now(), lease, 7)
            .await
            .expect("claim");
        if got.is_empty() {
            break;
        }
        claimed.extend(got);
    }
    assert_eq!(claimed.len() + handed.len(), 20);
    assert!(
        claimed
            .iter()
            .all(|c| handed.iter().all(|h| h.record.decided.id != c.decided.id))
    );
    // A handed action finishes like a claimed one.
    if let Some(h) = handed.first() {
        store
            .finish_actions(&[(
                h.record.clone(),
                finish(&h.record, "succeeded", Next::Done(ActionStatus::Succeeded)),
            )])
            .await
            .expect("finish");
        let done = store
            .actions(&ActionQuery {
                status: Some(ActionStatus::Succeeded),
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(done.items.len(), 1);
        assert_eq!(done.items[0].decided.id, h.record.decided.id);
    }
    store.close().await;
}
story!(
    story_handed_actions_are_claimed_by_the_write,
    handed_actions_are_claimed_by_the_write
);

/// An attempt's timeline line is on its alert's timeline once, in order, whether it says
/// only what the attempt does (then the store makes it from the attempt's row) or more (a
/// command's output excerpt: stored as it is); a skipped attempt's line says so by its kind.
async fn attempt_lines_are_on_the_timeline_once(backend: &Backend) {
    use vakt_store::{ActionStatus, Next};
    let p = Pipeline::build(&PipelineConfig::from_toml(DISPATCH_RULES).expect("parses"))
        .expect("compiles");
    let store = backend.open().await;
    let events: Vec<serde_json::Value> = (0..3)
        .map(|i| json!({"resource": format!("h{i}"), "check": "c", "summary": "s", "severity": "critical", "service": "svc"}))
        .collect();
    send(&*store, &p, events).await;
    let lease = Utc::now() + Duration::seconds(60);
    let claimed = store
        .claim_actions(Utc::now(), lease, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3, "one webhook action per alert");
    // What the dispatcher says of an attempt: its line, and for a command more after it.
    let said = |record: &vakt_store::ActionRecord, outcome: &str, next: Next, more: &str| {
        let mut f = finish(record, outcome, next);
        f.timeline =
            record
                .decided
                .attempt_line(f.attempt.attempt, &f.attempt.outcome, &f.attempt.detail)
                + more;
        f
    };
    let items = vec![
        (
            claimed[0].clone(),
            said(
                &claimed[0],
                "succeeded",
                Next::Done(ActionStatus::Succeeded),
                "",
            ),
        ),
        (
            claimed[1].clone(),
            said(
                &claimed[1],
                "succeeded",
                Next::Done(ActionStatus::Succeeded),
                "\nfirst line of output",
            ),
        ),
        (
            claimed[2].clone(),
            said(
                &claimed[2],
                "skipped",
                Next::Done(ActionStatus::Skipped),
                "",
            ),
        ),
    ];
    store.finish_actions(&items).await.expect("finish");
    for (record, finished) in &items {
        let timeline = store
            .timeline(&record.decided.alert_id)
            .await
            .expect("timeline");
        let lines: Vec<&TimelineEntry> = timeline
            .iter()
            .filter(|t| t.message == finished.timeline)
            .collect();
        assert_eq!(lines.len(), 1, "the attempt's line once: {timeline:?}");
        let kind = if finished.attempt.outcome == "skipped" {
            TimelineKind::ActionSuppressed
        } else {
            TimelineKind::ActionRun
        };
        assert_eq!(lines[0].kind, kind);
        assert_eq!(
            lines[0].at.timestamp_millis(),
            finished.attempt.finished_at.timestamp_millis()
        );
        assert_eq!(lines[0].by, "vakt");
        assert_eq!(
            timeline.last().map(|t| &t.message),
            Some(&finished.timeline),
            "after the lines of the alert's opening and decisions"
        );
        assert!(
            timeline.windows(2).all(|w| w[0].id < w[1].id),
            "in order, each line once"
        );
    }
    store.close().await;
}
story!(
    story_attempt_lines_are_on_the_timeline_once,
    attempt_lines_are_on_the_timeline_once
);
