//! On-call over the API and the CLI: who is on call, shifts, overrides, and an iCalendar
//! export read back by a real parser (Python's `icalendar`).

use serde_json::{Value, json};

use crate::harness::TestServer;

const CONFIG: &str = r#"
[[users]]
id = "alice"
name = "Alice Andersson"
email = "alice@example.com"
[[users]]
id = "bob"
name = "Bob Berg"
email = "bob@example.com"
[[users]]
id = "carol"
name = "Carol Carlsson"

[[schedules]]
name = "ops-primary"
timezone = "Europe/Stockholm"
[[schedules.layers]]
name = "weekly"
users = ["alice", "bob"]
rotation = "weekly"
handoff = "2026-11-23T09:00"
"#;

#[tokio::test]
async fn who_is_on_call_shifts_overrides_and_a_calendar() {
    let server = TestServer::with_config(Some(CONFIG)).await;
    let (status, users) = server.get("/api/v1/users").await;
    assert_eq!(status, 200);
    assert_eq!(users["items"].as_array().map(Vec::len), Some(3));

    // Monday 2026-11-23 09:00 Stockholm (08:00 UTC): alice's week, then bob's.
    let (status, now) = server
        .get("/api/v1/schedules/ops-primary/oncall?at=2026-11-25T12:00:00Z")
        .await;
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["user"]["id"], "alice");
    assert_eq!(now["user"]["email"], "alice@example.com");
    assert_eq!(now["source"], "weekly");
    let (_, later) = server
        .get("/api/v1/schedules/ops-primary/oncall?at=2026-11-30T08:00:00Z")
        .await;
    assert_eq!(later["user"]["id"], "bob");

    // Carol covers Wednesday afternoon.
    let (status, created) = server
        .post(
            "/api/v1/schedules/ops-primary/overrides",
            &json!({"user": "carol", "start": "2026-11-25T12:00:00Z", "end": "2026-11-25T16:00:00Z", "by": "alice"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (_, covered) = server
        .get("/api/v1/schedules/ops-primary/oncall?at=2026-11-25T13:00:00Z")
        .await;
    assert_eq!(
        (covered["user"]["id"].clone(), covered["source"].clone()),
        (json!("carol"), json!("override"))
    );
    let (_, shifts) = server
        .get("/api/v1/schedules/ops-primary/shifts?from=2026-11-23T08:00:00Z&to=2026-12-07T08:00:00Z")
        .await;
    let who: Vec<(String, String)> = shifts["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| {
            (
                s["start"].as_str().unwrap_or_default().to_owned(),
                s["user"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("2026-11-23T08:00:00Z".to_owned(), "alice".to_owned()),
            ("2026-11-25T12:00:00Z".to_owned(), "carol".to_owned()),
            ("2026-11-25T16:00:00Z".to_owned(), "alice".to_owned()),
            ("2026-11-30T08:00:00Z".to_owned(), "bob".to_owned()),
        ]
    );

    // Bad input is named.
    let (status, error) = server
        .post(
            "/api/v1/schedules/ops-primary/overrides",
            &json!({"user": "mallory", "start": "2026-11-25T12:00:00Z", "end": "2026-11-25T16:00:00Z", "by": "x"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error.to_string().contains("unknown user"), "{error}");
    let (status, _) = server.get("/api/v1/schedules/nope/oncall").await;
    assert_eq!(status, 404);

    // The calendar, parsed by a real iCalendar reader.
    let response =
        server
            .client
            .get(server.url(
                "/api/v1/schedules/ops-primary/calendar.ics?from=2026-11-23T08:00:00Z&weeks=2",
            ))
            .send()
            .await
            .expect("GET");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/calendar; charset=utf-8")
    );
    let ics = response.text().await.expect("body");
    let parsed = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import sys, icalendar, json\n\
cal = icalendar.Calendar.from_ical(sys.stdin.read())\n\
print(json.dumps([[str(e['SUMMARY']), e['DTSTART'].dt.isoformat(), e['DTEND'].dt.isoformat()] for e in cal.walk('VEVENT')]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with icalendar (pip install icalendar)");
    let mut child = parsed;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(ics.as_bytes()).await.expect("write");
    }
    let out = child.wait_with_output().await.expect("parse");
    assert!(out.status.success(), "icalendar refused it:\n{ics}");
    let events: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        events,
        json!([
            [
                "alice on call (ops-primary)",
                "2026-11-23T08:00:00+00:00",
                "2026-11-25T12:00:00+00:00"
            ],
            [
                "carol on call (ops-primary)",
                "2026-11-25T12:00:00+00:00",
                "2026-11-25T16:00:00+00:00"
            ],
            [
                "alice on call (ops-primary)",
                "2026-11-25T16:00:00+00:00",
                "2026-11-30T08:00:00+00:00"
            ],
            [
                "bob on call (ops-primary)",
                "2026-11-30T08:00:00+00:00",
                "2026-12-07T08:00:00+00:00"
            ]
        ])
    );

    // The CLI asks the same.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args([
            "oncall",
            "ops-primary",
            "--at",
            "2026-11-25T13:00:00Z",
            "--url",
            &server.base,
        ])
        .output()
        .await
        .expect("vakt oncall");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("carol Carol Carlsson (override)"), "{text}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["oncall", "--url", &server.base])
        .output()
        .await
        .expect("vakt oncall");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ops-primary"));

    // Deleting the override gives Wednesday back to alice.
    let id = created["id"].as_str().expect("id");
    let response = server
        .client
        .delete(server.url(&format!("/api/v1/schedules/ops-primary/overrides/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 204);
    let (_, back) = server
        .get("/api/v1/schedules/ops-primary/oncall?at=2026-11-25T13:00:00Z")
        .await;
    assert_eq!(back["user"]["id"], "alice");
}

#[tokio::test]
async fn a_schedule_naming_an_unknown_user_is_a_load_error() {
    let text = CONFIG.replace(
        "users = [\"alice\", \"bob\"]",
        "users = [\"alice\", \"zed\"]",
    );
    let errors = vakt::config::Config::parse("t.toml", &text, None, &Default::default())
        .err()
        .map(|e| e.lines.join("\n"))
        .unwrap_or_default();
    assert!(
        errors.contains("t.toml:") && errors.contains("unknown user \"zed\""),
        "{errors}"
    );
}
