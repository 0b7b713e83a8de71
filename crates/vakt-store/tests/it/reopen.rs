//! Stories of an alert that resolves and comes back: reopened within the window, a new
//! alert after it, and at window 0 always a new one (issue 13: the SQLite writer's cache
//! kept an open copy of an alert resolved at window 0, so the next problem became a
//! "repeat" of the resolved alert and nothing opened).

use super::*;
use vakt_core::pipeline::Transition;

fn windowed(secs: u64) -> Pipeline {
    let config = format!(
        "[alerts]\nreopen_window_secs = {secs}\n\n[[rules]]\nname = \"page-on-problems\"\nwhen = 'severity != \"ok\"'\nactions = [\"page\"]\n\n[actions.page]\ntype = \"notify\"\nchannel = \"email\"\n"
    );
    Pipeline::build(&PipelineConfig::from_toml(&config).expect("parses")).expect("compiles")
}

fn problem(severity: &str) -> serde_json::Value {
    json!({"resource": "web1", "check": "http", "summary": "down", "severity": severity})
}

/// Sends one event received at `at` (the pipeline measures the window from receipt).
async fn send_at(
    store: &dyn Store,
    pipeline: &Pipeline,
    event: serde_json::Value,
    at: chrono::DateTime<Utc>,
) -> vakt_core::Correlated {
    let prepared = pipeline.prepare(super::event(event), "test", at);
    store
        .ingest(pipeline, &Default::default(), vec![prepared])
        .await
        .expect("ingest")
        .remove(0)
}

async fn a_problem_after_ok_opens_or_reopens_by_the_window(backend: &Backend) {
    let store = backend.open().await;
    // Received in the past, as every event is by the time the writer sees it.
    let base = Utc::now() - Duration::hours(1);
    for (round, secs) in [0_u64, 1, 300].into_iter().enumerate() {
        let p = windowed(secs);
        // Each round on its own resource, so rounds do not see each other's alerts.
        let resource = format!("web{round}");
        let ev = |severity: &str| {
            let mut e = problem(severity);
            e["resource"] = json!(resource);
            e
        };
        let t0 = base + Duration::seconds(1000 * round as i64);
        let first = send_at(&*store, &p, ev("critical"), t0).await;
        assert_eq!(first.transition, Transition::Opened, "window {secs}");
        let opened = first.alert.expect("an alert").id.clone();
        let ok = send_at(&*store, &p, ev("ok"), t0 + Duration::milliseconds(100)).await;
        assert_eq!(ok.transition, Transition::Resolved, "window {secs}");

        // Back 100 ms after the ok.
        let again = send_at(
            &*store,
            &p,
            ev("critical"),
            t0 + Duration::milliseconds(200),
        )
        .await;
        let alert = again.alert.clone().expect("the problem has an alert");
        if secs == 0 {
            assert_eq!(
                again.transition,
                Transition::Opened,
                "window 0 always opens"
            );
            assert_ne!(alert.id, opened, "window 0: a new alert");
        } else {
            assert_eq!(again.transition, Transition::Reopened, "window {secs}");
            assert_eq!(alert.id, opened, "window {secs}: the same alert");
        }
        assert_eq!(alert.status, AlertStatus::Open, "window {secs}");
        assert_eq!(
            again.actions.len(),
            1,
            "window {secs}: the page is decided again"
        );
        let stored = store.alert(&opened).await.expect("read").expect("exists");
        let first_status = if secs == 0 {
            AlertStatus::Resolved
        } else {
            AlertStatus::Open
        };
        assert_eq!(
            stored.status, first_status,
            "window {secs}: the first alert"
        );

        // Resolved again, then back after the window: a new alert (for window 300 it is
        // still within, so reopened once more).
        let current = alert.id.clone();
        send_at(&*store, &p, ev("ok"), t0 + Duration::milliseconds(300)).await;
        let later = t0 + Duration::milliseconds(300) + Duration::seconds(2);
        let after = send_at(&*store, &p, ev("major"), later).await;
        let after_alert = after.alert.expect("an alert");
        if secs == 300 {
            assert_eq!(after.transition, Transition::Reopened);
            assert_eq!(after_alert.id, current);
        } else {
            assert_eq!(
                after.transition,
                Transition::Opened,
                "window {secs}: 2 s later"
            );
            assert_ne!(after_alert.id, current);
        }
        let open = store
            .alerts(&AlertQuery {
                status: vec![AlertStatus::Open],
                resource: Some(resource.clone()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list")
            .items;
        assert_eq!(open.len(), 1, "window {secs}: exactly one open alert");
        assert_eq!(open[0].id, after_alert.id);
    }
    store.close().await;
}
story!(
    story_a_problem_after_ok_opens_or_reopens_by_the_window,
    a_problem_after_ok_opens_or_reopens_by_the_window
);

/// Issue 14: both backends compute the reopen cutoff the same way, from the batch's
/// earliest receipt. An event received within the window but processed after it (queued)
/// still reopens.
async fn the_window_counts_from_receipt_not_from_processing(backend: &Backend) {
    let store = backend.open().await;
    let p = windowed(5);
    // Received 10 minutes ago (an event that waited in a queue), in order.
    let t0 = Utc::now() - Duration::minutes(10);
    let first = send_at(&*store, &p, problem("critical"), t0).await;
    send_at(&*store, &p, problem("ok"), t0 + Duration::seconds(1)).await;
    let again = send_at(&*store, &p, problem("critical"), t0 + Duration::seconds(3)).await;
    assert_eq!(again.transition, Transition::Reopened);
    assert_eq!(
        again.alert.expect("alert").id,
        first.alert.expect("alert").id
    );
    store.close().await;
}
story!(
    story_the_window_counts_from_receipt_not_from_processing,
    the_window_counts_from_receipt_not_from_processing
);
