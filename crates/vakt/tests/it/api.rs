//! The HTTP API end to end: ingest in every encoding, alerts with timeline and trace, operator actions, ops endpoints.

use serde_json::{Value, json};

use crate::harness::TestServer;

fn disk(pct: f64) -> Value {
    json!({"resource": "db01", "check": "disk_usage", "severity": "warning", "summary": format!("/var is {pct}% full"),
           "environment": "production", "labels": {"mount": "/var"}, "metrics": {"used_pct": pct}})
}

#[tokio::test]
async fn readme_tour_event_to_alert_to_ack_to_resolve() {
    let server = TestServer::start().await;
    let (status, body) = server.post("/api/v1/events", &disk(97.0)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 1);
    let event_id = body["ids"][0].as_str().expect("id").to_owned();

    let alert_id = server.only_alert_id().await;
    let (status, alert) = server.get(&format!("/api/v1/alerts/{alert_id}")).await;
    assert_eq!(status, 200);
    // The example rules made a 97% disk an exception and raised its severity.
    assert_eq!(alert["category"], "exception");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(
        alert["labels"]["team"], "ops",
        "production-owner rule labelled it"
    );
    assert_eq!(alert["status"], "open");
    let stages: Vec<&str> = alert["trace"][0]["trace"]
        .as_array()
        .expect("trace")
        .iter()
        .map(|t| t["stage"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        stages,
        [
            "normalise",
            "filter",
            "categorise",
            "correlate",
            "decide",
            "record"
        ]
    );
    assert_eq!(alert["trace"][0]["event_id"], event_id);
    let categorise = &alert["trace"][0]["trace"][2];
    assert_eq!(
        categorise["rules"],
        json!(["production-owner", "disk-nearly-full"])
    );
    let actions: Vec<&str> = alert["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(actions, ["clean-tmp", "notify-ops"]);
    assert!(
        alert["actions"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("disk-nearly-full")
    );

    let (status, acked) = server
        .post(
            &format!("/api/v1/alerts/{alert_id}/ack"),
            &json!({"by": "alice", "comment": "cleaning /var"}),
        )
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    let (status, again) = server
        .post(
            &format!("/api/v1/alerts/{alert_id}/ack"),
            &json!({"by": "bob"}),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"], "alert is already acknowledged by alice");

    // A repeat keeps it acknowledged; an ok event resolves it.
    server.post("/api/v1/events", &disk(98.0)).await;
    let (_, alert) = server.get(&format!("/api/v1/alerts/{alert_id}")).await;
    assert_eq!(
        (alert["status"].as_str(), alert["count"].as_i64()),
        (Some("acknowledged"), Some(2))
    );
    let ok = json!({"resource": "db01", "check": "disk_usage", "severity": "ok", "summary": "/var is 40% full", "environment": "production", "metrics": {"used_pct": 40.0}});
    let (status, _) = server.post("/api/v1/events", &ok).await;
    assert_eq!(status, 202);
    let (_, alert) = server.get(&format!("/api/v1/alerts/{alert_id}")).await;
    assert_eq!(alert["status"], "resolved");
    assert_eq!(alert["resolved_by"], "vakt");
    let kinds: Vec<&str> = alert["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|t| t["kind"].as_str().unwrap_or_default())
        // Attempts (action_run) are made by the dispatcher, in their own time.
        .filter(|kind| *kind != "action_run")
        .collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "action_decided",
            "action_decided",
            "acknowledged",
            "resolved",
            // notify-ops ran for it, so its resolution is announced through it too.
            "action_decided"
        ]
    );
    let acked = alert["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["kind"] == "acknowledged"))
        .expect("an acknowledged entry");
    assert_eq!(acked["by"], "alice");
}

#[tokio::test]
async fn arrays_and_ndjson_are_atomic_batches() {
    let server = TestServer::start().await;
    let batch: Vec<Value> = (0..3).map(|i| json!({"resource": format!("web{i}"), "check": "ping", "severity": "major", "summary": "no answer"})).collect();
    let (status, body) = server.post("/api/v1/events", &Value::Array(batch)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["ids"].as_array().map(Vec::len), Some(3));

    let ndjson = "{\"resource\":\"a\",\"check\":\"c\",\"summary\":\"s\"}\n\n{\"resource\":\"b\",\"check\":\"c\",\"summary\":\"s\",\"severity\":\"minor\"}\n";
    let (status, body) = server
        .post_raw("/api/v1/events", "application/x-ndjson", ndjson.into())
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 2);

    // One bad item in the batch: nothing of it is stored.
    let bad = "{\"resource\":\"x1\",\"check\":\"c\",\"summary\":\"s\"}\n{\"resource\":\"x2\",\"check\":\"c\"}\n";
    let (status, body) = server
        .post_raw("/api/v1/events", "application/x-ndjson", bad.into())
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["details"][0],
        json!({"index": 1, "field": "summary", "message": "missing required field"})
    );
    let (_, events) = server.get("/api/v1/events?resource=x1").await;
    assert_eq!(
        events["items"],
        json!([]),
        "atomic: the valid item was not stored either"
    );

    let (_, events) = server.get("/api/v1/events?limit=2").await;
    assert_eq!(events["items"].as_array().map(Vec::len), Some(2));
    let cursor = events["next_cursor"].as_str().expect("more pages");
    let (_, rest) = server
        .get(&format!("/api/v1/events?limit=10&cursor={cursor}"))
        .await;
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, major) = server
        .get("/api/v1/alerts?severity=major&status=open,acknowledged")
        .await;
    assert_eq!(major["items"].as_array().map(Vec::len), Some(3));
    let (_, one) = server
        .get("/api/v1/events?resource=b&category=warning")
        .await;
    assert_eq!(one["items"][0]["severity"], "minor");
    let id = one["items"][0]["id"].as_str().expect("id");
    let (status, event) = server.get(&format!("/api/v1/events/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(event["source"], "http", "source defaults to the channel");
    assert_eq!(event["trace"][0]["stage"], "normalise");
}

#[tokio::test]
async fn operators_assign_comment_unack_and_resolve() {
    let server = TestServer::start().await;
    server
        .post(
            "/api/v1/events",
            &json!({"resource": "r", "check": "c", "severity": "critical", "summary": "s"}),
        )
        .await;
    let id = server.only_alert_id().await;
    let path = |action: &str| format!("/api/v1/alerts/{id}/{action}");
    let (status, alert) = server
        .post(&path("assign"), &json!({"by": "alice", "assignee": "bob"}))
        .await;
    assert_eq!((status, alert["assignee"].as_str()), (200, Some("bob")));
    let (status, body) = server
        .post(
            &path("comment"),
            &json!({"by": "bob", "comment": "disk replaced"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post(&path("comment"), &json!({"by": "bob"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.post(&path("unack"), &json!({"by": "bob"})).await;
    assert_eq!(status, 409, "{body}");
    server.post(&path("ack"), &json!({"by": "bob"})).await;
    let (status, alert) = server.post(&path("unack"), &json!({"by": "bob"})).await;
    assert_eq!((status, alert["status"].as_str()), (200, Some("open")));
    let (status, alert) = server
        .post(&path("resolve"), &json!({"by": "bob", "comment": "fixed"}))
        .await;
    assert_eq!(
        (
            status,
            alert["status"].as_str(),
            alert["resolved_by"].as_str()
        ),
        (200, Some("resolved"), Some("bob"))
    );
    let (_, detail) = server.get(&format!("/api/v1/alerts/{id}")).await;
    let messages: Vec<&str> = detail["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|t| t["message"].as_str().unwrap_or_default())
        .collect();
    assert!(
        messages.contains(&"comment by bob: disk replaced"),
        "{messages:?}"
    );
    assert!(messages.contains(&"resolved by bob: fixed"), "{messages:?}");
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let server = TestServer::start().await;
    let (status, health) = server.get("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (200, Some("ready")),
        "{ready}"
    );

    server
        .post(
            "/api/v1/events",
            &json!({"resource": "r", "check": "heartbeat", "summary": "alive"}),
        )
        .await;
    server
        .post(
            "/api/v1/events",
            &json!({"resource": "r", "check": "c", "severity": "critical", "summary": "s"}),
        )
        .await;
    server
        .post("/api/v1/events", &json!({"resource": "r"}))
        .await;
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    let text = metrics.as_str().expect("text");
    for line in [
        "vakt_events_received_total{channel=\"http\"} 3",
        "vakt_events_rejected_total{channel=\"http\",reason=\"invalid\"} 1",
        "vakt_events_dropped_total 1",
        "vakt_events_stored_total{category=\"exception\"} 1",
        "vakt_alerts{status=\"open\"} 1",
        "vakt_alert_transitions_total{transition=\"new_alert\"} 1",
        "vakt_ingest_queue_events 0",
        "vakt_store_commit_seconds_count 2",
        "vakt_pipeline_seconds_count 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // The scrape itself is in flight; the posts before it were answered.
    let in_flight: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("vakt_http_requests_in_flight "))
        .collect();
    assert_eq!(in_flight, ["1"], "{text}");

    let (status, doc) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    for path in [
        "/api/v1/events",
        "/api/v1/alerts/{id}",
        "/api/v1/alerts/{id}/ack",
        "/api/v1/alerts/{id}/assign",
        "/metrics",
        "/-/reload",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("Alert").is_some());
}
