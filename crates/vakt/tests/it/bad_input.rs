//! Bad input of every kind gets a precise 4xx JSON error, never a 500 or a panic, and nothing is stored.

use serde_json::{Value, json};

use crate::harness::TestServer;

/// Posts `body` with `content_type`, expects `status`, and returns the error body.
async fn refused(server: &TestServer, content_type: &str, body: Vec<u8>, status: u16) -> Value {
    let (got, answer) = server
        .post_raw("/api/v1/events", content_type, body.clone())
        .await;
    assert_eq!(
        got,
        status,
        "{} -> {answer}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        answer["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error message missing: {answer}"
    );
    answer
}

async fn refused_json(server: &TestServer, body: Value) -> Value {
    refused(
        server,
        "application/json",
        body.to_string().into_bytes(),
        400,
    )
    .await
}

#[tokio::test]
async fn event_fields_are_checked_by_name() {
    let server = TestServer::start().await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"resource": 1, "check": "c", "summary": "s"}),
            "resource",
            "expected a string, got a number",
        ),
        (
            json!({"resource": "r", "check": "c", "summary": "s", "colour": "red"}),
            "colour",
            "unknown field",
        ),
        (
            json!({"resource": "r", "summary": "s"}),
            "check",
            "missing required field",
        ),
        (
            json!({"resource": "r", "check": "c", "summary": "s", "severity": "fatal"}),
            "severity",
            "unknown severity \"fatal\"",
        ),
        (
            json!({"resource": "r", "check": "c", "summary": "s", "labels": {"a": 1}}),
            "labels.a",
            "label values must be strings",
        ),
        (
            json!({"resource": "r", "check": "c", "summary": "s", "labels": []}),
            "labels",
            "expected an object or null",
        ),
        (
            json!({"resource": "r", "check": "c", "summary": "s", "metrics": {"x": "high"}}),
            "metrics.x",
            "finite numbers",
        ),
        (
            json!({"resource": "r", "check": "c", "summary": "s", "occurred_at": "yesterday"}),
            "occurred_at",
            "RFC 3339",
        ),
        (
            json!({"resource": "r", "check": "c", "summary": "s", "category": "exception"}),
            "category",
            "assigned by rules",
        ),
        (
            json!({"resource": "", "check": "c", "summary": "s"}),
            "resource",
            "must not be empty",
        ),
        (
            json!({"resource": "r\u{0007}", "check": "c", "summary": "s"}),
            "resource",
            "control character",
        ),
        (
            json!({"resource": "x".repeat(300), "check": "c", "summary": "s"}),
            "resource",
            "the limit is 256",
        ),
        (
            json!({"resource": "r", "check": "c", "summary": "s", "details": "text"}),
            "details",
            "expected an object",
        ),
        (
            json!({"resource": "r", "check": "c", "summary": "s", "fingerprint": 7}),
            "fingerprint",
            "expected a string or null",
        ),
    ];
    for (event, field, fragment) in cases {
        let answer = refused_json(&server, event.clone()).await;
        let detail = &answer["details"][0];
        assert_eq!(detail["field"], field, "{event} -> {answer}");
        assert_eq!(detail["index"], 0);
        assert!(
            detail["message"]
                .as_str()
                .unwrap_or_default()
                .contains(fragment),
            "{event} -> {answer}"
        );
    }
    // Several problems in several items are all reported, each with its index.
    let answer = refused_json(
        &server,
        json!([{"resource": "r", "check": "c", "summary": "s"}, {"check": 5}]),
    )
    .await;
    let found: Vec<(i64, &str)> = answer["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| {
            (
                d["index"].as_i64().unwrap_or(-1),
                d["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(found, [(1, "check"), (1, "resource"), (1, "summary")]);
    let (_, events) = server.get("/api/v1/events").await;
    assert_eq!(events["items"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn malformed_bodies_are_refused_precisely() {
    let server = TestServer::start().await;
    let answer = refused(
        &server,
        "application/json",
        b"{\"resource\": \"r\",".to_vec(),
        400,
    )
    .await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("line 1 column"),
        "{answer}"
    );
    let mut invalid_utf8 = b"{\"resource\": \"".to_vec();
    invalid_utf8.extend([0xff, 0xfe]);
    invalid_utf8.extend(b"\", \"check\": \"c\", \"summary\": \"s\"}");
    let answer = refused(&server, "application/json", invalid_utf8, 400).await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid"),
        "{answer}"
    );
    refused(&server, "application/json", Vec::new(), 400).await;
    let answer = refused(&server, "application/json", b"[]".to_vec(), 400).await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("empty"),
        "{answer}"
    );
    refused(&server, "application/json", b"42".to_vec(), 400).await;
    refused(&server, "application/json", b"[1, \"x\"]".to_vec(), 400).await;
    refused(&server, "application/xml", b"<event/>".to_vec(), 415).await;
    let answer = refused(
        &server,
        "application/x-ndjson",
        b"{}\nnot json\n".to_vec(),
        400,
    )
    .await;
    assert!(
        answer["details"]
            .to_string()
            .contains("line 2: invalid JSON"),
        "{answer}"
    );

    // Bodies over the limit (10 MiB by default) get 413, before parsing.
    let huge = vec![b' '; 11 * 1024 * 1024];
    let answer = refused(&server, "application/json", huge, 413).await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("body_bytes_max"),
        "{answer}"
    );
    // More events than one request may carry get 413 too.
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"resource": "r", "check": "c", "summary": "s"}))
        .collect();
    let answer = refused(
        &server,
        "application/json",
        Value::Array(many).to_string().into_bytes(),
        413,
    )
    .await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("request_events_max"),
        "{answer}"
    );
    let (_, events) = server.get("/api/v1/events").await;
    assert_eq!(events["items"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn queries_paths_and_operator_bodies_are_checked() {
    let server = TestServer::start().await;
    server
        .post(
            "/api/v1/events",
            &json!({"resource": "r", "check": "c", "severity": "major", "summary": "s"}),
        )
        .await;
    let id = server.only_alert_id().await;
    for (path, fragment) in [
        ("/api/v1/alerts?colour=red", "unknown query parameter"),
        ("/api/v1/alerts?status=sleeping", "unknown status"),
        ("/api/v1/alerts?limit=0", "from 1 to 1000"),
        ("/api/v1/alerts?limit=abc", "from 1 to 1000"),
        ("/api/v1/alerts?severity=high", "unknown severity"),
        ("/api/v1/events?since=today", "RFC 3339"),
        ("/api/v1/events?dropped=maybe", "true or false"),
        ("/api/v1/events?limit=1&limit=2", "more than once"),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path} -> {body}");
        assert!(body.to_string().contains(fragment), "{path} -> {body}");
    }
    let (status, body) = server.get("/api/v1/alerts/01NOTANALERT").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.get("/api/v1/events/nope").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.get("/api/v2/whatever").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
    let (status, body) = server
        .post("/api/v1/alerts/nope/ack", &json!({"by": "a"}))
        .await;
    assert_eq!(status, 404, "{body}");
    let ack = format!("/api/v1/alerts/{id}/ack");
    for (body, fragment) in [
        // `by` may be left out (the signed-in identity acts); where auth is off, someone
        // must still be named.
        (json!({}), "must name who acts"),
        (json!({"by": "a", "who": "b"}), "unknown field `who`"),
        (json!({"by": 5}), "invalid type"),
        (json!({"by": "  "}), "must name who acts"),
    ] {
        let (status, answer) = server.post(&ack, &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains(fragment),
            "{body} -> {answer}"
        );
    }
    let (status, answer) = server.post_raw(&ack, "application/json", Vec::new()).await;
    assert_eq!(status, 400, "{answer}");
}

/// A silence whose duration runs past the last representable time is refused naming the
/// field (it panicked in date arithmetic and dropped the connection), and the server
/// answers on.
#[tokio::test]
async fn an_enormous_silence_duration_is_refused_not_a_panic() {
    let server = TestServer::start().await;
    for secs in [10_000_000_000_000_u64, u64::MAX, 9_223_372_036_854_775_807] {
        let (status, body) = server
            .post(
                "/api/v1/silences",
                &serde_json::json!({"matchers": ["resource=\"db1\""], "duration_secs": secs,
                                    "created_by": "alice", "comment": "too long"}),
            )
            .await;
        assert_eq!(status, 400, "{secs}: {body}");
        assert_eq!(body["details"][0]["field"], "duration_secs", "{body}");
    }
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
}

/// A cursor the API did not give out is refused, naming the parameter (it was taken and
/// answered an arbitrary page); the one it gave out continues the list.
#[tokio::test]
async fn a_garbage_cursor_is_refused() {
    let server = TestServer::start().await;
    for path in [
        "/api/v1/events",
        "/api/v1/alerts",
        "/api/v1/actions",
        "/api/v1/incidents",
    ] {
        let (status, body) = server.get(&format!("{path}?cursor=garbage")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["details"][0]["field"], "cursor", "{path}: {body}");
    }
    for n in 0..3 {
        server
            .post(
                "/api/v1/events",
                &serde_json::json!({"resource": format!("h{n}"), "check": "c", "summary": "s"}),
            )
            .await;
    }
    let (_, first) = server.get("/api/v1/events?limit=2").await;
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (status, second) = server
        .get(&format!("/api/v1/events?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["items"].as_array().map(Vec::len), Some(1));
}

/// Contract limits hold on every channel: an Alertmanager batch over
/// `ingest.request_events_max` is 413, a webhook alert whose status is neither firing nor
/// resolved is 400 naming it, a heartbeat's grace is bounded, an incident's title is one
/// short line. Nothing of them is stored.
#[tokio::test]
async fn limits_hold_on_every_channel() {
    let config = crate::harness::builtin_on_free_ports() + "\n[ingest]\nrequest_events_max = 10\n";
    let server = TestServer::with_config(Some(&config)).await;
    let alerts: Vec<Value> = (0..11)
        .map(|i| json!({"labels": {"alertname": format!("A{i}"), "instance": "h"}}))
        .collect();
    let (status, answer) = server.post("/api/v2/alerts", &json!(alerts)).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer.to_string().contains("request_events_max"),
        "{answer}"
    );

    let alert = |status: &str| {
        json!({"status": status, "labels": {"alertname": "W", "instance": "h"}, "annotations": {},
               "startsAt": "2026-12-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
               "generatorURL": "", "fingerprint": "f"})
    };
    let webhook = |alerts: Vec<Value>| {
        json!({"version": "4", "groupKey": "g", "status": "firing", "receiver": "vakt",
               "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
               "externalURL": "http://am", "alerts": alerts})
    };
    let (status, answer) = server
        .post(
            "/api/v1/integrations/alertmanager",
            &webhook(vec![alert("firing"), alert("bogus")]),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("alerts[1].status"), "{answer}");

    let (status, answer) = server
        .post(
            "/api/v1/heartbeats",
            &json!({"name": "cron", "interval_secs": 60, "grace_secs": 9_200_000_000_000_000_000_u64}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("grace_secs"), "{answer}");

    let (status, answer) = server
        .post(
            "/api/v1/incidents",
            &json!({"title": "x".repeat(1_000_000), "by": "a"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("title"), "{answer}");
    let (status, answer) = server
        .post(
            "/api/v1/incidents",
            &json!({"title": "two\nlines", "by": "a"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");

    let (_, events) = server.get("/api/v1/events").await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(0),
        "{events}"
    );
    let (_, incidents) = server.get("/api/v1/incidents").await;
    assert_eq!(
        incidents["items"].as_array().map(Vec::len),
        Some(0),
        "{incidents}"
    );
}
