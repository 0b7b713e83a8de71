//! Heartbeats: a missing one raises an exception alert, its return clears it; beats by API and by events.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::TestServer;

/// Waits until the heartbeat alert of `name` has `status`; returns it.
async fn heartbeat_alert(server: &TestServer, name: &str, status: &str, secs: u64) -> Value {
    for _ in 0..secs * 10 {
        let (_, alerts) = server
            .get(&format!("/api/v1/alerts?fingerprint=heartbeat:{name}"))
            .await;
        if let Some(alert) = alerts["items"]
            .as_array()
            .and_then(|a| a.first())
            .filter(|a| a["status"] == status)
        {
            return alert.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {status} heartbeat alert for {name} within {secs} s");
}

#[tokio::test]
async fn a_missing_api_heartbeat_raises_and_its_return_clears() {
    let server = TestServer::start().await;
    let (status, beat) = server.post("/api/v1/heartbeats", &json!({"name": "nightly-backup", "interval_secs": 1, "grace_secs": 0, "resource": "db01"})).await;
    assert_eq!(status, 200, "{beat}");
    assert!(beat["due_at"].is_string());
    let alert = heartbeat_alert(&server, "nightly-backup", "open", 10).await;
    assert_eq!(
        (alert["check"].as_str(), alert["resource"].as_str()),
        (Some("heartbeat"), Some("db01"))
    );
    assert_eq!(alert["category"], "exception");
    assert!(
        alert["summary"]
            .as_str()
            .unwrap_or_default()
            .starts_with("no heartbeat from nightly-backup"),
        "{alert}"
    );
    // The monitor marks the heartbeat missing right after it sent the event.
    crate::actions::eventually(5, "the heartbeat is listed as missing", || async {
        let (_, listed) = server.get("/api/v1/heartbeats").await;
        (listed[0]["missing"] == true).then_some(())
    })
    .await;

    server
        .post(
            "/api/v1/heartbeats",
            &json!({"name": "nightly-backup", "interval_secs": 60, "resource": "db01"}),
        )
        .await;
    let cleared = heartbeat_alert(&server, "nightly-backup", "resolved", 5).await;
    assert_eq!(cleared["id"], alert["id"]);

    let (status, answer) = server
        .post(
            "/api/v1/heartbeats",
            &json!({"name": "", "interval_secs": 5}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = server
        .post(
            "/api/v1/heartbeats",
            &json!({"name": "x", "interval_secs": 0}),
        )
        .await;
    assert_eq!(
        (status, answer["details"][0]["field"].as_str()),
        (400, Some("interval_secs"))
    );
}

#[tokio::test]
async fn events_from_a_declared_resource_are_beats() {
    let config = "[[heartbeats]]\nname = \"web1-agent\"\nresource = \"web1\"\ninterval_secs = 1\ngrace_secs = 1\n";
    let server = TestServer::with_config(Some(config)).await;
    let event = json!({"resource": "web1", "check": "cpu", "summary": "fine", "severity": "info"});
    for _ in 0..25 {
        server.post("/api/v1/events", &event).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, alerts) = server
        .get("/api/v1/alerts?fingerprint=heartbeat:web1-agent")
        .await;
    assert_eq!(alerts["items"], json!([]), "a steady source raises nothing");
    heartbeat_alert(&server, "web1-agent", "open", 10).await;
    server.post("/api/v1/events", &event).await;
    heartbeat_alert(&server, "web1-agent", "resolved", 10).await;
}
