//! Restarts, back-pressure, reloads, and the same API on PostgreSQL.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;

use crate::harness::{PgDatabase, TestServer};

#[tokio::test]
async fn a_restart_keeps_events_alerts_and_timelines() {
    let mut server = TestServer::start().await;
    server.post("/api/v1/events", &json!({"resource": "db01", "check": "disk_health", "severity": "warning", "summary": "sda: SMART failure predicted"})).await;
    let id = server.only_alert_id().await;
    server
        .post(&format!("/api/v1/alerts/{id}/ack"), &json!({"by": "alice"}))
        .await;
    let (_, before) = server.get(&format!("/api/v1/alerts/{id}")).await;
    server.stop().await;

    server.boot(true, None).await;
    let (status, after) = server.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(before, after, "everything survives a restart");
    assert_eq!(after["status"], "acknowledged");
    assert_eq!(after["category"], "exception", "disk-failure rule");
    // The alert keeps absorbing events after the restart.
    server.post("/api/v1/events", &json!({"resource": "db01", "check": "disk_health", "severity": "warning", "summary": "again"})).await;
    let (_, again) = server.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(again["count"], 2);
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_loses_nothing() {
    let config = "[ingest]\nqueue_events_max = 10\nrequest_events_max = 10\n";
    let server = TestServer::with_config(Some(config)).await;
    let batch = |prefix: &str| -> Value {
        Value::Array(
            (0..10)
                .map(|i| json!({"resource": format!("{prefix}{i}"), "check": "c", "summary": "s"}))
                .collect(),
        )
    };
    // Hold SQLite's write lock from another connection so the writer cannot commit.
    let db = server.data_dir().join("vakt.db");
    let mut blocker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open db");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .expect("take the write lock");

    let first = {
        let client = server.client.clone();
        let url = server.url("/api/v1/events");
        let body = batch("a");
        tokio::spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    // Wait until the first batch fills the queue.
    let mut full = false;
    for _ in 0..100 {
        let (_, metrics) = server.get("/metrics").await;
        if metrics
            .as_str()
            .is_some_and(|m| m.contains("vakt_ingest_queue_events 10"))
        {
            full = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(full, "the first batch should be queued behind the lock");
    let response = server
        .client
        .post(server.url("/api/v1/events"))
        .json(&batch("b"))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = response.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("queue is full"),
        "{body}"
    );

    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("release the lock");
    assert_eq!(
        first.await.expect("task").expect("first request"),
        202,
        "the queued batch commits once the lock is gone"
    );
    let (_, events) = server.get("/api/v1/events?limit=100").await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(10),
        "only the accepted batch is stored"
    );
}

#[tokio::test]
async fn reload_swaps_a_good_configuration_and_refuses_a_bad_one() {
    let first = "[[rules]]\nname = \"web\"\nwhen = 'check == \"http\"'\ncategory = \"exception\"\n";
    let server = TestServer::with_config(Some(first)).await;
    let event = json!({"resource": "shop", "check": "http", "severity": "info", "summary": "slow"});
    server.post("/api/v1/events", &event).await;
    let (_, alerts) = server.get("/api/v1/alerts").await;
    assert_eq!(alerts["items"][0]["category"], "exception");

    // A broken file is refused with its location; the running rules stay.
    std::fs::write(
        server.config_path(),
        "[[rules]]\nname = \"web\"\nwhen = 'chek == \"http\"'\n",
    )
    .expect("write");
    let (status, answer) = server.post("/-/reload", &json!({})).await;
    assert_eq!(status, 400, "{answer}");
    let detail = answer["details"][0]["message"].as_str().unwrap_or_default();
    assert!(
        detail.contains("vakt.toml:3:8: rule \"web\": when: unknown event attribute chek"),
        "{answer}"
    );

    // A good file is swapped in whole.
    let second = "[server]\nlisten = \"127.0.0.1:1\"\n[[rules]]\nname = \"web\"\nwhen = 'check == \"http\"'\ncategory = \"warning\"\n";
    std::fs::write(server.config_path(), second).expect("write");
    let (status, answer) = server.post("/-/reload", &json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rules"], 1);
    assert_eq!(answer["restart_needed"], json!(["server.listen"]));
    server
        .post(
            "/api/v1/events",
            &json!({"resource": "shop2", "check": "http", "severity": "info", "summary": "slow"}),
        )
        .await;
    let (_, alerts) = server.get("/api/v1/alerts?resource=shop2").await;
    assert_eq!(alerts["items"][0]["category"], "warning");
    let (_, metrics) = server.get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.contains("vakt_config_reloads_total{result=\"failure\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vakt_config_reloads_total{result=\"success\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn the_api_behaves_the_same_on_postgresql() {
    let Some(db) = PgDatabase::create("the_api_behaves_the_same_on_postgresql", "vakt_api").await
    else {
        return;
    };
    let url = db.url.clone();

    let mut server = TestServer::start().await;
    server.stop().await;
    server.boot(true, Some(url.clone())).await;
    server.post("/api/v1/events", &json!({"resource": "db01", "check": "disk_usage", "severity": "warning", "summary": "97%", "metrics": {"used_pct": 97.0}})).await;
    let id = server.only_alert_id().await;
    let (status, alert) = server
        .post(&format!("/api/v1/alerts/{id}/ack"), &json!({"by": "alice"}))
        .await;
    assert_eq!(
        (status, alert["status"].as_str()),
        (200, Some("acknowledged"))
    );
    server.stop().await;
    server.boot(true, Some(url)).await;
    let (_, alert) = server.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(alert["status"], "acknowledged");
    assert_eq!(alert["severity"], "critical");
    // Attempts (action_run) come from the dispatcher, in their own time.
    assert_eq!(
        alert["timeline"]
            .as_array()
            .map(|t| t.iter().filter(|e| e["kind"] != "action_run").count()),
        Some(4),
        "{alert}"
    );
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    server.stop().await;
    db.drop_database().await;
}
