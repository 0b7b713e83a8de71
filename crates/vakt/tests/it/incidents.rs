//! Incidents end to end: a correlated burst of 50 alerts opens one incident, priority
//! follows the matrix, the ServiceNow preset creates and updates the record in a local
//! server that checks the Table API's shape, status comes back on the webhook once, and the
//! CLI drives it all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

use crate::actions::eventually;
use crate::harness::TestServer;

/// One request the fake ServiceNow instance got.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    authorization: String,
    body: Value,
}

const SYS_ID: &str = "9d385017c611228701d22104cc95c371";

/// Answers the Table API as ServiceNow documents it: a create returns 201 with
/// `{"result": {"sys_id", "number", ...}}`, an update 200 with the record; a body that is not
/// a JSON object of string fields gets 400 as the real API would refuse unknown shapes.
async fn servicenow() -> (String, Arc<Mutex<Vec<Call>>>) {
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .fallback(
            |State(calls): State<Arc<Mutex<Vec<Call>>>>,
             method: Method,
             uri: Uri,
             headers: HeaderMap,
             body: Bytes| async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                calls.lock().expect("lock").push(Call {
                    method: method.to_string(),
                    path: uri.path().to_owned(),
                    authorization: headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    body: body.clone(),
                });
                let all_strings = body
                    .as_object()
                    .is_some_and(|o| o.values().all(Value::is_string));
                if !all_strings {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"error": {"message": "Invalid body"}})),
                    );
                }
                match (method.as_str(), uri.path()) {
                    ("POST", "/api/now/table/incident") => (
                        StatusCode::CREATED,
                        axum::Json(json!({"result": {"sys_id": if body["correlation_id"] == "INC-000001" { SYS_ID.to_owned() } else { format!("{:032x}", calls.lock().expect("lock").len()) },
                            "number": "INC0010001",
                            "short_description": body["short_description"], "state": body["state"]}})),
                    ),
                    ("PATCH", path) if path == format!("/api/now/table/incident/{SYS_ID}") => (
                        StatusCode::OK,
                        axum::Json(json!({"result": {"sys_id": SYS_ID, "state": body["state"]}})),
                    ),
                    _ => (
                        StatusCode::NOT_FOUND,
                        axum::Json(json!({"error": {"message": "No Record found"}})),
                    ),
                }
            },
        )
        .with_state(Arc::clone(&calls));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, calls)
}

