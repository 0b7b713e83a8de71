//! PagerDuty Events API v2 with curl and PagerDuty's documented example events: trigger, acknowledge, resolve.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::TestServer;

const KEY: &str = "R0123456789abcdef0123456789abcde";
const CONFIG: &str = r#"
[[sources.pagerduty.integrations]]
name = "datapipe"
routing_key = "R0123456789abcdef0123456789abcde"
service = "datapipe"
environment = "production"
"#;

/// POSTs with curl, as PagerDuty's documentation does; returns status and body.
fn curl(url: &str, body: &Value) -> (u16, Value) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
        ])
        .arg(body.to_string())
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json_text, code) = text.rsplit_once('\n').expect("status line");
    (
        code.trim().parse().expect("status"),
        serde_json::from_str(json_text).unwrap_or(Value::Null),
    )
}

/// PagerDuty's documented trigger example, with our routing key.
fn trigger(dedup_key: Option<&str>) -> Value {
    let mut event = json!({
        "payload": {
            "summary": "Example alert on host1.example.com",
            "timestamp": "2015-07-17T08:42:58.315+0000",
            "severity": "critical",
            "source": "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003",
            "component": "postgres",
            "group": "prod-datapipe",
            "class": "deploy",
            "custom_details": {"ping time": "1500ms", "load avg": 0.75}
        },
        "routing_key": KEY,
        "event_action": "trigger",
        "client": "Sample Monitoring Service",
        "client_url": "https://monitoring.service.com",
        "links": [{"href": "http://pagerduty.example.com", "text": "An example link."}],
        "images": [{"src": "https://chart.googleapis.com/chart?chs=600x400", "href": "https://google.com", "alt": "An example link with an image"}]
    });
    if let Some(key) = dedup_key {
        event["dedup_key"] = json!(key);
    }
    event
}

#[tokio::test]
async fn trigger_acknowledge_resolve_round_trip() {
    let server = TestServer::with_config(Some(CONFIG)).await;
    let url = server.url("/v2/enqueue");
    let (status, answer) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || curl(&url, &trigger(Some("samplekeyhere")))
    })
    .await
    .expect("curl");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer,
        json!({"status": "success", "message": "Event processed", "dedup_key": "samplekeyhere"})
    );

    let (_, alerts) = server
        .get("/api/v1/alerts?fingerprint=pagerduty:datapipe:samplekeyhere")
        .await;
    let alert = &alerts["items"][0];
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["check"], "postgres");
    assert_eq!(alert["service"], "datapipe");
    assert_eq!(
        alert["resource"],
        "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003"
    );
    assert_eq!(alert["labels"]["group"], "prod-datapipe");
    let id = alert["id"].as_str().expect("id").to_owned();
    let (_, event) = server.get(&format!("/api/v1/events?alert_id={id}")).await;
    assert_eq!(event["items"][0]["occurred_at"], "2015-07-17T08:42:58.315Z");
    assert_eq!(
        event["items"][0]["details"]["custom_details"]["ping time"],
        "1500ms"
    );
    // The integration whose routing key came with it is its sender.
    assert!(
        event["items"][0]["trace"]
            .to_string()
            .contains("sent by PagerDuty integration"),
        "{event}"
    );

    // A repeat with the same key is the same alert.
    let again = tokio::task::spawn_blocking({
        let url = url.clone();
        move || curl(&url, &trigger(Some("samplekeyhere")))
    })
    .await
    .expect("curl");
    assert_eq!(again.0, 202);
    let (_, alert) = server.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(alert["count"], 2);

    let ack =
        json!({"routing_key": KEY, "dedup_key": "samplekeyhere", "event_action": "acknowledge"});
    let (status, answer) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || curl(&url, &ack)
    })
    .await
    .expect("curl");
    assert_eq!(
        (status, answer["dedup_key"].as_str()),
        (202, Some("samplekeyhere"))
    );
    let (_, alert) = server.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(alert["status"], "acknowledged");
    assert_eq!(alert["acknowledged_by"], "pagerduty:datapipe");

    let resolve =
        json!({"routing_key": KEY, "dedup_key": "samplekeyhere", "event_action": "resolve"});
    let (status, _) = tokio::task::spawn_blocking(move || curl(&url, &resolve))
        .await
        .expect("curl");
    assert_eq!(status, 202);
    let (_, alert) = server.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(alert["status"], "resolved");
}

#[tokio::test]
async fn keys_are_generated_scoped_and_unknown_ones_ignored() {
    let server = TestServer::with_config(Some(CONFIG)).await;
    let (status, answer) = server.post("/v2/enqueue", &trigger(None)).await;
    assert_eq!(status, 202, "{answer}");
    let generated = answer["dedup_key"].as_str().expect("generated dedup_key");
    assert_eq!(generated.len(), 26);
    let (_, alerts) = server
        .get(&format!(
            "/api/v1/alerts?fingerprint=pagerduty:datapipe:{generated}"
        ))
        .await;
    assert_eq!(alerts["items"].as_array().map(Vec::len), Some(1));

    for action in ["acknowledge", "resolve"] {
        let (status, answer) = server
            .post(
                "/v2/enqueue",
                &json!({"routing_key": KEY, "dedup_key": "never-seen", "event_action": action}),
            )
            .await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (202, Some("success")),
            "{action}: {answer}"
        );
    }
    let (_, alerts) = server.get("/api/v1/alerts").await;
    assert_eq!(
        alerts["items"].as_array().map(Vec::len),
        Some(1),
        "unknown keys change nothing"
    );
}

#[tokio::test]
async fn invalid_events_are_answered_as_pagerduty_does() {
    let server = TestServer::with_config(Some(CONFIG)).await;
    let mut unknown = trigger(None);
    unknown["routing_key"] = json!("Rffffffffffffffffffffffffffffff0");
    let (status, answer) = server.post("/v2/enqueue", &unknown).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["'routing_key' is not a known integration key"]})
    );

    let mut broken = trigger(None);
    broken["payload"]["severity"] = json!("fatal");
    broken["payload"]["summary"] = json!("");
    broken["event_action"] = json!("explode");
    let (status, answer) = server.post("/v2/enqueue", &broken).await;
    assert_eq!(status, 400);
    let errors: Vec<&str> = answer["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "an unknown action is the whole problem: {errors:?}"
    );
    broken["event_action"] = json!("trigger");
    let (_, answer) = server.post("/v2/enqueue", &broken).await;
    let errors: Vec<&str> = answer["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        errors.contains(&"'payload.summary' is missing or blank"),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("'payload.severity' is invalid")),
        "{errors:?}"
    );

    let (status, answer) = server
        .post(
            "/v2/enqueue",
            &json!({"routing_key": KEY, "event_action": "resolve"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = server
        .post_raw("/v2/enqueue", "application/json", b"{not json".to_vec())
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (400, Some("invalid event"))
    );
    let mut huge = trigger(None);
    huge["payload"]["custom_details"] = json!({"blob": "x".repeat(600 * 1024)});
    let (status, answer) = server.post("/v2/enqueue", &huge).await;
    assert_eq!(status, 413, "{answer}");
    let (_, events) = server.get("/api/v1/events").await;
    assert_eq!(events["items"], json!([]), "nothing invalid was stored");
}
