//! The Alertmanager API against the real peers: amtool, Prometheus, and an Alertmanager forwarding by webhook.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::TestServer;

/// A free port on loopback (bound, then released for the peer to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Kills the child when the test ends, however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs amtool against vakt (without blocking the runtime that serves it).
async fn amtool(server: &TestServer, args: &[&str]) -> String {
    let out = tokio::process::Command::new("amtool")
        .arg(format!("--alertmanager.url={}", server.base))
        .args(args)
        .output()
        .await
        .expect("amtool is installed (prometheus-alertmanager)");
    assert!(
        out.status.success(),
        "amtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Issue 13: amtool checks the version /api/v2/status answers and warns on a mismatch.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Warning"),
        "amtool {args:?} warned: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` until it gives a value, for up to `secs` seconds.
async fn eventually<T>(secs: u64, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    for _ in 0..secs * 10 {
        if let Some(value) = check().await {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn amtool_adds_and_queries_alerts_and_manages_silences() {
    let server = TestServer::start().await;
    let add = amtool(
        &server,
        &[
            "alert",
            "add",
            "alertname=DiskFull",
            "instance=db01:9100",
            "severity=critical",
            "--annotation=summary=/var is full",
            "--annotation=runbook_url=https://runbooks.example/disk",
            "--annotation=description=db01 has less than 1% free on /var",
        ],
    )
    .await;
    assert!(add.trim().is_empty(), "{add}");
    let alerts: Value =
        serde_json::from_str(&amtool(&server, &["alert", "query", "-o", "json"]).await)
            .expect("json");
    let alert = &alerts[0];
    assert_eq!(alert["labels"]["alertname"], "DiskFull");
    assert_eq!(alert["annotations"]["summary"], "/var is full");
    // Issue 13: every annotation comes back, not only the summary.
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example/disk"
    );
    assert_eq!(
        alert["annotations"]["description"],
        "db01 has less than 1% free on /var"
    );
    assert_eq!(alert["status"]["state"], "active");

    // vakt sees it as an alert with the mapped fields and Alertmanager's fingerprint.
    let (_, vakt_alerts) = server.get("/api/v1/alerts?check=DiskFull").await;
    let ours = &vakt_alerts["items"][0];
    assert_eq!(
        (ours["resource"].as_str(), ours["severity"].as_str()),
        (Some("db01:9100"), Some("critical"))
    );
    assert_eq!(ours["fingerprint"], alert["fingerprint"]);

    let id = amtool(
        &server,
        &[
            "silence",
            "add",
            "alertname=DiskFull",
            "--comment=disk swap",
            "--author=alice",
            "--duration=1h",
        ],
    )
    .await;
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 36, "{id}");
    let silences: Value =
        serde_json::from_str(&amtool(&server, &["silence", "query", "-o", "json"]).await)
            .expect("json");
    assert_eq!(silences[0]["id"], id.as_str());
    assert_eq!(silences[0]["createdBy"], "alice");
    assert_eq!(silences[0]["status"]["state"], "active");

    // The silenced alert leaves the default listing and shows as suppressed with -s.
    let active: Value =
        serde_json::from_str(&amtool(&server, &["alert", "query", "-o", "json"]).await)
            .expect("json");
    assert_eq!(active, json!([]));
    let silenced: Value =
        serde_json::from_str(&amtool(&server, &["alert", "query", "-s", "-o", "json"]).await)
            .expect("json");
    assert_eq!(silenced[0]["status"]["state"], "suppressed");
    assert_eq!(silenced[0]["status"]["silencedBy"], json!([id]));

    amtool(&server, &["silence", "expire", &id]).await;
    let remaining: Value =
        serde_json::from_str(&amtool(&server, &["silence", "query", "-o", "json"]).await)
            .expect("json");
    assert_eq!(
        remaining,
        json!([]),
        "expired silences are not listed by default"
    );
    let expired: Value = serde_json::from_str(
        &amtool(&server, &["silence", "query", "--expired", "-o", "json"]).await,
    )
    .expect("json");
    assert_eq!(expired[0]["status"]["state"], "expired");
    let (status, groups) = server.get("/api/v2/alerts/groups").await;
    assert_eq!(status, 200);
    assert_eq!(groups[0]["labels"]["alertname"], "DiskFull");
    let (_, receivers) = server.get("/api/v2/receivers").await;
    assert_eq!(receivers, json!([{"name": "vakt"}]));
    let config: String = amtool(&server, &["config", "show"]).await;
    assert!(config.contains("vakt"), "{config}");
}

#[tokio::test]
async fn prometheus_delivers_a_firing_alert() {
    // Against a vakt that requires auth: Prometheus signs in with basic_auth, the password
    // an ingest token.
    let server = TestServer::with_config(Some(&crate::access::locked_config())).await;
    let ingest = server.token("prometheus", &["ingest"], None).await;
    let reader = server.token("reader", &["viewer"], None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n- name: always\n  interval: 1s\n  rules:\n  - alert: AlwaysFiring\n    expr: vector(1)\n    labels:\n      severity: major\n      team: ops\n    annotations:\n      summary: it always fires\n",
    )
    .expect("rules");
    let vakt = server.base.trim_start_matches("http://").to_owned();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!("global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n  - api_version: v2\n    basic_auth:\n      username: prometheus\n      password: {ingest}\n    static_configs:\n    - targets: ['{vakt}']\n"),
    )
    .expect("config");
    let _prometheus = Peer(
        Command::new("prometheus")
            .current_dir(dir.path())
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
            // The first notification may go before the alertmanager is discovered; resend soon.
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed"),
    );
    let alert = eventually(60, async || {
        let (_, alerts, _) = server
            .send(
                reqwest::Method::GET,
                "/api/v1/alerts?check=AlwaysFiring",
                Some(&reader),
                None,
            )
            .await;
        alerts["items"].as_array().and_then(|a| a.first()).cloned()
    })
    .await
    .expect("Prometheus delivered AlwaysFiring within 60 s");
    assert_eq!(alert["severity"], "major");
    assert_eq!(alert["source"], "alertmanager");
    assert_eq!(alert["labels"]["team"], "ops");
    assert_eq!(alert["summary"], "it always fires");
    assert!(
        alert["expires_at"].is_string(),
        "Prometheus sends endsAt: {alert}"
    );
}

#[tokio::test]
async fn an_alertmanager_forwards_by_webhook() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: vakt\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n- name: vakt\n  webhook_configs:\n  - url: {}/api/v1/integrations/alertmanager\n",
            server.base
        ),
    )
    .expect("config");
    let port = free_port();
    let _alertmanager = Peer(
        Command::new("prometheus-alertmanager")
            .current_dir(dir.path())
            .arg("--config.file=alertmanager.yml")
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager is installed"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let alert = json!([{"labels": {"alertname": "LinkDown", "instance": "sw1", "severity": "warning"}, "annotations": {"summary": "uplink down"}}]);
    let posted = eventually(30, async || {
        let response = client
            .post(format!("{url}/api/v2/alerts"))
            .json(&alert)
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    assert!(posted.is_some(), "the Alertmanager did not start");
    let event = eventually(30, async || {
        let (_, events) = server.get("/api/v1/events?check=LinkDown").await;
        events["items"].as_array().and_then(|a| a.first()).cloned()
    })
    .await
    .expect("the Alertmanager's notification arrived within 30 s");
    assert_eq!(event["source"], "alertmanager-webhook");
    assert_eq!(event["resource"], "sw1");
    assert_eq!(event["summary"], "uplink down");
    assert_eq!(event["details"]["receiver"], "vakt");
}

#[tokio::test]
async fn alerts_resolve_when_ends_at_passes_and_not_before() {
    let server = TestServer::start().await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (status, body) = server
        .post(
            "/api/v2/alerts",
            &json!([{"labels": {"alertname": "Brief", "instance": "h"}, "endsAt": soon}]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, alerts) = server.get("/api/v1/alerts?check=Brief").await;
    let id = alerts["items"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(alerts["items"][0]["status"], "open");
    let resolved = eventually(10, async || {
        let (_, alert) = server.get(&format!("/api/v1/alerts/{id}")).await;
        (alert["status"] == "resolved").then_some(alert)
    })
    .await
    .expect("resolved after endsAt");
    let last = resolved["timeline"]
        .as_array()
        .and_then(|t| t.last())
        .cloned()
        .unwrap_or_default();
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("resolved: it expired"),
        "{last}"
    );

    // Bad input is answered the way Alertmanager answers it.
    for bad in [
        json!([{"labels": {}}]),
        json!([{"labels": {"bad-name": "x"}}]),
        json!({"labels": {"a": "b"}}),
    ] {
        let (status, body) = server.post("/api/v2/alerts", &bad).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        assert!(body.is_string(), "{body}");
    }
    let (status, _) = server
        .get("/api/v2/silence/7c2e5e4a-0000-4000-8000-000000000001")
        .await;
    assert_eq!(status, 404);
    let (status, body) = server.post("/api/v2/silences", &json!({"matchers": [{"name": "a", "value": ".*", "isRegex": true}], "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2030-01-01T00:00:00Z", "createdBy": "x", "comment": ""})).await;
    assert_eq!(status, 400, "{body}");
}