async fn incident(server: &TestServer, id: &str) -> (Value, Vec<String>) {
    let (status, detail) = server.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(status, 200, "{detail}");
    let lines = detail["timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| t["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    (detail["incident"].clone(), lines)
}

async fn patch(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let response = server
        .client
        .patch(server.url(path))
        .json(body)
        .send()
        .await
        .expect("PATCH");
    crate::harness::decode(response).await
}

#[tokio::test]
async fn a_correlated_burst_opens_one_incident_synced_to_servicenow() {
    let (snow, calls) = servicenow().await;
    let config = format!(
        r#"
[incidents]
correlate_by = "service"
correlation_window_secs = 600
resolve_with_alerts = true

[itsm]
preset = "servicenow"
url = "{snow}"
username = "vakt"
password = "pw"
webhook_token = "s3cret"
poll_interval_ms = 100

[[rules]]
name = "api outage"
when = 'service == "api" && severity == "critical"'
incident = true
impact = 1
[[rules]]
name = "db degraded"
when = 'service == "db"'
incident = true
impact = 3
"#
    );
    let server = TestServer::with_config(Some(&config)).await;
    // 50 alerts of one service within a minute, in five requests.
    for batch in 0..5 {
        let events: Vec<Value> = (0..10)
            .map(|i| {
                json!({"resource": format!("web{}", batch * 10 + i), "check": "http",
                       "severity": "critical", "service": "api", "summary": "5xx"})
            })
            .collect();
        let (status, body) = server.post("/api/v1/events", &json!(events)).await;
        assert_eq!(status, 202, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, page) = server
        .get("/api/v1/incidents?correlation_key=service%3Dapi")
        .await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "one incident for the burst: {page}");
    let api = &items[0];
    assert_eq!(api["number"], "INC-000001");
    assert_eq!(api["alert_count"], 50);
    // Impact 1 (the rule) x urgency 1 (critical) = P1.
    assert_eq!(
        (
            api["impact"].clone(),
            api["urgency"].clone(),
            api["priority"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    let (detail, lines) = incident(&server, "INC-000001").await;
    assert_eq!(detail["alerts"].as_array().map(Vec::len), Some(50));
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("joined, correlated by service=api"))
            .count(),
        49,
        "{lines:#?}"
    );
    // Every alert knows its incident.
    let (_, alerts) = server.get("/api/v1/alerts?service=api&limit=100").await;
    assert!(
        alerts["items"]
            .as_array()
            .is_some_and(|a| a.len() == 50 && a.iter().all(|a| a["incident_id"] == detail["id"])),
        "{alerts}"
    );

    // Another service: impact 3 x urgency 2 (major) = P4.
    let (status, _) = server
        .post(
            "/api/v1/events",
            &json!({"resource": "db1", "check": "replication", "severity": "major", "service": "db", "summary": "lag"}),
        )
        .await;
    assert_eq!(status, 202);
    let (db, _) = incident(&server, "INC-000002").await;
    assert_eq!(
        (db["priority"].clone(), db["correlation_key"].clone()),
        (json!(4), json!("service=db"))
    );

    // The ServiceNow preset created the record; the sys_id came back onto the incident.
    let synced = eventually(10, "the api incident synced", || async {
        let (i, _) = incident(&server, "INC-000001").await;
        (i["external_id"] == SYS_ID).then_some(i)
    })
    .await;
    assert!(
        synced["external_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/nav_to.do?uri=incident.do?sys_id={SYS_ID}"))),
        "{synced}"
    );
    let created: Vec<Call> = eventually(10, "both incidents created in ServiceNow", || async {
        let created: Vec<Call> = calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.method == "POST")
            .cloned()
            .collect();
        (created.len() >= 2).then_some(created)
    })
    .await;
    assert_eq!(created.len(), 2, "one create per incident: {created:#?}");
    let body = &created
        .iter()
        .find(|c| c.body["correlation_id"] == "INC-000001")
        .expect("the api incident's create")
        .body;
    assert_eq!(created[0].path, "/api/now/table/incident");
    assert_eq!(created[0].authorization, "Basic dmFrdDpwdw==");
    for (field, value) in [
        ("impact", "1"),
        ("urgency", "1"),
        ("state", "1"),
        ("correlation_display", "vakt"),
    ] {
        assert_eq!(body[field], value, "{field} in {body}");
    }
    assert!(
        body["short_description"]
            .as_str()
            .is_some_and(|s| s.starts_with("service=api: http on web")),
        "{body}"
    );
    // Alerts that joined after the create went out as updates: the last one knows all 50.
    let latest = eventually(10, "ServiceNow has all 50 alerts", || async {
        let calls = calls.lock().expect("lock").clone();
        calls
            .iter()
            .rev()
            .find(|c| c.body["correlation_id"] == "INC-000001")
            .filter(|c| {
                c.body["description"]
                    .as_str()
                    .is_some_and(|s| s.contains("(50 linked alert(s))"))
            })
            .cloned()
    })
    .await;
    assert_eq!(
        (latest.method.as_str(), latest.path.clone()),
        ("PATCH", format!("/api/now/table/incident/{SYS_ID}"))
    );

    // The tool moves it to In Progress: applied once, not echoed back, a repeat changes nothing.
    let hook = |token: &'static str, body: Value| {
        let client = server.client.clone();
        let url = server.url("/api/v1/itsm/webhook");
        async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("POST");
            crate::harness::decode(response).await
        }
    };
    let (status, _) = hook("wrong", json!({"sys_id": SYS_ID, "state": "2"})).await;
    assert_eq!(status, 401);
    let (status, body) = hook("s3cret", json!({"sys_id": SYS_ID, "state": "2"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["changed"].clone(), body["incident"]["status"].clone()),
        (json!(true), json!("in_progress"))
    );
    let (status, body) = hook("s3cret", json!({"sys_id": SYS_ID, "state": "2"})).await;
    assert_eq!((status, body["changed"].clone()), (200, json!(false)));
    // Issue 13: an update with a comment, sent twice, adds the note once.
    let noted = json!({"sys_id": SYS_ID, "state": "2", "comments": "load balancer drained"});
    let (status, body) = hook("s3cret", noted.clone()).await;
    assert_eq!(
        (status, body["changed"].clone()),
        (200, json!(true)),
        "{body}"
    );
    let (status, body) = hook("s3cret", noted).await;
    assert_eq!(
        (status, body["changed"].clone()),
        (200, json!(false)),
        "{body}"
    );
    // Issue 13: the answer lists the linked alerts, as many as it counts.
    assert_eq!(
        body["incident"]["alerts"].as_array().map(Vec::len),
        body["incident"]["alert_count"].as_u64().map(|n| n as usize),
        "{body}"
    );
    let (_, detail) = server.get("/api/v1/incidents/INC-000001").await;
    let notes = detail["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|e| e["message"] == "itsm: load balancer drained")
                .count()
        })
        .unwrap_or(0);
    assert_eq!(notes, 1, "{detail}");
    let (_, list) = server.get("/api/v1/incidents").await;
    let first = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["number"] == "INC-000001"))
        .expect("INC-000001 listed");
    assert_eq!(
        first["alerts"].as_array().map(Vec::len),
        first["alert_count"].as_u64().map(|n| n as usize),
        "the list names the alerts it counts: {first}"
    );
    assert_eq!(first["alert_count"], 50, "{first}");
    let (status, body) = hook("s3cret", json!({"sys_id": SYS_ID, "state": "5"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("state:")),
        "{body}"
    );
    let patches = || -> Vec<Call> {
        calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.method == "PATCH" && c.path.ends_with(SYS_ID))
            .cloned()
            .collect()
    };
    let before = patches().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        patches().len(),
        before,
        "the tool's own change is not sent back: {:?}",
        patches()
    );

    // An operator resolves it: notes are required; the update reaches ServiceNow.
    let (status, body) = patch(
        &server,
        "/api/v1/incidents/INC-000001",
        &json!({"status": "resolved", "by": "alice"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["field"], "resolution");
    let (status, body) = patch(
        &server,
        "/api/v1/incidents/INC-000001",
        &json!({"status": "resolved", "resolution": "rolled back release 412", "assignee": "alice", "by": "alice"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let update = eventually(10, "the resolve sent to ServiceNow", || async {
        patches().into_iter().nth(before)
    })
    .await;
    assert_eq!(update.path, format!("/api/now/table/incident/{SYS_ID}"));
    assert_eq!(
        (
            update.body["state"].clone(),
            update.body["close_notes"].clone()
        ),
        (json!("6"), json!("rolled back release 412"))
    );
    assert_eq!(update.body["close_code"], "Solution provided");

    // Closed is final.
    let (status, _) = patch(
        &server,
        "/api/v1/incidents/INC-000001",
        &json!({"status": "closed", "by": "alice"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = patch(
        &server,
        "/api/v1/incidents/INC-000001",
        &json!({"status": "in_progress", "by": "alice"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // The db incident resolves with its only alert (incidents.resolve_with_alerts).
    let (status, _) = server
        .post(
            "/api/v1/events",
            &json!({"resource": "db1", "check": "replication", "severity": "ok", "service": "db", "summary": "caught up"}),
        )
        .await;
    assert_eq!(status, 202);
    let (db, lines) = incident(&server, "INC-000002").await;
    assert_eq!(db["status"], "resolved", "{lines:#?}");
    assert_eq!(db["resolution"], "all 1 linked alert(s) resolved");

    // The CLI: list, open by hand with a linked alert, and a refusal with exit code 1.
    let cli = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(&args)
            .output()
            .await
            .expect("vakt runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let base = server.base.clone();
    let (code, text) = cli(vec![
        "incident".into(),
        "list".into(),
        "--url".into(),
        base.clone(),
    ])
    .await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("INC-000001  P1 closed") && text.contains("[9d385017"),
        "{text}"
    );
    let (_, alerts) = server.get("/api/v1/alerts?service=db").await;
    let db_alert = alerts["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (code, text) = cli(vec![
        "incident".into(),
        "open".into(),
        "Replication keeps lagging".into(),
        "--impact".into(),
        "2".into(),
        "--urgency".into(),
        "1".into(),
        "--alert".into(),
        db_alert.clone(),
        "--by".into(),
        "bob".into(),
        "--url".into(),
        base.clone(),
    ])
    .await;
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("INC-000003  P2 new"), "{text}");
    let (code, text) = cli(vec![
        "incident".into(),
        "update".into(),
        "INC-000003".into(),
        "--status".into(),
        "closed".into(),
        "--by".into(),
        "bob".into(),
        "--url".into(),
        base.clone(),
    ])
    .await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("an incident cannot go from new to closed"),
        "{text}"
    );
    let (code, text) = cli(vec![
        "incident".into(),
        "show".into(),
        "INC-000003".into(),
        "--url".into(),
        base,
    ])
    .await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("alert {db_alert}")) && text.contains("linked by bob"),
        "{text}"
    );
}
